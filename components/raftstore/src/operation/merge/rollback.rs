//! RollbackMerge: source peers whose local target can never commit the merge vote for it; the
//! source leader proposes it once a quorum has, and applying it makes the region serve again.

use std::sync::Arc;

use engine::{keys, KvEngine, Mutable, RaftEngine, CF_META};
use local_reader::DelegateUpdate;
use proto::{
    eraftpb::{self, MessageType},
    metapb::Region,
    raft_cmdpb::{AdminCmdType, RaftCmdRequest, RaftCmdResponse},
    raft_serverpb::{ExtraMessageType, PeerState, RaftMessage, RegionLocalState},
    Message,
};
use slog::{info, warn};

use super::region_state;
use crate::{
    batch::StoreContext,
    metrics::{ProposalKind, RaftEvent},
    msg::ExecResult,
    raft::{apply::Apply, peer::Peer},
    transport::Transport,
    Error, Result,
};

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// This source peer votes to roll back the merge at `commit`: counted here if it leads,
    /// else sent to the leader.
    pub(crate) fn vote_rollback<T: Transport>(
        &mut self,
        ctx: &mut StoreContext<EK, ER, T>,
        commit: u64,
    ) {
        if self.is_leader() {
            return self.on_rollback_vote(ctx, self.peer_id(), commit);
        }
        let Some(leader) = self.leader() else { return };
        let mut m = eraftpb::Message::default();
        m.set_msg_type(MessageType::MsgHeartbeatResponse); // never stepped: names the ends
        m.from = self.peer_id();
        m.to = leader.id;
        let Some(mut msg) = self.wrap_message(m) else { return };
        msg.mut_extra().set_field_type(ExtraMessageType::MsgWantRollbackMerge);
        msg.mut_extra().premerge_commit = commit;
        let _ = ctx.trans.send(msg); // lost: voted again next tick
    }

    /// A message that is not raft's own, from a member of the region.
    pub(crate) fn on_extra_message<T: Transport>(
        &mut self,
        msg: &RaftMessage,
        ctx: &mut StoreContext<EK, ER, T>,
    ) {
        let from = msg.get_from_peer().id;
        if !self.region().get_peers().iter().any(|p| p.id == from) {
            return;
        }
        self.health.heard_from(from, ctx.clock.now()); // a sleeping member is not down
        match msg.get_extra().get_field_type() {
            ExtraMessageType::MsgWantRollbackMerge => {
                self.on_rollback_vote(ctx, from, msg.get_extra().premerge_commit)
            }
            ExtraMessageType::MsgHibernateRequest
            | ExtraMessageType::MsgHibernateResponse
            | ExtraMessageType::MsgCheckLeader
            | ExtraMessageType::MsgLeaderAlive
            // It woke this peer on arrival (operation/hibernate.rs), and voids a sleep vote.
            | ExtraMessageType::MsgRegionWakeUp => self.on_hibernate_message(msg, ctx),
            ExtraMessageType::MsgNoExtra => {}
            // Store-level (region 0): the store FSM's, never a peer's.
            ExtraMessageType::MsgStoreCheck | ExtraMessageType::MsgStoreAlive => {}
        }
    }

    /// A vote for rolling back: with a quorum of the source's voters, the leader proposes it.
    fn on_rollback_vote<T>(&mut self, ctx: &StoreContext<EK, ER, T>, voter: u64, commit: u64) {
        if !self.is_leader() {
            return;
        }
        let voters: Vec<u64> = self.region().get_peers().iter().map(|p| p.id).collect();
        if !self.merge.vote_rollback(voter, commit, &voters) {
            return;
        }
        let mut req = RaftCmdRequest::default();
        req.mut_header().region_id = self.region_id();
        req.mut_header().set_region_epoch(self.region().get_region_epoch().clone());
        req.mut_admin_request().set_cmd_type(AdminCmdType::RollbackMerge);
        req.mut_admin_request().mut_rollback_merge().commit = commit;
        let proposed = req
            .write_to_bytes()
            .map_err(|e| Error::InvalidRequest(e.to_string()))
            .and_then(|data| self.propose_entry(ProposalKind::Merge, |r| r.propose(vec![], data)));
        match proposed {
            Ok(index) => {
                info!(self.logger, "RollbackMerge proposed"; "commit" => commit, "index" => index);
                self.merge.on_rollback_proposed(index);
                self.on_proposed(index, ctx.clock.now());
            }
            Err(e) => warn!(self.logger, "cannot propose RollbackMerge"; "err" => %e),
        }
    }

    /// RollbackMerge applied: the region (version + 1) serves again; a leader renews its
    /// lease from its next commit.
    pub(crate) fn on_rollback_merge_applied<T>(
        &mut self,
        ctx: &mut StoreContext<EK, ER, T>,
        region: Region,
    ) {
        if !self.is_alive() {
            return; // being destroyed: its region is leaving StoreMeta, not changing there
        }
        info!(self.logger, "merge rolled back"; "version" => region.get_region_epoch().version);
        let now = ctx.clock.now();
        self.raft_group.mut_store().set_region(region.clone());
        {
            let mut meta = ctx.meta.lock().unwrap_or_else(|e| e.into_inner());
            meta.set_region(region.clone());
            if let Some(d) = meta.reader_mut(self.region_id(), self.peer_id()) {
                d.update(DelegateUpdate::Region(Arc::new(region.clone())), now);
            }
        }
        self.publish_region(&region);
        self.merge.on_rolled_back();
        ctx.counters.inc(RaftEvent::MergeRolledBack);
        if self.is_leader() {
            self.heartbeat_pd(ctx);
        }
    }
}

impl<EK: KvEngine> Apply<EK> {
    /// Applies RollbackMerge of the merge at `commit`: version + 1, state Normal.
    pub(crate) fn apply_rollback_merge(
        &mut self,
        req: &RaftCmdRequest,
        wb: &mut EK::WriteBatch,
        results: &mut Vec<ExecResult>,
    ) -> Result<RaftCmdResponse> {
        let commit = req.get_admin_request().get_rollback_merge().commit;
        if self.merging.as_ref().is_none_or(|s| s.commit != commit) {
            return Err(Error::InvalidRequest(format!("no merge at {commit} to roll back")));
        }
        // What is on disk decides too: a target that took this source in on this store wrote
        // it a tombstone, which no rollback may turn back into a live region.
        let key = keys::region_state_key(self.region.id);
        let stored = self.kv.get_msg_cf::<RegionLocalState>(CF_META, &key)?;
        if stored.is_none_or(|s| {
            s.get_state() != PeerState::Merging || s.get_merge_state().commit != commit
        }) {
            return Err(Error::InvalidRequest(format!(
                "region {} is not merging here",
                self.region.id
            )));
        }
        let mut region = self.region.clone();
        region.mut_region_epoch().version += 1;
        let record = region_state(PeerState::Normal, region.clone(), None);
        wb.put_msg_cf(CF_META, &keys::region_state_key(region.id), &record)?;
        self.region = region.clone();
        self.merging = None;
        let mut resp = RaftCmdResponse::default();
        resp.mut_admin_response().set_cmd_type(AdminCmdType::RollbackMerge);
        results.push(ExecResult::RollbackMerge { region });
        Ok(resp)
    }
}
