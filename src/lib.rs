//! regionstore: a multi-raft region store modelled on TiKV's raftstore.
//!
//! The components, re-exported: the protocol messages ([`proto`]), the storage engines
//! ([`engine`]), the store ([`raftstore`]: `RaftStore::start`, `RaftRouter` for commands
//! and raft messages, `StoreReader::async_snapshot` for reads) and the read path
//! ([`local_reader`]). The `region-sim` binary runs a cluster of stores in one process;
//! `storage-demo` drives one region's raft log storage directly.
//!
//! Reading from an embedding program:
//!
//! ```text
//! let mut reader = store.reader();                      // one per thread
//! let ctx = ReadContext::new(&region, &leader_peer);    // region epoch and the peer
//! reader.async_snapshot(&ctx, |res| match res {
//!     Ok(snap) => { snap.get(b"key"); }                  // bounded to the region
//!     Err(e) if e.is_retryable() => { /* route again: NotLeader, EpochNotMatch, ... */ }
//!     Err(e) => { /* give up */ }
//! });
//! ```

pub mod linearizability;

pub use engine;
pub use local_reader;
pub use proto;
pub use raftstore;
