//! Thin glue between the batch systems and the peers: FSMs hold a mailbox receiver and their
//! state, and dispatch each message to one operation. The handlers that run the rounds, and
//! their context, are in `batch/`.

pub mod apply;
pub mod peer;
pub mod store;
