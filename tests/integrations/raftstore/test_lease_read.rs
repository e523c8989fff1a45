//! Lease reads: served by the leader's lease through `LocalReader` (off the raftstore
//! threads), and everything that must stop them. Leases run on a manual clock here, so
//! expiry is a clock step, not a sleep.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use local_reader::{ManualClock, ReadStats, Redirect};
use proto::{eraftpb::MessageType, raft_cmdpb::AdminCmdType, raft_serverpb::RaftMessage};
use raftstore::{Config, Error, ReadContext};
use test_raftstore::{new_request, transport::Filter, Cluster, TestReader, FIRST_REGION};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A cluster of `stores` on a manual clock; `renew_on_tick` off leaves only writes and reads
/// to renew leases.
fn cluster_on_manual_clock(stores: u64, renew_on_tick: bool) -> (Cluster, Arc<ManualClock>) {
    let mut cfg = Config::for_tests();
    if !renew_on_tick {
        cfg.lease_check_interval = Duration::from_secs(3600);
    }
    let mut cluster = Cluster::with_config(stores, cfg);
    let clock = Arc::new(ManualClock::new(Duration::from_secs(1)));
    cluster.clock = clock.clone();
    cluster.run();
    (cluster, clock)
}

/// Reads `key` through `reader` as a client of the leader would.
fn read(cluster: &Cluster, reader: &mut TestReader, key: &[u8]) -> Option<Vec<u8>> {
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    reader.get(&ReadContext::new(&region, &leader), key, TIMEOUT).unwrap()
}

/// Reads "k" once through `reader` on `store_id`: `want`, served locally, no redirect.
fn assert_local_read(cluster: &Cluster, store_id: u64, reader: &mut TestReader, want: &[u8]) {
    let (got, s) = cluster.counting_reads(store_id, || read(cluster, reader, b"k"));
    assert_eq!(got.as_deref(), Some(want));
    assert_eq!((s.local_hits, s.redirected()), (1, 0), "{s:?}");
}

#[test]
fn reads_stay_local_while_the_lease_holds_then_take_read_index() {
    let (cluster, clock) = cluster_on_manual_clock(3, false);
    cluster.must_put(b"k", b"v1");
    let leader = cluster.wait_leader(FIRST_REGION);
    let mut reader = cluster.reader(leader.store_id);
    let ((), s) = cluster.counting_reads(leader.store_id, || {
        for _ in 0..10 {
            assert_eq!(read(&cluster, &mut reader, b"k").as_deref(), Some(&b"v1"[..]));
        }
    });
    assert_eq!((s.local_hits, s.redirected(), s.read_index_reads), (10, 0, 0), "{s:?}");

    clock.advance(cluster.cfg.raft_store_max_leader_lease);
    let (got, s) = cluster.counting_reads(leader.store_id, || read(&cluster, &mut reader, b"k"));
    assert_eq!(got.as_deref(), Some(&b"v1"[..]));
    assert_eq!(s.local_hits, 0, "{s:?}");
    assert_eq!(s.redirects_for(Redirect::LeaseExpired), 1, "{s:?}");
    assert_eq!((s.read_index_reads, s.peer_lease_reads), (1, 0), "{s:?}");

    // The ReadIndex round was quorum evidence: the lease is back.
    assert_local_read(&cluster, leader.store_id, &mut reader, b"v1");
}

#[test]
fn a_write_renews_the_lease() {
    let (cluster, clock) = cluster_on_manual_clock(3, false);
    cluster.must_put(b"k", b"v1");
    let leader = cluster.wait_leader(FIRST_REGION);
    let mut reader = cluster.reader(leader.store_id);
    read(&cluster, &mut reader, b"k");
    clock.advance(cluster.cfg.raft_store_max_leader_lease + Duration::from_millis(10));
    cluster.must_put(b"k", b"v2"); // proposed after the old lease ended
    assert_local_read(&cluster, leader.store_id, &mut reader, b"v2");
}

#[test]
fn an_idle_leader_renews_its_lease_on_the_lease_check_tick() {
    let (cluster, clock) = cluster_on_manual_clock(3, true);
    cluster.must_put(b"k", b"v1");
    let leader = cluster.wait_leader(FIRST_REGION);
    let mut reader = cluster.reader(leader.store_id);
    clock.advance(cluster.cfg.raft_store_max_leader_lease * 2);
    // No write and no read: the tick's renewal round brings the lease back.
    let read_once = || drop(read(&cluster, &mut reader, b"k"));
    cluster.wait_local_read(leader.store_id, "idle leader renewal", read_once, |_| {});
}

