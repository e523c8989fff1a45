//! Snapshots: generated from the kv engine by a worker, checked when they arrive, applied by
//! the receiving peer.
//!
//! ```text
//! leader: raft asks PeerStorage::snapshot ──▶ not ready: schedule on the worker, "try later"
//!         worker: one kv snapshot → apply state, region state and the region's data, all from
//!                 the same point in time → SnapState::Ready
//!         raft asks again ──▶ the ready snapshot (if new enough) ──▶ MsgSnapshot
//!         every send ends in a report to raft, or raft never sends that follower anything
//!         again while this leader leads: Failure on a send error, on the follower's refusal
//!         (MsgSnapStatus), or after snap_send_timeout without the follower catching up (a
//!         piece lost, its store restarted); raft then sends another
//! follower: check (decodes, right region, holds this peer, no overlap with another region;
//!           refused → MsgSnapStatus reject to the sender)
//!           → raft → ready with snapshot, once the apply side is idle →
//!           kv: delete the range, write the data, region state, apply state (synced) →
//!           raft batch: delete the old log; raft state follows with the round's write →
//!           apply side reset to the snapshot's state
//! ```
//!
//! A crash between the kv write and the raft state leaves the raft state behind the
//! snapshot; `PeerStorage::new` raises it to the snapshot's index on restart.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use engine::{
    keys, Iterable, KvEngine, Mutable, Peekable, RaftEngine, RaftLogBatch, WriteOptions,
    CF_DEFAULT, CF_META,
};
use proto::{
    eraftpb::{Message as RaftMsg, MessageType, Snapshot},
    metapb::Region,
    raft_serverpb::{
        KeyValue, PeerState, RaftApplyState, RaftMessage, RaftSnapshotData, RegionLocalState,
    },
    Message,
};
use raft::{ProgressState, SnapshotStatus};
use slog::{info, warn, Logger};

use crate::{
    batch::StoreContext,
    metrics::{RaftEvent, StoreMetrics},
    msg::ApplyMsg,
    raft::{peer::Peer, storage::conf_state_from_region},
    store_meta::{SharedStoreMeta, StoreMeta},
    transport::Transport,
    worker::{self, Runnable, Scheduler},
    Error, Result,
};

/// Where a peer's snapshot generation stands.
#[derive(Default)]
pub enum SnapState {
    /// Nothing asked for.
    #[default]
    Idle,
    /// The worker is on it.
    Generating,
    /// Generated; reused while new enough.
    Ready(Snapshot),
    /// The last attempt failed; the next request tries again.
    Failed,
}

/// A snapshot to generate: of `region_id`, into `slot`.
pub struct GenTask {
    region_id: u64,
    slot: Arc<Mutex<SnapState>>,
}

/// The store's snapshot worker: builds snapshots from the kv engine, off the store threads.
pub struct SnapGenRunner<EK> {
    kv: EK,
    logger: Logger,
}

impl<EK: KvEngine> Runnable for SnapGenRunner<EK> {
    type Task = GenTask;

    fn run(&mut self, task: GenTask) {
        let state = match generate(&self.kv, task.region_id) {
            Ok(snap) => {
                info!(self.logger, "snapshot generated"; "region_id" => task.region_id,
                    "index" => snap.get_metadata().index, "bytes" => snap.data.len());
                SnapState::Ready(snap)
            }
            Err(e) => {
                warn!(self.logger, "snapshot generation failed"; "region_id" => task.region_id, "err" => %e);
                SnapState::Failed
            }
        };
        *task.slot.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }
}

/// A handle to the store's snapshot worker.
pub struct SnapGenerator<EK: KvEngine> {
    scheduler: Scheduler<GenTask>,
    _engine: std::marker::PhantomData<EK>,
}

impl<EK: KvEngine> Clone for SnapGenerator<EK> {
    fn clone(&self) -> Self {
        SnapGenerator { scheduler: self.scheduler.clone(), _engine: std::marker::PhantomData }
    }
}

impl<EK: KvEngine> SnapGenerator<EK> {
    /// Starts the worker. It exits once every handle is dropped.
    pub fn start(kv: EK, store_id: u64, logger: Logger) -> std::io::Result<(Self, JoinHandle<()>)> {
        let runner = SnapGenRunner { kv, logger };
        let (scheduler, thread) = worker::start(format!("snap-gen-{store_id}"), runner)?;
        Ok((SnapGenerator { scheduler, _engine: std::marker::PhantomData }, thread))
    }

