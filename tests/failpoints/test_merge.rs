//! Merge at the wrong moments: the target unable to commit (rollback), restarts at each step,
//! reads on a source whose apply is paused, the source's delegate before its peer goes.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use local_reader::Redirect;
use proto::metapb;
use raftstore::{metrics::RaftEvent, Error, ReadContext};
use test_raftstore::{
    get_request, new_request, put_request, transport::IsolateRegion, wait_until, Cluster,
};

use crate::util::ApplyPause;

const TIMEOUT: Duration = Duration::from_secs(5);

fn key(i: u64) -> Vec<u8> {
    format!("k{i:05}").into_bytes()
}

/// Three stores, keys 0..20 written, split at key 10: (left, right).
fn two_regions() -> (Cluster, metapb::Region, metapb::Region) {
    let mut cluster = Cluster::new(3);
    cluster.run();
    for i in 0..20 {
        cluster.must_put(&key(i), b"v");
    }
    let (left, right) = cluster.must_split(&key(10));
    cluster.wait_leader(left.id);
    cluster.wait_leader(right.id);
    (cluster, left, right)
}

/// Every key of `two_regions` still reads its first value through the client.
fn check_keys_unchanged(cluster: &Cluster) {
    for i in 0..20 {
        assert_eq!(cluster.get(&key(i)).unwrap().as_deref(), Some(&b"v"[..]), "key {i}");
    }
}

fn version(cluster: &Cluster, store: u64, region: u64) -> u64 {
    cluster.peer_status(store, region).map_or(0, |s| s.region.get_region_epoch().version)
}

/// The source's PrepareMerge applies, but no source peer asks the target to commit; the
/// target splits meanwhile. Once the sources look again they see a target that can never
/// commit this merge, vote, and the leader rolls it back: the region serves again and keeps
/// every write acknowledged before.
#[test]
fn a_merge_whose_target_changed_rolls_back_and_loses_no_write() {
    let scenario = fail::FailScenario::setup();
    let (cluster, left, right) = two_regions();
    cluster.must_put(&key(3), b"acknowledged");
    fail::cfg("merge_ask_target", "return").unwrap();
    let merging = cluster.start_merge(left.id, right.id);
    cluster.split_region(right.id, vec![key(15)]).unwrap();
    fail::remove("merge_ask_target");
    wait_until("the merge rolled back", TIMEOUT, || {
        (1..=3).all(|s| cluster.raft_event(s, RaftEvent::MergeRolledBack) == 1)
    });
    let back = cluster.region(left.id);
    assert_eq!(back.get_region_epoch().version, merging.get_region_epoch().version + 1);
    assert_eq!((back.start_key.as_slice(), back.end_key.as_slice()), (&b""[..], &key(10)[..]));
    assert_eq!(cluster.get(&key(3)).unwrap().as_deref(), Some(&b"acknowledged"[..]));
    cluster.must_put(&key(4), b"after");
    assert_eq!(cluster.get(&key(4)).unwrap().as_deref(), Some(&b"after"[..]));
    for store in 1..=3 {
        cluster.must_get_equal(store, &key(3), b"acknowledged");
    }
    scenario.teardown();
}

/// Every store restarts after PrepareMerge applied and before the target heard of it: the
/// source comes back merging (refusing writes), and the merge completes once asked.
#[test]
fn a_merge_prepared_before_a_restart_completes_after_it() {
    let scenario = fail::FailScenario::setup();
    let (mut cluster, left, right) = two_regions();
    fail::cfg("merge_ask_target", "return").unwrap();
    cluster.start_merge(left.id, right.id);
    for store in 1..=3 {
        cluster.restart_store(store);
    }
    let (leader, merging) = cluster.leader_region(left.id);
    let put = new_request(&merging, &leader, vec![put_request(&key(1), b"lost")]);
    match cluster.call_command(leader.store_id, put, TIMEOUT) {
        Err(Error::ServerIsBusy(_)) => {}
        other => panic!("a write to a region merging across a restart got {other:?}"),
    }
    fail::remove("merge_ask_target");
    cluster.wait_merged(left.id, right.id);
    check_keys_unchanged(&cluster);
    scenario.teardown();
}

/// One store hears nothing of the source, so its target must wait at CommitMerge for its
/// source peer to catch up from the entries the merge carries; that peer drops the first
/// request (fail point) and the store restarts while the target waits. After the restart the
/// target asks again and the merge completes there with the write the store never received.
#[test]
fn a_store_restarted_while_its_target_waits_for_the_source_completes_the_merge() {
    let scenario = fail::FailScenario::setup();
    let (mut cluster, left, right) = two_regions();
    let source_leader = cluster.wait_leader(left.id).store_id;
    let target_leader = cluster.wait_leader(right.id).store_id;
    let cut = (1..=3).find(|s| *s != source_leader && *s != target_leader).unwrap();
    cluster.must_get_equal(cut, &key(1), b"v"); // the source's leader has heard from it
    std::thread::sleep(Duration::from_millis(50));
    cluster.network.add_filter(Box::new(IsolateRegion { region: left.id, store: cut }));
    cluster.must_put(&key(5), b"unseen");
    fail::cfg("merge_catch_up", "return").unwrap();
    cluster.start_merge(left.id, right.id);
    let others: Vec<u64> = (1..=3).filter(|s| *s != cut).collect();
    wait_until("merged on the stores that heard the source", TIMEOUT, || {
        others.iter().all(|s| cluster.peer_status(*s, left.id).is_none())
    });
    let merged_version = version(&cluster, others[0], right.id);
    assert!(version(&cluster, cut, right.id) < merged_version, "the cut store merged already");
    fail::remove("merge_catch_up");
    cluster.restart_store(cut);
    wait_until("merged on the cut store", TIMEOUT, || {
        version(&cluster, cut, right.id) == merged_version
            && cluster.peer_status(cut, left.id).is_none()
    });
    cluster.must_get_equal(cut, &key(5), b"unseen");
    cluster.must_get_equal(cut, &key(1), b"v");
    cluster.clear_filters();
    scenario.teardown();
}

