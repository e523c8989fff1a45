//! Region split: manual and automatic, what the stores and the placement driver see after
//! it, late followers, restarts, and reads around it.

use std::time::{Duration, Instant};

use local_reader::Redirect;
use raftstore::{Config, Error, ReadContext};
use test_raftstore::{transport::Filter, Cluster, FIRST_REGION};

const TIMEOUT: Duration = Duration::from_secs(5);

fn key(i: u64) -> Vec<u8> {
    format!("k{i:05}").into_bytes()
}

#[test]
fn a_manual_split_makes_regions_that_serve_their_ranges() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    for i in 0..30 {
        cluster.must_put(&key(i), b"v");
    }
    let parent = cluster.region(FIRST_REGION);
    let regions = cluster.split_region(FIRST_REGION, vec![key(10), key(20)]).unwrap();
    assert_eq!(regions.len(), 3);
    assert_eq!(regions[2].id, FIRST_REGION, "the parent keeps the rightmost range");
    assert_eq!((&regions[0].start_key[..], &regions[0].end_key[..]), (&b""[..], &key(10)[..]));
    assert_eq!((&regions[1].start_key[..], &regions[1].end_key[..]), (&key(10)[..], &key(20)[..]));
    for r in &regions {
        assert_eq!(r.get_region_epoch().version, parent.get_region_epoch().version + 2);
        assert_eq!(r.get_peers().len(), 3);
    }
    // Every store has every region; every region gets a leader and serves its keys.
    for r in &regions {
        cluster.wait_leader(r.id);
        for store in 1..=3 {
            let deadline = Instant::now() + TIMEOUT;
            while cluster.peer_status(store, r.id).is_none() {
                assert!(Instant::now() < deadline, "store {store} has no peer of {}", r.id);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    cluster.wait_region_count(3);
    for i in 0..30 {
        assert_eq!(cluster.get(&key(i)).unwrap().as_deref(), Some(&b"v"[..]));
        cluster.must_put(&key(i), b"w");
    }
    for store in 1..=3 {
        cluster.must_get_equal(store, &key(5), b"w");
        cluster.must_get_equal(store, &key(15), b"w");
    }
}

#[test]
fn the_new_regions_leader_is_elected_on_the_parent_leaders_store() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.must_put(b"a", b"1");
    let leader = cluster.wait_leader(FIRST_REGION);
    let (left, _) = cluster.must_split(b"m");
    // The peer on the old leader's store campaigns as soon as the split applies.
    assert_eq!(cluster.wait_leader(left.id).store_id, leader.store_id);
}

#[test]
fn a_split_with_a_stale_epoch_or_bad_keys_is_refused() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.must_put(b"a", b"1");
    let (leader, old) = cluster.leader_region(FIRST_REGION);
    cluster.must_split(b"m");
    let err = loop {
        let rx = cluster.router(leader.store_id).split_region(
            FIRST_REGION,
            old.get_region_epoch().clone(),
            vec![b"t".to_vec()],
        );
        let resp = rx.recv_timeout(TIMEOUT).unwrap();
        match Error::from_errorpb(resp.get_header().get_error()) {
            Error::ServerIsBusy(_) => std::thread::sleep(Duration::from_millis(10)), // applying
            err => break err,
        }
    };
    assert!(matches!(err, Error::EpochNotMatch { ref regions, .. } if regions.len() == 2), "{err}");

    let current = cluster.leader_region(FIRST_REGION).1; // ["m", "")
    for keys in [vec![b"a".to_vec()], vec![b"t".to_vec(), b"p".to_vec()], vec![b"m".to_vec()]] {
        let res = cluster.split_region(current.id, keys.clone());
        assert!(
            matches!(res, Err(Error::KeyNotInRegion { .. } | Error::InvalidRequest(_))),
            "{keys:?}: {res:?}"
        );
    }
    assert_eq!(
        cluster.leader_region(FIRST_REGION).1.get_region_epoch(),
        current.get_region_epoch()
    );
}

fn small_regions(max_size: u64, max_keys: u64) -> Config {
    Config {
        region_split_check_diff: 256,
        region_max_size: max_size,
        region_split_size: max_size / 2,
        region_max_keys: max_keys,
        region_split_keys: max_keys / 2,
        ..Config::for_tests()
    }
}

