//! The apply batch system's FSMs: an `ApplyFsm` per region holds its apply state; the poll
//! handler that executes committed entries (one kv write batch per round) is in
//! `batch/apply.rs`.

use crossbeam_channel::Receiver;
use engine::KvEngine;
use router::{mailbox_channel, Fsm, LooseBoundedSender, Router};

use crate::{msg::ApplyMsg, raft::apply::Apply};

/// One region's apply side.
pub struct ApplyFsm<EK: KvEngine> {
    pub(crate) rx: Receiver<ApplyMsg>,
    pub(crate) apply: Apply<EK>,
    /// Its peer is being destroyed: nothing more is applied.
    pub(crate) stopped: bool,
}

impl<EK: KvEngine> ApplyFsm<EK> {
    /// The FSM and the sender of its mailbox.
    pub fn create(apply: Apply<EK>, capacity: usize) -> (LooseBoundedSender<ApplyMsg>, Box<Self>) {
        let (tx, rx) = mailbox_channel(capacity);
        (tx, Box::new(ApplyFsm { rx, apply, stopped: false }))
    }
}

impl<EK: KvEngine> Fsm for ApplyFsm<EK> {
    type Message = ApplyMsg;
    fn is_stopped(&self) -> bool {
        self.stopped
    }
}

/// The apply system's control FSM. It has no work yet; the batch system requires one.
pub struct ApplyControl {
    _rx: Receiver<()>,
}

impl ApplyControl {
    /// The FSM and the sender of its mailbox.
    pub fn create() -> (LooseBoundedSender<()>, Box<Self>) {
        let (tx, rx) = mailbox_channel(16);
        (tx, Box::new(ApplyControl { _rx: rx }))
    }
}

impl Fsm for ApplyControl {
    type Message = ();
    fn is_stopped(&self) -> bool {
        false
    }
}

/// Router of the apply system.
pub type ApplyRouter<EK> = Router<ApplyFsm<EK>, ApplyControl>;
