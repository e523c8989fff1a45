//! `Node` as an embedding database uses it: open on a fresh directory (the first node
//! bootstraps the cluster, the placement driver replicates the first region onto the
//! others), write, read, stop, reopen.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use pd_client::{MemPd, MemPdConfig, PdClient};
use proto::metapb;
use raft::StateRole;
use raftstore::Config;
use server::{transport::LocalNetwork, Context, Error, Modify, Node, NodeConfig};
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(10);

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

struct TestCluster {
    pd: Arc<MemPd>,
    net: Arc<LocalNetwork>,
    dirs: Vec<TempDir>,
    nodes: Vec<Node>,
}

fn config(dir: &TempDir) -> NodeConfig {
    let mut cfg = NodeConfig::new(dir.path());
    cfg.store = Config { sync_log: true, ..Config::for_tests() };
    cfg.rocksdb = engine::rocks::RocksConfig::small();
    cfg
}

impl TestCluster {
    fn new(count: usize) -> Self {
        let pd_cfg = MemPdConfig { max_replicas: 3, ..Default::default() };
        let (pd, net) = (Arc::new(MemPd::new(pd_cfg)), LocalNetwork::new());
        let dirs: Vec<TempDir> = (0..count).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut c = TestCluster { pd, net, dirs, nodes: Vec::new() };
        for i in 0..count {
            let node = c.open(i).unwrap();
            c.nodes.push(node);
        }
        c
    }

    fn open(&self, i: usize) -> server::Result<Node> {
        let pd: Arc<dyn PdClient> = self.pd.clone();
        Node::open(config(&self.dirs[i]), pd, self.net.clone(), &logger())
    }

