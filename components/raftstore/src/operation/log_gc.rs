//! Raft log GC: the leader proposes `CompactLog` on its tick (`operation/tick.rs`); every peer
//! applies it by moving its truncated state, then deletes the compacted entries from its raft
//! engine.
//!
//! The leader compacts applied entries that every peer already has. When more than
//! `raft_log_gc_count_limit` applied entries pile up it compacts past lagging peers too; they
//! then catch up by snapshot.
//!
//! The log's tail also lives in memory (`raft/entry_cache.rs`) until it is applied here and,
//! on a leader, replicated to every follower: after each apply result and on the GC tick the
//! cache lets go of what is behind that point, so an idle peer holds no entries. (`raft_log_gc_size_limit` is validated but not yet measured: the
//! peer does not track the log's byte size.)
//!
//! The deletes wait for the kv engine (`PendingLogGc`): the apply state that moved the
//! truncated index is written there without a sync, the deletes go with a synced raft-log
//! batch, and a power loss between the two would leave a store whose apply state points
//! below a log that is gone. So with `sync_log` a store poller syncs the kv engine's WAL,
//! at most once per `raft_log_gc_tick_interval`, and only then writes the deletes that
//! waited (TiKV likewise deletes only what a persisted apply state covers). A poller that
//! stops writes what waits on its way out (`StoreHandler`'s drop).
//!
//! ```text
//! apply: CompactLog → apply state (kv, no sync) → ApplyRes → peer: PendingLogGc.push
//! store round end: interval passed? kv.sync_wal() → cuts into the round's raft batch → consume
//! ```

use engine::{KvEngine, RaftEngine, RaftLogBatch};
use proto::{
    raft_cmdpb::{AdminCmdType, AdminRequest, RaftCmdRequest, RaftCmdResponse},
    raft_serverpb::RaftApplyState,
    Message,
};
use slog::{debug, warn, Logger};

use crate::{
    metrics::ProposalKind,
    raft::{apply::Apply, peer::Peer},
    Config, Error, Result,
};

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// The log GC tick, and a leader about to sleep: a leader compacts what every peer has
    /// applied (or, past `raft_log_gc_count_limit`, what it applied itself). Returns whether
    /// it proposed a compaction.
    pub(crate) fn propose_log_gc(&mut self, cfg: &Config) -> bool {
        if !self.is_leader() || self.merge.blocks_proposals() {
            return false; // a merge carries entries from its min_index: keep them
        }
        let first = self.storage().truncated_index() + 1;
        let replicated =
            self.raft_group.raft.prs().iter().map(|(_, pr)| pr.matched).min().unwrap_or(0);
        let applied = self.storage().applied_index();
        let compact_index = if applied + 1 - first >= cfg.raft_log_gc_count_limit {
            applied // lagging peers catch up by snapshot
        } else {
            replicated.min(applied)
        };
        if compact_index < first || compact_index + 1 - first < cfg.raft_log_gc_threshold {
            return false;
        }
        let Ok(compact_term) = self.raft_group.raft.raft_log.term(compact_index) else {
            return false;
        };
        let mut req = RaftCmdRequest::default();
        req.mut_header().region_id = self.region_id();
        req.mut_header().set_region_epoch(self.region().get_region_epoch().clone());
        let mut admin = AdminRequest::default();
        admin.set_cmd_type(AdminCmdType::CompactLog);
        admin.mut_compact_log().compact_index = compact_index;
        admin.mut_compact_log().compact_term = compact_term;
        req.set_admin_request(admin);
        match req.write_to_bytes() {
            Ok(data) => {
                debug!(self.logger, "proposing log gc"; "compact_index" => compact_index);
                // Nobody waits for the answer: a dropped proposal is retried next tick.
                if self.raft_group.propose(vec![], data).is_ok() {
                    self.proposals_made[ProposalKind::CompactLog as usize] += 1;
                    return true;
                }
                false
            }
            Err(e) => {
                warn!(self.logger, "cannot encode CompactLog"; "err" => %e);
                false
            }
        }
    }

    /// Lets the log's in-memory tail go up to what nothing is likely to read again: entries
    /// applied here and, on a leader, replicated to every follower. (A later read of them
    /// goes to the raft engine.)
    pub(crate) fn compact_entry_cache(&mut self) {
        let mut keep_from = self.storage().applied_index() + 1;
        if self.is_leader() {
            let replicated = self.raft_group.raft.prs().iter().map(|(_, pr)| pr.matched).min();
            keep_from = keep_from.min(replicated.map_or(keep_from, |m| m + 1));
        }
        self.raft_group.mut_store().compact_entry_cache(keep_from);
    }

    /// The apply side moved the truncated index from `old` to the one in the storage: the
    /// compacted entries are deleted once the kv engine holds that apply state durably
    /// (`PendingLogGc`). Nothing reads below the truncated index meanwhile.
    pub(crate) fn on_log_compacted(&mut self, old_truncated: u64, pending: &mut PendingLogGc) {
        let new_truncated = self.storage().truncated_index();
        if new_truncated > old_truncated {
            pending.cuts.push((self.region_id(), old_truncated + 1, new_truncated + 1));
        }
    }
}

