//! Leader transfer. Not proposed through the log: the leader checks the request and asks raft
//! to hand over, which raft does (MsgTimeoutNow) once the target's log is up to date. The
//! answer says the transfer started; the caller watches for the new leader.

use engine::{KvEngine, RaftEngine};
use proto::raft_cmdpb::{AdminCmdType, AdminResponse, RaftCmdRequest, RaftCmdResponse};
use slog::info;

use crate::{
    msg::RaftCommand, operation::command::check_region_epoch, raft::peer::Peer, Error, Result,
};

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Starts a leader transfer and answers the command.
    pub(crate) fn transfer_leader(&mut self, cmd: RaftCommand) {
        match self.check_transfer_leader(&cmd.request) {
            Ok(target) => {
                info!(self.logger, "transferring leadership"; "to" => target);
                self.raft_group.transfer_leader(target);
                let mut resp = RaftCmdResponse::default();
                let mut admin = AdminResponse::default();
                admin.set_cmd_type(AdminCmdType::TransferLeader);
                admin.mut_transfer_leader();
                resp.set_admin_response(admin);
                cmd.ch.respond(resp);
            }
            Err(e) => cmd.ch.respond_error(e),
        }
    }

    fn check_transfer_leader(&self, req: &RaftCmdRequest) -> Result<u64> {
        if !self.is_leader() {
            return Err(Error::NotLeader { region_id: self.region_id(), leader: self.leader() });
        }
        check_region_epoch(req, self.region())?;
        let target = req.get_admin_request().get_transfer_leader().get_peer();
        if self.peer_by_id(target.id).is_none_or(|p| p.store_id != target.store_id) {
            return Err(Error::InvalidRequest(format!("peer {} is not in the region", target.id)));
        }
        Ok(target.id)
    }
}
