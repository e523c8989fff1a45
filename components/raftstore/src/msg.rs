//! Messages of the store and apply batch systems.

use crossbeam_channel::{Receiver, Sender};
use engine::Snapshot;
use local_reader::RegionSnapshot;
use proto::{
    eraftpb::{ConfChange, Entry},
    metapb,
    raft_cmdpb::{CommitMergeRequest, RaftCmdRequest, RaftCmdResponse},
    raft_serverpb::{MergeState, RaftApplyState, RaftMessage},
};
use raft::StateRole;

use crate::Error;

/// Where a command's response goes: a typed one-shot channel or a callback, answered exactly
/// once. Dropping an unanswered sender answers `OutcomeUnknown`, so no caller is ever left
/// hanging.
pub struct CmdResponseSender {
    tx: Option<Responder>,
}

enum Responder {
    Channel(Sender<RaftCmdResponse>),
    Callback(Box<dyn FnOnce(RaftCmdResponse) + Send>),
}

impl CmdResponseSender {
    /// A sender and the receiver its response arrives on.
    pub fn channel() -> (CmdResponseSender, Receiver<RaftCmdResponse>) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        (CmdResponseSender { tx: Some(Responder::Channel(tx)) }, rx)
    }

    /// A sender that hands the response to `cb`, on the thread that answers (keep it short).
    pub fn callback(cb: impl FnOnce(RaftCmdResponse) + Send + 'static) -> CmdResponseSender {
        CmdResponseSender { tx: Some(Responder::Callback(Box::new(cb))) }
    }

    /// Answers with `resp`.
    pub fn respond(mut self, resp: RaftCmdResponse) {
        if let Some(tx) = self.tx.take() {
            tx.send(resp);
        }
    }

    /// Answers with an error.
    pub fn respond_error(self, err: Error) {
        self.respond(error_response(&err));
    }
}

impl Responder {
    fn send(self, resp: RaftCmdResponse) {
        match self {
            // The caller may have given up waiting; nothing to do then.
            Responder::Channel(tx) => drop(tx.send(resp)),
            Responder::Callback(cb) => cb(resp),
        }
    }
}

impl Drop for CmdResponseSender {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let err = Error::OutcomeUnknown("the command was dropped unanswered".into());
            tx.send(error_response(&err));
        }
    }
}

/// A response carrying only `err`.
pub fn error_response(err: &Error) -> RaftCmdResponse {
    let mut resp = RaftCmdResponse::default();
    resp.mut_header().set_error(err.to_errorpb());
    resp
}

/// A command and where to answer it.
pub struct RaftCommand {
    /// The request.
    pub request: RaftCmdRequest,
    /// The response channel.
    pub ch: CmdResponseSender,
}

impl RaftCommand {
    /// A command and the receiver of its response.
    pub fn new(request: RaftCmdRequest) -> (RaftCommand, Receiver<RaftCmdResponse>) {
        let (ch, rx) = CmdResponseSender::channel();
        (RaftCommand { request, ch }, rx)
    }
}

/// What a snapshot read gets: a region-bounded engine snapshot, or the typed error.
pub type SnapshotResult<S> = std::result::Result<RegionSnapshot<S>, Error>;

/// Where a snapshot read's result goes: a callback, called exactly once. Dropping an
/// uncalled sender answers `OutcomeUnknown` (reads are idempotent: the caller retries).
pub struct SnapshotSender<S: Snapshot> {
    cb: Option<Box<dyn FnOnce(SnapshotResult<S>) + Send>>,
}

impl<S: Snapshot> SnapshotSender<S> {
    /// A sender that hands the result to `cb`.
    pub fn new(cb: impl FnOnce(SnapshotResult<S>) + Send + 'static) -> Self {
        SnapshotSender { cb: Some(Box::new(cb)) }
    }

    /// Answers with `res`.
    pub fn respond(mut self, res: SnapshotResult<S>) {
        if let Some(cb) = self.cb.take() {
            cb(res);
        }
    }
}

impl<S: Snapshot> Drop for SnapshotSender<S> {
    fn drop(&mut self) {
        if let Some(cb) = self.cb.take() {
            cb(Err(Error::OutcomeUnknown("the read was dropped unanswered".into())));
        }
    }
}

/// How a read is answered: with the values of its `Get` requests, or with a snapshot.
pub enum ReadResponder<S: Snapshot> {
    /// A `Get` command: answer with a `RaftCmdResponse`.
    Values(CmdResponseSender),
    /// A snapshot read (`async_snapshot`).
    Snapshot(SnapshotSender<S>),
}

