//! A peer's life: created for a message of a region the store does not have, destroyed when
//! it is removed from its region.

use engine::{
    keys, KvEngine, Mutable, RaftEngine, RaftLogBatch, WriteOptions, CF_DEFAULT, CF_META,
};
use proto::{
    eraftpb::MessageType,
    metapb::Region,
    raft_serverpb::{PeerState, RaftMessage, RegionLocalState},
};
use router::BasicMailbox;
use slog::{debug, error, info};

use crate::{
    batch::StoreContext,
    fsm::{apply::ApplyFsm, peer::PeerFsm},
    msg::{ApplyMsg, PeerMsg},
    operation::{merge::region_state, message::check_message_form, stale::answer_from_tombstone},
    raft::{
        apply::Apply,
        peer::{Life, Peer},
    },
    transport::Transport,
    Error,
};

/// Whether a message may bring a peer into being: a vote request, or the first heartbeat of a
/// leader that has never heard from the peer (commit 0). Anything else for a region the store
/// does not have is late or stray (as TiKV's `is_initial_msg`).
fn is_initial_msg(msg: &proto::eraftpb::Message) -> bool {
    match msg.get_msg_type() {
        MessageType::MsgRequestVote | MessageType::MsgRequestPreVote => true,
        MessageType::MsgHeartbeat => msg.commit == 0,
        _ => false,
    }
}

/// A message for a region with no peer here: creates an uninitialized peer for it (it waits
/// for a snapshot) unless the message is stale or the region's range is taken, then delivers
/// the message to it.
pub(crate) fn maybe_create_peer<EK: KvEngine, ER: RaftEngine, T: Transport>(
    ctx: &mut StoreContext<EK, ER, T>,
    msg: RaftMessage,
) {
    let region_id = msg.region_id;
    if msg.has_extra() {
        return; // not raft's own: a peer comes into being only for raft
    }
    if let Err(reason) = check_create(ctx, &msg) {
        debug!(ctx.logger, "not creating a peer"; "region_id" => region_id, "reason" => reason);
        return;
    }
    let mut region = Region::default();
    region.id = region_id;
    let mut peer = match Peer::with_peer(
        &ctx.cfg,
        ctx.kv.clone(),
        ctx.raft.clone(),
        region.clone(),
        msg.get_to_peer().clone(),
        ctx.snap_gen.clone(),
        &ctx.logger,
    ) {
        Ok(peer) => peer,
        Err(e) => {
            error!(ctx.logger, "cannot create peer"; "region_id" => region_id, "err" => %e);
            return;
        }
    };
    peer.refuse_votes_until = ctx.vote_refusal_ticks();
    info!(peer.logger, "peer created for an incoming message"; "from" => msg.get_from_peer().id);
    register_peer(ctx, peer);
    // The mailbox was just registered; a failure here means shutdown.
    let _ = ctx.router.force_send(region_id, PeerMsg::RaftMessage(Box::new(msg)));
}

/// Registers a new peer and its apply side with the store's two batch systems.
pub(crate) fn register_peer<EK: KvEngine, ER: RaftEngine, T>(
    ctx: &StoreContext<EK, ER, T>,
    peer: Peer<EK, ER>,
) {
    let region_id = peer.region_id();
    let apply = Apply::new(
        peer.region().clone(),
        ctx.kv.clone(),
        peer.storage().apply_state().clone(),
        peer.logger.clone(),
    );
    let (apply_tx, apply_fsm) = ApplyFsm::create(apply, ctx.cfg.mailbox_capacity);
    ctx.apply.register(region_id, BasicMailbox::new(apply_tx, apply_fsm));
    let (tx, fsm) = PeerFsm::create(peer, ctx.cfg.mailbox_capacity);
    ctx.router.register(region_id, BasicMailbox::new(tx, fsm));
}

