//! The `log` engine: Kafka's segmented log on local disk.
//!
//! Layout: `<root>/<topic>-<partition>/<base offset, 20 digits>.log`, each with a sparse
//! `.index` and `.timeindex`, plus a `log-start-offset` checkpoint per partition, and a
//! `clean-shutdown` marker in the root written by [`StorageEngine::close`] and removed on
//! open. Durability: appends reach the page cache with one positional write; `flush`
//! fdatasyncs the active segment (group commit); a roll syncs the closed segment, its
//! indexes and the directory, so after a crash only the active segment needs checking.

mod header;
mod partition;
mod segment;

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rafka_core::{
    LogConfig, PartitionLog, StorageEngine, StorageError, StorageResult, TopicPartition,
};

pub use partition::LogPartition;

/// Name of the marker file a clean shutdown leaves in the engine root.
pub const CLEAN_SHUTDOWN_MARKER: &str = "clean-shutdown";

/// fsyncs a directory, so entries created, renamed or removed in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Replaces `dir/name` with `bytes` atomically: write a temp file, fsync, rename, fsync dir.
pub(crate) fn write_file_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// The segmented-log storage engine. Thread-safe; partitions are opened on demand and kept
/// open until removed or the engine is closed.
#[derive(Debug)]
pub struct LogEngine {
    root: PathBuf,
    default_config: LogConfig,
    /// Whether the previous run left the clean-shutdown marker: if not, active segments
    /// are CRC-checked when their partition opens.
    clean_start: bool,
    open_partitions: Mutex<HashMap<TopicPartition, Arc<LogPartition>>>,
    closed: AtomicBool,
}

impl LogEngine {
    /// Opens (creating if needed) the engine rooted at `root`. `default_config` is what
    /// [`LogEngine::default_config`] hands out; each partition gets its own at open.
    /// Entries in the root that are not partition directories are skipped with a warning.
    pub fn open(root: PathBuf, default_config: LogConfig) -> StorageResult<LogEngine> {
        fs::create_dir_all(&root)?;
        let marker = root.join(CLEAN_SHUTDOWN_MARKER);
        let clean_start = match fs::remove_file(&marker) {
            Ok(()) => {
                sync_dir(&root)?;
                true
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e.into()),
        };
        for entry in fs::read_dir(&root)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_dir = entry.file_type()?.is_dir();
            if !is_dir || TopicPartition::from_dir_name(&name).is_none() {
                tracing::warn!(root = %root.display(), entry = %name, "skipping an entry that is not a partition directory");
            }
        }
        tracing::info!(root = %root.display(), clean_start, "opened log engine");
        Ok(LogEngine {
            root,
            default_config,
            clean_start,
            open_partitions: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        })
    }

    /// The engine's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The configuration given at open, for partitions without topic overrides.
    pub fn default_config(&self) -> &LogConfig {
        &self.default_config
    }

    /// Whether the previous run shut down cleanly.
    pub fn clean_start(&self) -> bool {
        self.clean_start
    }

    /// Like [`StorageEngine::open`], returning the concrete type (tests and tools use its
    /// extras).
    pub fn open_partition(
        &self,
        tp: &TopicPartition,
        cfg: &LogConfig,
    ) -> StorageResult<Arc<LogPartition>> {
        let mut open = self.open_partitions.lock();
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed(tp.to_string()));
        }
        if let Some(p) = open.get(tp) {
            return Ok(Arc::clone(p));
        }
        let dir = self.root.join(tp.dir_name());
        if !dir.is_dir() {
            fs::create_dir(&dir)?;
            sync_dir(&self.root)?;
        }
        let part = Arc::new(LogPartition::open(
            tp.clone(),
            dir,
            cfg.clone(),
            self.clean_start,
        )?);
        open.insert(tp.clone(), Arc::clone(&part));
        Ok(part)
    }
}

impl StorageEngine for LogEngine {
    fn name(&self) -> &'static str {
        "log"
    }

    fn open(&self, tp: &TopicPartition, cfg: &LogConfig) -> StorageResult<Arc<dyn PartitionLog>> {
        Ok(self.open_partition(tp, cfg)?)
    }

    fn remove(&self, tp: &TopicPartition) -> StorageResult<()> {
        let mut open = self.open_partitions.lock();
        if let Some(p) = open.remove(tp) {
            p.mark_removed();
        }
        match fs::remove_dir_all(self.root.join(tp.dir_name())) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        sync_dir(&self.root)?;
        Ok(())
    }

    fn partitions(&self) -> StorageResult<Vec<TopicPartition>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            if let Some(tp) = TopicPartition::from_dir_name(&entry.file_name().to_string_lossy())
            {
                out.push(tp);
            }
        }
        out.sort();
        Ok(out)
    }

    fn close(&self) -> StorageResult<()> {
        let open = self.open_partitions.lock();
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        for p in open.values() {
            p.close()?;
        }
        write_file_atomically(&self.root, CLEAN_SHUTDOWN_MARKER, b"")?;
        tracing::info!(root = %self.root.display(), "closed log engine cleanly");
        Ok(())
    }
}
