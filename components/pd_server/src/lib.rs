//! `regionstore-pd`: the placement driver as a gRPC service whose metadata lives in etcd.
//!
//! - [`config`]: what a member is told (`--config FILE` and flags).
//! - [`etcd_store`]: the key layout in etcd and [`etcd_store::EtcdMetaStore`], the
//!   placement driver's [`pd_client::MetaStore`] there.
//! - [`member`]: active or standby by an etcd election on a lease.
//! - [`service`]: the `Pd` gRPC service; a standby answers `NotLeader` with the active
//!   member's address.
//!
//! The scheduling itself is `pd_client::MemPd`'s, the same the embedded clusters use; here it
//! saves each change to etcd before answering, and a member elected after a restart or a
//! failover loads what the previous one saved.
//!
//! ```text
//!   stores, clients ──gRPC──▶ PdService ──▶ MemPd (active member only)
//!                                              │ save before answer (txn guarded by
//!                                              ▼ the election key)
//!                                            etcd ◀── election (lease, campaign)
//! ```

pub mod config;
pub mod etcd_store;
pub mod member;
pub mod service;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use rpc::service::pd_server::PdServer as PdGrpcServer;
use slog::{error, info, Logger};
use tokio::{runtime::Runtime, sync::watch};
use tonic::transport::server::TcpIncoming;

pub use self::{
    config::{ConfigError, PdConfig},
    member::Member,
    service::PdService,
};

/// The largest request the service decodes.
const MAX_FRAME_BYTES: usize = 16 << 20;

/// A running member: its runtime, its gRPC server and its election.
pub struct PdServer {
    runtime: Option<Runtime>,
    addr: SocketAddr,
    member: Arc<Member>,
    stop: watch::Sender<bool>,
    election: Option<tokio::task::JoinHandle<()>>,
    logger: Logger,
}

impl PdServer {
    /// Connects to etcd, starts listening on `cfg.addr` and campaigns. Errors: an invalid
    /// configuration, etcd unreachable, the address taken.
    pub fn start(cfg: PdConfig, logger: Logger) -> Result<PdServer, String> {
        cfg.validate().map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pd")
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        let listener = std::net::TcpListener::bind(&cfg.addr)
            .and_then(|l| l.set_nonblocking(true).map(|_| l))
            .map_err(|e| format!("listening on {}: {e}", cfg.addr))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let member = runtime
            .block_on(Member::connect(cfg, logger.clone()))
            .map_err(|e| format!("starting the member: {e}"))?;
        let (stop, stopped) = watch::channel(false);
        let incoming = {
            let _in_runtime = runtime.enter();
            let listener =
                tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
            TcpIncoming::from(listener).with_nodelay(Some(true))
        };
        let service = PdGrpcServer::new(PdService::new(member.clone()))
            .max_decoding_message_size(MAX_FRAME_BYTES);
        let serve_logger = logger.clone();
        let mut serve_stop = stopped.clone();
        runtime.spawn(async move {
            let served = rpc::server_builder(Duration::from_secs(10), Duration::from_secs(3))
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = serve_stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = served {
                error!(serve_logger, "the placement driver's server stopped"; "err" => %e);
            }
        });
        let election = Some(runtime.spawn(member.clone().run(stopped)));
        info!(logger, "placement driver listening"; "addr" => %addr);
        Ok(PdServer { runtime: Some(runtime), addr, member, stop, election, logger })
    }

    /// The address the service listens on (with the port it got).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// This member's view of the cluster.
    pub fn member(&self) -> &Arc<Member> {
        &self.member
    }

    /// Whether this member is the active one now.
    pub fn is_active(&self) -> bool {
        self.member.active().is_some()
    }

    /// Stops serving and resigns (a standby takes over at once rather than after the lease).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(runtime) = self.runtime.take() {
            // The election task revokes the lease on its way out.
            if let Some(election) = self.election.take() {
                runtime.block_on(async {
                    let _ = tokio::time::timeout(Duration::from_secs(2), election).await;
                });
            }
            runtime.shutdown_timeout(Duration::from_secs(2));
            info!(self.logger, "placement driver stopped");
        }
    }
}

impl Drop for PdServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
