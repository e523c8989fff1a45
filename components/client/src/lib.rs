//! A client of regionstore, as a database's storage layer uses one: it finds a key's region
//! through a [`RegionCache`] filled from the placement driver, sends the request to the
//! region's leader (or, for a follower read, to any peer), follows the store's hints, and
//! retries until a per-request deadline:
//!
//! ```text
//! NotLeader { leader }  ──▶ cache the leader, retry now (back off if it names the peer
//!                           just tried: a leader handing over; or after two retries now)
//! NotLeader (no hint), ServerIsBusy, StaleCommand, a read without an answer, a stopped
//! store, a placement-driver error ──▶ back off (exponential, full jitter, capped), retry
//! EpochNotMatch { regions } ──▶ newer than the cache: cache them, retry now; older (a
//!                               lagging follower): back off and try another peer
//! RegionNotFound, KeyNotInRegion, MismatchPeerId ──▶ forget the region, back off, retry
//! InvalidRequest, RaftEntryTooLarge, keys of one write in two regions ──▶ Error::Refused
//! a write's unknown outcome (timeout, leader lost) ──▶ Error::Undetermined (never retried:
//!                                                      retrying could apply it twice)
//! ```
//!
//! A write attempt may take all the time left before the deadline (it cannot be retried
//! after a timeout anyway); a read attempt at most `attempt_timeout`. No attempt starts with
//! less than [`MIN_ATTEMPT`] left: the call ends `DeadlineExceeded` instead.
//!
//! A client holds no store: it reaches stores by id through a [`StoreConnector`] per request:
//! [`LocalNodes`] for nodes in its own process, [`GrpcStores`] for `regionstore-server`
//! processes (with `rpc::GrpcPdClient` as its placement driver).

mod connector;
mod grpc;
mod region_cache;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use local_reader::region_snapshot::KvPairs;
use pd_client::PdClient;
use proto::metapb;
use rand::{rngs::StdRng, Rng, SeedableRng};
use server::{Context, Modify};

pub use self::{connector::StoreConnector, grpc::GrpcStores, region_cache::RegionCache};
pub use server::local::LocalNodes;

/// The least time left for an attempt to start.
pub const MIN_ATTEMPT: Duration = Duration::from_millis(5);

/// How a client retries.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// How long one read attempt waits for its answer (a write attempt waits until the
    /// deadline).
    pub attempt_timeout: Duration,
    /// The first back-off; each next one doubles, up to `backoff_max`.
    pub backoff_base: Duration,
    /// The longest back-off.
    pub backoff_max: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            attempt_timeout: Duration::from_secs(2),
            backoff_base: Duration::from_millis(2),
            backoff_max: Duration::from_millis(200),
        }
    }
}

/// How a request ended, when not in success.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Refused and not applied; retrying will not help (a malformed or too large request).
    #[error("refused: {0}")]
    Refused(server::Error),
    /// A write that may or may not have been applied.
    #[error("outcome undetermined: {0}")]
    Undetermined(String),
    /// The deadline passed before an attempt succeeded. Nothing was applied: every attempt
    /// of a write was refused (an undetermined one ends the call as `Undetermined`).
    /// Placement driver failures are retried like any other refusal, so a placement driver
    /// that stays down ends a request here, `last` naming its error.
    #[error("deadline exceeded after {attempts} attempts, the last: {last}")]
    DeadlineExceeded {
        /// Attempts made.
        attempts: u32,
        /// Why the last one failed.
        last: String,
    },
}

impl Error {
    /// A short stable name, for counters and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Refused(e) => e.kind(),
            Error::Undetermined(_) => "undetermined",
            Error::DeadlineExceeded { .. } => "deadline_exceeded",
        }
    }

    /// Whether a write that ended so was definitely not applied.
    pub fn not_applied(&self) -> bool {
        !matches!(self, Error::Undetermined(_))
    }
}

