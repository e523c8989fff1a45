//! A flooded FSM does not starve a quiet one: the quiet one is handled in the round right
//! after it gets mail, and the busy one is sent to the back of the queue.

mod support;

use std::{sync::atomic::Ordering::SeqCst, time::Duration};

use router::Config;
use support::*;

const FLOODED: u64 = 1;
const QUIET: u64 = 2;
const GATED: u64 = 3;
const FLOOD: u64 = 500_000;

/// Rounds in which FSM `id` was handled.
fn rounds_of(shared: &Shared, id: u64) -> Vec<u64> {
    shared.log.lock().unwrap().iter().filter(|(i, _)| *i == id).map(|e| e.1).collect()
}

/// Parks the only poller inside GATED; returns the gate to open and the round it is parked in.
fn park(router: &TestRouter, shared: &Shared) -> (crossbeam_channel::Sender<()>, u64) {
    let before = rounds_of(shared, GATED).len();
    let (gate_tx, gate_rx) = crossbeam_channel::bounded(0);
    router.try_send(GATED, Msg::Gate(gate_rx)).unwrap();
    assert!(wait_until(Duration::from_secs(10), || rounds_of(shared, GATED).len() > before));
    (gate_tx, *rounds_of(shared, GATED).last().unwrap())
}

#[test]
fn flooded_fsm_does_not_delay_a_quiet_one() {
    let shared = Shared::new(4);
    let cfg =
        Config { pool_size: 1, messages_per_tick: 8, reschedule_rounds: 4, ..Config::default() };
    let (router, system) = system(&cfg, &shared, true);
    for id in [FLOODED, QUIET, GATED] {
        router.register(id, new_fsm(id, 1 << 20, &shared).0);
    }
    // Build a real backlog while the poller is parked, then let it work through it.
    let (gate, _) = park(&router, &shared);
    for seq in 0..FLOOD {
        router.force_send(FLOODED, Msg::Seq { sender: 0, seq }).unwrap();
    }
    gate.send(()).unwrap();
    assert!(wait_until(Duration::from_secs(5), || shared.received[1].load(SeqCst) > 1_000));

    // Mid-flood: park the poller in round r, give the quiet FSM mail, let go.
    let (gate, parked_round) = park(&router, &shared);
    router.try_send(QUIET, Msg::Noop).unwrap();
    gate.send(()).unwrap();
    assert!(wait_until(Duration::from_secs(5), || shared.received[2].load(SeqCst) == 1));
    let quiet_round = rounds_of(&shared, QUIET)[0];
    assert_eq!(quiet_round, parked_round + 1, "the quiet FSM waited more than one round");

    assert!(wait_until(Duration::from_secs(60), || shared.received[1].load(SeqCst) == FLOOD));
    let last_flood_round = rounds_of(&shared, FLOODED).into_iter().max().unwrap();
    assert!(last_flood_round > quiet_round, "the flood was still running meanwhile");
    assert_eq!(shared.violations.load(SeqCst), 0);
    assert!(system.metrics().reschedules > 0, "busy FSM was rescheduled: {:?}", system.metrics());
}
