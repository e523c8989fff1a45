//! Stale peers: a peer that missed its own removal learns it (from a member, from a store
//! keeping a tombstone of the region, from the placement driver) and goes; one that missed a
//! split catches up; a late message never brings a destroyed peer back.

use std::time::Duration;

use proto::{eraftpb::MessageType, metapb};
use raftstore::{metrics::RaftEvent, Config};
use test_raftstore::{raft_message, transport::OneWay, wait_until, Cluster, FIRST_REGION};

const TIMEOUT: Duration = Duration::from_secs(10);

fn key(i: u64) -> Vec<u8> {
    format!("k{i:05}").into_bytes()
}

/// A small log: a few writes compact it, and a peer that was away needs a snapshot.
fn small_log() -> Config {
    Config { raft_log_gc_count_limit: 20, raft_log_gc_threshold: 5, ..Config::for_tests() }
}

fn peer_on(region: &metapb::Region, store_id: u64) -> metapb::Peer {
    region.get_peers().iter().find(|p| p.store_id == store_id).unwrap().clone()
}

/// A late vote request of `region`'s membership from `from` to `to`, straight to `to`'s store.
fn send_late_vote(
    cluster: &Cluster,
    region: &metapb::Region,
    from: &metapb::Peer,
    to: &metapb::Peer,
) {
    let term = cluster.peer_status(from.store_id, region.id).map_or(100, |s| s.term + 1);
    let vote = raft_message(region, from, to, MessageType::MsgRequestVote, term);
    cluster.router(to.store_id).send_raft_message(vote).unwrap();
}

/// The peer on store 3 is removed while store 3 is cut off, and stays cut off: no member can
/// ever tell it. It has no leader, asks the placement driver, learns of its removal and goes;
/// a late vote of its old membership does not bring it back.
#[test]
fn a_peer_removed_while_cut_off_learns_it_from_the_placement_driver() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.must_put(b"k", b"v");
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let stale_store = (1..=3).find(|s| *s != leader.store_id).unwrap();
    let stale = peer_on(&region, stale_store);
    cluster.isolate(stale_store);
    cluster.must_remove_peer(FIRST_REGION, &stale);
    cluster.must_put(b"k", b"after removal");

    wait_until("the cut-off peer destroyed itself", TIMEOUT, || {
        cluster.peer_status(stale_store, FIRST_REGION).is_none()
    });
    assert!(cluster.raft_event(stale_store, RaftEvent::StaleCheckAsked) >= 1);
    assert!(cluster.raft_event(stale_store, RaftEvent::StalePeerDestroyed) >= 1);
    assert!(cluster.store_meta(stale_store).lock().unwrap().region(FIRST_REGION).is_none());
    cluster.must_get_none(stale_store, b"k");

    // Late votes of its old membership, and of one a step newer that still lists it (a
    // member lagging between the two): neither brings its id back.
    let mut between = region.clone();
    between.mut_region_epoch().conf_ver += 1;
    for epoch in [&region, &between] {
        send_late_vote(&cluster, epoch, &leader, &stale);
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(cluster.peer_status(stale_store, FIRST_REGION).is_none(), "a late vote revived it");
    cluster.must_put(b"k", b"two voters");
}

/// The control: a member cut off for longer than `max_leader_missing_duration` asks the
/// placement driver, which still lists it: it stays, and catches up after the heal.
#[test]
fn a_cut_off_member_asks_the_placement_driver_and_stays() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.must_put(b"k", b"v");
    let leader = cluster.wait_leader(FIRST_REGION);
    let cut = (1..=3).find(|s| *s != leader.store_id).unwrap();
    cluster.isolate(cut);
    wait_until("the cut-off member asked", TIMEOUT, || {
        cluster.raft_event(cut, RaftEvent::StaleCheckAsked) >= 1
    });
    std::thread::sleep(Duration::from_millis(200)); // the answer, had it been "stale"
    assert!(cluster.peer_status(cut, FIRST_REGION).is_some());
    assert_eq!(cluster.raft_event(cut, RaftEvent::StalePeerDestroyed), 0);
    cluster.must_put(b"k", b"while cut off");
    cluster.clear_filters();
    cluster.must_get_equal(cut, b"k", b"while cut off");
}