/// Holds the source peers when they are told they were merged, before they are destroyed.
struct SourcePause(Arc<AtomicBool>);

impl SourcePause {
    fn on() -> Self {
        let paused = Arc::new(AtomicBool::new(true));
        let flag = paused.clone();
        fail::cfg_callback("merge_before_source_destroyed", move || {
            while flag.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
        })
        .unwrap();
        SourcePause(paused)
    }

    fn release(&self) {
        self.0.store(false, Ordering::Release);
        fail::remove("merge_before_source_destroyed");
    }
}

impl Drop for SourcePause {
    fn drop(&mut self) {
        self.release();
    }
}

/// Between CommitMerge applied and the source peer destroyed, the source's delegate is still
/// there, marked pending-remove: a local read of the source is not served from it. Destroying
/// the peer removes it. A restart at that moment brings back no source peer.
#[test]
fn the_source_delegate_stays_pending_remove_until_its_peer_is_destroyed() {
    let scenario = fail::FailScenario::setup();
    let (mut cluster, left, right) = two_regions();
    let (leader, source) = cluster.leader_region(left.id);
    let mut reader = cluster.reader(leader.store_id);
    let ctx = ReadContext::new(&source, &leader);
    assert!(reader.get(&ctx, &key(1), TIMEOUT).is_ok());
    let pause = SourcePause::on();
    cluster.start_merge(left.id, right.id);
    let meta = cluster.store_meta(leader.store_id);
    wait_until("CommitMerge applied on the leader's store", TIMEOUT, || {
        meta.lock().unwrap().region(left.id).is_none()
    });
    let pending = meta.lock().unwrap().reader(left.id).map(|d| d.pending_remove);
    assert_eq!(pending, Some(true), "the source delegate must stay, pending removal");
    let stats_before = cluster.read_stats(leader.store_id);
    let res = reader.get(&ctx, &key(1), Duration::from_millis(200));
    assert!(res.is_err(), "a read of the merged source was served: {res:?}");
    let stats = cluster.read_stats(leader.store_id);
    assert_eq!(stats.local_hits, stats_before.local_hits, "served from the pending delegate");
    let no_delegate = |s: &local_reader::ReadStats| s.redirects_for(Redirect::NoDelegate);
    assert!(no_delegate(&stats) > no_delegate(&stats_before));
    pause.release();
    wait_until("the source delegate removed", TIMEOUT, || {
        meta.lock().unwrap().reader(left.id).is_none()
    });
    drop(reader); // it holds the store's engine
    cluster.restart_store(leader.store_id);
    assert!(cluster.peer_status(leader.store_id, left.id).is_none());
    check_keys_unchanged(&cluster);
    scenario.teardown();
}

/// The source leader's store has its apply paused after PrepareMerge committed; the other
/// stores apply it, their target (led there) commits the merge and takes a write to a source
/// key. No read on the old source leader, lease or ReadIndex, may return the value before it.
#[test]
fn the_source_leader_serves_no_stale_read_while_its_apply_is_paused() {
    let scenario = fail::FailScenario::setup();
    let (cluster, left, right) = two_regions();
    cluster.must_put(&key(1), b"old");
    let (leader, source) = cluster.leader_region(left.id);
    let (target_leader, target) = cluster.leader_region(right.id);
    let other = (1..=3).find(|s| *s != leader.store_id).unwrap();
    if target_leader.store_id == leader.store_id {
        let to = target.get_peers().iter().find(|p| p.store_id == other).unwrap();
        cluster.must_transfer_leader(right.id, to);
    }
    let mut reader = cluster.reader(leader.store_id);
    let ctx = ReadContext::new(&source, &leader);
    assert_eq!(reader.get(&ctx, &key(1), TIMEOUT).unwrap().as_deref(), Some(&b"old"[..]));

    let pause = ApplyPause::on_store(leader.store_id);
    let cmd = {
        let mut req = new_request(&source, &leader, vec![]);
        req.mut_admin_request().set_cmd_type(proto::raft_cmdpb::AdminCmdType::PrepareMerge);
        req.mut_admin_request().mut_prepare_merge().set_target(cluster.region(right.id));
        req
    };
    let (command, _rx) = raftstore::msg::RaftCommand::new(cmd);
    cluster.router(leader.store_id).send_command(command);
    let others: Vec<u64> = (1..=3).filter(|s| *s != leader.store_id).collect();
    wait_until("merged on the other stores", TIMEOUT, || {
        others.iter().all(|s| cluster.peer_status(*s, left.id).is_none())
    });
    cluster.must_put(&key(1), b"new"); // through the merged target, led elsewhere

    let res = reader.get(&ctx, &key(1), Duration::from_millis(300));
    assert!(!matches!(&res, Ok(Some(v)) if v == b"old"), "a stale lease read: {res:?}");
    let req = new_request(&source, &leader, vec![get_request(&key(1))]);
    if let Ok(resp) = cluster.call_command(leader.store_id, req, Duration::from_secs(1)) {
        let got = resp.get_responses().first().map(|r| r.get_get().value.clone());
        assert_ne!(got.as_deref(), Some(&b"old"[..]), "a stale ReadIndex read");
    }
    pause.release();
    cluster.wait_merged(left.id, right.id);
    cluster.must_get_equal(leader.store_id, &key(1), b"new");
    scenario.teardown();
}
