//! A client's cache of regions by key, as a real client of a region store keeps one: filled
//! from the placement driver on a miss, corrected by the regions an `EpochNotMatch` names,
//! and dropped on errors that say the cached region is gone.

use std::collections::BTreeMap;

use proto::metapb::Region;

/// Where a region ends; the empty end key (+infinity) sorts last.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Key(Vec<u8>),
    Infinity,
}

fn end_of(region: &Region) -> End {
    if region.end_key.is_empty() {
        End::Infinity
    } else {
        End::Key(region.end_key.clone())
    }
}

/// Regions by end key.
#[derive(Default, Debug)]
pub struct RegionCache {
    by_end: BTreeMap<End, Region>,
}

impl RegionCache {
    /// The cached region holding `key`.
    pub fn locate(&self, key: &[u8]) -> Option<&Region> {
        use std::ops::Bound::{Excluded, Unbounded};
        let (_, region) =
            self.by_end.range((Excluded(End::Key(key.to_vec())), Unbounded)).next()?;
        (region.start_key.as_slice() <= key).then_some(region)
    }

    /// Caches `region`, replacing every cached region it overlaps unless one of them is newer
    /// (then `region` is stale and ignored).
    pub fn insert(&mut self, region: Region) {
        use std::ops::Bound::{Excluded, Unbounded};
        // Cached regions do not overlap: those `region` overlaps are the run that ends after
        // its start, up to the first that starts at or after its end (a lookup, not a walk of
        // the cache: a client holds every region it touched).
        let after_start = End::Key(region.start_key.clone());
        let overlapping: Vec<End> = self
            .by_end
            .range((Excluded(after_start), Unbounded))
            .take_while(|(_, r)| overlaps(r, &region))
            .map(|(end, _)| end.clone())
            .collect();
        let version = |r: &Region| r.get_region_epoch().version;
        if overlapping.iter().any(|e| version(&self.by_end[e]) > version(&region)) {
            return;
        }
        for end in overlapping {
            self.by_end.remove(&end);
        }
        self.by_end.insert(end_of(&region), region);
    }

    /// Forgets the region with this id.
    pub fn invalidate(&mut self, region_id: u64) {
        self.by_end.retain(|_, r| r.id != region_id);
    }

    /// Number of cached regions.
    pub fn len(&self) -> usize {
        self.by_end.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.by_end.is_empty()
    }
}

fn overlaps(a: &Region, b: &Region) -> bool {
    let before = |end: &[u8], start: &[u8]| !end.is_empty() && end <= start;
    !before(&a.end_key, &b.start_key) && !before(&b.end_key, &a.start_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u64, start: &[u8], end: &[u8], version: u64) -> Region {
        let mut r = Region::default();
        r.id = id;
        r.start_key = start.to_vec();
        r.end_key = end.to_vec();
        r.mut_region_epoch().version = version;
        r
    }

    #[test]
    fn newer_regions_replace_what_they_overlap() {
        let mut cache = RegionCache::default();
        cache.insert(region(1, b"", b"", 1));
        assert_eq!(cache.locate(b"x").unwrap().id, 1);
        cache.insert(region(2, b"", b"m", 2)); // a split: the left half is new
        assert_eq!(cache.locate(b"a").unwrap().id, 2);
        assert!(cache.locate(b"x").is_none(), "the parent was dropped, its right half unknown");
        cache.insert(region(1, b"", b"", 1)); // stale news
        assert_eq!(cache.len(), 1);
        cache.insert(region(1, b"m", b"", 2));
        assert_eq!(cache.locate(b"m").unwrap().id, 1);
        cache.invalidate(2);
        assert!(cache.locate(b"a").is_none());
    }

    #[test]
    fn a_region_replaces_exactly_the_run_it_overlaps() {
        let mut cache = RegionCache::default();
        for (id, start, end) in [(1, "", "b"), (2, "b", "d"), (3, "d", "f"), (4, "f", "h")] {
            cache.insert(region(id, start.as_bytes(), end.as_bytes(), 1));
        }
        cache.insert(region(5, b"f", b"", 1)); // to +infinity, adjacent to 3
        assert_eq!(cache.len(), 4, "4 replaced, 3 kept");
        cache.insert(region(6, b"c", b"e", 2)); // overlaps 2 and 3, touches neither 1 nor 5
        let ids: Vec<u64> = ["a", "b", "c", "d", "e", "z"]
            .iter()
            .map(|k| cache.locate(k.as_bytes()).map_or(0, |r| r.id))
            .collect();
        assert_eq!(ids, [1, 0, 6, 6, 0, 5]);
        cache.insert(region(7, b"", b"", 3)); // a merge of everything
        assert_eq!((cache.len(), cache.locate(b"q").unwrap().id), (1, 7));
    }
}
