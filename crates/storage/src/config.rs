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

/// The `storage:` section: the engine, its directory, the settings every engine honours
/// (retention, largest batch), and one section per engine for its own settings,
/// `log:`, `memory:` and `rocksdb:`, tagged by `storage_type`. Every key has Kafka's
/// default.
///
/// Read from YAML (through the file layout `StorageYaml`), unknown keys are refused so a
/// typo never falls back to a default, and so is a section for an engine other than
/// `storage_type` ([`StorageConfig::validate`]: its settings would do nothing). The flat
/// keys of the engine settings from before the sections (`log_segment_bytes`,
/// `memory_max_bytes`, ...) still work: each sets its section's key, a file giving both with
/// different values is refused, and one for another engine is accepted (files copied from
/// the old default configuration carry all of them) and named in a warning when the engine
/// opens. Built from Rust, every field is simply what it says.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "StorageYaml")]
pub struct StorageConfig {
    /// Which engine stores partitions: `log` (the default), `memory` or `rocksdb`.
    pub storage_type: String,
    /// Root directory of the engine's files. Empty (`""`) is allowed for the `memory`
    /// engine only and means nothing is written to disk at all.
    pub path: PathBuf,
    /// `log.retention.ms`: delete data whose newest record is older (-1: never).
    pub log_retention_ms: i64,
    /// `log.retention.bytes`: delete the oldest data while a partition is larger (-1: never).
    pub log_retention_bytes: i64,
    /// `message.max.bytes`: largest batch accepted; capped by `limits::BATCH_BYTES_MAX`.
    pub message_max_bytes: usize,
    /// `log:` — settings of the `log` engine.
    pub log: LogSection,
    /// `memory:` — settings of the `memory` engine.
    pub memory: MemorySection,
    /// `rocksdb:` — settings of the `rocksdb` engine.
    pub rocksdb: RocksdbSection,
    /// Which engine settings the file wrote, and how; empty when built from Rust.
    written: Written,
}

/// `storage.log:` — settings only the `log` engine honours (the defaults of the topic
/// configs `segment.bytes`, `segment.ms`, `index.interval.bytes` and `preallocate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSection {
    /// `log.segment.bytes`: roll the active segment when it would grow past this.
    pub segment_bytes: u64,
    /// `log.roll.ms`: roll the active segment when its first batch is older than this.
    pub segment_ms: i64,
    /// `log.index.interval.bytes`: bytes between sparse index entries.
    pub index_interval_bytes: u32,
    /// `log.preallocate`: reserve `segment.bytes` of disk when a segment takes its first
    /// append. Off by default, as in Kafka: each active segment would hold a whole
    /// segment's blocks (1 GiB by default) however little it stores.
    pub preallocate: bool,
    /// Segment files kept open, all partitions together (Rafka's own: Kafka keeps every
    /// segment open); the least recently used are closed and reopened when next used.
    pub max_open_files: usize,
}

/// `storage.memory:` — settings of the `memory` engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySection {
    /// Bytes of batches held (all partitions) past which produce fails.
    pub max_bytes: u64,
    /// Write a snapshot after this many bytes of write-ahead log.
    pub snapshot_interval_bytes: u64,
    /// Write a snapshot this often (if anything changed).
    pub snapshot_interval_ms: u64,
}

/// `storage.rocksdb:` — settings of the `rocksdb` engine. It has none yet: the section is
/// accepted (empty) with `storage_type: rocksdb` so that settings have a place to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RocksdbSection {}

impl Default for LogSection {
    fn default() -> Self {
        let log = LogConfig::default();
        LogSection {
            segment_bytes: log.segment_bytes,
            segment_ms: log.segment_ms,
            index_interval_bytes: log.index_interval_bytes,
            preallocate: log.preallocate,
            max_open_files: crate::log::MAX_OPEN_FILES_DEFAULT,
        }
    }
}

impl Default for MemorySection {
    fn default() -> Self {
        let mem = MemoryOptions::default();
        MemorySection {
            max_bytes: mem.max_bytes,
            snapshot_interval_bytes: mem.snapshot_interval_bytes,
            snapshot_interval_ms: mem.snapshot_interval_ms,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        let log = LogConfig::default();
        StorageConfig {
            storage_type: "log".to_string(),
            path: PathBuf::from("./data"),
            log_retention_ms: log.retention_ms,
            log_retention_bytes: log.retention_bytes,
            message_max_bytes: log.max_message_bytes,
            log: LogSection::default(),
            memory: MemorySection::default(),
            rocksdb: RocksdbSection::default(),
            written: Written::default(),
        }
    }
}

/// One engine setting: the engine it belongs to, its key in that engine's section and
/// the flat key it had before the sections, both as written from the top of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EngineKey {
    /// The `storage_type` that honours it.
    engine: &'static str,
    /// `storage.<engine>.<name>`.
    key: &'static str,
    /// `storage.<flat name>`, the spelling from before the per-engine sections.
    flat_key: &'static str,
}

