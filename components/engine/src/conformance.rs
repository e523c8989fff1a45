//! The behaviour every engine implementation must show, as a suite of checks.
//!
//! An implementation's tests call [`kv_engine_suite`] and [`raft_engine_suite`] with a factory
//! that opens a fresh, empty engine; every check panics (fails the test) on a violation.

use proto::{eraftpb::Entry, raft_serverpb::RaftLocalState};

use crate::{
    keys, EngineIterator, Error, IterOptions, Iterable, KvEngine, Mutable, Peekable, RaftEngine,
    RaftLogBatch, RangeStats, WriteBatch, WriteOptions, CF_DEFAULT, CF_META,
};

/// Runs every kv engine check, each on a fresh engine from `open`.
pub fn kv_engine_suite<E: KvEngine>(open: impl Fn() -> E) {
    write_batch_is_atomic_and_reusable(&open());
    save_points_roll_back_exactly_what_followed(&open());
    snapshot_is_point_in_time(&open());
    iterators_respect_bounds_and_order(&open());
    delete_range_removes_exactly_the_range(&open());
    unknown_cf_is_an_error(&open());
    range_stats_count_and_stop(&open());
    snapshot_outlives_engine_handle(open());
}

fn put_all<E: KvEngine>(e: &E, pairs: &[(&[u8], &[u8])]) {
    let mut wb = e.write_batch();
    for (k, v) in pairs {
        wb.put(k, v).unwrap();
    }
    e.write(&mut wb, WriteOptions::NO_SYNC).unwrap();
}

fn collect<I: Iterable>(r: &I, cf: &str, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    r.scan(cf, start, end, true, |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        Ok(true)
    })
    .unwrap();
    out
}

