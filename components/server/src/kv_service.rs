//! The `Kv` gRPC service of a server: each call reads or writes one region through the
//! node, as [`Node::async_snapshot`] and [`Node::async_write`] take them, and answers the
//! node's error in the response (`kvrpcpb::ResponseError`): a refusal with the store's typed
//! error a client retries on (`NotLeader` with the leader, `EpochNotMatch` with the current
//! regions, ...), a write whose outcome is unknown, or anything else. A call that gets no
//! answer within the service's deadline is a timeout (a read) or undetermined (a write).
//! Bad input (no context, an unknown mutation, too many keys) is refused as
//! `InvalidRequest` and changes nothing. Reads run on the runtime's blocking threads, so a
//! long scan does not hold up raft messages on the same server.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

/// The most pairs a scan returns, and keys a batch get takes.
pub const MAX_KEYS: usize = 10_000;

use local_reader::ReadError;
use proto::kvrpcpb::{self, Mutation_Op as Op, ResponseError};
use rpc::service::kv_server::Kv;
use tonic::{Request, Response, Status};

use crate::{Context, Error, Modify, Node, Snapshot};

/// The node a server's `Kv` service serves, once it is open.
#[derive(Clone, Default)]
pub struct KvService {
    node: Arc<RwLock<Option<Node>>>,
    deadline: Duration,
}

impl KvService {
    /// A service that answers `Stopped` until [`Self::serve`] gives it a node, and waits at
    /// most `deadline` for the node's answer.
    pub fn new(deadline: Duration) -> Self {
        KvService { node: Arc::default(), deadline }
    }

    /// Serves `node` from now on (`None`: stopped).
    pub fn serve(&self, node: Option<Node>) {
        *self.node.write().unwrap_or_else(|e| e.into_inner()) = node;
    }

    fn node(&self) -> Result<Node, Error> {
        self.node.read().unwrap_or_else(|e| e.into_inner()).clone().ok_or(Error::Stopped)
    }

    async fn snapshot(&self, ctx: Option<&kvrpcpb::Context>) -> Result<Snapshot, ResponseError> {
        let ctx = context(ctx)?;
        let node = self.node().map_err(|e| response_error(&e))?;
        let pending = node.async_snapshot(&ctx);
        match tokio::time::timeout(self.deadline, pending).await {
            Ok(res) => res.map_err(|e| response_error(&e)),
            Err(_) => Err(response_error(&Error::Timeout(self.deadline))),
        }
    }

    /// Reads `snapshot` with `read` on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        ctx: Option<&kvrpcpb::Context>,
        read: impl FnOnce(Snapshot) -> Result<T, ResponseError> + Send + 'static,
    ) -> Result<T, ResponseError> {
        let snapshot = self.snapshot(ctx).await?;
        match tokio::task::spawn_blocking(move || read(snapshot)).await {
            Ok(res) => res,
            Err(e) => Err(response_error(&Error::NoAnswer(e.to_string()))),
        }
    }

    async fn write(
        &self,
        ctx: Option<&kvrpcpb::Context>,
        mods: Result<Vec<Modify>, Error>,
    ) -> WriteResponse {
        let mut resp = WriteResponse::new();
        if let Err(e) = self.try_write(ctx, mods).await {
            resp.set_error(e);
        }
        resp
    }

    async fn try_write(
        &self,
        ctx: Option<&kvrpcpb::Context>,
        mods: Result<Vec<Modify>, Error>,
    ) -> Result<(), ResponseError> {
        let ctx = context(ctx)?;
        let mods = mods.map_err(|e| response_error(&e))?;
        let node = self.node().map_err(|e| response_error(&e))?;
        let pending = node.async_write(&ctx, &mods);
        let outcome = match tokio::time::timeout(self.deadline, pending).await {
            Ok(res) => res,
            Err(_) => Err(Error::Undetermined(format!("no answer within {:?}", self.deadline))),
        };
        outcome.map_err(|e| response_error(&e))
    }
}

use proto::kvrpcpb::WriteResponse;

/// A request refused as it stands: retrying it is pointless.
fn invalid(why: impl Into<String>) -> Error {
    Error::Request(raftstore::Error::InvalidRequest(why.into()))
}

/// A request's context as the node takes it; a request without one is refused.
fn context(ctx: Option<&kvrpcpb::Context>) -> Result<Context, ResponseError> {
    let c = ctx.ok_or_else(|| response_error(&invalid("a request without a context")))?;
    Ok(Context {
        region_id: c.region_id,
        region_epoch: c.get_region_epoch().clone(),
        peer: c.get_peer().clone(),
        term: c.term,
        replica_read: c.replica_read,
    })
}

