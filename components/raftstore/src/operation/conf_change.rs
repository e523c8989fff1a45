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

use engine::{keys, KvEngine, Mutable, RaftEngine, CF_META};
use proto::{
    eraftpb::{ConfChange, ConfChangeType as RaftChangeType, Entry},
    metapb::{PeerRole, Region},
    raft_cmdpb::{AdminCmdType, ConfChangeType, RaftCmdRequest, RaftCmdResponse},
    raft_serverpb::{PeerState, RegionLocalState},
    Message,
};
use slog::{error, info, warn};

use crate::{
    batch::StoreContext,
    fsm::apply::ApplyRouter,
    metrics::{ProposalKind, StoreMetrics},
    msg::{error_response, ExecResult, Proposal, RaftCommand},
    operation::{message::is_epoch_stale, transfer_leader::removes_peer},
    raft::{apply::Apply, peer::Peer},
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
    pub(crate) fn propose_conf_change(&mut self, metrics: &StoreMetrics, cmd: RaftCommand) {
        match self.check_and_propose_conf_change(&cmd.request) {
            Ok(index) => {
                let term = self.term();
                self.proposals.push_back(Proposal { index, term, ch: cmd.ch });
            }
            Err(e) => {
                metrics.rejected(&e);
                cmd.ch.respond_error(e);
            }
        }
    }

    fn check_and_propose_conf_change(&mut self, req: &RaftCmdRequest) -> Result<u64> {
        self.check_peer(req.get_header())?;
        if !self.is_leader() {
            return Err(Error::NotLeader { region_id: self.region_id(), leader: self.leader() });
        }
        check_conf_epoch(req, self.region())?;
        if self.merge.blocks_proposals() {
            return Err(Error::ServerIsBusy("the region is merging".into()));
        }
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
        self.propose_entry(ProposalKind::ConfChange, |raft| raft.propose_conf_change(vec![], cc))
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
        if removed.is_none() {
            // A new peer is not down before it had the chance to speak: a leader must not
            // sleep leaving it empty (operation/hibernate.rs).
            self.health.heard_from(cc.node_id, ctx.clock.now());
        }
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
    /// them (or holds already): see the module docs. Returns what may go to apply now.
    pub(crate) fn hold_own_removal<T>(
        &mut self,
        mut entries: Vec<Entry>,
        ctx: &StoreContext<EK, ER, T>,
    ) -> Vec<Entry> {
        if !self.removal.entries.is_empty() {
            self.removal.entries.append(&mut entries);
            return Vec::new();
        }
        if !self.is_leader() {
            return entries;
        }
        let (me, region) = (self.peer_id(), self.region());
        let Some(pos) = entries.iter().position(|e| removes_peer(e, me) && applies_to(e, region))
        else {
            return entries;
        };
        self.removal = RemovalHold { entries: entries.split_off(pos), ..RemovalHold::default() };
        info!(self.logger, "own removal committed: holding it until leadership is handed over";
            "index" => self.removal.entries[0].index);
        // No lease while holding: entries after the removal are committed but not applied
        // here, and other peers may already serve them.
        self.lease.expire();
        self.drive_hand_over(ctx);
        entries
    }

    /// Each tick while entries are held: hand leadership over. A transfer raft is still
    /// working on is sent once more after two heartbeats (its target may have refused to
    /// campaign while it applied this very removal, as raft-rs does with a membership change
    /// to apply); one raft gave up (after an election timeout) goes to another recently heard
    /// peer. Raft's transfer timer therefore keeps running, and with it check-quorum: a leader
    /// cut off while holding still steps down.
    pub(crate) fn drive_hand_over<T>(&mut self, ctx: &StoreContext<EK, ER, T>) {
        if self.removal.entries.is_empty() || !self.is_leader() {
            return;
        }
        let raft = &mut self.raft_group.raft;
        if let Some(target) = raft.lead_transferee {
            let quick = ctx.cfg.raft_heartbeat_ticks as u64 * 2;
            if !self.removal.resent && self.ticks >= self.removal.tick + quick {
                self.removal.resent = true;
                raft.abort_leader_transfer();
                self.raft_group.transfer_leader(target);
            }
            return;
        }
        let avoid = self.removal.target;
        let recent = ctx.cfg.election_timeout();
        match self.hand_over_leadership(ctx.clock.now(), recent, avoid) {
            Some(target) => {
                self.removal.tick = self.ticks;
                self.removal.target = Some(target);
                self.removal.resent = false;
            }
            None if self.ticks.is_multiple_of(ctx.cfg.raft_election_timeout_ticks as u64) => {
                warn!(self.logger, "no peer to hand leadership to before this peer's removal");
            }
            None => {}
        }
    }

    /// This peer is no longer leader: what was held goes to apply.
    pub(crate) fn release_held_entries(&mut self, apply: &ApplyRouter<EK>) {
        if self.removal.entries.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.removal).entries;
        info!(self.logger, "leadership handed over: applying the held entries"; "count" => held.len());
        self.send_to_apply(held, apply);
    }
}

