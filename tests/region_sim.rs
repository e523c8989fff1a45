//! The README's run command: region-sim runs a cluster, reports in JSON, and writes a history
//! in which every invoked operation completes.

use std::{collections::HashMap, process::Command};

fn region_sim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_region-sim")).args(args).output().expect("region-sim runs")
}

#[test]
fn short_run_reports_and_records_a_complete_history() {
    let dir = tempfile::tempdir().unwrap();
    let (report, history) = (dir.path().join("report.json"), dir.path().join("history.jsonl"));
    let (data, chart) = (dir.path().join("data"), dir.path().join("chart.svg"));
    let out = region_sim(&[
        "--duration",
        "1.5",
        "--clients",
        "3",
        "--key-space",
        "50",
        "--split-size",
        "512", // 50 keys of ~75 bytes: several regions
        "--chart",
        chart.to_str().unwrap(),
        "--quiet",
        "--report-json",
        report.to_str().unwrap(),
        "--history",
        history.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("region-sim: 3 stores, 3 clients"), "{summary}");

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let writes = report["ops"]["writes"].as_u64().unwrap();
    assert!(writes > 0, "{report}");
    assert_eq!(report["stores"].as_array().unwrap().len(), 3);
    let regions = &report["regions"];
    let final_regions = regions["final"].as_u64().unwrap();
    assert!(final_regions > 1 && regions["splits"].as_u64().unwrap() > 0, "{regions}");
    let leaders: u64 =
        report["stores"].as_array().unwrap().iter().map(|s| s["leaders"].as_u64().unwrap()).sum();
    // One leader per region, give or take a leader moving (balancing) or a split region's
    // first election at the moment the stores were asked.
    assert!(leaders + 2 >= final_regions && leaders <= final_regions + 2, "{leaders} leaders");
    let lin = &report["linearizability"];
    assert_eq!(lin["violations"].as_u64(), Some(0), "{lin}");
    assert!(report["retries"]["by_reason"].is_object(), "{}", report["retries"]);
    let series = report["time_series"].as_array().unwrap();
    let bucket_s = report["time_series_bucket_ms"].as_f64().unwrap() / 1000.0;
    assert_eq!(bucket_s, 0.1, "a short run is cut into 100 ms buckets");
    assert_eq!(series.len(), 15, "whole buckets of the 1.5 s run: {series:?}");
    let last = series.last().unwrap()["t_s"].as_f64().unwrap();
    assert!(last + bucket_s <= 1.5 + 1e-6, "a partial bucket is shown: {series:?}");
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"), "--chart draws the series");
    let reads = report["ops"]["reads"].as_u64().unwrap();
    assert!(reads > 0, "the default read ratio mixes reads in: {report}");
    let checked = report["linearizability"]["ops"].as_u64().unwrap();
    assert!(checked >= writes + reads, "every acknowledged operation is checked");
    let paths = &report["read_paths"];
    let served: u64 = ["local", "peer_lease", "read_index", "follower"]
        .iter()
        .map(|p| paths[p].as_u64().unwrap())
        .sum();
    assert!(served >= reads, "every read was served by some path: {paths}");
    assert!(paths["local"].as_u64().unwrap() > 0, "the lease read path is taken: {paths}");
    assert!(data.join("node-0").is_dir(), "--data-dir keeps the nodes' data");

    let text = std::fs::read_to_string(&history).unwrap();
    assert_eq!(stale_reads(&text), 0, "a read returned a value older than an acknowledged write");
    assert_eq!(reads_back_in_time(&text), 0, "a read saw an older value than an earlier read");
    let mut open: HashMap<u64, String> = HashMap::new();
    let mut oks = 0;
    for line in text.lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        let process = e["process"].as_u64().unwrap();
        match e["type"].as_str().unwrap() {
            "invoke" => {
                assert!(open.insert(process, e["key"].to_string()).is_none(), "two open ops")
            }
            kind => {
                assert_eq!(
                    open.remove(&process),
                    Some(e["key"].to_string()),
                    "completion without invoke"
                );
                oks += (kind == "ok") as u64;
            }
        }
    }
    assert!(open.is_empty(), "every invoked operation completed");
    assert_eq!(oks, writes + reads, "the report counts the history's acknowledged operations");
}

