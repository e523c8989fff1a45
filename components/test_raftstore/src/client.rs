//! A client of the in-process cluster, as a real client of a region store works: it finds a
//! key's region through the placement driver, caches each region's leader, follows
//! `NotLeader` hints, and reports each write's outcome as ok, not applied, or unknown. Reads
//! go through each store's `StoreReader` (`async_snapshot`): local lease reads where the
//! leader's lease allows, the peer otherwise.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use engine::rocks::{RocksEngine, RocksRaftEngine};
use pd_client::{MemPd, PdClient};
use proto::{
    metapb,
    raft_cmdpb::{RaftCmdResponse, Request},
};
use raftstore::{msg::RaftCommand, Error, ReadContext, StoreReader};

use crate::{new_request, region_cache::RegionCache, transport::TestRouter};

/// A store's reader in the harness.
pub type TestReader = StoreReader<RocksEngine, RocksRaftEngine>;

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
    readers: HashMap<u64, TestReader>,
    leaders: HashMap<u64, metapb::Peer>,
    regions: RegionCache,
    timeout: Duration,
    refused: Refused,
    /// Where follower reads start their turn through a region's peers.
    rotation: usize,
}

/// Read attempts refused because the region moved (split, epoch, leader lost): how many, and
/// how long they took before the client routed again.
#[derive(Clone, Copy, Debug, Default)]
pub struct Refused {
    /// Attempts refused.
    pub count: u64,
    /// Time spent in them.
    pub total: Duration,
    /// The longest one.
    pub max: Duration,
}

impl Client {
    pub(crate) fn new(
        pd: Arc<MemPd>,
        routers: HashMap<u64, TestRouter>,
        readers: HashMap<u64, TestReader>,
    ) -> Self {
        Client {
            pd,
            routers,
            readers,
            leaders: HashMap::new(),
            regions: RegionCache::default(),
            timeout: Duration::from_secs(3),
            refused: Refused::default(),
            rotation: 0,
        }
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

    /// Reads `key` from its region's leader (`async_snapshot`: a lease read, or ReadIndex):
    /// `Ok(Some(value))`, `Ok(None)` if absent, or the error once `deadline` passes or a
    /// final error comes back. Reads are idempotent, so every retryable error is retried.
    pub fn read(&mut self, key: &[u8], deadline: Instant) -> Result<Option<Vec<u8>>, Error> {
        self.read_from(key, deadline, false)
    }

    /// Reads `key` as [`Self::read`] does, but from a follower (a follower read: the peer asks
    /// the leader for a read index and answers once it has applied up to it), trying the
    /// region's peers in turn from a rotating start.
    pub fn read_follower(
        &mut self,
        key: &[u8],
        deadline: Instant,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.read_from(key, deadline, true)
    }

    fn read_from(
        &mut self,
        key: &[u8],
        deadline: Instant,
        follower: bool,
    ) -> Result<Option<Vec<u8>>, Error> {
        let mut last_err = Error::OutcomeUnknown("no attempt made".into());
        let mut attempt = 0usize;
        while Instant::now() < deadline {
            let region = self.locate(key)?;
            let peer = if follower {
                self.rotation += 1;
                let peers = region.get_peers();
                peers[self.rotation % peers.len()].clone()
            } else {
                self.pick_peer(&region, attempt)
            };
            attempt += 1;
            let Some(reader) = self.readers.get_mut(&peer.store_id) else {
                self.leaders.remove(&region.id);
                continue;
            };
            let ctx = ReadContext::new(&region, &peer);
            let ctx = if follower { ctx.replica_read() } else { ctx };
            let started = Instant::now();
            let err = match reader.snapshot(&ctx, self.timeout).and_then(|s| Ok(s.get(key)?)) {
                Ok(value) => {
                    if !follower {
                        self.leaders.insert(region.id, peer);
                    }
                    return Ok(value);
                }
                Err(e) => e,
            };
            if err.is_retryable() {
                let took = started.elapsed();
                self.refused.count += 1;
                self.refused.total += took;
                self.refused.max = self.refused.max.max(took);
            }
            last_err = match self.on_error(region.id, err, true) {
                Ok(retry) => retry,
                Err(Outcome::Failed(e) | Outcome::Unknown(e)) => return Err(e),
                Err(Outcome::Ok(_)) => unreachable!("errors never end in Ok"),
            };
        }
        Err(last_err)
    }

    fn call(&mut self, key: &[u8], requests: Vec<Request>, deadline: Instant) -> Outcome {
        let mut last_err = Error::OutcomeUnknown("no attempt made".into());
        let mut attempt = 0usize;
        while Instant::now() < deadline {
            let region = match self.locate(key) {
                Ok(region) => region,
                Err(e) => return Outcome::Failed(e),
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
                Err(_) => {
                    // No answer: the region may have moved or split. Route again next time.
                    self.leaders.remove(&region.id);
                    self.regions.invalidate(region.id);
                    return Outcome::Unknown(Error::OutcomeUnknown("timed out".into()));
                }
            };
            if !resp.get_header().has_error() {
                self.leaders.insert(region.id, peer);
                return Outcome::Ok(resp);
            }
            let err = Error::from_errorpb(resp.get_header().get_error());
            last_err = match self.on_error(region.id, err, false) {
                Ok(retry) => retry,
                Err(outcome) => return outcome,
            };
        }
        Outcome::Failed(last_err)
    }

    /// Follows an error's hint: `Ok(err)` to retry, or how the call ends. An unknown outcome
    /// ends a write (retrying could apply it twice) but not a read.
    fn on_error(&mut self, region_id: u64, err: Error, idempotent: bool) -> Result<Error, Outcome> {
        match &err {
            Error::NotLeader { leader: Some(l), .. } => {
                self.leaders.insert(region_id, l.clone());
            }
            Error::NotLeader { leader: None, .. } => {
                self.leaders.remove(&region_id);
                std::thread::sleep(Duration::from_millis(10));
            }
            Error::RegionNotFound(_)
            | Error::KeyNotInRegion { .. }
            | Error::MismatchPeerId { .. } => {
                self.leaders.remove(&region_id);
                self.regions.invalidate(region_id);
                std::thread::sleep(Duration::from_millis(10));
            }
            Error::EpochNotMatch { regions, .. } => {
                // The regions the peer knows now: newer than ours, route with them at once.
                self.regions.invalidate(region_id);
                for r in regions {
                    self.regions.insert(r.clone());
                }
            }
            Error::StaleCommand | Error::ServerIsBusy(_) => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Error::OutcomeUnknown(_) => {
                // No answer: the region may have moved or split. Route again from scratch.
                self.leaders.remove(&region_id);
                self.regions.invalidate(region_id);
                if !idempotent {
                    return Err(Outcome::Unknown(err));
                }
            }
            _ => return Err(Outcome::Failed(err)),
        }
        Ok(err)
    }

    /// The region of `key`: cached, or from the placement driver.
    fn locate(&mut self, key: &[u8]) -> Result<metapb::Region, Error> {
        if let Some(region) = self.regions.locate(key) {
            return Ok(region.clone());
        }
        let (region, leader) =
            self.pd.get_region(key).map_err(|e| Error::InvalidRequest(e.to_string()))?;
        if let Some(leader) = leader {
            self.leaders.entry(region.id).or_insert(leader);
        }
        self.regions.insert(region.clone());
        Ok(region)
    }

    /// Read attempts refused so far and the time they took.
    pub fn refused_reads(&self) -> Refused {
        self.refused
    }

    /// Regions this client has cached.
    pub fn cached_regions(&self) -> usize {
        self.regions.len()
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
