//! `RegionSnapshot`: an engine snapshot seen through one region's range.
//!
//! What a read gets back, from the local reader or from the peer: keys are user keys, and a
//! key outside the region is refused with `KeyNotInRegion` rather than read from a range
//! this peer does not own (the data there may belong to another region and be stale).

use std::sync::Arc;

use engine::{keys, Snapshot, CF_DEFAULT};
use proto::metapb::Region;

/// Why a read of a region snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The key is outside the snapshot's region: route it again.
    #[error("key {} is not in region {}", keys::escape(key), region.id)]
    KeyNotInRegion {
        /// The key asked for.
        key: Vec<u8>,
        /// The region the snapshot covers.
        region: Box<Region>,
    },
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] engine::Error),
}

/// Key-value pairs, in key order.
pub type KvPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// An engine snapshot bounded to a region. Cheap to clone; `Send + Sync`.
#[derive(Clone, Debug)]
pub struct RegionSnapshot<S: Snapshot> {
    snap: S,
    region: Arc<Region>,
    term: u64,
}

impl<S: Snapshot> RegionSnapshot<S> {
    /// `snap` seen through `region`, taken by a peer in `term`.
    pub fn new(snap: S, region: Arc<Region>, term: u64) -> Self {
        RegionSnapshot { snap, region, term }
    }

    /// The region this snapshot covers.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The raft term of the peer that served it.
    pub fn term(&self) -> u64 {
        self.term
    }

    fn check_key(&self, key: &[u8]) -> Result<(), ReadError> {
        if keys::in_range(key, &self.region.start_key, &self.region.end_key) {
            Ok(())
        } else {
            Err(ReadError::KeyNotInRegion {
                key: key.to_vec(),
                region: Box::new((*self.region).clone()),
            })
        }
    }

    /// The value of user key `key`, if any.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        self.check_key(key)?;
        Ok(self.snap.get_value(&keys::data_key(key))?)
    }

    /// Up to `limit` pairs of user keys in `[start, end)` (empty `end`: the region's end),
    /// clipped to the region. `start` must be in the region.
    pub fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<KvPairs, ReadError> {
        self.check_key(start)?;
        let region_end = keys::data_end_key(&self.region.end_key);
        let data_end =
            if end.is_empty() { region_end } else { keys::data_key(end).min(region_end) };
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.snap.scan(CF_DEFAULT, &keys::data_key(start), &data_end, true, |k, v| {
            let key = keys::origin_key(k).unwrap_or(k);
            out.push((key.to_vec(), v.to_vec()));
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }
}