/// Every engine setting, with its flat key from before the per-engine sections.
#[cfg(test)]
const ENGINE_KEYS: [EngineKey; 6] = [
    SEGMENT_BYTES,
    SEGMENT_MS,
    INDEX_INTERVAL_BYTES,
    MAX_BYTES,
    SNAPSHOT_INTERVAL_BYTES,
    SNAPSHOT_INTERVAL_MS,
];

const SEGMENT_BYTES: EngineKey = EngineKey {
    engine: "log",
    key: "storage.log.segment_bytes",
    flat_key: "storage.log_segment_bytes",
};
const SEGMENT_MS: EngineKey = EngineKey {
    engine: "log",
    key: "storage.log.segment_ms",
    flat_key: "storage.log_segment_ms",
};
const INDEX_INTERVAL_BYTES: EngineKey = EngineKey {
    engine: "log",
    key: "storage.log.index_interval_bytes",
    flat_key: "storage.log_index_interval_bytes",
};
const MAX_BYTES: EngineKey = EngineKey {
    engine: "memory",
    key: "storage.memory.max_bytes",
    flat_key: "storage.memory_max_bytes",
};
const SNAPSHOT_INTERVAL_BYTES: EngineKey = EngineKey {
    engine: "memory",
    key: "storage.memory.snapshot_interval_bytes",
    flat_key: "storage.snapshot_interval_bytes",
};
const SNAPSHOT_INTERVAL_MS: EngineKey = EngineKey {
    engine: "memory",
    key: "storage.memory.snapshot_interval_ms",
    flat_key: "storage.snapshot_interval_ms",
};

/// What a file wrote of the engine settings. The checks that depend on `storage_type` run
/// in [`StorageConfig::validate`], not at parse time, because the command line
/// (`--storage-type`) may change the engine after the file is read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Written {
    /// Engine sections present (`storage.log`, ...), with the engine each is for.
    sections: Vec<(&'static str, &'static str)>,
    /// Engine settings given by their flat key.
    flat_keys: Vec<EngineKey>,
}

/// Why a `storage:` section was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfigError {
    /// The offending key, dotted from the top of the file (`storage.log.segment_bytes`).
    pub key: &'static str,
    /// What is wrong, naming every key involved.
    pub problem: String,
}

impl std::fmt::Display for StorageConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

impl std::error::Error for StorageConfigError {}

/// `storage:` as the file lays it out: what was written, before defaults and flat keys are
/// resolved into a [`StorageConfig`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct StorageYaml {
    storage_type: String,
    path: PathBuf,
    log_retention_ms: i64,
    log_retention_bytes: i64,
    message_max_bytes: usize,
    log: Option<LogSectionYaml>,
    memory: Option<MemorySectionYaml>,
    rocksdb: Option<RocksdbSectionYaml>,
    // The flat keys from before the per-engine sections.
    log_segment_bytes: Option<u64>,
    log_segment_ms: Option<i64>,
    log_index_interval_bytes: Option<u32>,
    memory_max_bytes: Option<u64>,
    snapshot_interval_bytes: Option<u64>,
    snapshot_interval_ms: Option<u64>,
}

