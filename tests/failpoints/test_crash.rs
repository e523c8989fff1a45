//! Every store crashes at one step of a write or a split (a fail point that panics the thread
//! there: the step's work is lost, as on a kill), then all restart from their disks. No
//! acknowledged write is lost; a committed write comes back even if no store applied it; a
//! split on disk gets its regions.

use std::time::Duration;

use engine::{keys, Peekable, CF_META};
use proto::raft_serverpb::RegionLocalState;
use test_raftstore::{new_request, put_request, wait_until, Cluster, FIRST_REGION};

const WAIT: Duration = Duration::from_secs(10);

fn key(i: u64) -> Vec<u8> {
    format!("k{i:03}").into_bytes()
}

/// Three stores with keys 0..20 written and acknowledged.
fn cluster_with_data() -> Cluster {
    let mut cluster = Cluster::new(3);
    cluster.run();
    for i in 0..20 {
        cluster.must_put(&key(i), b"acked");
    }
    cluster
}

/// Sends a write of `k` = `value` to the region's leader without waiting for the answer;
/// returns the leader's store and its commit index before the write.
fn send_write(cluster: &Cluster, k: &[u8], value: &[u8]) -> (u64, u64) {
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let commit = cluster.peer_status(leader.store_id, FIRST_REGION).unwrap().commit_index;
    let mut req = new_request(&region, &leader, vec![]);
    req.mut_requests().push(put_request(k, value));
    let router = cluster.router(leader.store_id);
    let (cmd, _answer) = raftstore::msg::RaftCommand::new(req);
    router.send_command(cmd);
    (leader.store_id, commit)
}

/// Stops every store (their threads that crashed at the fail point are gone already), clears
/// the fail point, and starts them all again from their disks.
fn restart_all(cluster: &mut Cluster, fail_point: &str) {
    for store in 1..=3 {
        cluster.stop_store(store);
    }
    fail::remove(fail_point);
    for store in 1..=3 {
        cluster.start_store(store);
    }
}

fn check_acked(cluster: &Cluster) {
    for i in 0..20 {
        assert_eq!(cluster.get(&key(i)).unwrap().as_deref(), Some(&b"acked"[..]), "key {i}");
    }
}

/// Every store crashes before applying anything more (`apply_before_write`); a write is
/// proposed and committed meanwhile (the raft threads live until the stores stop). Nobody
/// answered it, but it was committed: after the restart it is there.
#[test]
fn a_committed_write_that_no_store_applied_survives_a_crash_of_every_store() {
    let scenario = fail::FailScenario::setup();
    let mut cluster = cluster_with_data();
    fail::cfg("apply_before_write", "panic").unwrap();
    let (leader, before) = send_write(&cluster, b"x", b"committed");
    wait_until("the write committed", WAIT, || {
        cluster.peer_status(leader, FIRST_REGION).is_some_and(|s| s.commit_index > before)
    });
    restart_all(&mut cluster, "apply_before_write");
    check_acked(&cluster);
    assert_eq!(cluster.get(b"x").unwrap().as_deref(), Some(&b"committed"[..]));
    drop(cluster);
    scenario.teardown();
}

/// Every store crashes after its apply wrote and before anybody was answered
/// (`apply_after_write`): the write is there after the restart.
#[test]
fn a_write_applied_but_never_answered_survives_a_crash_of_every_store() {
    let scenario = fail::FailScenario::setup();
    let mut cluster = cluster_with_data();
    fail::cfg("apply_after_write", "panic").unwrap();
    let (leader, _) = send_write(&cluster, b"x", b"applied");
    wait_until("the write applied on the leader", WAIT, || {
        let got = cluster.kv(leader).get_value(&keys::data_key(b"x")).unwrap();
        got.as_deref() == Some(&b"applied"[..])
    });
    restart_all(&mut cluster, "apply_after_write");
    check_acked(&cluster);
    assert_eq!(cluster.get(b"x").unwrap().as_deref(), Some(&b"applied"[..]));
    drop(cluster);
    scenario.teardown();
}

/// Every store's raft thread crashes before persisting its round (`store_before_persist`)
/// with a write in flight: the write was never acknowledged; after the restart it is either
/// there or not, and stays so across another restart.
#[test]
fn a_write_lost_before_it_was_persisted_is_all_or_nothing() {
    let scenario = fail::FailScenario::setup();
    let mut cluster = cluster_with_data();
    // Asked first: once the fail point is on, the raft threads answer nothing.
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let mut req = new_request(&region, &leader, vec![]);
    req.mut_requests().push(put_request(b"x", b"in flight"));
    let (cmd, _answer) = raftstore::msg::RaftCommand::new(req);
    let router = cluster.router(leader.store_id);
    fail::cfg("store_before_persist", "panic").unwrap();
    router.send_command(cmd);
    std::thread::sleep(Duration::from_millis(200));
    restart_all(&mut cluster, "store_before_persist");
    check_acked(&cluster);
    let first = cluster.get(b"x").unwrap();
    assert!(matches!(first.as_deref(), None | Some(b"in flight")), "{first:?}");
    restart_all(&mut cluster, "store_before_persist");
    assert_eq!(cluster.get(b"x").unwrap(), first, "the outcome changed across a restart");
    cluster.must_put(b"x", b"after");
    drop(cluster);
    scenario.teardown();
}

/// Every store crashes in the middle of a split: applied and written, its new regions' peers
/// not created yet (`split_before_new_peers`). After the restart both regions serve every
/// acknowledged key, and take writes.
#[test]
fn a_crash_in_the_middle_of_a_split_loses_nothing() {
    let scenario = fail::FailScenario::setup();
    let mut cluster = cluster_with_data();
    fail::cfg("split_before_new_peers", "panic").unwrap();
    let region = cluster.region(FIRST_REGION);
    let leader = cluster.wait_leader(FIRST_REGION);
    let node = cluster.node(leader.store_id);
    let epoch = region.get_region_epoch().clone();
    // The answer never comes: the stores crash applying it.
    let _ = node.split_region(FIRST_REGION, epoch, vec![key(10)], Duration::from_millis(500));
    // The leader's store crashed first; the followers, told of the commit or not, crash
    // when they apply it or stay before it.
    wait_until("the split written on the leader's store", WAIT, || {
        let key = keys::region_state_key(FIRST_REGION);
        let state = cluster.kv(leader.store_id).get_msg_cf::<RegionLocalState>(CF_META, &key);
        state.ok().flatten().is_some_and(|s| s.get_region().get_region_epoch().version > 1)
    });
    std::thread::sleep(Duration::from_millis(100));
    restart_all(&mut cluster, "split_before_new_peers");
    check_acked(&cluster);
    let regions = cluster.wait_region_count(2);
    assert_eq!(regions.len(), 2);
    for i in [0, 19] {
        cluster.must_put(&key(i), b"after");
        for store in 1..=3 {
            cluster.must_get_equal(store, &key(i), b"after");
        }
    }
    drop(cluster);
    scenario.teardown();
}