#[test]
fn a_single_voter_region_serves_local_reads() {
    let (cluster, _clock) = cluster_on_manual_clock(1, false);
    cluster.must_put(b"k", b"v");
    let mut reader = cluster.reader(1);
    assert_local_read(&cluster, 1, &mut reader, b"v");
}

#[test]
fn lease_reads_switched_off_take_read_index() {
    let (cluster, _clock) = cluster_on_manual_clock(3, false);
    cluster.must_put(b"k", b"v");
    let leader = cluster.wait_leader(FIRST_REGION);
    let mut reader = cluster.reader(leader.store_id);
    cluster.set_lease_reads(false);
    let (got, s) = cluster.counting_reads(leader.store_id, || read(&cluster, &mut reader, b"k"));
    assert_eq!(got.as_deref(), Some(&b"v"[..]));
    assert_eq!(s.redirects_for(Redirect::Disabled), 1, "{s:?}");
    assert_eq!((s.local_hits, s.peer_lease_reads, s.read_index_reads), (0, 0, 1), "{s:?}");
    cluster.set_lease_reads(true);
    assert_local_read(&cluster, leader.store_id, &mut reader, b"v");
}

/// Drops `MsgTimeoutNow` and counts what it dropped.
struct DropTimeoutNow(Arc<AtomicUsize>);

impl Filter for DropTimeoutNow {
    fn allow(&self, _: u64, _: u64, msg: &RaftMessage) -> bool {
        let drop = msg.get_message().get_msg_type() == MessageType::MsgTimeoutNow;
        if drop {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        !drop
    }
}

#[test]
fn a_transfer_whose_timeout_now_is_lost_leaves_the_lease_suspect() {
    let (cluster, _clock) = cluster_on_manual_clock(3, true);
    cluster.must_put(b"k", b"v");
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let mut reader = cluster.reader(leader.store_id);
    read(&cluster, &mut reader, b"k");
    let dropped = Arc::new(AtomicUsize::new(0));
    cluster.network.add_filter(Box::new(DropTimeoutNow(dropped.clone())));
    let target = test_raftstore::follower_of(&region, &leader);
    let mut req = new_request(&region, &leader, vec![]);
    req.mut_admin_request().set_cmd_type(AdminCmdType::TransferLeader);
    req.mut_admin_request().mut_transfer_leader().set_peer(target);
    cluster.call_command(leader.store_id, req, TIMEOUT).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while dropped.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "no MsgTimeoutNow was sent");
        std::thread::sleep(Duration::from_millis(1));
    }
    // The target may be campaigning: no local read, on any thread, until the transfer ends.
    let ctx = ReadContext::new(&region, &leader);
    let (res, s) = cluster.counting_reads(leader.store_id, || reader.get(&ctx, b"k", TIMEOUT));
    match res {
        Ok(v) => assert_eq!(v.as_deref(), Some(&b"v"[..])),
        Err(e) => assert!(matches!(e, Error::NotLeader { .. }), "{e}"),
    }
    assert_eq!((s.local_hits, s.peer_lease_reads), (0, 0), "{s:?}");

    // The transfer times out; evidence sent after that makes reads local again.
    let read_once = || drop(reader.get(&ctx, b"k", TIMEOUT));
    cluster.wait_local_read(leader.store_id, "after the transfer", read_once, |_| {});
    assert_eq!(cluster.leader_of_region(FIRST_REGION).unwrap().id, leader.id);
}

