//! `LocalReader`: serves a leader's reads from its engine, off the raftstore threads.
//!
//! ```text
//! read(header, read_id)
//!   1. delegate: thread-local LRU; stale TrackVer or miss → copy from the store's map
//!   2. validate: store, peer, term, epoch version, leader lease present, applied_term == term
//!   3. engine snapshot (or the one cached for this ThreadReadId, if taken after the
//!      delegate's last update) ─▶ then the clock ─▶ then the lease at that time
//!   4. lease valid, of the delegate's term → RegionSnapshot; anything else → Redirect
//! ```
//!
//! Step 3's order is the point (TiKV #13553): a lease checked before the snapshot is taken
//! can expire, and another leader commit, in between, and the snapshot then misses a write
//! that was acknowledged before the read started. Every doubt is a [`Redirect`]: the caller
//! sends the read to the peer, which decides on its own thread (lease read there, or
//! ReadIndex). The local reader never guesses an error.

use std::{
    num::NonZeroUsize,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use engine::KvEngine;
use lru::LruCache;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use proto::raft_cmdpb::RaftRequestHeader;

use crate::{
    clock::Clock,
    delegate::{DelegateSource, ReadDelegate},
    lease::LeaseState,
    region_snapshot::RegionSnapshot,
};

/// Why a read could not be served locally; the caller sends it to the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redirect {
    /// Lease reads are switched off.
    Disabled,
    /// The request asks for a follower read.
    ReplicaRead,
    /// No delegate: the store has no peer of the region (or it is being removed).
    NoDelegate,
    /// The request names another store.
    StoreMismatch,
    /// The request names another peer.
    PeerMismatch,
    /// The request names another term.
    TermMismatch,
    /// The request's region version is not the peer's.
    EpochMismatch,
    /// The peer is not a leader holding a lease.
    NoLease,
    /// The leader has not applied an entry of its own term yet.
    AppliedTermLag,
    /// The lease is not valid at the time the snapshot was taken.
    LeaseExpired,
}

impl Redirect {
    /// Every reason, in counter order.
    pub const ALL: [Redirect; 10] = [
        Redirect::Disabled,
        Redirect::ReplicaRead,
        Redirect::NoDelegate,
        Redirect::StoreMismatch,
        Redirect::PeerMismatch,
        Redirect::TermMismatch,
        Redirect::EpochMismatch,
        Redirect::NoLease,
        Redirect::AppliedTermLag,
        Redirect::LeaseExpired,
    ];

    /// A short name, for counters and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Redirect::Disabled => "disabled",
            Redirect::ReplicaRead => "replica_read",
            Redirect::NoDelegate => "no_delegate",
            Redirect::StoreMismatch => "store_mismatch",
            Redirect::PeerMismatch => "peer_mismatch",
            Redirect::TermMismatch => "term_mismatch",
            Redirect::EpochMismatch => "epoch_mismatch",
            Redirect::NoLease => "no_lease",
            Redirect::AppliedTermLag => "applied_term_lag",
            Redirect::LeaseExpired => "lease_expired",
        }
    }
}

/// Read-path counters of a store, shared by its local readers and its peers. They are
/// Prometheus counters: [`ReadCounters::register`] adds them to a store's registry, and
/// [`ReadCounters::stats`] reads the same values for reports.
#[derive(Debug, Clone)]
pub struct ReadCounters {
    local_hits: IntCounter,
    cache_misses: IntCounter,
    snapshots_reused: IntCounter,
    redirects: Vec<IntCounter>,
    /// Reads a leader served from its own lease on the raftstore thread.
    pub peer_lease_reads: IntCounter,
    /// Reads answered through a ReadIndex round on the leader.
    pub read_index_reads: IntCounter,
    /// Reads answered by a follower (ReadIndex from the leader, then local apply).
    pub follower_reads: IntCounter,
    families: [IntCounterVec; 3],
}

impl Default for ReadCounters {
    fn default() -> Self {
        let vec = |name: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric")
        };
        let reads = vec("reads_total", "Reads served, by the path that served them.", "path");
        let redirects = vec(
            "local_read_redirects_total",
            "Reads the local reader sent to the peer, by reason.",
            "reason",
        );
        let local = vec(
            "local_read_events_total",
            "Local reader events: delegate cache misses, engine snapshots reused.",
            "event",
        );
        ReadCounters {
            local_hits: reads.with_label_values(&["local"]),
            peer_lease_reads: reads.with_label_values(&["peer_lease"]),
            read_index_reads: reads.with_label_values(&["read_index"]),
            follower_reads: reads.with_label_values(&["follower"]),
            cache_misses: local.with_label_values(&["cache_miss"]),
            snapshots_reused: local.with_label_values(&["snapshot_reused"]),
            redirects: Redirect::ALL
                .iter()
                .map(|r| redirects.with_label_values(&[r.as_str()]))
                .collect(),
            families: [reads, redirects, local],
        }
    }
}

