//! The sending side of the gRPC transport: a [`Transport`] that batches a round's raft
//! messages per peer store and streams them over `BatchRaft`.
//!
//! ```text
//! poller: send ─▶ round queue ── flush: per (store, connection), ≤256 messages / ≤10 MiB
//!         a batch ──try_send──▶ connection queue ──task──▶ BatchRaft stream ──▶ peer store
//! ```
//!
//! A flush never waits: a connection that is not up, or whose queue is full (in batches or
//! bytes), gets nothing, and the messages are reported [`Undelivered`] so that their peers
//! tell raft (`report_unreachable`, a failed snapshot). So is a message larger than a batch
//! may be, and what a connection still held when it broke (reported at the next flush of
//! any clone). Each connection has a task on the client's runtime that resolves the store's
//! address (again after each failure), connects, streams, and after a failure waits with a
//! doubling back-off before the next attempt. A batch already handed to the stream when it
//! breaks is lost without a report, as on any network; raft resends.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Instant,
};

use proto::{
    eraftpb::MessageType,
    raft_serverpb::{BatchRaftMessage, RaftMessage},
    Message,
};
use raftstore::transport::{Transport, TransportError, Undelivered};
use tokio::{runtime::Handle, sync::mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::{
    config::RaftClientConfig, service::raft_client::RaftClient as RaftStub,
    snapshot::SnapshotSender,
};

/// Why a store has no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The placement driver (or the map) does not know the store.
    #[error("store {0} has no known address")]
    Unknown(u64),
    /// The store was removed from the cluster.
    #[error("store {0} is a tombstone")]
    Tombstone(u64),
}

/// Finds a store's address (`host:port`) by its id. Called again after every failed
/// connection, so a store that moved is found at its new address. It runs on a blocking
/// thread of the client's runtime, so it may ask the placement driver and wait.
pub trait AddressResolver: Send + Sync + 'static {
    /// The address of `store_id`.
    fn resolve(&self, store_id: u64) -> Result<String, ResolveError>;
}

/// Addresses set by hand (tests, a fixed cluster).
#[derive(Debug, Default)]
pub struct StaticResolver {
    addrs: RwLock<HashMap<u64, String>>,
}

impl StaticResolver {
    /// Sets (or replaces) the address of `store_id`.
    pub fn set(&self, store_id: u64, addr: impl Into<String>) {
        self.addrs.write().unwrap_or_else(|e| e.into_inner()).insert(store_id, addr.into());
    }
}

impl AddressResolver for StaticResolver {
    fn resolve(&self, store_id: u64) -> Result<String, ResolveError> {
        let addrs = self.addrs.read().unwrap_or_else(|e| e.into_inner());
        addrs.get(&store_id).cloned().ok_or(ResolveError::Unknown(store_id))
    }
}

/// What the client has done, for metrics and tests.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Batches handed to a connection.
    pub batches: AtomicU64,
    /// Messages in those batches.
    pub messages: AtomicU64,
    /// Messages reported undelivered: connection not up, queue full, too large, or left in
    /// the queue of a connection that broke.
    pub undelivered: AtomicU64,
    /// Connections established (the first, and every reconnection).
    pub connects: AtomicU64,
    /// Attempts that failed (no address, refused, timed out) and streams that broke.
    pub failures: AtomicU64,
    /// Snapshots the receiver took whole, on the `Snapshot` stream.
    pub snapshots: AtomicU64,
    /// The pieces of those snapshots.
    pub snapshot_pieces: AtomicU64,
    /// Snapshots reported undelivered: too many pending, or their stream failed.
    pub snapshot_failures: AtomicU64,
}

const CONNECTING: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// A batch on a connection's queue, with its encoded size.
struct Queued {
    batch: BatchRaftMessage,
    bytes: usize,
}

/// One connection to a peer store: its queue and its state, shared with its task.
struct Conn {
    tx: mpsc::Sender<Queued>,
    state: Arc<AtomicU8>,
    queued_bytes: Arc<AtomicUsize>,
}

/// Messages a connection task dropped from its queue when its connection broke; the next
/// flush of any clone reports them.
#[derive(Default)]
pub(crate) struct Lost {
    any: AtomicBool,
    msgs: Mutex<Vec<Undelivered>>,
}

