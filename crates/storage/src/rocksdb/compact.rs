//! Compaction of the `rocksdb` engine. The cleaning itself is `rafka_core::compact`'s
//! [`clean_range`]; what is the engine's own is where its result lives:
//!
//! - The active part of a partition (never cleaned) is its newest batches, as many as fit
//!   in `segment.bytes` (at least the newest one): what a `log` engine's active segment
//!   could hold.
//! - The batches are read from a snapshot taken under the partition lock (a consistent
//!   view), streamed three times (transactions, dedupe map, cleaning) outside it, so only the
//!   map and the changes are held in memory; the result applies under the lock only if the
//!   partition saw no delete, truncation or other compaction meanwhile (appends only add
//!   after the range).
//! - The whole result is one synced `WriteBatch`: every rewritten batch and its index entry
//!   put, every removed one deleted from both families, and the partition's compaction
//!   bound (`meta` key `c/<id>`: below it, recovery accepts gaps between batches) raised to
//!   the cleaned offset. RocksDB applies a write batch whole or not at all, so a crash
//!   leaves the old batches or the new ones. Then the cleaned key range is compacted
//!   (`compact_range`) so the deleted batches free their disk space now.

use std::cell::RefCell;

use rafka_core::compact::{active_part_start, clean_range_streamed};
use rafka_core::{
    CompactionPlan, CompactionStats, Offset, RecordBatch, StorageError, StorageResult,
};
use rocksdb::{DBRawIterator, WriteBatch};

use super::keys::{compacted_key, key, IndexEntry, CF_BATCHES, CF_INDEX, CF_META};
use super::partition::RocksPartition;
use super::{cf, db_error};

/// The stored batches below the active part, in order, from a raw iterator; a read error
/// ends the iteration and is kept in `error`.
struct Batches<'a> {
    it: DBRawIterator<'a>,
    prefix: [u8; 8],
    active_from: Offset,
    error: &'a RefCell<Option<StorageError>>,
}

impl Iterator for Batches<'_> {
    type Item = RecordBatch;

    fn next(&mut self) -> Option<RecordBatch> {
        if !self.it.valid() {
            if let Err(e) = self.it.status() {
                *self.error.borrow_mut() = Some(db_error(e));
            }
            return None;
        }
        let (k, v) = (self.it.key()?, self.it.value()?);
        if k[..8] != self.prefix {
            return None;
        }
        match RecordBatch::parse(bytes::Bytes::copy_from_slice(v)) {
            Ok(b) if b.base_offset() < self.active_from => {
                self.it.next();
                Some(b)
            }
            Ok(_) => None,
            Err(e) => {
                *self.error.borrow_mut() = Some(e.into());
                None
            }
        }
    }
}

