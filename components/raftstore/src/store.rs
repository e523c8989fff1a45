//! A running store: its two batch systems, its peers recovered from the engines, and the
//! ticker that drives raft time.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use engine::{KvEngine, Mutable, RaftEngine};
use local_reader::{Clock, LocalReader, MonotonicRawClock, ReadCounters, ReadStats};
use pd_client::PdClient;
use prometheus::Registry;
use proto::raft_serverpb::{PeerState, RaftMessage};
use router::{
    create_system, BasicMailbox, BatchSystem, Cadence, PollGate, RouterAndSystem, SendError,
};
use slog::{info, o, warn, Logger};

use crate::{
    batch::{ApplyHandlerBuilder, StoreContext, StoreHandlerBuilder},
    bootstrap::{check_store_ident, load_region_states},
    fsm::{
        apply::{ApplyControl, ApplyFsm, ApplyRouter},
        peer::PeerFsm,
        store::{StoreFsm, StoreRouter},
    },
    metrics::{StoreGauges, StoreMetrics},
    msg::{PeerMsg, PeerStatus, RaftCommand, ReadCommand, StoreMsg},
    operation::{
        life::{delete_raft_log, tombstone_region},
        merge::MergeFlow,
        snapshot::SnapGenerator,
    },
    raft::{apply::Apply, peer::Peer},
    reader::StoreReader,
    store_meta::{MetaDelegates, SharedStoreMeta, StoreMeta},
    transport::{Transport, TransportError},
    worker::{self, pd::PdRunner, split_check::SplitCheckRunner},
    Config, Error, Result,
};

/// The handle clients and transports use to reach a store's peers. Cheap to clone; clone one
/// per thread (it caches mailboxes).
pub struct RaftRouter<EK: KvEngine, ER: RaftEngine> {
    store_id: u64,
    router: StoreRouter<EK, ER>,
}

impl<EK: KvEngine, ER: RaftEngine> Clone for RaftRouter<EK, ER> {
    fn clone(&self) -> Self {
        RaftRouter { store_id: self.store_id, router: self.router.clone() }
    }
}

impl<EK: KvEngine, ER: RaftEngine> RaftRouter<EK, ER> {
    /// The store's id.
    pub fn store_id(&self) -> u64 {
        self.store_id
    }

    /// Delivers a raft message from another store: to the region's peer, or to the store FSM
    /// if the region has no peer here. Messages for another store are refused.
    pub fn send_raft_message(&self, msg: RaftMessage) -> std::result::Result<(), TransportError> {
        if msg.get_to_peer().store_id != self.store_id {
            return Err(TransportError::Unreachable(msg.get_to_peer().store_id));
        }
        let region_id = msg.region_id;
        match self.router.try_send(region_id, PeerMsg::RaftMessage(Box::new(msg))) {
            Ok(()) => Ok(()),
            Err(SendError::NotFound { msg: PeerMsg::RaftMessage(m), .. }) => self
                .router
                .send_control(StoreMsg::RaftMessage(m))
                .map_err(|_| TransportError::Busy(self.store_id)),
            Err(_) => Err(TransportError::Busy(self.store_id)),
        }
    }

    /// Sends a command to its region's peer. Every failure is answered on the command's
    /// channel with a typed error (`RegionNotFound` when the region has no peer here or its
    /// peer is gone, `ServerIsBusy` when its mailbox is full), so the caller always hears
    /// back.
    pub fn send_command(&self, cmd: RaftCommand) {
        let region_id = cmd.request.get_header().region_id;
        match self.router.try_send(region_id, PeerMsg::RaftCommand(Box::new(cmd))) {
            Ok(()) => {}
            Err(e) => {
                let err = match &e {
                    SendError::NotFound { .. } => Error::RegionNotFound(region_id),
                    SendError::Full { .. } => {
                        Error::ServerIsBusy(format!("region {region_id} mailbox is full"))
                    }
                    SendError::Closed { .. } => Error::RegionNotFound(region_id),
                };
                if let PeerMsg::RaftCommand(cmd) = e.into_inner() {
                    cmd.ch.respond_error(err);
                }
            }
        }
    }

    /// Asks the region's peer to renew its lease (a reader saw it about to end). Best effort:
    /// the lease-check tick renews it anyway.
    pub fn request_lease_renewal(&self, region_id: u64) {
        let _ = self.router.try_send(region_id, PeerMsg::RenewLease);
    }

