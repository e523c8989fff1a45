//! region-sim's nemesis: a short run with every kind of fault passes (linearizable, every
//! region serving after the final heal) and reports what it injected; a seed replays its
//! schedule; a bad fault name is refused.

use std::process::Command;

use serde_json::Value;

fn region_sim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_region-sim")).args(args).output().expect("region-sim runs")
}

/// Runs region-sim with `args` and a JSON report; the report and the summary.
fn run_with_report(args: &[&str]) -> (Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let mut all = args.to_vec();
    all.extend(["--quiet", "--report-json", report.to_str().unwrap()]);
    let out = region_sim(&all);
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{summary}\n{}", String::from_utf8_lossy(&out.stderr));
    (serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap(), summary)
}

#[test]
fn a_short_run_with_every_kind_of_fault_stays_linearizable_and_recovers() {
    let (report, summary) = run_with_report(&[
        "--nemesis",
        "all",
        "--nemesis-interval",
        "0.4",
        "--duration",
        "10",
        "--seed",
        "3",
        "--clients",
        "4",
        "--key-space",
        "200",
        "--split-size",
        "1024",
    ]);
    let nemesis = &report["nemesis"];
    let schedule = nemesis["schedule"].as_array().unwrap();
    let injected: Vec<&Value> = schedule.iter().filter(|f| f["injected"] == true).collect();
    assert!(injected.len() >= 10, "faults injected: {schedule:?}");
    let kinds = nemesis["by_kind"].as_object().unwrap();
    assert!(kinds.len() >= 8, "kinds seen: {kinds:?}");
    for f in &injected {
        assert!(f["heal_s"].as_f64() > f["start_s"].as_f64(), "{f}");
        assert!(!f["target"].as_str().unwrap().is_empty(), "{f}");
    }
    assert!(nemesis["final_recovery_ms"].as_f64().is_some(), "{nemesis}");
    assert_eq!(report["linearizability"]["violations"].as_u64(), Some(0));
    let ops: u64 = kinds.values().map(|k| k["ops_ok"].as_u64().unwrap()).sum();
    assert!(ops > 0, "operations went on during faults: {kinds:?}");
    assert!(summary.contains("nemesis") && summary.contains("recovery"), "{summary}");
}

/// The schedule's kinds, and the loss rates drawn from the seed (targets naming stores are
/// left out: store ids depend on the order the stores registered in).
fn drawn(report: &Value) -> Vec<(String, String)> {
    let schedule = report["nemesis"]["schedule"].as_array().unwrap();
    let drawn = |f: &Value| {
        let kind = f["kind"].as_str().unwrap().to_string();
        let target = if kind == "loss" { f["target"].as_str().unwrap() } else { "" };
        (kind, target.to_string())
    };
    schedule.iter().map(drawn).collect()
}

#[test]
fn a_seed_replays_its_fault_schedule() {
    let args = [
        "--nemesis",
        "partition,one-way,loss,delay",
        "--nemesis-interval",
        "0.3",
        "--duration",
        "3",
        "--clients",
        "2",
    ];
    let run = |seed: &str| {
        let mut all = args.to_vec();
        all.extend(["--seed", seed]);
        drawn(&run_with_report(&all).0)
    };
    let first = run("11");
    assert!(first.len() >= 4, "{first:?}");
    assert_eq!(first, run("11"));
    assert_ne!(first, run("12"));
}

#[test]
fn a_bad_fault_name_is_refused() {
    let out = region_sim(&["--nemesis", "partition,flood", "--duration", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("flood") && err.contains("isolate-leader"), "{err}");
}
