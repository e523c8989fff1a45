//! The receiving side of raft messages: the `BatchRaft` stream of another store, each
//! message handed to this store's [`MessageSink`].
//!
//! A frame that does not parse ends its stream with `InvalidArgument` (the sender reconnects);
//! a message the sink refuses (no such region, full mailbox) is dropped and counted, as a lost
//! message would be on the network. Nothing a peer sends can stop the service.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use proto::raft_serverpb::{BatchRaftMessage, Done, RaftMessage};
use raftstore::transport::TransportError;
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status, Streaming};

use crate::service::raft_server::{Raft, RaftServer};

/// Where received raft messages go: the store's router in a server.
pub trait MessageSink: Send + Sync + 'static {
    /// Delivers `msg` to its peer (or the store), or says why it could not.
    fn deliver(&self, msg: RaftMessage) -> Result<(), TransportError>;

    /// Delivers a received batch in order; returns how many were delivered and refused. A
    /// sink whose delivery takes a lock overrides it to take the lock once.
    fn deliver_batch(&self, msgs: Vec<RaftMessage>) -> (u64, u64) {
        let total = msgs.len() as u64;
        let delivered = msgs.into_iter().filter_map(|m| self.deliver(m).ok()).count();
        (delivered as u64, total - delivered as u64)
    }
}

/// Counts of what the service received.
#[derive(Debug, Default)]
pub struct ServiceStats {
    /// Batches received.
    pub batches: AtomicU64,
    /// Messages handed to the sink.
    pub delivered: AtomicU64,
    /// Messages the sink refused.
    pub dropped: AtomicU64,
    /// Snapshot streams received whole.
    pub snapshots: AtomicU64,
    /// Snapshot streams refused because `max_snapshot_receives` were already running.
    pub snapshots_refused: AtomicU64,
}

/// The `Raft` gRPC service of one store.
pub struct RaftService<S> {
    sink: Arc<S>,
    stats: Arc<ServiceStats>,
    snapshot_permits: Arc<Semaphore>,
}

/// How long a snapshot stream may go without a piece before the receiver drops it (and its
/// permit).
pub const SNAPSHOT_PIECE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a snapshot piece waits for room in a full mailbox before the stream fails.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Snapshot streams a service takes at once by default.
pub const DEFAULT_SNAPSHOT_RECEIVES: usize = 4;

impl<S: MessageSink> RaftService<S> {
    /// A service that hands what it receives to `sink`.
    pub fn new(sink: Arc<S>) -> Self {
        let snapshot_permits = Arc::new(Semaphore::new(DEFAULT_SNAPSHOT_RECEIVES));
        RaftService { sink, stats: Arc::default(), snapshot_permits }
    }

    /// Takes at most `n` snapshot streams at once; more are refused (`ResourceExhausted`),
    /// and their senders report them failed to raft.
    pub fn with_snapshot_receives(mut self, n: usize) -> Self {
        self.snapshot_permits = Arc::new(Semaphore::new(n));
        self
    }

    /// What it has received so far.
    pub fn stats(&self) -> Arc<ServiceStats> {
        self.stats.clone()
    }

    /// Hands a snapshot piece to the sink, waiting a little while its mailbox is full
    /// rather than failing a large snapshot halfway.
    async fn deliver_piece(&self, piece: RaftMessage) -> Result<(), TransportError> {
        let deadline = tokio::time::Instant::now() + BUSY_WAIT;
        let mut piece = piece;
        loop {
            let retry = piece.clone();
            match self.sink.deliver(piece) {
                Err(TransportError::Busy(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    piece = retry;
                }
                res => return res,
            }
        }
    }

    /// The service as tonic serves it, taking frames up to `max_frame_bytes`: at least the
    /// senders' `RaftClientConfig::max_batch_bytes`, or their full batches break the stream.
    pub fn into_server(self, max_frame_bytes: usize) -> RaftServer<Self> {
        RaftServer::new(self).max_decoding_message_size(max_frame_bytes)
    }
}

/// A tonic server for stores: TCP_NODELAY, and HTTP/2 pings every `keepalive_interval`
/// that drop a connection whose peer does not answer within `keepalive_timeout`, so the
/// stream of a sender that vanished without closing it ends.
pub fn server_builder(
    keepalive_interval: std::time::Duration,
    keepalive_timeout: std::time::Duration,
) -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(keepalive_interval))
        .http2_keepalive_timeout(Some(keepalive_timeout))
}

#[tonic::async_trait]
impl<S: MessageSink> Raft for RaftService<S> {
    async fn batch_raft(
        &self,
        request: Request<Streaming<BatchRaftMessage>>,
    ) -> Result<Response<Done>, Status> {
        let mut stream = request.into_inner();
        while let Some(batch) = stream.message().await? {
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
            let (delivered, dropped) = self.sink.deliver_batch(batch.msgs.into_vec());
            self.stats.delivered.fetch_add(delivered, Ordering::Relaxed);
            self.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        Ok(Response::new(Done::new()))
    }

    async fn snapshot(
        &self,
        request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<Done>, Status> {
        let Ok(_permit) = self.snapshot_permits.try_acquire() else {
            self.stats.snapshots_refused.fetch_add(1, Ordering::Relaxed);
            return Err(Status::resource_exhausted("too many snapshots being received"));
        };
        let mut stream = request.into_inner();
        loop {
            let next = tokio::time::timeout(SNAPSHOT_PIECE_WAIT, stream.message()).await;
            let Some(piece) =
                next.map_err(|_| Status::deadline_exceeded("a snapshot stalled"))??
            else {
                break;
            };
            if let Err(e) = self.deliver_piece(piece).await {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return Err(Status::unavailable(format!("a snapshot piece refused: {e}")));
            }
            self.stats.delivered.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.snapshots.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(Done::new()))
    }
}
