//! Membership changes, snapshots, peers created on demand, destroyed peers.

use std::time::{Duration, Instant};

use engine::{keys, KvEngine, Peekable, CF_META};
use proto::{
    metapb::PeerRole,
    raft_cmdpb::ConfChangeType,
    raft_serverpb::{PeerState, RegionLocalState},
};
use raftstore::{Config, Error};
use test_raftstore::{follower_of, Cluster, FIRST_REGION};

fn key(i: usize) -> Vec<u8> {
    format!("key{i:04}").into_bytes()
}

fn gc_config() -> Config {
    Config {
        raft_log_gc_threshold: 10,
        raft_log_gc_count_limit: 30,
        raft_log_gc_tick_interval: Duration::from_millis(30),
        ..Config::for_tests()
    }
}

fn region_state(cluster: &Cluster, store: u64) -> Option<RegionLocalState> {
    cluster.kv(store).get_msg_cf(CF_META, &keys::region_state_key(FIRST_REGION)).unwrap()
}

#[test]
fn a_peer_added_after_log_gc_catches_up_by_snapshot() {
    let mut cluster = Cluster::with_config(4, gc_config());
    cluster.run_with_region_on(&[1, 2, 3]);
    for i in 0..60 {
        cluster.must_put(&key(i), b"v");
    }
    let (leader, _) = cluster.leader_region(FIRST_REGION);
    cluster.wait_truncated_beyond(leader.store_id, FIRST_REGION, 20);
    assert!(region_state(&cluster, 4).is_none(), "store 4 starts without the region");

    let new = cluster.new_peer(4);
    cluster.must_add_peer(FIRST_REGION, &new);
    for i in 0..60 {
        cluster.must_get_equal(4, &key(i), b"v");
    }
    cluster.must_put(b"after", b"snapshot");
    cluster.must_get_equal(4, b"after", b"snapshot");
    let region = cluster.leader_region(FIRST_REGION).1;
    assert_eq!(region.get_peers().len(), 4);
    assert_eq!(region.get_region_epoch().conf_ver, 2);
    let status = cluster.peer_status(4, FIRST_REGION).unwrap();
    assert_eq!(status.peer.id, new.id);
    assert!(status.truncated_index > 5, "the new peer's log starts at the snapshot");

    cluster.restart_store(4);
    cluster.must_put(b"after", b"restart");
    cluster.must_get_equal(4, b"after", b"restart");
}

#[test]
fn a_removed_peer_is_destroyed_and_its_data_is_gone() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    for i in 0..10 {
        cluster.must_put(&key(i), b"v");
    }
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let victim = follower_of(&region, &leader);
    cluster.must_get_equal(victim.store_id, &key(9), b"v");
    cluster.must_remove_peer(FIRST_REGION, &victim);

    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.peer_status(victim.store_id, FIRST_REGION).is_some() {
        assert!(Instant::now() < deadline, "removed peer still alive");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(cluster.router(victim.store_id).peer_count(), 0, "its mailbox left the router");
    let state = region_state(&cluster, victim.store_id).expect("a tombstone is kept");
    assert_eq!(state.get_state(), PeerState::Tombstone);
    for i in 0..10 {
        cluster.must_get_none(victim.store_id, &key(i));
    }
    let raft = cluster.raft_engine(victim.store_id);
    assert!(engine::RaftEngine::get_raft_state(&raft, FIRST_REGION).unwrap().is_none());
    drop(raft); // an engine handle keeps the store's directory locked across a restart

    cluster.must_put(b"two", b"peers");
    let remaining: Vec<u64> = (1..=3).filter(|s| *s != victim.store_id).collect();
    for s in remaining {
        cluster.must_get_equal(s, b"two", b"peers");
    }
    cluster.must_get_none(victim.store_id, b"two");
    cluster.restart_store(victim.store_id);
    assert!(cluster.peer_status(victim.store_id, FIRST_REGION).is_none(), "a tombstone stays dead");
}

