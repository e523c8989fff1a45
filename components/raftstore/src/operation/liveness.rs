//! Store liveness: one check per pair of stores, not one per sleeping region (TiKV's
//! store-unreachable wake-up).
//!
//! A sleeping follower must notice when its leader dies, or its region would never elect a
//! new one. Asking the leader once per region costs a message and its answer per sleeping
//! follower per interval. Instead the store's FSM pings every store that holds a peer of one
//! of its regions, once per `hibernated_tick_interval`, and tells its peers when one stops
//! answering:
//!
//! ```text
//! ticker ──StoreMsg::Tick──▶ StoreFsm: for each other store S of a region here
//!                              S left 2 pings in a row ──▶ S unreachable: every peer here gets
//!                              unanswered a round each?     PeerMsg::StoreUnreachable(S), once
//!                              ping S (MsgStoreCheck, region 0) ──────▶ S's StoreFsm
//!                            ◀──────────────────── MsgStoreAlive ──────┘
//! PeerMsg::StoreUnreachable(S): a sleeping follower whose leader is on S wakes (PreChaos) and
//!   ticks, so raft elects anew if the leader is gone; an awake leader reports its peers on S
//!   unreachable to raft.
//! ```
//!
//! A follower does not agree to sleep under a leader whose store does not answer. A sleeping
//! leader counts a follower that agreed to sleep, on a store that answers, as heard from (it
//! is not down), so the placement driver is not told of down peers that only sleep. A sleeping
//! follower still asks its leader directly, but only once per
//! `sleeping_follower_check_interval` (minutes in production): that is how a follower removed
//! while it was cut off learns it, with its store reachable again.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Mutex,
    time::Duration,
};

use engine::{KvEngine, RaftEngine};
use proto::raft_serverpb::{ExtraMessageType, RaftMessage};
use slog::{info, warn};

use crate::{batch::StoreContext, msg::PeerMsg, transport::Transport};

/// Pings in a row a store may leave unanswered, each for a whole round, before it counts as
/// unreachable: one lost packet is not a dead store.
pub const MISSED_PINGS: u32 = 2;

/// What a store knows of the other stores' reachability, shared by its pollers.
#[derive(Debug, Default)]
pub struct StoreLiveness {
    inner: Mutex<Pings>,
}

#[derive(Debug, Default)]
struct Pings {
    /// Store id → pings sent to it and not answered since its last answer.
    unanswered: HashMap<u64, u32>,
    /// Clock time of the last round.
    last_round: Option<Duration>,
}

/// What one liveness round does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Stores to ping now.
    pub ping: Vec<u64>,
    /// Stores that just left `MISSED_PINGS` pings in a row unanswered.
    pub unreachable: Vec<u64>,
}

impl StoreLiveness {
    fn pings(&self) -> std::sync::MutexGuard<'_, Pings> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One round at `now` over `stores` (the other stores of this store's regions), rounds
    /// meant to be `interval` apart: every one is pinged, and one that just left
    /// `MISSED_PINGS` pings in a row unanswered is unreachable (reported once, not every
    /// round). `None` for a round less than half an interval after the last (ticks handled
    /// late, back to back), which would count pings as missed that had no time to be answered.
    /// Stores no longer among `stores` are forgotten.
    pub fn round(
        &self,
        stores: &BTreeSet<u64>,
        now: Duration,
        interval: Duration,
    ) -> Option<Round> {
        let mut pings = self.pings();
        if pings.last_round.is_some_and(|t| now.saturating_sub(t) < interval / 2) {
            return None;
        }
        pings.last_round = Some(now);
        pings.unanswered.retain(|s, _| stores.contains(s));
        let mut round = Round::default();
        for s in stores {
            let n = pings.unanswered.entry(*s).or_insert(0);
            if *n == MISSED_PINGS {
                round.unreachable.push(*s);
            }
            *n = n.saturating_add(1);
            round.ping.push(*s);
        }
        Some(round)
    }

    /// Store `store` answered a ping. Returns whether it counted as unreachable.
    pub fn on_answer(&self, store: u64) -> bool {
        self.pings().unanswered.insert(store, 0).is_some_and(|n| n > MISSED_PINGS)
    }

    /// Whether `store` answered every ping but the latest (a store not pinged yet counts as
    /// reachable).
    pub fn is_reachable(&self, store: u64) -> bool {
        self.pings().unanswered.get(&store).is_none_or(|n| *n <= 1)
    }
}

