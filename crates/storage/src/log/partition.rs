//! [`LogPartition`]: one partition's segmented log, the [`PartitionLog`] of the `log` engine.
//!
//! Concurrency: one `parking_lot::Mutex` guards the segment list, offsets and config, and
//! is held only for bookkeeping and the single positional write of an append. Reads and
//! timestamp lookups copy what they need (an `Arc<File>` and committed positions) under the
//! lock and do their `pread`s outside it: bytes below a segment's committed size never
//! change, except through `truncate_after`, which bumps `generation` first so a reader that
//! raced with it retries. `flush` has its own mutex, so appends continue during an fsync.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use rafka_core::batch::{batch_len_at, HEADER_BYTES};
use rafka_core::limits::{BATCH_BYTES_MAX, FETCH_RESPONSE_BYTES_MAX};
use rafka_core::{
    AbortedTxn, AppendInfo, CompactionPlan, CompactionStats, FileRegion, LogConfig, Offset,
    PartitionLog, ProducerSnapshot, ReadResult, RegionBatch, RegionRead, StorageError,
    StorageResult, Timestamp, TopicPartition, ValidatedBatch,
};

use super::header::BatchHeader;
use super::open_files::OpenFiles;
use super::producer_snapshot;
use super::read_buf::ReadBuf;
use super::recovery;
use super::segment::{read_header, OffsetRule, Segment};
use super::txn_index::{self, TxnIndex};
use crate::durable::{sync_dir, write_file_atomically};
use crate::group_commit::GroupCommit;

/// Name of the file holding the checkpointed log start offset (decimal text).
pub(crate) const LOG_START_CHECKPOINT: &str = "log-start-offset";

/// Largest segment we write: index entries store positions as u32.
const SEGMENT_BYTES_MAX: u64 = u32::MAX as u64;

/// Mutable state of a partition, behind [`LogPartition::state`]; built by
/// [`recovery::recover`](super::recovery::recover).
pub(super) struct PartState {
    pub(super) cfg: LogConfig,
    /// Invariant: never empty, sorted by base offset, contiguous (each segment's next
    /// offset is the following segment's base offset); the last one is the active segment.
    pub(super) segments: Vec<Segment>,
    /// Invariant: first segment's base offset <= log_start <= log end offset.
    pub(super) log_start: Offset,
    /// Set by close or remove; every later call fails with `StorageError::Closed`.
    pub(super) closed: bool,
    /// The aborted transactions of every segment (`.txnindex` files).
    pub(super) txn: TxnIndex,
    /// Offset of the stored producer-state snapshot, if any (never past the log end).
    pub(super) producer_snapshot: Option<Offset>,
}

impl PartState {
    pub(super) fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a log always has an active segment")
    }

    pub(super) fn log_end(&self) -> Offset {
        self.active().next_offset
    }

    /// Index of the segment that holds `offset`: the last one whose base offset is <= it.
    fn segment_index(&self, offset: Offset) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }

    fn out_of_range(&self, offset: Offset) -> StorageError {
        StorageError::OffsetOutOfRange {
            offset,
            log_start: self.log_start,
            log_end: self.log_end(),
        }
    }
}

/// A byte range of one segment file that a lock-free reader may scan.
struct FileRange {
    file: Arc<File>,
    start: u64,
    end: u64,
}

/// One partition of the `log` engine. Thread-safe; see the module docs for the locking.
pub struct LogPartition {
    pub(super) tp: TopicPartition,
    pub(super) dir: PathBuf,
    pub(super) state: Mutex<PartState>,
    /// Appends counted under the state lock, after their bytes are written; `flush` syncs
    /// the active segment for them (group commit).
    commit: GroupCommit,
    /// Bumped before committed bytes are rewritten (truncation, a compaction's swap), so
    /// lock-free reads retry.
    pub(super) generation: AtomicU64,
    /// Held for the whole of a compaction: one at a time per partition.
    pub(super) cleaning: Mutex<()>,
    /// Serialises producer-snapshot writes and reads (their file I/O runs outside `state`).
    snapshot_lock: Mutex<()>,
    /// The engine's bound on open segment files.
    pub(super) files: Arc<OpenFiles>,
    /// Whether entries of the partition's directory (or its own entry in the engine root)
    /// changed since they were last synced: set when the partition is created or recovery
    /// changed its files, cleared by the next `flush` or roll, which sync both directories
    /// before they call anything durable. So creating or opening a partition costs no
    /// fsync (at 100,000 partitions those were most of the start-up and creation time).
    pub(super) dirs_unsynced: AtomicBool,
}

