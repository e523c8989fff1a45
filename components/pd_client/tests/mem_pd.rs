//! The in-memory placement driver: ids, bootstrap, routing by key across splits, stale
//! reports, operators, leader balance.

use std::collections::HashSet;

use pd_client::{Error, MemPd, MemPdConfig, Operator, PdClient, RegionStats, StoreStats};
use proto::metapb::{self, PeerRole};

fn peer(id: u64, store_id: u64) -> metapb::Peer {
    let mut p = metapb::Peer::default();
    p.id = id;
    p.store_id = store_id;
    p
}

fn store(id: u64) -> metapb::Store {
    let mut s = metapb::Store::default();
    s.id = id;
    s
}

fn region(id: u64, start: &[u8], end: &[u8], version: u64, peers: &[(u64, u64)]) -> metapb::Region {
    let mut r = metapb::Region::default();
    r.id = id;
    r.start_key = start.to_vec();
    r.end_key = end.to_vec();
    r.mut_region_epoch().conf_ver = 1;
    r.mut_region_epoch().version = version;
    r.peers = peers.iter().map(|(p, s)| peer(*p, *s)).collect();
    r
}

const PEERS: &[(u64, u64)] = &[(11, 1), (12, 2), (13, 3)];

fn bootstrapped(cfg: MemPdConfig) -> MemPd {
    let pd = MemPd::new(cfg);
    pd.bootstrap_cluster(store(1), region(1, b"", b"", 1, PEERS)).unwrap();
    pd.put_store(store(2)).unwrap();
    pd.put_store(store(3)).unwrap();
    pd
}

#[test]
fn ids_are_unique_across_threads() {
    let pd = std::sync::Arc::new(MemPd::new(MemPdConfig::default()));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let pd = pd.clone();
            std::thread::spawn(move || {
                (0..1000).map(|_| pd.alloc_id().unwrap()).collect::<Vec<_>>()
            })
        })
        .collect();
    let all: Vec<u64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 4000);
}

#[test]
fn bootstrap_once() {
    let pd = MemPd::new(MemPdConfig::default());
    assert!(!pd.is_cluster_bootstrapped().unwrap());
    assert_eq!(pd.get_region(b"a").unwrap_err(), Error::NotBootstrapped);
    pd.bootstrap_cluster(store(1), region(1, b"", b"", 1, PEERS)).unwrap();
    assert!(pd.is_cluster_bootstrapped().unwrap());
    assert_eq!(
        pd.bootstrap_cluster(store(1), region(2, b"", b"", 1, PEERS)).unwrap_err(),
        Error::AlreadyBootstrapped
    );
    assert_eq!(pd.get_store(1).unwrap().id, 1);
    assert_eq!(pd.get_store(7).unwrap_err(), Error::StoreNotFound(7));
    assert_eq!(
        pd.store_heartbeat(StoreStats { store_id: 7, ..Default::default() }).unwrap_err(),
        Error::StoreNotFound(7)
    );
}

#[test]
fn routing_by_key_follows_splits() {
    let pd = bootstrapped(MemPdConfig::default());
    assert_eq!(pd.get_region(b"").unwrap().0.id, 1);
    assert_eq!(pd.get_region(b"zzz").unwrap().0.id, 1);

    let ids = pd.ask_batch_split(&pd.get_region_by_id(1).unwrap().0, 2).unwrap();
    assert_eq!(ids.len(), 2);
    assert!(ids.iter().all(|s| s.new_peer_ids.len() == 3));
    let (a, b) = (ids[0].new_region_id, ids[1].new_region_id);
    // [ , m) -> a, [m, t) -> b, [t, ) stays region 1 (right derive).
    pd.report_batch_split(vec![
        region(a, b"", b"m", 3, PEERS),
        region(b, b"m", b"t", 3, PEERS),
        region(1, b"t", b"", 3, PEERS),
    ])
    .unwrap();
    assert_eq!(pd.get_region(b"a").unwrap().0.id, a);
    assert_eq!(pd.get_region(b"m").unwrap().0.id, b);
    assert_eq!(pd.get_region(b"s").unwrap().0.id, b);
    assert_eq!(pd.get_region(b"t").unwrap().0.id, 1);
    assert_eq!(pd.regions().iter().map(|r| r.id).collect::<Vec<_>>(), vec![a, b, 1]);

    // A late heartbeat of the parent's old shape is refused, and changes nothing.
    let err =
        pd.region_heartbeat(5, region(1, b"", b"", 1, PEERS), peer(11, 1), RegionStats::default());
    assert!(matches!(err, Err(Error::StaleRegion { region_id: 1, .. })), "{err:?}");
    assert!(err.unwrap_err().is_retryable());
    assert_eq!(pd.get_region(b"a").unwrap().0.id, a);
    // So is a region that claims a range a newer split owns.
    let err = pd.region_heartbeat(
        5,
        region(99, b"k", b"n", 2, PEERS),
        peer(11, 1),
        RegionStats::default(),
    );
    assert!(matches!(err, Err(Error::StaleRegion { .. })), "{err:?}");
}

