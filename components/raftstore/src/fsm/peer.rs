//! `PeerFsm`: a peer on the store batch system. Each message is one call into `operation/`.

use crossbeam_channel::Receiver;
use engine::{KvEngine, RaftEngine};
use router::{mailbox_channel, Fsm, LooseBoundedSender};

use crate::{
    batch::StoreContext,
    msg::PeerMsg,
    raft::peer::{Life, Peer},
    transport::Transport,
};

/// A region's peer as an FSM.
pub struct PeerFsm<EK: KvEngine, ER: RaftEngine> {
    pub(crate) rx: Receiver<PeerMsg<EK::Snapshot>>,
    pub(crate) peer: Peer<EK, ER>,
}

impl<EK: KvEngine, ER: RaftEngine> PeerFsm<EK, ER> {
    /// The FSM and the sender of its mailbox.
    pub fn create(
        peer: Peer<EK, ER>,
        capacity: usize,
    ) -> (LooseBoundedSender<PeerMsg<EK::Snapshot>>, Box<Self>) {
        let (tx, rx) = mailbox_channel(capacity);
        (tx, Box::new(PeerFsm { rx, peer }))
    }

    pub(crate) fn handle<T: Transport>(
        &mut self,
        msg: PeerMsg<EK::Snapshot>,
        ctx: &mut StoreContext<EK, ER, T>,
    ) {
        match msg {
            PeerMsg::ApplyDestroyed(region) => return self.peer.finish_destroy(ctx, *region),
            // What apply did before it stopped still counts: a split it applied made regions
            // this store holds peers of, whatever became of this one.
            PeerMsg::ApplyRes(r) if self.peer.life == Life::Destroying => {
                return self.peer.on_apply_res(*r, ctx)
            }
            _ if self.peer.life != Life::Alive => return self.peer.refuse_while_destroying(msg),
            _ => {}
        }
        if self.peer.hibernation.is_idle() && self.peer.wakes(&msg) {
            self.peer.wake_up(&msg, ctx);
        }
        match msg {
            PeerMsg::RaftMessage(m) => self.peer.on_raft_message(*m, ctx),
            PeerMsg::RaftCommand(c) => self.peer.propose_command(ctx, *c),
            PeerMsg::SnapshotRead(r) => self.peer.propose_read(ctx, *r),
            PeerMsg::Tick => self.peer.on_tick(ctx),
            PeerMsg::StoreUnreachable(store) => self.peer.on_store_unreachable(store, ctx),
            PeerMsg::Undelivered { to, snap_index } => {
                self.peer.on_undelivered(to, snap_index, ctx)
            }
            PeerMsg::RenewLease => self.peer.on_renew_lease_request(ctx),
            PeerMsg::SplitRegion(s) => self.peer.on_split_region(ctx, *s),
            PeerMsg::ProposeSplit(p) => self.peer.on_propose_split(ctx, *p),
            PeerMsg::ApplyRes(r) => self.peer.on_apply_res(*r, ctx),
            PeerMsg::Query(tx) => drop(tx.send(self.peer.status())),
            PeerMsg::Operator(op) => self.peer.on_operator(*op, ctx),
            PeerMsg::ApproximateSize { size, keys } => self.peer.split.set_approximate(size, keys),
            PeerMsg::CatchUpLogs(c) => self.peer.on_catch_up_logs(ctx, *c),
            PeerMsg::MergedInto(target) => self.peer.on_merged_into(ctx, *target),
            PeerMsg::DisplacedBySnapshot(by) => self.peer.on_displaced_by_snapshot(ctx, *by),
            PeerMsg::StalePerPd(asked, region) => self.peer.on_stale_per_pd(ctx, asked, *region),
            PeerMsg::ApplyDestroyed(_) => unreachable!("handled above"),
        }
    }
}

impl<EK: KvEngine, ER: RaftEngine> Drop for PeerFsm<EK, ER> {
    /// A destroyed peer's mailbox may still hold commands and reads that arrived before it
    /// closed: they were never proposed, so they are answered as such (the region is not
    /// here), not dropped with an unknown outcome.
    fn drop(&mut self) {
        if self.peer.life == Life::Alive {
            return; // shutdown: the store stops, callers learn of it from the dropped senders
        }
        while let Ok(msg) = self.rx.try_recv() {
            self.peer.refuse_while_destroying(msg);
        }
    }
}

impl<EK: KvEngine, ER: RaftEngine> Fsm for PeerFsm<EK, ER> {
    type Message = PeerMsg<EK::Snapshot>;
    fn is_stopped(&self) -> bool {
        self.peer.life == Life::Destroyed
    }
}