impl RocksPartition {
    /// Compacts as `plan` allows (see the module docs); with `crash_before_write`, stops
    /// right before the write batch and returns an error, as a crash there would.
    pub(super) fn compact_until(
        &self,
        plan: &CompactionPlan,
        crash_before_write: bool,
    ) -> StorageResult<CompactionStats> {
        let guard = self.inner.db.read();
        let db = guard
            .as_ref()
            .ok_or_else(|| StorageError::Closed(self.tp.to_string()))?;
        let (snapshot, first_key, log_start, active_from, version) = {
            let st = self.state.lock();
            if st.closed {
                return Err(StorageError::Closed(self.tp.to_string()));
            }
            let active_from = active_part_start(
                st.index.iter().map(|e| (e.base, e.size as u64)),
                st.cfg.segment_bytes,
                st.log_end,
            );
            // A consistent view for the three passes, taken with the version it matches.
            let first = key(self.id, st.index.front().map_or(st.log_start, |e| e.base));
            (db.snapshot(), first, st.log_start, active_from, st.version)
        };
        let read_error: RefCell<Option<StorageError>> = RefCell::new(None);
        let pass = || {
            let mut it = snapshot.raw_iterator_cf(cf(db, CF_BATCHES));
            it.seek(first_key);
            Batches {
                it,
                prefix: self.id.to_be_bytes(),
                active_from,
                error: &read_error,
            }
        };
        let cleaning =
            clean_range_streamed(pass, log_start, active_from, plan).map_err(|(o, e)| {
                StorageError::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: batch at offset {o}: {e}", self.tp),
                ))
            })?;
        if let Some(e) = read_error.into_inner() {
            return Err(e);
        }
        drop(snapshot);
        let mut stats = CompactionStats {
            cleaned_to: cleaning.cleaned_to,
            clean_bytes: 0,
            bytes_read: cleaning.bytes_read,
            bytes_written: cleaning.bytes_written,
            records_removed: cleaning.records_removed,
            batches_removed: cleaning.batches_removed,
        };
        let mut st = self.state.lock();
        if st.closed {
            return Err(StorageError::Closed(self.tp.to_string()));
        }
        if !cleaning.changes.is_empty() {
            if st.version != version {
                tracing::debug!(partition = %self.tp, "partition changed during cleaning; dropping the result");
                return Ok(CompactionStats {
                    cleaned_to: plan.first_dirty.max(log_start),
                    ..CompactionStats::default()
                });
            }
            let mut wb = WriteBatch::default();
            let mut updates = Vec::with_capacity(cleaning.changes.len());
            for (base, batch) in &cleaning.changes {
                let i = st
                    .index
                    .binary_search_by_key(base, |e| e.base)
                    .map_err(|_| {
                        StorageError::Io(std::io::Error::other(format!(
                            "{}: compaction of a batch at {base} that is not stored",
                            self.tp
                        )))
                    })?;
                let k = key(self.id, *base);
                match batch {
                    Some(b) => {
                        let entry = IndexEntry {
                            base: *base,
                            next: b.next_offset(),
                            max_timestamp: b.max_timestamp(),
                            size: b.size_bytes() as u32,
                        };
                        wb.put_cf(cf(db, CF_BATCHES), k, b.as_bytes());
                        wb.put_cf(cf(db, CF_INDEX), k, entry.value());
                        updates.push((i, Some(entry)));
                    }
                    None => {
                        wb.delete_cf(cf(db, CF_BATCHES), k);
                        wb.delete_cf(cf(db, CF_INDEX), k);
                        updates.push((i, None));
                    }
                }
            }
            let compacted_to = st.compacted_to.max(cleaning.cleaned_to);
            wb.put_cf(
                cf(db, CF_META),
                compacted_key(self.id),
                (compacted_to.0 as u64).to_be_bytes(),
            );
            if crash_before_write {
                return Err(StorageError::Io(std::io::Error::other(
                    "injected crash before the compaction's write batch",
                )));
            }
            self.inner.write(db, wb, true)?;
            for (i, entry) in &updates {
                let old = st.index[*i].size as u64;
                st.size_bytes -= old;
                match entry {
                    Some(e) => {
                        st.size_bytes += e.size as u64;
                        st.index[*i] = *e;
                    }
                    None => st.index[*i].size = 0,
                }
            }
            let removed: std::collections::HashSet<Offset> = updates
                .iter()
                .filter(|(_, e)| e.is_none())
                .map(|(i, _)| st.index[*i].base)
                .collect();
            if !removed.is_empty() {
                st.index.retain(|e| !removed.contains(&e.base));
            }
            st.compacted_to = compacted_to;
            st.version += 1;
            drop(st);
            // Deleted keys take disk until RocksDB compacts their files: do it now for the
            // cleaned range (outside the partition lock; readers and appends go on).
            let (from, to) = (key(self.id, Offset(0)), key(self.id, compacted_to));
            db.compact_range_cf(cf(db, CF_BATCHES), Some(from), Some(to));
            db.compact_range_cf(cf(db, CF_INDEX), Some(from), Some(to));
            st = self.state.lock();
        }
        stats.clean_bytes = st
            .index
            .iter()
            .take_while(|e| e.base < stats.cleaned_to)
            .map(|e| e.size as u64)
            .sum();
        tracing::debug!(partition = %self.tp, ?stats, "compacted");
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use rafka_core::{LogConfig, PartitionLog, Timestamp};

    use super::*;
    use crate::conformance::{read_all, tp, CompactionModel};
    use crate::rocksdb::RocksEngine;

    fn open(dir: &Path) -> (RocksEngine, Arc<RocksPartition>) {
        let engine = RocksEngine::open(dir.to_path_buf(), LogConfig::default()).unwrap();
        let cfg = LogConfig {
            segment_bytes: 1500,
            retention_ms: -1,
            ..LogConfig::default()
        };
        let log = engine.open_partition(&tp("c", 0), &cfg).unwrap();
        (engine, log)
    }

    fn plan(log: &RocksPartition) -> CompactionPlan {
        CompactionPlan {
            first_dirty: Offset(0),
            end: log.log_end_offset(),
            now: Timestamp(10_000),
            min_compaction_lag_ms: 0,
            delete_retention_ms: 0,
            dedupe_buffer_bytes: 1 << 20,
            codec: rafka_core::CompactionCodec::none(),
        }
    }

    fn same(a: &[RecordBatch], b: &[RecordBatch]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.as_bytes() == y.as_bytes())
    }

    /// A crash before the write batch recovers the old log; after it (no close, no memtable
    /// flush), the compacted one, gaps accepted below the compaction bound; a gap above the
    /// bound (damage) still cuts the log.
    #[test]
    fn a_crash_before_or_after_the_write_batch_recovers_old_or_new() {
        let dir = tempfile::tempdir().unwrap();
        let mut model = CompactionModel::default();
        let old = {
            let (_engine, log) = open(dir.path());
            for i in 0..60u32 {
                let value = (i % 7 != 3).then(|| format!("v{i}"));
                model.produce(
                    log.as_ref(),
                    &[(format!("k{}", i % 10), value)],
                    1_000 + i as i64,
                );
            }
            log.flush().unwrap();
            let old = read_all(log.as_ref(), Offset(0));
            let err = log.compact_until(&plan(&log), true).unwrap_err();
            assert!(err.to_string().contains("injected"), "{err}");
            old
        };
        let new = {
            let (_engine, log) = open(dir.path());
            assert!(same(&read_all(log.as_ref(), Offset(0)), &old));
            let stats = log.compact(&plan(&log)).unwrap();
            assert!(stats.records_removed > 0 && stats.batches_removed > 0);
            assert!(stats.clean_bytes < old.iter().map(|b| b.size_bytes() as u64).sum());
            read_all(log.as_ref(), Offset(0))
        };
        assert!(new.len() < old.len());
        let (engine, log) = open(dir.path());
        let got = read_all(log.as_ref(), Offset(0));
        assert!(same(&got, &new), "the compacted log is durable");
        model.check(log.as_ref(), Offset(0));
        assert_eq!(log.log_end_offset(), Offset(60));
        // A read from a removed offset returns the next surviving batch.
        assert!(new[0].base_offset() > Offset(1));
        let r = log.read(Offset(1), 1).unwrap();
        assert_eq!(
            RecordBatch::split_all(r.records).unwrap()[0].base_offset(),
            new[0].base_offset()
        );
        // Damage past the bound: a batch of the uncleaned tail goes missing.
        let bound = log.state.lock().compacted_to;
        let victim = new
            .iter()
            .rev()
            .nth(1)
            .filter(|b| b.base_offset() > bound)
            .expect("an uncleaned batch past the bound")
            .base_offset();
        {
            let guard = engine.inner.db.read();
            let db = guard.as_ref().unwrap();
            let mut wb = WriteBatch::default();
            wb.delete_cf(cf(db, CF_BATCHES), key(log.id, victim));
            wb.delete_cf(cf(db, CF_INDEX), key(log.id, victim));
            db.write(wb).unwrap();
        }
        drop(log);
        drop(engine);
        let (_engine, log) = open(dir.path());
        assert_eq!(
            log.log_end_offset(),
            victim,
            "cut at the damage, not at the gaps"
        );
    }
}
