//! The README's run command works: `storage-demo` bootstraps, appends, reopens and finds
//! everything again, and a second run on the same data directory continues where it stopped.

use std::process::Command;

fn run(dir: &std::path::Path, entries: u64) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_storage-demo"))
        .args(["--entries", &entries.to_string(), "--data-dir"])
        .arg(dir)
        .output()
        .expect("storage-demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn storage_demo_recovers_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let first = run(dir.path(), 500);
    assert!(first.contains("(5 -> 505)"), "{first}");
    assert!(first.contains("recovery OK"), "{first}");
    let second = run(dir.path(), 300);
    assert!(second.contains("(505 -> 805)"), "{second}");
    assert!(second.contains("last index 805, applied 805"), "{second}");
}

#[test]
fn bad_arguments_fail_cleanly() {
    let out = Command::new(env!("CARGO_BIN_EXE_storage-demo"))
        .arg("--entries")
        .arg("many")
        .output()
        .unwrap();
    assert!(!out.status.success());
}
