//! Randomized fault runs. Clients write, delete and read a few keys (lease reads, ReadIndex
//! when the nemesis switches leases off, follower reads) while a nemesis transfers leaders,
//! splits and merges regions, replaces peers, restarts stores while messages to them are in flight, partitions
//! stores, cuts links one way and slows links or single message types; the network under it
//! all delays, reorders and duplicates messages. Every run's history must be linearizable, and every key
//! readable again after the final heal.
//!
//! Seeded: the nemesis's choices, the clients' choices and the network's draws come from the
//! seed (thread timing still varies). `REGIONSTORE_RANDOM_SEEDS=N` runs seeds 1..=N for each
//! store count (default 2 with 3 stores, 1 with 5); `REGIONSTORE_RANDOM_SEED=S` runs only S;
//! `REGIONSTORE_RANDOM_SECS` sets the length of each run (default 4).

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use proto::{
    eraftpb::MessageType,
    raft_cmdpb::{AdminCmdType, ConfChangeType},
};
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use regionstore::linearizability::{check, Op};
use test_raftstore::{
    chaos::{Chaos, ChaosConfig, DelayType},
    new_request,
    transport::{Delay, Isolate, OneWay},
    Cluster,
};

const KEYS: usize = 6;
const CLIENTS: u64 = 4;

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The seeds to run for `stores` stores.
fn seeds(default: u64) -> Vec<u64> {
    if let Some(seed) = env("REGIONSTORE_RANDOM_SEED") {
        return vec![seed];
    }
    (1..=env("REGIONSTORE_RANDOM_SEEDS").unwrap_or(default)).collect()
}

/// Every operation of a run, timed from its start.
struct History {
    start: Instant,
    ops: Mutex<Vec<Op>>,
}

impl History {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn record(&self, key: &str, write: bool, value: Option<String>, invoke: u64, done: bool) {
        let complete_ns = done.then(|| self.now());
        let op = Op { key: key.to_string(), write, value, invoke_ns: invoke, complete_ns };
        self.ops.lock().unwrap().push(op);
    }
}

type Shared = Arc<Mutex<Cluster>>;

fn lock(cluster: &Shared) -> MutexGuard<'_, Cluster> {
    cluster.lock().unwrap_or_else(|e| e.into_inner())
}

fn text(v: Option<Vec<u8>>) -> Option<String> {
    v.map(|v| String::from_utf8(v).expect("values are text"))
}

/// What the clients share with the test: the cluster, the history, and the generation of the
/// set of running stores. A client holds a store's engines (its readers do) until it makes a
/// new `Client`: it does so whenever the generation moves, and says which one it is on, so a
/// store is restarted only once no client holds it.
struct Run {
    cluster: Shared,
    history: History,
    stop: AtomicBool,
    generation: AtomicU64,
    seen: Vec<AtomicU64>,
}

