//! Sleep against a paused apply: a follower agrees to sleep once the leader's last entry is
//! committed and handed to apply, and its apply finishes while it sleeps, without waking the
//! region.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use proto::raft_serverpb::{ExtraMessageType, RaftMessage};
use raftstore::{operation::hibernate::GroupState, Config};
use test_raftstore::{
    new_request, put_request, transport::Filter, wait_until, Cluster, FIRST_REGION,
};

use crate::util::ApplyPause;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Counts the wake-up notices followers send their leader.
struct WakeUps(Arc<AtomicU64>);

impl Filter for WakeUps {
    fn allow(&self, _: u64, _: u64, msg: &RaftMessage) -> bool {
        if msg.has_extra() && msg.get_extra().get_field_type() == ExtraMessageType::MsgRegionWakeUp
        {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        true
    }
}

fn asleep(cluster: &Cluster, store: u64) -> bool {
    cluster.peer_status(store, FIRST_REGION).is_some_and(|s| s.hibernate == GroupState::Idle)
}

#[test]
fn a_follower_sleeps_before_its_apply_catches_up_and_applies_asleep() {
    let scenario = fail::FailScenario::setup();
    // Only store liveness could wake a sleeping follower here, not its own leader checks.
    let cfg =
        Config { sleeping_follower_check_interval: Duration::from_secs(60), ..Config::for_tests() };
    let mut cluster = Cluster::with_config(3, cfg);
    cluster.run();
    cluster.must_put(b"k", b"v1");
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let follower = (1..=3).find(|s| *s != leader.store_id).unwrap();
    wait_until("the region sleeps", TIMEOUT, || (1..=3).all(|s| asleep(&cluster, s)));

    let pause = ApplyPause::on_store(follower);
    let wake_ups = Arc::new(AtomicU64::new(0));
    cluster.network.add_filter(Box::new(WakeUps(wake_ups.clone())));
    // Straight to the leader: a client trying a follower first would wake it.
    let req = new_request(&region, &leader, vec![put_request(b"k", b"v2")]);
    cluster.call_command(leader.store_id, req, TIMEOUT).unwrap();
    // Asleep again on every store, the follower's apply still held: it agreed once the write
    // was committed and handed to apply, not applied.
    wait_until("the region sleeps with apply paused", TIMEOUT, || {
        (1..=3).all(|s| asleep(&cluster, s))
    });
    let status = cluster.peer_status(follower, FIRST_REGION).unwrap();
    assert!(status.applied_index < status.commit_index, "applied while paused: {status:?}");
    cluster.must_get_equal(follower, b"k", b"v1");

    pause.release();
    cluster.must_get_equal(follower, b"k", b"v2");
    wait_until("the follower's applied index catches up", TIMEOUT, || {
        let s = cluster.peer_status(follower, FIRST_REGION).unwrap();
        s.applied_index == s.commit_index
    });
    thread::sleep(Duration::from_millis(100)); // a wake-up would be on its way by now
    assert!((1..=3).all(|s| asleep(&cluster, s)), "an apply result woke the region");
    assert_eq!(wake_ups.load(Ordering::SeqCst), 0, "the follower woke its leader");
    drop(cluster);
    scenario.teardown();
}
