//! A node's network transport: a gRPC server that takes other stores' raft messages and
//! hands them to this node's router, and a [`RaftClient`] that sends its own, with store
//! addresses resolved through the placement driver (`components/rpc`, raftstore.md
//! "Transport over gRPC").
//!
//! ```text
//! node A: Transport::send ─flush─▶ RaftClient ─BatchRaft─▶ node B's GrpcTransport server
//!         ─▶ RouterSink ─▶ B's RaftRouter ─▶ peer mailbox (or B's store FSM)
//! ```
//!
//! The same server answers clients' `Kv` calls for the node ([`GrpcTransport::serve_kv`],
//! `kv_service.rs`).
//!
//! Start it first (it binds the listen address and learns its port), open the node with
//! `advertise_addr` set to an address others reach it at ([`GrpcTransport::addr`] when it
//! listens on a concrete address, not on `0.0.0.0`) and the transport, and the node attaches
//! its router when it runs. One transport serves one node.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use pd_client::PdClient;
use proto::{metapb::StoreState, raft_serverpb::RaftMessage};
use raftstore::transport::TransportError;
use rpc::{
    service::kv_server::KvServer, AddressResolver, MessageSink, RaftClient, RaftClientConfig,
    RaftService, ResolveError,
};
use slog::{error, warn, Logger};
use tokio::runtime::Runtime;
use tonic::transport::server::TcpIncoming;

use crate::{
    kv_service::KvService,
    transport::{NodeRouter, NodeTransport},
    Error, Node, Result,
};

/// Settings of a node's gRPC transport.
#[derive(Debug, Clone)]
pub struct GrpcConfig {
    /// Where the server listens (`host:port`; port 0 picks a free one).
    pub listen_addr: String,
    /// The sending side's batching, queues and reconnection.
    pub client: RaftClientConfig,
    /// The largest frame the server takes: at least the senders' `max_batch_bytes`.
    pub max_frame_bytes: usize,
    /// Threads of the transport's runtime (server and client tasks).
    pub threads: usize,
    /// How long a `Kv` call waits for the node's answer.
    pub kv_deadline: Duration,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            listen_addr: "127.0.0.1:0".into(),
            client: RaftClientConfig::default(),
            max_frame_bytes: 16 * 1024 * 1024,
            threads: 2,
            kv_deadline: Duration::from_secs(10),
        }
    }
}

/// Resolves store addresses through the placement driver: the address a store's node
/// registered when it opened.
struct PdResolver(Arc<dyn PdClient>);

impl AddressResolver for PdResolver {
    fn resolve(&self, store_id: u64) -> std::result::Result<String, ResolveError> {
        let store = self.0.get_store(store_id).map_err(|_| ResolveError::Unknown(store_id))?;
        if store.state == StoreState::Tombstone {
            return Err(ResolveError::Tombstone(store_id));
        }
        if store.address.is_empty() {
            return Err(ResolveError::Unknown(store_id));
        }
        Ok(store.address)
    }
}

/// The router messages go to once the node runs, with its store id.
#[derive(Default)]
struct RouterSink {
    router: Mutex<Option<(u64, NodeRouter)>>,
}

impl MessageSink for RouterSink {
    fn deliver(&self, msg: RaftMessage) -> std::result::Result<(), TransportError> {
        let router = self.router.lock().unwrap_or_else(|e| e.into_inner());
        match router.as_ref() {
            Some((_, r)) => r.send_raft_message(msg),
            None => Err(TransportError::Unreachable(msg.get_to_peer().store_id)),
        }
    }

    /// One lock for the whole batch (the router is not `Sync`).
    fn deliver_batch(&self, msgs: Vec<RaftMessage>) -> (u64, u64) {
        let router = self.router.lock().unwrap_or_else(|e| e.into_inner());
        let total = msgs.len() as u64;
        let Some((_, r)) = router.as_ref() else { return (0, total) };
        let delivered = msgs.into_iter().filter_map(|m| r.send_raft_message(m).ok()).count();
        (delivered as u64, total - delivered as u64)
    }
}

struct Inner {
    runtime: Mutex<Option<Runtime>>,
    addr: SocketAddr,
    sink: Arc<RouterSink>,
    server_stats: Arc<rpc::ServiceStats>,
    kv: KvService,
    client: RaftClient,
    logger: Logger,
}

/// A node's gRPC transport (cheap to clone: clones share the server and the client).
#[derive(Clone)]
pub struct GrpcTransport {
    inner: Arc<Inner>,
}

