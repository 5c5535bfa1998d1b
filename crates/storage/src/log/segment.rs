//! One segment of a partition's log: the `.log` file of batches back to back, and its
//! sparse `.index` (relative offset → file position) and `.timeindex` (max timestamp →
//! offset), kept in memory and written to disk when the segment stops being active.
//!
//! Indexes are a cache of what the `.log` file says, never trusted over it: the active
//! segment's are always rebuilt by scanning on open, and an index file that fails its
//! sanity checks is rebuilt the same way.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use rafka_core::batch::HEADER_BYTES;
use rafka_core::limits::BATCH_BYTES_MAX;
use rafka_core::{Offset, RecordBatch, Timestamp};

use super::header::BatchHeader;
use super::open_files::{FileSlot, OpenFiles};

/// File extension of segment data.
pub(crate) const LOG_EXT: &str = "log";
/// File extension of the sparse offset index.
pub(crate) const INDEX_EXT: &str = "index";
/// File extension of the sparse time index.
pub(crate) const TIMEINDEX_EXT: &str = "timeindex";

/// Bytes of one `.index` entry: relative offset (u32) and position (u32), big-endian.
const INDEX_ENTRY_BYTES: usize = 8;
/// Bytes of one `.timeindex` entry: timestamp (i64) and relative offset (u32), big-endian.
const TIMEINDEX_ENTRY_BYTES: usize = 12;

/// `<dir>/<base offset, 20 digits>.<ext>`, Kafka's file naming.
pub(crate) fn segment_path(dir: &Path, base_offset: Offset, ext: &str) -> PathBuf {
    dir.join(format!("{:020}.{ext}", base_offset.0))
}

/// The base offset of a segment file name `<20 digits>.log`, or `None` for any other name.
pub(crate) fn parse_log_file_name(name: &str) -> Option<Offset> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok().map(Offset)
}

/// Reads up to `len` bytes at `position`, fewer only at the end of the file.
pub(crate) fn read_at_most(file: &File, position: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let filled = fill_at(file, position, &mut buf)?;
    buf.truncate(filled);
    Ok(buf)
}

/// Fills `buf` from `position`; returns how many bytes the file had (fewer than
/// `buf.len()` only at its end).
pub(crate) fn fill_at(file: &File, position: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], position + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads the header of the batch at `position`; `None` if fewer than a header's bytes remain.
pub(crate) fn read_header(file: &File, position: u64) -> io::Result<Option<BatchHeader>> {
    let buf = read_at_most(file, position, HEADER_BYTES)?;
    Ok(BatchHeader::parse(&buf))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IndexEntry {
    /// Base offset of the indexed batch minus the segment's base offset.
    rel_offset: u32,
    /// Byte position of that batch in the `.log` file.
    position: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TimeEntry {
    /// The largest timestamp of every batch up to and including the one at `rel_offset`.
    timestamp: Timestamp,
    /// Last offset (relative) of the first batch that reached `timestamp`.
    rel_offset: u32,
}

/// What a scan of a segment file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanOutcome {
    /// Batches that passed the checks.
    pub n_batches: u64,
    /// Bytes after the last good batch (what recovery cuts).
    pub invalid_bytes: u64,
    /// Why the scan stopped before the end of the file, if it did.
    pub stop_reason: Option<String>,
}

/// What base offsets [`Segment::rebuild`] accepts between consecutive batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OffsetRule {
    /// Each batch starts where the previous one ended (the active segment).
    Contiguous,
    /// A batch may start past where the previous one ended (closed segments, which
    /// compaction may have rewritten), never before.
    GapsAllowed,
}

/// One segment. Not thread-safe by itself: the partition's state mutex guards it, and only
/// its file (positions below `size` never change) is shared with readers outside that lock.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Invariant: base_offset <= every offset stored in this segment.
    pub base_offset: Offset,
    /// The `.log` file, opened for reading and positional writes on first use and kept
    /// open while the engine's [`OpenFiles`] bound allows ([`Segment::file`]).
    pub slot: Arc<FileSlot>,
    files: Arc<OpenFiles>,
    /// Committed bytes; the next batch is written here.
    pub size: u64,
    /// Offset after the last batch (the base offset for an empty segment).
    pub next_offset: Offset,
    /// Largest timestamp stored and the last offset of the first batch that carried it.
    pub max_timestamp: Option<(Timestamp, Offset)>,
    /// Wall-clock ms of the first append seen by this process, for `segment.ms`.
    pub first_append_ms: Option<i64>,
    /// Whether disk blocks were reserved past the end of the file (`preallocate`); they
    /// are given back by [`Segment::release_preallocated`].
    pub preallocated: bool,
    offset_index: Vec<IndexEntry>,
    time_index: Vec<TimeEntry>,
    bytes_since_index: u64,
}