/// What a client did besides succeeding: retries by reason, and the time reads spent on
/// attempts that were refused because their region moved.
#[derive(Clone, Debug, Default)]
pub struct ClientStats {
    /// Retries by the reason of the attempt that failed.
    pub retries: BTreeMap<&'static str, u64>,
    /// Time spent backing off.
    pub backoff: Duration,
    /// Read attempts refused (retryable) and the time they took.
    pub refused_reads: u64,
    /// Their total time.
    pub refused_time: Duration,
    /// The longest.
    pub refused_max: Duration,
}

impl ClientStats {
    /// Adds another client's numbers.
    pub fn merge(&mut self, other: &ClientStats) {
        for (k, v) in &other.retries {
            *self.retries.entry(k).or_default() += v;
        }
        self.backoff += other.backoff;
        self.refused_reads += other.refused_reads;
        self.refused_time += other.refused_time;
        self.refused_max = self.refused_max.max(other.refused_max);
    }
}

/// What to do after a failed attempt.
enum Next {
    /// Retry at once: the error said where to go.
    Now,
    /// Back off, then retry.
    Later,
    /// The call ends with this error.
    End(Error),
}

/// A client; one per thread (it caches regions and leaders).
pub struct Client {
    pd: Arc<dyn PdClient>,
    stores: Arc<dyn StoreConnector>,
    cfg: ClientConfig,
    regions: RegionCache,
    leaders: HashMap<u64, metapb::Peer>,
    rng: StdRng,
    rotation: usize,
    stats: ClientStats,
}

impl Client {
    /// A client of the cluster `pd` describes, reaching stores through `stores`; `seed` seeds
    /// its back-off jitter.
    pub fn new(
        pd: Arc<dyn PdClient>,
        stores: Arc<dyn StoreConnector>,
        cfg: ClientConfig,
        seed: u64,
    ) -> Self {
        Client {
            pd,
            stores,
            cfg,
            regions: RegionCache::default(),
            leaders: HashMap::new(),
            rng: StdRng::seed_from_u64(seed),
            rotation: seed as usize,
            stats: ClientStats::default(),
        }
    }

