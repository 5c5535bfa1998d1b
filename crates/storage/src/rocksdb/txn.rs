//! Transaction state of the `rocksdb` engine's partitions, under two key prefixes in the
//! `meta` family (both sort apart from the `p/` partition entries):
//! - `a/` ++ partition id (u64 BE) ++ marker offset (u64 BE) → producer id, first offset,
//!   last stable offset (i64 BE each): one aborted transaction. Written unsynced like an
//!   append (durable with the next `flush`); range-deleted with the batches by
//!   `delete_before`, retention and `truncate_after`, in the same write batch.
//! - `s/` ++ partition id → offset (i64 BE) ++ the broker's producer-state snapshot bytes;
//!   a synced write, deleted by a truncation below its offset.
//!
//! The entries of every partition are loaded at open and kept in memory ([`TxnState`]).

use rafka_core::{AbortedTxn, Offset, ProducerSnapshot, StorageResult};
use rocksdb::{WriteBatch, DB};

use super::keys::{be_u64, CF_META};
use super::{cf, corrupt, db_error};

/// Prefix of an aborted-transaction key.
const ABORTED_PREFIX: &[u8] = b"a/";
/// Prefix of a producer-snapshot key.
const SNAPSHOT_PREFIX: &[u8] = b"s/";

/// The key of the aborted transaction whose marker is at `offset` in partition `id`.
fn aborted_key(id: u64, offset: Offset) -> [u8; 18] {
    let mut k = [0u8; 18];
    k[..2].copy_from_slice(ABORTED_PREFIX);
    k[2..10].copy_from_slice(&id.to_be_bytes());
    k[10..].copy_from_slice(&(offset.0.max(0) as u64).to_be_bytes());
    k
}

fn snapshot_key(id: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..2].copy_from_slice(SNAPSHOT_PREFIX);
    k[2..].copy_from_slice(&id.to_be_bytes());
    k
}

/// A partition's aborted transactions and producer snapshot, mirrored in memory.
#[derive(Debug, Default)]
pub(super) struct TxnState {
    /// Invariant: sorted by marker offset, each marker in [log start, log end).
    aborted: Vec<AbortedTxn>,
    snapshot: Option<ProducerSnapshot>,
}

