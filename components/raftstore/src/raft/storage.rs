//! `PeerStorage`: one region's raft log and states over the engines, as `raft::Storage`.
//!
//! The raft engine holds the log and `RaftLocalState` (hard state, last index); the kv engine
//! holds `RaftApplyState` (applied index, truncated state), written atomically with the data
//! it describes. A region created by bootstrap or split starts with a log truncated at
//! [`RAFT_INIT_LOG_INDEX`] in [`RAFT_INIT_LOG_TERM`]; a peer created for an incoming message
//! starts empty (uninitialized) and waits for a snapshot.

use ::raft::{GetEntriesContext, RaftState, StorageError};
use engine::{keys, KvEngine, Mutable, RaftEngine, RaftLogBatch, CF_META};
use proto::{
    eraftpb::{ConfState, Entry, HardState, Snapshot},
    metapb::{PeerRole, Region},
    raft_serverpb::{RaftApplyState, RaftLocalState},
};
use std::sync::{Arc, Mutex};

use slog::{info, Logger};

use crate::operation::snapshot::{SnapGenerator, SnapState};
use crate::raft::entry_cache::{EntryCache, DEFAULT_ENTRY_CACHE_LIMIT};

use crate::{Error, Result};

/// Term of the last entry of a freshly created region's (empty) log.
pub const RAFT_INIT_LOG_TERM: u64 = 5;
/// Index of the last entry of a freshly created region's (empty) log.
pub const RAFT_INIT_LOG_INDEX: u64 = 5;

/// The raft state of a region created by bootstrap or split.
pub fn initial_raft_state() -> RaftLocalState {
    let mut s = RaftLocalState::default();
    s.last_index = RAFT_INIT_LOG_INDEX;
    s.mut_hard_state().term = RAFT_INIT_LOG_TERM;
    s.mut_hard_state().commit = RAFT_INIT_LOG_INDEX;
    s
}

/// The apply state of a region created by bootstrap or split.
pub fn initial_apply_state() -> RaftApplyState {
    let mut s = RaftApplyState::default();
    s.applied_index = RAFT_INIT_LOG_INDEX;
    s.commit_index = RAFT_INIT_LOG_INDEX;
    s.commit_term = RAFT_INIT_LOG_TERM;
    s.mut_truncated_state().index = RAFT_INIT_LOG_INDEX;
    s.mut_truncated_state().term = RAFT_INIT_LOG_TERM;
    s
}

/// The raft configuration a region's peer list describes.
pub fn conf_state_from_region(region: &Region) -> ConfState {
    let mut cs = ConfState::default();
    for p in region.get_peers() {
        match p.get_role() {
            PeerRole::Voter => cs.voters.push(p.id),
            PeerRole::Learner => cs.learners.push(p.id),
        }
    }
    cs
}

/// The raft log storage of one peer.
pub struct PeerStorage<EK: KvEngine, ER: RaftEngine> {
    kv: EK,
    raft: ER,
    region: Region,
    raft_state: RaftLocalState,
    apply_state: RaftApplyState,
    last_term: u64,
    logger: Logger,
    /// Where to ask for snapshot generation; without it `snapshot` is always unavailable.
    snap_gen: Option<SnapGenerator<EK>>,
    snap_state: Arc<Mutex<SnapState>>,
    /// The log's tail in memory: appends, reads and term lookups of recent entries never
    /// touch the raft engine.
    cache: EntryCache,
}

