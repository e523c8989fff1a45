//! Configuration of a store.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Tuning of a store's raft groups, log GC, apply and batch systems.
///
/// Times are counted in base ticks where raft counts ticks, so the relation that matters
/// (heartbeat < election) holds whatever the tick length.
///
/// In a TOML file (section `[raftstore]`) every field is optional; durations are strings
/// such as `"10ms"` or `"1m 30s"`, sizes are bytes. Unknown keys are refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Length of one raft tick.
    #[serde(with = "humantime_serde")]
    pub raft_base_tick_interval: Duration,
    /// Ticks between leader heartbeats.
    pub raft_heartbeat_ticks: usize,
    /// Ticks without a leader before a follower campaigns (raft randomises up to twice this).
    pub raft_election_timeout_ticks: usize,
    /// Longest leader lease. Must end at least one tick before the election timeout: a
    /// follower's election can fire up to a tick early, and a lease overlapping it would let
    /// two leaders serve reads (TiKV #9728).
    #[serde(with = "humantime_serde")]
    pub raft_store_max_leader_lease: Duration,
    /// How often a leader checks its lease. An idle leader whose lease ends within two
    /// intervals renews it through a ReadIndex round, so readers of an idle region stay on
    /// the local path.
    #[serde(with = "humantime_serde")]
    pub lease_check_interval: Duration,
    /// A peer recovered when its store starts drops vote and pre-vote requests for one
    /// election timeout. Before the restart it may have backed a leader's lease, and it no
    /// longer knows that leader: voting at once could elect a second leader while the first
    /// still serves lease reads (TiKV #15035). Off only in tests that need instant elections.
    pub refuse_votes_after_start: bool,
    /// Most in-flight append messages per follower.
    pub raft_max_inflight_msgs: usize,
    /// Most bytes of entries in one append message.
    pub raft_max_size_per_msg: u64,
    /// Most bytes of one proposed entry; larger proposals get `RaftEntryTooLarge`.
    pub raft_entry_max_size: u64,
    /// Most bytes of its log's tail a peer keeps in memory, so that entries just appended are
    /// sent, applied and looked up without reading the raft engine (0: none). The tail is
    /// released once applied and, on a leader, replicated to every follower.
    pub raft_entry_cache_limit: usize,
    /// Sync the raft log before acknowledging; off trades durability on power loss for speed.
    pub sync_log: bool,
    /// How often a leader considers compacting its log.
    #[serde(with = "humantime_serde")]
    pub raft_log_gc_tick_interval: Duration,
    /// Keep at least this many applied entries behind the slowest follower.
    pub raft_log_gc_threshold: u64,
    /// Compact once this many applied entries pile up, even if a follower lags (it then
    /// catches up by snapshot).
    pub raft_log_gc_count_limit: u64,
    /// Compact once the applied log exceeds this many bytes, even if a follower lags.
    /// Validated but not yet enforced: peers do not track their log's byte size yet.
    pub raft_log_gc_size_limit: u64,
    /// Largest piece of a snapshot sent in one message; larger snapshots go out in pieces.
    pub snap_chunk_size: usize,
    /// A snapshot sent to a follower that has neither applied nor refused it within this is
    /// reported failed to raft, which then sends another (a piece lost, or the follower's
    /// store restarted while pieces were on the way).
    #[serde(with = "humantime_serde")]
    pub snap_send_timeout: Duration,
    /// How often a leader reports its region to the placement driver.
    #[serde(with = "humantime_serde")]
    pub pd_heartbeat_tick_interval: Duration,
    /// A peer the leader has not heard from for this long is reported down.
    #[serde(with = "humantime_serde")]
    pub max_peer_down_duration: Duration,
    /// How often a leader considers checking whether its region should split.
    #[serde(with = "humantime_serde")]
    pub split_region_check_tick_interval: Duration,
    /// Bytes written to a region since its last check that trigger the next check.
    pub region_split_check_diff: u64,
    /// A region larger than this (keys and values, in bytes) is split...
    pub region_max_size: u64,
    /// ...into regions of about this size.
    pub region_split_size: u64,
    /// A region with more keys than this is split...
    pub region_max_keys: u64,
    /// ...into regions of about this many keys.
    pub region_split_keys: u64,
    /// Most split keys of one split (the region becomes at most this many plus one).
    pub batch_split_limit: u64,
    /// A merge is refused when the slowest follower of the source lacks more than this many
    /// entries (they travel with the merge, to let a lagging source peer catch up).
    pub merge_max_log_gap: u64,
    /// How often a merging source peer asks its target to commit the merge (or, when the
    /// target cannot, votes to roll it back).
    #[serde(with = "humantime_serde")]
    pub merge_check_tick_interval: Duration,
    /// How often a peer checks whether it has been without a leader for too long.
    #[serde(with = "humantime_serde")]
    pub peer_stale_state_check_interval: Duration,
    /// A peer without a leader for this long asks the placement driver whether it is still a
    /// member of its region (it may have been removed, with no member left to tell it).
    #[serde(with = "humantime_serde")]
    pub max_leader_missing_duration: Duration,
    /// Idle regions sleep: once the leader has nothing in flight and every live follower holds
    /// its whole log, leader and followers agree to stop ticking (no heartbeats, no election
    /// clock) until a proposal, a read that needs the leader, or a raft message wakes them.
    /// Off only for tests that need constant ticking.
    pub hibernate_regions: bool,
    /// How often a sleeping leader still runs its slow periodic work (its report to the
    /// placement driver), and how often the store pings the other stores of its regions: a
    /// store that misses a ping for a whole interval wakes the sleeping followers of the
    /// leaders it holds, so a dead leader is replaced.
    #[serde(with = "humantime_serde")]
    pub hibernated_tick_interval: Duration,
    /// How often a sleeping follower asks its leader directly whether it still leads (two
    /// checks without an answer wake it). Store liveness catches a dead leader much sooner;
    /// this catches a follower removed while it was cut off, or a leader that lost its peer.
    #[serde(with = "humantime_serde")]
    pub sleeping_follower_check_interval: Duration,
    /// How often a sleeping leader reports its region to the placement driver while the
    /// report would say what the last one said (at its first slow tick this long after the
    /// last report); a changed report (a peer down or back, a new size) goes at the next slow
    /// tick. The placement driver answers reports with operators, so this bounds how long an
    /// idle region waits for one (a merge of idle regions, a leader move).
    #[serde(with = "humantime_serde")]
    pub hibernated_pd_heartbeat_interval: Duration,
    /// Most entries the apply side writes in one kv write batch.
    pub apply_batch_max_entries: usize,
    /// Poller threads of the store batch system.
    pub store_pool_size: usize,
    /// Most messages a peer handles in one round before others get their turn.
    pub messages_per_tick: usize,
    /// Soft capacity of a peer's mailbox; commands beyond it get `ServerIsBusy`.
    pub mailbox_capacity: usize,
    /// Poller threads of the apply batch system.
    pub apply_pool_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            raft_base_tick_interval: Duration::from_secs(1),
            raft_heartbeat_ticks: 2,
            raft_election_timeout_ticks: 10,
            raft_store_max_leader_lease: Duration::from_secs(8),
            lease_check_interval: Duration::from_millis(2250),
            refuse_votes_after_start: true,
            raft_max_inflight_msgs: 256,
            raft_max_size_per_msg: 1 << 20,
            raft_entry_max_size: 8 << 20,
            raft_entry_cache_limit: crate::raft::entry_cache::DEFAULT_ENTRY_CACHE_LIMIT,
            sync_log: true,
            raft_log_gc_tick_interval: Duration::from_secs(3),
            raft_log_gc_threshold: 50,
            raft_log_gc_count_limit: 72_000,
            raft_log_gc_size_limit: 72 << 20,
            pd_heartbeat_tick_interval: Duration::from_secs(10),
            max_peer_down_duration: Duration::from_secs(600),
            split_region_check_tick_interval: Duration::from_secs(10),
            region_split_check_diff: 6 << 20,
            region_max_size: 144 << 20,
            region_split_size: 96 << 20,
            region_max_keys: 1_440_000,
            region_split_keys: 960_000,
            batch_split_limit: 10,
            merge_max_log_gap: 10,
            merge_check_tick_interval: Duration::from_secs(2),
            peer_stale_state_check_interval: Duration::from_secs(60),
            max_leader_missing_duration: Duration::from_secs(300),
            snap_chunk_size: 1 << 20,
            snap_send_timeout: Duration::from_secs(60),
            hibernate_regions: true,
            hibernated_tick_interval: Duration::from_secs(10),
            sleeping_follower_check_interval: Duration::from_secs(120),
            hibernated_pd_heartbeat_interval: Duration::from_secs(60),
            apply_batch_max_entries: 256,
            store_pool_size: 2,
            messages_per_tick: 4096,
            mailbox_capacity: 4096,
            apply_pool_size: 2,
        }
    }
}

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("raftstore config: {field} {reason}")]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// Why it is refused.
    pub reason: String,
}

