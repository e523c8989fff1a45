//! An owned RocksDB iterator.

use std::sync::Arc;

use rocksdb::{DBRawIteratorWithThreadMode, DB};

use super::map_err;
use crate::{EngineIterator, Result};

/// A RocksDB iterator that owns what it reads from (the database, or a snapshot), so it can be
/// stored and sent between threads without a borrow.
pub struct RocksIterator {
    // Declared before `_owner`, so it is dropped first: the raw iterator borrows from it.
    iter: DBRawIteratorWithThreadMode<'static, DB>,
    _owner: Arc<dyn Send + Sync>,
}

impl RocksIterator {
    /// # Safety
    /// `iter` must borrow only from data that `owner` keeps alive.
    pub(crate) unsafe fn new(
        iter: DBRawIteratorWithThreadMode<'_, DB>,
        owner: Arc<dyn Send + Sync>,
    ) -> Self {
        // SAFETY: the caller guarantees that `owner` keeps the borrowed data alive, and the
        // field order drops `iter` before `owner`.
        let iter = unsafe {
            std::mem::transmute::<
                DBRawIteratorWithThreadMode<'_, DB>,
                DBRawIteratorWithThreadMode<'static, DB>,
            >(iter)
        };
        RocksIterator { iter, _owner: owner }
    }
}

impl EngineIterator for RocksIterator {
    fn seek(&mut self, key: &[u8]) -> Result<bool> {
        self.iter.seek(key);
        self.valid()
    }

    fn seek_for_prev(&mut self, key: &[u8]) -> Result<bool> {
        self.iter.seek_for_prev(key);
        self.valid()
    }

    fn seek_to_first(&mut self) -> Result<bool> {
        self.iter.seek_to_first();
        self.valid()
    }

    fn seek_to_last(&mut self) -> Result<bool> {
        self.iter.seek_to_last();
        self.valid()
    }

    fn next(&mut self) -> Result<bool> {
        self.iter.next();
        self.valid()
    }

    fn prev(&mut self) -> Result<bool> {
        self.iter.prev();
        self.valid()
    }

    fn valid(&self) -> Result<bool> {
        if self.iter.valid() {
            return Ok(true);
        }
        self.iter.status().map_err(map_err)?;
        Ok(false)
    }

    fn key(&self) -> &[u8] {
        self.iter.key().expect("key() on an invalid iterator")
    }

    fn value(&self) -> &[u8] {
        self.iter.value().expect("value() on an invalid iterator")
    }
}
