//! Reads off the raftstore threads.
//!
//! Built so far: the primitives the local read path stands on.
//! - [`clock`]: the `Clock` trait, `CLOCK_MONOTONIC_RAW` for production and a manual clock
//!   for tests, so lease expiry is tested without sleeping;
//! - [`lease`]: the leader's `Lease` (Valid / Suspect / Expired, renewed from send times) and
//!   the `RemoteLease` readers on other threads check;
//! - [`track_ver`]: `TrackVer`, which tells a cached copy that its source changed.
//!
//! Not built yet: `ReadDelegate`, `LocalReader` with its LRU of delegates, `ThreadReadId`,
//! and their wiring into the raftstore (see `../shared/design/READ_PATH.md` for the plan).

pub mod clock;
pub mod lease;
pub mod track_ver;

pub use self::{
    clock::{Clock, ManualClock, MonotonicRawClock},
    lease::{Lease, LeaseState, RemoteLease},
    track_ver::TrackVer,
};
