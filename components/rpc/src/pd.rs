//! The placement driver's messages (`pdpb`) as `pd_client`'s types and back: the client
//! ([`crate::pd_client`]) and the service (`pd_server`) translate through here only.

use pd_client::{Error, Operator, RegionStats, SplitIds, StoreStats};
use proto::{metapb, pdpb};

/// The response header of every placement driver answer.
pub trait HasHeader {
    /// The answer's header.
    fn header(&self) -> &pdpb::ResponseHeader;
    /// The answer's header, to fill in.
    fn header_mut(&mut self) -> &mut pdpb::ResponseHeader;
}

macro_rules! has_header {
    ($($t:ident),*) => {$(
        impl HasHeader for pdpb::$t {
            fn header(&self) -> &pdpb::ResponseHeader {
                self.get_header()
            }
            fn header_mut(&mut self) -> &mut pdpb::ResponseHeader {
                self.mut_header()
            }
        }
    )*};
}
has_header!(
    GetMembersResponse,
    AllocIdResponse,
    BootstrapResponse,
    IsBootstrappedResponse,
    PutStoreResponse,
    GetStoreResponse,
    GetAllStoresResponse,
    GetRegionResponse,
    RegionHeartbeatResponse,
    StoreHeartbeatResponse,
    AskBatchSplitResponse,
    ReportBatchSplitResponse
);

fn epoch((conf_ver, version): (u64, u64)) -> metapb::RegionEpoch {
    let mut e = metapb::RegionEpoch::default();
    e.conf_ver = conf_ver;
    e.version = version;
    e
}

/// `e` as it travels in a response header.
pub fn error_to_proto(e: &Error) -> pdpb::Error {
    let mut out = pdpb::Error::default();
    out.message = e.to_string();
    let kind = match e {
        Error::NotBootstrapped => pdpb::ErrorType::NotBootstrapped,
        Error::AlreadyBootstrapped => pdpb::ErrorType::AlreadyBootstrapped,
        Error::StoreNotFound(id) => {
            out.id = *id;
            pdpb::ErrorType::StoreNotFound
        }
        Error::RegionNotFound(what) => {
            out.message = what.clone();
            pdpb::ErrorType::RegionNotFound
        }
        Error::StaleRegion { region_id, reported, known } => {
            out.id = *region_id;
            out.set_reported(epoch(*reported));
            out.set_known(epoch(*known));
            pdpb::ErrorType::StaleRegion
        }
        Error::Invalid(why) => {
            out.message = why.clone();
            pdpb::ErrorType::Invalid
        }
        Error::Unavailable(why) => {
            out.message = why.clone();
            pdpb::ErrorType::Unavailable
        }
    };
    out.set_field_type(kind);
    out
}

/// The error a response header carries, if any. `NotLeader` and `ClusterIdMismatch` are the
/// client's to handle; they come out as `Unavailable` and `Invalid`.
pub fn error_from_proto(e: &pdpb::Error) -> Option<Error> {
    let pair = |e: &metapb::RegionEpoch| (e.conf_ver, e.version);
    Some(match e.get_field_type() {
        pdpb::ErrorType::Ok => return None,
        pdpb::ErrorType::NotBootstrapped => Error::NotBootstrapped,
        pdpb::ErrorType::AlreadyBootstrapped => Error::AlreadyBootstrapped,
        pdpb::ErrorType::StoreNotFound => Error::StoreNotFound(e.id),
        pdpb::ErrorType::RegionNotFound => Error::RegionNotFound(e.message.clone()),
        pdpb::ErrorType::StaleRegion => Error::StaleRegion {
            region_id: e.id,
            reported: pair(e.get_reported()),
            known: pair(e.get_known()),
        },
        pdpb::ErrorType::Invalid | pdpb::ErrorType::ClusterIdMismatch => {
            Error::Invalid(e.message.clone())
        }
        pdpb::ErrorType::NotLeader | pdpb::ErrorType::Unavailable => {
            Error::Unavailable(e.message.clone())
        }
    })
}

/// `op` as a heartbeat answer carries it.
pub fn operator_to_proto(op: &Operator) -> pdpb::Operator {
    let mut out = pdpb::Operator::default();
    let (kind, peer) = match op {
        Operator::AddPeer(p) => (pdpb::OperatorType::AddPeer, p),
        Operator::AddLearner(p) => (pdpb::OperatorType::AddLearner, p),
        Operator::RemovePeer(p) => (pdpb::OperatorType::RemovePeer, p),
        Operator::TransferLeader(p) => (pdpb::OperatorType::TransferLeader, p),
        Operator::Merge { target } => {
            out.set_field_type(pdpb::OperatorType::Merge);
            out.set_target(target.clone());
            return out;
        }
    };
    out.set_field_type(kind);
    out.set_peer(peer.clone());
    out
}