    /// Asks for a snapshot of `region_id`, to be put in `slot`. False if the worker is gone.
    pub(crate) fn schedule(&self, region_id: u64, slot: Arc<Mutex<SnapState>>) -> bool {
        self.scheduler.schedule(GenTask { region_id, slot }).is_ok()
    }
}

/// Builds a snapshot of a region from one point-in-time view of the kv engine.
pub fn generate<EK: KvEngine>(kv: &EK, region_id: u64) -> Result<Snapshot> {
    let view = kv.snapshot();
    let missing =
        |what: &str| Error::StateCorrupted { region_id, detail: format!("{what} missing") };
    let apply: RaftApplyState = view
        .get_msg_cf(CF_META, &keys::apply_state_key(region_id))?
        .ok_or_else(|| missing("apply state"))?;
    let state: RegionLocalState = view
        .get_msg_cf(CF_META, &keys::region_state_key(region_id))?
        .ok_or_else(|| missing("region state"))?;
    if state.get_state() == PeerState::Merging {
        // A snapshot carries no merge state: a peer restored from it would serve a region
        // that is merging away. PrepareMerge waits for every follower to be replicating, so
        // none should need one; if one does, it waits for the merge's end.
        return Err(Error::ServerIsBusy(format!("region {region_id} is merging")));
    }
    let region = state.get_region();
    let mut data = RaftSnapshotData::default();
    data.set_region(region.clone());
    let (start, end) = (keys::data_key(&region.start_key), keys::data_end_key(&region.end_key));
    view.scan(CF_DEFAULT, &start, &end, false, |k, v| {
        let mut kv = KeyValue::default();
        kv.key = k.to_vec();
        kv.value = v.to_vec();
        data.data.push(kv);
        Ok(true)
    })?;
    let mut snap = Snapshot::default();
    snap.data = data
        .write_to_bytes()
        .map_err(|e| Error::InvalidArgument(format!("encode snapshot: {e}")))?
        .into();
    let meta = snap.mut_metadata();
    meta.index = apply.applied_index;
    meta.term = apply.commit_term;
    meta.set_conf_state(conf_state_from_region(region));
    Ok(snap)
}

/// Whether region `id` here is a merge source that applied its PrepareMerge into `target` (an
/// older epoch of it) and lies inside `target`'s range: a snapshot of the merged target, which
/// holds its data, replaces it.
pub(crate) fn is_merge_source_of<EK: KvEngine>(kv: &EK, id: u64, target: &Region) -> bool {
    let Ok(Some(state)) = kv.get_msg_cf::<RegionLocalState>(CF_META, &keys::region_state_key(id))
    else {
        return false;
    };
    let merge = state.get_merge_state();
    state.get_state() == PeerState::Merging
        && merge.get_target().id == target.id
        && merge.get_target().get_region_epoch().version < target.get_region_epoch().version
        && covers(target, state.get_region())
}

/// Whether `outer`'s range holds all of `inner`'s.
pub(crate) fn covers(outer: &Region, inner: &Region) -> bool {
    keys::data_key(&inner.start_key) >= keys::data_key(&outer.start_key)
        && keys::data_end_key(&inner.end_key) <= keys::data_end_key(&outer.end_key)
}

/// The other regions of the store a snapshot's range overlaps, when they must give way to it.
#[derive(Debug, Default)]
pub(crate) struct Overlap {
    /// The snapshot's region.
    pub region: Region,
    /// Merge sources of this region it covers, and regions merged away (their members said
    /// so): displaced once raft takes the snapshot.
    pub displace: Vec<u64>,
}

/// Checks a snapshot message before raft sees it: it must decode, be of `region_id`, hold
/// `peer_id`, overlap no range another peer here took a snapshot over, and overlap no other
/// region of the store but older ones that must give way to it (`must_give_way`): those
/// are returned (none: nothing in the way).
pub(crate) fn check_snapshot<EK: KvEngine>(
    msg: &RaftMessage,
    region_id: u64,
    peer_id: u64,
    meta: &StoreMeta,
    kv: &EK,
) -> std::result::Result<Overlap, String> {
    let data = RaftSnapshotData::parse_from_bytes(&msg.get_message().get_snapshot().data)
        .map_err(|e| format!("undecodable snapshot: {e}"))?;
    let region = data.get_region();
    if region.id != region_id {
        return Err(format!("snapshot of region {} sent to region {region_id}", region.id));
    }
    if !region.get_peers().iter().any(|p| p.id == peer_id) {
        return Err("snapshot's region does not hold this peer".into());
    }
    if let Some(other) = meta.promised_to_other(region_id, &region.start_key, &region.end_key) {
        return Err(format!("region {other} took a snapshot over this range"));
    }
    let mut displace = Vec::new();
    for id in meta.overlapping(&region.start_key, &region.end_key) {
        if id == region_id {
            continue;
        }
        if !must_give_way(meta, kv, id, region) {
            return Err(format!("snapshot overlaps region {id}"));
        }
        displace.push(id);
    }
    Ok(Overlap { region: region.clone(), displace })
}

