//! Start-up of the `log` engine: whether the last run shut down cleanly, and each
//! partition's segments scanned back into a [`PartState`].
//!
//! After an unclean stop only the active segment can be torn (a roll syncs the closed
//! segment, its indexes and the directory): it is checked batch by batch (length, offset
//! order, CRC-32C) and cut at the first bad batch. Closed segments are trusted with their
//! index files unless those fail their sanity checks, in which case the indexes are rebuilt
//! from the `.log` file. Indexes are never trusted over the log.

use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::sync::Arc;

use rafka_core::batch::HEADER_BYTES;
use rafka_core::{LogConfig, Offset, StorageResult, TopicPartition};

use super::open_files::OpenFiles;
use super::partition::{now_ms, PartState, LOG_START_CHECKPOINT};
use super::segment::{
    parse_log_file_name, read_header, segment_path, OffsetRule, Segment, INDEX_EXT, LOG_EXT,
    TIMEINDEX_EXT,
};
use super::CLEAN_SHUTDOWN_MARKER;
use crate::durable::sync_dir;

/// Whether the previous run shut down cleanly: consumes the clean-shutdown marker in
/// `root` (so a crash from now on is seen as unclean) and warns about each directory in
/// `root` that is not a partition's.
pub(super) fn clean_start(root: &Path) -> StorageResult<bool> {
    let marker = root.join(CLEAN_SHUTDOWN_MARKER);
    let clean_start = match fs::remove_file(&marker) {
        Ok(()) => {
            sync_dir(root)?;
            true
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e.into()),
    };
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_dir = entry.file_type()?.is_dir();
        if !is_dir {
            // Files beside the partitions belong to others (the broker keeps its topic
            // metadata here); only a directory we cannot parse is worth a warning.
            continue;
        }
        if TopicPartition::from_dir_name(&name).is_none() {
            tracing::warn!(root = %root.display(), entry = %name, "skipping an entry that is not a partition directory");
        }
    }
    Ok(clean_start)
}

