//! What a raft message must prove before a store steps it or creates a peer for it, and how
//! peers that missed their own removal learn of it.

use std::time::Duration;

use proto::{eraftpb::MessageType, metapb};
use raftstore::metrics::RaftEvent;
use test_raftstore::{
    follower_of, raft_message, transport::DropGc, wait_until, Cluster, FIRST_REGION,
};

fn started(count: u64) -> Cluster {
    let mut cluster = Cluster::new(count);
    cluster.run();
    cluster.must_put(b"k", b"v");
    cluster
}

/// A peer that is not in the region (a store never part of it), with a stale epoch, claims a
/// term far ahead. Stepped, it would move the follower's term and force an election.
#[test]
fn a_heartbeat_from_outside_the_region_with_a_stale_epoch_is_not_stepped() {
    let cluster = started(3);
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let follower = follower_of(&region, &leader);
    let before = cluster.peer_status(follower.store_id, FIRST_REGION).unwrap();
    let mut stale = region.clone();
    stale.mut_region_epoch().conf_ver -= 1;
    let mut outsider = metapb::Peer::default();
    outsider.id = 4242;
    outsider.store_id = leader.store_id; // its GC answer goes somewhere real
    let mut msg =
        raft_message(&stale, &outsider, &follower, MessageType::MsgHeartbeat, before.term + 100);
    msg.mut_message().commit = before.commit_index;
    cluster.router(follower.store_id).send_raft_message(msg).unwrap();

    cluster.must_put(b"after", b"outsider");
    let after = cluster.peer_status(follower.store_id, FIRST_REGION).unwrap();
    assert_eq!(after.term, before.term, "the outsider moved the follower's term");
    assert_eq!(cluster.wait_leader(FIRST_REGION).id, leader.id);
    let counted = |e| cluster.raft_event(follower.store_id, e);
    assert!(counted(RaftEvent::StaleMessageDropped) >= 1);
    assert!(counted(RaftEvent::GcMessageSent) >= 1, "the removed sender was not told");
}

/// A message of a non-member with the region's current epoch contradicts the region: dropped.
#[test]
fn a_vote_request_from_a_stranger_at_the_current_epoch_is_dropped() {
    let cluster = started(3);
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let follower = follower_of(&region, &leader);
    let before = cluster.peer_status(follower.store_id, FIRST_REGION).unwrap();
    let mut stranger = metapb::Peer::default();
    stranger.id = 4343;
    stranger.store_id = 99;
    let mut msg =
        raft_message(&region, &stranger, &follower, MessageType::MsgRequestVote, before.term + 5);
    msg.mut_message().log_term = before.term + 5;
    msg.mut_message().index = before.commit_index + 1000;
    cluster.router(follower.store_id).send_raft_message(msg).unwrap();
    cluster.must_put(b"after", b"stranger");
    let after = cluster.peer_status(follower.store_id, FIRST_REGION).unwrap();
    assert_eq!(after.term, before.term);
}

/// Sends store 2, which holds no region, a message of `msg_type` for an unknown region with
/// range `start..end`: whether a peer was created for it.
fn stray_message(start: &[u8], end: &[u8], msg_type: MessageType) -> bool {
    let mut cluster = Cluster::new(2);
    cluster.run_with_region_on(&[1]);
    cluster.must_put(b"k", b"v");
    let mut region = metapb::Region::default();
    region.id = 777;
    region.start_key = start.to_vec();
    region.end_key = end.to_vec();
    region.mut_region_epoch().conf_ver = 1;
    region.mut_region_epoch().version = 1;
    let (mut from, mut to) = (metapb::Peer::default(), metapb::Peer::default());
    (from.id, from.store_id, to.id, to.store_id) = (778, 1, 779, 2);
    let msg = raft_message(&region, &from, &to, msg_type, 7);
    cluster.router(2).send_raft_message(msg).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    cluster.peer_status(2, 777).is_some()
}

#[test]
fn a_garbage_message_for_an_unknown_region_creates_no_peer() {
    assert!(!stray_message(b"z", b"a", MessageType::MsgHeartbeat), "an inverted range");
    assert!(!stray_message(b"x", b"", MessageType::MsgAppend), "not an initial message");
    // The control: a well-formed first heartbeat for a free range does create the peer.
    assert!(stray_message(b"x", b"", MessageType::MsgHeartbeat));
}

/// Three stores, one of them cut off while its peer is removed (still cut off).
fn removed_while_away() -> (Cluster, metapb::Peer) {
    let cluster = started(3);
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let old = follower_of(&region, &leader);
    cluster.isolate(old.store_id);
    cluster.must_remove_peer(FIRST_REGION, &old);
    (cluster, old)
}

