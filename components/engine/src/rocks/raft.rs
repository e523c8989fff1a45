//! The raft engine on RocksDB: raft logs and raft states, keyed as `crate::keys` says.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use proto::{eraftpb::Entry, raft_serverpb::RaftLocalState, Message};
use rocksdb::{Cache, ReadOptions, DB};

use super::{map_err, open_db, write_options, RocksConfig};
use crate::{keys, Error, RaftEngine, RaftLogBatch, Result, CF_DEFAULT};

/// Longest run of log entries deleted key by key rather than as one range.
const POINT_DELETE_MAX: u64 = 1024;

/// Raft logs and raft states of every region of a store.
#[derive(Clone)]
pub struct RocksRaftEngine {
    db: Arc<DB>,
    path: Arc<PathBuf>,
}

impl fmt::Debug for RocksRaftEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksRaftEngine").field("path", &self.path).finish()
    }
}

impl RocksRaftEngine {
    /// Opens (creating if needed) a raft engine at `path` with its own block cache.
    pub fn open(path: &Path, cfg: &RocksConfig) -> Result<Self> {
        cfg.validate()?;
        Self::open_with_cache(path, cfg, &Cache::new_lru_cache(cfg.block_cache_size))
    }

    pub(crate) fn open_with_cache(path: &Path, cfg: &RocksConfig, cache: &Cache) -> Result<Self> {
        let db = open_db(path, &[CF_DEFAULT], cfg, cache)?;
        Ok(RocksRaftEngine { db: Arc::new(db), path: Arc::new(path.to_path_buf()) })
    }

    /// The directory the engine lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A raw iterator over the log keys `[low, high)` of a region, not filling the cache.
    fn log_iter(&self, region_id: u64, low: u64, high: u64) -> rocksdb::DBRawIterator<'_> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(keys::raft_log_key(region_id, low).to_vec());
        ro.set_iterate_upper_bound(keys::raft_log_key(region_id, high).to_vec());
        ro.fill_cache(false);
        let mut it = self.db.raw_iterator_opt(ro);
        it.seek_to_first();
        it
    }

    /// Walks the log keys `[low, high)`, checking that indexes are contiguous, and calls `f`
    /// with each index and value until it returns `false`. Returns whether the walk stopped
    /// early; a hole (or a missing tail when not stopped) is `LogGap`.
    fn walk_log(
        &self,
        region_id: u64,
        low: u64,
        high: u64,
        mut f: impl FnMut(u64, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let mut it = self.log_iter(region_id, low, high);
        let mut expected = low;
        while it.valid() {
            let key = it.key().unwrap_or_default();
            let index = match keys::decode_raft_log_key(key) {
                Some((rid, index)) if rid == region_id => index,
                _ => return Err(Error::corrupted_value(key, "not a raft log key of this region")),
            };
            if index != expected {
                return Err(Error::LogGap { region_id, expected, found: Some(index) });
            }
            if !f(index, it.value().unwrap_or_default())? {
                return Ok(());
            }
            expected += 1;
            it.next();
        }
        it.status().map_err(map_err)?;
        if expected < high {
            return Err(Error::LogGap { region_id, expected, found: None });
        }
        Ok(())
    }
}

impl RaftEngine for RocksRaftEngine {
    type LogBatch = RocksRaftLogBatch;

    fn log_batch(&self, _capacity: usize) -> RocksRaftLogBatch {
        RocksRaftLogBatch::default()
    }

    fn consume(&self, batch: &mut RocksRaftLogBatch, sync: bool) -> Result<usize> {
        let size = batch.wb.size_in_bytes();
        let wb = std::mem::take(&mut batch.wb);
        self.db.write_opt(wb, &write_options(sync)).map_err(map_err)?;
        Ok(size)
    }

    fn get_raft_state(&self, region_id: u64) -> Result<Option<RaftLocalState>> {
        let key = keys::raft_state_key(region_id);
        match self.db.get(key).map_err(map_err)? {
            None => Ok(None),
            Some(v) => RaftLocalState::parse_from_bytes(&v)
                .map(Some)
                .map_err(|e| Error::corrupted_value(&key, e)),
        }
    }

    fn get_entry(&self, region_id: u64, index: u64) -> Result<Option<Entry>> {
        let key = keys::raft_log_key(region_id, index);
        match self.db.get(key).map_err(map_err)? {
            None => Ok(None),
            Some(v) => decode_entry(&key, &v, index).map(Some),
        }
    }

