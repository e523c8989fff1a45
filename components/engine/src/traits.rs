//! The storage traits. Implementations must pass [`crate::conformance`].

use std::fmt::Debug;

use proto::{eraftpb::Entry, raft_serverpb::RaftLocalState, Message};

use crate::{Error, Result};

/// Options of an iterator.
#[derive(Clone, Debug, Default)]
pub struct IterOptions {
    /// Inclusive lower bound: the iterator never yields a smaller key.
    pub lower_bound: Option<Vec<u8>>,
    /// Exclusive upper bound: the iterator never yields this key or a larger one.
    pub upper_bound: Option<Vec<u8>>,
    /// Whether blocks read by this iterator may enter the block cache. Scans that touch a
    /// region once (split checks, snapshot generation) should say no.
    pub fill_cache: bool,
}

impl IterOptions {
    /// Bounded to `[lower, upper)`, filling the cache.
    pub fn range(lower: &[u8], upper: &[u8]) -> Self {
        IterOptions {
            lower_bound: Some(lower.to_vec()),
            upper_bound: Some(upper.to_vec()),
            fill_cache: true,
        }
    }
}

/// A cursor over the keys of one column family, in byte-wise order, within the bounds it was
/// created with.
///
/// Every positioning method returns whether the iterator is now on a key. An `Err` means the
/// backend failed (for example a corrupted block); the iterator is then invalid.
pub trait EngineIterator: Send {
    /// Moves to the first key `>= key`.
    fn seek(&mut self, key: &[u8]) -> Result<bool>;
    /// Moves to the last key `<= key`.
    fn seek_for_prev(&mut self, key: &[u8]) -> Result<bool>;
    /// Moves to the first key within the bounds.
    fn seek_to_first(&mut self) -> Result<bool>;
    /// Moves to the last key within the bounds.
    fn seek_to_last(&mut self) -> Result<bool>;
    /// Moves to the next key. Must only be called while valid.
    fn next(&mut self) -> Result<bool>;
    /// Moves to the previous key. Must only be called while valid.
    fn prev(&mut self) -> Result<bool>;
    /// Whether the iterator is on a key; `Err` if the backend reported a failure.
    fn valid(&self) -> Result<bool>;
    /// The current key. Panics if the iterator is not valid.
    fn key(&self) -> &[u8];
    /// The current value. Panics if the iterator is not valid.
    fn value(&self) -> &[u8];
}

/// Point reads.
pub trait Peekable {
    /// The value of `key` in column family `cf`, or `None` if absent.
    /// Errors: `CfNotFound` for an unknown `cf`; backend failures.
    fn get_value_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// [`Peekable::get_value_cf`] on the default column family.
    fn get_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_value_cf(crate::CF_DEFAULT, key)
    }

    /// Reads and decodes a protobuf message. A value that does not decode is
    /// [`Error::Corruption`], never a panic.
    fn get_msg_cf<M: Message>(&self, cf: &str, key: &[u8]) -> Result<Option<M>> {
        match self.get_value_cf(cf, key)? {
            None => Ok(None),
            Some(v) => {
                M::parse_from_bytes(&v).map(Some).map_err(|e| Error::corrupted_value(key, e))
            }
        }
    }
}

/// Range reads.
pub trait Iterable {
    /// The iterator type.
    type Iterator: EngineIterator;

    /// An iterator over `cf` within `opts`' bounds. The iterator reads a consistent view: for a
    /// snapshot, the snapshot's; for an engine, the state when it was created.
    fn iterator_opt(&self, cf: &str, opts: IterOptions) -> Result<Self::Iterator>;

    /// Calls `f` on every pair in `[start, end)` of `cf`, in order, until `f` returns
    /// `Ok(false)` or an error (which is returned).
    fn scan<F>(&self, cf: &str, start: &[u8], end: &[u8], fill_cache: bool, mut f: F) -> Result<()>
    where
        F: FnMut(&[u8], &[u8]) -> Result<bool>,
    {
        let mut opts = IterOptions::range(start, end);
        opts.fill_cache = fill_cache;
        let mut it = self.iterator_opt(cf, opts)?;
        let mut valid = it.seek_to_first()?;
        while valid {
            if !f(it.key(), it.value())? {
                break;
            }
            valid = it.next()?;
        }
        Ok(())
    }

