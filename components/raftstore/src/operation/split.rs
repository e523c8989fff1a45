//! Region split, its whole life cycle: check, ask for ids, propose, apply, on-applied.
//!
//! ```text
//! leader tick: written ≥ region_split_check_diff since the last check
//!   ──▶ split-check worker: bounded scan of the region ──▶ keys at split_size / split_keys
//!       steps (at most batch_split_limit) ──▶ SplitRegion          (or a manual split_region)
//!   ──▶ leader: epoch and keys valid ──▶ PD worker: ask_batch_split (new region, peer ids)
//!   ──▶ ProposeSplit ──▶ leader proposes BatchSplit (entry context "split")
//! committed (leader): lease expired; no renewal until it applies; ReadIndex reads wait for
//!   apply anyway (their index is past the split) and then see the new epoch
//! apply: epoch and keys checked; the parent keeps the rightmost range; version += new
//!   regions; region states of the new regions written unless the store already has them
//! on-applied (peer): StoreMeta regions, ranges and the parent's delegate in one lock (its
//!   TrackVer bumps; its remote lease was expired at commit); a peer per new region, no
//!   lease, campaigning at once on the parent leader's store; messages that arrived for the
//!   new regions before they existed here are replayed; the leader reports to PD
//! ```

use std::sync::Arc;

use engine::{keys, KvEngine, Mutable, RaftEngine, CF_META};
use local_reader::DelegateUpdate;
use proto::{
    metapb::Region,
    raft_cmdpb::{AdminCmdType, BatchSplitRequest, RaftCmdRequest, RaftCmdResponse, SplitRequest},
    raft_serverpb::{PeerState, RegionLocalState},
    Message,
};
use slog::{info, warn};

use crate::{
    batch::StoreContext,
    metrics::ProposalKind,
    msg::{CmdResponseSender, ExecResult, PeerMsg, Proposal, ProposeSplit, SplitRegion},
    operation::{command::check_region_epoch, life::register_peer},
    raft::{apply::Apply, peer::Peer, storage::initial_apply_state},
    worker::{pd::PdTask, split_check::SplitCheckTask},
    Error, Result,
};

/// Marks a BatchSplit entry, so a leader sees a split commit without decoding entries.
pub(crate) const SPLIT_CONTEXT: &[u8] = b"split";

/// Checks split keys against `region`: at least one, in order, strictly inside the range.
pub fn check_split_keys(region: &Region, split_keys: &[Vec<u8>]) -> Result<()> {
    if split_keys.is_empty() {
        return Err(Error::InvalidRequest("a split needs at least one key".into()));
    }
    let mut prev: &[u8] = &region.start_key;
    for key in split_keys {
        if key.is_empty() || key.as_slice() <= prev {
            return Err(Error::InvalidRequest(format!(
                "split key {} is not after {} (keys must be in order, inside the region)",
                keys::escape(key),
                keys::escape(prev)
            )));
        }
        prev = key;
    }
    let last = split_keys.last().expect("not empty");
    if !region.end_key.is_empty() && last.as_slice() >= region.end_key.as_slice() {
        return Err(Error::KeyNotInRegion { key: last.clone(), region: Box::new(region.clone()) });
    }
    Ok(())
}

