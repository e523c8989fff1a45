//! regionstore: a multi-raft region store modelled on TiKV's raftstore.
//!
//! This crate will hold the embedding facade (a `Node` with `async_write` and
//! `async_snapshot`) and the `region-sim` simulator. Today it re-exports the components that
//! exist: the protocol messages, the storage engines and the raft log storage. The
//! `storage-demo` binary shows them working together.

pub use engine;
pub use proto;
pub use raftstore;
