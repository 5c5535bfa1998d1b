//! Snapshots of the memory engine: the whole state written as one file of ops (the WAL's
//! record format, closed by an end record), so that older WALs can be deleted. Written
//! by [`snapshot_loop`] on the engine's background thread after
//! `storage.memory.snapshot_interval_bytes` of WAL or `_ms`, and once more at close.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Weak;
use std::time::Duration;

use rafka_core::{
    AbortedTxn, Offset, ProducerSnapshot, RecordBatch, StorageResult, TopicPartition,
};

use super::wal::{self, parse_generation, Op, Wal, SNAPSHOT_MAGIC, WAL_EXT, WAL_PREFIX};
use super::Inner;
use crate::durable::sync_dir;

/// File name prefix of a snapshot.
pub(super) const SNAPSHOT_PREFIX: &str = "snapshot-";
/// File name extension of a snapshot.
pub(super) const SNAPSHOT_EXT: &str = ".snap";
/// Extension of a snapshot being written (before its rename).
pub(super) const TMP_EXT: &str = ".tmp";

/// `snapshot-<generation, 20 digits>.snap`.
pub(super) fn snapshot_name(generation: u64) -> String {
    format!("{SNAPSHOT_PREFIX}{generation:020}{SNAPSHOT_EXT}")
}

/// One partition in a snapshot: log start, first batch's base, batches, aborted
/// transactions, producer snapshot.
type PartCapture = (
    TopicPartition,
    Offset,
    Offset,
    Vec<bytes::Bytes>,
    Vec<AbortedTxn>,
    Option<ProducerSnapshot>,
);

/// A snapshot's content, captured under the lock and written outside it.
type Capture = Vec<PartCapture>;

impl Inner {
    /// Writes a snapshot of the whole state and deletes the WALs and snapshots it
    /// replaces. A no-op without a directory. Safe to call concurrently with everything.
    pub(super) fn snapshot(&self) -> StorageResult<()> {
        let Some(dir) = &self.opts.dir else {
            return Ok(());
        };
        let _one = self.snapshot_lock.lock();
        let (generation, capture) = {
            let mut st = self.state.lock();
            let Some(wal) = st.wal.as_mut() else {
                return Ok(());
            };
            // After the switch `flush` syncs only the new WAL: make the old one durable.
            wal.file.sync_data()?;
            self.commit.all_synced();
            let generation = wal.generation + 1;
            st.wal = Some(Wal::create(dir, generation)?);
            st.wal_bytes_since_snapshot = 0;
            let capture: Capture = st
                .parts
                .iter()
                .map(|(tp, p)| {
                    let next = p.batches.front().map_or(p.log_end, |b| b.base);
                    let batches = p.batches.iter().map(|b| b.bytes.clone()).collect();
                    (
                        tp.clone(),
                        p.log_start,
                        next,
                        batches,
                        p.aborted.clone(),
                        p.producer_snapshot.clone(),
                    )
                })
                .collect();
            (generation, capture)
        };
        let n_bytes = write_snapshot(dir, generation, capture)?;
        // The new snapshot is durable: what it replaces can go.
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            let old = parse_generation(&name, WAL_PREFIX, WAL_EXT)
                .or_else(|| parse_generation(&name, SNAPSHOT_PREFIX, SNAPSHOT_EXT))
                .is_some_and(|g| g < generation);
            if old {
                fs::remove_file(dir.join(&*name))?;
            }
        }
        sync_dir(dir)?;
        self.n_snapshots.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(dir = %dir.display(), generation, bytes = n_bytes, "wrote a memory engine snapshot");
        Ok(())
    }
}

/// Writes `snapshot-<generation>.snap` atomically: temp file, fsync, rename, fsync dir.
fn write_snapshot(dir: &Path, generation: u64, capture: Capture) -> io::Result<u64> {
    let name = snapshot_name(generation);
    let tmp = dir.join(format!("{name}{TMP_EXT}"));
    let file = File::create(&tmp)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(SNAPSHOT_MAGIC)?;
    let mut n_bytes = SNAPSHOT_MAGIC.len() as u64;
    let mut n_records = 0u64;
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut put = |w: &mut BufWriter<File>, op: &Op| -> io::Result<u64> {
        buf.clear();
        wal::encode(op, &mut buf);
        w.write_all(&buf)?;
        Ok(buf.len() as u64)
    };
    for (tp, log_start, next_offset, batches, aborted, producers) in capture {
        let reset = Op::Reset {
            tp: tp.clone(),
            log_start,
            next_offset,
        };
        n_bytes += put(&mut w, &reset)?;
        n_records += 1;
        for bytes in batches {
            let batch = RecordBatch::parse(bytes).map_err(io::Error::other)?;
            n_bytes += put(&mut w, &Op::Append(tp.clone(), batch))?;
            n_records += 1;
        }
        for a in aborted {
            n_bytes += put(&mut w, &Op::Aborted(tp.clone(), a))?;
            n_records += 1;
        }
        if let Some(s) = producers {
            n_bytes += put(&mut w, &Op::ProducerSnapshot(tp.clone(), s.offset, s.bytes))?;
            n_records += 1;
        }
    }
    n_bytes += put(&mut w, &Op::End(n_records))?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, dir.join(&name))?;
    sync_dir(dir)?;
    Ok(n_bytes)
}

pub(super) fn snapshot_loop(inner: Weak<Inner>, wake: mpsc::Receiver<()>, interval: Duration) {
    loop {
        match wake.recv_timeout(interval) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let changed = {
            let st = inner.state.lock();
            !st.closed && st.wal_bytes_since_snapshot > 0
        };
        if changed {
            if let Err(e) = inner.snapshot() {
                tracing::error!(error = %e, "memory engine snapshot failed; the WAL keeps growing until one succeeds");
            }
        }
    }
}