impl std::fmt::Debug for LogPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogPartition")
            .field("tp", &self.tp)
            .field("dir", &self.dir)
            .finish()
    }
}

fn invalid_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The names in a directory, sorted.
fn dir_entries(dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
    let mut names = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}

pub(super) fn now_ms() -> i64 {
    Timestamp::now().0
}

impl LogPartition {
    /// Opens (recovering if needed) the partition stored in `dir`, which must exist.
    /// `clean` says whether the engine shut down cleanly (see [`recovery::recover`]);
    /// `created` that `dir` was just created (its entry in the root not synced yet).
    pub(crate) fn open(
        tp: TopicPartition,
        dir: PathBuf,
        cfg: LogConfig,
        clean: bool,
        created: bool,
        files: Arc<OpenFiles>,
    ) -> StorageResult<LogPartition> {
        let names_before = dir_entries(&dir)?;
        let state = recovery::recover(&tp, &dir, cfg, clean, &files)?;
        let part = LogPartition {
            tp,
            dir,
            state: Mutex::new(state),
            commit: GroupCommit::default(),
            generation: AtomicU64::new(0),
            cleaning: Mutex::new(()),
            snapshot_lock: Mutex::new(()),
            files,
            dirs_unsynced: AtomicBool::new(created),
        };
        let rebuild = {
            let mut st = part.state.lock();
            part.delete_segments_below_start(&mut st)?;
            st.txn.needs_rebuild
        };
        if rebuild {
            part.rebuild_txn_index()?;
        }
        if dir_entries(&part.dir)? != names_before {
            part.dirs_unsynced.store(true, Ordering::Release);
        }
        Ok(part)
    }

    /// Syncs the partition's directory and the engine root if their entries changed since
    /// they were last synced (see `dirs_unsynced`).
    fn sync_dirs_if_needed(&self) -> io::Result<()> {
        if self.dirs_unsynced.swap(false, Ordering::AcqRel) {
            let synced = sync_dir(&self.dir).and_then(|()| match self.dir.parent() {
                Some(root) => sync_dir(root),
                None => Ok(()),
            });
            if let Err(e) = synced {
                self.dirs_unsynced.store(true, Ordering::Release);
                return Err(e);
            }
        }
        Ok(())
    }

