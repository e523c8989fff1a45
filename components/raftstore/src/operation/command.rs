//! Writes: the checks a command passes before it is proposed, proposing it, and executing
//! committed entries on the apply side (the entry loop, each entry all or nothing, the checks
//! repeated, the writes). Admin commands apply in their own modules (`log_gc`, `split`,
//! `conf_change`).
//!
//! ```text
//! RaftCommand ──▶ check store, leader, term, epoch, keys, size ──▶ propose ──▶ Proposal
//!                 (fail: answer now, nothing applied)                   │
//!                                                       committed ──▶ apply: epoch, keys
//!                                                                      again ──▶ answer
//! ```

use engine::{keys, KvEngine, Mutable, RaftEngine, WriteBatch, CF_DEFAULT, CF_META, DATA_CFS};
use proto::{
    eraftpb::{Entry, EntryType},
    metapb::Region,
    raft_cmdpb::{
        AdminCmdType, CmdType, RaftCmdRequest, RaftCmdResponse, RaftRequestHeader, Request,
        Response,
    },
    Message,
};
use raft::RawNode;
use slog::{debug, error, warn};

use crate::{
    batch::StoreContext,
    metrics::ProposalKind,
    msg::{
        error_response, ApplyRes, ApplyTask, CatchUpLogs, ExecResult, Proposal, RaftCommand,
        ReadCommand, ReadResponder,
    },
    operation::merge::WaitMerge,
    raft::{
        apply::{Apply, PendingResponses},
        peer::Peer,
        storage::PeerStorage,
    },
    Config, Error, Result,
};

/// Checks that the request's region epoch is current. Writes depend on the region's range,
/// so a request built against an older version (before a split or merge) is refused with the
/// current region, for the client to route again.
pub fn check_region_epoch(req: &RaftCmdRequest, region: &Region) -> Result<()> {
    let have = req.get_header().get_region_epoch();
    let current = region.get_region_epoch();
    if have.version != current.version {
        return Err(Error::EpochNotMatch {
            msg: format!(
                "request epoch version {} != region {} version {}",
                have.version, region.id, current.version
            ),
            regions: vec![region.clone()],
        });
    }
    Ok(())
}

/// Checks that `key` is inside `region`.
pub fn check_key_in_region(key: &[u8], region: &Region) -> Result<()> {
    if engine::keys::in_range(key, &region.start_key, &region.end_key) {
        Ok(())
    } else {
        Err(Error::KeyNotInRegion { key: key.to_vec(), region: Box::new(region.clone()) })
    }
}

/// The column family a request names (empty: the default one), if a client may use it:
/// an unknown family, or the store's own meta family, is `InvalidRequest`.
pub fn data_cf(name: &str) -> Result<&str> {
    let cf = if name.is_empty() { CF_DEFAULT } else { name };
    if DATA_CFS.contains(&cf) {
        Ok(cf)
    } else {
        Err(Error::InvalidRequest(format!("unknown column family {name:?}")))
    }
}

