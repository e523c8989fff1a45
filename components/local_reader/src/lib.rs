//! Reads off the raftstore threads (not built yet).
//!
//! This crate will hold leader leases (`Lease`, `RemoteLease`), `ReadDelegate`, `TrackVer`,
//! `ThreadReadId` and `LocalReader`, which serves lease reads from a leader's engine snapshot
//! and redirects to the peer on any doubt. It is empty until that work lands.
