//! An in-memory placement driver, shared by every store of an in-process cluster.

use std::{
    collections::{BTreeMap, HashMap},
    ops::Bound::{Excluded, Unbounded},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use proto::metapb::{self, PeerRole};

use crate::{
    check, Error, Meta, MetaStore, Operator, PdClient, RegionStats, Result, SplitIds, StoreStats,
};

/// The first id handed out by a new cluster.
const FIRST_ID: u64 = 1000;
/// The most new regions one split may ask ids for (a split report carries them and the
/// parent: at most `check::MAX_REPORT_REGIONS`).
pub const MAX_SPLIT_COUNT: usize = crate::check::MAX_REPORT_REGIONS - 1;
/// Ids reserved in the meta store at a time: a restart skips what was reserved and not used.
const ID_BATCH: u64 = 1000;

/// Behaviour of [`MemPd`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemPdConfig {
    /// The cluster id stores must match.
    pub cluster_id: u64,
    /// Move leaders from stores with more leaders to stores with fewer.
    pub balance_leaders: bool,
    /// Transfer a leader only when its store leads this many more regions than the target.
    pub leader_balance_threshold: u64,
    /// Add voters (one at a time) to regions with fewer, on the stores holding the fewest
    /// peers; 0 leaves membership to the caller.
    pub max_replicas: usize,
    /// Merge small regions into their neighbours.
    pub enable_merge: bool,
    /// A region (source or target) of at most this many bytes may be merged...
    pub max_merge_region_size: u64,
    /// ...and of at most this many keys.
    pub max_merge_region_keys: u64,
    /// A region split less than this long ago is not merged (nor merged into).
    pub split_merge_interval: Duration,
    /// A merge not done this long after it was handed out is given up (it may be tried
    /// again).
    pub merge_timeout: Duration,
}

impl Default for MemPdConfig {
    fn default() -> Self {
        MemPdConfig {
            cluster_id: 1,
            balance_leaders: false,
            leader_balance_threshold: 2,
            max_replicas: 0,
            enable_merge: false,
            max_merge_region_size: 20 << 20,
            max_merge_region_keys: 200_000,
            split_merge_interval: Duration::from_secs(3600),
            merge_timeout: Duration::from_secs(30),
        }
    }
}

/// Where a region's range ends; the empty end key is +infinity and sorts last.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum EndKey {
    Key(Vec<u8>),
    Infinity,
}

impl EndKey {
    fn of(region: &metapb::Region) -> EndKey {
        if region.end_key.is_empty() {
            EndKey::Infinity
        } else {
            EndKey::Key(region.end_key.clone())
        }
    }
}

#[derive(Default)]
struct Inner {
    bootstrapped: bool,
    stores: BTreeMap<u64, metapb::Store>,
    store_stats: HashMap<u64, StoreStats>,
    regions: HashMap<u64, metapb::Region>,
    /// End key → region id: the region holding `k` is the first entry with end > k.
    ranges: BTreeMap<EndKey, u64>,
    leaders: HashMap<u64, (metapb::Peer, u64)>,
    operators: HashMap<u64, Operator>,
    /// Approximate (bytes, keys) of regions, from their heartbeats.
    sizes: HashMap<u64, (u64, u64)>,
    /// The peers each region's leader last reported down.
    down: HashMap<u64, Vec<metapb::Peer>>,
    /// When each region was last born from or cut by a split.
    split_at: HashMap<u64, Instant>,
    /// Merges handed out: source region → (target region, when).
    merges: HashMap<u64, (u64, Instant)>,
    /// Merges seen done (a target's report took its source's range), and how long each took
    /// from being handed out.
    merged: u64,
    merge_durations: Vec<Duration>,
}

/// Ids: the next to hand out, and the bound reserved in the meta store.
struct Ids {
    next: u64,
    bound: u64,
}

