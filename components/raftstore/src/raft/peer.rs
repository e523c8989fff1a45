//! `Peer`: one region's raft group on this store. State only; the operations on it live in
//! `operation/`.

use std::collections::VecDeque;

use engine::{KvEngine, RaftEngine};
use local_reader::Lease;
use proto::{
    eraftpb,
    metapb::{self, Region},
    raft_serverpb::RaftMessage,
};
use raft::{RawNode, Ready, StateRole};
use rustc_hash::FxHashMap;
use slog::{o, Logger};

use crate::metrics::ProposalKind;
use crate::{
    msg::{PeerStatus, Proposal},
    operation::snapshot::{SnapChunks, SnapGenerator, SnapSends},
    operation::{
        conf_change::RemovalHold,
        hibernate::Hibernation,
        lease::{LeaseEvidence, PublishedDelegate},
        merge::MergeFlow,
        pd::PeerHealth,
        read::ReadQueue,
        split::SplitState,
        stale::StaleCheck,
        transfer_leader::TransferFence,
    },
    raft::storage::PeerStorage,
    Config, Error, Result,
};

/// Where a peer is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    /// Working.
    Alive,
    /// Removed: waiting for its apply side to stop before its data is deleted.
    Destroying,
    /// Its data deleted; the poller drops it.
    Destroyed,
}

/// One region's raft group on this store.
pub struct Peer<EK: KvEngine, ER: RaftEngine> {
    pub(crate) raft_group: RawNode<PeerStorage<EK, ER>>,
    pub(crate) peer: metapb::Peer,
    pub(crate) logger: Logger,
    /// Proposals not yet handed to apply, in index order.
    pub(crate) proposals: VecDeque<Proposal>,
    /// A ready whose entries and hard state are in this round's raft log batch, waiting for it
    /// to be written.
    pub(crate) pending_ready: Option<Ready>,
    /// Term of the last applied entry.
    pub(crate) applied_term: u64,
    /// Base ticks since the peer started (drives periodic work).
    pub(crate) ticks: u64,
    /// The last log index handed to the apply side.
    pub(crate) handed_index: u64,
    /// The region of a snapshot raft took over other regions' peers: it waits till they are
    /// gone from its range.
    pub(crate) displacing: Option<Region>,
    /// Where the peer is in its life (see `operation::life`).
    pub(crate) life: Life,
    /// Peers learned from incoming messages, so that a peer that does not know its region
    /// yet (uninitialized, waiting for a snapshot) can answer them.
    pub(crate) peer_cache: FxHashMap<u64, metapb::Peer>,
    /// Pieces of a snapshot being received.
    pub(crate) snap_chunks: Option<SnapChunks>,
    /// Reads waiting on raft: rounds sent, reads of this round, reads held, and a leader's
    /// held answers to followers' ReadIndex.
    pub(crate) reads: ReadQueue<EK::Snapshot>,
    /// The leader lease.
    pub(crate) lease: Lease,
    /// Entries this leader proposed in its term and the clock time of each proposal, in
    /// index order: when one commits, the lease is renewed from its proposal time.
    pub(crate) lease_evidence: LeaseEvidence,
    /// Set when a `MsgTimeoutNow` is sent: the log's last index then. No lease until an
    /// entry above it commits (see `operation::transfer_leader`).
    pub(crate) transfer_fence: TransferFence,
    /// A leader's own removal, held back from apply until it has handed over.
    pub(crate) removal: RemovalHold,
    /// Vote and pre-vote requests are dropped until `ticks` reaches this (a restart).
    pub(crate) refuse_votes_until: u64,
    /// Snapshots sent and not yet settled: follower peer id → (clock time of the send, the
    /// snapshot's index).
    pub(crate) snap_sends: SnapSends,
    /// What the store's delegate map last heard of this peer.
    pub(crate) published: Option<PublishedDelegate>,
    /// Proposals made since the store's metrics last took them, by `ProposalKind`.
    pub(crate) proposals_made: [u64; ProposalKind::COUNT],
    /// Splits: pending, writes since the last check, the last applied.
    pub(crate) split: SplitState,
    /// When each other peer was last heard from, and when this one last led.
    pub(crate) health: PeerHealth,
    /// Merges: this region's as a source, and a CommitMerge it proposed as a target.
    pub(crate) merge: MergeFlow,
    /// How long the peer has known no leader, and when it last asked the placement driver
    /// whether it is stale.
    pub(crate) stale: StaleCheck,
    /// Whether the region sleeps, and a leader's sleep votes (see `operation::hibernate`).
    pub(crate) hibernation: Hibernation,
    /// A leader broadcasts every commit until the entry at this index commits in its term:
    /// its first entry, or an admin command (see `operation::ready`, lazy commit).
    pub(crate) bcast_commit_until: Option<u64>,
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// The peer of `region` on `store_id`, over its persisted state. `logger` is the store's;
    /// the peer's logger adds its region and peer ids, once.
    pub fn new(
        cfg: &Config,
        store_id: u64,
        kv: EK,
        raft: ER,
        region: Region,
        snap_gen: Option<SnapGenerator<EK>>,
        logger: &Logger,
    ) -> Result<Self> {
        let peer = region.get_peers().iter().find(|p| p.store_id == store_id).cloned().ok_or_else(
            || {
                Error::InvalidArgument(format!(
                    "region {} has no peer on store {store_id}",
                    region.id
                ))
            },
        )?;
        Self::with_peer(cfg, kv, raft, region, peer, snap_gen, logger)
    }

