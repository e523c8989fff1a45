//! `StoreMeta`: what a store knows of its regions, behind one mutex shared by the store's
//! threads.
//!
//! Regions by id, and their ranges by data end key, so a key finds its region with one
//! ordered lookup and a new range is checked for overlap the same way. Every change of a
//! region's range goes through [`StoreMeta::set_region`] so the two maps never disagree.
//!
//! The third map holds each peer's `ReadDelegate`, the source copy local readers cache: a
//! peer updates it (bumping its `TrackVer`) under this same mutex, so a reader that refreshes
//! sees a region and a delegate that agree.

use std::{
    collections::{BTreeMap, HashMap},
    ops::Bound::{Excluded, Unbounded},
    sync::{Arc, Mutex},
};

use engine::keys;
use local_reader::{DelegateSource, ReadDelegate};
use proto::{metapb::Region, raft_serverpb::RaftMessage};

/// Regions and ranges of one store.
#[derive(Debug, Default)]
pub struct StoreMeta {
    /// The store's id.
    pub store_id: u64,
    regions: HashMap<u64, Region>,
    /// Store id → peers on it across `regions`, kept with them: store liveness asks which
    /// stores to ping every round, and walking every region's peers under this lock would
    /// cost what the regions number.
    peer_store_counts: BTreeMap<u64, usize>,
    /// Data end key → region id.
    ranges: BTreeMap<Vec<u8>, u64>,
    /// Region id → the delegate of its peer here.
    readers: HashMap<u64, ReadDelegate>,
    /// Raft messages for regions a split here has not created yet, replayed once it has.
    pending_msgs: HashMap<u64, Vec<RaftMessage>>,
    /// Region id → pending peers its leader here last reported, for every region whose
    /// peer here leads (the store's gauges).
    leaders: HashMap<u64, u64>,
    /// Regions whose peer here heard from a member that the region was merged away, with the
    /// region it was merged into: a newer snapshot over their range may displace them.
    merged_away: HashMap<u64, Region>,
    /// Region id → the region of a snapshot its peer here took, not applied yet: its range
    /// is promised, no other snapshot may be taken over it (TiKV's pending snapshot ranges).
    snapshot_ranges: HashMap<u64, Region>,
}

/// Most messages kept for one region not created yet.
const PENDING_MSGS_PER_REGION: usize = 64;
/// Most regions with kept messages.
const PENDING_MSG_REGIONS: usize = 4096;

/// Counts `region`'s peers in (`add`) or out of `counts`, dropping stores left with none.
fn count_peer_stores(counts: &mut BTreeMap<u64, usize>, region: &Region, add: bool) {
    for peer in region.get_peers() {
        if add {
            *counts.entry(peer.store_id).or_default() += 1;
        } else if let Some(n) = counts.get_mut(&peer.store_id) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&peer.store_id);
            }
        }
    }
}

/// `StoreMeta` as the store's threads share it.
pub type SharedStoreMeta = Arc<Mutex<StoreMeta>>;

impl StoreMeta {
    /// An empty meta for `store_id`.
    pub fn new(store_id: u64) -> Self {
        StoreMeta { store_id, ..Default::default() }
    }

    /// Adds or replaces a region, moving its range.
    pub fn set_region(&mut self, region: Region) {
        if let Some(old) = self.regions.get(&region.id) {
            let old_end = keys::data_end_key(&old.end_key);
            if self.ranges.get(&old_end) == Some(&region.id) {
                self.ranges.remove(&old_end);
            }
        }
        self.ranges.insert(keys::data_end_key(&region.end_key), region.id);
        count_peer_stores(&mut self.peer_store_counts, &region, true);
        if let Some(old) = self.regions.insert(region.id, region) {
            count_peer_stores(&mut self.peer_store_counts, &old, false);
        }
    }

    /// Removes a region and its range.
    pub fn remove_region(&mut self, region_id: u64) -> Option<Region> {
        self.leaders.remove(&region_id);
        self.merged_away.remove(&region_id);
        let region = self.regions.remove(&region_id)?;
        count_peer_stores(&mut self.peer_store_counts, &region, false);
        let end = keys::data_end_key(&region.end_key);
        if self.ranges.get(&end) == Some(&region_id) {
            self.ranges.remove(&end);
        }
        Some(region)
    }

    /// The region with this id.
    pub fn region(&self, region_id: u64) -> Option<&Region> {
        self.regions.get(&region_id)
    }

    /// The region holding user key `key`.
    pub fn region_by_key(&self, key: &[u8]) -> Option<&Region> {
        let data_key = keys::data_key(key);
        let (_, id) = self.ranges.range((Excluded(data_key), Unbounded)).next()?;
        let region = &self.regions[id];
        keys::in_range(key, &region.start_key, &region.end_key).then_some(region)
    }

    /// Ids of regions whose range overlaps `[start, end)` (user keys, empty end = +inf).
    pub fn overlapping(&self, start: &[u8], end: &[u8]) -> Vec<u64> {
        let data_end = keys::data_end_key(end);
        let mut ids = Vec::new();
        for (_, id) in self.ranges.range((Excluded(keys::data_key(start)), Unbounded)) {
            let region = &self.regions[id];
            if keys::data_key(&region.start_key) >= data_end {
                break;
            }
            ids.push(*id);
        }
        ids
    }

