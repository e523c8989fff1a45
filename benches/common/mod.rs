//! What the benches share.

use std::time::Duration;

use regionstore::{
    pd_client::MemPdConfig, raftstore::Config, server::local::LocalCluster, NodeConfig,
};

/// A 3-node cluster in one process under a temp dir (10 ms ticks, no fsync), its one region
/// replicated on every node with a leader. Keep the dir as long as the cluster.
pub fn three_nodes() -> (tempfile::TempDir, LocalCluster) {
    let dir = tempfile::tempdir().unwrap();
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let template = NodeConfig { store: Config::for_tests(), ..NodeConfig::new(dir.path()) };
    let pd_cfg = MemPdConfig { max_replicas: 3, ..Default::default() };
    let cluster = LocalCluster::start(dir.path(), 3, template, pd_cfg, &logger).unwrap();
    cluster.wait_ready(3, Duration::from_secs(30)).unwrap();
    (dir, cluster)
}
