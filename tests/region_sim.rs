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
    let data = dir.path().join("data");
    let out = region_sim(&[
        "--duration",
        "1.5",
        "--clients",
        "3",
        "--key-space",
        "50",
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
    let leaders: u64 =
        report["stores"].as_array().unwrap().iter().map(|s| s["leaders"].as_u64().unwrap()).sum();
    assert_eq!(leaders, 1, "one region, one leader");
    assert!(report.get("read_paths").is_none(), "features not built are left out");
    assert!(data.join("store-1").is_dir(), "--data-dir keeps the stores' data");

    let text = std::fs::read_to_string(&history).unwrap();
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
    assert_eq!(oks, writes, "the report counts the history's acknowledged writes");
}

#[test]
fn bad_options_are_refused() {
    for args in [
        &["--stores", "0"][..],
        &["--read-ratio", "2"],
        &["--value-size", "3"],
        &["--duration", "-1"],
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