/// The placement driver's logic. See the crate docs.
pub struct MemPd {
    cfg: MemPdConfig,
    balance_leaders: AtomicBool,
    /// Where metadata changes are made durable before they are made here; `None`: memory only.
    meta: Option<Box<dyn MetaStore>>,
    ids: Mutex<Ids>,
    splits: AtomicU64,
    leader_changes: AtomicU64,
    region_heartbeats: AtomicU64,
    inner: Mutex<Inner>,
}

fn epoch(region: &metapb::Region) -> (u64, u64) {
    let e = region.get_region_epoch();
    (e.conf_ver, e.version)
}

impl MemPd {
    /// A placement driver with no stores and no regions.
    pub fn new(cfg: MemPdConfig) -> Self {
        let balance_leaders = AtomicBool::new(cfg.balance_leaders);
        MemPd {
            cfg,
            balance_leaders,
            meta: None,
            ids: Mutex::new(Ids { next: FIRST_ID, bound: u64::MAX }),
            splits: AtomicU64::new(0),
            leader_changes: AtomicU64::new(0),
            region_heartbeats: AtomicU64::new(0),
            inner: Mutex::default(),
        }
    }

    /// A placement driver over `store`, holding the metadata `meta` loaded from it: every
    /// change is saved to `store` before it is made here. Of regions that overlap (or are
    /// malformed), only the newest well-formed ones are kept.
    pub fn restore(cfg: MemPdConfig, meta: Meta, store: Box<dyn MetaStore>) -> Result<Self> {
        let mut pd = MemPd::new(cfg);
        let next = meta.id_bound.max(FIRST_ID);
        pd.ids = Mutex::new(Ids { next, bound: next });
        {
            let inner = pd.inner.get_mut().unwrap_or_else(|e| e.into_inner());
            inner.bootstrapped = meta.bootstrapped;
            inner.stores = meta.stores.into_iter().map(|s| (s.id, s)).collect();
            // Newest first: should regions overlap (a store's report saved half way, say),
            // the newer keeps the range and the older is dropped; heartbeats settle the rest.
            let mut regions = meta.regions;
            regions.sort_by_key(|r| {
                let (conf_ver, version) = epoch(r);
                std::cmp::Reverse((version, conf_ver))
            });
            for region in regions {
                if check::region(&region).is_ok() && inner.overlapping(&region).is_empty() {
                    inner.put_region(region);
                }
            }
        }
        pd.meta = Some(store);
        Ok(pd)
    }

    /// The first of `n` consecutive new ids, reserved in the meta store (one save) if they
    /// pass the bound.
    fn alloc_ids(&self, n: u64) -> Result<u64> {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        if ids.next + n > ids.bound {
            let bound = ids.next + n.max(ID_BATCH);
            if let Some(meta) = &self.meta {
                meta.save_id_bound(bound)?;
            }
            ids.bound = bound;
        }
        let first = ids.next;
        ids.next += n;
        Ok(first)
    }

    /// Saves `regions` (as a heartbeat or a split report gives them) to the meta store, with
    /// the regions they replace, then records them. Unchanged regions are not saved again.
    fn save_regions(&self, inner: &mut Inner, regions: Vec<metapb::Region>) -> Result<()> {
        if let Some(meta) = &self.meta {
            let changed: Vec<metapb::Region> =
                regions.iter().filter(|r| inner.regions.get(&r.id) != Some(r)).cloned().collect();
            if !changed.is_empty() {
                let mut removed: Vec<u64> =
                    changed.iter().flat_map(|r| inner.overlapping(r)).collect();
                removed.retain(|id| !regions.iter().any(|r| r.id == *id));
                removed.sort_unstable();
                removed.dedup();
                meta.save_regions(&changed, &removed)?;
            }
        }
        for region in regions {
            inner.put_region(region);
        }
        Ok(())
    }

    /// Splits reported so far (`report_batch_split` calls accepted).
    pub fn split_count(&self) -> u64 {
        self.splits.load(Ordering::Relaxed)
    }

