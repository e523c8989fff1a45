//! Leader transfer. Not proposed through the log: the leader checks the request and asks raft
//! to hand over, which raft does (MsgTimeoutNow) once the target's log is up to date. The
//! answer says the transfer started; the caller watches for the new leader.
//!
//! A `MsgTimeoutNow` makes its target campaign with force: the followers grant the vote
//! whatever leader they heard from, so the old leader's lease means nothing while one is on
//! the way, and it can be on the way long after raft gave the transfer up (a slow link).
//! The old leader therefore fences the transfer:
//!
//! ```text
//! MsgTimeoutNow sent, log ends at f ──▶ lease Suspect, fence = f (no renewal at all)
//! raft gives the transfer up ──▶ propose a no-op (index > f), unless an entry is already there
//! an entry above f commits ──▶ fence gone, lease Expired; evidence renews it as usual
//! the target: MsgTimeoutNow stamped f, own log longer than f ──▶ dropped
//! ```
//!
//! Once an entry above `f` is on a quorum, the target can win only with that entry in its
//! log (the quorum refuses a shorter log), and a target holding an entry above `f` drops the
//! stale `MsgTimeoutNow`: no forced election can succeed any more, so the lease rests on the
//! usual argument again (raft-rs #234 and its late-message variant).

use engine::{KvEngine, RaftEngine};
use proto::{
    eraftpb::{ConfChange, ConfChangeType, Entry, EntryType, Message},
    raft_cmdpb::{AdminCmdType, AdminResponse, RaftCmdRequest, RaftCmdResponse},
    Message as _,
};
use raft::GetEntriesContext;
use slog::{info, warn};

use crate::{
    metrics::{ProposalKind, StoreMetrics},
    msg::RaftCommand,
    operation::command::check_region_epoch,
    raft::peer::Peer,
    Error, Result,
};

/// Whether `entry` is a membership change removing `peer_id`.
pub(crate) fn removes_peer(entry: &Entry, peer_id: u64) -> bool {
    entry.get_entry_type() == EntryType::EntryConfChange
        && ConfChange::parse_from_bytes(&entry.data).is_ok_and(|cc| {
            cc.get_change_type() == ConfChangeType::RemoveNode && cc.node_id == peer_id
        })
}

/// The fence a leader puts up when it sends `MsgTimeoutNow`: the last index of its log then.
/// It takes no lease until an entry above the fence commits (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct TransferFence(Option<u64>);

impl TransferFence {
    /// A `MsgTimeoutNow` goes out with the log ending at `last`: the fence is at least there.
    pub fn raise(&mut self, last: u64) {
        self.0 = Some(self.0.map_or(last, |f| f.max(last)));
    }

    /// Where the fence is, if up.
    pub fn get(&self) -> Option<u64> {
        self.0
    }

    /// Whether a fence is up.
    pub fn is_up(&self) -> bool {
        self.0.is_some()
    }

    /// Entries up to `committed` committed: if one is above the fence, the fence comes down
    /// and its index is returned.
    pub fn end_if_passed(&mut self, committed: u64) -> Option<u64> {
        self.0.filter(|fence| committed > *fence).inspect(|_| self.0 = None)
    }

    /// Takes the fence down (a new term).
    pub fn clear(&mut self) {
        self.0 = None;
    }
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Starts a leader transfer and answers the command.
    pub(crate) fn transfer_leader(&mut self, metrics: &StoreMetrics, cmd: RaftCommand) {
        match self.check_transfer_leader(&cmd.request) {
            Ok(target) => {
                info!(self.logger, "transferring leadership"; "to" => target);
                self.raft_group.transfer_leader(target);
                let mut resp = RaftCmdResponse::default();
                let mut admin = AdminResponse::default();
                admin.set_cmd_type(AdminCmdType::TransferLeader);
                admin.mut_transfer_leader();
                resp.set_admin_response(admin);
                cmd.ch.respond(resp);
            }
            Err(e) => {
                metrics.rejected(&e);
                cmd.ch.respond_error(e);
            }
        }
    }

    fn check_transfer_leader(&self, req: &RaftCmdRequest) -> Result<u64> {
        self.check_peer(req.get_header())?;
        if !self.is_leader() {
            return Err(Error::NotLeader { region_id: self.region_id(), leader: self.leader() });
        }
        check_region_epoch(req, self.region())?;
        let target = req.get_admin_request().get_transfer_leader().get_peer();
        if self.peer_by_id(target.id).is_none_or(|p| p.store_id != target.store_id) {
            return Err(Error::InvalidRequest(format!("peer {} is not in the region", target.id)));
        }
        if self.is_removal_pending(target.id) {
            // It would lead only to remove itself, answering its proposals with nothing.
            return Err(Error::InvalidRequest(format!("peer {} is being removed", target.id)));
        }
        Ok(target.id)
    }

