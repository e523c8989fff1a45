//! Engine micro-benchmarks on RocksDB: put (one write batch per put, WAL on, no sync), get of
//! an existing key, and snapshot + get, on a prefilled data set of 100,000 keys.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand::{rngs::StdRng, Rng, SeedableRng};
use regionstore::engine::{
    keys,
    rocks::{RocksConfig, RocksEngine},
    KvEngine, Mutable, Peekable, WriteOptions,
};

const KEYS: u64 = 100_000;
const VALUE: [u8; 128] = [7; 128];

fn key(i: u64) -> Vec<u8> {
    keys::data_key(format!("user{i:012}").as_bytes())
}

fn prefilled() -> (tempfile::TempDir, RocksEngine) {
    let dir = tempfile::tempdir().unwrap();
    let engine = RocksEngine::open(dir.path(), &RocksConfig::default()).unwrap();
    let mut wb = engine.write_batch();
    for i in 0..KEYS {
        wb.put(&key(i), &VALUE).unwrap();
        if i % 1000 == 999 {
            engine.write(&mut wb, WriteOptions::NO_SYNC).unwrap();
        }
    }
    engine.write(&mut wb, WriteOptions::NO_SYNC).unwrap();
    engine.flush(true).unwrap();
    (dir, engine)
}

fn bench_engine(c: &mut Criterion) {
    let (_dir, engine) = prefilled();
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(1));
    let mut rng = StdRng::seed_from_u64(42);

    group.bench_function("put", |b| {
        let mut wb = engine.write_batch();
        b.iter_batched(
            || key(rng.gen_range(0..KEYS)),
            |k| {
                wb.put(&k, &VALUE).unwrap();
                engine.write(&mut wb, WriteOptions::NO_SYNC).unwrap();
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("get", |b| {
        b.iter_batched(
            || key(rng.gen_range(0..KEYS)),
            |k| engine.get_value(&k).unwrap().expect("prefilled"),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("snapshot_get", |b| {
        b.iter_batched(
            || key(rng.gen_range(0..KEYS)),
            |k| engine.snapshot().get_value(&k).unwrap().expect("prefilled"),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_engine);
criterion_main!(benches);