    /// Asks the region's leader to split it at `split_keys` (user keys, in order, inside
    /// the region of `region_epoch`). The answer comes once the split applied (its
    /// `BatchSplitResponse` lists the regions) or with the error that stopped it.
    pub fn split_region(
        &self,
        region_id: u64,
        region_epoch: proto::metapb::RegionEpoch,
        split_keys: Vec<Vec<u8>>,
    ) -> crossbeam_channel::Receiver<proto::raft_cmdpb::RaftCmdResponse> {
        let (ch, rx) = crate::msg::CmdResponseSender::channel();
        let split = crate::msg::SplitRegion { region_epoch, split_keys, ch: Some(ch) };
        if let Err(e) = self.router.try_send(region_id, PeerMsg::SplitRegion(Box::new(split))) {
            let err = match &e {
                SendError::Full { .. } => Error::ServerIsBusy("mailbox full".into()),
                _ => Error::RegionNotFound(region_id),
            };
            if let PeerMsg::SplitRegion(s) = e.into_inner() {
                if let Some(ch) = s.ch {
                    ch.respond_error(err);
                }
            }
        }
        rx
    }

    /// Sends a read to its region's peer; failures are answered like [`Self::send_command`]'s.
    pub fn send_read(&self, read: ReadCommand<EK::Snapshot>) {
        let region_id = read.request.get_header().region_id;
        if let Err(e) = self.router.try_send(region_id, PeerMsg::SnapshotRead(Box::new(read))) {
            let err = match &e {
                SendError::Full { .. } => {
                    Error::ServerIsBusy(format!("region {region_id} mailbox is full"))
                }
                SendError::NotFound { .. } | SendError::Closed { .. } => {
                    Error::RegionNotFound(region_id)
                }
            };
            if let PeerMsg::SnapshotRead(read) = e.into_inner() {
                read.responder.respond_error(err);
            }
        }
    }

    /// How many peers the store's router holds mailboxes of (a destroyed peer leaves).
    pub fn peer_count(&self) -> usize {
        self.router.len()
    }

    /// The status of the region's peer on this store, or `None` if it has none or does not
    /// answer within `timeout`.
    pub fn query(&self, region_id: u64, timeout: Duration) -> Option<PeerStatus> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.router.force_send(region_id, PeerMsg::Query(tx)).ok()?;
        rx.recv_timeout(timeout).ok()
    }
}

/// The two engines of a store.
#[derive(Clone, Debug)]
pub struct Engines<EK, ER> {
    /// User data and region meta.
    pub kv: EK,
    /// Raft logs and raft states.
    pub raft: ER,
}

/// What a store talks to: the other stores, the placement driver, the clock its leases run
/// on, and the registry its metrics go to.
pub struct StoreServices<T> {
    /// Sends raft messages to other stores.
    pub trans: T,
    /// The placement driver.
    pub pd: Arc<dyn PdClient>,
    /// The lease clock: `CLOCK_MONOTONIC_RAW` in production, a manual clock in tests.
    pub clock: Arc<dyn Clock>,
    /// Where the store registers its metrics (one registry per store).
    pub registry: Registry,
}

impl<T> StoreServices<T> {
    /// `trans` and `pd`, with the production clock and a registry of the store's own.
    pub fn new(trans: T, pd: Arc<dyn PdClient>) -> Self {
        StoreServices { trans, pd, clock: Arc::new(MonotonicRawClock), registry: Registry::new() }
    }

    /// The same, registering the metrics in `registry`.
    pub fn with_registry(self, registry: Registry) -> Self {
        StoreServices { registry, ..self }
    }

    /// The same, on `clock`.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        StoreServices { clock, ..self }
    }
}

/// The store's metrics, registered in `registry`: read-path counters, store metrics, and
/// the gauges computed from `meta` when the registry is gathered.
fn register_metrics(
    registry: &Registry,
    meta: &SharedStoreMeta,
    clock: &Arc<dyn Clock>,
) -> Result<(Arc<ReadCounters>, Arc<StoreMetrics>)> {
    let refused = |e: prometheus::Error| Error::InvalidArgument(format!("metrics: {e}"));
    let read_counters = Arc::new(ReadCounters::default());
    read_counters.register(registry).map_err(refused)?;
    let counters = Arc::new(StoreMetrics::default());
    counters.register(registry).map_err(refused)?;
    let gauges = StoreGauges::new(meta.clone(), clock.clone());
    registry.register(Box::new(gauges)).map_err(refused)?;
    Ok((read_counters, counters))
}

