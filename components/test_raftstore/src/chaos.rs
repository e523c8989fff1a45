//! Filters that make the network adversarial rather than merely broken: a seeded per-link
//! delay with jitter (so messages overtake one another), duplication and loss; and a hold that
//! keeps chosen messages until the test lets them go, so that a message can arrive exactly
//! when the sender has given up on it.

use std::sync::{Arc, Mutex};

use proto::raft_serverpb::RaftMessage;
pub use server::faults::filters::{Chaos, ChaosConfig, DelayType};

use crate::transport::Filter;

/// Messages a [`Hold`] kept back, for the test to release or drop.
#[derive(Clone, Default)]
pub struct Held(Arc<Mutex<Vec<RaftMessage>>>);

impl Held {
    /// How many messages are held.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no message is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any held message satisfies `pred`.
    pub fn peek(&self, pred: impl Fn(&RaftMessage) -> bool) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).iter().any(pred)
    }

    /// Holds `msg` (for filters of a test's own that keep messages).
    pub fn push(&self, msg: RaftMessage) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(msg);
    }

    /// Takes the held messages, oldest first.
    pub fn take(&self) -> Vec<RaftMessage> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Which messages a [`Hold`] keeps: (from store, to store, message).
pub type HoldPredicate = Box<dyn Fn(u64, u64, &RaftMessage) -> bool + Send + Sync>;

/// Keeps every message `pred` picks out of the network until the test takes it from the
/// [`Held`] handle (and delivers it with `Network::deliver_now`, or not at all).
pub struct Hold {
    pred: HoldPredicate,
    held: Held,
}

impl Hold {
    /// A hold of the messages `pred` picks, and the handle to its catch.
    pub fn new(
        pred: impl Fn(u64, u64, &RaftMessage) -> bool + Send + Sync + 'static,
    ) -> (Self, Held) {
        let held = Held::default();
        (Hold { pred: Box::new(pred), held: held.clone() }, held)
    }
}

impl Filter for Hold {
    fn allow(&self, from: u64, to: u64, msg: &RaftMessage) -> bool {
        if !(self.pred)(from, to, msg) {
            return true;
        }
        self.held.push(msg.clone());
        false
    }
}
