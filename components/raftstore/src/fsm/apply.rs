//! The apply batch system: `ApplyFsm`s execute committed entries, one kv write batch per
//! round, then answer proposals and report to their peers.

use std::{sync::Arc, time::Instant};

use crossbeam_channel::Receiver;
use engine::{KvEngine, RaftEngine, WriteBatch, WriteOptions};
use router::{
    drain, mailbox_channel, Fsm, HandleResult, HandlerBuilder, LooseBoundedSender, PollHandler,
    Router,
};

use crate::{
    fsm::store::StoreRouter,
    metrics::StoreMetrics,
    msg::{ApplyMsg, ApplyRes, PeerMsg},
    raft::apply::{Apply, PendingResponses},
    Config,
};

/// One region's apply side.
pub struct ApplyFsm<EK: KvEngine> {
    rx: Receiver<ApplyMsg>,
    apply: Apply<EK>,
    /// Its peer is being destroyed: nothing more is applied.
    stopped: bool,
}

impl<EK: KvEngine> ApplyFsm<EK> {
    /// The FSM and the sender of its mailbox.
    pub fn create(apply: Apply<EK>, capacity: usize) -> (LooseBoundedSender<ApplyMsg>, Box<Self>) {
        let (tx, rx) = mailbox_channel(capacity);
        (tx, Box::new(ApplyFsm { rx, apply, stopped: false }))
    }
}

impl<EK: KvEngine> Fsm for ApplyFsm<EK> {
    type Message = ApplyMsg;
    fn is_stopped(&self) -> bool {
        self.stopped
    }
}

/// The apply system's control FSM. It has no work yet; the batch system requires one.
pub struct ApplyControl {
    _rx: Receiver<()>,
}

impl ApplyControl {
    /// The FSM and the sender of its mailbox.
    pub fn create() -> (LooseBoundedSender<()>, Box<Self>) {
        let (tx, rx) = mailbox_channel(16);
        (tx, Box::new(ApplyControl { _rx: rx }))
    }
}

impl Fsm for ApplyControl {
    type Message = ();
    fn is_stopped(&self) -> bool {
        false
    }
}

/// Router of the apply system.
pub type ApplyRouter<EK> = Router<ApplyFsm<EK>, ApplyControl>;

/// Runs apply rounds on one poller.
pub struct ApplyHandler<EK: KvEngine, ER: RaftEngine> {
    kv: EK,
    wb: EK::WriteBatch,
    responses: PendingResponses,
    results: Vec<ApplyRes>,
    store: StoreRouter<EK, ER>,
    cfg: Config,
    metrics: Arc<StoreMetrics>,
    msgs: Vec<ApplyMsg>,
    /// Regions whose apply side stopped this round, as apply left them: told once the batch
    /// is written.
    stopped: Vec<proto::metapb::Region>,
}

impl<EK: KvEngine, ER: RaftEngine> ApplyHandler<EK, ER> {
    /// Writes the batch, then answers proposals and reports results: a response never
    /// announces a write that is not in the engine.
    fn flush(&mut self) {
        fail::fail_point!("apply_before_write");
        if !self.wb.is_empty() {
            let start = Instant::now();
            if let Err(e) = self.kv.write(&mut self.wb, WriteOptions::NO_SYNC) {
                // The kv engine cannot take writes: applying further would diverge from the
                // log. Stopping is the only safe answer; the raft log replays on restart.
                panic!("kv engine write failed, the store cannot go on: {e}");
            }
            StoreMetrics::observe_since(&self.metrics.apply_duration, start);
        }
        for (ch, resp) in self.responses.drain(..) {
            ch.respond(resp);
        }
        for res in self.results.drain(..) {
            let region_id = res.region_id;
            // Fails only when the peer is gone (shutdown); nothing waits for the result then.
            let _ = self.store.force_send(region_id, PeerMsg::ApplyRes(Box::new(res)));
        }
        for region in self.stopped.drain(..) {
            let region_id = region.id;
            let _ = self.store.force_send(region_id, PeerMsg::ApplyDestroyed(region));
        }
    }
}

impl<EK: KvEngine, ER: RaftEngine> PollHandler<ApplyFsm<EK>, ApplyControl>
    for ApplyHandler<EK, ER>
{
    fn handle_control(&mut self, _: &mut ApplyControl) -> HandleResult {
        HandleResult::stop_at(0, 0)
    }

    fn handle_normal(&mut self, fsm: &mut ApplyFsm<EK>) -> HandleResult {
        let res = drain(&fsm.rx, self.cfg.apply_batch_max_entries, &mut self.msgs);
        for msg in self.msgs.drain(..) {
            if fsm.stopped {
                break; // nothing is sent after Destroy; dropped tasks answer OutcomeUnknown
            }
            match msg {
                ApplyMsg::Apply(task) => {
                    self.results.push(fsm.apply.apply(task, &mut self.wb, &mut self.responses))
                }
                ApplyMsg::Reset { region, apply_state } => fsm.apply.reset(region, apply_state),
                ApplyMsg::Destroy => {
                    fsm.stopped = true;
                    self.stopped.push(fsm.apply.region().clone());
                }
            }
        }
        if self.wb.count() >= self.cfg.apply_batch_max_entries * 4 {
            self.flush();
        }
        res
    }

    fn end(&mut self, _: &mut [Box<ApplyFsm<EK>>]) {
        self.flush();
    }
}

/// Builds apply handlers.
pub struct ApplyHandlerBuilder<EK: KvEngine, ER: RaftEngine> {
    pub(crate) kv: EK,
    pub(crate) store: StoreRouter<EK, ER>,
    pub(crate) cfg: Config,
    pub(crate) metrics: Arc<StoreMetrics>,
}

impl<EK: KvEngine, ER: RaftEngine> HandlerBuilder<ApplyFsm<EK>, ApplyControl>
    for ApplyHandlerBuilder<EK, ER>
{
    type Handler = ApplyHandler<EK, ER>;
    fn build(&mut self) -> Self::Handler {
        ApplyHandler {
            kv: self.kv.clone(),
            wb: self.kv.write_batch(),
            responses: Vec::new(),
            results: Vec::new(),
            store: self.store.clone(),
            cfg: self.cfg.clone(),
            metrics: self.metrics.clone(),
            msgs: Vec::new(),
            stopped: Vec::new(),
        }
    }
}