/// Applies BatchSplit to `region`: the regions it becomes, in key order, and the parent's
/// part. Region states go into `wb`; a new region this store already knows (created by a
/// snapshot, or destroyed) keeps its state.
fn exec_batch_split<EK: KvEngine>(
    kv: &EK,
    wb: &mut EK::WriteBatch,
    region: &Region,
    req: &RaftCmdRequest,
) -> Result<(Vec<Region>, Region)> {
    check_region_epoch(req, region)?;
    let splits = req.get_admin_request().get_splits();
    let split_keys: Vec<Vec<u8>> =
        splits.get_requests().iter().map(|r| r.split_key.clone()).collect();
    check_split_keys(region, &split_keys)?;
    if splits.get_requests().iter().any(|r| r.new_peer_ids.len() != region.peers.len()) {
        return Err(Error::InvalidRequest("a split needs one new peer id per peer".into()));
    }
    let mut epoch = region.get_region_epoch().clone();
    epoch.version += split_keys.len() as u64;
    let mut bounds = vec![region.start_key.clone()];
    bounds.extend(split_keys);
    bounds.push(region.end_key.clone());
    let mut new_ids = splits.get_requests().iter();
    let mut regions = Vec::with_capacity(bounds.len() - 1);
    for (i, pair) in bounds.windows(2).enumerate() {
        let mut r = Region::default();
        r.start_key = pair[0].clone();
        r.end_key = pair[1].clone();
        r.set_region_epoch(epoch.clone());
        let derived = if splits.right_derive { i == bounds.len() - 2 } else { i == 0 };
        if derived {
            r.id = region.id;
            r.set_peers(region.get_peers().to_vec().into());
        } else {
            let ids: &SplitRequest = new_ids.next().expect("one request per new region");
            r.id = ids.new_region_id;
            for (p, id) in region.get_peers().iter().zip(&ids.new_peer_ids) {
                let mut peer = p.clone();
                peer.id = *id;
                r.mut_peers().push(peer);
            }
        }
        regions.push(r);
    }
    for r in &regions {
        let key = keys::region_state_key(r.id);
        if r.id != region.id && kv.get_msg_cf::<RegionLocalState>(CF_META, &key)?.is_some() {
            continue; // this store has it already: never overwrite its state
        }
        let mut state = RegionLocalState::default();
        state.set_state(PeerState::Normal);
        state.set_region(r.clone());
        wb.put_msg_cf(CF_META, &key, &state)?;
        if r.id != region.id {
            wb.put_msg_cf(CF_META, &keys::apply_state_key(r.id), &initial_apply_state())?;
        }
    }
    let derived = regions.iter().find(|r| r.id == region.id).expect("derived").clone();
    Ok((regions, derived))
}

/// What a peer keeps of splits: a committed split not applied yet, the writes since the last
/// split check, and the regions of the last split applied.
#[derive(Debug)]
pub struct SplitState {
    /// Index of a committed split not applied yet (a leader takes no lease meanwhile).
    pending: Option<u64>,
    /// Bytes written since the last split check.
    written: u64,
    /// The regions of the last split applied, for `EpochNotMatch` answers.
    last_regions: Vec<Region>,
    /// The region's size and keys as the split checker last measured them.
    approximate: Option<(u64, u64)>,
}

impl SplitState {
    /// A new peer's: no split pending, and a check due (`check_diff` counts as written), so a
    /// new leader checks once.
    pub fn new(check_diff: u64) -> Self {
        SplitState {
            pending: None,
            written: check_diff,
            last_regions: Vec::new(),
            approximate: None,
        }
    }

    /// The index of a committed split that has not applied yet.
    pub fn pending(&self) -> Option<u64> {
        self.pending
    }

    /// A split entry at `index` committed.
    pub fn on_committed(&mut self, index: u64) {
        self.pending = Some(self.pending.map_or(index, |i| i.max(index)));
    }

    /// Apply reached `applied` and wrote `bytes`: a pending split at or below it is done
    /// (applied, or refused by apply).
    pub fn on_applied(&mut self, applied: u64, bytes: u64) {
        self.written += bytes;
        if self.pending.is_some_and(|i| i <= applied) {
            self.pending = None;
        }
    }

    /// Whether a split check is due (at least `check_diff` bytes written since the last).
    pub fn check_due(&self, check_diff: u64) -> bool {
        self.written >= check_diff
    }

    /// Whether a split check is due (at least `check_diff` bytes written since the last):
    /// if so, the count starts over.
    pub fn take_check(&mut self, check_diff: u64) -> bool {
        let due = self.written >= check_diff;
        if due {
            self.written = 0;
        }
        due
    }

