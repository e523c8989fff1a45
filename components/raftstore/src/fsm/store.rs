//! The store batch system's FSMs: `PeerFsm`s (in `fsm/peer.rs`) and the `StoreFsm`, which
//! takes messages for regions that have no peer here. The poll handler that runs a round is
//! in `batch/store.rs`.

use crossbeam_channel::Receiver;
use engine::{KvEngine, RaftEngine};
use router::{mailbox_channel, Fsm, LooseBoundedSender, Router};

use crate::{
    batch::StoreContext,
    fsm::peer::PeerFsm,
    msg::StoreMsg,
    operation::{
        life::maybe_create_peer,
        liveness::{is_liveness_message, on_liveness_message, on_liveness_tick},
        pd::on_store_heartbeat_tick,
    },
    transport::Transport,
};

/// Router of the store system.
pub type StoreRouter<EK, ER> = Router<PeerFsm<EK, ER>, StoreFsm>;

/// The store's own FSM: messages for regions that have no peer here.
pub struct StoreFsm {
    pub(crate) rx: Receiver<StoreMsg>,
}

impl StoreFsm {
    /// The FSM and the sender of its mailbox.
    pub fn create() -> (LooseBoundedSender<StoreMsg>, Box<Self>) {
        let (tx, rx) = mailbox_channel(4096);
        (tx, Box::new(StoreFsm { rx }))
    }

    pub(crate) fn handle<EK: KvEngine, ER: RaftEngine, T: Transport>(
        &mut self,
        msg: StoreMsg,
        ctx: &mut StoreContext<EK, ER, T>,
    ) {
        match msg {
            StoreMsg::RaftMessage(m) if is_liveness_message(&m) => on_liveness_message(ctx, &m),
            StoreMsg::RaftMessage(m) => maybe_create_peer(ctx, *m),
            StoreMsg::Tick => on_tick(ctx),
        }
    }
}

/// The store's periodic work: the liveness round and the store heartbeat.
fn on_tick<EK: KvEngine, ER: RaftEngine, T: Transport>(ctx: &mut StoreContext<EK, ER, T>) {
    on_liveness_tick(ctx);
    on_store_heartbeat_tick(ctx);
}

impl Fsm for StoreFsm {
    type Message = StoreMsg;
    fn is_stopped(&self) -> bool {
        false
    }
}
