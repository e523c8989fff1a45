//! Read paths on one data set (1,000 keys on a 3-store cluster), each a criterion benchmark,
//! then a summary with latency percentiles, ops/s and the ratios we aim at:
//! - raw engine get (the floor), and a raw engine snapshot then get (what a lease read with
//!   its own snapshot cannot avoid);
//! - lease read through `StoreReader` / `LocalReader`: one snapshot per read, and 16 reads
//!   per `ThreadReadId` sharing one snapshot (aim: at most 1.25x the raw get);
//! - ReadIndex read through the leader (lease reads switched off);
//! - follower read;
//! - ReadIndex and lease read with 1 ms of simulated network delay each way (aim: the lease
//!   read at least 10x cheaper).
//!
//! On the product crates only: a `LocalCluster` of `Node`s, each node's `StoreReader`, and a
//! delay installed as the `LocalNetwork`'s interceptor.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crossbeam_channel::Sender;
use hdrhistogram::Histogram;
use regionstore::{
    engine::{keys, Peekable},
    local_reader::ThreadReadId,
    proto::raft_serverpb::RaftMessage,
    raftstore::{transport::TransportError, ReadContext, StoreReader},
    server::transport::{Intercept, LocalNetwork},
    Context, Modify,
};

mod common;

type TestReader = StoreReader<
    regionstore::engine::rocks::RocksEngine,
    regionstore::engine::rocks::RocksRaftEngine,
>;

/// Every message delivered `delay` after it was sent (in order: the delay is the same for
/// all), by one thread.
struct Delay(Sender<(Instant, RaftMessage)>);

impl Delay {
    fn install(net: &Arc<LocalNetwork>, delay: Duration) {
        let (tx, rx) = crossbeam_channel::unbounded::<(Instant, RaftMessage)>();
        let target = Arc::downgrade(net);
        std::thread::spawn(move || {
            for (sent, msg) in rx {
                std::thread::sleep((sent + delay).saturating_duration_since(Instant::now()));
                let Some(net) = target.upgrade() else { return };
                let _ = net.deliver_now(msg);
            }
        });
        net.set_interceptor(Some(Arc::new(Delay(tx))));
    }
}

impl Intercept for Delay {
    fn send(&self, _: &Arc<LocalNetwork>, _: u64, msg: RaftMessage) -> Result<(), TransportError> {
        self.0
            .send((Instant::now(), msg))
            .map_err(|e| TransportError::Unreachable(e.0 .1.get_to_peer().store_id))
    }
}

const KEYS: u64 = 1000;
const TIMEOUT: Duration = Duration::from_secs(5);

fn key(i: u64) -> Vec<u8> {
    format!("key{i:06}").into_bytes()
}

struct Keys(u64);

impl Keys {
    fn next(&mut self) -> Vec<u8> {
        self.0 = (self.0 + 1) % KEYS;
        key(self.0)
    }
}

fn get(reader: &mut TestReader, ctx: &ReadContext, key: &[u8]) -> Vec<u8> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    reader.async_snapshot(ctx, move |res| {
        let _ = tx.send(res);
    });
    let snap = rx.recv_timeout(TIMEOUT).unwrap().unwrap();
    snap.get(key).unwrap().unwrap()
}

/// 16 reads sharing one snapshot, as one request stream's batch.
fn get16(reader: &mut TestReader, ctx: &ReadContext, keys: &mut Keys) {
    let ctx = ctx.clone().with_read_id(ThreadReadId::new());
    for _ in 0..16 {
        get(reader, &ctx, &keys.next());
    }
    reader.release_snapshot();
}

/// Latency of `ops` calls of `f` (each doing `per_call` reads): (ops/s, p50 µs, p99 µs).
fn measure(ops: u64, per_call: u64, mut f: impl FnMut()) -> (f64, f64, f64) {
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let start = Instant::now();
    for _ in 0..ops {
        let t = Instant::now();
        f();
        hist.record(t.elapsed().as_nanos() as u64 / per_call).unwrap();
    }
    let rate = (ops * per_call) as f64 / start.elapsed().as_secs_f64();
    let us = |q| hist.value_at_quantile(q) as f64 / 1000.0;
    (rate, us(0.5), us(0.99))
}

