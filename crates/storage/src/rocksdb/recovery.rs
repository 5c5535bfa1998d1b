//! Start-up of the `rocksdb` engine. RocksDB recovers its own files when the database
//! opens (point-in-time WAL recovery: a torn tail is dropped); what is left here is to
//! read the partitions back from `meta` and load each one's index, cutting a partition at
//! a gap in its batches (which a well-formed history never leaves).

use std::collections::VecDeque;
use std::path::Path;

use rafka_core::{LogConfig, Offset, StorageResult, TopicPartition};
use rocksdb::{WriteBatch, WriteOptions, DB};

use super::keys::{
    be_u64, key, key_end, IndexEntry, CF_BATCHES, CF_INDEX, CF_META, META_PARTITION_PREFIX,
};
use super::partition::PartState;
use super::{cf, corrupt, db_error};

/// Every partition stored in `db` (its id and state), read back at open. The states have
/// the default [`LogConfig`]; the engine gives them its own.
pub(super) fn recover(
    db: &DB,
    root: &Path,
) -> StorageResult<Vec<(TopicPartition, u64, PartState)>> {
    let mut it = db.raw_iterator_cf(cf(db, CF_META));
    it.seek(META_PARTITION_PREFIX);
    let mut found = Vec::new();
    while it.valid() {
        let (Some(k), Some(v)) = (it.key(), it.value()) else {
            break;
        };
        let Some(name) = k.strip_prefix(META_PARTITION_PREFIX) else {
            break;
        };
        let tp = std::str::from_utf8(name)
            .ok()
            .and_then(TopicPartition::from_dir_name);
        match (tp, be_u64(v, 0), be_u64(v, 8)) {
            (Some(tp), Some(id), Some(start)) => found.push((tp, id, Offset(start as i64))),
            _ => {
                tracing::warn!(root = %root.display(), "skipping an unreadable partition entry")
            }
        }
        it.next();
    }
    it.status().map_err(db_error)?;
    found
        .into_iter()
        .map(|(tp, id, log_start)| {
            let st = load_partition(db, &tp, id, log_start)?;
            Ok((tp, id, st))
        })
        .collect()
}

/// Loads a partition's index and checks it is contiguous; a gap (which a well-formed
/// history never leaves) cuts the partition there.
fn load_partition(
    db: &DB,
    tp: &TopicPartition,
    id: u64,
    log_start: Offset,
) -> StorageResult<PartState> {
    let mut index = VecDeque::new();
    let mut size_bytes = 0u64;
    let mut it = db.raw_iterator_cf(cf(db, CF_INDEX));
    it.seek(key(id, Offset(0)));
    let prefix = id.to_be_bytes();
    let mut cut = None;
    while it.valid() {
        let (Some(k), Some(v)) = (it.key(), it.value()) else {
            break;
        };
        if k[..8] != prefix {
            break;
        }
        let e = IndexEntry::parse(k, v).ok_or_else(|| corrupt(format!("{tp}: bad index entry")))?;
        if let Some(prev) = index.back() {
            let prev: &IndexEntry = prev;
            if prev.next != e.base {
                tracing::warn!(partition = %tp, expected = %prev.next, found = %e.base, "gap in the stored batches; cutting the log there");
                cut = Some(e.base);
                break;
            }
        }
        size_bytes += e.size as u64;
        index.push_back(e);
        it.next();
    }
    it.status().map_err(db_error)?;
    if let Some(from) = cut {
        let mut wb = WriteBatch::default();
        wb.delete_range_cf(cf(db, CF_BATCHES), key(id, from), key_end(id));
        wb.delete_range_cf(cf(db, CF_INDEX), key(id, from), key_end(id));
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        db.write_opt(wb, &wo).map_err(db_error)?;
    }
    let log_end = index.back().map_or(log_start, |e| e.next).max(log_start);
    let txn = super::txn::TxnState::load(db, id, log_start, log_end)?;
    Ok(PartState {
        cfg: LogConfig::default(),
        index,
        log_start,
        log_end,
        size_bytes,
        closed: false,
        txn,
    })
}
