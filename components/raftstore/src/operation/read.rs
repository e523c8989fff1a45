//! Reads on the peer: a leader's lease read on its own thread, ReadIndex on the leader, and
//! follower read.
//!
//! ```text
//! read ──▶ checks (store, term, leader or replica_read, epoch, keys)
//!   leader, lease valid, applied an entry of its term ──▶ snapshot, then clock, then
//!                                                         lease ──▶ answer now
//!   otherwise ──▶ ReadQueue: new ── end of round ──▶ one ReadIndex round for the batch
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

use std::{collections::VecDeque, sync::Arc, time::Duration};

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

/// A peer's reads that wait on raft: rounds sent (in order), reads that arrived this round,
/// reads held until the leader commits in its term, and a leader's answers to followers'
/// ReadIndex requests waiting until it has applied up to their index.
pub(crate) struct ReadQueue<S: engine::Snapshot> {
    batches: VecDeque<ReadBatch<S>>,
    new: Vec<ReadCommand<S>>,
    held: Vec<ReadCommand<S>>,
    answers: Vec<Message>,
}

impl<S: engine::Snapshot> Default for ReadQueue<S> {
    fn default() -> Self {
        ReadQueue {
            batches: VecDeque::new(),
            new: Vec::new(),
            held: Vec::new(),
            answers: Vec::new(),
        }
    }
}

impl<S: engine::Snapshot> ReadQueue<S> {
    /// A read that arrived this round.
    fn push_new(&mut self, read: ReadCommand<S>) {
        self.new.push(read);
    }

    /// The reads that arrived this round, taken.
    fn take_new(&mut self) -> Vec<ReadCommand<S>> {
        std::mem::take(&mut self.new)
    }

    /// Holds `reads` until the leader has committed in its term.
    fn hold(&mut self, reads: Vec<ReadCommand<S>>) {
        self.held.extend(reads);
    }

    /// The held reads, taken.
    fn take_held(&mut self) -> Vec<ReadCommand<S>> {
        std::mem::take(&mut self.held)
    }

    /// A round sent: `id` at tick `tick` and clock time `now`, with `applied` applied then.
    fn push_round(
        &mut self,
        id: Uuid,
        applied: u64,
        now: Duration,
        tick: u64,
        reads: Vec<ReadCommand<S>>,
    ) {
        let batch = ReadBatch {
            id,
            index: None,
            min_index: applied,
            issued_at: now,
            issued_tick: tick,
            reads,
        };
        self.batches.push_back(batch);
    }

    /// Whether nothing waits: no round in flight, no read new or held, no answer held.
    pub(crate) fn is_empty(&self) -> bool {
        self.batches.is_empty()
            && self.new.is_empty()
            && self.held.is_empty()
            && self.answers.is_empty()
    }

    /// Whether a renewal round (one without reads) is in flight.
    pub(crate) fn renewal_in_flight(&self) -> bool {
        self.batches.iter().any(|b| b.reads.is_empty())
    }

    /// The rounds raft has not confirmed within `election_ticks` of their sending, as of tick
    /// `now`: their ids, to send again; they count as sent now.
    fn lost_rounds(&mut self, now: u64, election_ticks: u64) -> Vec<Uuid> {
        let lost = self
            .batches
            .iter_mut()
            .filter(|b| b.index.is_none() && now >= b.issued_tick + election_ticks);
        lost.map(|b| {
            b.issued_tick = now;
            b.id
        })
        .collect()
    }

    /// Raft confirmed round `id` at `index`: it reads at `index`, or at what was applied when
    /// it was sent if that is more. The round's send time, if it was waiting (a round of
    /// another incarnation or peer, or one confirmed already, gets nothing).
    fn confirm(&mut self, id: Uuid, index: u64) -> Option<Duration> {
        let batch = self.batches.iter_mut().find(|b| b.id == id && b.index.is_none())?;
        batch.index = Some(index.max(batch.min_index));
        Some(batch.issued_at)
    }

    /// Forgets confirmed renewal rounds: they answer nobody, so they never wait for apply.
    fn drop_confirmed_renewals(&mut self) {
        self.batches.retain(|b| !(b.reads.is_empty() && b.index.is_some()));
    }

    /// The first round, taken, if it is confirmed at an index `applied` has reached (rounds
    /// are answered in order).
    fn pop_ready(&mut self, applied: u64) -> Option<ReadBatch<S>> {
        let ready = self.batches.front()?.index.is_some_and(|i| i <= applied);
        if ready {
            self.batches.pop_front()
        } else {
            None
        }
    }

