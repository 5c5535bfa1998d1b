//! Compaction of the `log` engine, Kafka's way: a dedupe map over the dirty section, then
//! groups of closed segments rewritten into `<base>.log.cleaned` (with its indexes) and
//! swapped in crash-safely. The active segment is never cleaned.
//!
//! The scans and the rewrite run outside the partition lock (closed segments never change
//! but through truncation, which the swap checks for); only the swap takes it. The swap, for
//! a group of segments with base offsets `b1 .. bk` cleaned into one segment at `b1`:
//!
//! 1. `<b1>.{log,index,timeindex}.cleaned` written and synced, and `<b1>.group.cleaned`
//!    holding `bk`;
//! 2. the three data files renamed `.cleaned` → `.swap`;
//! 3. `<b1>.group.cleaned` renamed to `<b1>.group.swap`, the directory synced: the commit;
//! 4. the old segments `b2 ..= bk` deleted;
//! 5. each `.swap` data file renamed over `<b1>.<ext>`;
//! 6. `<b1>.group.swap` removed, the directory synced.
//!
//! Recovery ([`finish_swaps`]) completes every committed swap (steps 4–6: for each file, a
//! `.swap` still present means the file under the final name is the old one) and deletes
//! every uncommitted `.cleaned` / `.swap` file, so a crash anywhere leaves the old segments
//! or the new one, never a mix.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use rafka_core::batch::{ATTRIBUTES, HEADER_BYTES, PRODUCER_ID};
use rafka_core::compact::{clean_batch_txn, Cleaned, OffsetMap, TxnIndex};
use rafka_core::{
    AbortedTxn, CompactionPlan, CompactionStats, Offset, RecordBatch, StorageError, StorageResult,
    Timestamp,
};

use super::header::BatchHeader;
use super::open_files::{FileSlot, OpenFiles};
use super::partition::LogPartition;
use super::segment::{
    read_at_most, read_header, segment_path, Segment, INDEX_EXT, LOG_EXT, TIMEINDEX_EXT,
};
use super::txn_index::{self, TXNINDEX_EXT};
use crate::durable::sync_dir;

/// Suffix of a cleaned file not yet swapped in.
pub(super) const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a cleaned file being swapped in.
pub(super) const SWAP_SUFFIX: &str = ".swap";
/// Extension of the file naming a group's last old segment.
const GROUP_EXT: &str = "group";

/// The data files of a segment, in the order the swap renames them.
const DATA_EXTS: [&str; 4] = [INDEX_EXT, TIMEINDEX_EXT, TXNINDEX_EXT, LOG_EXT];

/// Where a test stops a swap, leaving the files as a crash right after that step would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SwapStep {
    /// `.cleaned` files written.
    Written = 1,
    /// Data files renamed to `.swap`.
    Renamed = 2,
    /// The group file renamed: committed.
    Committed = 3,
    /// Old segments deleted.
    OldDeleted = 4,
    /// `.swap` files renamed into place.
    InPlace = 5,
}

/// Every step of the swap, for crash tests.
pub const SWAP_STEPS: [SwapStep; 5] = [
    SwapStep::Written,
    SwapStep::Renamed,
    SwapStep::Committed,
    SwapStep::OldDeleted,
    SwapStep::InPlace,
];

fn suffixed(dir: &Path, base: Offset, ext: &str, suffix: &str) -> PathBuf {
    let mut p = segment_path(dir, base, ext).into_os_string();
    p.push(suffix);
    PathBuf::from(p)
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A closed segment as the cleaner sees it, copied under the lock.
struct SegView {
    base: Offset,
    /// Opened under the lock and held for the cleaning (outside the open-files bound).
    file: Arc<File>,
    /// Which segment this was, to see at the swap that it is still there.
    slot: Arc<FileSlot>,
    size: u64,
    next: Offset,
    max_timestamp: Option<Timestamp>,
}

/// Calls `f` on each batch of a segment in order; stops early when `f` says so. Returns
/// bytes read.
fn scan(
    seg: &SegView,
    mut f: impl FnMut(RecordBatch) -> StorageResult<bool>,
) -> StorageResult<u64> {
    let mut pos = 0;
    while pos < seg.size {
        let h = read_header(&seg.file, pos)?
            .filter(|h| h.is_plausible() && pos + h.size_bytes <= seg.size)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("segment {}: bad batch at position {pos}", seg.base),
                )
            })?;
        let bytes = read_at_most(&seg.file, pos, h.size_bytes as usize)?;
        let batch = RecordBatch::parse(Bytes::from(bytes))?;
        pos += h.size_bytes;
        if !f(batch)? {
            break;
        }
    }
    Ok(pos)
}

