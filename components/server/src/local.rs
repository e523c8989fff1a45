//! The nodes of one process: a directory of them by store id, and [`LocalCluster`], N nodes
//! on a [`LocalNetwork`] (or, with [`LocalCluster::start_over_grpc`], each with a
//! [`GrpcTransport`] on loopback) with an in-memory placement driver that replicates regions
//! and balances leaders — what region-sim, the examples and the test harness run on.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{atomic::Ordering, Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use local_reader::{Clock, MonotonicRawClock, SkewedClock};
use pd_client::{MemPd, MemPdConfig, PdClient};
use proto::metapb;
use raftstore::msg::PeerStatus;
use slog::Logger;

use crate::{
    grpc::{GrpcConfig, GrpcTransport},
    transport::LocalNetwork,
    Error, Node, NodeConfig, Result,
};

/// The nodes of this process, by store id: a node that stops leaves (or answers `Stopped`),
/// one that opens (again) joins.
#[derive(Default)]
pub struct LocalNodes {
    nodes: RwLock<HashMap<u64, Node>>,
}

impl LocalNodes {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a node.
    pub fn insert(&self, node: Node) {
        self.nodes.write().unwrap_or_else(|e| e.into_inner()).insert(node.store_id(), node);
    }

    /// Removes the node of `store_id`.
    pub fn remove(&self, store_id: u64) -> Option<Node> {
        self.nodes.write().unwrap_or_else(|e| e.into_inner()).remove(&store_id)
    }

    /// The node of `store_id`.
    pub fn get(&self, store_id: u64) -> Option<Node> {
        self.nodes.read().unwrap_or_else(|e| e.into_inner()).get(&store_id).cloned()
    }

    /// Every node, by store id.
    pub fn all(&self) -> Vec<Node> {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<Node> = nodes.values().cloned().collect();
        all.sort_by_key(Node::store_id);
        all
    }
}

/// How long [`LocalCluster::start_node`] waits for the last reader of a stopped node to
/// release its engines.
pub const ENGINE_RELEASE_WAIT: Duration = Duration::from_secs(10);

/// Whether an open failed because another handle still holds the engines' lock file.
fn is_lock_held(error: &str) -> bool {
    // RocksDB's words for a lock held in this process, and in another one.
    error.contains("lock hold by current process") || error.contains("While lock file")
}

/// N nodes of one process. See the module docs.
pub struct LocalCluster {
    /// The placement driver.
    pub pd: Arc<MemPd>,
    /// The network between the nodes (unused, and without effect for filters, over gRPC).
    pub net: Arc<LocalNetwork>,
    /// Over gRPC: the settings of each node's transport, and the running ones by store id.
    grpc: Option<(GrpcConfig, Mutex<HashMap<u64, GrpcTransport>>)>,
    /// The running nodes.
    pub nodes: Arc<LocalNodes>,
    /// Each node's directory, and its clock when the cluster was started with skewable
    /// clocks (kept across restarts).
    dirs: BTreeMap<u64, (PathBuf, Option<Arc<SkewedClock>>)>,
    template: NodeConfig,
    logger: Logger,
}

impl LocalCluster {
    /// Opens `count` nodes under `base` (`base/node-<i>`), each configured as `template`
    /// (whose `data_dir` is replaced); the first bootstraps the cluster, the placement driver
    /// (configured by `pd`) replicates its region onto the others.
    pub fn start(
        base: &Path,
        count: usize,
        template: NodeConfig,
        pd: MemPdConfig,
        logger: &Logger,
    ) -> Result<Self> {
        Self::start_with_clocks(base, count, template, pd, false, logger)
    }

    /// [`Self::start`], the nodes talking gRPC on loopback, each through a [`GrpcTransport`]
    /// configured as `grpc` (its listen address's port is picked per node). Filters on
    /// [`Self::net`] have no effect on such a cluster.
    pub fn start_over_grpc(
        base: &Path,
        count: usize,
        template: NodeConfig,
        pd: MemPdConfig,
        grpc: GrpcConfig,
        logger: &Logger,
    ) -> Result<Self> {
        Self::start_on(base, count, template, pd, false, Some(grpc), logger)
    }

    /// [`Self::start`]; with `skewable`, each node's leases run on a [`SkewedClock`] (see
    /// [`Self::clock`]) that a fault simulation can slow down or speed up.
    pub fn start_with_clocks(
        base: &Path,
        count: usize,
        template: NodeConfig,
        pd: MemPdConfig,
        skewable: bool,
        logger: &Logger,
    ) -> Result<Self> {
        Self::start_on(base, count, template, pd, skewable, None, logger)
    }

    fn start_on(
        base: &Path,
        count: usize,
        template: NodeConfig,
        pd: MemPdConfig,
        skewable: bool,
        grpc: Option<GrpcConfig>,
        logger: &Logger,
    ) -> Result<Self> {
        let mut cluster = LocalCluster {
            pd: Arc::new(MemPd::new(pd)),
            net: LocalNetwork::new(),
            grpc: grpc.map(|g| (g, Mutex::default())),
            nodes: Arc::new(LocalNodes::new()),
            dirs: BTreeMap::new(),
            template,
            logger: logger.clone(),
        };
        for i in 0..count {
            let dir = base.join(format!("node-{i}"));
            let clock = skewable.then(|| Arc::new(SkewedClock::new(Arc::new(MonotonicRawClock))));
            let node = cluster.open(&dir, clock.clone())?;
            cluster.dirs.insert(node.store_id(), (dir, clock));
            cluster.nodes.insert(node);
        }
        Ok(cluster)
    }

