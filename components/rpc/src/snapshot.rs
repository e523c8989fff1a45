//! Snapshots over a stream of their own: the pieces of one snapshot (raft messages carrying
//! `MsgSnapshot`, split by the store into `snap_chunk_size` chunks) go in one `Snapshot`
//! call on a connection of their own, so a large snapshot does not hold up the raft messages
//! of other regions on `BatchRaft`.
//!
//! Sends are limited: at most `snapshot_concurrency` streams at a time, at most
//! `snapshot_pending` snapshots waiting or streaming; past that a snapshot is reported
//! undelivered at once. A newer snapshot for a peer cancels the older one still waiting or
//! streaming to it (two streams to one peer would undo each other's pieces). A send that
//! fails (no address, refused, the receiver busy, the stream broken, `snapshot_timeout`
//! passed once it may stream) is reported undelivered, with its index, at the next flush:
//! the leader tells raft the snapshot failed, unless it has moved on to another one. Its
//! success needs no word: the follower answers raft once it has applied the snapshot.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use proto::raft_serverpb::RaftMessage;
use raftstore::transport::Undelivered;
use tokio::{runtime::Handle, sync::Semaphore, task::AbortHandle};

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
    /// The send to each peer, by peer id: a newer one aborts it.
    sends: Mutex<HashMap<u64, AbortHandle>>,
    lost: Arc<Lost>,
    stats: Arc<ClientStats>,
}

/// Counts a snapshot as pending until its task ends, however it ends (done, failed,
/// aborted by a newer snapshot, dropped at shutdown).
struct PendingGuard(Arc<AtomicUsize>);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
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
        let sends = Mutex::default();
        SnapshotSender { cfg, resolver, runtime, permits, pending, sends, lost, stats }
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
        let guard = PendingGuard(self.pending.clone());
        let (store_id, to_peer) = (first.get_to_peer().store_id, first.get_to_peer().id);
        let task = SnapshotTask {
            cfg: self.cfg.clone(),
            resolver: self.resolver.clone(),
            permits: self.permits.clone(),
            stats: self.stats.clone(),
        };
        let (lost, stats) = (self.lost.clone(), self.stats.clone());
        let handle = self.runtime.spawn(async move {
            let _pending = guard;
            if !task.run(store_id, pieces).await {
                stats.snapshot_failures.fetch_add(1, Ordering::Relaxed);
                lost.push_one(report);
            }
        });
        let mut sends = self.sends.lock().unwrap_or_else(|e| e.into_inner());
        sends.retain(|_, h| !h.is_finished());
        if let Some(older) = sends.insert(to_peer, handle.abort_handle()) {
            older.abort();
        }
    }
}

struct SnapshotTask {
    cfg: RaftClientConfig,
    resolver: Arc<dyn AddressResolver>,
    permits: Arc<Semaphore>,
    stats: Arc<ClientStats>,
}

impl SnapshotTask {
    /// Streams `pieces` in one `Snapshot` call once a permit is free, within
    /// `snapshot_timeout` from then; true when the receiver took every piece.
    async fn run(self, store_id: u64, pieces: Vec<RaftMessage>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else { return false };
        let n = pieces.len() as u64;
        let send = async {
            let channel = connect_channel(&self.resolver, store_id, &self.cfg).await.ok()?;
            let mut stub = RaftStub::new(channel).max_encoding_message_size(usize::MAX);
            stub.snapshot(tokio_stream::iter(pieces)).await.ok()
        };
        let done = tokio::time::timeout(self.cfg.snapshot_timeout, send).await.ok().flatten();
        if done.is_some() {
            self.stats.snapshots.fetch_add(1, Ordering::Relaxed);
            self.stats.snapshot_pieces.fetch_add(n, Ordering::Relaxed);
        }
        done.is_some()
    }
}
