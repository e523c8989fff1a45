//! The client against a cluster of nodes in this process: routing, hints, back-off,
//! deadlines, and stores that restart under it.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use client::{Client, ClientConfig, Error};
use pd_client::{MemPdConfig, PdClient};
use raftstore::Config;
use server::{local::LocalCluster, Context, NodeConfig};

const WAIT: Duration = Duration::from_secs(10);

fn cluster(dir: &tempfile::TempDir) -> LocalCluster {
    let cfg = NodeConfig {
        store: Config { raft_entry_max_size: 64 << 10, ..Config::for_tests() },
        rocksdb: engine::rocks::RocksConfig::small(),
        ..NodeConfig::new(dir.path())
    };
    let pd = MemPdConfig { max_replicas: 3, ..Default::default() };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let c = LocalCluster::start(dir.path(), 3, cfg, pd, &logger).unwrap();
    c.wait_ready(3, WAIT).unwrap();
    c
}

fn client(c: &LocalCluster) -> Client {
    let pd: Arc<dyn PdClient> = c.pd.clone();
    let cfg = ClientConfig { attempt_timeout: Duration::from_millis(500), ..Default::default() };
    Client::new(pd, c.nodes.clone(), cfg, 1)
}

fn soon() -> Instant {
    Instant::now() + WAIT
}

#[test]
fn writes_and_reads_follow_the_regions_and_their_leaders() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(&dir);
    let mut cl = client(&c);
    cl.put(b"a", b"1", soon()).unwrap();
    cl.put(b"z", b"2", soon()).unwrap();
    c.split(&[b"m".to_vec()], 10, WAIT).unwrap();
    c.wait_ready(3, WAIT).unwrap();
    // The cached region is stale now: EpochNotMatch names the new ones.
    cl.put(b"z", b"3", soon()).unwrap();
    assert_eq!(cl.get(b"a", soon()).unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(cl.get_follower(b"z", soon()).unwrap().as_deref(), Some(&b"3"[..]));
    cl.delete(b"a", soon()).unwrap();
    assert_eq!(cl.get(b"a", soon()).unwrap(), None);
    assert_eq!(cl.cached_regions(), 2);

    // The leader moves: the old one answers NotLeader with the new one, which is followed.
    let region = c.pd.get_region(b"z").unwrap().0;
    let (old, status) = c.leader_of(region.id).unwrap();
    let target = status.region.get_peers().iter().find(|p| p.store_id != old.store_id()).unwrap();
    let ctx = Context::new(&status.region, &status.peer);
    old.transfer_leader(&ctx, target, WAIT).unwrap();
    let deadline = soon();
    while c.leader_of(region.id).is_none_or(|(n, _)| n.store_id() != target.store_id) {
        assert!(Instant::now() < deadline, "the leader did not move");
        std::thread::sleep(Duration::from_millis(10));
    }
    cl.put(b"z", b"4", soon()).unwrap();
    assert!(cl.stats().retries.get("not_leader").copied().unwrap_or(0) >= 1, "{:?}", cl.stats());
}