    /// The partition this log stores.
    pub fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }

    /// The partition's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of segments, the active one included.
    pub fn n_segments(&self) -> usize {
        self.state.lock().segments.len()
    }

    /// fsyncs `flush` has issued; concurrent flushes share one (group commit).
    pub fn n_flush_syncs(&self) -> u64 {
        self.commit.n_syncs()
    }

    /// Flushes and refuses every later call. The active segment's indexes are not
    /// written: every open rebuilds them from its `.log` (a roll writes them).
    pub(crate) fn close(&self) -> StorageResult<()> {
        self.flush()?;
        let mut st = self.state.lock();
        if st.closed {
            return Ok(());
        }
        st.active_mut().release_preallocated()?;
        st.closed = true;
        Ok(())
    }

    /// Refuses every later call (the engine is deleting the directory).
    pub(crate) fn mark_removed(&self) {
        self.state.lock().closed = true;
    }

    pub(super) fn check_open(&self, st: &PartState) -> StorageResult<()> {
        if st.closed {
            return Err(StorageError::Closed(self.tp.to_string()));
        }
        Ok(())
    }

    /// Makes the active segment durable with its indexes and starts a new one at the log
    /// end. Syncing here is what lets recovery check only the active segment.
    fn roll(&self, st: &mut PartState) -> io::Result<()> {
        st.active_mut().release_preallocated()?;
        let active = st.active();
        active.write_index_files(&self.dir)?;
        active.file()?.sync_data()?;
        let active_base = active.base_offset;
        if st.txn.take_unsynced() {
            if let Err(e) = txn_index::sync_file(&self.dir, active_base) {
                st.txn.mark_unsynced();
                return Err(e);
            }
        }
        let next = Segment::create(&self.dir, st.log_end(), &self.files)?;
        sync_dir(&self.dir)?;
        self.sync_dirs_if_needed()?;
        st.segments.push(next);
        // Everything appended so far is in a synced segment now.
        self.commit.all_synced();
        tracing::debug!(partition = %self.tp, base_offset = %st.log_end(), "rolled a new segment");
        Ok(())
    }

    fn write_log_start(&self, offset: Offset) -> io::Result<()> {
        write_file_atomically(
            &self.dir,
            LOG_START_CHECKPOINT,
            offset.0.to_string().as_bytes(),
        )
    }

    /// Deletes the segments that lie wholly below the log start offset, rolling first if
    /// that includes the active segment (a log always keeps one active segment).
    fn delete_segments_below_start(&self, st: &mut PartState) -> io::Result<()> {
        if st.active().size > 0 && st.log_end() <= st.log_start {
            self.roll(st)?;
        }
        let n = st.segments[..st.segments.len() - 1]
            .iter()
            .take_while(|s| s.next_offset <= st.log_start)
            .count();
        for seg in st.segments.drain(..n) {
            seg.delete_files(&self.dir)?;
        }
        Ok(())
    }

    /// The committed byte ranges a read from `from` scans: from the index floor of the
    /// segment holding it, and later segments when compaction removed everything from
    /// `from` to the end of this one (read on until a segment that starts after `from`
    /// and holds a batch). Taken under the state lock; scanned without it.
    fn ranges_from(st: &PartState, from: Offset) -> io::Result<Vec<FileRange>> {
        let i = st.segment_index(from);
        let mut ranges: Vec<FileRange> = Vec::with_capacity(2);
        for (k, s) in st.segments[i..].iter().enumerate() {
            ranges.push(FileRange {
                file: s.file()?,
                start: if k == 0 {
                    s.index_floor_position(from)
                } else {
                    0
                },
                end: s.size,
            });
            if k > 0 && s.size > 0 {
                break;
            }
        }
        Ok(ranges)
    }

    /// Locates the batch that contains or follows `from` in `ranges` and reads whole
    /// batches from it, up to `max_bytes` but at least one. Runs without the state lock.
    /// Runs `f` over the segment ranges from `from`, taken under the lock, and again if a
    /// truncation or a compaction's swap rewrote the files meanwhile (what `f` read may name
    /// bytes that are gone). `None` when `from` is the log end; with the log start and end
    /// seen with the ranges.
    fn read_consistent<T>(
        &self,
        from: Offset,
        f: impl Fn(&[FileRange]) -> StorageResult<T>,
    ) -> StorageResult<(Option<T>, Offset, Offset)> {
        loop {
            let generation = self.generation.load(Ordering::SeqCst);
            let (ranges, log_start, log_end) = {
                let st = self.state.lock();
                self.check_open(&st)?;
                let (log_start, log_end) = (st.log_start, st.log_end());
                if from < log_start || from > log_end {
                    return Err(st.out_of_range(from));
                }
                if from == log_end {
                    return Ok((None, log_start, log_end));
                }
                (Self::ranges_from(&st, from)?, log_start, log_end)
            };
            let result = f(&ranges);
            if self.generation.load(Ordering::SeqCst) == generation {
                return Ok((Some(result?), log_start, log_end));
            }
        }
    }

    fn read_ranges(ranges: &[FileRange], from: Offset, max_bytes: usize) -> io::Result<Bytes> {
        for r in ranges {
            let mut pos = r.start;
            while pos < r.end {
                let h = read_header(&r.file, pos)?
                    .filter(|h| h.size_bytes >= HEADER_BYTES as u64 && pos + h.size_bytes <= r.end)
                    .ok_or_else(|| invalid_data(format!("bad batch header at position {pos}")))?;
                if h.next_offset() > from {
                    let first = h.size_bytes as usize;
                    let want = if first >= max_bytes {
                        first
                    } else {
                        max_bytes.min((r.end - pos) as usize)
                    };
                    let mut buf = ReadBuf::read_at(&r.file, pos, want)?;
                    // Keep whole batches only.
                    let mut cut = 0;
                    while let Some(len) = batch_len_at(&buf[cut..]) {
                        if len < HEADER_BYTES || len > buf.len() - cut {
                            break;
                        }
                        cut += len;
                    }
                    if cut < first {
                        return Err(invalid_data(format!("short batch at position {pos}")));
                    }
                    buf.truncate(cut);
                    return Ok(buf.freeze());
                }
                pos += h.size_bytes;
            }
        }
        Ok(Bytes::new())
    }

    /// What [`read_ranges`](Self::read_ranges) would return, as a region of the file: the
    /// same walk to the batch holding `from`, then the whole batches after it that fit,
    /// found header by header ([`HeaderWalk`]) instead of in a buffer holding them all.
    /// `None` when nothing is there.
    fn region_of_ranges(
        ranges: &[FileRange],
        from: Offset,
        max_bytes: usize,
    ) -> io::Result<Option<(FileRegion, Vec<RegionBatch>)>> {
        let checked = |file: &File, pos: u64, end: u64| -> io::Result<BatchHeader> {
            read_header(file, pos)?
                .filter(|h| h.size_bytes >= HEADER_BYTES as u64 && pos + h.size_bytes <= end)
                .ok_or_else(|| invalid_data(format!("bad batch header at position {pos}")))
        };
        let batch = |h: &BatchHeader| RegionBatch {
            next_offset: h.next_offset(),
            size_bytes: h.size_bytes as u32,
            record_count: h.record_count.max(0) as u32,
        };
        for r in ranges {
            let mut pos = r.start;
            while pos < r.end {
                let h = checked(&r.file, pos, r.end)?;
                if h.next_offset() <= from {
                    pos += h.size_bytes;
                    continue;
                }
                // The bytes `read_ranges` would read: the first batch whole, else up to
                // `max_bytes` of the committed range; whole batches of those are kept.
                let first = h.size_bytes;
                let limit = if first >= max_bytes as u64 {
                    pos + first
                } else {
                    pos + (max_bytes as u64).min(r.end - pos)
                };
                let mut batches = vec![batch(&h)];
                let mut at = pos + first;
                let mut walk = HeaderWalk::new(&r.file, limit);
                while at < limit {
                    match walk.header(at)? {
                        Some(h)
                            if h.size_bytes >= HEADER_BYTES as u64
                                && at + h.size_bytes <= limit =>
                        {
                            batches.push(batch(&h));
                            at += h.size_bytes;
                        }
                        _ => break,
                    }
                }
                let region = FileRegion {
                    file: Arc::clone(&r.file),
                    position: pos,
                    len: (at - pos) as usize,
                };
                return Ok(Some((region, batches)));
            }
        }
        Ok(None)
    }

    /// Finds the first batch at or after the ranges' starts whose max timestamp is >= `ts`
    /// and that holds offsets >= `log_start`. Runs without the state lock.
    fn find_timestamp(
        ranges: &[FileRange],
        ts: Timestamp,
        log_start: Offset,
    ) -> io::Result<Option<(Offset, Timestamp)>> {
        for r in ranges {
            let mut pos = r.start;
            while pos < r.end {
                let h = read_header(&r.file, pos)?
                    .filter(|h| h.size_bytes >= HEADER_BYTES as u64 && pos + h.size_bytes <= r.end)
                    .ok_or_else(|| invalid_data(format!("bad batch header at position {pos}")))?;
                if h.max_timestamp >= ts && h.next_offset() > log_start {
                    return Ok(Some((h.base_offset.max(log_start), h.max_timestamp)));
                }
                pos += h.size_bytes;
            }
        }
        Ok(None)
    }
}