impl Segment {
    /// Creates an empty segment with base offset `base_offset` in `dir`. Stale index files
    /// of the same name are replaced by empty ones, not synced: an active segment's indexes
    /// are rebuilt from its `.log` at every open, and written and synced when it rolls. The
    /// caller syncs the directory.
    pub fn create(dir: &Path, base_offset: Offset, files: &Arc<OpenFiles>) -> io::Result<Segment> {
        let path = segment_path(dir, base_offset, LOG_EXT);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        let slot = files.adopt(path, Arc::new(file));
        let seg = Segment::empty(base_offset, slot, files);
        for ext in [INDEX_EXT, TIMEINDEX_EXT] {
            File::create(segment_path(dir, base_offset, ext))?;
        }
        super::txn_index::create_empty(dir, base_offset)?;
        Ok(seg)
    }

    /// An existing `.log` file with no index loaded yet (size = file length); the file
    /// itself is opened at its first use.
    pub fn open(dir: &Path, base_offset: Offset, files: &Arc<OpenFiles>) -> io::Result<Segment> {
        let path = segment_path(dir, base_offset, LOG_EXT);
        let size = std::fs::metadata(&path)?.len();
        let mut seg = Segment::empty(base_offset, OpenFiles::lazy(path), files);
        seg.size = size;
        Ok(seg)
    }

    pub(crate) fn empty(
        base_offset: Offset,
        slot: Arc<FileSlot>,
        files: &Arc<OpenFiles>,
    ) -> Segment {
        Segment {
            base_offset,
            slot,
            files: Arc::clone(files),
            size: 0,
            next_offset: base_offset,
            max_timestamp: None,
            first_append_ms: None,
            preallocated: false,
            offset_index: Vec::new(),
            time_index: Vec::new(),
            bytes_since_index: 0,
        }
    }

    /// The `.log` file, opened if the bound on open files closed it (or it was never
    /// used). Hold the handle only as long as needed: it keeps the descriptor open.
    pub fn file(&self) -> io::Result<Arc<File>> {
        self.files.get(&self.slot)
    }

