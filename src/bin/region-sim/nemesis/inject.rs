//! The nemesis executor: injects each fault of the schedule at its time, undoes it at its
//! heal, probes every region after each heal, and after the final heal checks that the whole
//! cluster serves again.

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread::{Scope, ScopedJoinHandle},
    time::{Duration, Instant},
};

use client::{Client, ClientConfig};
use local_reader::SkewedClock;
use pd_client::{Operator, PdClient};
use proto::{eraftpb::MessageType, metapb};
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use server::{
    faults::{
        filters::{Chaos, ChaosConfig, Delay, DelayType, DropRate, Isolate, OneWay, Partition},
        FaultNetwork, FilterId,
    },
    local::LocalCluster,
    Context,
};

use super::{FaultKind, FaultRecord, NemesisReport, PlannedFault};

/// What the nemesis works on.
pub struct NemesisEnv<'a> {
    pub cluster: &'a LocalCluster,
    pub net: &'a FaultNetwork,
    /// The run's start (the schedule's time zero).
    pub start: Instant,
    /// The key space's size (split storms cut at its keys).
    pub key_space: u64,
    /// The stores' election timeout (the shortest): delays are sized from it.
    pub election_timeout: Duration,
    /// How much slower than real time a lease clock may run without risking a stale read:
    /// 1 − lease / election timeout.
    pub max_slowdown: f64,
    pub interval: Duration,
    pub recovery_timeout: Duration,
    pub kinds: Vec<FaultKind>,
}

/// How to undo an injected fault.
enum Undo<'s> {
    Filter(FilterId),
    Restart(u64),
    /// A paused store: its raft and apply gates.
    Gates(u64, Vec<raftstore::PollGate>),
    /// A store whose apply alone is paused.
    ApplyGate(u64, raftstore::PollGate),
    Clock(u64, Arc<SkewedClock>),
    /// A storm's stop flag and thread.
    Storm(Arc<AtomicBool>, ScopedJoinHandle<'s, ()>),
}

/// Stores under a store fault, by kind of fault.
#[derive(Default)]
struct Busy {
    /// Crashed or paused.
    out: BTreeSet<u64>,
    apply_paused: BTreeSet<u64>,
    skewed: BTreeSet<u64>,
}

/// Runs the schedule against the cluster, then the final heal at `final_heal` and the
/// recovery check. Returns the report without its per-kind tally.
pub fn run_nemesis(
    env: &NemesisEnv<'_>,
    plan: Vec<PlannedFault>,
    final_heal: Duration,
) -> NemesisReport {
    let records: Mutex<Vec<FaultRecord>> = Mutex::new(Vec::new());
    let mut report = NemesisReport {
        kinds: env.kinds.clone(),
        interval_s: env.interval.as_secs_f64(),
        final_heal_s: final_heal.as_secs_f64(),
        schedule: Vec::new(),
        by_kind: Default::default(),
        final_recovery_ms: None,
        final_recovery_error: None,
        restart_failures: Vec::new(),
    };
    std::thread::scope(|scope| {
        let mut exec = Executor { env, scope, busy: Busy::default(), active: Vec::new() };
        exec.run(&plan, final_heal, &records, &mut report);
        // Probes of intermediate heals end by their own deadlines, before the scope does.
    });
    report.schedule = records.into_inner().unwrap_or_else(|e| e.into_inner());
    report
}

struct Executor<'s, 'e, 'a> {
    env: &'e NemesisEnv<'a>,
    scope: &'s Scope<'s, 'e>,
    busy: Busy,
    /// Faults on now: index in the records, its undo, its heal time, leader changes at start.
    active: Vec<(usize, Undo<'s>, Duration, u64)>,
}

