//! Every snapshot sent ends in a report to raft: a snapshot lost on the way (a piece dropped,
//! the receiver's store restarted while pieces were in flight) is sent again, instead of
//! leaving the follower behind for as long as the leader leads.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use proto::{eraftpb::MessageType, raft_serverpb::RaftMessage};
use raftstore::{metrics::RaftEvent, Config};
use test_raftstore::{
    chaos::Hold,
    follower_of,
    transport::{Filter, Verdict},
    wait_until, Cluster, FIRST_REGION,
};

fn gc_config() -> Config {
    Config {
        raft_log_gc_threshold: 10,
        raft_log_gc_count_limit: 30,
        raft_log_gc_tick_interval: Duration::from_millis(30),
        snap_chunk_size: 8 << 10,
        ..Config::for_tests()
    }
}

fn key(i: usize) -> Vec<u8> {
    format!("key{i:04}").into_bytes()
}

fn is_snapshot(msg: &RaftMessage) -> bool {
    msg.get_message().get_msg_type() == MessageType::MsgSnapshot
}

/// Cuts store `store` off until `healed`; then drops snapshot piece `drop_seq` to it once and
/// delays every snapshot piece to it by `delay`, counting the pieces sent.
struct SnapshotTrouble {
    store: u64,
    healed: AtomicBool,
    drop_seq: Option<u64>,
    dropped: AtomicBool,
    delay: Duration,
    pieces: AtomicUsize,
}

impl SnapshotTrouble {
    fn new(store: u64, drop_seq: Option<u64>, delay: Duration) -> Arc<Self> {
        Arc::new(SnapshotTrouble {
            store,
            healed: AtomicBool::new(false),
            drop_seq,
            dropped: AtomicBool::new(false),
            delay,
            pieces: AtomicUsize::new(0),
        })
    }
}

/// The filter the network holds; the test keeps the other handle.
struct TroubleFilter(Arc<SnapshotTrouble>);

impl Filter for TroubleFilter {
    fn verdict(&self, from: u64, to: u64, msg: &RaftMessage) -> Verdict {
        let t = &self.0;
        if !t.healed.load(Ordering::Acquire) {
            return if from == t.store || to == t.store { Verdict::Drop } else { Verdict::Pass };
        }
        if to != t.store || !is_snapshot(msg) {
            return Verdict::Pass;
        }
        t.pieces.fetch_add(1, Ordering::AcqRel);
        let seq = msg.get_snapshot_chunk().seq;
        if t.drop_seq == Some(seq) && !t.dropped.swap(true, Ordering::AcqRel) {
            return Verdict::Drop;
        }
        if t.delay.is_zero() {
            Verdict::Pass
        } else {
            Verdict::Delay(t.delay)
        }
    }
}

/// A cluster whose follower missed enough writes that only a snapshot brings it back, with
/// `trouble` between it and the others: returns the cluster and the follower's store.
fn lagging_follower(
    trouble: impl FnOnce(u64) -> Arc<SnapshotTrouble>,
) -> (Cluster, Arc<SnapshotTrouble>) {
    let mut cluster = Cluster::with_config(3, gc_config());
    cluster.run();
    cluster.must_put(b"k", b"v");
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let follower = follower_of(&region, &leader);
    let trouble = trouble(follower.store_id);
    cluster.network.add_filter(Box::new(TroubleFilter(trouble.clone())));
    let value = vec![b'v'; 1024]; // 60 KiB in all: a snapshot of several pieces
    for i in 0..60 {
        cluster.must_put(&key(i), &value);
    }
    let status = cluster.peer_status(follower.store_id, FIRST_REGION).unwrap();
    cluster.wait_truncated_beyond(leader.store_id, FIRST_REGION, status.applied_index + 1);
    (cluster, trouble)
}

fn must_catch_up(cluster: &Cluster, store: u64) {
    for i in [0, 59] {
        cluster.must_get_equal(store, &key(i), &[b'v'; 1024]);
    }
    cluster.must_put(b"k", b"caught up");
    cluster.must_get_equal(store, b"k", b"caught up");
}

