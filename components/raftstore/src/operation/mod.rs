//! Operations on a peer, one module per feature with its whole life cycle.
//!
//! - `command`: writes: checks, propose, and executing committed entries on the apply side;
//! - `ready`: raft readies: persist in the round's batch, send, hand committed entries to
//!   apply, and take apply results back;
//! - `message`: raft messages from other peers;
//! - `transfer_leader`: handing leadership to another peer;
//! - `tick`: the peer's periodic work, by kind, dispatched from one place;
//! - `log_gc`: compacting the raft log (CompactLog), proposed on a tick, applied by every peer;
//! - `conf_change`: membership changes (ChangePeer);
//! - `snapshot`: generating, checking and applying snapshots;
//! - `life`: creating a peer for an unknown region's message, destroying a removed peer;
//! - `pd`: region heartbeats to the placement driver and the operators it answers with;
//! - `read`: reads on the peer: lease read, ReadIndex (batched), follower read;
//! - `lease`: the leader lease (renewal, suspicion, expiry) and the peer's read delegate;
//! - `split`: region split: check, ids, propose, apply, and the new peers;
//! - `merge`: region merge: PrepareMerge, CommitMerge (with the source catching up),
//!   RollbackMerge, and the source's end;
//! - `hibernate`: idle regions sleep (no ticks, no heartbeats) and wake on demand;
//! - `liveness`: store-level pings that wake the sleeping followers of a dead leader;
//! - `stale`: peers that missed their removal, a split or a merge: how they learn it and go.

pub mod command;
pub mod conf_change;
pub mod hibernate;
pub mod lease;
pub mod life;
pub mod liveness;
pub mod log_gc;
pub mod merge;
pub mod message;
pub mod pd;
pub mod read;
pub mod ready;
pub mod snapshot;
pub mod split;
pub mod stale;
pub mod tick;
pub mod transfer_leader;
