//! Operations on a peer, one module per feature with its whole life cycle.
//!
//! - `command`: writes: checks, propose, and the checks the apply side repeats;
//! - `ready`: raft readies: persist in the round's batch, send, hand committed entries to
//!   apply, and take apply results back;
//! - `message`: raft messages from other peers.

pub mod command;
pub mod message;
pub mod ready;
