//! A server or placement driver with a configuration error exits non-zero, naming the key,
//! before it touches anything.

use std::process::Command;

use test_raftstore::processes::{binary, local_config};

fn run(bin: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(binary(bin)).args(args).output().expect("run the binary");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_config_error_exits_non_zero_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[raftstore]\nraft_base_tick_interval = \"0s\"\n", "raftstore.raft_base_tick_interval"),
        ("[raftstore]\nraft_tick = \"1s\"\n", "raft_tick"),
        ("[rocksdb]\nwrite_buffer_size = \"big\"\n", "write_buffer_size"),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let path = path.display().to_string();
        let (ok, err) = run("regionstore-server", &["--config", &path, "--config-check"]);
        assert!(!ok && err.contains(key), "{key}: {err}");
        // Without --config-check too: it exits before reaching for the placement driver.
        let data = dir.path().join("data").display().to_string();
        let args = ["--config", &path, "--pd", "127.0.0.1:1", "--data-dir", &data];
        let (ok, err) = run("regionstore-server", &args);
        assert!(!ok && err.contains(key), "{key}: {err}");
        assert!(!dir.path().join("data").exists(), "nothing was created");
    }
    // A status port in use: refused before the store is touched (or the placement driver).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let status = taken.local_addr().unwrap().to_string();
    let data = dir.path().join("data").display().to_string();
    let args = ["--status-addr", &status, "--pd", "127.0.0.1:1", "--data-dir", &data];
    let (ok, err) = run("regionstore-server", &args);
    assert!(!ok && err.contains("status server"), "{err}");
    assert!(!dir.path().join("data").exists(), "nothing was created");
    let good = local_config().display().to_string();
    assert!(run("regionstore-server", &["--config", &good, "--config-check"]).0);

    let pd_toml = dir.path().join("pd.toml");
    std::fs::write(&pd_toml, "lease_ttl = \"1500ms\"\n").unwrap();
    let (ok, err) =
        run("regionstore-pd", &["--config", &pd_toml.display().to_string(), "--config-check"]);
    assert!(!ok && err.contains("lease_ttl"), "{err}");
    let (ok, err) = run("regionstore-pd", &["--addr", "nowhere", "--config-check"]);
    assert!(!ok && err.contains("addr"), "{err}");
}
