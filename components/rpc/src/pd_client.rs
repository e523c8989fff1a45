//! [`GrpcPdClient`]: the placement driver as a store or a client reaches it over gRPC.
//!
//! The client knows the addresses of every `regionstore-pd` member. It asks any of them which
//! one is active (`GetMembers`), sends every call there, and on a `NotLeader` answer, a
//! transport error or a timeout, finds the active member again and retries with back-off
//! until `retry_timeout` has passed. Calls block the calling thread (the `PdClient` trait is
//! synchronous, called from a store's pd worker and from `Node::open`) on a small runtime of
//! the client's own.
//!
//! A retried call may have been done once already: ids it allocated are lost (ids are
//! plentiful), a bootstrap answers `AlreadyBootstrapped` (`Node::open` checks whether its own
//! region won), and reports and heartbeats are idempotent.

use std::{
    future::Future,
    sync::Mutex,
    time::{Duration, Instant},
};

use pd_client::{Error, Operator, PdClient, RegionStats, Result, SplitIds, StoreStats};
use proto::{metapb, pdpb};
use tokio::runtime::Runtime;
use tonic::transport::{Channel, Endpoint};

use crate::{
    pd::{self, HasHeader},
    service::pd_client::PdClient as Stub,
};

/// How a [`GrpcPdClient`] reaches the placement driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PdClientConfig {
    /// `host:port` of every placement driver member.
    pub endpoints: Vec<String>,
    /// Longest wait for one answer (longer than the placement driver's own wait for etcd,
    /// 2 s, so that it answers `Unavailable` before the client gives up).
    pub request_timeout: Duration,
    /// Longest a call keeps retrying (leader changes, restarts) before it fails with
    /// `Unavailable`.
    pub retry_timeout: Duration,
}

impl PdClientConfig {
    /// A configuration for these members with default timeouts.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        PdClientConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            request_timeout: Duration::from_secs(5),
            retry_timeout: Duration::from_secs(15),
        }
    }
}

/// A [`PdClient`] over gRPC. See the module docs.
pub struct GrpcPdClient {
    cfg: PdClientConfig,
    cluster_id: u64,
    rt: Runtime,
    /// The active member's address and a channel to it, once found.
    leader: Mutex<Option<(String, Channel)>>,
}

impl GrpcPdClient {
    /// Connects to the active member of `cfg.endpoints` and learns the cluster id, retrying
    /// for up to `retry_timeout`. Errors: `Invalid` for an empty endpoint list or a bad
    /// address; `Unavailable` when no member answered in time.
    pub fn connect(cfg: PdClientConfig) -> Result<Self> {
        if cfg.endpoints.is_empty() {
            return Err(Error::Invalid("no placement driver endpoints".into()));
        }
        for e in &cfg.endpoints {
            Endpoint::from_shared(format!("http://{e}"))
                .map_err(|err| Error::Invalid(format!("endpoint {e:?}: {err}")))?;
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pd-client")
            .enable_all()
            .build()
            .map_err(|e| Error::Unavailable(format!("runtime: {e}")))?;
        let mut client = GrpcPdClient { cfg, cluster_id: 0, rt, leader: Mutex::new(None) };
        let members = client.call(|mut stub, header| async move {
            let mut req = pdpb::GetMembersRequest::default();
            req.set_header(header);
            stub.get_members(req).await
        })?;
        client.cluster_id = members.get_header().cluster_id;
        Ok(client)
    }

    /// How long each call keeps retrying from now on (`connect` used the configured one).
    pub fn set_retry_timeout(&mut self, timeout: Duration) {
        self.cfg.retry_timeout = timeout;
    }

    /// The address of the member calls go to now, if one was found.
    pub fn leader_addr(&self) -> Option<String> {
        self.leader.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|(a, _)| a.clone())
    }

    fn header(&self) -> pdpb::RequestHeader {
        let mut h = pdpb::RequestHeader::default();
        h.cluster_id = self.cluster_id;
        h
    }

