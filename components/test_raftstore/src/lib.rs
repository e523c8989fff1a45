//! In-process cluster harness (not built yet).
//!
//! This crate will hold the `Cluster` of N stores on RocksDB in temporary directories, the
//! channel transport with filters, and the `must_*` helpers of integration tests. It is empty
//! until that work lands.
