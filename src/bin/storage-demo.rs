//! storage-demo: the smallest honest demo of what regionstore has today.
//!
//! It bootstraps a store and its first region on RocksDB, drives the region's raft log the way
//! a peer does (append entries and hard state per ready, apply them to the kv engine with the
//! apply state), closes the engines, opens them again, and checks that every region, entry and
//! key came back. There is no replication yet: that arrives with the raftstore core, and the
//! `region-sim` simulator replaces this demo.
//!
//! Usage: `storage-demo [--data-dir PATH] [--entries N] [--config FILE]` (`--help` for more).

use std::{path::PathBuf, time::Instant};

use server::config::{build_logger, FileConfig, LogConfig, LogLevel};

use regionstore::{
    engine::{
        keys,
        rocks::{open_engines, RocksConfig, RocksEngine, RocksRaftEngine},
        KvEngine, Mutable, Peekable, RaftEngine, WriteOptions,
    },
    proto::{eraftpb, metapb},
    raftstore::{
        bootstrap::{
            bootstrap_first_region, bootstrap_store, check_store_ident, load_region_states,
        },
        raft::storage::PeerStorage,
    },
};

type Error = Box<dyn std::error::Error>;

/// Drives one region's raft log storage on RocksDB, then reopens the engines and checks that
/// everything came back.
#[derive(clap::Parser)]
#[command(name = "storage-demo")]
struct Args {
    /// Keep the engines here (a second run continues the log) instead of a temporary
    /// directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Entries to append.
    #[arg(long, default_value_t = 10_000)]
    entries: u64,
    /// A TOML configuration file (see etc/regionstore.example.toml); this demo uses its
    /// `[rocksdb]` and `[log]` sections.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Least severe log level written: trace, debug, info, warn, error, critical, off.
    #[arg(long)]
    log_level: Option<LogLevel>,
    /// Append logs to this file instead of stderr.
    #[arg(long)]
    log_file: Option<PathBuf>,
}

/// The engines' settings and the logger: a small footprint, then the `--config` file, then
/// the log flags.
fn settings(args: &Args) -> Result<(RocksConfig, slog::Logger), Error> {
    let log = LogConfig { level: LogLevel::Warn, file: None };
    let base = FileConfig { log, rocksdb: RocksConfig::small(), ..Default::default() };
    let mut cfg = match &args.config {
        Some(path) => FileConfig::load(path, &base)?,
        None => base,
    };
    cfg.log.level = args.log_level.unwrap_or(cfg.log.level);
    cfg.log.file = args.log_file.clone().or(cfg.log.file);
    let logger = build_logger(&cfg.log).map_err(|e| format!("cannot open the log: {e}"))?;
    Ok((cfg.rocksdb, logger))
}

fn first_region() -> metapb::Region {
    let mut region = metapb::Region::default();
    region.id = 1;
    region.mut_region_epoch().conf_ver = 1;
    region.mut_region_epoch().version = 1;
    let mut peer = metapb::Peer::default();
    peer.id = 1;
    peer.store_id = 1;
    region.peers.push(peer);
    region
}

/// Writes `n` entries in batches of 100, as a leader's readies would, and applies each batch.
fn drive_log(ps: &mut PeerStorage<RocksEngine, RocksRaftEngine>, n: u64) -> Result<(), Error> {
    let (kv, raft) = (ps.kv_engine().clone(), ps.raft_engine().clone());
    // Continue after whatever a previous run in the same --data-dir left.
    let first = ps.raft_state().last_index + 1;
    for chunk_start in (first..first + n).step_by(100) {
        let chunk_end = (chunk_start + 100).min(first + n);
        let entries: Vec<eraftpb::Entry> = (chunk_start..chunk_end)
            .map(|i| {
                let mut e = eraftpb::Entry::default();
                e.index = i;
                e.term = 6;
                e.data = format!("put key{i:08}").into_bytes().into();
                e
            })
            .collect();
        let mut batch = raft.log_batch(entries.len());
        ps.append(&entries, &mut batch)?;
        let mut hs = ps.raft_state().get_hard_state().clone();
        hs.term = 6;
        hs.commit = chunk_end - 1;
        ps.set_hard_state(hs);
        ps.write_raft_state(&mut batch)?;
        raft.consume(&mut batch, true)?;

        let mut wb = kv.write_batch();
        for e in &entries {
            wb.put(&keys::data_key(&e.data[4..]), &e.index.to_be_bytes())?;
        }
        let mut apply = ps.apply_state().clone();
        apply.applied_index = chunk_end - 1;
        apply.commit_index = chunk_end - 1;
        apply.commit_term = 6;
        ps.write_apply_state(apply, &mut wb)?;
        kv.write(&mut wb, WriteOptions::NO_SYNC)?;
    }
    Ok(())
}

fn main() -> Result<(), Error> {
    let args = <Args as clap::Parser>::parse();
    let tmp = tempfile::tempdir()?;
    let dir = args.data_dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    println!("storage-demo: engines under {}", dir.display());

    let (rocks, logger) = settings(&args)?;
    let (kv, raft) = open_engines(&dir, &rocks)?;
    bootstrap_store(&kv, 1, 1)?;
    if load_region_states(&kv)?.is_empty() {
        bootstrap_first_region(&kv, &raft, &first_region())?;
    }
    let region = load_region_states(&kv)?.remove(0).take_region();
    let mut ps = PeerStorage::new(kv, raft, region, logger.clone())?;
    let before = ps.raft_state().last_index;
    let start = Instant::now();
    drive_log(&mut ps, args.entries)?;
    let secs = start.elapsed().as_secs_f64();
    let last = ps.raft_state().last_index;
    println!(
        "appended and applied {} entries ({before} -> {last}) in {secs:.3}s: {:.0} entries/s",
        args.entries,
        args.entries as f64 / secs
    );
    drop(ps);

    let (kv, raft) = open_engines(&dir, &rocks)?;
    check_store_ident(&kv, 1, 1)?;
    let states = load_region_states(&kv)?;
    let region = states[0].get_region().clone();
    let ps = PeerStorage::new(kv.clone(), raft, region, logger)?;
    let key = keys::data_key(format!("key{last:08}").as_bytes());
    let value = kv.get_value(&key)?.ok_or("last applied key lost")?;
    if ps.raft_state().last_index != last
        || ps.applied_index() != last
        || value != last.to_be_bytes()
    {
        return Err("state after reopen differs from state before".into());
    }
    println!(
        "reopened: {} region(s), last index {}, applied {}, last key present: recovery OK",
        states.len(),
        ps.raft_state().last_index,
        ps.applied_index()
    );
    Ok(())
}