/// Takes note of the transactions of a segment for `txns`, reading batch headers only
/// (and control batches whole). Returns bytes read.
fn observe_txns(seg: &SegView, txns: &mut TxnIndex) -> StorageResult<u64> {
    let mut pos = 0;
    let mut read = 0;
    while pos < seg.size {
        let buf = read_at_most(&seg.file, pos, HEADER_BYTES)?;
        read += buf.len() as u64;
        let h = BatchHeader::parse(&buf)
            .filter(|h| {
                buf.len() == HEADER_BYTES && h.is_plausible() && pos + h.size_bytes <= seg.size
            })
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("segment {}: bad batch at position {pos}", seg.base),
                )
            })?;
        let attributes = i16::from_be_bytes([buf[ATTRIBUTES], buf[ATTRIBUTES + 1]]);
        let mut pid = [0u8; 8];
        pid.copy_from_slice(&buf[PRODUCER_ID..PRODUCER_ID + 8]);
        let producer_id = i64::from_be_bytes(pid);
        if attributes & ATTR_CONTROL != 0 {
            let bytes = read_at_most(&seg.file, pos, h.size_bytes as usize)?;
            read += bytes.len() as u64;
            let batch = RecordBatch::parse(Bytes::from(bytes))?;
            txns.observe_marker(h.base_offset, producer_id, batch.control_type());
        } else if attributes & ATTR_TRANSACTIONAL != 0 {
            txns.observe_data(h.base_offset, producer_id);
        }
        pos += h.size_bytes;
    }
    Ok(read)
}

/// Attribute bits of a batch header.
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

fn malformed(base: Offset, e: rafka_core::batch::MalformedRecords) -> StorageError {
    StorageError::Io(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("batch at offset {base}: {e}"),
    ))
}

