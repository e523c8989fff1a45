//! `Node`: one store of a cluster, as a database embeds it.
//!
//! ```text
//! Node::open(cfg, pd, transport)
//!   engines under cfg.data_dir ── store ident? ── no: id from the PD, ident written
//!   cluster bootstrapped at the PD? ── no: the first region prepared here, then
//!       bootstrap_cluster (lost the race: the prepared region is cleared)
//!   RaftStore::start (recovers every region) ── transport.attach(router)
//!
//! async_write(ctx, mods) ─▶ RaftCommand ─▶ peer ─▶ raft ─▶ apply ─▶ Pending<()> resolves
//! async_snapshot(ctx)    ─▶ StoreReader: lease read here, or the peer (ReadIndex /
//!                           follower read) ─▶ Pending<Snapshot> resolves
//! stop(): transport detached, store shut down (answering what it holds), engines synced
//! ```
//!
//! A `Node` is a cheap handle (clone it freely, share it between threads). Routers and
//! readers are kept in a small pool, so no caller holds the store's engines: after `stop()`
//! every call answers [`Error::Stopped`] and the engines are closed, so the data directory can
//! be opened again, in this process or another.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use engine::{
    keys,
    rocks::{open_engines, RocksConfig, RocksEngine, RocksRaftEngine},
    KvEngine, Peekable, RaftEngine, CF_META,
};
use local_reader::{Clock, MonotonicRawClock, ReadStats};
use pd_client::PdClient;
use prometheus::Registry;
use proto::{
    metapb,
    raft_cmdpb::{AdminCmdType, RaftCmdRequest},
    raft_serverpb::StoreIdent,
};
use raftstore::{
    bootstrap::{
        bootstrap_store, check_store_ident, clear_prepared_bootstrap, finish_bootstrap,
        prepare_bootstrap, prepared_bootstrap,
    },
    metrics::RaftEvent,
    msg::{CmdResponseSender, PeerStatus, RaftCommand},
    store_meta::SharedStoreMeta,
    Config, Engines, RaftStore, StoreReader, StoreServices,
};
use slog::{info, o, warn, Logger};

use crate::{
    metrics::{store_registry, NodeMetrics},
    request::{outcome, write_command, Context, Modify, Pending, Snapshot},
    transport::{NodeRouter, NodeTransport},
    Error, Result,
};

/// Where and how a node runs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Its engines live under this directory (created if missing).
    pub data_dir: PathBuf,
    /// The store's tuning.
    pub store: Config,
    /// The engines' tuning.
    pub rocksdb: RocksConfig,
    /// The address other nodes and clients reach it at (recorded at the placement driver).
    pub advertise_addr: String,
}

impl NodeConfig {
    /// Defaults (production ticks) under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        NodeConfig {
            data_dir: data_dir.into(),
            store: Config::default(),
            rocksdb: RocksConfig::default(),
            advertise_addr: String::new(),
        }
    }
}

type Store = RaftStore<RocksEngine, RocksRaftEngine>;
type Reader = StoreReader<RocksEngine, RocksRaftEngine>;

/// What a running node holds; gone once stopped.
struct Running {
    /// Behind a mutex: it holds a router, which is for one thread at a time.
    store: Mutex<Store>,
    engines: Engines<RocksEngine, RocksRaftEngine>,
    /// Routers and readers to lend to callers (each is for one thread at a time).
    pool: Mutex<Vec<(NodeRouter, Reader)>>,
    detach: Box<dyn Fn() + Send + Sync>,
}

struct Inner {
    store_id: u64,
    cluster_id: u64,
    logger: Logger,
    running: RwLock<Option<Running>>,
    /// Held for the whole of a stop, so every `stop()` returns only once the engines are
    /// closed (a second caller waits for the first).
    stopping: Mutex<()>,
    registry: Registry,
    metrics: NodeMetrics,
}

/// One store of a cluster. See the module docs.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

/// Most routers and readers a node keeps for reuse.
const POOL: usize = 64;