#[test]
fn heartbeat_records_leader_and_ignores_older_terms() {
    let pd = bootstrapped(MemPdConfig::default());
    let r = region(1, b"", b"", 1, PEERS);
    pd.region_heartbeat(7, r.clone(), peer(12, 2), RegionStats::default()).unwrap();
    assert_eq!(pd.get_region(b"x").unwrap().1.unwrap().id, 12);
    pd.region_heartbeat(6, r, peer(11, 1), RegionStats::default()).unwrap();
    assert_eq!(pd.get_region(b"x").unwrap().1.unwrap().id, 12, "older term ignored");
}

#[test]
fn operators_are_repeated_until_done() {
    let pd = bootstrapped(MemPdConfig::default());
    pd.put_store(store(4)).unwrap();
    let new_peer = peer(14, 4);
    pd.add_operator(1, Operator::AddPeer(new_peer.clone()));
    let hb = |r: metapb::Region, leader: u64| {
        pd.region_heartbeat(5, r, peer(leader, leader - 10), RegionStats::default()).unwrap()
    };
    let r = region(1, b"", b"", 1, PEERS);
    assert_eq!(hb(r.clone(), 11), Some(Operator::AddPeer(new_peer.clone())));
    assert_eq!(hb(r.clone(), 11), Some(Operator::AddPeer(new_peer.clone())), "repeated");
    let mut learner_added = region(1, b"", b"", 1, PEERS);
    learner_added.mut_region_epoch().conf_ver = 2;
    let mut learner = new_peer.clone();
    learner.set_role(PeerRole::Learner);
    learner_added.peers.push(learner);
    assert!(hb(learner_added.clone(), 11).is_some(), "a learner is not yet a voter");
    let mut done = learner_added;
    done.mut_region_epoch().conf_ver = 3;
    done.peers[3].set_role(PeerRole::Voter);
    assert_eq!(hb(done.clone(), 11), None);
    assert_eq!(pd.pending_operator(1), None);

    pd.add_operator(1, Operator::TransferLeader(peer(12, 2)));
    assert!(hb(done.clone(), 11).is_some());
    assert_eq!(hb(done.clone(), 12), None, "done once the target leads");
    pd.add_operator(1, Operator::TransferLeader(peer(99, 9)));
    assert_eq!(hb(done, 12), None, "an operator to a peer not in the region is dropped");
}

