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
