//! How a node's raft messages travel, and the in-process network: the nodes of one process
//! (a simulator, an embedded test cluster) reach each other through channels.
//!
//! ```text
//! node A: Transport::send ──▶ LocalNetwork ──(interceptor, if set: filters, delays)──▶
//!         deliver_now ──▶ node B's RaftRouter ──▶ peer mailbox (or B's store FSM)
//! ```

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use engine::rocks::{RocksEngine, RocksRaftEngine};
use proto::raft_serverpb::RaftMessage;
use raftstore::{
    transport::{Transport, TransportError},
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

    fn send(self: &Arc<Self>, from: u64, msg: RaftMessage) -> Result<(), TransportError> {
        let interceptor = self.interceptor.read().unwrap_or_else(|e| e.into_inner()).clone();
        match interceptor {
            Some(i) => i.send(self, from, msg),
            None => self.deliver_now(msg),
        }
    }
}

impl NodeTransport for Arc<LocalNetwork> {
    type Sender = LocalTransport;

    fn sender(&self, store_id: u64) -> LocalTransport {
        LocalTransport { store_id, net: self.clone() }
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

/// The sending side of one node on a [`LocalNetwork`].
#[derive(Clone)]
pub struct LocalTransport {
    store_id: u64,
    net: Arc<LocalNetwork>,
}

impl Transport for LocalTransport {
    fn send(&mut self, msg: RaftMessage) -> Result<(), TransportError> {
        self.net.send(self.store_id, msg)
    }
}