    /// The peer `peer` of `region`. A region with no peers (only its id) makes an
    /// uninitialized peer, which waits for a snapshot.
    pub fn with_peer(
        cfg: &Config,
        kv: EK,
        raft: ER,
        region: Region,
        peer: metapb::Peer,
        snap_gen: Option<SnapGenerator<EK>>,
        logger: &Logger,
    ) -> Result<Self> {
        let logger = logger.new(o!("region_id" => region.id, "peer_id" => peer.id));
        let mut storage = PeerStorage::new(kv, raft, region, logger.clone())?;
        if let Some(generator) = snap_gen {
            storage.set_snap_generator(generator);
        }
        storage.set_entry_cache_limit(cfg.raft_entry_cache_limit);
        let applied = storage.applied_index();
        let applied_term = storage.apply_state().commit_term.max(storage.truncated_term());
        let raft_cfg = cfg.raft_config(peer.id, applied);
        let raft_group = RawNode::new(&raft_cfg, storage, &logger)
            .map_err(|e| Error::InvalidArgument(format!("raft: {e}")))?;
        Ok(Peer {
            raft_group,
            peer,
            logger,
            proposals: VecDeque::new(),
            pending_ready: None,
            applied_term,
            ticks: 0,
            handed_index: applied,
            displacing: None,
            life: Life::Alive,
            peer_cache: FxHashMap::default(),
            bcast_commit_until: None,
            snap_chunks: None,
            reads: ReadQueue::default(),
            lease: Lease::new(cfg.raft_store_max_leader_lease, cfg.max_lease_drift()),
            lease_evidence: LeaseEvidence::default(),
            transfer_fence: TransferFence::default(),
            removal: RemovalHold::default(),
            refuse_votes_until: 0,
            snap_sends: SnapSends::default(),
            published: None,
            proposals_made: [0; ProposalKind::COUNT],
            split: SplitState::new(cfg.region_split_check_diff),
            health: PeerHealth::default(),
            merge: MergeFlow::default(),
            stale: StaleCheck::default(),
            hibernation: Hibernation::default(),
        })
    }

    /// Whether the peer works (neither being destroyed nor destroyed).
    pub fn is_alive(&self) -> bool {
        self.life == Life::Alive
    }

    /// The region as this peer knows it.
    pub fn region(&self) -> &Region {
        self.raft_group.store().region()
    }

    /// The region's id.
    pub fn region_id(&self) -> u64 {
        self.region().id
    }

    /// This peer's id.
    pub fn peer_id(&self) -> u64 {
        self.peer.id
    }

    /// The peer's storage.
    pub fn storage(&self) -> &PeerStorage<EK, ER> {
        self.raft_group.store()
    }

    /// Whether this peer is the leader.
    pub fn is_leader(&self) -> bool {
        self.raft_group.raft.state == StateRole::Leader
    }

    /// The current raft term.
    pub fn term(&self) -> u64 {
        self.raft_group.raft.term
    }

    /// The leader as this peer knows it.
    pub fn leader(&self) -> Option<metapb::Peer> {
        self.peer_by_id(self.raft_group.raft.leader_id)
    }

    /// The region's peer with this id, or one learned from a message.
    pub fn peer_by_id(&self, peer_id: u64) -> Option<metapb::Peer> {
        self.region()
            .get_peers()
            .iter()
            .find(|p| p.id == peer_id)
            .or_else(|| self.peer_cache.get(&peer_id))
            .cloned()
    }

    /// The peer's current status.
    pub fn status(&self) -> PeerStatus {
        let raft = &self.raft_group.raft;
        PeerStatus {
            region: self.region().clone(),
            peer: self.peer.clone(),
            role: raft.state,
            term: raft.term,
            leader_id: raft.leader_id,
            last_index: raft.raft_log.last_index(),
            commit_index: raft.raft_log.committed,
            applied_index: self.storage().applied_index(),
            truncated_index: self.storage().truncated_index(),
            hibernate: self.hibernation.state(),
        }
    }

    /// Wraps a raft message for the transport, or `None` if its target is not in the region.
    pub(crate) fn wrap_message(&self, msg: eraftpb::Message) -> Option<RaftMessage> {
        let to_peer = self.peer_by_id(msg.to)?;
        let region = self.region();
        let mut out = RaftMessage::default();
        out.region_id = region.id;
        out.set_from_peer(self.peer.clone());
        out.set_to_peer(to_peer);
        out.set_region_epoch(region.get_region_epoch().clone());
        out.start_key = region.start_key.clone();
        out.end_key = region.end_key.clone();
        out.set_message(msg);
        Some(out)
    }
}