impl Run {
    /// Stores started or stopped: waits until every client let go of its old `Client`.
    fn new_generation(&self) {
        let g = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.seen.iter().any(|s| s.load(Ordering::Acquire) < g) {
            assert!(Instant::now() < deadline, "a client kept an old store's engines");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// One client: writes unique values, reads from leaders and followers.
fn run_client(id: u64, seed: u64, run: Arc<Run>) {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1000).wrapping_add(id));
    let (history, stop) = (&run.history, &run.stop);
    let mut client = None;
    let mut generation = u64::MAX;
    let mut n = 0;
    loop {
        let g = run.generation.load(Ordering::Acquire);
        if g != generation {
            drop(client.take()); // let go of stopped stores' engines first
            client = Some(lock(&run.cluster).client());
            generation = g;
            run.seen[id as usize].store(g, Ordering::Release);
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let client = client.as_mut().expect("made above");
        let key = format!("k{}", rng.gen_range(0..KEYS));
        let deadline = Instant::now() + Duration::from_secs(1);
        let invoke = history.now();
        match rng.gen_range(0..10) {
            0..=3 => {
                let value = format!("c{id}-{n}");
                n += 1;
                match client.put(key.as_bytes(), value.as_bytes(), deadline) {
                    Ok(()) => history.record(&key, true, Some(value), invoke, true),
                    Err(client::Error::Undetermined(_)) => {
                        history.record(&key, true, Some(value), invoke, false)
                    }
                    Err(_) => {} // definitely not applied: a read of it is a violation
                }
            }
            4 => match client.delete(key.as_bytes(), deadline) {
                Ok(()) => history.record(&key, true, None, invoke, true),
                Err(client::Error::Undetermined(_)) => {
                    history.record(&key, true, None, invoke, false)
                }
                Err(_) => {}
            },
            r => {
                let res = if r <= 7 {
                    client.get(key.as_bytes(), deadline)
                } else {
                    client.get_follower(key.as_bytes(), deadline)
                };
                if let Ok(v) = res {
                    history.record(&key, false, text(v), invoke, true);
                }
            }
        }
    }
}

/// The faults, one at a time; each healed before the next. Returns what it did.
struct Nemesis {
    rng: StdRng,
    seed: u64,
    stores: u64,
    log: Vec<String>,
    heals: u64,
}

impl Nemesis {
    fn chaos(&mut self) -> Box<Chaos> {
        self.heals += 1;
        let cfg = ChaosConfig {
            link_delay: Duration::ZERO..=Duration::from_millis(2),
            jitter: Duration::from_millis(3),
            duplicate: 0.02,
            drop: 0.0,
        };
        Box::new(Chaos::new(cfg, self.seed.wrapping_mul(7919).wrapping_add(self.heals)))
    }

    fn heal(&mut self, cluster: &Shared) {
        let c = lock(cluster);
        c.clear_filters();
        c.set_lease_reads(true);
        c.network.add_filter(self.chaos());
    }

    fn store(&mut self) -> u64 {
        self.rng.gen_range(1..=self.stores)
    }

    /// Two different stores.
    fn link(&mut self) -> (u64, u64) {
        let a = self.store();
        let b = (a + self.rng.gen_range(1..self.stores) - 1) % self.stores + 1;
        (a, b)
    }

    fn pause(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.rng.gen_range(lo..hi))
    }

    fn step(&mut self, run: &Run) {
        let cluster = &run.cluster;
        let action = self.rng.gen_range(0..12);
        match action {
            11 => self.merge(cluster),
            0 => self.transfer_leader(cluster),
            10 => self.replace_peer(cluster),
            8 => self.transfer_over_a_slow_link(cluster),
            9 => self.restart_beside_a_partition(run),
            1 => self.split(cluster),
            2 => {
                let (s, down) = (self.store(), self.pause(20, 150));
                self.log.push(format!("restart store {s} ({down:?} down)"));
                lock(&run.cluster).stop_store(s); // messages on their way to it are lost or late
                run.new_generation();
                std::thread::sleep(down);
                lock(&run.cluster).start_store(s);
                run.new_generation();
            }
            3 => {
                let s = self.store();
                self.fault(cluster, format!("isolate store {s}"), Box::new(Isolate(s)));
            }
            4 => {
                let (from, to) = self.link();
                self.fault(cluster, format!("cut {from} -> {to}"), Box::new(OneWay { from, to }));
            }
            5 => {
                let types = [
                    MessageType::MsgTimeoutNow,
                    MessageType::MsgReadIndexResp,
                    MessageType::MsgHeartbeatResponse,
                    MessageType::MsgAppend,
                ];
                let msg_type = *types.choose(&mut self.rng).unwrap();
                let delay = self.pause(100, 300);
                let what = format!("delay {msg_type:?} by {delay:?}");
                self.fault(cluster, what, Box::new(DelayType { msg_type, delay }));
            }
            6 => {
                self.log.push("lease reads off".into());
                lock(cluster).set_lease_reads(false);
                std::thread::sleep(self.pause(100, 400));
                self.heal(cluster);
            }
            _ => {
                let ((a, b), delay) = (self.link(), self.pause(50, 250));
                let what = format!("slow link {a} <-> {b} by {delay:?}");
                self.fault(cluster, what, Box::new(Delay { a: Some(a), b: Some(b), delay }));
            }
        }
    }

    fn fault(
        &mut self,
        cluster: &Shared,
        what: String,
        filter: Box<dyn test_raftstore::transport::Filter>,
    ) {
        let lasts = self.pause(100, 400);
        self.log.push(format!("{what} for {lasts:?}"));
        lock(cluster).network.add_filter(filter);
        std::thread::sleep(lasts);
        self.heal(cluster);
    }

    /// A transfer whose `MsgTimeoutNow` (and everything else between the two) arrives after
    /// the leader gave it up.
    fn transfer_over_a_slow_link(&mut self, cluster: &Shared) {
        let c = lock(cluster);
        let Some(leader) = c.leader_of_region(1) else { return };
        let Some(status) = c.peer_status(leader.store_id, 1) else { return };
        let others: Vec<_> =
            status.region.get_peers().iter().filter(|p| p.id != leader.id).cloned().collect();
        let target = others.choose(&mut self.rng).unwrap().clone();
        let delay = self.pause(150, 300);
        self.log
            .push(format!("transfer region 1 to {} over a link slowed by {delay:?}", target.id));
        let (a, b) = (Some(leader.store_id), Some(target.store_id));
        c.network.add_filter(Box::new(Delay { a, b, delay }));
        let mut req = new_request(&status.region, &leader, vec![]);
        req.mut_admin_request().set_cmd_type(AdminCmdType::TransferLeader);
        req.mut_admin_request().mut_transfer_leader().set_peer(target);
        let _ = c.call_command(leader.store_id, req, Duration::from_millis(300));
        drop(c);
        std::thread::sleep(delay * 2);
        self.heal(cluster);
    }

    /// A store restarts while two others cannot talk (TiKV #15035: the restarted peer must
    /// not elect the cut-off one while the leader's lease still stands).
    fn restart_beside_a_partition(&mut self, run: &Run) {
        if self.stores < 3 {
            return;
        }
        let mut ids: Vec<u64> = (1..=self.stores).collect();
        ids.shuffle(&mut self.rng);
        let (a, b, c) = (ids[0], ids[1], ids[2]);
        let lasts = self.pause(200, 500);
        self.log.push(format!("cut {a} <-> {b}, restart {c}, for {lasts:?}"));
        lock(&run.cluster).partition(&[a], &[b]);
        lock(&run.cluster).stop_store(c);
        run.new_generation();
        lock(&run.cluster).start_store(c);
        run.new_generation();
        std::thread::sleep(lasts);
        self.heal(&run.cluster);
    }

    /// Removes a follower and adds a new peer of the region on its store (the old peer may
    /// miss its removal under the other faults, and must give way to the new one).
    fn replace_peer(&mut self, cluster: &Shared) {
        let c = lock(cluster);
        let regions = c.pd.regions();
        let region = regions.choose(&mut self.rng).unwrap().clone();
        let Some(leader) = c.leader_of_region(region.id) else { return };
        let Some(status) = c.peer_status(leader.store_id, region.id) else { return };
        let peers = status.region.get_peers();
        let followers: Vec<_> = peers.iter().filter(|p| p.id != leader.id).cloned().collect();
        if peers.len() < 3 || followers.is_empty() {
            return;
        }
        let victim = followers.choose(&mut self.rng).unwrap().clone();
        self.log.push(format!("replace peer {} of region {}", victim.id, region.id));
        if c.change_peer(region.id, ConfChangeType::RemoveNode, &victim).is_ok() {
            let new = c.new_peer(victim.store_id);
            let _ = c.change_peer(region.id, ConfChangeType::AddNode, &new);
        }
    }

    fn transfer_leader(&mut self, cluster: &Shared) {
        let c = lock(cluster);
        let regions = c.pd.regions();
        let region = regions.choose(&mut self.rng).unwrap().clone();
        let Some(leader) = c.leader_of_region(region.id) else { return };
        let Some(status) = c.peer_status(leader.store_id, region.id) else { return };
        let target = status.region.get_peers().choose(&mut self.rng).unwrap().clone();
        self.log.push(format!("transfer region {} to {}", region.id, target.id));
        let mut req = new_request(&status.region, &leader, vec![]);
        req.mut_admin_request().set_cmd_type(AdminCmdType::TransferLeader);
        req.mut_admin_request().mut_transfer_leader().set_peer(target);
        let _ = c.call_command(leader.store_id, req, Duration::from_millis(300));
    }

    /// Starts merging a region into a neighbour; it goes on under the faults that follow.
    fn merge(&mut self, cluster: &Shared) {
        let c = lock(cluster);
        let regions = c.pd.regions();
        if regions.len() < 2 {
            return;
        }
        let i = self.rng.gen_range(0..regions.len() - 1);
        let (source, target) = match self.rng.gen_bool(0.5) {
            true => (&regions[i], &regions[i + 1]),
            false => (&regions[i + 1], &regions[i]),
        };
        let Some(leader) = c.leader_of_region(source.id) else { return };
        let status = |id| c.peer_status(leader.store_id, id).map(|s| s.region);
        let (Some(source), Some(target)) = (status(source.id), status(target.id)) else { return };
        self.log.push(format!("merge region {} into {}", source.id, target.id));
        let mut req = new_request(&source, &leader, vec![]);
        req.mut_admin_request().set_cmd_type(AdminCmdType::PrepareMerge);
        req.mut_admin_request().mut_prepare_merge().set_target(target);
        let _ = c.call_command(leader.store_id, req, Duration::from_millis(300));
    }

    fn split(&mut self, cluster: &Shared) {
        let key = format!("k{}", self.rng.gen_range(1..KEYS)).into_bytes();
        let c = lock(cluster);
        let Ok((region, _)) = pd_client::PdClient::get_region(&*c.pd, &key) else { return };
        if region.start_key == key {
            return; // split there already
        }
        let Some(leader) = c.leader_of_region(region.id) else { return };
        let Some(status) = c.peer_status(leader.store_id, region.id) else { return };
        self.log.push(format!("split region {} at {}", region.id, String::from_utf8_lossy(&key)));
        let rx = c.router(leader.store_id).split_region(
            region.id,
            status.region.get_region_epoch().clone(),
            vec![key],
        );
        drop(c);
        let _ = rx.recv_timeout(Duration::from_secs(1));
    }
}

/// One seeded run on `stores` stores; panics with the seed and the fault log on a violation.
fn random_run(stores: u64, seed: u64) {
    let secs = env("REGIONSTORE_RANDOM_SECS").unwrap_or(4);
    let mut cluster = Cluster::new(stores);
    cluster.run();
    cluster.must_put(b"k0", b"initial");
    let run = Arc::new(Run {
        cluster: Arc::new(Mutex::new(cluster)),
        history: History { start: Instant::now(), ops: Mutex::new(Vec::new()) },
        stop: AtomicBool::new(false),
        generation: AtomicU64::new(0),
        seen: (0..CLIENTS).map(|_| AtomicU64::new(0)).collect(),
    });
    let history = &run.history;
    history.record("k0", true, Some("initial".into()), 0, true);
    let mut nemesis =
        Nemesis { rng: StdRng::seed_from_u64(seed), seed, stores, log: Vec::new(), heals: 0 };
    nemesis.heal(&run.cluster);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let run = run.clone();
            std::thread::spawn(move || run_client(id, seed, run))
        })
        .collect();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        std::thread::sleep(nemesis.pause(50, 200));
        nemesis.step(&run);
    }
    lock(&run.cluster).clear_filters();
    run.stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let c = lock(&run.cluster);
    let mut client = c.client();
    for k in 0..KEYS {
        let key = format!("k{k}");
        let invoke = history.now();
        let deadline = Instant::now() + Duration::from_secs(15);
        let got = client.get(key.as_bytes(), deadline).unwrap_or_else(|e| {
            panic!(
                "seed {seed}, {stores} stores: {key} unreadable after the heal: {e}\n{:#?}",
                nemesis.log
            )
        });
        history.record(&key, false, text(got), invoke, true);
    }
    let ops = history.ops.lock().unwrap();
    let verdict = check(&ops);
    assert_eq!(
        verdict.violations, 0,
        "seed {seed}, {stores} stores: not linearizable: {:?}\nfaults: {:#?}",
        verdict.examples, nemesis.log
    );
    assert!(ops.len() > 50, "seed {seed}: only {} operations completed", ops.len());
    let writes = ops.iter().filter(|o| o.write).count();
    eprintln!(
        "seed {seed}, {stores} stores: linearizable, {} ops ({writes} writes), {} regions, {} faults: {}",
        ops.len(),
        c.pd.regions().len(),
        nemesis.log.len(),
        nemesis.log.join("; ")
    );
}

#[test]
fn random_faults_on_three_stores_keep_histories_linearizable() {
    for seed in seeds(2) {
        random_run(3, seed);
    }
}

#[test]
fn random_faults_on_five_stores_keep_histories_linearizable() {
    for seed in seeds(1) {
        random_run(5, seed);
    }
}