    /// Region heartbeats received so far, from every leader.
    pub fn region_heartbeat_count(&self) -> u64 {
        self.region_heartbeats.load(Ordering::Relaxed)
    }

    /// Times a region's reported leader changed (a new leader's first heartbeat), so far.
    pub fn leader_changes(&self) -> u64 {
        self.leader_changes.load(Ordering::Relaxed)
    }

    /// Merges seen done so far.
    pub fn merge_count(&self) -> u64 {
        self.inner().merged
    }

    /// How long each merge seen done took, from being handed out to the target's report.
    pub fn merge_durations(&self) -> Vec<Duration> {
        self.inner().merge_durations.clone()
    }

    /// Merges handed out and not yet done or given up: (source, target) region ids.
    pub fn merges_in_flight(&self) -> Vec<(u64, u64)> {
        self.inner().merges.iter().map(|(s, (t, _))| (*s, *t)).collect()
    }

    /// Turns leader balancing on or off.
    pub fn set_balance_leaders(&self, on: bool) {
        self.balance_leaders.store(on, Ordering::Relaxed);
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way later
        // calls trip over: every update checks before it writes.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the leader of `region_id` to carry out `op` (replacing any pending operator). It is
    /// handed out with every heartbeat until the region shows it done.
    pub fn add_operator(&self, region_id: u64, op: Operator) {
        self.inner().operators.insert(region_id, op);
    }

    /// Withdraws the operator pending for a region, if it is `op` (one handed out already
    /// may still be carried out).
    pub fn remove_operator(&self, region_id: u64, op: &Operator) -> bool {
        let mut inner = self.inner();
        let pending = inner.operators.get(&region_id) == Some(op);
        if pending {
            inner.operators.remove(&region_id);
        }
        pending
    }

    /// The operator pending for a region.
    pub fn pending_operator(&self, region_id: u64) -> Option<Operator> {
        self.inner().operators.get(&region_id).cloned()
    }

    /// Every known region, in key order.
    pub fn regions(&self) -> Vec<metapb::Region> {
        let inner = self.inner();
        inner.ranges.values().filter_map(|id| inner.regions.get(id).cloned()).collect()
    }

    /// The peers the leader of `region_id` reported down in its last heartbeat.
    pub fn down_peers(&self, region_id: u64) -> Vec<metapb::Peer> {
        self.inner().down.get(&region_id).cloned().unwrap_or_default()
    }

    /// How many regions each store leads, as far as heartbeats tell.
    pub fn leader_counts(&self) -> BTreeMap<u64, u64> {
        let inner = self.inner();
        let mut counts: BTreeMap<u64, u64> = inner.stores.keys().map(|id| (*id, 0)).collect();
        for (leader, _) in inner.leaders.values() {
            *counts.entry(leader.store_id).or_default() += 1;
        }
        counts
    }

    /// The last store heartbeat of a store.
    pub fn store_stats(&self, store_id: u64) -> Option<StoreStats> {
        self.inner().store_stats.get(&store_id).cloned()
    }
}

impl Inner {
    fn check_bootstrapped(&self) -> Result<()> {
        if self.bootstrapped {
            Ok(())
        } else {
            Err(Error::NotBootstrapped)
        }
    }

    /// Ids of regions other than `region` whose range overlaps it.
    fn overlapping(&self, region: &metapb::Region) -> Vec<u64> {
        let start = EndKey::Key(region.start_key.clone());
        let end = EndKey::of(region);
        let mut ids = Vec::new();
        for (_, id) in self.ranges.range((Excluded(start), Unbounded)) {
            let other = &self.regions[id];
            if EndKey::Key(other.start_key.clone()) >= end {
                break;
            }
            if *id != region.id {
                ids.push(*id);
            }
        }
        ids
    }

