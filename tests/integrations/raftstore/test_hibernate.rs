//! Hibernation: an idle region sleeps (no ticks, no heartbeats) and wakes on demand, without
//! ever serving a stale read: a write wakes it, a dead leader is replaced, a follower cut off
//! while the region slept catches up, a region with a down peer still sleeps, and steady lease
//! reads do not keep it awake.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use proto::{
    eraftpb::MessageType,
    raft_serverpb::{ExtraMessageType, RaftMessage},
};
use raftstore::{operation::hibernate::GroupState, Config, ReadContext};
use test_raftstore::{transport::Filter, wait_until, Cluster, FIRST_REGION};

const TIMEOUT: Duration = Duration::from_secs(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn hibernating() -> Config {
    Config { hibernate_regions: true, ..Config::for_tests() }
}

/// Hibernation on, and a sleeping follower's direct check of its leader too rare to matter
/// within a test: only store liveness can wake it.
fn liveness_only() -> Config {
    Config { sleeping_follower_check_interval: Duration::from_secs(60), ..hibernating() }
}

/// A 3-store cluster with hibernation on, one region, one write.
fn cluster() -> Cluster {
    cluster_with(hibernating())
}

fn cluster_with(cfg: Config) -> Cluster {
    let mut cluster = Cluster::with_config(3, cfg);
    cluster.run();
    cluster.must_put(b"k", b"v1");
    cluster
}

fn state(cluster: &Cluster, store: u64) -> Option<GroupState> {
    cluster.peer_status(store, FIRST_REGION).map(|s| s.hibernate)
}

fn wait_asleep(cluster: &Cluster, stores: &[u64]) {
    wait_until("the region sleeps on every store", TIMEOUT, || {
        stores.iter().all(|s| state(cluster, *s) == Some(GroupState::Idle))
    });
}

/// Counts the raft messages of some types that cross the network (letting them through).
struct Count {
    types: Vec<MessageType>,
    seen: Arc<AtomicU64>,
}

impl Filter for Count {
    fn allow(&self, _: u64, _: u64, msg: &RaftMessage) -> bool {
        if !msg.has_extra() && self.types.contains(&msg.get_message().get_msg_type()) {
            self.seen.fetch_add(1, Ordering::SeqCst);
        }
        true
    }
}

/// Counts every message on the network: those of regions, and the stores' own (region 0).
struct CountAll {
    regions: Arc<AtomicU64>,
    stores: Arc<AtomicU64>,
}

impl Filter for CountAll {
    fn allow(&self, _: u64, _: u64, msg: &RaftMessage) -> bool {
        let n = if msg.region_id == 0 { &self.stores } else { &self.regions };
        n.fetch_add(1, Ordering::SeqCst);
        true
    }
}

fn count(cluster: &Cluster, types: &[MessageType]) -> Arc<AtomicU64> {
    let seen = Arc::new(AtomicU64::new(0));
    cluster.network.add_filter(Box::new(Count { types: types.to_vec(), seen: seen.clone() }));
    seen
}

#[test]
fn an_idle_region_sleeps_sends_no_heartbeat_and_a_write_wakes_it() {
    let cluster = cluster();
    wait_asleep(&cluster, &[1, 2, 3]);
    let heartbeats = count(&cluster, &[MessageType::MsgHeartbeat, MessageType::MsgAppend]);
    // Twenty heartbeat intervals of a 10 ms tick.
    thread::sleep(Duration::from_millis(400));
    assert_eq!(heartbeats.load(Ordering::SeqCst), 0, "a sleeping region sends nothing");
    cluster.must_put(b"k", b"v2");
    for store in 1..=3 {
        cluster.must_get_equal(store, b"k", b"v2");
    }
    wait_asleep(&cluster, &[1, 2, 3]); // and back to sleep
    assert!(cluster.node(1).peers_in_hibernate_state(GroupState::Idle) >= 1, "the gauge");
}

/// Counts appends that carry no entry: a leader's commit broadcast, or raft's catch-up of a
/// follower whose heartbeat answer shows an append still in flight.
struct EmptyAppends(Arc<AtomicU64>);

impl Filter for EmptyAppends {
    fn allow(&self, _: u64, _: u64, msg: &RaftMessage) -> bool {
        let m = msg.get_message();
        if !msg.has_extra() && m.get_msg_type() == MessageType::MsgAppend && m.entries.is_empty() {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        true
    }
}

/// Lazy commit: a write to a sleeping region sends no commit message (a broadcast would send
/// one to each follower for every write). The followers learn the commit from the leader's
/// sleep request or a heartbeat, apply the write, and the region sleeps again.
#[test]
fn a_write_to_a_sleeping_region_sends_no_commit_message_and_followers_still_apply_it() {
    const WRITES: u64 = 20;
    let cluster = cluster_with(liveness_only());
    wait_asleep(&cluster, &[1, 2, 3]);
    let empty = Arc::new(AtomicU64::new(0));
    cluster.network.add_filter(Box::new(EmptyAppends(empty.clone())));
    for i in 0..WRITES {
        let value = format!("v{i}");
        cluster.must_put(b"k", value.as_bytes());
        for store in 1..=3 {
            cluster.must_get_equal(store, b"k", value.as_bytes());
        }
        wait_asleep(&cluster, &[1, 2, 3]);
    }
    // With broadcasts: at least 2 * WRITES. A catch-up or a new leader's first commits: few.
    let empty = empty.load(Ordering::SeqCst);
    assert!(empty < WRITES, "{empty} appends without entries for {WRITES} writes");
}

/// Counts the sleep requests that cross the network.
struct SleepRequests(Arc<AtomicU64>);

impl Filter for SleepRequests {
    fn allow(&self, _: u64, _: u64, msg: &RaftMessage) -> bool {
        if msg.has_extra()
            && msg.get_extra().get_field_type() == ExtraMessageType::MsgHibernateRequest
        {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        true
    }
}

/// A leader whose last sleep was short asks to sleep only after a heartbeat interval with
/// nothing to do: a region written more often than that asks once, after the first write
/// (its sleep before was long), then not between writes (a request and its answers cost a
/// heartbeat round each time), and still sleeps once the writes stop.
#[test]
fn a_region_written_within_a_heartbeat_interval_does_not_ask_to_sleep_between_writes() {
    const WRITES: u64 = 30;
    // A 100 ms tick: a heartbeat interval of 200 ms, several writes long even on a slow host.
    let cfg = Config { hibernate_regions: true, ..Config::for_tests_with_tick(ms(100)) };
    let cluster = cluster_with(cfg);
    wait_asleep(&cluster, &[1, 2, 3]);
    let requests = Arc::new(AtomicU64::new(0));
    cluster.network.add_filter(Box::new(SleepRequests(requests.clone())));
    let start = Instant::now();
    for i in 0..WRITES {
        cluster.must_put(b"k", format!("v{i}").as_bytes());
        // Long enough for a leader asking at once to have asked (and the region to sleep).
        thread::sleep(Duration::from_millis(30));
    }
    let (asked, took) = (requests.load(Ordering::SeqCst), start.elapsed());
    // Asking after every write: two requests a write. A write slower than the interval (a
    // stalled host) may let one ask through.
    assert!(asked <= 10, "{asked} sleep requests during {WRITES} writes in {took:?}");
    wait_asleep(&cluster, &[1, 2, 3]);
    assert!(requests.load(Ordering::SeqCst) > asked, "slept without asking");
    for store in 1..=3 {
        cluster.must_get_equal(store, b"k", format!("v{}", WRITES - 1).as_bytes());
    }
}

/// A sleeping leader reports an unchanged region once per `hibernated_pd_heartbeat_interval`,
/// not at every slow tick (200 ms here).
#[test]
fn a_sleeping_leader_reports_an_unchanged_region_rarely() {
    let reports_in_2s = |interval: Duration| {
        let cfg = Config { hibernated_pd_heartbeat_interval: interval, ..liveness_only() };
        let cluster = cluster_with(cfg);
        wait_asleep(&cluster, &[1, 2, 3]);
        thread::sleep(Duration::from_millis(300)); // reports of the way to sleep
        let before = cluster.pd.region_heartbeat_count();
        thread::sleep(Duration::from_secs(2));
        assert!((1..=3).all(|s| state(&cluster, s) == Some(GroupState::Idle)));
        cluster.pd.region_heartbeat_count() - before
    };
    let rare = reports_in_2s(Duration::from_secs(60));
    assert!(rare <= 1, "{rare} reports of an unchanged sleeping region in 2 s");
    let often = reports_in_2s(Duration::from_millis(200));
    assert!(often >= 4, "{often} reports at every slow tick");
}

/// Asleep, a region sends nothing of its own: its followers learn that the leader lives from
/// store pings, not from per-region checks. Past `max_peer_down_duration` (2 s) its leader
/// still reports no peer down, since their stores answer.
#[test]
fn a_sleeping_region_sends_nothing_and_reports_no_peer_down() {
    let cluster = cluster_with(liveness_only());
    wait_asleep(&cluster, &[1, 2, 3]);
    let (regions, stores) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let all = CountAll { regions: regions.clone(), stores: stores.clone() };
    cluster.network.add_filter(Box::new(all));
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(regions.load(Ordering::SeqCst), 0, "a message of the sleeping region");
    // Three stores ping two each, with answers, every 200 ms.
    assert!(stores.load(Ordering::SeqCst) >= 24, "{} store pings", stores.load(Ordering::SeqCst));
    assert!((1..=3).all(|s| state(&cluster, s) == Some(GroupState::Idle)));
    assert_eq!(cluster.pd.down_peers(FIRST_REGION), vec![], "sleeping peers reported down");
}

#[test]
fn the_off_switch_keeps_every_region_ticking() {
    let mut cluster =
        Cluster::with_config(3, Config { hibernate_regions: false, ..Config::for_tests() });
    cluster.run();
    cluster.must_put(b"k", b"v");
    let heartbeats = count(&cluster, &[MessageType::MsgHeartbeat]);
    thread::sleep(Duration::from_millis(300));
    assert!(heartbeats.load(Ordering::SeqCst) > 0);
    assert!((1..=3).all(|s| state(&cluster, s) != Some(GroupState::Idle)));
}

/// Drops the sleep votes one store sends.
struct DropVotesFrom(u64);

impl Filter for DropVotesFrom {
    fn allow(&self, from: u64, _: u64, msg: &RaftMessage) -> bool {
        from != self.0
            || !msg.has_extra()
            || msg.get_extra().get_field_type() != ExtraMessageType::MsgHibernateResponse
    }
}

/// A leader asking to sleep sends requests, not heartbeats, but only for an election
/// timeout: a follower whose vote never arrives gets heartbeats again, answers them, and is
/// never taken for down (past `max_peer_down_duration`, 2 s); nobody campaigns meanwhile.
#[test]
fn a_follower_that_never_agrees_to_sleep_is_not_taken_for_down() {
    let cluster = cluster_with(liveness_only());
    wait_asleep(&cluster, &[1, 2, 3]);
    let (leader, _) = cluster.leader_region(FIRST_REGION);
    let follower = (1..=3).find(|s| *s != leader.store_id).unwrap();
    let term = cluster.peer_status(leader.store_id, FIRST_REGION).unwrap().term;
    cluster.network.add_filter(Box::new(DropVotesFrom(follower)));
    let heartbeats = count(&cluster, &[MessageType::MsgHeartbeat]);
    cluster.must_put(b"k", b"v2");
    thread::sleep(Duration::from_millis(3000));
    assert_eq!(cluster.pd.down_peers(FIRST_REGION), vec![], "a live follower reported down");
    assert!(heartbeats.load(Ordering::SeqCst) > 0, "the leader never heartbeat");
    assert_ne!(state(&cluster, leader.store_id), Some(GroupState::Idle), "slept without a vote");
    for store in 1..=3 {
        assert_eq!(cluster.peer_status(store, FIRST_REGION).unwrap().term, term, "an election");
    }
    cluster.clear_filters();
    wait_asleep(&cluster, &[1, 2, 3]);
}

/// The leader's store is cut off while the region sleeps. The followers' stores find out from
/// its silence to their pings (their own checks of the leader are too rare here), wake them,
/// and they elect a new leader and take a write; the old leader, its lease long expired, never
/// serves the old value.
#[test]
fn a_dead_leader_of_a_sleeping_region_is_replaced_and_serves_no_stale_read() {
    let cluster = cluster_with(liveness_only());
    wait_asleep(&cluster, &[1, 2, 3]);
    let (old, region) = cluster.leader_region(FIRST_REGION);
    cluster.isolate(old.store_id);
    let started = Instant::now();
    wait_until("a new leader", TIMEOUT, || {
        cluster.leader_of_region(FIRST_REGION).is_some_and(|l| l.id != old.id)
    });
    let elected_in = started.elapsed();
    cluster.must_put(b"k", b"v2");
    let mut reader = cluster.reader(old.store_id);
    let got = reader.get(&ReadContext::new(&region, &old), b"k", Duration::from_millis(300));
    assert!(!matches!(got, Ok(Some(ref v)) if v == b"v1"), "stale read from the old leader");
    // Two pings unanswered for a round of 200 ms each, then an election.
    assert!(elected_in < Duration::from_secs(5), "took {elected_in:?}");
    cluster.clear_filters();
    cluster.must_get_equal(old.store_id, b"k", b"v2");
}

/// A follower is cut off while the region sleeps, the region takes a write without it and
/// sleeps again once it counts as down; after the heal the follower catches up.
#[test]
fn a_follower_cut_off_from_a_sleeping_region_catches_up_after_heal() {
    let cluster = cluster();
    wait_asleep(&cluster, &[1, 2, 3]);
    let (leader, _) = cluster.leader_region(FIRST_REGION);
    let cut = (1..=3).find(|s| *s != leader.store_id).unwrap();
    cluster.isolate(cut);
    cluster.must_put(b"k", b"v2");
    let others: Vec<u64> = (1..=3).filter(|s| *s != cut).collect();
    // max_peer_down_duration (2 s) after it was last heard, the quorum sleeps without it.
    wait_asleep(&cluster, &others);
    cluster.clear_filters();
    cluster.must_get_equal(cut, b"k", b"v2");
    wait_asleep(&cluster, &[1, 2, 3]);
}

/// A follower's store restarts while the region sleeps: the restarted peer ticks (it is in
/// Chaos), finds its leader and the region sleeps again; nothing is lost.
#[test]
fn a_follower_restart_wakes_the_region_and_it_sleeps_again() {
    let mut cluster = cluster();
    wait_asleep(&cluster, &[1, 2, 3]);
    let (leader, _) = cluster.leader_region(FIRST_REGION);
    let follower = (1..=3).find(|s| *s != leader.store_id).unwrap();
    cluster.restart_store(follower);
    cluster.must_put(b"k", b"v2");
    cluster.must_get_equal(follower, b"k", b"v2");
    wait_asleep(&cluster, &[1, 2, 3]);
}

/// A peer added to a sleeping region (the change wakes it) is not taken for down before it
/// spoke: the leader stays awake until it holds the whole log.
#[test]
fn a_peer_added_to_a_sleeping_region_gets_the_whole_log() {
    let mut cluster = Cluster::with_config(4, hibernating());
    cluster.run_with_region_on(&[1, 2, 3]);
    cluster.must_put(b"k", b"v1");
    wait_asleep(&cluster, &[1, 2, 3]);
    let peer = cluster.new_peer(4);
    cluster.must_add_peer(FIRST_REGION, &peer);
    cluster.must_get_equal(4, b"k", b"v1");
    wait_asleep(&cluster, &[1, 2, 3, 4]);
}

/// Steady lease reads on the leader stay local: a reader near the lease's end asks for a
/// renewal, which wakes the region for one round; between renewals the region sleeps.
#[test]
fn steady_lease_reads_keep_the_lease_without_keeping_the_region_awake() {
    let cluster = cluster();
    wait_asleep(&cluster, &[1, 2, 3]);
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let mut reader = cluster.reader(leader.store_id);
    let ctx = ReadContext::new(&region, &leader);
    let (mut slept, deadline) = (0, Instant::now() + Duration::from_secs(2));
    let ((), stats) = cluster.counting_reads(leader.store_id, || {
        while Instant::now() < deadline {
            assert_eq!(reader.get(&ctx, b"k", TIMEOUT).unwrap().as_deref(), Some(&b"v1"[..]));
            if state(&cluster, leader.store_id) == Some(GroupState::Idle) {
                slept += 1;
            }
            thread::sleep(Duration::from_millis(2));
        }
    });
    assert!(slept > 0, "the leader never slept while reads went on");
    assert!(stats.local_hits > stats.redirected(), "reads mostly local: {stats:?}");
}