fn bench_reads(c: &mut Criterion) {
    let (_dir, cluster) = common::three_nodes();
    let region_id = cluster.pd.regions()[0].id;
    let (node, status) = cluster.leader_of(region_id).unwrap();
    let (region, leader) = (status.region, status.peer);
    let write_ctx = Context::new(&region, &leader);
    for i in 0..KEYS {
        let put = [Modify::Put(key(i), b"value-of-some-length".to_vec())];
        node.write(&write_ctx, &put, TIMEOUT).unwrap();
    }
    let follower = region.get_peers().iter().find(|p| p.id != leader.id).unwrap().clone();
    let follower_node = cluster.nodes.get(follower.store_id).unwrap();
    let follower_ctx = ReadContext::new(&region, &follower).replica_read();
    let mut follower_reader = follower_node.reader().unwrap();
    get(&mut follower_reader, &follower_ctx, &key(KEYS - 1)); // caught up
    let kv = node.engines().unwrap().kv;
    let mut reader = node.reader().unwrap();
    let ctx = ReadContext::new(&region, &leader);
    let set_lease_reads = |on| cluster.nodes.all().iter().for_each(|n| n.set_lease_reads(on));
    let mut keys = Keys(0);

    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("raw_engine_get", |b| {
        b.iter(|| kv.get_value(&keys::data_key(&keys.next())).unwrap().unwrap())
    });
    group.bench_function("lease_read", |b| b.iter(|| get(&mut reader, &ctx, &keys.next())));
    group.throughput(Throughput::Elements(16));
    group.bench_function("lease_read_16_per_read_id", |b| {
        b.iter(|| get16(&mut reader, &ctx, &mut keys))
    });
    group.throughput(Throughput::Elements(1));
    set_lease_reads(false);
    group.bench_function("read_index_leader", |b| b.iter(|| get(&mut reader, &ctx, &keys.next())));
    set_lease_reads(true);
    group.bench_function("follower_read", |b| {
        b.iter(|| get(&mut follower_reader, &follower_ctx, &keys.next()))
    });
    group.finish();

    // The summary: percentiles and ratios, all on this data set.
    let mut rows = Vec::new();
    rows.push((
        "raw_engine_get",
        measure(200_000, 1, || {
            kv.get_value(&keys::data_key(&keys.next())).unwrap().unwrap();
        }),
    ));
    rows.push((
        "raw_snapshot_then_get",
        measure(200_000, 1, || {
            let snap = regionstore::engine::KvEngine::snapshot(&kv);
            snap.get_value(&keys::data_key(&keys.next())).unwrap().unwrap();
        }),
    ));
    rows.push((
        "lease_read",
        measure(200_000, 1, || {
            get(&mut reader, &ctx, &keys.next());
        }),
    ));
    rows.push((
        "lease_read_16_per_read_id",
        measure(20_000, 16, || get16(&mut reader, &ctx, &mut keys)),
    ));
    set_lease_reads(false);
    rows.push((
        "read_index_leader",
        measure(5_000, 1, || {
            get(&mut reader, &ctx, &keys.next());
        }),
    ));
    set_lease_reads(true);
    rows.push((
        "follower_read",
        measure(5_000, 1, || {
            get(&mut follower_reader, &follower_ctx, &keys.next());
        }),
    ));
    Delay::install(&cluster.net, Duration::from_millis(1));
    rows.push((
        "lease_read_1ms_network",
        measure(50_000, 1, || {
            get(&mut reader, &ctx, &keys.next());
        }),
    ));
    set_lease_reads(false);
    rows.push((
        "read_index_leader_1ms_network",
        measure(1_000, 1, || {
            get(&mut reader, &ctx, &keys.next());
        }),
    ));
    set_lease_reads(true);
    cluster.net.set_interceptor(None);

    print_summary(&rows);
    println!("read-path counters of the leader's store: {:?}", node.read_stats());
    cluster.stop();
}

/// The table, and the ratios we aim at.
fn print_summary(rows: &[(&str, (f64, f64, f64))]) {
    println!("\n{:<32} {:>12} {:>10} {:>10}", "path", "ops/s", "p50 µs", "p99 µs");
    for (name, (rate, p50, p99)) in rows {
        println!("{name:<32} {rate:>12.0} {p50:>10.2} {p99:>10.2}");
    }
    let rate = |name: &str| rows.iter().find(|(n, _)| *n == name).unwrap().1 .0;
    let p50 = |name: &str| rows.iter().find(|(n, _)| *n == name).unwrap().1 .1;
    println!(
        "lease read / raw get (mean cost): {:.2}x (aim ≤ 1.25x); with 16 per read id: {:.2}x",
        rate("raw_engine_get") / rate("lease_read"),
        rate("raw_engine_get") / rate("lease_read_16_per_read_id"),
    );
    println!(
        "lease read / raw snapshot then get: {:.2}x (the local reader's own cost)",
        rate("raw_snapshot_then_get") / rate("lease_read"),
    );
    println!(
        "ReadIndex / lease read at 1 ms network (p50 latency): {:.0}x (aim ≥ 10x)",
        p50("read_index_leader_1ms_network") / p50("lease_read_1ms_network"),
    );
}

criterion_group!(benches, bench_reads);
criterion_main!(benches);