impl<S: Snapshot> ReadResponder<S> {
    /// Answers with an error.
    pub fn respond_error(self, err: Error) {
        match self {
            ReadResponder::Values(ch) => ch.respond_error(err),
            ReadResponder::Snapshot(cb) => cb.respond(Err(err)),
        }
    }
}

/// A read for a peer: the request (its header, and `Get`s for a value read) and where to
/// answer.
pub struct ReadCommand<S: Snapshot> {
    /// The request.
    pub request: RaftCmdRequest,
    /// Where to answer.
    pub responder: ReadResponder<S>,
}

/// A snapshot of a peer's state, for tests, tools and the placement driver.
#[derive(Clone, Debug)]
pub struct PeerStatus {
    /// The region as the peer knows it.
    pub region: metapb::Region,
    /// This peer.
    pub peer: metapb::Peer,
    /// Its raft role.
    pub role: StateRole,
    /// Its raft term.
    pub term: u64,
    /// The leader's peer id as it knows it (0 if none).
    pub leader_id: u64,
    /// Index of the last entry in its log.
    pub last_index: u64,
    /// Commit index.
    pub commit_index: u64,
    /// Applied index.
    pub applied_index: u64,
    /// Index of the last compacted log entry.
    pub truncated_index: u64,
    /// Where it is in the sleep protocol.
    pub hibernate: crate::operation::hibernate::GroupState,
}

/// Messages of a peer FSM; `S` is the kv engine's snapshot type.
///
/// Every variant is at most 16 bytes inline (larger payloads are boxed): a mailbox keeps a
/// block of 31 message slots allocated even while its peer sleeps, so the size of this enum is
/// memory per peer (docs/performance.md).
pub enum PeerMsg<S: Snapshot> {
    /// A raft message from another peer of the region.
    RaftMessage(Box<RaftMessage>),
    /// A command to propose.
    RaftCommand(Box<RaftCommand>),
    /// A snapshot read the local reader could not serve.
    SnapshotRead(Box<ReadCommand<S>>),
    /// One base tick passed.
    Tick,
    /// The store with this id stopped answering liveness pings (`operation/liveness.rs`): a
    /// sleeping follower whose leader is there wakes.
    StoreUnreachable(u64),
    /// The transport could not deliver this peer's message to peer `to` (found when it
    /// flushed): raft probes it rather than streaming; a snapshot's send failed.
    Undelivered {
        /// The peer the message was for.
        to: u64,
        /// For (a piece of) a snapshot, its index; 0 for any other message.
        snap_index: u64,
    },
    /// A reader served a read from a lease about to end: renew it.
    RenewLease,
    /// Split the region at these keys (from the split checker, or asked for).
    SplitRegion(Box<SplitRegion>),
    /// The placement driver's ids for a split: propose it.
    ProposeSplit(Box<ProposeSplit>),
    /// The apply side applied entries.
    ApplyRes(Box<ApplyRes>),
    /// Report the peer's status.
    Query(Sender<PeerStatus>),
    /// An operator from the placement driver.
    Operator(Box<pd_client::Operator>),
    /// The apply side stopped after a destroy (everything before it is written); the region
    /// as apply left it, whose range the clean-up deletes.
    ApplyDestroyed(Box<metapb::Region>),
    /// The split checker measured the region: about this many bytes and keys (a lower bound
    /// when the region is over the split limits).
    ApproximateSize {
        /// Bytes of keys and values.
        size: u64,
        /// Keys.
        keys: u64,
    },
    /// To a merge source: the target's apply waits at CommitMerge until this peer has applied
    /// its PrepareMerge (appending the carried entries if it lags).
    CatchUpLogs(Box<CatchUpLogs>),
    /// To a merge source: the target (this region now) took its range in; destroy this peer,
    /// keeping the data, which the target owns.
    MergedInto(Box<metapb::Region>),
    /// To a merge source, or a peer whose region's members said it was merged away: raft
    /// took a snapshot of this region (newer) over its range, which waits for it to go.
    DisplacedBySnapshot(Box<metapb::Region>),
    /// The placement driver knows this region at a newer epoch without the peer (the id that
    /// asked): it was removed while away.
    StalePerPd(u64, Box<metapb::Region>),
}

/// A merge target's request to its local source peer: catch up to the PrepareMerge.
pub struct CatchUpLogs {
    /// The target region, whose apply waits.
    pub target_region_id: u64,
    /// The CommitMerge being applied, with the source's entries.
    pub merge: CommitMergeRequest,
}

