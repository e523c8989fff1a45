//! The multi-raft store of regionstore.
//!
//! A store runs one raft group per region it holds a peer of, on two batch systems (see the
//! `router` crate): the **store system** drives `PeerFsm`s (raft messages, commands, ticks;
//! one raft-engine write per round) and the `StoreFsm`; the **apply system** drives
//! `ApplyFsm`s that execute committed entries against the kv engine (one write batch per
//! round) and answer the proposals.
//!
//! ```text
//! client ─RaftCommand─▶ PeerFsm ─propose─▶ raft ─ready─▶ log batch ─persist─▶ send
//!                                             │ committed entries
//!                                             ▼
//!                       PeerFsm ◀─ApplyRes── ApplyFsm ──response──▶ client
//! ```
//!
//! Layout: [`fsm`] is thin glue; [`raft`] holds the peer, its storage and the apply state;
//! [`operation`] has one module per feature. Built so far: bootstrap and recovery, writes
//! (put, delete, delete range) with epoch and key checks at propose and apply, typed client
//! errors, raft persistence and replication, leader transfer, log GC, membership changes,
//! snapshots, peers created on demand and destroyed on removal, region heartbeats to the
//! placement driver and its operators, split (proposed by the leader's size check or asked
//! for, applied atomically with its new peers), and reads: the leader lease on the peer,
//! delegates published to `StoreMeta` for the local reader, lease reads, batched ReadIndex,
//! follower reads, and the public [`StoreReader::async_snapshot`]. Not yet: merge, store
//! heartbeats. Metrics: [`metrics`].

// Fail points are for tests: a release build with them on would let anyone who can set the
// environment pause a store.
#[cfg(all(feature = "failpoints", not(debug_assertions)))]
compile_error!("the failpoints feature is for tests; build release binaries without it");

pub mod batch;
pub mod bootstrap;
mod config;
mod errors;
pub mod fsm;
pub mod metrics;
pub mod msg;
pub mod operation;
pub mod raft;
pub mod reader;
mod store;
pub mod store_meta;
pub mod transport;
pub mod worker;

pub use self::{
    config::{Config, ConfigError},
    errors::{Error, Result},
    reader::{ReadContext, StoreReader},
    store::{Engines, RaftRouter, RaftStore, StoreServices},
};
pub use router::PollGate;
