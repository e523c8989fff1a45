//! The leader lease on the peer, and the delegate readers on other threads see.
//!
//! ```text
//! evidence (send time t)                       the lease              readers
//! ──────────────────────                       ─────────              ───────
//! own entry proposed at t commits  ──renew(t)─▶ Valid(t + max_lease) ─▶ RemoteLease (one
//! ReadIndex round sent at t confirmed ─renew(t)─▶                        per term, pushed
//! lease-check tick: ends within 2 checks → renewal round                beyond max_drift)
//! MsgTimeoutNow sent at t ─────────suspect(t)─▶ Suspect, no renewal (until an entry
//!                                               appended after the transfer commits: see
//!                                               `transfer_leader`) ──▶ Expired
//! stepped down ────────────────────expire()──▶ Expired
//! ```
//!
//! Evidence counts from the time it was sent, never from when it came back: a quorum that
//! answered a message sent at `t` elects no one before `t + election timeout`, and
//! `max_lease` ends a tick earlier (config validation). Once a `MsgTimeoutNow` was sent no
//! evidence counts: its target may win at any moment (its vote request bypasses the
//! followers' own leases), even long after raft gave the transfer up, so the lease stays
//! suspect until the transfer is fenced off (`transfer_leader`). A single-voter region renews
//! from its own commits.
//!
//! After every round the peer publishes what changed (region, term, applied term, a new
//! remote lease) to its `ReadDelegate` in `StoreMeta`, which bumps the delegate's `TrackVer`.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use engine::{KvEngine, RaftEngine};
use local_reader::{DelegateUpdate, LeaseState, ReadDelegate};
use proto::{
    eraftpb::{Message, MessageType},
    metapb::Region,
};

use crate::{batch::StoreContext, metrics::StoreMetrics, raft::peer::Peer};

/// What the delegate map last heard of a peer.
pub(crate) struct PublishedDelegate {
    region: Region,
    term: u64,
    applied_term: u64,
    has_lease: bool,
    /// Whether the store's meta counts this peer as a leader (the store's gauges).
    leader: bool,
}

impl PublishedDelegate {
    /// Whether the store's meta counts this peer as a leader.
    pub(crate) fn is_leader(&self) -> bool {
        self.leader
    }
}

/// Entries a leader proposed in its term with the clock time of each proposal, in index
/// order: when one commits, the lease renews from its proposal time (the quorum that
/// acknowledged it heard from the leader no earlier than that).
#[derive(Debug, Default)]
pub struct LeaseEvidence(VecDeque<(u64, Duration)>);

impl LeaseEvidence {
    /// Entries up to `index` were appended at `now`. A batch noted at an index already
    /// covered keeps the earlier time: the safe one.
    pub fn proposed(&mut self, index: u64, now: Duration) {
        match self.0.back() {
            Some((last, _)) if *last >= index => {}
            _ => self.0.push_back((index, now)),
        }
    }

    /// Entries up to `committed` committed: each one's proposal time goes to `each`, oldest
    /// first, and is forgotten; the latest is returned.
    pub fn take_committed(
        &mut self,
        committed: u64,
        mut each: impl FnMut(Duration),
    ) -> Option<Duration> {
        let mut latest = None;
        while let Some(&(index, at)) = self.0.front() {
            if index > committed {
                break;
            }
            self.0.pop_front();
            each(at);
            latest = Some(at);
        }
        latest
    }

    /// Forgets everything (a new term).
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Quorum evidence sent at `send_ts`. Ignored while a transfer is not fenced off.
    pub(crate) fn renew_lease(&mut self, send_ts: Duration) {
        let holding_own_removal = !self.removal.entries.is_empty();
        if self.is_leader()
            && !self.transfer_fence.is_up()
            && self.split.pending().is_none()
            && !self.merge.is_merging()
            && !holding_own_removal
        {
            self.lease.renew(send_ts);
        }
    }

