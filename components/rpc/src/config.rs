//! Settings of the raft client (the sending side of the gRPC transport).

use std::time::Duration;

use crate::codec::MAX_MESSAGES_PER_FRAME;

/// A setting out of range: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    /// The setting's name.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// How raft messages are batched and connections kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftClientConfig {
    /// Messages per batch (one gRPC frame) at most.
    pub max_batch_messages: usize,
    /// Encoded bytes per batch at most, framing included. A single message larger than this
    /// is not sent but reported undelivered. The receiving servers must take frames of this
    /// size (`RaftService::into_server`).
    pub max_batch_bytes: usize,
    /// Batches waiting per connection; a flush that finds the queue full reports the rest of
    /// its messages undelivered instead of waiting.
    pub queue_batches: usize,
    /// Encoded bytes waiting per connection at most, checked the same way: a peer that
    /// stalls holds at most this much of the sender's memory.
    pub queue_bytes: usize,
    /// Connections per peer store; a message takes the one its region id picks, so a
    /// region's messages to a store travel in order on one stream (a reconnection may
    /// still deliver a broken stream's last frames after the new one's first).
    pub connections_per_store: usize,
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
    /// The first wait after a failed attempt; it doubles up to `backoff_max`.
    pub backoff_base: Duration,
    /// The longest wait between attempts. A connection that lived at least this long starts
    /// the next series of waits again from `backoff_base`; one that broke sooner keeps
    /// doubling, so a peer that accepts and then fails at once is not hammered.
    pub backoff_max: Duration,
    /// Snapshots streaming at once (each on a connection of its own).
    pub snapshot_concurrency: usize,
    /// Snapshots waiting or streaming at most; past that a snapshot is reported undelivered.
    pub snapshot_pending: usize,
    /// How long one snapshot's stream may take, from when it may start (a permit is free),
    /// before it counts as failed. At most the store's `snap_send_timeout`, after which the
    /// store gives up on it anyway.
    pub snapshot_timeout: Duration,
    /// HTTP/2 pings on an idle connection, to notice a peer that is gone without a word.
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is dropped.
    pub keepalive_timeout: Duration,
}

impl Default for RaftClientConfig {
    fn default() -> Self {
        RaftClientConfig {
            max_batch_messages: 256,
            max_batch_bytes: 10 * 1024 * 1024,
            queue_batches: 1024,
            queue_bytes: 64 * 1024 * 1024,
            connections_per_store: 1,
            connect_timeout: Duration::from_secs(1),
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(3),
            snapshot_concurrency: 4,
            snapshot_pending: 16,
            snapshot_timeout: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(3),
        }
    }
}

impl RaftClientConfig {
    /// Checks every setting; the first out of range is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("max_batch_messages", self.max_batch_messages as u64),
            ("max_batch_bytes", self.max_batch_bytes as u64),
            ("queue_batches", self.queue_batches as u64),
            ("queue_bytes", self.queue_bytes as u64),
            ("connections_per_store", self.connections_per_store as u64),
            ("connect_timeout", self.connect_timeout.as_millis() as u64),
            ("backoff_base", self.backoff_base.as_millis() as u64),
            ("snapshot_concurrency", self.snapshot_concurrency as u64),
            ("snapshot_pending", self.snapshot_pending as u64),
            ("snapshot_timeout", self.snapshot_timeout.as_millis() as u64),
            ("keepalive_interval", self.keepalive_interval.as_millis() as u64),
            ("keepalive_timeout", self.keepalive_timeout.as_millis() as u64),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError { field, reason: "must be positive".into() });
        }
        if self.max_batch_messages > MAX_MESSAGES_PER_FRAME {
            return Err(ConfigError {
                field: "max_batch_messages",
                reason: format!("at most {MAX_MESSAGES_PER_FRAME} (what a receiver takes)"),
            });
        }
        if self.backoff_max < self.backoff_base {
            return Err(ConfigError {
                field: "backoff_max",
                reason: format!("must be at least backoff_base ({:?})", self.backoff_base),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_each_bad_value_names_its_field() {
        let d = RaftClientConfig::default;
        assert_eq!(d().validate(), Ok(()));
        let field = |c: RaftClientConfig| c.validate().unwrap_err().field;
        assert_eq!(field(RaftClientConfig { max_batch_messages: 0, ..d() }), "max_batch_messages");
        assert_eq!(field(RaftClientConfig { queue_batches: 0, ..d() }), "queue_batches");
        assert_eq!(field(RaftClientConfig { queue_bytes: 0, ..d() }), "queue_bytes");
        assert_eq!(
            field(RaftClientConfig { max_batch_messages: MAX_MESSAGES_PER_FRAME + 1, ..d() }),
            "max_batch_messages"
        );
        assert_eq!(
            field(RaftClientConfig { connections_per_store: 0, ..d() }),
            "connections_per_store"
        );
        assert_eq!(
            field(RaftClientConfig { backoff_max: Duration::from_millis(1), ..d() }),
            "backoff_max"
        );
    }
}
