//! Region merge, its whole life cycle: a source region hands its range to an adjacent target.
//!
//! ```text
//! PD merge checker ──Operator::Merge(target)──▶ source leader
//!   PrepareMerge proposed (checks: sibling, same stores, no snapshot pending, log gap ≤
//!   merge_max_log_gap without admin or conf change); every later proposal refused
//! committed (seen before the ready's messages go out): lease suspect, remote lease expired,
//!   reads failed; ReadIndex and follower reads refused from now on
//! applied (every source peer): version + 1, conf_ver + 1, state Merging {min_index, target,
//!   commit}; the apply side takes nothing but RollbackMerge
//! merge-check tick (every source peer): local target as expected ──▶ CommitMerge (with the
//!   source's entries min_index..=commit) to the local target peer, proposed if it leads;
//!   local target changed or gone ──▶ vote for rollback (to the source leader)
//! target apply at CommitMerge: local source applied PrepareMerge? no ──▶ wait, CatchUpLogs
//!   to the source peer (append the carried entries, apply them) ──▶ ResumeMerge
//!   then: range extended, version = max(source, target) + 1, source Tombstone (with its
//!   target); on-applied: StoreMeta in one lock (source range gone, source delegate
//!   pending-remove, target delegate updated) ──▶ MergedInto to the source peer, which is
//!   destroyed keeping the data (its delegate goes only then)
//! RollbackMerge: proposed by the source leader once a quorum of source peers voted for it;
//!   version + 1, Normal, proposals and reads served again
//! ```
//!
//! Why reads stop at the PrepareMerge commit: once any source peer applies it, the target can
//! commit the merge and take writes to the source's keys; a source leader still reading on its
//! lease would miss them (TiKV #8034). Why only a quorum rolls back: a single peer may see its
//! local target change because that target already took the merge in.

mod commit;
mod prepare;
mod rollback;

pub(crate) use self::commit::WaitMerge;

use std::collections::HashSet;

use proto::{
    metapb::Region,
    raft_cmdpb::RaftCmdRequest,
    raft_serverpb::{MergeState, RegionLocalState},
};

use crate::{Error, Result};

/// Marks a PrepareMerge entry, so a peer sees it commit without decoding entries.
pub(crate) const PREPARE_MERGE_CONTEXT: &[u8] = b"prepare_merge";
/// Marks a CommitMerge entry, so the apply side checks its source before executing it.
pub(crate) const COMMIT_MERGE_CONTEXT: &[u8] = b"commit_merge";

/// What a peer keeps of merges, as a source and as a target.
#[derive(Debug, Default)]
pub struct MergeFlow {
    /// Index of a PrepareMerge this leader proposed, not applied yet.
    prepare_proposed: Option<u64>,
    /// Index of a PrepareMerge seen committed, not applied yet.
    prepare_committed: Option<u64>,
    /// The merge, once PrepareMerge applied here: until it rolls back or the peer goes.
    state: Option<MergeState>,
    /// Source peers (ids) that voted to roll the merge back (on the leader).
    rollback_votes: HashSet<u64>,
    /// Index of a RollbackMerge this leader proposed.
    rollback_proposed: Option<u64>,
    /// A local target waits for this peer to apply its PrepareMerge: (target region, commit).
    catch_up: Option<(u64, u64)>,
    /// As a target leader: the CommitMerge proposed for (source region, at index).
    commit_proposed: Option<(u64, u64)>,
    /// The merged region this peer was merged into: destroying it keeps the data.
    merged_into: Option<Region>,
    /// As a target: the source whose catch-up this peer's apply is holding entries for.
    holding_for: Option<u64>,
}

impl MergeFlow {
    /// The flow of a peer restarted with its merge state on disk.
    pub fn restore(state: MergeState) -> Self {
        MergeFlow { state: Some(state), ..Default::default() }
    }

    /// The merge this source applied, if any.
    pub fn state(&self) -> Option<&MergeState> {
        self.state.as_ref()
    }

    /// Whether the region is (about to be) a merge source: PrepareMerge committed or applied.
    /// No read is served then.
    pub fn is_merging(&self) -> bool {
        self.prepare_committed.is_some() || self.state.is_some()
    }

    /// Whether proposals are refused: from the PrepareMerge proposal on.
    pub fn blocks_proposals(&self) -> bool {
        self.prepare_proposed.is_some() || self.is_merging()
    }

