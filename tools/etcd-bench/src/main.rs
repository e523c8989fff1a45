//! etcd-bench: puts into an etcd cluster from concurrent clients for a while, the way
//! `region-sim --read-ratio 0` writes into regionstore (same key space, key format and value
//! size), and prints one JSON line: puts per second and latency percentiles.
//!
//! The clients talk to the leader only (found through each endpoint's status), so etcd is
//! measured at its best: no forwarding hop through a follower.

use std::time::{Duration, Instant};

use clap::Parser;
use etcd_client::Client;
use hdrhistogram::Histogram;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Serialize;

/// Options of one run.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Client endpoints of the cluster, comma separated (`127.0.0.1:2379,...`).
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    /// Concurrent clients, each with one put in flight.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// gRPC connections the clients share (at most one per client).
    #[arg(long, default_value_t = 8)]
    conns: usize,
    /// Seconds the puts run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 100_000)]
    key_space: u64,
    /// Bytes of each value.
    #[arg(long, default_value_t = 64)]
    value_size: usize,
    /// Seed of the key choices.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// What one run measured.
#[derive(Serialize, Debug)]
struct Outcome {
    clients: usize,
    duration_s: f64,
    puts: u64,
    errors: u64,
    puts_per_s: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    if args.clients == 0 || args.conns == 0 || args.key_space == 0 || args.duration <= 0.0 {
        return Err("--clients, --conns, --key-space and --duration must be positive".into());
    }
    let leader = find_leader(&args.endpoints).await?;
    let mut conns = Vec::new();
    for _ in 0..args.conns.min(args.clients) {
        conns.push(Client::connect([leader.as_str()], None).await?);
    }
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..args.clients {
        let client = conns[i % conns.len()].clone();
        let seed = args.seed.wrapping_add(i as u64);
        let (keys, size) = (args.key_space, args.value_size);
        tasks.push(tokio::spawn(put_until(client, deadline, seed, keys, size)));
    }
    let mut hist = Histogram::<u64>::new(3)?;
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t.await??;
        hist.add(h)?;
        errors += e;
    }
    let secs = started.elapsed().as_secs_f64();
    let outcome = Outcome {
        clients: args.clients,
        duration_s: secs,
        puts: hist.len(),
        errors,
        puts_per_s: hist.len() as f64 / secs,
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        p999_us: hist.value_at_quantile(0.999),
    };
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(())
}

/// The endpoint whose member leads the cluster; the first one if none says it does.
async fn find_leader(endpoints: &[String]) -> Result<String, Error> {
    for ep in endpoints {
        let Ok(mut c) = Client::connect([ep.as_str()], None).await else {
            continue;
        };
        if let Ok(status) = c.status().await {
            if status.header().is_some_and(|h| h.member_id() == status.leader()) {
                return Ok(ep.clone());
            }
        }
    }
    endpoints.first().cloned().ok_or_else(|| "no endpoint".into())
}

/// One client: puts random keys one at a time until `deadline`; the latencies of those that
/// succeeded, in microseconds, and the number that failed.
async fn put_until(
    mut client: Client,
    deadline: Instant,
    seed: u64,
    key_space: u64,
    value_size: usize,
) -> Result<(Histogram<u64>, u64), Error> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut hist = Histogram::<u64>::new(3)?;
    let mut errors = 0;
    let value = vec![b'v'; value_size];
    while Instant::now() < deadline {
        let key = format!("key{:08}", rng.gen_range(0..key_space));
        let start = Instant::now();
        match client.put(key, value.clone(), None).await {
            Ok(_) => hist.record(start.elapsed().as_micros() as u64)?,
            Err(_) => errors += 1,
        }
    }
    Ok((hist, errors))
}