/// Whether region `id` here must give way to a snapshot of `region`: it is older, and it is
/// a merge source of `region` that the snapshot covers, or it was merged away (its members
/// said so) and no log here can still apply that merge: `region` is the target itself, at
/// or past the merge, or the local target is at or past it (or has no peer here, so it will
/// start from a snapshot).
pub(crate) fn must_give_way<EK: KvEngine>(
    meta: &StoreMeta,
    kv: &EK,
    id: u64,
    region: &Region,
) -> bool {
    let version = |r: &Region| r.get_region_epoch().version;
    if meta.region(id).is_none_or(|r| version(r) >= version(region)) {
        return false;
    }
    if is_merge_source_of(kv, id, region) {
        return true;
    }
    meta.merged_into(id).is_some_and(|target| {
        let past = |r: &Region| version(r) >= version(target);
        match region.id == target.id {
            true => past(region),
            false => meta.region(target.id).is_none_or(past),
        }
    })
}

/// Most pieces a snapshot may come in; more is a malformed message.
const MAX_CHUNKS: u64 = 1 << 20;

/// Splits a snapshot message whose data exceeds `chunk_size` into pieces.
pub(crate) fn split_snapshot(mut msg: RaftMessage, chunk_size: usize) -> Vec<RaftMessage> {
    let data = std::mem::take(&mut msg.mut_message().mut_snapshot().data);
    if data.len() <= chunk_size {
        msg.mut_message().mut_snapshot().data = data;
        return vec![msg];
    }
    let total = data.len().div_ceil(chunk_size) as u64;
    data.chunks(chunk_size)
        .enumerate()
        .map(|(seq, piece)| {
            let mut m = msg.clone();
            let chunk = m.mut_snapshot_chunk();
            chunk.seq = seq as u64;
            chunk.total = total;
            chunk.data = piece.to_vec();
            m
        })
        .collect()
}

/// Pieces of one snapshot being received.
pub(crate) struct SnapChunks {
    /// (sender, term, index) of the snapshot.
    key: (u64, u64, u64),
    parts: Vec<Option<Vec<u8>>>,
    received: usize,
}

/// Snapshots a leader sent and has not settled with raft, by follower: when each was sent and
/// its index. Every send ends settled: by the follower's word, a send error, or a timeout.
#[derive(Debug, Default)]
pub struct SnapSends(HashMap<u64, (Duration, u64)>);

impl SnapSends {
    /// Snapshot `index` went to `to` at `at` (replacing an earlier one to it).
    pub fn sent(&mut self, to: u64, at: Duration, index: u64) {
        self.0.insert(to, (at, index));
    }

    /// A follower's word on snapshot `index`: true, and settled, if it is about the last one
    /// sent to it; a word on an older one is stale.
    pub fn settle(&mut self, from: u64, index: u64) -> bool {
        let last = self.0.get(&from).is_some_and(|(_, i)| *i == index);
        if last {
            self.0.remove(&from);
        }
        last
    }

    /// Whether the send waiting for `to` is snapshot `index`.
    pub fn holds(&self, to: u64, index: u64) -> bool {
        self.0.get(&to).is_some_and(|(_, i)| *i == index)
    }

    /// Forgets the send to `to` (its failure is reported by the caller).
    pub fn forget(&mut self, to: u64) {
        self.0.remove(&to);
    }

