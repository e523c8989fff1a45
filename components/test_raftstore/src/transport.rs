//! An in-process transport: raft messages go straight into the target store's router,
//! through filters that cut, drop or isolate, as a network would.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, RwLock},
};

use engine::rocks::{RocksEngine, RocksRaftEngine};
use proto::{eraftpb::MessageType, raft_serverpb::RaftMessage};
use raftstore::{
    transport::{Transport, TransportError},
    RaftRouter,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// The router of a store in the harness.
pub type TestRouter = RaftRouter<RocksEngine, RocksRaftEngine>;

/// Decides whether a message from store `from` to store `to` gets through.
pub trait Filter: Send + Sync {
    /// `false` drops the message.
    fn allow(&self, from: u64, to: u64, msg: &RaftMessage) -> bool;
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

/// The stores of a cluster and the filters between them, shared by every transport clone.
#[derive(Default)]
pub struct Network {
    routers: RwLock<HashMap<u64, Mutex<TestRouter>>>,
    filters: RwLock<Vec<Box<dyn Filter>>>,
}

impl Network {
    /// Makes a store reachable.
    pub fn add_store(&self, router: TestRouter) {
        let id = router.store_id();
        self.routers.write().unwrap().insert(id, Mutex::new(router));
    }

    /// Makes a store unreachable (it stopped).
    pub fn remove_store(&self, store_id: u64) {
        self.routers.write().unwrap().remove(&store_id);
    }

    /// Adds a filter.
    pub fn add_filter(&self, filter: Box<dyn Filter>) {
        self.filters.write().unwrap().push(filter);
    }

    /// Removes every filter.
    pub fn clear_filters(&self) {
        self.filters.write().unwrap().clear();
    }

    fn deliver(&self, from: u64, msg: RaftMessage) -> Result<(), TransportError> {
        let to = msg.get_to_peer().store_id;
        if !self.filters.read().unwrap().iter().all(|f| f.allow(from, to, &msg)) {
            return Ok(()); // lost on the wire: the sender cannot tell
        }
        let routers = self.routers.read().unwrap();
        let router = routers.get(&to).ok_or(TransportError::Unreachable(to))?;
        let router = router.lock().unwrap_or_else(|e| e.into_inner());
        router.send_raft_message(msg)
    }
}

/// The transport of one store.
#[derive(Clone)]
pub struct ChannelTransport {
    store_id: u64,
    network: Arc<Network>,
}

impl ChannelTransport {
    /// The transport of `store_id` on `network`.
    pub fn new(store_id: u64, network: Arc<Network>) -> Self {
        ChannelTransport { store_id, network }
    }
}

impl Transport for ChannelTransport {
    fn send(&mut self, msg: RaftMessage) -> Result<(), TransportError> {
        self.network.deliver(self.store_id, msg)
    }
}
