//! `LocalReader` against a RocksDB engine, a hand-built delegate map and a manual clock.

use std::{
    collections::HashMap,
    sync::{atomic::AtomicBool, Arc, Mutex},
    time::Duration,
};

use engine::{
    keys,
    rocks::{open_engines, RocksConfig, RocksEngine},
    KvEngine, Mutable, WriteOptions,
};
use local_reader::{
    DelegateSource, DelegateUpdate, Lease, LocalReader, ManualClock, ReadCounters, ReadDelegate,
    ReadError, Redirect, ThreadReadId,
};
use proto::{metapb, raft_cmdpb::RaftRequestHeader};

const MAX_LEASE: Duration = Duration::from_millis(900);

#[derive(Clone, Default)]
struct Map(Arc<Mutex<HashMap<u64, ReadDelegate>>>);

impl DelegateSource for Map {
    fn delegate(&self, region_id: u64) -> Option<ReadDelegate> {
        self.0.lock().unwrap().get(&region_id).cloned()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    kv: RocksEngine,
    map: Map,
    clock: Arc<ManualClock>,
    lease: Lease,
    enabled: Arc<AtomicBool>,
    reader: LocalReader<RocksEngine, Map>,
}

fn region() -> metapb::Region {
    let mut r = metapb::Region::default();
    r.id = 1;
    r.start_key = b"a".to_vec();
    r.end_key = b"m".to_vec();
    r.mut_region_epoch().version = 1;
    r
}

fn header() -> RaftRequestHeader {
    let mut h = RaftRequestHeader::default();
    h.region_id = 1;
    h.mut_region_epoch().version = 1;
    h
}

impl Fixture {
    /// A leader of region 1 in term 5 whose lease runs until 1 s + `MAX_LEASE`.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (kv, _) = open_engines(dir.path(), &RocksConfig::small()).unwrap();
        let clock = Arc::new(ManualClock::new(Duration::from_secs(1)));
        let mut lease = Lease::new(MAX_LEASE, MAX_LEASE / 3);
        lease.renew(Duration::from_secs(1));
        let mut d = ReadDelegate::new(Arc::new(region()), 7, 71);
        d.update(DelegateUpdate::Term(5), Duration::ZERO);
        d.update(DelegateUpdate::AppliedTerm(5), Duration::ZERO);
        d.update(DelegateUpdate::Lease(lease.maybe_new_remote_lease(5)), Duration::ZERO);
        let map = Map::default();
        map.0.lock().unwrap().insert(1, d);
        let enabled = Arc::new(AtomicBool::new(true));
        let reader = LocalReader::new(
            kv.clone(),
            map.clone(),
            clock.clone(),
            enabled.clone(),
            Arc::new(ReadCounters::default()),
        );
        Fixture { _dir: dir, kv, map, clock, lease, enabled, reader }
    }

    fn put(&self, key: &[u8], value: &[u8]) {
        let mut wb = self.kv.write_batch();
        wb.put(&keys::data_key(key), value).unwrap();
        self.kv.write(&mut wb, WriteOptions::default()).unwrap();
    }

    fn update(&self, u: DelegateUpdate) {
        self.map.0.lock().unwrap().get_mut(&1).unwrap().update(u, self.clock_now());
    }

    fn clock_now(&self) -> Duration {
        local_reader::Clock::now(&*self.clock)
    }
}