/// A node's error as a response carries it.
pub fn response_error(e: &Error) -> ResponseError {
    let mut out = ResponseError::new();
    out.retryable = e.is_retryable();
    match e {
        Error::Request(store) => out.set_region_error(store.to_errorpb()),
        Error::Undetermined(why) => out.undetermined = why.clone(),
        other => out.other = other.to_string(),
    }
    out
}

/// A read's error: a key outside the region is the store's `KeyNotInRegion`.
fn read_error(e: ReadError) -> ResponseError {
    match e {
        ReadError::KeyNotInRegion { key, region } => {
            let store = raftstore::Error::KeyNotInRegion { key, region };
            response_error(&Error::Request(store))
        }
        other => {
            let mut out = ResponseError::new();
            out.other = other.to_string();
            out.retryable = true; // a read has no effect
            out
        }
    }
}

fn pair((key, value): (Vec<u8>, Vec<u8>)) -> kvrpcpb::KvPair {
    let mut p = kvrpcpb::KvPair::new();
    (p.key, p.value) = (key, value);
    p
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn get(
        &self,
        request: Request<kvrpcpb::GetRequest>,
    ) -> Result<Response<kvrpcpb::GetResponse>, Status> {
        let req = request.into_inner();
        let mut resp = kvrpcpb::GetResponse::new();
        let key = req.key;
        match self.read(req.context.as_ref(), move |s| s.get(&key).map_err(read_error)).await {
            Ok(Some(v)) => (resp.found, resp.value) = (true, v),
            Ok(None) => {}
            Err(e) => resp.set_error(e),
        }
        Ok(Response::new(resp))
    }

    async fn batch_get(
        &self,
        request: Request<kvrpcpb::BatchGetRequest>,
    ) -> Result<Response<kvrpcpb::BatchGetResponse>, Status> {
        let req = request.into_inner();
        let mut resp = kvrpcpb::BatchGetResponse::new();
        if req.keys.len() > MAX_KEYS {
            resp.set_error(response_error(&invalid(format!("more than {MAX_KEYS} keys"))));
            return Ok(Response::new(resp));
        }
        let keys = req.keys.into_vec();
        let found = self
            .read(req.context.as_ref(), move |s| {
                let mut pairs = Vec::new();
                for key in keys {
                    if let Some(v) = s.get(&key).map_err(read_error)? {
                        pairs.push(pair((key, v)));
                    }
                }
                Ok(pairs)
            })
            .await;
        match found {
            Ok(pairs) => resp.pairs = pairs.into(),
            Err(e) => resp.set_error(e),
        }
        Ok(Response::new(resp))
    }

    async fn scan(
        &self,
        request: Request<kvrpcpb::ScanRequest>,
    ) -> Result<Response<kvrpcpb::ScanResponse>, Status> {
        let req = request.into_inner();
        let mut resp = kvrpcpb::ScanResponse::new();
        let limit = match req.limit as usize {
            0 => MAX_KEYS,
            n => n.min(MAX_KEYS),
        };
        let (start, end) = (req.start_key, req.end_key);
        let scanned = self
            .read(req.context.as_ref(), move |s| {
                let start = if start.is_empty() { s.region().start_key.clone() } else { start };
                let pairs = s.scan(&start, &end, limit).map_err(read_error)?;
                Ok((pairs, s.region().end_key.clone()))
            })
            .await;
        match scanned {
            Ok((pairs, region_end)) => {
                resp.pairs = pairs.into_iter().map(pair).collect::<Vec<_>>().into();
                resp.region_end_key = region_end;
            }
            Err(e) => resp.set_error(e),
        }
        Ok(Response::new(resp))
    }

    async fn put(
        &self,
        request: Request<kvrpcpb::PutRequest>,
    ) -> Result<Response<WriteResponse>, Status> {
        let req = request.into_inner();
        let mods = Ok(vec![Modify::Put(req.key, req.value)]);
        Ok(Response::new(self.write(req.context.as_ref(), mods).await))
    }

    async fn delete(
        &self,
        request: Request<kvrpcpb::DeleteRequest>,
    ) -> Result<Response<WriteResponse>, Status> {
        let req = request.into_inner();
        let mods = Ok(vec![Modify::Delete(req.key)]);
        Ok(Response::new(self.write(req.context.as_ref(), mods).await))
    }

    async fn batch_write(
        &self,
        request: Request<kvrpcpb::BatchWriteRequest>,
    ) -> Result<Response<WriteResponse>, Status> {
        let req = request.into_inner();
        let mods = req
            .mutations
            .into_iter()
            .map(|m| match m.op {
                Op::Put => Ok(Modify::Put(m.key, m.value)),
                Op::Delete => Ok(Modify::Delete(m.key)),
                Op::Unspecified => Err(invalid("a mutation without a known op")),
            })
            .collect();
        Ok(Response::new(self.write(req.context.as_ref(), mods).await))
    }
}
