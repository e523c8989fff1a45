//! Raft messages from other peers of the region, and what a message must prove before raft
//! sees it.
//!
//! ```text
//! RaftMessage ──▶ well formed? ──no──▶ drop
//!   to an older peer id of ours ──▶ drop (stale)
//!   to a newer peer id on this store, newer conf_ver ──▶ this peer was replaced: destroy it
//!                                                        (the store then creates the new one)
//!   tombstone (GC) with a newer conf_ver ──▶ this peer was removed: destroy it
//!   sender not a member: epoch newer ──▶ step (this peer lags)
//!                        conf_ver older ──▶ drop, answer with GC (the sender was removed)
//!                        otherwise ──▶ drop
//!   vote / pre-vote within an election timeout of a restart ──▶ drop (TiKV #15035)
//!   MsgTimeoutNow older than this peer's log ──▶ drop (its transfer was given up)
//!   snapshot pieces ──▶ reassembled, checked ──▶ step
//! ```

use engine::{KvEngine, RaftEngine};
use proto::{
    eraftpb::MessageType,
    metapb::{Region, RegionEpoch},
    raft_serverpb::RaftMessage,
};
use slog::{debug, info, warn};

use crate::{batch::StoreContext, metrics::RaftEvent, raft::peer::Peer, transport::Transport};

/// Checks what every raft message must hold, whoever it is for: ids, a sender and a receiver
/// that agree with the raft message inside, and a key range that is a range.
pub(crate) fn check_message_form(msg: &RaftMessage) -> Result<(), &'static str> {
    let (from, to) = (msg.get_from_peer(), msg.get_to_peer());
    if msg.region_id == 0 || from.id == 0 || to.id == 0 || from.store_id == 0 {
        return Err("a zero region, peer or store id");
    }
    if from.store_id == to.store_id {
        return Err("sender and receiver on one store");
    }
    if !msg.is_tombstone && (msg.get_message().from != from.id || msg.get_message().to != to.id) {
        return Err("the raft message's ends disagree with the envelope");
    }
    if !msg.end_key.is_empty() && msg.start_key >= msg.end_key {
        return Err("an empty or inverted key range");
    }
    Ok(())
}

/// Whether `a` is older than `b` in either part.
pub(crate) fn is_epoch_stale(a: &RegionEpoch, b: &RegionEpoch) -> bool {
    a.version < b.version || a.conf_ver < b.conf_ver
}

/// What to do with a message from a peer that is not a member of the region.
enum Outsider {
    /// The sender knows a newer region than this peer: step it.
    Newer,
    /// The sender was removed from the region: drop it and tell the sender.
    Removed,
    /// Neither: drop it.
    Unknown,
}

