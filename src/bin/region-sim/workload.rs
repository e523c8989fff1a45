//! The clients: each a thread with its own seeded generator, writing until the deadline.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use client::Client;
use hdrhistogram::Histogram;
use rand::{rngs::StdRng, Rng, SeedableRng};
use regionstore::linearizability::Op;

use crate::{
    args::Args,
    history::{Event, History},
    nemesis::Outcome,
};

/// How long one operation may take before the client gives up on it (unknown outcome).
const OP_DEADLINE: Duration = Duration::from_secs(5);

/// What one client saw.
pub struct ClientStats {
    /// Writes acknowledged (deletes included).
    pub writes: u64,
    /// Deletes acknowledged.
    pub deletes: u64,
    /// Reads answered.
    pub reads: u64,
    /// Latency of answered reads, in microseconds.
    pub read_latency: Histogram<u64>,
    /// Failed or unknown operations by error kind.
    pub errors: BTreeMap<&'static str, u64>,
    /// Latency of acknowledged writes, in microseconds.
    pub write_latency: Histogram<u64>,
    /// The run cut into buckets of `bucket` (from its start): what was answered in each.
    pub buckets: Vec<Bucket>,
    /// The width of a bucket.
    pub bucket: Duration,
    /// The client's retries, back-offs, and read attempts refused because their region
    /// moved.
    pub client: client::ClientStats,
    /// Every completed read and every write that may have taken effect, for the check.
    pub ops: Vec<Op>,
    /// How each operation ended, and when (nanoseconds into the run): the nemesis counts
    /// them per fault.
    pub outcomes: Vec<(u64, Outcome)>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// The operations answered in one bucket of the run.
#[derive(Clone, Debug)]
pub struct Bucket {
    pub reads: u64,
    pub writes: u64,
    /// Reads that failed.
    pub read_failures: u64,
    /// Latency of the reads and of the writes answered in it, in microseconds: two
    /// significant digits and growing only as far as the values do, as a run has many
    /// buckets per client.
    pub read_latency: Histogram<u32>,
    pub write_latency: Histogram<u32>,
}

impl Default for Bucket {
    fn default() -> Self {
        let small = || Histogram::new(2).expect("valid precision");
        Bucket {
            reads: 0,
            writes: 0,
            read_failures: 0,
            read_latency: small(),
            write_latency: small(),
        }
    }
}

impl ClientStats {
    /// Empty numbers, operations counted in buckets of `bucket`.
    pub fn new(bucket: Duration) -> Self {
        ClientStats {
            writes: 0,
            deletes: 0,
            reads: 0,
            read_latency: histogram(),
            errors: BTreeMap::new(),
            write_latency: histogram(),
            buckets: Vec::new(),
            bucket,
            client: Default::default(),
            ops: Vec::new(),
            outcomes: Vec::new(),
        }
    }

    /// The bucket of time `at` into the run.
    fn bucket_at(&mut self, at: Duration) -> &mut Bucket {
        let i = (at.as_nanos() / self.bucket.as_nanos().max(1)) as usize;
        if self.buckets.len() <= i {
            self.buckets.resize_with(i + 1, Bucket::default);
        }
        &mut self.buckets[i]
    }

    /// Records an answered read (or write) that took `us` and ended `at` into the run.
    fn record_bucket(&mut self, at: Duration, us: u64, read: bool) {
        let b = self.bucket_at(at);
        let (count, latency) = match read {
            true => (&mut b.reads, &mut b.read_latency),
            false => (&mut b.writes, &mut b.write_latency),
        };
        *count += 1;
        let _ = latency.record(us.max(1));
    }

    /// Adds another client's numbers.
    pub fn merge(&mut self, other: &ClientStats) {
        self.writes += other.writes;
        self.deletes += other.deletes;
        self.reads += other.reads;
        let _ = self.read_latency.add(&other.read_latency);
        for (k, v) in &other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.write_latency.add(&other.write_latency);
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize_with(other.buckets.len(), Bucket::default);
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            (mine.reads, mine.writes) = (mine.reads + theirs.reads, mine.writes + theirs.writes);
            mine.read_failures += theirs.read_failures;
            let _ = mine.read_latency.add(&theirs.read_latency);
            let _ = mine.write_latency.add(&theirs.write_latency);
        }
        self.client.merge(&other.client);
        self.ops.extend(other.ops.iter().cloned());
        self.outcomes.extend_from_slice(&other.outcomes);
    }

    /// An operation ended now (by the history's clock).
    fn ended(&mut self, history: &History, outcome: Outcome) {
        self.outcomes.push((history.now_ns(), outcome));
    }
}