/// Bytes a [`HeaderWalk`] reads at once where batches are small (a pooled buffer).
const HEADER_WINDOW_BYTES: usize = 64 * 1024;

/// Batch headers read forward through one file up to `limit`. After a large batch (a
/// quarter of [`HEADER_WINDOW_BYTES`] or more) the next header is read alone; after a small
/// one, a window of the file up to `HEADER_WINDOW_BYTES` is read, whose further headers
/// cost no read. So a region of large batches costs a small read per batch, and one of
/// thousands of small batches its bytes read once, a window at a time into one reused
/// buffer, before it is sent from the file; only its batch list is kept.
struct HeaderWalk<'a> {
    file: &'a File,
    limit: u64,
    /// The position of the header read last.
    last: Option<u64>,
    /// The window and the file position of its first byte.
    window: Option<(ReadBuf, u64)>,
}

impl<'a> HeaderWalk<'a> {
    fn new(file: &'a File, limit: u64) -> HeaderWalk<'a> {
        HeaderWalk {
            file,
            limit,
            last: None,
            window: None,
        }
    }

    /// The header at `position` (`None` where the file, or `limit`, ends before a whole
    /// header).
    fn header(&mut self, position: u64) -> io::Result<Option<BatchHeader>> {
        let after_small = self
            .last
            .replace(position)
            .is_some_and(|last| position.saturating_sub(last) < HEADER_WINDOW_BYTES as u64 / 4);
        if let Some((w, start)) = &self.window {
            if let Some(at) = position.checked_sub(*start) {
                if at as usize + HEADER_BYTES <= w.len() {
                    return Ok(BatchHeader::parse(&w[at as usize..]));
                }
            }
        }
        if !after_small {
            return read_header(self.file, position);
        }
        let len = (self.limit.saturating_sub(position) as usize).min(HEADER_WINDOW_BYTES);
        // The old window goes back to the pool before the next is taken.
        self.window = None;
        let w = ReadBuf::read_at(self.file, position, len)?;
        let header = BatchHeader::parse(&w);
        self.window = Some((w, position));
        Ok(header)
    }
}

/// Batches of at least this many bytes are written without stamping their base offset
/// into a copy (see `append`): below it, a copy costs less than a second write.
const SPLIT_WRITE_BYTES: usize = 16 * 1024;

impl PartitionLog for LogPartition {
    fn append(&self, mut batch: ValidatedBatch) -> StorageResult<AppendInfo> {
        let size = batch.size_bytes();
        if size > BATCH_BYTES_MAX {
            return Err(StorageError::BatchTooLarge {
                size,
                max: BATCH_BYTES_MAX,
            });
        }
        // Stamping a base offset into the batch copies the bytes if they are shared (they
        // are: a slice of the request). A large batch is not stamped but written as its
        // new base offset followed by the rest of its bytes, unchanged (two writes, no
        // copy); a small one is copied here, outside the lock, and written at once.
        let split_write = size >= SPLIT_WRITE_BYTES;
        if !split_write {
            batch.set_base_offset(Offset(0));
        }
        let now = now_ms();

        let mut st = self.state.lock();
        self.check_open(&st)?;
        let max = st.cfg.max_message_bytes.min(BATCH_BYTES_MAX);
        if size > max {
            return Err(StorageError::BatchTooLarge { size, max });
        }
        let base_offset = st.log_end();
        // LogAppendTime rewrites header fields and the CRC: that batch is stamped whole.
        let stamped = st.cfg.log_append_time || !split_write;
        if stamped {
            batch.set_base_offset(base_offset);
        }
        let log_append_time = if st.cfg.log_append_time {
            batch.set_log_append_time(Timestamp(now));
            Timestamp(now)
        } else {
            Timestamp(-1)
        };
        let last_offset = base_offset.plus(batch.last_offset_delta() as i64);

        let active = st.active();
        let segment_bytes = st.cfg.segment_bytes.min(SEGMENT_BYTES_MAX);
        let needs_roll = active.size > 0
            && (active.size + size as u64 > segment_bytes
                || active
                    .first_append_ms
                    .is_some_and(|t| now.saturating_sub(t) >= st.cfg.segment_ms)
                || !active.can_hold(last_offset));
        if needs_roll {
            self.roll(&mut st)?;
        }

        let interval = st.cfg.index_interval_bytes;
        let preallocate = st.cfg.preallocate.then_some(segment_bytes);
        let seg = st.active_mut();
        if let Some(bytes) = preallocate {
            seg.preallocate(bytes);
        }
        let position = seg.size;
        // Positional writes: a process crash after they return loses nothing (the bytes
        // are in the page cache); a failed write is cut off so no partial batch remains.
        let bytes = batch.as_bytes();
        let file = seg.file()?;
        let written = if stamped {
            file.write_all_at(bytes, position)
        } else {
            write_two_at(&file, &base_offset.0.to_be_bytes(), &bytes[8..], position)
        };
        if let Err(e) = written {
            let _ = file.set_len(position);
            return Err(e.into());
        }
        let mut header = BatchHeader::parse(bytes).expect("validated batch has a header");
        header.base_offset = base_offset;
        seg.track(&header, position, interval);
        seg.first_append_ms.get_or_insert(now);
        self.commit.wrote();
        Ok(AppendInfo {
            base_offset,
            last_offset,
            log_append_time,
            log_start_offset: st.log_start,
        })
    }

