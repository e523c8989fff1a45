//! Engines refuse unusable directories and damaged files with typed errors, never a panic,
//! and keep what was written across a reopen.

use std::fs;

use engine::{
    rocks::{open_engines, RocksConfig, RocksEngine},
    Error, KvEngine, Mutable, Peekable, RaftEngine, RaftLogBatch, WriteOptions,
};

#[test]
fn a_file_where_the_directory_should_be_is_bad_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kv");
    fs::write(&file, b"not a database").unwrap();
    let err = RocksEngine::open(&file, &RocksConfig::small()).unwrap_err();
    assert!(matches!(err, Error::BadPath { .. }), "{err:?}");
}

#[test]
fn invalid_config_is_refused_before_opening() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RocksConfig { max_write_buffer_number: 0, ..RocksConfig::small() };
    let err = RocksEngine::open(dir.path(), &cfg).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing created");
}

#[test]
fn damaged_manifest_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = RocksEngine::open(dir.path(), &RocksConfig::small()).unwrap();
        let mut wb = e.write_batch();
        wb.put(b"zk", b"v").unwrap();
        e.write(&mut wb, WriteOptions::SYNC).unwrap();
    }
    let current = fs::read_to_string(dir.path().join("CURRENT")).unwrap();
    let manifest = dir.path().join(current.trim());
    let len = fs::metadata(&manifest).unwrap().len() as usize;
    fs::write(&manifest, vec![0xAB; len]).unwrap();
    let err = RocksEngine::open(dir.path(), &RocksConfig::small()).unwrap_err();
    assert!(matches!(err, Error::Corruption { .. } | Error::BadPath { .. }), "{err:?}");
}

#[test]
fn current_pointing_nowhere_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(RocksEngine::open(dir.path(), &RocksConfig::small()).unwrap());
    fs::write(dir.path().join("CURRENT"), b"MANIFEST-999999\n").unwrap();
    let err = RocksEngine::open(dir.path(), &RocksConfig::small()).unwrap_err();
    assert!(matches!(err, Error::Corruption { .. } | Error::BadPath { .. }), "{err:?}");
}

#[test]
fn synced_writes_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (kv, raft) = open_engines(dir.path(), &RocksConfig::small()).unwrap();
        let mut wb = kv.write_batch();
        wb.put(b"zk", b"v").unwrap();
        kv.write(&mut wb, WriteOptions::SYNC).unwrap();
        let mut b = raft.log_batch(1);
        b.append(7, &engine::conformance::entries(1, 4, 2)).unwrap();
        raft.consume(&mut b, true).unwrap();
    }
    let (kv, raft) = open_engines(dir.path(), &RocksConfig::small()).unwrap();
    assert_eq!(kv.get_value(b"zk").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(raft.get_entry(7, 3).unwrap().unwrap().term, 2);
}
