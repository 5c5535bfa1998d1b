//! [`StorageConfig`], the `storage:` section of the broker's YAML, and [`open_engine`],
//! which turns it into a running engine.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use rafka_core::limits::BATCH_BYTES_MAX;
use rafka_core::{LogConfig, StorageEngine, StorageError};
use serde::Deserialize;

use crate::log::LogEngine;

/// The `storage:` section. Every key has Kafka's default; unknown keys are an error so a
/// typo never silently falls back to a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Which engine stores partitions: `log` (the default).
    pub storage_type: String,
    /// Root directory of the engine's files.
    pub path: PathBuf,
    /// `log.segment.bytes`: roll the active segment when it would grow past this.
    pub log_segment_bytes: u64,
    /// Roll the active segment when its first batch is older than this (Kafka's `log.roll.ms`).
    pub log_segment_ms: i64,
    /// `log.index.interval.bytes`: bytes between sparse index entries.
    pub log_index_interval_bytes: u32,
    /// `log.retention.ms`: delete segments whose newest record is older (-1: never).
    pub log_retention_ms: i64,
    /// `log.retention.bytes`: delete oldest segments while a partition is larger (-1: never).
    pub log_retention_bytes: i64,
    /// `message.max.bytes`: largest batch accepted; capped by `limits::BATCH_BYTES_MAX`.
    pub message_max_bytes: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        let log = LogConfig::default();
        StorageConfig {
            storage_type: "log".to_string(),
            path: PathBuf::from("./data"),
            log_segment_bytes: log.segment_bytes,
            log_segment_ms: log.segment_ms,
            log_index_interval_bytes: log.index_interval_bytes,
            log_retention_ms: log.retention_ms,
            log_retention_bytes: log.retention_bytes,
            message_max_bytes: log.max_message_bytes,
        }
    }
}

/// Smallest segment accepted: a segment must hold at least one header-sized batch.
const SEGMENT_BYTES_MIN: u64 = 1024;

impl StorageConfig {
    /// Range-checks the values; the message names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.log_segment_bytes < SEGMENT_BYTES_MIN || self.log_segment_bytes > u32::MAX as u64 {
            return Err(format!(
                "log_segment_bytes must be in [{SEGMENT_BYTES_MIN}, {}], got {}",
                u32::MAX,
                self.log_segment_bytes
            ));
        }
        if self.log_segment_ms <= 0 {
            return Err(format!(
                "log_segment_ms must be positive, got {}",
                self.log_segment_ms
            ));
        }
        if self.log_retention_ms < -1 || self.log_retention_bytes < -1 {
            return Err("log_retention_ms and log_retention_bytes must be >= -1".to_string());
        }
        if self.message_max_bytes == 0 || self.message_max_bytes > BATCH_BYTES_MAX {
            return Err(format!(
                "message_max_bytes must be in [1, {BATCH_BYTES_MAX}], got {}",
                self.message_max_bytes
            ));
        }
        Ok(())
    }

    /// The [`LogConfig`] a partition gets when its topic overrides nothing.
    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.log_segment_bytes,
            segment_ms: self.log_segment_ms,
            index_interval_bytes: self.log_index_interval_bytes,
            retention_ms: self.log_retention_ms,
            retention_bytes: self.log_retention_bytes,
            // Config may lower a hard cap, never raise it.
            max_message_bytes: self.message_max_bytes.min(BATCH_BYTES_MAX),
            log_append_time: false,
        }
    }
}

/// Validates `cfg` and opens the engine it names. Only `log` exists so far; any other
/// `storage_type` is an `InvalidInput` I/O error naming the known engines.
pub fn open_engine(cfg: &StorageConfig) -> Result<Arc<dyn StorageEngine>, StorageError> {
    cfg.validate()
        .map_err(|msg| io::Error::new(io::ErrorKind::InvalidInput, format!("storage: {msg}")))?;
    match cfg.storage_type.as_str() {
        "log" => Ok(Arc::new(LogEngine::open(
            cfg.path.clone(),
            cfg.log_config(),
        )?)),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("storage: unknown storage_type {other:?}; known engines: \"log\""),
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> Result<StorageConfig, String> {
        serde_yaml::from_str::<StorageConfig>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_kafkas() {
        let cfg = check("{}").unwrap();
        assert_eq!(cfg, StorageConfig::default());
        assert_eq!(cfg.storage_type, "log");
        assert_eq!(cfg.path, PathBuf::from("./data"));
        assert_eq!(cfg.log_config(), LogConfig::default());
        cfg.validate().unwrap();
    }

    #[test]
    fn keys_override_one_by_one() {
        let cfg =
            check("path: /var/rafka\nlog_segment_bytes: 4096\nlog_retention_bytes: 10\n").unwrap();
        assert_eq!(cfg.path, PathBuf::from("/var/rafka"));
        assert_eq!(cfg.log_config().segment_bytes, 4096);
        assert_eq!(cfg.log_config().retention_bytes, 10);
        assert_eq!(cfg.log_segment_ms, StorageConfig::default().log_segment_ms);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(check("log_segment_byte: 1")
            .unwrap_err()
            .contains("unknown field"));
        let cfg = check("message_max_bytes: 1000000000").unwrap();
        assert!(cfg.validate().unwrap_err().contains("message_max_bytes"));
        let cfg = check("log_segment_bytes: 10").unwrap();
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn open_engine_dispatches_on_storage_type() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = StorageConfig {
            path: dir.path().to_path_buf(),
            ..StorageConfig::default()
        };
        assert_eq!(open_engine(&cfg).unwrap().name(), "log");
        cfg.storage_type = "tape".to_string();
        let err = open_engine(&cfg).err().unwrap().to_string();
        assert!(err.contains("unknown storage_type \"tape\""), "{err}");
    }
}