    /// A split applied into `regions`: the size is unknown until measured again.
    pub fn on_split(&mut self, regions: Vec<Region>) {
        self.last_regions = regions;
        self.approximate = None;
        self.force_check();
    }

    /// The next split-check tick checks, whatever was written (the region changed shape, or
    /// this peer began to lead).
    pub fn force_check(&mut self) {
        self.written = self.written.max(u64::MAX / 2);
    }

    /// The split checker measured `size` bytes and `keys` keys.
    pub fn set_approximate(&mut self, size: u64, keys: u64) {
        self.approximate = Some((size, keys));
    }

    /// The last measured size and keys.
    pub fn approximate(&self) -> Option<(u64, u64)> {
        self.approximate
    }

    /// The regions of the last split applied.
    pub fn last_regions(&self) -> &[Region] {
        &self.last_regions
    }
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// The split-check tick: a leader whose region took enough writes since the last check
    /// asks the split-check worker to look.
    pub(crate) fn on_split_check_tick<T>(&mut self, ctx: &StoreContext<EK, ER, T>) {
        let cfg = &ctx.cfg;
        if !self.is_leader() || self.split.pending().is_some() || self.merge.is_merging() {
            return;
        }
        if !self.split.take_check(cfg.region_split_check_diff) {
            return;
        }
        let _ = ctx.split_check.schedule(SplitCheckTask {
            region: self.region().clone(),
            max_size: cfg.region_max_size,
            split_size: cfg.region_split_size,
            max_keys: cfg.region_max_keys,
            split_keys: cfg.region_split_keys,
            limit: cfg.batch_split_limit as usize,
        });
    }

    /// A split asked for (by the checker or a caller): checked, then ids from the placement
    /// driver.
    pub(crate) fn on_split_region<T>(&mut self, ctx: &StoreContext<EK, ER, T>, split: SplitRegion) {
        if let Err(e) = self.check_split(&split) {
            if let Some(ch) = split.ch {
                ch.respond_error(e);
            }
            return;
        }
        let ask = PdTask::AskBatchSplit { region: self.region().clone(), split };
        if let Err(PdTask::AskBatchSplit { split, .. }) = ctx.pd.schedule(ask) {
            if let Some(ch) = split.ch {
                ch.respond_error(Error::Unavailable("the placement driver worker is gone".into()));
            }
        }
    }

    fn check_split(&self, split: &SplitRegion) -> Result<()> {
        if !self.is_leader() {
            return Err(Error::NotLeader { region_id: self.region_id(), leader: self.leader() });
        }
        if split.region_epoch.version != self.region().get_region_epoch().version {
            return Err(self.epoch_not_match("the split was asked for in another version"));
        }
        if self.split.pending().is_some() {
            return Err(Error::ServerIsBusy("a split is in progress".into()));
        }
        if self.merge.blocks_proposals() {
            return Err(Error::ServerIsBusy("the region is merging".into()));
        }
        check_split_keys(self.region(), &split.split_keys)
    }

