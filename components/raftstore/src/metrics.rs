//! Counters of the events where a store's safety rules refused a message or repaired a peer.
//! Each event is rare in a healthy cluster; a count that climbs shows where the network or a
//! peer misbehaves, and tests read them to prove a rule fired.

use std::sync::atomic::{AtomicU64, Ordering};

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
}

impl RaftEvent {
    /// Every event, in a fixed order.
    pub const ALL: [RaftEvent; 6] = [
        RaftEvent::VoteDroppedAfterStart,
        RaftEvent::StaleMessageDropped,
        RaftEvent::GcMessageSent,
        RaftEvent::StalePeerDestroyed,
        RaftEvent::StaleTimeoutNowDropped,
        RaftEvent::SnapshotFailed,
    ];

    /// A short stable name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            RaftEvent::VoteDroppedAfterStart => "vote_dropped_after_start",
            RaftEvent::StaleMessageDropped => "stale_message_dropped",
            RaftEvent::GcMessageSent => "gc_message_sent",
            RaftEvent::StalePeerDestroyed => "stale_peer_destroyed",
            RaftEvent::StaleTimeoutNowDropped => "stale_timeout_now_dropped",
            RaftEvent::SnapshotFailed => "snapshot_failed",
        }
    }
}

/// A store's count of each [`RaftEvent`], shared by its threads.
#[derive(Debug, Default)]
pub struct RaftCounters {
    counts: [AtomicU64; RaftEvent::ALL.len()],
}

impl RaftCounters {
    /// Counts one `event`.
    pub fn inc(&self, event: RaftEvent) {
        self.counts[event as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// How many `event`s so far.
    pub fn get(&self, event: RaftEvent) -> u64 {
        self.counts[event as usize].load(Ordering::Relaxed)
    }

    /// Every event with its count.
    pub fn all(&self) -> Vec<(RaftEvent, u64)> {
        RaftEvent::ALL.iter().map(|e| (*e, self.get(*e))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_has_its_own_count_and_name() {
        let c = RaftCounters::default();
        for (i, e) in RaftEvent::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i, "ALL is in declaration order");
            for _ in 0..=i {
                c.inc(*e);
            }
        }
        let counts: Vec<u64> = c.all().into_iter().map(|(_, n)| n).collect();
        assert_eq!(counts, vec![1, 2, 3, 4, 5, 6]);
        let mut names: Vec<_> = RaftEvent::ALL.iter().map(|e| e.name()).collect();
        names.dedup();
        assert_eq!(names.len(), RaftEvent::ALL.len());
    }
}