/// A running store.
pub struct RaftStore<EK: KvEngine, ER: RaftEngine> {
    store_id: u64,
    kv: EK,
    clock: Arc<dyn Clock>,
    lease_reads: Arc<AtomicBool>,
    read_counters: Arc<ReadCounters>,
    counters: Arc<StoreMetrics>,
    /// Readers ask for a renewal when the lease ends within this (a quarter of it).
    renew_advance: Duration,
    router: StoreRouter<EK, ER>,
    store_system: BatchSystem<PeerFsm<EK, ER>, StoreFsm>,
    apply_system: BatchSystem<ApplyFsm<EK>, ApplyControl>,
    meta: SharedStoreMeta,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    logger: Logger,
}

impl<EK: KvEngine, ER: RaftEngine> RaftStore<EK, ER> {
    /// Opens a bootstrapped store: checks its identity, recovers a peer for every live region
    /// in its engines, and starts the batch systems and the ticker.
    pub fn start<T: Transport>(
        cfg: Config,
        cluster_id: u64,
        store_id: u64,
        engines: Engines<EK, ER>,
        services: StoreServices<T>,
        logger: &Logger,
    ) -> Result<Self> {
        let StoreServices { trans, pd, clock, registry } = services;
        cfg.validate().map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let Engines { kv, raft } = engines;
        check_store_ident(&kv, cluster_id, store_id)?;
        let logger = logger.new(o!("store_id" => store_id));
        let (router, mut store_system) = store_system(&cfg)?;
        let (apply_router, mut apply_system) = apply_system(&cfg)?;
        let meta = Arc::new(Mutex::new(StoreMeta::new(store_id)));
        let (read_counters, counters) = register_metrics(&registry, &meta, &clock)?;
        let unavailable =
            |e: std::io::Error| Error::Unavailable(format!("cannot spawn a thread: {e}"));
        let (snap_gen, snap_worker) =
            SnapGenerator::start(kv.clone(), store_id, logger.clone()).map_err(unavailable)?;

        let recovered = recover_peers(
            &cfg,
            store_id,
            &kv,
            &raft,
            &router,
            &apply_router,
            &meta,
            &snap_gen,
            &logger,
        )?;
        info!(logger, "store starting"; "regions" => recovered);

        apply_system
            .spawn(
                &format!("apply-{store_id}"),
                ApplyHandlerBuilder {
                    kv: kv.clone(),
                    store: router.clone(),
                    cfg: cfg.clone(),
                    metrics: counters.clone(),
                },
            )
            .map_err(unavailable)?;
        let pd_runner = PdRunner::new(pd, router.clone(), logger.clone());
        let (pd_scheduler, pd_worker) =
            worker::start(format!("pd-worker-{store_id}"), pd_runner).map_err(unavailable)?;
        let split_runner = SplitCheckRunner::new(kv.clone(), router.clone(), logger.clone());
        let (split_check, split_worker) =
            worker::start(format!("split-check-{store_id}"), split_runner).map_err(unavailable)?;
        let ctx = StoreContext {
            store_id,
            cfg: cfg.clone(),
            trans,
            apply: apply_router,
            router: router.clone(),
            log_batch: raft.log_batch(0),
            log_gc: Default::default(),
            kv,
            raft,
            meta: meta.clone(),
            snap_gen: Some(snap_gen),
            pd: pd_scheduler,
            split_check,
            logger: logger.clone(),
            msgs: Vec::new(),
            clock: clock.clone(),
            lease_reads: Arc::new(AtomicBool::new(true)),
            read_counters,
            counters,
            started_at: clock.now(),
            liveness: Arc::default(),
            undelivered: Vec::new(),
        };
        let (lease_reads, read_counters) = (ctx.lease_reads.clone(), ctx.read_counters.clone());
        let counters = ctx.counters.clone();
        let kv = ctx.kv.clone();
        let builder = StoreHandlerBuilder { ctx };
        store_system.spawn(&format!("raftstore-{store_id}"), builder).map_err(unavailable)?;

        let stop = Arc::new(AtomicBool::new(false));
        let ticker =
            spawn_ticker(store_id, &cfg, router.clone(), stop.clone()).map_err(unavailable)?;
        Ok(RaftStore {
            store_id,
            kv,
            clock,
            lease_reads,
            read_counters,
            counters,
            renew_advance: cfg.raft_store_max_leader_lease / 4,
            router,
            store_system,
            apply_system,
            meta,
            stop,
            ticker: Some(ticker),
            workers: vec![snap_worker, pd_worker, split_worker],
            logger,
        })
    }

    /// The store's id.
    pub fn store_id(&self) -> u64 {
        self.store_id
    }

