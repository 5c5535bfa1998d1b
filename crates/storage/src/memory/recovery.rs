//! Start-up of the memory engine: the newest snapshot that reads back whole, then every
//! WAL after it replayed in order, the last cut at its first bad record. A leftover
//! snapshot `.tmp` (a snapshot that did not reach its rename) is removed; WALs and
//! snapshots older than the snapshot used are deleted.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

use rafka_core::{LogConfig, Offset, StorageResult};

use super::snapshot::{snapshot_name, SNAPSHOT_EXT, SNAPSHOT_PREFIX, TMP_EXT};
use super::wal::{
    self, parse_generation, wal_name, Op, SNAPSHOT_MAGIC, WAL_EXT, WAL_MAGIC, WAL_PREFIX,
};
use super::EngineState;

impl EngineState {
    /// Applies a replayed op (from a snapshot or a WAL) to the state.
    fn replay(&mut self, op: Op, cfg: &LogConfig) -> Result<(), String> {
        match op {
            Op::Create(tp) => {
                self.part_or_create(tp, cfg, Offset(0), Offset(0));
            }
            Op::Reset {
                tp,
                log_start,
                next_offset,
            } => {
                self.remove_part(&tp);
                self.part_or_create(tp, cfg, log_start, next_offset);
            }
            Op::Append(tp, batch) => {
                let size = batch.size_bytes() as u64;
                self.part_or_create(tp, cfg, Offset(0), Offset(0))
                    .push(batch)?;
                self.total_bytes += size;
            }
            Op::DeleteBefore(tp, offset) => {
                let p = self.part_or_create(tp, cfg, Offset(0), Offset(0));
                if offset > p.log_end {
                    return Err(format!(
                        "delete_before {offset} past the log end {}",
                        p.log_end
                    ));
                }
                let freed = p.delete_before(offset);
                self.total_bytes -= freed;
            }
            Op::TruncateAfter(tp, offset) => {
                let freed = self
                    .part_or_create(tp, cfg, Offset(0), Offset(0))
                    .truncate_after(offset);
                self.total_bytes -= freed;
            }
            Op::Remove(tp) => self.remove_part(&tp),
            Op::Aborted(tp, a) => {
                let p = self.part_or_create(tp, cfg, Offset(0), Offset(0));
                if a.last_offset < p.log_start || a.last_offset >= p.log_end {
                    return Err(format!(
                        "aborted transaction with its marker at {} outside [{}, {})",
                        a.last_offset, p.log_start, p.log_end
                    ));
                }
                p.add_aborted(a);
            }
            Op::ProducerSnapshot(tp, offset, bytes) => {
                let p = self.part_or_create(tp, cfg, Offset(0), Offset(0));
                if offset > p.log_end {
                    return Err(format!(
                        "producer snapshot at {offset} past the log end {}",
                        p.log_end
                    ));
                }
                p.producer_snapshot = Some(rafka_core::ProducerSnapshot { offset, bytes });
            }
            Op::End(_) => return Err("end record inside a log".to_string()),
        }
        Ok(())
    }
}

/// Loads a snapshot into a fresh state; `Err` (with the reason) unless it reads back whole.
fn load_snapshot(path: &Path, cfg: &LogConfig) -> io::Result<Result<EngineState, String>> {
    let file = File::open(path)?;
    let mut st = EngineState::empty();
    let mut ended = false;
    let end = wal::read_records(&file, SNAPSHOT_MAGIC, |op| {
        if ended {
            return Err("records after the end record".to_string());
        }
        if let Op::End(_) = op {
            ended = true;
            return Ok(());
        }
        st.replay(op, cfg)
    })?;
    if let Some(reason) = end.stop_reason {
        return Ok(Err(reason));
    }
    if !ended {
        return Ok(Err("no end record (cut short)".to_string()));
    }
    Ok(Ok(st))
}

/// Rebuilds the state from `dir`: newest valid snapshot, then the WALs after it, cutting
/// the last at its first bad record. Returns the state and the generation for a new WAL.
pub(super) fn recover(dir: &Path, cfg: &LogConfig) -> StorageResult<(EngineState, u64)> {
    let mut snapshots = Vec::new();
    let mut wals = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(g) = parse_generation(&name, WAL_PREFIX, WAL_EXT) {
            wals.push(g);
        } else if let Some(g) = parse_generation(&name, SNAPSHOT_PREFIX, SNAPSHOT_EXT) {
            snapshots.push(g);
        } else if name.ends_with(TMP_EXT) {
            // A snapshot that did not reach its rename: the WALs still hold its content.
            tracing::info!(dir = %dir.display(), file = %name, "removing an unfinished snapshot");
            fs::remove_file(entry.path())?;
        }
        // Other files belong to others (the broker keeps its topic metadata here).
    }
    snapshots.sort_unstable_by(|a, b| b.cmp(a));
    wals.sort_unstable();
    let mut state = None;
    for &g in &snapshots {
        match load_snapshot(&dir.join(snapshot_name(g)), cfg)? {
            Ok(st) => {
                state = Some((st, g));
                break;
            }
            Err(reason) => {
                tracing::warn!(dir = %dir.display(), generation = g, %reason, "skipping an unreadable snapshot");
            }
        }
    }
    let (mut st, base) = state.unwrap_or_else(|| (EngineState::empty(), 0));
    if snapshots.first().is_some_and(|&g| g != base) || wals.first().is_some_and(|&g| g > base) {
        tracing::warn!(dir = %dir.display(), snapshot = base, "the newest snapshot is unusable or WALs are missing; recovering what is left");
    }
    let mut next_generation = base;
    let mut stopped = false;
    for &g in wals.iter().filter(|&&g| g >= base) {
        let path = dir.join(wal_name(g));
        if stopped {
            // Replaying past a cut would apply changes to a state missing some before them.
            tracing::warn!(dir = %dir.display(), generation = g, "dropping a WAL after a damaged one");
            fs::remove_file(&path)?;
            continue;
        }
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let end = wal::read_records(&file, WAL_MAGIC, |op| st.replay(op, cfg))?;
        if let Some(reason) = end.stop_reason {
            let len = file.metadata()?.len();
            tracing::warn!(
                dir = %dir.display(),
                generation = g,
                records_kept = end.n_records,
                bytes_cut = len - end.valid_bytes,
                %reason,
                "cutting the WAL at its first bad record"
            );
            file.set_len(end.valid_bytes)?;
            file.sync_all()?;
            stopped = true;
        }
        next_generation = g + 1;
    }
    for p in st.parts.values_mut() {
        if p.log_start > p.log_end {
            // Cannot come from a well-formed history; keep the invariant anyway.
            tracing::warn!(dir = %dir.display(), log_start = %p.log_start, log_end = %p.log_end, "log start past the log end after replay");
            p.log_start = p.log_end;
        }
    }
    for g in snapshots.iter().chain(&wals).filter(|&&g| g < base) {
        let _ = fs::remove_file(dir.join(wal_name(*g)));
        let _ = fs::remove_file(dir.join(snapshot_name(*g)));
    }
    Ok((st, next_generation))
}
