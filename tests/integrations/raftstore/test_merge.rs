//! Region merge: two regions and chains of them, the checks PrepareMerge makes, what clients
//! see while a region merges and after, stores that miss the merge, restarts, and the
//! placement driver merging small regions on its own.

use std::time::{Duration, Instant};

use pd_client::{MemPdConfig, PdClient};
use proto::{eraftpb::MessageType, metapb, raft_serverpb::RaftMessage};
use raftstore::{metrics::RaftEvent, Config, Error, ReadContext};
use test_raftstore::{
    raft_message,
    transport::{Filter, IsolateRegion},
    wait_until, Cluster, FIRST_REGION,
};

const TIMEOUT: Duration = Duration::from_secs(5);

fn key(i: u64) -> Vec<u8> {
    format!("k{i:05}").into_bytes()
}

/// A cluster of three with keys 0..n written and the first region split at `at`.
fn split_cluster(n: u64, at: &[u64]) -> (Cluster, Vec<metapb::Region>) {
    let mut cluster = Cluster::new(3);
    cluster.run();
    for i in 0..n {
        cluster.must_put(&key(i), b"v");
    }
    let regions = cluster.split_region(FIRST_REGION, at.iter().map(|i| key(*i)).collect()).unwrap();
    for r in &regions {
        cluster.wait_leader(r.id);
    }
    (cluster, regions)
}

/// Every key 0..n reads `value` through the client, and every store has it.
fn check_keys(cluster: &Cluster, n: u64, value: &[u8]) {
    for i in 0..n {
        assert_eq!(cluster.get(&key(i)).unwrap().as_deref(), Some(value), "key {i}");
    }
    for store in 1..=3 {
        cluster.must_get_equal(store, &key(0), value);
        cluster.must_get_equal(store, &key(n - 1), value);
    }
}

#[test]
fn two_regions_merge_and_serve_every_key() {
    let (cluster, regions) = split_cluster(20, &[10]);
    let (left, right) = (&regions[0], &regions[1]);
    let merged = cluster.must_merge(left.id, right.id);
    assert_eq!(merged.id, right.id);
    assert_eq!((merged.start_key.as_slice(), merged.end_key.as_slice()), (&b""[..], &b""[..]));
    let versions = (left.get_region_epoch().version + 1).max(right.get_region_epoch().version);
    assert_eq!(merged.get_region_epoch().version, versions + 1);
    check_keys(&cluster, 20, b"v");
    for i in 0..20 {
        cluster.must_put(&key(i), b"w");
    }
    check_keys(&cluster, 20, b"w");
    for store in 1..=3 {
        assert!(cluster.store_meta(store).lock().unwrap().reader(left.id).is_none());
        assert_eq!(cluster.raft_event(store, RaftEvent::MergeCommitted), 1);
    }
    wait_until("the placement driver sees one region", TIMEOUT, || cluster.pd.regions().len() == 1);
}

#[test]
fn a_chain_of_regions_merges_one_after_another() {
    let (cluster, regions) = split_cluster(40, &[10, 20, 30]);
    // Left into right, three times: the rightmost region ends up with everything.
    let last = regions.last().unwrap().id;
    for pair in regions.windows(2) {
        cluster.must_merge(pair[0].id, pair[1].id);
    }
    let merged = cluster.region(last);
    assert!(merged.start_key.is_empty() && merged.end_key.is_empty());
    check_keys(&cluster, 40, b"v");
    wait_until("the placement driver sees one region", TIMEOUT, || cluster.pd.regions().len() == 1);
}

#[test]
fn a_region_merges_into_its_left_neighbour_too() {
    let (cluster, regions) = split_cluster(20, &[10]);
    let merged = cluster.must_merge(regions[1].id, regions[0].id);
    assert_eq!(merged.id, regions[0].id);
    assert!(merged.end_key.is_empty());
    check_keys(&cluster, 20, b"v");
}

#[test]
fn a_merge_into_a_region_that_is_not_a_neighbour_is_refused() {
    let (cluster, regions) = split_cluster(30, &[10, 20]);
    match cluster.merge_region(regions[0].id, regions[2].id) {
        Err(Error::InvalidRequest(msg)) => assert!(msg.contains("neighbour"), "{msg}"),
        other => panic!("merging non-neighbours: {other:?}"),
    }
    // Nothing changed: the region takes writes at its old epoch.
    cluster.must_put(&key(1), b"w");
    assert_eq!(cluster.region(regions[0].id), regions[0]);
}

