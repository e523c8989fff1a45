//! Background workers of a store, so that FSM handlers never block: the placement-driver
//! worker ([`pd`]), the split checker ([`split_check`]) and the snapshot generator (which
//! lives with the snapshot operation, `operation/snapshot.rs`).
//!
//! Each is a [`Runnable`] on a named thread of its own, started with [`start`]: FSM handlers
//! queue tasks through a [`Scheduler`] and never wait; the worker runs them one at a time, in
//! the order queued, and ends once every scheduler is dropped (the store stopping). Workers
//! hand what they find back to the peers through a [`PeerNotifier`], not a concrete router,
//! so a worker can be driven and checked on its own.

use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use engine::{KvEngine, RaftEngine, Snapshot};

use crate::{fsm::store::StoreRouter, msg::PeerMsg};

pub mod pd;
pub mod split_check;

/// What a worker does with its tasks.
pub trait Runnable: Send + 'static {
    /// The work it is given.
    type Task: Send + 'static;

    /// Does `task`. Runs on the worker's thread, one task at a time, in the order queued.
    fn run(&mut self, task: Self::Task);
}

/// Queues tasks for a worker. Cheap to clone; the worker ends once every clone is dropped.
pub struct Scheduler<T> {
    tx: Sender<T>,
}

impl<T> Clone for Scheduler<T> {
    fn clone(&self) -> Self {
        Scheduler { tx: self.tx.clone() }
    }
}

impl<T> Scheduler<T> {
    /// Queues `task` without waiting. Gives it back if the worker is gone (it panicked, or
    /// the store is stopping), so the caller can answer whoever waits on it.
    pub fn schedule(&self, task: T) -> Result<(), T> {
        self.tx.send(task).map_err(|e| e.0)
    }
}

/// Starts `runner` on a thread named `name`. The thread ends once every scheduler of it is
/// dropped and the tasks queued before are done.
pub fn start<R: Runnable>(
    name: impl Into<String>,
    mut runner: R,
) -> std::io::Result<(Scheduler<R::Task>, JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
        for task in rx {
            runner.run(task);
        }
    })?;
    Ok((Scheduler { tx }, thread))
}

/// Where workers send what they found: the peer of a region on this store.
pub trait PeerNotifier: Send + 'static {
    /// The kv engine's snapshot type of the peers' messages.
    type Snapshot: Snapshot;

    /// Hands `msg` to the peer of `region_id`, even past a full mailbox; false if the peer
    /// is gone.
    fn notify(&self, region_id: u64, msg: PeerMsg<Self::Snapshot>) -> bool;
}

impl<EK: KvEngine, ER: RaftEngine> PeerNotifier for StoreRouter<EK, ER> {
    type Snapshot = EK::Snapshot;

    fn notify(&self, region_id: u64, msg: PeerMsg<EK::Snapshot>) -> bool {
        self.force_send(region_id, msg).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    struct Echo(mpsc::Sender<(String, u32)>);

    impl Runnable for Echo {
        type Task = u32;

        fn run(&mut self, task: u32) {
            let name = std::thread::current().name().unwrap_or_default().to_string();
            self.0.send((name, task)).unwrap();
        }
    }

    #[test]
    fn tasks_run_in_order_on_the_named_thread_until_every_scheduler_is_gone() {
        let (tx, rx) = mpsc::channel();
        let (scheduler, thread) = start("echo-1", Echo(tx)).unwrap();
        let other = scheduler.clone();
        for i in 0..100 {
            scheduler.schedule(i).unwrap();
        }
        drop(scheduler);
        other.schedule(100).unwrap();
        drop(other);
        thread.join().unwrap(); // ends once both are dropped, with every task done
        let got: Vec<(String, u32)> = rx.try_iter().collect();
        assert_eq!(got.len(), 101);
        assert!(got.iter().all(|(name, _)| name == "echo-1"));
        assert!(got.iter().enumerate().all(|(i, (_, t))| *t == i as u32), "in order");
    }

    struct Panics;

    impl Runnable for Panics {
        type Task = ();

        fn run(&mut self, _: ()) {
            panic!("on purpose");
        }
    }

    #[test]
    fn a_task_for_a_dead_worker_is_given_back() {
        let (scheduler, thread) = start("panics", Panics).unwrap();
        scheduler.schedule(()).unwrap();
        assert!(thread.join().is_err());
        assert_eq!(scheduler.schedule(()), Err(()));
    }
}
