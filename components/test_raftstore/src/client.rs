//! A client of the in-process cluster, as a real client of a region store works: it finds a
//! key's region through the placement driver, caches each region's leader, follows
//! `NotLeader` hints, and reports each write's outcome as ok, not applied, or unknown.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use pd_client::{MemPd, PdClient};
use proto::{
    metapb,
    raft_cmdpb::{RaftCmdResponse, Request},
};
use raftstore::{msg::RaftCommand, Error};

use crate::{new_request, transport::TestRouter};

/// How a write ended.
#[derive(Debug)]
pub enum Outcome {
    /// Applied.
    Ok(RaftCmdResponse),
    /// Definitely not applied.
    Failed(Error),
    /// May or may not have been applied (timed out, or the leader stepped down).
    Unknown(Error),
}

/// A client; `Send`, one per thread (`Cluster::client` makes one).
pub struct Client {
    pd: Arc<MemPd>,
    routers: HashMap<u64, TestRouter>,
    leaders: HashMap<u64, metapb::Peer>,
    timeout: Duration,
}

impl Client {
    pub(crate) fn new(pd: Arc<MemPd>, routers: HashMap<u64, TestRouter>) -> Self {
        Client { pd, routers, leaders: HashMap::new(), timeout: Duration::from_secs(3) }
    }

    /// How long one attempt waits for its response.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Writes `requests` (all keys in the region of `key`), retrying on errors that mean "not
    /// applied, try elsewhere" until `deadline`. A timeout is an unknown outcome and is not
    /// retried: retrying could apply the write twice.
    pub fn write(&mut self, key: &[u8], requests: Vec<Request>, deadline: Instant) -> Outcome {
        self.call(key, requests, deadline)
    }

    /// Reads `key` through its region's leader (ReadIndex): `Ok(Some(value))`, `Ok(None)` if
    /// absent, or the error once `deadline` passes or a final error comes back.
    pub fn read(&mut self, key: &[u8], deadline: Instant) -> Result<Option<Vec<u8>>, Error> {
        let mut get = Request::default();
        get.set_cmd_type(proto::raft_cmdpb::CmdType::Get);
        get.mut_get().key = key.to_vec();
        match self.call(key, vec![get], deadline) {
            Outcome::Ok(resp) => {
                let got = resp.get_responses().first().map(|r| r.get_get()).ok_or_else(|| {
                    Error::InvalidRequest("a read answered without a response".into())
                })?;
                Ok((!got.not_found).then(|| got.value.clone()))
            }
            Outcome::Failed(e) | Outcome::Unknown(e) => Err(e),
        }
    }

    fn call(&mut self, key: &[u8], requests: Vec<Request>, deadline: Instant) -> Outcome {
        let mut last_err = Error::OutcomeUnknown("no attempt made".into());
        let mut attempt = 0usize;
        while Instant::now() < deadline {
            let region = match self.pd.get_region(key) {
                Ok((region, _)) => region,
                Err(e) => return Outcome::Failed(Error::InvalidRequest(e.to_string())),
            };
            let peer = self.pick_peer(&region, attempt);
            attempt += 1;
            let Some(router) = self.routers.get(&peer.store_id) else {
                self.leaders.remove(&region.id);
                continue;
            };
            let (cmd, rx) = RaftCommand::new(new_request(&region, &peer, requests.clone()));
            router.send_command(cmd);
            let resp = match rx.recv_timeout(self.timeout) {
                Ok(resp) => resp,
                Err(_) => return Outcome::Unknown(Error::OutcomeUnknown("timed out".into())),
            };
            if !resp.get_header().has_error() {
                self.leaders.insert(region.id, peer);
                return Outcome::Ok(resp);
            }
            let err = Error::from_errorpb(resp.get_header().get_error());
            match &err {
                Error::NotLeader { leader: Some(l), .. } => {
                    self.leaders.insert(region.id, l.clone());
                }
                Error::NotLeader { leader: None, .. } | Error::RegionNotFound(_) => {
                    self.leaders.remove(&region.id);
                    std::thread::sleep(Duration::from_millis(10));
                }
                Error::StaleCommand | Error::ServerIsBusy(_) | Error::EpochNotMatch { .. } => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Error::OutcomeUnknown(_) => return Outcome::Unknown(err),
                _ => return Outcome::Failed(err),
            }
            last_err = err;
        }
        Outcome::Failed(last_err)
    }

    /// The cached leader, or the region's peers in turn.
    fn pick_peer(&self, region: &metapb::Region, attempt: usize) -> metapb::Peer {
        if let Some(leader) = self.leaders.get(&region.id) {
            return leader.clone();
        }
        let peers = region.get_peers();
        peers[attempt % peers.len()].clone()
    }
}