    /// Whether an entry this peer has not applied yet removes `peer_id`.
    pub(crate) fn is_removal_pending(&self, peer_id: u64) -> bool {
        let from = self.storage().applied_index() + 1;
        let log = &self.raft_group.raft.raft_log;
        match log.entries(from, None, GetEntriesContext::empty(false)) {
            Ok(entries) => entries.iter().any(|e| removes_peer(e, peer_id)),
            Err(e) => {
                warn!(self.logger, "cannot read the unapplied log"; "err" => %e);
                true // cannot tell: the cautious answer
            }
        }
    }

    /// Hands leadership to the most up-to-date voter heard from within `recent` that is not
    /// being removed, other than `avoid` when another qualifies. The target, if any.
    pub(crate) fn hand_over_leadership(
        &mut self,
        now: std::time::Duration,
        recent: std::time::Duration,
        avoid: Option<u64>,
    ) -> Option<u64> {
        if !self.is_leader() {
            return None;
        }
        let me = self.peer_id();
        let raft = &self.raft_group.raft;
        let voters = raft.prs().conf().voters();
        let heard = |id: u64| self.health.heard_recently(id, now, recent);
        let mut candidates: Vec<(u64, u64)> = raft
            .prs()
            .iter()
            .filter(|(id, _)| **id != me && voters.contains(**id) && heard(**id))
            .filter(|(id, _)| !self.is_removal_pending(**id))
            .map(|(id, pr)| (pr.matched, *id))
            .collect();
        if candidates.len() > 1 {
            candidates.retain(|(_, id)| Some(*id) != avoid);
        }
        let (_, target) = candidates.into_iter().max()?;
        info!(self.logger, "handing leadership over"; "to" => target);
        self.raft_group.transfer_leader(target);
        Some(target)
    }

    /// A `MsgTimeoutNow` is about to be sent: stamp it with the end of this leader's log (its
    /// target drops it once its own log is longer) and fence the transfer.
    pub(crate) fn on_timeout_now_sent(&mut self, m: &mut Message, now: std::time::Duration) {
        let last = self.raft_group.raft.raft_log.last_index();
        m.index = last;
        self.lease.suspect(now);
        self.transfer_fence.raise(last);
    }

    /// Whether `m`, a `MsgTimeoutNow`, was sent before entries this peer has: its leader gave
    /// the transfer up and wrote on, and campaigning now could beat that leader's lease.
    pub(crate) fn is_stale_timeout_now(&self, m: &Message) -> bool {
        m.index != 0 && self.raft_group.raft.raft_log.last_index() > m.index
    }

    /// Each tick while a transfer is fenced: once raft gave it up, propose the no-op whose
    /// commit ends the fence (unless an entry above the fence is in the log already).
    pub(crate) fn maybe_fence_transfer(&mut self, now: std::time::Duration) {
        let Some(fence) = self.transfer_fence.get() else { return };
        if !self.is_leader()
            || self.raft_group.raft.lead_transferee.is_some()
            || self.raft_group.raft.raft_log.last_index() > fence
        {
            return;
        }
        match self.propose_entry(ProposalKind::Noop, |raft| raft.propose(vec![], vec![])) {
            Ok(index) => {
                info!(self.logger, "leader transfer given up: fencing it"; "index" => index, "fence" => fence);
                self.on_proposed(index, now);
            }
            Err(e) => warn!(self.logger, "cannot propose the transfer fence yet"; "err" => %e),
        }
    }

    /// Entries up to `committed` committed: an entry above the fence ends it.
    pub(crate) fn maybe_end_transfer_fence(&mut self, committed: u64) {
        if let Some(fence) = self.transfer_fence.end_if_passed(committed) {
            self.lease.expire(); // the suspicion ends; evidence from here on renews
            info!(self.logger, "leader transfer fenced off"; "fence" => fence, "committed" => committed);
        }
    }
}

#[cfg(test)]
mod fence_tests {
    use super::*;

    #[test]
    fn the_fence_comes_down_only_past_its_highest_raise() {
        let mut f = TransferFence::default();
        assert!(!f.is_up());
        assert_eq!(f.end_if_passed(100), None);
        f.raise(10);
        f.raise(7); // a later send with a shorter log cannot lower it
        assert_eq!(f.get(), Some(10));
        assert_eq!(f.end_if_passed(10), None, "an entry at the fence is not above it");
        assert!(f.is_up());
        assert_eq!(f.end_if_passed(11), Some(10));
        assert!(!f.is_up());
        f.raise(3);
        f.clear();
        assert!(!f.is_up());
    }
}