    /// The reads of rounds confirmed at or above a pending split at `split` and sent at least
    /// `election_ticks` before tick `now`, taken: they wait for a split to apply.
    fn take_stuck_behind(
        &mut self,
        split: u64,
        now: u64,
        election_ticks: u64,
    ) -> Vec<ReadCommand<S>> {
        let stuck = |b: &ReadBatch<S>| {
            b.index.is_some_and(|i| i >= split) && now >= b.issued_tick + election_ticks
        };
        if !self.batches.iter().any(stuck) {
            return Vec::new();
        }
        let (failed, kept): (Vec<_>, Vec<_>) = self.batches.drain(..).partition(|b| stuck(b));
        self.batches = kept.into();
        failed.into_iter().flat_map(|b| b.reads).collect()
    }

    /// Holds a leader's answer to a follower's ReadIndex.
    fn hold_answer(&mut self, m: Message) {
        self.answers.push(m);
    }

    /// The held answers whose index `applied` has reached, taken.
    fn take_answers(&mut self, applied: u64) -> Vec<Message> {
        if self.answers.is_empty() {
            return Vec::new();
        }
        let (ready, wait) = self.answers.drain(..).partition(|m| m.index <= applied);
        self.answers = wait;
        ready
    }

    /// Drops the held answers (no longer leader: their followers ask again).
    pub(crate) fn clear_answers(&mut self) {
        self.answers.clear();
    }