#[test]
fn regions_split_by_size_on_their_own() {
    let mut cluster = Cluster::with_config(3, small_regions(4 << 10, 1_000_000));
    cluster.run();
    for i in 0..100 {
        cluster.must_put(&key(i), &[b'x'; 100]); // ~10 KiB in all
    }
    let regions = cluster.wait_region_count(3);
    for i in 0..100 {
        assert_eq!(cluster.get(&key(i)).unwrap().map(|v| v.len()), Some(100));
    }
    assert!(regions.len() <= 10, "{} regions for ~10 KiB of 2 KiB pieces", regions.len());
}

#[test]
fn regions_split_by_keys_on_their_own() {
    let mut cluster = Cluster::with_config(3, small_regions(1 << 30, 40));
    cluster.run();
    for i in 0..100 {
        cluster.must_put(&key(i), b"v");
    }
    cluster.wait_region_count(3);
}

/// Drops every message to one store about the first region.
struct Starve(u64);

impl Filter for Starve {
    fn allow(&self, _: u64, to: u64, msg: &proto::raft_serverpb::RaftMessage) -> bool {
        to != self.0 || msg.region_id != FIRST_REGION
    }
}

#[test]
fn a_follower_that_applies_the_split_late_joins_the_new_region() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.must_put(b"a", b"1");
    let leader = cluster.wait_leader(FIRST_REGION);
    let late = (1..=3).find(|s| *s != leader.store_id).unwrap();
    cluster.network.add_filter(Box::new(Starve(late)));
    let (left, _) = cluster.must_split(b"m");
    cluster.wait_leader(left.id);
    cluster.must_put(b"b", b"2"); // into the new region, without the late store
    std::thread::sleep(Duration::from_millis(100)); // its vote and append requests arrive
    cluster.clear_filters();
    cluster.must_get_equal(late, b"b", b"2");
    assert_eq!(cluster.peer_status(late, left.id).unwrap().region.id, left.id);
}

#[test]
fn every_region_recovers_after_a_restart() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    for i in 0..30 {
        cluster.must_put(&key(i), b"v");
    }
    cluster.split_region(FIRST_REGION, vec![key(10), key(20)]).unwrap();
    for store in 1..=3 {
        cluster.must_get_equal(store, &key(25), b"v");
    }
    for store in 1..=3 {
        cluster.restart_store(store);
    }
    for i in 0..30 {
        assert_eq!(cluster.get(&key(i)).unwrap().as_deref(), Some(&b"v"[..]));
        cluster.must_put(&key(i), b"w");
    }
    assert_eq!(cluster.pd.regions().len(), 3);
}

#[test]
fn readers_see_fresh_delegates_of_both_halves_after_a_split() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.must_put(b"a", b"1");
    cluster.must_put(b"x", b"2");
    let (leader, parent) = cluster.leader_region(FIRST_REGION);
    let mut reader = cluster.reader(leader.store_id);
    let got = reader.get(&ReadContext::new(&parent, &leader), b"a", TIMEOUT).unwrap();
    assert_eq!(got.as_deref(), Some(&b"1"[..])); // the parent's delegate is cached

    let (left, right) = cluster.must_split(b"m");
    match reader.get(&ReadContext::new(&parent, &leader), b"a", TIMEOUT) {
        Err(Error::EpochNotMatch { regions, .. }) => {
            assert!(regions.iter().any(|r| r.id == left.id), "the new region is named")
        }
        other => panic!("a read with the old epoch got {other:?}"),
    }
    for (region, k, v) in [(&left, b"a", b"1"), (&right, b"x", b"2")] {
        let (peer, _) = cluster.leader_region(region.id);
        let mut reader = cluster.reader(peer.store_id);
        let read_once = || {
            let region = cluster.leader_region(region.id).1;
            let got = reader.get(&ReadContext::new(&region, &peer), k, TIMEOUT).unwrap();
            assert_eq!(got.as_deref(), Some(&v[..]));
        };
        let no_stale_delegate = |s: &local_reader::ReadStats| {
            assert_eq!(s.redirects_for(Redirect::EpochMismatch), 0, "a stale delegate: {s:?}")
        };
        cluster.wait_local_read(peer.store_id, "a half of the split", read_once, no_stale_delegate);
    }
}