    /// Refuses `region` if what is known of it, or of a region covering part of its range,
    /// is newer.
    fn check_stale(&self, region: &metapb::Region) -> Result<()> {
        let stale = |known: &metapb::Region| {
            let (k, r) = (epoch(known), epoch(region));
            Err(Error::StaleRegion { region_id: region.id, reported: r, known: k })
        };
        if let Some(known) = self.regions.get(&region.id) {
            let (k, r) = (epoch(known), epoch(region));
            if r.0 < k.0 || r.1 < k.1 {
                return stale(known);
            }
        }
        let known = self.regions.contains_key(&region.id);
        for id in self.overlapping(region) {
            let other = &self.regions[&id];
            // A region this PD never heard of, over a known one's range at the same version,
            // did not come from a split of it (that would be newer): a stray copy.
            if epoch(other).1 > epoch(region).1 || !known && epoch(other).1 == epoch(region).1 {
                return stale(other);
            }
        }
        Ok(())
    }

    /// Records `region`, replacing its old range and every region it overlaps.
    fn put_region(&mut self, region: metapb::Region) {
        for id in self.overlapping(&region) {
            if let Some(old) = self.regions.remove(&id) {
                self.ranges.remove(&EndKey::of(&old));
                self.leaders.remove(&id);
                self.operators.remove(&id);
                self.sizes.remove(&id);
                self.down.remove(&id);
                self.split_at.remove(&id);
                if let Some((target, since)) = self.merges.remove(&id) {
                    if target == region.id {
                        self.merged += 1;
                        self.merge_durations.push(since.elapsed());
                    }
                }
            }
        }
        if let Some(old) = self.regions.remove(&region.id) {
            if self.ranges.get(&EndKey::of(&old)) == Some(&region.id) {
                self.ranges.remove(&EndKey::of(&old));
            }
        }
        self.ranges.insert(EndKey::of(&region), region.id);
        self.regions.insert(region.id, region);
    }

    /// A store for one more voter of `region`, if it has fewer than `max_replicas` and none
    /// is still catching up: among stores without a peer of it, the one holding the fewest.
    fn missing_replica_store(
        &self,
        region: &metapb::Region,
        max_replicas: usize,
        stats: &RegionStats,
    ) -> Option<u64> {
        let voters = region.get_peers().iter().filter(|p| p.get_role() == PeerRole::Voter);
        if voters.count() >= max_replicas || !stats.pending_peers.is_empty() {
            return None;
        }
        let mut load: HashMap<u64, usize> = self.stores.keys().map(|id| (*id, 0)).collect();
        for r in self.regions.values() {
            for p in r.get_peers() {
                *load.entry(p.store_id).or_default() += 1;
            }
        }
        let has_peer = |store: u64| region.get_peers().iter().any(|p| p.store_id == store);
        load.into_iter()
            .filter(|(s, _)| !has_peer(*s))
            .min_by_key(|(s, n)| (*n, *s))
            .map(|(s, _)| s)
    }

    fn leader_of(&self, region_id: u64) -> Option<metapb::Peer> {
        self.leaders.get(&region_id).map(|(p, _)| p.clone())
    }