impl Default for StorageYaml {
    fn default() -> Self {
        let d = StorageConfig::default();
        StorageYaml {
            storage_type: d.storage_type,
            path: d.path,
            log_retention_ms: d.log_retention_ms,
            log_retention_bytes: d.log_retention_bytes,
            message_max_bytes: d.message_max_bytes,
            log: None,
            memory: None,
            rocksdb: None,
            log_segment_bytes: None,
            log_segment_ms: None,
            log_index_interval_bytes: None,
            memory_max_bytes: None,
            snapshot_interval_bytes: None,
            snapshot_interval_ms: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LogSectionYaml {
    segment_bytes: Option<u64>,
    segment_ms: Option<i64>,
    index_interval_bytes: Option<u32>,
    // New with the sections: it has no flat spelling.
    preallocate: Option<bool>,
    max_open_files: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct MemorySectionYaml {
    max_bytes: Option<u64>,
    snapshot_interval_bytes: Option<u64>,
    snapshot_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RocksdbSectionYaml {}

/// The value of one engine setting: from its section, else from its flat key, else
/// `default`; both given with different values is an error naming both keys.
fn resolve<T: Copy + PartialEq + std::fmt::Display>(
    k: EngineKey,
    in_section: Option<T>,
    flat: Option<T>,
    default: T,
    written: &mut Written,
) -> Result<T, StorageConfigError> {
    if flat.is_some() && in_section.is_none() {
        written.flat_keys.push(k);
    }
    match (in_section, flat) {
        (Some(a), Some(b)) if a != b => Err(StorageConfigError {
            key: k.key,
            problem: format!(
                "{a} here, but {} (the same setting, spelled as before the per-engine \
                 sections) is {b}; write it once",
                k.flat_key
            ),
        }),
        (Some(v), _) | (None, Some(v)) => Ok(v),
        (None, None) => Ok(default),
    }
}

impl TryFrom<StorageYaml> for StorageConfig {
    type Error = StorageConfigError;

    fn try_from(y: StorageYaml) -> Result<Self, Self::Error> {
        let mut written = Written::default();
        if y.log.is_some() {
            written.sections.push(("storage.log", "log"));
        }
        if y.memory.is_some() {
            written.sections.push(("storage.memory", "memory"));
        }
        if y.rocksdb.is_some() {
            written.sections.push(("storage.rocksdb", "rocksdb"));
        }
        let (log, mem) = (y.log.unwrap_or_default(), y.memory.unwrap_or_default());
        let (dlog, dmem) = (LogSection::default(), MemorySection::default());
        let w = &mut written;
        let log = LogSection {
            segment_bytes: resolve(
                SEGMENT_BYTES,
                log.segment_bytes,
                y.log_segment_bytes,
                dlog.segment_bytes,
                w,
            )?,
            segment_ms: resolve(
                SEGMENT_MS,
                log.segment_ms,
                y.log_segment_ms,
                dlog.segment_ms,
                w,
            )?,
            index_interval_bytes: resolve(
                INDEX_INTERVAL_BYTES,
                log.index_interval_bytes,
                y.log_index_interval_bytes,
                dlog.index_interval_bytes,
                w,
            )?,
            preallocate: log.preallocate.unwrap_or(dlog.preallocate),
            max_open_files: log.max_open_files.unwrap_or(dlog.max_open_files),
        };
        let memory = MemorySection {
            max_bytes: resolve(
                MAX_BYTES,
                mem.max_bytes,
                y.memory_max_bytes,
                dmem.max_bytes,
                w,
            )?,
            snapshot_interval_bytes: resolve(
                SNAPSHOT_INTERVAL_BYTES,
                mem.snapshot_interval_bytes,
                y.snapshot_interval_bytes,
                dmem.snapshot_interval_bytes,
                w,
            )?,
            snapshot_interval_ms: resolve(
                SNAPSHOT_INTERVAL_MS,
                mem.snapshot_interval_ms,
                y.snapshot_interval_ms,
                dmem.snapshot_interval_ms,
                w,
            )?,
        };
        Ok(StorageConfig {
            storage_type: y.storage_type,
            path: y.path,
            log_retention_ms: y.log_retention_ms,
            log_retention_bytes: y.log_retention_bytes,
            message_max_bytes: y.message_max_bytes,
            log,
            memory,
            rocksdb: RocksdbSection {},
            written,
        })
    }
}

/// Smallest segment accepted: a segment must hold at least one header-sized batch.
const SEGMENT_BYTES_MIN: u64 = 1024;
/// Bounds of `storage.log.max_open_files`: a few files open per partition written at
/// once (the active segment, a reader's older one); at most what a process may open.
const MAX_OPEN_FILES_MIN: usize = 16;
const MAX_OPEN_FILES_MAX: usize = 1 << 20;

impl StorageConfig {
    /// Checks the engine is in this build, that the file wrote no section for another
    /// engine, and the values' ranges; the error names the offending key as the file spells
    /// it. Opens nothing, so a broker can run it before it binds a port.
    pub fn validate(&self) -> Result<(), StorageConfigError> {
        let invalid = |key, problem| Err(StorageConfigError { key, problem });
        if let Err(problem) = storage_type_in_build(&self.storage_type) {
            return invalid("storage.storage_type", problem);
        }
        if let Some(&(section, engine)) = self
            .written
            .sections
            .iter()
            .find(|(_, engine)| *engine != self.storage_type)
        {
            return invalid(
                section,
                format!(
                    "settings of the {engine} engine, but storage_type is {:?}, so they \
                     would do nothing; remove the section or set storage_type: {engine}",
                    self.storage_type
                ),
            );
        }
        let (log, mem) = (&self.log, &self.memory);
        if log.segment_bytes < SEGMENT_BYTES_MIN || log.segment_bytes > u32::MAX as u64 {
            return invalid(
                self.spelling(SEGMENT_BYTES),
                format!(
                    "must be in [{SEGMENT_BYTES_MIN}, {}], got {}",
                    u32::MAX,
                    log.segment_bytes
                ),
            );
        }
        if !(MAX_OPEN_FILES_MIN..=MAX_OPEN_FILES_MAX).contains(&log.max_open_files) {
            return invalid(
                "storage.log.max_open_files",
                format!(
                    "must be in [{MAX_OPEN_FILES_MIN}, {MAX_OPEN_FILES_MAX}], got {}",
                    log.max_open_files
                ),
            );
        }
        if log.segment_ms <= 0 {
            return invalid(
                self.spelling(SEGMENT_MS),
                format!("must be positive, got {}", log.segment_ms),
            );
        }
        if self.log_retention_ms < -1 {
            return invalid(
                "storage.log_retention_ms",
                format!("must be >= -1, got {}", self.log_retention_ms),
            );
        }
        if self.log_retention_bytes < -1 {
            return invalid(
                "storage.log_retention_bytes",
                format!("must be >= -1, got {}", self.log_retention_bytes),
            );
        }
        if self.message_max_bytes == 0 || self.message_max_bytes > BATCH_BYTES_MAX {
            return invalid(
                "storage.message_max_bytes",
                format!(
                    "must be in [1, {BATCH_BYTES_MAX}], got {}",
                    self.message_max_bytes
                ),
            );
        }
        for (k, value) in [
            (MAX_BYTES, mem.max_bytes),
            (SNAPSHOT_INTERVAL_BYTES, mem.snapshot_interval_bytes),
            (SNAPSHOT_INTERVAL_MS, mem.snapshot_interval_ms),
        ] {
            if value == 0 {
                return invalid(self.spelling(k), "must be positive".to_string());
            }
        }
        if self.path.as_os_str().is_empty() && self.storage_type != "memory" {
            return invalid(
                "storage.path",
                format!(
                    "path must be set for storage_type {:?} (an empty path is for the memory \
                     engine only)",
                    self.storage_type
                ),
            );
        }
        Ok(())
    }

    /// The key of `k` as the file wrote it: the flat key if that is how it came, else its
    /// key in the engine's section.
    fn spelling(&self, k: EngineKey) -> &'static str {
        if self.written.flat_keys.contains(&k) {
            k.flat_key
        } else {
            k.key
        }
    }

    /// The flat keys the file wrote for an engine other than `storage_type`: accepted, and
    /// ignored by the engine that runs.
    pub fn ignored_flat_keys(&self) -> Vec<&'static str> {
        self.written
            .flat_keys
            .iter()
            .filter(|k| k.engine != self.storage_type)
            .map(|k| k.flat_key)
            .collect()
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
            max_bytes: self.memory.max_bytes,
            snapshot_interval_bytes: self.memory.snapshot_interval_bytes,
            snapshot_interval_ms: self.memory.snapshot_interval_ms,
        }
    }

    /// The [`LogConfig`] a partition gets when its topic overrides nothing.
    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.log.segment_bytes,
            segment_ms: self.log.segment_ms,
            index_interval_bytes: self.log.index_interval_bytes,
            preallocate: self.log.preallocate,
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
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let ignored = cfg.ignored_flat_keys();
    if !ignored.is_empty() {
        tracing::warn!(
            storage_type = %cfg.storage_type,
            keys = %ignored.join(", "),
            "ignoring storage settings of other engines; engine settings now go in the \
             engine's own section (storage.log, storage.memory, storage.rocksdb)"
        );
    }
    match cfg.storage_type.as_str() {
        "log" => Ok(Arc::new(LogEngine::open_with_max_open_files(
            cfg.path.clone(),
            cfg.log_config(),
            cfg.log.max_open_files,
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
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("storage.storage_type: {problem}"),
    )
    .into()
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
    use proptest::prelude::*;

    use super::*;

    fn check(yaml: &str) -> Result<StorageConfig, String> {
        serde_yaml::from_str::<StorageConfig>(yaml).map_err(|e| e.to_string())
    }

    /// Parses and validates; the error as the broker would print it.
    fn check_valid(yaml: &str) -> Result<StorageConfig, String> {
        let cfg = check(yaml)?;
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    /// The engines this build can open.
    fn engines_in_build() -> Vec<&'static str> {
        STORAGE_TYPES
            .into_iter()
            .filter(|t| storage_type_in_build(t).is_ok())
            .collect()
    }

    #[test]
    fn defaults_are_kafkas() {
        let cfg = check("{}").unwrap();
        assert_eq!(cfg, StorageConfig::default());
        assert_eq!(cfg.storage_type, "log");
        assert_eq!(cfg.path, PathBuf::from("./data"));
        assert_eq!(cfg.log_config(), LogConfig::default());
        assert_eq!(cfg.log, LogSection::default());
        assert_eq!(cfg.memory, MemorySection::default());
        assert!(cfg.ignored_flat_keys().is_empty());
        cfg.validate().unwrap();
    }

    #[test]
    fn keys_override_one_by_one() {
        let cfg =
            check("path: /var/rafka\nlog_segment_bytes: 4096\nlog_retention_bytes: 10\n").unwrap();
        assert_eq!(cfg.path, PathBuf::from("/var/rafka"));
        assert_eq!(cfg.log_config().segment_bytes, 4096);
        assert_eq!(cfg.log_config().retention_bytes, 10);
        assert_eq!(cfg.log.segment_ms, LogSection::default().segment_ms);
    }

    #[test]
    fn engine_sections_set_their_engines_settings() {
        let cfg = check_valid(
            "storage_type: log\nlog:\n  segment_bytes: 4096\n  segment_ms: 60000\n  \
             index_interval_bytes: 512\n  preallocate: true\n",
        )
        .unwrap();
        let log = cfg.log_config();
        assert_eq!(
            (
                log.segment_bytes,
                log.segment_ms,
                log.index_interval_bytes,
                log.preallocate
            ),
            (4096, 60000, 512, true)
        );
        assert!(!StorageConfig::default().log_config().preallocate);
        let cfg = check_valid(
            "storage_type: memory\nmemory: {max_bytes: 1000, snapshot_interval_bytes: 2000, \
             snapshot_interval_ms: 3000}\n",
        )
        .unwrap();
        let o = cfg.memory_options();
        assert_eq!(
            (
                o.max_bytes,
                o.snapshot_interval_bytes,
                o.snapshot_interval_ms
            ),
            (1000, 2000, 3000)
        );
        assert_eq!(o.dir, Some(PathBuf::from("./data")));
        // A section without keys (only comments below it) is no section at all.
        let cfg = check_valid("storage_type: log\nmemory:\nrocksdb:\n").unwrap();
        assert_eq!(cfg, StorageConfig::default());
        let cfg = check("storage_type: rocksdb\nrocksdb: {}\n").unwrap();
        let result = cfg.validate().map_err(|e| e.key);
        let expected = if cfg!(feature = "rocksdb") {
            Ok(())
        } else {
            Err("storage.storage_type")
        };
        assert_eq!(result, expected);
    }

    #[test]
    fn flat_keys_from_before_the_sections_still_work() {
        let old = "log_segment_bytes: 4096\nlog_segment_ms: 60000\nlog_index_interval_bytes: 512\n\
                   memory_max_bytes: 1000\nsnapshot_interval_bytes: 2000\n\
                   snapshot_interval_ms: 3000\n";
        for engine in engines_in_build() {
            let cfg = check_valid(&format!("storage_type: {engine}\n{old}")).unwrap();
            assert_eq!(
                cfg.log,
                LogSection {
                    segment_bytes: 4096,
                    segment_ms: 60000,
                    index_interval_bytes: 512,
                    preallocate: false,
                    max_open_files: crate::log::MAX_OPEN_FILES_DEFAULT,
                }
            );
            assert_eq!(
                cfg.memory,
                MemorySection {
                    max_bytes: 1000,
                    snapshot_interval_bytes: 2000,
                    snapshot_interval_ms: 3000
                }
            );
            // The ones for other engines are accepted, and reported for the warning.
            let ignored: Vec<&str> = ENGINE_KEYS
                .iter()
                .filter(|k| k.engine != engine)
                .map(|k| k.flat_key)
                .collect();
            assert_eq!(cfg.ignored_flat_keys(), ignored, "{engine}");
        }
        // The same value under both spellings is no conflict.
        let cfg = check_valid("log_segment_bytes: 4096\nlog:\n  segment_bytes: 4096\n").unwrap();
        assert_eq!(cfg.log.segment_bytes, 4096);
    }

    #[test]
    fn a_flat_key_and_its_section_key_with_different_values_are_refused_naming_both() {
        for k in ENGINE_KEYS {
            let (section, name) = k.key["storage.".len()..].split_once('.').unwrap();
            let flat = &k.flat_key["storage.".len()..];
            let yaml =
                format!("storage_type: {section}\n{flat}: 2000\n{section}:\n  {name}: 3000\n");
            let err = check(&yaml).unwrap_err();
            assert!(err.contains(k.key), "{err}");
            assert!(err.contains(k.flat_key), "{err}");
            assert!(err.contains("2000") && err.contains("3000"), "{err}");
        }
    }

    #[test]
    fn a_section_for_another_engine_is_refused_naming_it() {
        for selected in STORAGE_TYPES {
            for (other, yaml) in [
                ("log", "log:\n  segment_bytes: 4096\n"),
                ("memory", "memory: {max_bytes: 4096}\n"),
                ("rocksdb", "rocksdb: {}\n"),
            ] {
                let cfg = check(&format!("storage_type: {selected}\n{yaml}")).unwrap();
                let result = cfg.validate();
                if other == selected {
                    if storage_type_in_build(selected).is_ok() {
                        result.unwrap();
                    }
                    continue;
                }
                let err = result.unwrap_err();
                if storage_type_in_build(selected).is_err() {
                    assert_eq!(err.key, "storage.storage_type");
                    continue;
                }
                let section = format!("storage.{other}");
                assert_eq!(err.key, section);
                let msg = err.to_string();
                assert!(
                    msg.contains(&format!("storage_type is {selected:?}")),
                    "{msg}"
                );
                assert!(msg.contains(&format!("storage_type: {other}")), "{msg}");
            }
        }
        // The engine may change after the file is read (`--storage-type`): checked then.
        let mut cfg = check_valid("storage_type: log\nlog: {segment_bytes: 4096}\n").unwrap();
        cfg.storage_type = "memory".to_string();
        assert_eq!(cfg.validate().unwrap_err().key, "storage.log");
        // Set from Rust, a field of another engine's section is simply unused.
        let cfg = StorageConfig {
            storage_type: "memory".to_string(),
            log: LogSection {
                segment_bytes: 4096,
                ..LogSection::default()
            },
            ..StorageConfig::default()
        };
        cfg.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_refused_naming_them() {
        for (yaml, key) in [
            ("log_segment_byte: 1\n", "log_segment_byte"),
            ("log:\n  segment_byte: 1\n", "segment_byte"),
            // Retention applies to every engine: it stays at the storage level.
            ("log:\n  retention_ms: 1\n", "retention_ms"),
            ("memory:\n  memory_max_bytes: 1\n", "memory_max_bytes"),
            ("rocksdb:\n  max_open_files: 1\n", "max_open_files"),
            ("tape: {}\n", "tape"),
        ] {
            let err = check(yaml).unwrap_err();
            assert!(err.contains("unknown field"), "{yaml}: {err}");
            assert!(err.contains(&format!("`{key}`")), "{yaml}: {err}");
        }
    }

    #[test]
    fn bad_values_are_refused_naming_the_key_as_written() {
        for (yaml, key) in [
            (
                "message_max_bytes: 1000000000\n",
                "storage.message_max_bytes",
            ),
            ("log_segment_bytes: 10\n", "storage.log_segment_bytes"),
            ("log: {segment_bytes: 10}\n", "storage.log.segment_bytes"),
            ("log: {segment_ms: 0}\n", "storage.log.segment_ms"),
            ("log: {max_open_files: 3}\n", "storage.log.max_open_files"),
            ("log_segment_ms: -5\n", "storage.log_segment_ms"),
            ("log_retention_ms: -2\n", "storage.log_retention_ms"),
            ("log_retention_bytes: -2\n", "storage.log_retention_bytes"),
            ("memory_max_bytes: 0\n", "storage.memory_max_bytes"),
            ("snapshot_interval_ms: 0\n", "storage.snapshot_interval_ms"),
            (
                "storage_type: memory\nmemory: {snapshot_interval_bytes: 0}\n",
                "storage.memory.snapshot_interval_bytes",
            ),
            ("storage_type: tape\n", "storage.storage_type"),
        ] {
            let err = check(yaml).unwrap().validate().unwrap_err();
            assert_eq!(err.key, key, "{yaml}: {err}");
            assert!(err.to_string().starts_with(key), "{err}");
        }
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
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("path must be set"));
        assert_eq!(
            StorageConfig::default().metadata_dir(),
            Some(PathBuf::from("./data"))
        );
    }

    /// The `storage:` section of a YAML file.
    fn storage_section(text: &str) -> Result<StorageConfig, String> {
        let mut file: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let storage = file
            .get_mut("storage")
            .map(std::mem::take)
            .unwrap_or_default();
        serde_yaml::from_value(storage).map_err(|e| e.to_string())
    }

    /// `text` with the commented-out section `  # <engine>:` of the `storage:` section
    /// uncommented, as a user would.
    fn uncomment_section(text: &str, engine: &str) -> String {
        let head = format!("  # {engine}:");
        let mut out = Vec::new();
        let mut inside = false;
        for line in text.lines() {
            if line.starts_with(&head) {
                inside = true;
            } else if inside && !line.starts_with("  #   ") {
                inside = false;
            }
            out.push(if inside {
                format!("  {}", &line["  # ".len()..])
            } else {
                line.to_string()
            });
        }
        out.join("\n")
    }

    /// The shipped file works with every engine this build has, as `--storage-type` uses
    /// it; and each engine section it shows commented out is real and holds the defaults.
    #[test]
    fn the_shipped_config_file_works_with_every_engine() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/config.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let mut cfg = storage_section(&text).unwrap();
        assert_eq!(cfg, StorageConfig::default());
        for engine in engines_in_build() {
            cfg.storage_type = engine.to_string();
            cfg.validate().unwrap();
        }
        for engine in STORAGE_TYPES {
            let text = uncomment_section(&text, engine);
            let mut cfg = storage_section(&text).unwrap_or_else(|e| panic!("{engine}: {e}"));
            let sections: Vec<&str> = cfg.written.sections.iter().map(|(_, e)| *e).collect();
            assert_eq!(sections, [engine]);
            assert_eq!(cfg.log, LogSection::default());
            assert_eq!(cfg.memory, MemorySection::default());
            if storage_type_in_build(engine).is_ok() {
                cfg.storage_type = engine.to_string();
                cfg.validate().unwrap();
            }
        }
    }

    /// The `storage:` section of `config/config.yaml` before the per-engine sections: files
    /// copied from it keep working, whichever engine they name.
    const SHIPPED_BEFORE_SECTIONS: &str = "storage:
  storage_type: log
  path: ./data
  log_segment_bytes: 1073741824
  log_segment_ms: 604800000
  log_index_interval_bytes: 4096
  log_retention_ms: 604800000
  log_retention_bytes: -1
  message_max_bytes: 1048588
  memory_max_bytes: 1073741824
  snapshot_interval_bytes: 268435456
  snapshot_interval_ms: 300000
";

    #[test]
    fn the_old_shipped_storage_section_still_works_with_every_engine() {
        let mut cfg = storage_section(SHIPPED_BEFORE_SECTIONS).unwrap();
        assert_eq!(cfg.log_config(), StorageConfig::default().log_config());
        assert_eq!(
            cfg.memory_options(),
            StorageConfig::default().memory_options()
        );
        for engine in engines_in_build() {
            cfg.storage_type = engine.to_string();
            cfg.validate().unwrap();
            assert_eq!(
                cfg.ignored_flat_keys().len(),
                ENGINE_KEYS.iter().filter(|k| k.engine != engine).count()
            );
        }
    }

    /// How one engine setting is written in a generated file.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Place {
        Absent,
        Section,
        Flat,
        /// Under both spellings, with the same value.
        Both,
    }

    /// A valid `storage:` section: YAML text and what each engine setting should come out as.
    #[derive(Debug, Clone)]
    struct GoodFile {
        yaml: String,
        storage_type: &'static str,
        /// Per `ENGINE_KEYS` entry: the value written, or `None` (the default applies).
        values: Vec<Option<u64>>,
        /// The flat keys written for other engines.
        ignored: Vec<&'static str>,
    }

    fn engine_value(k: EngineKey) -> BoxedStrategy<u64> {
        match k.key {
            "storage.log.segment_bytes" => (SEGMENT_BYTES_MIN..=u32::MAX as u64).boxed(),
            "storage.log.segment_ms" => (1..=i64::MAX as u64).boxed(),
            "storage.log.index_interval_bytes" => (0..=u32::MAX as u64).boxed(),
            _ => (1..=u64::MAX).boxed(),
        }
    }

    fn place() -> impl Strategy<Value = Place> {
        prop_oneof![
            Just(Place::Absent),
            Just(Place::Section),
            Just(Place::Flat),
            Just(Place::Both)
        ]
    }

    prop_compose! {
        fn good_file()(
            storage_type in proptest::sample::select(engines_in_build()),
            path in proptest::sample::select(vec!["./data", "/var/lib/rafka", "data dir", ""]),
            retention_ms in proptest::option::of(-1i64..=i64::MAX),
            retention_bytes in proptest::option::of(-1i64..=i64::MAX),
            message_max_bytes in proptest::option::of(1..=BATCH_BYTES_MAX),
            settings in ENGINE_KEYS.map(|k| (place(), engine_value(k))),
            empty_section in any::<bool>(),
            order in any::<bool>(),
        ) -> GoodFile {
            let mut top = vec![format!("storage_type: {storage_type}")];
            if !path.is_empty() || storage_type == "memory" {
                top.push(format!("path: {path:?}"));
            }
            if let Some(v) = retention_ms {
                top.push(format!("log_retention_ms: {v}"));
            }
            if let Some(v) = retention_bytes {
                top.push(format!("log_retention_bytes: {v}"));
            }
            if let Some(v) = message_max_bytes {
                top.push(format!("message_max_bytes: {v}"));
            }
            let mut section = Vec::new();
            let mut values = Vec::new();
            let mut ignored = Vec::new();
            for (k, (mut place, value)) in ENGINE_KEYS.into_iter().zip(settings) {
                // Only the selected engine may have a section; another engine's setting can
                // only come by its flat key.
                if k.engine != storage_type && matches!(place, Place::Section | Place::Both) {
                    place = Place::Flat;
                }
                let name = k.key.rsplit('.').next().unwrap();
                let flat = &k.flat_key["storage.".len()..];
                if matches!(place, Place::Section | Place::Both) {
                    section.push(format!("  {name}: {value}"));
                }
                if matches!(place, Place::Flat | Place::Both) {
                    top.push(format!("{flat}: {value}"));
                    if k.engine != storage_type {
                        ignored.push(k.flat_key);
                    }
                }
                values.push((place != Place::Absent).then_some(value));
            }
            if !section.is_empty() || empty_section {
                let body = if section.is_empty() {
                    " {}".to_string()
                } else {
                    format!("\n{}", section.join("\n"))
                };
                let block = format!("{storage_type}:{body}");
                if order {
                    top.insert(0, block);
                } else {
                    top.push(block);
                }
            }
            GoodFile {
                yaml: top.join("\n") + "\n",
                storage_type,
                values,
                ignored,
            }
        }
    }

    proptest! {
        /// Mirror of the refusals above: every valid combination of engine, seed keys,
        /// per-engine section and old flat keys parses, validates and means what it says.
        #[test]
        fn every_valid_storage_section_is_accepted(f in good_file()) {
            let cfg = check_valid(&f.yaml).map_err(|e| TestCaseError::fail(format!("{}\n{e}", f.yaml)))?;
            prop_assert_eq!(cfg.storage_type.as_str(), f.storage_type);
            let d = StorageConfig::default();
            let got = [
                cfg.log.segment_bytes,
                cfg.log.segment_ms as u64,
                cfg.log.index_interval_bytes as u64,
                cfg.memory.max_bytes,
                cfg.memory.snapshot_interval_bytes,
                cfg.memory.snapshot_interval_ms,
            ];
            let default = [
                d.log.segment_bytes,
                d.log.segment_ms as u64,
                d.log.index_interval_bytes as u64,
                d.memory.max_bytes,
                d.memory.snapshot_interval_bytes,
                d.memory.snapshot_interval_ms,
            ];
            for i in 0..ENGINE_KEYS.len() {
                prop_assert_eq!(got[i], f.values[i].unwrap_or(default[i]), "{}", ENGINE_KEYS[i].key);
            }
            prop_assert_eq!(cfg.ignored_flat_keys(), f.ignored);
            let log = cfg.log_config();
            prop_assert_eq!(log.segment_bytes, cfg.log.segment_bytes);
            prop_assert_eq!(log.max_message_bytes, cfg.message_max_bytes);
            prop_assert_eq!(cfg.memory_options().max_bytes, cfg.memory.max_bytes);
        }

        /// The refusal itself on the same inputs: adding a section for another engine to a
        /// valid file makes it invalid, and the error names that section.
        #[test]
        fn a_valid_file_plus_another_engines_section_is_refused(
            f in good_file(),
            other in proptest::sample::select(STORAGE_TYPES.to_vec()),
        ) {
            prop_assume!(other != f.storage_type);
            let yaml = format!("{}{other}: {{}}\n", f.yaml);
            let err = check(&yaml).unwrap().validate().unwrap_err();
            prop_assert_eq!(err.key, format!("storage.{other}"));
        }
    }
}
