//! The TOML file every binary reads with `--config FILE`, and the logger it describes.
//!
//! A file names only what it changes: each key it leaves out keeps the value of the base the
//! binary starts from (the product defaults, or a simulator's short ticks). Unknown keys,
//! values of the wrong type and values that cannot work are refused with the key and the
//! reason. `etc/regionstore.example.toml` lists every key with its default.

use std::{
    fs::OpenOptions,
    io,
    path::{Path, PathBuf},
    str::FromStr,
};

use engine::rocks::RocksConfig;
use serde::{Deserialize, Serialize};
use slog::{o, Drain, Logger};

/// Everything a configuration file can set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// Where logs go and how much of them.
    pub log: LogConfig,
    /// The store's tuning.
    pub raftstore: raftstore::Config,
    /// The engines' tuning.
    pub rocksdb: RocksConfig,
}

/// Where logs go and how much of them (section `[log]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// The least severe level written.
    pub level: LogLevel,
    /// Append to this file instead of writing to stderr.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// How severe a log message is; a logger writes its level and the more severe ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
    Critical,
    /// Nothing is written.
    Off,
}

impl FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        LogLevel::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(s))
            .map_err(|_| {
                format!("unknown log level `{s}` (trace, debug, info, warn, error, critical, off)")
            })
    }
}

impl LogLevel {
    fn slog(self) -> Option<slog::Level> {
        Some(match self {
            LogLevel::Trace => slog::Level::Trace,
            LogLevel::Debug => slog::Level::Debug,
            LogLevel::Info => slog::Level::Info,
            LogLevel::Warn => slog::Level::Warning,
            LogLevel::Error => slog::Level::Error,
            LogLevel::Critical => slog::Level::Critical,
            LogLevel::Off => return None,
        })
    }
}

/// A configuration that cannot be used, with the file and the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Not TOML, an unknown key, or a value of the wrong type (the message names the key and
    /// its line).
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value that cannot work, named `section.key`.
    #[error("{key} {reason}")]
    Invalid { key: String, reason: String },
}

impl FileConfig {
    /// `base` with what the file at `path` sets, checked.
    pub fn load(path: &Path, base: &FileConfig) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::from_toml(&text, base)
            .map_err(|message| ConfigError::Parse { path: path.into(), message })?
            .validated()
    }

    /// `base` with what the TOML `text` sets, not yet validated. Errors name the key.
    pub fn from_toml(text: &str, base: &FileConfig) -> Result<FileConfig, String> {
        // Parsed on its own first: that checks every key and type with the line at fault.
        toml::from_str::<FileConfig>(text).map_err(|e| e.to_string().trim_end().to_string())?;
        let file: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut merged = toml::Table::try_from(base).map_err(|e| e.to_string())?;
        overlay(&mut merged, file);
        merged.try_into().map_err(|e: toml::de::Error| e.to_string())
    }

    /// Checks the values that parse but cannot work.
    pub fn validated(self) -> Result<FileConfig, ConfigError> {
        self.raftstore.validate().map_err(|e| ConfigError::Invalid {
            key: format!("raftstore.{}", e.field),
            reason: e.reason,
        })?;
        self.rocksdb
            .validate()
            .map_err(|e| ConfigError::Invalid { key: "rocksdb".into(), reason: e.to_string() })?;
        Ok(self)
    }
}

/// Sets in `base` every key that `top` sets, table by table.
fn overlay(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(t)) => overlay(b, t),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// A logger as `cfg` says: plain text lines, to `cfg.file` (appended) or stderr.
pub fn build_logger(cfg: &LogConfig) -> io::Result<Logger> {
    let Some(level) = cfg.level.slog() else {
        return Ok(Logger::root(slog::Discard, o!()));
    };
    let out: Box<dyn io::Write + Send> = match &cfg.file {
        Some(path) => Box::new(OpenOptions::new().create(true).append(true).open(path)?),
        None => Box::new(io::stderr()),
    };
    let drain = slog_term::FullFormat::new(slog_term::PlainSyncDecorator::new(out)).build();
    let logger = Logger::root(drain.filter_level(level).fuse(), o!());
    Ok(logger)
}
