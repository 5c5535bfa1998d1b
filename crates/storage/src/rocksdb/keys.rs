//! The database layout of the `rocksdb` engine: column family names, and the key and value
//! encodings of each family (see the module docs of `rocksdb` for what each holds).

use rafka_core::{Offset, Timestamp, TopicPartition};

/// Column family of the batch bytes.
pub(super) const CF_BATCHES: &str = "batches";
/// Column family of the per-batch index entries.
pub(super) const CF_INDEX: &str = "index";
/// Column family of the partitions (id and log start offset).
pub(super) const CF_META: &str = "meta";
/// Prefix of a partition's key in `meta`.
pub(super) const META_PARTITION_PREFIX: &[u8] = b"p/";
/// Prefix of a partition's compaction bound in `meta` (followed by its id): below that
/// offset the stored batches may have the gaps compaction leaves.
pub(super) const META_COMPACTED_PREFIX: &[u8] = b"c/";

/// The `meta` key of partition `id`'s compaction bound.
pub(super) fn compacted_key(id: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..2].copy_from_slice(META_COMPACTED_PREFIX);
    k[2..].copy_from_slice(&id.to_be_bytes());
    k
}

/// The key of `offset` in partition `id`; offsets are never negative, so u64 order is
/// offset order.
pub(super) fn key(id: u64, offset: Offset) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&id.to_be_bytes());
    k[8..].copy_from_slice(&(offset.0.max(0) as u64).to_be_bytes());
    k
}

/// One past every key of partition `id`.
pub(super) fn key_end(id: u64) -> [u8; 16] {
    key(id + 1, Offset(0))
}

pub(super) fn meta_key(tp: &TopicPartition) -> Vec<u8> {
    let mut k = META_PARTITION_PREFIX.to_vec();
    k.extend_from_slice(tp.dir_name().as_bytes());
    k
}

pub(super) fn meta_value(id: u64, log_start: Offset) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&id.to_be_bytes());
    v[8..].copy_from_slice(&log_start.0.to_be_bytes());
    v
}

pub(super) fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// What the index family holds for one batch.
#[derive(Debug, Clone, Copy)]
pub(super) struct IndexEntry {
    pub(super) base: Offset,
    pub(super) next: Offset,
    pub(super) max_timestamp: Timestamp,
    pub(super) size: u32,
}

impl IndexEntry {
    pub(super) fn value(&self) -> [u8; 20] {
        let mut v = [0u8; 20];
        v[..8].copy_from_slice(&self.next.0.to_be_bytes());
        v[8..16].copy_from_slice(&self.max_timestamp.0.to_be_bytes());
        v[16..].copy_from_slice(&self.size.to_be_bytes());
        v
    }

    pub(super) fn parse(k: &[u8], v: &[u8]) -> Option<IndexEntry> {
        Some(IndexEntry {
            base: Offset(be_u64(k, 8)? as i64),
            next: Offset(be_u64(v, 0)? as i64),
            max_timestamp: Timestamp(be_u64(v, 8)? as i64),
            size: u32::from_be_bytes(v.get(16..20)?.try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_partition_then_offset() {
        assert!(key(1, Offset(5)) < key(1, Offset(256)));
        assert!(key(1, Offset(i64::MAX)) < key(2, Offset(0)));
        assert_eq!(key_end(1), key(2, Offset(0)));
    }
}