/// One read, recorded in the history: reads change nothing, so a failed read is `fail`.
fn read_once(
    process: usize,
    client: &mut Client,
    key: &str,
    history: &History,
    stats: &mut ClientStats,
) {
    let invoke_ns = history.now_ns();
    history.record(&Event {
        process,
        kind: "invoke",
        f: "read",
        key,
        value: None,
        time_ns: invoke_ns,
    });
    let started = Instant::now();
    match client.get(key.as_bytes(), started + OP_DEADLINE) {
        Ok(value) => {
            let us = started.elapsed().as_micros() as u64;
            let _ = stats.read_latency.record(us.max(1));
            stats.record_bucket(history.elapsed(), us, true);
            stats.reads += 1;
            let value = value.map(|v| String::from_utf8_lossy(&v).into_owned());
            let time_ns = history.now_ns();
            history.record(&Event {
                process,
                kind: "ok",
                f: "read",
                key,
                value: value.as_deref(),
                time_ns,
            });
            let complete_ns = Some(time_ns);
            stats.ops.push(Op {
                key: key.to_string(),
                write: false,
                value,
                invoke_ns,
                complete_ns,
            });
            stats.ended(history, Outcome::Ok);
        }
        Err(e) => {
            *stats.errors.entry(e.kind()).or_default() += 1;
            stats.ended(history, Outcome::Fail);
            stats.bucket_at(history.elapsed()).read_failures += 1;
            history.record(&Event {
                process,
                kind: "fail",
                f: "read",
                key,
                value: None,
                time_ns: history.now_ns(),
            });
        }
    }
}

/// The shared state of a run's clients.
pub struct Run<'a> {
    /// When to stop.
    pub deadline: Instant,
    /// The history every operation goes to.
    pub history: &'a History,
    /// Operations done, for the progress bar.
    pub done: &'a AtomicU64,
    /// Set once a grow-shrink run turns to deletes.
    pub shrinking: &'a AtomicBool,
}

/// Runs client `process` until the run's deadline.
pub fn run_client(process: usize, mut client: Client, args: &Args, run: &Run<'_>) -> ClientStats {
    let history = run.history;
    let mut rng = StdRng::seed_from_u64(args.seed.wrapping_add(process as u64));
    let mut stats = ClientStats::new(args.bucket());
    let mut seq = 0u64;
    while Instant::now() < run.deadline {
        let key = crate::args::key(rng.gen_range(0..args.key_space));
        if rng.gen_bool(args.read_ratio) {
            read_once(process, &mut client, &key, history, &mut stats);
            run.done.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let delete_ratio = match run.shrinking.load(Ordering::Relaxed) {
            true => crate::args::SHRINK_DELETE_RATIO,
            false => args.delete_ratio,
        };
        let delete = rng.gen_bool(delete_ratio);
        let mut value = format!("{process}:{seq}:");
        seq += 1;
        value.extend(std::iter::repeat_n('.', args.value_size.saturating_sub(value.len())));
        let written = (!delete).then_some(value.as_str());
        let event = |kind| Event {
            process,
            kind,
            f: if delete { "delete" } else { "write" },
            key: &key,
            value: written,
            time_ns: history.now_ns(),
        };
        let invoke_ns = history.now_ns();
        history.record(&event("invoke"));
        let started = Instant::now();
        let outcome = match delete {
            true => client.delete(key.as_bytes(), started + OP_DEADLINE),
            false => client.put(key.as_bytes(), value.as_bytes(), started + OP_DEADLINE),
        };
        let op = |complete_ns| Op {
            key: key.clone(),
            write: true,
            value: written.map(str::to_string),
            invoke_ns,
            complete_ns,
        };
        match outcome {
            Ok(()) => {
                let us = started.elapsed().as_micros() as u64;
                let _ = stats.write_latency.record(us.max(1));
                stats.record_bucket(history.elapsed(), us, false);
                stats.writes += 1;
                stats.deletes += u64::from(delete);
                stats.ops.push(op(Some(history.now_ns())));
                history.record(&event("ok"));
                stats.ended(history, Outcome::Ok);
            }
            Err(e) if e.not_applied() => {
                *stats.errors.entry(e.kind()).or_default() += 1;
                history.record(&event("fail"));
                stats.ended(history, Outcome::Fail);
            }
            Err(e) => {
                *stats.errors.entry(e.kind()).or_default() += 1;
                stats.ops.push(op(None));
                history.record(&event("info"));
                stats.ended(history, Outcome::Unknown);
            }
        }
        run.done.fetch_add(1, Ordering::Relaxed);
    }
    stats.client = client.stats().clone();
    stats
}
