//! In-process cluster harness of regionstore.
//!
//! A [`Cluster`] runs N stores in one process, each on its own RocksDB engines in a
//! temporary directory, talking through a [`transport::ChannelTransport`] whose filters
//! partition, isolate, cut one way or drop messages at a seeded rate. Ticks are short
//! ([`raftstore::Config::for_tests`]: 10 ms), so elections take tens of milliseconds and
//! every wait helper is bounded.
//!
//! Set `REGIONSTORE_LOG=1` to see the stores' logs.

mod cluster;
pub mod transport;

pub use self::cluster::{
    delete_request, new_request, put_request, test_logger, Cluster, CLUSTER_ID, FIRST_REGION,
};
