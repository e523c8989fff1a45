//! `PeerStorage` over RocksDB: recovery after a restart, conflicting appends, compacted and
//! unavailable ranges, and typed errors for damaged state.

use std::path::Path;

use engine::{
    conformance::entries,
    keys,
    rocks::{open_engines, RocksConfig, RocksEngine, RocksRaftEngine},
    Error as EngineError, KvEngine, Mutable, RaftEngine, WriteOptions, CF_META,
};
use proto::{eraftpb::HardState, metapb};
use raft::{GetEntriesContext, Storage, StorageError};
use raftstore::{
    bootstrap::{bootstrap_first_region, bootstrap_store, check_store_ident, load_region_states},
    raft::storage::{PeerStorage, RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM},
    Error,
};

type Ps = PeerStorage<RocksEngine, RocksRaftEngine>;

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

fn region() -> metapb::Region {
    let mut r = metapb::Region::default();
    r.id = 1;
    r.mut_region_epoch().conf_ver = 1;
    r.mut_region_epoch().version = 1;
    for (id, store) in [(11, 1), (12, 2), (13, 3)] {
        let mut p = metapb::Peer::default();
        p.id = id;
        p.store_id = store;
        r.peers.push(p);
    }
    r
}

fn open(dir: &Path) -> (RocksEngine, RocksRaftEngine) {
    open_engines(dir, &RocksConfig::small()).unwrap()
}

fn bootstrapped(dir: &Path) -> Ps {
    let (kv, raft) = open(dir);
    bootstrap_store(&kv, 100, 1).unwrap();
    bootstrap_first_region(&kv, &raft, &region()).unwrap();
    PeerStorage::new(kv, raft, region(), logger()).unwrap()
}

/// Appends `ents` with commit `commit` in `term` and persists it, as a peer does per ready.
fn persist(ps: &mut Ps, ents: &[proto::eraftpb::Entry], term: u64, commit: u64) {
    let raft = ps.raft_engine().clone();
    let mut batch = raft.log_batch(ents.len());
    ps.append(ents, &mut batch).unwrap();
    let mut hs = HardState::default();
    hs.term = term;
    hs.commit = commit;
    ps.set_hard_state(hs);
    ps.write_raft_state(&mut batch).unwrap();
    raft.consume(&mut batch, true).unwrap();
}

fn ctx() -> GetEntriesContext {
    GetEntriesContext::empty(false)
}

#[test]
fn bootstrapped_region_starts_at_the_initial_index() {
    let dir = tempfile::tempdir().unwrap();
    let ps = bootstrapped(dir.path());
    let state = ps.initial_state().unwrap();
    assert_eq!(state.hard_state.term, RAFT_INIT_LOG_TERM);
    assert_eq!(state.hard_state.commit, RAFT_INIT_LOG_INDEX);
    assert_eq!(state.conf_state.voters, vec![11, 12, 13]);
    assert_eq!(ps.first_index().unwrap(), RAFT_INIT_LOG_INDEX + 1);
    assert_eq!(ps.last_index().unwrap(), RAFT_INIT_LOG_INDEX);
    assert_eq!(ps.term(RAFT_INIT_LOG_INDEX).unwrap(), RAFT_INIT_LOG_TERM);
    assert_eq!(ps.applied_index(), RAFT_INIT_LOG_INDEX);
}

#[test]
fn uninitialized_peer_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (kv, raft) = open(dir.path());
    let mut r = metapb::Region::default();
    r.id = 9;
    let ps = PeerStorage::new(kv, raft, r, logger()).unwrap();
    assert!(!ps.is_initialized());
    assert_eq!(ps.last_index().unwrap(), 0);
    assert_eq!(ps.first_index().unwrap(), 1);
    assert!(ps.initial_state().unwrap().conf_state.voters.is_empty());
}

#[test]
fn restart_recovers_log_and_hard_state() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut ps = bootstrapped(dir.path());
        persist(&mut ps, &entries(6, 11, 6), 6, 8);
    }
    let (kv, raft) = open(dir.path());
    check_store_ident(&kv, 100, 1).unwrap();
    let states = load_region_states(&kv).unwrap();
    assert_eq!(states.len(), 1);
    let ps = PeerStorage::new(kv, raft, states[0].get_region().clone(), logger()).unwrap();
    let hs = ps.initial_state().unwrap().hard_state;
    assert_eq!((hs.term, hs.commit), (6, 8));
    assert_eq!(ps.last_index().unwrap(), 10);
    assert_eq!(ps.last_term(), 6);
    assert_eq!(ps.entries(6, 11, None, ctx()).unwrap(), entries(6, 11, 6));
}