#[test]
fn a_learner_gets_the_data_and_can_be_promoted() {
    let mut cluster = Cluster::new(4);
    cluster.run_with_region_on(&[1, 2, 3]);
    cluster.must_put(b"k", b"v");
    let learner = cluster.new_peer(4);
    cluster.must_add_learner(FIRST_REGION, &learner);
    cluster.must_get_equal(4, b"k", b"v");
    let role = |c: &Cluster| {
        let region = c.leader_region(FIRST_REGION).1;
        region.get_peers().iter().find(|p| p.id == learner.id).unwrap().get_role()
    };
    assert_eq!(role(&cluster), PeerRole::Learner);
    cluster.must_add_peer(FIRST_REGION, &learner);
    assert_eq!(role(&cluster), PeerRole::Voter);
    cluster.must_transfer_leader(FIRST_REGION, &learner);
    cluster.must_put(b"k", b"led-by-4");
    cluster.must_get_equal(1, b"k", b"led-by-4");
}

#[test]
fn a_lagging_follower_catches_up_by_snapshot_after_forced_gc() {
    let mut cluster = Cluster::with_config(3, gc_config());
    cluster.run();
    cluster.must_put(b"k0", b"v");
    let (leader, _) = cluster.leader_region(FIRST_REGION);
    let follower = (1..=3).find(|s| *s != leader.store_id).unwrap();
    cluster.must_get_equal(follower, b"k0", b"v");
    let behind = cluster.peer_status(follower, FIRST_REGION).unwrap().applied_index;
    cluster.stop_store(follower);
    for i in 0..80 {
        cluster.must_put(&key(i), b"w");
    }
    cluster.wait_truncated_beyond(leader.store_id, FIRST_REGION, behind + 1);
    cluster.start_store(follower);
    for i in 0..80 {
        cluster.must_get_equal(follower, &key(i), b"w");
    }
}

#[test]
fn invalid_membership_changes_are_refused() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let res = cluster.change_peer(FIRST_REGION, ConfChangeType::RemoveNode, &leader);
    assert!(matches!(res, Err(Error::InvalidRequest(_))), "removing the leader: {res:?}");
    let member = follower_of(&region, &leader);
    let res = cluster.change_peer(FIRST_REGION, ConfChangeType::AddNode, &member);
    assert!(matches!(res, Err(Error::InvalidRequest(_))), "adding a member: {res:?}");
    let mut stranger = cluster.new_peer(member.store_id);
    stranger.store_id = member.store_id;
    let res = cluster.change_peer(FIRST_REGION, ConfChangeType::AddNode, &stranger);
    assert!(matches!(res, Err(Error::InvalidRequest(_))), "a second peer on one store: {res:?}");

    // A change built against an old epoch is refused with the current region.
    let mut req = test_raftstore::new_request(&region, &leader, vec![]);
    req.mut_header().mut_region_epoch().conf_ver = 0;
    let admin = req.mut_admin_request();
    admin.set_cmd_type(proto::raft_cmdpb::AdminCmdType::ChangePeer);
    admin.mut_change_peer().set_change_type(ConfChangeType::RemoveNode);
    admin.mut_change_peer().set_peer(member);
    let res = cluster.call_command(leader.store_id, req, Duration::from_secs(3));
    assert!(matches!(res, Err(Error::EpochNotMatch { .. })), "{res:?}");
    let _ = KvEngine::snapshot(&cluster.kv(1));
}

/// Counts snapshot pieces on the wire.
struct CountChunks(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl test_raftstore::transport::Filter for CountChunks {
    fn allow(&self, _: u64, _: u64, msg: &proto::raft_serverpb::RaftMessage) -> bool {
        if msg.has_snapshot_chunk() {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        true
    }
}

#[test]
fn a_large_snapshot_travels_in_pieces() {
    let cfg = Config { snap_chunk_size: 4096, ..gc_config() };
    let mut cluster = Cluster::with_config(4, cfg);
    cluster.run_with_region_on(&[1, 2, 3]);
    let value = vec![b'x'; 1024];
    for i in 0..100 {
        cluster.must_put(&key(i), &value);
    }
    let (leader, _) = cluster.leader_region(FIRST_REGION);
    cluster.wait_truncated_beyond(leader.store_id, FIRST_REGION, 20);
    let pieces = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    cluster.network.add_filter(Box::new(CountChunks(pieces.clone())));
    cluster.must_add_peer(FIRST_REGION, &cluster.new_peer(4));
    for i in 0..100 {
        cluster.must_get_equal(4, &key(i), &value);
    }
    let n = pieces.load(std::sync::atomic::Ordering::Relaxed);
    assert!(n >= 25, "a ~100 KiB snapshot in 4 KiB pieces, saw {n} pieces");
}