/// Whether the membership change in `entry` may apply: unless it was built against an epoch
/// older than `region` (apply's region is at least as new, and refuses it), it may — `region`
/// can trail apply (a split applied there, not yet here), so a newer epoch is no proof of
/// refusal. Holding one that apply then refuses only costs a hand-over.
fn applies_to(entry: &Entry, region: &Region) -> bool {
    ConfChange::parse_from_bytes(&entry.data)
        .and_then(|cc| RaftCmdRequest::parse_from_bytes(&cc.context))
        .is_ok_and(|req| {
            !is_epoch_stale(req.get_header().get_region_epoch(), region.get_region_epoch())
        })
}

/// A leader's own removal, committed and held back from apply until it hands over.
#[derive(Default)]
pub(crate) struct RemovalHold {
    /// Committed entries, from the removal on.
    pub(crate) entries: Vec<Entry>,
    /// The tick the current hand-over started at.
    tick: u64,
    /// Its target.
    target: Option<u64>,
    /// Whether it was sent once more.
    resent: bool,
}

impl<EK: KvEngine> Apply<EK> {
    /// Applies a membership change: checked against the region as apply has it, then the new
    /// region (conf_ver + 1) into `wb`.
    pub(crate) fn apply_conf_change(
        &mut self,
        entry: &Entry,
        wb: &mut EK::WriteBatch,
        results: &mut Vec<ExecResult>,
    ) -> RaftCmdResponse {
        let decoded = ConfChange::parse_from_bytes(&entry.data).and_then(|cc| {
            let req = RaftCmdRequest::parse_from_bytes(&cc.context)?;
            Ok((cc, req))
        });
        let (cc, req) = match decoded {
            Ok(pair) => pair,
            Err(e) => {
                error!(self.logger, "undecodable conf change skipped"; "index" => entry.index, "err" => %e);
                return error_response(&Error::InvalidRequest(format!(
                    "undecodable conf change: {e}"
                )));
            }
        };
        let region = match check_conf_epoch(&req, &self.region)
            .and_then(|_| exec_change_peer(&self.region, &req))
        {
            Ok(region) => region,
            Err(e) => return error_response(&e),
        };
        let mut state = RegionLocalState::default();
        state.set_state(PeerState::Normal);
        state.set_region(region.clone());
        if let Err(e) = wb.put_msg_cf(CF_META, &keys::region_state_key(region.id), &state) {
            return error_response(&Error::Engine(e));
        }
        self.region = region.clone();
        results.push(ExecResult::ChangePeer { cc, region: region.clone() });
        let mut resp = RaftCmdResponse::default();
        resp.mut_admin_response().set_cmd_type(AdminCmdType::ChangePeer);
        resp.mut_admin_response().mut_change_peer().set_region(region);
        resp
    }
}
