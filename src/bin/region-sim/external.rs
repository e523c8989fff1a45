//! `--pd ADDRS`: region-sim against a cluster of processes (`make cluster`): the same
//! clients, workload, history, linearizability check and report, through the client over
//! gRPC (`rpc::GrpcPdClient`, `client::GrpcStores`). The servers' own configuration decides
//! ticks and split sizes; regions are counted by walking the key space through the
//! placement driver. With `--cluster-dir` (the directory `scripts/cluster.sh` prints) and
//! `--nemesis kill,pause`, real server processes are killed (`SIGKILL`) and restarted from
//! their command line, or paused (`SIGSTOP`) and resumed, one at a time.

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use client::GrpcStores;
use pd_client::PdClient;
use proto::metapb;
use rand::{rngs::StdRng, Rng, SeedableRng};
use rpc::{GrpcPdClient, PdClientConfig};
use serde::Serialize;

use crate::{args::Args, Error};

/// The external cluster a run drives.
pub struct External {
    pub pd: Arc<GrpcPdClient>,
    pub stores: Arc<GrpcStores>,
}

impl External {
    /// Connects to the placement driver at `addrs` (comma-separated).
    pub fn connect(addrs: &str) -> Result<Self, Error> {
        let endpoints = addrs.split(',').map(str::trim).filter(|s| !s.is_empty());
        let pd = GrpcPdClient::connect(PdClientConfig::new(endpoints))
            .map_err(|e| format!("--pd {addrs}: {e}"))?;
        let pd = Arc::new(pd);
        let stores = Arc::new(GrpcStores::new(pd.clone())?);
        Ok(External { pd, stores })
    }

    /// Every region, in key order, as the placement driver has them (a walk from the first
    /// key; stops early at a gap or an error, then only the regions before it).
    pub fn regions(&self) -> Vec<metapb::Region> {
        self.walk().0
    }

    /// The walk of [`Self::regions`], and whether it reached the end of the key space.
    fn walk(&self) -> (Vec<metapb::Region>, bool) {
        let (mut out, mut key) = (Vec::new(), Vec::new());
        while let Ok((region, _)) = self.pd.get_region(&key) {
            let end = region.end_key.clone();
            out.push(region);
            if end.is_empty() {
                return (out, true);
            }
            if out.len() > 1_000_000 {
                break;
            }
            key = end;
        }
        (out, false)
    }

    /// Deletes what an earlier run left in the key space (the history of this one starts
    /// with every key absent); how many keys it deleted.
    pub fn clear_key_space(&self, deadline: Instant) -> Result<usize, Error> {
        let pd: Arc<dyn PdClient> = self.pd.clone();
        let mut client =
            client::Client::new(pd, self.stores.clone(), client::ClientConfig::default(), 2);
        let mut deleted = 0;
        loop {
            let left = client.scan(b"key", b"kez", 10_000, deadline)?;
            if left.is_empty() {
                return Ok(deleted);
            }
            for (key, _) in left {
                client.delete(&key, deadline)?;
                deleted += 1;
            }
        }
    }