    fn fetch_entries_to(
        &self,
        region_id: u64,
        low: u64,
        high: u64,
        max_size: Option<usize>,
        buf: &mut Vec<Entry>,
    ) -> Result<usize> {
        if low >= high {
            return Ok(0);
        }
        let (mut total, mut count) = (0usize, 0usize);
        self.walk_log(region_id, low, high, |index, value| {
            if let Some(max) = max_size {
                if count > 0 && total + value.len() > max {
                    return Ok(false);
                }
            }
            let key = keys::raft_log_key(region_id, index);
            buf.push(decode_entry(&key, value, index)?);
            total += value.len();
            count += 1;
            Ok(true)
        })?;
        Ok(total)
    }

    fn check_log_range(&self, region_id: u64, low: u64, high: u64) -> Result<()> {
        if low >= high {
            return Ok(());
        }
        self.walk_log(region_id, low, high, |_, _| Ok(true))
    }

    fn gc(&self, region_id: u64, from: u64, to: u64) -> Result<usize> {
        if from >= to {
            return Ok(0);
        }
        let mut it = self.log_iter(region_id, from, to);
        let mut wb = rocksdb::WriteBatch::default();
        let mut count = 0;
        while let Some(key) = it.key() {
            // Point deletes: a range tombstone in the memtable makes every later read and
            // iterator of the raft engine build a tombstone list, and log GC runs often.
            wb.delete(key);
            count += 1;
            it.next();
        }
        it.status().map_err(map_err)?;
        if count > 0 {
            self.db.write_opt(wb, &write_options(false)).map_err(map_err)?;
        }
        Ok(count)
    }

    fn region_ids(&self) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        let mut it = self.db.raw_iterator();
        let mut next = 0u64;
        loop {
            it.seek(&keys::raft_log_prefix(next)[..10]);
            let Some(key) = it.key() else { break };
            if key.len() < 10 || key[..2] != keys::raft_log_prefix(0)[..2] {
                break;
            }
            let rid = u64::from_be_bytes(key[2..10].try_into().expect("8 bytes"));
            if self.db.get(keys::raft_state_key(rid)).map_err(map_err)?.is_some() {
                ids.push(rid);
            }
            match rid.checked_add(1) {
                Some(n) => next = n,
                None => break,
            }
        }
        it.status().map_err(map_err)?;
        Ok(ids)
    }

    fn sync(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(map_err)
    }
}

fn decode_entry(key: &[u8], value: &[u8], index: u64) -> Result<Entry> {
    let entry = Entry::parse_from_bytes(value).map_err(|e| Error::corrupted_value(key, e))?;
    if entry.index != index {
        return Err(Error::corrupted_value(
            key,
            format!("entry index {} stored under index {index}", entry.index),
        ));
    }
    Ok(entry)
}

/// A batch of raft log changes for a [`RocksRaftEngine`].
#[derive(Default)]
pub struct RocksRaftLogBatch {
    wb: rocksdb::WriteBatch,
}

impl RaftLogBatch for RocksRaftLogBatch {
    fn append(&mut self, region_id: u64, entries: &[Entry]) -> Result<()> {
        for (i, e) in entries.iter().enumerate() {
            if i > 0 && e.index != entries[i - 1].index + 1 {
                return Err(Error::InvalidArgument(format!(
                    "append to region {region_id}: index {} follows {}",
                    e.index,
                    entries[i - 1].index
                )));
            }
        }
        for e in entries {
            let bytes = e
                .write_to_bytes()
                .map_err(|err| Error::InvalidArgument(format!("encode entry: {err}")))?;
            self.wb.put(keys::raft_log_key(region_id, e.index), bytes);
        }
        Ok(())
    }

    fn cut_logs(&mut self, region_id: u64, from: u64, to: u64) -> Result<()> {
        // A short tail (the usual conflict) as point deletes, so that no range tombstone
        // slows the engine's reads (see `gc`); a long one as one range.
        if to.saturating_sub(from) <= POINT_DELETE_MAX {
            for index in from..to {
                self.wb.delete(keys::raft_log_key(region_id, index));
            }
        } else if from < to {
            self.wb.delete_range(
                keys::raft_log_key(region_id, from),
                keys::raft_log_key(region_id, to),
            );
        }
        Ok(())
    }

    fn put_raft_state(&mut self, region_id: u64, state: &RaftLocalState) -> Result<()> {
        let bytes = state
            .write_to_bytes()
            .map_err(|err| Error::InvalidArgument(format!("encode raft state: {err}")))?;
        self.wb.put(keys::raft_state_key(region_id), bytes);
        Ok(())
    }

    fn delete_raft_state(&mut self, region_id: u64) -> Result<()> {
        self.wb.delete(keys::raft_state_key(region_id));
        Ok(())
    }

    fn persist_size(&self) -> usize {
        self.wb.size_in_bytes()
    }

    fn is_empty(&self) -> bool {
        self.wb.is_empty()
    }
}
