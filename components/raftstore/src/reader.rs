//! The public read API: [`StoreReader::async_snapshot`].
//!
//! ```text
//! async_snapshot(ctx, cb)
//!   ├─ LocalReader (this thread): lease valid ──▶ cb(Ok(RegionSnapshot))
//!   └─ any doubt ──▶ the region's peer: lease read on its thread, or ReadIndex
//!                    (replica_read: follower read) ──▶ cb(snapshot or typed error)
//! ```
//!
//! Every answer is a snapshot bounded to the region (a key outside it gives
//! `KeyNotInRegion`) or a typed error saying how to retry (`NotLeader` with the leader,
//! `EpochNotMatch` with the current region, `RegionNotFound`, `ServerIsBusy`, ...).

use std::time::Duration;

use engine::{KvEngine, RaftEngine};
use local_reader::{LocalReader, ReadStats, ThreadReadId};
use proto::{
    metapb,
    raft_cmdpb::{RaftCmdRequest, RaftRequestHeader},
};

use crate::{
    msg::{ReadCommand, ReadResponder, SnapshotResult, SnapshotSender},
    store_meta::MetaDelegates,
    Error, RaftRouter, Result,
};

/// What a read is of and how it wants to be served.
#[derive(Clone, Debug, Default)]
pub struct ReadContext {
    /// Region id and epoch, the peer expected to serve (store id and peer id, 0 = any), the
    /// term expected (0 = any), `replica_read` for a follower read.
    pub header: RaftRequestHeader,
    /// Reads of one batch (arrived together) share one engine snapshot on the local path.
    pub read_id: Option<ThreadReadId>,
}

impl ReadContext {
    /// A read of `region` (at its current epoch) served by `peer`.
    pub fn new(region: &metapb::Region, peer: &metapb::Peer) -> Self {
        let mut header = RaftRequestHeader::default();
        header.region_id = region.id;
        header.set_region_epoch(region.get_region_epoch().clone());
        header.set_peer(peer.clone());
        ReadContext { header, read_id: None }
    }

    /// Asks for a follower read: the peer need not be the leader.
    pub fn replica_read(mut self) -> Self {
        self.header.replica_read = true;
        self
    }

    /// Marks the read as part of batch `id`.
    pub fn with_read_id(mut self, id: ThreadReadId) -> Self {
        self.read_id = Some(id);
        self
    }
}

/// Reads a store's regions; one per thread (see `RaftStore::reader`).
pub struct StoreReader<EK: KvEngine, ER: RaftEngine> {
    local: LocalReader<EK, MetaDelegates>,
    router: RaftRouter<EK, ER>,
}

impl<EK: KvEngine, ER: RaftEngine> StoreReader<EK, ER> {
    pub(crate) fn new(local: LocalReader<EK, MetaDelegates>, router: RaftRouter<EK, ER>) -> Self {
        StoreReader { local, router }
    }

    /// A snapshot for `ctx`, handed to `cb` exactly once: at once when the leader's lease
    /// serves it here, later when the peer does.
    pub fn async_snapshot(
        &mut self,
        ctx: &ReadContext,
        cb: impl FnOnce(SnapshotResult<EK::Snapshot>) + Send + 'static,
    ) {
        match self.local.read(&ctx.header, ctx.read_id) {
            Ok(snap) => cb(Ok(snap)),
            Err(_redirect) => self.redirect(ctx, cb),
        }
    }

    /// Sends the read to the region's peer.
    fn redirect(
        &self,
        ctx: &ReadContext,
        cb: impl FnOnce(SnapshotResult<EK::Snapshot>) + Send + 'static,
    ) {
        let mut request = RaftCmdRequest::default();
        request.set_header(ctx.header.clone());
        let responder = ReadResponder::Snapshot(SnapshotSender::new(cb));
        self.router.send_read(ReadCommand { request, responder });
    }

    /// [`Self::async_snapshot`], waiting at most `timeout` (then `OutcomeUnknown`).
    pub fn snapshot(
        &mut self,
        ctx: &ReadContext,
        timeout: Duration,
    ) -> SnapshotResult<EK::Snapshot> {
        if let Ok(snap) = self.local.read(&ctx.header, ctx.read_id) {
            return Ok(snap); // the fast path needs no channel
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.redirect(ctx, move |res| {
            let _ = tx.send(res);
        });
        rx.recv_timeout(timeout)
            .map_err(|_| Error::OutcomeUnknown(format!("no snapshot within {timeout:?}")))?
    }

    /// The value of `key` read through [`Self::snapshot`].
    pub fn get(
        &mut self,
        ctx: &ReadContext,
        key: &[u8],
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self.snapshot(ctx, timeout)?.get(key)?)
    }

    /// Drops the snapshot cached for the last `ThreadReadId` (its batch is done).
    pub fn release_snapshot(&mut self) {
        self.local.release_snapshot();
    }

    /// The store's read-path counters.
    pub fn stats(&self) -> ReadStats {
        self.local.counters().stats()
    }
}