impl Node {
    /// Opens the node whose data lives under `cfg.data_dir`, creating and bootstrapping it
    /// (and the cluster's first region, if the cluster is new) through `pd`, then recovers
    /// every region and starts the store. Reopening a directory after a crash recovers every
    /// acknowledged write.
    pub fn open<T: NodeTransport>(
        cfg: NodeConfig,
        pd: Arc<dyn PdClient>,
        transport: T,
        logger: &Logger,
    ) -> Result<Node> {
        Self::open_with_clock(cfg, pd, transport, Arc::new(MonotonicRawClock), logger)
    }

    /// [`Self::open`] with leases on `clock` (a manual clock in tests, a skewed one in a
    /// fault simulation) instead of `CLOCK_MONOTONIC_RAW`.
    pub fn open_with_clock<T: NodeTransport>(
        cfg: NodeConfig,
        pd: Arc<dyn PdClient>,
        transport: T,
        clock: Arc<dyn Clock>,
        logger: &Logger,
    ) -> Result<Node> {
        cfg.store.validate().map_err(|e| Error::Open(e.to_string()))?;
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| Error::Open(format!("{}: {e}", cfg.data_dir.display())))?;
        let (kv, raft) = open_engines(&cfg.data_dir, &cfg.rocksdb)
            .map_err(|e| Error::Open(format!("{}: {e}", cfg.data_dir.display())))?;
        let cluster_id = pd.cluster_id();
        let store_id = identify(&kv, cluster_id, pd.as_ref())?;
        let root = logger;
        let logger = logger.new(o!("store_id" => store_id));
        let mut store = metapb::Store::default();
        store.id = store_id;
        store.address = cfg.advertise_addr.clone();
        pd.put_store(store.clone())?;
        bootstrap_cluster(&kv, &raft, pd.as_ref(), store, &logger)?;
        let engines = Engines { kv, raft };
        let registry = store_registry(store_id);
        let metrics = NodeMetrics::register(&registry)?;
        let services = StoreServices::new(transport.sender(store_id), pd)
            .with_clock(clock)
            .with_registry(registry.clone());
        let store =
            RaftStore::start(cfg.store, cluster_id, store_id, engines.clone(), services, root)
                .map_err(|e| Error::Open(e.to_string()))?;
        transport.attach(store_id, store.router());
        let detach = Box::new(move || transport.detach(store_id));
        let running =
            Running { store: Mutex::new(store), engines, pool: Mutex::new(Vec::new()), detach };
        info!(logger, "node open"; "cluster_id" => cluster_id);
        let running = RwLock::new(Some(running));
        let stopping = Mutex::new(());
        let inner = Inner { store_id, cluster_id, logger, running, stopping, registry, metrics };
        Ok(Node { inner: Arc::new(inner) })
    }

    /// The store's id.
    pub fn store_id(&self) -> u64 {
        self.inner.store_id
    }

    /// The cluster's id.
    pub fn cluster_id(&self) -> u64 {
        self.inner.cluster_id
    }

    /// Writes `mods` (all in the region of `ctx`) through the region's leader here; resolves
    /// once applied, or to the error that stopped it ([`Error::Undetermined`] if it may or may
    /// not have been applied).
    pub fn async_write(&self, ctx: &Context, mods: &[Modify]) -> Pending<()> {
        let (answer, pending) = Pending::channel();
        let (metrics, start) = (self.inner.metrics.clone(), Instant::now());
        let request = write_command(ctx, mods);
        // The command is built only once the router is there: a command dropped unsent would
        // answer (and count) itself as undetermined, though a stopped node applied nothing.
        let sent = self.with_router(move |r| {
            let ch = CmdResponseSender::callback(move |resp| {
                let res = outcome(resp).map(drop);
                metrics.answered("write", start, &res);
                answer.send(res)
            });
            r.send_command(RaftCommand { request, ch })
        });
        if let Err(e) = sent {
            let res = Err(e);
            self.inner.metrics.answered("write", start, &res);
            return Pending::ready(res);
        }
        pending
    }

    /// [`Self::async_write`], waiting at most `timeout` (then the outcome is undetermined).
    pub fn write(&self, ctx: &Context, mods: &[Modify], timeout: Duration) -> Result<()> {
        self.async_write(ctx, mods)
            .wait_timeout(timeout)
            .unwrap_or_else(|| Err(Error::Undetermined(format!("no answer within {timeout:?}"))))
    }

    /// A snapshot of the region of `ctx` that reflects every write acknowledged before the
    /// call: from the leader's lease on this thread when it can, else through the peer
    /// (ReadIndex, or a follower read when `ctx.replica_read`).
    pub fn async_snapshot(&self, ctx: &Context) -> Pending<Snapshot> {
        let (answer, pending) = Pending::read_channel();
        let read_ctx = ctx.read_context();
        let read_error = |e| match e {
            raftstore::Error::OutcomeUnknown(why) => Error::NoAnswer(why), // reads change nothing
            e => Error::Request(e),
        };
        let (metrics, start) = (self.inner.metrics.clone(), Instant::now());
        let res = self.with_reader(|reader| {
            reader.async_snapshot(&read_ctx, move |res| {
                let res = res.map_err(read_error);
                metrics.answered("snapshot", start, &res);
                answer.send(res)
            })
        });
        match res {
            Ok(()) => pending,
            Err(e) => {
                let res = Err(e);
                self.inner.metrics.answered("snapshot", start, &res);
                Pending::ready(res)
            }
        }
    }

    /// [`Self::async_snapshot`], waiting at most `timeout`.
    pub fn snapshot(&self, ctx: &Context, timeout: Duration) -> Result<Snapshot> {
        self.async_snapshot(ctx).wait_timeout(timeout).unwrap_or(Err(Error::Timeout(timeout)))
    }

    /// The value of `key` in the region of `ctx`, read as [`Self::snapshot`] reads.
    pub fn get(&self, ctx: &Context, key: &[u8], timeout: Duration) -> Result<Option<Vec<u8>>> {
        let snap = self.snapshot(ctx, timeout)?;
        snap.get(key).map_err(|e| Error::Request(e.into()))
    }

    /// Splits a region (led here) at `split_keys`, in order and inside it; the regions it
    /// became, once the split applied here.
    pub fn split_region(
        &self,
        region_id: u64,
        region_epoch: metapb::RegionEpoch,
        split_keys: Vec<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Vec<metapb::Region>> {
        let rx = self.with_router(|r| r.split_region(region_id, region_epoch, split_keys))?;
        let resp = rx.recv_timeout(timeout).map_err(|_| {
            Error::Undetermined(format!("the split did not finish within {timeout:?}"))
        })?;
        Ok(outcome(resp)?.get_admin_response().get_splits().get_regions().to_vec())
    }

    /// Asks the region's leader here to hand leadership to `to`. The answer means the
    /// transfer started; watch [`Self::region_status`] for the outcome.
    pub fn transfer_leader(
        &self,
        ctx: &Context,
        to: &metapb::Peer,
        timeout: Duration,
    ) -> Result<()> {
        let mut req = RaftCmdRequest::default();
        req.set_header(ctx.header());
        req.mut_admin_request().set_cmd_type(AdminCmdType::TransferLeader);
        req.mut_admin_request().mut_transfer_leader().set_peer(to.clone());
        let (cmd, rx) = RaftCommand::new(req);
        self.with_router(|r| r.send_command(cmd))?;
        let resp = rx.recv_timeout(timeout).map_err(|_| Error::Timeout(timeout))?;
        outcome(resp).map(drop)
    }

    /// The status of this node's peer of a region: role, term, leader, indexes, the region.
    pub fn region_status(&self, region_id: u64) -> Option<PeerStatus> {
        self.with_router(|r| r.query(region_id, Duration::from_secs(1))).ok().flatten()
    }

    /// The regions this node holds a peer of, as it knows them.
    pub fn regions(&self) -> Vec<metapb::Region> {
        self.with_store(|s| s.meta().lock().unwrap_or_else(|e| e.into_inner()).regions())
            .unwrap_or_default()
    }

    /// The read-path counters (local, ReadIndex, follower reads, redirects by reason).
    pub fn read_stats(&self) -> ReadStats {
        self.with_store(|s| s.read_stats()).unwrap_or_default()
    }

    /// The node's metrics registry (names `regionstore_*`, label `store`); gather it, or
    /// serve it with [`crate::metrics::MetricsServer`]. It outlives a stop, frozen.
    pub fn registry(&self) -> Registry {
        self.inner.registry.clone()
    }

    /// How often each safety rule fired on this node.
    pub fn raft_events(&self) -> Vec<(RaftEvent, u64)> {
        self.with_store(|s| s.raft_events().all()).unwrap_or_default()
    }

    /// How many of this node's peers are in hibernation state `state` (0 when stopped).
    pub fn peers_in_hibernate_state(
        &self,
        state: raftstore::operation::hibernate::GroupState,
    ) -> i64 {
        self.with_store(|s| s.raft_events().peers_in_hibernate_state(state)).unwrap_or(0)
    }

    /// Switches lease reads on or off at run time (off: every read takes ReadIndex).
    pub fn set_lease_reads(&self, on: bool) {
        let _ = self.with_store(|s| s.set_lease_reads(on));
    }

    /// Whether the node runs.
    pub fn is_running(&self) -> bool {
        self.with_running(|_| ()).is_ok()
    }

    /// Stops the node: it leaves the transport, its store shuts down (pending commands are
    /// answered, as undetermined where they did not apply), its engines are synced and
    /// closed — unless a caller still holds a [`Snapshot`], a [`Self::reader`] or
    /// [`Self::engines`] of it, which keep them open until dropped. Idempotent, and every
    /// call returns only once the stop is done; later calls on any handle answer
    /// [`Error::Stopped`].
    pub fn stop(&self) {
        self.inner.stop();
    }

    // -- for tools and the test harness: views into the running store --

    /// A router of the store (for one thread), while it runs.
    pub fn router(&self) -> Result<NodeRouter> {
        self.with_store(|s| s.router())
    }

    /// A reader of the store (for one thread), while it runs.
    pub fn reader(&self) -> Result<Reader> {
        self.with_store(|s| s.reader())
    }

    /// The store's regions, ranges and read delegates, while it runs.
    pub fn store_meta(&self) -> Result<SharedStoreMeta> {
        self.with_store(|s| s.meta().clone())
    }

    /// The gates of the store's pollers and of its apply pollers, while the node runs: a
    /// fault simulation closes one to freeze those threads (see `raftstore::PollGate`).
    pub fn poll_gates(&self) -> Result<(raftstore::PollGate, raftstore::PollGate)> {
        self.with_store(|s| s.poll_gates())
    }

    /// The engines, while the node runs. Holding them keeps them open after a stop: drop them
    /// before opening the directory again.
    pub fn engines(&self) -> Result<Engines<RocksEngine, RocksRaftEngine>> {
        self.with_running(|r| r.engines.clone())
    }

    fn with_running<R>(&self, f: impl FnOnce(&Running) -> R) -> Result<R> {
        let running = self.inner.running.read().unwrap_or_else(|e| e.into_inner());
        running.as_ref().map(f).ok_or(Error::Stopped)
    }

    fn with_store<R>(&self, f: impl FnOnce(&Store) -> R) -> Result<R> {
        self.with_running(|r| f(&r.store.lock().unwrap_or_else(|e| e.into_inner())))
    }

    /// Lends a router and a reader for the length of `f`.
    fn with_handles<R>(&self, f: impl FnOnce(&mut (NodeRouter, Reader)) -> R) -> Result<R> {
        let running = self.inner.running.read().unwrap_or_else(|e| e.into_inner());
        let running = running.as_ref().ok_or(Error::Stopped)?;
        let lent = running.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut handles = lent.unwrap_or_else(|| {
            let store = running.store.lock().unwrap_or_else(|e| e.into_inner());
            (store.router(), store.reader())
        });
        let res = f(&mut handles);
        let mut pool = running.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL {
            pool.push(handles);
        }
        Ok(res)
    }

    fn with_router<R>(&self, f: impl FnOnce(&NodeRouter) -> R) -> Result<R> {
        self.with_handles(|(router, _)| f(router))
    }

    fn with_reader<R>(&self, f: impl FnOnce(&mut Reader) -> R) -> Result<R> {
        self.with_handles(|(_, reader)| f(reader))
    }
}