    /// Reserves disk blocks up to `bytes` without changing the file's length
    /// (`FALLOC_FL_KEEP_SIZE`): appends then write into allocated blocks instead of
    /// reserving them a page at a time (ext4's delayed allocation). A file system that
    /// cannot is left to grow as written.
    pub fn preallocate(&mut self, bytes: u64) {
        if self.preallocated || bytes <= self.size {
            return;
        }
        self.preallocated = true;
        let file = match self.file() {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "segment preallocation skipped");
                return;
            }
        };
        if let Err(e) = rustix::fs::fallocate(
            &*file,
            rustix::fs::FallocateFlags::KEEP_SIZE,
            self.size,
            bytes - self.size,
        ) {
            tracing::debug!(error = %e, "segment preallocation refused; growing as written");
        }
    }

    /// Gives back the blocks reserved past the committed bytes (a truncation to the
    /// committed size, which also drops a torn tail's bytes).
    pub fn release_preallocated(&mut self) -> io::Result<()> {
        if self.preallocated {
            self.file()?.set_len(self.size)?;
            self.preallocated = false;
        }
        Ok(())
    }

    /// Whether `last_offset` can be expressed relative to this segment's base offset
    /// (index entries store u32 relative offsets).
    pub fn can_hold(&self, last_offset: Offset) -> bool {
        let rel = last_offset.0 - self.base_offset.0;
        (0..=u32::MAX as i64).contains(&rel)
    }

    fn rel(&self, offset: Offset) -> u32 {
        (offset.0 - self.base_offset.0).clamp(0, u32::MAX as i64) as u32
    }

    /// Records a batch just stored at `position`: updates size, next offset, the running
    /// max timestamp and, every `index_interval_bytes`, both sparse indexes.
    pub fn track(&mut self, header: &BatchHeader, position: u64, index_interval_bytes: u32) {
        debug_assert_eq!(position, self.size, "batches are tracked in file order");
        debug_assert!(self.can_hold(header.last_offset()));
        if self
            .max_timestamp
            .is_none_or(|(ts, _)| header.max_timestamp > ts)
        {
            self.max_timestamp = Some((header.max_timestamp, header.last_offset()));
        }
        if self.bytes_since_index >= index_interval_bytes as u64 && position > 0 {
            let entry = IndexEntry {
                rel_offset: self.rel(header.base_offset),
                position: position as u32,
            };
            debug_assert!(self
                .offset_index
                .last()
                .is_none_or(|l| l.rel_offset < entry.rel_offset));
            self.offset_index.push(entry);
            self.push_time_entry();
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += header.size_bytes;
        self.size = position + header.size_bytes;
        self.next_offset = header.next_offset();
    }

    /// Adds the running max timestamp to the time index if it grew since the last entry.
    fn push_time_entry(&mut self) {
        if let Some((ts, offset)) = self.max_timestamp {
            if self.time_index.last().is_none_or(|l| ts > l.timestamp) {
                let rel_offset = self.rel(offset);
                self.time_index.push(TimeEntry {
                    timestamp: ts,
                    rel_offset,
                });
            }
        }
    }

    /// Position of the last indexed batch whose base offset is <= `offset` (0 if none):
    /// scanning from there reaches the batch containing `offset`.
    pub fn index_floor_position(&self, offset: Offset) -> u64 {
        if offset <= self.base_offset {
            return 0;
        }
        let rel = self.rel(offset);
        let n = self.offset_index.partition_point(|e| e.rel_offset <= rel);
        n.checked_sub(1)
            .map_or(0, |i| self.offset_index[i].position as u64)
    }

    /// A position from which scanning finds the first batch whose max timestamp is >= `ts`:
    /// every batch before it has a smaller max timestamp.
    pub fn time_floor_position(&self, ts: Timestamp) -> u64 {
        let n = self.time_index.partition_point(|e| e.timestamp < ts);
        match n.checked_sub(1) {
            Some(i) => {
                let offset = self.base_offset.plus(self.time_index[i].rel_offset as i64);
                self.index_floor_position(offset)
            }
            None => 0,
        }
    }

    /// Drops the in-memory indexes and rebuilds them (with size and next offset) by walking
    /// the file from the start. Stops at the first batch that is implausible, out of offset
    /// order, runs past the end of the file or, with `verify_crc`, fails validation; the
    /// caller decides whether to cut the file there. `offsets` says what a batch's base offset
    /// may be: a closed segment may have gaps that compaction left, the active segment (never
    /// compacted) must be contiguous — there a base offset that jumps ahead is damage to the
    /// header's first field, which the CRC does not cover.
    pub fn rebuild(
        &mut self,
        verify_crc: bool,
        offsets: OffsetRule,
        index_interval_bytes: u32,
    ) -> io::Result<ScanOutcome> {
        let file = self.file()?;
        let file_len = file.metadata()?.len();
        self.size = 0;
        self.next_offset = self.base_offset;
        self.max_timestamp = None;
        self.offset_index.clear();
        self.time_index.clear();
        self.bytes_since_index = 0;
        let mut n_batches = 0;
        let mut stop_reason = None;
        while self.size < file_len {
            let position = self.size;
            let Some(header) = read_header(&file, position)? else {
                stop_reason = Some(format!("partial header at position {position}"));
                break;
            };
            if !header.is_plausible() || header.size_bytes > BATCH_BYTES_MAX as u64 {
                stop_reason = Some(format!("implausible batch header at position {position}"));
                break;
            }
            // Compaction leaves gaps between batches in closed segments, never overlaps.
            let out_of_order = match offsets {
                OffsetRule::Contiguous => header.base_offset != self.next_offset,
                OffsetRule::GapsAllowed => header.base_offset < self.next_offset,
            };
            if out_of_order {
                stop_reason = Some(format!(
                    "batch at position {position} has base offset {}, expected {}",
                    header.base_offset, self.next_offset
                ));
                break;
            }
            if position + header.size_bytes > file_len {
                stop_reason = Some(format!(
                    "batch at position {position} of {} bytes runs past the end of the file",
                    header.size_bytes
                ));
                break;
            }
            if !self.can_hold(header.last_offset()) {
                stop_reason = Some(format!(
                    "batch at position {position} overflows the segment"
                ));
                break;
            }
            if verify_crc {
                let bytes = read_at_most(&file, position, header.size_bytes as usize)?;
                let valid =
                    RecordBatch::parse(Bytes::from(bytes)).and_then(|b| b.validate_stored());
                if let Err(e) = valid {
                    stop_reason = Some(format!("batch at position {position}: {e}"));
                    break;
                }
            }
            self.track(&header, position, index_interval_bytes);
            n_batches += 1;
        }
        Ok(ScanOutcome {
            n_batches,
            invalid_bytes: file_len - self.size,
            stop_reason,
        })
    }

    /// Writes both index files in full and syncs them, adding a final time-index entry for
    /// the segment's max timestamp (so a closed segment's max timestamp is its last entry).
    pub fn write_index_files(&self, dir: &Path) -> io::Result<()> {
        self.write_index_files_suffixed(dir, "")
    }

    /// [`write_index_files`](Segment::write_index_files) to `<name><suffix>` (the cleaner
    /// writes `.cleaned` files beside the live ones).
    pub fn write_index_files_suffixed(&self, dir: &Path, suffix: &str) -> io::Result<()> {
        let mut time_index = self.time_index.clone();
        if let Some((ts, offset)) = self.max_timestamp {
            if time_index.last().is_none_or(|l| ts > l.timestamp) {
                time_index.push(TimeEntry {
                    timestamp: ts,
                    rel_offset: self.rel(offset),
                });
            }
        }
        let mut index = Vec::with_capacity(self.offset_index.len() * INDEX_ENTRY_BYTES);
        for e in &self.offset_index {
            index.extend_from_slice(&e.rel_offset.to_be_bytes());
            index.extend_from_slice(&e.position.to_be_bytes());
        }
        let mut timeindex = Vec::with_capacity(time_index.len() * TIMEINDEX_ENTRY_BYTES);
        for e in &time_index {
            timeindex.extend_from_slice(&e.timestamp.0.to_be_bytes());
            timeindex.extend_from_slice(&e.rel_offset.to_be_bytes());
        }
        for (ext, bytes) in [(INDEX_EXT, index), (TIMEINDEX_EXT, timeindex)] {
            let mut path = segment_path(dir, self.base_offset, ext).into_os_string();
            path.push(suffix);
            let mut f = File::create(path)?;
            f.write_all(&bytes)?;
            f.sync_data()?;
        }
        Ok(())
    }

    /// Loads the index files of a segment that is not the active one, given its size (file
    /// length) and next offset (the next segment's base offset). `Ok(false)` if the files
    /// are missing or fail the sanity checks; the caller then rebuilds by scanning.
    pub fn load_index_files(&mut self, dir: &Path, next_offset: Offset) -> io::Result<bool> {
        let read = |ext: &str| match std::fs::read(segment_path(dir, self.base_offset, ext)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        };
        let (Some(index), Some(timeindex)) = (read(INDEX_EXT)?, read(TIMEINDEX_EXT)?) else {
            return Ok(false);
        };
        if index.len() % INDEX_ENTRY_BYTES != 0 || timeindex.len() % TIMEINDEX_ENTRY_BYTES != 0 {
            return Ok(false);
        }
        let span = next_offset.0 - self.base_offset.0;
        if span < 0 || span > u32::MAX as i64 || (span == 0) != (self.size == 0) {
            return Ok(false);
        }
        let u32_at =
            |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        let offset_index: Vec<IndexEntry> = index
            .chunks_exact(INDEX_ENTRY_BYTES)
            .map(|c| IndexEntry {
                rel_offset: u32_at(c, 0),
                position: u32_at(c, 4),
            })
            .collect();
        let time_index: Vec<TimeEntry> = timeindex
            .chunks_exact(TIMEINDEX_ENTRY_BYTES)
            .map(|c| TimeEntry {
                timestamp: Timestamp(i64::from_be_bytes(c[..8].try_into().expect("8 bytes"))),
                rel_offset: u32_at(c, 8),
            })
            .collect();
        let offsets_ok = offset_index
            .windows(2)
            .all(|w| w[0].rel_offset < w[1].rel_offset && w[0].position < w[1].position)
            && offset_index
                .iter()
                .all(|e| (e.rel_offset as i64) < span && (e.position as u64) < self.size);
        let times_ok = time_index
            .windows(2)
            .all(|w| w[0].timestamp < w[1].timestamp && w[0].rel_offset <= w[1].rel_offset)
            && time_index.iter().all(|e| (e.rel_offset as i64) < span)
            && time_index.is_empty() == (self.size == 0);
        if !offsets_ok || !times_ok {
            return Ok(false);
        }
        self.max_timestamp = time_index
            .last()
            .map(|e| (e.timestamp, self.base_offset.plus(e.rel_offset as i64)));
        self.offset_index = offset_index;
        self.time_index = time_index;
        self.next_offset = next_offset;
        Ok(true)
    }

    /// Deletes the segment's files (missing ones are fine). Readers holding `file` keep
    /// reading the unlinked file.
    pub fn delete_files(&self, dir: &Path) -> io::Result<()> {
        for ext in [
            LOG_EXT,
            INDEX_EXT,
            TIMEINDEX_EXT,
            super::txn_index::TXNINDEX_EXT,
        ] {
            match std::fs::remove_file(segment_path(dir, self.base_offset, ext)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rafka_core::batch::BatchBuilder;

    /// A segment at base 100 holding `n` one-record batches with timestamps cycling `ts`.
    fn check_segment(dir: &Path, n: i64, ts: &[i64], interval: u32) -> Segment {
        let mut seg = Segment::create(dir, Offset(100), &OpenFiles::new(8)).unwrap();
        for i in 0..n {
            let mut b = BatchBuilder::new(Offset(0))
                .kv(b"k", &[0u8; 100], Timestamp(ts[i as usize % ts.len()]))
                .build();
            b.set_base_offset(seg.next_offset);
            let pos = seg.size;
            seg.file().unwrap().write_all_at(b.as_bytes(), pos).unwrap();
            let h = BatchHeader::parse(b.as_bytes()).unwrap();
            seg.track(&h, pos, interval);
        }
        seg
    }

    #[test]
    fn file_names() {
        let p = segment_path(Path::new("/d"), Offset(42), LOG_EXT);
        assert_eq!(p, Path::new("/d/00000000000000000042.log"));
        assert_eq!(
            parse_log_file_name("00000000000000000042.log"),
            Some(Offset(42))
        );
        assert_eq!(parse_log_file_name("42.log"), None);
        assert_eq!(parse_log_file_name("0000000000000000004x.log"), None);
        assert_eq!(parse_log_file_name("00000000000000000042.index"), None);
    }

    #[test]
    fn index_lookup_and_rebuild_agree() {
        let dir = tempfile::tempdir().unwrap();
        let seg = check_segment(dir.path(), 50, &[5, 3, 9, 9, 20], 300);
        assert!(!seg.offset_index.is_empty());
        for off in 100..150 {
            let pos = seg.index_floor_position(Offset(off));
            let h = read_header(&seg.file().unwrap(), pos).unwrap().unwrap();
            assert!(h.base_offset <= Offset(off), "index overshoots {off}");
        }
        assert_eq!(seg.max_timestamp, Some((Timestamp(20), Offset(104))));
        let mut again = Segment::open(dir.path(), Offset(100), &OpenFiles::new(8)).unwrap();
        let out = again.rebuild(true, OffsetRule::Contiguous, 300).unwrap();
        assert_eq!(out.n_batches, 50);
        assert_eq!(out.stop_reason, None);
        assert_eq!(again.offset_index, seg.offset_index);
        assert_eq!(again.time_index, seg.time_index);
        assert_eq!(again.next_offset, Offset(150));
    }

    #[test]
    fn index_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let seg = check_segment(dir.path(), 30, &[1, 2, 3], 200);
        seg.write_index_files(dir.path()).unwrap();
        let mut loaded = Segment::open(dir.path(), Offset(100), &OpenFiles::new(8)).unwrap();
        assert!(loaded.load_index_files(dir.path(), Offset(130)).unwrap());
        assert_eq!(loaded.offset_index, seg.offset_index);
        assert_eq!(loaded.max_timestamp, Some((Timestamp(3), Offset(102))));
        // An index that points past the end of the file is refused.
        let mut wrong = Segment::open(dir.path(), Offset(100), &OpenFiles::new(8)).unwrap();
        wrong.size = 10;
        assert!(!wrong.load_index_files(dir.path(), Offset(130)).unwrap());
    }

    #[test]
    fn time_floor_never_skips_a_match() {
        let dir = tempfile::tempdir().unwrap();
        let ts = [10, 30, 20, 40, 40, 50, 15, 60];
        let seg = check_segment(dir.path(), 40, &ts, 150);
        for target in [0, 10, 11, 30, 35, 40, 45, 50, 60] {
            let pos = seg.time_floor_position(Timestamp(target));
            // Every batch before `pos` must have a smaller max timestamp.
            let mut p = 0;
            while p < pos {
                let h = read_header(&seg.file().unwrap(), p).unwrap().unwrap();
                assert!(h.max_timestamp.0 < target, "skipped a match for {target}");
                p += h.size_bytes;
            }
        }
    }
}
