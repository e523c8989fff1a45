//! [`GrpcStores`]: a [`StoreConnector`] that reaches each store's `Kv` service over gRPC, at
//! the address the placement driver has for it, so a client works the same against a
//! cluster of `regionstore-server` processes as against nodes in its own process.
//!
//! What an answer means follows the connector's contract:
//!
//! ```text
//! no address, or no connection       ──▶ Stopped      (nothing was sent: retried)
//! (also a kept connection that could not be made again: the store went away)
//! a store error in the response      ──▶ that error   (NotLeader, EpochNotMatch, ...)
//! "undetermined" in the response     ──▶ Undetermined
//! the node stopped / read failed     ──▶ Stopped / NoAnswer
//! sent, then no answer in time       ──▶ write: Undetermined; read: Timeout
//! sent, then the call failed         ──▶ write: Undetermined; read: NoAnswer
//! ```
//!
//! A store's connection is made once and kept; a failed call drops it, and the next request
//! asks the placement driver for the store's address again (a server restarted elsewhere).

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use local_reader::region_snapshot::KvPairs;
use pd_client::PdClient;
use proto::kvrpcpb::{self, ResponseError};
use rpc::service::kv_client::KvClient;
use server::{Context, Error, Modify, Result};
use tokio::runtime::Runtime;
use tonic::transport::{Channel, Endpoint};

use crate::StoreConnector;

/// How long a connection to a store may take before the request counts as not sent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Stores reached over gRPC. See the module docs. One is shared by many clients (threads).
pub struct GrpcStores {
    pd: Arc<dyn PdClient>,
    rt: Runtime,
    conns: Mutex<HashMap<u64, KvClient<Channel>>>,
}

impl GrpcStores {
    /// Stores of the cluster `pd` describes.
    pub fn new(pd: Arc<dyn PdClient>) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kv-client")
            .enable_all()
            .build()?;
        Ok(GrpcStores { pd, rt, conns: Mutex::default() })
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, KvClient<Channel>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection to `store_id`; `Stopped` if its address is unknown or it does not accept
    /// one.
    fn stub(&self, store_id: u64) -> Result<KvClient<Channel>> {
        if let Some(stub) = self.conns().get(&store_id) {
            return Ok(stub.clone());
        }
        let store = self.pd.get_store(store_id).map_err(|_| Error::Stopped)?;
        let endpoint = Endpoint::from_shared(format!("http://{}", store.address))
            .map_err(|_| Error::Stopped)?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        let channel = self.rt.block_on(endpoint.connect()).map_err(|_| Error::Stopped)?;
        let stub = KvClient::new(channel).max_decoding_message_size(64 << 20);
        self.conns().insert(store_id, stub.clone());
        Ok(stub)
    }

    /// One call to `store_id`, waiting at most `timeout`; `write` says how a call that was
    /// sent and not answered ends.
    fn call<T, Fut>(
        &self,
        store_id: u64,
        timeout: Duration,
        write: bool,
        f: impl FnOnce(KvClient<Channel>) -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let stub = self.stub(store_id)?;
        let call = f(stub);
        // The timer is made inside the runtime: it needs its clock.
        match self.rt.block_on(async move { tokio::time::timeout(timeout, call).await }) {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => {
                self.conns().remove(&store_id);
                if not_sent(&status) {
                    return Err(Error::Stopped);
                }
                let why = format!("store {store_id}: {status}");
                Err(if write { Error::Undetermined(why) } else { Error::NoAnswer(why) })
            }
            Err(_) => {
                // A store that stopped answering may have moved: ask for its address again.
                self.conns().remove(&store_id);
                Err(match write {
                    true => Error::Undetermined(format!("no answer within {timeout:?}")),
                    false => Error::Timeout(timeout),
                })
            }
        }
    }
}

/// Whether a call failed before any of it was sent: its connection (made again after the
/// store went away) could not be established.
fn not_sent(status: &tonic::Status) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = cause {
        let refused = e
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
        if refused || e.to_string().starts_with("tcp connect error") {
            return true;
        }
        cause = e.source();
    }
    false
}