/// Store 3's peer misses its removal while cut off; meanwhile the region moves off store 2
/// as well, whose peer leaves a tombstone. After the heal store 3 reaches only store 2 (its
/// messages to store 1, the one member it knows, are dropped): the store answers its vote
/// requests from the tombstone with a GC message, and the stale peer goes.
#[test]
fn a_store_keeping_a_tombstone_tells_a_removed_peer() {
    // Long enough that the placement driver does not tell it first.
    let cfg =
        Config { max_leader_missing_duration: Duration::from_secs(60), ..Config::for_tests() };
    let mut cluster = Cluster::with_config(4, cfg);
    cluster.run_with_region_on(&[1, 2, 3]);
    cluster.must_put(b"k", b"v");
    let region = cluster.region(FIRST_REGION);
    cluster.must_transfer_leader(FIRST_REGION, &peer_on(&region, 1));
    let cut = cluster.isolate(3);
    cluster.must_add_peer(FIRST_REGION, &cluster.new_peer(4));
    cluster.must_remove_peer(FIRST_REGION, &peer_on(&region, 3));
    cluster.must_remove_peer(FIRST_REGION, &peer_on(&region, 2));
    wait_until("store 2 keeps a tombstone", TIMEOUT, || {
        cluster.peer_status(2, FIRST_REGION).is_none()
    });
    cluster.must_put(b"k", b"on 1 and 4");
    cluster.network.add_filter(Box::new(OneWay { from: 3, to: 1 }));
    cluster.network.remove_filter(cut);

    wait_until("the removed peer destroyed itself", TIMEOUT, || {
        cluster.peer_status(3, FIRST_REGION).is_none()
    });
    assert!(cluster.raft_event(2, RaftEvent::GcMessageSent) >= 1, "store 2 told it");
    assert!(cluster.raft_event(3, RaftEvent::StalePeerDestroyed) >= 1);
    cluster.must_get_equal(4, b"k", b"on 1 and 4");
}

/// Store 3 is cut off while the region splits and both halves move on past log compaction.
/// After the heal its old peer takes a snapshot of the narrowed region and the new region's
/// peer is created there: store 3 serves both halves' latest data.
#[test]
fn a_peer_that_missed_a_split_catches_up_by_snapshot() {
    let mut cluster = Cluster::with_config(3, small_log());
    cluster.run();
    for i in 0..20 {
        cluster.must_put(&key(i), b"v");
    }
    let leader = cluster.wait_leader(FIRST_REGION);
    let cut = (1..=3).find(|s| *s != leader.store_id).unwrap();
    cluster.must_get_equal(cut, &key(19), b"v");
    cluster.isolate(cut);
    let (left, right) = cluster.must_split(&key(10));
    // Both halves write until each leader compacted past the cut-off peer's last entry:
    // when a compaction lands is up to timing (a GC tick, a leader about to sleep), so the
    // test writes rounds until it has, not a fixed count.
    let stale_last = cluster.peer_status(cut, FIRST_REGION).unwrap().last_index;
    let compacted_past_stale = |cluster: &Cluster| {
        [&left, &right].iter().all(|region| {
            let leader = cluster.wait_leader(region.id);
            cluster.peer_status(leader.store_id, region.id).unwrap().truncated_index > stale_last
        })
    };
    let mut rounds = 0;
    while rounds < 3 || !compacted_past_stale(&cluster) {
        assert!(rounds < 20, "no leader compacted past {stale_last} in {rounds} rounds");
        for i in 0..20 {
            cluster.must_put(&key(i), b"last");
        }
        rounds += 1;
        std::thread::sleep(Duration::from_millis(50)); // a GC tick
    }
    let stale = cluster.peer_status(cut, FIRST_REGION).unwrap();
    assert!(stale.region.end_key.is_empty() && stale.region.start_key.is_empty(), "unsplit");
    cluster.clear_filters();

    for i in 0..20 {
        cluster.must_get_equal(cut, &key(i), b"last");
    }
    for region in [&left, &right] {
        wait_until("both halves on the cut-off store", TIMEOUT, || {
            cluster.peer_status(cut, region.id).is_some_and(|s| {
                s.region.start_key == region.start_key && s.region.end_key == region.end_key
            })
        });
    }
}
