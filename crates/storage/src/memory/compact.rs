//! Compaction of the `memory` engine. The cleaning itself is `rafka_core::compact`'s
//! [`clean_range`]; what is the engine's own is where its result lives:
//!
//! - The active part of a partition (never cleaned) is its newest batches, as many as fit
//!   in `segment.bytes` (at least the newest one): what a `log` engine's active segment
//!   could hold.
//! - The batches are copied (shared `Bytes` handles) under the engine lock and cleaned
//!   outside it; the result applies under the lock only if the partition saw no delete,
//!   truncation or other compaction meanwhile (appends only add after the range).
//! - The changes go to the WAL before they apply, as [`Op::Compact`] records of at most
//!   [`COMPACT_RECORD_BYTES`] each (one record for all but very large cleanings), in offset
//!   order, and are fsynced before `compact` returns. A record is all or nothing (its CRC
//!   covers it); a crash between two records leaves a prefix of the changes, which is a
//!   consistent log (see [`clean_range`]). Snapshots store the compacted batches with their
//!   gaps.

use rafka_core::compact::{active_part_start, clean_range};
use rafka_core::{
    CompactionPlan, CompactionStats, Offset, RecordBatch, StorageError, StorageResult,
    TopicPartition,
};

use super::partition::{PartState, StoredBatch};
use super::wal::{compact_entry_bytes, Op, COMPACT_RECORD_BYTES};
use super::Inner;

/// Where a test stops a compaction, as a crash would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrashPoint {
    /// After this many WAL records of the compaction are written, before the rest (and
    /// before any is applied in memory).
    AfterRecords(usize),
}

impl PartState {
    /// Applies compaction changes (base offset → replacement batch, or removal), in offset
    /// order; returns the change in stored bytes. Every base must be a stored batch.
    pub(crate) fn apply_compaction(
        &mut self,
        changes: Vec<(Offset, Option<RecordBatch>)>,
    ) -> Result<i64, String> {
        // Check first, so a bad record changes nothing.
        let mut at = Vec::with_capacity(changes.len());
        let mut from = 0;
        for (base, batch) in &changes {
            let i = from
                + self
                    .batches
                    .range(from..)
                    .position(|b| b.base == *base)
                    .ok_or_else(|| format!("compaction of a batch at {base} that is not stored"))?;
            if let Some(b) = batch {
                if b.base_offset() != *base || b.next_offset() != self.batches[i].next {
                    return Err(format!(
                        "compaction changes the offsets of the batch at {base}"
                    ));
                }
            }
            at.push(i);
            from = i + 1;
        }
        let mut delta = 0i64;
        for (&i, (_, batch)) in at.iter().zip(&changes) {
            let old = self.batches[i].bytes.len() as i64;
            match batch {
                Some(b) => {
                    delta += b.size_bytes() as i64 - old;
                    self.batches[i] = StoredBatch::new(b.clone());
                }
                None => {
                    delta -= old;
                    self.batches[i].bytes = bytes::Bytes::new();
                }
            }
        }
        // Removed batches were emptied in place so indexes held; now drop them.
        let removed: std::collections::HashSet<Offset> = changes
            .iter()
            .filter(|(_, b)| b.is_none())
            .map(|(o, _)| *o)
            .collect();
        if !removed.is_empty() {
            self.batches.retain(|b| !removed.contains(&b.base));
            // An aborted transaction stays listed while its marker is stored.
            self.aborted.retain(|a| !removed.contains(&a.last_offset));
        }
        self.size_bytes = self.size_bytes.saturating_add_signed(delta);
        self.version += 1;
        Ok(delta)
    }
}

