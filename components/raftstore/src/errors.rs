//! Errors of the raftstore.

/// Errors of opening, recovering and running a store.
///
/// Variants other than [`Error::Engine`] with a retryable engine error mean the store cannot
/// go on with the data it has: they name what is wrong so an operator can act.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The storage engine failed or found damage.
    #[error(transparent)]
    Engine(#[from] engine::Error),
    /// The engines were bootstrapped for another store.
    #[error("engines belong to store {found}, but this store is configured as {expected}")]
    StoreIdMismatch { expected: u64, found: u64 },
    /// The engines were bootstrapped for another cluster.
    #[error(
        "engines belong to cluster {found}, but this store is configured for cluster {expected}"
    )]
    ClusterIdMismatch { expected: u64, found: u64 },
    /// The engines hold no store ident.
    #[error("store is not bootstrapped: {0}")]
    NotBootstrapped(String),
    /// Bootstrapping was asked of engines that already hold a cluster.
    #[error("already bootstrapped: {0}")]
    AlreadyBootstrapped(String),
    /// A region's persisted states contradict each other, or one is missing.
    #[error("inconsistent state of region {region_id}: {detail}")]
    StateCorrupted { region_id: u64, detail: String },
    /// A caller broke a contract (for example appended entries below the truncated index).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// Whether the same call may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Engine(e) if e.is_retryable())
    }
}

/// The result type of the raftstore.
pub type Result<T> = std::result::Result<T, Error>;