#[test]
fn a_merge_into_a_target_of_another_epoch_is_refused() {
    let (cluster, regions) = split_cluster(30, &[10]);
    let (leader, source) = cluster.leader_region(regions[0].id);
    let mut stale_target = cluster.region(regions[1].id);
    stale_target.mut_region_epoch().version -= 1;
    let mut req = test_raftstore::new_request(&source, &leader, vec![]);
    req.mut_admin_request().set_cmd_type(proto::raft_cmdpb::AdminCmdType::PrepareMerge);
    req.mut_admin_request().mut_prepare_merge().set_target(stale_target);
    match cluster.call_command(leader.store_id, req, TIMEOUT) {
        Err(Error::InvalidRequest(msg)) => assert!(msg.contains("epoch"), "{msg}"),
        other => panic!("merging into a stale target: {other:?}"),
    }
}

#[test]
fn a_merge_into_a_target_with_a_made_up_range_or_peers_is_refused() {
    let (cluster, regions) = split_cluster(30, &[10, 20]);
    let (leader, source) = cluster.leader_region(regions[0].id);
    // The id and epoch of a real region (not a neighbour), the range of a neighbour.
    let mut fake = cluster.region(regions[2].id);
    fake.start_key = source.end_key.clone();
    let mut req = test_raftstore::new_request(&source, &leader, vec![]);
    req.mut_admin_request().set_cmd_type(proto::raft_cmdpb::AdminCmdType::PrepareMerge);
    req.mut_admin_request().mut_prepare_merge().set_target(fake);
    match cluster.call_command(leader.store_id, req, TIMEOUT) {
        Err(Error::InvalidRequest(_)) => {}
        other => panic!("merging into a made-up target: {other:?}"),
    }
    cluster.must_put(&key(1), b"w"); // not merging
}

#[test]
fn a_commit_merge_from_a_client_is_refused_and_changes_nothing() {
    let (cluster, regions) = split_cluster(20, &[10]);
    let (leader, target) = cluster.leader_region(regions[1].id);
    let source = cluster.region(regions[0].id);
    let mut req = test_raftstore::new_request(&target, &leader, vec![]);
    req.mut_admin_request().set_cmd_type(proto::raft_cmdpb::AdminCmdType::CommitMerge);
    req.mut_admin_request().mut_commit_merge().set_source(source.clone());
    req.mut_admin_request().mut_commit_merge().commit = 6;
    match cluster.call_command(leader.store_id, req, TIMEOUT) {
        Err(Error::InvalidRequest(msg)) => assert!(msg.contains("not merging"), "{msg}"),
        other => panic!("a CommitMerge from a client: {other:?}"),
    }
    assert_eq!(cluster.region(regions[1].id), target);
    assert_eq!(cluster.region(source.id), source);
    check_keys(&cluster, 20, b"v");
}

/// Drops appends of one region to one store: that follower falls behind.
struct Lag {
    region: u64,
    store: u64,
}

impl Filter for Lag {
    fn allow(&self, _: u64, to: u64, msg: &RaftMessage) -> bool {
        !(to == self.store
            && msg.region_id == self.region
            && msg.get_message().get_msg_type() == MessageType::MsgAppend)
    }
}

#[test]
fn a_merge_is_refused_while_a_follower_lags_too_far() {
    let (cluster, regions) = split_cluster(10, &[5]);
    let (leader, _) = cluster.leader_region(regions[0].id);
    let lagging = (1..=3).find(|s| *s != leader.store_id).unwrap();
    cluster.network.add_filter(Box::new(Lag { region: regions[0].id, store: lagging }));
    for i in 0..(Config::for_tests().merge_max_log_gap + 5) {
        cluster.must_put(&key(i % 5), format!("{i}").as_bytes());
    }
    match cluster.merge_region(regions[0].id, regions[1].id) {
        Err(Error::ServerIsBusy(msg)) => assert!(msg.contains("lacks"), "{msg}"),
        other => panic!("merging past a lagging follower: {other:?}"),
    }
    cluster.clear_filters();
    cluster.must_merge(regions[0].id, regions[1].id);
}

