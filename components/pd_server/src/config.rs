//! The placement driver's configuration: a TOML file (`--config FILE`) under the flags.

use std::{net::SocketAddr, path::Path, time::Duration};

use pd_client::MemPdConfig;
use serde::{Deserialize, Serialize};

/// Everything `regionstore-pd` can be told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PdConfig {
    /// This member's name, unique among the members (logs, `GetMembers`).
    pub name: String,
    /// Where the gRPC service listens.
    pub addr: String,
    /// The address the other members and clients reach this one at (empty: `addr`).
    pub advertise_addr: String,
    /// etcd's client endpoints (`host:port`).
    pub etcd_endpoints: Vec<String>,
    /// The prefix of every etcd key of this cluster.
    pub root: String,
    /// Time-to-live of the active member's etcd lease, whole seconds: a member that stops
    /// is replaced by a standby about this long later.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Scheduling.
    pub schedule: ScheduleConfig,
}

/// What the placement driver schedules (section `[schedule]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Voters per region: regions with fewer get peers added, one at a time.
    pub max_replicas: usize,
    /// Move leaders from stores leading more regions to stores leading fewer.
    pub balance_leaders: bool,
    /// Transfer a leader only when its store leads this many more regions than the target.
    pub leader_balance_threshold: u64,
    /// Merge small regions into an adjacent one with peers on the same stores.
    pub enable_merge: bool,
    /// A region (source or target) of at most this many bytes may be merged...
    pub max_merge_region_size: u64,
    /// ...and of at most this many keys.
    pub max_merge_region_keys: u64,
    /// A region split less than this long ago is not merged (nor merged into).
    #[serde(with = "humantime_serde")]
    pub split_merge_interval: Duration,
    /// A merge not done this long after it was handed out is given up (and may be tried
    /// again).
    #[serde(with = "humantime_serde")]
    pub merge_timeout: Duration,
}

impl Default for PdConfig {
    fn default() -> Self {
        PdConfig {
            name: "pd".into(),
            addr: "127.0.0.1:2479".into(),
            advertise_addr: String::new(),
            etcd_endpoints: vec!["127.0.0.1:2379".into()],
            root: "/regionstore".into(),
            lease_ttl: Duration::from_secs(3),
            schedule: ScheduleConfig::default(),
        }
    }
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        let merge = MemPdConfig::default();
        ScheduleConfig {
            max_replicas: 3,
            balance_leaders: true,
            leader_balance_threshold: 2,
            enable_merge: true,
            max_merge_region_size: merge.max_merge_region_size,
            max_merge_region_keys: merge.max_merge_region_keys,
            split_merge_interval: merge.split_merge_interval,
            merge_timeout: merge.merge_timeout,
        }
    }
}

/// A configuration that cannot be used, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    /// Not TOML, an unknown key or a wrong type (the message names the key and its line).
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    /// A value that cannot work.
    #[error("{key} {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl PdConfig {
    /// The defaults with what the file at `path` sets (not yet validated).
    pub fn load(path: &Path) -> Result<PdConfig, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: shown.clone(), message: e.to_string() })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: shown,
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// The address others reach this member at.
    pub fn advertised(&self) -> &str {
        if self.advertise_addr.is_empty() {
            &self.addr
        } else {
            &self.advertise_addr
        }
    }

    /// Checks the values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| Err(ConfigError::Invalid { key, reason: reason.into() });
        if self.name.is_empty() {
            return invalid("name", "must not be empty");
        }
        if self.addr.parse::<SocketAddr>().is_err() {
            return invalid("addr", "must be an ip:port to listen on");
        }
        if self
            .advertised()
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return invalid("advertise_addr", "must be host:port");
        }
        if self.etcd_endpoints.is_empty() || self.etcd_endpoints.iter().any(|e| e.is_empty()) {
            return invalid("etcd_endpoints", "must list at least one host:port");
        }
        if !self.root.starts_with('/') || self.root.ends_with('/') {
            return invalid("root", "must start with '/' and not end with it");
        }
        let ttl = self.lease_ttl;
        if ttl < Duration::from_secs(1) || ttl.subsec_nanos() != 0 || ttl > Duration::from_secs(60)
        {
            return invalid("lease_ttl", "must be whole seconds from 1s to 60s");
        }
        if self.schedule.max_replicas == 0 || self.schedule.max_replicas > 7 {
            return invalid("schedule.max_replicas", "must be from 1 to 7");
        }
        if self.schedule.merge_timeout.is_zero() {
            return invalid("schedule.merge_timeout", "must be positive");
        }
        Ok(())
    }

    /// The scheduling part, as the placement driver's logic takes it.
    pub fn mem_pd_config(&self, cluster_id: u64) -> MemPdConfig {
        MemPdConfig {
            cluster_id,
            balance_leaders: self.schedule.balance_leaders,
            leader_balance_threshold: self.schedule.leader_balance_threshold,
            max_replicas: self.schedule.max_replicas,
            enable_merge: self.schedule.enable_merge,
            max_merge_region_size: self.schedule.max_merge_region_size,
            max_merge_region_keys: self.schedule.max_merge_region_keys,
            split_merge_interval: self.schedule.split_merge_interval,
            merge_timeout: self.schedule.merge_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_name_their_key() {
        PdConfig::default().validate().unwrap();
        let bad = |f: fn(&mut PdConfig)| {
            let mut cfg = PdConfig::default();
            f(&mut cfg);
            match cfg.validate() {
                Err(ConfigError::Invalid { key, .. }) => key,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(bad(|c| c.addr = "nowhere".into()), "addr");
        assert_eq!(bad(|c| c.lease_ttl = Duration::from_millis(1500)), "lease_ttl");
        assert_eq!(bad(|c| c.root = "rs".into()), "root");
        assert_eq!(bad(|c| c.etcd_endpoints.clear()), "etcd_endpoints");
        assert_eq!(bad(|c| c.schedule.max_replicas = 0), "schedule.max_replicas");
        let err = toml::from_str::<PdConfig>("lease_tll = \"3s\"").unwrap_err();
        assert!(err.to_string().contains("lease_tll"), "{err}");
    }

    /// The example file lists every key, each at its default.
    #[test]
    fn the_example_file_is_the_defaults() {
        let text = include_str!("../../../etc/regionstore-pd.example.toml");
        let parsed: PdConfig = toml::from_str(text).unwrap();
        assert_eq!(parsed, PdConfig::default());
        let written = toml::to_string(&PdConfig::default()).unwrap();
        let keys = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| !l.starts_with('#') && l.contains(" = "))
                .map(|l| l.split(" = ").next().unwrap().to_string())
                .collect()
        };
        let (mut listed, mut all) = (keys(text), keys(&written));
        listed.sort();
        all.sort();
        assert_eq!(listed, all, "every key is in the example");
    }
}
