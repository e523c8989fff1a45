//! Filters that make the network adversarial rather than merely broken: a seeded per-link
//! delay with jitter (so messages overtake one another), duplication and loss; and a hold that
//! keeps chosen messages until the test lets them go, so that a message can arrive exactly
//! when the sender has given up on it.

use std::{
    collections::HashMap,
    ops::RangeInclusive,
    sync::{Arc, Mutex},
    time::Duration,
};

use proto::{eraftpb::MessageType, raft_serverpb::RaftMessage};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::transport::{Filter, Verdict};

/// How uneven [`Chaos`] makes the network.
#[derive(Clone, Debug)]
pub struct ChaosConfig {
    /// Each link (an ordered pair of stores) draws its base delay from this range once.
    pub link_delay: RangeInclusive<Duration>,
    /// Each message adds a delay drawn from `0..=jitter`: messages on one link overtake
    /// each other when this exceeds the gap between them.
    pub jitter: Duration,
    /// Probability that a message is delivered twice, the copy with a jitter of its own.
    pub duplicate: f64,
    /// Probability that a message is lost.
    pub drop: f64,
}

impl Default for ChaosConfig {
    /// A few milliseconds per link, as much jitter, 2% duplicates, no loss.
    fn default() -> Self {
        ChaosConfig {
            link_delay: Duration::from_millis(1)..=Duration::from_millis(5),
            jitter: Duration::from_millis(5),
            duplicate: 0.02,
            drop: 0.0,
        }
    }
}

/// A network with per-link delays, jitter, duplication and loss, all drawn from one seeded
/// generator (the same seed gives the same draws; thread timing decides which message gets
/// which).
pub struct Chaos {
    cfg: ChaosConfig,
    state: Mutex<ChaosState>,
}

struct ChaosState {
    rng: StdRng,
    links: HashMap<(u64, u64), Duration>,
}

impl Chaos {
    /// A chaotic network drawing from `seed`.
    pub fn new(cfg: ChaosConfig, seed: u64) -> Self {
        let state = ChaosState { rng: StdRng::seed_from_u64(seed), links: HashMap::new() };
        Chaos { cfg, state: Mutex::new(state) }
    }
}

impl Filter for Chaos {
    fn verdict(&self, from: u64, to: u64, _: &RaftMessage) -> Verdict {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let ChaosState { rng, links } = &mut *state;
        if self.cfg.drop > 0.0 && rng.gen::<f64>() < self.cfg.drop {
            return Verdict::Drop;
        }
        let range = self.cfg.link_delay.clone();
        let base = *links.entry((from, to)).or_insert_with(|| rng.gen_range(range));
        let jitter = self.cfg.jitter;
        let first = base + jitter.mul_f64(rng.gen::<f64>());
        if self.cfg.duplicate > 0.0 && rng.gen::<f64>() < self.cfg.duplicate {
            return Verdict::Duplicate(first, base + jitter.mul_f64(rng.gen::<f64>()));
        }
        Verdict::Delay(first)
    }
}

/// Delays every message of one raft type (a slow path for, say, only `MsgTimeoutNow` or only
/// ReadIndex answers: long enough to arrive after the sender gave up on it).
pub struct DelayType {
    /// The type delayed.
    pub msg_type: MessageType,
    /// By how much.
    pub delay: Duration,
}

impl Filter for DelayType {
    fn verdict(&self, _: u64, _: u64, msg: &RaftMessage) -> Verdict {
        if msg.get_message().get_msg_type() == self.msg_type {
            Verdict::Delay(self.delay)
        } else {
            Verdict::Pass
        }
    }
}

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