/// Checks one request of a command against `region`: its type, its column family and every
/// key it touches. Whatever passes here cannot fail when it is applied in the same epoch, so
/// a command refused for its content is refused before it enters the log.
pub fn check_request(r: &Request, region: &Region) -> Result<()> {
    match r.get_cmd_type() {
        CmdType::Put => {
            data_cf(&r.get_put().cf)?;
            check_key_in_region(&r.get_put().key, region)
        }
        CmdType::Delete => {
            data_cf(&r.get_delete().cf)?;
            check_key_in_region(&r.get_delete().key, region)
        }
        CmdType::Get => {
            data_cf(&r.get_get().cf)?;
            check_key_in_region(&r.get_get().key, region)
        }
        CmdType::DeleteRange => {
            let dr = r.get_delete_range();
            data_cf(&dr.cf)?;
            check_key_in_region(&dr.start_key, region)?;
            let end_ok = dr.end_key.is_empty() && region.end_key.is_empty()
                || !dr.end_key.is_empty()
                    && (region.end_key.is_empty() || dr.end_key <= region.end_key);
            if !end_ok || (!dr.end_key.is_empty() && dr.end_key < dr.start_key) {
                return Err(Error::KeyNotInRegion {
                    key: dr.end_key.clone(),
                    region: Box::new(region.clone()),
                });
            }
            Ok(())
        }
        CmdType::Snap => Ok(()),
        CmdType::Invalid => Err(Error::InvalidRequest("request without a command type".into())),
    }
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Proposes a command, or answers it with the error that stopped it.
    pub(crate) fn propose_command<T>(&mut self, ctx: &StoreContext<EK, ER, T>, cmd: RaftCommand) {
        let is_read = |r: &proto::raft_cmdpb::Request| r.get_cmd_type() == CmdType::Get;
        if !cmd.request.has_admin_request()
            && !cmd.request.get_requests().is_empty()
            && cmd.request.get_requests().iter().all(is_read)
        {
            let read =
                ReadCommand { request: cmd.request, responder: ReadResponder::Values(cmd.ch) };
            return self.propose_read(ctx, read);
        }
        match cmd.request.get_admin_request().get_cmd_type() {
            AdminCmdType::TransferLeader => return self.transfer_leader(&ctx.counters, cmd),
            AdminCmdType::ChangePeer => return self.propose_conf_change(&ctx.counters, cmd),
            AdminCmdType::PrepareMerge => return self.propose_prepare_merge(ctx, cmd),
            AdminCmdType::CommitMerge => return self.propose_commit_merge(ctx, cmd),
            _ => {}
        }
        match self.check_and_propose(&ctx.cfg, &cmd.request) {
            Ok(index) => {
                self.on_proposed(index, ctx.clock.now());
                let term = self.term();
                self.proposals.push_back(Proposal { index, term, ch: cmd.ch });
            }
            Err(e) => {
                debug!(self.logger, "command refused"; "err" => %e);
                ctx.counters.rejected(&e);
                cmd.ch.respond_error(e);
            }
        }
    }

    /// Checks that a request is addressed to this store and to this store's peer of the
    /// region (0 means any): a command for a replaced peer is never run by its successor.
    pub(crate) fn check_peer(&self, header: &RaftRequestHeader) -> Result<()> {
        let want = header.get_peer();
        if want.store_id != 0 && want.store_id != self.peer.store_id {
            return Err(Error::StoreNotMatch {
                request: want.store_id,
                actual: self.peer.store_id,
            });
        }
        if want.id != 0 && want.id != self.peer.id {
            return Err(Error::MismatchPeerId { request: want.id, actual: self.peer.id });
        }
        Ok(())
    }

    fn check_and_propose(&mut self, cfg: &Config, req: &RaftCmdRequest) -> Result<u64> {
        let header = req.get_header();
        self.check_peer(header)?;
        if !self.is_leader() {
            return Err(Error::NotLeader { region_id: self.region_id(), leader: self.leader() });
        }
        if header.term != 0 && header.term != self.term() {
            return Err(Error::StaleCommand);
        }
        if req.has_admin_request() {
            let kind = req.get_admin_request().get_cmd_type();
            return Err(Error::InvalidRequest(format!("admin command {kind:?} is not supported")));
        }
        if req.get_requests().is_empty() {
            return Err(Error::InvalidRequest("a command without requests".into()));
        }
        self.check_epoch(req)?;
        if self.merge.blocks_proposals() {
            return Err(Error::ServerIsBusy(format!("region {} is merging", self.region_id())));
        }
        for r in req.get_requests() {
            if matches!(r.get_cmd_type(), CmdType::Get | CmdType::Snap) {
                return Err(Error::InvalidRequest("reads do not go through raft here".into()));
            }
            check_request(r, self.region())?;
        }
        let data = req
            .write_to_bytes()
            .map_err(|e| Error::InvalidRequest(format!("cannot encode request: {e}")))?;
        if data.len() as u64 > cfg.raft_entry_max_size {
            return Err(Error::RaftEntryTooLarge {
                region_id: self.region_id(),
                size: data.len() as u64,
            });
        }
        self.propose_entry(ProposalKind::Write, |raft| raft.propose(vec![], data))
    }

    /// Appends an entry through `propose` and returns its index. Raft drops proposals
    /// silently at times (while it transfers leadership): a log that did not grow means
    /// dropped, answered `NotLeader`.
    pub(crate) fn propose_entry(
        &mut self,
        kind: ProposalKind,
        propose: impl FnOnce(&mut RawNode<PeerStorage<EK, ER>>) -> raft::Result<()>,
    ) -> Result<u64> {
        let last = self.raft_group.raft.raft_log.last_index();
        let dropped = propose(&mut self.raft_group).is_err()
            || self.raft_group.raft.raft_log.last_index() == last;
        if dropped {
            return Err(Error::NotLeader { region_id: self.region_id(), leader: self.leader() });
        }
        self.proposals_made[kind as usize] += 1;
        let index = self.raft_group.raft.raft_log.last_index();
        if kind.is_urgent() {
            self.bcast_commits_until(index);
        }
        Ok(index)
    }
}