    fn read(&self, from: Offset, max_bytes: usize) -> StorageResult<ReadResult> {
        let max_bytes = max_bytes.min(FETCH_RESPONSE_BYTES_MAX);
        let read = self.read_consistent(from, |ranges| {
            Self::read_ranges(ranges, from, max_bytes).map_err(Into::into)
        })?;
        let (records, log_start_offset, log_end_offset) = read;
        Ok(ReadResult {
            records: records.unwrap_or_default(),
            log_start_offset,
            log_end_offset,
        })
    }

    fn read_region(&self, from: Offset, max_bytes: usize) -> StorageResult<Option<RegionRead>> {
        let max_bytes = max_bytes.min(FETCH_RESPONSE_BYTES_MAX);
        let read = self.read_consistent(from, |ranges| {
            Self::region_of_ranges(ranges, from, max_bytes).map_err(Into::into)
        })?;
        let (region, log_start_offset, log_end_offset) = read;
        Ok(region.flatten().map(|(region, batches)| RegionRead {
            region,
            batches,
            log_start_offset,
            log_end_offset,
        }))
    }

    fn log_start_offset(&self) -> Offset {
        self.state.lock().log_start
    }

    fn log_end_offset(&self) -> Offset {
        self.state.lock().log_end()
    }

    fn log_bounds(&self) -> (Offset, Offset) {
        let st = self.state.lock();
        (st.log_start, st.log_end())
    }

