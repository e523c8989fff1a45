//! Command-line options.

use std::{path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};
use serde::Serialize;
use server::config::LogLevel;

use crate::nemesis::FaultKind;

/// region-sim: runs a cluster of stores in one process on RocksDB, drives a workload through
/// a real client, and reports what happened.
#[derive(Parser, Debug, Clone, Serialize)]
#[command(version, about)]
pub struct Args {
    /// Stores in the cluster.
    #[arg(long, default_value_t = 3)]
    pub stores: u64,
    /// Seconds the workload runs.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Concurrent clients (threads).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Fraction of operations that are reads (lease reads where the leader's lease allows,
    /// ReadIndex otherwise).
    #[arg(long, default_value_t = 0.5)]
    pub read_ratio: f64,
    /// Fraction of writes that are deletes.
    #[arg(long, default_value_t = 0.0)]
    pub delete_ratio: f64,
    /// The workload's shape over the run: `steady` keeps the mix above; `grow-shrink` writes
    /// (no deletes) until the cluster has --peak-regions regions or half the run is over,
    /// then deletes 49 writes in 50, so regions split as the data grows and merge as it
    /// goes.
    #[arg(long, value_enum, default_value_t = Scenario::Steady)]
    pub scenario: Scenario,
    /// grow-shrink: the region count at which the workload turns to deletes.
    #[arg(long, default_value_t = 32)]
    pub peak_regions: u64,
    /// Regions of at most this many bytes are merged into a neighbour of at most as many
    /// (0: no merges). By default a quarter of --split-size.
    #[arg(long)]
    pub merge_size: Option<u64>,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 1000)]
    pub key_space: u64,
    /// Regions the key space starts cut into (evenly); splits make more as data grows.
    #[arg(long, default_value_t = 1)]
    pub regions: u64,
    /// Regions split into pieces of about this many bytes, once larger than 1.5 times it.
    /// Small, so that a short run splits its key space into many regions.
    #[arg(long, default_value_t = 4096)]
    pub split_size: u64,
    /// Draw the time series (reads and writes per second, regions, p50 and p99 latency) here:
    /// an SVG, or a PNG if the name ends in `.png`.
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// Bytes of each value.
    #[arg(long, default_value_t = 64)]
    pub value_size: usize,
    /// Seed of every random choice, so a run can be replayed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Keep the stores' data here (must be empty or absent) instead of a temporary directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    pub report_json: Option<PathBuf>,
    /// Write every client operation as JSON lines here.
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Length of one raft tick in milliseconds (elections take 10 to 20 ticks). Short ticks
    /// make failover fast and cost CPU per peer.
    #[arg(long, default_value_t = 10)]
    pub tick_ms: u64,
    /// Sync the raft log on every write round (durable on power loss, slower).
    #[arg(long)]
    pub sync_log: bool,
    /// No progress bar (for logs and CI).
    #[arg(long)]
    pub quiet: bool,
    /// A TOML configuration file (see etc/regionstore.example.toml): its `[raftstore]` and
    /// `[rocksdb]` keys override what the options above set, its `[log]` section is the
    /// default of --log-level and --log-file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Least severe log level written: trace, debug, info, warn, error, critical, off
    /// [default: warn, or the config file's].
    #[arg(long)]
    pub log_level: Option<LogLevel>,
    /// Append logs to this file instead of stderr.
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Faults to inject while the workload runs: a comma list of partition, isolate-leader,
    /// one-way, loss, delay, slow-type, chaos, crash, pause, clock-skew, transfer-storm,
    /// apply-pause, split-storm, merge-storm; or `all`. The schedule comes from --seed.
    #[arg(long)]
    pub nemesis: Option<String>,
    /// Seconds between the starts of two faults (each lasts 0.5 to 1.5 times this; at least
    /// 0.1).
    #[arg(long, default_value_t = 2.0)]
    pub nemesis_interval: f64,
    /// Seconds every region has, after the nemesis's final heal, to serve a write and a read
    /// again; the run fails otherwise.
    #[arg(long, default_value_t = 30.0)]
    pub recovery_timeout: f64,
    /// Serve the stores' Prometheus metrics at http://ADDR/metrics during the run (port 0
    /// picks a free port; the address is printed on stderr).
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// How the stores talk: `local` (channels in the process) or `grpc` (each store serves
    /// gRPC on a loopback port and sends through a gRPC client). The nemesis needs `local`.
    #[arg(long, value_enum, default_value_t = TransportKind::Local)]
    pub transport: TransportKind,
    /// Drive an external cluster (`make cluster`) through its placement driver at these
    /// addresses (comma-separated) instead of starting stores here; the servers' own
    /// configuration decides ticks and split sizes. With it, --nemesis takes `kill` and
    /// `pause` (real processes, found under --cluster-dir).
    #[arg(long)]
    pub pd: Option<String>,
    /// The directory `scripts/cluster.sh` ran the cluster in (server-N.pid, server-N.cmd):
    /// where --pd's nemesis finds the server processes to kill, restart and pause.
    #[arg(long)]
    pub cluster_dir: Option<PathBuf>,
}