/// The counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Reads served by a local reader.
    pub local_hits: u64,
    /// Delegate lookups that went to the store's map.
    pub cache_misses: u64,
    /// Local reads that reused the snapshot of their `ThreadReadId`.
    pub snapshots_reused: u64,
    /// Redirects to the peer, by reason (only non-zero ones).
    pub redirects: Vec<(&'static str, u64)>,
    /// Reads a leader served from its lease on the raftstore thread.
    pub peer_lease_reads: u64,
    /// Reads served through ReadIndex on the leader.
    pub read_index_reads: u64,
    /// Follower reads.
    pub follower_reads: u64,
}

impl ReadStats {
    /// All redirects.
    pub fn redirected(&self) -> u64 {
        self.redirects.iter().map(|(_, n)| n).sum()
    }

    /// Redirects for one reason.
    pub fn redirects_for(&self, reason: Redirect) -> u64 {
        self.redirects.iter().find(|(r, _)| *r == reason.as_str()).map_or(0, |(_, n)| *n)
    }

    /// Adds `other`'s counts (another store's).
    pub fn merge(&mut self, other: &ReadStats) {
        self.local_hits += other.local_hits;
        self.cache_misses += other.cache_misses;
        self.snapshots_reused += other.snapshots_reused;
        self.peer_lease_reads += other.peer_lease_reads;
        self.read_index_reads += other.read_index_reads;
        self.follower_reads += other.follower_reads;
        for (reason, n) in &other.redirects {
            match self.redirects.iter_mut().find(|(r, _)| r == reason) {
                Some((_, total)) => *total += n,
                None => self.redirects.push((reason, *n)),
            }
        }
    }

    /// Counts since `earlier`.
    pub fn since(&self, earlier: &ReadStats) -> ReadStats {
        let redirects = self
            .redirects
            .iter()
            .map(|(r, n)| {
                (*r, n - earlier.redirects.iter().find(|(e, _)| e == r).map_or(0, |e| e.1))
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        ReadStats {
            local_hits: self.local_hits - earlier.local_hits,
            cache_misses: self.cache_misses - earlier.cache_misses,
            snapshots_reused: self.snapshots_reused - earlier.snapshots_reused,
            redirects,
            peer_lease_reads: self.peer_lease_reads - earlier.peer_lease_reads,
            read_index_reads: self.read_index_reads - earlier.read_index_reads,
            follower_reads: self.follower_reads - earlier.follower_reads,
        }
    }
}

impl ReadCounters {
    /// Adds the counters to `registry` (once per registry).
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        for family in &self.families {
            registry.register(Box::new(family.clone()))?;
        }
        Ok(())
    }

    /// Current values.
    pub fn stats(&self) -> ReadStats {
        ReadStats {
            local_hits: self.local_hits.get(),
            cache_misses: self.cache_misses.get(),
            snapshots_reused: self.snapshots_reused.get(),
            redirects: Redirect::ALL
                .iter()
                .zip(&self.redirects)
                .map(|(r, c)| (r.as_str(), c.get()))
                .filter(|(_, n)| *n > 0)
                .collect(),
            peer_lease_reads: self.peer_lease_reads.get(),
            read_index_reads: self.read_index_reads.get(),
            follower_reads: self.follower_reads.get(),
        }
    }

    fn redirect(&self, reason: Redirect) -> Redirect {
        let i = Redirect::ALL.iter().position(|r| *r == reason).expect("listed");
        self.redirects[i].inc();
        reason
    }
}

/// Names a batch of reads that arrived together (one request stream's batch): they may
/// share one engine snapshot. The caller promises every read of one id arrived before the
/// first of them is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadReadId(u64);

impl ThreadReadId {
    /// A new, process-unique id.
    pub fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ThreadReadId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl Default for ThreadReadId {
    fn default() -> Self {
        Self::new()
    }
}

/// The snapshot taken for a `ThreadReadId`, and when.
struct CachedSnapshot<S> {
    id: ThreadReadId,
    snap: S,
    taken_at: Duration,
}

/// Serves lease reads on the caller's thread. One per thread: its delegate cache and cached
/// snapshot are its own.
pub struct LocalReader<E: KvEngine, S: DelegateSource> {
    engine: E,
    source: S,
    clock: Arc<dyn Clock>,
    enabled: Arc<AtomicBool>,
    counters: Arc<ReadCounters>,
    cache: LruCache<u64, ReadDelegate>,
    snap_cache: Option<CachedSnapshot<E::Snapshot>>,
    renewal: Option<Renewal>,
}

/// Asking a leader to renew a lease that is about to end, so hot readers stay local.
struct Renewal {
    advance: Duration,
    request: Box<dyn Fn(u64) + Send>,
}

/// Delegates a reader keeps by default.
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;

impl<E: KvEngine, S: DelegateSource> LocalReader<E, S> {
    /// A reader of `engine`, finding delegates in `source`, on `clock` (the clock the peers
    /// renew their leases on). `enabled` switches lease reads on and off at run time.
    pub fn new(
        engine: E,
        source: S,
        clock: Arc<dyn Clock>,
        enabled: Arc<AtomicBool>,
        counters: Arc<ReadCounters>,
    ) -> Self {
        let capacity = NonZeroUsize::new(DEFAULT_CACHE_CAPACITY).expect("non-zero");
        LocalReader {
            engine,
            source,
            clock,
            enabled,
            counters,
            cache: LruCache::new(capacity),
            snap_cache: None,
            renewal: None,
        }
    }