impl Drop for Executor<'_, '_, '_> {
    /// Nothing is on after a normal run. After a panic the storms must stop (the scope waits
    /// for them), and frozen stores and filters go, so the clients end and the panic shows.
    fn drop(&mut self) {
        for (_, undo, _, _) in &self.active {
            match undo {
                Undo::Storm(stop, _) => stop.store(true, Ordering::Relaxed),
                Undo::Gates(_, gates) => gates.iter().for_each(|g| g.open()),
                Undo::ApplyGate(_, gate) => gate.open(),
                Undo::Clock(_, clock) => clock.set_rate(1.0),
                Undo::Filter(_) | Undo::Restart(_) => {}
            }
        }
        self.env.net.clear_filters();
    }
}

impl<'s, 'e, 'a> Executor<'s, 'e, 'a> {
    fn run(
        &mut self,
        plan: &[PlannedFault],
        final_heal: Duration,
        records: &'e Mutex<Vec<FaultRecord>>,
        report: &mut NemesisReport,
    ) {
        let mut next = plan.iter().peekable();
        loop {
            let now = self.env.start.elapsed();
            self.heal_due(now, records, report);
            if now >= final_heal {
                break;
            }
            match next.peek() {
                Some(f) if Duration::from_secs_f64(f.start_s) >= final_heal => break,
                Some(f) if Duration::from_secs_f64(f.start_s) <= now => {
                    let f = next.next().expect("peeked");
                    self.inject(f, records);
                }
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        // Faults the executor did not reach before the final heal (it fell behind).
        for f in next {
            let mut all = records.lock().unwrap_or_else(|e| e.into_inner());
            all.push(FaultRecord {
                start_s: f.start_s,
                heal_s: f.heal_s,
                kind: f.kind,
                target: "not reached before the final heal".into(),
                injected: false,
                recovery_ms: None,
                leader_changes: 0,
            });
        }
        self.heal_due(Duration::MAX, records, report);
        self.env.net.clear_filters();
        let deadline = Instant::now() + self.env.recovery_timeout;
        let healed = Instant::now();
        match probe_regions(self.env.cluster, deadline, 1) {
            Ok(()) => report.final_recovery_ms = Some(healed.elapsed().as_secs_f64() * 1e3),
            Err(e) => report.final_recovery_error = Some(e),
        }
    }

    /// Undoes every active fault whose heal is due by `now`, each followed by a probe.
    fn heal_due(
        &mut self,
        now: Duration,
        records: &'e Mutex<Vec<FaultRecord>>,
        report: &mut NemesisReport,
    ) {
        let (due, keep): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.active).into_iter().partition(|(_, _, heal, _)| *heal <= now);
        self.active = keep;
        for (i, undo, _, changes_at_start) in due {
            if let Err(e) = self.undo(undo) {
                report.restart_failures.push(e);
            }
            let changes = self.env.cluster.pd.leader_changes() - changes_at_start;
            let mut all = records.lock().unwrap_or_else(|e| e.into_inner());
            all[i].leader_changes = changes;
            all[i].heal_s = self.env.start.elapsed().as_secs_f64();
            drop(all);
            let (cluster, interval) = (self.env.cluster, self.env.interval);
            let healed = Instant::now();
            self.scope.spawn(move || {
                let deadline = healed + interval * 2;
                if probe_regions(cluster, deadline, i as u64).is_ok() {
                    let ms = healed.elapsed().as_secs_f64() * 1e3;
                    records.lock().unwrap_or_else(|e| e.into_inner())[i].recovery_ms = Some(ms);
                }
            });
        }
    }

    fn inject(&mut self, f: &PlannedFault, records: &Mutex<Vec<FaultRecord>>) {
        let mut rng = StdRng::seed_from_u64(f.draw);
        let injected = self.injected(f.kind, &mut rng);
        let (target, undo) = match injected {
            Ok((target, undo)) => (target, Some(undo)),
            Err(why) => (why, None),
        };
        let mut all = records.lock().unwrap_or_else(|e| e.into_inner());
        let i = all.len();
        all.push(FaultRecord {
            start_s: self.env.start.elapsed().as_secs_f64(),
            heal_s: f.heal_s,
            kind: f.kind,
            target,
            injected: undo.is_some(),
            recovery_ms: None,
            leader_changes: 0,
        });
        if let Some(undo) = undo {
            let heal = Duration::from_secs_f64(f.heal_s);
            self.active.push((i, undo, heal, self.env.cluster.pd.leader_changes()));
        }
    }

    /// Injects one fault: what it hit and how to undo it, or why it was skipped.
    fn injected(
        &mut self,
        kind: FaultKind,
        rng: &mut StdRng,
    ) -> Result<(String, Undo<'s>), String> {
        let env = self.env;
        let stores = env.cluster.nodes.all().iter().map(|n| n.store_id()).collect::<Vec<_>>();
        let filter = |f: Box<dyn server::faults::Filter>, what: String| {
            Ok((what, Undo::Filter(env.net.add_filter(f))))
        };
        let et = env.election_timeout;
        match kind {
            FaultKind::Partition => {
                let mut s = stores.clone();
                s.shuffle(rng);
                let (a, b) = s.split_at(rng.gen_range(1..=s.len().max(2) / 2).min(s.len()));
                filter(Box::new(Partition::new(a, b)), format!("{a:?} | {b:?}"))
            }
            FaultKind::IsolateLeader => {
                let key = crate::args::key(rng.gen_range(0..env.key_space));
                let region =
                    env.cluster.pd.get_region(key.as_bytes()).map_err(|e| e.to_string())?.0;
                let (leader, _) = env.cluster.leader_of(region.id).ok_or("no leader")?;
                let s = leader.store_id();
                filter(Box::new(Isolate(s)), format!("store {s} (leads region {})", region.id))
            }
            FaultKind::OneWay => {
                let pair: Vec<u64> = stores.choose_multiple(rng, 2).copied().collect();
                let [from, to] = pair[..] else { return Err("fewer than two stores".into()) };
                filter(Box::new(OneWay { from, to }), format!("{from} -> {to}"))
            }
            FaultKind::Loss => {
                let rate = rng.gen_range(0.05..0.3);
                filter(Box::new(DropRate::new(rate, rng.gen())), format!("{:.0}%", rate * 100.0))
            }
            FaultKind::Delay => {
                let pair: Vec<u64> = stores.choose_multiple(rng, 2).copied().collect();
                let [a, b] = pair[..] else { return Err("fewer than two stores".into()) };
                let delay = Duration::from_millis(20) + (et * 3).mul_f64(rng.gen::<f64>());
                let what = format!("{a} <-> {b} +{} ms", delay.as_millis());
                filter(Box::new(Delay { a: Some(a), b: Some(b), delay }), what)
            }
            FaultKind::SlowType => {
                let types = [
                    MessageType::MsgTimeoutNow,
                    MessageType::MsgReadIndexResp,
                    MessageType::MsgHeartbeatResponse,
                    MessageType::MsgAppendResponse,
                    MessageType::MsgRequestPreVoteResponse,
                    MessageType::MsgSnapshot,
                ];
                let msg_type = *types.choose(rng).expect("types");
                let delay = et + (et * 2).mul_f64(rng.gen::<f64>());
                let what = format!("{msg_type:?} +{} ms", delay.as_millis());
                filter(Box::new(DelayType { msg_type, delay }), what)
            }
            FaultKind::Chaos => {
                let cfg = ChaosConfig {
                    link_delay: Duration::from_millis(1)..=Duration::from_millis(10),
                    jitter: Duration::from_millis(10),
                    duplicate: 0.1,
                    drop: 0.0,
                };
                filter(Box::new(Chaos::new(cfg, rng.gen())), "10% duplicated, jitter 10 ms".into())
            }
            FaultKind::Crash | FaultKind::Pause => self.take_a_store(kind, &stores, rng),
            FaultKind::ApplyPause => {
                let taken = self.busy.apply_paused.union(&self.busy.out).copied().collect();
                let s = pick(&stores, &taken, rng)?;
                let node = env.cluster.nodes.get(s).ok_or("store not running")?;
                let (_, apply) = node.poll_gates().map_err(|e| e.to_string())?;
                apply.close();
                self.busy.apply_paused.insert(s);
                Ok((format!("store {s}"), Undo::ApplyGate(s, apply)))
            }
            FaultKind::ClockSkew => {
                let s = pick(&stores, &self.busy.skewed, rng)?;
                let clock = env.cluster.clock(s).ok_or("no skewable clock")?;
                let rate = match rng.gen_bool(0.5) {
                    true => 1.0 - env.max_slowdown * rng.gen_range(0.2..0.9),
                    false => 1.0 + rng.gen_range(0.05..0.5),
                };
                clock.set_rate(rate);
                self.busy.skewed.insert(s);
                Ok((format!("store {s} at {rate:.3}x"), Undo::Clock(s, clock)))
            }
            FaultKind::TransferStorm | FaultKind::SplitStorm | FaultKind::MergeStorm => {
                let stop = Arc::new(AtomicBool::new(false));
                let (cluster, key_space, seed) = (env.cluster, env.key_space, rng.gen());
                let flag = stop.clone();
                let thread = self.scope.spawn(move || storm(kind, cluster, key_space, seed, &flag));
                Ok(("random regions".into(), Undo::Storm(stop, thread)))
            }
        }
    }

    /// A crash or a pause of a store, if fewer than a minority of the stores are out.
    fn take_a_store(
        &mut self,
        kind: FaultKind,
        stores: &[u64],
        rng: &mut StdRng,
    ) -> Result<(String, Undo<'s>), String> {
        // A region has at most three replicas: out of any three stores, one may be out.
        let replicas = self.env.cluster.store_ids().len().min(3);
        if self.busy.out.len() + 1 > (replicas - 1) / 2 {
            return Err(format!("skipped: {} store(s) out already", self.busy.out.len()));
        }
        let taken = self.busy.out.union(&self.busy.apply_paused).copied().collect();
        let s = pick(stores, &taken, rng)?;
        if kind == FaultKind::Crash {
            self.busy.out.insert(s);
            self.env.cluster.stop_node(s);
            return Ok((format!("store {s}"), Undo::Restart(s)));
        }
        let node = self.env.cluster.nodes.get(s).ok_or("store not running")?;
        let (store, apply) = node.poll_gates().map_err(|e| e.to_string())?;
        store.close();
        apply.close();
        self.busy.out.insert(s);
        Ok((format!("store {s}"), Undo::Gates(s, vec![store, apply])))
    }

    fn undo(&mut self, undo: Undo<'s>) -> Result<(), String> {
        match undo {
            Undo::Filter(id) => self.env.net.remove_filter(id),
            Undo::Restart(s) => {
                // A store that cannot restart stays counted as out.
                self.env.cluster.start_node(s).map_err(|e| format!("store {s}: {e}"))?;
                self.busy.out.remove(&s);
            }
            Undo::Gates(s, gates) => {
                gates.iter().for_each(|g| g.open());
                self.busy.out.remove(&s);
            }
            Undo::ApplyGate(s, gate) => {
                gate.open();
                self.busy.apply_paused.remove(&s);
            }
            Undo::Clock(s, clock) => {
                clock.set_rate(1.0);
                self.busy.skewed.remove(&s);
            }
            Undo::Storm(stop, thread) => {
                stop.store(true, Ordering::Relaxed);
                thread.join().map_err(|_| "a storm thread panicked".to_string())?;
            }
        }
        Ok(())
    }
}

/// A random store not in `taken`.
fn pick(stores: &[u64], taken: &BTreeSet<u64>, rng: &mut StdRng) -> Result<u64, String> {
    let free: Vec<u64> = stores.iter().copied().filter(|s| !taken.contains(s)).collect();
    free.choose(rng).copied().ok_or_else(|| "skipped: no store free".into())
}

/// One storm until `stop`: leader transfers, splits or merges of random regions, back to
/// back. Merges not handed out by then are withdrawn: the storm ends at its heal.
fn storm(kind: FaultKind, cluster: &LocalCluster, key_space: u64, seed: u64, stop: &AtomicBool) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut merges = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let regions = cluster.pd.regions();
        let Some(region) = regions.choose(&mut rng) else { break };
        match kind {
            FaultKind::TransferStorm => {
                if let Some((node, status)) = cluster.leader_of(region.id) {
                    let others: Vec<_> = status
                        .region
                        .get_peers()
                        .iter()
                        .filter(|p| p.id != status.peer.id)
                        .collect();
                    if let Some(to) = others.choose(&mut rng) {
                        let ctx = Context::new(&status.region, &status.peer);
                        let _ = node.transfer_leader(&ctx, to, Duration::from_millis(200));
                    }
                }
            }
            FaultKind::SplitStorm => {
                let key = crate::args::key(rng.gen_range(0..key_space)).into_bytes();
                let _ = cluster.split(&[key], 1, Duration::from_millis(300));
            }
            _ => {
                // Merge into the right neighbour, which the placement driver hands to the
                // source's leader with its next heartbeat.
                if let Ok((target, _)) = cluster.pd.get_region(&region.end_key) {
                    if !region.end_key.is_empty() && target.id != region.id {
                        let op = Operator::Merge { target };
                        cluster.pd.add_operator(region.id, op.clone());
                        merges.push((region.id, op));
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(10..60)));
    }
    for (region_id, op) in merges {
        cluster.pd.remove_operator(region_id, &op);
    }
}

/// A key inside a region whose range starts at `start`, outside the workload's key space.
fn probe_key(start: &[u8]) -> Vec<u8> {
    let mut key = start.to_vec();
    key.extend_from_slice(b"\0nemesis-probe");
    key
}

/// Threads probing regions at once after a heal.
const PROBERS: u64 = 4;

/// Writes and reads a probe key in every region the placement driver knows, `PROBERS`
/// regions at a time, each retried until `deadline`: whether the whole key space serves.
fn probe_regions(cluster: &LocalCluster, deadline: Instant, seed: u64) -> Result<(), String> {
    let regions = cluster.pd.regions();
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for prober in 0..PROBERS {
            let (regions, next, failure) = (&regions, &next, &failure);
            s.spawn(move || {
                let pd: Arc<dyn PdClient> = cluster.pd.clone();
                let cfg = ClientConfig {
                    attempt_timeout: Duration::from_millis(500),
                    ..Default::default()
                };
                let mut client =
                    Client::new(pd, cluster.nodes.clone(), cfg, seed * PROBERS + prober);
                while let Some(region) = regions.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if let Err(e) = probe_region(&mut client, region, deadline) {
                        failure.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                        next.store(regions.len(), Ordering::Relaxed); // the others stop too
                    }
                }
            });
        }
    });
    failure.into_inner().unwrap_or_else(|e| e.into_inner()).map_or(Ok(()), Err)
}

/// A write and a read of a probe key in `region`, each retried until `deadline`.
fn probe_region(
    client: &mut Client,
    region: &metapb::Region,
    deadline: Instant,
) -> Result<(), String> {
    let key = probe_key(&region.start_key);
    if !retry_until(deadline, || client.put(&key, b"probe", deadline).is_ok()) {
        return Err(format!("region {} served no write in time", region.id));
    }
    if !retry_until(deadline, || client.get(&key, deadline).is_ok()) {
        return Err(format!("region {} served no read in time", region.id));
    }
    Ok(())
}

/// Calls `f` until it succeeds (true) or `deadline` passes (false).
fn retry_until(deadline: Instant, mut f: impl FnMut() -> bool) -> bool {
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