fn refuse(field: &'static str, reason: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError { field, reason: reason.into() })
}

/// The longest duration any setting takes.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// The most ticks any tick count takes.
pub const MAX_TICKS: usize = 100_000;

impl Config {
    /// Short ticks for tests and simulations: elections in tens of milliseconds, a small log
    /// GC threshold so that log GC and snapshots happen.
    pub fn for_tests() -> Self {
        Config {
            raft_base_tick_interval: Duration::from_millis(10),
            raft_election_timeout_ticks: 10,
            raft_heartbeat_ticks: 2,
            raft_store_max_leader_lease: Duration::from_millis(80),
            lease_check_interval: Duration::from_millis(20),
            raft_log_gc_tick_interval: Duration::from_millis(50),
            raft_log_gc_threshold: 20,
            raft_log_gc_count_limit: 200,
            raft_log_gc_size_limit: 8 << 20,
            pd_heartbeat_tick_interval: Duration::from_millis(100),
            max_peer_down_duration: Duration::from_secs(2),
            split_region_check_tick_interval: Duration::from_millis(50),
            merge_check_tick_interval: Duration::from_millis(50),
            peer_stale_state_check_interval: Duration::from_millis(100),
            max_leader_missing_duration: Duration::from_millis(1000),
            hibernate_regions: true,
            hibernated_tick_interval: Duration::from_millis(200),
            sleeping_follower_check_interval: Duration::from_secs(2),
            hibernated_pd_heartbeat_interval: Duration::from_millis(200),
            snap_chunk_size: 16 << 10,
            snap_send_timeout: Duration::from_secs(1),
            sync_log: false,
            store_pool_size: 1,
            apply_pool_size: 1,
            ..Default::default()
        }
    }