impl LogPartition {
    /// Compacts as `plan` allows; with `crash_after`, stops the first group's swap after
    /// that step and returns an error (tests then reopen the directory as after a crash).
    pub(crate) fn compact_until(
        &self,
        plan: &CompactionPlan,
        crash_after: Option<SwapStep>,
    ) -> StorageResult<CompactionStats> {
        let _one_at_a_time = self.cleaning.lock();
        let (views, log_start, segment_bytes, interval, aborted) = {
            let st = self.state.lock();
            self.check_open(&st)?;
            let closed = &st.segments[..st.segments.len() - 1];
            let views: Vec<SegView> = closed
                .iter()
                .map(|s| {
                    Ok(SegView {
                        base: s.base_offset,
                        file: s.file()?,
                        slot: Arc::clone(&s.slot),
                        size: s.size,
                        next: s.next_offset,
                        max_timestamp: s.max_timestamp.map(|(ts, _)| ts),
                    })
                })
                .collect::<io::Result<_>>()?;
            // The aborted transactions whose markers are in closed segments: a cleaned
            // segment keeps those whose marker it keeps.
            let active_base = st.active().base_offset;
            let aborted = st.txn.between(Offset(0), active_base).to_vec();
            (
                views,
                st.log_start,
                st.cfg.segment_bytes,
                st.cfg.index_interval_bytes,
                aborted,
            )
        };
        let first_dirty = plan.first_dirty.max(log_start);
        let mut stats = CompactionStats {
            cleaned_to: first_dirty,
            ..CompactionStats::default()
        };
        // The cleanable range: closed segments below the plan's end whose newest record is
        // older than the compaction lag.
        let lag_horizon = plan.now.0.saturating_sub(plan.min_compaction_lag_ms.max(0));
        let n_cleanable = views
            .iter()
            .take_while(|s| {
                s.next <= plan.end && s.max_timestamp.is_none_or(|ts| ts.0 <= lag_horizon)
            })
            .count();

        // The dedupe map over the dirty section, segment by segment; a segment that does not
        // fit ends the range to clean.
        // The transactions of the cleanable range, from its markers (see `TxnIndex`).
        let mut txns = TxnIndex::default();
        for seg in &views[..n_cleanable] {
            stats.bytes_read += observe_txns(seg, &mut txns)?;
        }
        let mut map = OffsetMap::with_memory(plan.dedupe_buffer_bytes);
        let mut last_of_producer: HashMap<i64, Offset> = HashMap::new();
        let mut n_mapped = 0;
        let mut any_dirty = false;
        for (i, seg) in views[..n_cleanable].iter().enumerate() {
            if seg.next <= first_dirty {
                n_mapped = i + 1;
                continue;
            }
            let mut fits = true;
            stats.bytes_read += scan(seg, |batch| {
                if batch.next_offset() <= first_dirty {
                    return Ok(true);
                }
                if batch.producer_id() >= 0 {
                    last_of_producer.insert(batch.producer_id(), batch.base_offset());
                }
                fits = map
                    .add_batch_txn(&batch, &txns, &plan.codec)
                    .map_err(|e| malformed(batch.base_offset(), e))?;
                Ok(fits)
            })?;
            if !fits {
                if n_mapped == i {
                    tracing::warn!(partition = %self.tp, segment = %seg.base, "log.cleaner.dedupe.buffer.size cannot hold one segment's keys; cleaning what fits");
                }
                break;
            }
            n_mapped = i + 1;
            any_dirty = true;
        }
        if !any_dirty {
            return Ok(stats);
        }
        let to_clean = &views[..n_mapped];

        // Groups of consecutive segments that fit one segment once cleaned.
        let mut groups: Vec<&[SegView]> = Vec::new();
        let mut start = 0;
        let mut bytes = 0u64;
        for (i, seg) in to_clean.iter().enumerate() {
            let span = seg.next.0 - to_clean[start].base.0;
            if i > start && (bytes + seg.size > segment_bytes || span > u32::MAX as i64) {
                groups.push(&to_clean[start..i]);
                start = i;
                bytes = 0;
            }
            bytes += seg.size;
        }
        groups.push(&to_clean[start..]);

        let mut crash_after = crash_after;
        for group in groups {
            let known = Known {
                map: &map,
                last_of_producer: &last_of_producer,
                aborted: &aborted,
            };
            let cleaned = self.clean_group(group, &known, plan, interval, &mut txns)?;
            stats.bytes_read += group.iter().map(|s| s.size).sum::<u64>();
            stats.bytes_written += cleaned.seg.size;
            stats.records_removed += cleaned.records_removed;
            stats.batches_removed += cleaned.batches_removed;
            self.swap_in(group, cleaned.seg, &cleaned.aborted, crash_after.take())?;
        }
        stats.cleaned_to = to_clean.last().map_or(first_dirty, |s| s.next);
        let st = self.state.lock();
        stats.clean_bytes = st
            .segments
            .iter()
            .take_while(|s| s.base_offset < stats.cleaned_to)
            .map(|s| s.size)
            .sum();
        tracing::debug!(partition = %self.tp, ?stats, "compacted");
        Ok(stats)
    }

