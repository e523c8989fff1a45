//! The RocksDB engines pass the conformance suite.

use std::sync::Mutex;

use engine::{
    conformance,
    rocks::{RocksConfig, RocksEngine, RocksRaftEngine},
};
use tempfile::TempDir;

/// Opens engines in fresh directories that live as long as the test.
struct Dirs(Mutex<Vec<TempDir>>);

impl Dirs {
    fn fresh(&self) -> std::path::PathBuf {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        self.0.lock().unwrap().push(dir);
        path
    }
}

#[test]
fn rocks_kv_engine_conformance() {
    let dirs = Dirs(Mutex::new(Vec::new()));
    conformance::kv_engine_suite(|| {
        RocksEngine::open(&dirs.fresh(), &RocksConfig::small()).unwrap()
    });
}

#[test]
fn rocks_raft_engine_conformance() {
    let dirs = Dirs(Mutex::new(Vec::new()));
    conformance::raft_engine_suite(|| {
        RocksRaftEngine::open(&dirs.fresh(), &RocksConfig::small()).unwrap()
    });
}