    /// Writes `mods`, every key in the region of `key`, retrying what was not applied until
    /// `deadline`.
    pub fn write(&mut self, key: &[u8], mods: &[Modify], deadline: Instant) -> Result<(), Error> {
        let attempt = |stores: &dyn StoreConnector, store, ctx: &Context, timeout| {
            stores.write(store, ctx, mods, timeout)
        };
        self.call_as(key, Some(mods), deadline, false, false, attempt)
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8], deadline: Instant) -> Result<(), Error> {
        self.write(key, &[Modify::Put(key.to_vec(), value.to_vec())], deadline)
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: &[u8], deadline: Instant) -> Result<(), Error> {
        self.write(key, &[Modify::Delete(key.to_vec())], deadline)
    }

    /// Reads `key` from its region's leader (a lease read there, or ReadIndex).
    pub fn get(&mut self, key: &[u8], deadline: Instant) -> Result<Option<Vec<u8>>, Error> {
        self.read(key, deadline, false)
    }

    /// Reads `key` from any peer of its region (a follower read: the peer asks the leader for
    /// a read index and answers once it has applied up to it).
    pub fn get_follower(
        &mut self,
        key: &[u8],
        deadline: Instant,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.read(key, deadline, true)
    }

    /// The pairs of `[start, end)` (an empty `end`: to the end of the key space) in key
    /// order, at most `limit`, read region by region from each region's leader as
    /// [`Self::get`] reads. Each region's part is one consistent view; the whole is not one
    /// snapshot (a write to a later region may land between two parts). A limit of 0 reads
    /// nothing; a call that runs out of time part way returns the error, not the parts read.
    pub fn scan(
        &mut self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        deadline: Instant,
    ) -> Result<KvPairs, Error> {
        let (mut out, mut from) = (KvPairs::new(), start.to_vec());
        while out.len() < limit && (end.is_empty() || from.as_slice() < end) {
            let (key, left) = (from.clone(), limit - out.len());
            let attempt = move |stores: &dyn StoreConnector, store, ctx: &Context, timeout| {
                stores.scan(store, ctx, (&key, end), left, timeout)
            };
            let (pairs, region_end) = self.call_as(&from, None, deadline, true, false, attempt)?;
            out.extend(pairs);
            if region_end.is_empty() {
                break; // the last region
            }
            from = region_end;
        }
        Ok(out)
    }

    /// Retries, back-offs and refused reads so far.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// Regions cached.
    pub fn cached_regions(&self) -> usize {
        self.regions.len()
    }

    fn read(
        &mut self,
        key: &[u8],
        deadline: Instant,
        follower: bool,
    ) -> Result<Option<Vec<u8>>, Error> {
        let key_owned = key.to_vec();
        let attempt = move |stores: &dyn StoreConnector, store, ctx: &Context, timeout| {
            let ctx = if follower { ctx.clone().replica_read() } else { ctx.clone() };
            stores.get(store, &ctx, &key_owned, timeout)
        };
        self.call_as(key, None, deadline, true, follower, attempt)
    }

    /// Attempts until one succeeds, the error ends the call, or `deadline` passes. `mods`,
    /// for a write, must all fall in the region of `key`.
    fn call_as<T>(
        &mut self,
        key: &[u8],
        mods: Option<&[Modify]>,
        deadline: Instant,
        idempotent: bool,
        any_peer: bool,
        mut attempt: impl FnMut(&dyn StoreConnector, u64, &Context, Duration) -> server::Result<T>,
    ) -> Result<T, Error> {
        let (mut attempts, mut failures, mut now_streak) = (0u32, 0u32, 0u32);
        let mut last = String::from("no attempt made");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left < MIN_ATTEMPT {
                return Err(Error::DeadlineExceeded { attempts, last });
            }
            let region = match self.locate(key) {
                Ok(Some(region)) => region,
                Ok(None) => {
                    last = "the placement driver is behind the cache".into();
                    failures += 1;
                    self.back_off(failures, deadline);
                    continue;
                }
                Err(e) => {
                    last = e.to_string();
                    *self.stats.retries.entry("pd").or_default() += 1;
                    failures += 1;
                    self.back_off(failures, deadline);
                    continue;
                }
            };
            if let Some(outside) = mods.and_then(|m| m.iter().find(|m| !in_region(m, &region))) {
                let why = format!("{outside:?} is not in the region of the write's key");
                let refused = raftstore::Error::InvalidRequest(why);
                return Err(Error::Refused(server::Error::Request(refused)));
            }
            let peer = self.pick_peer(&region, attempts, any_peer);
            attempts += 1;
            let timeout = if idempotent { self.cfg.attempt_timeout.min(left) } else { left };
            let started = Instant::now();
            let ctx = Context::new(&region, &peer);
            let err = match attempt(self.stores.as_ref(), peer.store_id, &ctx, timeout) {
                Ok(v) => {
                    if !any_peer {
                        self.leaders.insert(region.id, peer);
                    }
                    return Ok(v);
                }
                Err(e) => e,
            };
            if idempotent && err.is_retryable() {
                self.note_refused_read(started.elapsed());
            }
            last = err.to_string();
            match self.on_error(&region, &peer, err, idempotent) {
                Next::Now if now_streak < 2 => now_streak += 1,
                Next::Now | Next::Later => {
                    now_streak = 0;
                    failures += 1;
                    self.back_off(failures, deadline);
                }
                Next::End(e) => return Err(e),
            }
        }
    }

    /// Follows an error's hint (`region` and `peer`: where the attempt went).
    fn on_error(
        &mut self,
        region: &metapb::Region,
        peer: &metapb::Peer,
        err: server::Error,
        idempotent: bool,
    ) -> Next {
        use raftstore::Error as E;
        let region_id = region.id;
        let reason = err.kind();
        let next = match &err {
            // A leader handing over names itself: wait for the hand-over.
            server::Error::Request(E::NotLeader { leader: Some(l), .. }) if l.id == peer.id => {
                Next::Later
            }
            server::Error::Request(E::NotLeader { leader: Some(l), .. }) => {
                self.leaders.insert(region_id, l.clone());
                Next::Now
            }
            server::Error::Request(E::EpochNotMatch { regions, .. }) => {
                let ours = region.get_region_epoch().version;
                let theirs = regions.iter().find(|r| r.id == region_id);
                if theirs.is_some_and(|r| r.get_region_epoch().version <= ours) {
                    // The peer lags behind what we know: try another one, the cache stays.
                    self.leaders.remove(&region_id);
                    Next::Later
                } else {
                    self.regions.invalidate(region_id);
                    self.leaders.remove(&region_id);
                    for r in regions {
                        self.regions.insert(r.clone());
                    }
                    Next::Now
                }
            }
            server::Error::Request(
                E::RegionNotFound(_) | E::KeyNotInRegion { .. } | E::MismatchPeerId { .. },
            ) => {
                self.forget(region_id);
                Next::Later
            }
            server::Error::Request(e) if e.is_retryable() => {
                self.leaders.remove(&region_id);
                Next::Later
            }
            server::Error::Stopped | server::Error::Timeout(_) | server::Error::NoAnswer(_) => {
                self.forget(region_id);
                Next::Later
            }
            server::Error::Undetermined(_) if idempotent => {
                self.forget(region_id);
                Next::Later
            }
            server::Error::Undetermined(why) => {
                self.forget(region_id);
                Next::End(Error::Undetermined(why.clone()))
            }
            _ => Next::End(Error::Refused(err)),
        };
        if !matches!(next, Next::End(_)) {
            *self.stats.retries.entry(reason).or_default() += 1;
        }
        next
    }

    fn forget(&mut self, region_id: u64) {
        self.leaders.remove(&region_id);
        self.regions.invalidate(region_id);
    }

    /// Sleeps a random time up to `base * 2^(failures - 1)`, capped at `backoff_max` and at
    /// the deadline (full jitter: retries of many clients spread out).
    fn back_off(&mut self, failures: u32, deadline: Instant) {
        let cap = self.cfg.backoff_base.saturating_mul(1 << failures.min(16).saturating_sub(1));
        let cap =
            cap.min(self.cfg.backoff_max).min(deadline.saturating_duration_since(Instant::now()));
        let pause = cap.mul_f64(self.rng.gen::<f64>());
        self.stats.backoff += pause;
        std::thread::sleep(pause);
    }

    fn note_refused_read(&mut self, took: Duration) {
        self.stats.refused_reads += 1;
        self.stats.refused_time += took;
        self.stats.refused_max = self.stats.refused_max.max(took);
    }

    /// The region of `key`: cached, or from the placement driver; `None` if the placement
    /// driver's answer is older than what the cache holds around the key (it has not heard
    /// of a split yet).
    fn locate(&mut self, key: &[u8]) -> Result<Option<metapb::Region>, pd_client::Error> {
        if let Some(region) = self.regions.locate(key) {
            return Ok(Some(region.clone()));
        }
        let (region, leader) = self.pd.get_region(key)?;
        self.regions.insert(region.clone());
        let cached = self.regions.locate(key).filter(|r| r.id == region.id).cloned();
        if let (Some(_), Some(leader)) = (&cached, leader) {
            self.leaders.entry(region.id).or_insert(leader);
        }
        Ok(cached)
    }

    /// The cached leader, or the region's peers in turn (any peer, for a follower read).
    fn pick_peer(&mut self, region: &metapb::Region, attempt: u32, any_peer: bool) -> metapb::Peer {
        let peers = region.get_peers();
        if any_peer {
            self.rotation = self.rotation.wrapping_add(1);
            return peers[self.rotation % peers.len()].clone();
        }
        match self.leaders.get(&region.id) {
            Some(leader) => leader.clone(),
            None => peers[attempt as usize % peers.len()].clone(),
        }
    }
}

/// Whether every key `m` touches is in `region` (an empty end: +infinity).
fn in_region(m: &Modify, region: &metapb::Region) -> bool {
    let end = region.end_key.as_slice();
    let inside = |k: &[u8]| region.start_key.as_slice() <= k && (end.is_empty() || k < end);
    match m {
        Modify::Put(k, _) | Modify::Delete(k) => inside(k),
        Modify::DeleteRange(start, to) if to.is_empty() => inside(start) && end.is_empty(),
        Modify::DeleteRange(start, to) => inside(start) && (end.is_empty() || to.as_slice() <= end),
    }
}