fn write_batch_is_atomic_and_reusable<E: KvEngine>(e: &E) {
    let mut wb = e.write_batch();
    assert!(wb.is_empty());
    wb.put(b"za", b"1").unwrap();
    wb.put_cf(CF_META, b"m", b"x").unwrap();
    wb.delete(b"zb").unwrap();
    assert_eq!(wb.count(), 3);
    assert!(wb.data_size() > 0);
    assert_eq!(e.get_value(b"za").unwrap(), None, "nothing visible before write");
    e.write(&mut wb, WriteOptions::SYNC).unwrap();
    assert!(wb.is_empty(), "write leaves the batch empty");
    assert_eq!(e.get_value(b"za").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(e.get_value_cf(CF_META, b"m").unwrap().as_deref(), Some(&b"x"[..]));
    wb.put(b"za", b"2").unwrap();
    wb.clear();
    e.write(&mut wb, WriteOptions::NO_SYNC).unwrap();
    assert_eq!(
        e.get_value(b"za").unwrap().as_deref(),
        Some(&b"1"[..]),
        "cleared batch writes nothing"
    );
    let mut state = RaftLocalState::default();
    state.last_index = 42;
    wb.put_msg_cf(CF_META, b"state", &state).unwrap();
    e.write(&mut wb, WriteOptions::NO_SYNC).unwrap();
    let back: RaftLocalState = e.get_msg_cf(CF_META, b"state").unwrap().unwrap();
    assert_eq!(back, state);
    wb.put_cf(CF_META, b"bad", &[0xff, 0xff, 0xff]).unwrap();
    e.write(&mut wb, WriteOptions::NO_SYNC).unwrap();
    let bad = e.get_msg_cf::<RaftLocalState>(CF_META, b"bad");
    assert!(matches!(bad, Err(Error::Corruption { .. })), "{bad:?}");
}

fn save_points_roll_back_exactly_what_followed<E: KvEngine>(e: &E) {
    let mut wb = e.write_batch();
    assert!(wb.rollback_to_save_point().is_err(), "no save point");
    assert!(wb.pop_save_point().is_err(), "no save point");
    wb.set_save_point(); // on an empty batch
    wb.put(b"za", b"1").unwrap();
    wb.rollback_to_save_point().unwrap();
    assert!(wb.is_empty());
    wb.put(b"za", b"1").unwrap();
    wb.set_save_point();
    wb.put(b"zb", b"2").unwrap();
    wb.set_save_point();
    wb.put_cf(CF_META, b"m", b"3").unwrap();
    wb.delete(b"za").unwrap();
    wb.rollback_to_save_point().unwrap(); // drops the meta put and the delete
    assert_eq!(wb.count(), 2);
    wb.set_save_point();
    wb.put(b"zc", b"4").unwrap();
    wb.pop_save_point().unwrap(); // keeps zc
    wb.rollback_to_save_point().unwrap(); // back to the first: drops zb and zc
    assert_eq!(wb.count(), 1);
    wb.put(b"zd", b"5").unwrap(); // the batch takes more after a rollback
    e.write(&mut wb, WriteOptions::NO_SYNC).unwrap();
    assert_eq!(e.get_value(b"za").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(e.get_value(b"zd").unwrap().as_deref(), Some(&b"5"[..]));
    for gone in [&b"zb"[..], b"zc"] {
        assert_eq!(e.get_value(gone).unwrap(), None);
    }
    assert_eq!(e.get_value_cf(CF_META, b"m").unwrap(), None);
    wb.set_save_point();
    wb.clear();
    assert!(wb.rollback_to_save_point().is_err(), "clear drops save points");
}

fn snapshot_is_point_in_time<E: KvEngine>(e: &E) {
    put_all(e, &[(b"zk1", b"v1"), (b"zk2", b"v2")]);
    let snap = e.snapshot();
    let clone = snap.clone();
    put_all(e, &[(b"zk1", b"new"), (b"zk3", b"v3")]);
    let mut wb = e.write_batch();
    wb.delete(b"zk2").unwrap();
    e.write(&mut wb, WriteOptions::NO_SYNC).unwrap();
    for s in [&snap, &clone] {
        assert_eq!(s.get_value(b"zk1").unwrap().as_deref(), Some(&b"v1"[..]));
        assert_eq!(s.get_value(b"zk2").unwrap().as_deref(), Some(&b"v2"[..]));
        assert_eq!(s.get_value(b"zk3").unwrap(), None);
        assert_eq!(collect(s, CF_DEFAULT, b"z", b"{").len(), 2);
    }
    let moved = std::thread::spawn(move || clone.get_value(b"zk1").unwrap()).join().unwrap();
    assert_eq!(moved.as_deref(), Some(&b"v1"[..]), "snapshot usable from another thread");
    assert_eq!(e.get_value(b"zk1").unwrap().as_deref(), Some(&b"new"[..]));
}

fn iterators_respect_bounds_and_order<E: KvEngine>(e: &E) {
    put_all(e, &[(b"zb", b"2"), (b"za", b"1"), (b"zd", b"4"), (b"zc", b"3"), (b"ze", b"5")]);
    let keys: Vec<_> = collect(e, CF_DEFAULT, b"zb", b"ze").into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec![b"zb".to_vec(), b"zc".to_vec(), b"zd".to_vec()]);
    let snap = e.snapshot();
    let mut it = snap.iterator_opt(CF_DEFAULT, IterOptions::range(b"zb", b"ze")).unwrap();
    assert!(it.seek_to_last().unwrap());
    assert_eq!(it.key(), b"zd");
    assert!(it.prev().unwrap());
    assert_eq!((it.key(), it.value()), (&b"zc"[..], &b"3"[..]));
    assert!(it.seek(b"zbb").unwrap());
    assert_eq!(it.key(), b"zc");
    assert!(it.seek_for_prev(b"zcc").unwrap());
    assert_eq!(it.key(), b"zc");
    assert!(!it.seek(b"ze").unwrap(), "upper bound is exclusive");
    assert!(it.seek(b"a").unwrap(), "seek below the lower bound lands on it");
    assert_eq!(it.key(), b"zb");
    assert!(it.seek_to_first().unwrap());
    assert!(it.next().unwrap() && it.next().unwrap());
    assert!(!it.next().unwrap());
    let mut n = 0;
    e.scan(CF_DEFAULT, b"z", b"{", true, |_, _| {
        n += 1;
        Ok(n < 2)
    })
    .unwrap();
    assert_eq!(n, 2, "scan stops when told");
}

fn delete_range_removes_exactly_the_range<E: KvEngine>(e: &E) {
    put_all(e, &[(b"za", b""), (b"zb", b""), (b"zc", b""), (b"zd", b"")]);
    let mut wb = e.write_batch();
    wb.delete_range_cf(CF_DEFAULT, b"zb", b"zd").unwrap();
    e.write(&mut wb, WriteOptions::NO_SYNC).unwrap();
    let keys: Vec<_> = collect(e, CF_DEFAULT, b"z", b"{").into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec![b"za".to_vec(), b"zd".to_vec()]);
    let err = wb.delete_range_cf(CF_DEFAULT, b"zz", b"za");
    assert!(matches!(err, Err(Error::InvalidArgument(_))), "{err:?}");
}