impl<EK: KvEngine, ER: RaftEngine> PeerStorage<EK, ER> {
    /// Loads the states of `region` from the engines and checks that they agree. A region
    /// with no stored states starts fresh: initialized at [`RAFT_INIT_LOG_INDEX`] if it has
    /// peers, empty otherwise.
    ///
    /// Errors: `StateCorrupted` when the states contradict each other or one is missing while
    /// the other shows progress; `Engine(LogGap)` when the log between the truncated and the
    /// last index has a hole; `Engine(Corruption)` when a state does not decode.
    pub fn new(kv: EK, raft: ER, region: Region, logger: Logger) -> Result<Self> {
        let region_id = region.id;
        let initialized = !region.peers.is_empty();
        let stored_apply =
            kv.get_msg_cf::<RaftApplyState>(CF_META, &keys::apply_state_key(region_id))?;
        let stored_raft = raft.get_raft_state(region_id)?;
        let apply_state = match (stored_apply, initialized) {
            (Some(s), _) => s,
            (None, true) => initial_apply_state(),
            (None, false) => RaftApplyState::default(),
        };
        let mut raft_state = match (stored_raft, initialized) {
            (Some(s), _) => s,
            (None, _) if apply_state.applied_index > RAFT_INIT_LOG_INDEX => {
                return Err(Error::StateCorrupted {
                    region_id,
                    detail: format!(
                        "raft state is missing but entries up to {} were applied",
                        apply_state.applied_index
                    ),
                })
            }
            (None, true) => initial_raft_state(),
            (None, false) => RaftLocalState::default(),
        };
        // The apply side may have seen a commit that the raft state did not persist yet.
        if raft_state.get_hard_state().commit < apply_state.commit_index {
            raft_state.mut_hard_state().commit = apply_state.commit_index;
        }
        // A snapshot's kv part is written before its raft state: a crash in between leaves
        // the raft state behind the snapshot, which then stands for the whole log.
        let truncated = apply_state.get_truncated_state();
        if raft_state.last_index < truncated.index {
            raft_state.last_index = truncated.index;
            let hs = raft_state.mut_hard_state();
            hs.term = hs.term.max(truncated.term);
            hs.commit = hs.commit.max(truncated.index);
        }
        validate_states(region_id, &raft_state, &apply_state)?;
        let truncated = apply_state.get_truncated_state();
        raft.check_log_range(region_id, truncated.index + 1, raft_state.last_index + 1)?;
        let last_term = if raft_state.last_index == truncated.index {
            truncated.term
        } else {
            match raft.get_entry(region_id, raft_state.last_index)? {
                Some(e) => e.term,
                None => unreachable!("check_log_range verified the last entry"),
            }
        };
        info!(logger, "peer storage loaded";
            "last_index" => raft_state.last_index, "commit" => raft_state.get_hard_state().commit,
            "applied" => apply_state.applied_index, "truncated" => truncated.index);
        Ok(PeerStorage {
            kv,
            raft,
            region,
            raft_state,
            apply_state,
            last_term,
            logger,
            snap_gen: None,
            snap_state: Default::default(),
            cache: EntryCache::new(DEFAULT_ENTRY_CACHE_LIMIT),
        })
    }

    /// Whether the peer knows its region (it has peers); an uninitialized peer waits for a
    /// snapshot.
    pub fn is_initialized(&self) -> bool {
        !self.region.peers.is_empty()
    }

    /// The region as this peer knows it.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// Replaces the region (after a membership change, split or snapshot).
    pub fn set_region(&mut self, region: Region) {
        self.region = region;
    }

    /// The persisted raft state, as of the last [`PeerStorage::write_raft_state`].
    pub fn raft_state(&self) -> &RaftLocalState {
        &self.raft_state
    }

    /// The apply state.
    pub fn apply_state(&self) -> &RaftApplyState {
        &self.apply_state
    }

    /// Index of the last applied entry.
    pub fn applied_index(&self) -> u64 {
        self.apply_state.applied_index
    }

    /// Index of the last compacted entry.
    pub fn truncated_index(&self) -> u64 {
        self.apply_state.get_truncated_state().index
    }

    /// Term of the last compacted entry.
    pub fn truncated_term(&self) -> u64 {
        self.apply_state.get_truncated_state().term
    }

    /// Term of the last entry in the log.
    pub fn last_term(&self) -> u64 {
        self.last_term
    }

    /// The kv engine.
    pub fn kv_engine(&self) -> &EK {
        &self.kv
    }

    /// The raft engine.
    pub fn raft_engine(&self) -> &ER {
        &self.raft
    }

