//! region-sim: a cluster of nodes (`server::Node`) in one process on RocksDB, a workload
//! driven through the product's client (`client::Client`), and a report (human summary,
//! `--report-json`, `--history`).
//!
//! With no arguments: 3 nodes under a temporary directory (removed at exit); the first
//! bootstraps the cluster and the placement driver replicates its one region onto the others;
//! the region splits as the data grows (small `--split-size`), leaders are balanced across the
//! stores, 8 clients read and write for 10 seconds. `--regions N` cuts the key space into N
//! regions before the run. `--nemesis KINDS` injects faults on a schedule drawn from `--seed`
//! (see `nemesis`); the run fails (exit code 1) if the history is not linearizable or the
//! cluster does not serve every region again after the final heal. See `--help`.

mod args;
mod chart;
mod external;
mod history;
mod idle;
mod nemesis;
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
    faults::FaultNetwork,
    grpc::GrpcConfig,
    local::LocalCluster,
    metrics::MetricsServer,
    NodeConfig,
};

use crate::{
    args::{Args, Scenario, TransportKind},
    history::History,
    nemesis::{run_nemesis, FaultKind, NemesisEnv, NemesisReport},
    report::{GrpcBatching, ReadPaths, Regions, Report, StoreReport},
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
    if args.pd.is_some() {
        return external::run(&args);
    }
    let settings = settings(&args)?;
    let logger = server::config::build_logger(&settings.log)
        .map_err(|e| format!("cannot open the log: {e}"))?;
    let temp = match &args.data_dir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("region-sim-").tempdir()?),
    };
    let base = args.data_dir.as_deref().or(temp.as_ref().map(|t| t.path())).expect("a dir");
    let (election_timeout, drift_bound) =
        (settings.raftstore.election_timeout(), settings.raftstore.clock_drift_bound());
    let node_cfg = NodeConfig {
        store: settings.raftstore,
        rocksdb: settings.rocksdb,
        ..NodeConfig::new(base)
    };
    let replicas = args.stores.min(3) as usize;
    let kinds = args.nemesis_kinds()?;
    let skewable = kinds.contains(&FaultKind::ClockSkew);
    let cluster = match args.transport {
        TransportKind::Local => LocalCluster::start_with_clocks(
            base,
            args.stores as usize,
            node_cfg,
            pd_config(&args, replicas),
            skewable,
            &logger,
        )?,
        TransportKind::Grpc => LocalCluster::start_over_grpc(
            base,
            args.stores as usize,
            node_cfg,
            pd_config(&args, replicas),
            GrpcConfig::default(),
            &logger,
        )?,
    };
    cluster.wait_ready(replicas, Duration::from_secs(60))?;
    // Long enough for tens of thousands of regions (a split of 10 a round).
    let split_timeout = Duration::from_secs(120) + Duration::from_millis(args.regions * 20);
    cluster.split(&args.split_keys(), 10, split_timeout)?;
    cluster.wait_ready(replicas, Duration::from_secs(60) + split_timeout / 2)?;
    if args.scenario == Scenario::Idle {
        let report = idle::run_idle(&args, &cluster)?;
        report.print();
        if let Some(path) = &args.report_json {
            std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        }
        cluster.stop();
        return Ok(());
    }
    let _metrics = serve_metrics(&args, &cluster)?;
    let initial = cluster.pd.regions().len();
    cluster.pd.set_balance_leaders(true);
    let reads_before = read_stats(&cluster);
    let faults = Faults { kinds, election_timeout, drift_bound };
    let (stats, region_counts, nemesis, duration_s) = drive(&args, &cluster, faults)?;

    let regions = regions_report(&cluster, initial, &region_counts);
    let read_paths = ReadPaths::new(&read_stats(&cluster).since(&reads_before));
    let stores = store_reports(&cluster);
    let mut report =
        Report::new(&args, duration_s, &stats, read_paths, regions, &region_counts, stores);
    report.nemesis = nemesis;
    report.grpc = cluster.grpc_batching().map(|(messages, batches)| GrpcBatching {
        messages,
        batches,
        per_batch: messages as f64 / batches.max(1) as f64,
    });
    report.print_summary();
    write_outputs(&args, &report)?;
    cluster.stop();
    if report.linearizability.violations > 0 {
        return Err(format!("the history is not linearizable (seed {})", args.seed).into());
    }
    if report.nemesis.as_ref().is_some_and(|n| !n.recovered()) {
        return Err(format!(
            "the cluster did not recover after the final heal (seed {})",
            args.seed
        )
        .into());
    }
    Ok(())
}

/// The placement driver of a run: replicas, merges of small regions.
fn pd_config(args: &Args, replicas: usize) -> MemPdConfig {
    MemPdConfig {
        max_replicas: replicas,
        enable_merge: args.merge_size() > 0,
        max_merge_region_size: args.merge_size(),
        max_merge_region_keys: u64::MAX,
        split_merge_interval: Duration::from_millis(args.tick_ms * 100),
        merge_timeout: Duration::from_millis(args.tick_ms * 1000),
        ..Default::default()
    }
}

/// What the nemesis of a run injects, and the timing its faults are sized from.
struct Faults {
    kinds: Vec<FaultKind>,
    election_timeout: Duration,
    /// `raftstore::Config::clock_drift_bound`.
    drift_bound: f64,
}

