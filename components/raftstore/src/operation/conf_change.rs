//! Membership changes (ChangePeer): add a voter, add a learner, promote a learner, remove a
//! peer.
//!
//! ```text
//! leader: check epoch (conf_ver and version), one change at a time, valid target
//!         → raft conf change, its context the whole request
//! apply:  check epoch again → new region (conf_ver + 1) into the round's kv batch
//!         → ExecResult::ChangePeer
//! peer:   raft apply_conf_change, region and StoreMeta updated; a peer that removed itself
//!         destroys itself; a leader tells a peer it removed that it is gone (GC message)
//! ```
//!
//! A leader never applies its own removal (the check at propose cannot see a removal that a
//! previous leader proposed, or that committed before this peer won an election): committed
//! entries from the removal on are held back while leadership is handed over, and go to
//! apply once this peer is a follower. Its pending proposals are then answered by apply, not
//! by a destroyed peer guessing.

use engine::{KvEngine, RaftEngine};
use proto::{
    eraftpb::{ConfChange, ConfChangeType as RaftChangeType, Entry},
    metapb::{PeerRole, Region},
    raft_cmdpb::{ConfChangeType, RaftCmdRequest},
    Message,
};
use slog::{info, warn};

use crate::{
    fsm::{apply::ApplyRouter, store::StoreContext},
    msg::{Proposal, RaftCommand},
    operation::transfer_leader::removes_peer,
    raft::peer::Peer,
    transport::Transport,
    Error, Result,
};

/// Checks both parts of the epoch: a membership change depends on the peer list (conf_ver)
/// and on the range (version).
pub fn check_conf_epoch(req: &RaftCmdRequest, region: &Region) -> Result<()> {
    let (have, current) = (req.get_header().get_region_epoch(), region.get_region_epoch());
    if have.conf_ver != current.conf_ver || have.version != current.version {
        return Err(Error::EpochNotMatch {
            msg: format!(
                "request epoch ({}, {}) != region {} epoch ({}, {})",
                have.conf_ver, have.version, region.id, current.conf_ver, current.version
            ),
            regions: vec![region.clone()],
        });
    }
    Ok(())
}

