//! Typed engine errors.

use std::path::PathBuf;

/// Errors of the storage engines.
///
/// [`Error::is_retryable`] tells a caller whether trying again can help; everything else means
/// the engine or its data is unusable as it stands and needs an operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The storage backend failed (I/O, resource limits, shutdown in progress).
    #[error("engine: {0}")]
    Engine(String),
    /// The backend is busy or timed out; the same call may succeed later.
    #[error("engine busy: {0}")]
    Busy(String),
    /// Stored bytes do not decode, or the backend found its files damaged.
    #[error("corruption in {what}: {detail}")]
    Corruption { what: String, detail: String },
    /// A column family that the engine was not opened with.
    #[error("column family `{0}` does not exist")]
    CfNotFound(String),
    /// The caller passed something the contract forbids (for example an empty range).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The engine directory cannot be used.
    #[error("cannot use engine directory {path}: {detail}")]
    BadPath { path: PathBuf, detail: String },
    /// The raft log of a region is not contiguous where it must be.
    #[error(
        "raft log of region {region_id} has a gap: expected index {expected}, found {found:?}"
    )]
    LogGap { region_id: u64, expected: u64, found: Option<u64> },
}

impl Error {
    /// Whether the operation may succeed if tried again unchanged.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Busy(_))
    }

    /// A corruption error for a value stored under `key`.
    pub fn corrupted_value(key: &[u8], detail: impl std::fmt::Display) -> Error {
        Error::Corruption {
            what: format!("value of key {}", crate::keys::escape(key)),
            detail: detail.to_string(),
        }
    }
}

/// The result type of the engines.
pub type Result<T> = std::result::Result<T, Error>;
