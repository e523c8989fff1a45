//! The atomic state of an FSM: who owns it, and whether it is scheduled.
//!
//! ```text
//!             take (sender saw IDLE)              release (poller done)
//!   IDLE  ---------------------------->  NOTIFIED  ------------------->  IDLE
//!    |                                      |
//!    +-------------- clear ----------------->+---->  DROPPED  (the FSM is dropped by whoever
//!                                                              holds it last)
//! ```
//!
//! While IDLE the FSM box sits in `data`; while NOTIFIED exactly one poller (or the ready
//! queue) holds it and `data` is null. Only the transition IDLE → NOTIFIED hands the box out,
//! so an FSM is never in two places.
//!
//! The race that matters: a sender enqueues a message and sees NOTIFIED (so it does not
//! schedule), while the poller has already decided the mailbox is empty and releases. The
//! poller therefore re-reads the mailbox length after releasing, and both sides put a SeqCst
//! fence between their write (message / status) and their read (status / length), so at least
//! one of them sees the other and the FSM is scheduled again. `loom_` tests check this.

#[cfg(feature = "loom")]
use loom::sync::atomic::{fence, AtomicPtr, AtomicUsize};
#[cfg(not(feature = "loom"))]
use std::sync::atomic::{fence, AtomicPtr, AtomicUsize};
use std::{ptr, sync::atomic::Ordering};

const NOTIFIED: usize = 0;
const IDLE: usize = 1;
const DROPPED: usize = 2;

/// Owner of an FSM between rounds.
pub(crate) struct FsmState<N> {
    status: AtomicUsize,
    data: AtomicPtr<N>,
}

// SAFETY: the box behind `data` is handed out to one thread at a time (see the module docs),
// so the state may be shared whenever the FSM itself may move between threads.
unsafe impl<N: Send> Send for FsmState<N> {}
unsafe impl<N: Send> Sync for FsmState<N> {}

impl<N> FsmState<N> {
    pub(crate) fn new(fsm: Box<N>) -> Self {
        FsmState { status: AtomicUsize::new(IDLE), data: AtomicPtr::new(Box::into_raw(fsm)) }
    }

    /// Takes the FSM out if it is idle, marking it notified. Call after enqueueing a message.
    pub(crate) fn take(&self) -> Option<Box<N>> {
        fence(Ordering::SeqCst);
        if self
            .status
            .compare_exchange(IDLE, NOTIFIED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return None;
        }
        let p = self.data.swap(ptr::null_mut(), Ordering::AcqRel);
        if p.is_null() {
            // `clear` won the race and dropped it.
            return None;
        }
        // SAFETY: `p` came from `Box::into_raw` and the swap made us its only owner.
        Some(unsafe { Box::from_raw(p) })
    }

    /// Puts back an FSM taken by [`FsmState::take`]; drops it instead if the state was
    /// cleared meanwhile. The caller must check its mailbox again afterwards.
    pub(crate) fn release(&self, fsm: Box<N>) {
        let prev = self.data.swap(Box::into_raw(fsm), Ordering::AcqRel);
        debug_assert!(prev.is_null(), "released an FSM that was not taken");
        match self.status.compare_exchange(NOTIFIED, IDLE, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => fence(Ordering::SeqCst),
            Err(_) => self.drop_data(), // DROPPED: nobody will take it again.
        }
    }

    /// Marks the state dropped and drops the FSM if it is here; a poller holding it drops it on
    /// release.
    pub(crate) fn clear(&self) {
        self.status.swap(DROPPED, Ordering::AcqRel);
        self.drop_data();
    }

    /// Whether the state was cleared.
    pub(crate) fn is_dropped(&self) -> bool {
        self.status.load(Ordering::Acquire) == DROPPED
    }

    fn drop_data(&self) {
        let p = self.data.swap(ptr::null_mut(), Ordering::AcqRel);
        if !p.is_null() {
            // SAFETY: `p` came from `Box::into_raw`; the swap made us its only owner.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

impl<N> Drop for FsmState<N> {
    fn drop(&mut self) {
        self.drop_data();
    }
}

#[cfg(all(test, feature = "loom"))]
mod tests {
    use loom::sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    };

    use super::FsmState;

    /// Counts live FSMs, and how many threads hold one at once.
    struct Probe {
        alive: Arc<AtomicUsize>,
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            self.alive.fetch_sub(1, SeqCst);
        }
    }

    fn probe(alive: &Arc<AtomicUsize>) -> Box<Probe> {
        alive.fetch_add(1, SeqCst);
        Box::new(Probe { alive: alive.clone() })
    }

    /// A poller releases while a sender enqueues: afterwards the message is either seen by
    /// the poller or the sender scheduled the FSM. It is never stranded.
    #[test]
    fn loom_release_never_strands_a_message() {
        loom::model(|| {
            let alive = Arc::new(AtomicUsize::new(0));
            let state = Arc::new(FsmState::new(probe(&alive)));
            let queued = Arc::new(AtomicUsize::new(0));
            let held = state.take().expect("idle at start"); // the poller's round
            let sender = {
                let (state, queued) = (state.clone(), queued.clone());
                loom::thread::spawn(move || {
                    queued.fetch_add(1, SeqCst); // enqueue
                    state.take() // notify
                })
            };
            // Poller: saw an empty mailbox, releases, re-checks the length.
            state.release(held);
            let poller_got = if queued.load(SeqCst) > 0 { state.take() } else { None };
            let sender_got = sender.join().unwrap();
            assert!(!(poller_got.is_some() && sender_got.is_some()), "FSM handed to two owners");
            assert!(poller_got.is_some() || sender_got.is_some(), "message stranded");
            drop((poller_got, sender_got));
            drop(state);
            assert_eq!(alive.load(SeqCst), 0, "FSM leaked");
        });
    }

    /// Clear races with a release and a take: the FSM is dropped exactly once and handed out
    /// at most once.
    #[test]
    fn loom_clear_drops_exactly_once() {
        loom::model(|| {
            let alive = Arc::new(AtomicUsize::new(0));
            let state = Arc::new(FsmState::new(probe(&alive)));
            let held = state.take().unwrap();
            let closer = {
                let state = state.clone();
                loom::thread::spawn(move || state.clear())
            };
            let taker = {
                let state = state.clone();
                loom::thread::spawn(move || state.take().map(drop).is_some())
            };
            state.release(held);
            closer.join().unwrap();
            let _ = taker.join().unwrap();
            assert!(state.is_dropped());
            assert_eq!(alive.load(SeqCst), 0, "dropped exactly once, nothing leaked");
            drop(state);
        });
    }
}

#[cfg(all(test, not(feature = "loom")))]
mod tests {
    use std::sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    };

    use super::FsmState;

    struct Probe(Arc<AtomicUsize>);
    impl Drop for Probe {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    #[test]
    fn take_release_clear() {
        let dropped = Arc::new(AtomicUsize::new(0));
        let state = FsmState::new(Box::new(Probe(dropped.clone())));
        let fsm = state.take().unwrap();
        assert!(state.take().is_none(), "taken once");
        state.release(fsm);
        let fsm = state.take().unwrap();
        state.clear();
        assert_eq!(dropped.load(SeqCst), 0, "held FSM survives clear");
        state.release(fsm);
        assert_eq!(dropped.load(SeqCst), 1, "release after clear drops it");
        assert!(state.take().is_none());
        drop(state);
        assert_eq!(dropped.load(SeqCst), 1);
    }
}
