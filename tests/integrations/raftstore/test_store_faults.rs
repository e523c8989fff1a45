//! Faults of a whole store that region-sim's nemesis injects, each with the read rule it must
//! not break: a leader whose threads freeze past its lease, and a leader whose lease clock
//! runs slow within `Config::clock_drift_bound`.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use local_reader::{MonotonicRawClock, SkewedClock};
use proto::metapb;
use raft::StateRole;
use raftstore::ReadContext;
use test_raftstore::{new_request, put_request, wait_until, Cluster, FIRST_REGION};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Reads of one key through a store's local reader, as the old leader: when each started and
/// what it returned.
type Reads = Arc<Mutex<Vec<(Instant, Option<Vec<u8>>)>>>;

/// Reads `key` as `leader` of `region` through its store's reader, back to back with a short
/// timeout, until `stop`: every answered read with its start time.
fn read_through(
    cluster: &Cluster,
    region: &metapb::Region,
    leader: &metapb::Peer,
    key: &'static [u8],
    stop: Arc<AtomicBool>,
) -> (std::thread::JoinHandle<()>, Reads) {
    let mut reader = cluster.reader(leader.store_id);
    let ctx = ReadContext::new(region, leader);
    let reads: Reads = Arc::default();
    let out = reads.clone();
    let handle = std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            if let Ok(value) = reader.get(&ctx, key, Duration::from_millis(30)) {
                out.lock().unwrap().push((started, value));
            }
        }
    });
    (handle, reads)
}

/// Waits until one of `others` (stores other than the old leader's) leads the region.
fn new_leader(cluster: &Cluster, others: &[u64]) -> metapb::Peer {
    let mut found = None;
    wait_until("a new leader among the others", TIMEOUT, || {
        found = others
            .iter()
            .filter_map(|s| cluster.peer_status(*s, FIRST_REGION))
            .find(|s| s.role == StateRole::Leader)
            .map(|s| s.peer);
        found.is_some()
    });
    found.unwrap()
}

/// Writes `value` to `k` through `leader`, retrying until acknowledged; returns when.
fn write_at(cluster: &Cluster, leader: &metapb::Peer, value: &[u8]) -> Instant {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let region = cluster.peer_status(leader.store_id, FIRST_REGION).unwrap().region;
        let mut req = new_request(&region, leader, vec![]);
        req.mut_requests().push(put_request(b"k", value));
        if cluster.call_command(leader.store_id, req, Duration::from_secs(1)).is_ok() {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "no write through the new leader");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// No read that started after `acked` returned `old`.
fn assert_no_stale_read(reads: &Reads, acked: Instant, old: &[u8]) {
    let reads = reads.lock().unwrap();
    let stale: Vec<_> =
        reads.iter().filter(|(at, v)| *at > acked && v.as_deref() == Some(old)).collect();
    assert!(stale.is_empty(), "{} stale reads of {old:?} after the new write", stale.len());
}

/// The leader's store freezes (its raft and apply pollers held) for many leases while its
/// local reader, on other threads, keeps being asked. The others elect a leader and take a
/// write. Neither during the pause (its lease ran out on the clock) nor once it resumes
/// (before it has heard from the others) does the old leader serve the old value.
#[test]
fn a_paused_leader_serves_no_stale_read_during_or_after_the_pause() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.must_put(b"k", b"old");
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let mut reader = cluster.reader(leader.store_id);
    let ctx = ReadContext::new(&region, &leader);
    cluster.wait_local_read(
        leader.store_id,
        "before the pause",
        || {
            reader.get(&ctx, b"k", TIMEOUT).unwrap();
        },
        |_| {},
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (reading, reads) = read_through(&cluster, &region, &leader, b"k", stop.clone());
    let (store_gate, apply_gate) = cluster.node(leader.store_id).poll_gates().unwrap();
    store_gate.close();
    apply_gate.close();

    let others: Vec<u64> = (1..=3).filter(|s| *s != leader.store_id).collect();
    let successor = new_leader(&cluster, &others);
    let acked = write_at(&cluster, &successor, b"new");
    std::thread::sleep(cluster.cfg.raft_store_max_leader_lease * 3);
    store_gate.open();
    apply_gate.open();
    std::thread::sleep(cluster.cfg.election_timeout() * 3);
    stop.store(true, Ordering::Relaxed);
    reading.join().unwrap();

    assert_no_stale_read(&reads, acked, b"old");
    let old_store = cluster.peer_status(leader.store_id, FIRST_REGION).unwrap();
    assert_ne!(old_store.role, StateRole::Leader, "the old leader stepped down");
    cluster.must_get_equal(leader.store_id, b"k", b"new");
}

/// The leader's lease clock runs slow, just within the drift bound; it is cut off while its
/// local reader keeps being asked, the others elect a leader and take a write. No read that
/// started after that write was acknowledged returns the old value. Five rounds, each with a
/// new leader.
#[test]
fn a_slow_lease_clock_within_the_drift_bound_serves_no_stale_read() {
    let mut cluster = Cluster::new(3);
    let rate = 1.0 - cluster.cfg.clock_drift_bound() * 0.95;
    let clocks: Vec<Arc<SkewedClock>> =
        (0..3).map(|_| Arc::new(SkewedClock::new(Arc::new(MonotonicRawClock)))).collect();
    for (i, clock) in clocks.iter().enumerate() {
        cluster.clocks.insert(i as u64 + 1, clock.clone());
    }
    cluster.run();
    for round in 0..5 {
        let old = format!("old{round}").into_bytes();
        cluster.must_put(b"k", &old);
        let (leader, region) = cluster.leader_region(FIRST_REGION);
        clocks[leader.store_id as usize - 1].set_rate(rate);
        let mut reader = cluster.reader(leader.store_id);
        let ctx = ReadContext::new(&region, &leader);
        cluster.wait_local_read(
            leader.store_id,
            "a lease on the slow clock",
            || {
                let _ = reader.get(&ctx, b"k", Duration::from_millis(100));
            },
            |_| {},
        );
        let stop = Arc::new(AtomicBool::new(false));
        let (reading, reads) = read_through(&cluster, &region, &leader, b"k", stop.clone());
        cluster.isolate(leader.store_id);
        let others: Vec<u64> = (1..=3).filter(|s| *s != leader.store_id).collect();
        let successor = new_leader(&cluster, &others);
        let acked = write_at(&cluster, &successor, format!("new{round}").as_bytes());
        std::thread::sleep(cluster.cfg.election_timeout() * 2);
        stop.store(true, Ordering::Relaxed);
        reading.join().unwrap();
        assert_no_stale_read(&reads, acked, &old);
        cluster.clear_filters();
        clocks[leader.store_id as usize - 1].set_rate(1.0);
        cluster.must_get_equal(leader.store_id, b"k", format!("new{round}").as_bytes());
    }
}