    /// [`Config::for_tests`] with every period scaled to a base tick of `tick` (for_tests'
    /// is 10 ms): the same number of ticks between elections, heartbeats, checks and
    /// timeouts, so that a longer tick slows everything alike and the relations hold.
    pub fn for_tests_with_tick(tick: Duration) -> Self {
        let base = Self::for_tests();
        let scale = |d: Duration| {
            let nanos = d.as_nanos() * tick.as_nanos() / base.raft_base_tick_interval.as_nanos();
            Duration::from_nanos(nanos.min(u64::MAX as u128) as u64)
        };
        Config {
            raft_base_tick_interval: tick,
            raft_store_max_leader_lease: scale(base.raft_store_max_leader_lease),
            lease_check_interval: scale(base.lease_check_interval),
            raft_log_gc_tick_interval: scale(base.raft_log_gc_tick_interval),
            pd_heartbeat_tick_interval: scale(base.pd_heartbeat_tick_interval),
            max_peer_down_duration: scale(base.max_peer_down_duration),
            split_region_check_tick_interval: scale(base.split_region_check_tick_interval),
            merge_check_tick_interval: scale(base.merge_check_tick_interval),
            peer_stale_state_check_interval: scale(base.peer_stale_state_check_interval),
            max_leader_missing_duration: scale(base.max_leader_missing_duration),
            hibernated_tick_interval: scale(base.hibernated_tick_interval),
            sleeping_follower_check_interval: scale(base.sleeping_follower_check_interval),
            hibernated_pd_heartbeat_interval: scale(base.hibernated_pd_heartbeat_interval),
            snap_send_timeout: scale(base.snap_send_timeout).max(base.snap_send_timeout),
            ..base
        }
    }

