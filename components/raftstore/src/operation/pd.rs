//! Talking to the placement driver: region heartbeats from leaders, and the operators the
//! placement driver answers with.

use std::{
    hash::{Hash, Hasher},
    time::Duration,
};

use engine::{KvEngine, RaftEngine};
use pd_client::{Operator, RegionStats, StoreStats};
use proto::raft_cmdpb::{AdminCmdType, ConfChangeType, RaftCmdRequest};
use rustc_hash::{FxHashMap, FxHasher};
use slog::info;

use crate::{batch::StoreContext, msg::RaftCommand, raft::peer::Peer, worker::pd::PdTask};

/// The store's heartbeat (each `StoreMsg::Tick`, every `hibernated_tick_interval`): its
/// regions and leaders, and whether its mailboxes are full.
pub(crate) fn on_store_heartbeat_tick<EK: KvEngine, ER: RaftEngine, T>(
    ctx: &mut StoreContext<EK, ER, T>,
) {
    let (region_count, leader_count) = {
        let meta = ctx.meta.lock().unwrap_or_else(|e| e.into_inner());
        (meta.len() as u64, meta.leader_stats().0 as u64)
    };
    let stats = StoreStats { store_id: ctx.store_id, region_count, leader_count, is_busy: false };
    // A full worker queue drops it: the next tick sends a newer one.
    let _ = ctx.pd.schedule(PdTask::StoreHeartbeat(stats));
}

/// What a peer knows of the other peers' health: when it last heard from each, and when it
/// last became leader (a peer not heard from since counts from then).
#[derive(Debug, Default)]
pub struct PeerHealth {
    last_heard: FxHashMap<u64, Duration>,
    became_leader_at: Duration,
}

impl PeerHealth {
    /// A message from peer `id` arrived at `now`.
    pub fn heard_from(&mut self, id: u64, now: Duration) {
        self.last_heard.insert(id, now);
    }

    /// This peer became leader at `now`.
    pub fn became_leader(&mut self, now: Duration) {
        self.became_leader_at = now;
    }

    /// Whether peer `id` has been silent for more than `max_down` at `now` (counted from
    /// this peer's leadership if it was never heard from since).
    pub fn is_down(&self, id: u64, now: Duration, max_down: Duration) -> bool {
        let heard = self.last_heard.get(&id).copied().unwrap_or(self.became_leader_at);
        now.saturating_sub(heard) > max_down
    }

    /// Whether peer `id` was heard from within `recent` of `now`.
    pub fn heard_recently(&self, id: u64, now: Duration, recent: Duration) -> bool {
        self.last_heard.get(&id).is_some_and(|t| now.saturating_sub(*t) <= recent)
    }
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// A leader reports its region, term and the health of its peers.
    pub(crate) fn heartbeat_pd<T>(&mut self, ctx: &StoreContext<EK, ER, T>) {
        if self.is_leader() {
            let stats = self.region_stats(ctx, ctx.clock.now());
            self.report_to_pd(ctx, stats);
        }
    }

    /// A sleeping leader's report: at once if it differs from the last one, otherwise once
    /// per `hibernated_pd_heartbeat_interval`.
    pub(crate) fn heartbeat_pd_asleep<T>(&mut self, ctx: &StoreContext<EK, ER, T>, now: Duration) {
        let stats = self.region_stats(ctx, now);
        let (last_at, last_digest) = self.hibernation.last_report;
        let due = now.saturating_sub(last_at) >= ctx.cfg.hibernated_pd_heartbeat_interval;
        if due || self.report_digest(&stats) != last_digest {
            self.report_to_pd(ctx, stats);
        }
    }

    /// What a report says that can change while the region sleeps, hashed.
    fn report_digest(&self, stats: &RegionStats) -> u64 {
        let mut h = FxHasher::default();
        let epoch = self.region().get_region_epoch();
        (self.term(), epoch.version, epoch.conf_ver).hash(&mut h);
        (stats.approximate_size, stats.approximate_keys).hash(&mut h);
        stats.down_peers.iter().for_each(|p| ("down", p.id).hash(&mut h));
        stats.pending_peers.iter().for_each(|p| ("pending", p.id).hash(&mut h));
        h.finish()
    }

    fn region_stats<T>(&self, ctx: &StoreContext<EK, ER, T>, now: Duration) -> RegionStats {
        let truncated = self.storage().truncated_index();
        let mut stats = RegionStats::default();
        for (id, pr) in self.raft_group.raft.prs().iter() {
            if *id == self.peer_id() {
                continue;
            }
            let Some(peer) = self.peer_by_id(*id) else { continue };
            // Not raft's `recent_active`: check-quorum clears it every election timeout, so a
            // heartbeat sent just after would report every follower down.
            if self.health.is_down(*id, now, ctx.cfg.max_peer_down_duration) {
                stats.down_peers.push(peer.clone());
            }
            if pr.matched < truncated {
                stats.pending_peers.push(peer);
            }
        }
        if let Some((size, keys)) = self.split.approximate() {
            stats.approximate_size = Some(size);
            stats.approximate_keys = Some(keys);
        }
        stats
    }

    fn report_to_pd<T>(&mut self, ctx: &StoreContext<EK, ER, T>, stats: RegionStats) {
        self.hibernation.last_report = (ctx.clock.now(), self.report_digest(&stats));
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
            Operator::Merge { target } => return self.on_merge_operator(ctx, target),
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_peer_is_down_once_silent_longer_than_allowed_counting_from_the_leadership() {
        let mut h = PeerHealth::default();
        h.became_leader(100 * MS);
        assert!(!h.is_down(2, 150 * MS, 50 * MS), "never heard, but leading only 50 ms");
        assert!(h.is_down(2, 151 * MS, 50 * MS));
        h.heard_from(2, 140 * MS);
        assert!(!h.is_down(2, 190 * MS, 50 * MS));
        assert!(h.is_down(2, 191 * MS, 50 * MS));
    }

    #[test]
    fn heard_recently_needs_a_message() {
        let mut h = PeerHealth::default();
        assert!(!h.heard_recently(3, MS, 10 * MS), "never heard");
        h.heard_from(3, 5 * MS);
        assert!(h.heard_recently(3, 15 * MS, 10 * MS));
        assert!(!h.heard_recently(3, 16 * MS, 10 * MS));
    }
}
