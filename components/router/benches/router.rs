//! Messages per second from K sender threads through the router to M FSMs on P pollers,
//! beside the same messages over one bare crossbeam channel drained by P threads.
//!
//! The ratio of the two is the cost of routing, scheduling and batching on top of a channel.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crossbeam_channel::Receiver;
use router::{
    create_system, drain, mailbox_channel, BasicMailbox, Config, Fsm, HandleResult, HandlerBuilder,
    PollHandler, Router,
};

const SENDERS: usize = 2;
const FSMS: u64 = 1_000;
const POLLERS: usize = 2;
const MESSAGES: u64 = 200_000;

struct CountFsm {
    rx: Receiver<u64>,
}

impl Fsm for CountFsm {
    type Message = u64;
    fn is_stopped(&self) -> bool {
        false
    }
}

struct Handler {
    done: Arc<AtomicU64>,
    round: u64,
    buf: Vec<u64>,
}

impl Handler {
    fn handle(&mut self, fsm: &mut CountFsm) -> HandleResult {
        self.buf.clear();
        let res = drain(&fsm.rx, 4096, &mut self.buf);
        self.round += self.buf.len() as u64;
        res
    }
}

impl PollHandler<CountFsm, CountFsm> for Handler {
    fn handle_control(&mut self, c: &mut CountFsm) -> HandleResult {
        self.handle(c)
    }
    fn handle_normal(&mut self, n: &mut CountFsm) -> HandleResult {
        self.handle(n)
    }
    fn end(&mut self, _: &mut [Box<CountFsm>]) {
        self.done.fetch_add(std::mem::take(&mut self.round), Ordering::Relaxed);
    }
}

struct Builder(Arc<AtomicU64>);

impl HandlerBuilder<CountFsm, CountFsm> for Builder {
    type Handler = Handler;
    fn build(&mut self) -> Handler {
        Handler { done: self.0.clone(), round: 0, buf: Vec::with_capacity(4096) }
    }
}

fn wait_for(counter: &AtomicU64, target: u64) {
    while counter.load(Ordering::Relaxed) < target {
        std::hint::spin_loop();
    }
}

/// Sends the messages from one thread per handle; message `i` goes out through handle
/// `i % handles.len()`.
fn send_all<H: Send>(handles: Vec<H>, send: impl Fn(&H, u64) + Sync) {
    let senders = handles.len();
    std::thread::scope(|s| {
        for (k, handle) in handles.into_iter().enumerate() {
            let send = &send;
            s.spawn(move || {
                for i in (k as u64..MESSAGES).step_by(senders) {
                    send(&handle, i);
                }
            });
        }
    });
}

fn bench_router(c: &mut Criterion) {
    let done = Arc::new(AtomicU64::new(0));
    let cfg = Config { pool_size: POLLERS, mailbox_capacity: 1 << 20, ..Config::default() };
    let (ctl_tx, ctl_rx) = mailbox_channel(16);
    let (router, mut system) =
        create_system::<CountFsm, CountFsm>(&cfg, ctl_tx, Box::new(CountFsm { rx: ctl_rx }))
            .unwrap();
    system.spawn("bench-poller", Builder(done.clone())).unwrap();
    router.register_all((0..FSMS).map(|id| {
        let (tx, rx) = mailbox_channel(1 << 20);
        (id, BasicMailbox::new(tx, Box::new(CountFsm { rx })))
    }));

    let mut group = c.benchmark_group("router");
    group.throughput(Throughput::Elements(MESSAGES));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function(format!("{SENDERS}senders_{FSMS}fsms_{POLLERS}pollers"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let target = done.load(Ordering::Relaxed) + MESSAGES;
                let routers: Vec<Router<CountFsm, CountFsm>> =
                    (0..SENDERS).map(|_| router.clone()).collect();
                send_all(routers, |r, i| r.try_send(i % FSMS, i).unwrap());
                wait_for(&done, target);
            }
            start.elapsed()
        })
    });

    // Baseline: the same messages over one channel, drained by the same number of threads.
    let (tx, rx) = crossbeam_channel::unbounded::<u64>();
    let base_done = Arc::new(AtomicU64::new(0));
    let drainers: Vec<_> = (0..POLLERS)
        .map(|_| {
            let (rx, done) = (rx.clone(), base_done.clone());
            std::thread::spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut n = 1u64;
                    std::hint::black_box(first);
                    while let Ok(m) = rx.try_recv() {
                        std::hint::black_box(m);
                        n += 1;
                        if n == 4096 {
                            break;
                        }
                    }
                    done.fetch_add(n, Ordering::Relaxed);
                }
            })
        })
        .collect();
    group.bench_function(format!("baseline_channel_{SENDERS}senders_{POLLERS}receivers"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let target = base_done.load(Ordering::Relaxed) + MESSAGES;
                send_all(vec![tx.clone(); SENDERS], |tx, i| tx.send(i).unwrap());
                wait_for(&base_done, target);
            }
            start.elapsed()
        })
    });
    group.finish();
    drop(tx);
    for d in drainers {
        d.join().unwrap();
    }
    system.shutdown();
}

/// Router lookups: a warm per-handle cache (hits) against a working set larger than the cache
/// (every lookup misses and takes the shared map's read lock).
fn bench_lookup(c: &mut Criterion) {
    let cfg = Config::default();
    let (ctl_tx, ctl_rx) = mailbox_channel(16);
    let (router, _system) =
        create_system::<CountFsm, CountFsm>(&cfg, ctl_tx, Box::new(CountFsm { rx: ctl_rx }))
            .unwrap();
    let addrs = 4 * router::ROUTER_CACHE_CAPACITY as u64;
    router.register_all((0..addrs).map(|id| {
        let (tx, rx) = mailbox_channel(16);
        (id, BasicMailbox::new(tx, Box::new(CountFsm { rx })))
    }));
    let mut group = c.benchmark_group("router_lookup");
    group.throughput(Throughput::Elements(1));
    let hot = router::ROUTER_CACHE_CAPACITY as u64 / 2;
    let mut i = 0u64;
    group.bench_function("cache_hit", |b| {
        b.iter(|| {
            i = (i + 1) % hot;
            assert!(router.contains(i));
        })
    });
    group.bench_function("cache_miss_shared_map", |b| {
        b.iter(|| {
            i = (i + 1) % addrs;
            assert!(router.contains(i));
        })
    });
    group.finish();
}

criterion_group!(benches, bench_router, bench_lookup);
criterion_main!(benches);