    /// This leader appended entries up to `index` at clock time `now` (a proposal, or the
    /// no-op of a new term): their commit will be lease evidence.
    pub(crate) fn on_proposed(&mut self, index: u64, now: Duration) {
        if !self.is_leader() {
            return;
        }
        self.lease_evidence.proposed(index, now);
    }

    /// Entries up to `committed` committed at `now`: renew from the latest of them this
    /// leader proposed (once a transfer fence, if any, is gone), and time their commits.
    pub(crate) fn on_committed_to(&mut self, committed: u64, now: Duration, m: &StoreMetrics) {
        self.maybe_end_transfer_fence(committed);
        let commit_time =
            |t: Duration| StoreMetrics::observe(&m.commit_duration, now.saturating_sub(t));
        if let Some(t) = self.lease_evidence.take_committed(committed, commit_time) {
            self.renew_lease(t);
        }
    }

    /// Role changes: a new leader starts with no lease and the evidence of its no-op; a peer
    /// that steps down expires its lease.
    pub(crate) fn on_role_changed(&mut self, now: Duration) {
        self.lease.expire();
        self.lease_evidence.clear();
        self.transfer_fence.clear();
        if self.is_leader() {
            let last = self.raft_group.raft.raft_log.last_index();
            self.on_proposed(last, now);
            self.health.became_leader(now);
            self.split.force_check(); // measure the region once: the placement driver asks
        }
    }

    /// The lease-check tick: renews a lease that ends within two checks.
    pub(crate) fn on_lease_check<T>(&mut self, ctx: &StoreContext<EK, ER, T>) {
        if ctx.cfg.hibernate_regions {
            // A renewal would wake an idle region for nobody: readers near the lease's end
            // ask for one themselves (`on_renew_lease_request`), and writes renew it.
            return;
        }
        let now = ctx.clock.now();
        let horizon = now + ctx.cfg.lease_check_interval * 2;
        if self.lease.inspect(horizon) != LeaseState::Valid {
            self.start_renewal_round(now);
        }
    }

    /// A reader found the lease about to end. Renew it now rather than at the next check.
    pub(crate) fn on_renew_lease_request<T>(&mut self, ctx: &StoreContext<EK, ER, T>) {
        if !self.start_renewal_round(ctx.clock.now()) {
            self.lease.clear_renewal_request();
        }
    }

    /// Sends a ReadIndex round without reads, whose confirmation renews the lease, unless
    /// one is in flight. False if this peer cannot renew now.
    fn start_renewal_round(&mut self, now: Duration) -> bool {
        if !self.is_leader()
            || !self.raft_group.raft.commit_to_current_term()
            || self.transfer_fence.is_up()
            || self.split.pending().is_some()
            || self.merge.is_merging()
        {
            return false;
        }
        if !self.reads.renewal_in_flight() {
            self.issue_read_batch(Vec::new(), now);
        }
        true
    }

    /// A follower asks for a read index. A leader holding a valid lease that has committed in
    /// its term answers with its commit index at once; otherwise raft runs a heartbeat round.
    /// Returns the message back if raft should handle it.
    pub(crate) fn answer_read_index_by_lease<T>(
        &mut self,
        msg: Message,
        ctx: &StoreContext<EK, ER, T>,
    ) -> Option<Message> {
        let raft = &self.raft_group.raft;
        if msg.get_msg_type() == MessageType::MsgReadIndex && self.merge.is_merging() {
            return None; // no read index while merging: the follower's read fails there
        }
        if msg.get_msg_type() != MessageType::MsgReadIndex
            || !self.is_leader()
            || !raft.commit_to_current_term()
            || msg.get_entries().len() != 1
            || !ctx.lease_reads.load(std::sync::atomic::Ordering::Relaxed)
            || self.lease.inspect(ctx.clock.now()) != LeaseState::Valid
        {
            return Some(msg);
        }
        let mut resp = Message::default();
        resp.set_msg_type(MessageType::MsgReadIndexResp);
        resp.to = msg.from;
        resp.from = self.peer_id();
        resp.term = raft.term;
        resp.index = raft.raft_log.committed;
        resp.set_entries(msg.get_entries().to_vec().into());
        self.raft_group.raft.msgs.push(resp);
        None
    }