/// A store poller's log GC deletes (region, from, to) whose apply states may not be durable
/// yet, and when it last made them so.
#[derive(Debug, Default)]
pub(crate) struct PendingLogGc {
    cuts: Vec<(u64, u64, u64)>,
    /// (Not the store's `Clock`: leases run on that, and a test may stop it.)
    last_sync: Option<std::time::Instant>,
}

impl PendingLogGc {
    /// Moves the waiting deletes into `batch` (the round's raft-log write), if the kv
    /// engine's WAL holds their apply states durably: without `sync_log` nothing is synced
    /// and they go at once; with it, at most once per `every` a sync of the kv WAL (which
    /// holds every apply state reported so far: apply writes before it reports) lets them go.
    pub(crate) fn release<EK: KvEngine, B: RaftLogBatch>(
        &mut self,
        kv: &EK,
        sync_log: bool,
        every: std::time::Duration,
        batch: &mut B,
        logger: &Logger,
    ) {
        if self.cuts.is_empty() {
            return;
        }
        if sync_log {
            let now = std::time::Instant::now();
            if self.last_sync.is_some_and(|at| now.duration_since(at) < every) {
                return;
            }
            #[cfg(feature = "failpoints")]
            let synced = injected_kv_sync_failure().and_then(|()| kv.sync_wal());
            #[cfg(not(feature = "failpoints"))]
            let synced = kv.sync_wal();
            self.last_sync = Some(now); // a failed sync is retried an interval later
            if let Err(e) = synced {
                warn!(logger, "kv engine sync failed: raft log gc waits"; "err" => %e);
                return;
            }
        }
        for (region_id, from, to) in self.cuts.drain(..) {
            if let Err(e) = batch.cut_logs(region_id, from, to) {
                // The entries stay for good; nothing reads below the truncated index.
                warn!(logger, "raft log gc failed"; "region_id" => region_id, "err" => %e);
            }
        }
    }
}

/// Fail point `kv_sync_wal_error`: the kv engine's WAL sync fails.
#[cfg(feature = "failpoints")]
fn injected_kv_sync_failure() -> std::result::Result<(), engine::Error> {
    fail::fail_point!("kv_sync_wal_error", |_| Err(engine::Error::Engine("injected".into())));
    Ok(())
}

/// Applies `CompactLog`: moves the truncated state forward, never past what was applied
/// before this entry. An older compaction than the current one is a no-op.
fn exec_compact_log(req: &AdminRequest, state: &mut RaftApplyState) -> Result<()> {
    let c = req.get_compact_log();
    if c.compact_index <= state.get_truncated_state().index {
        return Ok(());
    }
    if c.compact_index > state.applied_index {
        return Err(Error::InvalidRequest(format!(
            "compact index {} is beyond applied index {}",
            c.compact_index, state.applied_index
        )));
    }
    state.mut_truncated_state().index = c.compact_index;
    state.mut_truncated_state().term = c.compact_term;
    Ok(())
}

impl<EK: KvEngine> Apply<EK> {
    /// Applies `CompactLog` to the apply state (written with it at the end of the task).
    pub(crate) fn apply_compact_log(&mut self, req: &AdminRequest) -> Result<RaftCmdResponse> {
        exec_compact_log(req, &mut self.apply_state)?;
        let mut resp = RaftCmdResponse::default();
        resp.mut_admin_response().set_cmd_type(AdminCmdType::CompactLog);
        Ok(resp)
    }
}