/// The region after applying the change in `req`.
pub fn exec_change_peer(region: &Region, req: &RaftCmdRequest) -> Result<Region> {
    let cp = req.get_admin_request().get_change_peer();
    let peer = cp.get_peer();
    let mut region = region.clone();
    let pos = region.get_peers().iter().position(|p| p.id == peer.id);
    let invalid = |m: &str| {
        Err(Error::InvalidRequest(format!("{m}: peer {} store {}", peer.id, peer.store_id)))
    };
    match (cp.get_change_type(), pos) {
        (ConfChangeType::AddNode, Some(i)) if region.peers[i].get_role() == PeerRole::Learner => {
            region.peers[i].set_role(PeerRole::Voter);
        }
        (ConfChangeType::AddNode | ConfChangeType::AddLearnerNode, Some(_)) => {
            return invalid("already a member")
        }
        (ConfChangeType::AddNode | ConfChangeType::AddLearnerNode, None) => {
            if region.get_peers().iter().any(|p| p.store_id == peer.store_id) {
                return invalid("the store already has a peer of the region");
            }
            let mut p = peer.clone();
            let learner = cp.get_change_type() == ConfChangeType::AddLearnerNode;
            p.set_role(if learner { PeerRole::Learner } else { PeerRole::Voter });
            region.peers.push(p);
        }
        (ConfChangeType::RemoveNode, Some(i)) => {
            region.peers.remove(i);
        }
        (ConfChangeType::RemoveNode, None) => return invalid("not a member"),
    }
    let voters = region.get_peers().iter().filter(|p| p.get_role() == PeerRole::Voter).count();
    if voters == 0 {
        return invalid("the change would leave no voter");
    }
    region.mut_region_epoch().conf_ver += 1;
    Ok(region)
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Proposes a membership change, or answers with the error that stopped it.
    pub(crate) fn propose_conf_change(&mut self, cmd: RaftCommand) {
        match self.check_and_propose_conf_change(&cmd.request) {
            Ok(index) => {
                let term = self.term();
                self.proposals.push_back(Proposal { index, term, ch: cmd.ch });
            }
            Err(e) => cmd.ch.respond_error(e),
        }
    }

    fn check_and_propose_conf_change(&mut self, req: &RaftCmdRequest) -> Result<u64> {
        self.check_peer(req.get_header())?;
        if !self.is_leader() {
            return Err(Error::NotLeader { region_id: self.region_id(), leader: self.leader() });
        }
        check_conf_epoch(req, self.region())?;
        let raft = &self.raft_group.raft;
        if raft.pending_conf_index > raft.raft_log.applied {
            return Err(Error::ServerIsBusy("a membership change is in progress".into()));
        }
        let cp = req.get_admin_request().get_change_peer();
        if cp.get_change_type() == ConfChangeType::RemoveNode && cp.get_peer().id == self.peer_id()
        {
            return Err(Error::InvalidRequest(
                "transfer leadership before removing the leader".into(),
            ));
        }
        exec_change_peer(self.region(), req)?; // the change must make sense now
        let mut cc = ConfChange::default();
        cc.set_change_type(match cp.get_change_type() {
            ConfChangeType::AddNode => RaftChangeType::AddNode,
            ConfChangeType::RemoveNode => RaftChangeType::RemoveNode,
            ConfChangeType::AddLearnerNode => RaftChangeType::AddLearnerNode,
        });
        cc.node_id = cp.get_peer().id;
        cc.context = req.write_to_bytes().map_err(|e| Error::InvalidRequest(e.to_string()))?.into();
        self.propose_entry(|raft| raft.propose_conf_change(vec![], cc))
    }

    /// A membership change was applied.
    pub(crate) fn on_change_peer<T: Transport>(
        &mut self,
        cc: ConfChange,
        region: Region,
        ctx: &mut StoreContext<EK, ER, T>,
    ) {
        if let Err(e) = self.raft_group.apply_conf_change(&cc) {
            warn!(self.logger, "raft refused an applied conf change"; "err" => %e);
        }
        info!(self.logger, "membership changed"; "conf_ver" => region.get_region_epoch().conf_ver,
            "peers" => ?region.get_peers().iter().map(|p| p.id).collect::<Vec<_>>());
        let removed = (cc.get_change_type() == RaftChangeType::RemoveNode)
            .then(|| self.peer_by_id(cc.node_id))
            .flatten();
        self.raft_group.mut_store().set_region(region.clone());
        ctx.meta.lock().unwrap_or_else(|e| e.into_inner()).set_region(region);
        match removed {
            Some(p) if p.id == self.peer_id() => self.destroy(ctx),
            // It may have missed its removal (isolated): tell it, so it does not linger.
            Some(p) if self.is_leader() => self.send_gc_message(p, ctx),
            _ => {}
        }
    }

    /// Holds committed entries back from apply while this leader has its own removal among
    /// them (or held already): see the module docs. Returns what may go to apply now.
    pub(crate) fn hold_own_removal(&mut self, mut entries: Vec<Entry>) -> Vec<Entry> {
        if !self.held_entries.is_empty() {
            self.held_entries.append(&mut entries);
            return Vec::new();
        }
        if !self.is_leader() {
            return entries;
        }
        let me = self.peer_id();
        let Some(pos) = entries.iter().position(|e| removes_peer(e, me)) else {
            return entries;
        };
        self.held_entries = entries.split_off(pos);
        info!(self.logger, "own removal committed: holding it until leadership is handed over";
            "index" => self.held_entries[0].index);
        self.handover_tick = self.ticks;
        self.hand_over_leadership();
        entries
    }

    /// Each tick while entries are held: ask raft to hand over again every `every` ticks (the
    /// target may have refused to campaign: raft-rs does not while it has a membership change
    /// to apply, as the target may when it learns of this one).
    pub(crate) fn retry_hand_over(&mut self, every: u64) {
        if self.held_entries.is_empty() || !self.is_leader() {
            return;
        }
        if self.ticks < self.handover_tick + every {
            return;
        }
        self.handover_tick = self.ticks;
        self.raft_group.raft.abort_leader_transfer();
        if !self.hand_over_leadership() {
            warn!(self.logger, "no peer to hand leadership to before this peer's removal");
        }
    }

    /// This peer is no longer leader: what was held goes to apply.
    pub(crate) fn release_held_entries(&mut self, apply: &ApplyRouter<EK>) {
        if self.held_entries.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held_entries);
        info!(self.logger, "leadership handed over: applying the held entries"; "count" => held.len());
        self.send_to_apply(held, apply);
    }
}
