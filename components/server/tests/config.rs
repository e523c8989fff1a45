//! The configuration file: the example lists every key with its default, and bad files are
//! refused with the key at fault.

use std::time::Duration;

use server::config::{ConfigError, FileConfig, LogLevel};

const EXAMPLE: &str = include_str!("../../../etc/regionstore.example.toml");

fn parse(text: &str) -> Result<FileConfig, String> {
    FileConfig::from_toml(text, &FileConfig::default())
}

#[test]
fn the_example_lists_every_key_at_its_default() {
    let example: toml::Table = toml::from_str(EXAMPLE).unwrap();
    let defaults = toml::Table::try_from(FileConfig::default()).unwrap();
    assert_eq!(example, defaults, "etc/regionstore.example.toml differs from the defaults");
    assert_eq!(parse(EXAMPLE).unwrap(), FileConfig::default());
    FileConfig::default().validated().expect("the defaults work");
}

#[test]
fn a_file_changes_only_what_it_names() {
    let mut base = FileConfig::default();
    base.raftstore = raftstore::Config::for_tests();
    let text = "[raftstore]\nraft_heartbeat_ticks = 3\nsnap_send_timeout = \"2s 500ms\"\n\
                [log]\nlevel = \"warn\"\nfile = \"/tmp/x.log\"\n";
    let cfg = FileConfig::from_toml(text, &base).unwrap();
    assert_eq!(cfg.raftstore.raft_heartbeat_ticks, 3);
    assert_eq!(cfg.raftstore.snap_send_timeout, Duration::from_millis(2500));
    assert_eq!(cfg.raftstore.raft_base_tick_interval, Duration::from_millis(10), "from the base");
    assert_eq!(cfg.log.level, LogLevel::Warn);
    assert_eq!(cfg.log.file.as_deref(), Some(std::path::Path::new("/tmp/x.log")));
    assert_eq!(cfg.rocksdb, base.rocksdb);
    assert_eq!(parse("").unwrap(), FileConfig::default(), "an empty file changes nothing");
}

#[test]
fn unknown_keys_and_wrong_types_are_refused_by_name() {
    for (text, names) in [
        ("[raftstore]\nraft_heartbeat_tiks = 3\n", "raft_heartbeat_tiks"),
        ("[raftstor]\n", "raftstor"),
        ("[raftstore]\nraft_heartbeat_ticks = \"3\"\n", "raft_heartbeat_ticks"),
        ("[raftstore]\nraft_base_tick_interval = \"10 parsecs\"\n", "raft_base_tick_interval"),
        ("[raftstore]\nraft_base_tick_interval = 10\n", "raft_base_tick_interval"),
        ("[rocksdb]\ncompression = 1\n", "compression"),
        ("[log]\nlevel = \"loud\"\n", "level"),
        ("[raftstore]\nstore_pool_size = -1\n", "store_pool_size"),
        ("not toml", "not toml"),
    ] {
        let err = parse(text).expect_err(text);
        assert!(err.contains(names), "{text:?}: the error does not name `{names}`: {err}");
    }
}

#[test]
fn values_that_cannot_work_are_refused_by_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        ("[raftstore]\nraft_election_timeout_ticks = 2\n", "raftstore.raft_election_timeout_ticks"),
        (
            "[raftstore]\nraft_store_max_leader_lease = \"10s\"\n",
            "raftstore.raft_store_max_leader_lease",
        ),
        ("[raftstore]\nstore_pool_size = 0\n", "raftstore.store_pool_size"),
        ("[rocksdb]\nmax_write_buffer_number = 1\n", "max_write_buffer_number"),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let err = FileConfig::load(&path, &FileConfig::default()).expect_err(text);
        assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains(key), "{text:?}: {err}");
    }
    let missing = FileConfig::load(&dir.path().join("absent.toml"), &FileConfig::default());
    assert!(matches!(missing, Err(ConfigError::Read { .. })));
}

#[test]
fn log_levels_parse_from_flags() {
    assert_eq!("debug".parse::<LogLevel>(), Ok(LogLevel::Debug));
    assert_eq!("off".parse::<LogLevel>(), Ok(LogLevel::Off));
    assert!("loud".parse::<LogLevel>().unwrap_err().contains("loud"));
}

#[test]
fn a_log_file_receives_the_lines_at_or_above_its_level() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("store.log");
    let cfg = server::config::LogConfig { level: LogLevel::Warn, file: Some(file.clone()) };
    let logger = server::config::build_logger(&cfg).unwrap();
    slog::info!(logger, "quiet"; "region_id" => 7);
    slog::warn!(logger, "loud"; "region_id" => 7);
    drop(logger);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("loud") && text.contains("region_id: 7"), "{text}");
    assert!(!text.contains("quiet"), "{text}");
}
