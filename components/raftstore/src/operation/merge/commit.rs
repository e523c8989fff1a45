//! CommitMerge: the source peers asking their local target to commit, the target leader's
//! proposal, the target's apply waiting for its local source (CatchUpLogs), applying it, and
//! the source peer's end.

use std::sync::Arc;

use engine::{keys, KvEngine, Mutable, RaftEngine, CF_META};
use local_reader::DelegateUpdate;
use proto::{
    eraftpb::Entry,
    metapb::Region,
    raft_cmdpb::{AdminCmdType, CommitMergeRequest, RaftCmdRequest, RaftCmdResponse},
    raft_serverpb::{MergeState, PeerState, RegionLocalState},
    Message,
};
use raft::GetEntriesContext;
use slog::{debug, error, info, warn};

use super::{check_whole_epoch, merged_region, region_state, COMMIT_MERGE_CONTEXT};
use crate::{
    batch::StoreContext,
    metrics::{ProposalKind, RaftEvent},
    msg::{ApplyMsg, CatchUpLogs, ExecResult, PeerMsg, Proposal, RaftCommand},
    operation::message::is_epoch_stale,
    raft::{apply::Apply, peer::Peer},
    transport::Transport,
    Error, Result,
};

/// What a source peer sees of its target on its own store.
enum TargetView {
    /// As the merge expects it: it can commit.
    Ready,
    /// Older than expected, or not here yet: wait.
    Behind,
    /// Changed or gone: it can never commit this merge.
    Cannot(String),
}

/// The committed CommitMerge entries a source's apply waits behind, and the proposals after.
pub(crate) struct WaitMerge {
    /// The source region waited for.
    pub(crate) source: u64,
    /// The CommitMerge entry and every entry after it, not applied yet.
    pub(crate) entries: Vec<Entry>,
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// The merge-check tick of a source peer (and the moment PrepareMerge applies): ask the
    /// local target to commit, or vote to roll back when it never can.
    pub(crate) fn on_merge_check_tick<T: Transport>(&mut self, ctx: &mut StoreContext<EK, ER, T>) {
        let Some(state) = self.merge.state().cloned() else { return };
        match self.view_target(ctx, state.get_target()) {
            TargetView::Ready => self.ask_target_to_commit(ctx, &state),
            TargetView::Behind => {}
            TargetView::Cannot(why) => {
                info!(self.logger, "the merge target cannot commit: voting to roll back"; "why" => why);
                self.vote_rollback(ctx, state.commit);
            }
        }
    }

    fn view_target<T>(&self, ctx: &StoreContext<EK, ER, T>, expected: &Region) -> TargetView {
        let meta = ctx.meta.lock().unwrap_or_else(|e| e.into_inner());
        if meta.region(self.region_id()).is_none() {
            return TargetView::Behind; // the target took this region in: it ends here soon
        }
        if let Some(local) = meta.region(expected.id) {
            let (have, want) = (local.get_region_epoch(), expected.get_region_epoch());
            return if is_epoch_stale(want, have) {
                TargetView::Cannot(format!("target epoch {have:?} is past {want:?}"))
            } else if have != want {
                TargetView::Behind
            } else {
                TargetView::Ready
            };
        }
        // Not here (or destroyed here): no proof either way. The target may have committed
        // the merge and had this store's peer removed after (a GC message), so this peer waits
        // rather than vote; a source left behind so is for stale-peer detection to find.
        TargetView::Behind
    }

    /// Sends CommitMerge, with this source's entries from `min_index` to the PrepareMerge, to
    /// the target's peer on this store; only a leading target proposes it.
    fn ask_target_to_commit<T>(&self, ctx: &StoreContext<EK, ER, T>, state: &MergeState) {
        fail::fail_point!("merge_ask_target", |_| {});
        let target = state.get_target();
        let Some(target_peer) =
            target.get_peers().iter().find(|p| p.store_id == self.peer.store_id)
        else {
            return;
        };
        let raft_log = &self.raft_group.raft.raft_log;
        let entries = match raft_log.slice(
            state.min_index,
            state.commit + 1,
            None,
            GetEntriesContext::empty(false),
        ) {
            Ok(entries) => entries,
            Err(e) => {
                warn!(self.logger, "the merge's entries are not in the log"; "err" => %e);
                return;
            }
        };
        let mut req = RaftCmdRequest::default();
        req.mut_header().region_id = target.id;
        req.mut_header().set_peer(target_peer.clone());
        req.mut_header().set_region_epoch(target.get_region_epoch().clone());
        let admin = req.mut_admin_request();
        admin.set_cmd_type(AdminCmdType::CommitMerge);
        admin.mut_commit_merge().set_source(self.region().clone());
        admin.mut_commit_merge().commit = state.commit;
        admin.mut_commit_merge().set_entries(entries.into());
        // Nobody waits: the next tick asks again until this peer is merged or rolled back.
        let (cmd, _) = RaftCommand::new(req);
        let _ = ctx.router.force_send(target.id, PeerMsg::RaftCommand(Box::new(cmd)));
    }