impl Inner {
    fn stop(&self) {
        let _stopping = self.stopping.lock().unwrap_or_else(|e| e.into_inner());
        let running = self.running.write().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut running) = running else { return };
        (running.detach)();
        running.store.get_mut().unwrap_or_else(|e| e.into_inner()).shutdown();
        running.pool.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let Engines { kv, raft } = &running.engines;
        if let Err(e) = kv.sync_wal().and_then(|_| raft.sync()) {
            warn!(self.logger, "cannot sync the engines at stop"; "err" => %e);
        }
        info!(self.logger, "node stopped");
    }
}

impl Drop for Inner {
    /// The last handle is gone: stop as [`Node::stop`] does.
    fn drop(&mut self) {
        self.stop();
    }
}

/// The store id of the engines, from their ident, or a new one from the placement driver
/// written into them.
fn identify(kv: &RocksEngine, cluster_id: u64, pd: &dyn PdClient) -> Result<u64> {
    let ident: Option<StoreIdent> = kv
        .get_msg_cf(CF_META, keys::STORE_IDENT_KEY)
        .map_err(|e| Error::Open(format!("store ident: {e}")))?;
    let open_err = |e: raftstore::Error| Error::Open(e.to_string());
    match ident {
        Some(ident) => {
            check_store_ident(kv, cluster_id, ident.store_id).map_err(open_err)?;
            Ok(ident.store_id)
        }
        None => {
            let store_id = pd.alloc_id()?;
            bootstrap_store(kv, cluster_id, store_id).map_err(open_err)?;
            Ok(store_id)
        }
    }
}