    /// A leader transfer that evens out leader counts, if one is worth it.
    fn balance_leader(
        &self,
        cfg: &MemPdConfig,
        region: &metapb::Region,
        leader: &metapb::Peer,
        stats: &RegionStats,
    ) -> Option<Operator> {
        // Leaders as heartbeats tell, moved by the transfers already under way, so that many
        // heartbeats seeing the same skew do not all send leaders to the same store.
        let mut counts: HashMap<u64, i64> = HashMap::new();
        for (l, _) in self.leaders.values() {
            *counts.entry(l.store_id).or_default() += 1;
        }
        for (region_id, op) in &self.operators {
            if let (Operator::TransferLeader(to), Some((from, _))) =
                (op, self.leaders.get(region_id))
            {
                *counts.entry(from.store_id).or_default() -= 1;
                *counts.entry(to.store_id).or_default() += 1;
            }
        }
        let from = counts.get(&leader.store_id).copied().unwrap_or(0);
        let unhealthy = |p: &metapb::Peer| {
            stats.down_peers.iter().chain(&stats.pending_peers).any(|d| d.id == p.id)
        };
        let target = region
            .get_peers()
            .iter()
            .filter(|p| p.id != leader.id && p.get_role() == PeerRole::Voter && !unhealthy(p))
            .min_by_key(|p| (counts.get(&p.store_id).copied().unwrap_or(0), p.store_id))?;
        let to = counts.get(&target.store_id).copied().unwrap_or(0);
        (from >= to + cfg.leader_balance_threshold as i64)
            .then(|| Operator::TransferLeader(target.clone()))
    }
}

/// The merge checker.
impl Inner {
    /// Whether `region_id` is the source or the target of a merge handed out.
    fn in_merge(&self, region_id: u64) -> bool {
        self.merges.contains_key(&region_id) || self.merges.values().any(|(t, _)| *t == region_id)
    }

    /// The merge handed out to `source` again while it is not done and not timed out (the
    /// leader refuses it while it is under way; a refused one, for a log gap say, is tried
    /// again this way).
    fn merge_in_flight(
        &mut self,
        cfg: &MemPdConfig,
        source: u64,
        now: Instant,
    ) -> Option<Operator> {
        let (target, since) = *self.merges.get(&source)?;
        if now.duration_since(since) > cfg.merge_timeout || !self.regions.contains_key(&target) {
            self.merges.remove(&source);
            return None;
        }
        Some(Operator::Merge { target: self.regions[&target].clone() })
    }

    /// Whether `region_id` may take part in a merge now: small, measured, not split lately,
    /// no operator, not in another merge.
    fn mergeable(&self, cfg: &MemPdConfig, region_id: u64, now: Instant) -> Option<u64> {
        let (size, keys) = *self.sizes.get(&region_id)?;
        let split_lately = self
            .split_at
            .get(&region_id)
            .is_some_and(|t| now.duration_since(*t) < cfg.split_merge_interval);
        let free = !self.operators.contains_key(&region_id) && !self.in_merge(region_id);
        (size <= cfg.max_merge_region_size
            && keys <= cfg.max_merge_region_keys
            && !split_lately
            && free
            && self.leaders.contains_key(&region_id))
        .then_some(size)
    }

    /// A merge of `region` into its smaller mergeable neighbour with peers on the same
    /// stores, if there is one; recorded as handed out.
    fn check_merge(
        &mut self,
        cfg: &MemPdConfig,
        region: &metapb::Region,
        stats: &RegionStats,
        now: Instant,
    ) -> Option<Operator> {
        if !stats.down_peers.is_empty() || !stats.pending_peers.is_empty() {
            return None;
        }
        self.mergeable(cfg, region.id, now)?;
        let left = (!region.start_key.is_empty())
            .then(|| self.ranges.get(&EndKey::Key(region.start_key.clone())).copied())
            .flatten();
        let right = (!region.end_key.is_empty())
            .then(|| {
                let after = (Excluded(EndKey::Key(region.end_key.clone())), Unbounded);
                let (_, id) = self.ranges.range(after).next()?;
                (self.regions[id].start_key == region.end_key).then_some(*id)
            })
            .flatten();
        let target = [left, right]
            .into_iter()
            .flatten()
            .filter(|id| same_stores(region, &self.regions[id]))
            .filter_map(|id| self.mergeable(cfg, id, now).map(|size| (size, id)))
            .min()?
            .1;
        self.merges.insert(region.id, (target, now));
        Some(Operator::Merge { target: self.regions[&target].clone() })
    }
}

/// Whether two regions have their peers on the same stores, all voters.
fn same_stores(a: &metapb::Region, b: &metapb::Region) -> bool {
    let stores = |r: &metapb::Region| {
        let mut s: Vec<u64> = r.get_peers().iter().map(|p| p.store_id).collect();
        s.sort_unstable();
        s
    };
    let voters = |r: &metapb::Region| r.get_peers().iter().all(|p| p.get_role() == PeerRole::Voter);
    voters(a) && voters(b) && stores(a) == stores(b)
}

/// Whether `op` shows as done in `region` led by `leader`; `None` if it can no longer apply.
fn operator_done(op: &Operator, region: &metapb::Region, leader: &metapb::Peer) -> Option<bool> {
    let find = |id: u64| region.get_peers().iter().find(|p| p.id == id);
    match op {
        Operator::AddPeer(p) => Some(find(p.id).is_some_and(|q| q.get_role() == PeerRole::Voter)),
        Operator::AddLearner(p) => Some(find(p.id).is_some()),
        Operator::RemovePeer(p) => Some(find(p.id).is_none()),
        Operator::TransferLeader(p) => find(p.id).map(|_| leader.id == p.id),
        Operator::Merge { .. } => None, // merges are tracked on their own
    }
}

impl PdClient for MemPd {
    fn cluster_id(&self) -> u64 {
        self.cfg.cluster_id
    }

