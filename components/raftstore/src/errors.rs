//! Errors of the raftstore.
//!
//! Two families. Errors a client can act on ([`Error::NotLeader`], [`Error::EpochNotMatch`],
//! [`Error::RegionNotFound`], [`Error::KeyNotInRegion`], [`Error::StaleCommand`],
//! [`Error::ServerIsBusy`], [`Error::RaftEntryTooLarge`], [`Error::StoreNotMatch`],
//! [`Error::MismatchPeerId`], [`Error::InvalidRequest`]) travel in
//! command responses as `errorpb::Error` and carry what a retry needs; every one of them means
//! the command was **not** applied. [`Error::OutcomeUnknown`] means it may or may not have
//! been. The other variants are store-level failures on opening, recovering or running.

use engine::keys::escape;
use proto::{errorpb, metapb};

/// Errors of opening, recovering and running a store, and of commands.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The storage engine failed or found damage.
    #[error(transparent)]
    Engine(#[from] engine::Error),
    /// The engines were bootstrapped for another store.
    #[error("engines belong to store {found}, but this store is configured as {expected}")]
    StoreIdMismatch { expected: u64, found: u64 },
    /// The engines were bootstrapped for another cluster.
    #[error(
        "engines belong to cluster {found}, but this store is configured for cluster {expected}"
    )]
    ClusterIdMismatch { expected: u64, found: u64 },
    /// The engines hold no store ident.
    #[error("store is not bootstrapped: {0}")]
    NotBootstrapped(String),
    /// Bootstrapping was asked of engines that already hold a cluster.
    #[error("already bootstrapped: {0}")]
    AlreadyBootstrapped(String),
    /// A region's persisted states contradict each other, or one is missing.
    #[error("inconsistent state of region {region_id}: {detail}")]
    StateCorrupted { region_id: u64, detail: String },
    /// A caller broke a contract (for example appended entries below the truncated index).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The store is shutting down or a thread could not start.
    #[error("store unavailable: {0}")]
    Unavailable(String),

    /// This peer is not the leader; `leader` is the leader if known. Retry there.
    #[error("not leader of region {region_id}, leader is {leader:?}")]
    NotLeader { region_id: u64, leader: Option<metapb::Peer> },
    /// The store has no peer of the region. Refresh the region's location.
    #[error("region {0} not found")]
    RegionNotFound(u64),
    /// A key is outside the region's range. Refresh the region.
    #[error("key {} is not in region {}", escape(.key), .region.id)]
    KeyNotInRegion { key: Vec<u8>, region: Box<metapb::Region> },
    /// The request's epoch is stale; `regions` are the current ones. Retry on them.
    #[error("epoch not match: {msg}")]
    EpochNotMatch { msg: String, regions: Vec<metapb::Region> },
    /// The command lost its place in the log to another entry. Retry.
    #[error("stale command")]
    StaleCommand,
    /// The store is overloaded. Back off and retry.
    #[error("server is busy: {0}")]
    ServerIsBusy(String),
    /// The command is larger than one raft entry may be. Split it.
    #[error("raft entry of region {region_id} too large: {size} bytes")]
    RaftEntryTooLarge { region_id: u64, size: u64 },
    /// The request was sent to the wrong store.
    #[error("request for store {request}, but this is store {actual}")]
    StoreNotMatch { request: u64, actual: u64 },
    /// The request names a peer of the region that is not this store's peer (it was
    /// replaced, or the caller's cache is stale). Refresh the region and retry.
    #[error("request for peer {request}, but this store's peer of the region is {actual}")]
    MismatchPeerId { request: u64, actual: u64 },
    /// The request is malformed or asks for something this store does not do.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The command may or may not have been applied (its peer went away before it committed).
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
}

impl From<local_reader::ReadError> for Error {
    fn from(e: local_reader::ReadError) -> Self {
        match e {
            local_reader::ReadError::KeyNotInRegion { key, region } => {
                Error::KeyNotInRegion { key, region }
            }
            local_reader::ReadError::Engine(e) => Error::Engine(e),
        }
    }
}