    /// A source asks this target to commit their merge: proposed if this peer leads and no
    /// CommitMerge of it is already on the way.
    pub(crate) fn propose_commit_merge<T>(
        &mut self,
        ctx: &StoreContext<EK, ER, T>,
        cmd: RaftCommand,
    ) {
        let source = cmd.request.get_admin_request().get_commit_merge().get_source().id;
        let res = self.check_commit_merge(ctx, &cmd.request).and_then(|()| {
            let data =
                cmd.request.write_to_bytes().map_err(|e| Error::InvalidRequest(e.to_string()))?;
            self.propose_entry(ProposalKind::Merge, |raft| {
                raft.propose(COMMIT_MERGE_CONTEXT.to_vec(), data)
            })
        });
        match res {
            Ok(index) => {
                info!(self.logger, "CommitMerge proposed"; "source" => source, "index" => index);
                self.merge.on_commit_proposed(source, index);
                self.on_proposed(index, ctx.clock.now());
                self.proposals.push_back(Proposal { index, term: self.term(), ch: cmd.ch });
            }
            Err(e) => cmd.ch.respond_error(e),
        }
    }

    fn check_commit_merge<T>(
        &self,
        ctx: &StoreContext<EK, ER, T>,
        req: &RaftCmdRequest,
    ) -> Result<()> {
        self.check_peer(req.get_header())?;
        if !self.is_leader() {
            return Err(Error::NotLeader { region_id: self.region_id(), leader: self.leader() });
        }
        check_whole_epoch(req, self.region())?;
        let cm = req.get_admin_request().get_commit_merge();
        if self.merge.commit_in_flight(cm.get_source().id, self.storage().applied_index()) {
            return Err(Error::ServerIsBusy("the merge is being committed".into()));
        }
        self.check_no_admin_in_flight()?;
        merged_region(self.region(), cm.get_source())?;
        check_merge_source_here(ctx, self.region(), cm)
    }

    /// This target applied CommitMerge: one `StoreMeta` lock takes the source's range away,
    /// marks its delegate pending-remove and gives this peer's delegate the merged region;
    /// then the source peer is told to go.
    pub(crate) fn on_commit_merge_applied<T>(
        &mut self,
        ctx: &mut StoreContext<EK, ER, T>,
        region: Region,
        source: Region,
    ) {
        let now = ctx.clock.now();
        self.raft_group.mut_store().set_region(region.clone());
        {
            let mut meta = ctx.meta.lock().unwrap_or_else(|e| e.into_inner());
            meta.remove_region(source.id);
            meta.set_region(region.clone());
            meta.mark_reader_pending_remove(source.id);
            if let Some(d) = meta.reader_mut(self.region_id(), self.peer_id()) {
                d.update(DelegateUpdate::Region(Arc::new(region.clone())), now);
            }
        }
        self.publish_region(&region);
        info!(self.logger, "CommitMerge applied"; "source" => source.id,
            "version" => region.get_region_epoch().version);
        ctx.counters.inc(RaftEvent::MergeCommitted);
        let _ = ctx.router.force_send(source.id, PeerMsg::MergedInto(Box::new(region)));
        self.split.force_check();
        if self.is_leader() {
            self.heartbeat_pd(ctx);
        }
    }

    /// The local target waits at CommitMerge for this source: answered at once if its
    /// PrepareMerge applied here, else once it has (the carried entries appended first if
    /// this peer lacks them).
    pub(crate) fn on_catch_up_logs<T>(&mut self, ctx: &StoreContext<EK, ER, T>, c: CatchUpLogs) {
        fail::fail_point!("merge_catch_up", |_| {});
        if self.merge.state().is_some_and(|s| s.commit == c.merge.commit) {
            return self.resume_target_apply(ctx, c.target_region_id);
        }
        info!(self.logger, "catching up for a merge"; "target" => c.target_region_id,
            "commit" => c.merge.commit, "applied" => self.storage().applied_index());
        self.merge.wait_catch_up(c.target_region_id, c.merge.commit);
        self.append_merge_entries(&c.merge);
    }