    /// Adds `entries` (from a raft `Ready`) to `batch`, deleting any stored tail beyond them
    /// that they replace, and moves the last index. The batch must be consumed before the
    /// storage is read again.
    pub fn append(&mut self, entries: &[Entry], batch: &mut ER::LogBatch) -> Result<()> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        let region_id = self.region.id;
        if first.index <= self.truncated_index() || first.index > self.raft_state.last_index + 1 {
            return Err(Error::InvalidArgument(format!(
                "region {region_id}: append at {} outside ({}, {}]",
                first.index,
                self.truncated_index(),
                self.raft_state.last_index + 1
            )));
        }
        batch.append(region_id, entries)?;
        let prev_last = self.raft_state.last_index;
        if last.index < prev_last {
            batch.cut_logs(region_id, last.index + 1, prev_last + 1)?;
        }
        self.raft_state.last_index = last.index;
        self.last_term = last.term;
        self.cache.append(entries);
        Ok(())
    }

    /// Records a new hard state; persisted by the next [`PeerStorage::write_raft_state`].
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.raft_state.set_hard_state(hs);
    }

    /// Records a commit index learned after the last ready; persisted by the next
    /// [`PeerStorage::write_raft_state`].
    pub fn set_commit_index(&mut self, commit: u64) {
        self.raft_state.mut_hard_state().commit = commit;
    }

    /// Records the apply state the apply side has written (in memory only).
    pub fn set_apply_state(&mut self, state: RaftApplyState) {
        self.apply_state = state;
    }

    /// Keeps at most `bytes` of the log's tail in memory (0: none). Takes effect from the
    /// next append.
    pub fn set_entry_cache_limit(&mut self, bytes: usize) {
        self.cache = EntryCache::new(bytes);
    }

    /// Lets the log's tail before `index` leave memory: applied here and, on a leader,
    /// replicated to every follower, so it is rarely read again (and then from the engine).
    pub fn compact_entry_cache(&mut self, index: u64) {
        self.cache.compact_to(index);
    }

    /// The in-memory tail of the log.
    pub fn entry_cache(&self) -> &EntryCache {
        &self.cache
    }

    /// Lets this storage generate snapshots through `generator`.
    pub fn set_snap_generator(&mut self, generator: SnapGenerator<EK>) {
        self.snap_gen = Some(generator);
    }

    /// Takes on the state a snapshot wrote: its region, its apply state, and a log that ends
    /// at the snapshot (entries to delete are the caller's, in the same raft batch).
    pub fn apply_snapshot_state(&mut self, region: Region, apply_state: RaftApplyState) {
        let truncated = apply_state.get_truncated_state();
        self.raft_state.last_index = truncated.index;
        self.last_term = truncated.term;
        self.cache.clear();
        self.region = region;
        self.apply_state = apply_state;
    }

    /// Adds the raft state to `batch`.
    pub fn write_raft_state(&self, batch: &mut ER::LogBatch) -> Result<()> {
        batch.put_raft_state(self.region.id, &self.raft_state)?;
        Ok(())
    }

    /// Records a new apply state and adds it to the kv write batch `wb`.
    pub fn write_apply_state(
        &mut self,
        state: RaftApplyState,
        wb: &mut EK::WriteBatch,
    ) -> Result<()> {
        wb.put_msg_cf(CF_META, &keys::apply_state_key(self.region.id), &state)?;
        self.apply_state = state;
        Ok(())
    }

    /// The logger of this peer.
    pub fn logger(&self) -> &Logger {
        &self.logger
    }

    fn storage_error(&self, e: impl std::fmt::Display) -> ::raft::Error {
        let msg = format!("region {}: {e}", self.region.id);
        ::raft::Error::Store(StorageError::Other(msg.into()))
    }
}

fn validate_states(region_id: u64, raft: &RaftLocalState, apply: &RaftApplyState) -> Result<()> {
    let corrupted = |detail: String| Err(Error::StateCorrupted { region_id, detail });
    let (commit, last) = (raft.get_hard_state().commit, raft.last_index);
    let truncated = apply.get_truncated_state().index;
    if commit > last {
        return corrupted(format!("commit index {commit} is beyond last index {last}"));
    }
    if apply.applied_index > commit {
        return corrupted(format!(
            "applied index {} is beyond commit index {commit}",
            apply.applied_index
        ));
    }
    if truncated > apply.applied_index {
        return corrupted(format!(
            "truncated index {truncated} is beyond applied index {}",
            apply.applied_index
        ));
    }
    if last < truncated {
        return corrupted(format!("last index {last} is below truncated index {truncated}"));
    }
    if raft.get_hard_state().term < apply.get_truncated_state().term {
        return corrupted("hard state term is below the truncated term".into());
    }
    Ok(())
}