fn unknown_cf_is_an_error<E: KvEngine>(e: &E) {
    assert!(matches!(e.get_value_cf("nope", b"k"), Err(Error::CfNotFound(_))));
    assert!(matches!(e.snapshot().get_value_cf("nope", b"k"), Err(Error::CfNotFound(_))));
    assert!(matches!(e.iterator_opt("nope", IterOptions::default()), Err(Error::CfNotFound(_))));
    let mut wb = e.write_batch();
    assert!(matches!(wb.put_cf("nope", b"k", b"v"), Err(Error::CfNotFound(_))));
    assert!(wb.is_empty());
}

fn range_stats_count_and_stop<E: KvEngine>(e: &E) {
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..100u32)
        .map(|i| (keys::data_key(format!("k{i:03}").as_bytes()), vec![b'v'; 10]))
        .collect();
    let mut wb = e.write_batch();
    for (k, v) in &pairs {
        wb.put(k, v).unwrap();
    }
    e.write(&mut wb, WriteOptions::NO_SYNC).unwrap();
    let all = e
        .range_stats(CF_DEFAULT, keys::DATA_MIN_KEY, keys::DATA_MAX_KEY, RangeStats::UNLIMITED)
        .unwrap();
    assert_eq!(all, RangeStats { size: 100 * (5 + 10), keys: 100, truncated: false });
    let half = e
        .range_stats(
            CF_DEFAULT,
            &keys::data_key(b"k050"),
            keys::DATA_MAX_KEY,
            RangeStats::UNLIMITED,
        )
        .unwrap();
    assert_eq!(half.keys, 50);
    let limit = RangeStats { size: 0, keys: 10, truncated: false };
    let cut = e
        .snapshot()
        .range_stats(CF_DEFAULT, keys::DATA_MIN_KEY, keys::DATA_MAX_KEY, limit)
        .unwrap();
    assert!(cut.truncated && cut.keys == 10, "{cut:?}");
}

fn snapshot_outlives_engine_handle<E: KvEngine>(e: E) {
    put_all(&e, &[(b"zx", b"1")]);
    let snap = e.snapshot();
    let mut it = snap.iterator_opt(CF_DEFAULT, IterOptions::default()).unwrap();
    drop(e);
    assert_eq!(snap.get_value(b"zx").unwrap().as_deref(), Some(&b"1"[..]));
    drop(snap);
    assert!(it.seek_to_first().unwrap(), "iterator keeps its snapshot alive");
    assert_eq!(it.key(), b"zx");
}

/// Runs every raft engine check, each on a fresh engine from `open`.
pub fn raft_engine_suite<R: RaftEngine>(open: impl Fn() -> R) {
    append_fetch_and_size_limit(&open());
    overwrite_and_cut_conflicting_tail(&open());
    gaps_are_reported(&open());
    raft_state_and_region_ids(&open());
    gc_deletes_below(&open());
}

/// Entries `[low, high)` in `term`, each with a 10-byte payload.
pub fn entries(low: u64, high: u64, term: u64) -> Vec<Entry> {
    (low..high)
        .map(|index| {
            let mut e = Entry::default();
            e.index = index;
            e.term = term;
            e.data = vec![index as u8; 10].into();
            e
        })
        .collect()
}

fn append<R: RaftEngine>(r: &R, region_id: u64, ents: &[Entry]) {
    let mut b = r.log_batch(ents.len());
    b.append(region_id, ents).unwrap();
    assert!(!b.is_empty() && b.persist_size() > 0);
    r.consume(&mut b, true).unwrap();
    assert!(b.is_empty());
}

fn fetch<R: RaftEngine>(
    r: &R,
    rid: u64,
    low: u64,
    high: u64,
    max: Option<usize>,
) -> crate::Result<Vec<Entry>> {
    let mut buf = Vec::new();
    r.fetch_entries_to(rid, low, high, max, &mut buf).map(|_| buf)
}