    /// Forgets every send (no longer leader: raft forgot them too).
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Whether no send is waiting.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The sends at least `timeout` old at `now`, forgotten and returned, to report as
    /// failed; sends to peers that no longer wait for a snapshot (`waiting` says) are
    /// forgotten too.
    pub fn take_expired(
        &mut self,
        now: Duration,
        timeout: Duration,
        waiting: impl Fn(u64) -> bool,
    ) -> Vec<u64> {
        let mut expired = Vec::new();
        self.0.retain(|&id, (sent_at, _)| {
            if !waiting(id) {
                return false;
            }
            let late = now.saturating_sub(*sent_at) >= timeout;
            if late {
                expired.push(id);
            }
            !late
        });
        expired.sort_unstable();
        expired
    }
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Takes one piece of a snapshot; returns the whole snapshot message once every piece has
    /// arrived (in any order). Pieces of another snapshot start over; malformed ones are
    /// dropped.
    pub(crate) fn collect_snapshot_chunk(&mut self, mut msg: RaftMessage) -> Option<RaftMessage> {
        let chunk = msg.take_snapshot_chunk();
        if chunk.total == 0 || chunk.total > MAX_CHUNKS || chunk.seq >= chunk.total {
            warn!(self.logger, "dropping a malformed snapshot piece"; "seq" => chunk.seq, "total" => chunk.total);
            return None;
        }
        let meta = msg.get_message().get_snapshot().get_metadata();
        let key = (msg.get_from_peer().id, meta.term, meta.index);
        let fresh = self
            .snap_chunks
            .as_ref()
            .is_none_or(|c| c.key != key || c.parts.len() as u64 != chunk.total);
        if fresh {
            let parts = vec![None; chunk.total as usize];
            self.snap_chunks = Some(SnapChunks { key, parts, received: 0 });
        }
        let chunks = self.snap_chunks.as_mut().expect("just set");
        let slot = &mut chunks.parts[chunk.seq as usize];
        if slot.is_none() {
            *slot = Some(chunk.data);
            chunks.received += 1;
        }
        if chunks.received < chunks.parts.len() {
            return None;
        }
        let chunks = self.snap_chunks.take().expect("complete");
        let data: Vec<u8> = chunks.parts.into_iter().flatten().flatten().collect();
        msg.mut_message().mut_snapshot().data = data.into();
        Some(msg)
    }

    /// A snapshot this peer will not take: the sender learns so at once, and its raft sends
    /// another (or catches the peer up by log) instead of waiting on it.
    pub(crate) fn refuse_snapshot<T: Transport>(
        &self,
        msg: &RaftMessage,
        ctx: &mut StoreContext<EK, ER, T>,
    ) {
        let mut status = RaftMsg::default();
        status.set_msg_type(MessageType::MsgSnapStatus);
        status.from = self.peer_id();
        status.to = msg.get_from_peer().id;
        status.term = self.term();
        status.reject = true;
        status.index = msg.get_message().get_snapshot().get_metadata().index;
        let mut out = RaftMessage::default();
        out.region_id = self.region_id();
        out.set_from_peer(self.peer.clone());
        out.set_to_peer(msg.get_from_peer().clone());
        out.set_region_epoch(self.region().get_region_epoch().clone());
        out.set_message(status);
        let _ = ctx.trans.send(out); // lost: the sender's timeout reports it
    }

    /// A follower's word on a snapshot this leader sent it (`index`: which one; a word on an
    /// older one than the last sent is stale).
    pub(crate) fn on_snapshot_status<T>(&mut self, m: &RaftMsg, ctx: &StoreContext<EK, ER, T>) {
        if !self.is_leader() || !self.snap_sends.settle(m.from, m.index) {
            return;
        }
        let status = if m.reject {
            ctx.counters.inc(RaftEvent::SnapshotFailed);
            warn!(self.logger, "follower refused a snapshot"; "peer" => m.from);
            SnapshotStatus::Failure
        } else {
            SnapshotStatus::Finish
        };
        self.raft_group.report_snapshot(m.from, status);
    }

    /// The transport could not take a snapshot for `to`.
    pub(crate) fn on_snapshot_send_failed<T>(&mut self, to: u64, ctx: &StoreContext<EK, ER, T>) {
        self.snap_sends.forget(to);
        ctx.counters.inc(RaftEvent::SnapshotFailed);
        self.raft_group.report_snapshot(to, SnapshotStatus::Failure);
    }

    /// Settles snapshot sends: done once raft has moved the follower out of its snapshot
    /// state (it caught up); failed after `timeout` otherwise.
    pub(crate) fn check_snapshot_sends(
        &mut self,
        now: std::time::Duration,
        timeout: std::time::Duration,
        counters: &StoreMetrics,
    ) {
        if self.snap_sends.is_empty() {
            return;
        }
        if !self.is_leader() {
            self.snap_sends.clear();
            return;
        }
        let prs = self.raft_group.raft.prs();
        let waiting = |id| prs.get(id).is_some_and(|pr| pr.state == ProgressState::Snapshot);
        let failed = self.snap_sends.take_expired(now, timeout, waiting);
        for id in failed {
            warn!(self.logger, "snapshot not applied in time: sending another"; "peer" => id);
            counters.inc(RaftEvent::SnapshotFailed);
            self.raft_group.report_snapshot(id, SnapshotStatus::Failure);
        }
    }

