//! [`StorageConfig`], the `storage:` section of the broker's YAML, and [`open_engine`],
//! which turns it into a running engine: `log` (default), `memory`, or `rocksdb` (cargo
//! feature `rocksdb`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rafka_core::limits::BATCH_BYTES_MAX;
use rafka_core::{LogConfig, StorageEngine, StorageError};
use serde::Deserialize;

use crate::log::LogEngine;
use crate::memory::{MemoryEngine, MemoryOptions};

/// Every `storage_type` this crate knows, built into this binary or not.
pub const STORAGE_TYPES: [&str; 3] = ["log", "memory", "rocksdb"];

/// The `storage:` section. Every key has Kafka's default; unknown keys are an error so a
/// typo never silently falls back to a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Which engine stores partitions: `log` (the default), `memory` or `rocksdb`.
    pub storage_type: String,
    /// Root directory of the engine's files. Empty (`""`) is allowed for the `memory`
    /// engine only and means nothing is written to disk at all.
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
    /// `memory` engine: bytes of batches held (all partitions) past which produce fails.
    pub memory_max_bytes: u64,
    /// `memory` engine: write a snapshot after this many bytes of write-ahead log.
    pub snapshot_interval_bytes: u64,
    /// `memory` engine: write a snapshot this often (if anything changed).
    pub snapshot_interval_ms: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        let log = LogConfig::default();
        let mem = MemoryOptions::default();
        StorageConfig {
            storage_type: "log".to_string(),
            path: PathBuf::from("./data"),
            log_segment_bytes: log.segment_bytes,
            log_segment_ms: log.segment_ms,
            log_index_interval_bytes: log.index_interval_bytes,
            log_retention_ms: log.retention_ms,
            log_retention_bytes: log.retention_bytes,
            message_max_bytes: log.max_message_bytes,
            memory_max_bytes: mem.max_bytes,
            snapshot_interval_bytes: mem.snapshot_interval_bytes,
            snapshot_interval_ms: mem.snapshot_interval_ms,
        }
    }
}

/// Smallest segment accepted: a segment must hold at least one header-sized batch.
const SEGMENT_BYTES_MIN: u64 = 1024;

impl StorageConfig {
    /// Checks the engine is in this build and range-checks the values; the message names the
    /// offending key. Opens nothing, so a broker can run it before it binds a port.
    pub fn validate(&self) -> Result<(), String> {
        storage_type_in_build(&self.storage_type)?;
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
        if self.memory_max_bytes == 0 {
            return Err("memory_max_bytes must be positive".to_string());
        }
        if self.snapshot_interval_bytes == 0 || self.snapshot_interval_ms == 0 {
            return Err(
                "snapshot_interval_bytes and snapshot_interval_ms must be positive".to_string(),
            );
        }
        if self.path.as_os_str().is_empty() && self.storage_type != "memory" {
            return Err(format!(
                "path must be set for storage_type {:?} (an empty path is for the memory \
                 engine only)",
                self.storage_type
            ));
        }
        Ok(())
    }

    /// Where files beside the engine's (the broker's topic metadata) belong: the data
    /// directory, or `None` for a `memory` engine without a path, which writes nothing.
    pub fn metadata_dir(&self) -> Option<PathBuf> {
        (!self.path.as_os_str().is_empty()).then(|| self.path.clone())
    }

    /// The memory engine's settings.
    pub fn memory_options(&self) -> MemoryOptions {
        MemoryOptions {
            dir: self.metadata_dir(),
            max_bytes: self.memory_max_bytes,
            snapshot_interval_bytes: self.snapshot_interval_bytes,
            snapshot_interval_ms: self.snapshot_interval_ms,
        }
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
            ..LogConfig::default()
        }
    }
}