    /// The delegate of `region_id`'s peer `peer_id`, made by `new` if there is none. A
    /// delegate of another peer of the region (a peer replaced since) is marked removed first,
    /// so readers holding a copy of it refresh (TiKV #9517).
    pub fn reader_entry(
        &mut self,
        region_id: u64,
        peer_id: u64,
        new: impl FnOnce() -> ReadDelegate,
    ) -> &mut ReadDelegate {
        if let Some(old) = self.readers.get_mut(&region_id) {
            if old.peer_id != peer_id {
                old.mark_removed();
                self.readers.remove(&region_id);
            }
        }
        self.readers.entry(region_id).or_insert_with(new)
    }

    /// Removes the delegate of `region_id`'s peer `peer_id` (it is destroyed); readers'
    /// copies go stale.
    pub fn remove_reader(&mut self, region_id: u64, peer_id: u64) {
        if self.readers.get(&region_id).is_some_and(|d| d.peer_id == peer_id) {
            self.leaders.remove(&region_id);
            if let Some(mut d) = self.readers.remove(&region_id) {
                d.mark_removed();
            }
        }
    }

    /// Marks the delegate of `region_id` pending removal (merged away): readers refresh and
    /// serve nothing from it, and it stays until its peer is destroyed (TiKV #11852).
    pub fn mark_reader_pending_remove(&mut self, region_id: u64) {
        if let Some(d) = self.readers.get_mut(&region_id) {
            d.mark_removed();
        }
    }

    /// Records whether the peer of `region_id` here leads, with the pending peers it last
    /// reported (`None`: it does not lead).
    pub fn set_leader(&mut self, region_id: u64, pending_peers: Option<u64>) {
        match pending_peers {
            Some(n) => {
                self.leaders.insert(region_id, n);
            }
            None => {
                self.leaders.remove(&region_id);
            }
        }
    }

    /// Regions whose peer here leads, and the pending peers they last reported in all.
    pub fn leader_stats(&self) -> (usize, u64) {
        (self.leaders.len(), self.leaders.values().sum())
    }

    /// The leases the delegates hold (leaders only), as local readers see them.
    pub fn leases(&self) -> impl Iterator<Item = &local_reader::RemoteLease> {
        self.readers.values().filter_map(|d| d.leader_lease.as_ref())
    }

    /// The delegate of `region_id`'s peer `peer_id`, if it has one.
    pub fn reader_mut(&mut self, region_id: u64, peer_id: u64) -> Option<&mut ReadDelegate> {
        self.readers.get_mut(&region_id).filter(|d| d.peer_id == peer_id)
    }

    /// Keeps a message for a region that a split on this store has not created yet. False
    /// if the buffers are full (the message is dropped; raft sends again).
    pub fn keep_pending_msg(&mut self, msg: RaftMessage) -> bool {
        let full_regions = self.pending_msgs.len() >= PENDING_MSG_REGIONS;
        if full_regions && !self.pending_msgs.contains_key(&msg.region_id) {
            return false;
        }
        let msgs = self.pending_msgs.entry(msg.region_id).or_default();
        if msgs.len() >= PENDING_MSGS_PER_REGION {
            return false;
        }
        msgs.push(msg);
        true
    }

    /// The messages kept for `region_id`, in arrival order.
    pub fn take_pending_msgs(&mut self, region_id: u64) -> Vec<RaftMessage> {
        self.pending_msgs.remove(&region_id).unwrap_or_default()
    }

    /// The delegate of `region_id`'s peer, if any.
    pub fn reader(&self, region_id: u64) -> Option<&ReadDelegate> {
        self.readers.get(&region_id)
    }

    /// Every region, in key order.
    pub fn regions(&self) -> Vec<Region> {
        self.ranges.values().filter_map(|id| self.regions.get(id).cloned()).collect()
    }

    /// The other stores that hold a peer of a region with a peer here.
    pub fn peer_stores(&self) -> std::collections::BTreeSet<u64> {
        let stores = self.peer_store_counts.keys().copied();
        stores.filter(|s| *s != self.store_id).collect()
    }

    /// Number of regions.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// Whether the store has no region.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// A member of `region_id` said it was merged into `target` (its peer here lives on till
    /// a newer snapshot over its range displaces it).
    pub fn note_merged_away(&mut self, region_id: u64, target: Region) {
        self.merged_away.insert(region_id, target);
    }

    /// The region `region_id` was merged into, if a member said so.
    pub fn merged_into(&self, region_id: u64) -> Option<&Region> {
        self.merged_away.get(&region_id)
    }

    /// The peer of `region_id` takes a snapshot of `region`: its range is promised to it
    /// until applied. Returns the promise it replaces.
    pub fn promise_range(&mut self, region_id: u64, region: Region) -> Option<Region> {
        self.snapshot_ranges.insert(region_id, region)
    }

