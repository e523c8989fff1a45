//! Storage failures in the ready path.

use std::time::Duration;

use raftstore::Error;
use test_raftstore::{new_request, put_request, Cluster, FIRST_REGION};

/// A follower whose raft log append fails stops instead of going on: it must never
/// acknowledge entries it did not persist. With the other follower stopped, the leader can
/// commit only with that follower's acknowledgement, so the write must not be acknowledged.
#[test]
fn a_follower_that_cannot_persist_acknowledges_nothing() {
    let scenario = fail::FailScenario::setup();
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.must_put(b"k", b"v1");
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let mut followers = region.get_peers().iter().filter(|p| p.id != leader.id).cloned();
    let (failing, other) = (followers.next().unwrap(), followers.next().unwrap());
    cluster.stop_store(other.store_id);
    fail::cfg("ready_append_error", &format!("return({})", failing.id)).unwrap();
    let req = new_request(&region, &leader, vec![put_request(b"k", b"v2")]);
    let res = cluster.call_command(leader.store_id, req, Duration::from_millis(1500));
    fail::remove("ready_append_error");
    assert!(
        matches!(res, Err(Error::OutcomeUnknown(_))),
        "a write acknowledged with an unpersisted entry: {res:?}"
    );
    drop(cluster);
    scenario.teardown();
}

/// Log GC deletes raft log entries only once the kv engine holds the apply state that
/// truncated them durably: with the kv WAL's sync failing (`kv_sync_wal_error`), every store
/// moves its truncated index but keeps the entries below it; once syncs work again they go.
/// (A power loss between an unsynced apply state and synced deletes would leave the apply
/// state pointing below a log that is gone.)
#[test]
fn log_gc_deletes_nothing_before_the_kv_engine_is_synced() {
    use engine::RaftEngine;
    let scenario = fail::FailScenario::setup();
    let cfg = raftstore::Config { sync_log: true, ..raftstore::Config::for_tests() };
    let mut cluster = Cluster::with_config(3, cfg);
    cluster.run();
    // Every follower in step first: one that catches up by snapshot drops its old log anyway.
    cluster.must_put(b"k", b"v");
    (1..=3).for_each(|s| cluster.must_get_equal(s, b"k", b"v"));
    let first = cluster.peer_status(1, FIRST_REGION).unwrap().truncated_index + 1;
    fail::cfg("kv_sync_wal_error", "return").unwrap();
    for i in 0..60 {
        cluster.must_put(format!("k{i}").as_bytes(), b"v");
    }
    let truncated = |store| cluster.peer_status(store, FIRST_REGION).unwrap().truncated_index;
    test_raftstore::wait_until("log gc truncates on every store", Duration::from_secs(10), || {
        (1..=3).all(|s| truncated(s) > first + 20)
    });
    let held = |store: u64, index: u64| {
        cluster.raft_engine(store).get_entry(FIRST_REGION, index).unwrap().is_some()
    };
    for store in 1..=3 {
        let gone: Vec<u64> = (first..=truncated(store)).filter(|i| !held(store, *i)).collect();
        assert!(gone.is_empty(), "store {store} deleted {gone:?} before its kv engine synced");
    }
    fail::remove("kv_sync_wal_error");
    test_raftstore::wait_until("the entries go once synced", Duration::from_secs(10), || {
        (1..=3).all(|s| !held(s, first) && !held(s, truncated(s)))
    });
    drop(cluster);
    scenario.teardown();
}
