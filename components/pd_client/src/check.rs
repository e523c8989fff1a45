//! Checks of what stores and clients send the placement driver: a malformed region, leader or
//! report is refused (`Error::Invalid`) before it can touch the placement driver's state or
//! its meta store.

use proto::metapb;

use crate::{Error, Result};

/// The most peers a region may have.
pub const MAX_PEERS: usize = 16;

/// The most regions one split report may carry (it is saved as one etcd transaction, and
/// etcd takes at most 128 operations in one by default).
pub const MAX_REPORT_REGIONS: usize = 64;

fn invalid(why: String) -> Result<()> {
    Err(Error::Invalid(why))
}

/// A region as a report must give it: an id, a non-empty range, 1 to [`MAX_PEERS`] peers
/// with ids, on distinct stores with ids.
pub fn region(r: &metapb::Region) -> Result<()> {
    if r.id == 0 {
        return invalid("a region without an id".into());
    }
    if !r.end_key.is_empty() && r.start_key >= r.end_key {
        return invalid(format!("region {}: its start key is not below its end key", r.id));
    }
    let peers = r.get_peers();
    if peers.is_empty() || peers.len() > MAX_PEERS {
        return invalid(format!("region {}: 1 to {MAX_PEERS} peers, not {}", r.id, peers.len()));
    }
    for (i, p) in peers.iter().enumerate() {
        if p.id == 0 || p.store_id == 0 {
            return invalid(format!("region {}: a peer without an id or a store", r.id));
        }
        if peers[..i].iter().any(|q| q.id == p.id || q.store_id == p.store_id) {
            return invalid(format!("region {}: two peers share an id or a store", r.id));
        }
    }
    Ok(())
}

/// A leader as a heartbeat gives it: one of the region's peers.
pub fn leader(r: &metapb::Region, leader: &metapb::Peer) -> Result<()> {
    let known = r.get_peers().iter().any(|p| p.id == leader.id && p.store_id == leader.store_id);
    if leader.id == 0 || !known {
        return invalid(format!("region {}: the leader is not one of its peers", r.id));
    }
    Ok(())
}

/// The regions of one split report: each well formed, distinct ids, ranges that do not
/// overlap one another.
pub fn batch(regions: &[metapb::Region]) -> Result<()> {
    if regions.is_empty() || regions.len() > MAX_REPORT_REGIONS {
        return invalid(format!("a split report of 1 to {MAX_REPORT_REGIONS} regions"));
    }
    for r in regions {
        region(r)?;
    }
    let mut sorted: Vec<&metapb::Region> = regions.iter().collect();
    sorted.sort_by(|a, b| a.start_key.cmp(&b.start_key));
    for pair in sorted.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.end_key.is_empty() || a.end_key > b.start_key {
            return invalid(format!("regions {} and {} overlap", a.id, b.id));
        }
    }
    let mut ids: Vec<u64> = regions.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return invalid("a region twice in one report".into());
    }
    Ok(())
}

/// The first region and store of a cluster: a store with an id and a well-formed region (a
/// cluster may start pre-split: the first region, then a split report of the others).
pub fn bootstrap(store: &metapb::Store, r: &metapb::Region) -> Result<()> {
    if store.id == 0 {
        return invalid("store id 0".into());
    }
    region(r)
}
