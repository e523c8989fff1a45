//! In-process cluster harness of regionstore.
//!
//! A [`Cluster`] runs N stores in one process, each on its own RocksDB engines in a
//! temporary directory, talking through a [`transport::Network`] whose filters
//! partition, isolate, cut one way, drop messages at a seeded rate, drop by region and message
//! type, or delay messages (delivered later by a timer thread, possibly out of order);
//! [`chaos`] adds a seeded per-link delay with jitter, duplication and loss, and a hold that
//! keeps chosen messages until the test lets them go. Ticks are short
//! ([`raftstore::Config::for_tests`]: 10 ms), so elections take tens of milliseconds and
//! every wait helper is bounded.
//!
//! The stores are the product's `server::Node`s on the product's `LocalNetwork`; the harness
//! adds only bootstrapping of chosen topologies, the filters, and assertions.
//! [`Cluster::client`] is the product's client (`client::Client`).
//!
//! [`etcd::Etcd`] is a real etcd on loopback; [`processes::ProcessCluster`] runs the
//! product's binaries (`regionstore-pd`, `regionstore-server`) as processes over it.
//!
//! Set `REGIONSTORE_LOG=1` to see the stores' logs.

pub mod chaos;
mod cluster;
pub mod etcd;
pub mod processes;
pub mod transport;

/// A store's reader in the harness.
pub type TestReader =
    raftstore::StoreReader<engine::rocks::RocksEngine, engine::rocks::RocksRaftEngine>;
pub use self::cluster::{
    config_with_election_ticks, delete_request, follower_of, get_request, new_request, put_request,
    raft_message, test_logger, wait_until, Cluster, CLUSTER_ID, FIRST_REGION,
};
