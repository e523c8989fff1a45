//! Write and read latency on the product's layers, in one run on one 3-node in-process
//! cluster (one region, 10 ms ticks, no fsync), one caller at a time:
//! - raw: a command sent to the leader's raft router and its answer awaited (writes), a lease
//!   read through the leader's `StoreReader` (reads) — what the harness called before `Node`;
//! - `Node::write` / `Node::get`: the embedding API (a `Pending` answer, metrics recorded);
//! - `Client::put` / `Client::get`: routing through the region cache, retries, deadlines.
//!
//! Prints one table: ops/s, p50, p99 and p99.9 per path. Depends on the product crates only.
//! `make bench BENCH=node`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use regionstore::{
    client::{Client, ClientConfig},
    pd_client::{MemPdConfig, PdClient},
    proto::raft_cmdpb::{CmdType, RaftCmdRequest, RaftRequestHeader, Request},
    raftstore::{msg::RaftCommand, Config, ReadContext},
    server::local::LocalCluster,
    Context, Modify, Node, NodeConfig,
};

const OPS: u64 = 5_000;
const KEYS: u64 = 1_000;
const TIMEOUT: Duration = Duration::from_secs(5);

fn key(i: u64) -> Vec<u8> {
    format!("key{:06}", i % KEYS).into_bytes()
}

/// ops/s, then p50, p99 and p99.9 latency in µs.
type Row = (f64, f64, f64, f64);

/// Runs `f(i)` `OPS` times after `OPS / 10` warm-up calls.
fn measure(mut f: impl FnMut(u64)) -> Row {
    (0..OPS / 10).for_each(&mut f);
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let start = Instant::now();
    for i in 0..OPS {
        let t = Instant::now();
        f(i);
        hist.record(t.elapsed().as_nanos() as u64).unwrap();
    }
    let rate = OPS as f64 / start.elapsed().as_secs_f64();
    let us = |q| hist.value_at_quantile(q) as f64 / 1000.0;
    (rate, us(0.5), us(0.99), us(0.999))
}

fn header(ctx: &Context) -> RaftRequestHeader {
    let mut h = RaftRequestHeader::default();
    h.region_id = ctx.region_id;
    h.set_region_epoch(ctx.region_epoch.clone());
    h.set_peer(ctx.peer.clone());
    h
}

fn raw_write(node: &Node, ctx: &Context, i: u64) {
    let mut req = RaftCmdRequest::default();
    req.set_header(header(ctx));
    let mut put = Request::default();
    put.set_cmd_type(CmdType::Put);
    put.mut_put().key = key(i);
    put.mut_put().value = b"value".to_vec();
    req.mut_requests().push(put);
    let (cmd, rx) = RaftCommand::new(req);
    node.router().unwrap().send_command(cmd);
    let resp = rx.recv_timeout(TIMEOUT).unwrap();
    assert!(!resp.get_header().has_error(), "{:?}", resp.get_header());
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let template = NodeConfig { store: Config::for_tests(), ..NodeConfig::new(dir.path()) };
    let pd_cfg = MemPdConfig { max_replicas: 3, ..Default::default() };
    let cluster = LocalCluster::start(dir.path(), 3, template, pd_cfg, &logger).unwrap();
    cluster.wait_ready(3, Duration::from_secs(30)).unwrap();
    let region = cluster.pd.regions().pop().unwrap();
    let (leader, status) = cluster.leader_of(region.id).unwrap();
    let ctx = Context::new(&status.region, &status.peer);
    let pd: Arc<dyn PdClient> = cluster.pd.clone();
    let mut client = Client::new(pd, cluster.nodes.clone(), ClientConfig::default(), 7);
    let mut reader = leader.reader().unwrap();
    let read_ctx = ReadContext { header: header(&ctx), read_id: None };
    let put = |i: u64| [Modify::Put(key(i), b"value".to_vec())];

    let rows: Vec<(&str, Row)> = vec![
        ("write: raw router", measure(|i| raw_write(&leader, &ctx, i))),
        ("write: Node::write", measure(|i| leader.write(&ctx, &put(i), TIMEOUT).unwrap())),
        (
            "write: Client::put",
            measure(|i| client.put(&key(i), b"value", Instant::now() + TIMEOUT).unwrap()),
        ),
        (
            "read: raw StoreReader",
            measure(|i| {
                let (tx, rx) = crossbeam_channel::bounded(1);
                reader.async_snapshot(&read_ctx, move |res| tx.send(res).unwrap());
                let snap = rx.recv_timeout(TIMEOUT).unwrap().unwrap();
                assert!(snap.get(&key(i)).unwrap().is_some());
            }),
        ),
        (
            "read: Node::get",
            measure(|i| assert!(leader.get(&ctx, &key(i), TIMEOUT).unwrap().is_some())),
        ),
        (
            "read: Client::get",
            measure(|i| assert!(client.get(&key(i), Instant::now() + TIMEOUT).unwrap().is_some())),
        ),
    ];
    println!("\n{OPS} operations per path, one at a time, 3 nodes in one process, one region");
    println!("{:<24} {:>10} {:>10} {:>10} {:>10}", "path", "ops/s", "p50 µs", "p99 µs", "p99.9 µs");
    for (name, (rate, p50, p99, p999)) in rows {
        println!("{name:<24} {rate:>10.0} {p50:>10.1} {p99:>10.1} {p999:>10.1}");
    }
    cluster.stop();
}