/// Recovers the partition stored in `dir` (which must exist): its segments, indexes and
/// log start offset. `clean` says whether the engine shut down cleanly; after an unclean
/// stop the active segment is CRC-checked batch by batch and cut at the first bad one.
/// Closed segments were synced with their indexes when they rolled, so they are not
/// rescanned unless their index files fail the sanity checks.
pub(super) fn recover(
    tp: &TopicPartition,
    dir: &Path,
    cfg: LogConfig,
    clean: bool,
    files: &Arc<OpenFiles>,
) -> StorageResult<PartState> {
    // A compaction's swap interrupted by a crash: completed if committed, else undone.
    super::cleaner::finish_swaps(dir)?;
    let checkpoint = read_checkpoint(dir, tp)?;
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(base) = parse_log_file_name(&name) {
            bases.push(base);
        } else if name.ends_with(".tmp") {
            // A checkpoint write that did not reach its rename.
            let _ = fs::remove_file(entry.path());
        } else if !(name == LOG_START_CHECKPOINT
            || super::producer_snapshot::is_snapshot_file(&name)
            || name.ends_with(&format!(".{}", super::txn_index::TXNINDEX_EXT))
            || name.ends_with(&format!(".{INDEX_EXT}"))
            || name.ends_with(&format!(".{TIMEINDEX_EXT}")))
        {
            tracing::warn!(partition = %tp, file = %name, "ignoring unknown file in partition directory");
        }
    }
    bases.sort();

    let interval = cfg.index_interval_bytes;
    let mut segments = Vec::with_capacity(bases.len().max(1));
    for (i, &base) in bases.iter().enumerate() {
        // An I/O error names the segment, so the operator knows which file to look at.
        let path = segment_path(dir, base, LOG_EXT);
        let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let mut seg = Segment::open(dir, base, files).map_err(named)?;
        if let Some(&next) = bases.get(i + 1) {
            if !seg.load_index_files(dir, next).map_err(named)? {
                let out = seg
                    .rebuild(false, OffsetRule::GapsAllowed, interval)
                    .map_err(named)?;
                if let Some(reason) = out.stop_reason {
                    tracing::warn!(partition = %tp, segment = %base, %reason, "closed segment is damaged; reads past the damage will fail");
                }
                if seg.next_offset > next {
                    tracing::warn!(partition = %tp, segment = %base, next_segment = %next, "segment overlaps the next one");
                } else if seg.next_offset < next {
                    // What compaction leaves when it removes a segment's last batches.
                    tracing::debug!(partition = %tp, segment = %base, next_segment = %next, "gap between segments");
                }
            }
        } else {
            let out = seg
                .rebuild(!clean, OffsetRule::Contiguous, interval)
                .map_err(named)?;
            if out.invalid_bytes > 0 {
                let file_len = seg.size + out.invalid_bytes;
                let file = seg.file().map_err(named)?;
                let n_batches_cut = count_batches(&file, seg.size, file_len).map_err(named)?;
                tracing::warn!(
                    partition = %tp,
                    segment = %base,
                    batches_kept = out.n_batches,
                    batches_cut = n_batches_cut,
                    bytes_cut = out.invalid_bytes,
                    reason = out.stop_reason.as_deref().unwrap_or(""),
                    "cutting the log tail at the first bad batch"
                );
                file.set_len(seg.size).map_err(named)?;
                file.sync_all().map_err(named)?;
            }
            if seg.size > 0 {
                // The age for segment.ms counts from when this process first saw data.
                seg.first_append_ms = Some(now_ms());
            }
        }
        segments.push(seg);
    }
    if segments.is_empty() {
        segments.push(Segment::create(
            dir,
            checkpoint.unwrap_or(Offset(0)),
            files,
        )?);
    }
    let first_base = segments[0].base_offset;
    let mut state = PartState {
        cfg,
        segments,
        log_start: checkpoint.map_or(first_base, |c| c.max(first_base)),
        closed: false,
        txn: Default::default(),
        producer_snapshot: None,
    };
    if state.log_start > state.log_end() {
        // Records were deleted up to the checkpoint, and the tail beyond the log end
        // did not survive the crash: start an empty log at the log start offset.
        tracing::warn!(partition = %tp, log_start = %state.log_start, log_end = %state.log_end(), "log start offset is past the recovered log end; starting empty");
        for seg in std::mem::take(&mut state.segments) {
            seg.delete_files(dir)?;
        }
        state
            .segments
            .push(Segment::create(dir, state.log_start, files)?);
    }
    let bounds: Vec<(Offset, Offset)> = state
        .segments
        .iter()
        .map(|s| (s.base_offset, s.next_offset))
        .collect();
    state.txn = super::txn_index::TxnIndex::load(dir, &bounds)?;
    state.txn.prune_below(state.log_start);
    state.producer_snapshot = super::producer_snapshot::latest(dir, state.log_end())?;
    Ok(state)
}

fn read_checkpoint(dir: &Path, tp: &TopicPartition) -> io::Result<Option<Offset>> {
    match fs::read_to_string(dir.join(LOG_START_CHECKPOINT)) {
        Ok(text) => match text.trim().parse::<i64>() {
            Ok(v) if v >= 0 => Ok(Some(Offset(v))),
            _ => {
                tracing::warn!(partition = %tp, "ignoring unparsable log start offset checkpoint");
                Ok(None)
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Counts, best effort, the batches in `[position, end)` by following length fields; used
/// only to report what recovery cut.
fn count_batches(file: &File, mut position: u64, end: u64) -> io::Result<u64> {
    let mut n = 0;
    while position < end {
        n += 1;
        match read_header(file, position)? {
            Some(h) if h.size_bytes >= HEADER_BYTES as u64 && position + h.size_bytes <= end => {
                position += h.size_bytes
            }
            _ => break,
        }
    }
    Ok(n)
}
