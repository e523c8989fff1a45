//! A store's Prometheus metrics.
//!
//! [`StoreMetrics`] holds what the store's threads count and time: the events where a safety
//! rule refused a message or repaired a peer ([`RaftEvent`]), proposals by kind, raft messages
//! sent and dropped by type, and the append (persist), commit and apply durations.
//! [`StoreGauges`] computes the gauges (regions, leaders, leases by state, pending peers) from
//! the store's meta when the registry is gathered. Both register into the registry the store
//! is started with; the node names it with a `store` label.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use local_reader::{Clock, LeaseState};

use crate::operation::hibernate::GroupState;
use prometheus::{
    core::{Collector, Desc},
    exponential_buckets,
    proto::MetricFamily,
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use proto::raft_serverpb::ExtraMessageType;
use protobuf::ProtobufEnum;
use raft::eraftpb::MessageType;

use crate::store_meta::SharedStoreMeta;

/// An event a safety rule caused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RaftEvent {
    /// A vote or pre-vote request dropped by a peer within an election timeout of its start:
    /// it may have backed a leader's lease before the restart and cannot know.
    VoteDroppedAfterStart,
    /// A message from a peer outside the region with a stale epoch, dropped unstepped.
    StaleMessageDropped,
    /// A GC message sent to a peer that the region no longer holds.
    GcMessageSent,
    /// A peer destroyed because it learned that it was removed or replaced.
    StalePeerDestroyed,
    /// A `MsgTimeoutNow` the receiver's log had outgrown (its transfer was given up), dropped.
    StaleTimeoutNowDropped,
    /// A snapshot send reported failed to raft, which then sends another.
    SnapshotFailed,
    /// A merge target applied CommitMerge (each store counts its own peer).
    MergeCommitted,
    /// A merge source applied RollbackMerge.
    MergeRolledBack,
    /// A peer without a leader for `max_leader_missing_duration` asked the placement driver
    /// whether it is still a member.
    StaleCheckAsked,
}

impl RaftEvent {
    /// Every event, in a fixed order.
    pub const ALL: [RaftEvent; 9] = [
        RaftEvent::VoteDroppedAfterStart,
        RaftEvent::StaleMessageDropped,
        RaftEvent::GcMessageSent,
        RaftEvent::StalePeerDestroyed,
        RaftEvent::StaleTimeoutNowDropped,
        RaftEvent::SnapshotFailed,
        RaftEvent::MergeCommitted,
        RaftEvent::MergeRolledBack,
        RaftEvent::StaleCheckAsked,
    ];

    /// A short stable name, for reports and the `event` label.
    pub fn name(self) -> &'static str {
        match self {
            RaftEvent::VoteDroppedAfterStart => "vote_dropped_after_start",
            RaftEvent::StaleMessageDropped => "stale_message_dropped",
            RaftEvent::GcMessageSent => "gc_message_sent",
            RaftEvent::StalePeerDestroyed => "stale_peer_destroyed",
            RaftEvent::StaleTimeoutNowDropped => "stale_timeout_now_dropped",
            RaftEvent::SnapshotFailed => "snapshot_failed",
            RaftEvent::MergeCommitted => "merge_committed",
            RaftEvent::MergeRolledBack => "merge_rolled_back",
            RaftEvent::StaleCheckAsked => "stale_check_asked",
        }
    }
}

/// What an entry proposed to raft (or a ReadIndex round) is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposalKind {
    /// A write command.
    Write,
    /// A ReadIndex round (reads, or a lease renewal).
    ReadIndex,
    /// A split.
    Split,
    /// A membership change.
    ConfChange,
    /// The empty entry a leader proposes to end a transfer fence.
    Noop,
    /// A log compaction.
    CompactLog,
    /// A merge command (PrepareMerge, CommitMerge, RollbackMerge).
    Merge,
}

impl ProposalKind {
    /// How many kinds there are.
    pub const COUNT: usize = 7;

    /// Whether followers must hear of its commit at once rather than with the next append
    /// or heartbeat: what changes the region (split, membership, merge), and a transfer
    /// fence's no-op.
    pub fn is_urgent(self) -> bool {
        matches!(
            self,
            ProposalKind::Split
                | ProposalKind::ConfChange
                | ProposalKind::Noop
                | ProposalKind::Merge
        )
    }