    /// A handle to reach this store's peers.
    pub fn router(&self) -> RaftRouter<EK, ER> {
        RaftRouter { store_id: self.store_id, router: self.router.clone() }
    }

    /// A reader of this store's regions for one thread: lease reads on the caller's thread
    /// through its own `LocalReader`, the rest through the peers.
    pub fn reader(&self) -> StoreReader<EK, ER> {
        let router = self.router();
        let renew = router.clone();
        let local = LocalReader::new(
            self.kv.clone(),
            MetaDelegates(self.meta.clone()),
            self.clock.clone(),
            self.lease_reads.clone(),
            self.read_counters.clone(),
        )
        .with_renewal(self.renew_advance, move |region_id| renew.request_lease_renewal(region_id));
        StoreReader::new(local, router)
    }

    /// Switches lease reads on or off at run time; off, every read takes ReadIndex.
    pub fn set_lease_reads(&self, on: bool) {
        self.lease_reads.store(on, Ordering::Relaxed);
    }

    /// The read-path counters of this store.
    pub fn read_stats(&self) -> ReadStats {
        self.read_counters.stats()
    }

    /// The store's counts of the events its safety rules caused.
    pub fn raft_events(&self) -> &StoreMetrics {
        &self.counters
    }

    /// The store's regions and ranges.
    pub fn meta(&self) -> &SharedStoreMeta {
        &self.meta
    }

    /// The gates of the store's pollers and of its apply pollers: closing one freezes those
    /// threads between rounds (a fault simulation's pause), opening it lets them go on.
    /// Readers on other threads go on meanwhile: they check the lease against the clock.
    pub fn poll_gates(&self) -> (PollGate, PollGate) {
        (self.store_system.gate(), self.apply_system.gate())
    }

    /// Stops the ticker and both batch systems; pending commands are answered
    /// `OutcomeUnknown` as their peers drop. Idempotent.
    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        self.store_system.shutdown();
        self.apply_system.shutdown();
        // Every handle of the workers lived in a peer or a poller, all dropped now: each
        // worker sees its channel close and exits.
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        info!(self.logger, "store stopped");
    }
}

impl<EK: KvEngine, ER: RaftEngine> Drop for RaftStore<EK, ER> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The store batch system of `cfg`, not started.
fn store_system<EK: KvEngine, ER: RaftEngine>(
    cfg: &Config,
) -> Result<RouterAndSystem<PeerFsm<EK, ER>, StoreFsm>> {
    let (tx, fsm) = StoreFsm::create();
    create_system(&batch_config(cfg, cfg.store_pool_size), tx, fsm)
        .map_err(|e| Error::InvalidArgument(e.to_string()))
}

/// The apply batch system of `cfg`, not started.
fn apply_system<EK: KvEngine>(cfg: &Config) -> Result<RouterAndSystem<ApplyFsm<EK>, ApplyControl>> {
    let (tx, fsm) = ApplyControl::create();
    create_system(&batch_config(cfg, cfg.apply_pool_size), tx, fsm)
        .map_err(|e| Error::InvalidArgument(e.to_string()))
}

fn batch_config(cfg: &Config, pool_size: usize) -> router::Config {
    router::Config {
        pool_size,
        messages_per_tick: cfg.messages_per_tick,
        mailbox_capacity: cfg.mailbox_capacity,
        ..Default::default()
    }
}