impl<EK: KvEngine, ER: RaftEngine> ::raft::Storage for PeerStorage<EK, ER> {
    fn initial_state(&self) -> ::raft::Result<RaftState> {
        let conf_state = if self.is_initialized() {
            conf_state_from_region(&self.region)
        } else {
            ConfState::default()
        };
        Ok(RaftState::new(self.raft_state.get_hard_state().clone(), conf_state))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> ::raft::Result<Vec<Entry>> {
        if low <= self.truncated_index() {
            return Err(::raft::Error::Store(StorageError::Compacted));
        }
        if high > self.raft_state.last_index + 1 || low > high {
            return Err(::raft::Error::Store(StorageError::Unavailable));
        }
        let max = max_size.into();
        let mut buf = Vec::with_capacity((high - low) as usize);
        let cached_from = self.cache.first_index().map_or(high, |first| first.clamp(low, high));
        if low < cached_from {
            let limit = max.map(|m| m as usize);
            self.raft
                .fetch_entries_to(self.region.id, low, cached_from, limit, &mut buf)
                .map_err(|e| self.storage_error(e))?;
            if buf.len() < (cached_from - low) as usize {
                return Ok(buf); // the size limit stopped it
            }
        }
        if !self.cache.fetch(cached_from, high, &mut buf) {
            return Err(self.storage_error(format!("entries [{cached_from}, {high}) not cached")));
        }
        ::raft::util::limit_size(&mut buf, max);
        Ok(buf)
    }

    fn term(&self, idx: u64) -> ::raft::Result<u64> {
        let truncated = self.apply_state.get_truncated_state();
        if idx == truncated.index {
            return Ok(truncated.term);
        }
        if idx < truncated.index {
            return Err(::raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.raft_state.last_index {
            return Err(::raft::Error::Store(StorageError::Unavailable));
        }
        if idx == self.raft_state.last_index {
            return Ok(self.last_term);
        }
        if let Some(term) = self.cache.term(idx) {
            return Ok(term);
        }
        match self.raft.get_entry(self.region.id, idx) {
            Ok(Some(e)) => Ok(e.term),
            Ok(None) => Err(self.storage_error(format!("entry {idx} is missing"))),
            Err(e) => Err(self.storage_error(e)),
        }
    }

    fn first_index(&self) -> ::raft::Result<u64> {
        Ok(self.truncated_index() + 1)
    }

    fn last_index(&self) -> ::raft::Result<u64> {
        Ok(self.raft_state.last_index)
    }

    /// A snapshot for peer `to` at least as new as `request_index`, if one is generated;
    /// otherwise asks the generator for one and answers "temporarily unavailable" (raft asks
    /// again later). A generated snapshot whose membership lacks `to` is not sent: a peer
    /// added after it was taken refuses it, and would be sent the same one for as long as
    /// the log is not compacted past it.
    fn snapshot(&self, request_index: u64, to: u64) -> ::raft::Result<Snapshot> {
        let unavailable = Err(::raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        let Some(generator) = &self.snap_gen else {
            return unavailable;
        };
        let mut state = self.snap_state.lock().unwrap_or_else(|e| e.into_inner());
        match &*state {
            SnapState::Ready(snap)
                if snap.get_metadata().index >= request_index.max(self.truncated_index())
                    && conf_state_holds(snap.get_metadata().get_conf_state(), to) =>
            {
                return Ok(snap.clone());
            }
            SnapState::Generating => return unavailable,
            _ => {}
        }
        if !self.region.get_peers().iter().any(|p| p.id == to) {
            // Not applied here yet: a snapshot taken now would not hold `to` either.
            return unavailable;
        }
        if generator.schedule(self.region.id, self.snap_state.clone()) {
            *state = SnapState::Generating;
        }
        unavailable
    }
}

/// Whether `to` is a member (voter or learner, incoming or outgoing) in `cs`.
fn conf_state_holds(cs: &ConfState, to: u64) -> bool {
    [cs.get_voters(), cs.get_learners(), cs.get_voters_outgoing(), cs.get_learners_next()]
        .iter()
        .any(|ids| ids.contains(&to))
}
