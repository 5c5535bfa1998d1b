//! Idempotent-producer state of one partition: per producer id, its epoch and the last
//! batches it wrote, so a resent batch is answered with its original offsets instead of
//! being written twice, and a gap in sequence numbers is refused.

use std::collections::{HashMap, VecDeque};

use rafka_core::limits::PRODUCER_BATCHES_REMEMBERED;
use rafka_core::{Offset, RecordBatch};

/// A batch already written by an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenBatch {
    /// Sequence of the first record.
    pub first_sequence: i32,
    /// Sequence of the last record.
    pub last_sequence: i32,
    /// Offset the batch was given.
    pub base_offset: Offset,
}

#[derive(Debug, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<WrittenBatch>,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Not idempotent, or the next batch in sequence: append it.
    Append,
    /// Already written: answer with its original base offset, write nothing.
    Duplicate(Offset),
    /// A sequence gap or an unknown producer starting mid-stream.
    OutOfOrder {
        /// The sequence the broker expected.
        expected: i32,
    },
    /// An epoch older than the producer's current one.
    Fenced,
}

/// The idempotence fields of a batch header, kept so the batch itself can be handed to the
/// log without a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceSpan {
    /// Producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch.
    pub epoch: i16,
    /// Sequence of the first record, or -1.
    pub first_sequence: i32,
    /// Sequence of the last record.
    pub last_sequence: i32,
}

impl SequenceSpan {
    /// Reads the fields from a batch header.
    pub fn of(batch: &RecordBatch) -> SequenceSpan {
        SequenceSpan {
            producer_id: batch.producer_id(),
            epoch: batch.producer_epoch(),
            first_sequence: batch.base_sequence(),
            last_sequence: batch.last_sequence(),
        }
    }
}

/// Producer state of one partition. Not thread-safe on its own: the partition keeps it
/// under the same lock as its appends, so check-then-append is atomic.
#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

impl ProducerStates {
    /// Decides what to do with `batch` (without changing state).
    pub fn check(&self, batch: &RecordBatch) -> SequenceCheck {
        let pid = batch.producer_id();
        if pid < 0 || batch.base_sequence() < 0 {
            return SequenceCheck::Append;
        }
        let epoch = batch.producer_epoch();
        let first = batch.base_sequence();
        let Some(entry) = self.producers.get(&pid) else {
            return if first == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder { expected: 0 }
            };
        };
        if epoch < entry.epoch {
            return SequenceCheck::Fenced;
        }
        if epoch > entry.epoch {
            return if first == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder { expected: 0 }
            };
        }
        let last = batch.last_sequence();
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == first && b.last_sequence == last)
        {
            return SequenceCheck::Duplicate(dup.base_offset);
        }
        let expected = entry
            .batches
            .back()
            .map_or(0, |b| next_sequence(b.last_sequence));
        if first == expected {
            SequenceCheck::Append
        } else {
            SequenceCheck::OutOfOrder { expected }
        }
    }

    /// Records a batch that was appended at `base_offset` (or found in the log on recovery).
    pub fn record(&mut self, span: SequenceSpan, base_offset: Offset) {
        if span.producer_id < 0 || span.first_sequence < 0 {
            return;
        }
        let entry = self.producers.entry(span.producer_id).or_default();
        if span.epoch != entry.epoch {
            entry.epoch = span.epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == PRODUCER_BATCHES_REMEMBERED {
            entry.batches.pop_front();
        }
        entry.batches.push_back(WrittenBatch {
            first_sequence: span.first_sequence,
            last_sequence: span.last_sequence,
            base_offset,
        });
    }

    /// Forgets everything (after truncation or deletion of the whole log).
    pub fn clear(&mut self) {
        self.producers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rafka_core::batch::BatchBuilder;
    use rafka_core::Timestamp;

    fn batch(pid: i64, epoch: i16, seq: i32, n: usize, offset: i64) -> RecordBatch {
        let mut b = BatchBuilder::new(Offset(offset)).producer(pid, epoch, seq);
        for _ in 0..n {
            b = b.kv(b"k", b"v", Timestamp(0));
        }
        b.build()
    }

    #[test]
    fn sequences_duplicates_gaps_and_fencing() {
        let mut s = ProducerStates::default();
        let b0 = batch(7, 0, 0, 3, 0);
        assert_eq!(s.check(&b0), SequenceCheck::Append);
        s.record(SequenceSpan::of(&b0), b0.base_offset());
        assert_eq!(s.check(&b0), SequenceCheck::Duplicate(Offset(0)));
        assert_eq!(
            s.check(&batch(7, 0, 5, 1, 0)),
            SequenceCheck::OutOfOrder { expected: 3 }
        );
        let b1 = batch(7, 0, 3, 2, 3);
        assert_eq!(s.check(&b1), SequenceCheck::Append);
        s.record(SequenceSpan::of(&b1), b1.base_offset());
        let b2 = batch(7, 1, 0, 1, 5);
        assert_eq!(s.check(&b2), SequenceCheck::Append);
        s.record(SequenceSpan::of(&b2), b2.base_offset());
        assert_eq!(s.check(&batch(7, 0, 5, 1, 0)), SequenceCheck::Fenced);
        assert_eq!(
            s.check(&batch(8, 0, 4, 1, 0)),
            SequenceCheck::OutOfOrder { expected: 0 }
        );
        assert_eq!(s.check(&batch(-1, -1, -1, 1, 0)), SequenceCheck::Append);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            let b = batch(1, 0, i, 1, i as i64);
            s.record(SequenceSpan::of(&b), b.base_offset());
        }
        assert!(matches!(
            s.check(&batch(1, 0, 1, 1, 0)),
            SequenceCheck::OutOfOrder { .. }
        ));
        assert_eq!(
            s.check(&batch(1, 0, 6, 1, 0)),
            SequenceCheck::Duplicate(Offset(6))
        );
    }
}