    /// This leader proposed PrepareMerge at `index`.
    pub fn on_prepare_proposed(&mut self, index: u64) {
        self.prepare_proposed = Some(index);
    }

    /// A PrepareMerge at `index` committed.
    pub fn on_prepare_committed(&mut self, index: u64) {
        self.prepare_committed = Some(index);
    }

    /// PrepareMerge applied: the merge is on.
    pub fn on_prepare_applied(&mut self, state: MergeState) {
        self.prepare_proposed = None;
        self.prepare_committed = None;
        self.rollback_votes.clear();
        self.rollback_proposed = None;
        self.state = Some(state);
    }

    /// Apply passed `applied`: a PrepareMerge at or below it that left no merge state was
    /// refused by apply, and a RollbackMerge likewise.
    pub fn on_applied(&mut self, applied: u64) {
        let passed = |i: &mut Option<u64>| {
            if i.is_some_and(|i| i <= applied) {
                *i = None;
            }
        };
        if self.state.is_none() {
            passed(&mut self.prepare_proposed);
            passed(&mut self.prepare_committed);
        }
        passed(&mut self.rollback_proposed);
    }

    /// This peer stopped leading: what it proposed is out of its hands (if it commits, apply
    /// says so), and the votes it gathered count for nothing.
    pub fn on_leadership_lost(&mut self) {
        self.prepare_proposed = None;
        self.rollback_votes.clear();
        self.rollback_proposed = None;
        self.commit_proposed = None;
    }

    /// Peer `voter` votes to roll back the merge at `commit`; true once `voters` has a quorum
    /// of votes and no rollback is proposed yet.
    pub fn vote_rollback(&mut self, voter: u64, commit: u64, voters: &[u64]) -> bool {
        if self.state.as_ref().is_none_or(|s| s.commit != commit) || !voters.contains(&voter) {
            return false;
        }
        self.rollback_votes.insert(voter);
        let votes = voters.iter().filter(|v| self.rollback_votes.contains(v)).count();
        votes > voters.len() / 2 && self.rollback_proposed.is_none()
    }

    /// This leader proposed RollbackMerge at `index`.
    pub fn on_rollback_proposed(&mut self, index: u64) {
        self.rollback_proposed = Some(index);
    }

    /// RollbackMerge applied: back to no merge (a catch-up asked for is void too).
    pub fn on_rolled_back(&mut self) {
        *self = MergeFlow::default();
    }

    /// A local target waits for PrepareMerge `commit` to apply here.
    pub fn wait_catch_up(&mut self, target_region_id: u64, commit: u64) {
        self.catch_up = Some((target_region_id, commit));
    }

    /// The target waiting for this peer, if the merge applied here is the one it waits for.
    pub fn take_caught_up_target(&mut self) -> Option<u64> {
        let commit = self.state.as_ref()?.commit;
        match self.catch_up {
            Some((target, c)) if c == commit => {
                self.catch_up = None;
                Some(target)
            }
            _ => None,
        }
    }

    /// Whether a CommitMerge of `source` proposed by this target leader is still to apply.
    pub fn commit_in_flight(&self, source: u64, applied: u64) -> bool {
        self.commit_proposed.is_some_and(|(s, i)| s == source && i > applied)
    }

    /// This target leader proposed CommitMerge of `source` at `index`.
    pub fn on_commit_proposed(&mut self, source: u64, index: u64) {
        self.commit_proposed = Some((source, index));
    }

    /// The target took this source in: `target` is the merged region.
    pub fn on_merged(&mut self, target: Region) {
        self.merged_into = Some(target);
    }

    /// Whether this peer was merged away (its data belongs to the target).
    pub fn is_merged(&self) -> bool {
        self.merged_into.is_some()
    }

    /// The merged region this peer was merged into.
    pub fn merged_into(&self) -> Option<&Region> {
        self.merged_into.as_ref()
    }

    /// Whether a snapshot of `target` may replace this source: it applied a PrepareMerge into
    /// an older epoch of that region.
    pub fn replaceable_by(&self, target: &Region) -> bool {
        self.state.as_ref().is_some_and(|s| {
            s.get_target().id == target.id
                && s.get_target().get_region_epoch().version < target.get_region_epoch().version
        })
    }

