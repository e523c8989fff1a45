//! The apply system's poll handler: committed entries of many regions go into one kv write
//! batch per round; once it is written, proposals are answered and results go back to the
//! peers.

use std::{sync::Arc, time::Instant};

use engine::{KvEngine, RaftEngine, WriteBatch, WriteOptions};
use router::{drain, HandleResult, HandlerBuilder, PollHandler};

use crate::{
    fsm::{
        apply::{ApplyControl, ApplyFsm},
        store::StoreRouter,
    },
    metrics::StoreMetrics,
    msg::{ApplyMsg, ApplyRes, PeerMsg},
    raft::apply::PendingResponses,
    Config,
};

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
        // A crash here: written, nobody told (the client sees an unknown outcome).
        fail::fail_point!("apply_after_write");
        for (ch, resp) in self.responses.drain(..) {
            ch.respond(resp);
        }
        for mut res in self.results.drain(..) {
            let region_id = res.region_id;
            let catch_up = res.catch_up.take();
            // Fails only when the peer is gone (shutdown); nothing waits for the result then.
            let _ = self.store.force_send(region_id, PeerMsg::ApplyRes(Box::new(res)));
            if let Some(c) = catch_up {
                // After the result: the source peer sees what its own apply did first.
                let source = c.merge.get_source().id;
                let _ = self.store.force_send(source, PeerMsg::CatchUpLogs(Box::new(c)));
            }
        }
        for region in self.stopped.drain(..) {
            let region_id = region.id;
            let _ = self.store.force_send(region_id, PeerMsg::ApplyDestroyed(Box::new(region)));
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
                    self.results.push(fsm.apply.apply(*task, &mut self.wb, &mut self.responses))
                }
                ApplyMsg::Reset { region, apply_state } => fsm.apply.reset(*region, *apply_state),
                ApplyMsg::ResumeMerge => {
                    let resumed = fsm.apply.resume_merge(&mut self.wb, &mut self.responses);
                    self.results.extend(resumed);
                }
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
