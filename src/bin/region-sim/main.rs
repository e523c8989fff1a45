//! region-sim: a cluster of stores in one process on RocksDB, a workload driven through a
//! real client, and a report (human summary, `--report-json`, `--history`).
//!
//! With no arguments: 3 stores under a temporary directory (removed at exit), one region
//! that splits as the data grows (small `--split-size`), leaders balanced across the stores
//! by the placement driver, 8 clients reading and writing for 10 seconds. `--regions N`
//! starts with the key space cut into N regions. See `--help`.

mod args;
mod chart;
mod history;
mod report;
mod workload;

use std::{
    process::ExitCode,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use local_reader::ReadStats;
use raft::StateRole;
use test_raftstore::Cluster;

use crate::{
    args::Args,
    history::History,
    report::{ReadPaths, Regions, Report, StoreReport},
    workload::{run_client, ClientStats},
};

type Error = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("region-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Error> {
    args.validate()?;
    let tick = Duration::from_millis(args.tick_ms);
    let cfg = raftstore::Config {
        sync_log: args.sync_log,
        raft_base_tick_interval: tick,
        raft_store_max_leader_lease: tick * 9,
        raft_log_gc_tick_interval: tick * 5,
        split_region_check_tick_interval: tick * 5,
        region_split_check_diff: args.split_size / 8,
        region_split_size: args.split_size,
        region_max_size: args.split_size * 3 / 2,
        ..raftstore::Config::for_tests()
    };
    let mut cluster = Cluster::with_config(args.stores, cfg);
    if let Some(dir) = &args.data_dir {
        cluster.set_data_dir(dir);
    }
    cluster.run_with_split_keys(&args.split_keys());
    for region in cluster.pd.regions() {
        cluster.wait_leader(region.id);
    }
    let initial = cluster.pd.regions().len();
    cluster.pd.set_balance_leaders(true);
    let reads_before = read_stats(&cluster);

    let start = Instant::now();
    let history = History::create(args.history.as_deref(), start)?;
    let deadline = start + Duration::from_secs_f64(args.duration);
    let done = AtomicU64::new(0);
    let mut region_counts = Vec::new();
    let per_client: Vec<ClientStats> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.clients)
            .map(|p| {
                let client = cluster.client();
                let (args, history, done) = (&args, &history, &done);
                s.spawn(move || run_client(p, client, args, deadline, history, done))
            })
            .collect();
        show_progress(&args, start, deadline, &done, &mut region_counts, &cluster, || {
            handles.iter().all(|h| h.is_finished())
        });
        handles.into_iter().map(|h| h.join().expect("client thread panicked")).collect()
    });
    let duration_s = start.elapsed().as_secs_f64();
    history.flush()?;

    let mut stats = per_client.into_iter().reduce(|mut a, b| {
        a.merge(&b);
        a
    });
    let stats = stats.take().expect("at least one client");
    let regions =
        Regions { initial, final_: cluster.pd.regions().len(), splits: cluster.pd.split_count() };
    let read_paths = ReadPaths::new(&read_stats(&cluster).since(&reads_before));
    let stores = store_reports(&cluster);
    let report =
        Report::new(&args, duration_s, &stats, read_paths, regions, &region_counts, stores);
    report.print_summary();
    if let Some(path) = &args.report_json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    if let Some(path) = &args.chart {
        let title = format!(
            "region-sim: {} stores, {} clients, {} → {} regions",
            args.stores, args.clients, report.regions.initial, report.regions.final_
        );
        std::fs::write(path, chart::svg(&title, &report.time_series))?;
    }
    cluster.shutdown();
    Ok(())
}

/// A progress bar until every client is done (hidden when stderr is not a terminal); also
/// samples the placement driver's region count, the last sample of each second kept.
fn show_progress(
    args: &Args,
    start: Instant,
    deadline: Instant,
    done: &AtomicU64,
    region_counts: &mut Vec<u64>,
    cluster: &Cluster,
    finished: impl Fn() -> bool,
) {
    let total = deadline.duration_since(start).as_millis() as u64;
    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(total) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
            .expect("valid template"),
    );
    while !finished() {
        let elapsed = start.elapsed();
        let regions = cluster.pd.regions().len() as u64;
        let second = elapsed.as_secs() as usize;
        region_counts.resize(second + 1, regions);
        region_counts[second] = regions;
        bar.set_position((elapsed.as_millis() as u64).min(total));
        let ops = done.load(Ordering::Relaxed);
        bar.set_message(format!(
            "{ops} ops, {:.0} ops/s, {regions} regions",
            ops as f64 / elapsed.as_secs_f64().max(1e-3)
        ));
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}

/// The read-path counters of every store, summed.
fn read_stats(cluster: &Cluster) -> ReadStats {
    let mut sum = ReadStats::default();
    for s in cluster.running_stores() {
        sum.merge(&cluster.read_stats(s));
    }
    sum
}

/// Peers and leaders per store, as the stores themselves report.
fn store_reports(cluster: &Cluster) -> Vec<StoreReport> {
    let regions = cluster.pd.regions();
    cluster
        .running_stores()
        .into_iter()
        .map(|id| {
            let statuses: Vec<_> =
                regions.iter().filter_map(|r| cluster.peer_status(id, r.id)).collect();
            StoreReport {
                id,
                peers: statuses.len() as u64,
                leaders: statuses.iter().filter(|s| s.role == StateRole::Leader).count() as u64,
            }
        })
        .collect()
}