/// `ctx` as a request carries it.
fn context(ctx: &Context) -> kvrpcpb::Context {
    let mut c = kvrpcpb::Context::new();
    c.region_id = ctx.region_id;
    c.set_region_epoch(ctx.region_epoch.clone());
    c.set_peer(ctx.peer.clone());
    c.term = ctx.term;
    c.replica_read = ctx.replica_read;
    c
}

/// The error a response carries, as the node gave it.
fn response_error(e: &ResponseError) -> Error {
    if e.has_region_error() {
        // An error the store could not type (`OutcomeUnknown`) stays undetermined.
        Error::from_store(raftstore::Error::from_errorpb(e.get_region_error()))
    } else if !e.undetermined.is_empty() {
        Error::Undetermined(e.undetermined.clone())
    } else if e.retryable {
        Error::NoAnswer(e.other.clone())
    } else {
        Error::Stopped // the node is stopped: nothing was applied
    }
}

fn mutation(m: &Modify) -> Result<kvrpcpb::Mutation> {
    let mut out = kvrpcpb::Mutation::new();
    match m {
        Modify::Put(k, v) => {
            out.set_op(kvrpcpb::Mutation_Op::Put);
            (out.key, out.value) = (k.clone(), v.clone());
        }
        Modify::Delete(k) => {
            out.set_op(kvrpcpb::Mutation_Op::Delete);
            out.key = k.clone();
        }
        Modify::DeleteRange(..) => {
            let why = "a range delete is not served over gRPC".to_string();
            return Err(Error::Request(raftstore::Error::InvalidRequest(why)));
        }
    }
    Ok(out)
}

impl StoreConnector for GrpcStores {
    fn write(
        &self,
        store_id: u64,
        ctx: &Context,
        mods: &[Modify],
        timeout: Duration,
    ) -> Result<()> {
        let mut req = kvrpcpb::BatchWriteRequest::new();
        req.set_context(context(ctx));
        req.set_mutations(mods.iter().map(mutation).collect::<Result<Vec<_>>>()?.into());
        let resp =
            self.call(store_id, timeout, true, |mut s| async move { s.batch_write(req).await })?;
        match resp.error.as_ref() {
            Some(e) => Err(response_error(e)),
            None => Ok(()),
        }
    }

    fn get(
        &self,
        store_id: u64,
        ctx: &Context,
        key: &[u8],
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>> {
        let mut req = kvrpcpb::GetRequest::new();
        req.set_context(context(ctx));
        req.key = key.to_vec();
        let resp = self.call(store_id, timeout, false, |mut s| async move { s.get(req).await })?;
        match resp.error.as_ref() {
            Some(e) => Err(response_error(e)),
            None => Ok(resp.found.then_some(resp.value)),
        }
    }

    fn scan(
        &self,
        store_id: u64,
        ctx: &Context,
        (start, end): (&[u8], &[u8]),
        limit: usize,
        timeout: Duration,
    ) -> Result<(KvPairs, Vec<u8>)> {
        let mut req = kvrpcpb::ScanRequest::new();
        req.set_context(context(ctx));
        (req.start_key, req.end_key) = (start.to_vec(), end.to_vec());
        // The service caps a scan at server::kv_service::MAX_KEYS: the client goes on from
        // the last key it got.
        req.limit = u32::try_from(limit.min(server::kv_service::MAX_KEYS)).unwrap_or(u32::MAX);
        let mut resp =
            self.call(store_id, timeout, false, |mut s| async move { s.scan(req).await })?;
        if let Some(e) = resp.error.as_ref() {
            return Err(response_error(e));
        }
        let pairs: KvPairs =
            resp.take_pairs().into_iter().map(|mut p| (p.take_key(), p.take_value())).collect();
        if pairs.len() == server::kv_service::MAX_KEYS && limit > pairs.len() {
            // More may follow in this region: go on after the last key, not at the region's end.
            let mut next = pairs.last().map(|(k, _)| k.clone()).unwrap_or_default();
            next.push(0);
            return Ok((pairs, next));
        }
        Ok((pairs, resp.region_end_key))
    }
}