    /// Waits until every region has a leader the placement driver knows and `replicas`
    /// voters.
    pub fn wait_ready(&self, replicas: usize, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let (regions, whole) = self.walk();
            let ready = whole
                && regions.iter().all(|r| {
                    r.get_peers().len() >= replicas
                        && self.pd.get_region_by_id(r.id).is_ok_and(|(_, l)| l.is_some())
                });
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("the external cluster has no leader with all replicas".into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// One server process of a `scripts/cluster.sh` cluster.
struct ServerProc {
    name: String,
    pid_file: PathBuf,
    status_port_file: PathBuf,
    cmd: Vec<String>,
    log: PathBuf,
    /// The process, once this run restarted it (so it can be reaped).
    child: Option<Child>,
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

impl ServerProc {
    /// The pid in the pid file, if that process runs this server's binary (a pid left
    /// behind by a dead server may have been reused).
    fn pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(&self.pid_file).ok()?.trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let exe = cmdline.split(|b| *b == 0).next()?;
        (exe == self.cmd[0].as_bytes() && alive(pid)).then_some(pid)
    }

    fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on the server's own pid; no memory is involved.
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// `kill -9`, and waits (up to 10 s) until it is gone; its pid file is removed.
    fn kill(&mut self) {
        let pid = self.pid();
        self.signal(libc::SIGKILL);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        } else if let Some(pid) = pid {
            // Not ours to reap: wait until it is gone (or a zombie).
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = std::fs::remove_file(&self.pid_file);
    }

    /// Starts it again from its command line, in a process group of its own (a ^C to
    /// region-sim does not reach it), and records its pid.
    fn restart(&mut self) -> std::io::Result<()> {
        use std::os::unix::process::CommandExt;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(&self.cmd[0])
            .args(&self.cmd[1..])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()?;
        let tmp = self.pid_file.with_extension("pid.tmp");
        std::fs::write(&tmp, format!("{}\n", child.id()))?;
        std::fs::rename(&tmp, &self.pid_file)?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until its `/status` answers with `"running":true`, up to `timeout`.
    fn wait_serving(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let port = std::fs::read_to_string(&self.status_port_file).unwrap_or_default();
        let addr = format!("127.0.0.1:{}", port.trim());
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                return false; // it exited
            }
            if http_get(&addr, "/status").is_some_and(|b| b.contains("\"running\":true")) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

/// `GET path` on `addr`: the body of a 200 answer.
fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    (head.split_whitespace().nth(1) == Some("200")).then(|| body.to_string())
}

/// The server processes under a cluster directory.
pub struct Procs {
    servers: Vec<Mutex<ServerProc>>,
}

impl Procs {
    /// Reads `server-N.pid` and `server-N.cmd` under `dir`.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let mut servers = Vec::new();
        for i in 1.. {
            let cmd_file = dir.join(format!("server-{i}.cmd"));
            if !cmd_file.exists() {
                break;
            }
            let cmd: Vec<String> =
                std::fs::read_to_string(&cmd_file)?.lines().map(str::to_string).collect();
            if cmd.is_empty() {
                return Err(format!("{} is empty", cmd_file.display()).into());
            }
            servers.push(Mutex::new(ServerProc {
                name: format!("server-{i}"),
                pid_file: dir.join(format!("server-{i}.pid")),
                status_port_file: dir.join(format!("server-{i}.status_port")),
                cmd,
                log: dir.join(format!("server-{i}.log")),
                child: None,
            }));
        }
        if servers.is_empty() {
            return Err(format!("no server-N.cmd under {}", dir.display()).into());
        }
        Ok(Procs { servers })
    }
}

/// A fault on a server process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcessFault {
    /// `kill -9`, restarted at the heal from the same command line and directory.
    Kill,
    /// `SIGSTOP`, `SIGCONT` at the heal.
    Pause,
}

impl ProcessFault {
    /// `kill`, `pause`, or `all`, comma-separated.
    pub fn parse_list(list: &str) -> Result<Vec<ProcessFault>, String> {
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim) {
            match name {
                "kill" => out.push(ProcessFault::Kill),
                "pause" => out.push(ProcessFault::Pause),
                "all" => out.extend([ProcessFault::Kill, ProcessFault::Pause]),
                other => {
                    return Err(format!(
                        "--nemesis {other}: with --pd the faults are kill and pause"
                    ))
                }
            }
        }
        out.sort_by_key(|f| *f as u8);
        out.dedup();
        Ok(out)
    }
}

/// One fault as it ran.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessFaultRecord {
    pub at_s: f64,
    pub fault: ProcessFault,
    pub server: String,
    pub healed_at_s: f64,
}

/// What the process nemesis did, and whether the cluster served every region after it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProcessNemesisReport {
    pub faults: Vec<ProcessFaultRecord>,
    pub faults_by_kind: BTreeMap<String, u64>,
    /// Time from the final heal until every region served a write and a read again.
    pub recovery_ms: Option<f64>,
}

impl ProcessNemesisReport {
    /// Whether every region served again after the final heal.
    pub fn recovered(&self) -> bool {
        self.recovery_ms.is_some()
    }