    const ALL: [ProposalKind; Self::COUNT] = [
        ProposalKind::Write,
        ProposalKind::ReadIndex,
        ProposalKind::Split,
        ProposalKind::ConfChange,
        ProposalKind::Noop,
        ProposalKind::CompactLog,
        ProposalKind::Merge,
    ];

    fn name(self) -> &'static str {
        match self {
            ProposalKind::Write => "write",
            ProposalKind::ReadIndex => "read_index",
            ProposalKind::Split => "split",
            ProposalKind::ConfChange => "conf_change",
            ProposalKind::Noop => "noop",
            ProposalKind::CompactLog => "compact_log",
            ProposalKind::Merge => "merge",
        }
    }
}

/// The counters and histograms of one store, shared by its threads. `Default` makes them
/// unregistered (tests); [`StoreMetrics::register`] adds them to a registry.
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    events: Vec<IntCounter>,
    proposals: Vec<IntCounter>,
    rejected: IntCounterVec,
    /// Indexed by `MessageType` value.
    sent: Vec<IntCounter>,
    dropped: Vec<IntCounter>,
    /// Store-level messages sent (hibernation, liveness), indexed by `ExtraMessageType` value.
    extra_sent: Vec<IntCounter>,
    /// Writing a round's raft log batch (entries and raft states of every peer).
    pub append_duration: Histogram,
    /// From a leader's append of an entry it proposed (a write, a split, a no-op) to its
    /// commit, on the store's clock.
    pub commit_duration: Histogram,
    /// Writing an apply round's kv write batch.
    pub apply_duration: Histogram,
    vecs: Vec<IntCounterVec>,
    /// Peers by hibernation state, indexed by `GroupState::ALL`.
    hibernate: Vec<IntGauge>,
    hibernate_vec: IntGaugeVec,
}

fn counter_vec(name: &str, help: &str, label: &str) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric")
}

fn histogram(name: &str, help: &str) -> Histogram {
    // 50 µs to about 1.6 s, doubling.
    let buckets = exponential_buckets(0.000_05, 2.0, 16).expect("valid buckets");
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric")
}

impl Default for StoreMetrics {
    fn default() -> Self {
        let events = counter_vec(
            "raft_events_total",
            "Events where a safety rule refused a message or repaired a peer.",
            "event",
        );
        let proposals = counter_vec(
            "proposals_total",
            "Entries a leader proposed and ReadIndex rounds a peer started (a follower's go to \
             its leader), by kind.",
            "kind",
        );
        let rejected = counter_vec(
            "proposals_rejected_total",
            "Commands and reads a peer refused before proposing them, by the error's kind.",
            "reason",
        );
        let sent = counter_vec(
            "raft_messages_sent_total",
            "Raft messages sent, by type (a snapshot once per piece).",
            "type",
        );
        let dropped = counter_vec(
            "raft_messages_dropped_total",
            "Raft messages dropped (unsendable, or refused on arrival), by type.",
            "type",
        );
        let extra_sent = counter_vec(
            "raft_extra_messages_sent_total",
            "Messages of the store's own protocols sent (hibernation, store liveness), by type.",
            "type",
        );
        let types: Vec<String> = MessageType::values().iter().map(|t| format!("{t:?}")).collect();
        let extras = ExtraMessageType::values();
        let extra_len = extras.iter().map(|t| t.value() as usize + 1).max().unwrap_or(0);
        let hibernate_vec = IntGaugeVec::new(
            Opts::new("peers_by_hibernate_state", "Peers by hibernation state (idle: asleep)."),
            &["state"],
        )
        .expect("valid metric");
        StoreMetrics {
            hibernate: GroupState::ALL
                .iter()
                .map(|s| hibernate_vec.with_label_values(&[s.name()]))
                .collect(),
            hibernate_vec,
            events: RaftEvent::ALL.iter().map(|e| events.with_label_values(&[e.name()])).collect(),
            proposals: ProposalKind::ALL
                .iter()
                .map(|k| proposals.with_label_values(&[k.name()]))
                .collect(),
            rejected: rejected.clone(),
            sent: types.iter().map(|t| sent.with_label_values(&[t])).collect(),
            dropped: types.iter().map(|t| dropped.with_label_values(&[t])).collect(),
            extra_sent: (0..extra_len)
                .map(|v| {
                    let name = extras.iter().find(|t| t.value() as usize == v);
                    extra_sent
                        .with_label_values(&[&name.map_or(v.to_string(), |t| format!("{t:?}"))])
                })
                .collect(),
            append_duration: histogram(
                "raft_append_duration_seconds",
                "Writing a round's raft log batch (every peer's new entries and raft state).",
            ),
            commit_duration: histogram(
                "raft_commit_duration_seconds",
                "From a leader's append of an entry it proposed (a write, a split, a no-op) to \
                 its commit, on the store's clock.",
            ),
            apply_duration: histogram(
                "apply_duration_seconds",
                "Writing an apply round's batch to the kv engine.",
            ),
            vecs: vec![events, proposals, rejected, sent, dropped, extra_sent],
        }
    }
}

