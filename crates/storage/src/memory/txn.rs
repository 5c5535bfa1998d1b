//! Transaction state of the memory engine's partitions: the aborted-transaction entries
//! and the broker's producer-state snapshot, kept in [`PartState`] and made durable the
//! engine's way, as WAL records (`Op::Aborted`, `Op::ProducerSnapshot`) that snapshots
//! repeat after each partition's batches. Entries live as long as their marker: the log
//! start moving past a marker drops its entry, a truncation drops the entries (and a
//! producer snapshot) past the new log end, in memory and on replay alike.

use rafka_core::{
    AbortedTxn, Offset, ProducerSnapshot, StorageError, StorageResult, TopicPartition,
};

use super::partition::PartState;
use super::wal::{Op, PRODUCER_SNAPSHOT_BYTES_MAX};
use super::Inner;

impl PartState {
    /// Adds `e` in marker order unless an entry with its marker is known; returns whether
    /// it was added.
    pub(crate) fn add_aborted(&mut self, e: AbortedTxn) -> bool {
        rafka_core::txn::insert_aborted(&mut self.aborted, e)
    }

    /// Forgets what the log no longer holds: entries whose marker is below the log start
    /// or at or past the log end, and a producer snapshot past the log end.
    pub(crate) fn trim_txn_state(&mut self) {
        let (start, end) = (self.log_start, self.log_end);
        self.aborted
            .retain(|a| a.last_offset >= start && a.last_offset < end);
        if self
            .producer_snapshot
            .as_ref()
            .is_some_and(|s| s.offset > end)
        {
            self.producer_snapshot = None;
        }
    }

    /// Entries overlapping `[from, to)`.
    pub(crate) fn aborted_overlapping(&self, from: Offset, to: Offset) -> Vec<AbortedTxn> {
        rafka_core::txn::aborted_overlapping(&self.aborted, from, to)
    }
}

impl Inner {
    pub(crate) fn record_aborted_txn(
        &self,
        tp: &TopicPartition,
        id: u64,
        txn: AbortedTxn,
    ) -> StorageResult<()> {
        let mut st = self.state.lock();
        let p = st.part_mut(tp, id)?;
        let known = p
            .aborted
            .binary_search_by_key(&txn.last_offset, |a| a.last_offset)
            .is_ok();
        if known || txn.last_offset < p.log_start || txn.last_offset >= p.log_end {
            return Ok(());
        }
        self.log(&mut st, &Op::Aborted(tp.clone(), txn))?;
        st.part_mut(tp, id)?.add_aborted(txn);
        Ok(())
    }

    pub(crate) fn write_producer_snapshot(
        &self,
        tp: &TopicPartition,
        id: u64,
        snapshot: ProducerSnapshot,
    ) -> StorageResult<()> {
        if snapshot.bytes.len() > PRODUCER_SNAPSHOT_BYTES_MAX {
            return Err(StorageError::BatchTooLarge {
                size: snapshot.bytes.len(),
                max: PRODUCER_SNAPSHOT_BYTES_MAX,
            });
        }
        {
            let mut st = self.state.lock();
            let p = st.part_mut(tp, id)?;
            if snapshot.offset > p.log_end {
                return Err(StorageError::OffsetOutOfRange {
                    offset: snapshot.offset,
                    log_start: p.log_start,
                    log_end: p.log_end,
                });
            }
            self.log(
                &mut st,
                &Op::ProducerSnapshot(tp.clone(), snapshot.offset, snapshot.bytes.clone()),
            )?;
            st.part_mut(tp, id)?.producer_snapshot = Some(snapshot);
        }
        self.flush()
    }
}