    /// A few lines for the summary.
    pub fn print_summary(&self) {
        println!("process faults: {:?}", self.faults_by_kind);
        match self.recovery_ms {
            Some(ms) => println!("recovered {ms:.0} ms after the final heal"),
            None => println!("NOT recovered after the final heal"),
        }
    }
}

/// Injects `kinds` on one server at a time, `interval` apart, each held 0.5 to 1.5
/// intervals, until `final_heal`; then checks that every region serves within
/// `recovery_timeout`.
pub fn run_process_nemesis(
    args: &Args,
    kinds: &[ProcessFault],
    procs: &Procs,
    external: &External,
    start: Instant,
) -> ProcessNemesisReport {
    let duration = Duration::from_secs_f64(args.duration);
    let final_heal = duration - Duration::from_secs(5).min(duration / 4);
    let interval = Duration::from_secs_f64(args.nemesis_interval);
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x5eed_9e0c);
    let mut report = ProcessNemesisReport::default();
    let mut next = Duration::from_secs(1).min(duration / 10);
    // Faults start once every region has all its voters.
    let voters = procs.servers.len().min(3);
    if let Err(e) = external.wait_ready(voters, Duration::from_secs_f64(args.recovery_timeout)) {
        eprintln!("region-sim: no faults: {e}");
        return report;
    }
    while next < final_heal {
        sleep_until(start + next);
        let fault = kinds[rng.gen_range(0..kinds.len())];
        let i = rng.gen_range(0..procs.servers.len());
        let hold = interval.mul_f64(rng.gen_range(0.5..1.5)).min(final_heal.saturating_sub(next));
        let mut server = procs.servers[i].lock().unwrap_or_else(|e| e.into_inner());
        let at_s = start.elapsed().as_secs_f64();
        match fault {
            ProcessFault::Kill => server.kill(),
            ProcessFault::Pause => server.signal(libc::SIGSTOP),
        }
        std::thread::sleep(hold);
        let healed = match fault {
            ProcessFault::Kill => server.restart().map_err(|e| e.to_string()),
            ProcessFault::Pause => {
                server.signal(libc::SIGCONT);
                Ok(())
            }
        };
        // The next fault waits until this server serves again: one server down at a time.
        let recovery = Duration::from_secs_f64(args.recovery_timeout);
        let healed = healed.and_then(|()| {
            let serving = server.wait_serving(recovery);
            serving.then_some(()).ok_or_else(|| format!("not serving within {recovery:?}"))
        });
        if let Err(e) = healed {
            eprintln!("region-sim: healing {}: {e}; no more faults", server.name);
            return report; // recovery_ms stays None: the run fails
        }
        let name = format!("{fault:?}").to_lowercase();
        *report.faults_by_kind.entry(name).or_default() += 1;
        report.faults.push(ProcessFaultRecord {
            at_s,
            fault,
            server: server.name.clone(),
            healed_at_s: start.elapsed().as_secs_f64(),
        });
        next = start.elapsed() + interval.mul_f64(rng.gen_range(0.5..1.0));
    }
    let healed = Instant::now();
    let recovery = Duration::from_secs_f64(args.recovery_timeout);
    if probe_every_region(external, healed + recovery) {
        report.recovery_ms = Some(healed.elapsed().as_secs_f64() * 1000.0);
    }
    report
}

fn sleep_until(t: Instant) {
    std::thread::sleep(t.saturating_duration_since(Instant::now()));
}

