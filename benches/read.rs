//! Read paths on one data set: a raw engine get, a ReadIndex read through the leader of a
//! 3-store cluster (with and without 1 ms of simulated network delay each way), and a
//! follower read. Lease reads join when `LocalReader` exists; their target is at most 1.25x
//! the raw get, and at least 10x cheaper than ReadIndex with 1 ms of network delay.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use regionstore::engine::{keys, Peekable};
use test_raftstore::{follower_of, get_request, new_request, Cluster, FIRST_REGION};

const KEYS: u64 = 1000;

fn key(i: u64) -> Vec<u8> {
    format!("key{i:06}").into_bytes()
}

fn bench_reads(c: &mut Criterion) {
    let mut cluster = Cluster::new(3);
    cluster.run();
    for i in 0..KEYS {
        cluster.must_put(&key(i), b"value-of-some-length");
    }
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let follower = follower_of(&region, &leader);
    cluster.must_get_equal(follower.store_id, &key(KEYS - 1), b"value-of-some-length");

    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    let mut i = 0u64;
    let mut next = move || {
        i = (i + 1) % KEYS;
        key(i)
    };

    let kv = cluster.kv(leader.store_id).clone();
    group.bench_function("raw_engine_get", |b| {
        b.iter(|| kv.get_value(&keys::data_key(&next())).unwrap().unwrap())
    });
    let mut client = cluster.client();
    group.bench_function("read_index_leader", |b| {
        b.iter(|| client.read(&next(), Instant::now() + Duration::from_secs(5)).unwrap().unwrap())
    });
    group.bench_function("follower_read", |b| {
        b.iter(|| {
            let mut req = new_request(&region, &follower, vec![get_request(&next())]);
            req.mut_header().replica_read = true;
            cluster.call_command(follower.store_id, req, Duration::from_secs(5)).unwrap()
        })
    });
    cluster.delay_network(Duration::from_millis(1));
    group.bench_function("read_index_leader_1ms_network", |b| {
        b.iter(|| client.read(&next(), Instant::now() + Duration::from_secs(5)).unwrap().unwrap())
    });
    group.finish();
    cluster.clear_filters();
}

criterion_group!(benches, bench_reads);
criterion_main!(benches);
