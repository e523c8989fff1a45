//! Reads on the peer: a leader's lease read on its own thread, ReadIndex on the leader, and
//! follower read.
//!
//! ```text
//! read ──▶ checks (store, term, leader or replica_read, epoch, keys)
//!   leader, lease valid, applied an entry of its term ──▶ snapshot, then clock, then
//!                                                         lease ──▶ answer now
//!   otherwise ──▶ new_reads ── end of round ──▶ one ReadIndex round for the batch
//!                 (a leader that has not committed in its term holds them first:
//!                 raft-rs would drop the request silently)
//!   ReadState { index } ──▶ wait until applied ≥ index and applied_term = term
//!   ──▶ one kv snapshot, epoch checked again ──▶ values, or a region snapshot
//! ```
//!
//! A batch holds only reads that arrived before its round was sent, so the index raft
//! confirms is at least the commit index when each of them arrived, itself at least what was
//! applied then (TiKV #7971 came from adding reads to a round already in flight). A peer
//! that steps down fails every read it holds with `NotLeader`: they retry on the new leader,
//! never answered here (TiKV #6340, #9208: a new leader must not answer from an older
//! term's commit index). A leader's confirmed round is also lease evidence (see `lease`).

use std::{sync::Arc, time::Duration};

use engine::{keys, KvEngine, Peekable, RaftEngine};
use local_reader::{LeaseState, RegionSnapshot};
use proto::{
    eraftpb::{Message, MessageType},
    raft_cmdpb::{CmdType, RaftCmdRequest, RaftCmdResponse, Response},
};
use slog::debug;
use uuid::Uuid;

use crate::{
    batch::StoreContext,
    metrics::ProposalKind,
    msg::{ReadCommand, ReadResponder},
    operation::command::{check_key_in_region, check_request},
    raft::peer::Peer,
    transport::Transport,
    Error, Result,
};

/// Reads sharing one ReadIndex round (a batch without reads renews the lease).
pub(crate) struct ReadBatch<S: engine::Snapshot> {
    /// Never reused, by this peer or any other, in this process or another: an answer to a
    /// round of an earlier incarnation of the peer (delayed across a restart), or to another
    /// peer's round, matches no round here and is dropped.
    id: Uuid,
    /// The read index, once raft confirmed it.
    index: Option<u64>,
    /// What was applied when the batch was sent: no read in it is answered below this.
    min_index: u64,
    /// Clock time the round was first sent: the lease evidence it gives.
    pub(crate) issued_at: Duration,
    /// The tick the round was (last) sent at, to retry one that got lost.
    issued_tick: u64,
    pub(crate) reads: Vec<ReadCommand<S>>,
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Starts a read, or answers it: at once from the lease if it can, else after a ReadIndex
    /// round. A follower serves a read that asks for it (`replica_read`): raft forwards its
    /// ReadIndex to the leader.
    pub(crate) fn propose_read<T>(
        &mut self,
        ctx: &StoreContext<EK, ER, T>,
        read: ReadCommand<EK::Snapshot>,
    ) {
        if let Err(e) = self.check_read(&read) {
            ctx.counters.rejected(&e);
            return read.responder.respond_error(e);
        }
        let Some(read) = self.try_lease_read(ctx, read) else {
            return;
        };
        self.new_reads.push(read);
    }

    fn check_read(&self, read: &ReadCommand<EK::Snapshot>) -> Result<()> {
        let header = read.request.get_header();
        self.check_peer(header)?;
        let follower_read = header.replica_read && self.raft_group.raft.leader_id != 0;
        if !self.is_leader() && !follower_read {
            // Without a known leader a follower cannot get a read index: retry later.
            return Err(Error::NotLeader { region_id: self.region_id(), leader: self.leader() });
        }
        if header.term != 0 && header.term != self.term() {
            return Err(Error::StaleCommand);
        }
        if !self.storage().is_initialized() {
            return Err(Error::RegionNotFound(self.region_id())); // no data here yet
        }
        if self.snapshot_must_wait() {
            return Err(Error::ServerIsBusy("applying a snapshot".into()));
        }
        self.check_epoch(&read.request)?;
        if let ReadResponder::Values(_) = read.responder {
            for r in read.request.get_requests() {
                if r.get_cmd_type() != CmdType::Get {
                    return Err(Error::InvalidRequest("a read carries only Get requests".into()));
                }
                check_request(r, self.region())?;
            }
        }
        Ok(())
    }

