//! The product's binaries as a cluster of processes on loopback (etcd, `regionstore-pd`,
//! `regionstore-server`s), driven through the client over gRPC. A binary of its own: these
//! tests run several processes each, and would otherwise share the machine with the
//! timing-sensitive in-process tests of `tests/integrations`.

mod test_cluster;
mod test_config;
