//! The run's report: JSON for tools, a summary for people. Fields of features that are not
//! built yet are left out, never faked.

use std::collections::BTreeMap;

use local_reader::ReadStats;
use regionstore::linearizability::{check, Verdict};
use serde::Serialize;

use crate::{args::Args, nemesis::NemesisReport, workload::ClientStats};

#[derive(Serialize)]
pub struct Ops {
    pub reads: u64,
    /// Writes acknowledged, deletes included.
    pub writes: u64,
    pub deletes: u64,
    pub errors: BTreeMap<String, u64>,
}

#[derive(Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
}

#[derive(Serialize)]
pub struct Latency {
    pub read: Percentiles,
    pub write: Percentiles,
}

/// How reads were served, from the stores' read-path counters over the run.
#[derive(Default, Serialize)]
pub struct ReadPaths {
    /// Served by a `LocalReader` from the leader's lease, off the raftstore threads.
    pub local: u64,
    /// Served by the leader's lease on its raftstore thread (after a redirect).
    pub peer_lease: u64,
    /// Served through a ReadIndex round on the leader.
    pub read_index: u64,
    /// Served by followers.
    pub follower: u64,
    /// Sent from the local reader to the peer, in all and by reason.
    pub redirected: u64,
    pub redirects: BTreeMap<String, u64>,
    /// Delegate lookups that went to the store's map.
    pub cache_misses: u64,
}

impl ReadPaths {
    pub fn new(stats: &ReadStats) -> Self {
        ReadPaths {
            local: stats.local_hits,
            peer_lease: stats.peer_lease_reads,
            read_index: stats.read_index_reads,
            follower: stats.follower_reads,
            redirected: stats.redirected(),
            redirects: stats.redirects.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
            cache_misses: stats.cache_misses,
        }
    }
}

#[derive(Serialize)]
pub struct Regions {
    pub initial: usize,
    #[serde(rename = "final")]
    pub final_: usize,
    /// Splits the placement driver was told of.
    pub splits: u64,
    /// The most regions the placement driver knew at once (sampled per bucket).
    pub peak: u64,
    /// Merges the placement driver saw done.
    pub merges: u64,
    /// From the merge handed to the source's leader to the target's report of the merged
    /// region, in milliseconds.
    pub merge_ms_p50: f64,
    pub merge_ms_max: f64,
}

/// One bucket of the run (`time_series_bucket_ms` wide). Only whole buckets are reported:
/// the operations answered after the last whole one count in the totals, not here.
#[derive(Serialize, Clone, Copy, Debug, PartialEq)]
pub struct TimePoint {
    /// When the bucket starts, in seconds from the start of the run.
    pub t_s: f64,
    /// Reads answered in it, per second.
    pub reads_per_s: f64,
    /// Writes answered in it, per second.
    pub writes_per_s: f64,
    /// Reads that failed in it (refused until their deadline), per second.
    pub read_failures_per_s: f64,
    /// Regions the placement driver knew at its end.
    pub regions: u64,
    /// Latency percentiles of the writes and the reads answered in it (0 if none).
    pub write_p50_us: u64,
    pub write_p99_us: u64,
    pub read_p99_us: u64,
}

impl TimePoint {
    /// The whole buckets of a run of `duration_s` seconds, with the region counts sampled
    /// per bucket (the last sample stands for buckets after it).
    pub fn series(stats: &ClientStats, duration_s: f64, region_counts: &[u64]) -> Vec<TimePoint> {
        let width = stats.bucket.as_secs_f64();
        let whole = ((duration_s + 1e-9) / width).floor() as usize;
        let pct = |h: &hdrhistogram::Histogram<u32>, q| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        (0..whole)
            .map(|i| {
                let b = stats.buckets.get(i).cloned().unwrap_or_default();
                TimePoint {
                    t_s: i as f64 * width,
                    reads_per_s: b.reads as f64 / width,
                    writes_per_s: b.writes as f64 / width,
                    read_failures_per_s: b.read_failures as f64 / width,
                    regions: region_counts.get(i).or(region_counts.last()).copied().unwrap_or(0),
                    write_p50_us: pct(&b.write_latency, 0.5),
                    write_p99_us: pct(&b.write_latency, 0.99),
                    read_p99_us: pct(&b.read_latency, 0.99),
                }
            })
            .collect()
    }
}

/// Read attempts refused because their region moved (split, merge, epoch, leader), then
/// routed again.
#[derive(Serialize)]
pub struct RefusedReads {
    pub attempts: u64,
    pub total_ms: f64,
    pub max_ms: f64,
}

/// The clients' retries by the reason of the attempt that failed, and the time they spent
/// backing off (bounded exponential with jitter) before retrying.
#[derive(Serialize)]
pub struct Retries {
    pub by_reason: BTreeMap<String, u64>,
    pub backoff_ms: f64,
}

#[derive(Serialize)]
pub struct StoreReport {
    pub id: u64,
    pub leaders: u64,
    pub peers: u64,
}

/// How well the gRPC transport batched: raft messages sent, and the frames they took.
#[derive(Serialize)]
pub struct GrpcBatching {
    pub messages: u64,
    pub batches: u64,
    pub per_batch: f64,
}