impl Lost {
    fn push(&self, batch: &BatchRaftMessage) {
        let mut msgs = self.msgs.lock().unwrap_or_else(|e| e.into_inner());
        msgs.extend(batch.msgs.iter().map(Undelivered::of));
        self.any.store(true, Ordering::Release);
    }

    pub(crate) fn push_one(&self, report: Undelivered) {
        self.msgs.lock().unwrap_or_else(|e| e.into_inner()).push(report);
        self.any.store(true, Ordering::Release);
    }

    fn take_into(&self, undelivered: &mut Vec<Undelivered>) {
        if self.any.swap(false, Ordering::AcqRel) {
            undelivered.append(&mut self.msgs.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }
}

struct Shared {
    cfg: RaftClientConfig,
    resolver: Arc<dyn AddressResolver>,
    runtime: Handle,
    conns: Mutex<HashMap<(u64, usize), Arc<Conn>>>,
    snapshots: SnapshotSender,
    lost: Arc<Lost>,
    stats: Arc<ClientStats>,
}

/// A store's sending side over gRPC. Each poller owns a clone with its own round queue;
/// the connections are shared.
pub struct RaftClient {
    shared: Arc<Shared>,
    queue: Vec<RaftMessage>,
    conns: HashMap<(u64, usize), Arc<Conn>>,
}

impl Clone for RaftClient {
    fn clone(&self) -> Self {
        RaftClient { shared: self.shared.clone(), queue: Vec::new(), conns: HashMap::new() }
    }
}

impl RaftClient {
    /// A client whose connection tasks run on `runtime`. `cfg` must be valid.
    pub fn new(
        cfg: RaftClientConfig,
        resolver: Arc<dyn AddressResolver>,
        runtime: Handle,
    ) -> Result<Self, crate::config::ConfigError> {
        cfg.validate()?;
        let (lost, stats) = (Arc::<Lost>::default(), Arc::<ClientStats>::default());
        let snapshots = SnapshotSender::new(
            cfg.clone(),
            resolver.clone(),
            runtime.clone(),
            lost.clone(),
            stats.clone(),
        );
        let conns = Mutex::default();
        let shared = Shared { cfg, resolver, runtime, conns, snapshots, lost, stats };
        Ok(RaftClient { shared: Arc::new(shared), queue: Vec::new(), conns: HashMap::new() })
    }

    /// What the client has done so far (all clones together).
    pub fn stats(&self) -> Arc<ClientStats> {
        self.shared.stats.clone()
    }

    /// The connection a message to `store_id` from `region_id` takes, created on first use.
    fn conn(&mut self, store_id: u64, region_id: u64) -> Arc<Conn> {
        let idx = (region_id % self.shared.cfg.connections_per_store as u64) as usize;
        let key = (store_id, idx);
        if let Some(c) = self.conns.get(&key) {
            return c.clone();
        }
        let mut conns = self.shared.conns.lock().unwrap_or_else(|e| e.into_inner());
        let conn = conns.entry(key).or_insert_with(|| spawn_conn(&self.shared, store_id)).clone();
        self.conns.insert(key, conn.clone());
        conn
    }

    /// Hands `msgs` (all for one connection) to it in batches, or reports them undelivered.
    fn send_batches(
        &self,
        conn: &Conn,
        msgs: Vec<RaftMessage>,
        undelivered: &mut Vec<Undelivered>,
    ) {
        let cfg = &self.shared.cfg;
        let stats = &self.shared.stats;
        let (batches, too_large) = split_batches(msgs, cfg.max_batch_messages, cfg.max_batch_bytes);
        for msg in &too_large {
            stats.undelivered.fetch_add(1, Ordering::Relaxed);
            undelivered.push(Undelivered::of(msg));
        }
        let mut refused = conn.state.load(Ordering::Acquire) != UP;
        for (batch, bytes) in batches {
            if !refused {
                let before = conn.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
                if before + bytes <= cfg.queue_bytes {
                    let n = batch.msgs.len() as u64;
                    match conn.tx.try_send(Queued { batch, bytes }) {
                        Ok(()) => {
                            stats.batches.fetch_add(1, Ordering::Relaxed);
                            stats.messages.fetch_add(n, Ordering::Relaxed);
                            continue;
                        }
                        Err(e) => {
                            conn.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
                            refused = true;
                            report(&e.into_inner().batch, undelivered, stats);
                            continue;
                        }
                    }
                }
                conn.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
                refused = true;
            }
            report(&batch, undelivered, stats);
        }
    }
}

fn report(batch: &BatchRaftMessage, undelivered: &mut Vec<Undelivered>, stats: &ClientStats) {
    stats.undelivered.fetch_add(batch.msgs.len() as u64, Ordering::Relaxed);
    undelivered.extend(batch.msgs.iter().map(Undelivered::of));
}

/// What a message adds to a batch on the wire besides itself: its field tag and length.
const FRAMING: usize = 6;

/// Cuts `msgs` into batches of at most `max_msgs` messages and `max_bytes` encoded bytes,
/// framing included, keeping their order; each batch comes with its size. A message that
/// alone exceeds `max_bytes` is returned apart, unsent.
pub(crate) fn split_batches(
    msgs: Vec<RaftMessage>,
    max_msgs: usize,
    max_bytes: usize,
) -> (Vec<(BatchRaftMessage, usize)>, Vec<RaftMessage>) {
    let mut out = Vec::new();
    let mut too_large = Vec::new();
    let mut cur = BatchRaftMessage::new();
    let mut bytes = 0usize;
    for msg in msgs {
        let size = msg.compute_size() as usize + FRAMING;
        if size > max_bytes {
            too_large.push(msg);
            continue;
        }
        if cur.msgs.len() >= max_msgs || bytes + size > max_bytes {
            out.push((std::mem::take(&mut cur), bytes));
            bytes = 0;
        }
        bytes += size;
        cur.msgs.push(msg);
    }
    if !cur.msgs.is_empty() {
        out.push((cur, bytes));
    }
    (out, too_large)
}

impl Transport for RaftClient {
    fn send(&mut self, msg: RaftMessage) -> Result<(), TransportError> {
        self.queue.push(msg);
        Ok(())
    }

    fn flush(&mut self, undelivered: &mut Vec<Undelivered>) {
        self.shared.lost.take_into(undelivered);
        if self.queue.is_empty() {
            return;
        }
        let n = self.shared.cfg.connections_per_store as u64;
        let key = |m: &RaftMessage| (m.get_to_peer().store_id, m.region_id % n);
        let (snapshots, mut msgs): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|m| m.get_message().get_msg_type() == MessageType::MsgSnapshot);
        msgs.sort_by_key(key); // stable: each connection's messages keep their order
        for group in groups(msgs, key) {
            let conn = self.conn(group[0].get_to_peer().store_id, group[0].region_id);
            self.send_batches(&conn, group, undelivered);
        }
        let snap_key = |m: &RaftMessage| {
            (m.get_to_peer().id, m.get_message().get_snapshot().get_metadata().index)
        };
        for pieces in groups(snapshots, snap_key) {
            self.shared.snapshots.send(pieces, undelivered);
        }
    }
}

/// Runs of consecutive messages with the same key, in order.
fn groups<K: PartialEq>(
    msgs: Vec<RaftMessage>,
    key: impl Fn(&RaftMessage) -> K,
) -> Vec<Vec<RaftMessage>> {
    let mut out: Vec<Vec<RaftMessage>> = Vec::new();
    for m in msgs {
        match out.last_mut() {
            Some(g) if key(&g[0]) == key(&m) => g.push(m),
            _ => out.push(vec![m]),
        }
    }
    out
}

/// Starts the task of a new connection to `store_id`.
fn spawn_conn(shared: &Shared, store_id: u64) -> Arc<Conn> {
    let (tx, rx) = mpsc::channel(shared.cfg.queue_batches);
    let state = Arc::new(AtomicU8::new(CONNECTING));
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let task = ConnTask {
        store_id,
        cfg: shared.cfg.clone(),
        resolver: shared.resolver.clone(),
        state: state.clone(),
        queued_bytes: queued_bytes.clone(),
        lost: shared.lost.clone(),
        stats: shared.stats.clone(),
    };
    shared.runtime.spawn(task.run(rx));
    Arc::new(Conn { tx, state, queued_bytes })
}

/// Why a stream ended.
enum Ended {
    /// Every sender is gone: the client was dropped.
    Closed,
    /// The connection broke or the peer ended the stream.
    Broken,
}

struct ConnTask {
    store_id: u64,
    cfg: RaftClientConfig,
    resolver: Arc<dyn AddressResolver>,
    state: Arc<AtomicU8>,
    queued_bytes: Arc<AtomicUsize>,
    lost: Arc<Lost>,
    stats: Arc<ClientStats>,
}

impl ConnTask {
    async fn run(self, mut rx: mpsc::Receiver<Queued>) {
        let mut backoff = self.cfg.backoff_base;
        loop {
            self.state.store(CONNECTING, Ordering::Release);
            let stub = match self.connect().await {
                Ok(stub) => Some(stub),
                Err(Some(ResolveError::Tombstone(_))) => {
                    // Removed from the cluster for good: nothing will take these messages.
                    self.state.store(DOWN, Ordering::Release);
                    self.drop_queued(&mut rx);
                    return;
                }
                Err(_) => None,
            };
            if let Some(stub) = stub {
                self.stats.connects.fetch_add(1, Ordering::Relaxed);
                let up_since = Instant::now();
                self.state.store(UP, Ordering::Release);
                let ended = self.stream(stub, &mut rx).await;
                if let Ended::Closed = ended {
                    return;
                }
                if up_since.elapsed() >= self.cfg.backoff_max {
                    backoff = self.cfg.backoff_base;
                }
            }
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            self.state.store(DOWN, Ordering::Release);
            self.drop_queued(&mut rx);
            if rx.is_closed() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.cfg.backoff_max);
        }
    }

