//! The placement-driver worker: sends region heartbeats for the store's leaders and the
//! store's own heartbeats, and hands the operators in the answers back to the peers.

use std::sync::Arc;

use pd_client::{PdClient, RegionStats, StoreStats};
use proto::metapb;
use slog::{debug, Logger};

use crate::{
    msg::{PeerMsg, ProposeSplit, SplitRegion},
    operation::message::is_epoch_stale,
    worker::{PeerNotifier, Runnable, Scheduler},
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
    /// The store reports its regions and leaders.
    StoreHeartbeat(StoreStats),
    /// A peer long without a leader asks whether its region still holds it.
    ValidatePeer {
        /// The region as the peer knows it.
        region: metapb::Region,
        /// The peer.
        peer: metapb::Peer,
    },
}

/// Queues tasks for the placement-driver worker.
pub type PdScheduler = Scheduler<PdTask>;

/// The placement-driver worker: calls the placement driver and hands its answers to the
/// peers through `peers`.
pub struct PdRunner<N> {
    pd: Arc<dyn PdClient>,
    peers: N,
    logger: Logger,
}

impl<N: PeerNotifier> PdRunner<N> {
    /// A runner asking `pd` and answering `peers`.
    pub fn new(pd: Arc<dyn PdClient>, peers: N, logger: Logger) -> Self {
        PdRunner { pd, peers, logger }
    }

    fn region_heartbeat(
        &self,
        term: u64,
        region: metapb::Region,
        leader: metapb::Peer,
        stats: RegionStats,
    ) {
        let region_id = region.id;
        match self.pd.region_heartbeat(term, region, leader, stats) {
            // A peer that is gone gets nothing: the operator comes again with the next
            // heartbeat of whoever leads then.
            Ok(Some(op)) => {
                let _ = self.peers.notify(region_id, PeerMsg::Operator(Box::new(op)));
            }
            Ok(None) => {}
            Err(e) => {
                debug!(self.logger, "region heartbeat refused"; "region_id" => region_id, "err" => %e)
            }
        }
    }

    fn ask_batch_split(&self, region: metapb::Region, split: SplitRegion) {
        match self.pd.ask_batch_split(&region, split.split_keys.len()) {
            Ok(ids) => {
                let msg = PeerMsg::ProposeSplit(Box::new(ProposeSplit { split, ids }));
                // A peer that is gone gets nothing: its successor asks again.
                let _ = self.peers.notify(region.id, msg);
            }
            Err(e) => {
                debug!(self.logger, "no ids for a split"; "region_id" => region.id, "err" => %e);
                if let Some(ch) = split.ch {
                    ch.respond_error(Error::Unavailable(format!("placement driver: {e}")));
                }
            }
        }
    }
}

impl<N: PeerNotifier> PdRunner<N> {
    /// Tells the peer it is stale only on a definite answer: the placement driver knows the
    /// region at a newer epoch without the peer. A region it does not know (merged away, or
    /// not reported yet) proves nothing: a merged source is displaced by a newer snapshot.
    fn validate_peer(&self, region: metapb::Region, peer: metapb::Peer) {
        let pd_region = match self.pd.get_region_by_id(region.id) {
            Ok((pd_region, _)) => pd_region,
            Err(e) => {
                debug!(self.logger, "no word on a peer's region"; "region_id" => region.id, "err" => %e);
                return;
            }
        };
        let newer = is_epoch_stale(region.get_region_epoch(), pd_region.get_region_epoch());
        let holds = pd_region.get_peers().iter().any(|p| p.id == peer.id);
        if newer && !holds {
            let msg = PeerMsg::StalePerPd(peer.id, Box::new(pd_region));
            let _ = self.peers.notify(region.id, msg);
        } else {
            debug!(self.logger, "the peer is still a member"; "region_id" => region.id);
        }
    }
}

impl<N: PeerNotifier> Runnable for PdRunner<N> {
    type Task = PdTask;

