//! Per-peer raft state: the [`peer::Peer`] with its `RawNode`, its [`storage::PeerStorage`],
//! and the [`apply::Apply`] state of the apply side.

pub mod apply;
pub mod entry_cache;
pub mod peer;
pub mod storage;