    /// Reports what waited for this connection, instead of keeping it: raft resends.
    fn drop_queued(&self, rx: &mut mpsc::Receiver<Queued>) {
        while let Ok(q) = rx.try_recv() {
            self.taken(&q);
            self.stats.undelivered.fetch_add(q.batch.msgs.len() as u64, Ordering::Relaxed);
            self.lost.push(&q.batch);
        }
    }

    /// `q` left the queue: its bytes no longer count against it.
    fn taken(&self, q: &Queued) {
        self.queued_bytes.fetch_sub(q.bytes, Ordering::AcqRel);
    }

    /// A stub on a new connection; `Err(Some(_))` when the address could not be resolved.
    async fn connect(&self) -> Result<RaftStub<Channel>, Option<ResolveError>> {
        let channel = connect_channel(&self.resolver, self.store_id, &self.cfg).await?;
        Ok(RaftStub::new(channel).max_encoding_message_size(usize::MAX))
    }

    /// Streams batches from `rx` until the connection breaks or the client is dropped.
    async fn stream(&self, mut stub: RaftStub<Channel>, rx: &mut mpsc::Receiver<Queued>) -> Ended {
        // One batch between the queue and the stream: what a break loses unreported.
        let (stx, srx) = mpsc::channel(1);
        let call = stub.batch_raft(ReceiverStream::new(srx));
        tokio::pin!(call);
        loop {
            let q = tokio::select! {
                _ = &mut call => return Ended::Broken,
                q = rx.recv() => match q {
                    Some(q) => q,
                    None => return Ended::Closed,
                },
            };
            self.taken(&q);
            tokio::select! {
                r = stx.send(q.batch) => if r.is_err() { return Ended::Broken },
                _ = &mut call => return Ended::Broken,
            }
        }
    }
}

/// Resolves `store_id` (on a blocking thread) and connects to it; `Err(Some(_))` when the
/// address could not be resolved, `Err(None)` when the connection failed.
pub(crate) async fn connect_channel(
    resolver: &Arc<dyn AddressResolver>,
    store_id: u64,
    cfg: &RaftClientConfig,
) -> Result<Channel, Option<ResolveError>> {
    let resolver = resolver.clone();
    let resolved = tokio::task::spawn_blocking(move || resolver.resolve(store_id)).await;
    let addr = resolved.map_err(|_| None)?.map_err(Some)?;
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|_| None)?
        .connect_timeout(cfg.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(cfg.keepalive_interval)
        .keep_alive_timeout(cfg.keepalive_timeout)
        .keep_alive_while_idle(true);
    endpoint.connect().await.map_err(|_| None)
}