    fn run(&mut self, task: Self::Task) {
        match task {
            PdTask::RegionHeartbeat { term, region, leader, stats } => {
                self.region_heartbeat(term, region, leader, stats)
            }
            PdTask::AskBatchSplit { region, split } => self.ask_batch_split(region, split),
            PdTask::ReportBatchSplit { regions } => {
                if let Err(e) = self.pd.report_batch_split(regions) {
                    debug!(self.logger, "split report refused"; "err" => %e);
                }
            }
            PdTask::ValidatePeer { region, peer } => self.validate_peer(region, peer),
            PdTask::StoreHeartbeat(stats) => {
                if let Err(e) = self.pd.store_heartbeat(stats) {
                    debug!(self.logger, "store heartbeat refused"; "err" => %e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use engine::rocks::RocksSnapshot;
    use pd_client::{MemPd, MemPdConfig, Operator};

    use super::*;
    use crate::msg::CmdResponseSender;

    /// A message for the peer of a region.
    type Handed = (u64, PeerMsg<RocksSnapshot>);

    /// Keeps what the worker hands to peers.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Handed>>>);

    impl PeerNotifier for Recorder {
        type Snapshot = RocksSnapshot;

        fn notify(&self, region_id: u64, msg: PeerMsg<RocksSnapshot>) -> bool {
            self.0.lock().unwrap().push((region_id, msg));
            true
        }
    }

    fn store(id: u64) -> metapb::Store {
        metapb::Store { id, ..Default::default() }
    }

    /// A placement driver that wants 3 replicas, 3 stores, and a first region with one peer.
    fn pd_with_region() -> (Arc<MemPd>, metapb::Region) {
        let pd = Arc::new(MemPd::new(MemPdConfig { max_replicas: 3, ..Default::default() }));
        let mut region = metapb::Region { id: 10, ..Default::default() };
        region.mut_region_epoch().conf_ver = 1;
        region.mut_region_epoch().version = 1;
        region.mut_peers().push(metapb::Peer { id: 11, store_id: 1, ..Default::default() });
        pd.bootstrap_cluster(store(1), region.clone()).unwrap();
        pd.put_store(store(2)).unwrap();
        pd.put_store(store(3)).unwrap();
        (pd, region)
    }

    fn runner(pd: Arc<MemPd>) -> (PdRunner<Recorder>, Recorder) {
        let peers = Recorder::default();
        let logger = Logger::root(slog::Discard, slog::o!());
        (PdRunner::new(pd, peers.clone(), logger), peers)
    }

    #[test]
    fn a_heartbeat_answered_with_an_operator_hands_it_to_the_peer() {
        let (pd, region) = pd_with_region();
        let (mut runner, peers) = runner(pd);
        let leader = region.get_peers()[0].clone();
        let stats = RegionStats::default();
        runner.run(PdTask::RegionHeartbeat { term: 5, region, leader, stats });
        let got = peers.0.lock().unwrap();
        assert!(
            matches!(got.as_slice(), [(10, PeerMsg::Operator(op))] if matches!(**op, Operator::AddPeer(ref p) if p.store_id != 1)),
            "one AddPeer for region 10 on another store"
        );
    }

    #[test]
    fn ids_for_a_split_go_to_the_peer_and_a_refusal_to_whoever_waits() {
        let (pd, region) = pd_with_region();
        let (mut runner, peers) = runner(pd);
        let split = |keys: Vec<Vec<u8>>, ch| SplitRegion {
            region_epoch: region.get_region_epoch().clone(),
            split_keys: keys,
            ch,
        };
        let keys = vec![b"b".to_vec(), b"c".to_vec()];
        runner.run(PdTask::AskBatchSplit { region: region.clone(), split: split(keys, None) });
        match peers.0.lock().unwrap().as_slice() {
            [(10, PeerMsg::ProposeSplit(p))] => {
                assert_eq!(p.ids.len(), 2);
                assert!(p.ids.iter().all(|ids| ids.new_peer_ids.len() == 1));
            }
            _ => panic!("no ProposeSplit for region 10"),
        }

        let (ch, rx) = CmdResponseSender::channel();
        let refused = split(vec![], Some(ch));
        runner.run(PdTask::AskBatchSplit { region: region.clone(), split: refused });
        let resp = rx.try_recv().expect("the caller is answered at once");
        assert!(resp.get_header().has_error(), "a split the placement driver refused");
        assert_eq!(peers.0.lock().unwrap().len(), 1, "nothing more for the peer");
    }
}
