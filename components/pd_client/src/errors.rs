//! Placement driver errors.

/// What the placement driver refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The cluster has not been bootstrapped yet.
    #[error("cluster is not bootstrapped")]
    NotBootstrapped,
    /// Bootstrap was asked of a cluster that already has a first region.
    #[error("cluster is already bootstrapped")]
    AlreadyBootstrapped,
    /// No store with this id.
    #[error("store {0} not found")]
    StoreNotFound(u64),
    /// No region holds this key, or no region has this id.
    #[error("region not found: {0}")]
    RegionNotFound(String),
    /// A heartbeat or report describes a region older than what the placement driver knows.
    #[error("stale region {region_id}: reported epoch {reported:?} is older than {known:?}")]
    StaleRegion {
        region_id: u64,
        /// (conf_ver, version) reported.
        reported: (u64, u64),
        /// (conf_ver, version) known.
        known: (u64, u64),
    },
    /// The request is malformed.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The placement driver cannot answer now: its metadata store failed, it is not the
    /// active member, or it cannot be reached.
    #[error("placement driver unavailable: {0}")]
    Unavailable(String),
}

impl Error {
    /// Whether the caller may retry the same request later (after a refresh, for stale
    /// reports; after bootstrap, for `NotBootstrapped`; after a while, for `Unavailable`).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::NotBootstrapped | Error::StaleRegion { .. } | Error::Unavailable(_))
    }
}

/// The result type of the placement driver.
pub type Result<T> = std::result::Result<T, Error>;
