//! Reads against paused apply and persistence.

use std::{sync::Arc, time::Duration};

use local_reader::ManualClock;
use raftstore::{Error, ReadContext};
use test_raftstore::{get_request, new_request, put_request, Cluster, FIRST_REGION};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A ReadIndex read is answered only once the apply side has reached its read index: with
/// apply paused after a write committed, the read waits instead of returning the older value.
/// (A lease read would answer at once from what is applied, which is as linearizable: the
/// write is not acknowledged yet. Lease reads are off here to test ReadIndex.)
#[test]
fn a_read_index_read_waits_for_apply_to_reach_its_index() {
    let scenario = fail::FailScenario::setup();
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.set_lease_reads(false);
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
    cluster.set_lease_reads(false); // every read takes ReadIndex
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

/// The local reader takes its engine snapshot before it reads the clock and checks the lease
/// (TiKV #13553). Paused between the two while its leader is cut off, its lease runs out and
/// a new leader takes a write: the read must not come back with the old value.
#[test]
fn the_snapshot_is_taken_before_the_lease_is_checked() {
    let scenario = fail::FailScenario::setup();
    let mut cluster = Cluster::new(3);
    let clock = Arc::new(ManualClock::new(Duration::from_secs(1)));
    cluster.clock = clock.clone();
    cluster.run();
    cluster.must_put(b"k", b"old");
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let mut reader = cluster.reader(leader.store_id);
    let ctx = ReadContext::new(&region, &leader);
    assert_eq!(reader.get(&ctx, b"k", Duration::from_secs(3)).unwrap().unwrap(), b"old");

    fail::cfg("local_read_after_snapshot", "pause").unwrap();
    let paused = std::thread::spawn(move || reader.get(&ctx, b"k", Duration::from_secs(3)));
    std::thread::sleep(Duration::from_millis(100)); // holding a snapshot with "old"
    cluster.isolate(leader.store_id);
    clock.advance(Duration::from_secs(10)); // the old leader's lease is over
    cluster.must_put(b"k", b"new"); // through a new leader
    fail::remove("local_read_after_snapshot");
    match paused.join().unwrap() {
        Ok(v) => assert_ne!(v.as_deref(), Some(&b"old"[..]), "a stale read"),
        Err(e) => assert!(matches!(e, Error::NotLeader { .. } | Error::OutcomeUnknown(_)), "{e}"),
    }
    let stats = cluster.read_stats(leader.store_id);
    assert_eq!(stats.local_hits, 1, "only the first read was local: {stats:?}");
    drop(cluster);
    scenario.teardown();
}

/// The leader's apply is paused after a write committed; a follower that applied it asks the
/// leader for a read index. Answered at once (the commit index, from the lease), the follower
/// would show the write while a later lease read on the leader, from what the leader has
/// applied, does not: a read going back in time. The answer waits for the leader's apply.
#[test]
fn a_follower_read_never_runs_ahead_of_the_leaders_apply() {
    let scenario = fail::FailScenario::setup();
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.must_put(b"k", b"v1");
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let follower = test_raftstore::follower_of(&region, &leader);
    let pause = crate::util::ApplyPause::on_store(leader.store_id);
    let write = new_request(&region, &leader, vec![put_request(b"k", b"v2")]);
    let res = cluster.call_command(leader.store_id, write, Duration::from_millis(300));
    assert!(matches!(res, Err(Error::OutcomeUnknown(_))), "applied while paused: {res:?}");
    cluster.must_get_equal(follower.store_id, b"k", b"v2"); // the follower applied it

    let mut on_follower = cluster.reader(follower.store_id);
    let ctx = ReadContext::new(&region, &follower).replica_read();
    let follower_saw = on_follower.get(&ctx, b"k", Duration::from_millis(300));
    let mut on_leader = cluster.reader(leader.store_id);
    let leader_saw = on_leader.get(&ReadContext::new(&region, &leader), b"k", TIMEOUT);
    if let Ok(Some(v)) = &follower_saw {
        assert_eq!(
            leader_saw.as_ref().ok().and_then(|v| v.as_deref()),
            Some(&v[..]),
            "the follower read {v:?}, the leader read after it went back"
        );
    }
    pause.release();
    assert_eq!(on_follower.get(&ctx, b"k", TIMEOUT).unwrap().as_deref(), Some(&b"v2"[..]));
    drop(cluster);
    scenario.teardown();
}