    /// Checks every field and the relations between them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_bounds()?;
        self.check_values()
    }

    /// Bounds far beyond any useful value, so that products of durations and tick counts
    /// cannot overflow anywhere.
    fn check_bounds(&self) -> Result<(), ConfigError> {
        let durations = [
            ("raft_base_tick_interval", self.raft_base_tick_interval),
            ("raft_store_max_leader_lease", self.raft_store_max_leader_lease),
            ("lease_check_interval", self.lease_check_interval),
            ("raft_log_gc_tick_interval", self.raft_log_gc_tick_interval),
            ("snap_send_timeout", self.snap_send_timeout),
            ("pd_heartbeat_tick_interval", self.pd_heartbeat_tick_interval),
            ("max_peer_down_duration", self.max_peer_down_duration),
            ("split_region_check_tick_interval", self.split_region_check_tick_interval),
            ("merge_check_tick_interval", self.merge_check_tick_interval),
            ("peer_stale_state_check_interval", self.peer_stale_state_check_interval),
            ("max_leader_missing_duration", self.max_leader_missing_duration),
            ("hibernated_tick_interval", self.hibernated_tick_interval),
            ("sleeping_follower_check_interval", self.sleeping_follower_check_interval),
            ("hibernated_pd_heartbeat_interval", self.hibernated_pd_heartbeat_interval),
        ];
        for (field, value) in durations {
            if value > MAX_DURATION {
                return refuse(field, format!("must be at most {MAX_DURATION:?} (one day)"));
            }
        }
        for (field, ticks) in [
            ("raft_heartbeat_ticks", self.raft_heartbeat_ticks),
            ("raft_election_timeout_ticks", self.raft_election_timeout_ticks),
        ] {
            if ticks > MAX_TICKS {
                return refuse(field, format!("must be at most {MAX_TICKS}"));
            }
        }
        Ok(())
    }

    fn check_values(&self) -> Result<(), ConfigError> {
        if self.raft_base_tick_interval.is_zero() {
            return refuse("raft_base_tick_interval", "must be positive");
        }
        if self.raft_heartbeat_ticks == 0 {
            return refuse("raft_heartbeat_ticks", "must be at least 1");
        }
        if self.raft_election_timeout_ticks <= self.raft_heartbeat_ticks {
            return refuse(
                "raft_election_timeout_ticks",
                format!("must exceed raft_heartbeat_ticks ({})", self.raft_heartbeat_ticks),
            );
        }
        let lease_limit = self.election_timeout().saturating_sub(self.raft_base_tick_interval);
        if self.raft_store_max_leader_lease > lease_limit {
            return refuse(
                "raft_store_max_leader_lease",
                format!("must be at most the election timeout minus one tick ({lease_limit:?})"),
            );
        }
        if self.raft_store_max_leader_lease.is_zero() {
            return refuse("raft_store_max_leader_lease", "must be positive");
        }
        if self.lease_check_interval.is_zero() {
            return refuse("lease_check_interval", "must be positive");
        }
        let positive = [
            ("raft_max_inflight_msgs", self.raft_max_inflight_msgs as u64),
            ("raft_max_size_per_msg", self.raft_max_size_per_msg),
            ("raft_entry_max_size", self.raft_entry_max_size),
            ("raft_log_gc_threshold", self.raft_log_gc_threshold),
            ("apply_batch_max_entries", self.apply_batch_max_entries as u64),
            ("store_pool_size", self.store_pool_size as u64),
            ("apply_pool_size", self.apply_pool_size as u64),
            ("messages_per_tick", self.messages_per_tick as u64),
            ("mailbox_capacity", self.mailbox_capacity as u64),
            ("snap_chunk_size", self.snap_chunk_size as u64),
            ("region_split_check_diff", self.region_split_check_diff),
            ("region_split_size", self.region_split_size),
            ("region_split_keys", self.region_split_keys),
            ("batch_split_limit", self.batch_split_limit),
        ];
        for (field, value) in positive {
            if value == 0 {
                return refuse(field, "must be at least 1");
            }
        }
        if self.raft_log_gc_tick_interval.is_zero() {
            return refuse("raft_log_gc_tick_interval", "must be positive");
        }
        if self.pd_heartbeat_tick_interval.is_zero() {
            return refuse("pd_heartbeat_tick_interval", "must be positive");
        }
        if self.snap_send_timeout < self.election_timeout() {
            return refuse(
                "snap_send_timeout",
                format!("must be at least the election timeout ({:?})", self.election_timeout()),
            );
        }
        if self.raft_log_gc_count_limit < self.raft_log_gc_threshold {
            return refuse(
                "raft_log_gc_count_limit",
                format!("must be at least raft_log_gc_threshold ({})", self.raft_log_gc_threshold),
            );
        }
        if self.split_region_check_tick_interval.is_zero() {
            return refuse("split_region_check_tick_interval", "must be positive");
        }
        if self.merge_check_tick_interval.is_zero() {
            return refuse("merge_check_tick_interval", "must be positive");
        }
        if self.hibernated_tick_interval < self.raft_base_tick_interval {
            return refuse("hibernated_tick_interval", "must be at least raft_base_tick_interval");
        }
        if self.hibernated_tick_interval * 2 > self.max_peer_down_duration {
            // A sleeping leader counts a follower as heard from once per interval (when its
            // store answers): slower, and it would report them down.
            return refuse(
                "hibernated_tick_interval",
                "must be at most half of max_peer_down_duration",
            );
        }
        if self.sleeping_follower_check_interval < self.hibernated_tick_interval {
            return refuse(
                "sleeping_follower_check_interval",
                "must be at least hibernated_tick_interval",
            );
        }
        if self.peer_stale_state_check_interval.is_zero() {
            return refuse("peer_stale_state_check_interval", "must be positive");
        }
        if self.max_leader_missing_duration < self.election_timeout() {
            return refuse(
                "max_leader_missing_duration",
                format!("must be at least the election timeout ({:?})", self.election_timeout()),
            );
        }
        if self.region_split_size > self.region_max_size {
            return refuse("region_split_size", "must not exceed region_max_size");
        }
        if self.region_split_keys > self.region_max_keys {
            return refuse("region_split_keys", "must not exceed region_max_keys");
        }
        if self.raft_entry_max_size > self.raft_log_gc_size_limit {
            return refuse("raft_entry_max_size", "must not exceed raft_log_gc_size_limit");
        }
        Ok(())
    }

    /// How far a leader's lease may run ahead of the copy readers check before the copy is
    /// pushed (a third of the lease): readers see a slightly shorter lease, and the peer
    /// does not write the shared atomics on every renewal.
    pub fn max_lease_drift(&self) -> Duration {
        self.raft_store_max_leader_lease / 3
    }

    /// How much slower than real time a store's lease clock may run without a stale read:
    /// `1 - lease / (election timeout - one tick)`. A lease measured on a clock running at
    /// rate `r` lasts `lease / r` in real time, and must still end before the earliest moment
    /// another peer can be elected (one tick short of the election timeout). The defaults
    /// (lease 8 ticks of a 10-tick election timeout) leave 11%. A clock running fast only
    /// shortens leases.
    pub fn clock_drift_bound(&self) -> f64 {
        let earliest_election =
            self.election_timeout().saturating_sub(self.raft_base_tick_interval);
        if earliest_election.is_zero() {
            return 0.0;
        }
        (1.0 - self.raft_store_max_leader_lease.as_secs_f64() / earliest_election.as_secs_f64())
            .max(0.0)
    }

    /// The election timeout as a duration.
    pub fn election_timeout(&self) -> Duration {
        self.raft_base_tick_interval * self.raft_election_timeout_ticks as u32
    }

    /// The raft-rs configuration of peer `peer_id` that has applied up to `applied`:
    /// check-quorum and pre-vote on, so that an isolated leader steps down and a
    /// partitioned peer does not disrupt the group when it returns. A leader does not
    /// broadcast each commit on its own: followers learn it with the next append, heartbeat
    /// or sleep request, except around admin commands (`operation::ready`, lazy commit).
    pub fn raft_config(&self, peer_id: u64, applied: u64) -> raft::Config {
        raft::Config {
            id: peer_id,
            election_tick: self.raft_election_timeout_ticks,
            heartbeat_tick: self.raft_heartbeat_ticks,
            applied,
            max_size_per_msg: self.raft_max_size_per_msg,
            max_inflight_msgs: self.raft_max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            skip_bcast_commit: true,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_make_a_valid_raft_config() {
        for cfg in [Config::default(), Config::for_tests()] {
            cfg.validate().unwrap();
            let rc = cfg.raft_config(7, 5);
            rc.validate().unwrap();
            assert!(rc.check_quorum && rc.pre_vote);
        }
        assert_eq!(Config::for_tests().election_timeout(), Duration::from_millis(100));
        for cfg in [Config::default(), Config::for_tests()] {
            let bound = cfg.clock_drift_bound();
            assert!((bound - 1.0 / 9.0).abs() < 1e-9, "{bound}: a lease of 8 ticks of 9");
        }
    }

    #[test]
    fn test_settings_scaled_to_any_tick_stay_valid() {
        for ms in [1, 10, 100, 1000] {
            let cfg = Config::for_tests_with_tick(Duration::from_millis(ms));
            cfg.validate().unwrap_or_else(|e| panic!("tick {ms} ms: {e}"));
            assert_eq!(cfg.election_timeout(), Duration::from_millis(ms * 10));
            let every = |d: Duration| d.as_millis() / u128::from(ms);
            assert_eq!(every(cfg.max_peer_down_duration), 200, "tick {ms} ms");
            assert_eq!(every(cfg.hibernated_tick_interval), 20, "tick {ms} ms");
        }
        let tests = Config::for_tests();
        let same = Config::for_tests_with_tick(tests.raft_base_tick_interval);
        assert_eq!(same, tests);
    }

    #[test]
    fn bad_values_name_their_field() {
        let field = |c: Config| c.validate().unwrap_err().field;
        let d = Config::default;
        assert_eq!(
            field(Config { raft_election_timeout_ticks: 2, ..d() }),
            "raft_election_timeout_ticks"
        );
        assert_eq!(field(Config { raft_heartbeat_ticks: 0, ..d() }), "raft_heartbeat_ticks");
        assert_eq!(
            field(Config { raft_base_tick_interval: Duration::ZERO, ..d() }),
            "raft_base_tick_interval"
        );
        assert_eq!(field(Config { apply_pool_size: 0, ..d() }), "apply_pool_size");
        assert_eq!(field(Config { raft_log_gc_count_limit: 10, ..d() }), "raft_log_gc_count_limit");
        assert_eq!(field(Config { raft_entry_max_size: 1 << 30, ..d() }), "raft_entry_max_size");
        assert_eq!(field(Config { region_split_size: 1 << 40, ..d() }), "region_split_size");
        assert_eq!(field(Config { region_split_keys: 1 << 40, ..d() }), "region_split_keys");
        assert_eq!(field(Config { batch_split_limit: 0, ..d() }), "batch_split_limit");
        let slow = |s| Config { hibernated_tick_interval: Duration::from_secs(s), ..d() };
        assert_eq!(field(slow(301)), "hibernated_tick_interval", "beyond half the down time");
        let rare = |s| Config { sleeping_follower_check_interval: Duration::from_secs(s), ..d() };
        assert_eq!(field(rare(9)), "sleeping_follower_check_interval", "below the slow tick");
        let at_most_half =
            Config { sleeping_follower_check_interval: Duration::from_secs(300), ..slow(300) };
        assert!(at_most_half.validate().is_ok());
        assert_eq!(
            field(Config { snap_send_timeout: Duration::from_secs(1), ..d() }),
            "snap_send_timeout"
        );
        assert_eq!(
            field(Config { lease_check_interval: Duration::ZERO, ..d() }),
            "lease_check_interval"
        );
        let lease = |ms| Config { raft_store_max_leader_lease: Duration::from_millis(ms), ..d() };
        assert_eq!(
            field(lease(10_000)),
            "raft_store_max_leader_lease",
            "as long as the election timeout"
        );
        assert_eq!(field(lease(9_001)), "raft_store_max_leader_lease", "within the last tick");
        let missing = Config { max_leader_missing_duration: Duration::from_secs(5), ..d() };
        assert_eq!(field(missing), "max_leader_missing_duration", "shorter than an election");
        lease(9_000).validate().unwrap();
    }

    #[test]
    fn values_whose_products_would_overflow_are_refused() {
        let field = |c: Config| c.validate().unwrap_err().field;
        let d = Config::default;
        let years = Duration::from_secs(1 << 40);
        let huge =
            Config { raft_base_tick_interval: years, raft_election_timeout_ticks: 1000, ..d() };
        assert_eq!(field(huge), "raft_base_tick_interval");
        assert_eq!(field(Config { lease_check_interval: years, ..d() }), "lease_check_interval");
        let ticks = Config { raft_election_timeout_ticks: 1 << 33, ..d() };
        assert_eq!(field(ticks), "raft_election_timeout_ticks");
    }
}
