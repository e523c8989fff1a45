//! regionstore over gRPC.
//!
//! - [`codec`]: protobuf 2 messages in tonic (one protobuf stack: raft 0.7 speaks it).
//! - [`service`]: the stubs `build.rs` writes (`Raft`, with its `BatchRaft` and `Snapshot`
//!   streams; `Kv`, the client calls a server serves).
//! - [`raft_service`]: the receiving side, handing messages to a store's [`MessageSink`].
//! - [`raft_client`]: the sending side, a [`raftstore::transport::Transport`] that batches a
//!   round's messages per peer store and reconnects with back-off; snapshots go on a
//!   `Snapshot` stream of their own (`snapshot`).
//! - [`pd`]: the placement driver's messages as `pd_client`'s types, both ways;
//!   [`pd_client`]: [`GrpcPdClient`], a `PdClient` that calls the active `regionstore-pd`.

pub mod codec;
pub mod config;
pub mod pd;
pub mod pd_client;
pub mod raft_client;
pub mod raft_service;
mod snapshot;

pub use config::{ConfigError, RaftClientConfig};
pub use pd_client::{GrpcPdClient, PdClientConfig};
pub use raft_client::{AddressResolver, ClientStats, RaftClient, ResolveError, StaticResolver};
pub use raft_service::{server_builder, MessageSink, RaftService, ServiceStats};

/// Stubs written by `build.rs` (tonic-build's manual builder).
#[allow(clippy::all, missing_docs)]
pub mod service {
    include!(concat!(env!("OUT_DIR"), "/regionstore.Raft.rs"));
    include!(concat!(env!("OUT_DIR"), "/regionstore.Kv.rs"));
    include!(concat!(env!("OUT_DIR"), "/regionstore.Pd.rs"));
}