#[test]
fn bad_options_are_refused() {
    for args in [
        &["--stores", "0"][..],
        &["--read-ratio", "2"],
        &["--value-size", "3"],
        &["--duration", "-1"],
        &["--transport", "grpc", "--nemesis", "partition"],
        // An external cluster: its faults are process kills and pauses, its stores its own.
        &["--pd", "127.0.0.1:1", "--nemesis", "partition"],
        &["--pd", "127.0.0.1:1", "--transport", "grpc"],
        &["--pd", "127.0.0.1:1", "--regions", "4"],
        &["--pd", "127.0.0.1:1", "--nemesis", "kill"],
    ] {
        let out = region_sim(args);
        assert!(!out.status.success(), "{args:?} accepted");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x"), b"").unwrap();
    let out = region_sim(&["--data-dir", dir.path().to_str().unwrap(), "--duration", "0.1"]);
    assert!(!out.status.success(), "a non-empty --data-dir is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
}

#[test]
fn a_run_over_grpc_splits_stays_linearizable_and_reports_its_batching() {
    let dir = tempfile::tempdir().unwrap();
    let (report, history) = (dir.path().join("report.json"), dir.path().join("history.jsonl"));
    let out = region_sim(&[
        "--transport",
        "grpc",
        "--duration",
        "1.5",
        "--clients",
        "4",
        "--key-space",
        "50",
        "--split-size",
        "512",
        "--quiet",
        "--report-json",
        report.to_str().unwrap(),
        "--history",
        history.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(report["ops"]["writes"].as_u64().unwrap() > 0, "{report}");
    assert!(report["regions"]["splits"].as_u64().unwrap() > 0, "{}", report["regions"]);
    assert_eq!(report["linearizability"]["violations"].as_u64(), Some(0));
    let grpc = &report["grpc"];
    let (messages, batches) =
        (grpc["messages"].as_u64().unwrap(), grpc["batches"].as_u64().unwrap());
    assert!(messages > 0 && batches > 0 && batches <= messages, "{grpc}");
    let history = std::fs::read_to_string(&history).unwrap();
    assert_eq!(stale_reads(&history), 0);
    assert_eq!(reads_back_in_time(&history), 0);
}

/// One operation of the history: when it was invoked and completed (None: unknown outcome,
/// it may take effect any time after invocation).
struct Op {
    invoke: u64,
    complete: Option<u64>,
    value: Option<String>,
}

/// Counts acknowledged reads that cannot be explained by a linearizable register: the value
/// read must come from a write invoked before the read completed, and no other write may
/// have started after that write completed and completed before the read began. Written
/// values are unique, so the writer of each value read is known.
fn stale_reads(history: &str) -> usize {
    let mut open: HashMap<u64, (u64, String, String)> = HashMap::new();
    let mut writes: HashMap<String, Vec<Op>> = HashMap::new();
    let mut reads: Vec<(String, Op)> = Vec::new();
    for line in history.lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        let (p, t) = (e["process"].as_u64().unwrap(), e["time_ns"].as_u64().unwrap());
        let (key, f) = (e["key"].as_str().unwrap().to_string(), e["f"].as_str().unwrap());
        let value = e["value"].as_str().map(str::to_string);
        match e["type"].as_str().unwrap() {
            "invoke" => {
                open.insert(p, (t, f.to_string(), value.clone().unwrap_or_default()));
            }
            kind => {
                let (invoke, f, written) = open.remove(&p).unwrap();
                let complete = (kind == "ok").then_some(t);
                match (f.as_str(), kind) {
                    ("write", "ok" | "info") => {
                        let op = Op { invoke, complete, value: Some(written) };
                        writes.entry(key).or_default().push(op);
                    }
                    ("read", "ok") => reads.push((key, Op { invoke, complete, value })),
                    _ => {} // failed operations did nothing
                }
            }
        }
    }
    let mut stale = 0;
    for (key, read) in &reads {
        let ws = writes.get(key).map(Vec::as_slice).unwrap_or(&[]);
        let read_end = read.complete.unwrap();
        let source_end = match &read.value {
            None => Some(0), // the initial absence
            Some(v) => match ws.iter().find(|w| w.value.as_ref() == Some(v)) {
                Some(w) if w.invoke < read_end => w.complete,
                _ => {
                    stale += 1; // a value nobody had started writing
                    continue;
                }
            },
        };
        let Some(source_end) = source_end else { continue }; // unknown outcome: may be late
        let overwritten =
            ws.iter().any(|w| w.invoke > source_end && w.complete.is_some_and(|c| c < read.invoke));
        stale += overwritten as usize;
    }
    stale
}

/// Counts pairs of reads of one key where the later one (invoked after the earlier one
/// completed) returned a value whose write had completed before the write of the earlier
/// read's value was even invoked: a register cannot go back in time.
fn reads_back_in_time(history: &str) -> usize {
    let mut open: HashMap<u64, (u64, String)> = HashMap::new();
    // Per key: write value → (invoke, complete); reads: (invoke, complete, value).
    let mut writes: HashMap<String, HashMap<String, (u64, u64)>> = HashMap::new();
    let mut reads: HashMap<String, Vec<(u64, u64, String)>> = HashMap::new();
    for line in history.lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        let (p, t) = (e["process"].as_u64().unwrap(), e["time_ns"].as_u64().unwrap());
        let key = e["key"].as_str().unwrap().to_string();
        let value = e["value"].as_str().map(str::to_string);
        match (e["type"].as_str().unwrap(), e["f"].as_str().unwrap()) {
            ("invoke", _) => {
                open.insert(p, (t, value.unwrap_or_default()));
            }
            ("ok", "write") => {
                let (invoke, v) = open.remove(&p).unwrap();
                writes.entry(key).or_default().insert(v, (invoke, t));
            }
            ("ok", "read") => {
                let (invoke, _) = open.remove(&p).unwrap();
                if let Some(v) = value {
                    reads.entry(key).or_default().push((invoke, t, v));
                }
            }
            _ => {
                open.remove(&p);
            }
        }
    }
    let mut back = 0;
    for (key, rs) in &reads {
        let Some(ws) = writes.get(key) else { continue };
        for (_, first_end, first_value) in rs {
            let Some((first_write_invoke, _)) = ws.get(first_value) else { continue };
            back += rs
                .iter()
                .filter(|(invoke, _, v)| invoke > first_end && v != first_value)
                .filter(|(_, _, v)| ws.get(v).is_some_and(|(_, end)| end < first_write_invoke))
                .count();
        }
    }
    back
}

#[test]
fn the_checker_catches_a_read_going_back_in_time() {
    let ev = |p: u64, kind: &str, f: &str, v: Option<&str>, t: u64| {
        serde_json::json!({"process": p, "type": kind, "f": f, "key": "k", "value": v, "time_ns": t}).to_string()
    };
    let history = [
        ev(0, "invoke", "write", Some("a"), 1),
        ev(0, "ok", "write", Some("a"), 2),
        ev(0, "invoke", "write", Some("b"), 3),
        ev(1, "invoke", "read", None, 4),
        ev(1, "ok", "read", Some("b"), 5), // b is visible before its write is acknowledged
        ev(2, "invoke", "read", None, 6),
        ev(2, "ok", "read", Some("a"), 7), // then a again: back in time
        ev(0, "ok", "write", Some("b"), 8),
    ];
    assert_eq!(stale_reads(&history.join("\n")), 0, "each read alone is explainable");
    assert_eq!(reads_back_in_time(&history.join("\n")), 1);
}

#[test]
fn the_checker_catches_a_stale_read() {
    let ev = |p: u64, kind: &str, f: &str, v: Option<&str>, t: u64| {
        serde_json::json!({"process": p, "type": kind, "f": f, "key": "k", "value": v, "time_ns": t}).to_string()
    };
    let good = [
        ev(0, "invoke", "write", Some("a"), 1),
        ev(0, "ok", "write", Some("a"), 2),
        ev(0, "invoke", "write", Some("b"), 3),
        ev(0, "ok", "write", Some("b"), 4),
        ev(1, "invoke", "read", None, 5),
        ev(1, "ok", "read", Some("b"), 6),
    ];
    assert_eq!(stale_reads(&good.join("\n")), 0);
    let mut bad = good.clone();
    bad[5] = ev(1, "ok", "read", Some("a"), 6);
    assert_eq!(stale_reads(&bad.join("\n")), 1, "reading a after b was acknowledged");
}

/// grow-shrink: regions split as writes fill the key space, then merge as deletes empty it;
/// the history (deletes included) stays linearizable.
#[test]
fn a_grow_shrink_run_splits_then_merges() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = region_sim(&[
        "--scenario",
        "grow-shrink",
        "--duration",
        "8",
        "--clients",
        "4",
        "--key-space",
        "300",
        "--split-size",
        "512",
        "--peak-regions",
        "12",
        "--quiet",
        "--report-json",
        report.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let regions = &report["regions"];
    let (peak, last) = (regions["peak"].as_u64().unwrap(), regions["final"].as_u64().unwrap());
    assert!(peak >= 8, "{regions}");
    assert!(regions["merges"].as_u64().unwrap() > 0 && last < peak, "{regions}");
    assert!(report["ops"]["deletes"].as_u64().unwrap() > 0, "{}", report["ops"]);
    let lin = &report["linearizability"];
    assert_eq!(lin["violations"].as_u64(), Some(0), "{lin}");
}

/// A cluster started by `scripts/cluster.sh` in a temporary directory, stopped when dropped.
struct ScriptCluster {
    dir: tempfile::TempDir,
    script: std::path::PathBuf,
    /// The servers' and the placement driver's configuration files.
    configs: (std::path::PathBuf, std::path::PathBuf),
}

impl ScriptCluster {
    /// Starts one whose servers run the local cluster's settings with `raftstore` (keys of
    /// that table) added, and whose placement driver reads `pd` (TOML).
    fn start(raftstore: &str, pd: &str) -> ScriptCluster {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = tempfile::tempdir().unwrap();
        let local = std::fs::read_to_string(root.join("etc/regionstore.local.toml")).unwrap();
        let configs = (dir.path().join("server.toml"), dir.path().join("pd.toml"));
        let server = local.replacen("[raftstore]\n", &format!("[raftstore]\n{raftstore}\n"), 1);
        std::fs::write(&configs.0, server).unwrap();
        std::fs::write(&configs.1, pd).unwrap();
        let cluster = ScriptCluster { dir, script: root.join("scripts/cluster.sh"), configs };
        let started = cluster.command("start");
        assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
        cluster
    }

    fn command(&self, what: &str) -> std::process::Output {
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_region-sim")).parent().unwrap();
        Command::new("bash")
            .arg(&self.script)
            .arg(what)
            .env("CLUSTER_DIR", self.cluster_dir())
            .env("BIN_DIR", bin)
            .env("CONFIG", &self.configs.0)
            .env("PD_CONFIG", &self.configs.1)
            .output()
            .expect("cluster.sh runs")
    }

    fn cluster_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("cluster")
    }

    /// region-sim against it with `args`; its report and history.
    fn region_sim(&self, args: &[&str]) -> (serde_json::Value, String) {
        let env = std::fs::read_to_string(self.cluster_dir().join("cluster.env")).unwrap();
        let pd = env.lines().find_map(|l| l.strip_prefix("PD=")).unwrap().to_string();
        let (report, history) =
            (self.dir.path().join("report.json"), self.dir.path().join("history.jsonl"));
        let cluster_dir = self.cluster_dir();
        let mut all = vec!["--pd", &pd, "--cluster-dir", cluster_dir.to_str().unwrap(), "--quiet"];
        all.extend(["--report-json", report.to_str().unwrap()]);
        all.extend(["--history", history.to_str().unwrap()]);
        all.extend(args);
        let out = region_sim(&all);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        (report, std::fs::read_to_string(&history).unwrap())
    }
}

impl Drop for ScriptCluster {
    fn drop(&mut self) {
        let _ = self.command("stop");
    }
}

#[test]
fn a_run_against_a_cluster_of_processes_survives_kills_and_pauses() {
    // Small regions, so that they split during the run.
    let small = "region_split_size = 1024\nregion_max_size = 1536\nregion_split_check_diff = 128";
    let cluster = ScriptCluster::start(small, "");
    let (report, history) = cluster.region_sim(&[
        "--nemesis",
        "kill,pause",
        "--nemesis-interval",
        "1",
        "--duration",
        "8",
        "--clients",
        "4",
        "--key-space",
        "200",
    ]);
    assert!(report["ops"]["writes"].as_u64().unwrap() > 0, "{report}");
    assert!(report["regions"]["final"].as_u64().unwrap() > 1, "{}", report["regions"]);
    assert_eq!(report["linearizability"]["violations"].as_u64(), Some(0));
    let faults = report["process_nemesis"]["faults"].as_array().unwrap();
    assert!(!faults.is_empty(), "{}", report["process_nemesis"]);
    assert!(report["process_nemesis"]["recovery_ms"].is_number());
    assert_eq!(stale_reads(&history), 0);
    assert_eq!(reads_back_in_time(&history), 0);
    // Every server runs after the run (the killed ones restarted), and the script stops them.
    let stopped = cluster.command("stop");
    let stopped = String::from_utf8_lossy(&stopped.stdout).into_owned();
    assert_eq!(stopped.matches("stopped server-").count(), 3, "{stopped}");
}

#[test]
fn a_grow_shrink_run_against_a_cluster_of_processes_splits_then_merges() {
    let small = "region_split_size = 512\nregion_max_size = 768\nregion_split_check_diff = 64";
    let pd = "[schedule]\nmax_merge_region_size = 128\nsplit_merge_interval = \"1s\"\n\
              merge_timeout = \"10s\"\n";
    let cluster = ScriptCluster::start(small, pd);
    let (report, history) = cluster.region_sim(&[
        "--scenario",
        "grow-shrink",
        "--duration",
        "12",
        "--clients",
        "4",
        "--key-space",
        "300",
        "--peak-regions",
        "10",
    ]);
    let regions = &report["regions"];
    let (peak, last) = (regions["peak"].as_u64().unwrap(), regions["final"].as_u64().unwrap());
    assert!(peak >= 6 && last < peak, "the regions split, then merged: {regions}");
    assert!(report["ops"]["deletes"].as_u64().unwrap() > 0, "{}", report["ops"]);
    // The report's checker knows deletes (this file's stale-read checker does not).
    assert_eq!(report["linearizability"]["violations"].as_u64(), Some(0));
    assert!(history.lines().any(|l| l.contains("\"delete\"")));
}