    /// Serves `read` from this leader's lease, or hands it back. Snapshot first, then the
    /// clock, then the lease (TiKV #13553).
    fn try_lease_read<T>(
        &mut self,
        ctx: &StoreContext<EK, ER, T>,
        read: ReadCommand<EK::Snapshot>,
    ) -> Option<ReadCommand<EK::Snapshot>> {
        if !self.is_leader()
            || self.applied_term != self.term()
            || !ctx.lease_reads.load(std::sync::atomic::Ordering::Relaxed)
        {
            return Some(read);
        }
        let snap = self.storage().kv_engine().snapshot();
        if self.lease.inspect(ctx.clock.now()) != LeaseState::Valid {
            return Some(read);
        }
        ctx.read_counters.peer_lease_reads.inc();
        self.respond_read(read, &snap);
        None
    }

    /// Sends one ReadIndex round for the reads that arrived this round (end of a round), or
    /// holds them while the leader has not committed in its term.
    pub(crate) fn issue_new_reads(&mut self, now: Duration) {
        if self.new_reads.is_empty() {
            return;
        }
        let reads = std::mem::take(&mut self.new_reads);
        if self.is_leader() && !self.raft_group.raft.commit_to_current_term() {
            self.held_reads.extend(reads);
            return;
        }
        self.issue_read_batch(reads, now);
    }

    /// Sends a ReadIndex round for `reads` (none: a lease renewal round).
    pub(crate) fn issue_read_batch(
        &mut self,
        reads: Vec<ReadCommand<EK::Snapshot>>,
        now: Duration,
    ) {
        let id = Uuid::new_v4();
        self.raft_group.read_index(id.as_bytes().to_vec());
        self.proposals_made[ProposalKind::ReadIndex as usize] += 1;
        self.reads.push_back(ReadBatch {
            id,
            index: None,
            min_index: self.storage().applied_index(),
            issued_at: now,
            issued_tick: self.ticks,
            reads,
        });
    }

    /// Re-sends ReadIndex requests unanswered for an election timeout: a request forwarded to
    /// a leader that stepped down, or lost on the way, is never answered (TiKV #18417).
    pub(crate) fn retry_lost_reads(&mut self, election_ticks: u64) {
        let now = self.ticks;
        for i in 0..self.reads.len() {
            let batch = &mut self.reads[i];
            if batch.index.is_none() && now >= batch.issued_tick + election_ticks {
                batch.issued_tick = now;
                let ctx = batch.id.as_bytes().to_vec();
                self.raft_group.read_index(ctx);
                self.proposals_made[ProposalKind::ReadIndex as usize] += 1;
            }
        }
    }

    /// Fails reads that have waited an election timeout for a split to apply: refusing them
    /// (retryable) is better than holding them for as long as a slow apply takes (TiKV
    /// #10169). Their clients route again, to the split's regions once it applied.
    pub(crate) fn fail_reads_stuck_behind_split(&mut self, election_ticks: u64) {
        let (Some(split), now) = (self.split.pending(), self.ticks) else { return };
        let stuck = |b: &ReadBatch<EK::Snapshot>| {
            b.index.is_some_and(|i| i >= split) && now >= b.issued_tick + election_ticks
        };
        if !self.reads.iter().any(stuck) {
            return;
        }
        let (failed, kept): (Vec<_>, Vec<_>) = self.reads.drain(..).partition(|b| stuck(b));
        self.reads = kept.into();
        for read in failed.into_iter().flat_map(|b| b.reads) {
            read.responder.respond_error(Error::ServerIsBusy("the region is splitting".into()));
        }
    }

    /// Raft confirmed read indexes (from a ready). On a leader each is a quorum's answer to
    /// a round sent at the batch's `issued_at`: lease evidence.
    pub(crate) fn on_read_states(&mut self, states: Vec<raft::ReadState>) {
        fail::fail_point!("read_index_confirmed", |_| {});
        if states.is_empty() {
            return; // most readies: nothing to look for in the queue
        }
        for rs in states {
            let Ok(id) = Uuid::from_slice(&rs.request_ctx) else { continue };
            let Some(batch) = self.reads.iter_mut().find(|r| r.id == id) else {
                continue; // a round of another incarnation or peer: not ours to answer
            };
            if batch.index.is_some() {
                continue; // a retried round answered twice
            }
            batch.index = Some(rs.index.max(batch.min_index));
            let issued_at = batch.issued_at;
            if self.is_leader() {
                self.renew_lease(issued_at);
            }
        }
        // A renewal round has nothing to answer: done once confirmed, so it never waits for
        // apply (and blocks no later renewal behind a slow apply).
        self.reads.retain(|b| !(b.reads.is_empty() && b.index.is_some()));
    }

