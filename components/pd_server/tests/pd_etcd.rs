//! The placement driver over a real etcd: its metadata survives restarts, a standby takes
//! over, a member that lost its election writes nothing, and bad calls are refused.

use std::time::{Duration, Instant};

use pd_client::{Error, PdClient, RegionStats};
use pd_server::{
    etcd_store::{self, EtcdMetaStore, Keys},
    PdConfig, PdServer,
};
use proto::{metapb, pdpb};
use rpc::{GrpcPdClient, PdClientConfig};
use test_raftstore::etcd::Etcd;

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

fn pd_config(etcd: &Etcd, name: &str) -> PdConfig {
    PdConfig {
        name: name.into(),
        addr: "127.0.0.1:0".into(),
        etcd_endpoints: vec![etcd.endpoint().into()],
        lease_ttl: Duration::from_secs(1),
        ..PdConfig::default()
    }
}

/// A member, with `advertise_addr` set to the port it got (tests bind port 0).
fn start(etcd: &Etcd, name: &str) -> PdServer {
    // The advertised address must be known before the campaign: bind a free port first.
    let port = test_raftstore::etcd::free_port();
    let cfg = PdConfig { addr: format!("127.0.0.1:{port}"), ..pd_config(etcd, name) };
    PdServer::start(cfg, logger()).expect("start the placement driver")
}

