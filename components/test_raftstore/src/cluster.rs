//! `Cluster`: N nodes (the product's `server::Node`) on RocksDB in temporary directories, in
//! one process, with the harness's filters on the network between them.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use engine::{
    keys,
    rocks::{open_engines, RocksConfig, RocksEngine, RocksRaftEngine},
    Peekable,
};
use local_reader::{Clock, MonotonicRawClock, ReadStats};
use pd_client::{MemPd, MemPdConfig, PdClient};
use proto::{
    eraftpb::{self, MessageType},
    metapb,
    raft_cmdpb::{AdminCmdType, CmdType, ConfChangeType, RaftCmdRequest, RaftCmdResponse, Request},
    raft_serverpb::RaftMessage,
};
use raft::StateRole;
use raftstore::{
    bootstrap::{bootstrap_regions, bootstrap_store},
    msg::{PeerStatus, RaftCommand},
    Config, Error, StoreReader,
};
use server::{local::LocalNodes, Modify, Node, NodeConfig};
use slog::Logger;
use tempfile::TempDir;

use crate::transport::{Delay, Isolate, Network, Partition, TestRouter};

/// The cluster id of every harness cluster.
pub const CLUSTER_ID: u64 = 1;
/// The id of the first region.
pub const FIRST_REGION: u64 = 1;

/// Where a store's engines live.
enum StoreDir {
    Temp(TempDir),
    Kept(PathBuf),
}

impl StoreDir {
    fn path(&self) -> &Path {
        match self {
            StoreDir::Temp(t) => t.path(),
            StoreDir::Kept(p) => p,
        }
    }
}

/// An in-process cluster. See the crate docs.
pub struct Cluster {
    /// The store configuration every store starts with.
    pub cfg: Config,
    /// The placement driver shared by the stores.
    pub pd: Arc<MemPd>,
    /// The network between the stores.
    pub network: Arc<Network>,
    /// The clock the stores' leases run on (set before starting them).
    pub clock: Arc<dyn Clock>,
    /// Stores whose leases run on a clock of their own instead (set before starting them).
    pub clocks: HashMap<u64, Arc<dyn Clock>>,
    count: u64,
    data_dir: Option<PathBuf>,
    dirs: HashMap<u64, StoreDir>,
    /// The running nodes, by store id (what clients reach).
    nodes: Arc<LocalNodes>,
    logger: Logger,
}

/// A logger for tests: silent unless `REGIONSTORE_LOG` is set.
pub fn test_logger() -> Logger {
    use slog::Drain;
    if std::env::var_os("REGIONSTORE_LOG").is_none() {
        return Logger::root(slog::Discard, slog::o!());
    }
    let decorator = slog_term::TermDecorator::new().stderr().build();
    let drain = slog_term::FullFormat::new(decorator).build().fuse();
    let drain = slog_async::Async::new(drain).build().fuse();
    Logger::root(drain, slog::o!())
}

impl Cluster {
    /// `count` stores with short ticks ([`Config::for_tests`]), not started.
    pub fn new(count: u64) -> Self {
        Self::with_config(count, Config::for_tests())
    }

    /// `count` stores with `cfg`, not started.
    pub fn with_config(count: u64, cfg: Config) -> Self {
        Self::with_pd_config(count, cfg, MemPdConfig::default())
    }

    /// `count` stores with `cfg` and a placement driver with `pd_cfg` (its cluster id is the
    /// harness's), not started.
    pub fn with_pd_config(count: u64, cfg: Config, pd_cfg: MemPdConfig) -> Self {
        let pd = Arc::new(MemPd::new(MemPdConfig { cluster_id: CLUSTER_ID, ..pd_cfg }));
        Cluster {
            cfg,
            pd,
            network: Network::new(),
            clock: Arc::new(MonotonicRawClock),
            clocks: HashMap::new(),
            count,
            data_dir: None,
            dirs: HashMap::new(),
            nodes: Arc::new(LocalNodes::new()),
            logger: test_logger(),
        }
    }