    /// Writes the cleaned copy of `group` to `<b1>.*.cleaned`, synced.
    fn clean_group(
        &self,
        group: &[SegView],
        known: &Known<'_>,
        plan: &CompactionPlan,
        interval: u32,
        txns: &mut TxnIndex,
    ) -> StorageResult<CleanedGroup> {
        let Known {
            map,
            last_of_producer,
            aborted,
        } = *known;
        let base = group[0].base;
        let path = suffixed(&self.dir, base, LOG_EXT, CLEANED_SUFFIX);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        // Written under a temporary name: never closed by the open-files bound (it could
        // not be reopened by its final name) until the swap puts it in place.
        let mut seg = Segment::empty(base, OpenFiles::pinned(Arc::new(file)), &self.files);
        let mut out = CleanedGroup {
            seg: Segment::empty(base, Arc::clone(&seg.slot), &self.files),
            records_removed: 0,
            batches_removed: 0,
            aborted: Vec::new(),
        };
        // Offsets of the control batches kept: an aborted transaction stays indexed while
        // its marker is stored.
        let mut kept_markers = Vec::new();
        for old in group {
            scan(old, |batch| {
                let keep_if_empty = batch.producer_id() >= 0
                    && last_of_producer
                        .get(&batch.producer_id())
                        .is_none_or(|&o| o == batch.base_offset());
                let (decision, removed) = clean_batch_txn(
                    &batch,
                    map,
                    keep_if_empty,
                    plan.now,
                    plan.delete_retention_ms,
                    txns,
                    &plan.codec,
                )
                .map_err(|e| malformed(batch.base_offset(), e))?;
                out.records_removed += removed;
                let kept = match decision {
                    Cleaned::Keep => batch,
                    Cleaned::Rewrite(b) => b,
                    Cleaned::Remove => {
                        out.batches_removed += 1;
                        return Ok(true);
                    }
                };
                if kept.is_control() {
                    kept_markers.push(kept.base_offset());
                }
                let pos = seg.size;
                seg.file()?.write_all_at(kept.as_bytes(), pos)?;
                let header = BatchHeader::parse(kept.as_bytes()).expect("a batch has a header");
                debug_assert!(kept.size_bytes() >= HEADER_BYTES);
                seg.track(&header, pos, interval);
                Ok(true)
            })?;
        }
        seg.file()?.sync_all()?;
        seg.write_index_files_suffixed(&self.dir, CLEANED_SUFFIX)?;
        let group_end = group.last().expect("a group is never empty").next;
        out.aborted = aborted
            .iter()
            .filter(|a| {
                a.last_offset >= base
                    && a.last_offset < group_end
                    && kept_markers.binary_search(&a.last_offset).is_ok()
            })
            .copied()
            .collect();
        txn_index::write_file_suffixed(&self.dir, base, &out.aborted, CLEANED_SUFFIX)?;
        let last_old = group.last().expect("a group is never empty").base;
        let group_path = suffixed(&self.dir, base, GROUP_EXT, CLEANED_SUFFIX);
        let mut f = File::create(&group_path)?;
        io::Write::write_all(&mut f, last_old.0.to_string().as_bytes())?;
        f.sync_all()?;
        sync_dir(&self.dir)?;
        out.seg = seg;
        Ok(out)
    }

    /// Swaps the cleaned segment in for `group` (steps 2–6 of the module docs), under the
    /// partition lock. If the group changed meanwhile (a truncation), the cleaned files are
    /// dropped instead.
    fn swap_in(
        &self,
        group: &[SegView],
        new_seg: Segment,
        aborted: &[AbortedTxn],
        crash_after: Option<SwapStep>,
    ) -> StorageResult<()> {
        let dir = &self.dir;
        let b1 = group[0].base;
        let crash = |step: SwapStep| -> StorageResult<()> {
            if crash_after == Some(step) {
                return Err(StorageError::Io(io::Error::other(format!(
                    "injected crash after swap step {step:?}"
                ))));
            }
            Ok(())
        };
        let mut st = self.state.lock();
        let at = st.segments.iter().position(|s| s.base_offset == b1);
        let unchanged = at.is_some_and(|k| {
            k + group.len() < st.segments.len()
                && group.iter().zip(&st.segments[k..]).all(|(g, s)| {
                    g.base == s.base_offset && g.size == s.size && Arc::ptr_eq(&g.slot, &s.slot)
                })
        });
        if st.closed || !unchanged {
            drop(st);
            for ext in DATA_EXTS.iter().chain([&GROUP_EXT]) {
                remove_if_exists(&suffixed(dir, b1, ext, CLEANED_SUFFIX))?;
            }
            tracing::debug!(partition = %self.tp, segment = %b1, "log changed during cleaning; dropping the cleaned copy");
            return Ok(());
        }
        let k = at.expect("checked above");
        crash(SwapStep::Written)?;
        for ext in DATA_EXTS {
            fs::rename(
                suffixed(dir, b1, ext, CLEANED_SUFFIX),
                suffixed(dir, b1, ext, SWAP_SUFFIX),
            )?;
        }
        crash(SwapStep::Renamed)?;
        fs::rename(
            suffixed(dir, b1, GROUP_EXT, CLEANED_SUFFIX),
            suffixed(dir, b1, GROUP_EXT, SWAP_SUFFIX),
        )?;
        sync_dir(dir)?;
        crash(SwapStep::Committed)?;
        // Readers outside the lock retry from here on.
        self.generation.fetch_add(1, Ordering::SeqCst);
        let group_end = st.segments[k + group.len()].base_offset;
        let old: Vec<Segment> = st
            .segments
            .splice(k..k + group.len(), std::iter::once(new_seg))
            .collect();
        st.txn.replace_range(b1, group_end, aborted);
        for seg in &old[1..] {
            seg.delete_files(dir)?;
        }
        crash(SwapStep::OldDeleted)?;
        for ext in DATA_EXTS {
            fs::rename(
                suffixed(dir, b1, ext, SWAP_SUFFIX),
                segment_path(dir, b1, ext),
            )?;
        }
        // In place under its final name: from now on the bound may close and reopen it.
        let cleaned = st.segments[k].file()?;
        st.segments[k].slot = self.files.adopt(segment_path(dir, b1, LOG_EXT), cleaned);
        crash(SwapStep::InPlace)?;
        fs::remove_file(suffixed(dir, b1, GROUP_EXT, SWAP_SUFFIX))?;
        sync_dir(dir)?;
        Ok(())
    }
}

