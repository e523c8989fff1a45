//! The filters of the in-process network: raft messages between the nodes of a cluster pass
//! filters that cut, drop, isolate or delay them, as a network would, before the product's
//! `LocalNetwork` delivers them.

use std::{
    collections::{BinaryHeap, HashSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, RwLock, Weak,
    },
    time::{Duration, Instant},
};

use proto::{eraftpb::MessageType, raft_serverpb::RaftMessage};
use raftstore::transport::TransportError;
use rand::{rngs::StdRng, Rng, SeedableRng};
use server::transport::{Intercept, LocalNetwork};

/// The router of a store in the harness.
pub type TestRouter = server::transport::NodeRouter;

/// What becomes of a message on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered now.
    Pass,
    /// Lost.
    Drop,
    /// Delivered after this long (messages may overtake each other, as on a network).
    Delay(Duration),
    /// Delivered twice: after the first delay, and a copy after the second.
    Duplicate(Duration, Duration),
}

/// Decides what happens to a message from store `from` to store `to`.
pub trait Filter: Send + Sync {
    /// `false` drops the message. Filters that only drop implement this.
    fn allow(&self, _from: u64, _to: u64, _msg: &RaftMessage) -> bool {
        true
    }

    /// The verdict; by default [`Filter::allow`] decides between pass and drop.
    fn verdict(&self, from: u64, to: u64, msg: &RaftMessage) -> Verdict {
        if self.allow(from, to, msg) {
            Verdict::Pass
        } else {
            Verdict::Drop
        }
    }
}

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

/// Cuts one region's peer on a store off from the region's other peers, both ways (the
/// store's other regions keep talking).
pub struct IsolateRegion {
    /// The region.
    pub region: u64,
    /// The store cut off from it.
    pub store: u64,
}

impl Filter for IsolateRegion {
    fn allow(&self, from: u64, to: u64, msg: &RaftMessage) -> bool {
        msg.region_id != self.region || (from != self.store && to != self.store)
    }
}

/// Drops GC (tombstone) messages: a removed peer learns of its removal only from its log.
pub struct DropGc;

impl Filter for DropGc {
    fn allow(&self, _: u64, _: u64, msg: &RaftMessage) -> bool {
        !msg.is_tombstone
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

/// Drops messages of one region, optionally only some raft message types.
pub struct RegionPackets {
    /// The region.
    pub region_id: u64,
    /// Types to drop; empty drops all.
    pub types: Vec<MessageType>,
}

impl Filter for RegionPackets {
    fn allow(&self, _: u64, _: u64, msg: &RaftMessage) -> bool {
        msg.region_id != self.region_id
            || !(self.types.is_empty() || self.types.contains(&msg.get_message().get_msg_type()))
    }
}

/// A delayed message and when it is due.
struct Delayed {
    due: Instant,
    seq: u64,
    msg: RaftMessage,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq)) // earliest first in a max-heap
    }
}

/// The filters between the nodes of a cluster, over the product's [`LocalNetwork`]: every
/// message passes the filters (dropped, delayed, duplicated) before it is delivered.
pub struct Network {
    local: Arc<LocalNetwork>,
    filters: RwLock<Vec<Box<dyn Filter>>>,
    delayed: Mutex<Option<crossbeam_channel::Sender<Delayed>>>,
    delay_seq: AtomicU64,
}

/// What the local network calls: the filters of a [`Network`] it does not own.
struct Filters(Weak<Network>);

impl Intercept for Filters {
    fn send(
        &self,
        _: &Arc<LocalNetwork>,
        from: u64,
        msg: RaftMessage,
    ) -> Result<(), TransportError> {
        match self.0.upgrade() {
            Some(network) => network.deliver(from, msg),
            None => Ok(()), // the cluster is going away: lost, as on a network
        }
    }
}

impl Network {
    /// A network with no filter.
    pub fn new() -> Arc<Self> {
        let network = Arc::new(Network {
            local: LocalNetwork::new(),
            filters: RwLock::default(),
            delayed: Mutex::default(),
            delay_seq: AtomicU64::new(0),
        });
        network.local.set_interceptor(Some(Arc::new(Filters(Arc::downgrade(&network)))));
        network
    }

    /// The product's network under the filters, for nodes to open on.
    pub fn local(&self) -> Arc<LocalNetwork> {
        self.local.clone()
    }

    /// Queues `msg` for delivery after `delay`, on a timer thread started on first use. The
    /// thread holds the network weakly and ends with it.
    fn deliver_later(self: &Arc<Self>, msg: RaftMessage, delay: Duration) {
        let mut slot = self.delayed.lock().unwrap_or_else(|e| e.into_inner());
        let tx = slot.get_or_insert_with(|| {
            let (tx, rx) = crossbeam_channel::unbounded::<Delayed>();
            let network = Arc::downgrade(self);
            std::thread::Builder::new()
                .name("net-delay".into())
                .spawn(move || run_delays(rx, network))
                .expect("spawn the delay thread");
            tx
        });
        let seq = self.delay_seq.fetch_add(1, Ordering::Relaxed);
        let _ = tx.send(Delayed { due: Instant::now() + delay, seq, msg });
    }

    /// Adds a filter.
    pub fn add_filter(&self, filter: Box<dyn Filter>) {
        self.filters.write().unwrap().push(filter);
    }

    /// Removes every filter.
    pub fn clear_filters(&self) {
        self.filters.write().unwrap().clear();
    }

    fn deliver(self: &Arc<Self>, from: u64, msg: RaftMessage) -> Result<(), TransportError> {
        let to = msg.get_to_peer().store_id;
        let (mut delay, mut copy) = (Duration::ZERO, None::<Duration>);
        for f in self.filters.read().unwrap().iter() {
            match f.verdict(from, to, &msg) {
                Verdict::Pass => {}
                Verdict::Drop => return Ok(()), // lost on the wire: the sender cannot tell
                Verdict::Delay(d) => delay = delay.max(d),
                Verdict::Duplicate(d, again) => {
                    delay = delay.max(d);
                    copy = Some(copy.map_or(again, |c| c.max(again)));
                }
            }
        }
        if let Some(again) = copy {
            self.deliver_later(msg.clone(), again);
        }
        if !delay.is_zero() {
            self.deliver_later(msg, delay);
            return Ok(());
        }
        self.deliver_now(msg)
    }

    /// Hands `msg` to its node now, past every filter (a held message let go).
    pub fn deliver_now(&self, msg: RaftMessage) -> Result<(), TransportError> {
        self.local.deliver_now(msg)
    }
}

fn run_delays(rx: crossbeam_channel::Receiver<Delayed>, network: Weak<Network>) {
    let mut heap = BinaryHeap::new();
    loop {
        let timeout = heap.peek().map_or(Duration::from_millis(100), |d: &Delayed| {
            d.due.saturating_duration_since(Instant::now())
        });
        match rx.recv_timeout(timeout) {
            Ok(d) => heap.push(d),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
        let Some(network) = network.upgrade() else { return };
        while heap.peek().is_some_and(|d| d.due <= Instant::now()) {
            let d = heap.pop().expect("peeked");
            let _ = network.deliver_now(d.msg); // a store that went away: lost, as on a network
        }
    }
}