fn check_create<EK: KvEngine, ER: RaftEngine, T: Transport>(
    ctx: &mut StoreContext<EK, ER, T>,
    msg: &RaftMessage,
) -> Result<(), String> {
    if msg.is_tombstone {
        return Err("tombstone message".into());
    }
    check_message_form(msg)?;
    let epoch = msg.get_region_epoch();
    if epoch.conf_ver == 0 || epoch.version == 0 {
        return Err("a message without a region epoch".into());
    }
    if ctx.router.contains(msg.region_id) {
        return Err("a peer exists (raced)".into());
    }
    let state: Option<RegionLocalState> = ctx
        .kv
        .get_msg_cf(CF_META, &keys::region_state_key(msg.region_id))
        .map_err(|e| e.to_string())?;
    if let Some(state) = state {
        let conf_ver = state.get_region().get_region_epoch().conf_ver;
        // A peer destroyed on word of its removal (GC, the placement driver) left a tombstone
        // of the region as it knew it, itself included: a member lagging between that and its
        // removal may still address it. Its id, or an older one, never comes back (TiKV's
        // rule).
        let to = msg.get_to_peer();
        let store_peer = state.get_region().get_peers().iter().find(|p| p.store_id == to.store_id);
        if state.get_state() == PeerState::Tombstone && store_peer.is_some_and(|p| p.id >= to.id) {
            answer_from_tombstone(ctx, msg, &state);
            return Err(format!("a message for destroyed peer {} (or an older one)", to.id));
        }
        if state.get_state() == PeerState::Tombstone && msg.get_region_epoch().conf_ver <= conf_ver
        {
            answer_from_tombstone(ctx, msg, &state);
            return Err(format!("stale message for a destroyed peer (conf_ver {conf_ver})"));
        }
    }
    let mut meta = ctx.meta.lock().unwrap_or_else(|e| e.into_inner());
    let overlaps = meta.overlapping(&msg.start_key, &msg.end_key);
    // Regions merged away (their members said so) hold the range only till a newer snapshot
    // displaces them: the peer that will take it may be created.
    if !overlaps.iter().all(|id| meta.is_merged_away(*id)) {
        // A region born from a split of a region here that has not applied it yet: keep the
        // message for the peer the split will create (its votes must not be lost).
        let newer = overlaps.iter().all(|id| {
            meta.region(*id)
                .is_some_and(|r| r.get_region_epoch().version < msg.get_region_epoch().version)
        });
        if newer && !msg.get_message().get_msg_type().eq(&proto::eraftpb::MessageType::MsgSnapshot)
        {
            let kept = meta.keep_pending_msg(msg.clone());
            return Err(format!("kept for a split not applied here yet ({kept})"));
        }
        return Err(format!("range overlaps regions {overlaps:?}"));
    }
    if !is_initial_msg(msg.get_message()) {
        return Err(format!("{:?} cannot create a peer", msg.get_message().get_msg_type()));
    }
    Ok(())
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Starts removing this peer for good. Readers and waiting callers are let go at once:
    /// pending proposals get an unknown outcome (they may be in other peers' logs and commit
    /// there), reads a retryable error. The apply side is asked to stop: it finishes what it
    /// was given, writes it, and answers `ApplyDestroyed`, and only then are the peer's data
    /// and log deleted ([`Self::finish_destroy`]), so no late apply write outlives them.
    pub(crate) fn destroy<T: Transport>(&mut self, ctx: &mut StoreContext<EK, ER, T>) {
        if self.life != Life::Alive {
            return;
        }
        let region_id = self.region_id();
        // Readers first: none may take a snapshot of the data about to be deleted.
        self.lease.expire();
        ctx.meta.lock().unwrap_or_else(|e| e.into_inner()).remove_reader(region_id, self.peer_id());
        for p in self.proposals.drain(..) {
            p.ch.respond_error(Error::OutcomeUnknown(format!(
                "peer of region {region_id} destroyed before the command applied"
            )));
        }
        self.removal = Default::default();
        self.fail_reads(|| Error::RegionNotFound(region_id));
        self.pending_ready = None;
        self.life = Life::Destroying;
        info!(self.logger, "destroying peer: waiting for its apply side to stop");
        if ctx.apply.force_send(region_id, ApplyMsg::Destroy).is_err() {
            let region = self.region().clone();
            self.finish_destroy(ctx, region); // no apply side (shutting down): nothing in flight
        }
    }

    /// The apply side stopped: a tombstone region state, the data and raft log deleted, the
    /// mailbox unregistered (so a newer peer of the region can be created), and the peer
    /// marked for the poller to drop.
    pub(crate) fn finish_destroy<T>(&mut self, ctx: &mut StoreContext<EK, ER, T>, region: Region) {
        if self.life != Life::Destroying {
            return;
        }
        // A crash here: what apply wrote is on disk, the clean-up is not (recovery does it).
        fail::fail_point!("destroy_before_clean_up", |_| {});
        // The range deleted is the region as apply left it: a split applied meanwhile gave
        // the rest of the old range to regions that live on.
        if let Err(e) = self.clean_up(&region) {
            // Going on would free the range in `StoreMeta` while its data and states are
            // still on disk, for another peer to take and a restart to delete: stop instead.
            panic!("region {} clean-up failed, the store cannot go on: {e}", region.id);
        }
        let mut meta = ctx.meta.lock().unwrap_or_else(|e| e.into_inner());
        meta.release_range(region.id);
        if meta.region(region.id).is_some() {
            meta.remove_region(region.id);
        }
        drop(meta);
        let _ = ctx.apply.close(region.id);
        let _ = ctx.router.close(region.id);
        self.life = Life::Destroyed;
        info!(self.logger, "peer destroyed");
    }

    /// A message for a peer being destroyed: commands and reads are answered (nothing of them
    /// was proposed), the rest is dropped.
    pub(crate) fn refuse_while_destroying(&self, msg: PeerMsg<EK::Snapshot>) {
        let gone = || Error::RegionNotFound(self.region_id());
        match msg {
            PeerMsg::RaftCommand(c) => c.ch.respond_error(gone()),
            PeerMsg::SnapshotRead(r) => r.responder.respond_error(gone()),
            PeerMsg::SplitRegion(s) => {
                if let Some(ch) = s.ch {
                    ch.respond_error(gone());
                }
            }
            PeerMsg::Query(tx) => drop(tx.send(self.status())),
            _ => {}
        }
    }

    fn clean_up(&self, region: &Region) -> crate::Result<()> {
        let last_index = self.storage().raft_state().last_index;
        if self.merge.is_merged() || merged_away(self.storage().kv_engine(), region.id)? {
            // The target's CommitMerge wrote this region's tombstone, and its data is the
            // target's now: only the log and the apply state go. The kv write is synced, so
            // the tombstone is on disk before the log goes; the log's deletion is not: if a
            // crash loses it, recovery deletes the log of a tombstone again.
            let kv = self.storage().kv_engine();
            let mut wb = kv.write_batch();
            wb.delete_cf(CF_META, &keys::apply_state_key(region.id))?;
            if let (Some(target), false) = (self.merge.merged_into(), merged_away(kv, region.id)?) {
                // Given way to a snapshot of the target: no CommitMerge wrote the tombstone
                // here, so the clean-up does, with the apply side stopped.
                let mut merge = self.merge.state().cloned().unwrap_or_default();
                merge.set_target(target.clone());
                let state = region_state(PeerState::Tombstone, region.clone(), Some(merge));
                wb.put_msg_cf(CF_META, &keys::region_state_key(region.id), &state)?;
            }
            kv.write(&mut wb, WriteOptions::SYNC)?;
            return delete_raft_log(self.storage().raft_engine(), region.id, last_index, false);
        }
        tombstone_region(
            self.storage().kv_engine(),
            self.storage().raft_engine(),
            region,
            last_index,
        )
    }
}

