//! The placement driver learns leaders from heartbeats, stores report their counts, and its
//! operators are carried out.

use std::time::{Duration, Instant};

use pd_client::{Operator, PdClient};
use test_raftstore::{Cluster, FIRST_REGION};

fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn leaders_report_to_the_placement_driver() {
    let mut cluster = Cluster::new(3);
    cluster.run_with_split_keys(&[b"m".to_vec()]);
    for key in [&b"a"[..], b"x"] {
        let region = cluster.pd.get_region(key).unwrap().0;
        let leader = cluster.wait_leader(region.id);
        wait("the leader in the placement driver", || {
            cluster.pd.get_region(key).unwrap().1.is_some_and(|l| l.id == leader.id)
        });
    }
}

#[test]
fn stores_report_their_regions_and_leaders() {
    let mut cluster = Cluster::new(3);
    cluster.run_with_split_keys(&[b"m".to_vec()]);
    for key in [&b"a"[..], b"x"] {
        let region = cluster.pd.get_region(key).unwrap().0;
        cluster.wait_leader(region.id);
    }
    // Two regions, each with a peer on every store; two leaders in all.
    wait("every store's heartbeat", || {
        let stats: Vec<_> = (1..=3).filter_map(|s| cluster.pd.store_stats(s)).collect();
        stats.len() == 3
            && stats.iter().all(|s| s.region_count == 2)
            && stats.iter().map(|s| s.leader_count).sum::<u64>() == 2
    });
}

#[test]
fn an_add_peer_operator_is_carried_out() {
    let mut cluster = Cluster::new(4);
    cluster.run_with_region_on(&[1, 2, 3]);
    cluster.must_put(b"k", b"v");
    let peer = cluster.new_peer(4);
    cluster.pd.add_operator(FIRST_REGION, Operator::AddPeer(peer.clone()));
    cluster.must_get_equal(4, b"k", b"v");
    wait("the operator to finish", || cluster.pd.pending_operator(FIRST_REGION).is_none());
    let region = cluster.pd.get_region_by_id(FIRST_REGION).unwrap().0;
    assert!(region.get_peers().iter().any(|p| p.id == peer.id));
}

#[test]
fn leader_balancing_evens_out_a_skewed_cluster() {
    let mut cluster = Cluster::new(3);
    let splits: Vec<Vec<u8>> =
        ["b", "c", "d", "e", "f"].iter().map(|k| k.as_bytes().to_vec()).collect();
    cluster.run_with_split_keys(&splits);
    let regions = cluster.pd.regions();
    assert_eq!(regions.len(), 6);
    for r in &regions {
        let on_store_1 = r.get_peers().iter().find(|p| p.store_id == 1).unwrap().clone();
        cluster.must_transfer_leader(r.id, &on_store_1);
    }
    let counts = |c: &Cluster| {
        let mut n = [0u64; 4];
        for r in &regions {
            if let Some(l) = c.leader_of_region(r.id) {
                n[l.store_id as usize] += 1;
            }
        }
        n
    };
    assert_eq!(counts(&cluster)[1], 6, "all leaders on store 1 to start");
    cluster.pd.set_balance_leaders(true);
    wait("balanced leaders", || {
        let n = counts(&cluster);
        let (max, min) = (n[1..].iter().max().unwrap(), n[1..].iter().min().unwrap());
        max - min < 2
    });
    cluster.must_put(b"a", b"still-writable");
}