    /// Keeps the stores' engines under `dir/store-N` (kept after the cluster stops) instead of
    /// temporary directories. Call before [`Cluster::run`].
    pub fn set_data_dir(&mut self, dir: &Path) {
        self.data_dir = Some(dir.to_path_buf());
    }

    fn store_dir(&self, store_id: u64) -> StoreDir {
        match &self.data_dir {
            Some(dir) => {
                let path = dir.join(format!("store-{store_id}"));
                std::fs::create_dir_all(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                StoreDir::Kept(path)
            }
            None => StoreDir::Temp(
                tempfile::Builder::new().prefix(&format!("store-{store_id}-")).tempdir().unwrap(),
            ),
        }
    }

    /// Bootstraps every store and the first region (a peer on every store), then starts all
    /// stores.
    pub fn run(&mut self) {
        let all: Vec<u64> = (1..=self.count).collect();
        self.run_with_region_on(&all);
    }

    /// Bootstraps every store, and the first region with peers on `voters` only; the other
    /// stores start empty (peers reach them through membership changes and snapshots).
    pub fn run_with_region_on(&mut self, voters: &[u64]) {
        self.bootstrap(&[], voters);
    }

    /// Bootstraps every store with the key space already cut at `split_keys` (sorted) into
    /// `split_keys.len() + 1` regions, each with a peer on every store; region 1 is the
    /// leftmost.
    pub fn run_with_split_keys(&mut self, split_keys: &[Vec<u8>]) {
        let all: Vec<u64> = (1..=self.count).collect();
        self.bootstrap(split_keys, &all);
    }

    fn bootstrap(&mut self, split_keys: &[Vec<u8>], voters: &[u64]) {
        let mut bounds = vec![Vec::new()];
        bounds.extend(split_keys.iter().cloned());
        bounds.push(Vec::new());
        let regions: Vec<metapb::Region> = bounds
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let mut region = metapb::Region::default();
                region.id = if i == 0 { FIRST_REGION } else { self.pd.alloc_id().unwrap() };
                region.start_key = w[0].clone();
                region.end_key = w[1].clone();
                region.mut_region_epoch().conf_ver = 1;
                region.mut_region_epoch().version = 1;
                region.peers = voters.iter().map(|s| self.new_peer(*s)).collect();
                region
            })
            .collect();
        for store_id in 1..=self.count {
            let dir = self.store_dir(store_id);
            let (kv, raft) = open_engines(dir.path(), &RocksConfig::small()).unwrap();
            bootstrap_store(&kv, CLUSTER_ID, store_id).unwrap();
            if voters.contains(&store_id) {
                bootstrap_regions(&kv, &raft, &regions).unwrap();
            }
            let mut store = metapb::Store::default();
            store.id = store_id;
            if store_id == 1 {
                self.pd.bootstrap_cluster(store, regions[0].clone()).unwrap();
            } else {
                self.pd.put_store(store).unwrap();
            }
            self.dirs.insert(store_id, dir);
        }
        self.pd.report_batch_split(regions).unwrap();
        for store_id in 1..=self.count {
            self.start_store(store_id);
        }
    }

    /// Starts (or restarts) a stopped store from its engines: `Node::open` on its directory.
    pub fn start_store(&mut self, store_id: u64) {
        assert!(self.nodes.get(store_id).is_none(), "store {store_id} is running");
        let cfg = NodeConfig {
            data_dir: self.dirs[&store_id].path().to_path_buf(),
            store: self.cfg.clone(),
            rocksdb: RocksConfig::small(),
            advertise_addr: String::new(),
        };
        let pd: Arc<dyn PdClient> = self.pd.clone();
        let local = self.network.local();
        let clock = self.clocks.get(&store_id).unwrap_or(&self.clock).clone();
        let node = Node::open_with_clock(cfg, pd, local, clock, &self.logger)
            .unwrap_or_else(|e| panic!("store {store_id} failed to start: {e}"));
        assert_eq!(node.store_id(), store_id, "the store's ident was written at bootstrap");
        self.nodes.insert(node);
    }

    /// Stops a store: it leaves the network, shuts down, and closes its engines.
    pub fn stop_store(&mut self, store_id: u64) {
        if let Some(node) = self.nodes.remove(store_id) {
            node.stop();
        }
    }

    /// The node of a running store.
    pub fn node(&self, store_id: u64) -> Node {
        self.nodes.get(store_id).unwrap_or_else(|| panic!("store {store_id} is not running"))
    }

    /// The running nodes, as clients reach them.
    pub fn nodes(&self) -> Arc<LocalNodes> {
        self.nodes.clone()
    }

    /// Stops and starts a store again.
    pub fn restart_store(&mut self, store_id: u64) {
        self.stop_store(store_id);
        self.start_store(store_id);
    }

    /// Ids of running stores.
    pub fn running_stores(&self) -> Vec<u64> {
        self.nodes.all().iter().map(Node::store_id).collect()
    }

    /// The kv engine of a running store (drop it before restarting the store).
    pub fn kv(&self, store_id: u64) -> RocksEngine {
        self.node(store_id).engines().expect("running").kv
    }

    /// The raft engine of a running store (drop it before restarting the store).
    pub fn raft_engine(&self, store_id: u64) -> RocksRaftEngine {
        self.node(store_id).engines().expect("running").raft
    }

    /// A router of a running store.
    pub fn router(&self, store_id: u64) -> TestRouter {
        self.node(store_id).router().expect("running")
    }

    /// A reader of a running store's regions, for one thread.
    pub fn reader(&self, store_id: u64) -> StoreReader<RocksEngine, RocksRaftEngine> {
        self.node(store_id).reader().expect("running")
    }

    /// How many of `event` a running store counted.
    pub fn raft_event(&self, store_id: u64, event: raftstore::metrics::RaftEvent) -> u64 {
        let events = self.node(store_id).raft_events();
        events.into_iter().find(|(e, _)| *e == event).map_or(0, |(_, n)| n)
    }

    /// The regions, ranges and read delegates of a running store.
    pub fn store_meta(&self, store_id: u64) -> raftstore::store_meta::SharedStoreMeta {
        self.node(store_id).store_meta().expect("running")
    }

    /// The read-path counters of a running store.
    pub fn read_stats(&self, store_id: u64) -> ReadStats {
        self.node(store_id).read_stats()
    }

    /// Runs `f` and returns what it returned, with the read-path counts of `store_id` it
    /// caused (and whatever else the store did meanwhile).
    pub fn counting_reads<R>(&self, store_id: u64, f: impl FnOnce() -> R) -> (R, ReadStats) {
        let before = self.read_stats(store_id);
        let res = f();
        (res, self.read_stats(store_id).since(&before))
    }

    /// Repeats `read` (reads served by `store_id`) until one is a local lease read, at most 5
    /// s; `check` sees the counts of every round.
    pub fn wait_local_read(
        &self,
        store_id: u64,
        what: &str,
        mut read: impl FnMut(),
        check: impl Fn(&ReadStats),
    ) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ((), stats) = self.counting_reads(store_id, &mut read);
            check(&stats);
            if stats.local_hits > 0 {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: no local read within 5 s: {stats:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Switches lease reads on or off on every running store.
    pub fn set_lease_reads(&self, on: bool) {
        for node in self.nodes.all() {
            node.set_lease_reads(on);
        }
    }

    /// The status of a region's peer on a running store.
    pub fn peer_status(&self, store_id: u64, region_id: u64) -> Option<PeerStatus> {
        self.nodes.get(store_id)?.region_status(region_id)
    }

    /// The leader of a region among running stores (the one with the highest term).
    pub fn leader_of_region(&self, region_id: u64) -> Option<metapb::Peer> {
        self.running_stores()
            .into_iter()
            .filter_map(|s| self.peer_status(s, region_id))
            .filter(|st| st.role == StateRole::Leader)
            .max_by_key(|st| st.term)
            .map(|st| st.peer)
    }

    /// Waits (at most 10 s) for a leader of the region.
    pub fn wait_leader(&self, region_id: u64) -> metapb::Peer {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(leader) = self.leader_of_region(region_id) {
                return leader;
            }
            assert!(Instant::now() < deadline, "no leader of region {region_id} within 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The region as a running store's peer knows it.
    pub fn region(&self, region_id: u64) -> metapb::Region {
        self.running_stores()
            .into_iter()
            .find_map(|s| self.peer_status(s, region_id))
            .map(|st| st.region)
            .unwrap_or_else(|| panic!("no running store has region {region_id}"))
    }

    /// Sends `req` to a store and waits for the response; a response carrying an error is
    /// returned as that typed error.
    pub fn call_command(
        &self,
        store_id: u64,
        req: RaftCmdRequest,
        timeout: Duration,
    ) -> Result<RaftCmdResponse, Error> {
        let node = self.nodes.get(store_id);
        let router = node
            .and_then(|n| n.router().ok())
            .ok_or(Error::RegionNotFound(req.get_header().region_id))?;
        let (cmd, rx) = RaftCommand::new(req);
        router.send_command(cmd);
        let resp = rx
            .recv_timeout(timeout)
            .map_err(|_| Error::OutcomeUnknown(format!("no response within {timeout:?}")))?;
        if resp.get_header().has_error() {
            return Err(Error::from_errorpb(resp.get_header().get_error()));
        }
        Ok(resp)
    }

    /// A client of the cluster (the product's `client::Client`): it reaches whichever nodes
    /// run when it sends, restarted ones included.
    pub fn client(&self) -> client::Client {
        let pd: Arc<dyn PdClient> = self.pd.clone();
        let cfg =
            client::ClientConfig { attempt_timeout: Duration::from_secs(3), ..Default::default() };
        client::Client::new(pd, self.nodes.clone(), cfg, 7)
    }

    /// Writes through the region's leader, retrying for up to 10 s on errors that mean "not
    /// applied" and, since tests own their keys, also on unknown outcomes.
    pub fn write(&self, mods: &[Modify], key: &[u8]) -> Result<(), client::Error> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut client = self.client();
        loop {
            // A write waits for its outcome until its deadline; give each try 3 s so a
            // proposal stuck on a peer that cannot apply is left behind and retried.
            let attempt = deadline.min(Instant::now() + Duration::from_secs(3));
            match client.write(key, mods, attempt) {
                Ok(()) => return Ok(()),
                Err(client::Error::Undetermined(_)) if Instant::now() < deadline => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// A new peer on `store_id` with an id from the placement driver.
    pub fn new_peer(&self, store_id: u64) -> metapb::Peer {
        let mut peer = metapb::Peer::default();
        peer.id = self.pd.alloc_id().unwrap();
        peer.store_id = store_id;
        peer
    }

    /// The leader of a region and the region as the leader knows it.
    pub fn leader_region(&self, region_id: u64) -> (metapb::Peer, metapb::Region) {
        let leader = self.wait_leader(region_id);
        let status = self.peer_status(leader.store_id, region_id).expect("leader answers");
        (leader, status.region)
    }

    /// Asks the leader for a membership change once; the typed error if it refuses.
    pub fn change_peer(
        &self,
        region_id: u64,
        change_type: ConfChangeType,
        peer: &metapb::Peer,
    ) -> Result<RaftCmdResponse, Error> {
        let (leader, region) = self.leader_region(region_id);
        let mut req = new_request(&region, &leader, vec![]);
        let admin = req.mut_admin_request();
        admin.set_cmd_type(AdminCmdType::ChangePeer);
        admin.mut_change_peer().set_change_type(change_type);
        admin.mut_change_peer().set_peer(peer.clone());
        self.call_command(leader.store_id, req, Duration::from_secs(3))
    }

    fn must_change_peer(&self, region_id: u64, change_type: ConfChangeType, peer: &metapb::Peer) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.change_peer(region_id, change_type, peer) {
                Ok(_) => return,
                Err(e)
                    if Instant::now() < deadline
                        && (e.is_retryable() || matches!(e, Error::OutcomeUnknown(_))) =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("{change_type:?} {peer:?} on region {region_id}: {e}"),
            }
        }
    }

    /// Adds `peer` as a voter (or promotes it from learner).
    pub fn must_add_peer(&self, region_id: u64, peer: &metapb::Peer) {
        self.must_change_peer(region_id, ConfChangeType::AddNode, peer);
    }

    /// Adds `peer` as a learner.
    pub fn must_add_learner(&self, region_id: u64, peer: &metapb::Peer) {
        self.must_change_peer(region_id, ConfChangeType::AddLearnerNode, peer);
    }

    /// Removes `peer`.
    pub fn must_remove_peer(&self, region_id: u64, peer: &metapb::Peer) {
        self.must_change_peer(region_id, ConfChangeType::RemoveNode, peer);
    }

    /// Makes `peer` the region's leader, asking the current leader until it happens (at most
    /// 10 s).
    pub fn must_transfer_leader(&self, region_id: u64, peer: &metapb::Peer) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.leader_of_region(region_id).as_ref().map(|l| l.id) != Some(peer.id) {
            assert!(
                Instant::now() < deadline,
                "leadership of {region_id} did not move to {}",
                peer.id
            );
            if let Some(leader) = self.leader_of_region(region_id) {
                let mut req = new_request(&self.region(region_id), &leader, vec![]);
                let admin = req.mut_admin_request();
                admin.set_cmd_type(AdminCmdType::TransferLeader);
                admin.mut_transfer_leader().set_peer(peer.clone());
                // An error only means the leader moved meanwhile: look again.
                let _ = self.call_command(leader.store_id, req, Duration::from_secs(1));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Splits a region at `split_keys` through its leader and waits for the split to apply
    /// there: the regions it became, in key order.
    pub fn split_region(
        &self,
        region_id: u64,
        split_keys: Vec<Vec<u8>>,
    ) -> Result<Vec<metapb::Region>, Error> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (leader, region) = self.leader_region(region_id);
            let rx = self.router(leader.store_id).split_region(
                region_id,
                region.get_region_epoch().clone(),
                split_keys.clone(),
            );
            let resp = rx
                .recv_timeout(Duration::from_secs(5))
                .map_err(|_| Error::OutcomeUnknown("no answer to the split".into()))?;
            if !resp.get_header().has_error() {
                return Ok(resp.get_admin_response().get_splits().get_regions().to_vec());
            }
            let err = Error::from_errorpb(resp.get_header().get_error());
            let retry = matches!(err, Error::NotLeader { .. } | Error::ServerIsBusy(_));
            if !retry || Instant::now() > deadline {
                return Err(err);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asks the leader of `source` once to merge it into `target` (PrepareMerge, answered
    /// once applied there); the typed error if it refuses.
    pub fn merge_region(&self, source: u64, target: u64) -> Result<RaftCmdResponse, Error> {
        let (leader, region) = self.leader_region(source);
        let (_, target_region) = self.leader_region(target);
        let mut req = new_request(&region, &leader, vec![]);
        req.mut_admin_request().set_cmd_type(AdminCmdType::PrepareMerge);
        req.mut_admin_request().mut_prepare_merge().set_target(target_region);
        self.call_command(leader.store_id, req, Duration::from_secs(3))
    }

    /// Starts merging `source` into `target`, retrying refusals that pass (a new leader not
    /// heard from its followers yet, say) for 10 s; returns once PrepareMerge applied on the
    /// source's leader and its peer there shows the merge's epoch: the source's region then.
    pub fn start_merge(&self, source: u64, target: u64) -> metapb::Region {
        let deadline = Instant::now() + Duration::from_secs(10);
        let before = loop {
            let before = self.leader_region(source);
            match self.merge_region(source, target) {
                Ok(_) => break before,
                Err(Error::NotLeader { .. } | Error::ServerIsBusy(_) | Error::StaleCommand)
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("merge of region {source} into {target}: {e}"),
            }
        };
        let (leader, region) = before;
        let version = region.get_region_epoch().version + 1;
        loop {
            let now = self.peer_status(leader.store_id, source).map(|s| s.region);
            match now {
                Some(r) if r.get_region_epoch().version >= version => return r,
                None => return region, // merged already
                Some(_) => {}
            }
            assert!(Instant::now() < deadline, "PrepareMerge of {source} not seen in 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Merges `source` into `target` (see [`Cluster::start_merge`]) and waits until no running
    /// store has a peer of the source and every one has the merged target; returns the merged
    /// region.
    pub fn must_merge(&self, source: u64, target: u64) -> metapb::Region {
        self.start_merge(source, target);
        self.wait_merged(source, target)
    }

    /// Waits (at most 10 s) until no running store has a peer of `source` and every one has
    /// `target` covering the source's range; returns the merged region.
    pub fn wait_merged(&self, source: u64, target: u64) -> metapb::Region {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stores = self.running_stores();
            let gone = stores.iter().all(|s| self.peer_status(*s, source).is_none());
            let versions: Vec<u64> = stores
                .iter()
                .filter_map(|s| self.peer_status(*s, target))
                .map(|st| st.region.get_region_epoch().version)
                .collect();
            if gone && versions.len() == stores.len() && versions.windows(2).all(|w| w[0] == w[1]) {
                return self.region(target);
            }
            assert!(Instant::now() < deadline, "region {source} not merged into {target} in 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Splits the region holding `key` at `key`, panicking if it cannot; returns the left
    /// and right regions.
    pub fn must_split(&self, key: &[u8]) -> (metapb::Region, metapb::Region) {
        let region = self.pd.get_region(key).unwrap().0;
        let regions = self
            .split_region(region.id, vec![key.to_vec()])
            .unwrap_or_else(|e| panic!("split at {key:?}: {e}"));
        (regions[0].clone(), regions[1].clone())
    }

    /// Waits (at most 10 s) until the placement driver knows `count` regions or more.
    pub fn wait_region_count(&self, count: usize) -> Vec<metapb::Region> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let regions = self.pd.regions();
            if regions.len() >= count {
                return regions;
            }
            assert!(
                Instant::now() < deadline,
                "{} regions, not {count}, within 10 s",
                regions.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Puts `key` = `value`, panicking if it cannot within 10 s.
    pub fn must_put(&self, key: &[u8], value: &[u8]) {
        self.write(&[Modify::Put(key.to_vec(), value.to_vec())], key)
            .unwrap_or_else(|e| panic!("put {key:?}: {e}"));
    }

    /// Deletes `key`, panicking if it cannot within 10 s.
    pub fn must_delete(&self, key: &[u8]) {
        self.write(&[Modify::Delete(key.to_vec())], key)
            .unwrap_or_else(|e| panic!("delete {key:?}: {e}"));
    }

    /// Reads `key` through its region's leader (a lease read, or ReadIndex), retrying for up
    /// to 10 s.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, client::Error> {
        self.client().get(key, Instant::now() + Duration::from_secs(10))
    }

    /// Waits (at most 5 s) until a store's kv engine holds `key` = `value`.
    pub fn must_get_equal(&self, store_id: u64, key: &[u8], value: &[u8]) {
        self.wait_value(store_id, key, Some(value));
    }

    /// Waits (at most 5 s) until a store's kv engine has no `key`.
    pub fn must_get_none(&self, store_id: u64, key: &[u8]) {
        self.wait_value(store_id, key, None);
    }

    fn wait_value(&self, store_id: u64, key: &[u8], want: Option<&[u8]>) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = self.kv(store_id).get_value(&keys::data_key(key)).unwrap();
            if got.as_deref() == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "store {store_id}: {key:?} is {got:?}, want {want:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (at most 10 s) until a store's peer of the region has compacted its log past
    /// `index`; returns the truncated index.
    pub fn wait_truncated_beyond(&self, store_id: u64, region_id: u64, index: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let truncated = self.peer_status(store_id, region_id).map_or(0, |s| s.truncated_index);
            if truncated > index {
                return truncated;
            }
            assert!(
                Instant::now() < deadline,
                "store {store_id}: log not compacted past {index} ({truncated})"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Cuts the stores in `a` off from those in `b`.
    pub fn partition(&self, a: &[u64], b: &[u64]) {
        self.network.add_filter(Box::new(Partition::new(a, b)));
    }

    /// Cuts a store off from all others; the id heals this cut alone.
    pub fn isolate(&self, store_id: u64) -> crate::transport::FilterId {
        self.network.add_filter(Box::new(Isolate(store_id)))
    }

    /// Delays every message between stores by `delay`.
    pub fn delay_network(&self, delay: Duration) {
        self.network.add_filter(Box::new(Delay { a: None, b: None, delay }));
    }

    /// Heals every cut.
    pub fn clear_filters(&self) {
        self.network.clear_filters();
    }

    /// Stops every store.
    pub fn shutdown(&mut self) {
        for id in self.running_stores() {
            self.stop_store(id);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// [`Config::for_tests`] with elections of `ticks` ticks (10 ms each) and the longest lease
/// they allow: slow elections give a test time to act between two of them.
pub fn config_with_election_ticks(ticks: usize) -> Config {
    let cfg = Config::for_tests();
    let tick = cfg.raft_base_tick_interval;
    Config {
        raft_election_timeout_ticks: ticks,
        raft_store_max_leader_lease: tick * (ticks as u32 - 1),
        ..cfg
    }
}

/// Waits until `cond` holds, looking every 5 ms, at most `timeout`; panics naming `what`
/// otherwise.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A peer of `region` other than `leader`. Panics if the region has a single peer.
pub fn follower_of(region: &metapb::Region, leader: &metapb::Peer) -> metapb::Peer {
    region.get_peers().iter().find(|p| p.id != leader.id).expect("a region of one peer").clone()
}

/// A command for `region` addressed to `peer`, carrying `requests`.
pub fn new_request(
    region: &metapb::Region,
    peer: &metapb::Peer,
    requests: Vec<Request>,
) -> RaftCmdRequest {
    let mut req = RaftCmdRequest::default();
    let header = req.mut_header();
    header.region_id = region.id;
    header.set_peer(peer.clone());
    header.set_region_epoch(region.get_region_epoch().clone());
    req.requests = requests.into();
    req
}

/// A raft message of `msg_type` at `term` from `from` to `to`, in an envelope that carries
/// `region`'s id, epoch and range: what a peer of `region` would send.
pub fn raft_message(
    region: &metapb::Region,
    from: &metapb::Peer,
    to: &metapb::Peer,
    msg_type: MessageType,
    term: u64,
) -> RaftMessage {
    let mut m = eraftpb::Message::default();
    m.set_msg_type(msg_type);
    m.from = from.id;
    m.to = to.id;
    m.term = term;
    let mut msg = RaftMessage::default();
    msg.region_id = region.id;
    msg.set_from_peer(from.clone());
    msg.set_to_peer(to.clone());
    msg.set_region_epoch(region.get_region_epoch().clone());
    msg.start_key = region.start_key.clone();
    msg.end_key = region.end_key.clone();
    msg.set_message(m);
    msg
}

/// A put of `key` = `value` in the default column family.
pub fn put_request(key: &[u8], value: &[u8]) -> Request {
    let mut r = Request::default();
    r.set_cmd_type(CmdType::Put);
    r.mut_put().key = key.to_vec();
    r.mut_put().value = value.to_vec();
    r
}

/// A get of `key` in the default column family.
pub fn get_request(key: &[u8]) -> Request {
    let mut r = Request::default();
    r.set_cmd_type(CmdType::Get);
    r.mut_get().key = key.to_vec();
    r
}

/// A delete of `key` in the default column family.
pub fn delete_request(key: &[u8]) -> Request {
    let mut r = Request::default();
    r.set_cmd_type(CmdType::Delete);
    r.mut_delete().key = key.to_vec();
    r
}