/// Makes this store the first of a new cluster if none is bootstrapped: a first region (the
/// whole key space, one peer here) is prepared in the engines, marked as such, then offered
/// to the placement driver. A store that prepared one before (and crashed, or lost the race)
/// settles it first: kept if the placement driver knows it, deleted otherwise — never left
/// to start as a second copy of the key space.
fn bootstrap_cluster(
    kv: &RocksEngine,
    raft: &RocksRaftEngine,
    pd: &dyn PdClient,
    store: metapb::Store,
    logger: &Logger,
) -> Result<()> {
    let open_err = |e: raftstore::Error| Error::Open(e.to_string());
    let region = match prepared_bootstrap(kv).map_err(open_err)? {
        Some(region) => region,
        None if pd.is_cluster_bootstrapped()? => return Ok(()),
        None => {
            let mut region = metapb::Region::default();
            region.id = pd.alloc_id()?;
            region.mut_region_epoch().conf_ver = 1;
            region.mut_region_epoch().version = 1;
            let mut peer = metapb::Peer::default();
            peer.id = pd.alloc_id()?;
            peer.store_id = store.id;
            region.mut_peers().push(peer);
            prepare_bootstrap(kv, raft, &region).map_err(open_err)?;
            region
        }
    };
    let won = match pd.bootstrap_cluster(store, region.clone()) {
        Ok(()) => true,
        // Lost the race, or won it with a call whose answer was lost: the PD knows.
        // Only a definite "not found" means another store won; any other answer keeps the
        // marker, so a region the PD registered is never deleted on a passing error.
        Err(pd_client::Error::AlreadyBootstrapped) => match pd.get_region_by_id(region.id) {
            Ok(_) => true,
            Err(pd_client::Error::RegionNotFound(_)) => false,
            Err(e) => return Err(e.into()),
        },
        Err(e) => return Err(e.into()), // the marker stays: settled on the next open
    };
    if won {
        info!(logger, "cluster bootstrapped"; "region_id" => region.id);
        finish_bootstrap(kv).map_err(open_err)
    } else {
        info!(logger, "another node bootstrapped the cluster first");
        clear_prepared_bootstrap(kv, raft, &region).map_err(open_err)
    }
}