/// Validates `cfg` and opens the engine it names. An unknown `storage_type`, or `rocksdb`
/// in a build without the `rocksdb` feature, is an `InvalidInput` I/O error that lists
/// the engines and says how to enable RocksDB.
pub fn open_engine(cfg: &StorageConfig) -> Result<Arc<dyn StorageEngine>, StorageError> {
    cfg.validate()
        .map_err(|msg| io::Error::new(io::ErrorKind::InvalidInput, format!("storage: {msg}")))?;
    match cfg.storage_type.as_str() {
        "log" => Ok(Arc::new(LogEngine::open(
            cfg.path.clone(),
            cfg.log_config(),
        )?)),
        "memory" => Ok(Arc::new(MemoryEngine::open(
            cfg.memory_options(),
            cfg.log_config(),
        )?)),
        "rocksdb" => open_rocksdb(&cfg.path, cfg.log_config()),
        // `validate` refused every other name above.
        other => Err(invalid_storage_type(other)),
    }
}

/// Why `storage_type` cannot be opened by this build: an unknown name, or `rocksdb` without
/// the `rocksdb` feature (with how to get it).
fn storage_type_in_build(storage_type: &str) -> Result<(), String> {
    match storage_type {
        "log" | "memory" => Ok(()),
        "rocksdb" if cfg!(feature = "rocksdb") => Ok(()),
        "rocksdb" => Err(format!(
            "storage_type \"rocksdb\" is not in this build; rebuild with \
             `cargo build --features rocksdb` (it links the system's RocksDB: on Debian \
             `apt-get install librocksdb-dev libclang-dev`), or choose \
             one of: {}",
            STORAGE_TYPES
                .iter()
                .filter(|t| **t != "rocksdb")
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        )),
        other => Err(format!(
            "unknown storage_type {other:?}; known engines: {} \
             (rocksdb needs a build with `cargo build --features rocksdb`)",
            STORAGE_TYPES.join(", ")
        )),
    }
}

fn invalid_storage_type(storage_type: &str) -> StorageError {
    let problem = storage_type_in_build(storage_type)
        .err()
        .unwrap_or_default();
    io::Error::new(io::ErrorKind::InvalidInput, format!("storage: {problem}")).into()
}

#[cfg(feature = "rocksdb")]
fn open_rocksdb(path: &Path, defaults: LogConfig) -> Result<Arc<dyn StorageEngine>, StorageError> {
    Ok(Arc::new(crate::rocksdb::RocksEngine::open(
        path.to_path_buf(),
        defaults,
    )?))
}

#[cfg(not(feature = "rocksdb"))]
fn open_rocksdb(_: &Path, _: LogConfig) -> Result<Arc<dyn StorageEngine>, StorageError> {
    Err(invalid_storage_type("rocksdb"))
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
        assert!(err.contains("log, memory, rocksdb"), "{err}");
        assert!(err.contains("--features rocksdb"), "{err}");
        cfg.storage_type = "memory".to_string();
        assert_eq!(open_engine(&cfg).unwrap().name(), "memory");
        cfg.storage_type = "rocksdb".to_string();
        match open_engine(&cfg) {
            #[cfg(feature = "rocksdb")]
            Ok(engine) => assert_eq!(engine.name(), "rocksdb"),
            #[cfg(not(feature = "rocksdb"))]
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("cargo build --features rocksdb"), "{msg}");
                assert!(msg.contains("log, memory"), "{msg}");
            }
            #[allow(unreachable_patterns)]
            other => panic!("unexpected {:?}", other.map(|e| e.name())),
        }
    }

    #[test]
    fn empty_path_means_no_disk_for_memory_only() {
        let mut cfg = check("storage_type: memory\npath: \"\"\n").unwrap();
        assert_eq!(cfg.metadata_dir(), None);
        assert_eq!(cfg.memory_options().dir, None);
        assert_eq!(open_engine(&cfg).unwrap().name(), "memory");
        cfg.storage_type = "log".to_string();
        assert!(cfg.validate().unwrap_err().contains("path must be set"));
        assert_eq!(
            StorageConfig::default().metadata_dir(),
            Some(PathBuf::from("./data"))
        );
    }
}