/// Drops every message of one region: nothing commits there.
struct Silence(u64);

impl Filter for Silence {
    fn allow(&self, _: u64, _: u64, msg: &RaftMessage) -> bool {
        msg.region_id != self.0
    }
}

#[test]
fn the_source_serves_nothing_while_merging_and_its_keys_come_back_through_the_target() {
    let (cluster, regions) = split_cluster(20, &[10]);
    let (source, target) = (&regions[0], &regions[1]);
    let (leader, region) = cluster.leader_region(source.id);
    let mut reader = cluster.reader(leader.store_id);
    assert!(reader.get(&ReadContext::new(&region, &leader), &key(1), TIMEOUT).is_ok());
    // The target cannot commit: the source stays merging.
    cluster.network.add_filter(Box::new(Silence(target.id)));
    let merging = cluster.start_merge(source.id, target.id);
    assert_eq!(merging.get_region_epoch().version, region.get_region_epoch().version + 1);
    for ctx in [ReadContext::new(&region, &leader), ReadContext::new(&merging, &leader)] {
        match reader.get(&ctx, &key(1), TIMEOUT) {
            Err(Error::ServerIsBusy(_) | Error::EpochNotMatch { .. }) => {}
            other => panic!("a read of a merging region got {other:?}"),
        }
    }
    let follower = test_raftstore::follower_of(&merging, &leader);
    let follower_read = ReadContext::new(&merging, &follower).replica_read();
    let mut follower_reader = cluster.reader(follower.store_id);
    assert!(follower_reader.get(&follower_read, &key(1), TIMEOUT).is_err());
    let mut put = test_raftstore::new_request(&merging, &leader, vec![]);
    put.mut_requests().push(test_raftstore::put_request(&key(1), b"lost"));
    match cluster.call_command(leader.store_id, put, TIMEOUT) {
        Err(Error::ServerIsBusy(_)) => {}
        other => panic!("a write to a merging region got {other:?}"),
    }
    cluster.clear_filters();
    cluster.wait_merged(source.id, target.id);
    check_keys(&cluster, 20, b"v");
}

#[test]
fn a_store_cut_off_from_the_source_catches_up_through_the_target() {
    let (cluster, regions) = split_cluster(20, &[10]);
    let (source, target) = (&regions[0], &regions[1]);
    cluster.must_put(&key(2), b"before");
    let (leader, _) = cluster.leader_region(source.id);
    // The target's leader commits the merge when its own store's source peer asks: keep
    // that store in touch with the source.
    let target_leader = cluster.wait_leader(target.id);
    let cut = (1..=3).find(|s| *s != leader.store_id && *s != target_leader.store_id).unwrap();
    // The leader has heard from the cut store's peer (a merge waits for every follower).
    cluster.must_get_equal(cut, &key(2), b"before");
    std::thread::sleep(Duration::from_millis(50));
    // The cut store hears nothing of the source from now on, but all of the target.
    cluster.network.add_filter(Box::new(IsolateRegion { region: source.id, store: cut }));
    cluster.must_put(&key(3), b"unseen"); // the cut store's source peer lacks this write
    cluster.must_merge(source.id, target.id);
    // Its target applied CommitMerge with the entries it carried: the write is there.
    cluster.must_get_equal(cut, &key(3), b"unseen");
    cluster.must_get_equal(cut, &key(2), b"before");
    cluster.clear_filters();
    check_keys_except(&cluster, 20, &[2, 3]);
}

fn check_keys_except(cluster: &Cluster, n: u64, skip: &[u64]) {
    for i in (0..n).filter(|i| !skip.contains(i)) {
        assert_eq!(cluster.get(&key(i)).unwrap().as_deref(), Some(&b"v"[..]), "key {i}");
    }
}

#[test]
fn every_store_recovers_the_merged_region_after_a_restart() {
    let (mut cluster, regions) = split_cluster(20, &[10]);
    cluster.must_merge(regions[0].id, regions[1].id);
    for store in 1..=3 {
        cluster.restart_store(store);
    }
    check_keys(&cluster, 20, b"v");
    for store in 1..=3 {
        assert!(cluster.peer_status(store, regions[0].id).is_none(), "the source came back");
    }
    cluster.must_put(&key(1), b"after");
    assert_eq!(cluster.get(&key(1)).unwrap().as_deref(), Some(&b"after"[..]));
}

