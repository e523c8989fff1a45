//! The apply side of one region: executes committed entries against the kv engine.

use std::collections::VecDeque;

use engine::{keys, KvEngine, Mutable, WriteBatch, CF_META};
use proto::{
    eraftpb::{ConfChange, Entry, EntryType},
    metapb::Region,
    raft_cmdpb::{AdminCmdType, CmdType, RaftCmdRequest, RaftCmdResponse, Request, Response},
    raft_serverpb::{PeerState, RaftApplyState, RegionLocalState},
    Message,
};
use slog::{error, warn, Logger};

use crate::{
    msg::{error_response, ApplyRes, ApplyTask, CmdResponseSender, ExecResult, Proposal},
    operation::{
        command::{check_region_epoch, check_request, data_cf},
        conf_change::{check_conf_epoch, exec_change_peer},
        log_gc::exec_compact_log,
        split::exec_batch_split,
    },
    Error, Result,
};

/// Responses to send once the write batch holding their effects is written.
pub type PendingResponses = Vec<(CmdResponseSender, RaftCmdResponse)>;

/// A region's apply state and the proposals waiting for their entries.
pub struct Apply<EK: KvEngine> {
    region: Region,
    kv: EK,
    apply_state: RaftApplyState,
    applied_term: u64,
    pending: VecDeque<Proposal>,
    /// Bytes and keys written since the last `ApplyRes`.
    written: (u64, u64),
    logger: Logger,
}

impl<EK: KvEngine> Apply<EK> {
    /// The apply side of `region`, starting from `apply_state`.
    pub fn new(region: Region, kv: EK, apply_state: RaftApplyState, logger: Logger) -> Self {
        let applied_term = apply_state.commit_term;
        Apply {
            region,
            kv,
            apply_state,
            applied_term,
            pending: VecDeque::new(),
            written: (0, 0),
            logger,
        }
    }

    /// The region as apply has left it.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The kv engine.
    pub fn kv(&self) -> &EK {
        &self.kv
    }

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
        for entry in task.entries {
            if entry.index <= self.apply_state.applied_index {
                continue; // replayed after a restart: already in the kv engine
            }
            let resp = self.exec_entry(&entry, wb, &mut exec_results);
            self.apply_state.applied_index = entry.index;
            self.apply_state.commit_index = entry.index;
            self.apply_state.commit_term = entry.term;
            self.applied_term = entry.term;
            self.answer(entry.index, entry.term, resp, out);
        }
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
            EntryType::EntryConfChange => self.exec_conf_change(entry, wb, results),
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

    /// Starts over from a snapshot's state; proposals still waiting can no longer be matched
    /// and answer `OutcomeUnknown` as they drop.
    pub fn reset(&mut self, region: Region, apply_state: RaftApplyState) {
        self.applied_term = apply_state.commit_term;
        self.region = region;
        self.apply_state = apply_state;
        self.pending.clear();
    }

    fn exec_conf_change(
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

    /// Hands `resp` to the proposal of the entry at `index` in `term`; a proposal whose index
    /// was taken by an entry of another term lost its place.
    fn answer(&mut self, index: u64, term: u64, resp: RaftCmdResponse, out: &mut PendingResponses) {
        let mut resp = Some(resp);
        while let Some(p) = self.pending.front() {
            if p.index > index {
                break;
            }
            let p = self.pending.pop_front().expect("front exists");
            if p.index == index && p.term == term {
                out.push((p.ch, resp.take().unwrap_or_default()));
            } else {
                out.push((p.ch, error_response(&Error::StaleCommand)));
            }
        }
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
        let res = if req.has_admin_request() {
            self.exec_admin(&req, wb, results)
        } else {
            self.exec_write(&req, wb)
        };
        match res {
            Ok(resp) => resp,
            Err(e) => error_response(&e),
        }
    }

    fn exec_admin(
        &mut self,
        req: &RaftCmdRequest,
        wb: &mut EK::WriteBatch,
        results: &mut Vec<ExecResult>,
    ) -> Result<RaftCmdResponse> {
        let admin = req.get_admin_request();
        match admin.get_cmd_type() {
            AdminCmdType::CompactLog => exec_compact_log(admin, &mut self.apply_state)?,
            AdminCmdType::BatchSplit => {
                let (regions, derived) = exec_batch_split(&self.kv, wb, &self.region, req)?;
                self.region = derived.clone();
                let mut resp = RaftCmdResponse::default();
                resp.mut_admin_response().set_cmd_type(AdminCmdType::BatchSplit);
                resp.mut_admin_response().mut_splits().set_regions(regions.clone().into());
                results.push(ExecResult::Split { regions, derived });
                return Ok(resp);
            }
            other => {
                return Err(Error::InvalidRequest(format!(
                    "admin command {other:?} is not applied here"
                )))
            }
        }
        let mut resp = RaftCmdResponse::default();
        resp.mut_admin_response().set_cmd_type(admin.get_cmd_type());
        Ok(resp)
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
}