impl Inner {
    /// Compacts one partition as `plan` allows (see the module docs); with `crash`, stops
    /// there and returns an error, leaving the WAL as a crash would.
    pub(crate) fn compact(
        &self,
        tp: &TopicPartition,
        id: u64,
        plan: &CompactionPlan,
        crash: Option<CrashPoint>,
    ) -> StorageResult<CompactionStats> {
        let _one_at_a_time = self.cleaning.lock();
        let (batches, log_start, active_from, version) = {
            let mut st = self.state.lock();
            let p = st.part_mut(tp, id)?;
            let active_from = active_part_start(
                p.batches.iter().map(|b| (b.base, b.bytes.len() as u64)),
                p.cfg.segment_bytes,
                p.log_end,
            );
            let batches: Vec<_> = p
                .batches
                .iter()
                .take_while(|b| b.base < active_from)
                .map(|b| b.bytes.clone())
                .collect();
            (batches, p.log_start, active_from, p.version)
        };
        let batches = batches
            .into_iter()
            .map(RecordBatch::parse)
            .collect::<Result<Vec<_>, _>>()?;
        let cleaning = clean_range(&batches, log_start, active_from, plan).map_err(|(o, e)| {
            StorageError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{tp}: batch at offset {o}: {e}"),
            ))
        })?;
        let mut stats = CompactionStats {
            cleaned_to: cleaning.cleaned_to,
            clean_bytes: 0,
            bytes_read: cleaning.bytes_read,
            bytes_written: cleaning.bytes_written,
            records_removed: cleaning.records_removed,
            batches_removed: cleaning.batches_removed,
        };
        if !cleaning.changes.is_empty() {
            // Records of at most COMPACT_RECORD_BYTES, in offset order.
            let mut records: Vec<Vec<(Offset, Option<RecordBatch>)>> = vec![Vec::new()];
            let mut bytes = 0;
            for change in cleaning.changes {
                let n = compact_entry_bytes(&change);
                let last = records.last_mut().expect("never empty");
                if !last.is_empty() && bytes + n > COMPACT_RECORD_BYTES {
                    records.push(Vec::new());
                    bytes = 0;
                }
                bytes += n;
                records.last_mut().expect("never empty").push(change);
            }
            {
                let mut st = self.state.lock();
                if st.part_mut(tp, id)?.version != version {
                    tracing::debug!(partition = %tp, "partition changed during cleaning; dropping the result");
                    return Ok(CompactionStats {
                        cleaned_to: plan.first_dirty.max(log_start),
                        ..CompactionStats::default()
                    });
                }
                for (i, changes) in records.into_iter().enumerate() {
                    if crash == Some(CrashPoint::AfterRecords(i)) {
                        return Err(StorageError::Io(std::io::Error::other(format!(
                            "injected crash after {i} compaction records"
                        ))));
                    }
                    // Each record applies once logged: a failure later leaves a prefix,
                    // which is a consistent log.
                    self.log(&mut st, &Op::Compact(tp.clone(), changes.clone()))?;
                    let delta = st
                        .part_mut(tp, id)?
                        .apply_compaction(changes)
                        .map_err(|e| StorageError::Io(std::io::Error::other(e)))?;
                    st.total_bytes = st.total_bytes.saturating_add_signed(delta);
                }
            }
            self.flush()?;
        }
        stats.clean_bytes = self.with_part(tp, id, |p| {
            Ok(p.batches
                .iter()
                .take_while(|b| b.base < stats.cleaned_to)
                .map(|b| b.bytes.len() as u64)
                .sum())
        })?;
        tracing::debug!(partition = %tp, ?stats, "compacted");
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use rafka_core::{LogConfig, PartitionLog, Timestamp};

    use super::*;
    use crate::conformance::{read_all, tp, CompactionModel};
    use crate::memory::wal::{parse_generation, WAL_EXT, WAL_PREFIX};
    use crate::memory::{MemoryEngine, MemoryOptions, MemoryPartition};

    fn cfg() -> LogConfig {
        LogConfig {
            segment_bytes: 1500,
            retention_ms: -1,
            ..LogConfig::default()
        }
    }

    fn open(dir: &Path) -> (MemoryEngine, std::sync::Arc<MemoryPartition>) {
        let engine = MemoryEngine::open(
            MemoryOptions {
                dir: Some(dir.to_path_buf()),
                snapshot_interval_bytes: u64::MAX,
                ..MemoryOptions::default()
            },
            LogConfig::default(),
        )
        .unwrap();
        let log = engine.open_partition(&tp("c", 0), &cfg()).unwrap();
        (engine, log)
    }

    fn plan(log: &MemoryPartition, now: i64) -> CompactionPlan {
        CompactionPlan {
            first_dirty: Offset(0),
            end: log.log_end_offset(),
            now: Timestamp(now),
            min_compaction_lag_ms: 0,
            delete_retention_ms: 0,
            dedupe_buffer_bytes: 1 << 20,
            codec: rafka_core::CompactionCodec::none(),
        }
    }

    fn only_wal(dir: &Path) -> std::path::PathBuf {
        let mut wals: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name();
                parse_generation(&name.to_string_lossy(), WAL_PREFIX, WAL_EXT)
                    .map(|_| dir.join(name))
            })
            .collect();
        assert_eq!(wals.len(), 1);
        wals.pop().unwrap()
    }

    /// Fills a partition with 60 batches over 10 keys (tombstones included).
    fn fill(log: &MemoryPartition) -> CompactionModel {
        let mut model = CompactionModel::default();
        for i in 0..60u32 {
            let value = (i % 7 != 3).then(|| format!("v{i}"));
            model.produce(log, &[(format!("k{}", i % 10), value)], 1_000 + i as i64);
        }
        log.flush().unwrap();
        model
    }

    /// A crash at any byte of the compaction's WAL record recovers the old log before the
    /// record is whole and the compacted one after; an injected stop before the record is
    /// written recovers the old log.
    #[test]
    fn a_crash_anywhere_in_the_compaction_record_recovers_old_or_new() {
        let dir = tempfile::tempdir().unwrap();
        let (before, after, old_len, new_len, model) = {
            let (engine, log) = open(dir.path());
            let model = fill(&log);
            let old = read_all(log.as_ref(), Offset(0));
            let wal = only_wal(dir.path());
            let old_len = fs::metadata(&wal).unwrap().len();
            let err = log
                .inner
                .compact(
                    &log.tp,
                    log.id,
                    &plan(&log, 10_000),
                    Some(CrashPoint::AfterRecords(0)),
                )
                .unwrap_err();
            assert!(err.to_string().contains("injected"), "{err}");
            assert_eq!(fs::metadata(&wal).unwrap().len(), old_len);
            let stats = log.compact(&plan(&log, 10_000)).unwrap();
            assert!(stats.records_removed > 0 && stats.batches_removed > 0);
            let new = read_all(log.as_ref(), Offset(0));
            assert!(new.len() < old.len());
            let new_len = fs::metadata(&wal).unwrap().len();
            drop(log);
            drop(engine); // no close: no snapshot, the WAL is all there is
            (old, new, old_len, new_len, model)
        };
        let wal = only_wal(dir.path());
        let bytes = fs::read(&wal).unwrap();
        let mut cuts: Vec<u64> = (old_len..=new_len).step_by(37).collect();
        cuts.extend([old_len + 1, new_len - 1, new_len]);
        for cut in cuts {
            let copy = tempfile::tempdir().unwrap();
            fs::write(
                copy.path().join(wal.file_name().unwrap()),
                &bytes[..cut as usize],
            )
            .unwrap();
            let (_engine, log) = open(copy.path());
            let got = read_all(log.as_ref(), Offset(0));
            let want = if cut == new_len { &after } else { &before };
            assert_eq!(
                got.len(),
                want.len(),
                "cut at {cut} of {old_len}..{new_len}"
            );
            assert!(
                got.iter()
                    .zip(want)
                    .all(|(a, b)| a.as_bytes() == b.as_bytes()),
                "cut at {cut}: neither the old nor the new log"
            );
            model.check(log.as_ref(), Offset(0));
            assert_eq!(log.log_end_offset(), Offset(60));
        }
        // The compacted log survives a snapshot and a second restart, gaps and all.
        let (engine, log) = open(dir.path());
        engine.snapshot_now().unwrap();
        drop(log);
        drop(engine);
        let (_engine, log) = open(dir.path());
        let got = read_all(log.as_ref(), Offset(0));
        assert!(got
            .iter()
            .zip(&after)
            .all(|(a, b)| a.as_bytes() == b.as_bytes()));
        assert_eq!(got.len(), after.len());
        // A read from an offset compaction removed returns the next surviving batch.
        assert!(after[0].base_offset() > Offset(1), "compaction left a gap");
        let r = log.read(Offset(1), 1).unwrap();
        assert_eq!(
            RecordBatch::split_all(r.records).unwrap()[0].base_offset(),
            after[0].base_offset()
        );
        assert_eq!(
            log.append(crate::conformance::batch(1, 0, 1))
                .unwrap()
                .base_offset,
            Offset(60)
        );
    }
}