/// What the scans before cleaning learnt, for cleaning each group.
#[derive(Clone, Copy)]
struct Known<'a> {
    /// The dedupe map.
    map: &'a OffsetMap,
    /// Each producer's last batch in the dirty part.
    last_of_producer: &'a HashMap<i64, Offset>,
    /// The aborted transactions whose markers are in closed segments.
    aborted: &'a [AbortedTxn],
}

struct CleanedGroup {
    seg: Segment,
    records_removed: u64,
    batches_removed: u64,
    /// The group's aborted transactions whose markers the cleaned segment keeps.
    aborted: Vec<AbortedTxn>,
}

/// Start-up: completes every committed swap in `dir` and removes every uncommitted
/// cleaned file (see the module docs). Runs before the segments are listed.
pub(super) fn finish_swaps(dir: &Path) -> io::Result<()> {
    let mut committed = Vec::new();
    let mut leftovers = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy().into_owned();
        if let Some(base) = name
            .strip_suffix(&format!(".{GROUP_EXT}{SWAP_SUFFIX}"))
            .filter(|d| d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<i64>().ok())
        {
            committed.push(Offset(base));
        } else if name.ends_with(CLEANED_SUFFIX) || name.ends_with(SWAP_SUFFIX) {
            leftovers.push(entry.path());
        }
    }
    if committed.is_empty() && leftovers.is_empty() {
        // Nothing to finish: no directory entry changes, nothing to sync.
        return Ok(());
    }
    for b1 in committed {
        let group_file = suffixed(dir, b1, GROUP_EXT, SWAP_SUFFIX);
        let last_old = fs::read_to_string(&group_file)?
            .trim()
            .parse::<i64>()
            .map(Offset)
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: unparsable", group_file.display()),
                )
            })?;
        // The old segments after the first: every `.log` with a base in (b1, last_old].
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            if let Some(base) = super::segment::parse_log_file_name(&name.to_string_lossy()) {
                if base > b1 && base <= last_old {
                    for ext in DATA_EXTS {
                        remove_if_exists(&segment_path(dir, base, ext))?;
                    }
                }
            }
        }
        for ext in DATA_EXTS {
            let swap = suffixed(dir, b1, ext, SWAP_SUFFIX);
            if swap.exists() {
                fs::rename(&swap, segment_path(dir, b1, ext))?;
            }
        }
        fs::remove_file(&group_file)?;
        tracing::info!(dir = %dir.display(), segment = %b1, "completed an interrupted compaction swap");
    }
    for path in leftovers {
        if path.exists() {
            remove_if_exists(&path)?;
            tracing::info!(file = %path.display(), "removed an uncommitted compaction file");
        }
    }
    sync_dir(dir)
}