/// Executing committed entries: the loop over a task's entries, each all or nothing, and the
/// writes; admin commands go to their feature modules.
impl<EK: KvEngine> Apply<EK> {
    /// Executes `task` into `wb` (written by the caller), queueing the responses in `out`.
    /// Returns what to report to the peer once `wb` is written.
    pub fn apply(
        &mut self,
        task: ApplyTask,
        wb: &mut EK::WriteBatch,
        out: &mut PendingResponses,
    ) -> ApplyRes {
        self.pending.extend(task.proposals);
        let mut exec_results = Vec::new();
        let catch_up = match &mut self.wait_merge {
            Some(wait) => {
                wait.entries.extend(task.entries);
                None
            }
            None => self.apply_entries(task.entries, wb, out, &mut exec_results),
        };
        self.finish_round(wb, exec_results, catch_up)
    }

    /// Goes on with the entries held at a CommitMerge once the local source has caught up;
    /// `None` if nothing was held.
    pub fn resume_merge(
        &mut self,
        wb: &mut EK::WriteBatch,
        out: &mut PendingResponses,
    ) -> Option<ApplyRes> {
        let wait = self.wait_merge.take()?;
        let mut exec_results = Vec::new();
        let catch_up = self.apply_entries(wait.entries, wb, out, &mut exec_results);
        Some(self.finish_round(wb, exec_results, catch_up))
    }

    /// Executes `entries` in order, unless one is a CommitMerge whose source has not caught
    /// up here: it and the rest are held, and what the source must catch up to is returned.
    fn apply_entries(
        &mut self,
        entries: Vec<Entry>,
        wb: &mut EK::WriteBatch,
        out: &mut PendingResponses,
        exec_results: &mut Vec<ExecResult>,
    ) -> Option<CatchUpLogs> {
        let mut entries = entries.into_iter();
        while let Some(entry) = entries.next() {
            if entry.index <= self.apply_state.applied_index {
                continue; // replayed after a restart: already in the kv engine
            }
            if let Some(merge) = self.commit_merge_must_wait(&entry) {
                slog::info!(self.logger, "CommitMerge waits for its source to catch up";
                    "source" => merge.get_source().id, "index" => entry.index);
                let held = std::iter::once(entry).chain(entries).collect();
                let source = merge.get_source().id;
                self.wait_merge = Some(WaitMerge { source, entries: held });
                return Some(CatchUpLogs { target_region_id: self.region.id, merge });
            }
            let resp = self.exec_entry(&entry, wb, exec_results);
            self.apply_state.applied_index = entry.index;
            self.apply_state.commit_index = entry.index;
            self.apply_state.commit_term = entry.term;
            self.applied_term = entry.term;
            self.answer(entry.index, entry.term, resp, out);
        }
        None
    }

    /// The apply state into `wb`, and what to report to the peer.
    fn finish_round(
        &mut self,
        wb: &mut EK::WriteBatch,
        exec_results: Vec<ExecResult>,
        catch_up: Option<CatchUpLogs>,
    ) -> ApplyRes {
        if let Err(e) =
            wb.put_msg_cf(CF_META, &keys::apply_state_key(self.region.id), &self.apply_state)
        {
            error!(self.logger, "cannot encode apply state"; "err" => %e);
        }
        let (written_bytes, written_keys) = std::mem::take(&mut self.written);
        ApplyRes {
            region_id: self.region.id,
            apply_state: self.apply_state.clone(),
            applied_term: self.applied_term,
            exec_results,
            written_bytes,
            written_keys,
            catch_up,
            holding_merge: self.wait_merge.as_ref().map(|w| w.source),
        }
    }

    /// Executes one entry into `wb`, all or nothing: a command that fails leaves none of its
    /// writes in the batch (a save point is rolled back), so its error response is true.
    fn exec_entry(
        &mut self,
        entry: &Entry,
        wb: &mut EK::WriteBatch,
        results: &mut Vec<ExecResult>,
    ) -> RaftCmdResponse {
        let written = self.written;
        wb.set_save_point();
        let resp = match entry.get_entry_type() {
            EntryType::EntryNormal if entry.data.is_empty() => RaftCmdResponse::default(),
            EntryType::EntryNormal => self.exec_normal(entry, wb, results),
            EntryType::EntryConfChange => self.apply_conf_change(entry, wb, results),
            EntryType::EntryConfChangeV2 => {
                warn!(self.logger, "joint consensus changes are not proposed by this store"; "index" => entry.index);
                error_response(&Error::InvalidRequest("ConfChangeV2 unsupported".into()))
            }
        };
        let settled = if resp.get_header().has_error() {
            self.written = written;
            wb.rollback_to_save_point()
        } else {
            wb.pop_save_point()
        };
        if let Err(e) = settled {
            // Only if the save point set just above vanished: a bug, not a state to go on in.
            panic!("write batch save point lost at index {}: {e}", entry.index);
        }
        resp
    }