#[test]
fn a_client_made_while_a_store_is_down_reaches_it_after_its_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(&dir);
    let down = c.store_ids()[0];
    c.stop_node(down);
    let mut cl = client(&c); // made while `down` is down
    cl.put(b"k", b"v1", soon()).unwrap();
    c.start_node(down).unwrap();
    c.wait_ready(3, WAIT).unwrap();
    // Make the restarted store lead, so the client must reach it.
    let region = c.pd.get_region(b"k").unwrap().0;
    let deadline = soon();
    while c.leader_of(region.id).is_none_or(|(n, _)| n.store_id() != down) {
        assert!(Instant::now() < deadline, "no leadership on the restarted store");
        if let Some((leader, s)) = c.leader_of(region.id) {
            let to = s.region.get_peers().iter().find(|p| p.store_id == down).unwrap().clone();
            let _ = leader.transfer_leader(&Context::new(&s.region, &s.peer), &to, WAIT);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cl.put(b"k", b"v2", soon()).unwrap();
    assert_eq!(cl.get(b"k", soon()).unwrap().as_deref(), Some(&b"v2"[..]));
}

#[test]
fn without_a_quorum_writes_end_undetermined_or_at_the_deadline_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(&dir);
    let mut cl = client(&c);
    let big = vec![b'x'; 128 << 10];
    match cl.put(b"k", &big, soon()) {
        Err(Error::Refused(server::Error::Request(raftstore::Error::RaftEntryTooLarge {
            ..
        }))) => {}
        other => panic!("{other:?}"),
    }
    cl.put(b"k", b"v", soon()).unwrap();
    let ids = c.store_ids();
    c.stop_node(ids[1]);
    c.stop_node(ids[2]);
    let deadline = Instant::now() + Duration::from_secs(2);
    match cl.put(b"k", b"w", deadline) {
        Err(Error::Undetermined(_) | Error::DeadlineExceeded { .. }) => {}
        other => panic!("a write without a quorum: {other:?}"),
    }
    let res = cl.get(b"k", Instant::now() + Duration::from_secs(1));
    assert!(matches!(res, Err(Error::DeadlineExceeded { .. })), "{res:?}");
    assert!(cl.stats().backoff > Duration::ZERO, "it backed off: {:?}", cl.stats());
}

#[test]
fn a_write_whose_keys_span_regions_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(&dir);
    c.split(&[b"m".to_vec()], 10, WAIT).unwrap();
    c.wait_ready(3, WAIT).unwrap();
    let mut cl = client(&c);
    let mods = [
        server::Modify::Put(b"a".to_vec(), b"1".to_vec()),
        server::Modify::Put(b"z".to_vec(), b"2".to_vec()),
    ];
    let started = Instant::now();
    let res = cl.write(b"a", &mods, soon());
    assert!(matches!(res, Err(Error::Refused(_))), "{res:?}");
    assert!(started.elapsed() < Duration::from_secs(1), "refused without retrying");
    // A range delete to +infinity fits only the last region.
    let res = cl.write(b"a", &[server::Modify::DeleteRange(b"a".to_vec(), Vec::new())], soon());
    assert!(matches!(res, Err(Error::Refused(_))), "{res:?}");
    cl.write(b"n", &[server::Modify::DeleteRange(b"n".to_vec(), Vec::new())], soon()).unwrap();
    assert_eq!(cl.get(b"a", soon()).unwrap(), None, "nothing of the refused write applied");
}

#[test]
fn a_scan_crosses_regions_in_key_order_up_to_its_limit_and_end() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(&dir);
    let mut writer = client(&c);
    let keys: Vec<String> = (0..30).map(|i| format!("k{i:02}")).collect();
    for k in &keys {
        writer.put(k.as_bytes(), k.as_bytes(), soon()).unwrap();
    }
    c.split(&[b"k10".to_vec(), b"k20".to_vec()], 10, WAIT).unwrap();
    c.wait_ready(3, WAIT).unwrap();
    let got = |start: &str, end: &str, limit| -> Vec<String> {
        let pairs = client(&c).scan(start.as_bytes(), end.as_bytes(), limit, soon()).unwrap();
        assert!(pairs.iter().all(|(k, v)| k == v), "values go with their keys");
        pairs.into_iter().map(|(k, _)| String::from_utf8(k).unwrap()).collect()
    };
    assert_eq!(got("", "", 100), keys, "the whole key space, over three regions");
    assert_eq!(got("k05", "k25", 100), keys[5..25], "bounded at both ends");
    assert_eq!(got("k08", "", 5), keys[8..13], "the limit stops it inside the second region");
    assert_eq!(got("k10", "k10", 100), Vec::<String>::new(), "an empty range");
    assert_eq!(got("k29", "", 0), Vec::<String>::new(), "a zero limit");
    // A cache that predates the split is corrected on the way.
    let mut stale = client(&c);
    stale.get(b"k12", soon()).unwrap(); // caches [k10, k20)
    c.split(&[b"k15".to_vec()], 10, WAIT).unwrap();
    c.wait_ready(3, WAIT).unwrap();
    let all = stale.scan(b"", b"", 100, soon()).unwrap();
    assert_eq!(all.len(), 30, "nothing lost or repeated across a split the cache missed");
}
