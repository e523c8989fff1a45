//! How raft messages leave a store.

use proto::raft_serverpb::RaftMessage;

/// Why a message could not be sent. Raft retransmits, so a failed send is never fatal; the
/// peer reports the target unreachable to raft.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No route to the store.
    #[error("store {0} is unreachable")]
    Unreachable(u64),
    /// The receiving store refused it (for example its mailboxes are full).
    #[error("store {0} is busy")]
    Busy(u64),
}

/// Sends raft messages to other stores. Each poller thread owns a clone.
pub trait Transport: Send + Clone + 'static {
    /// Sends `msg` to the store of `msg.to_peer`. Delivery is best effort: it may be lost,
    /// delayed or reordered, as on a network.
    fn send(&mut self, msg: RaftMessage) -> Result<(), TransportError>;

    /// Sends whatever the transport buffered. Called once per poll round.
    fn flush(&mut self) {}
}
