//! Reads against paused apply and persistence.

use std::time::Duration;

use raftstore::Error;
use test_raftstore::{get_request, new_request, put_request, Cluster, FIRST_REGION};

/// A leader read is answered only once the apply side has reached its read index: with apply
/// paused after a write committed, the read waits instead of returning the older value.
#[test]
fn a_leader_read_waits_for_apply_to_reach_its_index() {
    let scenario = fail::FailScenario::setup();
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.must_put(b"k", b"v1");
    let (leader, region) = cluster.leader_region(FIRST_REGION);

    fail::cfg("apply_before_write", "pause").unwrap();
    let write = new_request(&region, &leader, vec![put_request(b"k", b"v2")]);
    let res = cluster.call_command(leader.store_id, write, Duration::from_millis(300));
    assert!(matches!(res, Err(Error::OutcomeUnknown(_))), "applied while paused: {res:?}");

    let read = new_request(&region, &leader, vec![get_request(b"k")]);
    let res = cluster.call_command(leader.store_id, read.clone(), Duration::from_millis(500));
    assert!(
        matches!(res, Err(Error::OutcomeUnknown(_))),
        "answered before apply caught up: {res:?}"
    );

    fail::remove("apply_before_write");
    let resp = cluster.call_command(leader.store_id, read, Duration::from_secs(5)).unwrap();
    assert_eq!(resp.get_responses()[0].get_get().value, b"v2");
    drop(cluster);
    scenario.teardown();
}

/// A ReadIndex confirmation that never arrives (dropped at the leader) is not answered, and
/// the read is answered once confirmations flow again: the retry on the tick re-sends it.
#[test]
fn a_lost_read_index_confirmation_is_retried() {
    let scenario = fail::FailScenario::setup();
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.must_put(b"k", b"v");
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    fail::cfg("read_index_confirmed", "return").unwrap();
    let read = new_request(&region, &leader, vec![get_request(b"k")]);
    let (cmd, rx) = raftstore::msg::RaftCommand::new(read);
    cluster.router(leader.store_id).send_command(cmd);
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "answered without a confirmation"
    );
    fail::remove("read_index_confirmed");
    let resp = rx.recv_timeout(Duration::from_secs(5)).expect("retried and answered");
    assert_eq!(resp.get_responses()[0].get_get().value, b"v");
    drop(cluster);
    scenario.teardown();
}
