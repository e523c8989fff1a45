//! Bootstrapping a store and the first region of a cluster, and checking a store's identity
//! when it opens its engines again.

use engine::{keys, KvEngine, Mutable, RaftEngine, RaftLogBatch, WriteOptions, CF_META};
use proto::{
    metapb,
    raft_serverpb::{PeerState, RegionLocalState, StoreIdent},
};

use crate::{
    raft::storage::{initial_apply_state, initial_raft_state},
    Error, Result,
};

/// Writes the store ident into fresh engines. Bootstrapping again with the same ids is a
/// no-op; with other ids it is refused.
pub fn bootstrap_store<EK: KvEngine>(kv: &EK, cluster_id: u64, store_id: u64) -> Result<()> {
    if cluster_id == 0 || store_id == 0 {
        return Err(Error::InvalidArgument("cluster id and store id must be non-zero".into()));
    }
    if kv.get_msg_cf::<StoreIdent>(CF_META, keys::STORE_IDENT_KEY)?.is_some() {
        return check_store_ident(kv, cluster_id, store_id);
    }
    let mut ident = StoreIdent::default();
    ident.cluster_id = cluster_id;
    ident.store_id = store_id;
    let mut wb = kv.write_batch();
    wb.put_msg_cf(CF_META, keys::STORE_IDENT_KEY, &ident)?;
    kv.write(&mut wb, WriteOptions::SYNC)?;
    Ok(())
}

/// Checks that the engines belong to this store of this cluster.
pub fn check_store_ident<EK: KvEngine>(kv: &EK, cluster_id: u64, store_id: u64) -> Result<()> {
    let Some(ident) = kv.get_msg_cf::<StoreIdent>(CF_META, keys::STORE_IDENT_KEY)? else {
        return Err(Error::NotBootstrapped(format!("no store ident in {}", kv.path().display())));
    };
    if ident.cluster_id != cluster_id {
        return Err(Error::ClusterIdMismatch { expected: cluster_id, found: ident.cluster_id });
    }
    if ident.store_id != store_id {
        return Err(Error::StoreIdMismatch { expected: store_id, found: ident.store_id });
    }
    Ok(())
}

/// Writes the initial states of the first region of a cluster: raft state to the raft engine
/// first, then region and apply state to the kv engine, both synced. A store that crashes in
/// between sees no region state and bootstraps again.
pub fn bootstrap_first_region<EK: KvEngine, ER: RaftEngine>(
    kv: &EK,
    raft: &ER,
    region: &metapb::Region,
) -> Result<()> {
    bootstrap_regions(kv, raft, std::slice::from_ref(region))
}

/// Like [`bootstrap_first_region`] for a cluster that starts with its key space already cut
/// into `regions` (disjoint ranges, each with peers), for tools and benchmarks.
pub fn bootstrap_regions<EK: KvEngine, ER: RaftEngine>(
    kv: &EK,
    raft: &ER,
    regions: &[metapb::Region],
) -> Result<()> {
    write_initial_states(kv, raft, regions, false)
}

/// Writes the initial states of `regions`: raft states first (synced), then one synced kv
/// batch with the region and apply states, and the prepared-bootstrap marker naming the
/// first region if `mark`. The marker and the states it stands for land together or not at
/// all: a crash before the kv batch leaves only raft states that no region state names,
/// never read (the next attempt takes new ids) and a few bytes in size.
fn write_initial_states<EK: KvEngine, ER: RaftEngine>(
    kv: &EK,
    raft: &ER,
    regions: &[metapb::Region],
    mark: bool,
) -> Result<()> {
    if let Some(r) = regions.iter().find(|r| r.peers.is_empty()) {
        return Err(Error::InvalidArgument(format!("region {} has no peers", r.id)));
    }
    if !load_region_states(kv)?.is_empty() {
        return Err(Error::AlreadyBootstrapped("the store already holds regions".into()));
    }
    let mut batch = raft.log_batch(regions.len());
    for region in regions {
        batch.put_raft_state(region.id, &initial_raft_state())?;
    }
    raft.consume(&mut batch, true)?;
    fail::fail_point!("bootstrap_before_kv_states", |_| {
        Err(Error::Unavailable("fail point bootstrap_before_kv_states".into()))
    });

    let mut wb = kv.write_batch();
    if let (true, Some(first)) = (mark, regions.first()) {
        wb.put_msg_cf(CF_META, keys::PREPARE_BOOTSTRAP_KEY, first)?;
    }
    for region in regions {
        let mut state = RegionLocalState::default();
        state.set_state(PeerState::Normal);
        state.set_region(region.clone());
        wb.put_msg_cf(CF_META, &keys::region_state_key(region.id), &state)?;
        wb.put_msg_cf(CF_META, &keys::apply_state_key(region.id), &initial_apply_state())?;
    }
    kv.write(&mut wb, WriteOptions::SYNC)?;
    Ok(())
}

