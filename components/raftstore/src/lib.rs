//! The multi-raft store of regionstore.
//!
//! Built so far (the foundation):
//! - [`raft::storage::PeerStorage`]: one region's raft log and states over the engines,
//!   implementing `raft::Storage`, with validation and typed errors on recovery;
//! - [`bootstrap`]: the store ident and the first region of a cluster;
//! - [`Config`]: the store's tuning, validated, and the `raft::Config` it gives each peer.
//!
//! Peers, the store and apply batch systems, `StoreMeta` and admin commands are not here yet;
//! see `docs/architecture.md` for the plan.

pub mod bootstrap;
mod config;
mod errors;
pub mod raft;

pub use self::{
    config::{Config, ConfigError},
    errors::{Error, Result},
};