    /// Whether a snapshot waits in raft while the apply side still works on earlier entries
    /// (applying it would race with them), or while peers it displaces are still here (their
    /// clean-up would delete its data).
    pub(crate) fn snapshot_must_wait(&mut self, meta: &SharedStoreMeta) -> bool {
        if self.raft_group.raft.raft_log.unstable.snapshot.is_none() {
            return false;
        }
        if self.snapshot_waits_for_apply() {
            return true;
        }
        let Some(region) = &self.displacing else {
            return false;
        };
        let meta = meta.lock().unwrap_or_else(|e| e.into_inner());
        let in_the_way = meta.overlapping(&region.start_key, &region.end_key);
        if in_the_way.iter().any(|id| *id != region.id) {
            return true;
        }
        self.displacing = None;
        false
    }

    /// Whether a snapshot waits in raft while the apply side still works on earlier entries.
    pub(crate) fn snapshot_waits_for_apply(&self) -> bool {
        self.raft_group.raft.raft_log.unstable.snapshot.is_some()
            && self.storage().applied_index() < self.handed_index
    }

    /// Applies a snapshot from a ready: the kv part now (synced), the old log's deletion into
    /// `batch`, the storage's state in memory, and a reset of the apply side.
    pub(crate) fn apply_snapshot(
        &mut self,
        snap: &Snapshot,
        batch: &mut ER::LogBatch,
        meta: &Mutex<StoreMeta>,
        apply: &crate::fsm::apply::ApplyRouter<EK>,
    ) -> Result<()> {
        let data = RaftSnapshotData::parse_from_bytes(&snap.data)
            .map_err(|e| Error::InvalidArgument(format!("undecodable snapshot: {e}")))?;
        let region: Region = data.get_region().clone();
        let (index, term) = (snap.get_metadata().index, snap.get_metadata().term);
        let kv = self.storage().kv_engine().clone();
        let mut wb = kv.write_batch();
        let old = self.region().clone();
        for r in [&old, &region] {
            if r.id == region.id && !r.get_peers().is_empty() {
                wb.delete_range_cf(
                    CF_DEFAULT,
                    &keys::data_key(&r.start_key),
                    &keys::data_end_key(&r.end_key),
                )?;
            }
        }
        for pair in data.get_data() {
            wb.put_cf(CF_DEFAULT, &pair.key, &pair.value)?;
        }
        let mut state = RegionLocalState::default();
        state.set_state(PeerState::Normal);
        state.set_region(region.clone());
        wb.put_msg_cf(CF_META, &keys::region_state_key(region.id), &state)?;
        let mut apply_state = RaftApplyState::default();
        apply_state.applied_index = index;
        apply_state.commit_index = index;
        apply_state.commit_term = term;
        apply_state.mut_truncated_state().index = index;
        apply_state.mut_truncated_state().term = term;
        wb.put_msg_cf(CF_META, &keys::apply_state_key(region.id), &apply_state)?;
        kv.write(&mut wb, WriteOptions::SYNC)?;

        let last = self.storage().raft_state().last_index.max(index);
        batch.cut_logs(region.id, 0, last + 1)?;
        self.raft_group.mut_store().apply_snapshot_state(region.clone(), apply_state.clone());
        self.handed_index = index;
        {
            let mut meta = meta.lock().unwrap_or_else(|e| e.into_inner());
            meta.set_region(region.clone());
            meta.release_range(region.id);
        }
        info!(self.logger, "snapshot applied"; "index" => index, "keys" => data.get_data().len());
        // Fails only at shutdown; the apply side then never runs again.
        let _ = apply.force_send(
            region.id,
            ApplyMsg::Reset { region: Box::new(region), apply_state: Box::new(apply_state) },
        );
        Ok(())
    }
}