impl TxnState {
    /// Loads partition `id`'s entries and snapshot.
    pub(super) fn load(
        db: &DB,
        id: u64,
        log_start: Offset,
        log_end: Offset,
    ) -> StorageResult<TxnState> {
        let mut st = TxnState::default();
        let mut it = db.raw_iterator_cf(cf(db, CF_META));
        it.seek(aborted_key(id, Offset(0)));
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            if k.len() != 18 || k[..2] != *ABORTED_PREFIX || k[2..10] != id.to_be_bytes() {
                break;
            }
            let e = (|| {
                Some(AbortedTxn {
                    producer_id: be_u64(v, 0)? as i64,
                    first_offset: Offset(be_u64(v, 8)? as i64),
                    last_offset: Offset(be_u64(k, 10)? as i64),
                    last_stable_offset: Offset(be_u64(v, 16)? as i64),
                })
            })()
            .ok_or_else(|| corrupt(format!("partition {id}: bad aborted-transaction entry")))?;
            if e.last_offset >= log_start && e.last_offset < log_end {
                st.aborted.push(e);
            }
            it.next();
        }
        it.status().map_err(db_error)?;
        if let Some(v) = db
            .get_cf(cf(db, CF_META), snapshot_key(id))
            .map_err(db_error)?
        {
            match be_u64(&v, 0).map(|o| Offset(o as i64)) {
                Some(offset) if offset <= log_end => {
                    st.snapshot = Some(ProducerSnapshot {
                        offset,
                        bytes: bytes::Bytes::copy_from_slice(&v[8..]),
                    });
                }
                _ => tracing::warn!(
                    partition = id,
                    "ignoring a producer snapshot past the log end"
                ),
            }
        }
        Ok(st)
    }

    /// Whether an entry with this marker is known.
    pub(super) fn contains(&self, last_offset: Offset) -> bool {
        self.aborted
            .binary_search_by_key(&last_offset, |a| a.last_offset)
            .is_ok()
    }

    /// Adds `e` to `wb` (partition `id`); [`TxnState::added`] once written.
    pub(super) fn put(db: &DB, wb: &mut WriteBatch, id: u64, e: &AbortedTxn) {
        let mut v = [0u8; 24];
        v[..8].copy_from_slice(&e.producer_id.to_be_bytes());
        v[8..16].copy_from_slice(&e.first_offset.0.to_be_bytes());
        v[16..].copy_from_slice(&e.last_stable_offset.0.to_be_bytes());
        wb.put_cf(cf(db, CF_META), aborted_key(id, e.last_offset), v);
    }

    /// `e` was written.
    pub(super) fn added(&mut self, e: AbortedTxn) {
        rafka_core::txn::insert_aborted(&mut self.aborted, e);
    }

    /// Entries overlapping `[from, to)`.
    pub(super) fn overlapping(&self, from: Offset, to: Offset) -> Vec<AbortedTxn> {
        rafka_core::txn::aborted_overlapping(&self.aborted, from, to)
    }

    /// Adds to `wb` the deletion of partition `id`'s entries with markers below `offset`.
    pub(super) fn delete_below(db: &DB, wb: &mut WriteBatch, id: u64, offset: Offset) {
        wb.delete_range_cf(
            cf(db, CF_META),
            aborted_key(id, Offset(0)),
            aborted_key(id, offset),
        );
    }

    /// The log start moved to `offset` (written).
    pub(super) fn pruned_below(&mut self, offset: Offset) {
        let n = self.aborted.partition_point(|a| a.last_offset < offset);
        self.aborted.drain(..n);
    }

    /// Adds to `wb` the deletion of partition `id`'s entries from `log_end` on, and of its
    /// snapshot if it is past `log_end`.
    pub(super) fn delete_from(&self, db: &DB, wb: &mut WriteBatch, id: u64, log_end: Offset) {
        wb.delete_range_cf(
            cf(db, CF_META),
            aborted_key(id, log_end),
            aborted_key(id + 1, Offset(0)),
        );
        if self.snapshot.as_ref().is_some_and(|s| s.offset > log_end) {
            wb.delete_cf(cf(db, CF_META), snapshot_key(id));
        }
    }

    /// The log was truncated to `log_end` (written).
    pub(super) fn truncated(&mut self, log_end: Offset) {
        let n = self.aborted.partition_point(|a| a.last_offset < log_end);
        self.aborted.truncate(n);
        if self.snapshot.as_ref().is_some_and(|s| s.offset > log_end) {
            self.snapshot = None;
        }
    }

    /// Adds to `wb` the deletion of everything partition `id` keeps here.
    pub(super) fn delete_all(db: &DB, wb: &mut WriteBatch, id: u64) {
        wb.delete_range_cf(
            cf(db, CF_META),
            aborted_key(id, Offset(0)),
            aborted_key(id + 1, Offset(0)),
        );
        wb.delete_cf(cf(db, CF_META), snapshot_key(id));
    }

    /// Adds `snapshot` for partition `id` to `wb`; [`TxnState::snapshot_written`] once written.
    pub(super) fn put_snapshot(db: &DB, wb: &mut WriteBatch, id: u64, snapshot: &ProducerSnapshot) {
        let mut v = Vec::with_capacity(8 + snapshot.bytes.len());
        v.extend_from_slice(&snapshot.offset.0.to_be_bytes());
        v.extend_from_slice(&snapshot.bytes);
        wb.put_cf(cf(db, CF_META), snapshot_key(id), v);
    }

    /// `snapshot` was written.
    pub(super) fn snapshot_written(&mut self, snapshot: ProducerSnapshot) {
        self.snapshot = Some(snapshot);
    }

    /// The stored snapshot.
    pub(super) fn snapshot(&self) -> Option<ProducerSnapshot> {
        self.snapshot.clone()
    }
}