fn judge_outsider(region: &Region, msg: &RaftMessage) -> Outsider {
    let (theirs, ours) = (msg.get_region_epoch(), region.get_region_epoch());
    if theirs.conf_ver < ours.conf_ver {
        Outsider::Removed
    } else if !is_epoch_stale(theirs, ours) && theirs != ours {
        Outsider::Newer
    } else {
        Outsider::Unknown
    }
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Steps a raft message into the group once it passed the checks in the module docs. A
    /// message that fails one is dropped with a log line: a bad message never stops the peer
    /// or changes its state, beyond destroying a peer that the message proves stale.
    pub(crate) fn on_raft_message<T: Transport>(
        &mut self,
        msg: RaftMessage,
        ctx: &mut StoreContext<EK, ER, T>,
    ) {
        if let Err(reason) = check_message_form(&msg) {
            ctx.counters.dropped(msg.get_message().get_msg_type());
            warn!(self.logger, "dropping a malformed raft message"; "reason" => reason);
            return;
        }
        if msg.region_id != self.region_id() || msg.get_to_peer().id != self.peer_id() {
            return self.on_misaddressed(msg, ctx);
        }
        if msg.is_tombstone {
            return self.on_gc_message(&msg, ctx);
        }
        if msg.has_extra() {
            return self.on_extra_message(&msg, ctx);
        }
        if !self.admit_sender(&msg, ctx) || !self.admit_raft_message(&msg, ctx) {
            ctx.counters.dropped(msg.get_message().get_msg_type());
            return;
        }
        let mut msg = if msg.has_snapshot_chunk() {
            match self.collect_snapshot_chunk(msg) {
                Some(whole) => whole,
                None => return,
            }
        } else {
            msg
        };
        let from = msg.get_from_peer().id;
        if self.peer_cache.get(&from) != Some(msg.get_from_peer()) {
            self.peer_cache.insert(from, msg.get_from_peer().clone());
        }
        self.health.heard_from(from, ctx.clock.now());
        self.on_heard_from_leader(from, msg.get_message().term);
        if msg.get_message().get_msg_type() == MessageType::MsgSnapshot {
            return self.step_snapshot(msg, ctx);
        }
        if msg.get_message().get_msg_type() == MessageType::MsgSnapStatus {
            return self.on_snapshot_status(msg.get_message(), ctx);
        }
        let Some(raft_msg) = self.answer_read_index_by_lease(msg.take_message(), ctx) else {
            return;
        };
        if let Err(e) = self.raft_group.step(raft_msg) {
            debug!(self.logger, "raft refused a message"; "from" => from, "err" => %e);
        }
    }

    /// A message for another peer id of this region on this store. A newer id with a newer
    /// membership means this peer was removed and a new one added while it was away: it
    /// destroys itself, and the store creates the new peer from the next such message.
    fn on_misaddressed<T: Transport>(
        &mut self,
        msg: RaftMessage,
        ctx: &mut StoreContext<EK, ER, T>,
    ) {
        let to = msg.get_to_peer().id;
        let ours = self.region().get_region_epoch();
        let replaced = msg.region_id == self.region_id()
            && to > self.peer_id()
            && msg.get_region_epoch().conf_ver > ours.conf_ver;
        if !replaced {
            debug!(self.logger, "dropping a message for another peer"; "to_peer" => to);
            return;
        }
        if self.merge.holds_commit_merge() {
            info!(self.logger, "replaced, but applying a merge first"; "new_peer" => to);
            return;
        }
        info!(self.logger, "a newer peer of the region is coming to this store: destroying this one";
            "new_peer" => to, "conf_ver" => msg.get_region_epoch().conf_ver);
        ctx.counters.inc(RaftEvent::StalePeerDestroyed);
        self.destroy(ctx);
    }

    /// A member of a newer membership (or a store keeping a tombstone of it) says this peer
    /// is no longer in the region.
    fn on_gc_message<T: Transport>(
        &mut self,
        msg: &RaftMessage,
        ctx: &mut StoreContext<EK, ER, T>,
    ) {
        if msg.has_merge_target() {
            let (target, epoch) = (msg.get_merge_target(), msg.get_region_epoch());
            return self.on_merged_per_member(target, epoch, &ctx.meta);
        }
        let by = format!("GC message from peer {}", msg.get_from_peer().id);
        self.destroy_as_removed(msg.get_region_epoch().conf_ver, &by, ctx);
    }

    /// Whether the sender may talk to this peer: a member, a peer of a newer region, or the
    /// leader this peer follows in its term (a leader removed by an entry it has not applied
    /// leads until it hands over: its `MsgTimeoutNow` must get through). A removed peer is
    /// told so; anything else from outside is dropped.
    fn admit_sender<T: Transport>(
        &self,
        msg: &RaftMessage,
        ctx: &mut StoreContext<EK, ER, T>,
    ) -> bool {
        let from = msg.get_from_peer();
        let region = self.region();
        if region.get_peers().is_empty() || region.get_peers().iter().any(|p| p.id == from.id) {
            return true; // uninitialized (knows no member yet), or a member
        }
        let raft = &self.raft_group.raft;
        if from.id == raft.leader_id && msg.get_message().term == raft.term {
            return true;
        }
        match judge_outsider(region, msg) {
            Outsider::Newer => true,
            Outsider::Removed => {
                ctx.counters.inc(RaftEvent::StaleMessageDropped);
                self.send_gc_message(from.clone(), ctx);
                false
            }
            Outsider::Unknown => {
                ctx.counters.inc(RaftEvent::StaleMessageDropped);
                debug!(self.logger, "dropping a message from outside the region"; "from" => from.id);
                false
            }
        }
    }

    /// Tells `to`, a peer this region no longer holds, that it is gone.
    pub(crate) fn send_gc_message<T: Transport>(
        &self,
        to: proto::metapb::Peer,
        ctx: &mut StoreContext<EK, ER, T>,
    ) {
        let mut gc = RaftMessage::default();
        gc.region_id = self.region_id();
        gc.set_from_peer(self.peer.clone());
        gc.set_to_peer(to);
        gc.set_region_epoch(self.region().get_region_epoch().clone());
        gc.is_tombstone = true;
        if ctx.trans.send(gc).is_ok() {
            ctx.counters.inc(RaftEvent::GcMessageSent);
        }
    }

    /// The raft-level rules: no vote right after a restart, no stale `MsgTimeoutNow`.
    fn admit_raft_message<T>(&self, msg: &RaftMessage, ctx: &StoreContext<EK, ER, T>) -> bool {
        let m = msg.get_message();
        match m.get_msg_type() {
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
                if self.ticks < self.refuse_votes_until =>
            {
                ctx.counters.inc(RaftEvent::VoteDroppedAfterStart);
                debug!(self.logger, "dropping a vote request: started less than an election timeout ago";
                    "from" => m.from, "type" => ?m.get_msg_type());
                false
            }
            MessageType::MsgTimeoutNow if self.is_stale_timeout_now(m) => {
                ctx.counters.inc(RaftEvent::StaleTimeoutNowDropped);
                info!(self.logger, "dropping a MsgTimeoutNow older than this peer's log";
                    "sent_at_index" => m.index, "last_index" => self.raft_group.raft.raft_log.last_index());
                false
            }
            _ => true,
        }
    }
}
