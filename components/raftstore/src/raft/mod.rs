//! Per-peer raft state. Today: [`storage::PeerStorage`], the raft log storage of one peer.
//! The `Peer` that drives a `RawNode` over it, and the apply state, come with the raftstore
//! core.

pub mod storage;
