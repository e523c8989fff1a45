//! The split-check worker: scans a region the leader thinks has grown, and asks the leader
//! to split it at keys about `split_size` bytes (or `split_keys` keys) apart.
//!
//! The scan is bounded: it reads a region of at most `max_size` plus what was written since
//! the last check, stops once it has `limit` keys and knows the region is over the limit, and
//! does not fill the block cache. A region under both limits is left alone.

use engine::{keys, Iterable, KvEngine, CF_DEFAULT};
use proto::metapb::Region;
use slog::{debug, warn, Logger};

use crate::{
    msg::{PeerMsg, SplitRegion},
    worker::{PeerNotifier, Runnable, Scheduler},
};

/// A region to check, with the thresholds to check it against.
pub struct SplitCheckTask {
    /// The region as its leader knows it.
    pub region: Region,
    /// Split when larger than this many bytes...
    pub max_size: u64,
    /// ...into pieces of about this many.
    pub split_size: u64,
    /// Split when holding more keys than this...
    pub max_keys: u64,
    /// ...into pieces of about this many.
    pub split_keys: u64,
    /// Most split keys.
    pub limit: usize,
}

/// Queues checks for the split-check worker.
pub type SplitCheckScheduler = Scheduler<SplitCheckTask>;

/// The split-check worker: scans regions in `kv` and asks their peers (through `peers`) to
/// split.
pub struct SplitCheckRunner<EK, N> {
    kv: EK,
    peers: N,
    logger: Logger,
}

impl<EK: KvEngine, N: PeerNotifier<Snapshot = EK::Snapshot>> SplitCheckRunner<EK, N> {
    /// A runner scanning `kv` and asking `peers` to split.
    pub fn new(kv: EK, peers: N, logger: Logger) -> Self {
        SplitCheckRunner { kv, peers, logger }
    }
}

impl<EK: KvEngine, N: PeerNotifier<Snapshot = EK::Snapshot>> Runnable for SplitCheckRunner<EK, N> {
    type Task = SplitCheckTask;

    fn run(&mut self, task: SplitCheckTask) {
        let region_id = task.region.id;
        match find_split_keys(&self.kv.snapshot(), &task) {
            Ok(found) => {
                let (size, keys) = (found.size, found.keys);
                // What the placement driver's merge checker goes by.
                let _ = self.peers.notify(region_id, PeerMsg::ApproximateSize { size, keys });
                if found.split_keys.is_empty() {
                    return;
                }
                let split_keys = found.split_keys;
                debug!(self.logger, "region should split"; "region_id" => region_id, "keys" => split_keys.len());
                let split = SplitRegion {
                    region_epoch: task.region.get_region_epoch().clone(),
                    split_keys,
                    ch: None,
                };
                // A peer that is gone gets nothing: the next leader checks again.
                let _ = self.peers.notify(region_id, PeerMsg::SplitRegion(Box::new(split)));
            }
            Err(e) => {
                warn!(self.logger, "split check failed"; "region_id" => region_id, "err" => %e)
            }
        }
    }
}

/// What a check found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SplitCheckOutcome {
    /// Where to split; empty if the region is under both limits.
    pub split_keys: Vec<Vec<u8>>,
    /// Bytes of keys and values scanned: the region's size, or a lower bound of it when the
    /// scan stopped early over the limits.
    pub size: u64,
    /// Keys scanned, likewise.
    pub keys: u64,
}

/// Split keys for `task.region` in `snap`: none unless the region is over `max_size` or
/// `max_keys`; otherwise the first key after every `split_size` bytes or `split_keys` keys,
/// at most `limit` of them. With the size and keys the scan saw.
pub fn find_split_keys<S: Iterable>(
    snap: &S,
    task: &SplitCheckTask,
) -> engine::Result<SplitCheckOutcome> {
    let region = &task.region;
    let (start, end) = (keys::data_key(&region.start_key), keys::data_end_key(&region.end_key));
    let (mut size, mut count, mut total_size, mut total_keys) = (0u64, 0u64, 0u64, 0u64);
    let mut split_keys = Vec::new();
    snap.scan(CF_DEFAULT, &start, &end, false, |k, v| {
        if size >= task.split_size || count >= task.split_keys {
            if let Some(key) = keys::origin_key(k) {
                split_keys.push(key.to_vec());
            }
            size = 0;
            count = 0;
        }
        let len = (k.len() + v.len()) as u64;
        size += len;
        count += 1;
        total_size += len;
        total_keys += 1;
        let over = total_size > task.max_size || total_keys > task.max_keys;
        Ok(!(over && split_keys.len() >= task.limit))
    })?;
    if total_size <= task.max_size && total_keys <= task.max_keys {
        split_keys.clear();
    }
    split_keys.truncate(task.limit);
    Ok(SplitCheckOutcome { split_keys, size: total_size, keys: total_keys })
}