    fn open(&self, dir: &Path, clock: Option<Arc<SkewedClock>>) -> Result<Node> {
        let cfg = NodeConfig { data_dir: dir.to_path_buf(), ..self.template.clone() };
        let pd: Arc<dyn PdClient> = self.pd.clone();
        let clock: Arc<dyn Clock> = match clock {
            Some(clock) => clock,
            None => Arc::new(MonotonicRawClock),
        };
        let Some((grpc_cfg, transports)) = &self.grpc else {
            return Node::open_with_clock(cfg, pd, self.net.clone(), clock, &self.logger);
        };
        let grpc = GrpcTransport::start(grpc_cfg.clone(), pd.clone(), &self.logger)?;
        let cfg = NodeConfig { advertise_addr: grpc.addr().to_string(), ..cfg };
        match Node::open_with_clock(cfg, pd, grpc.clone(), clock, &self.logger) {
            Ok(node) => {
                let mut transports = transports.lock().unwrap_or_else(|e| e.into_inner());
                transports.insert(node.store_id(), grpc);
                Ok(node)
            }
            Err(e) => {
                grpc.stop();
                Err(e)
            }
        }
    }

    /// Over gRPC, raft messages the running nodes' transports sent and the batches (frames)
    /// they went in; `None` on the in-process network.
    pub fn grpc_batching(&self) -> Option<(u64, u64)> {
        let (_, transports) = self.grpc.as_ref()?;
        let transports = transports.lock().unwrap_or_else(|e| e.into_inner());
        let sum = |f: fn(&rpc::ClientStats) -> u64| -> u64 {
            transports.values().map(|t| f(&t.client_stats())).sum()
        };
        Some((
            sum(|s| s.messages.load(Ordering::Relaxed)),
            sum(|s| s.batches.load(Ordering::Relaxed)),
        ))
    }

    /// The clock of a node's leases, if the cluster was started with skewable clocks.
    pub fn clock(&self, store_id: u64) -> Option<Arc<SkewedClock>> {
        self.dirs.get(&store_id).and_then(|(_, clock)| clock.clone())
    }

    /// Store ids of every node, running or not.
    pub fn store_ids(&self) -> Vec<u64> {
        self.dirs.keys().copied().collect()
    }

    /// Stops a node (it leaves the directory). Messages on their way to it are lost; commands
    /// it had not answered get an undetermined outcome, as clients of a killed process see.
    pub fn stop_node(&self, store_id: u64) {
        if let Some(node) = self.nodes.remove(store_id) {
            node.stop();
        }
        if let Some((_, transports)) = &self.grpc {
            let grpc = transports.lock().unwrap_or_else(|e| e.into_inner()).remove(&store_id);
            if let Some(grpc) = grpc {
                grpc.stop();
            }
        }
    }

    /// Opens a stopped node again from its directory. A reader that held a snapshot of the
    /// stopped node keeps its engines open until it lets go (a few milliseconds): the open
    /// is retried for up to `ENGINE_RELEASE_WAIT` while their lock is held.
    pub fn start_node(&self, store_id: u64) -> Result<()> {
        let (dir, clock) =
            self.dirs.get(&store_id).ok_or(Error::Open(format!("no node {store_id}")))?;
        let deadline = Instant::now() + ENGINE_RELEASE_WAIT;
        let node = loop {
            match self.open(dir, clock.clone()) {
                Ok(node) => break node,
                Err(Error::Open(e)) if is_lock_held(&e) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e),
            }
        };
        self.nodes.insert(node);
        Ok(())
    }

    /// The leader of a region among the running nodes (the highest term), with its status.
    pub fn leader_of(&self, region_id: u64) -> Option<(Node, PeerStatus)> {
        self.nodes
            .all()
            .into_iter()
            .filter_map(|n| n.region_status(region_id).map(|s| (n, s)))
            .filter(|(_, s)| s.role == raft::StateRole::Leader)
            .max_by_key(|(_, s)| s.term)
    }

    /// Waits until every region the placement driver knows has a leader with `voters`
    /// voters.
    pub fn wait_ready(&self, voters: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let ready = |r: &metapb::Region| {
            self.leader_of(r.id).is_some_and(|(_, s)| s.region.get_peers().len() >= voters)
        };
        while !self.pd.regions().iter().all(ready) {
            if Instant::now() > deadline {
                return Err(Error::Open(format!("regions not ready within {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Splits the key space at `keys` (sorted), through each region's leader, a batch of at
    /// most `batch` keys per split.
    pub fn split(&self, keys: &[Vec<u8>], batch: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut rest = keys;
        while let Some(first) = rest.first() {
            let (region, _) = self.pd.get_region(first)?;
            let inside = |k: &Vec<u8>| region.end_key.is_empty() || *k < region.end_key;
            let n = rest.iter().take(batch.max(1)).take_while(|k| inside(k)).count().max(1);
            let (now, later) = rest.split_at(n);
            let now: Vec<Vec<u8>> =
                now.iter().filter(|k| **k != region.start_key).cloned().collect();
            if !now.is_empty() {
                self.split_region(&region, now, deadline)?;
            }
            rest = later;
        }
        Ok(())
    }

    fn split_region(
        &self,
        region: &metapb::Region,
        keys: Vec<Vec<u8>>,
        deadline: Instant,
    ) -> Result<()> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Some((leader, status)) = self.leader_of(region.id) {
                let epoch = status.region.get_region_epoch().clone();
                match leader.split_region(region.id, epoch, keys.clone(), left) {
                    Ok(_) => return Ok(()),
                    Err(e) if !e.is_retryable() || left.is_zero() => return Err(e),
                    Err(_) => {}
                }
            }
            if left.is_zero() {
                return Err(Error::Timeout(Duration::ZERO));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops every node.
    pub fn stop(&self) {
        for node in self.nodes.all() {
            self.stop_node(node.store_id());
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