/// The run itself: the clients until the deadline, the progress bar, and the nemesis if
/// any. Returns the clients' merged numbers, the region count per bucket, the nemesis
/// report and the run's length in seconds.
fn drive(
    args: &Args,
    cluster: &LocalCluster,
    faults: Faults,
) -> Result<(ClientStats, Vec<u64>, Option<NemesisReport>, f64), Error> {
    let net = (!faults.kinds.is_empty()).then(|| FaultNetwork::over(cluster.net.clone()));
    let make_client = |p: usize| {
        let pd: std::sync::Arc<dyn PdClient> = cluster.pd.clone();
        let client_cfg =
            client::ClientConfig { attempt_timeout: Duration::from_secs(3), ..Default::default() };
        let seed = args.seed.wrapping_add(p as u64);
        client::Client::new(pd, cluster.nodes.clone(), client_cfg, seed)
    };
    let region_count = || cluster.pd.regions().len() as u64;
    let nemesis = net.as_deref().map(|net| {
        let faults = &faults;
        move |start| run_faults(args, cluster, net, faults, start)
    });
    let (stats, region_counts, nemesis, duration_s) =
        drive_with(args, make_client, &region_count, nemesis)?;
    if net.is_some() {
        cluster.net.set_interceptor(None); // the filters go with the nemesis
    }
    let nemesis = nemesis.map(|mut n| {
        n.tally(&stats.outcomes);
        n
    });
    Ok((stats, region_counts, nemesis, duration_s))
}

/// The clients of a run (made by `make_client`, one per `--clients`) until the deadline, the
/// progress bar (sampling `region_count`), and `nemesis`, if any, on a thread of its own.
/// Returns the clients' merged numbers, the region count per bucket, what the nemesis
/// returned and the run's length in seconds.
fn drive_with<R: Send>(
    args: &Args,
    make_client: impl Fn(usize) -> client::Client + Sync,
    region_count: &(dyn Fn() -> u64 + Sync),
    nemesis: Option<impl FnOnce(Instant) -> R + Send>,
) -> Result<(ClientStats, Vec<u64>, Option<R>, f64), Error> {
    let start = Instant::now();
    let history = History::create(args.history.as_deref(), start)?;
    let deadline = start + Duration::from_secs_f64(args.duration);
    let done = AtomicU64::new(0);
    let shrinking = AtomicBool::new(false);
    let run = Run { deadline, history: &history, done: &done, shrinking: &shrinking };
    let mut region_counts = Vec::new();
    let (per_client, nemesis) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.clients)
            .map(|p| {
                let client = make_client(p);
                let run = &run;
                s.spawn(move || run_client(p, client, args, run))
            })
            .collect();
        let nemesis = nemesis.map(|n| s.spawn(move || n(start)));
        show_progress(args, start, &run, &mut region_counts, region_count, || {
            handles.iter().all(|h| h.is_finished())
        });
        let per_client: Vec<ClientStats> =
            handles.into_iter().map(|h| h.join().expect("client thread panicked")).collect();
        (per_client, nemesis.map(|h| h.join().expect("nemesis thread panicked")))
    });
    let duration_s = start.elapsed().as_secs_f64();
    history.flush()?;
    let stats = per_client
        .into_iter()
        .reduce(|mut a, b| {
            a.merge(&b);
            a
        })
        .expect("at least one client");
    Ok((stats, region_counts, nemesis, duration_s))
}

/// The nemesis of a run: its schedule from the seed, faults from a second or so in until
/// `settle` before the end (the final heal), then the recovery check.
fn run_faults(
    args: &Args,
    cluster: &LocalCluster,
    net: &FaultNetwork,
    faults: &Faults,
    start: Instant,
) -> NemesisReport {
    let duration = Duration::from_secs_f64(args.duration);
    let first = Duration::from_secs(1).min(duration / 10);
    let final_heal = duration - Duration::from_secs(5).min(duration / 4);
    let interval = Duration::from_secs_f64(args.nemesis_interval);
    let plan = nemesis::schedule(&faults.kinds, args.seed, interval, first, final_heal);
    let env = NemesisEnv {
        cluster,
        net,
        start,
        key_space: args.key_space,
        election_timeout: faults.election_timeout,
        max_slowdown: faults.drift_bound,
        interval,
        recovery_timeout: Duration::from_secs_f64(args.recovery_timeout),
        kinds: faults.kinds.clone(),
    };
    run_nemesis(&env, plan, final_heal)
}

/// The JSON report and the chart, where asked for.
fn write_outputs(args: &Args, report: &Report) -> Result<(), Error> {
    if let Some(path) = &args.report_json {
        std::fs::write(path, serde_json::to_vec_pretty(report)?)?;
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
    Ok(())
}

/// The stores' settings: short ticks and small regions from the options, then what the
/// `--config` file sets, then the log flags.
fn settings(args: &Args) -> Result<FileConfig, Error> {
    let tick = Duration::from_millis(args.tick_ms);
    let raftstore = raftstore::Config {
        sync_log: args.sync_log,
        raft_base_tick_interval: tick,
        raft_store_max_leader_lease: tick * 8,
        raft_log_gc_tick_interval: tick * 5,
        split_region_check_tick_interval: tick * 5,
        hibernated_tick_interval: tick * 100,
        region_split_check_diff: args.split_size / 8,
        region_split_size: args.split_size,
        region_max_size: args.split_size * 3 / 2,
        ..raftstore::Config::for_tests_with_tick(tick)
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
    region_count: &(dyn Fn() -> u64 + Sync),
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
        let regions = region_count();
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