fn wait_active(servers: &[&PdServer]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(i) = servers.iter().position(|s| s.is_active()) {
            return i;
        }
        assert!(Instant::now() < deadline, "no member became active");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn client(servers: &[&PdServer]) -> GrpcPdClient {
    let endpoints = servers.iter().map(|s| s.addr().to_string());
    GrpcPdClient::connect(PdClientConfig::new(endpoints)).expect("connect")
}

fn store(id: u64) -> metapb::Store {
    let mut s = metapb::Store::default();
    s.id = id;
    s.address = format!("127.0.0.1:{}", 20000 + id);
    s
}

fn region(id: u64, start: &[u8], end: &[u8], version: u64, peers: &[(u64, u64)]) -> metapb::Region {
    let mut r = metapb::Region::default();
    r.id = id;
    r.start_key = start.to_vec();
    r.end_key = end.to_vec();
    r.mut_region_epoch().version = version;
    r.mut_region_epoch().conf_ver = 1;
    for (peer_id, store_id) in peers {
        let mut p = metapb::Peer::default();
        p.id = *peer_id;
        p.store_id = *store_id;
        r.mut_peers().push(p);
    }
    r
}

#[test]
fn metadata_survives_a_restart() {
    let etcd = Etcd::start();
    let pd = start(&etcd, "pd1");
    wait_active(&[&pd]);
    let c = client(&[&pd]);
    let cluster_id = c.cluster_id();
    assert_ne!(cluster_id, 0);
    assert!(!c.is_cluster_bootstrapped().unwrap());
    let first = c.alloc_id().unwrap();
    c.bootstrap_cluster(store(1), region(2, b"", b"", 1, &[(3, 1)])).unwrap();
    c.put_store(store(4)).unwrap();
    // A split: region 2 keeps [, m), region 5 takes [m, ).
    c.report_batch_split(vec![
        region(2, b"", b"m", 2, &[(3, 1)]),
        region(5, b"m", b"", 2, &[(6, 1)]),
    ])
    .unwrap();
    let ids: Vec<u64> = (0..1500).map(|_| c.alloc_id().unwrap()).collect();
    let last = *ids.last().unwrap();
    assert!(ids.windows(2).all(|w| w[0] < w[1]) && ids[0] > first);
    drop(c);
    pd.stop();

    let pd = start(&etcd, "pd1");
    wait_active(&[&pd]);
    let c = client(&[&pd]);
    assert_eq!(c.cluster_id(), cluster_id, "the cluster id lives in etcd");
    assert!(c.is_cluster_bootstrapped().unwrap());
    assert_eq!(c.get_store(4).unwrap(), store(4));
    assert_eq!(c.get_all_stores().unwrap().len(), 2);
    let (r, leader) = c.get_region(b"x").unwrap();
    assert_eq!((r.id, r.start_key.as_slice(), leader), (5, &b"m"[..], None));
    assert_eq!(c.get_region(b"a").unwrap().0.end_key, b"m");
    assert!(c.alloc_id().unwrap() > last, "no id is handed out twice across a restart");
    // A stale report (the parent before the split) is still refused after the restart.
    let stale = c.region_heartbeat(
        1,
        region(2, b"", b"", 1, &[(3, 1)]),
        region(2, b"", b"", 1, &[(3, 1)]).get_peers()[0].clone(),
        RegionStats::default(),
    );
    assert!(matches!(stale, Err(Error::StaleRegion { region_id: 2, .. })), "{stale:?}");
}

#[test]
fn a_standby_takes_over_and_clients_follow() {
    let etcd = Etcd::start();
    let a = start(&etcd, "pd-a");
    let b = start(&etcd, "pd-b");
    let active = wait_active(&[&a, &b]);
    let c = client(&[&a, &b]);
    c.bootstrap_cluster(store(1), region(2, b"", b"", 1, &[(3, 1)])).unwrap();
    let before = c.alloc_id().unwrap();
    let (survivor, stopped) = if active == 0 { (b, a) } else { (a, b) };
    assert!(!survivor.is_active(), "one active member at a time");
    let t = Instant::now();
    stopped.stop();
    // The client retries through the change of leader.
    assert!(c.is_cluster_bootstrapped().unwrap());
    assert!(c.alloc_id().unwrap() > before);
    assert!(survivor.is_active());
    assert_eq!(c.leader_addr().unwrap(), survivor.addr().to_string());
    assert_eq!(c.get_region(b"k").unwrap().0.id, 2);
    eprintln!("failover took {:?}", t.elapsed());
}

#[test]
fn a_member_that_lost_the_election_writes_nothing() {
    let etcd = Etcd::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let keys = Keys::new("/fenced");
    let tainted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut client =
        rt.block_on(etcd_client::Client::connect([etcd.endpoint()], None)).expect("etcd client");
    // An election key that does not exist (its holder's lease expired): every write fails.
    let store = EtcdMetaStore::new(
        client.clone(),
        keys.clone(),
        rt.handle().clone(),
        ("/fenced/leader/1".into(), 7),
        tainted.clone(),
    );
    let saved = pd_client::MetaStore::save_store(&store, &self::store(9));
    assert!(matches!(saved, Err(Error::Unavailable(_))), "{saved:?}");
    assert!(tainted.load(std::sync::atomic::Ordering::SeqCst), "the member is told to step down");
    let meta = rt.block_on(etcd_store::load(&mut client, &keys)).unwrap();
    assert!(meta.stores.is_empty(), "nothing was written");
}

#[test]
fn bad_calls_are_refused_and_change_nothing() {
    let etcd = Etcd::start();
    let pd = start(&etcd, "pd1");
    wait_active(&[&pd]);
    let c = client(&[&pd]);
    c.bootstrap_cluster(store(1), region(2, b"", b"", 1, &[(3, 1)])).unwrap();
    let too_many = c.ask_batch_split(&region(2, b"", b"", 1, &[(3, 1)]), 1 << 20);
    assert!(matches!(too_many, Err(Error::Invalid(_))), "{too_many:?}");
    assert_eq!(c.put_store(store(0)), Err(Error::Invalid("store id 0".into())));
    assert_eq!(
        c.bootstrap_cluster(store(1), region(2, b"", b"", 1, &[(3, 1)])),
        Err(Error::AlreadyBootstrapped)
    );

    // Another cluster's id is refused, whatever the call.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let resp = rt.block_on(async {
        let mut stub = rpc::service::pd_client::PdClient::connect(format!("http://{}", pd.addr()))
            .await
            .unwrap();
        let mut req = pdpb::PutStoreRequest::default();
        req.mut_header().cluster_id = c.cluster_id() + 1;
        req.set_store(store(8));
        stub.put_store(req).await.unwrap().into_inner()
    });
    assert_eq!(resp.get_header().get_error().get_field_type(), pdpb::ErrorType::ClusterIdMismatch);
    assert_eq!(c.get_store(8), Err(Error::StoreNotFound(8)));
    assert_eq!(c.get_all_stores().unwrap().len(), 1);
}
