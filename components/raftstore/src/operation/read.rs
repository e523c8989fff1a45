//! Reads through ReadIndex on the leader.
//!
//! ```text
//! Get ──▶ leader? epoch? keys? ──▶ committed an entry of its own term yet?
//!           no: NotLeader / EpochNotMatch / KeyNotInRegion      no: hold (raft-rs would drop
//!                                                                   the request silently)
//!                                           yes: raft read_index(id) ──▶ quorum confirms
//!         ReadState { index } ──▶ wait until applied ≥ index and applied term = term
//!         ──▶ one kv snapshot, epoch checked again ──▶ values
//! ```
//!
//! Each read gets its own ReadIndex round, so no read is answered at an index below what was
//! applied when it arrived (TiKV #7971 came from batching). A peer that steps down fails every
//! read it holds with `NotLeader`: they retry on the new leader, never answered here
//! (TiKV #6340, #9208: a new leader must not answer from an older term's commit index).

use engine::{keys, KvEngine, Peekable, RaftEngine};
use proto::raft_cmdpb::{CmdType, RaftCmdRequest, RaftCmdResponse, Response};
use slog::debug;

use crate::{
    msg::RaftCommand,
    operation::command::{check_key_in_region, check_region_epoch},
    raft::peer::Peer,
    Error, Result,
};

/// A read waiting for raft to confirm leadership, then for apply to catch up.
pub(crate) struct PendingRead {
    id: u64,
    /// The read index, once raft confirmed it.
    index: Option<u64>,
    /// The tick the ReadIndex was (last) sent at, to retry one that got lost.
    issued_tick: u64,
    cmd: RaftCommand,
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Starts a read, or answers it with the error that stopped it. A follower serves a read
    /// that asks for it (`replica_read`): raft forwards its ReadIndex to the leader.
    pub(crate) fn propose_read(&mut self, cmd: RaftCommand) {
        if let Err(e) = self.check_read(&cmd.request) {
            return cmd.ch.respond_error(e);
        }
        if self.is_leader() && !self.raft_group.raft.commit_to_current_term() {
            self.held_reads.push(cmd);
            return;
        }
        self.issue_read(cmd);
    }

    fn check_read(&self, req: &RaftCmdRequest) -> Result<()> {
        let follower_read = req.get_header().replica_read && self.raft_group.raft.leader_id != 0;
        if !self.is_leader() && !follower_read {
            // Without a known leader a follower cannot get a read index: retry later.
            return Err(Error::NotLeader { region_id: self.region_id(), leader: self.leader() });
        }
        if !self.storage().is_initialized() {
            return Err(Error::RegionNotFound(self.region_id())); // no data here yet
        }
        if self.snapshot_must_wait() {
            return Err(Error::ServerIsBusy("applying a snapshot".into()));
        }
        check_region_epoch(req, self.region())?;
        for r in req.get_requests() {
            if r.get_cmd_type() != CmdType::Get {
                return Err(Error::InvalidRequest("a read carries only Get requests".into()));
            }
            check_key_in_region(&r.get_get().key, self.region())?;
        }
        Ok(())
    }

    fn issue_read(&mut self, cmd: RaftCommand) {
        self.next_read_id += 1;
        let id = self.next_read_id;
        self.raft_group.read_index(id.to_be_bytes().to_vec());
        self.reads.push_back(PendingRead { id, index: None, issued_tick: self.ticks, cmd });
    }

    /// Re-sends ReadIndex requests unanswered for an election timeout: a request forwarded to
    /// a leader that stepped down, or lost on the way, is never answered (TiKV #18417).
    pub(crate) fn retry_lost_reads(&mut self, election_ticks: u64) {
        let now = self.ticks;
        for i in 0..self.reads.len() {
            let read = &mut self.reads[i];
            if read.index.is_none() && now >= read.issued_tick + election_ticks {
                read.issued_tick = now;
                let ctx = read.id.to_be_bytes().to_vec();
                self.raft_group.read_index(ctx);
            }
        }
    }

    /// Raft confirmed read indexes (from a ready).
    pub(crate) fn on_read_states(&mut self, states: Vec<raft::ReadState>) {
        fail::fail_point!("read_index_confirmed", |_| {});
        for rs in states {
            let Ok(bytes) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()) else { continue };
            let id = u64::from_be_bytes(bytes);
            if let Some(read) = self.reads.iter_mut().find(|r| r.id == id) {
                read.index = Some(rs.index);
            }
        }
    }

    /// Issues held reads once the leader has committed in its term, and answers every read
    /// whose index is applied. Called after readies and apply results.
    pub(crate) fn serve_reads(&mut self) {
        if self.is_leader() && self.raft_group.raft.commit_to_current_term() {
            for cmd in std::mem::take(&mut self.held_reads) {
                self.issue_read(cmd);
            }
        }
        let applied = self.storage().applied_index();
        if self.applied_term != self.term() {
            return; // the leader has not applied an entry of its own term yet
        }
        let mut snapshot = None;
        while self.reads.front().is_some_and(|r| r.index.is_some_and(|i| i <= applied)) {
            let read = self.reads.pop_front().expect("front exists");
            let snap = snapshot.get_or_insert_with(|| self.storage().kv_engine().snapshot());
            match self.exec_read(&read.cmd.request, snap) {
                Ok(resp) => read.cmd.ch.respond(resp),
                Err(e) => read.cmd.ch.respond_error(e),
            }
        }
    }

    fn exec_read(&self, req: &RaftCmdRequest, snap: &EK::Snapshot) -> Result<RaftCmdResponse> {
        check_region_epoch(req, self.region())?;
        let mut resp = RaftCmdResponse::default();
        for r in req.get_requests() {
            let key = &r.get_get().key;
            check_key_in_region(key, self.region())?;
            let mut out = Response::default();
            out.set_cmd_type(CmdType::Get);
            match snap.get_value(&keys::data_key(key))? {
                Some(v) => out.mut_get().value = v,
                None => out.mut_get().not_found = true,
            }
            resp.responses.push(out);
        }
        Ok(resp)
    }

    /// Fails every read this peer holds with `err` (it stepped down or is destroyed).
    pub(crate) fn fail_reads(&mut self, err: impl Fn() -> Error) {
        if self.reads.is_empty() && self.held_reads.is_empty() {
            return;
        }
        debug!(self.logger, "failing pending reads"; "count" => self.reads.len() + self.held_reads.len());
        for read in self.reads.drain(..) {
            read.cmd.ch.respond_error(err());
        }
        for cmd in self.held_reads.drain(..) {
            cmd.ch.respond_error(err());
        }
    }
}
