//! How a node's raft messages travel, and the in-process network: the nodes of one process
//! (a simulator, an embedded test cluster) reach each other through channels.
//!
//! ```text
//! node A: Transport::send (queued) ── flush, once or twice a round ──▶ LocalNetwork
//!         ──(interceptor, if set: filters, delays; else each store's messages under one
//!         lock)──▶ node B's RaftRouter ──▶ peer mailbox (or B's store FSM)
//! ```

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use engine::rocks::{RocksEngine, RocksRaftEngine};
use proto::raft_serverpb::RaftMessage;
use raftstore::{
    transport::{Transport, TransportError, Undelivered},
    RaftRouter,
};

/// The router of a node's store.
pub type NodeRouter = RaftRouter<RocksEngine, RocksRaftEngine>;

/// What a node is opened on: the sending side of its store, and the receiving side that hands
/// it messages once it runs.
pub trait NodeTransport: Send + Sync + 'static {
    /// The sending side, for the store `store_id`.
    type Sender: Transport;

    /// The sending side of the node of `store_id`.
    fn sender(&self, store_id: u64) -> Self::Sender;

    /// The node of `store_id` runs: messages for it go to `router` from now on.
    fn attach(&self, store_id: u64, router: NodeRouter);

    /// The node of `store_id` stopped: messages for it fail as unreachable.
    fn detach(&self, store_id: u64);
}

/// Decides what becomes of a message on the in-process network (a test's filters and delays).
/// It delivers what passes with [`LocalNetwork::deliver_now`], now or later.
pub trait Intercept: Send + Sync {
    /// `msg` from store `from` is on the wire.
    fn send(
        &self,
        net: &Arc<LocalNetwork>,
        from: u64,
        msg: RaftMessage,
    ) -> Result<(), TransportError>;
}

/// The nodes of one process, by store id.
#[derive(Default)]
pub struct LocalNetwork {
    routers: RwLock<HashMap<u64, Mutex<NodeRouter>>>,
    interceptor: RwLock<Option<Arc<dyn Intercept>>>,
}

impl LocalNetwork {
    /// An empty network.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Routes every message through `interceptor` (or, with `None`, straight to its node).
    pub fn set_interceptor(&self, interceptor: Option<Arc<dyn Intercept>>) {
        *self.interceptor.write().unwrap_or_else(|e| e.into_inner()) = interceptor;
    }

    /// Hands `msg` to the node of its target store now, past any interceptor.
    pub fn deliver_now(&self, msg: RaftMessage) -> Result<(), TransportError> {
        let to = msg.get_to_peer().store_id;
        let routers = self.routers.read().unwrap_or_else(|e| e.into_inner());
        let router = routers.get(&to).ok_or(TransportError::Unreachable(to))?;
        let router = router.lock().unwrap_or_else(|e| e.into_inner());
        router.send_raft_message(msg)
    }

    /// Ids of the nodes that run.
    pub fn stores(&self) -> Vec<u64> {
        let mut ids: Vec<u64> =
            self.routers.read().unwrap_or_else(|e| e.into_inner()).keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Delivers a round's messages from store `from`: through the interceptor one by one
    /// if one is set, otherwise each target store's messages under one lock, in the order
    /// they were sent. What could not be delivered goes to `undelivered`.
    fn deliver(
        self: &Arc<Self>,
        from: u64,
        msgs: &mut Vec<RaftMessage>,
        undelivered: &mut Vec<Undelivered>,
    ) {
        let interceptor = self.interceptor.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(i) = interceptor {
            for msg in msgs.drain(..) {
                let report = Undelivered::of(&msg);
                if i.send(self, from, msg).is_err() {
                    undelivered.push(report);
                }
            }
            return;
        }
        msgs.sort_by_key(|m| m.get_to_peer().store_id); // stable: per store, in order
        let routers = self.routers.read().unwrap_or_else(|e| e.into_inner());
        let mut msgs = msgs.drain(..).peekable();
        while let Some(first) = msgs.next() {
            let to = first.get_to_peer().store_id;
            let router = routers.get(&to).map(|r| r.lock().unwrap_or_else(|e| e.into_inner()));
            let mut one = |msg: RaftMessage| {
                let report = Undelivered::of(&msg);
                if router.as_ref().is_none_or(|r| r.send_raft_message(msg).is_err()) {
                    undelivered.push(report);
                }
            };
            one(first);
            while let Some(msg) = msgs.next_if(|m| m.get_to_peer().store_id == to) {
                one(msg);
            }
        }
    }
}

impl NodeTransport for Arc<LocalNetwork> {
    type Sender = LocalTransport;

    fn sender(&self, store_id: u64) -> LocalTransport {
        LocalTransport { store_id, net: self.clone(), queue: Vec::new() }
    }

    fn attach(&self, store_id: u64, router: NodeRouter) {
        self.routers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(store_id, Mutex::new(router));
    }

    fn detach(&self, store_id: u64) {
        self.routers.write().unwrap_or_else(|e| e.into_inner()).remove(&store_id);
    }
}

/// The sending side of one node on a [`LocalNetwork`]: it queues a round's messages and
/// delivers them when the round flushes, each target store's together.
pub struct LocalTransport {
    store_id: u64,
    net: Arc<LocalNetwork>,
    queue: Vec<RaftMessage>,
}

impl Clone for LocalTransport {
    /// Another sender of the same node, with a queue of its own.
    fn clone(&self) -> Self {
        LocalTransport { store_id: self.store_id, net: self.net.clone(), queue: Vec::new() }
    }
}

impl Transport for LocalTransport {
    fn send(&mut self, msg: RaftMessage) -> Result<(), TransportError> {
        self.queue.push(msg);
        Ok(())
    }

    fn flush(&mut self, undelivered: &mut Vec<Undelivered>) {
        if !self.queue.is_empty() {
            self.net.deliver(self.store_id, &mut self.queue, undelivered);
            if self.queue.capacity() > 4096 {
                self.queue = Vec::new(); // a burst's buffer goes back
            }
        }
    }
}