/// The operator a heartbeat answer carries. Errors: `Invalid` when it lacks its peer or
/// target.
pub fn operator_from_proto(op: &pdpb::Operator) -> Result<Operator, Error> {
    if op.get_field_type() == pdpb::OperatorType::Merge {
        if !op.has_target() {
            return Err(Error::Invalid("a merge operator without its target".into()));
        }
        return Ok(Operator::Merge { target: op.get_target().clone() });
    }
    if !op.has_peer() {
        return Err(Error::Invalid("an operator without its peer".into()));
    }
    let peer = op.get_peer().clone();
    Ok(match op.get_field_type() {
        pdpb::OperatorType::AddPeer => Operator::AddPeer(peer),
        pdpb::OperatorType::AddLearner => Operator::AddLearner(peer),
        pdpb::OperatorType::RemovePeer => Operator::RemovePeer(peer),
        pdpb::OperatorType::TransferLeader | pdpb::OperatorType::Merge => {
            Operator::TransferLeader(peer)
        }
    })
}

/// A region heartbeat as sent.
pub fn heartbeat_to_proto(
    term: u64,
    region: metapb::Region,
    leader: metapb::Peer,
    stats: RegionStats,
) -> pdpb::RegionHeartbeatRequest {
    let measure = |v: u64| {
        let mut m = pdpb::Measure::default();
        m.value = v;
        m
    };
    let mut req = pdpb::RegionHeartbeatRequest::default();
    req.term = term;
    req.set_region(region);
    req.set_leader(leader);
    if let Some(size) = stats.approximate_size {
        req.set_approximate_size(measure(size));
    }
    if let Some(keys) = stats.approximate_keys {
        req.set_approximate_keys(measure(keys));
    }
    req.set_down_peers(stats.down_peers.into());
    req.set_pending_peers(stats.pending_peers.into());
    req
}

/// A region heartbeat as received: (term, region, leader, stats).
pub fn heartbeat_from_proto(
    mut req: pdpb::RegionHeartbeatRequest,
) -> (u64, metapb::Region, metapb::Peer, RegionStats) {
    let stats = RegionStats {
        approximate_size: req.has_approximate_size().then(|| req.get_approximate_size().value),
        approximate_keys: req.has_approximate_keys().then(|| req.get_approximate_keys().value),
        down_peers: req.take_down_peers().into_vec(),
        pending_peers: req.take_pending_peers().into_vec(),
    };
    (req.term, req.take_region(), req.take_leader(), stats)
}

/// A store heartbeat as sent.
pub fn store_stats_to_proto(stats: &StoreStats) -> pdpb::StoreHeartbeatRequest {
    let mut req = pdpb::StoreHeartbeatRequest::default();
    req.store_id = stats.store_id;
    req.region_count = stats.region_count;
    req.leader_count = stats.leader_count;
    req.is_busy = stats.is_busy;
    req
}

/// A store heartbeat as received.
pub fn store_stats_from_proto(req: &pdpb::StoreHeartbeatRequest) -> StoreStats {
    StoreStats {
        store_id: req.store_id,
        region_count: req.region_count,
        leader_count: req.leader_count,
        is_busy: req.is_busy,
    }
}

/// Split ids as answered.
pub fn split_ids_to_proto(ids: Vec<SplitIds>) -> Vec<pdpb::SplitId> {
    ids.into_iter()
        .map(|s| {
            let mut out = pdpb::SplitId::default();
            out.new_region_id = s.new_region_id;
            out.new_peer_ids = s.new_peer_ids;
            out
        })
        .collect()
}

/// Split ids as received.
pub fn split_ids_from_proto(ids: Vec<pdpb::SplitId>) -> Vec<SplitIds> {
    ids.into_iter()
        .map(|s| SplitIds { new_region_id: s.new_region_id, new_peer_ids: s.new_peer_ids })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_operators_round_trip() {
        let errors = [
            Error::NotBootstrapped,
            Error::AlreadyBootstrapped,
            Error::StoreNotFound(4),
            Error::RegionNotFound("key [1]".into()),
            Error::StaleRegion { region_id: 7, reported: (1, 2), known: (3, 4) },
            Error::Invalid("bad".into()),
            Error::Unavailable("etcd down".into()),
        ];
        for e in errors {
            assert_eq!(error_from_proto(&error_to_proto(&e)), Some(e));
        }
        let mut peer = metapb::Peer::default();
        peer.id = 9;
        peer.store_id = 2;
        let mut target = metapb::Region::default();
        target.id = 5;
        for op in [
            Operator::AddPeer(peer.clone()),
            Operator::AddLearner(peer.clone()),
            Operator::RemovePeer(peer.clone()),
            Operator::TransferLeader(peer),
            Operator::Merge { target },
        ] {
            assert_eq!(operator_from_proto(&operator_to_proto(&op)), Ok(op));
        }
        assert!(operator_from_proto(&pdpb::Operator::default()).is_err());
    }
}
