//! What a caller of a `Node` is told, by what it can do about it.

/// Errors of a request to a node, and of opening one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request was refused and **not applied**; the typed store error says how to retry
    /// (`NotLeader` with the leader, `EpochNotMatch` with the current regions, ...), or that
    /// retrying is pointless (`InvalidRequest`, `RaftEntryTooLarge`).
    #[error(transparent)]
    Request(raftstore::Error),
    /// A write may or may not have been applied (its peer stepped down or was destroyed
    /// before it applied, the node stopped, the caller's deadline passed), and may still apply
    /// later. Never retried blindly (it could apply twice): keep waiting on the `Pending` of
    /// [`crate::Node::async_write`], or make writes idempotent (unique values or request ids)
    /// so that a retry is harmless.
    #[error("outcome undetermined: {0}")]
    Undetermined(String),
    /// A read got no answer in time. Reads have no effect: retry.
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// A read got no answer (its peer went away or dropped it). Reads have no effect: retry.
    #[error("no answer: {0}")]
    NoAnswer(String),
    /// The node was stopped.
    #[error("the node is stopped")]
    Stopped,
    /// Opening the node failed: its data directory, engines, identity or bootstrap.
    #[error("cannot open the node: {0}")]
    Open(String),
    /// The placement driver refused or failed.
    #[error(transparent)]
    Pd(#[from] pd_client::Error),
}

impl Error {
    /// Whether the same request may succeed if tried again (after following the hints of the
    /// store error: a new leader, new regions).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Request(e) => e.is_retryable(),
            Error::Timeout(_) | Error::NoAnswer(_) => true,
            Error::Undetermined(_) | Error::Stopped | Error::Open(_) | Error::Pd(_) => false,
        }
    }

    /// A store error as a node error: an unknown outcome is `Undetermined`, the rest are
    /// refusals.
    pub fn from_store(e: raftstore::Error) -> Error {
        match e {
            raftstore::Error::OutcomeUnknown(why) => Error::Undetermined(why),
            e => Error::Request(e),
        }
    }

    /// A short stable name, for counters and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Request(e) => e.kind(),
            Error::Undetermined(_) => "undetermined",
            Error::Timeout(_) => "timeout",
            Error::NoAnswer(_) => "no_answer",
            Error::Stopped => "stopped",
            Error::Open(_) => "open",
            Error::Pd(_) => "pd",
        }
    }
}

impl From<raftstore::Error> for Error {
    fn from(e: raftstore::Error) -> Self {
        Error::from_store(e)
    }
}

/// The result type of the node.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_outcomes_are_undetermined_and_refusals_keep_their_type() {
        let e = Error::from(raftstore::Error::OutcomeUnknown("x".into()));
        assert!(matches!(e, Error::Undetermined(_)));
        assert!(!e.is_retryable());
        let e = Error::from(raftstore::Error::NotLeader { region_id: 1, leader: None });
        assert!(matches!(e, Error::Request(raftstore::Error::NotLeader { .. })));
        assert!(e.is_retryable());
        assert!(!Error::from(raftstore::Error::InvalidRequest("no".into())).is_retryable());
        assert!(Error::Timeout(std::time::Duration::ZERO).is_retryable());
    }
}
