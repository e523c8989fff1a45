//! Send errors. Every one hands the message back: the router never drops one silently.

use std::fmt;

/// Why a message was not delivered; holds the message.
#[derive(thiserror::Error)]
pub enum SendError<M> {
    /// No mailbox is registered at this address.
    #[error("no mailbox at address {addr}")]
    NotFound { addr: u64, msg: M },
    /// The mailbox is at its capacity; try again later or use `force_send`.
    #[error("mailbox {addr} is full")]
    Full { addr: u64, msg: M },
    /// The mailbox was closed (its FSM stopped) or the system shut down.
    #[error("mailbox {addr} is closed")]
    Closed { addr: u64, msg: M },
}

impl<M> SendError<M> {
    /// The undelivered message.
    pub fn into_inner(self) -> M {
        match self {
            SendError::NotFound { msg, .. }
            | SendError::Full { msg, .. }
            | SendError::Closed { msg, .. } => msg,
        }
    }

    /// Whether the same send may succeed later (the mailbox was only full).
    pub fn is_retryable(&self) -> bool {
        matches!(self, SendError::Full { .. })
    }
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
