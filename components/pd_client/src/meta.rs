//! What a placement driver must not lose, and where it keeps it.
//!
//! [`MemPd`](crate::MemPd) decides in memory; given a [`MetaStore`], it first makes each change
//! of its metadata durable there, so that a restarted placement driver, or a standby taking
//! over, loads the same cluster ([`MemPd::restore`](crate::MemPd::restore)). Only metadata is
//! kept: leaders, sizes and operators come back with the next heartbeats.

use proto::metapb;

use crate::Result;

/// The durable metadata of a cluster, as loaded from a [`MetaStore`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Meta {
    /// Whether the first region was recorded.
    pub bootstrapped: bool,
    /// Every store.
    pub stores: Vec<metapb::Store>,
    /// Every region, as last reported (ranges do not overlap).
    pub regions: Vec<metapb::Region>,
    /// No id at or above this was handed out; new ids start here (0: none was).
    pub id_bound: u64,
}

/// Durable storage of a placement driver's metadata. Each call is atomic: when it returns
/// `Ok` the change is durable, when it fails nothing of it is (the placement driver then
/// refuses the request that needed it, with [`Error::Unavailable`](crate::Error::Unavailable)).
/// A store that is no longer allowed to write (a placement driver that lost its leadership)
/// fails every call.
pub trait MetaStore: Send + Sync {
    /// Records the first store and region and marks the cluster bootstrapped.
    fn save_bootstrap(&self, store: &metapb::Store, region: &metapb::Region) -> Result<()>;

    /// Adds or replaces a store.
    fn save_store(&self, store: &metapb::Store) -> Result<()>;

    /// Adds or replaces `regions` and deletes the regions `removed` (whose ranges they took).
    fn save_regions(&self, regions: &[metapb::Region], removed: &[u64]) -> Result<()>;

    /// Raises the id bound: ids below `bound` may be handed out. Never lowers it.
    fn save_id_bound(&self, bound: u64) -> Result<()>;
}