    /// Issues held reads once the leader has committed in its term, and answers every read
    /// whose index is applied. Called after readies and apply results.
    pub(crate) fn serve_reads<T>(&mut self, ctx: &StoreContext<EK, ER, T>) {
        if self.is_leader()
            && self.raft_group.raft.commit_to_current_term()
            && !self.held_reads.is_empty()
        {
            let held = std::mem::take(&mut self.held_reads);
            self.issue_read_batch(held, ctx.clock.now());
        }
        let applied = self.storage().applied_index();
        if self.applied_term != self.term() {
            return; // the leader has not applied an entry of its own term yet
        }
        let counter = if self.is_leader() {
            &ctx.read_counters.read_index_reads
        } else {
            &ctx.read_counters.follower_reads
        };
        let mut snapshot = None;
        while self.reads.front().is_some_and(|r| r.index.is_some_and(|i| i <= applied)) {
            let batch = self.reads.pop_front().expect("front exists");
            for read in batch.reads {
                let snap = snapshot.get_or_insert_with(|| self.storage().kv_engine().snapshot());
                counter.inc();
                self.respond_read(read, snap);
            }
        }
    }

    fn respond_read(&self, read: ReadCommand<EK::Snapshot>, snap: &EK::Snapshot) {
        if let Err(e) = self.check_epoch(&read.request) {
            return read.responder.respond_error(e);
        }
        match read.responder {
            ReadResponder::Values(ch) => match self.exec_read(&read.request, snap) {
                Ok(resp) => ch.respond(resp),
                Err(e) => ch.respond_error(e),
            },
            ReadResponder::Snapshot(cb) => {
                let region = Arc::new(self.region().clone());
                cb.respond(Ok(RegionSnapshot::new(snap.clone(), region, self.term())));
            }
        }
    }

    fn exec_read(&self, req: &RaftCmdRequest, snap: &EK::Snapshot) -> Result<RaftCmdResponse> {
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

    /// A leader's answer to a follower's ReadIndex goes out only once this leader has applied
    /// up to its index. The follower serves the index as soon as it has applied it, and a
    /// later lease read here serves what is applied here: answering earlier would let a
    /// follower show a write that a later read on the leader does not (a read going back in
    /// time). Returns the message if it may go now.
    pub(crate) fn gate_read_index_answer(&mut self, m: Message) -> Option<Message> {
        if m.get_msg_type() != MessageType::MsgReadIndexResp
            || !self.is_leader()
            || m.index <= self.storage().applied_index()
        {
            return Some(m);
        }
        self.read_index_answers.push(m);
        None
    }

    /// Sends the held ReadIndex answers this leader has now applied up to.
    pub(crate) fn release_read_index_answers<T: Transport>(
        &mut self,
        ctx: &mut StoreContext<EK, ER, T>,
    ) {
        if self.read_index_answers.is_empty() {
            return;
        }
        let applied = self.storage().applied_index();
        let (ready, wait): (Vec<_>, Vec<_>) =
            self.read_index_answers.drain(..).partition(|m| m.index <= applied);
        self.read_index_answers = wait;
        for m in ready {
            if let Some(msg) = self.wrap_message(m) {
                let _ = ctx.trans.send(msg); // lost: the follower asks again
            }
        }
    }

    /// Fails every read this peer holds with `err` (it stepped down or is destroyed).
    pub(crate) fn fail_reads(&mut self, err: impl Fn() -> Error) {
        let held = self.reads.iter().map(|b| b.reads.len()).sum::<usize>()
            + self.held_reads.len()
            + self.new_reads.len();
        if held == 0 {
            self.reads.clear();
            return;
        }
        debug!(self.logger, "failing pending reads"; "count" => held);
        let batches = self.reads.drain(..).flat_map(|b| b.reads);
        for read in batches.chain(self.held_reads.drain(..)).chain(self.new_reads.drain(..)) {
            read.responder.respond_error(err());
        }
    }
}