#[test]
fn leaders_are_balanced_when_asked() {
    let cfg =
        MemPdConfig { balance_leaders: true, leader_balance_threshold: 2, ..Default::default() };
    let pd = bootstrapped(cfg);
    // Four regions, all led from store 1.
    let ids = pd.ask_batch_split(&pd.get_region_by_id(1).unwrap().0, 3).unwrap();
    let mut regions = vec![
        region(ids[0].new_region_id, b"", b"b", 4, PEERS),
        region(ids[1].new_region_id, b"b", b"c", 4, PEERS),
        region(ids[2].new_region_id, b"c", b"d", 4, PEERS),
        region(1, b"d", b"", 4, PEERS),
    ];
    pd.report_batch_split(regions.clone()).unwrap();
    let mut ops = Vec::new();
    for r in regions.drain(..) {
        ops.push(pd.region_heartbeat(5, r, peer(11, 1), RegionStats::default()).unwrap());
    }
    // After two heartbeats store 1 leads 2 and the others 0: the gap reaches the threshold.
    assert_eq!(ops[0], None);
    let transfer = ops.iter().flatten().next().expect("a transfer was proposed");
    match transfer {
        Operator::TransferLeader(p) => assert_ne!(p.store_id, 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(pd.leader_counts().get(&1), Some(&4));
}

fn merging(max_size: u64) -> MemPd {
    let cfg = MemPdConfig {
        enable_merge: true,
        max_merge_region_size: max_size,
        max_merge_region_keys: 10,
        split_merge_interval: std::time::Duration::ZERO,
        ..Default::default()
    };
    let pd = bootstrapped(cfg);
    let left = region(1, b"", b"m", 2, PEERS);
    let right = region(2, b"m", b"", 2, &[(21, 1), (22, 2), (23, 3)]);
    pd.report_batch_split(vec![left, right]).unwrap();
    pd
}

fn sized(size: u64, keys: u64) -> RegionStats {
    RegionStats { approximate_size: Some(size), approximate_keys: Some(keys), ..Default::default() }
}

#[test]
fn a_small_region_is_merged_into_a_small_neighbour_once_both_are_measured() {
    let pd = merging(100);
    let (left, right) = (region(1, b"", b"m", 2, PEERS), pd.get_region_by_id(2).unwrap().0);
    let hb =
        |r: &metapb::Region, stats| pd.region_heartbeat(1, r.clone(), r.peers[0].clone(), stats);
    assert_eq!(hb(&left, sized(10, 1)).unwrap(), None, "the neighbour is not measured yet");
    assert_eq!(hb(&right, sized(500, 5)).unwrap(), None, "too big to merge or merge into");
    assert_eq!(hb(&left, sized(10, 1)).unwrap(), None);
    assert_eq!(hb(&right, sized(50, 20)).unwrap(), None, "too many keys");
    assert_eq!(hb(&right, sized(50, 5)).unwrap(), Some(Operator::Merge { target: left.clone() }));
    assert_eq!(pd.merges_in_flight(), vec![(2, 1)]);
    // The target gets no operator of its own meanwhile, the source the merge again.
    assert_eq!(hb(&left, sized(10, 1)).unwrap(), None);
    let again = hb(&right, sized(50, 5)).unwrap();
    assert!(matches!(again, Some(Operator::Merge { target }) if target.id == 1));
    // The target reports the merged range: the merge is done.
    let mut merged = region(1, b"", b"", 4, PEERS);
    merged.mut_region_epoch().conf_ver = 1;
    hb(&merged, sized(60, 6)).unwrap();
    assert_eq!(pd.merge_count(), 1);
    assert!(pd.merges_in_flight().is_empty());
    assert_eq!(pd.merge_durations().len(), 1);
    assert_eq!(pd.regions().len(), 1);
}

#[test]
fn regions_on_other_stores_or_split_lately_are_not_merged() {
    let pd = merging(100);
    let left = region(1, b"", b"m", 2, PEERS);
    let right = region(2, b"m", b"", 2, &[(21, 1), (22, 2), (24, 4)]);
    pd.put_store(store(4)).unwrap();
    let hb =
        |r: &metapb::Region| pd.region_heartbeat(1, r.clone(), r.peers[0].clone(), sized(1, 1));
    hb(&left).unwrap();
    hb(&right).unwrap();
    assert_eq!(hb(&left).unwrap(), None, "peers on other stores");
    assert_eq!(hb(&right).unwrap(), None);

    let cfg = MemPdConfig {
        enable_merge: true,
        split_merge_interval: std::time::Duration::from_secs(3600),
        ..Default::default()
    };
    let pd = bootstrapped(cfg);
    let (left, right) = (region(1, b"", b"m", 2, PEERS), region(2, b"m", b"", 2, PEERS));
    pd.report_batch_split(vec![left.clone(), right.clone()]).unwrap();
    for r in [&left, &right, &left] {
        let op = pd.region_heartbeat(1, r.clone(), r.peers[0].clone(), sized(1, 1)).unwrap();
        assert_eq!(op, None, "split a moment ago");
    }
}