    /// Every read held, in any state, taken; rounds without reads are dropped too.
    fn take_all(&mut self) -> Vec<ReadCommand<S>> {
        let mut all: Vec<_> = self.batches.drain(..).flat_map(|b| b.reads).collect();
        all.append(&mut self.held);
        all.append(&mut self.new);
        all
    }
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
        self.reads.push_new(read);
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
        if self.snapshot_waits_for_apply() {
            return Err(Error::ServerIsBusy("applying a snapshot".into()));
        }
        if self.merge.is_merging() {
            return Err(Error::ServerIsBusy(format!("region {} is merging", self.region_id())));
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
        let reads = self.reads.take_new();
        if reads.is_empty() {
            return;
        }
        if self.is_leader() && !self.raft_group.raft.commit_to_current_term() {
            self.reads.hold(reads);
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
        let applied = self.storage().applied_index();
        self.reads.push_round(id, applied, now, self.ticks, reads);
    }

    /// Re-sends ReadIndex requests unanswered for an election timeout: a request forwarded to
    /// a leader that stepped down, or lost on the way, is never answered (TiKV #18417).
    pub(crate) fn retry_lost_reads(&mut self, election_ticks: u64) {
        for id in self.reads.lost_rounds(self.ticks, election_ticks) {
            self.raft_group.read_index(id.as_bytes().to_vec());
            self.proposals_made[ProposalKind::ReadIndex as usize] += 1;
        }
    }

    /// Fails reads that have waited an election timeout for a split to apply: refusing them
    /// (retryable) is better than holding them for as long as a slow apply takes (TiKV
    /// #10169). Their clients route again, to the split's regions once it applied.
    pub(crate) fn fail_reads_stuck_behind_split(&mut self, election_ticks: u64) {
        let Some(split) = self.split.pending() else { return };
        for read in self.reads.take_stuck_behind(split, self.ticks, election_ticks) {
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
            // Nothing for a round of another incarnation or peer, or one answered twice.
            let Some(issued_at) = self.reads.confirm(id, rs.index) else { continue };
            if self.is_leader() {
                self.renew_lease(issued_at);
            }
        }
        // A renewal round has nothing to answer: done once confirmed, so it never waits for
        // apply (and blocks no later renewal behind a slow apply).
        self.reads.drop_confirmed_renewals();
    }

    /// Issues held reads once the leader has committed in its term, and answers every read
    /// whose index is applied. Called after readies and apply results.
    pub(crate) fn serve_reads<T>(&mut self, ctx: &StoreContext<EK, ER, T>) {
        // Asking the term of the commit index may read the raft engine: only with reads held.
        if self.is_leader()
            && !self.reads.held.is_empty()
            && self.raft_group.raft.commit_to_current_term()
        {
            let held = self.reads.take_held();
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
        while let Some(batch) = self.reads.pop_ready(applied) {
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
        if m.get_msg_type() == MessageType::MsgReadIndexResp && self.merge.is_merging() {
            return None; // confirmed too late: the region may be the target's by now
        }
        if m.get_msg_type() != MessageType::MsgReadIndexResp
            || !self.is_leader()
            || m.index <= self.storage().applied_index()
        {
            return Some(m);
        }
        self.reads.hold_answer(m);
        None
    }

    /// Sends the held ReadIndex answers this leader has now applied up to.
    pub(crate) fn release_read_index_answers<T: Transport>(
        &mut self,
        ctx: &mut StoreContext<EK, ER, T>,
    ) {
        let applied = self.storage().applied_index();
        for m in self.reads.take_answers(applied) {
            if let Some(msg) = self.wrap_message(m) {
                let _ = ctx.trans.send(msg); // lost: the follower asks again
            }
        }
    }

    /// Fails every read this peer holds with `err` (it stepped down or is destroyed).
    pub(crate) fn fail_reads(&mut self, err: impl Fn() -> Error) {
        let reads = self.reads.take_all();
        if reads.is_empty() {
            return;
        }
        debug!(self.logger, "failing pending reads"; "count" => reads.len());
        for read in reads {
            read.responder.respond_error(err());
        }
    }
}

#[cfg(test)]
mod queue_tests {
    use engine::rocks::RocksSnapshot;

    use super::*;
    use crate::msg::CmdResponseSender;

    type Queue = ReadQueue<RocksSnapshot>;
    const MS: Duration = Duration::from_millis(1);

    fn read() -> ReadCommand<RocksSnapshot> {
        let (ch, _) = CmdResponseSender::channel();
        ReadCommand { request: RaftCmdRequest::default(), responder: ReadResponder::Values(ch) }
    }

    fn reads(n: usize) -> Vec<ReadCommand<RocksSnapshot>> {
        (0..n).map(|_| read()).collect()
    }

    #[test]
    fn a_round_reads_at_least_what_was_applied_when_it_was_sent_and_answers_in_order() {
        let mut q = Queue::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        q.push_round(a, 10, 5 * MS, 1, reads(2));
        q.push_round(b, 10, 6 * MS, 1, reads(1));
        assert_eq!(q.confirm(b, 12), Some(6 * MS));
        assert_eq!(q.confirm(b, 13), None, "confirmed once");
        assert_eq!(q.confirm(Uuid::new_v4(), 12), None, "not a round of ours");
        assert!(q.pop_ready(100).is_none(), "the first round is not confirmed: nothing goes");
        assert_eq!(q.confirm(a, 7), Some(5 * MS));
        assert!(q.pop_ready(9).is_none(), "raised to the 10 applied when it was sent");
        assert_eq!(q.pop_ready(10).map(|r| r.reads.len()), Some(2));
        assert!(q.pop_ready(11).is_none());
        assert_eq!(q.pop_ready(12).map(|r| r.reads.len()), Some(1));
    }

    #[test]
    fn a_confirmed_renewal_round_waits_for_nothing() {
        let mut q = Queue::default();
        let (renewal, round) = (Uuid::new_v4(), Uuid::new_v4());
        q.push_round(renewal, 0, MS, 1, Vec::new());
        q.push_round(round, 0, MS, 1, reads(1));
        assert!(q.renewal_in_flight());
        q.confirm(renewal, 50);
        q.confirm(round, 5);
        q.drop_confirmed_renewals();
        assert!(!q.renewal_in_flight());
        assert_eq!(q.pop_ready(5).map(|r| r.reads.len()), Some(1), "not behind the renewal");
    }

    #[test]
    fn unconfirmed_rounds_are_sent_again_after_an_election_timeout() {
        let mut q = Queue::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        q.push_round(a, 0, MS, 1, reads(1));
        q.push_round(b, 0, MS, 5, reads(1));
        q.confirm(b, 3);
        assert!(q.lost_rounds(10, 10).is_empty());
        assert_eq!(q.lost_rounds(11, 10), vec![a], "confirmed rounds are not lost");
        assert!(q.lost_rounds(12, 10).is_empty(), "sent again at tick 11");
        assert_eq!(q.lost_rounds(21, 10), vec![a]);
    }

    #[test]
    fn reads_stuck_behind_a_split_are_taken_after_an_election_timeout() {
        let mut q = Queue::default();
        let (before, behind, unconfirmed) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        q.push_round(before, 0, MS, 1, reads(1));
        q.push_round(behind, 0, MS, 1, reads(2));
        q.push_round(unconfirmed, 0, MS, 1, reads(4));
        q.confirm(before, 4);
        q.confirm(behind, 6);
        assert!(q.take_stuck_behind(5, 10, 10).is_empty(), "not waited long enough");
        assert_eq!(q.take_stuck_behind(5, 11, 10).len(), 2, "only the round at or past the split");
        assert_eq!(q.take_all().len(), 1 + 4);
    }

    #[test]
    fn answers_go_once_applied_up_to_their_index_and_everything_can_be_taken() {
        let mut q = Queue::default();
        for index in [3, 8, 5] {
            q.hold_answer(Message { index, ..Default::default() });
        }
        let got: Vec<u64> = q.take_answers(5).iter().map(|m| m.index).collect();
        assert_eq!(got, [3, 5]);
        assert!(q.take_answers(7).is_empty());
        q.clear_answers();
        assert!(q.take_answers(100).is_empty());
        q.push_new(read());
        q.hold(reads(2));
        assert_eq!(q.take_new().len(), 1);
        q.push_new(read());
        assert_eq!(q.take_all().len(), 3, "held and new reads too");
        assert!(q.take_held().is_empty());
    }
}
