//! The kv engine on RocksDB.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use rocksdb::{Cache, ColumnFamily, ReadOptions, SnapshotWithThreadMode, DB};

use super::{map_err, open_db, write_options, RocksConfig, RocksIterator};
use crate::{
    Error, IterOptions, Iterable, KvEngine, Mutable, Peekable, Result, Snapshot, WriteBatch,
    WriteOptions, KV_CFS,
};

/// The kv engine: user data and region meta in one RocksDB instance.
#[derive(Clone)]
pub struct RocksEngine {
    db: Arc<DB>,
    path: Arc<PathBuf>,
}

impl fmt::Debug for RocksEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksEngine").field("path", &self.path).finish()
    }
}

impl RocksEngine {
    /// Opens (creating if needed) a kv engine at `path` with its own block cache.
    pub fn open(path: &Path, cfg: &RocksConfig) -> Result<Self> {
        cfg.validate()?;
        Self::open_with_cache(path, cfg, &Cache::new_lru_cache(cfg.block_cache_size))
    }

    pub(crate) fn open_with_cache(path: &Path, cfg: &RocksConfig, cache: &Cache) -> Result<Self> {
        let db = open_db(path, KV_CFS, cfg, cache)?;
        Ok(RocksEngine { db: Arc::new(db), path: Arc::new(path.to_path_buf()) })
    }

    /// Direct access to RocksDB, for tools and benchmarks.
    pub fn as_inner(&self) -> &DB {
        &self.db
    }
}

fn cf_handle<'a>(db: &'a DB, cf: &str) -> Result<&'a ColumnFamily> {
    db.cf_handle(cf).ok_or_else(|| Error::CfNotFound(cf.to_string()))
}

fn read_options(opts: &IterOptions) -> ReadOptions {
    let mut ro = ReadOptions::default();
    if let Some(lower) = &opts.lower_bound {
        ro.set_iterate_lower_bound(lower.clone());
    }
    if let Some(upper) = &opts.upper_bound {
        ro.set_iterate_upper_bound(upper.clone());
    }
    ro.fill_cache(opts.fill_cache);
    ro
}

impl Peekable for RocksEngine {
    fn get_value_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let handle = cf_handle(&self.db, cf)?;
        self.db.get_cf(handle, key).map_err(map_err)
    }
}

impl Iterable for RocksEngine {
    type Iterator = RocksIterator;

    fn iterator_opt(&self, cf: &str, opts: IterOptions) -> Result<RocksIterator> {
        let handle = cf_handle(&self.db, cf)?;
        let iter = self.db.raw_iterator_cf_opt(handle, read_options(&opts));
        // SAFETY: the iterator borrows `self.db`, which the Arc passed as owner keeps alive.
        Ok(unsafe { RocksIterator::new(iter, self.db.clone()) })
    }
}

impl KvEngine for RocksEngine {
    type Snapshot = RocksSnapshot;
    type WriteBatch = RocksWriteBatch;

    fn snapshot(&self) -> RocksSnapshot {
        let snap = self.db.snapshot();
        // SAFETY: the snapshot borrows `self.db`; `SnapInner` holds an Arc of it and drops the
        // snapshot first (field order).
        let snap = unsafe {
            std::mem::transmute::<SnapshotWithThreadMode<'_, DB>, SnapshotWithThreadMode<'static, DB>>(
                snap,
            )
        };
        RocksSnapshot(Arc::new(SnapInner { snap, db: self.db.clone() }))
    }

    fn write_batch(&self) -> RocksWriteBatch {
        RocksWriteBatch {
            db: self.db.clone(),
            wb: rocksdb::WriteBatch::default(),
            save_points: Vec::new(),
        }
    }

    fn write(&self, wb: &mut RocksWriteBatch, opts: WriteOptions) -> Result<()> {
        let batch = std::mem::take(&mut wb.wb);
        wb.save_points.clear();
        self.db.write_opt(batch, &write_options(opts.sync)).map_err(map_err)
    }

    fn flush(&self, wait: bool) -> Result<()> {
        let mut fo = rocksdb::FlushOptions::default();
        fo.set_wait(wait);
        for cf in KV_CFS {
            let handle = cf_handle(&self.db, cf)?;
            self.db.flush_cf_opt(handle, &fo).map_err(map_err)?;
        }
        Ok(())
    }