/// A write and a read of a probe key in each region, through a fresh client; whether all
/// succeeded before `deadline`.
fn probe_every_region(external: &External, deadline: Instant) -> bool {
    let pd: Arc<dyn PdClient> = external.pd.clone();
    let mut client =
        client::Client::new(pd, external.stores.clone(), client::ClientConfig::default(), 1);
    let mut done = HashSet::new();
    while Instant::now() < deadline {
        let (regions, whole) = external.walk();
        let mut all = whole;
        for region in &regions {
            if done.contains(&region.id) {
                continue;
            }
            // Just above the region's start: inside it, and no key of the workload (whose
            // keys are all of one length).
            let mut key = region.start_key.clone();
            key.extend_from_slice(b"\0probe");
            let until = (Instant::now() + Duration::from_secs(5)).min(deadline);
            let ok = client.put(&key, b"probe", until).is_ok()
                && client.get(&key, until).is_ok_and(|v| v.as_deref() == Some(&b"probe"[..]));
            if ok {
                done.insert(region.id);
            } else {
                all = false;
            }
        }
        if all {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The whole run against an external cluster: wait until it serves, drive the clients (and
/// the process nemesis), then report as the embedded mode does.
pub fn run(args: &Args) -> Result<(), Error> {
    let addrs = args.pd.as_deref().expect("--pd");
    let external = External::connect(addrs)?;
    let kinds = match &args.nemesis {
        Some(list) => ProcessFault::parse_list(list)?,
        None => Vec::new(),
    };
    // Args::validate made sure a nemesis has a cluster directory.
    let procs = match &args.cluster_dir {
        Some(dir) if !kinds.is_empty() => Some(Procs::load(dir)?),
        _ => None,
    };
    external.wait_ready(1, Duration::from_secs(60))?;
    let cleared = external.clear_key_space(Instant::now() + Duration::from_secs(120))?;
    let initial = external.regions();
    let seen = Mutex::new(initial.iter().map(|r| r.id).collect::<HashSet<u64>>());
    let sampled = Mutex::new((Instant::now(), initial.len() as u64));
    let region_count = || {
        let mut s = sampled.lock().unwrap_or_else(|e| e.into_inner());
        if s.0.elapsed() >= Duration::from_millis(500) {
            let regions = external.regions();
            seen.lock().unwrap_or_else(|e| e.into_inner()).extend(regions.iter().map(|r| r.id));
            *s = (Instant::now(), regions.len() as u64);
        }
        s.1
    };
    let make_client = |p: usize| {
        let pd: Arc<dyn PdClient> = external.pd.clone();
        let cfg =
            client::ClientConfig { attempt_timeout: Duration::from_secs(3), ..Default::default() };
        client::Client::new(pd, external.stores.clone(), cfg, args.seed.wrapping_add(p as u64))
    };
    let nemesis = procs.as_ref().map(|procs| {
        let (kinds, external) = (&kinds, &external);
        move |start| run_process_nemesis(args, kinds, procs, external, start)
    });
    let (stats, region_counts, process_nemesis, duration_s) =
        crate::drive_with(args, make_client, &region_count, nemesis)?;
    let final_regions = external.regions();
    let seen = seen.into_inner().unwrap_or_else(|e| e.into_inner());
    let regions = crate::report::Regions {
        initial: initial.len(),
        final_: final_regions.len(),
        splits: (seen.len() - initial.len().min(seen.len())) as u64,
        peak: region_counts.iter().copied().max().unwrap_or(0).max(final_regions.len() as u64),
        merges: 0,
        merge_ms_p50: 0.0,
        merge_ms_max: 0.0,
    };
    let read_paths = crate::report::ReadPaths::default();
    let mut report = crate::report::Report::new(
        args,
        duration_s,
        &stats,
        read_paths,
        regions,
        &region_counts,
        Vec::new(),
    );
    report.notes.push(format!(
        "external cluster at {addrs}: read paths, per-store peers and merges are not measured \
         from outside; splits counts the region ids seen beyond the initial ones"
    ));
    if cleared > 0 {
        report.notes.push(format!("deleted {cleared} keys an earlier run left, before the run"));
    }
    report.process_nemesis = process_nemesis;
    report.print_summary();
    if let Some(n) = &report.process_nemesis {
        n.print_summary();
    }
    crate::write_outputs(args, &report)?;
    if report.linearizability.violations > 0 {
        return Err(format!("the history is not linearizable (seed {})", args.seed).into());
    }
    if report.process_nemesis.as_ref().is_some_and(|n| !n.recovered()) {
        return Err("the cluster did not recover after the final heal".into());
    }
    Ok(())
}
