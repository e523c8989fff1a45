//! Write and read latency on the product's layers, in one run on one 3-node in-process
//! cluster (one region, 10 ms ticks, no fsync), one caller at a time:
//! - raw: a command sent to the leader's raft router and its answer awaited (writes), a lease
//!   read through the leader's `StoreReader` (reads) — what the harness called before `Node`;
//! - `Node::write` / `Node::get`: the embedding API (a `Pending` answer, metrics recorded);
//! - `Client::put` / `Client::get`: routing through the region cache, retries, deadlines.
//!
//! The paths take turns in rounds. Prints one table: ops/s, p50, p99 and p99.9 per path.
//! Depends on the product crates only.
//! `make bench BENCH=node`.

use std::{
    cell::RefCell,
    sync::Arc,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use regionstore::{
    client::{Client, ClientConfig},
    pd_client::PdClient,
    proto::raft_cmdpb::{CmdType, RaftCmdRequest, RaftRequestHeader, Request},
    raftstore::{msg::RaftCommand, ReadContext},
    Context, Modify, Node,
};

mod common;

/// Operations per path under `cargo bench`; `cargo test` (which runs this without `--bench`)
/// does a short smoke run.
fn ops() -> u64 {
    if std::env::args().any(|a| a == "--bench") {
        10_000
    } else {
        500
    }
}
const KEYS: u64 = 1_000;
const TIMEOUT: Duration = Duration::from_secs(5);

fn key(i: u64) -> Vec<u8> {
    format!("key{:06}", i % KEYS).into_bytes()
}

/// Rounds each path's operations are cut into: the paths take turns, round by round, so
/// that a drift of the machine over the run weighs on all of them alike.
const ROUNDS: u64 = 10;

/// One path: its name, the operation, and what its operations took.
struct Path<'a> {
    name: &'static str,
    op: Box<dyn FnMut(u64) + 'a>,
    latency: Histogram<u64>,
    busy: Duration,
}

impl<'a> Path<'a> {
    fn new(name: &'static str, op: impl FnMut(u64) + 'a) -> Self {
        let latency = Histogram::new(3).unwrap();
        Path { name, op: Box::new(op), latency, busy: Duration::ZERO }
    }

    /// Runs `n` operations starting at key `first`, timing each.
    fn run(&mut self, first: u64, n: u64) {
        for i in first..first + n {
            let t = Instant::now();
            (self.op)(i);
            let took = t.elapsed();
            self.latency.record(took.as_nanos() as u64).unwrap();
            self.busy += took;
        }
    }

    fn print(&self) {
        let us = |q| self.latency.value_at_quantile(q) as f64 / 1000.0;
        let rate = self.latency.len() as f64 / self.busy.as_secs_f64();
        let (p50, p99, p999) = (us(0.5), us(0.99), us(0.999));
        println!("{:<24} {rate:>10.0} {p50:>10.1} {p99:>10.1} {p999:>10.1}", self.name);
    }
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
    let (_dir, cluster) = common::three_nodes();
    let region = cluster.pd.regions().pop().unwrap();
    let (leader, status) = cluster.leader_of(region.id).unwrap();
    let ctx = Context::new(&status.region, &status.peer);
    let pd: Arc<dyn PdClient> = cluster.pd.clone();
    let client = RefCell::new(Client::new(pd, cluster.nodes.clone(), ClientConfig::default(), 7));
    let mut reader = leader.reader().unwrap();
    let read_ctx = ReadContext { header: header(&ctx), read_id: None };
    let put = |i: u64| [Modify::Put(key(i), b"value".to_vec())];
    let deadline = || Instant::now() + TIMEOUT;

    let mut writes = [
        Path::new("write: raw router", |i| raw_write(&leader, &ctx, i)),
        Path::new("write: Node::write", |i| leader.write(&ctx, &put(i), TIMEOUT).unwrap()),
        Path::new("write: Client::put", |i| {
            client.borrow_mut().put(&key(i), b"value", deadline()).unwrap()
        }),
    ];
    let mut reads = [
        Path::new("read: raw StoreReader", |i| {
            let (tx, rx) = crossbeam_channel::bounded(1);
            reader.async_snapshot(&read_ctx, move |res| tx.send(res).unwrap());
            let snap = rx.recv_timeout(TIMEOUT).unwrap().unwrap();
            assert!(snap.get(&key(i)).unwrap().is_some());
        }),
        Path::new("read: Node::get", |i| {
            assert!(leader.get(&ctx, &key(i), TIMEOUT).unwrap().is_some())
        }),
        Path::new("read: Client::get", |i| {
            assert!(client.borrow_mut().get(&key(i), deadline()).unwrap().is_some())
        }),
    ];
    let ops = ops();
    for paths in [&mut writes, &mut reads] {
        for p in paths.iter_mut() {
            (0..ops / 10).for_each(&mut p.op); // warm up
            p.latency.reset();
        }
        let per_round = ops / ROUNDS;
        for round in 0..ROUNDS {
            paths.iter_mut().for_each(|p| p.run(round * per_round, per_round));
        }
    }
    println!("\n{ops} operations per path in {ROUNDS} interleaved rounds, one at a time,");
    println!("3 nodes in one process, one region (ops/s: of the time spent in the path)");
    println!("{:<24} {:>10} {:>10} {:>10} {:>10}", "path", "ops/s", "p50 µs", "p99 µs", "p99.9 µs");
    writes.iter().chain(reads.iter()).for_each(Path::print);
    drop((writes, reads));
    cluster.stop();
}
