//! Snapshots over a stream of their own: the pieces of one snapshot (raft messages carrying
//! `MsgSnapshot`, split by the store into `snap_chunk_size` chunks) go in one `Snapshot`
//! call on a connection of their own, so a large snapshot does not hold up the raft messages
//! of other regions on `BatchRaft`.
//!
//! Sends are limited: at most `snapshot_concurrency` streams at a time, at most
//! `snapshot_pending` snapshots waiting or streaming; past that a snapshot is reported
//! undelivered at once. A send that fails (no address, refused, the receiver busy, the
//! stream broken, `snapshot_timeout` passed) is reported undelivered at the next flush, so
//! the leader tells raft the snapshot failed and sends another later. Its success needs no
//! word: the follower answers raft once it has applied the snapshot.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use proto::raft_serverpb::RaftMessage;
use raftstore::transport::Undelivered;
use tokio::{runtime::Handle, sync::Semaphore};

use crate::{
    config::RaftClientConfig,
    raft_client::{connect_channel, AddressResolver, ClientStats, Lost},
    service::raft_client::RaftClient as RaftStub,
};

/// The sending side of snapshots, shared by a client's clones.
pub(crate) struct SnapshotSender {
    cfg: RaftClientConfig,
    resolver: Arc<dyn AddressResolver>,
    runtime: Handle,
    permits: Arc<Semaphore>,
    pending: Arc<AtomicUsize>,
    lost: Arc<Lost>,
    stats: Arc<ClientStats>,
}

impl SnapshotSender {
    pub(crate) fn new(
        cfg: RaftClientConfig,
        resolver: Arc<dyn AddressResolver>,
        runtime: Handle,
        lost: Arc<Lost>,
        stats: Arc<ClientStats>,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(cfg.snapshot_concurrency));
        let pending = Arc::new(AtomicUsize::new(0));
        SnapshotSender { cfg, resolver, runtime, permits, pending, lost, stats }
    }

    /// Starts sending `pieces` (one snapshot, in order) to the store of their target, or
    /// reports the snapshot undelivered now if too many are pending.
    pub(crate) fn send(&self, pieces: Vec<RaftMessage>, undelivered: &mut Vec<Undelivered>) {
        let Some(first) = pieces.first() else { return };
        let report = Undelivered::of(first);
        if self.pending.fetch_add(1, Ordering::AcqRel) >= self.cfg.snapshot_pending {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            self.stats.snapshot_failures.fetch_add(1, Ordering::Relaxed);
            undelivered.push(report);
            return;
        }
        let store_id = first.get_to_peer().store_id;
        let task = SnapshotTask {
            cfg: self.cfg.clone(),
            resolver: self.resolver.clone(),
            permits: self.permits.clone(),
            stats: self.stats.clone(),
        };
        let (pending, lost, stats) = (self.pending.clone(), self.lost.clone(), self.stats.clone());
        self.runtime.spawn(async move {
            let sent = tokio::time::timeout(task.cfg.snapshot_timeout, task.run(store_id, pieces));
            if !matches!(sent.await, Ok(true)) {
                stats.snapshot_failures.fetch_add(1, Ordering::Relaxed);
                lost.push_one(report);
            }
            pending.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

struct SnapshotTask {
    cfg: RaftClientConfig,
    resolver: Arc<dyn AddressResolver>,
    permits: Arc<Semaphore>,
    stats: Arc<ClientStats>,
}

impl SnapshotTask {
    /// Streams `pieces` in one `Snapshot` call; true when the receiver took every piece.
    async fn run(self, store_id: u64, pieces: Vec<RaftMessage>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else { return false };
        let Ok(channel) = connect_channel(&self.resolver, store_id, &self.cfg).await else {
            return false;
        };
        let mut stub = RaftStub::new(channel).max_encoding_message_size(usize::MAX);
        let n = pieces.len() as u64;
        let done = stub.snapshot(tokio_stream::iter(pieces)).await;
        if done.is_ok() {
            self.stats.snapshots.fetch_add(1, Ordering::Relaxed);
            self.stats.snapshot_pieces.fetch_add(n, Ordering::Relaxed);
        }
        done.is_ok()
    }
}