    fn sync_wal(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(map_err)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

struct SnapInner {
    // Declared before `db`, so it is dropped first.
    snap: SnapshotWithThreadMode<'static, DB>,
    db: Arc<DB>,
}

/// A point-in-time view of a [`RocksEngine`]; clones share one RocksDB snapshot.
#[derive(Clone)]
pub struct RocksSnapshot(Arc<SnapInner>);

impl fmt::Debug for RocksSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RocksSnapshot")
    }
}

impl Peekable for RocksSnapshot {
    fn get_value_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let handle = cf_handle(&self.0.db, cf)?;
        self.0.snap.get_cf(handle, key).map_err(map_err)
    }
}

impl Iterable for RocksSnapshot {
    type Iterator = RocksIterator;

    fn iterator_opt(&self, cf: &str, opts: IterOptions) -> Result<RocksIterator> {
        let handle = cf_handle(&self.0.db, cf)?;
        let iter = self.0.snap.raw_iterator_cf_opt(handle, read_options(&opts));
        // SAFETY: the iterator borrows the snapshot and the db; the Arc passed as owner keeps
        // both alive.
        Ok(unsafe { RocksIterator::new(iter, self.0.clone()) })
    }
}

impl Snapshot for RocksSnapshot {}

/// A write batch for a [`RocksEngine`].
pub struct RocksWriteBatch {
    db: Arc<DB>,
    wb: rocksdb::WriteBatch,
    /// (encoded length, operation count) at each save point, latest last.
    save_points: Vec<(usize, u32)>,
}

/// Bytes before the first record of an encoded RocksDB write batch: an 8-byte sequence number,
/// then the 4-byte little-endian count of operations.
const WRITE_BATCH_HEADER: usize = 12;

impl Mutable for RocksWriteBatch {
    fn put_cf(&mut self, cf: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let handle = cf_handle(&self.db, cf)?;
        self.wb.put_cf(handle, key, value);
        Ok(())
    }

    fn delete_cf(&mut self, cf: &str, key: &[u8]) -> Result<()> {
        let handle = cf_handle(&self.db, cf)?;
        self.wb.delete_cf(handle, key);
        Ok(())
    }

    fn delete_range_cf(&mut self, cf: &str, start: &[u8], end: &[u8]) -> Result<()> {
        if start > end {
            return Err(Error::InvalidArgument(format!(
                "delete_range: start {} > end {}",
                crate::keys::escape(start),
                crate::keys::escape(end)
            )));
        }
        let handle = cf_handle(&self.db, cf)?;
        self.wb.delete_range_cf(handle, start, end);
        Ok(())
    }
}

impl WriteBatch for RocksWriteBatch {
    fn count(&self) -> usize {
        self.wb.len()
    }

    fn data_size(&self) -> usize {
        self.wb.size_in_bytes()
    }

    fn clear(&mut self) {
        self.wb.clear();
        self.save_points.clear();
    }

    fn set_save_point(&mut self) {
        self.save_points.push((self.wb.data().len(), self.wb.len() as u32));
    }

    /// rust-rocksdb does not expose RocksDB's own save points, so this does what
    /// `WriteBatch::RollbackToSavePoint` does to the encoded batch: cut the records after the
    /// save point and put the count back in the header. It copies the batch, which is fine on
    /// the failure path it serves.
    fn rollback_to_save_point(&mut self) -> Result<()> {
        let (len, count) = self.save_points.pop().ok_or_else(no_save_point)?;
        let data = self.wb.data();
        if len == data.len() {
            return Ok(()); // nothing was added since
        }
        if len < WRITE_BATCH_HEADER || len > data.len() {
            return Err(Error::InvalidArgument("write batch shorter than its save point".into()));
        }
        let mut kept = data[..len].to_vec();
        kept[8..WRITE_BATCH_HEADER].copy_from_slice(&count.to_le_bytes());
        self.wb = rocksdb::WriteBatch::from_data(&kept);
        Ok(())
    }

    fn pop_save_point(&mut self) -> Result<()> {
        self.save_points.pop().map(drop).ok_or_else(no_save_point)
    }
}

fn no_save_point() -> Error {
    Error::InvalidArgument("no save point is set in the write batch".into())
}