    fn offset_for_timestamp(&self, ts: Timestamp) -> StorageResult<Option<(Offset, Timestamp)>> {
        loop {
            let generation = self.generation.load(Ordering::SeqCst);
            let (ranges, log_start) = {
                let st = self.state.lock();
                self.check_open(&st)?;
                let ranges: Vec<FileRange> = st
                    .segments
                    .iter()
                    .filter(|s| {
                        s.next_offset > st.log_start
                            && s.max_timestamp.is_some_and(|(max, _)| max >= ts)
                    })
                    .take(2)
                    .map(|s| {
                        Ok(FileRange {
                            file: s.file()?,
                            start: s.time_floor_position(ts),
                            end: s.size,
                        })
                    })
                    .collect::<io::Result<_>>()?;
                (ranges, st.log_start)
            };
            let result = Self::find_timestamp(&ranges, ts, log_start);
            if self.generation.load(Ordering::SeqCst) == generation {
                return Ok(result?);
            }
        }
    }

    fn max_timestamp(&self) -> StorageResult<Option<(Offset, Timestamp)>> {
        let st = self.state.lock();
        self.check_open(&st)?;
        let mut best: Option<(Timestamp, Offset)> = None;
        for (ts, offset) in st.segments.iter().filter_map(|s| s.max_timestamp) {
            if best.is_none_or(|(b, _)| ts > b) {
                best = Some((ts, offset));
            }
        }
        Ok(best.map(|(ts, offset)| (offset, ts)))
    }

    fn delete_before(&self, offset: Offset) -> StorageResult<()> {
        let mut st = self.state.lock();
        self.check_open(&st)?;
        if offset > st.log_end() {
            return Err(st.out_of_range(offset));
        }
        if offset <= st.log_start {
            return Ok(());
        }
        // Persist first: if we crash after this, open deletes the segments below it.
        self.write_log_start(offset)?;
        st.log_start = offset;
        self.delete_segments_below_start(&mut st)?;
        st.txn.prune_below(offset);
        Ok(())
    }