    /// Appends the entries a CommitMerge carries that this peer's log lacks, committed up to
    /// the PrepareMerge: they are the log its leader committed.
    fn append_merge_entries(&mut self, merge: &CommitMergeRequest) {
        let mut entries = merge.get_entries();
        let Some(first) = entries.first().map(|e| e.index) else { return };
        let raft = &mut self.raft_group.raft;
        let committed = raft.raft_log.committed;
        let mut prev = first - 1;
        if prev < committed {
            let skip = committed - prev;
            if skip >= entries.len() as u64 {
                return; // all committed here already: apply gets there on its own
            }
            entries = &entries[skip as usize..];
            prev = committed;
        }
        let Ok(prev_term) = raft.raft_log.term(prev) else {
            error!(self.logger, "cannot catch up for a merge: the log before the entries is gone";
                "index" => prev);
            return;
        };
        let have_all = entries.iter().all(|e| raft.raft_log.term(e.index).ok() == Some(e.term));
        if have_all {
            // In the log already, but maybe never to be committed by its own leader (merged
            // away meanwhile): the CommitMerge carrying them proves they are committed.
            if raft.raft_log.committed < merge.commit {
                raft.raft_log.commit_to(merge.commit);
            }
            return;
        }
        if raft.state == raft::StateRole::Leader {
            // A leader whose log differs from committed entries is a stale one: it must not
            // go on appending to a log about to be rewritten.
            let term = raft.term;
            raft.become_follower(term, raft::INVALID_ID);
        }
        let last_term = entries.last().map_or(0, |e| e.term);
        if last_term > raft.term {
            // As a follower appending them would have learned it; no vote was cast in it.
            raft.term = last_term;
            raft.vote = raft::INVALID_ID;
        }
        raft.raft_log.maybe_append(prev, prev_term, merge.commit, entries);
    }

    /// Tells the target's apply that this source applied its PrepareMerge.
    pub(crate) fn resume_target_apply<T>(&self, ctx: &StoreContext<EK, ER, T>, target: u64) {
        debug!(self.logger, "resuming the merge target's apply"; "target" => target);
        if ctx.apply.force_send(target, ApplyMsg::ResumeMerge).is_err() {
            warn!(self.logger, "the merge target's apply is gone"; "target" => target);
        }
    }

    /// The target took this source in: destroyed, keeping the data.
    pub(crate) fn on_merged_into<T: Transport>(
        &mut self,
        ctx: &mut StoreContext<EK, ER, T>,
        target: Region,
    ) {
        fail::fail_point!("merge_before_source_destroyed");
        info!(self.logger, "merged: destroying the source peer"; "target" => target.id,
            "target_version" => target.get_region_epoch().version);
        self.merge.on_merged(target);
        self.destroy(ctx);
    }
}

/// A CommitMerge must come from the source peer on this store, merging into `target` at its
/// `commit`, and carry that peer's own entries from `min_index` to `commit`: replicas that lag
/// append them to their source's log, so nothing else may ever be committed in their place.
fn check_merge_source_here<EK: KvEngine, ER: RaftEngine, T>(
    ctx: &StoreContext<EK, ER, T>,
    target: &Region,
    cm: &CommitMergeRequest,
) -> Result<()> {
    let source = cm.get_source().id;
    let invalid =
        |why: String| Err(Error::InvalidRequest(format!("CommitMerge of {source}: {why}")));
    let state = ctx.kv.get_msg_cf::<RegionLocalState>(CF_META, &keys::region_state_key(source))?;
    let Some(state) = state.filter(|s| s.get_state() == PeerState::Merging) else {
        return invalid("the source is not merging on this store".into());
    };
    let merge = state.get_merge_state();
    if merge.commit != cm.commit || merge.get_target().id != target.id {
        return invalid(format!(
            "the source merges into {} at {}",
            merge.get_target().id,
            merge.commit
        ));
    }
    if merge.get_target().get_region_epoch() != target.get_region_epoch() {
        return invalid("the target's epoch moved since the source prepared the merge".into());
    }
    let expected = merge.min_index..=merge.commit;
    let indexes = cm.get_entries().iter().map(|e| e.index);
    if !indexes.eq(expected) {
        return invalid("the entries are not the source's from min_index to commit".into());
    }
    for e in cm.get_entries() {
        if ctx.raft.get_entry(source, e.index)?.as_ref() != Some(e) {
            return invalid(format!("entry {} differs from the source's log", e.index));
        }
    }
    Ok(())
}

