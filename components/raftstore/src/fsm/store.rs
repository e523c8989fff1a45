//! The store batch system: `PeerFsm`s and the `StoreFsm`, and the handler that runs a round:
//! messages for each peer, then one raft-engine write for all of them, then what waited for
//! it.

use crossbeam_channel::Receiver;
use engine::{KvEngine, RaftEngine};
use proto::raft_serverpb::RaftMessage;
use router::{
    drain, mailbox_channel, Fsm, HandleResult, HandlerBuilder, LooseBoundedSender, PollHandler,
    Router,
};
use slog::{debug, Logger};

use crate::{
    fsm::{apply::ApplyRouter, peer::PeerFsm},
    msg::{PeerMsg, StoreMsg},
    transport::Transport,
    Config,
};

/// Router of the store system.
pub type StoreRouter<EK, ER> = Router<PeerFsm<EK, ER>, StoreFsm>;

/// The store's own FSM: messages for regions that have no peer here.
pub struct StoreFsm {
    rx: Receiver<StoreMsg>,
    store_id: u64,
    logger: Logger,
}

impl StoreFsm {
    /// The FSM and the sender of its mailbox.
    pub fn create(store_id: u64, logger: Logger) -> (LooseBoundedSender<StoreMsg>, Box<Self>) {
        let (tx, rx) = mailbox_channel(4096);
        (tx, Box::new(StoreFsm { rx, store_id, logger }))
    }

    fn handle(&mut self, msg: StoreMsg) {
        match msg {
            StoreMsg::RaftMessage(m) => self.on_unknown_region_message(*m),
        }
    }

    /// A message for a region with no peer here. Creating a peer for it needs a snapshot to
    /// fill it, which this store cannot send yet: the message is dropped (raft retries).
    fn on_unknown_region_message(&mut self, msg: RaftMessage) {
        debug!(self.logger, "message for a region not on this store";
            "store_id" => self.store_id, "region_id" => msg.region_id,
            "to_peer" => msg.get_to_peer().id);
    }
}

impl Fsm for StoreFsm {
    type Message = StoreMsg;
    fn is_stopped(&self) -> bool {
        false
    }
}

/// What a store poller needs while it handles peers.
pub(crate) struct StoreContext<EK: KvEngine, ER: RaftEngine, T> {
    pub(crate) cfg: Config,
    pub(crate) trans: T,
    pub(crate) apply: ApplyRouter<EK>,
    pub(crate) raft: ER,
    pub(crate) log_batch: ER::LogBatch,
    pub(crate) msgs: Vec<PeerMsg>,
}

/// Runs store rounds on one poller.
pub struct StoreHandler<EK: KvEngine, ER: RaftEngine, T> {
    ctx: StoreContext<EK, ER, T>,
    store_msgs: Vec<StoreMsg>,
}

impl<EK: KvEngine, ER: RaftEngine, T: Transport> PollHandler<PeerFsm<EK, ER>, StoreFsm>
    for StoreHandler<EK, ER, T>
{
    fn handle_control(&mut self, store: &mut StoreFsm) -> HandleResult {
        let res = drain(&store.rx, self.ctx.cfg.messages_per_tick, &mut self.store_msgs);
        for msg in self.store_msgs.drain(..) {
            store.handle(msg);
        }
        res
    }

    fn handle_normal(&mut self, fsm: &mut PeerFsm<EK, ER>) -> HandleResult {
        let mut msgs = std::mem::take(&mut self.ctx.msgs);
        let res = drain(&fsm.rx, self.ctx.cfg.messages_per_tick, &mut msgs);
        for msg in msgs.drain(..) {
            fsm.handle(msg, &mut self.ctx);
        }
        self.ctx.msgs = msgs;
        let ctx = &mut self.ctx;
        fsm.peer.collect_ready(&mut ctx.log_batch, &mut ctx.trans, &ctx.apply);
        res
    }

    fn end(&mut self, peers: &mut [Box<PeerFsm<EK, ER>>]) {
        let ctx = &mut self.ctx;
        if !engine::RaftLogBatch::is_empty(&ctx.log_batch) {
            if let Err(e) = ctx.raft.consume(&mut ctx.log_batch, ctx.cfg.sync_log) {
                // Raft must not act on state it could not persist: stopping is the only safe
                // answer. Peers recover from what was persisted on restart.
                panic!("raft engine write failed, the store cannot go on: {e}");
            }
        }
        for fsm in peers.iter_mut() {
            fsm.peer.on_persisted(&mut ctx.trans, &ctx.apply);
        }
        ctx.trans.flush();
    }
}

/// Builds store handlers.
pub struct StoreHandlerBuilder<EK: KvEngine, ER: RaftEngine, T> {
    pub(crate) cfg: Config,
    pub(crate) trans: T,
    pub(crate) apply: ApplyRouter<EK>,
    pub(crate) raft: ER,
}

impl<EK: KvEngine, ER: RaftEngine, T: Transport> HandlerBuilder<PeerFsm<EK, ER>, StoreFsm>
    for StoreHandlerBuilder<EK, ER, T>
{
    type Handler = StoreHandler<EK, ER, T>;
    fn build(&mut self) -> Self::Handler {
        StoreHandler {
            ctx: StoreContext {
                cfg: self.cfg.clone(),
                trans: self.trans.clone(),
                apply: self.apply.clone(),
                raft: self.raft.clone(),
                log_batch: self.raft.log_batch(256),
                msgs: Vec::new(),
            },
            store_msgs: Vec::new(),
        }
    }
}
