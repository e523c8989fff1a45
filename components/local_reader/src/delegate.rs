//! `ReadDelegate`: what a reader on another thread needs to know of a peer to serve its reads.
//!
//! The peer owns the source copy, kept in the store's region → delegate map (under the
//! `StoreMeta` mutex) and updated on every change of region, term, applied term or lease;
//! every update bumps the delegate's [`TrackVer`]. Readers keep clones in a thread-local
//! cache and refresh one when its `TrackVer` says the source moved on, so the mutex is taken
//! only on a miss or after a change.

use std::{sync::Arc, time::Duration};

use proto::metapb::Region;

use crate::{lease::RemoteLease, track_ver::TrackVer};

/// One change to a delegate.
#[derive(Debug)]
pub enum DelegateUpdate {
    /// The region changed (membership, split, merge, snapshot).
    Region(Arc<Region>),
    /// The peer's raft term changed.
    Term(u64),
    /// The term of the last applied entry changed.
    AppliedTerm(u64),
    /// A new remote lease (a new term's), or none (the peer is not a leader with a lease).
    Lease(Option<RemoteLease>),
}

/// A peer as readers see it.
#[derive(Clone, Debug)]
pub struct ReadDelegate {
    /// The region, as the peer knows it.
    pub region: Arc<Region>,
    /// The store the peer is on.
    pub store_id: u64,
    /// The peer's id.
    pub peer_id: u64,
    /// The peer's raft term.
    pub term: u64,
    /// Term of the last entry the peer applied. A leader serves no local read before it has
    /// applied an entry of its own term (`applied_term == term`).
    pub applied_term: u64,
    /// The leader's lease, as readers check it; `None` unless the peer is a leader that
    /// holds one.
    pub leader_lease: Option<RemoteLease>,
    /// Clock time of the last update: an engine snapshot taken before it may predate what
    /// the update reflects, so it is not reused for this delegate.
    pub last_update: Duration,
    /// The peer is being removed (merged away): serve nothing.
    pub pending_remove: bool,
    /// Tells a cached copy that the source changed.
    pub track_ver: TrackVer,
}

impl ReadDelegate {
    /// The delegate of a peer that has just been created: no term, no lease.
    pub fn new(region: Arc<Region>, store_id: u64, peer_id: u64) -> Self {
        ReadDelegate {
            region,
            store_id,
            peer_id,
            term: 0,
            applied_term: 0,
            leader_lease: None,
            last_update: Duration::ZERO,
            pending_remove: false,
            track_ver: TrackVer::new(),
        }
    }

    /// Applies `update` made at clock time `now`, and tells every cached copy.
    pub fn update(&mut self, update: DelegateUpdate, now: Duration) {
        match update {
            DelegateUpdate::Region(region) => self.region = region,
            DelegateUpdate::Term(term) => self.term = term,
            DelegateUpdate::AppliedTerm(term) => self.applied_term = term,
            DelegateUpdate::Lease(lease) => self.leader_lease = lease,
        }
        self.last_update = self.last_update.max(now);
        self.track_ver.inc();
    }

    /// Marks the delegate dead: cached copies see the change, refresh, and find it gone or
    /// pending removal.
    pub fn mark_removed(&mut self) {
        self.pending_remove = true;
        self.leader_lease = None;
        self.track_ver.inc();
    }

    /// Whether a cached copy is out of date.
    pub fn is_stale(&self) -> bool {
        self.track_ver.any_new()
    }
}

/// Where a reader finds the source copies: the store's delegate map.
pub trait DelegateSource: Send {
    /// A copy of the delegate of `region_id`'s peer on this store, taken under the map's
    /// lock, or `None` if the store has no peer of it.
    fn delegate(&self, region_id: u64) -> Option<ReadDelegate>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_update_makes_cached_copies_stale() {
        let mut source = ReadDelegate::new(Arc::new(Region::default()), 1, 11);
        let copy = source.clone();
        assert!(!copy.is_stale());
        source.update(DelegateUpdate::Term(3), Duration::from_millis(5));
        assert!(copy.is_stale());
        let fresh = source.clone();
        assert_eq!((fresh.term, fresh.last_update), (3, Duration::from_millis(5)));
        source.update(DelegateUpdate::AppliedTerm(3), Duration::from_millis(2));
        assert_eq!(source.last_update, Duration::from_millis(5), "never moves back");
        assert!(fresh.is_stale());
        let last = source.clone();
        source.mark_removed();
        assert!(last.is_stale(), "removal reaches the caches too");
    }
}
