//! Placement driver client (not built yet).
//!
//! This crate will hold the placement-driver trait (id allocation, store and region
//! heartbeats, region by key, operators) and the in-memory implementation that tests and the
//! simulator use. It is empty until that work lands.
