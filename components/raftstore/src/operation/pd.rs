//! Talking to the placement driver: region heartbeats from leaders, and the operators the
//! placement driver answers with.

use engine::{KvEngine, RaftEngine};
use pd_client::{Operator, RegionStats};
use proto::raft_cmdpb::{AdminCmdType, ConfChangeType, RaftCmdRequest};
use slog::info;

use crate::{batch::StoreContext, msg::RaftCommand, raft::peer::Peer, worker::pd::PdTask};

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// A leader reports its region, term and the health of its peers.
    pub(crate) fn heartbeat_pd<T>(&self, ctx: &StoreContext<EK, ER, T>) {
        if !self.is_leader() {
            return;
        }
        let now = ctx.clock.now();
        let truncated = self.storage().truncated_index();
        let mut stats = RegionStats::default();
        for (id, pr) in self.raft_group.raft.prs().iter() {
            if *id == self.peer_id() {
                continue;
            }
            let Some(peer) = self.peer_by_id(*id) else { continue };
            // Not raft's `recent_active`: check-quorum clears it every election timeout, so a
            // heartbeat sent just after would report every follower down.
            let heard = self.last_heard.get(id).copied().unwrap_or(self.became_leader_at);
            if now.saturating_sub(heard) > ctx.cfg.max_peer_down_duration {
                stats.down_peers.push(peer.clone());
            }
            if pr.matched < truncated {
                stats.pending_peers.push(peer);
            }
        }
        let pending = stats.pending_peers.len() as u64;
        let mut meta = ctx.meta.lock().unwrap_or_else(|e| e.into_inner());
        if self.published.as_ref().is_some_and(|p| p.is_leader()) {
            meta.set_leader(self.region_id(), Some(pending));
        }
        drop(meta);
        // Nobody waits on a heartbeat: one the stopping store cannot send is dropped.
        let _ = ctx.pd.schedule(PdTask::RegionHeartbeat {
            term: self.term(),
            region: self.region().clone(),
            leader: self.peer.clone(),
            stats,
        });
    }

    /// Carries out an operator from the placement driver, if this peer still leads.
    pub(crate) fn on_operator<T>(&mut self, op: Operator, ctx: &StoreContext<EK, ER, T>) {
        if !self.is_leader() {
            return;
        }
        info!(self.logger, "operator from the placement driver"; "op" => ?op);
        let (change_type, peer) = match op {
            Operator::TransferLeader(p) => {
                if self.peer_by_id(p.id).is_some() && !self.is_removal_pending(p.id) {
                    self.raft_group.transfer_leader(p.id);
                }
                return;
            }
            Operator::AddPeer(p) => (ConfChangeType::AddNode, p),
            Operator::AddLearner(p) => (ConfChangeType::AddLearnerNode, p),
            Operator::RemovePeer(p) if p.id == self.peer_id() => {
                // A leader does not remove itself: it hands over, and the placement driver
                // gives the operator to the next leader.
                let now = ctx.clock.now();
                self.hand_over_leadership(now, ctx.cfg.election_timeout(), None);
                return;
            }
            Operator::RemovePeer(p) => (ConfChangeType::RemoveNode, p),
        };
        let mut req = RaftCmdRequest::default();
        req.mut_header().region_id = self.region_id();
        req.mut_header().set_region_epoch(self.region().get_region_epoch().clone());
        let admin = req.mut_admin_request();
        admin.set_cmd_type(AdminCmdType::ChangePeer);
        admin.mut_change_peer().set_change_type(change_type);
        admin.mut_change_peer().set_peer(peer);
        // Nobody waits: the placement driver sees the result in the next heartbeat.
        let (cmd, _) = RaftCommand::new(req);
        self.propose_conf_change(&ctx.counters, cmd);
    }
}
