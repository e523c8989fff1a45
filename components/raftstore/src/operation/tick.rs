//! Ticks: the store's ticker gives every peer one base tick; here, and only here, the peer
//! decides which kinds of periodic work are due and runs each with one call.
//!
//! ```text
//! ticker ──PeerMsg::Tick──▶ on_tick: ticks += 1
//!   for each PeerTick due (every N base ticks, N from the config):
//!     Raft               raft's logical clock: elections, heartbeats      every tick
//!     LogGc              leader proposes CompactLog; the entry cache      raft_log_gc_tick_interval
//!                        lets go of what was applied and replicated
//!     PdHeartbeat        leader reports its region                        pd_heartbeat_tick_interval
//!     LeaseCheck         leader renews a lease about to lapse             lease_check_interval
//!     SplitCheck         leader checks a grown region                     split_region_check_tick_interval
//!     ReadRetry          lost ReadIndex rounds resent, reads stuck        every tick
//!                        behind a split failed
//!     TransferCheck      the transfer fence and a pending hand-over       every tick
//!     SnapshotSendCheck  snapshot sends settled with raft                 every tick
//!     MergeCheck         a merge source asks its target to commit         merge_check_tick_interval
//!                        (or votes to roll back)
//!     StaleCheck         a peer long without a leader asks the placement  peer_stale_state_check_interval
//!                        driver whether it is still a member
//!     Hibernate          a leader with nothing in flight proposes sleep   every tick
//! ```
//!
//! A sleeping peer (`operation/hibernate.rs`) gets a tick only every `hibernated_tick_interval`
//! and runs none of these, only its slow checks.

use std::time::Duration;

use engine::{KvEngine, RaftEngine};

use crate::{batch::StoreContext, raft::peer::Peer, transport::Transport, Config};

/// A kind of periodic work of a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerTick {
    /// Raft's logical clock.
    Raft,
    /// Log compaction, proposed by a leader.
    LogGc,
    /// A leader's region heartbeat to the placement driver.
    PdHeartbeat,
    /// A leader renewing a lease that would lapse within two checks.
    LeaseCheck,
    /// A leader checking whether its region should split.
    SplitCheck,
    /// Lost ReadIndex rounds resent; reads stuck behind a split answered.
    ReadRetry,
    /// A leader transfer's fence, and a pending hand-over of leadership.
    TransferCheck,
    /// Snapshot sends that never finished reported to raft as failed.
    SnapshotSendCheck,
    /// A merge source asking its target to commit the merge, or voting to roll it back.
    MergeCheck,
    /// A peer long without a leader asking the placement driver whether it is stale.
    StaleCheck,
    /// A leader with nothing in flight proposing sleep (see `operation::hibernate`).
    Hibernate,
}

impl PeerTick {
    /// Every kind, in the order they run within one base tick.
    pub const ALL: [PeerTick; 11] = [
        PeerTick::Raft,
        PeerTick::LogGc,
        PeerTick::PdHeartbeat,
        PeerTick::LeaseCheck,
        PeerTick::SplitCheck,
        PeerTick::ReadRetry,
        PeerTick::TransferCheck,
        PeerTick::SnapshotSendCheck,
        PeerTick::MergeCheck,
        PeerTick::StaleCheck,
        PeerTick::Hibernate,
    ];