    fn truncate_after(&self, offset: Offset) -> StorageResult<()> {
        let mut st = self.state.lock();
        self.check_open(&st)?;
        if offset >= st.log_end() {
            return Ok(());
        }
        let j = st.segment_index(offset);
        let seg = &st.segments[j];
        let file = seg.file()?;
        // Find the first batch that contains `offset` or starts after it.
        let mut cut = seg.index_floor_position(offset);
        while cut < seg.size {
            let h = read_header(&file, cut)?
                .filter(|h| h.size_bytes >= HEADER_BYTES as u64 && cut + h.size_bytes <= seg.size)
                .ok_or_else(|| invalid_data(format!("bad batch header at position {cut}")))?;
            if h.next_offset() > offset {
                break;
            }
            cut += h.size_bytes;
        }
        // Readers outside the lock must not trust bytes they read from here on.
        self.generation.fetch_add(1, Ordering::SeqCst);
        // Delete from the newest backwards, so a crash midway leaves no gap.
        for seg in st.segments.drain(j + 1..).rev() {
            seg.delete_files(&self.dir)?;
        }
        let interval = st.cfg.index_interval_bytes;
        let seg = st.active_mut();
        file.set_len(cut)?;
        seg.rebuild(false, OffsetRule::Contiguous, interval)?;
        file.sync_all()?;
        let (base, log_end) = (seg.base_offset, seg.next_offset);
        st.txn.truncate(&self.dir, base, log_end)?;
        if st.producer_snapshot.is_some_and(|o| o > log_end) {
            st.producer_snapshot = producer_snapshot::latest(&self.dir, log_end)?;
        }
        sync_dir(&self.dir)?;
        self.sync_dirs_if_needed()?;
        if st.log_start > st.log_end() {
            let log_end = st.log_end();
            self.write_log_start(log_end)?;
            st.log_start = log_end;
        }
        // Every remaining segment is synced now.
        self.commit.all_synced();
        Ok(())
    }

    fn flush(&self) -> StorageResult<()> {
        self.commit.flush(|| {
            let (covered, file, txn_base) = {
                let mut st = self.state.lock();
                self.check_open(&st)?;
                // Appends before this point went to this file or to a rolled segment,
                // which was synced when it rolled; so did aborted-transaction entries.
                let txn_base = st.txn.take_unsynced().then(|| st.active().base_offset);
                (self.commit.written(), st.active().file()?, txn_base)
            };
            self.sync_dirs_if_needed()?;
            if let Some(base) = txn_base {
                if let Err(e) = txn_index::sync_file(&self.dir, base) {
                    self.state.lock().txn.mark_unsynced();
                    return Err(e.into());
                }
            }
            crate::stats::timed_fsync(&file)?;
            Ok(Some(covered))
        })
    }

    fn apply_retention(&self, now: Timestamp) -> StorageResult<u64> {
        let mut st = self.state.lock();
        self.check_open(&st)?;
        let closed_segments = &st.segments[..st.segments.len() - 1];
        let mut n = 0;
        if st.cfg.retention_ms >= 0 {
            n = closed_segments
                .iter()
                .take_while(|s| {
                    s.max_timestamp
                        .is_none_or(|(ts, _)| now.0.saturating_sub(ts.0) > st.cfg.retention_ms)
                })
                .count();
        }
        if st.cfg.retention_bytes >= 0 {
            let mut total: u64 = st.segments.iter().map(|s| s.size).sum();
            let mut by_size = 0;
            for s in closed_segments {
                if total - s.size < st.cfg.retention_bytes as u64 {
                    break;
                }
                total -= s.size;
                by_size += 1;
            }
            n = n.max(by_size);
        }
        if n == 0 {
            return Ok(0);
        }
        let new_start = st.segments[n].base_offset.max(st.log_start);
        let removed = (new_start.0 - st.log_start.0) as u64;
        if new_start > st.log_start {
            self.write_log_start(new_start)?;
            st.log_start = new_start;
        }
        self.delete_segments_below_start(&mut st)?;
        let log_start = st.log_start;
        st.txn.prune_below(log_start);
        tracing::debug!(partition = %self.tp, segments = n, records = removed, "applied retention");
        Ok(removed)
    }

