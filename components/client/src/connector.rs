//! How a client reaches a store: by store id, per request, so that a store that restarts (or
//! one that was down when the client was made) is reached as soon as it runs again, and no
//! client keeps a stopped store's engines open.

use std::time::Duration;

use local_reader::region_snapshot::KvPairs;
use server::{local::LocalNodes, Context, Error, Modify, Result};

/// Requests to the store of a given id.
///
/// The client retries a write after `Error::Stopped` or `Error::Timeout`, so an
/// implementation answers those only when the request was **not sent** (no store to send
/// it to, the connection refused before sending); a write sent and not answered in time is
/// `Error::Undetermined`.
pub trait StoreConnector: Send + Sync {
    /// Writes `mods` through the store's peer named in `ctx`; waits at most `timeout`.
    fn write(&self, store_id: u64, ctx: &Context, mods: &[Modify], timeout: Duration)
        -> Result<()>;

    /// Reads `key` from the store's peer named in `ctx`; waits at most `timeout`.
    fn get(
        &self,
        store_id: u64,
        ctx: &Context,
        key: &[u8],
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>>;

    /// Scans `[start, end)` (an empty `end`: to the region's end) within the region of `ctx`
    /// on the store's peer named in it, at most `limit` pairs, in key order; with the
    /// region's end key, where the next region starts (empty: the last region).
    fn scan(
        &self,
        store_id: u64,
        ctx: &Context,
        range: (&[u8], &[u8]),
        limit: usize,
        timeout: Duration,
    ) -> Result<(KvPairs, Vec<u8>)>;
}

impl StoreConnector for LocalNodes {
    fn write(
        &self,
        store_id: u64,
        ctx: &Context,
        mods: &[Modify],
        timeout: Duration,
    ) -> Result<()> {
        self.get(store_id).ok_or(Error::Stopped)?.write(ctx, mods, timeout)
    }

    fn get(
        &self,
        store_id: u64,
        ctx: &Context,
        key: &[u8],
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>> {
        self.get(store_id).ok_or(Error::Stopped)?.get(ctx, key, timeout)
    }

    fn scan(
        &self,
        store_id: u64,
        ctx: &Context,
        (start, end): (&[u8], &[u8]),
        limit: usize,
        timeout: Duration,
    ) -> Result<(KvPairs, Vec<u8>)> {
        let snap = self.get(store_id).ok_or(Error::Stopped)?.snapshot(ctx, timeout)?;
        let pairs = snap.scan(start, end, limit).map_err(|e| Error::Request(e.into()))?;
        Ok((pairs, snap.region().end_key.clone()))
    }
}