    /// Exact size (key + value bytes) and key count of `[start, end)` in `cf`, by a scan that
    /// stops as soon as both reach `limit` (then the result is a lower bound with
    /// `truncated` set). The scan does not fill the block cache.
    fn range_stats(
        &self,
        cf: &str,
        start: &[u8],
        end: &[u8],
        limit: RangeStats,
    ) -> Result<RangeStats> {
        let mut stats = RangeStats::default();
        self.scan(cf, start, end, false, |k, v| {
            stats.size += (k.len() + v.len()) as u64;
            stats.keys += 1;
            stats.truncated = stats.size >= limit.size && stats.keys >= limit.keys;
            Ok(!stats.truncated)
        })?;
        Ok(stats)
    }
}

/// Size and key count of a key range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RangeStats {
    /// Bytes of keys and values.
    pub size: u64,
    /// Number of keys.
    pub keys: u64,
    /// The scan stopped early at its limit: the numbers are lower bounds.
    pub truncated: bool,
}

impl RangeStats {
    /// No limit.
    pub const UNLIMITED: RangeStats =
        RangeStats { size: u64::MAX, keys: u64::MAX, truncated: false };
}

/// A consistent point-in-time view of a kv engine. Cheap to clone (clones share one backend
/// snapshot) and safe to send to and share between threads. It keeps the data it sees alive
/// for as long as any clone exists, so hold it only as long as a read needs.
pub trait Snapshot: Peekable + Iterable + Clone + Send + Sync + Debug + 'static {}

/// Writes that a write batch collects. Unknown column families are reported at once as
/// `CfNotFound`; nothing is applied until the batch is written.
pub trait Mutable {
    /// Sets `key` to `value` in `cf`.
    fn put_cf(&mut self, cf: &str, key: &[u8], value: &[u8]) -> Result<()>;
    /// Removes `key` from `cf` (a no-op if absent).
    fn delete_cf(&mut self, cf: &str, key: &[u8]) -> Result<()>;
    /// Removes every key in `[start, end)` of `cf`. `start > end` is `InvalidArgument`.
    fn delete_range_cf(&mut self, cf: &str, start: &[u8], end: &[u8]) -> Result<()>;

    /// [`Mutable::put_cf`] on the default column family.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.put_cf(crate::CF_DEFAULT, key, value)
    }
    /// [`Mutable::delete_cf`] on the default column family.
    fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.delete_cf(crate::CF_DEFAULT, key)
    }
    /// Encodes `msg` and puts it.
    fn put_msg_cf<M: Message>(&mut self, cf: &str, key: &[u8], msg: &M) -> Result<()> {
        let bytes = msg
            .write_to_bytes()
            .map_err(|e| Error::InvalidArgument(format!("encode message: {e}")))?;
        self.put_cf(cf, key, &bytes)
    }
}

/// An atomic batch of writes: written all together or not at all.
pub trait WriteBatch: Mutable + Send {
    /// Number of operations in the batch.
    fn count(&self) -> usize;
    /// Approximate encoded size of the batch in bytes.
    fn data_size(&self) -> usize;
    /// Whether the batch holds no operation.
    fn is_empty(&self) -> bool {
        self.count() == 0
    }
    /// Drops every operation (and every save point).
    fn clear(&mut self);
    /// Marks the batch's current end. Save points nest: each rollback or pop ends the latest.
    fn set_save_point(&mut self);
    /// Drops every operation added since the latest save point, and that save point, so a
    /// command that fails half way leaves nothing of itself in a shared batch. Errors if no
    /// save point is set.
    fn rollback_to_save_point(&mut self) -> Result<()>;
    /// Forgets the latest save point and keeps what was added since. Errors if none is set.
    fn pop_save_point(&mut self) -> Result<()>;
}

/// Options of a write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Sync the write-ahead log before returning: the write survives a machine crash, not
    /// only a process crash.
    pub sync: bool,
}

impl WriteOptions {
    /// A synced write.
    pub const SYNC: WriteOptions = WriteOptions { sync: true };
    /// A write that survives a process crash but maybe not a machine crash.
    pub const NO_SYNC: WriteOptions = WriteOptions { sync: false };
}

