//! Pollers: threads that take ready FSMs in batches and let a [`PollHandler`] work on them.

use std::sync::Arc;

use crossbeam_channel::{select, Receiver, TryRecvError};

use crate::{
    mailbox::{BasicMailbox, Scheduled, Scheduler},
    system::Metrics,
    Config, Fsm, PollGate,
};

/// What a handler did with one FSM in a round, and what the poller should do with it next.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandleResult {
    /// Messages the handler took from the FSM's mailbox (for metrics).
    pub messages: usize,
    /// `None`: the FSM has more work; keep it for the next round. `Some(n)`: the handler
    /// stopped reading when the mailbox held `n` messages (usually 0); the poller releases the
    /// FSM unless more arrived since.
    pub remaining: Option<usize>,
}

impl HandleResult {
    /// Keep the FSM for the next round.
    pub fn keep(messages: usize) -> Self {
        HandleResult { messages, remaining: None }
    }

    /// Release the FSM unless its mailbox now holds more than `remaining` messages.
    pub fn stop_at(messages: usize, remaining: usize) -> Self {
        HandleResult { messages, remaining: Some(remaining) }
    }
}

/// Moves at most `budget` messages from `rx` to `buf` and says what the poller should do
/// next: keep the FSM if the budget ran out, release it if the mailbox ran dry.
pub fn drain<M>(rx: &Receiver<M>, budget: usize, buf: &mut Vec<M>) -> HandleResult {
    let mut taken = 0;
    while taken < budget {
        match rx.try_recv() {
            Ok(msg) => {
                buf.push(msg);
                taken += 1;
            }
            Err(_) => return HandleResult::stop_at(taken, 0),
        }
    }
    HandleResult::keep(taken)
}

/// The work a poller does on the FSMs of a round. One handler per poller thread.
///
/// A round: `begin`, `handle_control` (if the control FSM is ready), `handle_normal` for each
/// ready FSM, `end`. `pause` is called before the poller blocks waiting for work.
pub trait PollHandler<N: Fsm, C: Fsm>: Send + 'static {
    /// Starts a round of `normals` normal FSMs.
    fn begin(&mut self, _normals: usize) {}
    /// Handles the control FSM.
    fn handle_control(&mut self, control: &mut C) -> HandleResult;
    /// Handles one normal FSM. Read at most the configured `messages_per_tick` messages.
    fn handle_normal(&mut self, normal: &mut N) -> HandleResult;
    /// Ends the round, with every normal FSM of it; the place to flush work batched across
    /// FSMs (one write batch per round, say). FSMs are released after this returns.
    fn end(&mut self, _normals: &mut [Box<N>]) {}
    /// The poller found no work and is about to block.
    fn pause(&mut self) {}
}

/// Builds one handler per poller thread.
pub trait HandlerBuilder<N: Fsm, C: Fsm>: Send {
    /// The handler type.
    type Handler: PollHandler<N, C>;
    /// A handler for a new poller.
    fn build(&mut self) -> Self::Handler;
}

struct Slot<N: Fsm> {
    mailbox: BasicMailbox<N>,
    busy_rounds: usize,
    result: HandleResult,
}

/// The FSMs one poller holds.
struct Batch<N: Fsm, C: Fsm> {
    normals: Vec<Box<N>>,
    slots: Vec<Slot<N>>,
    control: Option<(Box<C>, BasicMailbox<C>)>,
    control_result: HandleResult,
}

impl<N: Fsm, C: Fsm> Batch<N, C> {
    fn push(&mut self, fsm: Box<N>, mailbox: BasicMailbox<N>) {
        self.normals.push(fsm);
        self.slots.push(Slot { mailbox, busy_rounds: 0, result: HandleResult::default() });
    }

    fn is_empty(&self) -> bool {
        self.normals.is_empty() && self.control.is_none()
    }

    /// Puts every FSM back into its mailbox (on exit).
    fn release_all(&mut self) {
        for (fsm, slot) in self.normals.drain(..).zip(self.slots.drain(..)) {
            slot.mailbox.release(fsm);
        }
        if let Some((fsm, mailbox)) = self.control.take() {
            mailbox.release(fsm);
        }
    }
}

pub(crate) struct Poller<N: Fsm, C: Fsm, H> {
    pub(crate) normal_rx: Receiver<Scheduled<N>>,
    pub(crate) control_rx: Receiver<Scheduled<C>>,
    pub(crate) normal_scheduler: Scheduler<N>,
    pub(crate) handler: H,
    pub(crate) cfg: Config,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) gate: PollGate,
}

