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
//!                    ─▶ its votes reach a store keeping the merged tombstone: a GC message
//!                       naming the target; it notes it is merged away, and lives on
//!                    ─▶ a newer snapshot over its range (it merged into that region, or it
//!                       is merged away) taken by raft on its store: displaced, the snapshot
//!                       waiting till it is gone                                  (here)
//! ```
//!
//! Why a peer that missed a merge never goes on its own: its store's target may still apply
//! the CommitMerge from its log, which needs it. Once raft took a newer snapshot of the
//! target (or of whatever region holds the range now), that log is gone for good.

use std::time::Duration;

use engine::{keys, KvEngine, RaftEngine};
use proto::{
    eraftpb::MessageType,
    metapb::{Region, RegionEpoch},
    raft_serverpb::{RaftMessage, RegionLocalState},
};
use slog::{debug, info, warn};

use crate::{
    batch::StoreContext,
    metrics::RaftEvent,
    msg::PeerMsg,
    operation::snapshot::{check_snapshot, covers},
    raft::peer::Peer,
    store_meta::SharedStoreMeta,
    transport::Transport,
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

/// A message for a region whose peer here is a tombstone, answered when it is a vote request
/// (the sender knows no leader, and may have no member left to tell it anything): if the
/// tombstone's (newer) membership no longer holds the sender's store, a GC message of its
/// removal; else, if the region was merged away, a GC message naming the target.
pub(crate) fn answer_from_tombstone<EK: KvEngine, ER: RaftEngine, T: Transport>(
    ctx: &mut StoreContext<EK, ER, T>,
    msg: &RaftMessage,
    state: &RegionLocalState,
) {
    let vote = matches!(
        msg.get_message().get_msg_type(),
        MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
    );
    let (tombstone, from) = (state.get_region(), msg.get_from_peer());
    let merged = state.get_merge_state().has_target();
    let sender_kept = tombstone.get_peers().iter().any(|p| p.store_id == from.store_id);
    let newer = msg.get_region_epoch().conf_ver < tombstone.get_region_epoch().conf_ver;
    let removed = !sender_kept && newer;
    if !vote || !removed && !merged {
        return;
    }
    let mut gc = RaftMessage::default();
    if !removed {
        gc.set_merge_target(state.get_merge_state().get_target().clone());
    }
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

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// A store keeping the region's tombstone, at `epoch`, says it was merged into
    /// `target`. Noted store-wide (`must_give_way`): a newer snapshot over this peer's range,
    /// once raft here takes it, displaces it. Until then it lives on (its store's target may
    /// still apply the merge from its log and need it). A peer newer than the tombstone (a
    /// rollback it applied bumped its version) is not the region that merged: ignored.
    pub(crate) fn on_merged_per_member(
        &mut self,
        target: &Region,
        epoch: &RegionEpoch,
        meta: &SharedStoreMeta,
    ) {
        let ours = self.region().get_region_epoch().version;
        if ours > epoch.version || self.region().get_peers().is_empty() {
            return;
        }
        let mut meta = meta.lock().unwrap_or_else(|e| e.into_inner());
        if !meta.is_merged_away(self.region_id()) {
            meta.note_merged_away(self.region_id(), target.clone());
            info!(self.logger, "merged away while cut off: waiting for a snapshot over this range";
                "target" => target.id);
        }
    }

    /// A snapshot message for this peer. Checked against the store's regions and the ranges
    /// promised to snapshots taken here, and its range promised under the same lock, before
    /// raft sees it; the promise stays if raft took it (released once it is applied or the
    /// peer goes), else the one it replaced comes back. A snapshot over other regions' peers
    /// that must give way is taken only with nothing committed left to apply here (a
    /// CommitMerge among it would need its source); once raft has it, they are told to go,
    /// and it waits for them (`snapshot_must_wait`).
    pub(crate) fn step_snapshot<T: Transport>(
        &mut self,
        mut msg: RaftMessage,
        ctx: &mut StoreContext<EK, ER, T>,
    ) {
        let raft = &self.raft_group.raft;
        let applied = self.storage().applied_index();
        let ready = raft.raft_log.committed == applied
            && self.handed_index == applied
            && raft.raft_log.unstable.snapshot.is_none()
            && self.displacing.is_none()
            && !self.merge.holds_commit_merge();
        let mut meta = ctx.meta.lock().unwrap_or_else(|e| e.into_inner());
        let overlap = match check_snapshot(&msg, self.region_id(), self.peer_id(), &meta, &ctx.kv) {
            Ok(o) if o.displace.is_empty() || ready => o,
            Ok(o) => {
                drop(meta);
                info!(self.logger, "a snapshot over other regions waits till this peer has applied";
                    "regions" => ?o.displace, "committed" => raft.raft_log.committed,
                    "applied" => applied);
                return self.refuse_snapshot(&msg, ctx);
            }
            Err(reason) => {
                drop(meta);
                warn!(self.logger, "refusing a snapshot"; "reason" => reason);
                return self.refuse_snapshot(&msg, ctx);
            }
        };
        let replaced = meta.promise_range(self.region_id(), overlap.region.clone());
        drop(meta);
        let index = msg.get_message().get_snapshot().get_metadata().index;
        if let Err(e) = self.raft_group.step(msg.take_message()) {
            debug!(self.logger, "raft refused a snapshot"; "err" => %e);
        }
        let unstable = &self.raft_group.raft.raft_log.unstable.snapshot;
        if unstable.as_ref().is_none_or(|s| s.get_metadata().index != index) {
            // Not taken (stale): the promise of a snapshot raft took before, if any, stands.
            let mut meta = ctx.meta.lock().unwrap_or_else(|e| e.into_inner());
            match replaced.filter(|_| unstable.is_some()) {
                Some(region) => drop(meta.promise_range(self.region_id(), region)),
                None => drop(meta.release_range(self.region_id())),
            }
            return;
        }
        if overlap.displace.is_empty() {
            self.displacing = None; // a plain one replaced one that displaced: nothing waits
            return;
        }
        info!(self.logger, "took a snapshot over other regions: they go first";
            "regions" => ?overlap.displace, "index" => index);
        for id in &overlap.displace {
            let msg = PeerMsg::DisplacedBySnapshot(Box::new(overlap.region.clone()));
            let _ = ctx.router.force_send(*id, msg);
        }
        self.displacing = Some(overlap.region);
    }

    /// Raft on this store took a snapshot of `by` (newer) over this peer's range: the peer
    /// goes. A merge source of `by` inside its range leaves its data for the snapshot, as a
    /// merged source would; any other peer's data goes with it.
    pub(crate) fn on_displaced_by_snapshot<T: Transport>(
        &mut self,
        ctx: &mut StoreContext<EK, ER, T>,
        by: Region,
    ) {
        // It goes whatever it applied since the snapshot was checked (it must not hold the
        // snapshot back); only a peer whose range left the snapshot's is not in the way.
        let initialized = !self.region().get_peers().is_empty();
        if by.id == self.region_id() || !initialized || !overlaps(&by, self.region()) {
            return;
        }
        info!(self.logger, "displaced by a snapshot taken on this store: destroying";
            "by" => by.id, "version" => by.get_region_epoch().version);
        ctx.counters.inc(RaftEvent::StalePeerDestroyed);
        if self.merge.replaceable_by(&by) && covers(&by, self.region()) {
            self.merge.on_merged(by);
        }
        self.destroy(ctx);
    }
}

/// Whether two regions' ranges share a key.
fn overlaps(a: &Region, b: &Region) -> bool {
    let (a_start, a_end) = (keys::data_key(&a.start_key), keys::data_end_key(&a.end_key));
    let (b_start, b_end) = (keys::data_key(&b.start_key), keys::data_end_key(&b.end_key));
    a_start < b_end && b_start < a_end
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
