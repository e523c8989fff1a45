//! A test FSM and handler that record what they see.

#![allow(dead_code)]

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use crossbeam_channel::Receiver;
use router::{
    create_system, drain, mailbox_channel, BasicMailbox, BatchSystem, Config, Fsm, HandleResult,
    HandlerBuilder, PollHandler, Router,
};

pub enum Msg {
    /// Message `seq` of sender `sender`.
    Seq {
        sender: usize,
        seq: u64,
    },
    /// Block the handler until the receiver yields.
    Gate(Receiver<()>),
    /// Stop the FSM.
    Stop,
    Noop,
}

/// What every FSM of a test reports, indexed by FSM id.
#[derive(Default)]
pub struct Shared {
    pub received: Vec<AtomicU64>,
    pub busy: Vec<AtomicBool>,
    pub violations: AtomicUsize,
    pub dropped: AtomicUsize,
    pub rounds: AtomicU64,
    /// (fsm id or u64::MAX for control, round) in handling order.
    pub log: Mutex<Vec<(u64, u64)>>,
}

impl Shared {
    pub fn new(fsms: usize) -> Arc<Self> {
        Arc::new(Shared {
            received: (0..=fsms).map(|_| AtomicU64::new(0)).collect(),
            busy: (0..=fsms).map(|_| AtomicBool::new(false)).collect(),
            ..Default::default()
        })
    }

    pub fn total(&self) -> u64 {
        self.received.iter().map(|r| r.load(SeqCst)).sum()
    }
}

pub struct TestFsm {
    pub id: u64,
    rx: Receiver<Msg>,
    last_seq: Vec<Option<u64>>,
    stopped: bool,
    shared: Arc<Shared>,
}

impl Fsm for TestFsm {
    type Message = Msg;
    fn is_stopped(&self) -> bool {
        self.stopped
    }
}

impl Drop for TestFsm {
    fn drop(&mut self) {
        self.shared.dropped.fetch_add(1, SeqCst);
    }
}

pub fn new_fsm(id: u64, capacity: usize, shared: &Arc<Shared>) -> (BasicMailbox<TestFsm>, ()) {
    let (tx, rx) = mailbox_channel(capacity);
    let fsm = TestFsm { id, rx, last_seq: vec![None; 64], stopped: false, shared: shared.clone() };
    (BasicMailbox::new(tx, Box::new(fsm)), ())
}

pub struct Handler {
    budget: usize,
    shared: Arc<Shared>,
    round: u64,
}

impl Handler {
    fn handle(&mut self, fsm: &mut TestFsm) -> HandleResult {
        let slot = (fsm.id as usize).min(self.shared.busy.len() - 1);
        if self.shared.busy[slot].swap(true, SeqCst) {
            self.shared.violations.fetch_add(1, SeqCst); // two pollers hold one FSM
        }
        self.shared.log.lock().unwrap().push((fsm.id, self.round));
        let mut buf = Vec::new();
        let res = drain(&fsm.rx, self.budget, &mut buf);
        for msg in buf {
            match msg {
                Msg::Seq { sender, seq } => {
                    let want = fsm.last_seq[sender].map_or(0, |s| s + 1);
                    if seq != want {
                        self.shared.violations.fetch_add(1, SeqCst); // lost, doubled or reordered
                    }
                    fsm.last_seq[sender] = Some(seq);
                    self.shared.received[slot].fetch_add(1, SeqCst);
                }
                Msg::Gate(rx) => {
                    let _ = rx.recv();
                }
                Msg::Stop => fsm.stopped = true,
                Msg::Noop => {
                    self.shared.received[slot].fetch_add(1, SeqCst);
                }
            }
        }
        self.shared.busy[slot].store(false, SeqCst);
        res
    }
}

impl PollHandler<TestFsm, TestFsm> for Handler {
    fn begin(&mut self, _normals: usize) {
        self.round = self.shared.rounds.fetch_add(1, SeqCst) + 1;
    }
    fn handle_control(&mut self, control: &mut TestFsm) -> HandleResult {
        self.handle(control)
    }
    fn handle_normal(&mut self, normal: &mut TestFsm) -> HandleResult {
        self.handle(normal)
    }
}

pub struct Builder {
    pub budget: usize,
    pub shared: Arc<Shared>,
}

impl HandlerBuilder<TestFsm, TestFsm> for Builder {
    type Handler = Handler;
    fn build(&mut self) -> Handler {
        Handler { budget: self.budget, shared: self.shared.clone(), round: 0 }
    }
}

pub type TestRouter = Router<TestFsm, TestFsm>;
pub type TestSystem = BatchSystem<TestFsm, TestFsm>;

/// A system whose control FSM has id `u64::MAX` (recorded in the last slot).
pub fn system(cfg: &Config, shared: &Arc<Shared>, spawn: bool) -> (TestRouter, TestSystem) {
    let (tx, rx) = mailbox_channel(cfg.mailbox_capacity);
    let control = TestFsm {
        id: u64::MAX,
        rx,
        last_seq: vec![None; 64],
        stopped: false,
        shared: shared.clone(),
    };
    let (router, mut system) = create_system(cfg, tx, Box::new(control)).unwrap();
    if spawn {
        system
            .spawn("test-poller", Builder { budget: cfg.messages_per_tick, shared: shared.clone() })
            .unwrap();
    }
    (router, system)
}

/// Polls `cond` until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    cond()
}