    /// Proposes BatchSplit with the placement driver's ids.
    pub(crate) fn on_propose_split<T>(&mut self, ctx: &StoreContext<EK, ER, T>, p: ProposeSplit) {
        let ProposeSplit { split, ids } = p;
        let res = self.check_split(&split).and_then(|_| {
            if ids.len() != split.split_keys.len() {
                return Err(Error::InvalidRequest("one set of ids per split key".into()));
            }
            let mut req = RaftCmdRequest::default();
            req.mut_header().region_id = self.region_id();
            req.mut_header().set_region_epoch(self.region().get_region_epoch().clone());
            let mut batch = BatchSplitRequest::default();
            batch.right_derive = true;
            for (key, id) in split.split_keys.iter().zip(ids) {
                let mut r = SplitRequest::default();
                r.split_key = key.clone();
                r.new_region_id = id.new_region_id;
                r.new_peer_ids = id.new_peer_ids;
                batch.mut_requests().push(r);
            }
            req.mut_admin_request().set_cmd_type(AdminCmdType::BatchSplit);
            req.mut_admin_request().set_splits(batch);
            let data = req.write_to_bytes().map_err(|e| Error::InvalidRequest(e.to_string()))?;
            self.propose_entry(ProposalKind::Split, |raft| {
                raft.propose(SPLIT_CONTEXT.to_vec(), data)
            })
        });
        let ch = split.ch.unwrap_or_else(|| CmdResponseSender::channel().0);
        match res {
            Ok(index) => {
                info!(self.logger, "split proposed"; "index" => index, "keys" => split.split_keys.len());
                self.on_proposed(index, ctx.clock.now());
                self.proposals.push_back(Proposal { index, term: self.term(), ch });
            }
            Err(e) => {
                ctx.counters.rejected(&e);
                ch.respond_error(e);
            }
        }
    }

    /// A split committed at `index`: readers on other threads must not use this lease any
    /// more (the new regions may soon have leaders of their own), and nothing renews it until
    /// the split applies.
    pub(crate) fn on_split_committed(&mut self, index: u64) {
        self.split.on_committed(index);
        self.lease.expire();
    }

    /// The split applied: see the module docs.
    pub(crate) fn on_split_applied<T>(
        &mut self,
        ctx: &mut StoreContext<EK, ER, T>,
        regions: Vec<Region>,
        derived: Region,
    ) {
        // A crash here: the split is on disk, its new peers exist nowhere yet.
        fail::fail_point!("split_before_new_peers");
        let was_leader = self.is_leader();
        let now = ctx.clock.now();
        self.raft_group.mut_store().set_region(derived.clone());
        self.lease.expire_remote_lease();
        self.split.on_split(regions.clone());
        let mut created = Vec::new();
        let mut displaced = Vec::new();
        {
            let mut meta = ctx.meta.lock().unwrap_or_else(|e| e.into_inner());
            meta.set_region(derived.clone());
            if let Some(d) = meta.reader_mut(self.region_id(), self.peer_id()) {
                d.update(DelegateUpdate::Region(Arc::new(derived.clone())), now);
                d.update(DelegateUpdate::Lease(None), now);
            }
            for region in regions.iter().filter(|r| r.id != derived.id) {
                if meta.region(region.id).is_some() || ctx.router.contains(region.id) {
                    continue; // already here (by snapshot)
                }
                match self.new_split_peer(ctx, region) {
                    Ok(Some(peer)) => {
                        meta.set_region(region.clone());
                        // A newer snapshot taken here over its range (this peer was in its
                        // way, the split applied before it went): it is in the way too.
                        if let Some(by) = meta.promise_over(region) {
                            displaced.push((region.id, by));
                        }
                        created.push(peer);
                    }
                    Ok(None) => {}
                    Err(e) => warn!(self.logger, "cannot create a split peer";
                        "region_id" => region.id, "err" => %e),
                }
            }
        }
        self.publish_region_after_split(&derived);
        info!(self.logger, "split applied"; "regions" => regions.len(), "created" => created.len());
        for mut peer in created {
            let region_id = peer.region_id();
            if was_leader {
                let _ = peer.raft_group.campaign();
            }
            register_peer(ctx, peer);
            let pending =
                ctx.meta.lock().unwrap_or_else(|e| e.into_inner()).take_pending_msgs(region_id);
            for msg in pending {
                let _ = ctx.router.force_send(region_id, PeerMsg::RaftMessage(Box::new(msg)));
            }
        }
        for (region_id, by) in displaced {
            let _ = ctx.router.force_send(region_id, PeerMsg::DisplacedBySnapshot(Box::new(by)));
        }
        if was_leader {
            let _ = ctx.pd.schedule(PdTask::ReportBatchSplit { regions });
            self.heartbeat_pd(ctx);
        }
    }