#[test]
fn a_snapshot_with_a_lost_piece_is_sent_again() {
    let (cluster, trouble) = lagging_follower(|s| SnapshotTrouble::new(s, Some(1), Duration::ZERO));
    trouble.healed.store(true, Ordering::Release);
    must_catch_up(&cluster, trouble.store);
    assert!(trouble.dropped.load(Ordering::Acquire), "no piece was dropped: the test is void");
    let leader = cluster.wait_leader(FIRST_REGION);
    assert!(cluster.raft_event(leader.store_id, RaftEvent::SnapshotFailed) >= 1);
}

#[test]
fn a_snapshot_in_flight_across_a_receiver_restart_is_sent_again() {
    let delay = Duration::from_millis(300);
    let (mut cluster, trouble) = lagging_follower(|s| SnapshotTrouble::new(s, None, delay));
    let store = trouble.store;
    trouble.healed.store(true, Ordering::Release);
    wait_until("a snapshot sent", Duration::from_secs(5), || {
        trouble.pieces.load(Ordering::Acquire) > 0
    });
    cluster.stop_store(store); // the pieces on the way find no one
    std::thread::sleep(delay + Duration::from_millis(100));
    cluster.start_store(store);
    must_catch_up(&cluster, store);
}

/// A snapshot the follower refuses (here: damaged on the way) is reported by the follower at
/// once, and raft sends another well before `snap_send_timeout` (set long here).
#[test]
fn a_refused_snapshot_is_sent_again_without_waiting_for_the_timeout() {
    let cfg = Config {
        snap_send_timeout: Duration::from_secs(30),
        snap_chunk_size: 1 << 20,
        ..gc_config()
    };
    let mut cluster = Cluster::with_config(3, cfg);
    cluster.run();
    cluster.must_put(b"k", b"v");
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let store = follower_of(&region, &leader).store_id;
    cluster.stop_store(store);
    for i in 0..60 {
        cluster.must_put(&key(i), &[b'v'; 1024]);
    }
    cluster.wait_truncated_beyond(leader.store_id, FIRST_REGION, 10);
    let first = AtomicBool::new(true);
    let (hold, held) = Hold::new(move |_, to, m| {
        to == store && is_snapshot(m) && first.swap(false, Ordering::AcqRel)
    });
    cluster.network.add_filter(Box::new(hold));
    cluster.start_store(store);
    wait_until("a snapshot sent", Duration::from_secs(5), || !held.is_empty());
    for mut msg in held.take() {
        msg.mut_message().mut_snapshot().data = b"damaged".to_vec().into();
        cluster.network.deliver_now(msg).unwrap();
    }
    let started = std::time::Instant::now();
    must_catch_up(&cluster, store);
    assert!(started.elapsed() < Duration::from_secs(10), "caught up only by the timeout");
    assert!(cluster.raft_event(leader.store_id, RaftEvent::SnapshotFailed) >= 1);
}

/// The leader keeps the snapshot it generated for one new peer; a second peer added later,
/// before the log is compacted past that snapshot, must not be sent it (its membership lacks
/// the second peer, which refuses it): the leader generates one that holds it.
#[test]
fn a_peer_added_after_the_last_snapshot_gets_a_snapshot_that_holds_it() {
    let cfg = Config {
        raft_log_gc_threshold: 10_000,
        raft_log_gc_count_limit: 100_000,
        ..Config::for_tests()
    };
    let mut cluster = Cluster::with_config(3, cfg);
    cluster.run_with_region_on(&[1]);
    cluster.must_put(b"k1", b"v1");
    let second = cluster.new_peer(2);
    cluster.must_add_peer(FIRST_REGION, &second);
    cluster.must_get_equal(2, b"k1", b"v1"); // through a snapshot the leader keeps
    cluster.must_put(b"k2", b"v2");
    let third = cluster.new_peer(3);
    cluster.must_add_peer(FIRST_REGION, &third);
    cluster.must_get_equal(3, b"k2", b"v2");
    cluster.must_get_equal(3, b"k1", b"v1");
}
