//! The product's binaries as a cluster of processes on loopback (etcd, `regionstore-pd`,
//! `regionstore-server`s), driven through the client over gRPC.

mod test_cluster;
mod test_config;