    /// A peer for a new region on this store, unless the store destroyed it before.
    fn new_split_peer<T>(
        &self,
        ctx: &StoreContext<EK, ER, T>,
        region: &Region,
    ) -> Result<Option<Peer<EK, ER>>> {
        let state: Option<RegionLocalState> =
            ctx.kv.get_msg_cf(CF_META, &keys::region_state_key(region.id))?;
        if state.is_some_and(|s| s.get_state() == PeerState::Tombstone) {
            return Ok(None);
        }
        // No vote refusal after a restart here: this peer did not exist before the split
        // applied on this store, so it backed no lease (messages for it were only kept).
        let peer = Peer::new(
            &ctx.cfg,
            self.peer.store_id,
            ctx.kv.clone(),
            ctx.raft.clone(),
            region.clone(),
            ctx.snap_gen.clone(),
            &ctx.logger,
        )?;
        Ok(Some(peer))
    }

    /// An `EpochNotMatch` with the current region and, after a split, its siblings, so a
    /// client routes again at once.
    pub(crate) fn epoch_not_match(&self, msg: &str) -> Error {
        let mut regions = vec![self.region().clone()];
        regions
            .extend(self.split.last_regions().iter().filter(|r| r.id != self.region_id()).cloned());
        Error::EpochNotMatch { msg: msg.to_string(), regions }
    }

    /// Checks a request's epoch against the region; the error carries the split siblings.
    pub(crate) fn check_epoch(&self, req: &RaftCmdRequest) -> Result<()> {
        check_region_epoch(req, self.region()).map_err(|e| match e {
            Error::EpochNotMatch { msg, .. } => self.epoch_not_match(&msg),
            e => e,
        })
    }
}

impl<EK: KvEngine> Apply<EK> {
    /// Applies `BatchSplit`: the new regions' states into `wb`, this side keeps its part.
    pub(crate) fn apply_batch_split(
        &mut self,
        req: &RaftCmdRequest,
        wb: &mut EK::WriteBatch,
        results: &mut Vec<ExecResult>,
    ) -> Result<RaftCmdResponse> {
        let (regions, derived) = exec_batch_split(&self.kv, wb, &self.region, req)?;
        self.region = derived.clone();
        let mut resp = RaftCmdResponse::default();
        resp.mut_admin_response().set_cmd_type(AdminCmdType::BatchSplit);
        resp.mut_admin_response().mut_splits().set_regions(regions.clone().into());
        results.push(ExecResult::Split { regions, derived });
        Ok(resp)
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;

    #[test]
    fn a_split_is_pending_from_its_commit_until_apply_passes_it() {
        let mut s = SplitState::new(100);
        assert_eq!(s.pending(), None);
        s.on_committed(7);
        s.on_committed(5); // an older one committing later does not move it back
        assert_eq!(s.pending(), Some(7));
        s.on_applied(6, 0);
        assert_eq!(s.pending(), Some(7), "apply has not reached it");
        s.on_applied(7, 0);
        assert_eq!(s.pending(), None);
    }

    #[test]
    fn a_check_is_due_once_enough_was_written_since_the_last() {
        let mut s = SplitState::new(100);
        assert!(s.take_check(100), "a new peer checks once");
        assert!(!s.take_check(100));
        s.on_applied(1, 60);
        assert!(!s.take_check(100));
        s.on_applied(2, 40);
        assert!(s.take_check(100));
        assert!(!s.take_check(100), "the count started over");
    }

    #[test]
    fn the_last_split_is_remembered() {
        let mut s = SplitState::new(1);
        let regions =
            vec![Region { id: 1, ..Default::default() }, Region { id: 2, ..Default::default() }];
        s.on_split(regions.clone());
        assert_eq!(s.last_regions(), regions.as_slice());
    }
}