/// Whether `msg` is a store-level liveness message (region 0), for the store FSM itself.
pub(crate) fn is_liveness_message(msg: &RaftMessage) -> bool {
    msg.region_id == 0
        && msg.has_extra()
        && matches!(
            msg.get_extra().get_field_type(),
            ExtraMessageType::MsgStoreCheck | ExtraMessageType::MsgStoreAlive
        )
}

/// The store's liveness round (`StoreMsg::Tick`, every `hibernated_tick_interval`).
pub(crate) fn on_liveness_tick<EK: KvEngine, ER: RaftEngine, T: Transport>(
    ctx: &mut StoreContext<EK, ER, T>,
) {
    let stores = ctx.meta.lock().unwrap_or_else(|e| e.into_inner()).peer_stores();
    let (now, interval) = (ctx.clock.now(), ctx.cfg.hibernated_tick_interval);
    let Some(round) = ctx.liveness.round(&stores, now, interval) else { return };
    for store in round.unreachable {
        warn!(ctx.logger, "a store does not answer: waking the regions it leads"; "to" => store);
        // Once: a follower does not fall asleep under a leader on an unreachable store.
        ctx.router.broadcast_normal(|| PeerMsg::StoreUnreachable(store));
    }
    for store in round.ping {
        send(ctx, store, ExtraMessageType::MsgStoreCheck);
    }
}

/// A liveness message from another store: a ping is answered, an answer noted.
pub(crate) fn on_liveness_message<EK: KvEngine, ER: RaftEngine, T: Transport>(
    ctx: &mut StoreContext<EK, ER, T>,
    msg: &RaftMessage,
) {
    let from = msg.get_from_peer().store_id;
    match msg.get_extra().get_field_type() {
        ExtraMessageType::MsgStoreCheck => send(ctx, from, ExtraMessageType::MsgStoreAlive),
        ExtraMessageType::MsgStoreAlive if ctx.liveness.on_answer(from) => {
            info!(ctx.logger, "a store answers again"; "from" => from);
        }
        _ => {}
    }
}

fn send<EK: KvEngine, ER: RaftEngine, T: Transport>(
    ctx: &mut StoreContext<EK, ER, T>,
    to: u64,
    kind: ExtraMessageType,
) {
    let mut msg = RaftMessage::default();
    msg.mut_from_peer().store_id = ctx.store_id;
    msg.mut_to_peer().store_id = to;
    msg.mut_extra().set_field_type(kind);
    if ctx.trans.send(msg).is_ok() {
        ctx.counters.sent_extra(kind);
    } // lost: the next round pings again
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_unreachable_once_it_missed_two_pings_in_a_row() {
        let live = StoreLiveness::default();
        let stores: BTreeSet<u64> = [2, 3].into();
        let (ms, every) = (Duration::from_millis, Duration::from_millis(100));
        let round = |t: u64| live.round(&stores, ms(t), every).expect("a round");
        assert_eq!(round(0), Round { ping: vec![2, 3], unreachable: vec![] });
        assert!(live.is_reachable(2) && live.is_reachable(3), "pings in flight");
        assert!(!live.on_answer(2));
        assert_eq!(round(100).unreachable, Vec::<u64>::new(), "3 missed one: not yet");
        assert!(live.is_reachable(2) && !live.is_reachable(3));
        assert!(live.round(&stores, ms(140), every).is_none(), "a late tick right after");
        assert!(!live.on_answer(2));
        assert_eq!(round(200).unreachable, vec![3], "3 missed two in a row");
        assert!(!live.on_answer(2));
        assert_eq!(round(300).unreachable, Vec::<u64>::new(), "reported once, not each round");
        assert!(live.on_answer(3), "3 was unreachable and answers again");
        assert!(live.is_reachable(3));
        // A store no region here shares any more is forgotten: it starts afresh.
        live.round(&[2].into(), ms(400), every);
        assert!(live.is_reachable(3));
        let fifth = live.round(&stores, ms(500), every).unwrap();
        assert_eq!(fifth.unreachable, vec![2], "2 missed the pings of 300 and 400");
    }
}