    async fn channel(&self, addr: &str) -> std::result::Result<Channel, String> {
        Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(self.cfg.request_timeout)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("{addr}: {e}"))
    }

    /// The active member: the one last used, or the one a member names.
    async fn find_leader(&self) -> std::result::Result<Channel, String> {
        if let Some((_, ch)) = self.leader.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return Ok(ch.clone());
        }
        let mut last = String::from("no member answered");
        for addr in &self.cfg.endpoints {
            let asked = async {
                let mut stub = Stub::new(self.channel(addr).await?);
                let mut req = pdpb::GetMembersRequest::default();
                req.set_header(self.header());
                let resp = stub.get_members(req).await.map_err(|s| format!("{addr}: {s}"))?;
                Ok::<_, String>(resp.into_inner().get_header().leader_addr.clone())
            };
            match tokio::time::timeout(self.cfg.request_timeout, asked).await {
                Ok(Ok(leader)) if !leader.is_empty() => {
                    let ch = self.channel(&leader).await?;
                    *self.leader.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some((leader, ch.clone()));
                    return Ok(ch);
                }
                Ok(Ok(_)) => last = format!("{addr}: no active member yet"),
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("{addr}: timed out"),
            }
        }
        Err(last)
    }

    fn forget_leader(&self) {
        *self.leader.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// One call to the active member, retried as the module docs say.
    fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: HasHeader,
        F: Fn(Stub<Channel>, pdpb::RequestHeader) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = Instant::now() + self.cfg.retry_timeout;
        let mut backoff = Duration::from_millis(20);
        loop {
            let attempt = async {
                let ch = self.find_leader().await?;
                let answer =
                    tokio::time::timeout(self.cfg.request_timeout, f(Stub::new(ch), self.header()));
                match answer.await {
                    Ok(Ok(resp)) => Ok(resp.into_inner()),
                    Ok(Err(status)) => Err(status.to_string()),
                    Err(_) => Err("timed out".to_string()),
                }
            };
            let why = match self.rt.block_on(attempt) {
                Ok(resp) => {
                    let header = resp.header();
                    let kind = header.get_error().get_field_type();
                    if kind != pdpb::ErrorType::NotLeader && kind != pdpb::ErrorType::Unavailable {
                        return match pd::error_from_proto(header.get_error()) {
                            None => Ok(resp),
                            Some(e) => Err(e),
                        };
                    }
                    header.get_error().message.clone()
                }
                Err(why) => why,
            };
            self.forget_leader();
            if Instant::now() + backoff > deadline {
                return Err(Error::Unavailable(why));
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }
}

impl PdClient for GrpcPdClient {
    fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    fn alloc_id(&self) -> Result<u64> {
        let resp = self.call(|mut stub, header| async move {
            let mut req = pdpb::AllocIdRequest::default();
            req.set_header(header);
            stub.alloc_id(req).await
        })?;
        Ok(resp.id)
    }

    fn bootstrap_cluster(&self, store: metapb::Store, region: metapb::Region) -> Result<()> {
        self.call(|mut stub, header| {
            let mut req = pdpb::BootstrapRequest::default();
            req.set_header(header);
            req.set_store(store.clone());
            req.set_region(region.clone());
            async move { stub.bootstrap(req).await }
        })?;
        Ok(())
    }

    fn is_cluster_bootstrapped(&self) -> Result<bool> {
        let resp = self.call(|mut stub, header| async move {
            let mut req = pdpb::IsBootstrappedRequest::default();
            req.set_header(header);
            stub.is_bootstrapped(req).await
        })?;
        Ok(resp.bootstrapped)
    }

    fn put_store(&self, store: metapb::Store) -> Result<()> {
        self.call(|mut stub, header| {
            let mut req = pdpb::PutStoreRequest::default();
            req.set_header(header);
            req.set_store(store.clone());
            async move { stub.put_store(req).await }
        })?;
        Ok(())
    }

    fn get_store(&self, store_id: u64) -> Result<metapb::Store> {
        let mut resp = self.call(|mut stub, header| async move {
            let mut req = pdpb::GetStoreRequest::default();
            req.set_header(header);
            req.store_id = store_id;
            stub.get_store(req).await
        })?;
        Ok(resp.take_store())
    }

    fn get_all_stores(&self) -> Result<Vec<metapb::Store>> {
        let mut resp = self.call(|mut stub, header| async move {
            let mut req = pdpb::GetAllStoresRequest::default();
            req.set_header(header);
            stub.get_all_stores(req).await
        })?;
        Ok(resp.take_stores().into_vec())
    }

    fn get_region(&self, key: &[u8]) -> Result<(metapb::Region, Option<metapb::Peer>)> {
        let resp = self.call(|mut stub, header| {
            let mut req = pdpb::GetRegionRequest::default();
            req.set_header(header);
            req.key = key.to_vec();
            async move { stub.get_region(req).await }
        })?;
        Ok(region_and_leader(resp))
    }

    fn get_region_by_id(&self, region_id: u64) -> Result<(metapb::Region, Option<metapb::Peer>)> {
        let resp = self.call(|mut stub, header| async move {
            let mut req = pdpb::GetRegionByIdRequest::default();
            req.set_header(header);
            req.region_id = region_id;
            stub.get_region_by_id(req).await
        })?;
        Ok(region_and_leader(resp))
    }

    fn region_heartbeat(
        &self,
        term: u64,
        region: metapb::Region,
        leader: metapb::Peer,
        stats: RegionStats,
    ) -> Result<Option<Operator>> {
        let sent = pd::heartbeat_to_proto(term, region, leader, stats);
        let resp = self.call(|mut stub, header| {
            let mut req = sent.clone();
            req.set_header(header);
            async move { stub.region_heartbeat(req).await }
        })?;
        if !resp.has_operator() {
            return Ok(None);
        }
        pd::operator_from_proto(resp.get_operator()).map(Some)
    }

    fn store_heartbeat(&self, stats: StoreStats) -> Result<()> {
        let sent = pd::store_stats_to_proto(&stats);
        self.call(|mut stub, header| {
            let mut req = sent.clone();
            req.set_header(header);
            async move { stub.store_heartbeat(req).await }
        })?;
        Ok(())
    }

    fn ask_batch_split(&self, region: &metapb::Region, count: usize) -> Result<Vec<SplitIds>> {
        let count = u32::try_from(count).map_err(|_| Error::Invalid("split count".into()))?;
        let mut resp = self.call(|mut stub, header| {
            let mut req = pdpb::AskBatchSplitRequest::default();
            req.set_header(header);
            req.set_region(region.clone());
            req.count = count;
            async move { stub.ask_batch_split(req).await }
        })?;
        Ok(pd::split_ids_from_proto(resp.take_ids().into_vec()))
    }

    fn report_batch_split(&self, regions: Vec<metapb::Region>) -> Result<()> {
        self.call(|mut stub, header| {
            let mut req = pdpb::ReportBatchSplitRequest::default();
            req.set_header(header);
            req.set_regions(regions.clone().into());
            async move { stub.report_batch_split(req).await }
        })?;
        Ok(())
    }
}

fn region_and_leader(mut resp: pdpb::GetRegionResponse) -> (metapb::Region, Option<metapb::Peer>) {
    let leader = resp.has_leader().then(|| resp.take_leader());
    (resp.take_region(), leader)
}
