//! `regionstore-pd`: one placement driver member. Several members over one etcd run active /
//! standby. SIGTERM or SIGINT stops it cleanly (it resigns, so a standby takes over at once);
//! a second one ends it at once.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use pd_server::{PdConfig, PdServer};
use slog::{o, Drain};

/// The placement driver of a regionstore cluster, its metadata kept in etcd.
#[derive(Parser, Debug)]
#[command(name = "regionstore-pd", version)]
struct Args {
    /// A TOML file of settings (flags override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Check the configuration and exit (0: usable).
    #[arg(long)]
    config_check: bool,
    /// This member's name.
    #[arg(long)]
    name: Option<String>,
    /// Where to listen (ip:port).
    #[arg(long)]
    addr: Option<String>,
    /// The address others reach this member at (default: --addr).
    #[arg(long)]
    advertise_addr: Option<String>,
    /// etcd endpoints, comma-separated host:port.
    #[arg(long, value_delimiter = ',')]
    etcd: Option<Vec<String>>,
    /// Prefix of this cluster's keys in etcd.
    #[arg(long)]
    root: Option<String>,
}

fn config(args: &Args) -> Result<PdConfig, String> {
    let mut cfg = match &args.config {
        Some(path) => PdConfig::load(path).map_err(|e| e.to_string())?,
        None => PdConfig::default(),
    };
    let set = |field: &mut String, flag: &Option<String>| {
        if let Some(v) = flag {
            field.clone_from(v);
        }
    };
    set(&mut cfg.name, &args.name);
    set(&mut cfg.addr, &args.addr);
    set(&mut cfg.advertise_addr, &args.advertise_addr);
    set(&mut cfg.root, &args.root);
    if let Some(etcd) = &args.etcd {
        cfg.etcd_endpoints.clone_from(etcd);
    }
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let signals = match server::signals::Signals::install("regionstore-pd") {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("regionstore-pd: installing signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cfg = match config(&args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("regionstore-pd: configuration error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.config_check {
        println!("regionstore-pd: configuration is valid");
        return ExitCode::SUCCESS;
    }
    let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
    let drain = slog_term::FullFormat::new(decorator).build().fuse();
    let logger = slog::Logger::root(drain, o!("pd" => cfg.name.clone()));
    let server = match PdServer::start(cfg, logger) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("regionstore-pd: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Scripts and tests read the address (with the port it got) from this line.
    println!("regionstore-pd listening on {}", server.addr());
    signals.wait();
    server.stop();
    ExitCode::SUCCESS
}
