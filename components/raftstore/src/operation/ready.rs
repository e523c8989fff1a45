//! Raft readies, in two steps around the round's single raft-engine write:
//!
//! ```text
//! handle_normal (per peer)                 end of round (once)      end of round (per peer)
//! ─────────────────────────                ───────────────────      ───────────────────────
//! ready():                                 consume(log batch,       persisted messages → send
//!   messages → send (leader appends)         sync = cfg.sync_log)   advance_append → light ready:
//!   committed entries → apply                                         commit, messages → send,
//!   entries + hard state → log batch                                  committed entries → apply
//! ```
//!
//! Apply results come back as `ApplyRes` and advance raft's applied index.

use engine::{KvEngine, RaftEngine};
use proto::eraftpb::{Entry, Message, MessageType};
use raft::StateRole;
use slog::{error, info, warn};

use crate::{
    batch::StoreContext,
    fsm::apply::ApplyRouter,
    msg::{ApplyMsg, ApplyRes, ApplyTask, ExecResult},
    operation::{merge::PREPARE_MERGE_CONTEXT, snapshot::split_snapshot, split::SPLIT_CONTEXT},
    raft::peer::{Life, Peer},
    transport::Transport,
    Error,
};

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Takes the next ready, if any and if the previous one was persisted: sends what needs no
    /// persistence, hands committed entries to apply, and adds entries and hard state to the
    /// round's `batch`. The ready waits until the batch is written.
    pub(crate) fn collect_ready<T: Transport>(&mut self, ctx: &mut StoreContext<EK, ER, T>) {
        if !self.is_alive() {
            return;
        }
        let now = ctx.clock.now();
        self.issue_new_reads(now);
        if self.pending_ready.is_some() || !self.raft_group.has_ready() {
            return;
        }
        if self.snapshot_must_wait(&ctx.meta) {
            return; // handled again when the apply result arrives
        }
        let mut ready = self.raft_group.ready();
        if let Some(ss) = ready.ss() {
            if ss.raft_state != StateRole::Leader {
                self.release_held_entries(&ctx.apply);
                self.reads.clear_answers(); // their followers ask again
                self.on_leadership_lost();
            }
            self.on_role_changed(now);
            self.on_hibernate_role_changed();
            if self.is_leader() {
                // Its first entry commits the log of earlier terms: a follower whose read
                // waits for it must not wait for the next append (TiKV does the same).
                self.bcast_commits_until(self.raft_group.raft.raft_log.last_index());
            }
        }
        self.on_read_states(ready.take_read_states());
        self.note_committed_admin(ready.committed_entries(), now);
        let has_snapshot = !ready.snapshot().is_empty();
        if has_snapshot {
            let res =
                self.apply_snapshot(ready.snapshot(), &mut ctx.log_batch, &ctx.meta, &ctx.apply);
            res.unwrap_or_else(|e| self.fatal("applying a snapshot", e));
        }
        self.send(ready.take_messages(), ctx, now);
        self.hand_to_apply(ready.take_committed_entries(), ctx);
        let store = self.raft_group.mut_store();
        let appended = store.append(ready.entries(), &mut ctx.log_batch);
        #[cfg(feature = "failpoints")]
        let appended = appended.and_then(|()| self.injected_append_failure());
        appended.unwrap_or_else(|e| self.fatal("appending entries", e));
        let store = self.raft_group.mut_store();
        if let Some(hs) = ready.hs() {
            store.set_hard_state(hs.clone());
        }
        if has_snapshot || !ready.entries().is_empty() || ready.hs().is_some() {
            let written = store.write_raft_state(&mut ctx.log_batch);
            written.unwrap_or_else(|e| self.fatal("writing the raft state", e));
        }
        self.pending_ready = Some(ready);
        self.serve_reads(ctx);
    }

    /// After the round's batch is written: sends the messages that waited for it, advances
    /// raft, and hands newly committed entries to apply.
    pub(crate) fn on_persisted<T: Transport>(&mut self, ctx: &mut StoreContext<EK, ER, T>) {
        let now = ctx.clock.now();
        let Some(mut ready) = self.pending_ready.take() else {
            return;
        };
        if !self.is_alive() {
            return;
        }
        self.send(ready.take_persisted_messages(), ctx, now);
        let mut light = self.raft_group.advance_append(ready);
        let applied = self.storage().applied_index();
        if applied > self.raft_group.raft.raft_log.applied {
            // A snapshot was applied and is now persisted: raft must know, or it looks for
            // the entries the snapshot replaced (an election would panic reading them).
            self.raft_group.advance_apply_to(applied);
        }
        if let Some(commit) = light.commit_index() {
            // Persisted with the next raft state written; on restart the apply state's
            // commit index covers a lag.
            self.raft_group.mut_store().set_commit_index(commit);
        }
        self.note_committed_admin(light.committed_entries(), now);
        self.send(light.take_messages(), ctx, now);
        self.hand_to_apply(light.take_committed_entries(), ctx);
        self.maybe_answer_sleep_request(ctx); // the commit a sleep request told is handed
    }

    /// A storage failure in the ready path. Going on would send or acknowledge what was not
    /// persisted (a follower's ack counts toward a commit), so the store stops here, as it does
    /// when the raft engine cannot write; it recovers from what was persisted on restart.
    fn fatal(&self, what: &str, err: crate::Error) -> ! {
        error!(self.logger, "storage failure in the ready path, the store stops"; "what" => what, "err" => %err);
        panic!("region {}: {what} failed, the store cannot go on: {err}", self.region_id());
    }

    /// Fail point `ready_append_error(<peer id>)`: that peer's append fails.
    #[cfg(feature = "failpoints")]
    fn injected_append_failure(&self) -> crate::Result<()> {
        let failing = fail::eval("ready_append_error", |arg| arg).flatten();
        if failing.is_some_and(|peer| peer == self.peer_id().to_string()) {
            return Err(crate::Error::Engine(engine::Error::Engine("injected".into())));
        }
        Ok(())
    }

    /// This peer is no longer leader: its pending proposals may still commit under the new
    /// leader, or be overwritten. Answer them now that the outcome is unknown, rather than
    /// leave their callers waiting on a peer that cannot decide it.
    fn on_leadership_lost(&mut self) {
        let region_id = self.region_id();
        self.fail_reads(|| Error::NotLeader { region_id, leader: None });
        self.merge.on_leadership_lost();
        if self.proposals.is_empty() {
            return;
        }
        info!(self.logger, "lost leadership with pending proposals"; "count" => self.proposals.len());
        for p in self.proposals.drain(..) {
            p.ch.respond_error(Error::OutcomeUnknown(
                "leadership was lost before the command committed".into(),
            ));
        }
    }

    fn send<T: Transport>(
        &mut self,
        msgs: Vec<Message>,
        ctx: &mut StoreContext<EK, ER, T>,
        now: std::time::Duration,
    ) {
        for mut m in msgs {
            let to = m.to;
            let msg_type = m.get_msg_type();
            if msg_type != MessageType::MsgHeartbeat || !m.context.is_empty() {
                self.hibernation.on_waking_send(); // it may wake a follower that agreed
            }
            if msg_type == MessageType::MsgTimeoutNow {
                self.on_timeout_now_sent(&mut m, now);
            }
            let Some(m) = self.gate_read_index_answer(m) else {
                continue; // goes out once this leader has applied up to its index
            };
            let snap_index = m.get_snapshot().get_metadata().index;
            let Some(msg) = self.wrap_message(m) else {
                ctx.counters.dropped(msg_type);
                warn!(self.logger, "message to a peer not in the region"; "to" => to);
                if msg_type == MessageType::MsgSnapshot {
                    self.on_snapshot_send_failed(to, ctx);
                }
                continue;
            };
            let pieces = if msg_type == MessageType::MsgSnapshot {
                self.snap_sends.sent(to, now, snap_index);
                split_snapshot(msg, ctx.cfg.snap_chunk_size)
            } else {
                vec![msg]
            };
            for piece in pieces {
                if ctx.trans.send(piece).is_err() {
                    ctx.counters.dropped(msg_type);
                    self.raft_group.report_unreachable(to);
                    if msg_type == MessageType::MsgSnapshot {
                        self.on_snapshot_send_failed(to, ctx);
                    }
                    break;
                }
                ctx.counters.sent(msg_type);
            }
        }
    }

    /// The transport could not deliver a message of this peer's to peer `to`, as a failed
    /// `send` above would have said.
    /// `snap_index` names the snapshot (0: not one); a report of one that is no longer the
    /// send waiting for `to` (settled, timed out, or replaced by a newer one) is stale.
    pub(crate) fn on_undelivered<T>(
        &mut self,
        to: u64,
        snap_index: u64,
        ctx: &StoreContext<EK, ER, T>,
    ) {
        self.raft_group.report_unreachable(to);
        if snap_index != 0 && self.snap_sends.holds(to, snap_index) {
            self.on_snapshot_send_failed(to, ctx);
        }
    }

    /// Committed entries: what their commit means for the lease and a split, then to apply
    /// (all of them, unless this leader must first hand over before its own removal).
    pub(crate) fn hand_to_apply<T>(&mut self, entries: Vec<Entry>, ctx: &StoreContext<EK, ER, T>) {
        let Some(committed) = entries.last().map(|e| e.index) else {
            return;
        };
        self.on_committed_to(committed, ctx.clock.now(), &ctx.counters);
        let term = entries.last().map_or(0, |e| e.term);
        self.maybe_commit_lazily(committed, term);
        let entries = self.hold_own_removal(entries, ctx);
        self.send_to_apply(entries, &ctx.apply);
    }

    /// Lazy commit: followers learn of a commit with the next append, heartbeat or sleep
    /// request, which halves the messages of a write. Until the entry at `index` commits, a
    /// leader broadcasts every commit on its own again.
    pub(crate) fn bcast_commits_until(&mut self, index: u64) {
        self.raft_group.raft.skip_bcast_commit(false);
        self.bcast_commit_until = Some(self.bcast_commit_until.map_or(index, |i| i.max(index)));
    }

    /// Entries up to `committed` (the last of term `term`) committed: back to lazy commit
    /// once the urgent entry is among them, in this leader's term.
    fn maybe_commit_lazily(&mut self, committed: u64, term: u64) {
        if self.bcast_commit_until.is_some_and(|i| committed >= i)
            && self.is_leader()
            && term == self.term()
        {
            self.bcast_commit_until = None;
            self.raft_group.raft.skip_bcast_commit(true);
        }
    }

    /// Committed entries a leader's lease must not outlive, seen before the messages of the
    /// same ready go out (they may tell followers of the commit): a split, whose new regions'
    /// peers elect leaders of their own once they apply it, and a PrepareMerge, whose target
    /// may take the source's keys once any source peer applies it (TiKV #8034).
    fn note_committed_admin(&mut self, entries: &[Entry], now: std::time::Duration) {
        // Most entries carry no context: one pass, and only the last of each kind counts.
        let (mut split, mut merge) = (None, None);
        for e in entries.iter().filter(|e| !e.context.is_empty()) {
            if e.context == SPLIT_CONTEXT {
                split = Some(e.index);
            } else if e.context == PREPARE_MERGE_CONTEXT {
                merge = Some(e.index);
            }
        }
        if let Some(index) = split {
            self.on_split_committed(index);
        }
        if let Some(index) = merge {
            self.on_prepare_merge_committed(index, now);
        }
    }

    /// Sends entries and the proposals they answer to the apply side.
    pub(crate) fn send_to_apply(&mut self, entries: Vec<Entry>, apply: &ApplyRouter<EK>) {
        let Some(last) = entries.last().map(|e| e.index) else {
            return;
        };
        self.handed_index = last;
        let mut proposals = Vec::new();
        while self.proposals.front().is_some_and(|p| p.index <= last) {
            proposals.extend(self.proposals.pop_front());
        }
        let task = ApplyTask { entries, proposals };
        if let Err(e) = apply.force_send(self.region_id(), ApplyMsg::Apply(Box::new(task))) {
            // Only when the store shuts down; the proposals answer OutcomeUnknown as they drop.
            warn!(self.logger, "apply is gone"; "err" => %e);
        }
    }

    /// The apply side applied up to `res.apply_state.applied_index`.
    pub(crate) fn on_apply_res<T: Transport>(
        &mut self,
        res: ApplyRes,
        ctx: &mut StoreContext<EK, ER, T>,
    ) {
        if res.apply_state.applied_index < self.storage().applied_index() {
            return; // from before a snapshot that moved the peer past it
        }
        self.applied_term = res.applied_term;
        let applied = res.apply_state.applied_index;
        self.split.on_applied(applied, res.written_bytes);
        self.merge.on_applied(applied);
        self.merge.set_holding(res.holding_merge);
        let old_truncated = self.storage().truncated_index();
        self.raft_group.mut_store().set_apply_state(res.apply_state);
        self.raft_group.advance_apply_to(applied);
        self.on_log_compacted(old_truncated, &mut ctx.log_gc);
        self.compact_entry_cache();
        for result in res.exec_results {
            match result {
                ExecResult::ChangePeer { cc, region } => self.on_change_peer(cc, region, ctx),
                ExecResult::Split { regions, derived } => {
                    self.on_split_applied(ctx, regions, derived)
                }
                ExecResult::PrepareMerge { region, state } => {
                    self.on_prepare_merge_applied(ctx, region, state)
                }
                ExecResult::CommitMerge { region, source } => {
                    self.on_commit_merge_applied(ctx, region, source)
                }
                ExecResult::RollbackMerge { region } => self.on_rollback_merge_applied(ctx, region),
            }
            // A peer destroying itself still takes in what its apply did (the regions of a
            // split are real whatever becomes of this peer); one destroyed takes nothing.
            if self.life == Life::Destroyed {
                return;
            }
        }
        // Only now: a read that waited for this batch is checked against the region as
        // every admin result of the batch left it (a split moves keys away).
        self.serve_reads(ctx);
        self.release_read_index_answers(ctx);
        self.maybe_answer_sleep_request(ctx);
    }
}
