//! The store system's poll handler and its context: a round takes each peer's messages,
//! then writes one raft-engine batch for all of them, then does what waited for it (sends,
//! apply tasks, delegates).

use std::{
    sync::{atomic::AtomicBool, Arc},
    time::Instant,
};

use engine::{KvEngine, RaftEngine};
use local_reader::{Clock, ReadCounters};
use router::{drain, HandleResult, HandlerBuilder, PollHandler};
use slog::{warn, Logger};

use crate::{
    fsm::{
        apply::ApplyRouter,
        peer::PeerFsm,
        store::{StoreFsm, StoreRouter},
    },
    metrics::StoreMetrics,
    msg::{PeerMsg, StoreMsg},
    operation::{liveness::StoreLiveness, snapshot::SnapGenerator},
    store_meta::SharedStoreMeta,
    transport::{Transport, Undelivered},
    worker::{pd::PdScheduler, split_check::SplitCheckScheduler},
    Config,
};

/// What a store poller needs while it handles peers.
pub(crate) struct StoreContext<EK: KvEngine, ER: RaftEngine, T> {
    pub(crate) store_id: u64,
    pub(crate) cfg: Config,
    pub(crate) trans: T,
    pub(crate) apply: ApplyRouter<EK>,
    pub(crate) router: StoreRouter<EK, ER>,
    pub(crate) kv: EK,
    pub(crate) raft: ER,
    pub(crate) meta: SharedStoreMeta,
    pub(crate) snap_gen: Option<SnapGenerator<EK>>,
    pub(crate) pd: PdScheduler,
    pub(crate) split_check: SplitCheckScheduler,
    pub(crate) logger: Logger,
    pub(crate) log_batch: ER::LogBatch,
    /// Log GC deletes waiting for their apply states to be durable.
    pub(crate) log_gc: crate::operation::log_gc::PendingLogGc,
    pub(crate) msgs: Vec<PeerMsg<EK::Snapshot>>,
    /// The clock leases run on.
    pub(crate) clock: Arc<dyn Clock>,
    /// Lease reads on (the run-time switch readers share).
    pub(crate) lease_reads: Arc<AtomicBool>,
    /// The store's read-path counters.
    pub(crate) read_counters: Arc<ReadCounters>,
    /// The store's safety-event counters.
    pub(crate) counters: Arc<StoreMetrics>,
    /// Clock time the store started.
    pub(crate) started_at: std::time::Duration,
    /// Which other stores answer (`operation/liveness.rs`).
    pub(crate) liveness: Arc<StoreLiveness>,
    /// What the transport could not deliver at its last flush (a buffer kept for reuse).
    pub(crate) undelivered: Vec<Undelivered>,
}

impl<EK: KvEngine, ER: RaftEngine, T: Transport> StoreContext<EK, ER, T> {
    /// A context for another poller: the same handles, its own buffers.
    pub(crate) fn fork(&self) -> Self {
        StoreContext {
            store_id: self.store_id,
            cfg: self.cfg.clone(),
            trans: self.trans.clone(),
            apply: self.apply.clone(),
            router: self.router.clone(),
            kv: self.kv.clone(),
            raft: self.raft.clone(),
            meta: self.meta.clone(),
            snap_gen: self.snap_gen.clone(),
            pd: self.pd.clone(),
            split_check: self.split_check.clone(),
            logger: self.logger.clone(),
            log_batch: self.raft.log_batch(256),
            log_gc: Default::default(),
            msgs: Vec::new(),
            clock: self.clock.clone(),
            lease_reads: self.lease_reads.clone(),
            read_counters: self.read_counters.clone(),
            counters: self.counters.clone(),
            started_at: self.started_at,
            liveness: self.liveness.clone(),
            undelivered: Vec::new(),
        }
    }

    /// Sends the transport's queued messages, and tells each peer whose message could not be
    /// delivered (raft then probes that follower instead of streaming to it).
    fn flush_transport(&mut self) {
        let mut undelivered = std::mem::take(&mut self.undelivered);
        self.trans.flush(&mut undelivered);
        undelivered.retain(|u| u.region_id != 0); // the store's own: the next round resends
        for u in &undelivered {
            self.counters.dropped(u.msg_type);
        }
        undelivered.dedup(); // the pieces of one snapshot
        for u in undelivered.drain(..) {
            let msg = PeerMsg::Undelivered { to: u.to_peer, snap_index: u.snap_index };
            let _ = self.router.force_send(u.region_id, msg);
        }
        self.undelivered = undelivered;
    }
}