/// The engine that holds user data and the region meta that must change atomically with it
/// (apply state, region state, store ident).
pub trait KvEngine: Peekable + Iterable + Clone + Send + Sync + Debug + 'static {
    /// Snapshot type.
    type Snapshot: Snapshot;
    /// Write batch type.
    type WriteBatch: WriteBatch;

    /// A point-in-time view of every column family. Writes that returned before this call are
    /// visible in it; writes that start after it are not.
    fn snapshot(&self) -> Self::Snapshot;

    /// An empty write batch for this engine.
    fn write_batch(&self) -> Self::WriteBatch;

    /// Applies `wb` atomically and leaves it empty, ready for reuse, whether or not the write
    /// succeeded. On `Err` nothing of the batch was applied.
    fn write(&self, wb: &mut Self::WriteBatch, opts: WriteOptions) -> Result<()>;

    /// Flushes memtables of every column family to files; waits for the flush if `wait`.
    fn flush(&self, wait: bool) -> Result<()>;

    /// Syncs the write-ahead log, making every write so far durable.
    fn sync_wal(&self) -> Result<()>;

    /// The directory the engine lives in.
    fn path(&self) -> &std::path::Path;
}

/// A batch of raft log changes, written atomically by [`RaftEngine::consume`].
pub trait RaftLogBatch: Send {
    /// Adds `entries` (contiguous, ascending indexes) of a region to the batch, overwriting
    /// any entries already stored at those indexes.
    fn append(&mut self, region_id: u64, entries: &[Entry]) -> Result<()>;

    /// Deletes the entries with index in `[from, to)`, for example a conflicting tail that a
    /// new leader overwrote, or entries log GC compacted away. Absent entries are no error.
    fn cut_logs(&mut self, region_id: u64, from: u64, to: u64) -> Result<()>;

    /// Stores a region's raft state.
    fn put_raft_state(&mut self, region_id: u64, state: &RaftLocalState) -> Result<()>;

    /// Removes a region's raft state.
    fn delete_raft_state(&mut self, region_id: u64) -> Result<()>;

    /// Approximate bytes the batch will write.
    fn persist_size(&self) -> usize;

    /// Whether the batch holds nothing.
    fn is_empty(&self) -> bool;
}

/// The engine that holds raft logs and raft states of every region on a store.
pub trait RaftEngine: Clone + Send + Sync + Debug + 'static {
    /// Batch type.
    type LogBatch: RaftLogBatch;

    /// An empty batch.
    fn log_batch(&self, capacity: usize) -> Self::LogBatch;

    /// Writes `batch` atomically, syncing the log before returning if `sync`, and leaves it
    /// empty whether or not the write succeeded (on `Err` nothing was written). Returns the
    /// bytes written.
    fn consume(&self, batch: &mut Self::LogBatch, sync: bool) -> Result<usize>;

    /// A region's raft state, or `None` if it has none.
    fn get_raft_state(&self, region_id: u64) -> Result<Option<RaftLocalState>>;

    /// The entry at `index`, or `None` if absent.
    fn get_entry(&self, region_id: u64, index: u64) -> Result<Option<Entry>>;

    /// Appends the entries `[low, high)` of a region to `buf`, stopping early once their total
    /// size would exceed `max_size` (at least one entry is always returned). Returns the
    /// number of bytes fetched.
    ///
    /// Errors: `LogGap` if an entry in the range is missing: the caller asked for a range it
    /// believes is stored, so a hole is damage, not a miss.
    fn fetch_entries_to(
        &self,
        region_id: u64,
        low: u64,
        high: u64,
        max_size: Option<usize>,
        buf: &mut Vec<Entry>,
    ) -> Result<usize>;

    /// Checks that every entry in `[low, high)` is present, reading keys only.
    fn check_log_range(&self, region_id: u64, low: u64, high: u64) -> Result<()>;

    /// Deletes the entries `[from, to)` of a region (log GC); returns how many existed.
    fn gc(&self, region_id: u64, from: u64, to: u64) -> Result<usize>;

    /// Regions that have a raft state, in id order.
    fn region_ids(&self) -> Result<Vec<u64>>;

    /// Syncs everything written so far.
    fn sync(&self) -> Result<()>;
}