#[cfg(test)]
mod sends_tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn only_a_word_on_the_last_snapshot_sent_settles_it() {
        let mut s = SnapSends::default();
        s.sent(2, MS, 10);
        s.sent(2, 5 * MS, 20); // a newer one replaces it
        assert!(!s.settle(2, 10), "a word on the older one is stale");
        assert!(!s.settle(3, 20), "nothing went to 3");
        assert!(s.settle(2, 20));
        assert!(s.is_empty());
        assert!(!s.settle(2, 20), "settled once");
    }

    #[test]
    fn a_late_transport_report_names_the_snapshot_it_is_about() {
        let mut s = SnapSends::default();
        s.sent(2, MS, 10);
        s.sent(2, 5 * MS, 20); // the store gave up on 10 and sent 20
        assert!(!s.holds(2, 10), "a failure of 10 reported now must not settle 20");
        assert!(s.holds(2, 20));
        assert!(!s.holds(3, 20));
        s.forget(2);
        assert!(!s.holds(2, 20), "settled: a report after that is stale too");
    }

    #[test]
    fn late_sends_are_reported_once_and_sends_nobody_waits_for_are_dropped() {
        let mut s = SnapSends::default();
        s.sent(2, Duration::ZERO, 10);
        s.sent(3, 50 * MS, 10);
        s.sent(4, Duration::ZERO, 10);
        let waiting = |id| id != 4;
        assert_eq!(s.take_expired(99 * MS, 100 * MS, waiting), Vec::<u64>::new());
        assert_eq!(s.take_expired(100 * MS, 100 * MS, waiting), vec![2]);
        assert_eq!(s.take_expired(100 * MS, 100 * MS, waiting), Vec::<u64>::new(), "once");
        assert_eq!(s.take_expired(150 * MS, 100 * MS, waiting), vec![3]);
        assert!(s.is_empty(), "4 was dropped: it no longer waits");
        s.sent(5, Duration::ZERO, 1);
        s.forget(5);
        s.sent(6, Duration::ZERO, 1);
        s.clear();
        assert!(s.is_empty());
    }
}

#[cfg(test)]
mod give_way_tests {
    use engine::rocks::{RocksConfig, RocksEngine};

    use super::*;

    fn region(id: u64, start: &[u8], end: &[u8], version: u64) -> Region {
        let mut r =
            Region { id, start_key: start.to_vec(), end_key: end.to_vec(), ..Default::default() };
        r.mut_region_epoch().version = version;
        r
    }

    /// S (a..m, v2) merged into T while this store was cut off: T became a.. at v4.
    fn store_after_missed_merge() -> (StoreMeta, RocksEngine, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let kv = RocksEngine::open(dir.path(), &RocksConfig::default()).unwrap();
        let mut meta = StoreMeta::new(1);
        meta.set_region(region(2, b"a", b"m", 2));
        (meta, kv, dir)
    }

    #[test]
    fn a_region_merged_away_gives_way_only_where_no_log_can_still_merge_it() {
        let (mut meta, kv, _dir) = store_after_missed_merge();
        let target = region(3, b"a", b"", 4);
        let other = region(9, b"a", b"f", 5); // split off the merged region later
        assert!(!must_give_way(&meta, &kv, 2, &target), "no member said it was merged yet");

        meta.note_merged_away(2, target.clone());
        assert!(must_give_way(&meta, &kv, 2, &target), "the target itself, past the merge");
        assert!(!must_give_way(&meta, &kv, 2, &region(3, b"a", b"", 3)), "target before it");
        assert!(must_give_way(&meta, &kv, 2, &other), "no peer of the target here");

        meta.set_region(region(3, b"m", b"", 2)); // the target here, behind the merge
        assert!(!must_give_way(&meta, &kv, 2, &other), "its log may still apply the merge");
        assert!(must_give_way(&meta, &kv, 2, &target));
        meta.set_region(region(3, b"m", b"", 6)); // now past it (a newer snapshot elsewhere)
        assert!(must_give_way(&meta, &kv, 2, &other));
        assert!(!must_give_way(&meta, &kv, 2, &region(9, b"a", b"f", 2)), "not newer");
    }

    #[test]
    fn a_promised_range_refuses_other_snapshots_until_released() {
        let (mut meta, _kv, _dir) = store_after_missed_merge();
        meta.promise_range(3, region(3, b"a", b"", 4));
        assert_eq!(meta.promised_to_other(9, b"a", b"f"), Some(3));
        assert_eq!(meta.promised_to_other(3, b"a", b""), None, "its own");
        let split_child = region(7, b"c", b"e", 3);
        assert_eq!(meta.promise_over(&split_child).map(|r| r.id), Some(3), "newer, over it");
        assert_eq!(meta.promise_over(&region(7, b"c", b"e", 4)), None, "not newer");
        meta.release_range(3);
        assert_eq!(meta.promised_to_other(9, b"a", b"f"), None);
        assert_eq!(meta.promise_over(&split_child), None);
    }
}