impl Error {
    /// Whether the same call may succeed if tried again (possibly after refreshing the region
    /// or finding the leader).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Engine(e) => e.is_retryable(),
            Error::NotLeader { .. }
            | Error::RegionNotFound(_)
            | Error::EpochNotMatch { .. }
            | Error::StaleCommand
            | Error::ServerIsBusy(_)
            | Error::MismatchPeerId { .. }
            | Error::KeyNotInRegion { .. } => true,
            _ => false,
        }
    }

    /// A short stable name of the error, for counters and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Engine(_) => "engine",
            Error::StoreIdMismatch { .. } | Error::ClusterIdMismatch { .. } => "identity_mismatch",
            Error::NotBootstrapped(_) | Error::AlreadyBootstrapped(_) => "bootstrap",
            Error::StateCorrupted { .. } => "state_corrupted",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::Unavailable(_) => "unavailable",
            Error::NotLeader { .. } => "not_leader",
            Error::RegionNotFound(_) => "region_not_found",
            Error::KeyNotInRegion { .. } => "key_not_in_region",
            Error::EpochNotMatch { .. } => "epoch_not_match",
            Error::StaleCommand => "stale_command",
            Error::ServerIsBusy(_) => "server_is_busy",
            Error::RaftEntryTooLarge { .. } => "raft_entry_too_large",
            Error::StoreNotMatch { .. } => "store_not_match",
            Error::MismatchPeerId { .. } => "mismatch_peer_id",
            Error::InvalidRequest(_) => "invalid_request",
            Error::OutcomeUnknown(_) => "outcome_unknown",
        }
    }

    /// The error as it travels in a response header.
    pub fn to_errorpb(&self) -> errorpb::Error {
        let mut e = errorpb::Error::default();
        e.message = self.to_string();
        match self {
            Error::NotLeader { region_id, leader } => {
                let nl = e.mut_not_leader();
                nl.region_id = *region_id;
                if let Some(l) = leader {
                    nl.set_leader(l.clone());
                }
            }
            Error::RegionNotFound(id) => e.mut_region_not_found().region_id = *id,
            Error::KeyNotInRegion { key, region } => {
                let k = e.mut_key_not_in_region();
                k.key = key.clone();
                k.region_id = region.id;
                k.start_key = region.start_key.clone();
                k.end_key = region.end_key.clone();
            }
            Error::EpochNotMatch { regions, .. } => {
                e.mut_epoch_not_match().current_regions = regions.clone().into();
            }
            Error::StaleCommand => {
                e.mut_stale_command();
            }
            Error::ServerIsBusy(reason) => e.mut_server_is_busy().reason = reason.clone(),
            Error::RaftEntryTooLarge { region_id, size } => {
                let t = e.mut_raft_entry_too_large();
                t.region_id = *region_id;
                t.entry_size = *size;
            }
            Error::StoreNotMatch { request, actual } => {
                let s = e.mut_store_not_match();
                s.request_store_id = *request;
                s.actual_store_id = *actual;
            }
            Error::MismatchPeerId { request, actual } => {
                let m = e.mut_mismatch_peer_id();
                m.request_peer_id = *request;
                m.store_peer_id = *actual;
            }
            Error::InvalidRequest(reason) => e.mut_invalid_request().reason = reason.clone(),
            _ => {}
        }
        e
    }

    /// The typed error a response header carries.
    pub fn from_errorpb(e: &errorpb::Error) -> Error {
        if e.has_not_leader() {
            let nl = e.get_not_leader();
            let leader = nl.has_leader().then(|| nl.get_leader().clone());
            return Error::NotLeader { region_id: nl.region_id, leader };
        }
        if e.has_region_not_found() {
            return Error::RegionNotFound(e.get_region_not_found().region_id);
        }
        if e.has_key_not_in_region() {
            let k = e.get_key_not_in_region();
            let mut region = metapb::Region::default();
            region.id = k.region_id;
            region.start_key = k.start_key.clone();
            region.end_key = k.end_key.clone();
            return Error::KeyNotInRegion { key: k.key.clone(), region: Box::new(region) };
        }
        if e.has_epoch_not_match() {
            let regions = e.get_epoch_not_match().get_current_regions().to_vec();
            return Error::EpochNotMatch { msg: e.message.clone(), regions };
        }
        if e.has_stale_command() {
            return Error::StaleCommand;
        }
        if e.has_server_is_busy() {
            return Error::ServerIsBusy(e.get_server_is_busy().reason.clone());
        }
        if e.has_raft_entry_too_large() {
            let t = e.get_raft_entry_too_large();
            return Error::RaftEntryTooLarge { region_id: t.region_id, size: t.entry_size };
        }
        if e.has_store_not_match() {
            let s = e.get_store_not_match();
            return Error::StoreNotMatch { request: s.request_store_id, actual: s.actual_store_id };
        }
        if e.has_mismatch_peer_id() {
            let m = e.get_mismatch_peer_id();
            return Error::MismatchPeerId { request: m.request_peer_id, actual: m.store_peer_id };
        }
        if e.has_invalid_request() {
            return Error::InvalidRequest(e.get_invalid_request().reason.clone());
        }
        Error::OutcomeUnknown(e.message.clone())
    }
}

/// The result type of the raftstore.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_round_trip_through_errorpb() {
        let mut leader = metapb::Peer::default();
        leader.id = 3;
        let mut region = metapb::Region::default();
        region.id = 9;
        region.end_key = b"m".to_vec();
        let cases = vec![
            Error::NotLeader { region_id: 9, leader: Some(leader) },
            Error::NotLeader { region_id: 9, leader: None },
            Error::RegionNotFound(4),
            Error::KeyNotInRegion { key: b"z".to_vec(), region: Box::new(region.clone()) },
            Error::EpochNotMatch { msg: "stale".into(), regions: vec![region] },
            Error::StaleCommand,
            Error::ServerIsBusy("full".into()),
            Error::RaftEntryTooLarge { region_id: 9, size: 100 },
            Error::StoreNotMatch { request: 1, actual: 2 },
            Error::MismatchPeerId { request: 5, actual: 6 },
            Error::InvalidRequest("no".into()),
        ];
        for e in cases {
            let back = Error::from_errorpb(&e.to_errorpb());
            assert_eq!(format!("{back:?}").split('{').next(), format!("{e:?}").split('{').next());
            assert_eq!(back.to_errorpb().get_not_leader(), e.to_errorpb().get_not_leader());
            let final_errors = matches!(
                e,
                Error::RaftEntryTooLarge { .. }
                    | Error::StoreNotMatch { .. }
                    | Error::InvalidRequest(_)
            );
            assert_eq!(back.is_retryable(), !final_errors, "{e:?}");
        }
    }
}
