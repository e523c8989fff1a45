//! The run's report: JSON for tools, a summary for people. Fields of features that are not
//! built yet are left out, never faked.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{args::Args, workload::ClientStats};

#[derive(Serialize)]
pub struct Ops {
    pub reads: u64,
    pub writes: u64,
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
    pub write: Percentiles,
}

#[derive(Serialize)]
pub struct Regions {
    pub initial: usize,
    #[serde(rename = "final")]
    pub final_: usize,
}

#[derive(Serialize)]
pub struct StoreReport {
    pub id: u64,
    pub leaders: u64,
    pub peers: u64,
}

#[derive(Serialize)]
pub struct Report {
    pub config: Args,
    pub duration_s: f64,
    pub ops: Ops,
    pub throughput_ops_s: f64,
    pub latency_us: Latency,
    pub regions: Regions,
    pub stores: Vec<StoreReport>,
    pub history_file: Option<String>,
    /// What this version does not do yet, so nobody reads a missing field as zero.
    pub notes: Vec<String>,
}

impl Report {
    /// Builds the report from the merged client numbers.
    pub fn new(
        args: &Args,
        duration_s: f64,
        stats: &ClientStats,
        regions: Regions,
        stores: Vec<StoreReport>,
    ) -> Self {
        let h = &stats.write_latency;
        let pct = |q: f64| if h.is_empty() { 0.0 } else { h.value_at_quantile(q) as f64 };
        let mut notes = vec![
            "reads are not built yet: every operation is a write; `read_paths` and read latency are left out".to_string(),
            "region split is not built yet: the cluster keeps the regions it starts with (--regions); `splits` and `merges` are left out".to_string(),
        ];
        if args.read_ratio > 0.0 {
            notes.push(format!("--read-ratio {} was asked for and ignored", args.read_ratio));
        }
        Report {
            config: args.clone(),
            duration_s,
            ops: Ops {
                reads: 0,
                writes: stats.writes,
                errors: stats.errors.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            },
            throughput_ops_s: stats.writes as f64 / duration_s,
            latency_us: Latency {
                write: Percentiles { p50: pct(0.5), p99: pct(0.99), p999: pct(0.999) },
            },
            regions,
            stores,
            history_file: args.history.as_ref().map(|p| p.display().to_string()),
            notes,
        }
    }

    /// A summary for people.
    pub fn print_summary(&self) {
        let w = &self.latency_us.write;
        println!(
            "region-sim: {} stores, {} clients, {:.1} s",
            self.config.stores, self.config.clients, self.duration_s
        );
        println!("  writes     {:>10}  ({:.0} ops/s)", self.ops.writes, self.throughput_ops_s);
        println!("  latency    p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs", w.p50, w.p99, w.p999);
        if self.ops.errors.is_empty() {
            println!("  errors     none");
        }
        for (kind, n) in &self.ops.errors {
            println!("  errors     {kind}: {n}");
        }
        println!("  regions    {} at start, {} at end", self.regions.initial, self.regions.final_);
        for s in &self.stores {
            println!("  store {:<3}  {} peers, {} leaders", s.id, s.peers, s.leaders);
        }
        if let Some(h) = &self.history_file {
            println!("  history    {h}");
        }
        for n in &self.notes {
            println!("  note: {n}");
        }
    }
}
