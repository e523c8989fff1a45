//! Background workers of a store, so that FSM handlers never block: the placement-driver
//! worker (`pd`) and the split checker (`split_check`). The snapshot generator lives with the
//! snapshot operation.

pub mod pd;
pub mod split_check;