/// Creates and registers a peer and an apply FSM for every live region with a peer on this
/// store. Returns how many.
#[allow(clippy::too_many_arguments)]
fn recover_peers<EK: KvEngine, ER: RaftEngine>(
    cfg: &Config,
    store_id: u64,
    kv: &EK,
    raft: &ER,
    router: &StoreRouter<EK, ER>,
    apply_router: &ApplyRouter<EK>,
    meta: &SharedStoreMeta,
    snap_gen: &SnapGenerator<EK>,
    logger: &Logger,
) -> Result<usize> {
    // The sweep below deletes log entries on the strength of apply states read here: make
    // sure they are on disk (RocksDB flushes what it recovered at open, by default).
    kv.sync_wal()?;
    let mut count = 0;
    for state in load_region_states(kv)? {
        let region = state.get_region();
        match state.get_state() {
            PeerState::Normal | PeerState::Merging => {}
            PeerState::Tombstone => {
                // Merged away (or destroyed) before its log was deleted: delete it now.
                if let Some(raft_state) = raft.get_raft_state(region.id)? {
                    let mut wb = kv.write_batch();
                    wb.delete_cf(engine::CF_META, &engine::keys::apply_state_key(region.id))?;
                    kv.write(&mut wb, engine::WriteOptions::SYNC)?;
                    delete_raft_log(raft, region.id, raft_state.last_index, true)?;
                }
                continue;
            }
            PeerState::Applying => continue,
        }
        if !region.get_peers().iter().any(|p| p.store_id == store_id) {
            // The peer applied its own removal and the store stopped before it was cleaned
            // up: finish that now, so nothing of it lingers and late messages find a tombstone.
            warn!(logger, "cleaning up a peer removed before the store stopped"; "region_id" => region.id);
            let last_index = raft.get_raft_state(region.id)?.map_or(0, |s| s.last_index);
            tombstone_region(kv, raft, region, last_index)?;
            continue;
        }
        let mut peer = Peer::new(
            cfg,
            store_id,
            kv.clone(),
            raft.clone(),
            region.clone(),
            Some(snap_gen.clone()),
            logger,
        )?;
        sweep_compacted_log(raft, region.id, peer.storage().truncated_index(), logger)?;
        if cfg.refuse_votes_after_start {
            peer.refuse_votes_until = cfg.raft_election_timeout_ticks as u64;
        }
        let merging = (state.get_state() == PeerState::Merging).then(|| state.get_merge_state());
        if let Some(merge) = merging {
            info!(logger, "a merge source restarts merging"; "region_id" => region.id,
                "target" => merge.get_target().id, "commit" => merge.commit);
            peer.merge = MergeFlow::restore(merge.clone());
        }
        let mut apply = Apply::new(
            region.clone(),
            kv.clone(),
            peer.storage().apply_state().clone(),
            peer.logger.clone(),
        );
        apply.set_merging(merging.cloned());
        let (apply_tx, apply_fsm) = ApplyFsm::create(apply, cfg.mailbox_capacity);
        apply_router.register(region.id, BasicMailbox::new(apply_tx, apply_fsm));
        let (tx, fsm) = PeerFsm::create(peer, cfg.mailbox_capacity);
        router.register(region.id, BasicMailbox::new(tx, fsm));
        meta.lock().unwrap_or_else(|e| e.into_inner()).set_region(region.clone());
        count += 1;
    }
    Ok(count)
}

/// Deletes a recovered region's log entries at or below its durable truncated index. A crash
/// can leave some: log GC's deletes wait for a kv sync (`PendingLogGc`), and the next GC
/// starts past the truncated index, so without this sweep they would stay on disk for good.
/// Cuts wait and go in order, each starting where the last ended, so what a crash leaves is
/// a run ending at the truncated index: with no entry there, there is none below, and a
/// point lookup settles it without walking the delete markers of earlier GCs.
fn sweep_compacted_log<ER: RaftEngine>(
    raft: &ER,
    region_id: u64,
    truncated: u64,
    logger: &Logger,
) -> Result<()> {
    if raft.get_entry(region_id, truncated)?.is_none() {
        return Ok(());
    }
    let swept = raft.gc(region_id, 0, truncated + 1)?;
    if swept > 0 {
        info!(logger, "deleted log entries left below the truncated index";
            "region_id" => region_id, "entries" => swept, "truncated" => truncated);
    }
    Ok(())
}

/// Drives time: a tick to every awake peer once per base tick; to sleeping leaders too (and
/// the store FSM's liveness round) once per `hibernated_tick_interval`; to every peer once per
/// `sleeping_follower_check_interval` (mailbox cadences, `operation/hibernate.rs`). Until
/// `stop`.
fn spawn_ticker<EK: KvEngine, ER: RaftEngine>(
    store_id: u64,
    cfg: &Config,
    router: StoreRouter<EK, ER>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let tick = cfg.raft_base_tick_interval;
    let rounds = |d: Duration| (d.as_nanos() / tick.as_nanos().max(1)).max(1);
    let slow_every = rounds(cfg.hibernated_tick_interval);
    let rare_every = rounds(cfg.sleeping_follower_check_interval);
    std::thread::Builder::new().name(format!("ticker-{store_id}")).spawn(move || {
        let mut round: u128 = 0;
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(tick);
            round += 1;
            let reach = if round.is_multiple_of(rare_every) {
                Cadence::Rare
            } else if round.is_multiple_of(slow_every) {
                Cadence::Slow
            } else {
                Cadence::Every
            };
            router.broadcast_normal_at(reach, || PeerMsg::Tick);
            if round.is_multiple_of(slow_every) {
                let _ = router.send_control(StoreMsg::Tick); // full: the next round pings
            }
        }
    })
}