    fn alloc_id(&self) -> Result<u64> {
        self.alloc_ids(1)
    }

    fn bootstrap_cluster(&self, store: metapb::Store, region: metapb::Region) -> Result<()> {
        let mut inner = self.inner();
        if inner.bootstrapped {
            return Err(Error::AlreadyBootstrapped);
        }
        check::bootstrap(&store, &region)?;
        if let Some(meta) = &self.meta {
            meta.save_bootstrap(&store, &region)?;
        }
        inner.stores.insert(store.id, store);
        inner.put_region(region);
        inner.bootstrapped = true;
        Ok(())
    }

    fn is_cluster_bootstrapped(&self) -> Result<bool> {
        Ok(self.inner().bootstrapped)
    }

    fn put_store(&self, store: metapb::Store) -> Result<()> {
        if store.id == 0 {
            return Err(Error::Invalid("store id 0".into()));
        }
        let mut inner = self.inner();
        if let Some(meta) = &self.meta {
            if inner.stores.get(&store.id) != Some(&store) {
                meta.save_store(&store)?;
            }
        }
        inner.stores.insert(store.id, store);
        Ok(())
    }

    fn get_store(&self, store_id: u64) -> Result<metapb::Store> {
        self.inner().stores.get(&store_id).cloned().ok_or(Error::StoreNotFound(store_id))
    }

    fn get_all_stores(&self) -> Result<Vec<metapb::Store>> {
        Ok(self.inner().stores.values().cloned().collect())
    }

    fn get_region(&self, key: &[u8]) -> Result<(metapb::Region, Option<metapb::Peer>)> {
        let inner = self.inner();
        inner.check_bootstrapped()?;
        let not_found = || Error::RegionNotFound(format!("key {key:?}"));
        let (_, id) = inner
            .ranges
            .range((Excluded(EndKey::Key(key.to_vec())), Unbounded))
            .next()
            .ok_or_else(not_found)?;
        let region = &inner.regions[id];
        if region.start_key.as_slice() > key {
            return Err(not_found());
        }
        Ok((region.clone(), inner.leader_of(*id)))
    }

    fn get_region_by_id(&self, region_id: u64) -> Result<(metapb::Region, Option<metapb::Peer>)> {
        let inner = self.inner();
        let region = inner
            .regions
            .get(&region_id)
            .cloned()
            .ok_or_else(|| Error::RegionNotFound(format!("id {region_id}")))?;
        Ok((region, inner.leader_of(region_id)))
    }

