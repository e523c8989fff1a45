//! Client-actionable errors are typed and carry what a retry needs; bad input never stops a
//! store.

use std::time::Duration;

use proto::{
    eraftpb::{self, MessageType},
    raft_cmdpb::AdminCmdType,
    raft_serverpb::RaftMessage,
};
use raftstore::{Config, Error};
use test_raftstore::{follower_of, new_request, put_request, Cluster, FIRST_REGION};

const WAIT: Duration = Duration::from_secs(3);

fn started(count: u64) -> Cluster {
    let mut cluster = Cluster::new(count);
    cluster.run();
    cluster.wait_leader(FIRST_REGION);
    cluster
}

#[test]
fn proposal_to_a_follower_gets_not_leader_with_the_leader() {
    let cluster = started(3);
    cluster.must_put(b"k", b"v"); // the leader has committed in its term
    let leader = cluster.wait_leader(FIRST_REGION);
    let region = cluster.region(FIRST_REGION);
    let follower = follower_of(&region, &leader);
    let req = new_request(&region, &follower, vec![put_request(b"k", b"x")]);
    match cluster.call_command(follower.store_id, req, WAIT) {
        Err(Error::NotLeader { region_id, leader: Some(l) }) => {
            assert_eq!(region_id, FIRST_REGION);
            assert_eq!(l.id, leader.id);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_region_gets_region_not_found() {
    let cluster = started(1);
    let mut region = cluster.region(FIRST_REGION);
    region.id = 77;
    let leader = cluster.wait_leader(FIRST_REGION);
    let req = new_request(&region, &leader, vec![put_request(b"k", b"v")]);
    assert!(matches!(cluster.call_command(1, req, WAIT), Err(Error::RegionNotFound(77))));
}

#[test]
fn stale_epoch_gets_epoch_not_match_with_the_current_region() {
    let cluster = started(3);
    let leader = cluster.wait_leader(FIRST_REGION);
    let mut region = cluster.region(FIRST_REGION);
    region.mut_region_epoch().version = 0;
    let req = new_request(&region, &leader, vec![put_request(b"k", b"v")]);
    match cluster.call_command(leader.store_id, req, WAIT) {
        Err(Error::EpochNotMatch { regions, .. }) => {
            assert_eq!(regions.len(), 1);
            assert_eq!(regions[0].id, FIRST_REGION);
            assert_eq!(regions[0].get_region_epoch().version, 1);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn oversized_and_unsupported_commands_are_refused() {
    let cfg = Config { raft_entry_max_size: 1024, ..Config::for_tests() };
    let mut cluster = Cluster::with_config(1, cfg);
    cluster.run();
    let leader = cluster.wait_leader(FIRST_REGION);
    let region = cluster.region(FIRST_REGION);
    let big = new_request(&region, &leader, vec![put_request(b"k", &[7; 4096])]);
    assert!(matches!(cluster.call_command(1, big, WAIT), Err(Error::RaftEntryTooLarge { .. })));
    let mut admin = new_request(&region, &leader, vec![]);
    admin.mut_admin_request().set_cmd_type(AdminCmdType::CompactLog);
    assert!(matches!(cluster.call_command(1, admin, WAIT), Err(Error::InvalidRequest(_))));
    let empty = new_request(&region, &leader, vec![]);
    assert!(matches!(cluster.call_command(1, empty, WAIT), Err(Error::InvalidRequest(_))));
    cluster.must_put(b"still", b"serving");
}

#[test]
fn misaddressed_and_malformed_messages_are_dropped() {
    let cluster = started(3);
    let region = cluster.region(FIRST_REGION);
    let peer_on_2 = region.get_peers().iter().find(|p| p.store_id == 2).unwrap().clone();
    let peer_on_1 = region.get_peers().iter().find(|p| p.store_id == 1).unwrap().clone();
    let router = cluster.router(2);

    let mut wrong_peer = RaftMessage::default();
    wrong_peer.region_id = FIRST_REGION;
    wrong_peer.set_from_peer(peer_on_1.clone());
    let mut to = peer_on_2.clone();
    to.id = 9999;
    wrong_peer.set_to_peer(to);
    let mut m = eraftpb::Message::default();
    m.set_msg_type(MessageType::MsgHeartbeat);
    m.term = 1000;
    m.from = peer_on_1.id;
    m.to = 9999;
    wrong_peer.set_message(m.clone());
    router.send_raft_message(wrong_peer).unwrap();

    let mut mismatched = RaftMessage::default();
    mismatched.region_id = FIRST_REGION;
    mismatched.set_from_peer(peer_on_1.clone());
    mismatched.set_to_peer(peer_on_2.clone());
    m.to = peer_on_2.id;
    m.from = 4242; // disagrees with from_peer
    mismatched.set_message(m);
    router.send_raft_message(mismatched).unwrap();

    let mut other_store = RaftMessage::default();
    other_store.mut_to_peer().store_id = 3;
    assert!(
        router.send_raft_message(other_store).is_err(),
        "a message for store 3 is refused by store 2"
    );

    cluster.must_put(b"after", b"garbage");
    for store in 1..=3 {
        cluster.must_get_equal(store, b"after", b"garbage");
    }
    let status = cluster.peer_status(2, FIRST_REGION).unwrap();
    assert!(status.term < 1000, "a malformed message moved the term to {}", status.term);
}

#[test]
fn a_batch_with_an_unknown_column_family_is_refused_whole() {
    let cluster = started(3);
    cluster.must_put(b"k", b"v");
    let leader = cluster.wait_leader(FIRST_REGION);
    let region = cluster.region(FIRST_REGION);
    for cf in ["nope", engine::CF_META] {
        let mut bad = put_request(b"k2", b"v");
        bad.mut_put().cf = cf.to_string();
        let req = new_request(&region, &leader, vec![put_request(b"k1", b"v"), bad]);
        let res = cluster.call_command(leader.store_id, req, WAIT);
        assert!(matches!(res, Err(Error::InvalidRequest(_))), "{cf}: {res:?}");
    }
    cluster.must_put(b"after", b"refusal");
    for store in 1..=3 {
        cluster.must_get_equal(store, b"after", b"refusal");
        cluster.must_get_none(store, b"k1");
    }
}

#[test]
fn a_command_for_another_peer_of_the_region_is_refused() {
    let cluster = started(3);
    cluster.must_put(b"k", b"v");
    let leader = cluster.wait_leader(FIRST_REGION);
    let region = cluster.region(FIRST_REGION);
    let mut stale = leader.clone();
    stale.id += 1000; // a peer this store no longer (or never) had
    let req = new_request(&region, &stale, vec![put_request(b"k", b"x")]);
    match cluster.call_command(leader.store_id, req, WAIT) {
        Err(Error::MismatchPeerId { request, actual }) => {
            assert_eq!((request, actual), (stale.id, leader.id));
        }
        other => panic!("{other:?}"),
    }
    let mut reader = cluster.reader(leader.store_id);
    let res = reader.get(&raftstore::ReadContext::new(&region, &stale), b"k", WAIT);
    assert!(matches!(res, Err(Error::MismatchPeerId { .. })), "{res:?}");
    assert_eq!(cluster.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
}