#[test]
fn a_replaced_peer_is_refreshed_in_the_readers_cache() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.must_put(b"k", b"v1");
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let old = test_raftstore::follower_of(&region, &leader);
    let store = old.store_id;
    cluster.must_transfer_leader(FIRST_REGION, &old);
    let mut reader = cluster.reader(store);
    assert_eq!(read(&cluster, &mut reader, b"k").as_deref(), Some(&b"v1"[..])); // cached

    cluster.must_transfer_leader(FIRST_REGION, &leader);
    cluster.must_remove_peer(FIRST_REGION, &old);
    cluster.must_put(b"k", b"v2");
    let new = cluster.new_peer(store);
    cluster.must_add_peer(FIRST_REGION, &new);
    cluster.must_get_equal(store, b"k", b"v2"); // caught up (by snapshot or log)
    cluster.must_transfer_leader(FIRST_REGION, &new);

    let read_once = || {
        let (_, region) = cluster.leader_region(FIRST_REGION);
        let got = reader.get(&ReadContext::new(&region, &new), b"k", TIMEOUT).unwrap();
        assert_eq!(got.as_deref(), Some(&b"v2"[..]));
    };
    let no_stale_delegate = |s: &ReadStats| {
        assert_eq!(s.redirects_for(Redirect::PeerMismatch), 0, "a stale delegate: {s:?}")
    };
    cluster.wait_local_read(store, "the new peer", read_once, no_stale_delegate);
}

/// Writers count up one key while leadership moves; readers on every store check that no
/// read returns less than what was acknowledged before it started, and that every failure
/// is one to retry.
fn reads_are_linearizable_across_role_changes(lease_reads: bool) {
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.set_lease_reads(lease_reads);
    cluster.must_put(b"k", b"0");
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for store in 1..=3u64 {
        let (acked, stop, pd) = (acked.clone(), stop.clone(), cluster.pd.clone());
        let mut reader = cluster.reader(store);
        threads.push(std::thread::spawn(move || {
            let mut served = 0;
            while !stop.load(Ordering::Relaxed) {
                let floor = acked.load(Ordering::SeqCst);
                let region = pd_client::PdClient::get_region(&*pd, b"k").unwrap().0;
                let peer = region.get_peers().iter().find(|p| p.store_id == store).unwrap();
                match reader.get(&ReadContext::new(&region, peer), b"k", TIMEOUT) {
                    Ok(v) => {
                        let v: u64 = String::from_utf8(v.unwrap()).unwrap().parse().unwrap();
                        assert!(v >= floor, "stale read: {v} after {floor} was acknowledged");
                        served += 1;
                    }
                    Err(e) => assert!(
                        e.is_retryable() || matches!(e, Error::OutcomeUnknown(_)),
                        "not retryable: {e}"
                    ),
                }
            }
            served
        }));
    }
    let mut next = 1u64;
    let peers = cluster.region(FIRST_REGION).get_peers().to_vec();
    for round in 0..6 {
        for _ in 0..20 {
            cluster.must_put(b"k", next.to_string().as_bytes());
            acked.store(next, Ordering::SeqCst);
            next += 1;
        }
        cluster.must_transfer_leader(FIRST_REGION, &peers[round % peers.len()]);
    }
    stop.store(true, Ordering::Relaxed);
    let served: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(served > 0, "no read was served");
}

#[test]
fn lease_reads_are_linearizable_across_role_changes() {
    reads_are_linearizable_across_role_changes(true);
}

#[test]
fn batched_read_index_reads_are_linearizable_across_role_changes() {
    reads_are_linearizable_across_role_changes(false);
}

#[test]
fn a_read_near_the_end_of_the_lease_asks_for_a_renewal() {
    let (cluster, clock) = cluster_on_manual_clock(3, false);
    cluster.must_put(b"k", b"v");
    let leader = cluster.wait_leader(FIRST_REGION);
    let mut reader = cluster.reader(leader.store_id);
    let lease = cluster.cfg.raft_store_max_leader_lease;
    read(&cluster, &mut reader, b"k");
    // Within the last quarter of the lease: served, and the peer asked to renew.
    clock.advance(lease - lease / 8);
    assert_local_read(&cluster, leader.store_id, &mut reader, b"v");
    // The renewal round moves the readers' bound past the old one; no write and no tick
    // renews it here.
    let past_old_bound = clock_now(&clock) + lease / 4;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let meta = cluster.store_meta(leader.store_id);
        let meta = meta.lock().unwrap();
        let remote = meta.reader(FIRST_REGION).unwrap().leader_lease.clone().unwrap();
        if remote.inspect(past_old_bound) == local_reader::LeaseState::Valid {
            break;
        }
        drop(meta);
        assert!(Instant::now() < deadline, "the lease was not renewed ahead of its end");
        std::thread::sleep(Duration::from_millis(5));
    }
    clock.advance(lease / 4);
    assert_local_read(&cluster, leader.store_id, &mut reader, b"v");
}

fn clock_now(clock: &ManualClock) -> Duration {
    local_reader::Clock::now(clock)
}