impl StoreMetrics {
    /// Adds every metric to `registry` (once per registry).
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        for v in &self.vecs {
            registry.register(Box::new(v.clone()))?;
        }
        for h in [&self.append_duration, &self.commit_duration, &self.apply_duration] {
            registry.register(Box::new(h.clone()))?;
        }
        registry.register(Box::new(self.hibernate_vec.clone()))
    }

    /// A peer moved from hibernation state `from` to `to` (`None`: not counted).
    pub fn move_hibernate_state(&self, from: Option<GroupState>, to: Option<GroupState>) {
        let index = |s: GroupState| GroupState::ALL.iter().position(|x| *x == s).unwrap_or(0);
        if let Some(s) = from {
            self.hibernate[index(s)].dec();
        }
        if let Some(s) = to {
            self.hibernate[index(s)].inc();
        }
    }

    /// Peers counted in hibernation state `state`.
    pub fn peers_in_hibernate_state(&self, state: GroupState) -> i64 {
        let index = GroupState::ALL.iter().position(|x| *x == state).unwrap_or(0);
        self.hibernate[index].get()
    }

    /// Counts one `event`.
    pub fn inc(&self, event: RaftEvent) {
        self.events[event as usize].inc();
    }

    /// How many `event`s so far.
    pub fn get(&self, event: RaftEvent) -> u64 {
        self.events[event as usize].get()
    }

    /// Every event with its count.
    pub fn all(&self) -> Vec<(RaftEvent, u64)> {
        RaftEvent::ALL.iter().map(|e| (*e, self.get(*e))).collect()
    }

    /// Counts one proposal.
    pub fn proposed(&self, kind: ProposalKind) {
        self.proposals[kind as usize].inc();
    }

    /// Adds a peer's proposal counts (by `ProposalKind`) and zeroes them.
    pub fn take_proposals(&self, made: &mut [u64; ProposalKind::COUNT]) {
        for (counter, n) in self.proposals.iter().zip(made.iter_mut()) {
            if *n > 0 {
                counter.inc_by(std::mem::take(n));
            }
        }
    }

    /// Proposals of `kind` so far.
    pub fn proposals(&self, kind: ProposalKind) -> u64 {
        self.proposals[kind as usize].get()
    }

    /// Counts a command or read refused before it was proposed, by `err`'s kind.
    pub fn rejected(&self, err: &crate::Error) {
        self.rejected.with_label_values(&[err.kind()]).inc();
    }

    /// Commands and reads refused so far with an error of `kind` (see `Error::kind`).
    pub fn rejections(&self, kind: &str) -> u64 {
        self.rejected.with_label_values(&[kind]).get()
    }

    /// Counts a raft message sent.
    pub fn sent(&self, t: MessageType) {
        self.sent[t.value() as usize].inc();
    }

    /// Counts a store-level message sent.
    pub fn sent_extra(&self, t: ExtraMessageType) {
        if let Some(c) = self.extra_sent.get(t.value() as usize) {
            c.inc();
        }
    }

    /// Counts a raft message dropped.
    pub fn dropped(&self, t: MessageType) {
        self.dropped[t.value() as usize].inc();
    }

    /// Observes the time since `start` in `h`.
    pub fn observe_since(h: &Histogram, start: Instant) {
        h.observe(start.elapsed().as_secs_f64());
    }

    /// Observes `d` in `h`.
    pub fn observe(h: &Histogram, d: Duration) {
        h.observe(d.as_secs_f64());
    }
}