    /// Calls `request(region_id)` when a read is served from a lease that ends within
    /// `advance` (once per lease push: see [`RemoteLease::needs_renewal`]).
    ///
    /// [`RemoteLease::needs_renewal`]: crate::RemoteLease::needs_renewal
    pub fn with_renewal(
        mut self,
        advance: Duration,
        request: impl Fn(u64) + Send + 'static,
    ) -> Self {
        self.renewal = Some(Renewal { advance, request: Box::new(request) });
        self
    }

    /// The counters this reader adds to.
    pub fn counters(&self) -> &Arc<ReadCounters> {
        &self.counters
    }

    /// Serves a read of the region in `header` from the leader's lease, or says why not.
    /// Reads with the same `read_id` share one engine snapshot where that is safe.
    pub fn read(
        &mut self,
        header: &RaftRequestHeader,
        read_id: Option<ThreadReadId>,
    ) -> Result<RegionSnapshot<E::Snapshot>, Redirect> {
        let counters = &*self.counters;
        if !self.enabled.load(Ordering::Relaxed) {
            return Err(counters.redirect(Redirect::Disabled));
        }
        if header.replica_read {
            return Err(counters.redirect(Redirect::ReplicaRead));
        }
        let delegate = find_delegate(&mut self.cache, &self.source, counters, header.region_id)
            .map_err(|r| counters.redirect(r))?;
        validate(delegate, header).map_err(|r| counters.redirect(r))?;
        let snap = match (&self.snap_cache, read_id) {
            (Some(c), Some(id)) if c.id == id && c.taken_at > delegate.last_update => {
                counters.snapshots_reused.inc();
                c.snap.clone()
            }
            _ => {
                let snap = self.engine.snapshot();
                if let Some(id) = read_id {
                    let taken_at = self.clock.now();
                    self.snap_cache = Some(CachedSnapshot { id, snap: snap.clone(), taken_at });
                }
                snap
            }
        };
        fail::fail_point!("local_read_after_snapshot");
        let now = self.clock.now();
        let lease = match &delegate.leader_lease {
            Some(l) if l.term() == delegate.term && l.inspect(now) == LeaseState::Valid => l,
            _ => return Err(counters.redirect(Redirect::LeaseExpired)),
        };
        if let Some(renewal) = &self.renewal {
            if lease.needs_renewal(now, renewal.advance) {
                (renewal.request)(header.region_id);
            }
        }
        counters.local_hits.inc();
        Ok(RegionSnapshot::new(snap, delegate.region.clone(), delegate.term))
    }

    /// Drops the snapshot cached for a `ThreadReadId` (the batch is done), so it does not
    /// pin engine data.
    pub fn release_snapshot(&mut self) {
        self.snap_cache = None;
    }
}

/// The cached delegate of `region_id`, refreshed from `source` if missing or stale.
fn find_delegate<'a, S: DelegateSource>(
    cache: &'a mut LruCache<u64, ReadDelegate>,
    source: &S,
    counters: &ReadCounters,
    region_id: u64,
) -> Result<&'a ReadDelegate, Redirect> {
    let fresh = cache.get(&region_id).is_some_and(|d| !d.is_stale());
    if !fresh {
        counters.cache_misses.inc();
        match source.delegate(region_id) {
            Some(d) => {
                cache.put(region_id, d);
            }
            None => {
                cache.pop(&region_id);
                return Err(Redirect::NoDelegate);
            }
        }
    }
    let delegate = cache.get(&region_id).expect("just checked or inserted");
    if delegate.pending_remove {
        return Err(Redirect::NoDelegate);
    }
    Ok(delegate)
}

/// Step 2: whether the request fits the delegate and the delegate may serve at all.
fn validate(delegate: &ReadDelegate, header: &RaftRequestHeader) -> Result<(), Redirect> {
    let peer = header.get_peer();
    if peer.store_id != 0 && peer.store_id != delegate.store_id {
        return Err(Redirect::StoreMismatch);
    }
    if peer.id != 0 && peer.id != delegate.peer_id {
        return Err(Redirect::PeerMismatch);
    }
    if header.term != 0 && header.term != delegate.term {
        return Err(Redirect::TermMismatch);
    }
    let version = delegate.region.get_region_epoch().version;
    if header.get_region_epoch().version != version {
        return Err(Redirect::EpochMismatch);
    }
    if delegate.leader_lease.is_none() {
        return Err(Redirect::NoLease);
    }
    if delegate.applied_term != delegate.term {
        return Err(Redirect::AppliedTermLag);
    }
    Ok(())
}