impl<N: Fsm, C: Fsm, H: PollHandler<N, C>> Poller<N, C, H> {
    pub(crate) fn run(mut self) {
        let mut batch = Batch {
            normals: Vec::with_capacity(self.cfg.max_batch_size),
            slots: Vec::with_capacity(self.cfg.max_batch_size),
            control: None,
            control_result: HandleResult::default(),
        };
        while self.fetch(&mut batch) {
            self.gate.pass();
            self.round(&mut batch);
            self.settle(&mut batch);
        }
        batch.release_all();
    }

    /// Fills the batch, control FSM first; blocks while there is nothing to do. Returns false
    /// when the poller must exit.
    fn fetch(&mut self, batch: &mut Batch<N, C>) -> bool {
        loop {
            if batch.control.is_none() {
                match self.control_rx.try_recv() {
                    Ok(Scheduled::Ready(fsm, mb)) => batch.control = Some((fsm, mb)),
                    Ok(Scheduled::Stop) | Err(TryRecvError::Disconnected) => return false,
                    Err(TryRecvError::Empty) => {}
                }
            }
            while batch.normals.len() < self.cfg.max_batch_size {
                match self.normal_rx.try_recv() {
                    Ok(Scheduled::Ready(fsm, mb)) => batch.push(fsm, mb),
                    Ok(Scheduled::Stop) | Err(_) => break,
                }
            }
            if !batch.is_empty() {
                return true;
            }
            self.handler.pause();
            select! {
                recv(self.control_rx) -> r => match r {
                    Ok(Scheduled::Ready(fsm, mb)) => batch.control = Some((fsm, mb)),
                    Ok(Scheduled::Stop) | Err(_) => return false,
                },
                recv(self.normal_rx) -> r => match r {
                    Ok(Scheduled::Ready(fsm, mb)) => batch.push(fsm, mb),
                    Ok(Scheduled::Stop) | Err(_) => return false,
                },
            }
        }
    }

    fn round(&mut self, batch: &mut Batch<N, C>) {
        self.handler.begin(batch.normals.len());
        let mut messages = 0;
        if let Some((control, _)) = batch.control.as_mut() {
            batch.control_result = self.handler.handle_control(control);
            messages += batch.control_result.messages;
        }
        for (fsm, slot) in batch.normals.iter_mut().zip(batch.slots.iter_mut()) {
            slot.result = self.handler.handle_normal(fsm);
            messages += slot.result.messages;
        }
        self.handler.end(&mut batch.normals);
        self.metrics.record_round(batch.normals.len(), messages);
    }

    /// After a round: drop stopped FSMs, release finished ones (taking back any that got mail
    /// meanwhile), keep busy ones, and send long-busy ones to the back of the ready queue.
    fn settle(&mut self, batch: &mut Batch<N, C>) {
        if let Some((control, mailbox)) = batch.control.take() {
            match batch.control_result.remaining {
                None => batch.control = Some((control, mailbox)),
                Some(remaining) => {
                    mailbox.release(control);
                    if mailbox.len() > remaining {
                        batch.control = mailbox.take_fsm().map(|c| (c, mailbox));
                    }
                }
            }
        }
        for i in (0..batch.normals.len()).rev() {
            if batch.normals[i].is_stopped() {
                let (fsm, slot) = (batch.normals.swap_remove(i), batch.slots.swap_remove(i));
                slot.mailbox.close();
                drop(fsm);
                continue;
            }
            let slot = &mut batch.slots[i];
            match slot.result.remaining {
                None => {
                    slot.busy_rounds += 1;
                    if slot.busy_rounds >= self.cfg.reschedule_rounds {
                        let (fsm, slot) =
                            (batch.normals.swap_remove(i), batch.slots.swap_remove(i));
                        self.normal_scheduler.schedule(fsm, slot.mailbox);
                        self.metrics.record_reschedule();
                    }
                }
                Some(remaining) => {
                    let (fsm, slot) = (batch.normals.swap_remove(i), batch.slots.swap_remove(i));
                    slot.mailbox.release(fsm);
                    if slot.mailbox.len() > remaining {
                        if let Some(fsm) = slot.mailbox.take_fsm() {
                            batch.push(fsm, slot.mailbox);
                        }
                    }
                }
            }
        }
    }
}
