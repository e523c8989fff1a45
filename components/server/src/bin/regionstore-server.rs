//! `regionstore-server`: one store of a cluster, as a process. It serves raft messages,
//! snapshots and the client `Kv` calls over gRPC, and `/metrics` and `/status` over HTTP.
//!
//! SIGTERM or SIGINT stops it cleanly: it stops taking client calls, stops the store (its
//! engines are flushed and closed) and exits 0. `kill -9` loses no acknowledged write when
//! `raftstore.sync_log` is on (the default): the next start recovers every region.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    sync::{Arc, RwLock},
    time::Duration,
};

use clap::Parser;
use rpc::{GrpcPdClient, PdClientConfig};
use server::{
    config::{build_logger, FileConfig, LogLevel},
    grpc::{GrpcConfig, GrpcTransport},
    metrics::MetricsServer,
    signals::Signals,
    Node, NodeConfig,
};
use slog::{info, Logger};

/// One store of a regionstore cluster.
#[derive(Parser, Debug)]
#[command(name = "regionstore-server", version)]
struct Args {
    /// A TOML file of settings (see etc/regionstore.example.toml); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Check the configuration and exit (0: usable; otherwise the key at fault is named).
    #[arg(long)]
    config_check: bool,
    /// Placement driver members, comma-separated host:port.
    #[arg(long, value_delimiter = ',', required_unless_present = "config_check")]
    pd: Vec<String>,
    /// Where the gRPC server listens (ip:port).
    #[arg(long, default_value = "127.0.0.1:20160")]
    addr: String,
    /// The address other servers and clients reach this one at (default: --addr).
    #[arg(long)]
    advertise_addr: Option<String>,
    /// Where the store's data lives.
    #[arg(long, default_value = "./regionstore-data")]
    data_dir: PathBuf,
    /// Where `/metrics` and `/status` are served over HTTP (ip:port).
    #[arg(long, default_value = "127.0.0.1:20180")]
    status_addr: SocketAddr,
    /// Least severe log level written (overrides log.level).
    #[arg(long)]
    log_level: Option<LogLevel>,
    /// Append logs to this file (overrides log.file).
    #[arg(long)]
    log_file: Option<PathBuf>,
}

fn load_config(args: &Args) -> Result<FileConfig, String> {
    let mut cfg = match &args.config {
        Some(path) => FileConfig::load(path, &FileConfig::default()).map_err(|e| e.to_string())?,
        None => FileConfig::default(),
    };
    if let Some(level) = args.log_level {
        cfg.log.level = level;
    }
    if args.log_file.is_some() {
        cfg.log.file.clone_from(&args.log_file);
    }
    Ok(cfg)
}

/// `/status`: the store, its regions and leaders, and what its raft transport sent.
fn status(node: &Node, grpc: &GrpcTransport, addr: &str) -> String {
    let sent = grpc.client_stats();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let regions = node.regions();
    let leaders = regions
        .iter()
        .filter(|r| node.region_status(r.id).is_some_and(|s| s.role == raft::StateRole::Leader))
        .count();
    serde_json::json!({
        "store_id": node.store_id(),
        "cluster_id": node.cluster_id(),
        "address": addr,
        "running": node.is_running(),
        "regions": regions.len(),
        "leaders": leaders,
        "raft_messages_sent": load(&sent.messages),
        "raft_batches_sent": load(&sent.batches),
        "raft_messages_undelivered": load(&sent.undelivered),
    })
    .to_string()
}

/// The node, once open, as `/metrics` and `/status` show it.
type Shown = Arc<RwLock<Option<(Node, GrpcTransport, String)>>>;

fn run(args: Args, cfg: FileConfig, logger: Logger, signals: Signals) -> Result<(), String> {
    // Everything that listens is bound before the store is touched: a port in use fails
    // the start with nothing created.
    let shown: Shown = Arc::default();
    let (page, status_page) = (shown.clone(), shown.clone());
    let http = MetricsServer::start_with_status(
        args.status_addr,
        move || match &*page.read().unwrap_or_else(|e| e.into_inner()) {
            Some((node, _, _)) => server::metrics::encode(&[node.registry()]),
            None => String::new(),
        },
        move || match &*status_page.read().unwrap_or_else(|e| e.into_inner()) {
            Some((node, grpc, addr)) => status(node, grpc, addr),
            None => serde_json::json!({ "running": false }).to_string(),
        },
    )
    .map_err(|e| format!("status server on {}: {e}", args.status_addr))?;
    // A minute to find the placement driver at start; then each call retries for as long
    // as a failover of the placement driver takes, so a stop is not held up for long.
    let mut pd_cfg = PdClientConfig::new(args.pd.iter().cloned());
    pd_cfg.retry_timeout = Duration::from_secs(60);
    let mut pd = GrpcPdClient::connect(pd_cfg).map_err(|e| format!("placement driver: {e}"))?;
    pd.set_retry_timeout(Duration::from_secs(10));
    let pd = Arc::new(pd);
    let grpc_cfg = GrpcConfig { listen_addr: args.addr.clone(), ..GrpcConfig::default() };
    let grpc = GrpcTransport::start(grpc_cfg, pd.clone(), &logger).map_err(|e| e.to_string())?;
    let advertise = args.advertise_addr.clone().unwrap_or_else(|| grpc.addr().to_string());
    let node_cfg = NodeConfig {
        data_dir: args.data_dir.clone(),
        store: cfg.raftstore.clone(),
        rocksdb: cfg.rocksdb.clone(),
        advertise_addr: advertise.clone(),
    };
    let node = match Node::open(node_cfg, pd, grpc.clone(), &logger) {
        Ok(node) => node,
        Err(e) => {
            grpc.stop();
            return Err(format!("opening the store: {e}"));
        }
    };
    grpc.serve_kv(Some(node.clone()));
    *shown.write().unwrap_or_else(|e| e.into_inner()) =
        Some((node.clone(), grpc.clone(), advertise.clone()));
    info!(logger, "server ready"; "store_id" => node.store_id(), "addr" => &advertise,
        "status_addr" => %http.addr());
    // Scripts and tests read this line.
    println!(
        "regionstore-server store {} listening on {} status {}",
        node.store_id(),
        advertise,
        http.addr()
    );
    signals.wait();
    info!(logger, "stopping");
    grpc.serve_kv(None);
    node.stop();
    grpc.stop();
    shown.write().unwrap_or_else(|e| e.into_inner()).take();
    drop(http);
    info!(logger, "stopped");
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let signals = match Signals::install("regionstore-server") {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("regionstore-server: installing signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cfg = match load_config(&args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("regionstore-server: configuration error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The log file is part of the configuration: one that cannot be opened is an error here.
    let logger = match build_logger(&cfg.log) {
        Ok(logger) => logger,
        Err(e) => {
            eprintln!("regionstore-server: configuration error: log.file: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.config_check {
        println!("regionstore-server: configuration is valid");
        return ExitCode::SUCCESS;
    }
    match run(args, cfg, logger, signals) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("regionstore-server: {e}");
            ExitCode::FAILURE
        }
    }
}