    /// The peer of `region_id` applied its snapshot, or is gone.
    pub fn release_range(&mut self, region_id: u64) -> Option<Region> {
        self.snapshot_ranges.remove(&region_id)
    }

    /// A region other than `region_id` whose peer here took a snapshot over `[start, end)`.
    pub fn promised_to_other(&self, region_id: u64, start: &[u8], end: &[u8]) -> Option<u64> {
        let (start, end) = (keys::data_key(start), keys::data_end_key(end));
        self.snapshot_ranges
            .iter()
            .filter(|(id, _)| **id != region_id)
            .find(|(_, r)| {
                keys::data_key(&r.start_key) < end && start < keys::data_end_key(&r.end_key)
            })
            .map(|(id, _)| *id)
    }

    /// A snapshot taken here by another region over `region`'s range, newer than it.
    pub fn promise_over(&self, region: &Region) -> Option<Region> {
        let version = region.get_region_epoch().version;
        let (start, end) = (keys::data_key(&region.start_key), keys::data_end_key(&region.end_key));
        self.snapshot_ranges
            .iter()
            .filter(|(id, r)| **id != region.id && r.get_region_epoch().version > version)
            .find(|(_, r)| {
                keys::data_key(&r.start_key) < end && start < keys::data_end_key(&r.end_key)
            })
            .map(|(_, r)| r.clone())
    }

    /// Whether a member of `region_id` said it was merged away.
    pub fn is_merged_away(&self, region_id: u64) -> bool {
        self.merged_away.contains_key(&region_id)
    }
}

/// The delegate map as local readers see it: a copy of one delegate, taken under the lock.
#[derive(Clone)]
pub struct MetaDelegates(pub SharedStoreMeta);

impl DelegateSource for MetaDelegates {
    fn delegate(&self, region_id: u64) -> Option<ReadDelegate> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).readers.get(&region_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u64, start: &[u8], end: &[u8]) -> Region {
        let mut r = Region::default();
        r.id = id;
        r.start_key = start.to_vec();
        r.end_key = end.to_vec();
        r
    }

    #[test]
    fn lookup_and_overlap() {
        let mut meta = StoreMeta::new(1);
        meta.set_region(region(1, b"", b"m"));
        meta.set_region(region(2, b"m", b""));
        assert_eq!(meta.region_by_key(b"a").unwrap().id, 1);
        assert_eq!(meta.region_by_key(b"m").unwrap().id, 2);
        assert_eq!(meta.region_by_key(b"zzz").unwrap().id, 2);
        assert_eq!(meta.overlapping(b"k", b"n"), vec![1, 2]);
        assert_eq!(meta.overlapping(b"n", b"p"), vec![2]);
        assert_eq!(meta.overlapping(b"a", b"m"), vec![1]);
        meta.set_region(region(1, b"", b"c")); // shrink
        assert!(meta.region_by_key(b"d").is_none(), "a hole after shrinking");
        assert_eq!(meta.remove_region(2).unwrap().id, 2);
        assert_eq!(meta.len(), 1);
        assert!(meta.region_by_key(b"x").is_none());
    }

    #[test]
    fn peer_stores_follow_regions_and_their_members() {
        let with_peers = |id, start: &[u8], end: &[u8], stores: &[u64]| {
            let mut r = region(id, start, end);
            for (i, s) in stores.iter().enumerate() {
                let mut p = proto::metapb::Peer::default();
                (p.id, p.store_id) = (id * 10 + i as u64, *s);
                r.mut_peers().push(p);
            }
            r
        };
        let stores = |m: &StoreMeta| m.peer_stores().into_iter().collect::<Vec<_>>();
        let mut meta = StoreMeta::new(1);
        meta.set_region(with_peers(1, b"", b"m", &[1, 2, 3]));
        meta.set_region(with_peers(2, b"m", b"", &[1, 3, 4]));
        assert_eq!(stores(&meta), vec![2, 3, 4], "never the store itself");
        meta.set_region(with_peers(2, b"m", b"", &[1, 3, 5])); // 4 replaced by 5
        assert_eq!(stores(&meta), vec![2, 3, 5]);
        meta.remove_region(1);
        assert_eq!(stores(&meta), vec![3, 5]);
        meta.set_region(with_peers(2, b"m", b"", &[1, 3, 5])); // the same again: no double count
        meta.remove_region(2);
        assert_eq!(stores(&meta), Vec::<u64>::new());
    }

    #[test]
    fn a_merged_source_delegate_stays_pending_remove_until_removed() {
        let mut meta = StoreMeta::new(1);
        meta.set_region(region(1, b"", b"m"));
        let d =
            meta.reader_entry(1, 11, || ReadDelegate::new(Arc::new(region(1, b"", b"m")), 1, 11));
        let cached = d.clone();
        meta.mark_reader_pending_remove(1);
        let d = meta.reader(1).expect("still there");
        assert!(d.pending_remove && d.leader_lease.is_none());
        assert!(cached.is_stale(), "cached copies refresh");
        meta.remove_reader(1, 11);
        assert!(meta.reader(1).is_none());
        meta.mark_reader_pending_remove(1); // nothing to mark: no panic
    }
}