#[test]
fn late_messages_for_the_merged_source_create_no_peer() {
    let (cluster, regions) = split_cluster(20, &[10]);
    let source = cluster.region(regions[0].id);
    cluster.must_merge(source.id, regions[1].id);
    let (from, to) = (&source.get_peers()[0], &source.get_peers()[1]);
    let types = [
        MessageType::MsgRequestVote,
        MessageType::MsgRequestPreVote,
        MessageType::MsgHeartbeat,
        MessageType::MsgAppend,
    ];
    for t in types {
        let msg = raft_message(&source, from, to, t, 100);
        let _ = cluster.router(to.store_id).send_raft_message(msg);
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(cluster.peer_status(to.store_id, source.id).is_none());
    check_keys(&cluster, 20, b"v");
}

#[test]
fn a_merged_range_splits_again() {
    let (cluster, regions) = split_cluster(20, &[10]);
    let merged = cluster.must_merge(regions[0].id, regions[1].id);
    let again = cluster.split_region(merged.id, vec![key(10)]).unwrap();
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|r| r.id != regions[0].id), "a new id for the new region");
    for r in &again {
        cluster.wait_leader(r.id);
    }
    check_keys(&cluster, 20, b"v");
    for i in 0..20 {
        cluster.must_put(&key(i), b"w");
    }
    check_keys(&cluster, 20, b"w");
}

#[test]
fn a_merge_goes_on_across_a_leader_transfer_of_the_source() {
    let (cluster, regions) = split_cluster(20, &[10]);
    let (leader, region) = cluster.leader_region(regions[0].id);
    let other = test_raftstore::follower_of(&region, &leader);
    cluster.network.add_filter(Box::new(Silence(regions[1].id)));
    cluster.start_merge(regions[0].id, regions[1].id);
    cluster.must_transfer_leader(regions[0].id, &other);
    cluster.clear_filters();
    cluster.wait_merged(regions[0].id, regions[1].id);
    check_keys(&cluster, 20, b"v");
}

