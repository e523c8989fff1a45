//! The placement-driver worker: sends region heartbeats for the store's leaders and hands the
//! operators in the answers back to the peers.

use std::{sync::Arc, thread::JoinHandle};

use crossbeam_channel::{Receiver, Sender};
use engine::{KvEngine, RaftEngine};
use pd_client::{PdClient, RegionStats};
use proto::metapb;
use slog::{debug, Logger};

use crate::{
    fsm::store::StoreRouter,
    msg::{PeerMsg, ProposeSplit, SplitRegion},
    Error,
};

/// Work for the placement-driver worker.
pub enum PdTask {
    /// A leader reports its region.
    RegionHeartbeat {
        /// The leader's term.
        term: u64,
        /// The region.
        region: metapb::Region,
        /// The leader.
        leader: metapb::Peer,
        /// What it measured.
        stats: RegionStats,
    },
    /// A leader wants to split its region: ids for the new regions and peers.
    AskBatchSplit {
        /// The region as the leader knows it.
        region: metapb::Region,
        /// The split asked for.
        split: SplitRegion,
    },
    /// A leader applied a split: the regions it became.
    ReportBatchSplit {
        /// Every region of the split, in key order.
        regions: Vec<metapb::Region>,
    },
}

/// Queues tasks for the worker. The worker exits once every scheduler is dropped.
#[derive(Clone)]
pub struct PdScheduler {
    tx: Sender<PdTask>,
}

impl PdScheduler {
    /// Queues a task; dropped if the worker is gone (shutdown).
    pub fn schedule(&self, task: PdTask) {
        let _ = self.tx.send(task);
    }
}

/// Starts the worker of `store_id`.
pub fn start<EK: KvEngine, ER: RaftEngine>(
    store_id: u64,
    pd: Arc<dyn PdClient>,
    router: StoreRouter<EK, ER>,
    logger: Logger,
) -> std::io::Result<(PdScheduler, JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let worker = std::thread::Builder::new()
        .name(format!("pd-worker-{store_id}"))
        .spawn(move || run(rx, pd, router, logger))?;
    Ok((PdScheduler { tx }, worker))
}

fn run<EK: KvEngine, ER: RaftEngine>(
    rx: Receiver<PdTask>,
    pd: Arc<dyn PdClient>,
    router: StoreRouter<EK, ER>,
    logger: Logger,
) {
    while let Ok(task) = rx.recv() {
        match task {
            PdTask::RegionHeartbeat { term, region, leader, stats } => {
                let region_id = region.id;
                match pd.region_heartbeat(term, region, leader, stats) {
                    Ok(Some(op)) => {
                        // Fails only when the peer is gone; the operator comes again with the
                        // next heartbeat of whoever leads then.
                        let _ = router.force_send(region_id, PeerMsg::Operator(op));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        debug!(logger, "region heartbeat refused"; "region_id" => region_id, "err" => %e)
                    }
                }
            }
            PdTask::AskBatchSplit { region, split } => {
                match pd.ask_batch_split(&region, split.split_keys.len()) {
                    Ok(ids) => {
                        let msg = PeerMsg::ProposeSplit(Box::new(ProposeSplit { split, ids }));
                        // Fails only when the peer is gone: the split is asked for again.
                        let _ = router.force_send(region.id, msg);
                    }
                    Err(e) => {
                        debug!(logger, "no ids for a split"; "region_id" => region.id, "err" => %e);
                        if let Some(ch) = split.ch {
                            ch.respond_error(Error::Unavailable(format!("placement driver: {e}")));
                        }
                    }
                }
            }
            PdTask::ReportBatchSplit { regions } => {
                if let Err(e) = pd.report_batch_split(regions) {
                    debug!(logger, "split report refused"; "err" => %e);
                }
            }
        }
    }
}