/// Makes `region` a tombstone on this store: the tombstone state written, and the region's
/// data, apply state, raft state and log (up to `last_index`) deleted; synced. Late messages
/// for the region then find the tombstone and create nothing.
pub(crate) fn tombstone_region<EK: KvEngine, ER: RaftEngine>(
    kv: &EK,
    raft: &ER,
    region: &Region,
    last_index: u64,
) -> crate::Result<()> {
    let mut wb = kv.write_batch();
    let mut state = RegionLocalState::default();
    state.set_state(PeerState::Tombstone);
    state.set_region(region.clone());
    wb.put_msg_cf(CF_META, &keys::region_state_key(region.id), &state)?;
    wb.delete_cf(CF_META, &keys::apply_state_key(region.id))?;
    if !region.get_peers().is_empty() {
        wb.delete_range_cf(
            CF_DEFAULT,
            &keys::data_key(&region.start_key),
            &keys::data_end_key(&region.end_key),
        )?;
    }
    kv.write(&mut wb, WriteOptions::SYNC)?;
    delete_raft_log(raft, region.id, last_index, true)
}

/// Whether `region_id`'s state here is a tombstone a merge wrote (it names its target): its
/// data belongs to the target.
fn merged_away<EK: KvEngine>(kv: &EK, region_id: u64) -> crate::Result<bool> {
    let state = kv.get_msg_cf::<RegionLocalState>(CF_META, &keys::region_state_key(region_id))?;
    Ok(state.is_some_and(|s| s.get_state() == PeerState::Tombstone && s.has_merge_state()))
}

/// Deletes a region's raft log (up to `last_index`) and raft state, synced if `sync`.
pub(crate) fn delete_raft_log<ER: RaftEngine>(
    raft: &ER,
    region_id: u64,
    last_index: u64,
    sync: bool,
) -> crate::Result<()> {
    let mut batch = raft.log_batch(0);
    batch.cut_logs(region_id, 0, last_index + 1)?;
    batch.delete_raft_state(region_id)?;
    raft.consume(&mut batch, sync)?;
    Ok(())
}
