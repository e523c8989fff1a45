//! A cluster elects a leader and replicates writes to every store.

use server::Modify;
use test_raftstore::{put_request, Cluster, FIRST_REGION};

#[test]
fn election_and_replication_to_all_stores() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    let leader = cluster.wait_leader(FIRST_REGION);
    assert!((1..=3).contains(&leader.store_id));
    cluster.must_put(b"k1", b"v1");
    for store in 1..=3 {
        cluster.must_get_equal(store, b"k1", b"v1");
    }
    cluster.must_delete(b"k1");
    for store in 1..=3 {
        cluster.must_get_none(store, b"k1");
    }
}

#[test]
fn a_batch_of_writes_applies_together() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    let puts: Vec<Modify> =
        (0..10).map(|i| Modify::Put(format!("key{i}").into_bytes(), b"v".to_vec())).collect();
    cluster.write(&puts, b"key0").unwrap();
    for store in 1..=3 {
        for i in 0..10 {
            cluster.must_get_equal(store, format!("key{i}").as_bytes(), b"v");
        }
    }
}

#[test]
fn single_store_cluster_elects_itself() {
    let mut cluster = Cluster::new(1);
    cluster.run();
    assert_eq!(cluster.wait_leader(FIRST_REGION).store_id, 1);
    cluster.must_put(b"solo", b"1");
    cluster.must_get_equal(1, b"solo", b"1");
}

#[test]
fn pre_split_regions_each_elect_and_keep_to_their_range() {
    let mut cluster = Cluster::new(3);
    cluster.run_with_split_keys(&[b"g".to_vec(), b"p".to_vec()]);
    let regions = cluster.pd.regions();
    assert_eq!(regions.len(), 3);
    for r in &regions {
        cluster.wait_leader(r.id);
    }
    for key in [&b"a"[..], b"h", b"z"] {
        cluster.must_put(key, b"v");
        for store in 1..=3 {
            cluster.must_get_equal(store, key, b"v");
        }
    }
    let (leader, middle) = cluster.leader_region(regions[1].id);
    let req = test_raftstore::new_request(&middle, &leader, vec![put_request(b"a", b"x")]);
    let res = cluster.call_command(leader.store_id, req, std::time::Duration::from_secs(3));
    assert!(matches!(res, Err(raftstore::Error::KeyNotInRegion { .. })), "{res:?}");
}