    fn exec_normal(
        &mut self,
        entry: &Entry,
        wb: &mut EK::WriteBatch,
        results: &mut Vec<ExecResult>,
    ) -> RaftCmdResponse {
        let req = match RaftCmdRequest::parse_from_bytes(&entry.data) {
            Ok(req) => req,
            Err(e) => {
                error!(self.logger, "undecodable entry skipped"; "index" => entry.index, "err" => %e);
                return error_response(&Error::InvalidRequest(format!("undecodable entry: {e}")));
            }
        };
        let rollback = req.get_admin_request().get_cmd_type() == AdminCmdType::RollbackMerge;
        let res = if self.merging.is_some() && !rollback {
            // Merging: writes carry the old epoch anyway; admin commands (a log compaction
            // would drop entries the merge carries) wait for the rollback, if any.
            Err(Error::ServerIsBusy(format!("region {} is merging", self.region.id)))
        } else if req.has_admin_request() {
            self.exec_admin(&req, entry.index, wb, results)
        } else {
            self.exec_write(&req, wb)
        };
        match res {
            Ok(resp) => resp,
            Err(e) => error_response(&e),
        }
    }

    /// Checks the whole command first (the checks of propose, again: the region may have
    /// changed since), then writes it.
    fn exec_write(
        &mut self,
        req: &RaftCmdRequest,
        wb: &mut EK::WriteBatch,
    ) -> Result<RaftCmdResponse> {
        check_region_epoch(req, &self.region)?;
        for r in req.get_requests() {
            check_request(r, &self.region)?;
        }
        let mut resp = RaftCmdResponse::default();
        for r in req.get_requests() {
            resp.responses.push(self.exec_request(r, wb)?);
        }
        Ok(resp)
    }

    fn exec_request(&mut self, r: &Request, wb: &mut EK::WriteBatch) -> Result<Response> {
        let mut resp = Response::default();
        resp.set_cmd_type(r.get_cmd_type());
        match r.get_cmd_type() {
            CmdType::Put => {
                let put = r.get_put();
                wb.put_cf(data_cf(&put.cf)?, &keys::data_key(&put.key), &put.value)?;
                self.written.0 += (put.key.len() + put.value.len()) as u64;
                self.written.1 += 1;
            }
            CmdType::Delete => {
                let del = r.get_delete();
                wb.delete_cf(data_cf(&del.cf)?, &keys::data_key(&del.key))?;
                // Not bytes written, but a change of size the size check should see.
                self.written.0 += del.key.len() as u64;
            }
            CmdType::DeleteRange => {
                let dr = r.get_delete_range();
                let end = if dr.end_key.is_empty() {
                    keys::data_end_key(&self.region.end_key)
                } else {
                    keys::data_key(&dr.end_key)
                };
                wb.delete_range_cf(data_cf(&dr.cf)?, &keys::data_key(&dr.start_key), &end)?;
            }
            other => return Err(Error::InvalidRequest(format!("{other:?} is not a write"))),
        }
        Ok(resp)
    }

    fn exec_admin(
        &mut self,
        req: &RaftCmdRequest,
        index: u64,
        wb: &mut EK::WriteBatch,
        results: &mut Vec<ExecResult>,
    ) -> Result<RaftCmdResponse> {
        match req.get_admin_request().get_cmd_type() {
            AdminCmdType::CompactLog => self.apply_compact_log(req.get_admin_request()),
            AdminCmdType::BatchSplit => self.apply_batch_split(req, wb, results),
            AdminCmdType::PrepareMerge => self.apply_prepare_merge(req, index, wb, results),
            AdminCmdType::CommitMerge => self.apply_commit_merge(req, wb, results),
            AdminCmdType::RollbackMerge => self.apply_rollback_merge(req, wb, results),
            other => {
                Err(Error::InvalidRequest(format!("admin command {other:?} is not applied here")))
            }
        }
    }
}
