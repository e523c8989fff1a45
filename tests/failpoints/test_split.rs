//! Reads on a leader whose split has committed but not applied.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use raftstore::{Error, ReadContext};
use test_raftstore::{get_request, new_request, Cluster, FIRST_REGION};

/// Lets a paused apply go when dropped.
struct Release(Arc<AtomicBool>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
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

    let paused = Arc::new(AtomicBool::new(true));
    let _release = Release(paused.clone()); // a failed assertion must not leave apply paused
    let (flag, prefix) = (paused.clone(), format!("apply-{}", leader.store_id));
    fail::cfg_callback("apply_before_write", move || {
        let on_leader = std::thread::current().name().is_some_and(|n| n.starts_with(&prefix));
        while on_leader && flag.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
    })
    .unwrap();
    let split = cluster.router(leader.store_id).split_region(
        FIRST_REGION,
        parent.get_region_epoch().clone(),
        vec![b"m".to_vec()],
    );
    let other = (1..=3).find(|s| *s != leader.store_id).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let new_id = loop {
        let meta = cluster.store_meta(other);
        let id = meta.lock().unwrap().region_by_key(b"a").map(|r| r.id);
        if let Some(id) = id.filter(|id| *id != FIRST_REGION) {
            break id;
        }
        assert!(Instant::now() < deadline, "the split never applied on store {other}");
        std::thread::sleep(Duration::from_millis(5));
    };
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

    paused.store(false, Ordering::Release);
    fail::remove("apply_before_write");
    split.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(cluster.get(b"a").unwrap().as_deref(), Some(&b"new"[..]));
    drop(cluster);
    scenario.teardown();
}
