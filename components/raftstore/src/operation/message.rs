//! Raft messages from other peers of the region.

use engine::{KvEngine, RaftEngine};
use proto::{eraftpb::MessageType, raft_serverpb::RaftMessage};
use slog::{debug, warn};

use crate::{
    fsm::store::StoreContext, operation::snapshot::check_snapshot, raft::peer::Peer,
    transport::Transport,
};

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Steps a raft message into the group. A misaddressed message, or one raft refuses, is
    /// dropped with a log line: a bad message never stops the peer.
    pub(crate) fn on_raft_message<T: Transport>(
        &mut self,
        msg: RaftMessage,
        ctx: &mut StoreContext<EK, ER, T>,
    ) {
        let mut msg = if msg.has_snapshot_chunk() {
            match self.collect_snapshot_chunk(msg) {
                Some(whole) => whole,
                None => return,
            }
        } else {
            msg
        };
        if msg.get_to_peer().id != self.peer_id() || msg.region_id != self.region_id() {
            warn!(self.logger, "dropping misaddressed raft message";
                "to_peer" => msg.get_to_peer().id, "region" => msg.region_id);
            return;
        }
        let from = msg.get_from_peer().id;
        if from == 0 || msg.get_message().from != from || msg.get_message().to != self.peer_id() {
            warn!(self.logger, "dropping malformed raft message"; "from" => from);
            return;
        }
        self.peer_cache.insert(from, msg.get_from_peer().clone());
        self.last_heard.insert(from, ctx.clock.now());
        if msg.get_message().get_msg_type() == MessageType::MsgSnapshot {
            let meta = ctx.meta.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(reason) = check_snapshot(&msg, self.region_id(), self.peer_id(), &meta) {
                warn!(self.logger, "dropping a snapshot"; "reason" => reason);
                return;
            }
        }
        let Some(raft_msg) = self.answer_read_index_by_lease(msg.take_message(), ctx) else {
            return;
        };
        if let Err(e) = self.raft_group.step(raft_msg) {
            debug!(self.logger, "raft refused a message"; "from" => from, "err" => %e);
        }
    }
}
