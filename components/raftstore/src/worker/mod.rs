//! Background workers of a store, so that FSM handlers never block: the placement-driver
//! worker (`pd`). The snapshot generator lives with the snapshot operation.

pub mod pd;
