//! The embedding layer of regionstore: a [`Node`] is one store of a cluster, opened on a data
//! directory, a placement driver and a transport, that a database writes to
//! ([`Node::async_write`]) and reads from ([`Node::async_snapshot`]) region by region.
//!
//! [`transport::LocalNetwork`] connects the nodes of one process; [`faults::FaultNetwork`]
//! puts filters on it (partitions, loss, delay, duplication) for region-sim's nemesis and the
//! test harness. [`grpc::GrpcTransport`] connects nodes over the network. See
//! `docs/embedding.md`.

pub mod config;
mod errors;
pub mod faults;
pub mod grpc;
pub mod kv_service;
pub mod local;
pub mod metrics;
mod node;
mod request;
pub mod signals;
pub mod transport;

pub use self::{
    errors::{Error, Result},
    node::{Node, NodeConfig},
    request::{Context, Modify, Pending, Snapshot},
};
