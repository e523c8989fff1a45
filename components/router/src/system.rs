//! The batch system: a pool of pollers over one router.

use std::{
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    thread::JoinHandle,
};

use crossbeam_channel::Receiver;

use crate::{
    mailbox::{BasicMailbox, LooseBoundedSender, Scheduled, Scheduler},
    poller::Poller,
    Config, ConfigError, Fsm, HandlerBuilder, PollGate, Router,
};

/// Counters of a batch system, shared by its pollers.
#[derive(Default)]
pub(crate) struct Metrics {
    rounds: AtomicU64,
    fsms_handled: AtomicU64,
    messages: AtomicU64,
    reschedules: AtomicU64,
    max_batch: AtomicUsize,
}

impl Metrics {
    pub(crate) fn record_round(&self, batch: usize, messages: usize) {
        self.rounds.fetch_add(1, Ordering::Relaxed);
        self.fsms_handled.fetch_add(batch as u64, Ordering::Relaxed);
        self.messages.fetch_add(messages as u64, Ordering::Relaxed);
        self.max_batch.fetch_max(batch, Ordering::Relaxed);
    }

    pub(crate) fn record_reschedule(&self) {
        self.reschedules.fetch_add(1, Ordering::Relaxed);
    }
}

/// A point-in-time copy of a batch system's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Rounds run by all pollers.
    pub rounds: u64,
    /// Normal FSMs handled, summed over rounds (the mean batch size is this over `rounds`).
    pub fsms_handled: u64,
    /// Messages handlers reported taking.
    pub messages: u64,
    /// Busy FSMs sent to the back of the ready queue for fairness.
    pub reschedules: u64,
    /// The largest batch seen.
    pub max_batch: usize,
}

/// A pool of pollers driving the FSMs of one router.
pub struct BatchSystem<N: Fsm, C: Fsm> {
    router: Router<N, C>,
    normal_rx: Receiver<Scheduled<N>>,
    control_rx: Receiver<Scheduled<C>>,
    workers: Vec<JoinHandle<()>>,
    cfg: Config,
    metrics: Arc<Metrics>,
    gate: PollGate,
}

/// A router and the batch system that drives its FSMs.
pub type RouterAndSystem<N, C> = (Router<N, C>, BatchSystem<N, C>);

/// Creates a router and its batch system. `control` is the control FSM (the store FSM); it
/// must own the receiver paired with `control_tx`. Spawn pollers with
/// [`BatchSystem::spawn`].
pub fn create_system<N: Fsm, C: Fsm>(
    cfg: &Config,
    control_tx: LooseBoundedSender<C::Message>,
    control: Box<C>,
) -> Result<RouterAndSystem<N, C>, ConfigError> {
    cfg.validate()?;
    let (normal_scheduler, normal_rx) = Scheduler::new();
    let (control_scheduler, control_rx) = Scheduler::new();
    let control = BasicMailbox::new(control_tx, control);
    let router = Router::new(control, normal_scheduler, control_scheduler);
    let system = BatchSystem {
        router: router.clone(),
        normal_rx,
        control_rx,
        workers: Vec::new(),
        cfg: cfg.clone(),
        metrics: Arc::default(),
        gate: PollGate::default(),
    };
    Ok((router, system))
}

impl<N: Fsm, C: Fsm> BatchSystem<N, C> {
    /// Starts `pool_size` pollers named `{name}-{i}`, each with a handler from `builder`.
    pub fn spawn<B: HandlerBuilder<N, C>>(
        &mut self,
        name: &str,
        mut builder: B,
    ) -> std::io::Result<()> {
        for i in 0..self.cfg.pool_size {
            let poller = Poller {
                normal_rx: self.normal_rx.clone(),
                control_rx: self.control_rx.clone(),
                normal_scheduler: self.router.normal_scheduler().clone(),
                handler: builder.build(),
                cfg: self.cfg.clone(),
                metrics: self.metrics.clone(),
                gate: self.gate.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || poller.run())?;
            self.workers.push(handle);
        }
        Ok(())
    }

    /// The router of this system.
    pub fn router(&self) -> &Router<N, C> {
        &self.router
    }

    /// The gate the pollers pass between rounds (closed, it freezes them).
    pub fn gate(&self) -> PollGate {
        self.gate.clone()
    }

    /// The counters so far.
    pub fn metrics(&self) -> MetricsSnapshot {
        let m = &self.metrics;
        MetricsSnapshot {
            rounds: m.rounds.load(Ordering::Relaxed),
            fsms_handled: m.fsms_handled.load(Ordering::Relaxed),
            messages: m.messages.load(Ordering::Relaxed),
            reschedules: m.reschedules.load(Ordering::Relaxed),
            max_batch: m.max_batch.load(Ordering::Relaxed),
        }
    }

    /// Stops the system: refuses new sends, lets every poller finish its round and exit,
    /// joins them, then drops every FSM (idle normal ones in address order, then the control
    /// FSM, then those still in the ready queues). Messages still queued are dropped with
    /// their FSMs. When it returns no FSM is alive. Idempotent.
    pub fn shutdown(&mut self) {
        self.gate.open(); // frozen pollers could not stop
        self.router.shutdown();
        for _ in &self.workers {
            self.router.control_scheduler().stop_one();
        }
        for worker in self.workers.drain(..) {
            // A poller that panicked has already reported it; shutdown goes on.
            let _ = worker.join();
        }
        // Close every mailbox first, so that no FSM can be taken and scheduled any more (a
        // send that won the race before is caught by the schedulers' close), then drop what
        // the ready queues still hold.
        self.router.close_all();
        self.router.normal_scheduler().close();
        self.router.control_scheduler().close();
    }
}

impl<N: Fsm, C: Fsm> Drop for BatchSystem<N, C> {
    fn drop(&mut self) {
        self.shutdown();
    }
}