/// A store is cut off while its peer is removed and a new peer of the region is added on it.
/// After the heal the old peer must go and the new one take its place: messages to the newer
/// peer id are not "misaddressed". (GC messages are dropped: the messages to the new peer
/// alone must be enough.)
#[test]
fn a_peer_replaced_while_away_gives_way_to_its_successor() {
    let (cluster, old) = removed_while_away();
    let new = cluster.new_peer(old.store_id);
    cluster.must_add_peer(FIRST_REGION, &new);
    cluster.must_put(b"k", b"while away");
    cluster.clear_filters();
    cluster.network.add_filter(Box::new(DropGc));

    cluster.must_get_equal(old.store_id, b"k", b"while away");
    let status = cluster.peer_status(old.store_id, FIRST_REGION).unwrap();
    assert_eq!(status.peer.id, new.id);
    assert!(cluster.raft_event(old.store_id, RaftEvent::StalePeerDestroyed) >= 1);
    cluster.must_put(b"k", b"after");
    cluster.must_get_equal(old.store_id, b"k", b"after");
}

/// A peer removed while it was cut off learns of it after the heal (the members answer its
/// vote requests with a GC message) and destroys itself, leaving a tombstone.
#[test]
fn a_peer_removed_while_away_destroys_itself_after_the_heal() {
    let (cluster, old) = removed_while_away();
    cluster.must_put(b"k", b"after removal");
    cluster.clear_filters();

    wait_until("the removed peer destroyed itself", Duration::from_secs(10), || {
        cluster.peer_status(old.store_id, FIRST_REGION).is_none()
    });
    assert!(cluster.raft_event(old.store_id, RaftEvent::StalePeerDestroyed) >= 1);
    let meta = cluster.store_meta(old.store_id);
    assert!(meta.lock().unwrap().region(FIRST_REGION).is_none());
    cluster.must_put(b"k", b"two voters");
}

/// A store keeps a tombstone of a removed peer: a late vote request of the old membership
/// creates nothing there, one of a newer membership does.
#[test]
fn a_tombstone_refuses_messages_of_the_old_membership() {
    let cluster = started(3);
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let victim = follower_of(&region, &leader);
    cluster.must_remove_peer(FIRST_REGION, &victim);
    wait_until("the removed peer gone", Duration::from_secs(10), || {
        cluster.peer_status(victim.store_id, FIRST_REGION).is_none()
    });
    let now = cluster.region(FIRST_REGION);
    let term = cluster.peer_status(leader.store_id, FIRST_REGION).unwrap().term;
    for epoch in [&region, &now] {
        let vote = raft_message(epoch, &leader, &victim, MessageType::MsgRequestVote, term + 1);
        cluster.router(victim.store_id).send_raft_message(vote).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(cluster.peer_status(victim.store_id, FIRST_REGION).is_none(), "a late vote revived it");

    // The control. (Cut off, so the members cannot answer the made-up peer with a GC.)
    cluster.isolate(victim.store_id);
    let mut newer = now.clone();
    newer.mut_region_epoch().conf_ver += 1;
    let successor = cluster.new_peer(victim.store_id);
    let vote = raft_message(&newer, &leader, &successor, MessageType::MsgRequestVote, term + 1);
    cluster.router(victim.store_id).send_raft_message(vote).unwrap();
    wait_until("a peer of the newer membership", Duration::from_secs(5), || {
        cluster.peer_status(victim.store_id, FIRST_REGION).is_some()
    });
}

/// A first heartbeat for an unknown region whose range overlaps a region the store holds (at
/// no newer version: not a split this store has yet to apply) creates nothing.
#[test]
fn a_message_for_a_range_the_store_holds_creates_no_peer() {
    let cluster = started(2);
    let mut region = metapb::Region::default();
    region.id = 777;
    region.start_key = b"x".to_vec();
    region.mut_region_epoch().conf_ver = 1;
    region.mut_region_epoch().version = 1;
    let (mut from, mut to) = (metapb::Peer::default(), metapb::Peer::default());
    (from.id, from.store_id, to.id, to.store_id) = (778, 2, 779, 1);
    let msg = raft_message(&region, &from, &to, MessageType::MsgHeartbeat, 7);
    cluster.router(1).send_raft_message(msg).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(cluster.peer_status(1, 777).is_none());
    cluster.must_put(b"x", b"still region 1");
}
