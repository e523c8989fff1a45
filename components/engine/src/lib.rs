//! Storage engines of regionstore.
//!
//! A store keeps two engines:
//! - the **kv engine** ([`KvEngine`]): user data (column family [`CF_DEFAULT`]) and the region
//!   meta that must change atomically with it ([`CF_META`]: apply states, region states, the
//!   store ident). Reads go through cheap, shareable point-in-time [`Snapshot`]s.
//! - the **raft engine** ([`RaftEngine`]): every region's raft log and raft state.
//!
//! [`keys`] defines how keys of both are encoded and why they sort as they do. [`rocks`] holds
//! the RocksDB implementations; [`conformance`] is the suite every implementation must pass.
//!
//! Errors are typed ([`Error`]): bad bytes on disk are `Corruption`, a hole in a raft log is
//! `LogGap`, an unusable directory is `BadPath`. Nothing here panics on bad data.

pub mod conformance;
mod errors;
pub mod keys;
pub mod rocks;
mod traits;

pub use self::{
    errors::{Error, Result},
    traits::{
        EngineIterator, IterOptions, Iterable, KvEngine, Mutable, Peekable, RaftEngine,
        RaftLogBatch, RangeStats, Snapshot, WriteBatch, WriteOptions,
    },
};

/// Column family of user data.
pub const CF_DEFAULT: &str = "default";
/// Column family of region meta in the kv engine (apply state, region state, store ident).
pub const CF_META: &str = "meta";
/// Column families of the kv engine.
pub const KV_CFS: &[&str] = &[CF_DEFAULT, CF_META];
/// Column families a client may write (`CF_META` is the store's own).
pub const DATA_CFS: &[&str] = &[CF_DEFAULT];