#[test]
fn serves_while_the_lease_holds_then_redirects() {
    let mut f = Fixture::new();
    f.put(b"b", b"1");
    let snap = f.reader.read(&header(), None).unwrap();
    assert_eq!(snap.get(b"b").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(snap.term(), 5);
    assert!(matches!(snap.get(b"x"), Err(ReadError::KeyNotInRegion { .. })), "bounded");
    f.clock.advance(MAX_LEASE);
    assert_eq!(f.reader.read(&header(), None).unwrap_err(), Redirect::LeaseExpired);
    let stats = f.reader.counters().stats();
    assert_eq!(stats.local_hits, 1);
    assert_eq!(stats.redirects_for(Redirect::LeaseExpired), 1);
    assert_eq!(stats.cache_misses, 1, "the second read used the cached delegate");
}

/// A change to a request header.
type HeaderChange = Box<dyn Fn(&mut RaftRequestHeader)>;

#[test]
fn every_mismatch_redirects() {
    let mut f = Fixture::new();
    let cases: Vec<(HeaderChange, Redirect)> = vec![
        (Box::new(|h| h.mut_peer().store_id = 8), Redirect::StoreMismatch),
        (Box::new(|h| h.mut_peer().id = 99), Redirect::PeerMismatch),
        (Box::new(|h| h.term = 4), Redirect::TermMismatch),
        (Box::new(|h| h.mut_region_epoch().version = 2), Redirect::EpochMismatch),
        (Box::new(|h| h.replica_read = true), Redirect::ReplicaRead),
        (Box::new(|h| h.region_id = 2), Redirect::NoDelegate),
    ];
    for (change, want) in cases {
        let mut h = header();
        change(&mut h);
        assert_eq!(f.reader.read(&h, None).unwrap_err(), want);
    }
    f.enabled.store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(f.reader.read(&header(), None).unwrap_err(), Redirect::Disabled);
    f.enabled.store(true, std::sync::atomic::Ordering::Relaxed);
    f.reader.read(&header(), None).unwrap();
}

#[test]
fn updates_reach_the_cached_delegate() {
    let mut f = Fixture::new();
    f.reader.read(&header(), None).unwrap();
    f.update(DelegateUpdate::Term(6)); // a new term: the old lease is of term 5
    assert_eq!(f.reader.read(&header(), None).unwrap_err(), Redirect::AppliedTermLag);
    f.update(DelegateUpdate::AppliedTerm(6));
    assert_eq!(f.reader.read(&header(), None).unwrap_err(), Redirect::LeaseExpired);
    let remote = f.lease.maybe_new_remote_lease(6);
    f.update(DelegateUpdate::Lease(remote));
    f.reader.read(&header(), None).unwrap();

    f.map.0.lock().unwrap().get_mut(&1).unwrap().mark_removed();
    assert_eq!(f.reader.read(&header(), None).unwrap_err(), Redirect::NoDelegate);
    f.map.0.lock().unwrap().remove(&1);
    assert_eq!(f.reader.read(&header(), None).unwrap_err(), Redirect::NoDelegate);
}

#[test]
fn stepping_down_stops_readers_that_hold_a_fresh_copy() {
    let mut f = Fixture::new();
    f.reader.read(&header(), None).unwrap();
    f.lease.expire(); // the peer steps down; its delegate update has not landed yet
    assert_eq!(f.reader.read(&header(), None).unwrap_err(), Redirect::LeaseExpired);
}

#[test]
fn one_snapshot_per_read_id_unless_the_delegate_changed_after_it() {
    let mut f = Fixture::new();
    f.put(b"b", b"1");
    let id = ThreadReadId::new();
    f.clock.advance(Duration::from_millis(1));
    let first = f.reader.read(&header(), Some(id)).unwrap();
    f.put(b"b", b"2");
    let second = f.reader.read(&header(), Some(id)).unwrap();
    assert_eq!(second.get(b"b").unwrap().as_deref(), Some(&b"1"[..]), "shared snapshot");
    assert_eq!(f.reader.counters().stats().snapshots_reused, 1);

    f.clock.advance(Duration::from_millis(1));
    f.update(DelegateUpdate::AppliedTerm(5)); // any update after the snapshot was taken
    let third = f.reader.read(&header(), Some(id)).unwrap();
    assert_eq!(third.get(b"b").unwrap().as_deref(), Some(&b"2"[..]), "a fresh snapshot");
    let other = f.reader.read(&header(), Some(ThreadReadId::new())).unwrap();
    assert_eq!(other.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(f.reader.counters().stats().snapshots_reused, 1);
    drop(first);
}

#[test]
fn scan_stays_inside_the_region() {
    let mut f = Fixture::new();
    for k in [&b"0"[..], b"a", b"c", b"l", b"m", b"z"] {
        f.put(k, k);
    }
    let snap = f.reader.read(&header(), None).unwrap();
    let keys: Vec<_> = snap.scan(b"a", b"", 10).unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec![b"a".to_vec(), b"c".to_vec(), b"l".to_vec()]);
    assert_eq!(snap.scan(b"b", b"l", 10).unwrap().len(), 1);
    assert_eq!(snap.scan(b"a", b"", 2).unwrap().len(), 2);
    assert!(snap.scan(b"0", b"", 2).is_err());
}
