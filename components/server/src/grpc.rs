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
//! Start it first (it binds the listen address and learns its port), open the node with
//! `advertise_addr` set to [`GrpcTransport::addr`] and the transport, and the node attaches
//! its router when it runs.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use pd_client::PdClient;
use proto::{metapb::StoreState, raft_serverpb::RaftMessage};
use raftstore::transport::TransportError;
use rpc::{AddressResolver, MessageSink, RaftClient, RaftClientConfig, RaftService, ResolveError};
use tokio::runtime::Runtime;
use tokio_stream::wrappers::TcpListenerStream;

use crate::{
    transport::{NodeRouter, NodeTransport},
    Error, Result,
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
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            listen_addr: "127.0.0.1:0".into(),
            client: RaftClientConfig::default(),
            max_frame_bytes: 16 * 1024 * 1024,
            threads: 2,
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

/// The router messages go to once the node runs.
#[derive(Default)]
struct RouterSink {
    router: Mutex<Option<NodeRouter>>,
}

impl MessageSink for RouterSink {
    fn deliver(&self, msg: RaftMessage) -> std::result::Result<(), TransportError> {
        let router = self.router.lock().unwrap_or_else(|e| e.into_inner());
        match router.as_ref() {
            Some(r) => r.send_raft_message(msg),
            None => Err(TransportError::Unreachable(msg.get_to_peer().store_id)),
        }
    }
}

struct Inner {
    runtime: Mutex<Option<Runtime>>,
    addr: SocketAddr,
    sink: Arc<RouterSink>,
    client: RaftClient,
}

/// A node's gRPC transport (cheap to clone: clones share the server and the client).
#[derive(Clone)]
pub struct GrpcTransport {
    inner: Arc<Inner>,
}

impl GrpcTransport {
    /// Binds `cfg.listen_addr` and starts serving; messages are refused until a node attaches.
    pub fn start(cfg: GrpcConfig, pd: Arc<dyn PdClient>) -> Result<GrpcTransport> {
        cfg.client.validate().map_err(|e| Error::Open(format!("grpc client: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.threads.max(1))
            .thread_name("grpc")
            .enable_all()
            .build()
            .map_err(|e| Error::Open(format!("grpc runtime: {e}")))?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(&cfg.listen_addr))
            .map_err(|e| Error::Open(format!("listening on {}: {e}", cfg.listen_addr)))?;
        let addr = listener.local_addr().map_err(|e| Error::Open(e.to_string()))?;
        let sink = Arc::new(RouterSink::default());
        let service = RaftService::new(sink.clone()).into_server(cfg.max_frame_bytes);
        let keepalive = (cfg.client.keepalive_interval, cfg.client.keepalive_timeout);
        runtime.spawn(
            rpc::server_builder(keepalive.0, keepalive.1)
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        let resolver = Arc::new(PdResolver(pd));
        let client = RaftClient::new(cfg.client, resolver, runtime.handle().clone())
            .map_err(|e| Error::Open(format!("grpc client: {e}")))?;
        let inner = Inner { runtime: Mutex::new(Some(runtime)), addr, sink, client };
        Ok(GrpcTransport { inner: Arc::new(inner) })
    }

    /// The address the server listens on (with the port it got).
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// What the sending side has done so far.
    pub fn client_stats(&self) -> Arc<rpc::ClientStats> {
        self.inner.client.stats()
    }

    /// Stops serving and sending at once: the listener and every connection close, as when
    /// the process ends. Idempotent; also on the last drop.
    pub fn stop(&self) {
        let runtime = self.inner.runtime.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(rt) = runtime {
            rt.shutdown_timeout(Duration::from_secs(1));
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

    fn attach(&self, _store_id: u64, router: NodeRouter) {
        *self.inner.sink.router.lock().unwrap_or_else(|e| e.into_inner()) = Some(router);
    }

    fn detach(&self, _store_id: u64) {
        *self.inner.sink.router.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}