impl<EK: KvEngine> Apply<EK> {
    /// Whether `entry` is a CommitMerge whose source has not applied its PrepareMerge on this
    /// store: the CommitMerge it carries, then, for the source to catch up to.
    pub(crate) fn commit_merge_must_wait(&self, entry: &Entry) -> Option<CommitMergeRequest> {
        if entry.context != COMMIT_MERGE_CONTEXT {
            return None;
        }
        let req = RaftCmdRequest::parse_from_bytes(&entry.data).ok()?;
        if check_whole_epoch(&req, &self.region).is_err() {
            return None; // refused when executed
        }
        let cm = req.get_admin_request().get_commit_merge();
        let key = keys::region_state_key(cm.get_source().id);
        let state = self.kv.get_msg_cf::<RegionLocalState>(CF_META, &key).ok().flatten();
        match state {
            Some(s)
                if s.get_state() == PeerState::Merging
                    && s.get_merge_state().commit == cm.commit =>
            {
                None
            }
            Some(s) if s.get_state() == PeerState::Tombstone => {
                // Never expected: the source went without this merge (displaced by a snapshot
                // raft here took, then lost in a crash before it was written). Refusing the
                // merge would leave this replica without the source's range while its peers
                // have it; waiting keeps it from diverging.
                error!(self.logger, "CommitMerge waits for a source that is a tombstone here";
                    "source" => cm.get_source().id);
                Some(cm.clone())
            }
            Some(s) => {
                let past = s.get_region().get_region_epoch().version
                    >= cm.get_source().get_region_epoch().version;
                if past {
                    // Never expected: the source moved on without this merge. Waiting keeps
                    // this replica from diverging from those that applied it; say so loudly.
                    error!(self.logger, "CommitMerge waits for a source that is past the merge";
                        "source" => cm.get_source().id, "state" => ?s.get_state());
                }
                Some(cm.clone())
            }
            None => Some(cm.clone()),
        }
    }

    /// Applies CommitMerge: the range extended by the source's, the source a tombstone that
    /// names its target. The source's data stays: it is this region's now.
    pub(crate) fn apply_commit_merge(
        &mut self,
        req: &RaftCmdRequest,
        wb: &mut EK::WriteBatch,
        results: &mut Vec<ExecResult>,
    ) -> Result<RaftCmdResponse> {
        check_whole_epoch(req, &self.region)?;
        let cm = req.get_admin_request().get_commit_merge();
        let key = keys::region_state_key(cm.get_source().id);
        let state = self.kv.get_msg_cf::<RegionLocalState>(CF_META, &key)?;
        let Some(state) = state.filter(|s| {
            s.get_state() == PeerState::Merging && s.get_merge_state().commit == cm.commit
        }) else {
            return Err(Error::InvalidRequest(format!(
                "source region {} is not merging at {} here",
                cm.get_source().id,
                cm.commit
            )));
        };
        let target = state.get_merge_state().get_target();
        if target.id != self.region.id
            || target.get_region_epoch() != self.region.get_region_epoch()
        {
            return Err(Error::InvalidRequest(format!(
                "source region {} merges into {} at epoch {:?}, not this region's",
                cm.get_source().id,
                target.id,
                target.get_region_epoch()
            )));
        }
        let source = state.get_region().clone();
        let region = merged_region(&self.region, &source)?;
        let mut merge = state.get_merge_state().clone();
        merge.set_target(region.clone());
        let tombstone = region_state(PeerState::Tombstone, source.clone(), Some(merge));
        wb.put_msg_cf(CF_META, &key, &tombstone)?;
        let record = region_state(PeerState::Normal, region.clone(), None);
        wb.put_msg_cf(CF_META, &keys::region_state_key(region.id), &record)?;
        self.region = region.clone();
        let mut resp = RaftCmdResponse::default();
        resp.mut_admin_response().set_cmd_type(AdminCmdType::CommitMerge);
        results.push(ExecResult::CommitMerge { region, source });
        Ok(resp)
    }
}
