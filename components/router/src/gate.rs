//! A gate the pollers of a batch system pass between rounds: closed, it holds them (a fault
//! simulation freezing a store's threads, as a long GC pause or a SIGSTOP would), open again,
//! it lets them go on where they were. Open by default; a shutdown opens it.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Condvar, Mutex,
};

/// A gate shared by the pollers of one batch system. Cloning gives another handle to it.
#[derive(Clone, Default)]
pub struct PollGate(Arc<GateState>);

#[derive(Default)]
struct GateState {
    /// The fast path: pollers read only this while the gate is open.
    closed: AtomicBool,
    lock: Mutex<()>,
    opened: Condvar,
}

impl PollGate {
    /// Holds every poller at its next round boundary (a round under way finishes).
    pub fn close(&self) {
        let _guard = self.0.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.0.closed.store(true, Ordering::SeqCst);
    }

    /// Lets the pollers go on.
    pub fn open(&self) {
        let _guard = self.0.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.0.closed.store(false, Ordering::SeqCst);
        self.0.opened.notify_all();
    }

    /// Whether the gate holds the pollers.
    pub fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::SeqCst)
    }

    /// Returns at once while open; otherwise waits until opened.
    pub(crate) fn pass(&self) {
        if !self.is_closed() {
            return;
        }
        let mut guard = self.0.lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.is_closed() {
            guard = self.0.opened.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::mpsc, time::Duration};

    use super::*;

    #[test]
    fn a_closed_gate_holds_until_opened() {
        let gate = PollGate::default();
        gate.pass(); // open: passes at once
        gate.close();
        let (tx, rx) = mpsc::channel();
        let held = gate.clone();
        let t = std::thread::spawn(move || {
            held.pass();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err(), "passed a closed gate");
        gate.open();
        rx.recv_timeout(Duration::from_secs(5)).expect("let go once open");
        t.join().unwrap();
    }
}