/// How the stores of a run talk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransportKind {
    /// Channels between the stores of the process (`LocalNetwork`).
    Local,
    /// gRPC on loopback (`server::grpc::GrpcTransport`).
    Grpc,
}

/// The shape of the workload over the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// The same mix of reads, writes and deletes all along.
    Steady,
    /// Writes until a region count, then mostly deletes.
    GrowShrink,
    /// No load: the key space cut into --regions regions, left alone to settle, then the
    /// process's CPU by thread kind and its memory per peer measured for --duration seconds.
    Idle,
}

/// The share of writes that are deletes once a grow-shrink run shrinks.
pub const SHRINK_DELETE_RATIO: f64 = 0.98;

/// The key of index `i` in the key space.
pub fn key(i: u64) -> String {
    format!("key{i:08}")
}

/// The longest run: a week.
const MAX_DURATION_S: f64 = 7.0 * 24.0 * 3600.0;
/// The shortest `--nemesis-interval`: a fault then lasts at least 50 ms, a few ticks.
const MIN_NEMESIS_INTERVAL_S: f64 = 0.1;

impl Args {
    /// The merge size limit: --merge-size, or a quarter of --split-size.
    pub fn merge_size(&self) -> u64 {
        self.merge_size.unwrap_or(self.split_size / 4)
    }

    /// Keys that cut the key space into `regions` even parts.
    pub fn split_keys(&self) -> Vec<Vec<u8>> {
        (1..self.regions).map(|i| key(self.key_space * i / self.regions).into_bytes()).collect()
    }

    /// The width of the time series' buckets: 100 ms, or wider for runs over 30 s so that a
    /// run has at most 300 of them.
    pub fn bucket(&self) -> Duration {
        Duration::from_millis(100).max(Duration::from_secs_f64(self.duration / 300.0))
    }

    /// The faults of `--nemesis` (none without it).
    pub fn nemesis_kinds(&self) -> Result<Vec<FaultKind>, String> {
        self.nemesis.as_deref().map_or(Ok(Vec::new()), FaultKind::parse_list)
    }

    /// Refuses what an external cluster (--pd) cannot do.
    fn validate_external(&self) -> Result<(), String> {
        if self.transport == TransportKind::Grpc {
            return Err("--transport is for the stores region-sim starts; not with --pd".into());
        }
        if self.regions > 1 || self.scenario == Scenario::Idle {
            return Err("--regions and --scenario idle need the stores in this process; \
                        not with --pd"
                .into());
        }
        if let Some(list) = &self.nemesis {
            crate::external::ProcessFault::parse_list(list)?;
            if self.cluster_dir.is_none() {
                return Err(
                    "--nemesis with --pd needs --cluster-dir (where the processes are)".into()
                );
            }
        }
        Ok(())
    }

    /// Refuses values that cannot run.
    pub fn validate(&self) -> Result<(), String> {
        if self.pd.is_some() {
            self.validate_external()?;
        } else if !self.nemesis_kinds()?.is_empty() && self.transport == TransportKind::Grpc {
            return Err("--nemesis injects its faults on the in-process network: it needs \
                        --transport local"
                .into());
        }
        if !(self.nemesis_interval >= MIN_NEMESIS_INTERVAL_S
            && self.nemesis_interval <= MAX_DURATION_S)
        {
            return Err(format!(
                "--nemesis-interval must be at least {MIN_NEMESIS_INTERVAL_S} seconds"
            ));
        }
        if !(self.recovery_timeout > 0.0 && self.recovery_timeout <= MAX_DURATION_S) {
            return Err("--recovery-timeout must be a positive number of seconds".into());
        }
        if self.stores == 0 {
            return Err("--stores must be at least 1".into());
        }
        if self.clients == 0 {
            return Err("--clients must be at least 1".into());
        }
        if !(self.duration > 0.0 && self.duration <= MAX_DURATION_S) {
            return Err(format!(
                "--duration must be a positive number of seconds, at most {MAX_DURATION_S}"
            ));
        }
        if !(0.0..=1.0).contains(&self.read_ratio) {
            return Err("--read-ratio must be within 0..=1".into());
        }
        if !(0.0..=1.0).contains(&self.delete_ratio) {
            return Err("--delete-ratio must be within 0..=1".into());
        }
        if self.peak_regions == 0 {
            return Err("--peak-regions must be at least 1".into());
        }
        if self.key_space == 0 {
            return Err("--key-space must be at least 1".into());
        }
        if self.regions == 0 || self.regions > self.key_space {
            return Err("--regions must be within 1..=--key-space".into());
        }
        if !(1..=10_000).contains(&self.tick_ms) {
            return Err("--tick-ms must be within 1..=10000".into());
        }
        if self.split_size < 64 {
            return Err("--split-size must be at least 64 bytes".into());
        }
        if self.value_size < 16 {
            return Err(
                "--value-size must be at least 16 (a value starts with its unique id)".into()
            );
        }
        if let Some(dir) = &self.data_dir {
            if dir.exists() && std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_some()) {
                return Err(format!("--data-dir {} is not empty", dir.display()));
            }
        }
        Ok(())
    }
}
