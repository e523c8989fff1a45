//! PrepareMerge: the source leader's checks and proposal, what its commit means for reads,
//! and applying it.

use engine::{keys, KvEngine, Mutable, RaftEngine, CF_META};
use proto::{
    eraftpb::EntryType,
    metapb::Region,
    raft_cmdpb::{AdminCmdType, RaftCmdRequest, RaftCmdResponse},
    raft_serverpb::{MergeState, PeerState},
    Message,
};
use raft::{GetEntriesContext, ProgressState};
use slog::info;

use super::{check_whole_epoch, is_sibling, on_same_stores, region_state, PREPARE_MERGE_CONTEXT};
use crate::{
    batch::StoreContext,
    metrics::ProposalKind,
    msg::{ExecResult, Proposal, RaftCommand},
    raft::{apply::Apply, peer::Peer},
    transport::Transport,
    Config, Error, Result,
};

/// A PrepareMerge request of `region` into `target`.
pub(crate) fn prepare_merge_request(region: &Region, target: Region) -> RaftCmdRequest {
    let mut req = RaftCmdRequest::default();
    req.mut_header().region_id = region.id;
    req.mut_header().set_region_epoch(region.get_region_epoch().clone());
    req.mut_admin_request().set_cmd_type(AdminCmdType::PrepareMerge);
    req.mut_admin_request().mut_prepare_merge().set_target(target);
    req
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// The placement driver's merge operator: PrepareMerge into `target`. Nobody waits; the
    /// placement driver sees the outcome in later heartbeats.
    pub(crate) fn on_merge_operator<T>(&mut self, ctx: &StoreContext<EK, ER, T>, target: Region) {
        let (cmd, _) = RaftCommand::new(prepare_merge_request(self.region(), target));
        self.propose_prepare_merge(ctx, cmd);
    }

    /// Proposes PrepareMerge (its `min_index` set here), or answers why not.
    pub(crate) fn propose_prepare_merge<T>(
        &mut self,
        ctx: &StoreContext<EK, ER, T>,
        cmd: RaftCommand,
    ) {
        let res = self.check_prepare_merge(ctx, &cmd.request).and_then(|min_index| {
            let mut req = cmd.request.clone();
            req.mut_admin_request().mut_prepare_merge().min_index = min_index;
            let data = req.write_to_bytes().map_err(|e| Error::InvalidRequest(e.to_string()))?;
            self.propose_entry(ProposalKind::Merge, |raft| {
                raft.propose(PREPARE_MERGE_CONTEXT.to_vec(), data)
            })
        });
        match res {
            Ok(index) => {
                let target = cmd.request.get_admin_request().get_prepare_merge().get_target().id;
                info!(self.logger, "PrepareMerge proposed"; "index" => index, "target" => target);
                self.merge.on_prepare_proposed(index);
                self.on_proposed(index, ctx.clock.now());
                self.proposals.push_back(Proposal { index, term: self.term(), ch: cmd.ch });
            }
            Err(e) => {
                info!(self.logger, "PrepareMerge refused"; "err" => %e);
                ctx.counters.rejected(&e);
                cmd.ch.respond_error(e);
            }
        }
    }

    /// The checks of PrepareMerge; the `min_index` it carries if they pass.
    fn check_prepare_merge<T>(
        &self,
        ctx: &StoreContext<EK, ER, T>,
        req: &RaftCmdRequest,
    ) -> Result<u64> {
        self.check_peer(req.get_header())?;
        if !self.is_leader() {
            return Err(Error::NotLeader { region_id: self.region_id(), leader: self.leader() });
        }
        check_whole_epoch(req, self.region())?;
        self.check_no_admin_in_flight()?;
        let target = req.get_admin_request().get_prepare_merge().get_target();
        self.check_merge_target(ctx, target)?;
        let min_matched = self.check_followers_for_merge()?;
        self.check_merge_log_gap(&ctx.cfg, min_matched)?;
        Ok(min_matched + 1)
    }

    /// No other merge, split or own removal under way.
    pub(crate) fn check_no_admin_in_flight(&self) -> Result<()> {
        if self.merge.blocks_proposals() {
            return Err(Error::ServerIsBusy("the region is merging".into()));
        }
        if self.split.pending().is_some() {
            return Err(Error::ServerIsBusy("a split is in progress".into()));
        }
        if !self.removal.entries.is_empty() {
            return Err(Error::ServerIsBusy("the leader is being removed".into()));
        }
        let raft = &self.raft_group.raft;
        if raft.pending_conf_index > raft.raft_log.applied {
            return Err(Error::ServerIsBusy("a membership change is in progress".into()));
        }
        Ok(())
    }

    /// The target must be a neighbour this store knows, not newer than asked (the placement
    /// driver's view may be old), with peers on the same stores.
    fn check_merge_target<T>(&self, ctx: &StoreContext<EK, ER, T>, target: &Region) -> Result<()> {
        let refuse = |why: &str| {
            Err(Error::InvalidRequest(format!("cannot merge into region {}: {why}", target.id)))
        };
        if !is_sibling(self.region(), target) {
            return refuse("not a neighbour");
        }
        if !on_same_stores(self.region(), target) {
            return refuse("its peers are not on the same stores, all voters");
        }
        let meta = ctx.meta.lock().unwrap_or_else(|e| e.into_inner());
        let Some(local) = meta.region(target.id) else {
            return refuse("unknown on this store");
        };
        if local != target {
            return refuse("it differs here (epoch, range or peers) from the one asked for");
        }
        Ok(())
    }

    /// Every follower must be replicating (none waiting for a snapshot): returns the lowest
    /// index they all have.
    fn check_followers_for_merge(&self) -> Result<u64> {
        let truncated = self.storage().truncated_index();
        let mut min_matched = u64::MAX;
        for (id, pr) in self.raft_group.raft.prs().iter() {
            if pr.matched == 0 {
                return Err(Error::ServerIsBusy(format!("peer {id} has not answered yet")));
            }
            if pr.state == ProgressState::Snapshot || pr.matched < truncated {
                return Err(Error::ServerIsBusy(format!("peer {id} needs a snapshot")));
            }
            min_matched = min_matched.min(pr.matched);
        }
        Ok(min_matched)
    }

    /// The entries the slowest follower lacks: few (they travel with CommitMerge), and none a
    /// conf change or an admin command other than a leader transfer.
    fn check_merge_log_gap(&self, cfg: &Config, min_matched: u64) -> Result<()> {
        let raft_log = &self.raft_group.raft.raft_log;
        let last = raft_log.last_index();
        if last - min_matched > cfg.merge_max_log_gap {
            return Err(Error::ServerIsBusy(format!(
                "a follower lacks {} entries (at most {} for a merge)",
                last - min_matched,
                cfg.merge_max_log_gap
            )));
        }
        let entries = raft_log
            .entries(min_matched + 1, None, GetEntriesContext::empty(false))
            .map_err(|e| Error::ServerIsBusy(format!("the log gap is unreadable: {e}")))?;
        for e in entries {
            if e.get_entry_type() != EntryType::EntryNormal {
                return Err(Error::ServerIsBusy("a membership change is in the log gap".into()));
            }
            if e.data.is_empty() {
                continue;
            }
            let req = RaftCmdRequest::parse_from_bytes(&e.data)
                .map_err(|err| Error::InvalidRequest(format!("undecodable entry: {err}")))?;
            if req.has_admin_request()
                && req.get_admin_request().get_cmd_type() != AdminCmdType::TransferLeader
            {
                return Err(Error::ServerIsBusy("an admin command is in the log gap".into()));
            }
        }
        Ok(())
    }

    /// A PrepareMerge committed at `index`, seen before this ready's messages go out (they
    /// may carry the commit to followers, whose apply lets the target commit the merge): no
    /// lease, local or remote, and no read is served from now on.
    pub(crate) fn on_prepare_merge_committed(&mut self, index: u64, now: std::time::Duration) {
        self.merge.on_prepare_committed(index);
        self.stop_reads_for_merge(now);
    }

    /// Suspects the lease, expires the remote one, fails the reads waiting here and drops
    /// held ReadIndex answers to followers.
    pub(crate) fn stop_reads_for_merge(&mut self, now: std::time::Duration) {
        if self.is_leader() {
            self.lease.suspect(now);
        }
        self.lease.expire_remote_lease();
        self.reads.clear_answers();
        let region_id = self.region_id();
        self.fail_reads(|| Error::ServerIsBusy(format!("region {region_id} is merging")));
    }

    /// PrepareMerge applied: the region (version and conf_ver bumped) is published, and the
    /// merge is on: the target is asked to commit it at once.
    pub(crate) fn on_prepare_merge_applied<T: Transport>(
        &mut self,
        ctx: &mut StoreContext<EK, ER, T>,
        region: Region,
        state: MergeState,
    ) {
        if !self.is_alive() {
            return; // being destroyed: its region is leaving StoreMeta, not changing there
        }
        info!(self.logger, "PrepareMerge applied";
            "target" => state.get_target().id, "commit" => state.commit, "min_index" => state.min_index);
        self.raft_group.mut_store().set_region(region.clone());
        ctx.meta.lock().unwrap_or_else(|e| e.into_inner()).set_region(region);
        let target = state.get_target().id;
        self.merge.on_prepare_applied(state);
        self.stop_reads_for_merge(ctx.clock.now());
        // The target's apply may hold a CommitMerge for this source even if no catch-up was
        // asked: it can have checked the source's state in the same apply round that wrote
        // the PrepareMerge, before the round's batch reached the engine. Resuming is harmless
        // when nothing is held, and a hold that is still needed asks for a catch-up again.
        self.merge.take_caught_up_target();
        self.resume_target_apply(ctx, target);
        self.on_merge_check_tick(ctx);
    }
}

impl<EK: KvEngine> Apply<EK> {
    /// Applies PrepareMerge at `index`: version and conf_ver + 1, state Merging.
    pub(crate) fn apply_prepare_merge(
        &mut self,
        req: &RaftCmdRequest,
        index: u64,
        wb: &mut EK::WriteBatch,
        results: &mut Vec<ExecResult>,
    ) -> Result<RaftCmdResponse> {
        check_whole_epoch(req, &self.region)?;
        let pm = req.get_admin_request().get_prepare_merge();
        let mut region = self.region.clone();
        region.mut_region_epoch().version += 1;
        region.mut_region_epoch().conf_ver += 1;
        let mut state = MergeState::default();
        state.min_index = pm.min_index;
        state.set_target(pm.get_target().clone());
        state.commit = index;
        let record = region_state(PeerState::Merging, region.clone(), Some(state.clone()));
        wb.put_msg_cf(CF_META, &keys::region_state_key(region.id), &record)?;
        self.region = region.clone();
        self.merging = Some(state.clone());
        let mut resp = RaftCmdResponse::default();
        resp.mut_admin_response().set_cmd_type(AdminCmdType::PrepareMerge);
        results.push(ExecResult::PrepareMerge { region, state });
        Ok(resp)
    }
}
