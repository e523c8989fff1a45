//! Errors hand the message back; close, re-register and shutdown behave; the control FSM goes
//! first.

mod support;

use std::{
    sync::atomic::{AtomicBool, Ordering::SeqCst},
    sync::Arc,
    time::Duration,
};

use router::{Cadence, Config, SendError};
use support::*;

fn seq(sender: usize, seq: u64) -> Msg {
    Msg::Seq { sender, seq }
}

#[test]
fn unknown_address_returns_the_message() {
    let shared = Shared::new(4);
    let (router, _system) = system(&Config::default(), &shared, true);
    match router.try_send(9, seq(3, 0)) {
        Err(e @ SendError::NotFound { addr: 9, .. }) => {
            assert!(!e.is_retryable());
            assert!(matches!(e.into_inner(), Msg::Seq { sender: 3, seq: 0 }));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn full_mailbox_refuses_try_send_but_not_force_send() {
    let shared = Shared::new(4);
    let cfg = Config { mailbox_capacity: 4, ..Config::default() };
    let (router, _system) = system(&cfg, &shared, false); // no pollers: mail piles up
    router.register(1, new_fsm(1, 4, &shared).0);
    for i in 0..4 {
        router.try_send(1, seq(0, i)).unwrap();
    }
    let err = router.try_send(1, seq(0, 4)).unwrap_err();
    assert!(err.is_retryable() && matches!(err, SendError::Full { addr: 1, .. }));
    router.force_send(1, err.into_inner()).unwrap();
    assert_eq!(router.mailbox(1).unwrap().len(), 5);
}

#[test]
fn close_then_reregister() {
    let shared = Shared::new(4);
    let (router, _system) = system(&Config::default(), &shared, true);
    router.register(1, new_fsm(1, 64, &shared).0);
    let handle = router.mailbox(1).unwrap();
    handle.try_send(Msg::Noop).unwrap();
    assert!(wait_until(Duration::from_secs(5), || shared.received[1].load(SeqCst) == 1));
    assert!(router.close(1));
    assert!(!router.close(1));
    assert!(wait_until(Duration::from_secs(5), || shared.dropped.load(SeqCst) == 1), "FSM dropped");
    assert!(matches!(router.try_send(1, Msg::Noop), Err(SendError::NotFound { .. })));
    assert!(
        matches!(handle.try_send(Msg::Noop), Err(SendError::Closed { .. })),
        "old handle refused"
    );

    let (mailbox, ()) = new_fsm(1, 64, &shared);
    router.register(1, mailbox.clone());
    assert!(router.is_registered(1, &mailbox));
    router.try_send(1, Msg::Noop).unwrap();
    assert!(wait_until(Duration::from_secs(5), || shared.received[1].load(SeqCst) == 2));

    let (replacement, ()) = new_fsm(1, 64, &shared);
    router.register(1, replacement);
    assert!(mailbox.is_closed(), "registering over a mailbox closes it");
    assert!(wait_until(Duration::from_secs(5), || shared.dropped.load(SeqCst) == 2));
}

#[test]
fn a_stopped_fsm_is_dropped_and_refuses_mail() {
    let shared = Shared::new(4);
    let (router, _system) = system(&Config::default(), &shared, true);
    router.register(2, new_fsm(2, 64, &shared).0);
    router.try_send(2, Msg::Stop).unwrap();
    assert!(wait_until(Duration::from_secs(5), || shared.dropped.load(SeqCst) == 1));
    assert!(router.try_send(2, Msg::Noop).is_err());
    assert!(!router.contains(2));
}

#[test]
fn broadcast_reaches_every_mailbox() {
    let shared = Shared::new(10);
    let (router, _system) = system(&Config::default(), &shared, true);
    router.register_all((0..10).map(|id| (id, new_fsm(id, 64, &shared).0)));
    assert_eq!(router.len(), 10);
    assert_eq!(router.broadcast_normal(|| Msg::Noop), 10);
    assert!(wait_until(Duration::from_secs(5), || shared.total() == 10));
}

#[test]
fn a_broadcast_reaches_only_the_mailboxes_its_cadence_covers() {
    let shared = Shared::new(10);
    let (router, _system) = system(&Config::default(), &shared, true);
    router.register_all((0..10).map(|id| (id, new_fsm(id, 64, &shared).0)));
    for id in 0..4 {
        assert!(router.set_cadence(id, Cadence::Slow));
    }
    for id in 4..6 {
        assert!(router.set_cadence(id, Cadence::Rare));
    }
    assert!(!router.set_cadence(99, Cadence::Slow), "nothing registered there");
    assert_eq!(router.broadcast_normal_at(Cadence::Every, || Msg::Noop), 4);
    assert!(wait_until(Duration::from_secs(5), || shared.total() == 4));
    router.try_send(0, Msg::Noop).unwrap(); // a direct send still arrives
    assert!(wait_until(Duration::from_secs(5), || shared.total() == 5));
    assert_eq!(router.broadcast_normal_at(Cadence::Slow, || Msg::Noop), 8);
    assert!(wait_until(Duration::from_secs(5), || shared.total() == 13));
    assert!(router.set_cadence(1, Cadence::Every));
    assert!(router.set_cadence(4, Cadence::Slow));
    assert!(router.set_cadence(0, Cadence::Rare));
    assert_eq!(router.broadcast_normal_at(Cadence::Every, || Msg::Noop), 5);
    assert_eq!(router.broadcast_normal_at(Cadence::Slow, || Msg::Noop), 8);
    assert_eq!(router.broadcast_normal_at(Cadence::Rare, || Msg::Noop), 10);
    assert!(wait_until(Duration::from_secs(5), || shared.total() == 36));
    assert!(router.close(1));
    assert_eq!(router.broadcast_normal_at(Cadence::Every, || Msg::Noop), 4, "closed: gone");
}

#[test]
fn shutdown_with_messages_in_flight_blocks_nobody() {
    let shared = Shared::new(100);
    let cfg = Config { pool_size: 2, ..Config::default() };
    let (router, mut system) = system(&cfg, &shared, true);
    router.register_all((0..100).map(|id| (id, new_fsm(id, 1 << 20, &shared).0)));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|sender| {
            let router = router.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut refused = 0u64;
                for seq in 0.. {
                    match router.force_send(seq % 100, Msg::Seq { sender, seq: seq / 100 }) {
                        Ok(()) => {}
                        Err(SendError::Closed { .. }) => refused += 1,
                        Err(e) => panic!("{e}"),
                    }
                    if refused > 0 && stop.load(SeqCst) {
                        return refused;
                    }
                }
                unreachable!()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    system.shutdown();
    stop.store(true, SeqCst);
    for s in senders {
        assert!(s.join().unwrap() > 0, "sends after shutdown are refused");
    }
    assert_eq!(shared.dropped.load(SeqCst), 101, "all FSMs and the control dropped");
    assert!(router.send_control(Msg::Noop).is_err());
    assert_eq!(shared.violations.load(SeqCst), 0);
    system.shutdown(); // idempotent
}

#[test]
fn control_fsm_goes_first() {
    let shared = Shared::new(16);
    let cfg = Config { pool_size: 1, ..Config::default() };
    let (router, _system) = system(&cfg, &shared, true);
    router.register_all((0..11).map(|id| (id, new_fsm(id, 64, &shared).0)));
    let (gate_tx, gate_rx) = crossbeam_channel::bounded(0);
    router.try_send(0, Msg::Gate(gate_rx)).unwrap(); // the only poller now blocks in FSM 0
    assert!(wait_until(Duration::from_secs(5), || !shared.log.lock().unwrap().is_empty()));
    for id in 1..=10 {
        router.try_send(id, Msg::Noop).unwrap();
    }
    router.send_control(Msg::Noop).unwrap();
    gate_tx.send(()).unwrap();
    assert!(wait_until(Duration::from_secs(5), || shared.total() == 11));
    let log = shared.log.lock().unwrap();
    let pos = |id: u64| log.iter().position(|(i, _)| *i == id).unwrap();
    let control = pos(u64::MAX);
    for id in 1..=10 {
        assert!(control < pos(id), "control handled after FSM {id}: {log:?}");
    }
}
