//! The filters of the in-process network: raft messages between the nodes of a cluster pass
//! filters that cut, drop, isolate or delay them, as a network would, before the product's
//! `LocalNetwork` delivers them. The network and the filters of general use are the product's
//! (`server::faults`, which region-sim's nemesis runs on too); the harness adds filters only
//! tests need.

use proto::{eraftpb::MessageType, raft_serverpb::RaftMessage};
pub use server::faults::{
    filters::{Delay, DropRate, Isolate, OneWay, Partition},
    FaultNetwork as Network, Filter, FilterId, Verdict,
};

/// The router of a store in the harness.
pub type TestRouter = server::transport::NodeRouter;

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
