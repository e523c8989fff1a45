//! The `Pd` gRPC service of one member.
//!
//! Every call carries the caller's cluster id (0 only before it knows, for `GetMembers`); a
//! different one is refused (`ClusterIdMismatch`). A standby answers `NotLeader` with the
//! active member's address. The active member runs the call on a blocking thread: the
//! placement driver saves each change to etcd before it answers.

use std::sync::Arc;

use pd_client::{MemPd, PdClient};
use proto::pdpb;
use rpc::{
    pd::{self, HasHeader},
    service::pd_server::Pd,
};
use tonic::{Request, Response, Status};

use crate::member::Member;

/// The request header of every placement driver call.
trait HasRequestHeader {
    fn cluster_id(&self) -> u64;
}

macro_rules! has_request_header {
    ($($t:ident),*) => {$(
        impl HasRequestHeader for pdpb::$t {
            fn cluster_id(&self) -> u64 {
                self.get_header().cluster_id
            }
        }
    )*};
}
has_request_header!(
    GetMembersRequest,
    AllocIdRequest,
    BootstrapRequest,
    IsBootstrappedRequest,
    PutStoreRequest,
    GetStoreRequest,
    GetAllStoresRequest,
    GetRegionRequest,
    GetRegionByIdRequest,
    RegionHeartbeatRequest,
    StoreHeartbeatRequest,
    AskBatchSplitRequest,
    ReportBatchSplitRequest
);

/// The service; cheap to clone.
#[derive(Clone)]
pub struct PdService {
    member: Arc<Member>,
}

fn error(kind: pdpb::ErrorType, message: String) -> pdpb::Error {
    let mut e = pdpb::Error::default();
    e.set_field_type(kind);
    e.message = message;
    e
}

impl PdService {
    /// The service of `member`.
    pub fn new(member: Arc<Member>) -> Self {
        PdService { member }
    }

    /// Answers `req` with `f` run on the active placement driver, or with the error that
    /// keeps it from running there.
    async fn serve<Req, Resp, F>(&self, req: Request<Req>, f: F) -> Result<Response<Resp>, Status>
    where
        Req: HasRequestHeader + Send + 'static,
        Resp: HasHeader + Default + Send + 'static,
        F: FnOnce(&MemPd, Req, &mut Resp) -> pd_client::Result<()> + Send + 'static,
    {
        let req = req.into_inner();
        let mut resp = Resp::default();
        let cluster_id = self.member.cluster_id();
        resp.header_mut().cluster_id = cluster_id;
        if req.cluster_id() != cluster_id {
            let why = format!("cluster {} asked of cluster {cluster_id}", req.cluster_id());
            resp.header_mut().set_error(error(pdpb::ErrorType::ClusterIdMismatch, why));
            return Ok(Response::new(resp));
        }
        let Some(pd) = self.member.active() else {
            let leader = self.member.leader_addr().await;
            resp.header_mut().leader_addr = leader;
            let why = "not the active placement driver".to_string();
            resp.header_mut().set_error(error(pdpb::ErrorType::NotLeader, why));
            return Ok(Response::new(resp));
        };
        let done = tokio::task::spawn_blocking(move || {
            let res = f(&pd, req, &mut resp);
            (res, resp)
        });
        let (res, mut resp) = done.await.map_err(|e| Status::internal(e.to_string()))?;
        if let Err(e) = res {
            resp.header_mut().set_error(pd::error_to_proto(&e));
        }
        Ok(Response::new(resp))
    }
}

#[tonic::async_trait]
impl Pd for PdService {
    async fn get_members(
        &self,
        req: Request<pdpb::GetMembersRequest>,
    ) -> Result<Response<pdpb::GetMembersResponse>, Status> {
        // Any member answers, whatever cluster id the caller has (it may not know it yet).
        let asked = req.into_inner().get_header().cluster_id;
        let mut resp = pdpb::GetMembersResponse::default();
        let cluster_id = self.member.cluster_id();
        resp.mut_header().cluster_id = cluster_id;
        if asked != 0 && asked != cluster_id {
            let why = format!("cluster {asked} asked of cluster {cluster_id}");
            resp.mut_header().set_error(error(pdpb::ErrorType::ClusterIdMismatch, why));
        }
        resp.mut_header().leader_addr = self.member.leader_addr().await;
        (resp.name, resp.addr) = self.member.name_and_addr();
        Ok(Response::new(resp))
    }

    async fn alloc_id(
        &self,
        req: Request<pdpb::AllocIdRequest>,
    ) -> Result<Response<pdpb::AllocIdResponse>, Status> {
        self.serve(req, |pd, _, resp: &mut pdpb::AllocIdResponse| {
            resp.id = pd.alloc_id()?;
            Ok(())
        })
        .await
    }

