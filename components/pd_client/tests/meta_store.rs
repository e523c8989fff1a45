//! The placement driver over a meta store: each change is saved before it is made, a failed
//! save changes nothing, and a placement driver restored from what was saved routes, refuses
//! stale reports and hands out new ids as the first one did.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

use pd_client::{Error, MemPd, MemPdConfig, Meta, MetaStore, PdClient, RegionStats};
use proto::metapb;

/// A meta store in memory that can be made to fail.
#[derive(Default)]
struct Saved {
    failing: AtomicBool,
    state: Mutex<State>,
}

/// What [`Saved`] holds.
#[derive(Default)]
struct State {
    bootstrapped: bool,
    stores: BTreeMap<u64, metapb::Store>,
    regions: BTreeMap<u64, metapb::Region>,
    id_bound: u64,
}

impl Saved {
    fn check(&self) -> pd_client::Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(Error::Unavailable("meta store down".into()));
        }
        Ok(())
    }

    fn meta(&self) -> Meta {
        let s = self.state.lock().unwrap();
        Meta {
            bootstrapped: s.bootstrapped,
            stores: s.stores.values().cloned().collect(),
            regions: s.regions.values().cloned().collect(),
            id_bound: s.id_bound,
        }
    }
}

struct Shared(Arc<Saved>);

impl MetaStore for Shared {
    fn save_bootstrap(
        &self,
        store: &metapb::Store,
        region: &metapb::Region,
    ) -> pd_client::Result<()> {
        self.0.check()?;
        let mut s = self.0.state.lock().unwrap();
        s.bootstrapped = true;
        s.stores.insert(store.id, store.clone());
        s.regions.insert(region.id, region.clone());
        Ok(())
    }
    fn save_store(&self, store: &metapb::Store) -> pd_client::Result<()> {
        self.0.check()?;
        self.0.state.lock().unwrap().stores.insert(store.id, store.clone());
        Ok(())
    }
    fn save_regions(&self, regions: &[metapb::Region], removed: &[u64]) -> pd_client::Result<()> {
        self.0.check()?;
        let mut s = self.0.state.lock().unwrap();
        for id in removed {
            s.regions.remove(id);
        }
        for r in regions {
            s.regions.insert(r.id, r.clone());
        }
        Ok(())
    }
    fn save_id_bound(&self, bound: u64) -> pd_client::Result<()> {
        self.0.check()?;
        let mut s = self.0.state.lock().unwrap();
        assert!(bound > s.id_bound, "the bound only grows");
        s.id_bound = bound;
        Ok(())
    }
}

fn store(id: u64) -> metapb::Store {
    let mut s = metapb::Store::default();
    s.id = id;
    s
}

fn region(id: u64, start: &[u8], end: &[u8], version: u64) -> metapb::Region {
    let mut r = metapb::Region::default();
    r.id = id;
    r.start_key = start.to_vec();
    r.end_key = end.to_vec();
    r.mut_region_epoch().conf_ver = 1;
    r.mut_region_epoch().version = version;
    let mut p = metapb::Peer::default();
    p.id = id + 100;
    p.store_id = 1;
    r.mut_peers().push(p);
    r
}

/// The one peer of `region(id, ..)`.
fn leader(region_id: u64) -> metapb::Peer {
    region(region_id, b"", b"", 1).get_peers()[0].clone()
}

fn restore(saved: &Arc<Saved>) -> MemPd {
    let store = Box::new(Shared(saved.clone()));
    MemPd::restore(MemPdConfig::default(), saved.meta(), store).unwrap()
}

#[test]
fn a_restored_placement_driver_continues_where_the_saved_one_stopped() {
    let saved = Arc::new(Saved::default());
    let pd = restore(&saved);
    pd.bootstrap_cluster(store(1), region(2, b"", b"", 1)).unwrap();
    pd.put_store(store(3)).unwrap();
    pd.report_batch_split(vec![region(2, b"", b"m", 2), region(4, b"m", b"", 2)]).unwrap();
    let ids: Vec<u64> = (0..2500).map(|_| pd.alloc_id().unwrap()).collect();
    let meta = saved.meta();
    assert_eq!(meta.regions.len(), 2, "the parent's old range is not kept twice");
    assert!(meta.id_bound > *ids.last().unwrap());
    assert!(meta.id_bound <= ids.last().unwrap() + 1000, "ids are reserved a batch at a time");

    let again = restore(&saved);
    assert!(again.is_cluster_bootstrapped().unwrap());
    assert_eq!(again.get_all_stores().unwrap().len(), 2);
    assert_eq!(again.get_region(b"z").unwrap().0.id, 4);
    assert_eq!(again.get_region(b"a").unwrap().0.end_key, b"m");
    assert!(again.alloc_id().unwrap() > *ids.last().unwrap());
    let stale =
        again.region_heartbeat(1, region(2, b"", b"", 1), leader(2), RegionStats::default());
    assert!(matches!(stale, Err(Error::StaleRegion { .. })), "{stale:?}");
}

