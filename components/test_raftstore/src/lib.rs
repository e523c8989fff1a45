//! In-process cluster harness of regionstore.
//!
//! A [`Cluster`] runs N stores in one process, each on its own RocksDB engines in a
//! temporary directory, talking through a [`transport::ChannelTransport`] whose filters
//! partition, isolate, cut one way, drop messages at a seeded rate, drop by region and message
//! type, or delay messages (delivered later by a timer thread, possibly out of order);
//! [`chaos`] adds a seeded per-link delay with jitter, duplication and loss, and a hold that
//! keeps chosen messages until the test lets them go. Ticks are short
//! ([`raftstore::Config::for_tests`]: 10 ms), so elections take tens of milliseconds and
//! every wait helper is bounded.
//!
//! A [`Client`] works the way a real client of a region store does (routes by key through a
//! [`RegionCache`] filled from the placement driver and corrected by `EpochNotMatch`, caches
//! leaders, follows `NotLeader` hints); `region-sim` drives its workload through it.
//!
//! Set `REGIONSTORE_LOG=1` to see the stores' logs.

pub mod chaos;
mod client;
mod cluster;
pub mod region_cache;
pub mod transport;

pub use self::client::{Client, Outcome, Refused, TestReader};
pub use self::cluster::{
    config_with_election_ticks, delete_request, follower_of, get_request, new_request, put_request,
    raft_message, test_logger, wait_until, Cluster, CLUSTER_ID, FIRST_REGION,
};
pub use self::region_cache::RegionCache;
