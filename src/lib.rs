//! regionstore: a multi-raft region store modelled on TiKV's raftstore.
//!
//! A database embeds it through a [`Node`] (crate [`server`]): one store of a cluster,
//! opened on a data directory, a placement driver ([`pd_client`]) and a transport, written
//! to and read from region by region. [`client`] routes keys to regions and retries as the
//! store's errors say. Underneath: the store ([`raftstore`]), the read path
//! ([`local_reader`]), the engines ([`engine`]) and the protocol messages ([`proto`]).
//! The `region-sim` binary runs a cluster of nodes in one process; see
//! `examples/embedded_kv.rs` for the shortest program that embeds one, and
//! `docs/embedding.md`.
//!
//! ```text
//! let node = Node::open(NodeConfig::new(dir), pd, network.clone(), &logger)?;
//! let ctx = Context::new(&region, &peer_here);          // region epoch and the peer
//! node.write(&ctx, &[Modify::Put(k, v)], timeout)?;      // or async_write(...).await
//! let snap = node.snapshot(&ctx, timeout)?;              // or async_snapshot(...).await
//! snap.get(b"key")?;                                     // bounded to the region
//! ```

pub mod linearizability;

pub use client;
pub use engine;
pub use local_reader;
pub use pd_client;
pub use proto;
pub use raftstore;
pub use server::{self, Context, Modify, Node, NodeConfig};