#[test]
fn a_failed_save_changes_nothing() {
    let saved = Arc::new(Saved::default());
    let pd = restore(&saved);
    pd.bootstrap_cluster(store(1), region(2, b"", b"", 1)).unwrap();
    saved.failing.store(true, Ordering::SeqCst);
    let unavailable = |r: pd_client::Result<()>| matches!(r, Err(Error::Unavailable(_)));
    assert!(unavailable(pd.put_store(store(3))));
    assert!(unavailable(
        pd.report_batch_split(vec![region(2, b"", b"m", 2), region(4, b"m", b"", 2)])
    ));
    let hb = pd.region_heartbeat(1, region(2, b"", b"", 2), leader(2), RegionStats::default());
    assert!(matches!(hb, Err(Error::Unavailable(_))), "{hb:?}");
    // Ids: the first batch was reserved; past it, nothing is handed out unsaved.
    let handed: Vec<_> = (0..1100).map(|_| pd.alloc_id()).collect();
    assert!(handed.iter().any(|r| r.is_err()), "no id past the saved bound");
    assert_eq!(pd.get_all_stores().unwrap().len(), 1, "the store was not added");
    assert_eq!(pd.get_region(b"z").unwrap().0.get_region_epoch().version, 1, "nor the split");

    saved.failing.store(false, Ordering::SeqCst);
    pd.report_batch_split(vec![region(2, b"", b"m", 2), region(4, b"m", b"", 2)]).unwrap();
    assert_eq!(restore(&saved).get_region(b"z").unwrap().0.id, 4);
}

#[test]
fn malformed_reports_are_refused_before_they_reach_the_meta_store() {
    let saved = Arc::new(Saved::default());
    let pd = restore(&saved);
    pd.bootstrap_cluster(store(1), region(2, b"", b"", 1)).unwrap();
    let invalid = |r: pd_client::Result<()>| matches!(r, Err(Error::Invalid(_)));
    // Two halves that overlap each other, an id twice, a backwards range.
    let overlapping = vec![region(2, b"", b"z", 2), region(4, b"a", b"m", 2)];
    assert!(invalid(pd.report_batch_split(overlapping)));
    assert!(invalid(pd.report_batch_split(vec![region(2, b"", b"m", 2), region(2, b"m", b"", 2)])));
    assert!(invalid(pd.report_batch_split(vec![region(2, b"m", b"a", 2)])));
    // A heartbeat whose leader is not a peer, a region without peers.
    let mut stranger = leader(2);
    stranger.id = 99;
    let hb = pd.region_heartbeat(1, region(2, b"", b"", 1), stranger, RegionStats::default());
    assert!(matches!(hb, Err(Error::Invalid(_))), "{hb:?}");
    let mut bare = region(2, b"", b"", 2);
    bare.mut_peers().clear();
    let hb = pd.region_heartbeat(1, bare, leader(2), RegionStats::default());
    assert!(matches!(hb, Err(Error::Invalid(_))), "{hb:?}");
    // A split asking for ids for a region with too many peers.
    let mut crowded = region(2, b"", b"", 1);
    for i in 0..pd_client::MAX_PEERS as u64 {
        let mut p = metapb::Peer::default();
        (p.id, p.store_id) = (500 + i, 50 + i);
        crowded.mut_peers().push(p);
    }
    assert!(matches!(pd.ask_batch_split(&crowded, 1), Err(Error::Invalid(_))));
    // Nothing changed.
    assert_eq!(saved.meta().regions, vec![region(2, b"", b"", 1)]);
    assert_eq!(pd.get_region(b"q").unwrap().0, region(2, b"", b"", 1));
}

#[test]
fn a_restore_keeps_the_newest_of_overlapping_regions() {
    let saved = Arc::new(Saved::default());
    {
        let mut s = saved.state.lock().unwrap();
        s.bootstrapped = true;
        s.regions.insert(2, region(2, b"", b"", 1)); // the parent, before a split saved half way
        s.regions.insert(4, region(4, b"m", b"", 2));
    }
    let pd = restore(&saved);
    assert_eq!(pd.get_region(b"z").unwrap().0.id, 4);
    assert!(pd.get_region(b"a").is_err(), "the older, overlapping parent was dropped");
}