/// The store's gauges, computed from its meta each time the registry is gathered: peers
/// (regions), leaders, leaders' leases by state, and the pending peers leaders last reported.
pub struct StoreGauges {
    meta: SharedStoreMeta,
    clock: Arc<dyn Clock>,
    regions: IntGauge,
    leaders: IntGauge,
    pending_peers: IntGauge,
    leases: IntGaugeVec,
}

impl StoreGauges {
    /// Gauges over `meta`, leases inspected on `clock`.
    pub fn new(meta: SharedStoreMeta, clock: Arc<dyn Clock>) -> Self {
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        StoreGauges {
            meta,
            clock,
            regions: gauge("regions", "Regions with a peer on this store."),
            leaders: gauge("leaders", "Regions whose peer on this store leads."),
            pending_peers: gauge(
                "pending_peers",
                "Peers behind their leader's log (they need a snapshot), as the leaders here last reported.",
            ),
            leases: IntGaugeVec::new(
                Opts::new("leases", "Leaders' leases, as local readers see them, by state."),
                &["state"],
            )
            .expect("valid metric"),
        }
    }

    fn refresh(&self) {
        let now = self.clock.now();
        let meta = self.meta.lock().unwrap_or_else(|e| e.into_inner());
        self.regions.set(meta.len() as i64);
        let (leaders, pending) = meta.leader_stats();
        self.leaders.set(leaders as i64);
        self.pending_peers.set(pending as i64);
        let mut by_state = [0i64; 3];
        for lease in meta.leases() {
            let i = match lease.inspect(now) {
                LeaseState::Valid => 0,
                LeaseState::Suspect => 1,
                LeaseState::Expired => 2,
            };
            by_state[i] += 1;
        }
        for (state, n) in ["valid", "suspect", "expired"].iter().zip(by_state) {
            self.leases.with_label_values(&[state]).set(n);
        }
    }
}

impl Collector for StoreGauges {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = Vec::new();
        for g in [&self.regions, &self.leaders, &self.pending_peers] {
            descs.extend(g.desc());
        }
        descs.extend(self.leases.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh();
        let mut families = Vec::new();
        for g in [&self.regions, &self.leaders, &self.pending_peers] {
            families.extend(g.collect());
        }
        families.extend(self.leases.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_has_its_own_count_and_name() {
        let c = StoreMetrics::default();
        for (i, e) in RaftEvent::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i, "ALL is in declaration order");
            for _ in 0..=i {
                c.inc(*e);
            }
        }
        let counts: Vec<u64> = c.all().into_iter().map(|(_, n)| n).collect();
        assert_eq!(counts, (1..=RaftEvent::ALL.len() as u64).collect::<Vec<_>>());
        let mut names: Vec<_> = RaftEvent::ALL.iter().map(|e| e.name()).collect();
        names.dedup();
        assert_eq!(names.len(), RaftEvent::ALL.len());
    }

    #[test]
    fn proposals_and_messages_are_counted_by_label() {
        let m = StoreMetrics::default();
        for (i, k) in ProposalKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "ALL is in declaration order");
        }
        m.proposed(ProposalKind::Split);
        m.sent(MessageType::MsgAppend);
        m.sent(MessageType::MsgAppend);
        m.dropped(MessageType::MsgSnapshot);
        let registry = Registry::new();
        m.register(&registry).unwrap();
        let text = {
            let mut buf = Vec::new();
            prometheus::Encoder::encode(
                &prometheus::TextEncoder::new(),
                &registry.gather(),
                &mut buf,
            )
            .unwrap();
            String::from_utf8(buf).unwrap()
        };
        assert!(text.contains("proposals_total{kind=\"split\"} 1"), "{text}");
        assert!(text.contains("raft_messages_sent_total{type=\"MsgAppend\"} 2"), "{text}");
        assert!(text.contains("raft_messages_dropped_total{type=\"MsgSnapshot\"} 1"), "{text}");
        assert_eq!(m.proposals(ProposalKind::Split), 1);
    }
}