#[test]
fn the_placement_driver_merges_regions_emptied_by_deletes() {
    let pd_cfg = MemPdConfig {
        enable_merge: true,
        max_merge_region_size: 64,
        max_merge_region_keys: 2,
        split_merge_interval: Duration::ZERO,
        ..Default::default()
    };
    let cfg = Config { region_split_check_diff: 1, ..Config::for_tests() };
    let mut cluster = Cluster::with_pd_config(3, cfg, pd_cfg);
    cluster.run();
    for i in 0..40 {
        cluster.must_put(&key(i), b"v");
    }
    cluster.split_region(FIRST_REGION, vec![key(10), key(20), key(30)]).unwrap();
    cluster.wait_region_count(4);
    // Full regions are left alone.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(cluster.pd.merge_count(), 0);
    for i in 0..40 {
        cluster.must_delete(&key(i));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.pd.regions().len() > 1 {
        assert!(Instant::now() < deadline, "regions left: {:?}", cluster.pd.regions().len());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(cluster.pd.merge_count(), 3);
    let region = cluster.pd.get_region(b"").unwrap().0;
    assert!(region.start_key.is_empty() && region.end_key.is_empty());
    cluster.must_put(&key(1), b"back");
    assert_eq!(cluster.get(&key(1)).unwrap().as_deref(), Some(&b"back"[..]));
}

/// A store's target peer is cut off through the merge while its source peer applies the
/// PrepareMerge; the target's log is compacted past it meanwhile, so after the heal it gets a
/// snapshot of the merged region, which covers the waiting source: the snapshot replaces it.
#[test]
fn a_lagging_target_replaces_its_merging_source_with_a_snapshot() {
    let cfg =
        Config { raft_log_gc_count_limit: 20, raft_log_gc_threshold: 5, ..Config::for_tests() };
    let mut cluster = Cluster::with_config(3, cfg);
    cluster.run();
    for i in 0..20 {
        cluster.must_put(&key(i), b"v");
    }
    let (left, right) = cluster.must_split(&key(10));
    cluster.wait_leader(left.id);
    let target_leader = cluster.wait_leader(right.id).store_id;
    let lag = (1..=3).find(|s| *s != target_leader).unwrap();
    cluster.must_get_equal(lag, &key(15), b"v");
    cluster.network.add_filter(Box::new(IsolateRegion { region: right.id, store: lag }));
    cluster.must_put(&key(3), b"source");
    cluster.start_merge(left.id, right.id);
    let others: Vec<u64> = (1..=3).filter(|s| *s != lag).collect();
    wait_until("merged where the target was heard", TIMEOUT, || {
        others.iter().all(|s| cluster.peer_status(*s, left.id).is_none())
    });
    for i in 0..40 {
        cluster.must_put(&key(i % 20), format!("m{i}").as_bytes()); // the log moves on
    }
    let lagging = cluster.peer_status(lag, left.id).expect("the source waits on the lag store");
    // Merging there, as a rule; under load the source's leader may be merged away before it
    // tells the lag store the PrepareMerge committed (the case of the next test).
    let (had, split) = (lagging.region.get_region_epoch(), left.get_region_epoch());
    assert!(had.version <= split.version + 1, "{had:?} {split:?}");
    let merged = cluster.peer_status(others[0], right.id).unwrap().region;
    cluster.clear_filters();
    wait_until("the lag store took the merged region by snapshot", TIMEOUT, || {
        cluster.peer_status(lag, left.id).is_none()
            && cluster.peer_status(lag, right.id).is_some_and(|s| s.region == merged)
    });
    for i in 0..20 {
        let value = format!("m{}", 20 + i);
        cluster.must_get_equal(lag, &key(i), value.as_bytes());
    }
    assert!(cluster.store_meta(lag).lock().unwrap().reader(left.id).is_none());
}

/// Keys 0..20 split at 10 on three stores; a store leading neither half is cut off, and the
/// left half merges into the right one on the other two.
struct MissedMerge {
    cluster: Cluster,
    left: metapb::Region,
    right: metapb::Region,
    lag: u64,
    others: Vec<u64>,
    cut: test_raftstore::transport::FilterId,
}

fn merge_with_a_store_cut_off(cfg: Config) -> MissedMerge {
    let mut cluster = Cluster::with_config(3, cfg);
    cluster.run();
    for i in 0..20 {
        cluster.must_put(&key(i), b"v");
    }
    let (left, right) = cluster.must_split(&key(10));
    let leaders = [cluster.wait_leader(left.id).store_id, cluster.wait_leader(right.id).store_id];
    let lag = (1..=3).find(|s| !leaders.contains(s)).unwrap();
    cluster.must_get_equal(lag, &key(15), b"v");
    let cut = cluster.isolate(lag);
    cluster.start_merge(left.id, right.id);
    let others: Vec<u64> = (1..=3).filter(|s| *s != lag).collect();
    wait_until("merged where the store is heard", TIMEOUT, || {
        others.iter().all(|s| cluster.peer_status(*s, left.id).is_none())
    });
    MissedMerge { cluster, left, right, lag, others, cut }
}

/// A store is cut off before the merge starts: its source peer never applies the PrepareMerge,
/// and the target's log is compacted past the CommitMerge. After the heal the source hears
/// from a store keeping its merged tombstone that it was merged away; the merged region's
/// snapshot over it is then taken on the cut-off store, the source displaced, and the store
/// holds the merged region.
#[test]
fn a_source_that_missed_the_whole_merge_gives_way_to_the_targets_snapshot() {
    let cfg =
        Config { raft_log_gc_count_limit: 20, raft_log_gc_threshold: 5, ..Config::for_tests() };
    let MissedMerge { cluster, left, right, lag, others, cut } = merge_with_a_store_cut_off(cfg);
    let behind = cluster.peer_status(lag, right.id).unwrap().last_index;
    for i in 0..40 {
        cluster.must_put(&key(i % 20), format!("m{i}").as_bytes()); // the log moves on
    }
    let merged = cluster.peer_status(others[0], right.id).unwrap();
    cluster.wait_truncated_beyond(others[0], right.id, behind + 1);
    let source = cluster.peer_status(lag, left.id).expect("the source stays on the cut-off store");
    let (had, split) = (source.region.get_region_epoch(), left.get_region_epoch());
    assert_eq!(had.version, split.version, "it never applied the PrepareMerge");
    assert_eq!(cluster.raft_event(lag, RaftEvent::StalePeerDestroyed), 0);

    cluster.network.remove_filter(cut);
    wait_until("the lag store took the merged region by snapshot", 4 * TIMEOUT, || {
        cluster.peer_status(lag, left.id).is_none()
            && cluster.peer_status(lag, right.id).is_some_and(|s| s.region == merged.region)
    });
    assert!(cluster.raft_event(lag, RaftEvent::StalePeerDestroyed) >= 1);
    for i in 0..20 {
        let value = format!("m{}", 20 + i);
        cluster.must_get_equal(lag, &key(i), value.as_bytes());
    }
    assert!(cluster.store_meta(lag).lock().unwrap().reader(left.id).is_none());
    cluster.must_put(&key(3), b"after");
    cluster.must_get_equal(lag, &key(3), b"after");
}

/// The same cut, but the target's log keeps the CommitMerge: after the heal the source on the
/// cut-off store hears from a store keeping the merged tombstone that it was merged away, yet
/// it stays, for its local target applies the merge from its log and needs it to catch up.
#[test]
fn a_source_that_missed_the_whole_merge_stays_for_its_target_catching_up_by_log() {
    let MissedMerge { cluster, left, right, lag, others, cut } =
        merge_with_a_store_cut_off(Config::for_tests());
    cluster.must_put(&key(3), b"merged");
    let merged = cluster.peer_status(others[0], right.id).unwrap();
    let behind = cluster.peer_status(lag, right.id).unwrap();
    assert!(merged.truncated_index <= behind.last_index, "the log reaches back to the lag store");
    // Let the source's votes reach the stores keeping its tombstone first.
    cluster.network.remove_filter(cut);
    let cut = cluster.network.add_filter(Box::new(IsolateRegion { region: right.id, store: lag }));
    std::thread::sleep(Duration::from_millis(300));
    assert!(cluster.peer_status(lag, left.id).is_some(), "told it was merged away, it stays");
    cluster.network.remove_filter(cut);
    wait_until("the lag store merged by log", TIMEOUT, || {
        cluster.peer_status(lag, left.id).is_none()
            && cluster.peer_status(lag, right.id).is_some_and(|s| s.region == merged.region)
    });
    assert_eq!(cluster.raft_event(lag, RaftEvent::StalePeerDestroyed), 0, "merged, not displaced");
    cluster.must_get_equal(lag, &key(3), b"merged");
    cluster.must_get_equal(lag, &key(15), b"v");
}

/// Keeps a store's peer of a region from hearing of commits: heartbeats and appends without
/// entries to it are dropped.
struct NoCommitNews {
    region: u64,
    store: u64,
}

impl Filter for NoCommitNews {
    fn allow(&self, _: u64, to: u64, msg: &RaftMessage) -> bool {
        let m = msg.get_message();
        let news = m.get_msg_type() == MessageType::MsgHeartbeat
            || m.get_msg_type() == MessageType::MsgAppend && m.get_entries().is_empty();
        !(to == self.store && msg.region_id == self.region && news)
    }
}

/// A store's source peer gets the PrepareMerge entry but never hears that it committed, and
/// its leader is merged away: the CommitMerge its target applies by log carries the word that
/// the entry committed, so the source catches up and the store merges.
#[test]
fn a_source_that_never_heard_its_prepare_merge_commit_catches_up_through_the_target() {
    let (cluster, regions) = split_cluster(20, &[10]);
    let (source, target) = (&regions[0], &regions[1]);
    let (leader, _) = cluster.leader_region(source.id);
    let lag = (1..=3).find(|s| *s != leader.store_id).unwrap();
    cluster.must_get_equal(lag, &key(3), b"v");
    cluster.network.add_filter(Box::new(NoCommitNews { region: source.id, store: lag }));
    cluster.start_merge(source.id, target.id);
    wait_until("the lag store merged", TIMEOUT, || {
        cluster.peer_status(lag, source.id).is_none()
            && cluster.peer_status(lag, target.id).is_some_and(|s| s.region.start_key.is_empty())
    });
    cluster.must_put(&key(3), b"merged");
    cluster.must_get_equal(lag, &key(3), b"merged");
}
