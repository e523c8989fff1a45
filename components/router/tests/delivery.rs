//! Every message reaches its FSM exactly once and in order, under many concurrent senders,
//! and no FSM is ever handled by two pollers at once.

mod support;

use std::{sync::atomic::Ordering::SeqCst, time::Duration};

use router::{Config, SendError};
use support::*;

const SENDERS: usize = 8;
const FSMS: u64 = 1_000;
const PER_FSM_PER_SENDER: u64 = 100;

#[test]
fn ordered_exactly_once_under_concurrent_senders() {
    let shared = Shared::new(FSMS as usize);
    let cfg =
        Config { pool_size: 4, max_batch_size: 64, messages_per_tick: 32, ..Config::default() };
    let (router, mut system) = system(&cfg, &shared, true);
    router.register_all((0..FSMS).map(|id| (id, new_fsm(id, 1024, &shared).0)));

    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let router = router.clone();
            std::thread::spawn(move || {
                for seq in 0..PER_FSM_PER_SENDER {
                    for id in 0..FSMS {
                        let mut msg = Msg::Seq { sender, seq };
                        loop {
                            match router.try_send(id, msg) {
                                Ok(()) => break,
                                Err(e @ SendError::Full { .. }) => {
                                    msg = e.into_inner();
                                    std::thread::yield_now();
                                }
                                Err(e) => panic!("send failed: {e}"),
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let expected = SENDERS as u64 * FSMS * PER_FSM_PER_SENDER;
    assert!(
        wait_until(Duration::from_secs(60), || shared.total() == expected),
        "delivered {} of {expected}",
        shared.total()
    );
    for id in 0..FSMS as usize {
        assert_eq!(shared.received[id].load(SeqCst), SENDERS as u64 * PER_FSM_PER_SENDER);
    }
    assert_eq!(shared.violations.load(SeqCst), 0, "order, duplicate or concurrency violations");
    let m = system.metrics();
    assert_eq!(m.messages, expected);
    assert!(m.rounds > 0 && m.max_batch <= cfg.max_batch_size, "{m:?}");
    system.shutdown();
    assert_eq!(shared.dropped.load(SeqCst), FSMS as usize + 1, "every FSM and the control dropped");
}