    /// What the apply side said it holds entries for (a source's catch-up), if anything.
    pub fn set_holding(&mut self, source: Option<u64>) {
        self.holding_for = source;
    }

    /// Whether this target's apply holds a committed CommitMerge: the peer must not be
    /// destroyed by a word from outside meanwhile (its source on this store waits for it,
    /// and the merge's data would go with it).
    pub fn holds_commit_merge(&self) -> bool {
        self.holding_for.is_some()
    }
}

/// Checks both parts of a request's epoch: merge commands depend on the range and on the
/// membership.
pub(crate) fn check_whole_epoch(req: &RaftCmdRequest, region: &Region) -> Result<()> {
    let (have, current) = (req.get_header().get_region_epoch(), region.get_region_epoch());
    if have != current {
        return Err(Error::EpochNotMatch {
            msg: format!(
                "request epoch {}/{} != region {} epoch {}/{}",
                have.conf_ver, have.version, region.id, current.conf_ver, current.version
            ),
            regions: vec![region.clone()],
        });
    }
    Ok(())
}

/// Whether `a` and `b` are neighbours (their ranges touch) and different regions.
pub(crate) fn is_sibling(a: &Region, b: &Region) -> bool {
    a.id != b.id
        && (!a.end_key.is_empty() && a.end_key == b.start_key
            || !b.end_key.is_empty() && b.end_key == a.start_key)
}

/// Whether two regions have their peers on the same stores, all voters.
pub(crate) fn on_same_stores(a: &Region, b: &Region) -> bool {
    let stores = |r: &Region| {
        let mut s: Vec<(u64, i32)> =
            r.get_peers().iter().map(|p| (p.store_id, p.get_role() as i32)).collect();
        s.sort_unstable();
        s
    };
    let voters =
        |r: &Region| r.get_peers().iter().all(|p| p.get_role() == proto::metapb::PeerRole::Voter);
    voters(a) && voters(b) && stores(a) == stores(b)
}

/// `target` with `source`'s range taken in: version = max of the two + 1.
pub(crate) fn merged_region(target: &Region, source: &Region) -> Result<Region> {
    if !is_sibling(target, source) {
        return Err(Error::InvalidRequest(format!(
            "region {} is not a neighbour of region {}",
            source.id, target.id
        )));
    }
    let mut region = target.clone();
    // Both ends empty is no neighbour: the source is on the left iff its end is the target's
    // start and not +infinity.
    if !source.end_key.is_empty() && source.end_key == target.start_key {
        region.start_key = source.start_key.clone();
    } else {
        region.end_key = source.end_key.clone();
    }
    let version = source.get_region_epoch().version.max(target.get_region_epoch().version) + 1;
    region.mut_region_epoch().version = version;
    Ok(region)
}

/// A region state record.
pub(crate) fn region_state(
    state: proto::raft_serverpb::PeerState,
    region: Region,
    merge: Option<MergeState>,
) -> RegionLocalState {
    let mut s = RegionLocalState::default();
    s.set_state(state);
    s.set_region(region);
    if let Some(m) = merge {
        s.set_merge_state(m);
    }
    s
}

#[cfg(test)]
mod tests {
    use proto::metapb::{Peer, PeerRole};

    use super::*;

    fn region(id: u64, start: &[u8], end: &[u8], version: u64, stores: &[u64]) -> Region {
        let mut r = Region::default();
        r.id = id;
        r.start_key = start.to_vec();
        r.end_key = end.to_vec();
        r.mut_region_epoch().version = version;
        r.mut_region_epoch().conf_ver = 1;
        for (i, s) in stores.iter().enumerate() {
            let mut p = Peer::default();
            p.id = id * 10 + i as u64;
            p.store_id = *s;
            r.mut_peers().push(p);
        }
        r
    }

    fn state(commit: u64) -> MergeState {
        let mut s = MergeState::default();
        s.commit = commit;
        s
    }

    #[test]
    fn proposals_stop_at_the_proposal_and_reads_at_the_commit() {
        let mut f = MergeFlow::default();
        assert!(!f.blocks_proposals() && !f.is_merging());
        f.on_prepare_proposed(7);
        assert!(f.blocks_proposals() && !f.is_merging(), "reads go on until it commits");
        f.on_prepare_committed(7);
        assert!(f.is_merging());
        f.on_prepare_applied(state(7));
        assert!(f.is_merging() && f.state().is_some());
        f.on_applied(9);
        assert!(f.is_merging(), "an applied merge stays until rollback");
        f.on_rolled_back();
        assert!(!f.blocks_proposals() && !f.is_merging());
    }