    fn region_heartbeat(
        &self,
        term: u64,
        region: metapb::Region,
        leader: metapb::Peer,
        stats: RegionStats,
    ) -> Result<Option<Operator>> {
        self.region_heartbeats.fetch_add(1, Ordering::Relaxed);
        check::region(&region)?;
        check::leader(&region, &leader)?;
        let mut inner = self.inner();
        inner.check_bootstrapped()?;
        inner.check_stale(&region)?;
        let region_id = region.id;
        if let Some((_, known_term)) = inner.leaders.get(&region_id) {
            if term < *known_term {
                return Ok(None); // an old leader's late report: the region is newer elsewhere
            }
        }
        self.save_regions(&mut inner, vec![region.clone()])?;
        let previous = inner.leaders.insert(region_id, (leader.clone(), term));
        if previous.is_some_and(|(p, _)| p.id != leader.id) {
            self.leader_changes.fetch_add(1, Ordering::Relaxed);
        }
        if let (Some(size), Some(keys)) = (stats.approximate_size, stats.approximate_keys) {
            inner.sizes.insert(region_id, (size, keys));
        }
        inner.down.insert(region_id, stats.down_peers.clone());
        if self.cfg.enable_merge {
            let now = Instant::now();
            if let Some(op) = inner.merge_in_flight(&self.cfg, region_id, now) {
                return Ok(Some(op));
            }
        }
        if let Some(op) = inner.operators.get(&region_id).cloned() {
            match operator_done(&op, &region, &leader) {
                Some(false) => return Ok(Some(op)),
                Some(true) | None => {
                    inner.operators.remove(&region_id);
                }
            }
        }
        if inner.in_merge(region_id) {
            return Ok(None); // no other change to a region being merged
        }
        if let Some(store_id) = inner.missing_replica_store(&region, self.cfg.max_replicas, &stats)
        {
            let mut peer = metapb::Peer::default();
            peer.id = self.alloc_id()?;
            peer.store_id = store_id;
            let op = Operator::AddPeer(peer);
            inner.operators.insert(region_id, op.clone());
            return Ok(Some(op));
        }
        if self.balance_leaders.load(Ordering::Relaxed) {
            if let Some(op) = inner.balance_leader(&self.cfg, &region, &leader, &stats) {
                inner.operators.insert(region_id, op.clone());
                return Ok(Some(op));
            }
        }
        if self.cfg.enable_merge {
            return Ok(inner.check_merge(&self.cfg, &region, &stats, Instant::now()));
        }
        Ok(None)
    }

    fn store_heartbeat(&self, stats: StoreStats) -> Result<()> {
        let mut inner = self.inner();
        if !inner.stores.contains_key(&stats.store_id) {
            return Err(Error::StoreNotFound(stats.store_id));
        }
        inner.store_stats.insert(stats.store_id, stats);
        Ok(())
    }

    fn ask_batch_split(&self, region: &metapb::Region, count: usize) -> Result<Vec<SplitIds>> {
        if count == 0 || count > MAX_SPLIT_COUNT {
            let why = format!("a split makes 1 to {MAX_SPLIT_COUNT} new regions, not {count}");
            return Err(Error::Invalid(why));
        }
        check::region(region)?;
        self.inner().check_stale(region)?;
        let per_region = 1 + region.get_peers().len() as u64;
        let mut next = self.alloc_ids(per_region * count as u64)?;
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            let new_peer_ids = (next + 1..next + per_region).collect();
            ids.push(SplitIds { new_region_id: next, new_peer_ids });
            next += per_region;
        }
        Ok(ids)
    }

    fn report_batch_split(&self, regions: Vec<metapb::Region>) -> Result<()> {
        check::batch(&regions)?;
        let mut inner = self.inner();
        inner.check_bootstrapped()?;
        for region in &regions {
            inner.check_stale(region)?;
        }
        let ids: Vec<u64> = regions.iter().map(|r| r.id).collect();
        self.save_regions(&mut inner, regions)?;
        let now = Instant::now();
        for id in ids {
            inner.split_at.insert(id, now);
        }
        self.splits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
