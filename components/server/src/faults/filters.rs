//! Filters of general use: delays, partitions, isolation, one-way cuts, seeded loss, a
//! chaotic network (per-link delay with jitter, duplication, loss) and a slow message type.

use std::{
    collections::{HashMap, HashSet},
    ops::RangeInclusive,
    sync::Mutex,
    time::Duration,
};

use proto::{eraftpb::MessageType, raft_serverpb::RaftMessage};
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::{Filter, Verdict};

/// Delays every message between two stores (either store `None` means any), both ways.
pub struct Delay {
    /// One end, or any.
    pub a: Option<u64>,
    /// The other end, or any.
    pub b: Option<u64>,
    /// How long.
    pub delay: Duration,
}

impl Filter for Delay {
    fn verdict(&self, from: u64, to: u64, _: &RaftMessage) -> Verdict {
        let is = |end: Option<u64>, s: u64| end.is_none_or(|e| e == s);
        if is(self.a, from) && is(self.b, to) || is(self.a, to) && is(self.b, from) {
            Verdict::Delay(self.delay)
        } else {
            Verdict::Pass
        }
    }
}

/// Cuts every link between two groups of stores, both ways.
pub struct Partition {
    a: HashSet<u64>,
    b: HashSet<u64>,
}

impl Partition {
    /// Stores in `a` and stores in `b` cannot talk.
    pub fn new(a: &[u64], b: &[u64]) -> Self {
        Partition { a: a.iter().copied().collect(), b: b.iter().copied().collect() }
    }
}

impl Filter for Partition {
    fn allow(&self, from: u64, to: u64, _: &RaftMessage) -> bool {
        !(self.a.contains(&from) && self.b.contains(&to)
            || self.b.contains(&from) && self.a.contains(&to))
    }
}

/// Cuts a store off from every other, both ways.
pub struct Isolate(pub u64);

impl Filter for Isolate {
    fn allow(&self, from: u64, to: u64, _: &RaftMessage) -> bool {
        from != self.0 && to != self.0
    }
}

/// Drops messages from `from` to `to` only (one direction).
pub struct OneWay {
    /// Sending store.
    pub from: u64,
    /// Receiving store.
    pub to: u64,
}

impl Filter for OneWay {
    fn allow(&self, from: u64, to: u64, _: &RaftMessage) -> bool {
        !(from == self.from && to == self.to)
    }
}

/// Drops each message with probability `rate`, from a seeded generator (replayable).
pub struct DropRate {
    rate: f64,
    rng: Mutex<StdRng>,
}

impl DropRate {
    /// Drops `rate` (0.0..=1.0) of all messages.
    pub fn new(rate: f64, seed: u64) -> Self {
        DropRate { rate, rng: Mutex::new(StdRng::seed_from_u64(seed)) }
    }
}

impl Filter for DropRate {
    fn allow(&self, _: u64, _: u64, _: &RaftMessage) -> bool {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        rng.gen::<f64>() >= self.rate
    }
}

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
