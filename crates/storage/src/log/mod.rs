//! The `log` engine: Kafka's segmented log on local disk.
//!
//! Layout: `<root>/<topic>-<partition>/<base offset, 20 digits>.log`, each with a sparse
//! `.index` and `.timeindex` and its aborted transactions in a `.txnindex`, plus a
//! `log-start-offset` checkpoint and the newest `<offset>.snapshot` (the broker's producer
//! state) per partition, and a
//! `clean-shutdown` marker in the root written by [`StorageEngine::close`] and removed on
//! open. Durability: appends reach the page cache with one positional write; `flush`
//! fdatasyncs the active segment (group commit); a roll syncs the closed segment, its
//! indexes and the directory, so after a crash only the active segment needs checking.
//!
//! Files: this one is the engine (open, partitions, close and the clean-shutdown marker);
//! `partition.rs` one partition ([`LogPartition`]: append, read, offsets, truncation,
//! retention, `flush`); `recovery.rs` start-up (the clean-shutdown check, and per
//! partition the segment scan that cuts the active segment at its first bad batch);
//! `cleaner.rs` compaction (dedupe map, cleaned segments, the crash-safe swap and its
//! completion at start-up); `segment.rs` one segment and its indexes; `txn_index.rs` the
//! per-segment aborted-transaction index (`.txnindex`); `producer_snapshot.rs` the
//! broker's producer-state snapshots (`<offset>.snapshot`); `header.rs` the batch header
//! fields the log reads; `read_buf.rs` pooled read buffers.

mod cleaner;
mod header;
mod open_files;
mod partition;
mod producer_snapshot;
mod read_buf;
mod recovery;
mod segment;
mod txn_index;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rafka_core::{
    LogConfig, PartitionLog, StorageEngine, StorageError, StorageResult, TopicPartition,
};

use crate::durable::{sync_dir, write_file_atomically};
pub use cleaner::{SwapStep, SWAP_STEPS};
pub use open_files::{OpenFiles, MAX_OPEN_FILES_DEFAULT};
pub use partition::LogPartition;

/// Name of the marker file a clean shutdown leaves in the engine root.
pub const CLEAN_SHUTDOWN_MARKER: &str = "clean-shutdown";

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
    /// The bound on open segment files, all partitions together.
    files: Arc<OpenFiles>,
}

impl LogEngine {
    /// Opens (creating if needed) the engine rooted at `root`. `default_config` is what
    /// [`LogEngine::default_config`] hands out; each partition gets its own at open.
    /// Entries in the root that are not partition directories are skipped with a warning.
    pub fn open(root: PathBuf, default_config: LogConfig) -> StorageResult<LogEngine> {
        Self::open_with_max_open_files(root, default_config, MAX_OPEN_FILES_DEFAULT)
    }

    /// [`LogEngine::open`] keeping at most `max_open_files` segment files open
    /// (`storage.log.max_open_files`; see [`OpenFiles`]).
    pub fn open_with_max_open_files(
        root: PathBuf,
        default_config: LogConfig,
        max_open_files: usize,
    ) -> StorageResult<LogEngine> {
        fs::create_dir_all(&root)?;
        let clean_start = recovery::clean_start(&root)?;
        tracing::info!(root = %root.display(), clean_start, max_open_files, "opened log engine");
        Ok(LogEngine {
            root,
            default_config,
            clean_start,
            open_partitions: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            files: OpenFiles::new(max_open_files),
        })
    }