    async fn bootstrap(
        &self,
        req: Request<pdpb::BootstrapRequest>,
    ) -> Result<Response<pdpb::BootstrapResponse>, Status> {
        self.serve(req, |pd, mut req, _: &mut pdpb::BootstrapResponse| {
            pd.bootstrap_cluster(req.take_store(), req.take_region())
        })
        .await
    }

    async fn is_bootstrapped(
        &self,
        req: Request<pdpb::IsBootstrappedRequest>,
    ) -> Result<Response<pdpb::IsBootstrappedResponse>, Status> {
        self.serve(req, |pd, _, resp: &mut pdpb::IsBootstrappedResponse| {
            resp.bootstrapped = pd.is_cluster_bootstrapped()?;
            Ok(())
        })
        .await
    }

    async fn put_store(
        &self,
        req: Request<pdpb::PutStoreRequest>,
    ) -> Result<Response<pdpb::PutStoreResponse>, Status> {
        self.serve(req, |pd, mut req, _: &mut pdpb::PutStoreResponse| {
            pd.put_store(req.take_store())
        })
        .await
    }

    async fn get_store(
        &self,
        req: Request<pdpb::GetStoreRequest>,
    ) -> Result<Response<pdpb::GetStoreResponse>, Status> {
        self.serve(req, |pd, req, resp: &mut pdpb::GetStoreResponse| {
            resp.set_store(pd.get_store(req.store_id)?);
            Ok(())
        })
        .await
    }

    async fn get_all_stores(
        &self,
        req: Request<pdpb::GetAllStoresRequest>,
    ) -> Result<Response<pdpb::GetAllStoresResponse>, Status> {
        self.serve(req, |pd, _, resp: &mut pdpb::GetAllStoresResponse| {
            resp.set_stores(pd.get_all_stores()?.into());
            Ok(())
        })
        .await
    }

    async fn get_region(
        &self,
        req: Request<pdpb::GetRegionRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        self.serve(req, |pd, req, resp: &mut pdpb::GetRegionResponse| {
            set_region(resp, pd.get_region(&req.key)?);
            Ok(())
        })
        .await
    }

    async fn get_region_by_id(
        &self,
        req: Request<pdpb::GetRegionByIdRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        self.serve(req, |pd, req, resp: &mut pdpb::GetRegionResponse| {
            set_region(resp, pd.get_region_by_id(req.region_id)?);
            Ok(())
        })
        .await
    }

    async fn region_heartbeat(
        &self,
        req: Request<pdpb::RegionHeartbeatRequest>,
    ) -> Result<Response<pdpb::RegionHeartbeatResponse>, Status> {
        self.serve(req, |pd, req, resp: &mut pdpb::RegionHeartbeatResponse| {
            let (term, region, leader, stats) = pd::heartbeat_from_proto(req);
            if let Some(op) = pd.region_heartbeat(term, region, leader, stats)? {
                resp.set_operator(pd::operator_to_proto(&op));
            }
            Ok(())
        })
        .await
    }

    async fn store_heartbeat(
        &self,
        req: Request<pdpb::StoreHeartbeatRequest>,
    ) -> Result<Response<pdpb::StoreHeartbeatResponse>, Status> {
        self.serve(req, |pd, req, _: &mut pdpb::StoreHeartbeatResponse| {
            pd.store_heartbeat(pd::store_stats_from_proto(&req))
        })
        .await
    }

    async fn ask_batch_split(
        &self,
        req: Request<pdpb::AskBatchSplitRequest>,
    ) -> Result<Response<pdpb::AskBatchSplitResponse>, Status> {
        self.serve(req, |pd, req, resp: &mut pdpb::AskBatchSplitResponse| {
            let ids = pd.ask_batch_split(req.get_region(), req.count as usize)?;
            resp.set_ids(pd::split_ids_to_proto(ids).into());
            Ok(())
        })
        .await
    }

    async fn report_batch_split(
        &self,
        req: Request<pdpb::ReportBatchSplitRequest>,
    ) -> Result<Response<pdpb::ReportBatchSplitResponse>, Status> {
        self.serve(req, |pd, mut req, _: &mut pdpb::ReportBatchSplitResponse| {
            pd.report_batch_split(req.take_regions().into_vec())
        })
        .await
    }
}

fn set_region(
    resp: &mut pdpb::GetRegionResponse,
    (region, leader): (proto::metapb::Region, Option<proto::metapb::Peer>),
) {
    resp.set_region(region);
    if let Some(leader) = leader {
        resp.set_leader(leader);
    }
}
