//! Operating region-sim: its configuration file, its logs and its metrics endpoint.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

fn region_sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_region-sim"))
}

#[test]
fn a_bad_config_file_exits_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, names) in [
        ("[raftstore]\nraft_heartbeat_tiks = 3\n", "raft_heartbeat_tiks"),
        ("[raftstore]\nraft_base_tick_interval = \"ten\"\n", "raft_base_tick_interval"),
        ("[raftstore]\nraft_election_timeout_ticks = 1\n", "raftstore.raft_election_timeout_ticks"),
        ("[rocksdb]\nmax_background_jobs = 0\n", "max_background_jobs"),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = region_sim().args(["--duration", "0.2", "--config"]).arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text:?} accepted");
        assert!(stderr.contains(names), "{text:?}: stderr does not name `{names}`: {stderr}");
    }
    let out = region_sim().args(["--config", "/nonexistent/regionstore.toml"]).output().unwrap();
    assert!(!out.status.success(), "a missing config file is refused");
}

#[test]
fn a_config_file_sets_the_stores_and_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (config, log) = (dir.path().join("sim.toml"), dir.path().join("sim.log"));
    let text = format!(
        "[log]\nlevel = \"info\"\nfile = {:?}\n[raftstore]\nraft_heartbeat_ticks = 3\n",
        log.to_str().unwrap()
    );
    std::fs::write(&config, text).unwrap();
    let report = dir.path().join("report.json");
    let out = region_sim()
        .args(["--duration", "0.5", "--clients", "2", "--quiet", "--config"])
        .arg(&config)
        .arg("--report-json")
        .arg(&report)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = std::fs::read_to_string(&log).unwrap();
    assert!(lines.contains("INFO"), "the file's level and file are used: {lines}");
    assert!(
        lines.lines().any(|l| l.contains("region_id: ") && l.contains("peer_id: ")),
        "peers log with their region and peer ids"
    );
    // The flag overrides the file.
    let quiet_log = dir.path().join("quiet.log");
    let out = region_sim()
        .args(["--duration", "0.3", "--clients", "1", "--quiet", "--log-level", "error"])
        .arg("--config")
        .arg(&config)
        .arg("--log-file")
        .arg(&quiet_log)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let quiet = std::fs::read_to_string(&quiet_log).unwrap_or_default();
    assert!(!quiet.contains("INFO"), "--log-level error writes no INFO line: {quiet}");
}

/// `GET /metrics` on `addr`, the body.
fn scrape(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.contains(" 200 "), "{head}");
    body.to_string()
}

/// Sums of every sample by metric name and label set without `store`, e.g.
/// `regionstore_proposals_total{kind="write"}`.
fn samples(page: &str) -> HashMap<String, f64> {
    let mut sums = HashMap::new();
    for line in page.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?} in {page}"));
        let key = match series.split_once('{') {
            Some((name, labels)) => {
                let labels: Vec<&str> = labels
                    .trim_end_matches('}')
                    .split(',')
                    .filter(|l| !l.starts_with("store=") && !l.is_empty())
                    .collect();
                if labels.is_empty() {
                    name.to_string()
                } else {
                    format!("{name}{{{}}}", labels.join(","))
                }
            }
            None => series.to_string(),
        };
        *sums.entry(key).or_insert(0.0) += value.parse::<f64>().unwrap();
    }
    sums
}

#[test]
fn the_metrics_endpoint_serves_numbers_that_move() {
    let mut child = region_sim()
        .args(["--duration", "4", "--clients", "2", "--quiet", "--log-level", "off"])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("region-sim prints its address");
        if let Some(url) = line.split("http://").nth(1) {
            break url.trim_end_matches("/metrics").to_string();
        }
    };
    std::thread::sleep(Duration::from_millis(500));
    let first = samples(&scrape(&addr));
    std::thread::sleep(Duration::from_millis(1500));
    let page = scrape(&addr);
    let second = samples(&page);
    assert!(page.contains("store=\""), "samples carry their store: {page}");

    let get = |m: &HashMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    for moving in [
        "regionstore_proposals_total{kind=\"write\"}",
        "regionstore_requests_total{op=\"write\",result=\"ok\"}",
        "regionstore_requests_total{op=\"snapshot\",result=\"ok\"}",
        "regionstore_reads_total{path=\"local\"}",
        "regionstore_raft_messages_sent_total{type=\"MsgAppend\"}",
        "regionstore_raft_append_duration_seconds_count",
        "regionstore_raft_commit_duration_seconds_count",
        "regionstore_apply_duration_seconds_count",
    ] {
        let (a, b) = (get(&first, moving), get(&second, moving));
        assert!(a > 0.0 && b > a, "{moving} does not move: {a} then {b}");
    }
    // Three stores, every region with a peer on each and one leader.
    let peers = get(&second, "regionstore_regions");
    let leaders = get(&second, "regionstore_leaders");
    assert!(peers >= 3.0, "{peers} peers");
    assert!(leaders >= 1.0 && leaders <= peers / 3.0 + 2.0, "{leaders} leaders of {peers} peers");
    assert!(get(&second, "regionstore_leases{state=\"valid\"}") >= 1.0, "leaders hold leases");
    assert!(second.contains_key("regionstore_pending_peers"));
    assert!(second.contains_key("regionstore_local_read_redirects_total{reason=\"no_lease\"}"));
    assert!(child.wait().unwrap().success());
}

/// `--scenario idle`: the regions settle asleep, the report gives the CPU by thread kind and
/// memory per peer, and one store's restart recovers every region it holds.
#[test]
fn the_idle_scenario_reports_sleeping_peers_their_cost_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("idle.json");
    let out = region_sim()
        .args(["--scenario", "idle", "--regions", "20", "--duration", "1", "--quiet"])
        .args(["--split-size", "1152921504606846976", "--merge-size", "0", "--report-json"])
        .arg(&report)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["regions"], 20);
    assert_eq!(r["peers"], 60, "3 replicas of each region: {r}");
    assert!(r["peers_asleep"].as_i64().unwrap() > 0, "idle regions sleep: {r}");
    assert!(r["store_cpu_percent"].as_f64().unwrap() >= 0.0);
    assert!(r["rss_per_peer_bytes"].as_f64().unwrap() > 0.0);
    assert_eq!(r["restart_peers"], 20, "the restarted store holds every region: {r}");
}