    /// The first region once it has a leader and `voters` voters: the region and the leader's
    /// node.
    fn wait_replicated(&self, voters: usize) -> (metapb::Region, Node) {
        let deadline = Instant::now() + WAIT;
        loop {
            for node in self.nodes.iter().filter(|n| n.is_running()) {
                for region in node.regions() {
                    let Some(s) = node.region_status(region.id) else { continue };
                    if s.role == StateRole::Leader && s.region.get_peers().len() == voters {
                        return (s.region, node.clone());
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader with {voters} voters within {WAIT:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn leader_ctx(region: &metapb::Region, node: &Node) -> Context {
    let peer = region.get_peers().iter().find(|p| p.store_id == node.store_id()).unwrap();
    Context::new(region, peer)
}

fn put(k: &str, v: &str) -> Modify {
    Modify::Put(k.as_bytes().to_vec(), v.as_bytes().to_vec())
}

#[test]
fn a_new_cluster_bootstraps_replicates_writes_and_reads() {
    let c = TestCluster::new(3);
    assert_eq!(c.pd.regions().len(), 1, "one first region, whoever bootstrapped");
    let (region, leader) = c.wait_replicated(3);
    let ctx = leader_ctx(&region, &leader);
    leader.write(&ctx, &[put("a", "1"), put("b", "2")], WAIT).unwrap();
    assert_eq!(leader.get(&ctx, b"a", WAIT).unwrap().as_deref(), Some(&b"1"[..]));
    let snap = futures::executor::block_on(leader.async_snapshot(&ctx)).unwrap();
    assert_eq!(snap.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
    leader.write(&ctx, &[Modify::Delete(b"a".to_vec())], WAIT).unwrap();
    assert_eq!(leader.get(&ctx, b"a", WAIT).unwrap(), None);

    // A follower refuses writes with the leader, and serves follower reads.
    let follower = c.nodes.iter().find(|n| n.store_id() != leader.store_id()).unwrap();
    let fctx = leader_ctx(&region, follower);
    match follower.write(&fctx, &[put("x", "y")], WAIT) {
        Err(Error::Request(raftstore::Error::NotLeader { leader: Some(l), .. })) => {
            assert_eq!(l.store_id, leader.store_id())
        }
        other => panic!("{other:?}"),
    }
    let got = follower.get(&fctx.clone().replica_read(), b"b", WAIT).unwrap();
    assert_eq!(got.as_deref(), Some(&b"2"[..]));
}

#[test]
fn nodes_opened_at_once_bootstrap_one_cluster() {
    let pd = Arc::new(MemPd::new(MemPdConfig { max_replicas: 3, ..Default::default() }));
    let net = LocalNetwork::new();
    let dirs: Vec<TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes: Vec<Node> = std::thread::scope(|s| {
        let opened: Vec<_> = dirs
            .iter()
            .map(|d| {
                let (pd, net): (Arc<dyn PdClient>, _) = (pd.clone(), net.clone());
                s.spawn(move || Node::open(config(d), pd, net, &logger()).unwrap())
            })
            .collect();
        opened.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let c = TestCluster { pd, net, dirs, nodes };
    assert_eq!(c.pd.regions().len(), 1);
    let (region, leader) = c.wait_replicated(3);
    leader.write(&leader_ctx(&region, &leader), &[put("k", "v")], WAIT).unwrap();
}

#[test]
fn a_stopped_node_answers_stopped_and_its_directory_reopens_with_every_write() {
    let mut c = TestCluster::new(3);
    let (region, leader) = c.wait_replicated(3);
    let ctx = leader_ctx(&region, &leader);
    for i in 0..50 {
        leader.write(&ctx, &[put(&format!("k{i:02}"), &i.to_string())], WAIT).unwrap();
    }
    let handle = leader.clone();
    for node in &c.nodes {
        node.stop();
        node.stop(); // idempotent
    }
    assert!(matches!(handle.write(&ctx, &[put("z", "z")], WAIT), Err(Error::Stopped)));
    assert!(matches!(handle.snapshot(&ctx, WAIT), Err(Error::Stopped)));
    let stopped = [("op", "write"), ("result", "stopped")];
    assert_eq!(metric(&handle, "regionstore_requests_total", &stopped), 1.0);
    let undetermined = [("op", "write"), ("result", "undetermined")];
    assert_eq!(metric(&handle, "regionstore_requests_total", &undetermined), 0.0, "counted once");
    c.nodes = (0..3).map(|i| c.open(i).unwrap()).collect(); // engines closed: reopen works
    let (region, leader) = c.wait_replicated(3);
    let ctx = leader_ctx(&region, &leader);
    for i in 0..50 {
        let got = leader.get(&ctx, format!("k{i:02}").as_bytes(), WAIT).unwrap();
        assert_eq!(got, Some(i.to_string().into_bytes()));
    }
}

#[test]
fn a_bad_config_or_a_foreign_directory_is_refused_at_open() {
    let c = TestCluster::new(1);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir);
    cfg.store.raft_heartbeat_ticks = 0;
    let pd: Arc<dyn PdClient> = c.pd.clone();
    let res = Node::open(cfg, pd, c.net.clone(), &logger());
    assert!(
        matches!(&res, Err(Error::Open(m)) if m.contains("raft_heartbeat_ticks")),
        "{:?}",
        res.err()
    );

    // The directory of a node of another cluster.
    c.nodes[0].stop();
    let other = Arc::new(MemPd::new(MemPdConfig { cluster_id: 99, ..Default::default() }));
    let pd: Arc<dyn PdClient> = other;
    let res = Node::open(config(&c.dirs[0]), pd, LocalNetwork::new(), &logger());
    assert!(matches!(&res, Err(Error::Open(m)) if m.contains("cluster")), "{:?}", res.err());
}

/// Writes a store ident and a prepared first region into `dir`, as a node that crashed
/// between preparing its bootstrap and settling it leaves them. Returns the region.
fn crash_while_bootstrapping(dir: &TempDir, pd: &MemPd, register: bool) -> metapb::Region {
    let (kv, raft) =
        engine::rocks::open_engines(dir.path(), &engine::rocks::RocksConfig::small()).unwrap();
    let store_id = pd.alloc_id().unwrap();
    raftstore::bootstrap::bootstrap_store(&kv, pd.cluster_id(), store_id).unwrap();
    let mut region = metapb::Region::default();
    region.id = pd.alloc_id().unwrap();
    region.mut_region_epoch().conf_ver = 1;
    region.mut_region_epoch().version = 1;
    let mut peer = metapb::Peer::default();
    (peer.id, peer.store_id) = (pd.alloc_id().unwrap(), store_id);
    region.mut_peers().push(peer);
    raftstore::bootstrap::prepare_bootstrap(&kv, &raft, &region).unwrap();
    if register {
        let mut store = metapb::Store::default();
        store.id = store_id;
        pd.bootstrap_cluster(store, region.clone()).unwrap(); // its answer "lost"
    }
    region
}

#[test]
fn a_first_region_prepared_before_a_crash_is_dropped_if_another_won() {
    let pd = Arc::new(MemPd::new(MemPdConfig { max_replicas: 3, ..Default::default() }));
    let net = LocalNetwork::new();
    let dirs: Vec<TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut c = TestCluster { pd: pd.clone(), net, dirs, nodes: Vec::new() };
    c.nodes.push(c.open(0).unwrap()); // bootstraps the cluster
    let stray = crash_while_bootstrapping(&c.dirs[1], &pd, false);
    c.nodes.push(c.open(1).unwrap());
    c.nodes.push(c.open(2).unwrap());
    assert!(c.nodes[1].region_status(stray.id).is_none(), "the stray first region was started");
    let (region, leader) = c.wait_replicated(3);
    assert_ne!(region.id, stray.id);
    assert_eq!(pd.regions().len(), 1);
    leader.write(&leader_ctx(&region, &leader), &[put("k", "v")], WAIT).unwrap();
}

#[test]
fn a_first_region_registered_before_a_crash_is_kept() {
    let pd = Arc::new(MemPd::new(MemPdConfig { max_replicas: 3, ..Default::default() }));
    let net = LocalNetwork::new();
    let dirs: Vec<TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut c = TestCluster { pd: pd.clone(), net, dirs, nodes: Vec::new() };
    let first = crash_while_bootstrapping(&c.dirs[0], &pd, true);
    c.nodes = (0..3).map(|i| c.open(i).unwrap()).collect();
    let (region, leader) = c.wait_replicated(3);
    assert_eq!(region.id, first.id, "the registered region was kept");
    leader.write(&leader_ctx(&region, &leader), &[put("k", "v")], WAIT).unwrap();
}

/// The value of the sample of `name` in `node`'s registry whose labels include `labels`
/// (summed over the rest).
fn metric(node: &Node, name: &str, labels: &[(&str, &str)]) -> f64 {
    let page = server::metrics::encode(&[node.registry()]);
    let mut sum = 0.0;
    for line in page.lines().filter(|l| l.starts_with(&format!("{name}{{"))) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        if labels.iter().all(|(k, v)| series.contains(&format!("{k}=\"{v}\""))) {
            sum += value.parse::<f64>().unwrap();
        }
    }
    sum
}

#[test]
fn a_node_counts_its_requests_and_its_store_in_its_registry() {
    let c = TestCluster::new(3);
    let (region, leader) = c.wait_replicated(3);
    let ctx = leader_ctx(&region, &leader);
    let before = metric(&leader, "regionstore_proposals_total", &[("kind", "write")]);
    for i in 0..5 {
        leader.write(&ctx, &[put("k", &i.to_string())], WAIT).unwrap();
    }
    leader.get(&ctx, b"k", WAIT).unwrap();
    let follower = c.nodes.iter().find(|n| n.store_id() != leader.store_id()).unwrap();
    let refused = follower.write(&leader_ctx(&region, follower), &[put("x", "y")], WAIT);
    assert!(refused.is_err());

    let store = leader.store_id().to_string();
    let ok_writes = [("op", "write"), ("result", "ok"), ("store", store.as_str())];
    assert_eq!(metric(&leader, "regionstore_requests_total", &ok_writes), 5.0);
    let after = metric(&leader, "regionstore_proposals_total", &[("kind", "write")]);
    assert_eq!(after - before, 5.0, "one proposal per write");
    let ok_reads = [("op", "snapshot"), ("result", "ok")];
    assert_eq!(metric(&leader, "regionstore_requests_total", &ok_reads), 1.0);
    let refusals = [("op", "write"), ("result", "not_leader")];
    assert_eq!(metric(follower, "regionstore_requests_total", &refusals), 1.0);
    let rejected = [("reason", "not_leader")];
    assert_eq!(metric(follower, "regionstore_proposals_rejected_total", &rejected), 1.0);
    assert!(metric(&leader, "regionstore_raft_commit_duration_seconds_count", &[]) >= 5.0);
    assert!(metric(&leader, "regionstore_apply_duration_seconds_count", &[]) >= 1.0);
    assert!(
        metric(&leader, "regionstore_raft_messages_sent_total", &[("type", "MsgAppend")]) > 0.0
    );
    for node in &c.nodes {
        // The third peer may still be on its way (created by the leader's first message).
        let deadline = Instant::now() + WAIT;
        while metric(node, "regionstore_regions", &[]) < 1.0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            metric(node, "regionstore_regions", &[]),
            1.0,
            "store {} {:?} {:?}",
            node.store_id(),
            node.regions(),
            c.pd.regions()
        );
        let leads = (node.store_id() == leader.store_id()) as u8 as f64;
        assert_eq!(metric(node, "regionstore_leaders", &[]), leads, "store {}", node.store_id());
    }
    let reads = metric(&leader, "regionstore_reads_total", &[]);
    let stats = leader.read_stats();
    let served = stats.local_hits + stats.peer_lease_reads + stats.read_index_reads;
    assert_eq!(reads, (served + stats.follower_reads) as f64, "the report's numbers are these");
}
