//! Crashes while a store bootstraps the first region of a cluster.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use raft::StateRole;

use regionstore::{
    pd_client::{MemPd, MemPdConfig, PdClient},
    raftstore::Config,
    server::transport::LocalNetwork,
    Context, Modify, Node, NodeConfig,
};

/// A store that fails after writing the first region's raft state and before its region
/// state (as a crash there would) must not be left marked as prepared without the states
/// the mark stands for: on reopen it would register a region with the placement driver that
/// it does not hold, and the cluster would have no replica of its key space.
#[test]
fn a_bootstrap_cut_before_the_region_state_starts_over_on_reopen() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let mem = Arc::new(MemPd::new(MemPdConfig::default()));
    let pd: Arc<dyn PdClient> = mem.clone();
    let net = LocalNetwork::new();
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let config = || {
        let mut cfg = NodeConfig::new(dir.path());
        cfg.store = Config { sync_log: true, ..Config::for_tests() };
        cfg.rocksdb = regionstore::engine::rocks::RocksConfig::small();
        cfg
    };

    fail::cfg("bootstrap_before_kv_states", "return").unwrap();
    let res = Node::open(config(), pd.clone(), net.clone(), &logger);
    fail::remove("bootstrap_before_kv_states");
    assert!(res.is_err(), "the open went on past a failed bootstrap");
    assert!(!pd.is_cluster_bootstrapped().unwrap(), "a region nobody holds was registered");

    let node = Node::open(config(), pd.clone(), net, &logger).unwrap();
    let region = mem.regions().pop().expect("the cluster was bootstrapped on reopen");
    assert_eq!(node.regions().len(), 1, "the node does not hold the registered region");
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.region_status(region.id).is_none_or(|s| s.role != StateRole::Leader) {
        assert!(Instant::now() < deadline, "the first region elects no leader");
        std::thread::sleep(Duration::from_millis(10));
    }
    let ctx = Context::new(&region, &region.get_peers()[0]);
    let put = Modify::Put(b"k".to_vec(), b"v".to_vec());
    node.write(&ctx, &[put], Duration::from_secs(10)).unwrap();
    node.stop();
    scenario.teardown();
}
