//! The poll context and handlers of the two batch systems: what a poller holds while it
//! runs a round, and the round itself. Features take the context (`StoreContext`); only
//! `store.rs` builds the handlers.

mod apply;
mod store;

pub(crate) use self::store::StoreContext;
pub use self::{
    apply::{ApplyHandler, ApplyHandlerBuilder},
    store::{StoreHandler, StoreHandlerBuilder},
};