#[test]
fn conflicting_append_replaces_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut ps = bootstrapped(dir.path());
    persist(&mut ps, &entries(6, 11, 6), 6, 6);
    persist(&mut ps, &entries(8, 10, 7), 7, 6);
    assert_eq!(ps.last_index().unwrap(), 9);
    assert_eq!(ps.term(7).unwrap(), 6);
    assert_eq!(ps.term(8).unwrap(), 7);
    assert_eq!(ps.term(9).unwrap(), 7);
    let got = ps.entries(6, 10, None, ctx()).unwrap();
    assert_eq!(got.iter().map(|e| e.term).collect::<Vec<_>>(), vec![6, 6, 7, 7]);
    assert_eq!(ps.raft_engine().get_entry(1, 10).unwrap(), None, "stale tail deleted");
    let mut batch = ps.raft_engine().log_batch(0);
    let gap = ps.append(&entries(12, 13, 7), &mut batch);
    assert!(matches!(gap, Err(Error::InvalidArgument(_))), "append past last+1 refused");
    let below = ps.append(&entries(4, 6, 7), &mut batch);
    assert!(matches!(below, Err(Error::InvalidArgument(_))), "append at truncated refused");
}

#[test]
fn compacted_and_unavailable_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let mut ps = bootstrapped(dir.path());
    persist(&mut ps, &entries(6, 9, 6), 6, 6);
    let compacted =
        |r: raft::Result<_>| matches!(r, Err(raft::Error::Store(StorageError::Compacted)));
    let unavailable =
        |r: raft::Result<_>| matches!(r, Err(raft::Error::Store(StorageError::Unavailable)));
    assert!(compacted(ps.entries(5, 7, None, ctx()).map(|_| ())));
    assert!(compacted(ps.term(4).map(|_| ())));
    assert!(unavailable(ps.entries(6, 10, None, ctx()).map(|_| ())));
    assert!(unavailable(ps.term(9).map(|_| ())));
    assert_eq!(ps.entries(6, 9, Some(0), ctx()).unwrap().len(), 1, "size limit keeps one");
    assert!(matches!(
        ps.snapshot(0, 2),
        Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable))
    ));
}

#[test]
fn a_hole_in_the_log_is_found_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut ps = bootstrapped(dir.path());
        persist(&mut ps, &entries(6, 11, 6), 6, 6);
        ps.raft_engine().gc(1, 8, 9).unwrap();
    }
    let (kv, raft) = open(dir.path());
    let err = PeerStorage::new(kv, raft, region(), logger()).err().unwrap();
    assert!(
        matches!(err, Error::Engine(EngineError::LogGap { expected: 8, found: Some(9), .. })),
        "{err:?}"
    );
}

#[test]
fn damaged_or_contradictory_states_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    drop(bootstrapped(dir.path()));
    let (kv, raft) = open(dir.path());

    let mut wb = kv.write_batch();
    wb.put_cf(CF_META, &keys::apply_state_key(1), b"\xff\xff\xff").unwrap();
    kv.write(&mut wb, WriteOptions::SYNC).unwrap();
    let err = PeerStorage::new(kv.clone(), raft.clone(), region(), logger()).err().unwrap();
    assert!(matches!(err, Error::Engine(EngineError::Corruption { .. })), "{err:?}");

    let mut apply = raftstore::raft::storage::initial_apply_state();
    apply.applied_index = 50;
    apply.commit_index = 50;
    wb.put_msg_cf(CF_META, &keys::apply_state_key(1), &apply).unwrap();
    kv.write(&mut wb, WriteOptions::SYNC).unwrap();
    let err = PeerStorage::new(kv.clone(), raft.clone(), region(), logger()).err().unwrap();
    assert!(
        matches!(err, Error::StateCorrupted { region_id: 1, .. }),
        "applied beyond log: {err:?}"
    );

    let mut other = region();
    other.id = 2;
    let err = PeerStorage::new(kv.clone(), raft.clone(), other, logger());
    assert!(err.is_ok(), "a region without states starts fresh");
    let mut b = raft.log_batch(0);
    engine::RaftLogBatch::delete_raft_state(&mut b, 1).unwrap();
    raft.consume(&mut b, true).unwrap();
    let err = PeerStorage::new(kv, raft, region(), logger()).err().unwrap();
    assert!(matches!(err, Error::StateCorrupted { .. }), "raft state missing: {err:?}");
}

