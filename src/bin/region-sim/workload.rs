//! The clients: each a thread with its own seeded generator, writing until the deadline.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use rand::{rngs::StdRng, Rng, SeedableRng};
use test_raftstore::{put_request, Client, Outcome};

use crate::{
    args::Args,
    history::{Event, History},
};

/// How long one operation may take before the client gives up on it (unknown outcome).
const OP_DEADLINE: Duration = Duration::from_secs(5);

/// What one client saw.
pub struct ClientStats {
    /// Writes acknowledged.
    pub writes: u64,
    /// Failed or unknown operations by error kind.
    pub errors: BTreeMap<&'static str, u64>,
    /// Latency of acknowledged writes, in microseconds.
    pub write_latency: Histogram<u64>,
}

impl ClientStats {
    fn new() -> Self {
        ClientStats {
            writes: 0,
            errors: BTreeMap::new(),
            write_latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        }
    }

    /// Adds another client's numbers.
    pub fn merge(&mut self, other: &ClientStats) {
        self.writes += other.writes;
        for (k, v) in &other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.write_latency.add(&other.write_latency);
    }
}

/// Runs client `process` until `deadline`.
pub fn run_client(
    process: usize,
    mut client: Client,
    args: &Args,
    deadline: Instant,
    history: &History,
    done: &AtomicU64,
) -> ClientStats {
    let mut rng = StdRng::seed_from_u64(args.seed.wrapping_add(process as u64));
    let mut stats = ClientStats::new();
    let mut seq = 0u64;
    while Instant::now() < deadline {
        let key = crate::args::key(rng.gen_range(0..args.key_space));
        let mut value = format!("{process}:{seq}:");
        seq += 1;
        value.extend(std::iter::repeat_n('.', args.value_size.saturating_sub(value.len())));
        let event = |kind| Event {
            process,
            kind,
            f: "write",
            key: &key,
            value: Some(&value),
            time_ns: history.now_ns(),
        };
        history.record(&event("invoke"));
        let started = Instant::now();
        let outcome = client.write(
            key.as_bytes(),
            vec![put_request(key.as_bytes(), value.as_bytes())],
            started + OP_DEADLINE,
        );
        match outcome {
            Outcome::Ok(_) => {
                let us = started.elapsed().as_micros() as u64;
                let _ = stats.write_latency.record(us.max(1));
                stats.writes += 1;
                history.record(&event("ok"));
            }
            Outcome::Failed(e) => {
                *stats.errors.entry(e.kind()).or_default() += 1;
                history.record(&event("fail"));
            }
            Outcome::Unknown(e) => {
                *stats.errors.entry(e.kind()).or_default() += 1;
                history.record(&event("info"));
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    stats
}
