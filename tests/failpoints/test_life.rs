//! A peer destroyed while its apply side still has work.

use std::time::Duration;

use engine::{keys, Peekable, CF_META};
use proto::{
    metapb,
    raft_serverpb::{PeerState, RaftApplyState, RegionLocalState},
};
use raftstore::metrics::RaftEvent;
use test_raftstore::{follower_of, wait_until, Cluster, FIRST_REGION};

use crate::util::ApplyPause;

const WAIT: Duration = Duration::from_secs(5);

/// Three stores with a write applied everywhere, and a follower to remove.
fn cluster_with_victim() -> (Cluster, metapb::Peer) {
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.must_put(b"k0", b"v");
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let victim = follower_of(&region, &leader);
    cluster.must_get_equal(victim.store_id, b"k0", b"v");
    (cluster, victim)
}

fn region_state(cluster: &Cluster, store: u64) -> RegionLocalState {
    let key = keys::region_state_key(FIRST_REGION);
    cluster.kv(store).get_msg_cf(CF_META, &key).unwrap().expect("a region state")
}

/// A follower's apply is paused with writes and its own removal queued; the leader's GC
/// message destroys it meanwhile. Its data and state are deleted only after apply has written
/// what it was given: nothing of the old peer outlives the tombstone, and a new peer of the
/// region is created on the store and catches up.
#[test]
fn a_peer_destroyed_while_apply_is_behind_leaves_only_a_tombstone() {
    let scenario = fail::FailScenario::setup();
    let (cluster, victim) = cluster_with_victim();
    let store = victim.store_id;
    let pause = ApplyPause::on_store(store);
    cluster.must_put(b"k1", b"v"); // committed on the victim, not applied
    cluster.must_remove_peer(FIRST_REGION, &victim);
    // Destroying: it waits for its apply side, which is paused.
    wait_until("the GC message reached the victim", WAIT, || {
        cluster.raft_event(store, RaftEvent::StalePeerDestroyed) > 0
    });
    pause.release();
    wait_until("the victim destroyed", WAIT, || cluster.peer_status(store, FIRST_REGION).is_none());
    assert_eq!(region_state(&cluster, store).get_state(), PeerState::Tombstone);
    let kv = cluster.kv(store);
    let apply: Option<RaftApplyState> =
        kv.get_msg_cf(CF_META, &keys::apply_state_key(FIRST_REGION)).unwrap();
    assert!(apply.is_none(), "a late apply write outlived the destroy: {apply:?}");
    for k in [&b"k0"[..], b"k1"] {
        cluster.must_get_none(store, k);
    }

    let new = cluster.new_peer(store);
    cluster.must_add_peer(FIRST_REGION, &new);
    cluster.must_put(b"k2", b"v");
    cluster.must_get_equal(store, b"k2", b"v");
    drop(cluster);
    scenario.teardown();
}

/// A follower applies its own removal and the store stops before it cleans up (fail point
/// `destroy_before_clean_up`): on restart the store finds a region state without itself and
/// finishes the job, leaving a tombstone and no data.
#[test]
fn a_removal_applied_before_a_crash_is_cleaned_up_on_restart() {
    let scenario = fail::FailScenario::setup();
    let (mut cluster, victim) = cluster_with_victim();
    let store = victim.store_id;
    // With the third store down, the removal commits only with the victim's acknowledgement,
    // so the victim hears of the commit before the leader drops it. Otherwise the leader may
    // apply the removal first and only tell the victim it is gone (a GC message): then the
    // victim never applies its removal, and this test is not about that path. The GC message
    // is dropped too: arriving in the same round as the commit, it would destroy the victim
    // before the committed removal reached its apply side.
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let third = region.get_peers().iter().find(|p| p.id != leader.id && p.id != victim.id);
    cluster.stop_store(third.unwrap().store_id);
    cluster.network.add_filter(Box::new(test_raftstore::transport::DropGc));
    fail::cfg("destroy_before_clean_up", "return").unwrap();
    cluster.must_remove_peer(FIRST_REGION, &victim);
    // Applied: the region state no longer holds the victim (still Normal: no clean-up).
    wait_until("the removal applied on the victim", WAIT, || {
        let state = region_state(&cluster, store);
        state.get_region().get_peers().iter().all(|p| p.id != victim.id)
    });
    cluster.stop_store(store);
    fail::remove("destroy_before_clean_up");
    cluster.start_store(store);
    let state: RegionLocalState = cluster
        .kv(store)
        .get_msg_cf(CF_META, &keys::region_state_key(FIRST_REGION))
        .unwrap()
        .unwrap();
    assert_eq!(state.get_state(), PeerState::Tombstone);
    cluster.must_get_none(store, b"k0");
    assert!(cluster.peer_status(store, FIRST_REGION).is_none());
    let raft = cluster.raft_engine(store);
    assert!(engine::RaftEngine::get_raft_state(&raft, FIRST_REGION).unwrap().is_none());
    drop(cluster);
    scenario.teardown();
}

/// A follower's apply is paused with a split queued; meanwhile it is removed from the parent
/// region and told so (GC). When apply resumes, the split still happens on this store: the
/// new region (which keeps this store) gets its peer, and the clean-up deletes only what the
/// parent kept, never the new region's data.
#[test]
fn a_peer_destroyed_with_a_split_in_its_apply_queue_keeps_the_split_regions() {
    let scenario = fail::FailScenario::setup();
    let (cluster, victim) = cluster_with_victim();
    let store = victim.store_id;
    cluster.must_put(b"a", b"left");
    cluster.must_put(b"z", b"right");
    cluster.must_get_equal(store, b"z", b"right");
    let pause = ApplyPause::on_store(store);
    let (left, _right) = cluster.must_split(b"m"); // "a" moves to the new region
    cluster.must_remove_peer(FIRST_REGION, &victim);
    wait_until("the GC message reached the victim", WAIT, || {
        cluster.raft_event(store, RaftEvent::StalePeerDestroyed) > 0
    });
    pause.release();
    wait_until("the victim destroyed", WAIT, || cluster.peer_status(store, FIRST_REGION).is_none());
    assert!(cluster.peer_status(store, left.id).is_some(), "the split's region has no peer here");
    cluster.must_get_equal(store, b"a", b"left");
    cluster.must_put(b"a", b"after");
    cluster.must_get_equal(store, b"a", b"after");
    cluster.must_get_none(store, b"z"); // the parent kept "m".., which is gone here
    drop(cluster);
    scenario.teardown();
}
