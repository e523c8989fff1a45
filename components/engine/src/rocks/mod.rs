//! RocksDB implementations of the engine traits.
//!
//! A store opens two RocksDB instances: the kv engine ([`RocksEngine`], column families
//! [`crate::CF_DEFAULT`] for user data and [`crate::CF_META`] for region meta) and the raft
//! engine ([`RocksRaftEngine`], raft logs and raft states). Both share one block cache when
//! opened through [`open_engines`].

mod iter;
mod kv;
mod raft;

use std::path::Path;

use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, Options, DB};

pub use self::{
    iter::RocksIterator,
    kv::{RocksEngine, RocksSnapshot, RocksWriteBatch},
    raft::{RocksRaftEngine, RocksRaftLogBatch},
};
use crate::{Error, Result};

/// Tuning of the RocksDB instances (section `[rocksdb]` of a TOML file; every field
/// optional, sizes in bytes, unknown keys refused).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RocksConfig {
    /// Bytes of the LRU block cache shared by both instances.
    pub block_cache_size: usize,
    /// Bytes of one memtable.
    pub write_buffer_size: usize,
    /// Memtables per column family before writes stall.
    pub max_write_buffer_number: i32,
    /// Bits per key of the bloom filters; 0 turns them off.
    pub bloom_bits_per_key: f64,
    /// Background flush and compaction threads.
    pub max_background_jobs: i32,
    /// Compress SST files with LZ4.
    pub compression: bool,
}

impl Default for RocksConfig {
    fn default() -> Self {
        RocksConfig {
            block_cache_size: 128 << 20,
            write_buffer_size: 64 << 20,
            max_write_buffer_number: 4,
            bloom_bits_per_key: 10.0,
            max_background_jobs: 2,
            compression: true,
        }
    }
}

impl RocksConfig {
    /// A small footprint for tests and simulations that open many engines at once.
    pub fn small() -> Self {
        RocksConfig {
            block_cache_size: 8 << 20,
            write_buffer_size: 4 << 20,
            max_write_buffer_number: 2,
            max_background_jobs: 1,
            ..Default::default()
        }
    }

    /// Checks that every value is usable.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::InvalidArgument(format!("rocksdb config: {what}")));
        if self.write_buffer_size < 64 << 10 {
            return bad("write_buffer_size must be at least 64 KiB");
        }
        if self.max_write_buffer_number < 2 {
            return bad("max_write_buffer_number must be at least 2");
        }
        if !(0.0..=64.0).contains(&self.bloom_bits_per_key) {
            return bad("bloom_bits_per_key must be within 0..=64");
        }
        if self.max_background_jobs < 1 {
            return bad("max_background_jobs must be at least 1");
        }
        Ok(())
    }

    fn db_options(&self) -> Options {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(self.max_background_jobs);
        opts.set_keep_log_file_num(4);
        opts
    }

    fn cf_options(&self, cache: &Cache) -> Options {
        let mut block = BlockBasedOptions::default();
        block.set_block_cache(cache);
        block.set_cache_index_and_filter_blocks(true);
        if self.bloom_bits_per_key > 0.0 {
            block.set_bloom_filter(self.bloom_bits_per_key, false);
        }
        let mut opts = Options::default();
        opts.set_block_based_table_factory(&block);
        opts.set_write_buffer_size(self.write_buffer_size);
        opts.set_max_write_buffer_number(self.max_write_buffer_number);
        let compression =
            if self.compression { DBCompressionType::Lz4 } else { DBCompressionType::None };
        opts.set_compression_type(compression);
        opts
    }
}

/// Opens (creating if needed) the kv engine under `dir/kv` and the raft engine under
/// `dir/raft`, sharing one block cache.
pub fn open_engines(dir: &Path, cfg: &RocksConfig) -> Result<(RocksEngine, RocksRaftEngine)> {
    cfg.validate()?;
    let cache = Cache::new_lru_cache(cfg.block_cache_size);
    let kv = RocksEngine::open_with_cache(&dir.join("kv"), cfg, &cache)?;
    let raft = RocksRaftEngine::open_with_cache(&dir.join("raft"), cfg, &cache)?;
    Ok((kv, raft))
}

fn open_db(path: &Path, cfs: &[&str], cfg: &RocksConfig, cache: &Cache) -> Result<DB> {
    if path.exists() && !path.is_dir() {
        return Err(Error::BadPath {
            path: path.to_path_buf(),
            detail: "exists and is not a directory".into(),
        });
    }
    let descriptors =
        cfs.iter().map(|name| ColumnFamilyDescriptor::new(*name, cfg.cf_options(cache)));
    DB::open_cf_descriptors(&cfg.db_options(), path, descriptors).map_err(|e| match e.kind() {
        rocksdb::ErrorKind::Corruption => Error::Corruption {
            what: format!("rocksdb files under {}", path.display()),
            detail: e.into_string(),
        },
        _ => Error::BadPath { path: path.to_path_buf(), detail: e.into_string() },
    })
}

/// Maps a RocksDB error to an engine error.
pub(crate) fn map_err(e: rocksdb::Error) -> Error {
    use rocksdb::ErrorKind::*;
    match e.kind() {
        Corruption => Error::Corruption { what: "rocksdb".into(), detail: e.into_string() },
        Busy | TimedOut | TryAgain | Incomplete => Error::Busy(e.into_string()),
        InvalidArgument => Error::InvalidArgument(e.into_string()),
        _ => Error::Engine(e.into_string()),
    }
}

fn write_options(sync: bool) -> rocksdb::WriteOptions {
    let mut wo = rocksdb::WriteOptions::default();
    wo.set_sync(sync);
    wo
}