#[test]
fn store_ident_must_match() {
    let dir = tempfile::tempdir().unwrap();
    let (kv, raft) = open(dir.path());
    assert!(matches!(check_store_ident(&kv, 100, 1), Err(Error::NotBootstrapped(_))));
    bootstrap_store(&kv, 100, 1).unwrap();
    bootstrap_store(&kv, 100, 1).unwrap();
    assert!(matches!(
        check_store_ident(&kv, 100, 2),
        Err(Error::StoreIdMismatch { expected: 2, found: 1 })
    ));
    assert!(matches!(bootstrap_store(&kv, 101, 1), Err(Error::ClusterIdMismatch { .. })));
    bootstrap_first_region(&kv, &raft, &region()).unwrap();
    assert!(matches!(
        bootstrap_first_region(&kv, &raft, &region()),
        Err(Error::AlreadyBootstrapped(_))
    ));
}

/// The in-memory tail of the log reads exactly as the raft engine does, whatever appends
/// (conflicting ones among them), cache compactions and size limits came before: random runs
/// against the engine itself, with caches from none to larger than the log.
#[test]
fn the_cached_tail_reads_as_the_engine_does() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    for limit in [0, 200, 1_000, 1 << 20] {
        let dir = tempfile::tempdir().unwrap();
        let mut ps = bootstrapped(dir.path());
        ps.set_entry_cache_limit(limit);
        let mut term = 6;
        for _ in 0..300 {
            let (first, last) = (ps.first_index().unwrap(), ps.last_index().unwrap());
            match next(3) {
                0 => {
                    // An append at any point after the truncated index, maybe replacing a tail.
                    let from = first + next(last + 2 - first);
                    term += next(2);
                    let ents = entries(from, from + 1 + next(8), term);
                    persist(&mut ps, &ents, term, first - 1);
                }
                1 => ps.compact_entry_cache(first + next(last + 2 - first)),
                _ => {}
            }
            let last = ps.last_index().unwrap();
            let low = first + next(last + 1 - first);
            let high = low + next(last + 2 - low);
            let max = [None, Some(0), Some(100), Some(300)][next(4) as usize];
            let mut want = Vec::new();
            if low < high {
                let limit = max.map(|m| m as usize);
                ps.raft_engine().fetch_entries_to(1, low, high, limit, &mut want).unwrap();
            }
            assert_eq!(ps.entries(low, high, max, ctx()).unwrap(), want, "[{low}, {high}) {max:?}");
            for idx in first..=last {
                let stored = ps.raft_engine().get_entry(1, idx).unwrap().unwrap().term;
                assert_eq!(ps.term(idx).unwrap(), stored, "term of {idx}");
            }
            assert!(ps.entry_cache().bytes() <= limit);
        }
    }
}

/// A snapshot replaces the whole log: nothing of the old tail is served from memory after it.
#[test]
fn a_snapshot_empties_the_cached_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut ps = bootstrapped(dir.path());
    persist(&mut ps, &entries(6, 11, 6), 6, 6);
    assert_eq!(ps.entry_cache().first_index(), Some(6));
    let mut apply = ps.apply_state().clone();
    apply.applied_index = 20;
    apply.mut_truncated_state().index = 20;
    apply.mut_truncated_state().term = 7;
    ps.apply_snapshot_state(region(), apply);
    assert!(ps.entry_cache().is_empty());
    assert_eq!((ps.last_index().unwrap(), ps.term(20).unwrap()), (20, 7));
    persist(&mut ps, &entries(21, 23, 7), 7, 20);
    assert_eq!(ps.entries(21, 23, None, ctx()).unwrap(), entries(21, 23, 7));
    assert!(ps.entries(10, 23, None, ctx()).is_err(), "the old log is compacted");
}
