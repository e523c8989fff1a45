//! Stale peers: peers that missed their own removal, or a split or merge of their region, and
//! how each learns it and goes (TiKV's `check_stale_state` and GC messages).
//!
//! ```text
//! removed while away ─▶ its vote requests reach a member: GC message      (message.rs)
//!                    ─▶ they reach a store whose peer of the region is a
//!                       tombstone excluding the sender's store: GC message (here, store side)
//!                    ─▶ no leader for max_leader_missing_duration: asks the
//!                       placement driver; a newer region without this peer (here, tick)
//!                    ─▶ destroyed, a tombstone kept: late messages create nothing
//! missed a split     ─▶ still a member: catches up by log, or by a snapshot that narrows its
//!                       range; the new region's peer is created once the range is free
//! missed a merge     ─▶ its store's target catches up by log: CatchUpLogs  (merge/commit.rs)
//!                    ─▶ applied PrepareMerge, target replaced by a snapshot: gives way (merge)
//!                    ─▶ never applied PrepareMerge, target replaced by a snapshot: NOT
//!                       handled yet (the snapshot is refused as an overlap; see docs)
//! ```

use std::time::Duration;

use engine::{KvEngine, RaftEngine};
use proto::{eraftpb::MessageType, metapb::Region, raft_serverpb::RaftMessage};
use slog::{debug, info};

use crate::{
    batch::StoreContext, metrics::RaftEvent, raft::peer::Peer, transport::Transport,
    worker::pd::PdTask,
};

/// When a peer last knew a leader, and when it last asked the placement driver about itself.
#[derive(Debug, Default)]
pub struct StaleCheck {
    leader_missing_since: Option<Duration>,
    asked_at: Option<Duration>,
}

impl StaleCheck {
    /// One check at `now`: whether to ask the placement driver now. It asks once the peer has
    /// known no leader for `max_missing`, and again every `max_missing` while that lasts.
    pub fn due(&mut self, has_leader: bool, now: Duration, max_missing: Duration) -> bool {
        if has_leader {
            *self = StaleCheck::default();
            return false;
        }
        let since = *self.leader_missing_since.get_or_insert(now);
        if now.saturating_sub(since) < max_missing {
            return false;
        }
        if self.asked_at.is_some_and(|t| now.saturating_sub(t) < max_missing) {
            return false;
        }
        self.asked_at = Some(now);
        true
    }
}

/// A message for a region whose peer here is a tombstone: when it is a vote request of a peer
/// on a store the tombstone's (newer) membership no longer holds, the sender was removed and
/// may have no member left to tell it: the store answers with a GC message itself.
pub(crate) fn answer_from_tombstone<EK: KvEngine, ER: RaftEngine, T: Transport>(
    ctx: &mut StoreContext<EK, ER, T>,
    msg: &RaftMessage,
    tombstone: &Region,
) {
    let vote = matches!(
        msg.get_message().get_msg_type(),
        MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
    );
    let from = msg.get_from_peer();
    let sender_kept = tombstone.get_peers().iter().any(|p| p.store_id == from.store_id);
    let newer = msg.get_region_epoch().conf_ver < tombstone.get_region_epoch().conf_ver;
    if !vote || sender_kept || !newer {
        return;
    }
    let mut gc = RaftMessage::default();
    gc.region_id = msg.region_id;
    gc.set_from_peer(msg.get_to_peer().clone());
    gc.set_to_peer(from.clone());
    gc.set_region_epoch(tombstone.get_region_epoch().clone());
    gc.is_tombstone = true;
    if ctx.trans.send(gc).is_ok() {
        ctx.counters.inc(RaftEvent::GcMessageSent);
    }
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// The stale-state tick: a peer that has known no leader for `max_leader_missing_duration`
    /// asks the placement driver whether its region still holds it.
    pub(crate) fn on_stale_check_tick<T>(&mut self, ctx: &mut StoreContext<EK, ER, T>) {
        let has_leader = self.raft_group.raft.leader_id != raft::INVALID_ID;
        let (now, max_missing) = (ctx.clock.now(), ctx.cfg.max_leader_missing_duration);
        // An uninitialized peer knows no range and holds no data: nothing to free.
        if !self.stale.due(has_leader, now, max_missing) || self.region().get_peers().is_empty() {
            return;
        }
        info!(self.logger, "no leader for a while: asking the placement driver about this peer";
            "missing_for" => ?max_missing);
        ctx.counters.inc(RaftEvent::StaleCheckAsked);
        let task = PdTask::ValidatePeer { region: self.region().clone(), peer: self.peer.clone() };
        let _ = ctx.pd.schedule(task);
    }

    /// Word that the region, at membership `conf_ver`, no longer holds this peer (a GC
    /// message, or the placement driver). Destroys the peer unless the word is no newer than
    /// what it knows, it leads (a leader holding its own removal hands over first; a stale one
    /// steps down by check-quorum and hears it again), or it holds a merge being applied.
    pub(crate) fn destroy_as_removed<T: Transport>(
        &mut self,
        conf_ver: u64,
        by: &str,
        ctx: &mut StoreContext<EK, ER, T>,
    ) {
        let ours = self.region().get_region_epoch().conf_ver;
        if conf_ver <= ours {
            debug!(self.logger, "ignoring word of a removal no newer than this peer";
                "by" => by, "conf_ver" => conf_ver);
            return;
        }
        if self.is_leader() {
            debug!(self.logger, "ignoring word of a removal while leading"; "by" => by);
            return;
        }
        if self.merge.holds_commit_merge() {
            info!(self.logger, "removed, but applying a merge first: the word waits"; "by" => by);
            return;
        }
        info!(self.logger, "removed from the region while away: destroying";
            "by" => by, "conf_ver" => conf_ver);
        ctx.counters.inc(RaftEvent::StalePeerDestroyed);
        self.destroy(ctx);
    }

    /// The placement driver knows this region at `region`, a newer epoch without peer
    /// `asked`. The answer counts only for the peer that asked (a newer peer of the region may
    /// have taken the mailbox meanwhile) and only while it knows its region.
    pub(crate) fn on_stale_per_pd<T: Transport>(
        &mut self,
        ctx: &mut StoreContext<EK, ER, T>,
        asked: u64,
        region: Region,
    ) {
        let listed = region.get_peers().iter().any(|p| p.id == self.peer_id());
        if asked != self.peer_id() || self.region().get_peers().is_empty() || listed {
            return;
        }
        self.destroy_as_removed(region.get_region_epoch().conf_ver, "placement driver", ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn asks_after_the_leader_is_missing_long_enough_then_once_per_period() {
        let mut check = StaleCheck::default();
        let max = 10 * S;
        assert!(!check.due(false, Duration::ZERO, max), "the leader just went missing");
        assert!(!check.due(false, 9 * S, max));
        assert!(check.due(false, 10 * S, max));
        assert!(!check.due(false, 11 * S, max), "asked a second ago");
        assert!(check.due(false, 20 * S, max), "asked a period ago");
        assert!(!check.due(true, 21 * S, max), "a leader again");
        assert!(!check.due(false, 22 * S, max), "the count starts over");
        assert!(check.due(false, 32 * S, max));
    }
}