/// Prepares this store to be the first of a new cluster: writes `region` (its only peer here)
/// as [`bootstrap_first_region`] does, with a marker in the same kv batch as its states that
/// it still has to be accepted by the placement driver. Until [`finish_bootstrap`] or
/// [`clear_prepared_bootstrap`], [`prepared_bootstrap`] returns it, so a crash in between is
/// resolved on the next open.
pub fn prepare_bootstrap<EK: KvEngine, ER: RaftEngine>(
    kv: &EK,
    raft: &ER,
    region: &metapb::Region,
) -> Result<()> {
    write_initial_states(kv, raft, std::slice::from_ref(region), true)
}

/// The first region this store prepared and has not settled, if any.
pub fn prepared_bootstrap<EK: KvEngine>(kv: &EK) -> Result<Option<metapb::Region>> {
    Ok(kv.get_msg_cf(CF_META, keys::PREPARE_BOOTSTRAP_KEY)?)
}

/// The placement driver accepted the prepared region: it is the cluster's first.
pub fn finish_bootstrap<EK: KvEngine>(kv: &EK) -> Result<()> {
    let mut wb = kv.write_batch();
    wb.delete_cf(CF_META, keys::PREPARE_BOOTSTRAP_KEY)?;
    kv.write(&mut wb, WriteOptions::SYNC)?;
    Ok(())
}

/// Another store's first region won: the prepared one is deleted (its states and raft
/// state), then the marker.
pub fn clear_prepared_bootstrap<EK: KvEngine, ER: RaftEngine>(
    kv: &EK,
    raft: &ER,
    region: &metapb::Region,
) -> Result<()> {
    let mut batch = raft.log_batch(0);
    batch.delete_raft_state(region.id)?;
    raft.consume(&mut batch, true)?;
    let mut wb = kv.write_batch();
    wb.delete_cf(CF_META, &keys::region_state_key(region.id))?;
    wb.delete_cf(CF_META, &keys::apply_state_key(region.id))?;
    wb.delete_cf(CF_META, keys::PREPARE_BOOTSTRAP_KEY)?;
    kv.write(&mut wb, WriteOptions::SYNC)?;
    Ok(())
}

/// Every region state the store holds, in region id order (tombstones included).
pub fn load_region_states<EK: KvEngine>(kv: &EK) -> Result<Vec<RegionLocalState>> {
    let mut states = Vec::new();
    let mut err = None;
    kv.scan(CF_META, keys::REGION_META_MIN_KEY, keys::REGION_META_MAX_KEY, false, |k, v| {
        let Some(region_id) = keys::decode_region_state_key(k) else {
            return Ok(true);
        };
        match <RegionLocalState as proto::Message>::parse_from_bytes(v) {
            Ok(s) if s.get_region().id == region_id => states.push(s),
            Ok(s) => {
                err = Some(Error::StateCorrupted {
                    region_id,
                    detail: format!("region state holds region {}", s.get_region().id),
                });
                return Ok(false);
            }
            Err(e) => return Err(engine::Error::corrupted_value(k, e)),
        }
        Ok(true)
    })?;
    match err {
        Some(e) => Err(e),
        None => Ok(states),
    }
}
