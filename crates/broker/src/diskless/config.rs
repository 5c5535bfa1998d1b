//! The `cluster:` section: single-node (the default, the local storage engines) or
//! diskless (batches in object storage, offsets and metadata in PostgreSQL).

use serde::Deserialize;

use crate::config::ConfigError;

/// Shortest commit interval: below it the PostgreSQL transaction per interval, not the
/// data, would be the load.
pub const COMMIT_INTERVAL_MS_MIN: u64 = 1;
/// Longest commit interval: every produce waits this long at worst.
pub const COMMIT_INTERVAL_MS_MAX: u64 = 10_000;
/// Largest object one commit writes (`commit_max_bytes`): an object is built in memory.
pub const COMMIT_MAX_BYTES_MAX: u64 = 256 * 1024 * 1024;
/// Largest fetch cache (`fetch_cache_bytes`).
pub const FETCH_CACHE_BYTES_MAX: u64 = 64 * 1024 * 1024 * 1024;

/// How this broker stores partitions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterMode {
    /// One broker, partitions on its own storage engine (`storage:`).
    #[default]
    Single,
    /// Stateless brokers: batches in `object_store`, offsets, producer state, topics and
    /// groups in the PostgreSQL `coordinator`; any broker serves any partition.
    Diskless,
}

/// `cluster:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `single` (default) or `diskless`.
    pub mode: ClusterMode,
    /// PostgreSQL connection string (`postgres://user:password@host:port/db` or the
    /// key=value form); required in diskless mode.
    pub coordinator: Option<String>,
    /// Where objects go: `s3://bucket/prefix` (endpoint, region and credentials the usual
    /// AWS way: `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, …) or
    /// `file:///shared/dir`; required in diskless mode.
    pub object_store: Option<String>,
    /// How long a broker gathers produce requests into one object before committing it.
    pub commit_interval_ms: u64,
    /// An object is committed early once it holds this many bytes.
    pub commit_max_bytes: u64,
    /// Kafka's `broker.session.timeout.ms`: a broker whose lease is older than this is
    /// dropped from the cluster.
    pub broker_session_timeout_ms: u64,
    /// Kafka's `broker.heartbeat.interval.ms`: how often a broker renews its lease.
    pub broker_heartbeat_interval_ms: u64,
    /// Bytes of object ranges kept in memory for fetches, shared by all of them.
    pub fetch_cache_bytes: u64,
    /// An object uploaded but never committed (its broker died in between) is deleted
    /// after this long; an object no batch refers to any more is deleted after this long
    /// too (fetches in flight may still read it).
    pub object_grace_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            mode: ClusterMode::Single,
            coordinator: None,
            object_store: None,
            commit_interval_ms: 25,
            commit_max_bytes: 8 * 1024 * 1024,
            broker_session_timeout_ms: 9_000,
            broker_heartbeat_interval_ms: 2_000,
            fetch_cache_bytes: 256 * 1024 * 1024,
            object_grace_ms: 10 * 60 * 1000,
        }
    }
}

impl ClusterConfig {
    /// Whether this broker runs diskless.
    pub fn is_diskless(&self) -> bool {
        self.mode == ClusterMode::Diskless
    }

    /// Range checks; connects to nothing.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: String| Err(ConfigError::Invalid { key, problem });
        if !(COMMIT_INTERVAL_MS_MIN..=COMMIT_INTERVAL_MS_MAX).contains(&self.commit_interval_ms) {
            return invalid(
                "cluster.commit_interval_ms",
                format!(
                    "{} is outside {COMMIT_INTERVAL_MS_MIN}..={COMMIT_INTERVAL_MS_MAX}",
                    self.commit_interval_ms
                ),
            );
        }
        if !(1..=COMMIT_MAX_BYTES_MAX).contains(&self.commit_max_bytes) {
            return invalid(
                "cluster.commit_max_bytes",
                format!(
                    "{} is outside 1..={COMMIT_MAX_BYTES_MAX}",
                    self.commit_max_bytes
                ),
            );
        }
        if self.fetch_cache_bytes > FETCH_CACHE_BYTES_MAX {
            return invalid(
                "cluster.fetch_cache_bytes",
                format!(
                    "{} is above {FETCH_CACHE_BYTES_MAX}",
                    self.fetch_cache_bytes
                ),
            );
        }
        if self.broker_heartbeat_interval_ms == 0
            || self.broker_heartbeat_interval_ms >= self.broker_session_timeout_ms
        {
            return invalid(
                "cluster.broker_heartbeat_interval_ms",
                format!(
                    "{} must be above 0 and below broker_session_timeout_ms ({})",
                    self.broker_heartbeat_interval_ms, self.broker_session_timeout_ms
                ),
            );
        }
        if !self.is_diskless() {
            return Ok(());
        }
        match self.coordinator.as_deref() {
            Some(c) if c.parse::<tokio_postgres::Config>().is_ok() => {}
            Some(c) => {
                return invalid(
                    "cluster.coordinator",
                    format!("{:?} is not a PostgreSQL connection string", redact(c)),
                )
            }
            None => {
                return invalid(
                    "cluster.coordinator",
                    "diskless mode needs a PostgreSQL connection string".into(),
                )
            }
        }
        match self.object_store.as_deref() {
            Some(u) => {
                if let Err(e) = super::objects::ObjectStoreUrl::parse(u) {
                    return invalid("cluster.object_store", e);
                }
            }
            None => {
                return invalid(
                    "cluster.object_store",
                    "diskless mode needs `s3://bucket/prefix` or `file:///dir`".into(),
                )
            }
        }
        Ok(())
    }
}

/// A connection string with its password replaced, for messages and logs.
pub fn redact(conn: &str) -> String {
    // URL form: postgres://user:password@host/...
    if let Some((scheme, rest)) = conn.split_once("://") {
        if let Some((userinfo, host)) = rest.split_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
        return conn.to_string();
    }
    // key=value form.
    conn.split_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some(("password", _)) => "password=***".to_string(),
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diskless(coord: &str, store: &str) -> ClusterConfig {
        ClusterConfig {
            mode: ClusterMode::Diskless,
            coordinator: Some(coord.into()),
            object_store: Some(store.into()),
            ..ClusterConfig::default()
        }
    }

    #[test]
    fn single_mode_needs_nothing() {
        ClusterConfig::default().validate().unwrap();
    }

    #[test]
    fn diskless_needs_coordinator_and_store() {
        diskless("postgres://u:p@127.0.0.1:5432/rafka", "file:///tmp/x")
            .validate()
            .unwrap();
        diskless("host=/tmp port=5433 user=rafka", "s3://bucket/prefix")
            .validate()
            .unwrap();
        let mut c = diskless("postgres://127.0.0.1/db", "file:///tmp/x");
        c.coordinator = None;
        assert!(c.validate().is_err());
        let mut c = diskless("postgres://127.0.0.1/db", "file:///tmp/x");
        c.object_store = None;
        assert!(c.validate().is_err());
        assert!(diskless("postgres://127.0.0.1/db", "ftp://x/y")
            .validate()
            .is_err());
        let mut c = diskless("postgres://127.0.0.1/db", "file:///tmp/x");
        c.commit_interval_ms = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn passwords_never_shown() {
        assert_eq!(
            redact("postgres://rafka:secret@db:5432/x"),
            "postgres://rafka:***@db:5432/x"
        );
        assert_eq!(
            redact("host=db password=secret user=r"),
            "host=db password=*** user=r"
        );
    }
}