impl GrpcTransport {
    /// Binds `cfg.listen_addr` and starts serving; messages are refused until a node attaches.
    /// May be called from async code (it blocks nothing).
    pub fn start(cfg: GrpcConfig, pd: Arc<dyn PdClient>, logger: &Logger) -> Result<GrpcTransport> {
        cfg.client.validate().map_err(|e| Error::Open(format!("grpc client: {e}")))?;
        if cfg.max_frame_bytes < cfg.client.max_batch_bytes {
            return Err(Error::Open(format!(
                "grpc: max_frame_bytes ({}) is below the client's max_batch_bytes ({})",
                cfg.max_frame_bytes, cfg.client.max_batch_bytes
            )));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.threads.max(1))
            .thread_name("grpc")
            .enable_all()
            .build()
            .map_err(|e| Error::Open(format!("grpc runtime: {e}")))?;
        let listening =
            |e: std::io::Error| Error::Open(format!("listening on {}: {e}", cfg.listen_addr));
        let listener = std::net::TcpListener::bind(&cfg.listen_addr).map_err(listening)?;
        listener.set_nonblocking(true).map_err(listening)?;
        let addr = listener.local_addr().map_err(listening)?;
        let listener = {
            let _in_runtime = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(listening)?
        };
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let sink = Arc::new(RouterSink::default());
        let service = RaftService::new(sink.clone());
        let server_stats = service.stats();
        let service = service.into_server(cfg.max_frame_bytes);
        let kv = KvService::new(cfg.kv_deadline);
        let kv_server = KvServer::new(kv.clone()).max_decoding_message_size(cfg.max_frame_bytes);
        let (interval, timeout) = (cfg.client.keepalive_interval, cfg.client.keepalive_timeout);
        let serve_logger = logger.clone();
        runtime.spawn(async move {
            let served = rpc::server_builder(interval, timeout)
                .add_service(service)
                .add_service(kv_server)
                .serve_with_incoming(incoming)
                .await;
            if let Err(e) = served {
                error!(serve_logger, "the raft gRPC server stopped"; "addr" => %addr, "err" => %e);
            }
        });
        let resolver = Arc::new(PdResolver(pd));
        let client = RaftClient::new(cfg.client, resolver, runtime.handle().clone())
            .map_err(|e| Error::Open(format!("grpc client: {e}")))?;
        let runtime = Mutex::new(Some(runtime));
        let logger = logger.new(slog::o!("grpc_addr" => addr.to_string()));
        let inner = Inner { runtime, addr, sink, server_stats, kv, client, logger };
        Ok(GrpcTransport { inner: Arc::new(inner) })
    }

    /// The address the server listens on (with the port it got).
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Serves the client calls (`Kv`) of `node` from now on; `None`: answers `Stopped`.
    pub fn serve_kv(&self, node: Option<Node>) {
        self.inner.kv.serve(node);
    }

    /// What the server has received so far.
    pub fn server_stats(&self) -> Arc<rpc::ServiceStats> {
        self.inner.server_stats.clone()
    }

    /// What the sending side has done so far.
    pub fn client_stats(&self) -> Arc<rpc::ClientStats> {
        self.inner.client.stats()
    }

    /// Stops serving and sending: the listener and every connection close, as when the
    /// process ends. Outside async code it returns once they have (waiting at most 1 s for
    /// the transport's tasks); from async code it only starts the shutdown. Idempotent. The
    /// last drop starts the shutdown without waiting.
    pub fn stop(&self) {
        self.inner.kv.serve(None);
        let runtime = self.inner.runtime.lock().unwrap_or_else(|e| e.into_inner()).take();
        match runtime {
            Some(rt) if tokio::runtime::Handle::try_current().is_ok() => rt.shutdown_background(),
            Some(rt) => rt.shutdown_timeout(Duration::from_secs(1)),
            None => {}
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            rt.shutdown_background();
        }
    }
}

impl NodeTransport for GrpcTransport {
    type Sender = RaftClient;

    fn sender(&self, _store_id: u64) -> RaftClient {
        self.inner.client.clone()
    }

    fn attach(&self, store_id: u64, router: NodeRouter) {
        if self.inner.runtime.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
            warn!(self.inner.logger, "a node attached to a stopped gRPC transport hears nothing";
                "store_id" => store_id);
        }
        let mut sink = self.inner.sink.router.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((other, _)) = sink.as_ref().filter(|(id, _)| *id != store_id) {
            warn!(self.inner.logger, "a second node attached to one gRPC transport takes it over";
                "store_id" => store_id, "previous" => *other);
        }
        *sink = Some((store_id, router));
    }

    fn detach(&self, store_id: u64) {
        let mut sink = self.inner.sink.router.lock().unwrap_or_else(|e| e.into_inner());
        if sink.as_ref().is_some_and(|(id, _)| *id == store_id) {
            *sink = None;
        }
    }
}