fn append_fetch_and_size_limit<R: RaftEngine>(r: &R) {
    append(r, 1, &entries(5, 15, 1));
    append(r, 2, &entries(1, 3, 7));
    let got = fetch(r, 1, 5, 15, None).unwrap();
    assert_eq!(got, entries(5, 15, 1));
    assert_eq!(fetch(r, 1, 7, 9, None).unwrap(), entries(7, 9, 1));
    assert_eq!(r.get_entry(1, 9).unwrap(), Some(entries(9, 10, 1).remove(0)));
    assert_eq!(r.get_entry(1, 15).unwrap(), None);
    let one = got[0].compute_size_for_limit();
    let limited = fetch(r, 1, 5, 15, Some(one * 3)).unwrap();
    assert_eq!(limited.len(), 3, "size limit counts whole entries");
    assert_eq!(fetch(r, 1, 5, 15, Some(0)).unwrap().len(), 1, "at least one entry");
    assert_eq!(fetch(r, 2, 1, 3, None).unwrap(), entries(1, 3, 7), "regions do not mix");
    assert!(fetch(r, 1, 9, 9, None).unwrap().is_empty());
    let mut b = r.log_batch(0);
    let mut bad = entries(20, 22, 1);
    bad[1].index = 25;
    assert!(matches!(b.append(1, &bad), Err(Error::InvalidArgument(_))));
}

trait ForLimit {
    fn compute_size_for_limit(&self) -> usize;
}

impl ForLimit for Entry {
    fn compute_size_for_limit(&self) -> usize {
        use proto::Message;
        self.write_to_bytes().unwrap().len()
    }
}

fn overwrite_and_cut_conflicting_tail<R: RaftEngine>(r: &R) {
    append(r, 1, &entries(1, 11, 1));
    let mut b = r.log_batch(0);
    b.append(1, &entries(6, 8, 2)).unwrap();
    b.cut_logs(1, 8, 11).unwrap();
    r.consume(&mut b, false).unwrap();
    let mut want = entries(1, 6, 1);
    want.extend(entries(6, 8, 2));
    assert_eq!(fetch(r, 1, 1, 8, None).unwrap(), want);
    assert_eq!(r.get_entry(1, 8).unwrap(), None);
    assert!(matches!(fetch(r, 1, 1, 9, None), Err(Error::LogGap { expected: 8, found: None, .. })));
}

fn gaps_are_reported<R: RaftEngine>(r: &R) {
    append(r, 3, &entries(1, 4, 1));
    append(r, 3, &entries(5, 7, 1));
    let err = fetch(r, 3, 1, 7, None).unwrap_err();
    assert!(matches!(err, Error::LogGap { region_id: 3, expected: 4, found: Some(5) }), "{err:?}");
    assert!(r.check_log_range(3, 1, 4).is_ok());
    assert!(matches!(r.check_log_range(3, 1, 7), Err(Error::LogGap { .. })));
    assert!(matches!(r.check_log_range(3, 0, 2), Err(Error::LogGap { expected: 0, .. })));
}

fn raft_state_and_region_ids<R: RaftEngine>(r: &R) {
    assert_eq!(r.get_raft_state(9).unwrap(), None);
    assert!(r.region_ids().unwrap().is_empty());
    let mut b = r.log_batch(0);
    for rid in [9, 2, u64::MAX] {
        let mut s = RaftLocalState::default();
        s.last_index = rid % 100;
        s.mut_hard_state().term = 3;
        b.put_raft_state(rid, &s).unwrap();
    }
    b.append(2, &entries(1, 50, 1)).unwrap();
    b.append(4, &entries(1, 5, 1)).unwrap();
    r.consume(&mut b, true).unwrap();
    assert_eq!(r.get_raft_state(9).unwrap().unwrap().last_index, 9);
    assert_eq!(r.region_ids().unwrap(), vec![2, 9, u64::MAX], "logs without state are not regions");
    b.delete_raft_state(9).unwrap();
    r.consume(&mut b, false).unwrap();
    assert_eq!(r.region_ids().unwrap(), vec![2, u64::MAX]);
    r.sync().unwrap();
}

fn gc_deletes_below<R: RaftEngine>(r: &R) {
    append(r, 1, &entries(1, 21, 1));
    assert_eq!(r.gc(1, 0, 11).unwrap(), 10);
    assert_eq!(r.gc(1, 0, 11).unwrap(), 0, "gc is idempotent");
    assert_eq!(r.get_entry(1, 10).unwrap(), None);
    assert_eq!(fetch(r, 1, 11, 21, None).unwrap(), entries(11, 21, 1));
}