/// A request to split a region.
pub struct SplitRegion {
    /// The epoch the keys were found in; a split of another version is refused.
    pub region_epoch: metapb::RegionEpoch,
    /// User keys, each the first key of a new region, in order.
    pub split_keys: Vec<Vec<u8>>,
    /// Who waits for the split to apply, if anyone.
    pub ch: Option<CmdResponseSender>,
}

/// A split with its new ids, ready to propose.
pub struct ProposeSplit {
    /// The request.
    pub split: SplitRegion,
    /// One set of ids per split key.
    pub ids: Vec<pd_client::SplitIds>,
}

/// Messages of the store FSM.
pub enum StoreMsg {
    /// A raft message for a region that has no peer on this store, or a store-level
    /// liveness message (region 0).
    RaftMessage(Box<RaftMessage>),
    /// The store's slow tick (every `hibernated_tick_interval`): a liveness round.
    Tick,
}

/// A committed entry's proposer, waiting for the result.
pub struct Proposal {
    /// Log index of the proposed entry.
    pub index: u64,
    /// Term it was proposed in. If the entry that commits at `index` has another term, the
    /// proposal lost its place and is answered `StaleCommand`.
    pub term: u64,
    /// Where to answer.
    pub ch: CmdResponseSender,
}

/// Committed entries for the apply FSM, with the proposals they answer.
pub struct ApplyTask {
    /// Committed entries, in order.
    pub entries: Vec<Entry>,
    /// Proposals whose index is among `entries`.
    pub proposals: Vec<Proposal>,
}

/// Messages of an apply FSM. Payloads are boxed, as in [`PeerMsg`]: the size of this enum
/// is memory per peer.
pub enum ApplyMsg {
    /// Apply these entries.
    Apply(Box<ApplyTask>),
    /// The peer is being destroyed: finish what came before, then stop and answer
    /// `PeerMsg::ApplyDestroyed` once it is written.
    Destroy,
    /// The merge source on this store has applied its PrepareMerge: go on with the
    /// CommitMerge that waited for it.
    ResumeMerge,
    /// The peer applied a snapshot: start over from this region and apply state.
    Reset {
        /// The region the snapshot holds.
        region: Box<metapb::Region>,
        /// The apply state the snapshot wrote.
        apply_state: Box<RaftApplyState>,
    },
}

/// Effects of admin commands that the peer must act on after apply.
pub enum ExecResult {
    /// A membership change was applied: `cc` goes to raft, `region` is the new region.
    ChangePeer {
        /// The raft conf change.
        cc: ConfChange,
        /// The region after the change.
        region: metapb::Region,
    },
    /// A split was applied: `regions` in key order, one of them the parent (`derived`).
    Split {
        /// Every region the parent became, in key order.
        regions: Vec<metapb::Region>,
        /// The parent's new range.
        derived: metapb::Region,
    },
    /// PrepareMerge was applied: this region is a merge source from now on.
    PrepareMerge {
        /// The region after it (version and conf_ver bumped).
        region: metapb::Region,
        /// The merge: target, first entry carried, the PrepareMerge's index.
        state: MergeState,
    },
    /// CommitMerge was applied: this region took in `source`.
    CommitMerge {
        /// The region after it, its range extended.
        region: metapb::Region,
        /// The source as it was merged.
        source: metapb::Region,
    },
    /// RollbackMerge was applied: the region serves again.
    RollbackMerge {
        /// The region after it.
        region: metapb::Region,
    },
}

/// What the apply side reports back to the peer.
pub struct ApplyRes {
    /// The region.
    pub region_id: u64,
    /// The apply state after the batch.
    pub apply_state: RaftApplyState,
    /// Term of the last applied entry.
    pub applied_term: u64,
    /// Admin effects, in log order.
    pub exec_results: Vec<ExecResult>,
    /// Bytes of keys and values this batch wrote (a hint for the split checker).
    pub written_bytes: u64,
    /// Keys this batch wrote.
    pub written_keys: u64,
    /// Set when apply stopped at a CommitMerge whose source has not caught up here: sent to
    /// the source peer once the batch is written.
    pub catch_up: Option<CatchUpLogs>,
    /// The source region whose catch-up the apply side is holding entries for, if any.
    pub holding_merge: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mailbox keeps a block of 31 slots of its message type allocated while its peer
    /// sleeps: a variant that grows these enums grows every idle peer.
    #[test]
    fn mailbox_messages_stay_small() {
        assert!(std::mem::size_of::<PeerMsg<engine::rocks::RocksSnapshot>>() <= 24);
        assert!(std::mem::size_of::<ApplyMsg>() <= 24);
    }
}
