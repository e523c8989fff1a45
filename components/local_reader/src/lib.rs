//! Reads off the raftstore threads.
//!
//! A leader that holds a lease answers reads from its own engine snapshot without a raft
//! round trip, and the [`LocalReader`] does so on the caller's thread, never touching the
//! raftstore's pollers. The pieces:
//! - [`clock`]: the `Clock` trait, `CLOCK_MONOTONIC_RAW` for production and a manual clock
//!   for tests, so lease expiry is tested without sleeping;
//! - [`lease`]: the leader's `Lease` (Valid / Suspect / Expired, renewed from send times) and
//!   the `RemoteLease` readers on other threads check;
//! - [`track_ver`]: `TrackVer`, which tells a cached copy that its source changed;
//! - [`delegate`]: `ReadDelegate`, a peer as readers see it, kept by the store and cached by
//!   readers;
//! - [`reader`]: `LocalReader` (validation, snapshot-then-lease, `ThreadReadId` snapshot
//!   reuse, redirects) and the read-path counters;
//! - [`region_snapshot`]: what a read returns, an engine snapshot bounded to a region.
//!
//! The rules every piece follows are in `docs/reads.md`.

pub mod clock;
pub mod delegate;
pub mod lease;
pub mod reader;
pub mod region_snapshot;
pub mod track_ver;

pub use self::{
    clock::{Clock, ManualClock, MonotonicRawClock, SkewedClock},
    delegate::{DelegateSource, DelegateUpdate, ReadDelegate},
    lease::{Lease, LeaseState, RemoteLease},
    reader::{LocalReader, ReadCounters, ReadStats, Redirect, ThreadReadId},
    region_snapshot::{ReadError, RegionSnapshot},
    track_ver::TrackVer,
};
