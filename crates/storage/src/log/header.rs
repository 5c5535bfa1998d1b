//! Reads the fields of a stored batch header that the log needs to walk a segment
//! (base offset, length, magic, last offset delta, max timestamp) without building a
//! [`RecordBatch`](rafka_core::RecordBatch), so scans only touch 61 bytes per batch. The
//! layout is rafka-core's (`rafka_core::batch`), defined once.

use rafka_core::batch::{
    BASE_OFFSET, BATCH_LENGTH, HEADER_BYTES, LAST_OFFSET_DELTA, LOG_OVERHEAD, MAGIC, MAX_TIMESTAMP,
    RECORD_COUNT,
};
use rafka_core::{Offset, Timestamp};

/// The header fields of one stored batch, parsed from its first [`HEADER_BYTES`] bytes.
/// The size a negative length field parses to: beyond any file, and small enough that
/// adding a file position to it cannot overflow.
pub(crate) const NEGATIVE_LENGTH_SIZE: u64 = i64::MAX as u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: Offset,
    /// Total bytes of the batch, the 12-byte prefix included.
    pub size_bytes: u64,
    /// Format version; only 2 is ever stored.
    pub magic: i8,
    /// Last offset minus base offset.
    pub last_offset_delta: i32,
    /// Largest timestamp in the batch.
    pub max_timestamp: Timestamp,
    /// Records the header claims.
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses a header. `None` if `buf` is shorter than a header.
    pub fn parse(buf: &[u8]) -> Option<BatchHeader> {
        let h = buf.get(..HEADER_BYTES)?;
        let i64_at = |at: usize| i64::from_be_bytes(h[at..at + 8].try_into().expect("8 bytes"));
        let i32_at = |at: usize| i32::from_be_bytes(h[at..at + 4].try_into().expect("4 bytes"));
        // A negative length field becomes a huge size, which every caller rejects as
        // running past the end of the file. Not u64::MAX: `position + size` must not
        // overflow (the log_recovery fuzz target found that; release builds would wrap
        // and accept it).
        let length = i32_at(BATCH_LENGTH);
        let size_bytes = if length < 0 {
            NEGATIVE_LENGTH_SIZE
        } else {
            length as u64 + LOG_OVERHEAD as u64
        };
        Some(BatchHeader {
            base_offset: Offset(i64_at(BASE_OFFSET)),
            size_bytes,
            magic: h[MAGIC] as i8,
            last_offset_delta: i32_at(LAST_OFFSET_DELTA),
            max_timestamp: Timestamp(i64_at(MAX_TIMESTAMP)),
            record_count: i32_at(RECORD_COUNT),
        })
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> Offset {
        self.base_offset.plus(self.last_offset_delta as i64)
    }

    /// The offset after the last record.
    pub fn next_offset(&self) -> Offset {
        self.last_offset().plus(1)
    }

    /// Whether the framing is plausible: magic 2, a length that covers a header, and a
    /// record count no larger than the offset span (compaction leaves fewer records, or none,
    /// under an unchanged last offset delta). The CRC is checked separately.
    pub fn is_plausible(&self) -> bool {
        self.magic == 2
            && self.size_bytes >= HEADER_BYTES as u64
            && self.last_offset_delta >= 0
            && self.record_count >= 0
            && self.record_count as i64 <= self.last_offset_delta as i64 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rafka_core::batch::BatchBuilder;

    fn check(n_records: usize) {
        let mut b = BatchBuilder::new(Offset(0));
        for i in 0..n_records {
            b = b.kv(b"k", b"v", Timestamp(10 + i as i64));
        }
        let mut batch = b.build();
        batch.set_base_offset(Offset(7));
        let h = BatchHeader::parse(batch.as_bytes()).unwrap();
        assert_eq!(h.base_offset, Offset(7));
        assert_eq!(h.size_bytes, batch.size_bytes() as u64);
        assert_eq!(h.last_offset(), batch.last_offset());
        assert_eq!(h.max_timestamp, batch.max_timestamp());
        assert!(h.is_plausible());
    }

    #[test]
    fn parses_built_batches() {
        check(1);
        check(5);
        assert_eq!(BatchHeader::parse(&[0u8; 60]), None);
    }

    #[test]
    fn negative_length_is_huge() {
        let mut buf = [0u8; HEADER_BYTES];
        buf[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        let h = BatchHeader::parse(&buf).unwrap();
        assert_eq!(h.size_bytes, NEGATIVE_LENGTH_SIZE);
        assert!(h.size_bytes.checked_add(u64::MAX / 2).is_some());
        assert!(!h.is_plausible());
    }
}
