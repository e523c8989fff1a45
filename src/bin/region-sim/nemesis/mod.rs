//! The nemesis: faults injected while the workload runs, on a schedule drawn from the run's
//! seed, each healed after a while, then a final heal and a recovery check.
//!
//! ```text
//! seed ──▶ schedule: (start, heal, kind, draw) …   (same seed, same schedule)
//!   executor thread: at start ──▶ inject (targets resolved then, recorded)
//!                    at heal  ──▶ undo, then probe every region (a write and a read)
//!   final heal (duration − settle) ──▶ every fault undone ──▶ probe: every region must
//!   serve again within --recovery-timeout, or the run fails
//! report: the schedule as run, and per kind: faults, ops ok / fail / unknown while faulty,
//! recovery time after heal (p50, max), leader changes
//! ```
//!
//! Targets (which store, which link) come from a generator seeded per fault, so a seed replays
//! the same choices; what they hit (which store leads a region then) depends on timing and is
//! recorded in the report.

mod inject;

use std::{collections::BTreeMap, time::Duration};

use clap::ValueEnum;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Serialize;

pub use self::inject::{run_nemesis, NemesisEnv};

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// The stores cut into two random groups that cannot talk.
    Partition,
    /// The store leading a region (of a random key) cut off from all others.
    IsolateLeader,
    /// Messages from one store to another dropped (the other way works).
    OneWay,
    /// 5-30% of all messages lost.
    Loss,
    /// One link slowed by tens of milliseconds up to three election timeouts.
    Delay,
    /// One raft message type (`MsgTimeoutNow`, ReadIndex answers, heartbeat or append
    /// answers, pre-vote answers, snapshots) delayed past the sender giving up on it.
    SlowType,
    /// Messages duplicated (10%) and reordered (a per-link delay with jitter).
    Chaos,
    /// A store stopped with messages in flight to it, restarted from its disk at heal.
    Crash,
    /// A store's pollers (raft and apply) frozen, then let go.
    Pause,
    /// One store's lease clock running slow or fast, within the configured drift bound.
    ClockSkew,
    /// Leaders of random regions handed to random followers, back to back.
    TransferStorm,
    /// A store's apply pollers frozen: it commits but does not apply.
    ApplyPause,
    /// Splits at random keys, back to back.
    SplitStorm,
    /// Random regions merged into their right neighbours, back to back.
    MergeStorm,
}

impl FaultKind {
    /// Parses `--nemesis`: kinds separated by commas, or `all`.
    pub fn parse_list(list: &str) -> Result<Vec<FaultKind>, String> {
        if list.trim() == "all" {
            return Ok(FaultKind::value_variants().to_vec());
        }
        let mut kinds = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let kind = FaultKind::from_str(name, false).map_err(|_| {
                let known: Vec<String> =
                    FaultKind::value_variants().iter().map(|k| k.name()).collect();
                format!("--nemesis: unknown fault {name:?} (known: all, {})", known.join(", "))
            })?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        if kinds.is_empty() {
            return Err("--nemesis: no fault named".into());
        }
        Ok(kinds)
    }

    /// The kind's name on the command line and in reports.
    pub fn name(self) -> String {
        self.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default()
    }
}

/// One fault of the schedule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlannedFault {
    /// Seconds into the run.
    pub start_s: f64,
    pub heal_s: f64,
    pub kind: FaultKind,
    /// Seeds the fault's own choices (targets, rates, delays).
    pub draw: u64,
}

/// The fault schedule of a run: faults from `start` on, about one per `interval` (each lasting
/// 0.5 to 1.5 intervals, so they sometimes overlap), all healed by `final_heal`.
pub fn schedule(
    kinds: &[FaultKind],
    seed: u64,
    interval: Duration,
    start: Duration,
    final_heal: Duration,
) -> Vec<PlannedFault> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6e65_6d65_7369_7321);
    let (interval, end) = (interval.as_secs_f64(), final_heal.as_secs_f64());
    let mut faults = Vec::new();
    let mut t = start.as_secs_f64();
    while t < end && !kinds.is_empty() {
        let kind = kinds[rng.gen_range(0..kinds.len())];
        let heal = (t + interval * rng.gen_range(0.5..1.5)).min(end);
        faults.push(PlannedFault { start_s: t, heal_s: heal, kind, draw: rng.gen() });
        t += interval * rng.gen_range(0.7..1.3);
    }
    faults
}

