//! How raft messages leave a store.

use proto::{eraftpb::MessageType, raft_serverpb::RaftMessage};

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

/// A message a transport could not deliver when it flushed: its sender is told, as it would
/// be of a failed [`Transport::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Undelivered {
    /// The sender's region (0: a store's own message).
    pub region_id: u64,
    /// The peer it was for.
    pub to_peer: u64,
    /// What it was.
    pub msg_type: MessageType,
    /// For a snapshot (or a piece of one): its index, so that a late report of an older
    /// snapshot does not settle a newer one; 0 otherwise.
    pub snap_index: u64,
}

impl Undelivered {
    /// The report of `msg`.
    pub fn of(msg: &RaftMessage) -> Self {
        Undelivered {
            region_id: if msg.has_extra() { 0 } else { msg.region_id },
            to_peer: msg.get_to_peer().id,
            msg_type: msg.get_message().get_msg_type(),
            snap_index: match msg.get_message().get_msg_type() {
                MessageType::MsgSnapshot => msg.get_message().get_snapshot().get_metadata().index,
                _ => 0,
            },
        }
    }
}

/// Sends raft messages to other stores. Each poller thread owns a clone.
pub trait Transport: Send + Clone + 'static {
    /// Sends `msg` to the store of `msg.to_peer`, or queues it till the next
    /// [`Transport::flush`]. Delivery is best effort: it may be lost, delayed or reordered,
    /// as on a network. An error means it was not sent (nor queued).
    fn send(&mut self, msg: RaftMessage) -> Result<(), TransportError>;

    /// Sends what was queued, the messages to one store together. Called at least once per
    /// poll round, before the round's raft-log write (so that a leader's appends travel while
    /// it persists) and after it. Adds each message it could not deliver to `undelivered`.
    fn flush(&mut self, _undelivered: &mut Vec<Undelivered>) {}
}