    /// How many base ticks apart this kind runs under `cfg` (at least 1).
    pub fn every(self, cfg: &Config) -> u64 {
        let ticks = |interval: Duration| {
            (interval.as_nanos() / cfg.raft_base_tick_interval.as_nanos().max(1)).max(1) as u64
        };
        match self {
            PeerTick::LogGc => ticks(cfg.raft_log_gc_tick_interval),
            PeerTick::PdHeartbeat => ticks(cfg.pd_heartbeat_tick_interval),
            PeerTick::LeaseCheck => ticks(cfg.lease_check_interval),
            PeerTick::SplitCheck => ticks(cfg.split_region_check_tick_interval),
            PeerTick::MergeCheck => ticks(cfg.merge_check_tick_interval),
            PeerTick::StaleCheck => ticks(cfg.peer_stale_state_check_interval),
            PeerTick::Raft
            | PeerTick::ReadRetry
            | PeerTick::TransferCheck
            | PeerTick::SnapshotSendCheck
            | PeerTick::Hibernate => 1,
        }
    }
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// One base tick: every kind of periodic work that is due.
    pub(crate) fn on_tick<T: Transport>(&mut self, ctx: &mut StoreContext<EK, ER, T>) {
        if self.hibernation.is_idle() {
            return self.on_idle_tick(ctx); // no raft clock while asleep
        }
        self.ticks += 1;
        let now = ctx.clock.now(); // one reading for the whole tick
        for tick in PeerTick::ALL {
            if self.ticks.is_multiple_of(tick.every(&ctx.cfg)) {
                self.on_peer_tick(tick, ctx, now);
            }
        }
    }

    fn on_peer_tick<T: Transport>(
        &mut self,
        tick: PeerTick,
        ctx: &mut StoreContext<EK, ER, T>,
        now: Duration,
    ) {
        let (cfg, election_ticks) = (&ctx.cfg, ctx.cfg.raft_election_timeout_ticks as u64);
        match tick {
            PeerTick::Raft => {
                // A leader a write woke keeps quiet a few ticks: the write's append reaches
                // every follower, and most often the region sleeps again before any heartbeat.
                if !self.hibernation.keeps_quiet(self.ticks, cfg) || !self.is_leader() {
                    self.raft_group.tick();
                }
            }
            PeerTick::LogGc => self.on_log_gc_tick(cfg),
            PeerTick::PdHeartbeat => self.heartbeat_pd(ctx),
            PeerTick::LeaseCheck => self.on_lease_check(ctx),
            PeerTick::SplitCheck => self.on_split_check_tick(ctx),
            PeerTick::ReadRetry => self.on_read_retry_tick(election_ticks),
            PeerTick::TransferCheck => self.on_transfer_check_tick(ctx, now),
            PeerTick::SnapshotSendCheck => {
                self.check_snapshot_sends(now, cfg.snap_send_timeout, &ctx.counters)
            }
            PeerTick::MergeCheck => self.on_merge_check_tick(ctx),
            PeerTick::StaleCheck => self.on_stale_check_tick(ctx),
            PeerTick::Hibernate => self.on_hibernate_tick(ctx),
        }
    }

    fn on_log_gc_tick(&mut self, cfg: &Config) {
        self.compact_entry_cache();
        self.propose_log_gc(cfg);
    }

    fn on_read_retry_tick(&mut self, election_ticks: u64) {
        self.retry_lost_reads(election_ticks);
        self.fail_reads_stuck_behind_split(election_ticks);
    }

    fn on_transfer_check_tick<T: Transport>(
        &mut self,
        ctx: &StoreContext<EK, ER, T>,
        now: Duration,
    ) {
        self.maybe_fence_transfer(now);
        self.drive_hand_over(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_runs_every_so_many_base_ticks() {
        let ms = Duration::from_millis;
        let cfg = Config {
            raft_base_tick_interval: ms(10),
            raft_log_gc_tick_interval: ms(100),
            pd_heartbeat_tick_interval: ms(25), // not a multiple: rounded down
            lease_check_interval: ms(5),        // shorter than a tick: every tick
            split_region_check_tick_interval: ms(10),
            merge_check_tick_interval: ms(30),
            peer_stale_state_check_interval: ms(200),
            ..Config::for_tests()
        };
        let every: Vec<u64> = PeerTick::ALL.iter().map(|t| t.every(&cfg)).collect();
        assert_eq!(every, [1, 10, 2, 1, 1, 1, 1, 1, 3, 20, 1]);
    }

    #[test]
    fn raft_ticks_first() {
        assert_eq!(PeerTick::ALL[0], PeerTick::Raft, "the rest see raft's clock moved");
    }
}