    fn size_bytes(&self) -> u64 {
        self.state.lock().segments.iter().map(|s| s.size).sum()
    }

    fn set_config(&self, cfg: LogConfig) {
        self.state.lock().cfg = cfg;
    }

    fn compact(&self, plan: &CompactionPlan) -> StorageResult<CompactionStats> {
        self.compact_until(plan, None)
    }

    fn record_aborted_txn(&self, txn: AbortedTxn) -> StorageResult<()> {
        let mut st = self.state.lock();
        self.check_open(&st)?;
        if txn.last_offset >= st.log_end() || txn.last_offset < st.log_start {
            // Not a stored marker (a caller bug or a race with truncation): nothing to keep.
            tracing::warn!(partition = %self.tp, marker = %txn.last_offset, "ignoring an aborted transaction whose marker is not stored");
            return Ok(());
        }
        let i = st.segment_index(txn.last_offset);
        let base = st.segments[i].base_offset;
        let next = st
            .segments
            .get(i + 1)
            .map_or(Offset(i64::MAX), |s| s.base_offset);
        let active = i + 1 == st.segments.len();
        st.txn.record(&self.dir, txn, base, next, active)?;
        Ok(())
    }

    fn aborted_txns(&self, from: Offset, to: Offset) -> StorageResult<Vec<AbortedTxn>> {
        let st = self.state.lock();
        self.check_open(&st)?;
        Ok(st.txn.overlapping(from, to))
    }

    fn write_producer_snapshot(&self, snapshot: ProducerSnapshot) -> StorageResult<()> {
        // One writer at a time; the file write runs outside the state lock.
        let _one = self.snapshot_lock.lock();
        {
            let st = self.state.lock();
            self.check_open(&st)?;
            if snapshot.offset > st.log_end() {
                return Err(st.out_of_range(snapshot.offset));
            }
        }
        producer_snapshot::write(&self.dir, snapshot.offset, &snapshot.bytes)?;
        let mut st = self.state.lock();
        if snapshot.offset > st.log_end() {
            // Truncated meanwhile: the snapshot describes records that are gone.
            st.producer_snapshot = producer_snapshot::latest(&self.dir, st.log_end())?;
        } else {
            st.producer_snapshot = Some(snapshot.offset);
        }
        Ok(())
    }

    fn producer_snapshot(&self) -> StorageResult<Option<ProducerSnapshot>> {
        let _one = self.snapshot_lock.lock();
        let offset = {
            let st = self.state.lock();
            self.check_open(&st)?;
            st.producer_snapshot
        };
        let Some(offset) = offset else {
            return Ok(None);
        };
        Ok(producer_snapshot::read(&self.dir, offset)?
            .map(|bytes| ProducerSnapshot { offset, bytes }))
    }
}

/// Writes `head` and then `tail` at `position` in one `pwritev` (a batch's assigned base
/// offset before the bytes the client sent, one system call instead of two), going on
/// after a short write.
fn write_two_at(file: &File, head: &[u8], tail: &[u8], mut position: u64) -> io::Result<()> {
    let (mut head, mut tail) = (head, tail);
    while !head.is_empty() || !tail.is_empty() {
        let slices = [io::IoSlice::new(head), io::IoSlice::new(tail)];
        let n = match rustix::io::pwritev(file, &slices, position) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        position += n as u64;
        let from_head = n.min(head.len());
        head = &head[from_head..];
        tail = &tail[n - from_head..];
    }
    Ok(())
}

#[cfg(test)]
mod write_tests {
    use super::*;

    #[test]
    fn two_slices_land_back_to_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        file.write_all_at(b"xxxx", 0).unwrap();
        let tail: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        write_two_at(&file, &42i64.to_be_bytes(), &tail, 4).unwrap();
        let mut back = vec![0; 4 + 8 + tail.len()];
        file.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(&back[..4], b"xxxx");
        assert_eq!(back[4..12], 42i64.to_be_bytes());
        assert_eq!(back[12..], tail[..]);
        write_two_at(&file, &[], &[], 0).unwrap();
    }
}