/// What became of one fault.
#[derive(Clone, Debug, Serialize)]
pub struct FaultRecord {
    pub start_s: f64,
    pub heal_s: f64,
    pub kind: FaultKind,
    /// What it hit ("store 2", "1,3 | 2", "MsgTimeoutNow +240 ms"), or why it was skipped.
    pub target: String,
    /// Whether it was injected (a store fault is skipped when too many stores are out).
    pub injected: bool,
    /// From the heal to every region having served a write and a read, if they did before
    /// the probe gave up.
    pub recovery_ms: Option<f64>,
    /// Leaders that changed while it lasted (as the placement driver heard).
    pub leader_changes: u64,
}

/// How a client operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Failed, known not to have taken effect.
    Fail,
    /// Failed with an unknown outcome (a write that may have applied).
    Unknown,
}

/// Per kind: what its faults did.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct KindStats {
    pub injected: u64,
    pub skipped: u64,
    /// Operations that ended while a fault of this kind was on.
    pub ops_ok: u64,
    pub ops_fail: u64,
    pub ops_unknown: u64,
    pub recovery_ms_p50: Option<f64>,
    pub recovery_ms_max: Option<f64>,
    /// Heals after which some region did not serve again within the probe's time.
    pub not_recovered: u64,
    pub leader_changes: u64,
}

/// The nemesis part of the report.
#[derive(Clone, Debug, Serialize)]
pub struct NemesisReport {
    pub kinds: Vec<FaultKind>,
    pub interval_s: f64,
    /// When every fault was undone, seconds into the run.
    pub final_heal_s: f64,
    pub schedule: Vec<FaultRecord>,
    pub by_kind: BTreeMap<FaultKind, KindStats>,
    /// From the final heal to every region serving a write and a read.
    pub final_recovery_ms: Option<f64>,
    /// Why the final recovery failed, if it did.
    pub final_recovery_error: Option<String>,
    /// Stores that could not be restarted after a crash.
    pub restart_failures: Vec<String>,
}

impl NemesisReport {
    /// Whether the cluster came back: every crashed store restarted, every region served
    /// after the final heal.
    pub fn recovered(&self) -> bool {
        self.final_recovery_ms.is_some() && self.restart_failures.is_empty()
    }

    /// Fills `by_kind` from the schedule and the operations' ends (nanoseconds into the run).
    /// An operation counts once for a kind however many of its faults overlap then.
    pub fn tally(&mut self, outcomes: &[(u64, Outcome)]) {
        let mut by_kind: BTreeMap<FaultKind, KindStats> = BTreeMap::new();
        let mut recoveries: BTreeMap<FaultKind, Vec<f64>> = BTreeMap::new();
        let mut spans: BTreeMap<FaultKind, Vec<(u64, u64)>> = BTreeMap::new();
        for f in &self.schedule {
            let stats = by_kind.entry(f.kind).or_default();
            if !f.injected {
                stats.skipped += 1;
                continue;
            }
            stats.injected += 1;
            stats.leader_changes += f.leader_changes;
            match f.recovery_ms {
                Some(ms) => recoveries.entry(f.kind).or_default().push(ms),
                None => stats.not_recovered += 1,
            }
            spans
                .entry(f.kind)
                .or_default()
                .push(((f.start_s * 1e9) as u64, (f.heal_s * 1e9) as u64));
        }
        let mut outcomes = outcomes.to_vec();
        outcomes.sort_unstable_by_key(|(at, _)| *at);
        for (kind, spans) in spans {
            let stats = by_kind.entry(kind).or_default();
            for (from, to) in merged(spans) {
                let lo = outcomes.partition_point(|(at, _)| *at < from);
                let hi = outcomes.partition_point(|(at, _)| *at < to);
                for (_, outcome) in &outcomes[lo..hi] {
                    match outcome {
                        Outcome::Ok => stats.ops_ok += 1,
                        Outcome::Fail => stats.ops_fail += 1,
                        Outcome::Unknown => stats.ops_unknown += 1,
                    }
                }
            }
        }
        for (kind, mut ms) in recoveries {
            ms.sort_by(f64::total_cmp);
            let stats = by_kind.entry(kind).or_default();
            stats.recovery_ms_p50 = ms.get(ms.len() / 2).copied();
            stats.recovery_ms_max = ms.last().copied();
        }
        self.by_kind = by_kind;
    }