    /// The engine's bound on open segment files and what it holds.
    pub fn open_files(&self) -> &Arc<OpenFiles> {
        &self.files
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
        // The new directory's entry is synced by the partition's first flush or roll.
        let created = !dir.is_dir();
        if created {
            fs::create_dir(&dir)?;
        }
        let part = Arc::new(LogPartition::open(
            tp.clone(),
            dir,
            cfg.clone(),
            self.clean_start,
            created,
            Arc::clone(&self.files),
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
            if let Some(tp) = TopicPartition::from_dir_name(&entry.file_name().to_string_lossy()) {
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;
    use crate::conformance::{batch, batches, read_all, tp};
    use rafka_core::{Offset, Timestamp};

    fn make(dir: &Path) -> Arc<dyn StorageEngine> {
        Arc::new(LogEngine::open(dir.to_path_buf(), LogConfig::default()).unwrap())
    }

    mod conformance {
        use super::make;
        crate::conformance_tests!(make);
    }

    /// A crash at each step of a compaction's swap (files left as that step leaves them):
    /// the reopened log holds either the old segments or the cleaned one, the model holds,
    /// and no cleaned or swap file remains.
    #[test]
    fn a_crash_at_any_swap_step_recovers_old_or_new() {
        use crate::conformance::CompactionModel;
        use rafka_core::{CompactionPlan, PartitionLog};
        for step in SWAP_STEPS {
            let dir = tempfile::tempdir().unwrap();
            let cfg = LogConfig {
                segment_bytes: 1200,
                retention_ms: -1,
                ..small()
            };
            let mut model = CompactionModel::default();
            let end = {
                let (engine, log) = check_open(dir.path(), &cfg);
                for i in 0..60 {
                    let recs: Vec<(String, Option<String>)> = (0..3)
                        .map(|j| (format!("k{}", (i * 3 + j) % 7), Some(format!("v{i}-{j}"))))
                        .collect();
                    model.produce(log.as_ref(), &recs, 1_000 + i);
                }
                assert!(log.n_segments() > 3);
                let plan = CompactionPlan {
                    first_dirty: Offset(0),
                    end: log.log_end_offset(),
                    now: Timestamp(10_000),
                    min_compaction_lag_ms: 0,
                    delete_retention_ms: 0,
                    dedupe_buffer_bytes: 1 << 20,
                    codec: rafka_core::CompactionCodec::none(),
                };
                let err = log.compact_until(&plan, Some(step)).unwrap_err();
                assert!(err.to_string().contains("injected"), "{err}");
                let end = log.log_end_offset();
                drop(log);
                drop(engine); // no close: an unclean stop
                end
            };
            let (_engine, log) = check_open(dir.path(), &cfg);
            assert_eq!(log.log_end_offset(), end, "step {step:?}");
            let n = model.check(log.as_ref(), Offset(0));
            let pdir = dir.path().join("t-0");
            let stray: Vec<_> = fs::read_dir(&pdir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
                .collect();
            assert!(stray.is_empty(), "step {step:?}: {stray:?}");
            if step >= SwapStep::Committed {
                assert!(
                    n < 180,
                    "step {step:?}: committed swap not completed ({n} records)"
                );
            } else {
                assert_eq!(
                    n, 180,
                    "step {step:?}: uncommitted swap must leave the old data"
                );
            }
        }
    }

    fn small() -> LogConfig {
        LogConfig {
            segment_bytes: 2048,
            index_interval_bytes: 256,
            ..LogConfig::default()
        }
    }

    /// Opens engine + partition `t-0` under `dir`.
    fn check_open(dir: &Path, cfg: &LogConfig) -> (LogEngine, Arc<LogPartition>) {
        let engine = LogEngine::open(dir.to_path_buf(), cfg.clone()).unwrap();
        let log = engine.open_partition(&tp("t", 0), cfg).unwrap();
        (engine, log)
    }

    fn files(dir: &Path, ext: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(&format!(".{ext}")))
            .collect();
        v.sort();
        v
    }

    fn active_segment(dir: &Path) -> PathBuf {
        dir.join(files(dir, "log").pop().unwrap())
    }

    #[test]
    fn rolls_by_size_with_kafka_file_names() {
        let dir = tempfile::tempdir().unwrap();
        let (_engine, log) = check_open(dir.path(), &small());
        for i in 0..20 {
            log.append(batch(1, i, 400)).unwrap();
        }
        let pdir = dir.path().join("t-0");
        let logs = files(&pdir, "log");
        assert!(logs.len() > 3, "{logs:?}");
        assert_eq!(logs[0], "00000000000000000000.log");
        assert_eq!(files(&pdir, "index").len(), logs.len());
        assert_eq!(files(&pdir, "timeindex").len(), logs.len());
        for name in &logs {
            assert!(fs::metadata(pdir.join(name)).unwrap().len() <= 2048);
        }
        assert_eq!(log.n_segments(), logs.len());
        assert_eq!(read_all(log.as_ref(), Offset(0)).len(), 20);
    }

    #[test]
    fn rolls_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            segment_ms: 0,
            ..LogConfig::default()
        };
        let (_engine, log) = check_open(dir.path(), &cfg);
        for i in 0..3 {
            log.append(batch(1, i, 10)).unwrap();
        }
        assert_eq!(log.n_segments(), 3);
    }

    #[test]
    fn clean_shutdown_marker_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _log) = check_open(dir.path(), &small());
        assert!(!engine.clean_start());
        engine.close().unwrap();
        assert!(dir.path().join(CLEAN_SHUTDOWN_MARKER).exists());
        let (engine, _log) = check_open(dir.path(), &small());
        assert!(engine.clean_start());
        assert!(!dir.path().join(CLEAN_SHUTDOWN_MARKER).exists());
        assert!(matches!(
            engine.open_partition(&tp("u", 0), &small()).map(|_| ()),
            Ok(())
        ));
    }

