//! Reads on a peer whose split has committed but not applied.

use std::time::Duration;

use raftstore::{Error, ReadContext};
use test_raftstore::{follower_of, get_request, new_request, Cluster, FIRST_REGION};

use crate::util::ApplyPause;

/// Waits until `store_id` has split `parent` off at a key left of `key`: the id of the region
/// holding `key` there.
fn wait_split_applied(cluster: &Cluster, store_id: u64, key: &[u8]) -> u64 {
    let region_of = || {
        let meta = cluster.store_meta(store_id);
        let id = meta.lock().unwrap().region_by_key(key).map(|r| r.id);
        id.filter(|id| *id != FIRST_REGION)
    };
    test_raftstore::wait_until("the split applied", Duration::from_secs(5), || {
        region_of().is_some()
    });
    region_of().expect("just seen")
}

/// The old leader's apply is paused after its split committed; the other stores apply it,
/// the new region elects a leader there and takes a write. No read on the old leader, lease
/// or ReadIndex, may return the value from before that write.
#[test]
fn the_old_leader_serves_no_stale_read_while_its_split_apply_is_paused() {
    let scenario = fail::FailScenario::setup();
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.must_put(b"a", b"old");
    let (leader, parent) = cluster.leader_region(FIRST_REGION);
    let mut reader = cluster.reader(leader.store_id);
    let ctx = ReadContext::new(&parent, &leader);
    assert_eq!(reader.get(&ctx, b"a", Duration::from_secs(3)).unwrap().unwrap(), b"old");

    let pause = ApplyPause::on_store(leader.store_id);
    let split = cluster.router(leader.store_id).split_region(
        FIRST_REGION,
        parent.get_region_epoch().clone(),
        vec![b"m".to_vec()],
    );
    let other = (1..=3).find(|s| *s != leader.store_id).unwrap();
    let new_id = wait_split_applied(&cluster, other, b"a");
    assert_ne!(cluster.wait_leader(new_id).store_id, leader.store_id);
    cluster.must_put(b"a", b"new"); // through the new region's leader

    let res = reader.get(&ctx, b"a", Duration::from_millis(300));
    assert!(!matches!(&res, Ok(Some(v)) if v == b"old"), "a stale lease read: {res:?}");
    // A ReadIndex read waits for the split to apply, but not for ever: while apply stays
    // paused it is refused (retryable) after an election timeout.
    let req = new_request(&parent, &leader, vec![get_request(b"a")]);
    match cluster.call_command(leader.store_id, req, Duration::from_secs(3)) {
        Ok(resp) => panic!("answered while the split is unapplied: {resp:?}"),
        Err(e) => assert!(matches!(e, Error::ServerIsBusy(_)), "{e}"),
    }

    pause.release();
    split.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(cluster.get(b"a").unwrap().as_deref(), Some(&b"new"[..]));
    drop(cluster);
    scenario.teardown();
}

/// A follower's apply is paused while a split commits; the new region elects a leader on the
/// other stores and takes a write to a key that moved. A follower read of that key, waiting on
/// the paused apply, is checked against the region as the split left it once apply resumes:
/// refused with the split's regions, never answered from the old range.
#[test]
fn a_follower_read_waiting_for_a_split_is_checked_against_the_split() {
    let scenario = fail::FailScenario::setup();
    // Long elections: a read stuck behind the split is refused only after one.
    let mut cluster = Cluster::with_config(3, test_raftstore::config_with_election_ticks(50));
    cluster.run();
    cluster.must_put(b"a", b"old");
    let (leader, parent) = cluster.leader_region(FIRST_REGION);
    let follower = follower_of(&parent, &leader);
    cluster.must_get_equal(follower.store_id, b"a", b"old");

    let pause = ApplyPause::on_store(follower.store_id);
    let split = cluster.router(leader.store_id).split_region(
        FIRST_REGION,
        parent.get_region_epoch().clone(),
        vec![b"m".to_vec()],
    );
    split.recv_timeout(Duration::from_secs(5)).unwrap();
    let new_id = wait_split_applied(&cluster, leader.store_id, b"a");
    assert_ne!(cluster.wait_leader(new_id).store_id, follower.store_id);
    cluster.must_put(b"a", b"new"); // through the new region, without the follower

    let mut reader = cluster.reader(follower.store_id);
    let ctx = ReadContext::new(&parent, &follower).replica_read();
    let read = std::thread::spawn(move || reader.get(&ctx, b"a", Duration::from_secs(3)));
    std::thread::sleep(Duration::from_millis(150)); // the read index arrives; apply is held
    pause.release();
    let res = read.join().unwrap();
    assert!(!matches!(&res, Ok(Some(v)) if v == b"old"), "a stale follower read: {res:?}");
    match res {
        Err(Error::EpochNotMatch { regions, .. }) => {
            assert!(regions.iter().any(|r| r.id == new_id), "the split's regions: {regions:?}")
        }
        other => panic!("expected EpochNotMatch with the split's regions, got {other:?}"),
    }
    drop(cluster);
    scenario.teardown();
}