    /// Lines for the human summary.
    pub fn print_summary(&self) {
        let kinds: Vec<String> = self.kinds.iter().map(|k| k.name()).collect();
        println!(
            "  nemesis    {} faults ({}), one per {:.1} s, final heal at {:.1} s",
            self.schedule.iter().filter(|f| f.injected).count(),
            kinds.join(","),
            self.interval_s,
            self.final_heal_s
        );
        for (kind, s) in &self.by_kind {
            let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
            println!(
                "    {:<15} {:>3} injected ({} skipped), ops ok {} / fail {} / unknown {}, recovery p50 {} ms max {} ms ({} not recovered), {} leader changes",
                kind.name(), s.injected, s.skipped, s.ops_ok, s.ops_fail, s.ops_unknown,
                ms(s.recovery_ms_p50), ms(s.recovery_ms_max), s.not_recovered, s.leader_changes
            );
        }
        match (&self.final_recovery_ms, &self.final_recovery_error) {
            (Some(ms), _) => {
                println!("  recovery   every region served {ms:.0} ms after the final heal")
            }
            (None, Some(e)) => println!("  recovery   FAILED: {e}"),
            (None, None) => println!("  recovery   not checked"),
        }
        for failure in &self.restart_failures {
            println!("  restart    FAILED: {failure}");
        }
    }
}

/// Time spans, overlapping ones joined, in order.
fn merged(mut spans: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    spans.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(spans.len());
    for (from, to) in spans {
        match out.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => out.push((from, to)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let kinds = FaultKind::parse_list("all").unwrap();
        let a = schedule(&kinds, 7, 2 * S, S, 50 * S);
        assert_eq!(a, schedule(&kinds, 7, 2 * S, S, 50 * S));
        assert_ne!(a, schedule(&kinds, 8, 2 * S, S, 50 * S));
        assert!(a.len() >= 15, "about one fault per interval: {}", a.len());
        assert!(a.iter().all(|f| f.start_s >= 1.0 && f.start_s < f.heal_s && f.heal_s <= 50.0));
        assert!(a.windows(2).all(|w| w[0].start_s < w[1].start_s));
    }

    #[test]
    fn overlapping_spans_join() {
        assert_eq!(merged(vec![(5, 9), (1, 3), (2, 4), (9, 10)]), vec![(1, 4), (5, 10)]);
        assert_eq!(merged(vec![]), vec![]);
    }

    #[test]
    fn kinds_parse_from_a_list_or_all() {
        let kinds = FaultKind::parse_list("crash, loss,crash").unwrap();
        assert_eq!(kinds, vec![FaultKind::Crash, FaultKind::Loss]);
        assert_eq!(FaultKind::parse_list("all").unwrap().len(), 14);
        assert!(FaultKind::parse_list("flood").unwrap_err().contains("isolate-leader"));
        assert!(FaultKind::parse_list(",").is_err());
        assert_eq!(FaultKind::ClockSkew.name(), "clock-skew");
    }

    #[test]
    fn the_tally_counts_operations_inside_each_fault() {
        let fault = |kind, start_s, heal_s, injected, recovery_ms| FaultRecord {
            start_s,
            heal_s,
            kind,
            target: String::new(),
            injected,
            recovery_ms,
            leader_changes: 1,
        };
        let mut report = NemesisReport {
            kinds: vec![FaultKind::Crash, FaultKind::Loss],
            interval_s: 1.0,
            final_heal_s: 4.0,
            schedule: vec![
                fault(FaultKind::Crash, 1.0, 2.0, true, Some(30.0)),
                fault(FaultKind::Crash, 2.5, 3.0, true, Some(10.0)),
                fault(FaultKind::Loss, 1.5, 3.0, true, None),
                fault(FaultKind::Loss, 2.0, 2.8, true, Some(20.0)), // inside the other
                fault(FaultKind::Crash, 3.5, 4.0, false, None),
            ],
            by_kind: BTreeMap::new(),
            final_recovery_ms: Some(5.0),
            final_recovery_error: None,
            restart_failures: vec![],
        };
        let ns = |s: f64| (s * 1e9) as u64;
        let outcomes = [
            (ns(0.5), Outcome::Ok),      // before any fault
            (ns(1.6), Outcome::Fail),    // crash 1 and loss
            (ns(2.7), Outcome::Unknown), // crash 2 and loss
            (ns(3.7), Outcome::Ok),      // the skipped crash
        ];
        report.tally(&outcomes);
        let crash = &report.by_kind[&FaultKind::Crash];
        assert_eq!((crash.injected, crash.skipped), (2, 1));
        assert_eq!((crash.ops_ok, crash.ops_fail, crash.ops_unknown), (0, 1, 1));
        assert_eq!((crash.recovery_ms_p50, crash.recovery_ms_max), (Some(30.0), Some(30.0)));
        assert_eq!(crash.leader_changes, 2);
        let loss = &report.by_kind[&FaultKind::Loss];
        assert_eq!(loss.injected, 2);
        assert_eq!((loss.ops_fail, loss.ops_unknown, loss.not_recovered), (1, 1, 1), "once each");
        assert!(report.recovered());
    }
}