#[derive(Serialize)]
pub struct Report {
    pub config: Args,
    pub duration_s: f64,
    pub ops: Ops,
    pub throughput_ops_s: f64,
    pub latency_us: Latency,
    pub read_paths: ReadPaths,
    pub regions: Regions,
    pub refused_reads: RefusedReads,
    pub retries: Retries,
    /// The history checked for linearizability, key by key.
    pub linearizability: Verdict,
    /// The width of a `time_series` bucket.
    pub time_series_bucket_ms: f64,
    pub time_series: Vec<TimePoint>,
    pub stores: Vec<StoreReport>,
    pub history_file: Option<String>,
    /// The faults injected and what they did (with --nemesis).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nemesis: Option<NemesisReport>,
    /// The process faults injected (with --pd and --nemesis).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_nemesis: Option<crate::external::ProcessNemesisReport>,
    /// Raft messages over gRPC and the frames they went in (with --transport grpc).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcBatching>,
    /// What this version does not do yet, so nobody reads a missing field as zero.
    pub notes: Vec<String>,
}

impl Report {
    /// Builds the report from the merged client numbers.
    pub fn new(
        args: &Args,
        duration_s: f64,
        stats: &ClientStats,
        read_paths: ReadPaths,
        regions: Regions,
        region_counts: &[u64],
        stores: Vec<StoreReport>,
    ) -> Self {
        let pcts = |h: &hdrhistogram::Histogram<u64>| {
            let pct = |q: f64| if h.is_empty() { 0.0 } else { h.value_at_quantile(q) as f64 };
            Percentiles { p50: pct(0.5), p99: pct(0.99), p999: pct(0.999) }
        };
        let notes = Vec::new();
        let time_series = TimePoint::series(stats, args.duration, region_counts);
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        let refused_reads = RefusedReads {
            attempts: stats.client.refused_reads,
            total_ms: ms(stats.client.refused_time),
            max_ms: ms(stats.client.refused_max),
        };
        let retries = Retries {
            by_reason: stats.client.retries.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            backoff_ms: ms(stats.client.backoff),
        };
        Report {
            config: args.clone(),
            duration_s,
            ops: Ops {
                reads: stats.reads,
                writes: stats.writes,
                deletes: stats.deletes,
                errors: stats.errors.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            },
            throughput_ops_s: (stats.writes + stats.reads) as f64 / duration_s,
            latency_us: Latency {
                read: pcts(&stats.read_latency),
                write: pcts(&stats.write_latency),
            },
            read_paths,
            regions,
            refused_reads,
            retries,
            linearizability: check(&stats.ops),
            time_series_bucket_ms: stats.bucket.as_secs_f64() * 1000.0,
            time_series,
            stores,
            history_file: args.history.as_ref().map(|p| p.display().to_string()),
            nemesis: None,
            process_nemesis: None,
            grpc: None,
            notes,
        }
    }

    /// A summary for people.
    pub fn print_summary(&self) {
        let (w, r) = (&self.latency_us.write, &self.latency_us.read);
        let cluster = match &self.config.pd {
            Some(pd) => format!("the cluster at {pd}"),
            None => format!("{} stores", self.config.stores),
        };
        println!(
            "region-sim: {cluster}, {} clients, {:.1} s, seed {}",
            self.config.clients, self.duration_s, self.config.seed
        );
        let ops = self.ops.writes + self.ops.reads;
        println!("  ops        {ops:>10}  ({:.0} ops/s)", self.throughput_ops_s);
        println!(
            "  writes     {:>10}  p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs ({} deletes)",
            self.ops.writes, w.p50, w.p99, w.p999, self.ops.deletes
        );
        println!(
            "  reads      {:>10}  p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs",
            self.ops.reads, r.p50, r.p99, r.p999
        );
        let p = &self.read_paths;
        // Read paths are the stores' counters: not seen from outside an external cluster.
        if self.config.pd.is_none() {
            println!(
                "  read paths local {}, leader lease {}, ReadIndex {}, follower {}; redirected {} {:?}",
                p.local, p.peer_lease, p.read_index, p.follower, p.redirected, p.redirects
            );
        }
        if self.ops.errors.is_empty() {
            println!("  errors     none");
        }
        for (kind, n) in &self.ops.errors {
            println!("  errors     {kind}: {n}");
        }
        let g = &self.regions;
        println!(
            "  regions    {} at start, {} at peak, {} at end; {} splits, {} merges (p50 {:.0} ms, max {:.0} ms)",
            g.initial, g.peak, g.final_, g.splits, g.merges, g.merge_ms_p50, g.merge_ms_max
        );
        let lin = &self.linearizability;
        if lin.violations == 0 {
            println!(
                "  history    linearizable ({} keys, {} operations checked)",
                lin.keys, lin.ops
            );
        } else {
            println!(
                "  history    NOT LINEARIZABLE: {} violations, e.g. {:?}",
                lin.violations, lin.examples
            );
        }
        let rf = &self.refused_reads;
        println!(
            "  rerouted   {} read attempts refused as their region moved ({:.1} ms in all, longest {:.1} ms)",
            rf.attempts, rf.total_ms, rf.max_ms
        );
        let rt = &self.retries;
        println!(
            "  retries    {} ({:.1} ms backing off) {:?}",
            rt.by_reason.values().sum::<u64>(),
            rt.backoff_ms,
            rt.by_reason
        );
        for s in &self.stores {
            println!("  store {:<3}  {} peers, {} leaders", s.id, s.peers, s.leaders);
        }
        if let Some(g) = &self.grpc {
            println!(
                "  grpc       {} raft messages in {} frames ({:.2} a frame)",
                g.messages, g.batches, g.per_batch
            );
        }
        if let Some(h) = &self.history_file {
            println!("  history    {h}");
        }
        if let Some(n) = &self.nemesis {
            n.print_summary();
        }
        for n in &self.notes {
            println!("  note: {n}");
        }
    }
}