    /// The delegate was given `region` under a merge's lock: remember it, so the next sync
    /// does not publish it again.
    pub(crate) fn publish_region(&mut self, region: &Region) {
        if let Some(p) = &mut self.published {
            p.region = region.clone();
        }
    }

    /// The delegate was given `region` and no lease under the split's lock: remember it, so
    /// the next sync does not publish them again.
    pub(crate) fn publish_region_after_split(&mut self, region: &Region) {
        if let Some(p) = &mut self.published {
            p.region = region.clone();
            p.has_lease = false;
        }
    }

    /// Publishes to the store's delegate map whatever changed since the last time: the
    /// region, the term, the applied term, a new remote lease (or none once not leader).
    pub(crate) fn sync_delegate<T>(&mut self, ctx: &StoreContext<EK, ER, T>) {
        if !self.is_alive() {
            return;
        }
        let term = self.term();
        let mut updates = Vec::new();
        let published = self.published.get_or_insert_with(|| PublishedDelegate {
            region: Region::default(),
            term: 0,
            applied_term: 0,
            has_lease: false,
            leader: false,
        });
        let fresh = published.region.id == 0;
        if published.region != *self.raft_group.store().region() {
            published.region = self.raft_group.store().region().clone();
            updates.push(DelegateUpdate::Region(Arc::new(published.region.clone())));
        }
        if published.term != term {
            published.term = term;
            updates.push(DelegateUpdate::Term(term));
        }
        if published.applied_term != self.applied_term {
            published.applied_term = self.applied_term;
            updates.push(DelegateUpdate::AppliedTerm(self.applied_term));
        }
        let is_leader = self.raft_group.raft.state == raft::StateRole::Leader;
        if is_leader {
            if let Some(remote) = self.lease.maybe_new_remote_lease(term) {
                published.has_lease = true;
                updates.push(DelegateUpdate::Lease(Some(remote)));
            }
        } else if published.has_lease {
            published.has_lease = false;
            updates.push(DelegateUpdate::Lease(None));
        }
        let role_changed = published.leader != is_leader;
        published.leader = is_leader;
        if updates.is_empty() && !fresh && !role_changed {
            return;
        }
        let now = ctx.clock.now();
        let mut meta = ctx.meta.lock().unwrap_or_else(|e| e.into_inner());
        if role_changed {
            meta.set_leader(self.region_id(), is_leader.then_some(0));
        }
        let (store_id, peer_id) = (self.peer.store_id, self.peer.id);
        let delegate = meta.reader_entry(self.region_id(), peer_id, || {
            ReadDelegate::new(Arc::new(Region::default()), store_id, peer_id)
        });
        for update in updates {
            delegate.update(update, now);
        }
    }
}

#[cfg(test)]
mod evidence_tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_commit_renews_from_the_latest_proposal_it_covers() {
        let mut e = LeaseEvidence::default();
        e.proposed(5, 10 * MS);
        e.proposed(5, 12 * MS); // same index again: the earlier time stays
        e.proposed(4, 13 * MS); // below what is noted: covered already
        e.proposed(8, 20 * MS);
        e.proposed(9, 30 * MS);
        let mut seen = Vec::new();
        assert_eq!(e.take_committed(4, |t| seen.push(t)), None, "nothing committed yet");
        assert_eq!(e.take_committed(8, |t| seen.push(t)), Some(20 * MS));
        assert_eq!(seen, [10 * MS, 20 * MS], "each commit timed once, oldest first");
        assert_eq!(e.take_committed(8, |_| {}), None, "forgotten once taken");
        e.clear();
        assert_eq!(e.take_committed(100, |_| {}), None);
    }
}
