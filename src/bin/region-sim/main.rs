//! region-sim: a cluster of nodes (`server::Node`) in one process on RocksDB, a workload
//! driven through the product's client (`client::Client`), and a report (human summary,
//! `--report-json`, `--history`).
//!
//! With no arguments: 3 nodes under a temporary directory (removed at exit); the first
//! bootstraps the cluster and the placement driver replicates its one region onto the others;
//! the region splits as the data grows (small `--split-size`), leaders are balanced across the
//! stores, 8 clients read and write for 10 seconds. `--regions N` cuts the key space into N
//! regions before the run. See `--help`.

mod args;
mod chart;
mod history;
mod report;
mod workload;

use std::{
    process::ExitCode,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use local_reader::ReadStats;
use pd_client::{MemPdConfig, PdClient};
use raft::StateRole;
use server::{
    config::{FileConfig, LogConfig, LogLevel},
    local::LocalCluster,
    metrics::MetricsServer,
    NodeConfig,
};

use crate::{
    args::{Args, Scenario},
    history::History,
    report::{ReadPaths, Regions, Report, StoreReport},
    workload::{run_client, ClientStats, Run},
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
    let settings = settings(&args)?;
    let logger = server::config::build_logger(&settings.log)
        .map_err(|e| format!("cannot open the log: {e}"))?;
    let temp = match &args.data_dir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("region-sim-").tempdir()?),
    };
    let base = args.data_dir.as_deref().or(temp.as_ref().map(|t| t.path())).expect("a dir");
    let node_cfg = NodeConfig {
        store: settings.raftstore,
        rocksdb: settings.rocksdb,
        ..NodeConfig::new(base)
    };
    let replicas = args.stores.min(3) as usize;
    let pd_cfg = MemPdConfig {
        max_replicas: replicas,
        enable_merge: args.merge_size() > 0,
        max_merge_region_size: args.merge_size(),
        max_merge_region_keys: u64::MAX,
        split_merge_interval: Duration::from_millis(args.tick_ms * 100),
        merge_timeout: Duration::from_millis(args.tick_ms * 1000),
        ..Default::default()
    };
    let cluster = LocalCluster::start(base, args.stores as usize, node_cfg, pd_cfg, &logger)?;
    cluster.wait_ready(replicas, Duration::from_secs(60))?;
    cluster.split(&args.split_keys(), 10, Duration::from_secs(120))?;
    cluster.wait_ready(replicas, Duration::from_secs(60))?;
    let _metrics = serve_metrics(&args, &cluster)?;
    let initial = cluster.pd.regions().len();
    cluster.pd.set_balance_leaders(true);
    let reads_before = read_stats(&cluster);

    let start = Instant::now();
    let history = History::create(args.history.as_deref(), start)?;
    let deadline = start + Duration::from_secs_f64(args.duration);
    let done = AtomicU64::new(0);
    let shrinking = AtomicBool::new(false);
    let run = Run { deadline, history: &history, done: &done, shrinking: &shrinking };
    let mut region_counts = Vec::new();
    let per_client: Vec<ClientStats> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.clients)
            .map(|p| {
                let pd: std::sync::Arc<dyn PdClient> = cluster.pd.clone();
                let client_cfg = client::ClientConfig {
                    attempt_timeout: Duration::from_secs(3),
                    ..Default::default()
                };
                let seed = args.seed.wrapping_add(p as u64);
                let client = client::Client::new(pd, cluster.nodes.clone(), client_cfg, seed);
                let (args, run) = (&args, &run);
                s.spawn(move || run_client(p, client, args, run))
            })
            .collect();
        show_progress(&args, start, &run, &mut region_counts, &cluster, || {
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
    let regions = regions_report(&cluster, initial, &region_counts);
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
        let series = chart::Series {
            points: &report.time_series,
            bucket_s: args.bucket().as_secs_f64(),
            initial_regions: report.regions.initial as u64,
        };
        chart::draw(path, &title, &series)?;
    }
    cluster.stop();
    Ok(())
}

