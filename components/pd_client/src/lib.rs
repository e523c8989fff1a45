//! The placement driver (PD) of regionstore.
//!
//! Stores ask the placement driver for ids, report their regions in heartbeats, and receive
//! operators (add or remove a peer, transfer a leader) in the answers. Clients ask it which
//! region holds a key. [`PdClient`] is what a store and a client depend on; [`MemPd`] is the
//! placement driver's logic: in memory alone for the cluster harness and the simulator (one
//! shared instance plays the role of the PD service), or over a [`MetaStore`] in the
//! `regionstore-pd` process, which keeps its metadata in etcd.
//!
//! Region bookkeeping follows the epoch rule: a report whose region epoch is older than what
//! the placement driver knows is refused as stale; a newer one replaces every region it
//! overlaps (after a split, the parent's old range is reclaimed by whichever half reports
//! first).

mod check;
mod errors;
mod mem;
mod meta;

use proto::metapb;

pub use self::{
    check::MAX_PEERS,
    errors::{Error, Result},
    mem::{MemPd, MemPdConfig},
    meta::{Meta, MetaStore},
};

/// What a region heartbeat reports besides the region itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RegionStats {
    /// Approximate bytes of the region's data, if measured.
    pub approximate_size: Option<u64>,
    /// Approximate number of keys, if measured.
    pub approximate_keys: Option<u64>,
    /// Peers the leader sees as down (no response for a while).
    pub down_peers: Vec<metapb::Peer>,
    /// Peers still catching up (learners being added, peers waiting for a snapshot).
    pub pending_peers: Vec<metapb::Peer>,
}

/// What a store heartbeat reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// The reporting store.
    pub store_id: u64,
    /// Regions with a peer on the store.
    pub region_count: u64,
    /// Regions whose leader is on the store.
    pub leader_count: u64,
    /// Whether the store is busy (for example its mailboxes are full).
    pub is_busy: bool,
}

/// A change the placement driver asks a region's leader to make.
#[derive(Clone, Debug, PartialEq)]
pub enum Operator {
    /// Add this voter.
    AddPeer(metapb::Peer),
    /// Add this learner.
    AddLearner(metapb::Peer),
    /// Remove this peer.
    RemovePeer(metapb::Peer),
    /// Hand leadership to this peer.
    TransferLeader(metapb::Peer),
    /// Merge this region into `target`, an adjacent region with peers on the same stores
    /// (given to the source's leader).
    Merge {
        /// The target as the placement driver knows it.
        target: metapb::Region,
    },
}

/// Ids for one new region of a split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitIds {
    /// Id of the new region.
    pub new_region_id: u64,
    /// One new peer id per peer of the parent, in the parent's peer order.
    pub new_peer_ids: Vec<u64>,
}

/// The placement driver as a store or a client sees it. Implementations are shared between
/// threads.
pub trait PdClient: Send + Sync {
    /// The cluster's id.
    fn cluster_id(&self) -> u64;

    /// A new id, unique in the cluster (for stores, regions and peers); ids only grow.
    fn alloc_id(&self) -> Result<u64>;

    /// Records the first store and the first region of a new cluster.
    /// Errors: `AlreadyBootstrapped` if a first region exists.
    fn bootstrap_cluster(&self, store: metapb::Store, region: metapb::Region) -> Result<()>;

    /// Whether the cluster has a first region.
    fn is_cluster_bootstrapped(&self) -> Result<bool>;

    /// Adds or updates a store.
    fn put_store(&self, store: metapb::Store) -> Result<()>;

    /// The store with this id. Errors: `StoreNotFound`.
    fn get_store(&self, store_id: u64) -> Result<metapb::Store>;

    /// Every store, by id.
    fn get_all_stores(&self) -> Result<Vec<metapb::Store>>;

    /// The region holding user key `key`, and its leader if known.
    /// Errors: `RegionNotFound` if no region holds it.
    fn get_region(&self, key: &[u8]) -> Result<(metapb::Region, Option<metapb::Peer>)>;

    /// The region with this id, and its leader if known. Errors: `RegionNotFound`.
    fn get_region_by_id(&self, region_id: u64) -> Result<(metapb::Region, Option<metapb::Peer>)>;

    /// A leader reports its region. Returns the operator the leader should carry out, if any.
    /// Errors: `StaleRegion` if the placement driver knows a newer epoch of it.
    fn region_heartbeat(
        &self,
        term: u64,
        region: metapb::Region,
        leader: metapb::Peer,
        stats: RegionStats,
    ) -> Result<Option<Operator>>;

    /// A store reports its state. Errors: `StoreNotFound` for an unknown store.
    fn store_heartbeat(&self, stats: StoreStats) -> Result<()>;

    /// Ids for splitting `region` into `count` more regions.
    fn ask_batch_split(&self, region: &metapb::Region, count: usize) -> Result<Vec<SplitIds>>;

    /// A leader reports the regions a split produced (a heartbeat for each).
    fn report_batch_split(&self, regions: Vec<metapb::Region>) -> Result<()>;
}