impl<EK: KvEngine, ER: RaftEngine, T> StoreContext<EK, ER, T> {
    /// Ticks a peer created now drops vote requests for: what is left of the first election
    /// timeout since the store started. Its previous incarnation (before a restart) may have
    /// backed a lease, uninitialized or not; after that window every such lease has ended.
    pub(crate) fn vote_refusal_ticks(&self) -> u64 {
        if !self.cfg.refuse_votes_after_start {
            return 0;
        }
        let up = self.clock.now().saturating_sub(self.started_at);
        let left = self.cfg.election_timeout().saturating_sub(up);
        left.as_nanos().div_ceil(self.cfg.raft_base_tick_interval.as_nanos().max(1)) as u64
    }
}

/// Runs store rounds on one poller.
pub struct StoreHandler<EK: KvEngine, ER: RaftEngine, T> {
    ctx: StoreContext<EK, ER, T>,
    store_msgs: Vec<StoreMsg>,
}

impl<EK: KvEngine, ER: RaftEngine, T: Transport> PollHandler<PeerFsm<EK, ER>, StoreFsm>
    for StoreHandler<EK, ER, T>
{
    fn handle_control(&mut self, store: &mut StoreFsm) -> HandleResult {
        let res = drain(&store.rx, self.ctx.cfg.messages_per_tick, &mut self.store_msgs);
        for msg in self.store_msgs.drain(..) {
            store.handle(msg, &mut self.ctx);
        }
        res
    }

    fn handle_normal(&mut self, fsm: &mut PeerFsm<EK, ER>) -> HandleResult {
        let mut msgs = std::mem::take(&mut self.ctx.msgs);
        let res = drain(&fsm.rx, self.ctx.cfg.messages_per_tick, &mut msgs);
        for msg in msgs.drain(..) {
            fsm.handle(msg, &mut self.ctx);
        }
        self.ctx.msgs = msgs;
        fsm.peer.collect_ready(&mut self.ctx);
        fsm.peer.on_round_end(&mut self.ctx);
        fsm.peer.sync_delegate(&self.ctx);
        self.ctx.counters.take_proposals(&mut fsm.peer.proposals_made);
        let alive = fsm.peer.life != crate::raft::peer::Life::Destroyed;
        fsm.peer.hibernation.sync_gauge(&self.ctx.counters, alive);
        res
    }

    fn end(&mut self, peers: &mut [Box<PeerFsm<EK, ER>>]) {
        let ctx = &mut self.ctx;
        ctx.flush_transport(); // a leader's appends travel while it persists
        fail::fail_point!("store_before_persist");
        let (log_gc, every) = (&mut ctx.log_gc, ctx.cfg.raft_log_gc_tick_interval);
        log_gc.release(&ctx.kv, ctx.cfg.sync_log, every, &mut ctx.log_batch, &ctx.logger);
        if !engine::RaftLogBatch::is_empty(&ctx.log_batch) {
            let start = Instant::now();
            if let Err(e) = ctx.raft.consume(&mut ctx.log_batch, ctx.cfg.sync_log) {
                // Raft must not act on state it could not persist: stopping is the only safe
                // answer. Peers recover from what was persisted on restart.
                panic!("raft engine write failed, the store cannot go on: {e}");
            }
            StoreMetrics::observe_since(&ctx.counters.append_duration, start);
        }
        for fsm in peers.iter_mut() {
            fsm.peer.on_persisted(ctx);
            fsm.peer.sync_delegate(ctx);
        }
        ctx.flush_transport();
    }
}

impl<EK: KvEngine, ER: RaftEngine, T> Drop for StoreHandler<EK, ER, T> {
    /// The poller stops (the store shuts down): the log GC deletes still waiting for a kv
    /// sync are written now, after one, or their entries would stay on disk for good (the
    /// next GC starts past the durable truncated index). Not while unwinding from a storage
    /// failure: nothing more is written then.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let ctx = &mut self.ctx;
        let (log_gc, every) = (&mut ctx.log_gc, std::time::Duration::ZERO); // sync now
        log_gc.release(&ctx.kv, ctx.cfg.sync_log, every, &mut ctx.log_batch, &ctx.logger);
        if !engine::RaftLogBatch::is_empty(&ctx.log_batch) {
            if let Err(e) = ctx.raft.consume(&mut ctx.log_batch, ctx.cfg.sync_log) {
                warn!(ctx.logger, "raft log gc at shutdown failed"; "err" => %e);
            }
        }
    }
}

/// Builds store handlers: each gets a fork of one context.
pub struct StoreHandlerBuilder<EK: KvEngine, ER: RaftEngine, T> {
    pub(crate) ctx: StoreContext<EK, ER, T>,
}

impl<EK: KvEngine, ER: RaftEngine, T: Transport> HandlerBuilder<PeerFsm<EK, ER>, StoreFsm>
    for StoreHandlerBuilder<EK, ER, T>
{
    type Handler = StoreHandler<EK, ER, T>;
    fn build(&mut self) -> Self::Handler {
        StoreHandler { ctx: self.ctx.fork(), store_msgs: Vec::new() }
    }
}
