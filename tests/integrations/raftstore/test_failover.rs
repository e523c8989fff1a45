//! Leader loss, partitions and restarts: no acknowledged write is lost.

use std::time::Duration;

use raftstore::Error;
use test_raftstore::{new_request, put_request, Cluster, FIRST_REGION};

fn key(i: usize) -> Vec<u8> {
    format!("key{i:04}").into_bytes()
}

#[test]
fn leader_killed_new_leader_keeps_every_acknowledged_write() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    for i in 0..20 {
        cluster.must_put(&key(i), b"before");
    }
    let old = cluster.wait_leader(FIRST_REGION);
    cluster.stop_store(old.store_id);
    let new = cluster.wait_leader(FIRST_REGION);
    assert_ne!(new.store_id, old.store_id);
    for i in 20..40 {
        cluster.must_put(&key(i), b"after");
    }
    for store in cluster.running_stores() {
        for i in 0..40 {
            cluster.must_get_equal(store, &key(i), if i < 20 { b"before" } else { b"after" });
        }
    }
    cluster.start_store(old.store_id);
    for i in 0..40 {
        cluster.must_get_equal(old.store_id, &key(i), if i < 20 { b"before" } else { b"after" });
    }
}

#[test]
fn minority_cannot_commit_and_catches_up_when_healed() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.must_put(b"k", b"v0");
    let old = cluster.wait_leader(FIRST_REGION);
    let others: Vec<u64> = (1..=3).filter(|s| *s != old.store_id).collect();
    cluster.partition(&[old.store_id], &others);

    // The isolated old leader cannot commit. When check-quorum makes it step down, it
    // answers the pending command: outcome unknown, never success, never silence.
    let region = cluster.region(FIRST_REGION);
    let req = new_request(&region, &old, vec![put_request(b"k", b"minority")]);
    match cluster.call_command(old.store_id, req, Duration::from_secs(5)) {
        Err(Error::OutcomeUnknown(m)) => assert!(m.contains("leadership"), "{m}"),
        Err(Error::NotLeader { .. }) => {} // it had already stepped down
        other => panic!("a minority answered {other:?}"),
    }

    cluster.must_put(b"k", b"majority");
    let new = cluster.wait_leader(FIRST_REGION);
    assert_ne!(new.store_id, old.store_id);
    cluster.must_get_equal(others[0], b"k", b"majority");
    cluster.must_get_equal(old.store_id, b"k", b"v0");

    cluster.clear_filters();
    cluster.must_get_equal(old.store_id, b"k", b"majority");
}

#[test]
fn restart_of_every_store_recovers_data_and_service() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    for i in 0..30 {
        cluster.must_put(&key(i), b"v");
    }
    for store in 1..=3 {
        cluster.must_get_equal(store, &key(29), b"v");
    }
    for store in 1..=3 {
        cluster.stop_store(store);
    }
    for store in 1..=3 {
        cluster.start_store(store);
    }
    cluster.wait_leader(FIRST_REGION);
    for store in 1..=3 {
        for i in 0..30 {
            cluster.must_get_equal(store, &key(i), b"v");
        }
    }
    cluster.must_put(b"after-restart", b"ok");
    for store in 1..=3 {
        cluster.must_get_equal(store, b"after-restart", b"ok");
    }
}

#[test]
fn a_slow_network_slows_writes_and_loses_none() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.must_put(b"warm", b"up");
    cluster.delay_network(Duration::from_millis(20));
    let start = std::time::Instant::now();
    for i in 0..10 {
        cluster.must_put(&key(i), b"slow");
    }
    // Each write needs a round trip to a follower: it cannot be faster than two delays.
    assert!(start.elapsed() >= Duration::from_millis(10 * 40), "{:?}", start.elapsed());
    cluster.clear_filters();
    for store in 1..=3 {
        for i in 0..10 {
            cluster.must_get_equal(store, &key(i), b"slow");
        }
    }
}
