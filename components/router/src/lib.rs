//! The batch system of regionstore: many FSMs, a few poller threads.
//!
//! A store hosts thousands of regions, each an FSM with a mailbox. Threads per region would
//! not scale; instead a [`Router`] delivers messages to mailboxes by address, a mailbox that
//! receives mail while its FSM is idle puts the FSM on a ready queue, and a small pool of
//! pollers ([`BatchSystem`]) takes ready FSMs in batches and hands them to a [`PollHandler`].
//! Handling many FSMs per round lets the handler batch their I/O (one write batch per round).
//!
//! ```text
//!  senders ──try_send(addr)──▶ Router ──▶ mailbox (channel + FsmState)
//!                                               │ idle → notified
//!                                               ▼
//!                     ready queue (control first) ──▶ poller 0..N: begin, handle_*, end
//!                                               ▲            │
//!                                               └─ busy ─────┘ release when drained
//! ```
//!
//! Guarantees: every message reaches its FSM once and in send order (each FSM owns one
//! channel); an FSM is held by at most one poller at a time ([`state`](self) docs explain the
//! atomic state and the notify/release race); a send that cannot be delivered returns the
//! message in a [`SendError`]; a busy FSM reads at most `messages_per_tick` messages per round
//! and goes to the back of the queue after `reschedule_rounds` busy rounds, so one region
//! cannot starve the others.
//!
//! The crate knows nothing of raft: the raftstore runs two systems on it (store: peers plus
//! the store FSM as control; apply: apply FSMs).
//!
//! ```
//! use router::{create_system, drain, mailbox_channel, BasicMailbox, Config, Fsm,
//!              HandleResult, HandlerBuilder, PollHandler};
//! use crossbeam_channel::Receiver;
//!
//! struct Counter { rx: Receiver<u64>, sum: u64, done: std::sync::mpsc::Sender<u64> }
//! impl Fsm for Counter {
//!     type Message = u64;
//!     fn is_stopped(&self) -> bool { false }
//! }
//! struct Handler;
//! impl PollHandler<Counter, Counter> for Handler {
//!     fn handle_control(&mut self, _: &mut Counter) -> HandleResult { HandleResult::stop_at(0, 0) }
//!     fn handle_normal(&mut self, fsm: &mut Counter) -> HandleResult {
//!         let mut buf = Vec::new();
//!         let res = drain(&fsm.rx, 64, &mut buf);
//!         for n in buf { fsm.sum += n; if fsm.sum == 6 { fsm.done.send(fsm.sum).unwrap(); } }
//!         res
//!     }
//! }
//! struct Builder;
//! impl HandlerBuilder<Counter, Counter> for Builder {
//!     type Handler = Handler;
//!     fn build(&mut self) -> Handler { Handler }
//! }
//!
//! let (done_tx, done_rx) = std::sync::mpsc::channel();
//! let (ctl_tx, ctl_rx) = mailbox_channel(16);
//! let control = Box::new(Counter { rx: ctl_rx, sum: 0, done: done_tx.clone() });
//! let (router, mut system) = create_system(&Config::default(), ctl_tx, control).unwrap();
//! system.spawn("poller", Builder).unwrap();
//! let (tx, rx) = mailbox_channel(16);
//! router.register(1, BasicMailbox::new(tx, Box::new(Counter { rx, sum: 0, done: done_tx })));
//! for n in 1..=3 { router.try_send(1, n).unwrap(); }
//! assert_eq!(done_rx.recv().unwrap(), 6);
//! system.shutdown();
//! ```

mod config;
mod errors;
mod gate;
mod mailbox;
mod poller;
mod router;
mod state;
mod system;

pub use self::{
    config::{Config, ConfigError},
    errors::SendError,
    gate::PollGate,
    mailbox::{mailbox_channel, BasicMailbox, LooseBoundedSender, Mailbox},
    poller::{drain, HandleResult, HandlerBuilder, PollHandler},
    router::{Cadence, Router, CONTROL_ADDR, ROUTER_CACHE_CAPACITY},
    system::{create_system, BatchSystem, MetricsSnapshot, RouterAndSystem},
};

/// A finite state machine driven by the batch system.
///
/// The FSM owns the receiving half of its mailbox channel (see [`mailbox_channel`]) and reads
/// its messages when a [`PollHandler`] is given it.
pub trait Fsm: Send + 'static {
    /// Messages of this FSM.
    type Message: Send + 'static;

    /// Whether the FSM is done: the poller then closes its mailbox and drops it.
    fn is_stopped(&self) -> bool;
}
