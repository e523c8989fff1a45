//! The apply side of one region: its apply state, its region as apply leaves it, and the
//! proposals waiting for their entries. Executing entries is in the feature modules: the
//! entry loop and writes in `operation/command.rs`, each admin command in its own.

use std::collections::VecDeque;

use engine::KvEngine;
use proto::{
    metapb::Region,
    raft_cmdpb::RaftCmdResponse,
    raft_serverpb::{MergeState, RaftApplyState},
};
use slog::Logger;

use crate::{
    msg::{error_response, CmdResponseSender, Proposal},
    operation::merge::WaitMerge,
    Error,
};

/// Responses to send once the write batch holding their effects is written.
pub type PendingResponses = Vec<(CmdResponseSender, RaftCmdResponse)>;

/// A region's apply state and the proposals waiting for their entries.
pub struct Apply<EK: KvEngine> {
    pub(crate) region: Region,
    pub(crate) kv: EK,
    pub(crate) apply_state: RaftApplyState,
    pub(crate) applied_term: u64,
    pub(crate) pending: VecDeque<Proposal>,
    /// Bytes and keys written since the last `ApplyRes`.
    pub(crate) written: (u64, u64),
    /// The merge this region is the source of, once PrepareMerge applied: only
    /// RollbackMerge is executed then.
    pub(crate) merging: Option<MergeState>,
    /// Entries held at a CommitMerge until the local source has caught up.
    pub(crate) wait_merge: Option<WaitMerge>,
    pub(crate) logger: Logger,
}

impl<EK: KvEngine> Apply<EK> {
    /// The apply side of `region`, starting from `apply_state`.
    pub fn new(region: Region, kv: EK, apply_state: RaftApplyState, logger: Logger) -> Self {
        let applied_term = apply_state.commit_term;
        Apply {
            region,
            kv,
            apply_state,
            applied_term,
            pending: VecDeque::new(),
            written: (0, 0),
            merging: None,
            wait_merge: None,
            logger,
        }
    }

    /// The region as apply has left it.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The kv engine.
    pub fn kv(&self) -> &EK {
        &self.kv
    }

    /// A region restarted as a merge source (its PrepareMerge applied before).
    pub fn set_merging(&mut self, state: Option<MergeState>) {
        self.merging = state;
    }

    /// Starts over from a snapshot's state; proposals still waiting can no longer be matched
    /// and answer `OutcomeUnknown` as they drop, and entries held for a merge are replaced.
    pub fn reset(&mut self, region: Region, apply_state: RaftApplyState) {
        self.applied_term = apply_state.commit_term;
        self.region = region;
        self.apply_state = apply_state;
        self.pending.clear();
        self.merging = None;
        self.wait_merge = None;
    }

    /// Hands `resp` to the proposal of the entry at `index` in `term`; a proposal whose index
    /// was taken by an entry of another term lost its place.
    pub(crate) fn answer(
        &mut self,
        index: u64,
        term: u64,
        resp: RaftCmdResponse,
        out: &mut PendingResponses,
    ) {
        let mut resp = Some(resp);
        while let Some(p) = self.pending.front() {
            if p.index > index {
                break;
            }
            let p = self.pending.pop_front().expect("front exists");
            if p.index == index && p.term == term {
                out.push((p.ch, resp.take().unwrap_or_default()));
            } else {
                out.push((p.ch, error_response(&Error::StaleCommand)));
            }
        }
    }
}