/// The stores' settings: short ticks and small regions from the options, then what the
/// `--config` file sets, then the log flags.
fn settings(args: &Args) -> Result<FileConfig, Error> {
    let tick = Duration::from_millis(args.tick_ms);
    let raftstore = raftstore::Config {
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
    let log = LogConfig { level: LogLevel::Warn, file: None };
    let base = FileConfig { log, raftstore, rocksdb: engine::rocks::RocksConfig::small() };
    let mut settings = match &args.config {
        Some(path) => FileConfig::load(path, &base)?,
        None => base.validated()?,
    };
    if let Some(level) = args.log_level {
        settings.log.level = level;
    }
    if let Some(file) = &args.log_file {
        settings.log.file = Some(file.clone());
    }
    Ok(settings)
}

/// The `/metrics` endpoint of `--metrics-addr`: every node's registry on one page.
fn serve_metrics(args: &Args, cluster: &LocalCluster) -> Result<Option<MetricsServer>, Error> {
    let Some(addr) = args.metrics_addr else { return Ok(None) };
    let registries: Vec<_> = cluster.nodes.all().iter().map(|n| n.registry()).collect();
    let server = MetricsServer::start(addr, move || server::metrics::encode(&registries))
        .map_err(|e| format!("--metrics-addr {addr}: {e}"))?;
    eprintln!("region-sim: metrics at http://{}/metrics", server.addr());
    Ok(Some(server))
}

/// What the placement driver saw of the regions over the run.
fn regions_report(cluster: &LocalCluster, initial: usize, region_counts: &[u64]) -> Regions {
    let mut durations = cluster.pd.merge_durations();
    durations.sort_unstable();
    let ms = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    let final_ = cluster.pd.regions().len();
    Regions {
        initial,
        final_,
        splits: cluster.pd.split_count(),
        peak: region_counts.iter().copied().max().unwrap_or(0).max(final_ as u64),
        merges: cluster.pd.merge_count(),
        merge_ms_p50: ms(durations.get(durations.len() / 2)),
        merge_ms_max: ms(durations.last()),
    }
}

/// A progress bar until every client is done (hidden when stderr is not a terminal); also
/// samples the placement driver's region count, the last sample of each time series bucket
/// kept, and turns a grow-shrink run to deletes once the regions peak or half the run is over.
fn show_progress(
    args: &Args,
    start: Instant,
    run: &Run<'_>,
    region_counts: &mut Vec<u64>,
    cluster: &LocalCluster,
    finished: impl Fn() -> bool,
) {
    let (deadline, done) = (run.deadline, run.done);
    let total = deadline.duration_since(start).as_millis() as u64;
    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(total) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
            .expect("valid template"),
    );
    let bucket = args.bucket();
    while !finished() {
        let elapsed = start.elapsed();
        let regions = cluster.pd.regions().len() as u64;
        let i = (elapsed.as_nanos() / bucket.as_nanos()) as usize;
        if region_counts.len() <= i {
            let last = region_counts.last().copied().unwrap_or(regions);
            region_counts.resize(i + 1, last);
        }
        region_counts[i] = regions;
        let half_way = elapsed.as_secs_f64() >= args.duration / 2.0;
        if args.scenario == Scenario::GrowShrink && (regions >= args.peak_regions || half_way) {
            run.shrinking.store(true, Ordering::Relaxed);
        }
        bar.set_position((elapsed.as_millis() as u64).min(total));
        let ops = done.load(Ordering::Relaxed);
        bar.set_message(format!(
            "{ops} ops, {:.0} ops/s, {regions} regions",
            ops as f64 / elapsed.as_secs_f64().max(1e-3)
        ));
        std::thread::sleep(bucket / 4);
    }
    bar.finish_and_clear();
}

/// The read-path counters of every node, summed.
fn read_stats(cluster: &LocalCluster) -> ReadStats {
    let mut sum = ReadStats::default();
    for node in cluster.nodes.all() {
        sum.merge(&node.read_stats());
    }
    sum
}

/// Peers and leaders per store, as the nodes themselves report.
fn store_reports(cluster: &LocalCluster) -> Vec<StoreReport> {
    let regions = cluster.pd.regions();
    cluster
        .nodes
        .all()
        .into_iter()
        .map(|node| {
            let statuses: Vec<_> =
                regions.iter().filter_map(|r| node.region_status(r.id)).collect();
            StoreReport {
                id: node.store_id(),
                peers: statuses.len() as u64,
                leaders: statuses.iter().filter(|s| s.role == StateRole::Leader).count() as u64,
            }
        })
        .collect()
}
