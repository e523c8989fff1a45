//! `--scenario idle`: what idle regions cost. The key space is cut into `--regions` regions
//! and nothing runs against them; after they settle (hibernate, with it on), the process
//! measures for `--duration` seconds the CPU its threads take, by kind, and its resident memory
//! per peer.

use std::{collections::BTreeMap, time::Duration};

use raftstore::operation::hibernate::GroupState;
use serde::Serialize;
use server::local::LocalCluster;

use crate::{args::Args, Error};

/// What the idle scenario measured.
#[derive(Serialize, Debug)]
pub struct IdleReport {
    /// Regions in the cluster.
    pub regions: usize,
    /// Peers on all stores.
    pub peers: usize,
    /// Seconds measured.
    pub measured_s: f64,
    /// CPU taken over the measured time, in percent of one core, by thread kind (the name
    /// before its store id: `raftstore`, `apply`, `ticker`, `pd-worker`, ...).
    pub cpu_percent: BTreeMap<String, f64>,
    /// The store threads' CPU (raftstore pollers, apply pollers, tickers), percent of one core.
    pub store_cpu_percent: f64,
    /// Resident memory of the process, bytes.
    pub rss_bytes: u64,
    /// Resident memory per peer, bytes (the whole process's, divided).
    pub rss_per_peer_bytes: f64,
    /// Peers asleep at the end, over all stores.
    pub peers_asleep: i64,
    /// Milliseconds to stop one store and open it again from its directory (engines opened,
    /// every region's state loaded and checked, its peers created and running).
    pub restart_ms: f64,
    /// The regions that store recovered.
    pub restart_peers: i64,
}

/// CPU time (user + system) of each of this process's threads, by thread name.
fn thread_cpu() -> Result<Vec<(String, Duration)>, Error> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task")? {
        let path = task?.path();
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue; // the thread ended meanwhile
        };
        // Fields after the parenthesised name: state is the 3rd field, utime the 14th.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        let secs = (ticks(11) + ticks(12)) / hz; // utime, stime (14th and 15th fields)
        out.push((name.trim().to_string(), Duration::from_secs_f64(secs)));
    }
    Ok(out)
}

/// The kind of a thread: its name up to the store id (`raftstore-1000-0` → `raftstore`).
fn kind(name: &str) -> String {
    let words: Vec<&str> =
        name.split('-').take_while(|w| !w.starts_with(|c: char| c.is_ascii_digit())).collect();
    words.join("-")
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    kib * 1024
}

fn cpu_by_kind() -> Result<BTreeMap<String, Duration>, Error> {
    let mut by = BTreeMap::new();
    for (name, cpu) in thread_cpu()? {
        *by.entry(kind(&name)).or_default() += cpu;
    }
    Ok(by)
}

/// Lets the cluster settle, then measures it idle for `--duration` seconds.
pub fn run_idle(args: &Args, cluster: &LocalCluster) -> Result<IdleReport, Error> {
    let settle = Duration::from_millis(args.tick_ms * 100).max(Duration::from_secs(2));
    eprintln!("region-sim: {} regions up; settling for {settle:?}", cluster.pd.regions().len());
    std::thread::sleep(settle);
    let window = Duration::from_secs_f64(args.duration);
    let before = cpu_by_kind()?;
    std::thread::sleep(window);
    let after = cpu_by_kind()?;
    let percent = |d: Duration| 100.0 * d.as_secs_f64() / window.as_secs_f64();
    let cpu_percent: BTreeMap<String, f64> = after
        .iter()
        .map(|(k, t)| {
            (k.clone(), percent(t.saturating_sub(*before.get(k).unwrap_or(&Duration::ZERO))))
        })
        .filter(|(_, p)| *p > 0.0)
        .collect();
    let store_cpu_percent =
        ["raftstore", "apply", "ticker"].iter().filter_map(|k| cpu_percent.get(*k)).sum();
    let nodes = cluster.nodes.all();
    let in_state = |s: GroupState| nodes.iter().map(|n| n.peers_in_hibernate_state(s)).sum();
    let peers = GroupState::ALL.iter().map(|s| in_state(*s)).sum::<i64>().max(0) as usize;
    let asleep = in_state(GroupState::Idle);
    let rss = rss_bytes();
    let (restart_ms, restart_peers) = restart_one(cluster)?;
    Ok(IdleReport {
        regions: cluster.pd.regions().len(),
        peers,
        measured_s: window.as_secs_f64(),
        cpu_percent,
        store_cpu_percent,
        rss_bytes: rss,
        rss_per_peer_bytes: rss as f64 / peers.max(1) as f64,
        peers_asleep: asleep,
        restart_ms,
        restart_peers,
    })
}

/// Stops the first store and opens it again: how long recovering its regions takes.
fn restart_one(cluster: &LocalCluster) -> Result<(f64, i64), Error> {
    let Some(store) = cluster.store_ids().into_iter().next() else {
        return Ok((0.0, 0));
    };
    cluster.stop_node(store);
    let started = std::time::Instant::now();
    cluster.start_node(store)?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let node = cluster.nodes.get(store).ok_or("the restarted store is gone")?;
    let meta = node.store_meta()?;
    let peers = meta.lock().unwrap_or_else(|e| e.into_inner()).len() as i64;
    Ok((ms, peers))
}

impl IdleReport {
    /// The human summary.
    pub fn print(&self) {
        println!(
            "idle: {} regions, {} peers, measured {:.0} s",
            self.regions, self.peers, self.measured_s
        );
        println!("  store threads' CPU: {:.2}% of one core", self.store_cpu_percent);
        for (kind, p) in &self.cpu_percent {
            println!("    {kind:<12} {p:>7.2}%");
        }
        println!(
            "  RSS: {:.1} MiB, {:.1} KiB per peer; peers asleep: {}",
            self.rss_bytes as f64 / (1 << 20) as f64,
            self.rss_per_peer_bytes / 1024.0,
            self.peers_asleep
        );
        println!(
            "  restart of one store: {:.0} ms to recover {} regions",
            self.restart_ms, self.restart_peers
        );
    }
}
