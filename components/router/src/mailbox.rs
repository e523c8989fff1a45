//! Mailboxes: a message channel plus the FSM state that schedules the FSM on delivery.

use std::sync::{
    atomic::{fence, AtomicBool, Ordering},
    Arc,
};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::{state::FsmState, Fsm, SendError};

/// The sending half of a mailbox channel: unbounded underneath, with a soft capacity that
/// [`BasicMailbox`]'s `try_send` respects and `force_send` ignores (control messages such as
/// "destroy" must never be refused). Concurrent senders may overshoot the capacity slightly.
pub struct LooseBoundedSender<M> {
    tx: Sender<M>,
    capacity: usize,
}

impl<M> Clone for LooseBoundedSender<M> {
    fn clone(&self) -> Self {
        LooseBoundedSender { tx: self.tx.clone(), capacity: self.capacity }
    }
}

/// A mailbox channel with soft capacity `capacity`. The FSM keeps the receiver and reads its
/// messages from it when a poller hands it to a [`crate::PollHandler`].
pub fn mailbox_channel<M>(capacity: usize) -> (LooseBoundedSender<M>, Receiver<M>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    (LooseBoundedSender { tx, capacity }, rx)
}

/// Where a mailbox sends FSMs that became ready: the poller pool's queue.
///
/// Once closed (at shutdown) nothing may stay queued: [`Scheduler::close`] drains the queue,
/// and a `schedule` that raced with it drains again after sending. A SeqCst fence on both
/// sides, between the write (flag / item) and the read (item / flag), makes sure at least one
/// of them sees the other's write.
pub(crate) struct Scheduler<F: Fsm> {
    tx: Sender<Scheduled<F>>,
    rx: Receiver<Scheduled<F>>,
    closed: Arc<AtomicBool>,
}

impl<F: Fsm> Clone for Scheduler<F> {
    fn clone(&self) -> Self {
        Scheduler { tx: self.tx.clone(), rx: self.rx.clone(), closed: self.closed.clone() }
    }
}

/// An entry of the ready queue.
pub(crate) enum Scheduled<F: Fsm> {
    /// An FSM with messages, and the mailbox to release it into.
    Ready(Box<F>, BasicMailbox<F>),
    /// Tells the poller that receives it to exit.
    Stop,
}

impl<F: Fsm> Scheduler<F> {
    pub(crate) fn new() -> (Self, Receiver<Scheduled<F>>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let scheduler = Scheduler { tx, rx: rx.clone(), closed: Arc::default() };
        (scheduler, rx)
    }

    pub(crate) fn schedule(&self, fsm: Box<F>, mailbox: BasicMailbox<F>) {
        // Cannot fail: this scheduler holds a receiver.
        let _ = self.tx.send(Scheduled::Ready(fsm, mailbox));
        fence(Ordering::SeqCst);
        if self.closed.load(Ordering::Relaxed) {
            self.drain();
        }
    }

    /// Refuses to keep anything queued from now on, and drops what is queued: each FSM goes
    /// back to its (closed) mailbox, which drops it.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.drain();
    }

    fn drain(&self) {
        while let Ok(scheduled) = self.rx.try_recv() {
            if let Scheduled::Ready(fsm, mailbox) = scheduled {
                mailbox.release(fsm);
            }
        }
    }

    pub(crate) fn stop_one(&self) {
        let _ = self.tx.send(Scheduled::Stop);
    }
}

/// A mailbox: the sender of an FSM's channel and the FSM's state. Clones share both.
pub struct BasicMailbox<F: Fsm> {
    tx: LooseBoundedSender<F::Message>,
    state: Arc<FsmState<F>>,
}

impl<F: Fsm> Clone for BasicMailbox<F> {
    fn clone(&self) -> Self {
        BasicMailbox { tx: self.tx.clone(), state: self.state.clone() }
    }
}

impl<F: Fsm> BasicMailbox<F> {
    /// A mailbox for `fsm`, which must own the receiver paired with `tx`.
    pub fn new(tx: LooseBoundedSender<F::Message>, fsm: Box<F>) -> Self {
        BasicMailbox { tx, state: Arc::new(FsmState::new(fsm)) }
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.tx.tx.len()
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.tx.tx.is_empty()
    }

    /// Whether the mailbox was closed.
    pub fn is_closed(&self) -> bool {
        self.state.is_dropped()
    }

    /// Whether two handles are the same mailbox.
    pub(crate) fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.state, &other.state)
    }

    pub(crate) fn try_send(
        &self,
        addr: u64,
        msg: F::Message,
        scheduler: &Scheduler<F>,
    ) -> Result<(), SendError<F::Message>> {
        if self.len() >= self.tx.capacity {
            return Err(SendError::Full { addr, msg });
        }
        self.force_send(addr, msg, scheduler)
    }

    pub(crate) fn force_send(
        &self,
        addr: u64,
        msg: F::Message,
        scheduler: &Scheduler<F>,
    ) -> Result<(), SendError<F::Message>> {
        if self.is_closed() {
            return Err(SendError::Closed { addr, msg });
        }
        match self.tx.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Disconnected(msg) | TrySendError::Full(msg)) => {
                return Err(SendError::Closed { addr, msg })
            }
        }
        self.notify(scheduler);
        Ok(())
    }

    /// Schedules the FSM if it is idle.
    pub(crate) fn notify(&self, scheduler: &Scheduler<F>) {
        if let Some(fsm) = self.state.take() {
            scheduler.schedule(fsm, self.clone());
        }
    }

    pub(crate) fn take_fsm(&self) -> Option<Box<F>> {
        self.state.take()
    }

    pub(crate) fn release(&self, fsm: Box<F>) {
        self.state.release(fsm);
    }

    /// Closes the mailbox: later sends fail with `Closed`, and the FSM is dropped now if idle,
    /// or by the poller that holds it when it releases it.
    pub(crate) fn close(&self) {
        self.state.clear();
    }
}

/// A mailbox bound to its address and scheduler: a handle that sends without the router.
pub struct Mailbox<F: Fsm> {
    addr: u64,
    mailbox: BasicMailbox<F>,
    scheduler: Scheduler<F>,
}

impl<F: Fsm> Clone for Mailbox<F> {
    fn clone(&self) -> Self {
        Mailbox {
            addr: self.addr,
            mailbox: self.mailbox.clone(),
            scheduler: self.scheduler.clone(),
        }
    }
}

impl<F: Fsm> Mailbox<F> {
    pub(crate) fn new(addr: u64, mailbox: BasicMailbox<F>, scheduler: Scheduler<F>) -> Self {
        Mailbox { addr, mailbox, scheduler }
    }

    /// The address this mailbox is registered at.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// Sends unless the mailbox is full or closed; the error hands the message back.
    pub fn try_send(&self, msg: F::Message) -> Result<(), SendError<F::Message>> {
        self.mailbox.try_send(self.addr, msg, &self.scheduler)
    }

    /// Sends even beyond the capacity; fails only if the mailbox is closed.
    pub fn force_send(&self, msg: F::Message) -> Result<(), SendError<F::Message>> {
        self.mailbox.force_send(self.addr, msg, &self.scheduler)
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.mailbox.len()
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.mailbox.is_empty()
    }

    /// Whether the mailbox was closed.
    pub fn is_closed(&self) -> bool {
        self.mailbox.is_closed()
    }
}
