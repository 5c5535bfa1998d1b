//! [`ValidatedBatch`]: a record batch whose framing, record count and CRC-32C were checked
//! once, where it entered the broker. Storage engines take only this type, so the produce
//! path computes each batch's CRC once (it was 15% of the broker's produce time, twice);
//! recovery still checks the CRC of every batch it reads back from disk.

use std::ops::Deref;

use bytes::Bytes;

use crate::batch::{BatchError, RecordBatch};
use crate::types::{Offset, Timestamp};

/// A [`RecordBatch`] that passed [`RecordBatch::validate`]. The only way to build one is
/// [`ValidatedBatch::new`] (or `TryFrom<RecordBatch>`), and the only changes it allows keep
/// it valid: the base offset and partition leader epoch sit outside the CRC range, and
/// [`set_log_append_time`](ValidatedBatch::set_log_append_time) recomputes the CRC.
///
/// Reads go through `Deref` to the [`RecordBatch`] view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedBatch(RecordBatch);

impl ValidatedBatch {
    /// Checks `batch` (magic, length, record count, CRC-32C) and wraps it.
    pub fn new(batch: RecordBatch) -> Result<ValidatedBatch, BatchError> {
        batch.validate()?;
        Ok(ValidatedBatch(batch))
    }

    /// Writes the base offset in place (outside the CRC range).
    pub fn set_base_offset(&mut self, offset: Offset) {
        self.0.set_base_offset(offset);
    }

    /// Writes the partition leader epoch in place (outside the CRC range).
    pub fn set_partition_leader_epoch(&mut self, epoch: i32) {
        self.0.set_partition_leader_epoch(epoch);
    }

    /// Marks the batch LogAppendTime with max timestamp `ts`; the CRC is recomputed, so the
    /// batch stays valid.
    pub fn set_log_append_time(&mut self, ts: Timestamp) {
        self.0.set_log_append_time(ts);
    }

    /// The batch view.
    pub fn as_batch(&self) -> &RecordBatch {
        &self.0
    }

    /// Gives up the guarantee: the plain view.
    pub fn into_batch(self) -> RecordBatch {
        self.0
    }

    /// The batch's bytes, header included.
    pub fn into_bytes(self) -> Bytes {
        self.0.into_bytes()
    }
}

impl Deref for ValidatedBatch {
    type Target = RecordBatch;

    fn deref(&self) -> &RecordBatch {
        &self.0
    }
}

impl TryFrom<RecordBatch> for ValidatedBatch {
    type Error = BatchError;

    fn try_from(batch: RecordBatch) -> Result<ValidatedBatch, BatchError> {
        ValidatedBatch::new(batch)
    }
}

impl From<ValidatedBatch> for RecordBatch {
    fn from(batch: ValidatedBatch) -> RecordBatch {
        batch.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchBuilder;

    fn built(n: usize) -> RecordBatch {
        let mut b = BatchBuilder::new(Offset(0));
        for i in 0..n {
            b = b.kv(b"k", format!("v{i}").as_bytes(), Timestamp(100 + i as i64));
        }
        b.build()
    }

    /// Flips one byte at `at` and expects `new` to refuse the batch with `expect`.
    fn check_refused(at: usize, expect: fn(&BatchError) -> bool) {
        let mut bytes = built(3).into_bytes().to_vec();
        bytes[at] ^= 0x40;
        let batch = RecordBatch::parse(Bytes::from(bytes)).expect("framing intact");
        let err = ValidatedBatch::new(batch).expect_err("corrupt batch accepted");
        assert!(expect(&err), "unexpected error {err:?}");
    }

    #[test]
    fn refuses_what_validate_refuses() {
        check_refused(16, |e| matches!(e, BatchError::BadMagic(_)));
        check_refused(crate::batch::HEADER_BYTES + 2, |e| {
            matches!(e, BatchError::CrcMismatch { .. })
        });
        check_refused(58, |e| matches!(e, BatchError::BadRecordCount { .. }));
    }

    #[test]
    fn changes_keep_it_valid() {
        let mut v = ValidatedBatch::new(built(4)).expect("built batches are valid");
        v.set_base_offset(Offset(1234));
        v.set_partition_leader_epoch(7);
        v.set_log_append_time(Timestamp(99_000));
        assert_eq!(v.base_offset(), Offset(1234));
        assert_eq!(v.last_offset(), Offset(1237));
        assert_eq!(v.partition_leader_epoch(), 7);
        assert_eq!(v.max_timestamp(), Timestamp(99_000));
        assert_eq!(v.record_count(), 4);
        v.validate()
            .expect("still valid after every allowed change");
        let plain: RecordBatch = v.clone().into();
        assert_eq!(plain.into_bytes(), v.into_bytes());
    }

    proptest::proptest! {
        /// The mirror of the refusals: every batch the builder makes is accepted.
        #[test]
        fn accepts_every_well_formed_batch(
            values in proptest::collection::vec(proptest::collection::vec(0u8..=255, 0..64), 1..20),
            ts in 0i64..4_000_000_000_000,
        ) {
            let mut b = BatchBuilder::new(Offset(0));
            for v in &values {
                b = b.kv(b"key", v, Timestamp(ts));
            }
            let v = ValidatedBatch::new(b.build());
            proptest::prop_assert!(v.is_ok(), "{:?}", v.err());
            proptest::prop_assert_eq!(v.unwrap().record_count() as usize, values.len());
        }
    }
}