    #[test]
    fn a_prepare_refused_by_apply_lets_proposals_go_again() {
        let mut f = MergeFlow::default();
        f.on_prepare_proposed(7);
        f.on_prepare_committed(7);
        f.on_applied(6);
        assert!(f.is_merging());
        f.on_applied(7); // applied without a merge state: refused (epoch changed)
        assert!(!f.blocks_proposals() && !f.is_merging());
        f.on_prepare_proposed(9);
        f.on_leadership_lost();
        assert!(!f.blocks_proposals(), "a new leader decides; apply tells if it commits");
    }

    #[test]
    fn rollback_needs_a_quorum_of_voters_for_the_same_merge() {
        let mut f = MergeFlow::restore(state(7));
        let voters = [1, 2, 3];
        assert!(!f.vote_rollback(1, 7, &voters));
        assert!(!f.vote_rollback(2, 6, &voters), "another merge's vote");
        assert!(!f.vote_rollback(9, 7, &voters), "not a voter");
        assert!(!f.vote_rollback(1, 7, &voters), "one vote counts once");
        assert!(f.vote_rollback(3, 7, &voters));
        f.on_rollback_proposed(10);
        assert!(!f.vote_rollback(2, 7, &voters), "proposed already");
        f.on_applied(10); // applied, and still merging: the rollback was refused
        assert!(f.vote_rollback(2, 7, &voters), "the votes stand: propose again");
    }

    #[test]
    fn a_catch_up_is_answered_by_the_merge_it_waits_for() {
        let mut f = MergeFlow::default();
        f.wait_catch_up(5, 7);
        assert_eq!(f.take_caught_up_target(), None, "not applied yet");
        f.on_prepare_applied(state(7));
        assert_eq!(f.take_caught_up_target(), Some(5));
        assert_eq!(f.take_caught_up_target(), None, "once");
    }

    #[test]
    fn a_target_proposes_one_commit_at_a_time() {
        let mut f = MergeFlow::default();
        assert!(!f.commit_in_flight(2, 0));
        f.on_commit_proposed(2, 10);
        assert!(f.commit_in_flight(2, 9));
        assert!(!f.commit_in_flight(3, 9), "another source");
        assert!(!f.commit_in_flight(2, 10), "applied");
    }

    #[test]
    fn siblings_stores_and_the_merged_range() {
        let left = region(1, b"", b"m", 3, &[1, 2, 3]);
        let right = region(2, b"m", b"", 5, &[3, 2, 1]);
        let far = region(3, b"x", b"", 1, &[1, 2, 3]);
        assert!(is_sibling(&left, &right) && is_sibling(&right, &left));
        assert!(!is_sibling(&left, &far) && !is_sibling(&left, &left));
        assert!(on_same_stores(&left, &right));
        assert!(!on_same_stores(&left, &region(4, b"m", b"", 1, &[1, 2, 4])));
        let mut learner = right.clone();
        learner.mut_peers()[0].set_role(PeerRole::Learner);
        assert!(!on_same_stores(&left, &learner), "learners are not merged");
        let merged = merged_region(&right, &left).unwrap();
        assert_eq!((merged.start_key.as_slice(), merged.end_key.as_slice()), (&b""[..], &b""[..]));
        assert_eq!(merged.get_region_epoch().version, 6);
        assert_eq!(merged.id, 2);
        let merged = merged_region(&left, &right).unwrap();
        assert_eq!((merged.start_key.as_slice(), merged.end_key.as_slice()), (&b""[..], &b""[..]));
        assert_eq!(merged.id, 1);
        let middle = region(5, b"m", b"x", 1, &[1, 2, 3]);
        let merged = merged_region(&middle, &left).unwrap();
        assert_eq!((merged.start_key.as_slice(), merged.end_key.as_slice()), (&b""[..], &b"x"[..]));
        let merged = merged_region(&left, &middle).unwrap();
        assert_eq!((merged.start_key.as_slice(), merged.end_key.as_slice()), (&b""[..], &b"x"[..]));
        assert!(merged_region(&left, &far).is_err());
    }
}
