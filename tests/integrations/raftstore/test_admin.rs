//! Admin operations: leader transfer and raft log GC.

use std::time::Duration;

use engine::{RaftEngine, RaftLogBatch};
use proto::{eraftpb::Entry, raft_cmdpb::AdminCmdType};
use raftstore::{Config, Error};
use test_raftstore::{follower_of, new_request, wait_until, Cluster, FIRST_REGION};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn leadership_moves_to_the_asked_peer_and_writes_follow() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.must_put(b"k", b"v1");
    let leader = cluster.wait_leader(FIRST_REGION);
    for target in cluster.region(FIRST_REGION).get_peers().iter().filter(|p| p.id != leader.id) {
        cluster.must_transfer_leader(FIRST_REGION, target);
        cluster.must_put(b"k", target.id.to_string().as_bytes());
        cluster.must_get_equal(leader.store_id, b"k", target.id.to_string().as_bytes());
    }
}

#[test]
fn transfer_to_a_stranger_or_via_a_follower_is_refused() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    let leader = cluster.wait_leader(FIRST_REGION);
    let region = cluster.region(FIRST_REGION);
    let mut stranger = leader.clone();
    stranger.id = 424242;
    let mut req = new_request(&region, &leader, vec![]);
    req.mut_admin_request().set_cmd_type(AdminCmdType::TransferLeader);
    req.mut_admin_request().mut_transfer_leader().set_peer(stranger);
    let res = cluster.call_command(leader.store_id, req.clone(), Duration::from_secs(3));
    assert!(matches!(res, Err(Error::InvalidRequest(_))), "{res:?}");
    let follower = follower_of(&region, &leader);
    // Addressed to the leader's peer but delivered to the follower's store: refused as such.
    let res = cluster.call_command(follower.store_id, req.clone(), Duration::from_secs(3));
    assert!(matches!(res, Err(Error::StoreNotMatch { .. })), "{res:?}");
    req.mut_header().set_peer(follower.clone());
    let res = cluster.call_command(follower.store_id, req, Duration::from_secs(3));
    assert!(matches!(res, Err(Error::NotLeader { .. })), "{res:?}");
}

fn gc_config() -> Config {
    Config {
        raft_log_gc_threshold: 10,
        raft_log_gc_tick_interval: Duration::from_millis(30),
        ..Config::for_tests()
    }
}

#[test]
fn every_peer_compacts_its_log_and_deletes_the_entries() {
    let mut cluster = Cluster::with_config(3, gc_config());
    cluster.run();
    for i in 0..60 {
        cluster.must_put(format!("k{i}").as_bytes(), b"v");
    }
    for store in 1..=3 {
        cluster.wait_truncated_beyond(store, FIRST_REGION, 20);
        let raft = cluster.raft_engine(store);
        // The compaction a leader proposes before it sleeps may move the truncated index
        // between two looks: checked until one look sees a settled log.
        test_raftstore::wait_until("compacted entries deleted, the rest kept", WAIT, || {
            let status = cluster.peer_status(store, FIRST_REGION).unwrap();
            let truncated = status.truncated_index;
            raft.get_entry(FIRST_REGION, truncated).unwrap().is_none()
                && (raft.get_entry(FIRST_REGION, truncated + 1).unwrap().is_some()
                    || status.applied_index == truncated)
        });
    }
    cluster.restart_store(2);
    cluster.must_put(b"after", b"restart");
    cluster.must_get_equal(2, b"after", b"restart");
}

#[test]
fn a_stopped_follower_holds_gc_back_and_catches_up_from_the_log() {
    let mut cluster = Cluster::with_config(3, gc_config());
    cluster.run();
    cluster.must_put(b"k0", b"v");
    let leader = cluster.wait_leader(FIRST_REGION);
    let follower = (1..=3).find(|s| *s != leader.store_id).unwrap();
    for store in 1..=3 {
        cluster.must_get_equal(store, b"k0", b"v");
    }
    let matched = cluster.peer_status(follower, FIRST_REGION).unwrap().applied_index;
    cluster.stop_store(follower);
    for i in 0..60 {
        cluster.must_put(format!("k{i}").as_bytes(), b"w");
    }
    std::thread::sleep(Duration::from_millis(300)); // several GC ticks
    let truncated = cluster.peer_status(leader.store_id, FIRST_REGION).unwrap().truncated_index;
    assert!(
        truncated <= matched,
        "leader compacted to {truncated}, past the stopped follower's {matched}"
    );
    cluster.start_store(follower);
    for i in 0..60 {
        cluster.must_get_equal(follower, format!("k{i}").as_bytes(), b"w");
    }
    cluster.wait_truncated_beyond(leader.store_id, FIRST_REGION, matched);
}

/// A crash can leave log GC's deletes unwritten (with `sync_log` they wait for a kv sync),
/// and the next GC starts past the truncated index: a restarting store sweeps what is left
/// at or below it.
#[test]
fn a_restarting_store_deletes_log_entries_left_below_the_truncated_index() {
    let mut cluster = Cluster::with_config(3, gc_config());
    cluster.run();
    for i in 0..40 {
        cluster.must_put(format!("k{i}").as_bytes(), b"v");
    }
    let truncated = cluster.wait_truncated_beyond(2, FIRST_REGION, 10);
    let raft = cluster.raft_engine(2);
    wait_until("the compaction's deletes written", WAIT, || {
        raft.get_entry(FIRST_REGION, truncated).unwrap().is_none()
    });
    // What a crash between a compaction and its deletes leaves behind, written here behind
    // the running store's back: no later GC of the store covers these indexes.
    let left_behind: Vec<Entry> = (truncated - 2..=truncated)
        .map(|index| Entry { index, term: 1, ..Default::default() })
        .collect();
    let mut batch = raft.log_batch(4);
    batch.append(FIRST_REGION, &left_behind).unwrap();
    raft.consume(&mut batch, true).unwrap();
    drop(raft);
    cluster.restart_store(2);
    let raft = cluster.raft_engine(2);
    let now = cluster.peer_status(2, FIRST_REGION).unwrap().truncated_index;
    let left: Vec<u64> =
        (1..=now).filter(|i| raft.get_entry(FIRST_REGION, *i).unwrap().is_some()).collect();
    assert!(left.is_empty(), "entries at or below the truncated index {now} left: {left:?}");
    cluster.must_put(b"after", b"restart");
    cluster.must_get_equal(2, b"after", b"restart");
}

/// With `sync_log`, log GC's deletes wait for a kv sync (one per GC interval, a minute here).
/// A store stopping meanwhile writes them on its way out: none is left on disk for good
/// (the next GC starts past the durable truncated index).
#[test]
fn log_gc_deletes_waiting_for_a_kv_sync_are_written_at_shutdown() {
    let cfg = Config {
        sync_log: true,
        raft_log_gc_tick_interval: Duration::from_secs(60), // only the GC before sleep runs
        ..gc_config()
    };
    let mut cluster = Cluster::with_config(3, cfg);
    cluster.run();
    let mut truncated = 0;
    for round in 0..2 {
        for i in 0..30 {
            cluster.must_put(format!("k{round}-{i}").as_bytes(), b"v");
        }
        truncated = cluster.wait_truncated_beyond(2, FIRST_REGION, truncated);
    }
    // The first release synced at once; the second waits for the minute to pass.
    cluster.restart_store(2);
    let raft = cluster.raft_engine(2);
    let left: Vec<u64> =
        (1..=truncated).filter(|i| raft.get_entry(FIRST_REGION, *i).unwrap().is_some()).collect();
    assert!(left.is_empty(), "entries below the truncated index {truncated} left: {left:?}");
}