    /// Appends `n` batches, drops the engine without close, damages the active segment
    /// with `damage(path, len_before)`, reopens; returns the reopened log.
    fn crash_with(
        dir: &Path,
        n: i64,
        damage: impl FnOnce(&Path, u64),
    ) -> (LogEngine, Arc<LogPartition>, Vec<u64>) {
        let mut ends = Vec::new();
        {
            let (_engine, log) = check_open(dir, &small());
            for i in 0..n {
                log.append(batch(1 + (i as usize % 3), i, 150)).unwrap();
                let seg = active_segment(&dir.join("t-0"));
                ends.push(fs::metadata(seg).unwrap().len());
            }
        }
        let seg = active_segment(&dir.join("t-0"));
        damage(&seg, fs::metadata(&seg).unwrap().len());
        let (engine, log) = check_open(dir, &small());
        (engine, log, ends)
    }

    /// `preallocate`: blocks are reserved past the end of the active segment (its length
    /// stays the bytes written), given back when it rolls and at close, and a zero-filled
    /// tail (preallocated blocks whose data never reached the disk before a crash) is cut
    /// by recovery like any torn tail.
    #[test]
    fn preallocated_segments_keep_their_length_and_give_blocks_back() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            segment_bytes: 64 * 1024,
            preallocate: true,
            ..small()
        };
        let pdir = dir.path().join("t-0");
        let allocated = |p: &Path| fs::metadata(p).unwrap().blocks() * 512;
        {
            let (engine, log) = check_open(dir.path(), &cfg);
            log.append(batch(2, 0, 300)).unwrap();
            let seg = active_segment(&pdir);
            let len = fs::metadata(&seg).unwrap().len();
            assert!(len < 1000, "the file holds only what was written: {len}");
            assert!(
                allocated(&seg) >= 64 * 1024,
                "{} bytes allocated",
                allocated(&seg)
            );
            for i in 1..200 {
                log.append(batch(2, i, 300)).unwrap();
            }
            let logs = files(&pdir, "log");
            assert!(logs.len() >= 3, "{logs:?}");
            // Blocks for the bytes written, rounded up to pages, and no more.
            let spare =
                |p: &Path| allocated(p) > fs::metadata(p).unwrap().len().div_ceil(4096) * 4096;
            for name in &logs[..logs.len() - 1] {
                assert!(
                    !spare(&pdir.join(name)),
                    "{name}: a rolled segment gives its spare blocks back"
                );
            }
            assert!(
                spare(&active_segment(&pdir)),
                "the active segment holds spare blocks"
            );
            assert_eq!(read_all(log.as_ref(), Offset(0)).len(), 200);
            engine.close().unwrap();
            assert!(
                !spare(&active_segment(&pdir)),
                "close gives the spare blocks back"
            );
        }
        // A crash after preallocated blocks got a length but not their data: zeros.
        let end = {
            let (_engine, log) = check_open(dir.path(), &cfg);
            log.append(batch(1, 0, 100)).unwrap();
            log.log_end_offset()
        };
        let seg = active_segment(&pdir);
        let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
        let len = f.metadata().unwrap().len();
        f.set_len(len + 8192).unwrap();
        let (_engine, log) = check_open(dir.path(), &cfg);
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(
            fs::metadata(&seg).unwrap().len(),
            len,
            "the zero tail is cut"
        );
        let info = log.append(batch(1, 0, 1)).unwrap();
        assert_eq!(info.base_offset, end);
        assert_eq!(read_all(log.as_ref(), Offset(0)).len(), 202);
    }

    #[test]
    fn corrupt_tail_is_cut_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let (_engine, log, _) = crash_with(dir.path(), 12, |seg, len| {
            let f = fs::OpenOptions::new().write(true).open(seg).unwrap();
            f.write_all_at(&[0xff; 3], len - 3).unwrap();
        });
        // Batches are 1..3 records; 12 batches hold 24 records, the last one (3 records) is bad.
        assert_eq!(log.log_end_offset(), Offset(21));
        let all = read_all(log.as_ref(), Offset(0));
        assert_eq!(all.len(), 11);
        let info = log.append(batch(1, 0, 1)).unwrap();
        assert_eq!(info.base_offset, Offset(21));
        assert_eq!(batches(&log.read(Offset(21), 1).unwrap().records).len(), 1);
    }

    /// Found by the `log_recovery` fuzz target: a negative batch length in the torn tail
    /// overflowed `position + size` while recovery counted the batches it cut (a panic
    /// with overflow checks, a wrap without them).
    #[test]
    fn a_negative_batch_length_in_the_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (_engine, log, _) = crash_with(dir.path(), 12, |seg, _| {
            let bytes = fs::read(seg).unwrap();
            let mut last = 0;
            let mut pos = 0;
            while pos + 12 <= bytes.len() {
                last = pos;
                let len = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap());
                pos += 12 + len as usize;
            }
            let f = fs::OpenOptions::new().write(true).open(seg).unwrap();
            f.write_all_at(&(-1i32).to_be_bytes(), last as u64 + 8)
                .unwrap();
        });
        // As with any damaged last batch: it is cut, the 11 before it stay.
        assert_eq!(log.log_end_offset(), Offset(21));
        assert_eq!(read_all(log.as_ref(), Offset(0)).len(), 11);
        assert_eq!(log.append(batch(1, 0, 1)).unwrap().base_offset, Offset(21));
    }

    #[test]
    fn half_written_batch_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (_engine, log, _) = crash_with(dir.path(), 12, |seg, len| {
            let f = fs::OpenOptions::new().write(true).open(seg).unwrap();
            // The last batch (3 records, 150-byte values) is well over 200 bytes.
            f.set_len(len - 200).unwrap();
        });
        assert_eq!(log.log_end_offset(), Offset(21));
        assert_eq!(read_all(log.as_ref(), Offset(0)).len(), 11);
        assert_eq!(log.append(batch(2, 0, 1)).unwrap().base_offset, Offset(21));
        assert_eq!(log.log_end_offset(), Offset(23));
    }

    #[test]
    fn garbage_at_start_of_active_segment_empties_it() {
        let dir = tempfile::tempdir().unwrap();
        let (_engine, log, _) = crash_with(dir.path(), 1, |seg, _| {
            let f = fs::OpenOptions::new().write(true).open(seg).unwrap();
            f.write_all_at(&[7u8; 100], 0).unwrap();
        });
        assert_eq!(log.log_end_offset(), Offset(0));
        assert_eq!(log.size_bytes(), 0);
        assert_eq!(log.append(batch(1, 0, 1)).unwrap().base_offset, Offset(0));
    }

    #[test]
    fn empty_partition_dir_and_junk_in_root_open_fine() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("t-0")).unwrap();
        fs::create_dir(dir.path().join("not a partition")).unwrap();
        fs::write(dir.path().join("junk.txt"), b"junk").unwrap();
        fs::write(dir.path().join("t-0").join("stray.bin"), b"?").unwrap();
        let (engine, log) = check_open(dir.path(), &small());
        assert_eq!(log.log_end_offset(), Offset(0));
        assert_eq!(engine.partitions().unwrap(), vec![tp("t", 0)]);
        log.append(batch(1, 0, 1)).unwrap();
    }

    #[test]
    fn log_start_is_checkpointed_and_old_segments_deleted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_engine, log) = check_open(dir.path(), &small());
            for i in 0..30 {
                log.append(batch(1, i, 400)).unwrap();
            }
            let before = log.n_segments();
            log.delete_before(Offset(17)).unwrap();
            assert!(log.n_segments() < before);
            // Dropped without close: the checkpoint alone must carry the log start.
        }
        let pdir = dir.path().join("t-0");
        assert_eq!(
            fs::read_to_string(pdir.join(partition::LOG_START_CHECKPOINT)).unwrap(),
            "17"
        );
        let (_engine, log) = check_open(dir.path(), &small());
        assert_eq!(log.log_start_offset(), Offset(17));
        assert_eq!(log.log_end_offset(), Offset(30));
        let first = files(&pdir, "log").remove(0);
        let base: i64 = first.trim_end_matches(".log").parse().unwrap();
        assert!(base <= 17 && base > 0, "{first}");
    }

    #[test]
    fn closed_segment_indexes_survive_reopen_and_bad_ones_are_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (engine, log) = check_open(dir.path(), &small());
            for i in 0..30 {
                log.append(batch(1, 1000 + i, 300)).unwrap();
            }
            engine.close().unwrap();
        }
        let pdir = dir.path().join("t-0");
        // Damage one closed segment's index: it must be rebuilt from the log.
        let idx = files(&pdir, "index").remove(0);
        fs::write(pdir.join(idx), [0xffu8; 8]).unwrap();
        let (_engine, log) = check_open(dir.path(), &small());
        for from in 0..30 {
            let r = log.read(Offset(from), 1).unwrap();
            assert_eq!(batches(&r.records)[0].base_offset(), Offset(from));
        }
        assert_eq!(
            log.offset_for_timestamp(Timestamp(1010)).unwrap(),
            Some((Offset(10), Timestamp(1010)))
        );
        assert_eq!(
            log.max_timestamp().unwrap(),
            Some((Offset(29), Timestamp(1029)))
        );
    }

    #[test]
    fn flush_is_group_committed() {
        let dir = tempfile::tempdir().unwrap();
        let (_engine, log) = check_open(dir.path(), &LogConfig::default());
        log.flush().unwrap();
        assert_eq!(log.n_flush_syncs(), 0, "nothing to sync");
        log.append(batch(1, 0, 1)).unwrap();
        log.append(batch(1, 0, 1)).unwrap();
        log.flush().unwrap();
        log.flush().unwrap();
        assert_eq!(log.n_flush_syncs(), 1, "one sync covers both appends");
        std::thread::scope(|s| {
            for _ in 0..8 {
                let log = Arc::clone(&log);
                s.spawn(move || {
                    for _ in 0..20 {
                        log.append(batch(1, 0, 1)).unwrap();
                        log.flush().unwrap();
                    }
                });
            }
        });
        assert!(log.n_flush_syncs() <= 1 + 160);
    }

    /// Every segment gets a `.txnindex`; a closed one that goes missing or is damaged is
    /// rebuilt from the log at open with the same entries; a crash that cuts the tail
    /// drops the entries of the markers it cut.
    #[test]
    fn txn_indexes_are_rebuilt_when_missing_and_cut_with_the_tail() {
        use crate::conformance::append_transactions;
        use rafka_core::PartitionLog;
        let dir = tempfile::tempdir().unwrap();
        let pdir = dir.path().join("t-0");
        let all = {
            let (engine, log) = check_open(dir.path(), &small());
            let all = append_transactions(log.as_ref(), 30, 200);
            assert!(log.n_segments() > 4);
            engine.close().unwrap();
            all
        };
        assert_eq!(files(&pdir, "txnindex").len(), files(&pdir, "log").len());
        let aborted = |log: &LogPartition| log.aborted_txns(Offset(0), Offset(i64::MAX)).unwrap();
        // One closed index lost, another damaged.
        let idx = files(&pdir, "txnindex");
        fs::remove_file(pdir.join(&idx[1])).unwrap();
        let with_entries = idx
            .iter()
            .find(|n| fs::metadata(pdir.join(n)).unwrap().len() > 0 && *n != &idx[1])
            .unwrap();
        let mut bytes = fs::read(pdir.join(with_entries)).unwrap();
        bytes[5] ^= 0x10;
        fs::write(pdir.join(with_entries), bytes).unwrap();
        {
            let (_engine, log) = check_open(dir.path(), &small());
            assert_eq!(aborted(&log), all);
        }
        assert_eq!(files(&pdir, "txnindex").len(), files(&pdir, "log").len());
        // Reopened with the rebuilt files: no rebuild needed, same entries.
        let (engine, log) = check_open(dir.path(), &small());
        assert_eq!(aborted(&log), all);
        // A crash that tears the last batch (the last transaction's marker, an abort).
        let more = append_transactions(log.as_ref(), 1, 10);
        assert_eq!(more.len(), 1);
        log.flush().unwrap();
        let end = log.log_end_offset();
        drop(log);
        drop(engine);
        let seg = active_segment(&pdir);
        let len = fs::metadata(&seg).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (_engine, log) = check_open(dir.path(), &small());
        assert_eq!(log.log_end_offset(), end.plus(-1));
        assert_eq!(aborted(&log), all, "the cut marker's entry is gone");
    }

    /// Compaction keeps the aborted transactions whose markers it keeps, in the cleaned
    /// segment's `.txnindex`, through the swap and a restart.
    #[test]
    fn compaction_keeps_the_aborted_transactions() {
        use crate::conformance::append_transactions;
        use rafka_core::{CompactionPlan, PartitionLog};
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            retention_ms: -1,
            ..small()
        };
        let (engine, log) = check_open(dir.path(), &cfg);
        // Transactions between plain records of one key, which compaction removes (all but
        // the last): every closed segment is rewritten and swapped in.
        let mut all = Vec::new();
        for i in 0..20 {
            log.append(batch(1, i, 500)).unwrap();
            all.extend(append_transactions(log.as_ref(), 2, 20));
        }
        for i in 0..6 {
            log.append(batch(1, i, 500)).unwrap();
        }
        let before = log.n_segments();
        let plan = CompactionPlan {
            first_dirty: Offset(0),
            end: log.log_end_offset(),
            now: Timestamp(10_000),
            min_compaction_lag_ms: 0,
            delete_retention_ms: 0,
            dedupe_buffer_bytes: 1 << 20,
            codec: rafka_core::CompactionCodec::none(),
        };
        let stats = log.compact(&plan).unwrap();
        assert!(stats.batches_removed >= 19, "{stats:?}");
        assert_eq!(
            log.n_segments(),
            before,
            "each segment was rewritten in place"
        );
        assert_eq!(log.aborted_txns(Offset(0), Offset(i64::MAX)).unwrap(), all);
        let pdir = dir.path().join("t-0");
        assert_eq!(files(&pdir, "txnindex").len(), files(&pdir, "log").len());
        engine.close().unwrap();
        drop(log);
        let (_engine, log) = check_open(dir.path(), &cfg);
        assert_eq!(log.aborted_txns(Offset(0), Offset(i64::MAX)).unwrap(), all);
    }

    /// With a bound of 16 open segment files, 200 partitions (several segments each) are
    /// written in an interleaved order and read back record by record, across a
    /// compaction's swap and an unclean stop: the cache never holds more than 16 files,
    /// files are closed and reopened as needed, a read holding a file the cache closed
    /// still reads it, and every record is recovered.
    #[test]
    fn many_partitions_under_a_small_open_file_bound() {
        use rafka_core::PartitionLog;
        const BOUND: usize = 16;
        const N: i32 = 200;
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            segment_bytes: 1200,
            ..small()
        };
        let open = |dir: &Path| {
            LogEngine::open_with_max_open_files(dir.to_path_buf(), cfg.clone(), BOUND).unwrap()
        };
        let engine = open(dir.path());
        let logs: Vec<_> = (0..N)
            .map(|p| engine.open_partition(&tp("many", p), &cfg).unwrap())
            .collect();
        assert!(engine.open_files().n_open() <= BOUND);
        // A region read taken now keeps its file through all that follows.
        logs[0].append(batch(1, 7, 100)).unwrap();
        let held = logs[0].read_region(Offset(0), 1 << 20).unwrap().unwrap();
        let mut next: Vec<i64> = (0..N).map(|p| i64::from(p == 0)).collect();
        for round in 0..6i64 {
            for (p, log) in logs.iter().enumerate() {
                let info = log.append(batch(2, round * 1000 + p as i64, 300)).unwrap();
                assert_eq!(info.base_offset, Offset(next[p]));
                next[p] += 2;
                assert!(engine.open_files().n_open() <= BOUND);
            }
        }
        assert!(logs[5].n_segments() > 2, "several segments per partition");
        let (opened, closed) = engine.open_files().n_opened_closed();
        assert!(
            closed > 1000,
            "files were closed to keep the bound: {opened} / {closed}"
        );
        // Every batch of every partition in order; the compacted one keeps its last.
        let check_all = |logs: &[Arc<LogPartition>], compacted: Option<usize>| {
            for (p, log) in logs.iter().enumerate() {
                let all = read_all(log.as_ref(), Offset(0));
                let mut ts: Vec<i64> = (0..6).map(|r| r * 1000 + p as i64).collect();
                if p == 0 {
                    ts.insert(0, 7);
                }
                let got: Vec<i64> = all.iter().map(|b| b.base_timestamp().0).collect();
                if compacted == Some(p) {
                    assert!(got.len() < ts.len(), "{got:?}");
                    assert_eq!(got.last(), ts.last());
                } else {
                    assert_eq!(got, ts, "partition {p}");
                }
                for off in 0..log.log_end_offset().0 {
                    let r = log.read(Offset(off), 1).unwrap();
                    assert!(batches(&r.records)[0].next_offset() > Offset(off));
                }
            }
        };
        check_all(&logs, None);
        assert!(engine.open_files().n_open() <= BOUND);
        assert_eq!(
            region_bytes(&held),
            read_all(logs[0].as_ref(), Offset(0))[0].as_bytes().to_vec(),
            "a read in flight keeps its file"
        );
        // A compaction's cleaned segment is reopened by its final name after the swap.
        let plan = rafka_core::CompactionPlan {
            first_dirty: Offset(0),
            end: logs[3].log_end_offset(),
            now: Timestamp(10_000),
            min_compaction_lag_ms: 0,
            delete_retention_ms: i64::MAX,
            dedupe_buffer_bytes: 1 << 20,
            codec: rafka_core::CompactionCodec::none(),
        };
        let stats = logs[3].compact(&plan).unwrap();
        assert!(stats.batches_removed > 0, "{stats:?}");
        check_all(&logs, Some(3));
        // An unclean stop: every record written is recovered under the same bound.
        let ends: Vec<Offset> = logs.iter().map(|l| l.log_end_offset()).collect();
        drop(logs);
        drop(engine);
        let engine = open(dir.path());
        assert!(!engine.clean_start());
        let logs: Vec<_> = (0..N)
            .map(|p| engine.open_partition(&tp("many", p), &cfg).unwrap())
            .collect();
        assert!(engine.open_files().n_open() <= BOUND);
        assert_eq!(
            logs.iter().map(|l| l.log_end_offset()).collect::<Vec<_>>(),
            ends
        );
        check_all(&logs, Some(3));
        assert!(engine.open_files().n_open() <= BOUND);
    }

    fn region_bytes(r: &rafka_core::RegionRead) -> Vec<u8> {
        let mut buf = vec![0u8; r.region.len];
        r.region
            .file
            .read_exact_at(&mut buf, r.region.position)
            .unwrap();
        buf
    }

    /// Creating or opening a partition syncs no directory: a new one (or one whose files
    /// recovery changed) has its directories synced by its first flush or roll, and an
    /// unchanged one reopens with nothing to sync.
    #[test]
    fn directories_are_synced_by_the_first_flush_not_at_open() {
        use rafka_core::PartitionLog;
        let unsynced = |log: &LogPartition| log.dirs_unsynced.load(Ordering::Acquire);
        let dir = tempfile::tempdir().unwrap();
        {
            let (engine, log) = check_open(dir.path(), &small());
            assert!(unsynced(&log), "a new partition");
            log.flush().unwrap();
            assert!(
                unsynced(&log),
                "nothing written: nothing to make durable yet"
            );
            log.append(batch(1, 0, 10)).unwrap();
            log.flush().unwrap();
            assert!(!unsynced(&log), "the first flush synced them");
            engine.close().unwrap();
        }
        {
            let (_engine, log) = check_open(dir.path(), &small());
            assert!(!unsynced(&log), "reopened unchanged");
            for i in 0..10 {
                log.append(batch(1, i, 400)).unwrap();
            }
            assert!(log.n_segments() > 1);
            // Dropped without close: an unclean stop.
        }
        // Recovery that deletes files (a leftover checkpoint temp file) changes entries.
        fs::write(dir.path().join("t-0").join("log-start-offset.tmp"), b"3").unwrap();
        let (_engine, log) = check_open(dir.path(), &small());
        assert!(unsynced(&log), "recovery changed the directory");
        log.append(batch(1, 0, 10)).unwrap();
        log.flush().unwrap();
        assert!(!unsynced(&log));
        assert_eq!(read_all(log.as_ref(), Offset(0)).len(), 12);
    }

    #[test]
    fn retention_deletes_whole_segments_only() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            retention_ms: 100,
            ..small()
        };
        let (_engine, log) = check_open(dir.path(), &cfg);
        for i in 0..20 {
            log.append(batch(1, i * 10, 400)).unwrap();
        }
        let n = log.n_segments();
        // Newest timestamp is 190: at now=250 segments whose max is < 150 go.
        let removed = log.apply_retention(Timestamp(250)).unwrap();
        let start = log.log_start_offset();
        assert_eq!(removed, start.0 as u64);
        assert!(removed > 0 && removed < 15, "removed {removed}");
        assert!(log.n_segments() < n);
        // The active segment always stays, however old.
        log.apply_retention(Timestamp(1_000_000)).unwrap();
        assert_eq!(log.n_segments(), 1);
        assert_eq!(log.log_end_offset(), Offset(20));
        assert!(!read_all(log.as_ref(), log.log_start_offset()).is_empty());
    }
}
