//! The conformance suite every storage engine passes.
//!
//! Each case is a plain function taking a factory that opens an engine rooted at a given
//! directory (opening the same directory again must see the same data). Run them all with
//! [`run_all`], or generate one `#[test]` per case with [`conformance_tests!`]:
//!
//! ```ignore
//! fn make(dir: &std::path::Path) -> std::sync::Arc<dyn rafka_core::StorageEngine> { ... }
//! rafka_storage::conformance_tests!(make);
//! ```
//!
//! Available to other crates through the `conformance` cargo feature.
//!
//! [`conformance_tests!`]: crate::conformance_tests

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rafka_core::batch::{BatchBuilder, SimpleRecord};
use rafka_core::{
    AbortedTxn, BatchError, CompactionPlan, ControlType, LogConfig, Offset, PartitionLog,
    ProducerSnapshot, RecordBatch, StorageEngine, StorageError, Timestamp, TimestampType,
    TopicName, TopicPartition, ValidatedBatch,
};

/// Opens an engine rooted at a directory.
pub type Factory<'a> = &'a dyn Fn(&Path) -> Arc<dyn StorageEngine>;

/// Generates one `#[test]` per conformance case for the engine made by `$make`, a function
/// `fn(&Path) -> Arc<dyn StorageEngine>`.
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@cases $make;
            appends_get_contiguous_offsets,
            read_from_middle_of_batch_returns_containing_batch,
            empty_log,
            read_respects_max_bytes_but_returns_one_whole_batch,
            reopen_keeps_offsets_and_data,
            delete_before_moves_log_start,
            truncate_after_removes_the_suffix,
            timestamp_lookup,
            readers_run_concurrently_with_appends,
            corrupt_batches_never_reach_the_engine,
            batch_too_large_is_refused,
            log_append_time_is_stamped,
            engine_lists_opens_and_removes_partitions,
            retention_keeps_offsets_consistent,
            concurrent_flushes_all_succeed,
            compaction_keeps_the_latest_value_per_key,
            compaction_cleans_compressed_batches,
            aborted_transactions_survive_restart_and_crash,
            aborted_transactions_are_trimmed_with_the_log,
            producer_snapshots_survive_restart_and_truncation,
            regions_are_the_bytes_read_returns,
        );
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::$case(&$make);
            }
        )*
    };
}

/// Runs every case against the engine made by `make`.
pub fn run_all<F: Fn(&Path) -> Arc<dyn StorageEngine>>(make: F) {
    let cases: &[fn(Factory)] = &[
        appends_get_contiguous_offsets,
        read_from_middle_of_batch_returns_containing_batch,
        empty_log,
        read_respects_max_bytes_but_returns_one_whole_batch,
        reopen_keeps_offsets_and_data,
        delete_before_moves_log_start,
        truncate_after_removes_the_suffix,
        timestamp_lookup,
        readers_run_concurrently_with_appends,
        corrupt_batches_never_reach_the_engine,
        batch_too_large_is_refused,
        log_append_time_is_stamped,
        engine_lists_opens_and_removes_partitions,
        retention_keeps_offsets_consistent,
        concurrent_flushes_all_succeed,
        compaction_keeps_the_latest_value_per_key,
        compaction_cleans_compressed_batches,
        aborted_transactions_survive_restart_and_crash,
        aborted_transactions_are_trimmed_with_the_log,
        producer_snapshots_survive_restart_and_truncation,
        regions_are_the_bytes_read_returns,
    ];
    for case in cases {
        case(&make);
    }
}

/// A topic partition for tests.
pub fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(TopicName::new(topic).expect("valid test topic"), partition)
}

/// A batch of `n_records` records with `value_bytes`-byte values and timestamps `ts`,
/// `ts + 1`, ...; the base offset is left 0 for the engine to assign.
pub fn batch(n_records: usize, ts: i64, value_bytes: usize) -> ValidatedBatch {
    let mut b = BatchBuilder::new(Offset(0));
    for i in 0..n_records {
        let value = vec![(i % 251) as u8; value_bytes];
        b = b.kv(
            format!("key-{i}").as_bytes(),
            &value,
            Timestamp(ts + i as i64),
        );
    }
    ValidatedBatch::new(b.build()).expect("built batches are valid")
}

/// Splits `records` into batches, asserting each one validates.
pub fn batches(records: &Bytes) -> Vec<RecordBatch> {
    let out = RecordBatch::split_all(records.clone()).expect("engine returned whole batches");
    for b in &out {
        b.validate_stored().expect("engine returned a valid batch");
    }
    out
}

/// Reads every batch from `from` to the log end.
pub fn read_all(log: &dyn PartitionLog, from: Offset) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    let mut next = from;
    while next < log.log_end_offset() {
        let r = log.read(next, 1 << 20).expect("read within range");
        let got = batches(&r.records);
        assert!(
            !got.is_empty(),
            "read at {next} below the log end returned nothing"
        );
        next = got.last().expect("non-empty").next_offset();
        out.extend(got);
    }
    out
}

/// Asserts that offsets in `batches` are contiguous.
fn assert_contiguous(batches: &[RecordBatch]) {
    for w in batches.windows(2) {
        assert_eq!(
            w[0].next_offset(),
            w[1].base_offset(),
            "offsets must be contiguous"
        );
    }
}

/// Compares batches by what survives storage: offsets and every byte from magic on.
fn same_batch(a: &RecordBatch, b: &RecordBatch) -> bool {
    a.base_offset() == b.base_offset() && a.as_bytes()[16..] == b.as_bytes()[16..]
}

fn open(engine: &Arc<dyn StorageEngine>, cfg: &LogConfig) -> Arc<dyn PartitionLog> {
    engine
        .open(&tp("conformance", 0), cfg)
        .expect("open partition")
}

/// Appends get contiguous offsets in order, and read returns them as appended.
pub fn appends_get_contiguous_offsets(make: Factory) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = make(dir.path());
    let log = open(&engine, &LogConfig::default());
    assert_eq!(log.log_end_offset(), Offset(0));
    let mut appended = Vec::new();
    for i in 0..20 {
        let n = 1 + i % 4;
        let info = log.append(batch(n, 1000 + i as i64, 10)).expect("append");
        let expected_base = appended
            .iter()
            .map(|b: &RecordBatch| b.record_count() as i64)
            .sum::<i64>();
        assert_eq!(info.base_offset, Offset(expected_base));
        assert_eq!(info.last_offset, Offset(expected_base + n as i64 - 1));
        assert_eq!(info.log_start_offset, Offset(0));
        let mut b = batch(n, 1000 + i as i64, 10);
        b.set_base_offset(info.base_offset);
        appended.push(b.into_batch());
    }
    assert_eq!(
        log.log_end_offset(),
        appended.last().expect("some").next_offset()
    );
    let got = read_all(log.as_ref(), Offset(0));
    assert_eq!(got.len(), appended.len());
    for (g, a) in got.iter().zip(&appended) {
        assert!(same_batch(g, a), "batch at {} differs", a.base_offset());
    }
    assert_contiguous(&got);
}

/// A read from an offset inside a batch returns that whole batch first.
pub fn read_from_middle_of_batch_returns_containing_batch(make: Factory) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = make(dir.path());
    let log = open(&engine, &LogConfig::default());
    for i in 0..50 {
        log.append(batch(5, i, 100)).expect("append");
    }
    for from in [0, 1, 4, 5, 7, 123, 247, 249] {
        let r = log.read(Offset(from), 1).expect("read");
        let got = batches(&r.records);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].base_offset(), Offset(from / 5 * 5), "from {from}");
        assert_eq!(r.log_end_offset, Offset(250));
    }
}

/// An empty log: offsets 0, reads at 0 empty, past 0 out of range, no timestamps.
pub fn empty_log(make: Factory) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = make(dir.path());
    let log = open(&engine, &LogConfig::default());
    assert_eq!(log.log_start_offset(), Offset(0));
    assert_eq!(log.log_end_offset(), Offset(0));
    let r = log.read(Offset(0), 1024).expect("read at log end");
    assert!(r.records.is_empty());
    assert!(matches!(
        log.read(Offset(1), 1024),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        log.read(Offset(-1), 1024),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        log.offset_for_timestamp(Timestamp(0)).expect("lookup"),
        None
    );
    assert_eq!(log.max_timestamp().expect("max"), None);
    log.flush().expect("flush of nothing");
    log.truncate_after(Offset(0)).expect("truncate nothing");
    log.delete_before(Offset(0)).expect("delete nothing");
    assert_eq!(log.log_end_offset(), Offset(0));
}

/// `max_bytes` bounds whole batches, but one batch larger than it still comes back whole.
pub fn read_respects_max_bytes_but_returns_one_whole_batch(make: Factory) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = make(dir.path());
    let log = open(&engine, &LogConfig::default());
    for i in 0..10 {
        log.append(batch(2, i, 1000)).expect("append");
    }
    let one = batch(2, 0, 1000).size_bytes();
    let r = log.read(Offset(0), 10).expect("read");
    assert_eq!(
        batches(&r.records).len(),
        1,
        "one whole batch though larger than max_bytes"
    );
    assert_eq!(r.records.len(), one);
    let r = log.read(Offset(0), 3 * one - 1).expect("read");
    assert_eq!(batches(&r.records).len(), 2, "never a partial batch");
    let r = log.read(Offset(4), 3 * one).expect("read");
    let got = batches(&r.records);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].base_offset(), Offset(4));
    assert_contiguous(&got);
    let r = log.read(Offset(0), 1 << 20).expect("read");
    assert_eq!(batches(&r.records).len(), 10);
}

/// Closing the engine and opening the same directory keeps offsets and bytes.
pub fn reopen_keeps_offsets_and_data(make: Factory) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig {
        segment_bytes: 4096,
        ..LogConfig::default()
    };
    let before = {
        let engine = make(dir.path());
        let log = open(&engine, &cfg);
        for i in 0..40 {
            log.append(batch(1 + i % 3, i as i64 * 10, 200))
                .expect("append");
        }
        log.delete_before(Offset(5)).expect("delete_before");
        let all = read_all(log.as_ref(), Offset(5));
        engine.close().expect("close");
        assert!(matches!(
            log.append(batch(1, 0, 1)),
            Err(StorageError::Closed(_))
        ));
        all
    };
    let engine = make(dir.path());
    assert_eq!(
        engine.partitions().expect("partitions"),
        vec![tp("conformance", 0)]
    );
    let log = open(&engine, &cfg);
    assert_eq!(log.log_start_offset(), Offset(5));
    assert_eq!(
        log.log_end_offset(),
        before.last().expect("some").next_offset()
    );
    let after = read_all(log.as_ref(), Offset(5));
    assert_eq!(after.len(), before.len());
    assert!(after.iter().zip(&before).all(|(a, b)| same_batch(a, b)));
    let info = log.append(batch(1, 0, 1)).expect("append after reopen");
    assert_eq!(info.base_offset, before.last().expect("some").next_offset());
}

/// `delete_before` moves the log start forward only, never past the log end, and reads
/// below it fail; `log_bounds` gives the same start and end as the two calls.
pub fn delete_before_moves_log_start(make: Factory) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = make(dir.path());
    let cfg = LogConfig {
        segment_bytes: 2048,
        ..LogConfig::default()
    };
    let log = open(&engine, &cfg);
    for i in 0..30 {
        log.append(batch(2, i, 300)).expect("append");
    }
    let size_before = log.size_bytes();
    assert_eq!(log.log_bounds(), (Offset(0), Offset(60)));
    log.delete_before(Offset(21)).expect("delete_before");
    assert_eq!(log.log_start_offset(), Offset(21));
    assert_eq!(log.log_bounds(), (Offset(21), Offset(60)));
    assert!(log.size_bytes() <= size_before);
    assert!(matches!(
        log.read(Offset(20), 1),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let r = log.read(Offset(21), 1).expect("read at log start");
    assert_eq!(
        batches(&r.records)[0].base_offset(),
        Offset(20),
        "the containing batch"
    );
    assert_eq!(r.log_start_offset, Offset(21));
    log.delete_before(Offset(10)).expect("backwards is a no-op");
    assert_eq!(log.log_start_offset(), Offset(21));
    assert!(matches!(
        log.delete_before(Offset(61)),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    log.delete_before(Offset(60)).expect("up to the log end");
    assert_eq!(log.log_start_offset(), Offset(60));
    assert_eq!(log.log_end_offset(), Offset(60));
    assert_eq!(log.log_bounds(), (Offset(60), Offset(60)));
    assert!(log
        .read(Offset(60), 100)
        .expect("read at end")
        .records
        .is_empty());
    assert_eq!(
        log.append(batch(1, 0, 1)).expect("append").base_offset,
        Offset(60)
    );
    assert_eq!(read_all(log.as_ref(), Offset(60)).len(), 1);
}

/// `truncate_after` removes the batch containing the offset and all after it.
pub fn truncate_after_removes_the_suffix(make: Factory) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = make(dir.path());
    let cfg = LogConfig {
        segment_bytes: 2048,
        ..LogConfig::default()
    };
    let log = open(&engine, &cfg);
    for i in 0..30 {
        log.append(batch(3, i, 200)).expect("append");
    }
    log.truncate_after(Offset(100))
        .expect("past the end is a no-op");
    assert_eq!(log.log_end_offset(), Offset(90));
    log.truncate_after(Offset(46))
        .expect("truncate inside a batch");
    assert_eq!(log.log_end_offset(), Offset(45));
    log.truncate_after(Offset(30))
        .expect("truncate at a batch boundary");
    assert_eq!(log.log_end_offset(), Offset(30));
    let got = read_all(log.as_ref(), Offset(0));
    assert_eq!(got.len(), 10);
    assert_contiguous(&got);
    assert!(matches!(
        log.read(Offset(31), 1),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let info = log.append(batch(2, 99, 10)).expect("append after truncate");
    assert_eq!(info.base_offset, Offset(30));
    assert_eq!(read_all(log.as_ref(), Offset(27)).len(), 2);
    log.truncate_after(Offset(0)).expect("truncate everything");
    assert_eq!(log.log_end_offset(), Offset(0));
    assert_eq!(
        log.append(batch(1, 0, 1)).expect("append").base_offset,
        Offset(0)
    );
}

/// `offset_for_timestamp` finds the first batch whose max timestamp reaches the target;
/// `max_timestamp` the batch with the largest one.
pub fn timestamp_lookup(make: Factory) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = make(dir.path());
    let cfg = LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 256,
        ..LogConfig::default()
    };
    let log = open(&engine, &cfg);
    // Batch k (2 records, offsets 2k, 2k+1) has max timestamp ts[k] + 1.
    let ts = [100, 300, 200, 400, 400, 500, 50, 600, 550, 700];
    for &t in &ts {
        log.append(batch(2, t, 200)).expect("append");
    }
    let check = |target: i64, expected: Option<(i64, i64)>| {
        let got = log.offset_for_timestamp(Timestamp(target)).expect("lookup");
        assert_eq!(
            got,
            expected.map(|(o, t)| (Offset(o), Timestamp(t))),
            "target {target}"
        );
    };
    check(0, Some((0, 101)));
    check(101, Some((0, 101)));
    check(102, Some((2, 301)));
    check(250, Some((2, 301)));
    check(302, Some((6, 401)));
    check(502, Some((14, 601)));
    check(600, Some((14, 601)));
    check(602, Some((18, 701)));
    check(702, None);
    assert_eq!(
        log.max_timestamp().expect("max"),
        Some((Offset(19), Timestamp(701)))
    );
    log.delete_before(Offset(5)).expect("delete_before");
    check(0, Some((5, 201)));
}

/// Readers running while another thread appends see whole, valid, contiguous batches.
pub fn readers_run_concurrently_with_appends(make: Factory) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = make(dir.path());
    let cfg = LogConfig {
        segment_bytes: 16 * 1024,
        index_interval_bytes: 512,
        ..LogConfig::default()
    };
    let log = open(&engine, &cfg);
    let done = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        for r in 0..3u64 {
            let log = Arc::clone(&log);
            let done = Arc::clone(&done);
            s.spawn(move || {
                let mut seed = r + 1;
                let mut n_reads = 0;
                while !done.load(Ordering::Acquire) || n_reads < 10 {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let end = log.log_end_offset().0;
                    let from = if end == 0 {
                        0
                    } else {
                        (seed >> 33) as i64 % (end + 1)
                    };
                    let res = log.read(Offset(from), 4096).expect("read in range");
                    let got = batches(&res.records);
                    if from < res.log_end_offset.0 {
                        assert!(got[0].base_offset().0 <= from && got[0].next_offset().0 > from);
                    }
                    assert_contiguous(&got);
                    n_reads += 1;
                }
            });
        }
        for i in 0..400 {
            log.append(batch(1 + i % 3, i as i64, 100)).expect("append");
        }
        done.store(true, Ordering::Release);
    });
    let all = read_all(log.as_ref(), Offset(0));
    assert_eq!(all.len(), 400);
    assert_contiguous(&all);
}

fn patched(b: &RecordBatch, f: impl FnOnce(&mut BytesMut)) -> RecordBatch {
    let mut bytes = BytesMut::from(&b.as_bytes()[..]);
    f(&mut bytes);
    RecordBatch::parse(bytes.freeze()).expect("framing still parses")
}

fn fix_crc(b: &mut BytesMut) {
    use rafka_core::batch::{ATTRIBUTES, CRC};
    let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
    b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Wrong CRC, wrong magic, a cut body behind a patched length, and an empty batch cannot
/// become a [`ValidatedBatch`], the only thing `append` takes, so no engine checks the CRC
/// again (recovery does, on what it reads back). The log is untouched and takes the good
/// batch next.
pub fn corrupt_batches_never_reach_the_engine(make: Factory) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = make(dir.path());
    let log = open(&engine, &LogConfig::default());
    log.append(batch(2, 0, 10)).expect("append");
    let good = batch(3, 0, 10);
    let bad = [
        patched(&good, |b| {
            let last = b.len() - 1;
            b[last] ^= 0x40;
        }),
        patched(&good, |b| b[16] = 1),
        patched(&good, |b| {
            b.truncate(b.len() - 1);
            let len = (b.len() - 12) as i32;
            b[8..12].copy_from_slice(&len.to_be_bytes());
        }),
        patched(&good, |b| {
            b[57..61].copy_from_slice(&0i32.to_be_bytes());
            b[23..27].copy_from_slice(&(-1i32).to_be_bytes());
            fix_crc(b);
        }),
    ];
    let size = log.size_bytes();
    for b in bad {
        match ValidatedBatch::new(b) {
            Err(e) => assert!(matches!(
                e,
                BatchError::CrcMismatch { .. }
                    | BatchError::BadMagic(_)
                    | BatchError::BadRecordCount { .. }
            )),
            Ok(v) => panic!("corrupt batch validated: {v:?}"),
        }
    }
    assert_eq!(log.log_end_offset(), Offset(2));
    assert_eq!(log.size_bytes(), size);
    assert_eq!(read_all(log.as_ref(), Offset(0)).len(), 1);
    assert_eq!(
        log.append(good).expect("good append").base_offset,
        Offset(2)
    );
}

/// A batch above `max_message_bytes` is refused with `BatchTooLarge`, also after
/// `set_config` lowers the limit.
pub fn batch_too_large_is_refused(make: Factory) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = make(dir.path());
    let mut cfg = LogConfig {
        max_message_bytes: 2000,
        ..LogConfig::default()
    };
    let log = open(&engine, &cfg);
    let big = batch(1, 0, 3000);
    match log.append(big.clone()) {
        Err(StorageError::BatchTooLarge { size, max }) => {
            assert_eq!(size, big.size_bytes());
            assert_eq!(max, 2000);
        }
        other => panic!("expected BatchTooLarge, got {other:?}"),
    }
    assert_eq!(log.log_end_offset(), Offset(0));
    assert_eq!(log.size_bytes(), 0);
    cfg.max_message_bytes = 10_000;
    log.set_config(cfg.clone());
    log.append(big.clone())
        .expect("fits after raising the limit");
    cfg.max_message_bytes = 100;
    log.set_config(cfg);
    assert!(matches!(
        log.append(big),
        Err(StorageError::BatchTooLarge { .. })
    ));
    assert_eq!(log.log_end_offset(), Offset(1));
}

/// With `log_append_time`, stored batches carry the broker's time and still validate.
pub fn log_append_time_is_stamped(make: Factory) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = make(dir.path());
    let cfg = LogConfig {
        log_append_time: true,
        ..LogConfig::default()
    };
    let log = open(&engine, &cfg);
    let before = Timestamp::now();
    let info = log.append(batch(2, 5, 10)).expect("append");
    let after = Timestamp::now();
    assert!(info.log_append_time >= before && info.log_append_time <= after);
    let got = read_all(log.as_ref(), Offset(0));
    assert_eq!(got[0].timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(got[0].max_timestamp(), info.log_append_time);
}

/// `partitions` lists what exists, `open` twice gives the same log, `remove` deletes.
pub fn engine_lists_opens_and_removes_partitions(make: Factory) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = make(dir.path());
    assert!(engine.partitions().expect("partitions").is_empty());
    let cfg = LogConfig::default();
    let a = engine.open(&tp("a", 0), &cfg).expect("open");
    let a2 = engine.open(&tp("a", 0), &cfg).expect("open again");
    assert!(
        Arc::ptr_eq(&a, &a2),
        "opening an open partition returns the same log"
    );
    let b = engine.open(&tp("b-x", 3), &cfg).expect("open");
    a.append(batch(1, 0, 1)).expect("append");
    b.append(batch(1, 0, 1)).expect("append");
    assert_eq!(
        engine.partitions().expect("partitions"),
        vec![tp("a", 0), tp("b-x", 3)]
    );
    engine.remove(&tp("a", 0)).expect("remove");
    assert_eq!(engine.partitions().expect("partitions"), vec![tp("b-x", 3)]);
    assert!(
        a.append(batch(1, 0, 1)).is_err(),
        "a removed log refuses appends"
    );
    let fresh = engine.open(&tp("a", 0), &cfg).expect("reopen after remove");
    assert_eq!(fresh.log_end_offset(), Offset(0));
    engine
        .remove(&tp("never", 0))
        .expect("removing a missing partition is fine");
}

/// Retention never moves the log end, and what it reports removed matches the log start.
pub fn retention_keeps_offsets_consistent(make: Factory) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = make(dir.path());
    let mut cfg = LogConfig {
        segment_bytes: 2048,
        retention_ms: -1,
        retention_bytes: -1,
        ..LogConfig::default()
    };
    let log = open(&engine, &cfg);
    for i in 0..40 {
        log.append(batch(1, 1000 + i, 300)).expect("append");
    }
    assert_eq!(
        log.apply_retention(Timestamp(1_000_000))
            .expect("retention"),
        0
    );
    assert_eq!(log.log_start_offset(), Offset(0));
    cfg.retention_bytes = 4096;
    log.set_config(cfg.clone());
    let removed = log
        .apply_retention(Timestamp(2000))
        .expect("retention by size");
    assert_eq!(log.log_start_offset(), Offset(removed as i64));
    assert!(removed > 0);
    assert_eq!(log.log_end_offset(), Offset(40));
    cfg.retention_bytes = -1;
    cfg.retention_ms = 10;
    log.set_config(cfg);
    let start = log.log_start_offset();
    let removed = log
        .apply_retention(Timestamp(1_000_000))
        .expect("retention by time");
    assert_eq!(log.log_start_offset(), start.plus(removed as i64));
    assert_eq!(log.log_end_offset(), Offset(40));
    let last = log.read(Offset(39), 1).expect("the newest batch survives");
    assert_eq!(batches(&last.records).len(), 1);
}

/// Many threads appending and flushing at once all succeed and lose nothing.
pub fn concurrent_flushes_all_succeed(make: Factory) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = make(dir.path());
    let log = open(&engine, &LogConfig::default());
    std::thread::scope(|s| {
        for t in 0..4 {
            let log = Arc::clone(&log);
            s.spawn(move || {
                for i in 0..25 {
                    log.append(batch(1, t * 100 + i, 50)).expect("append");
                    log.flush().expect("flush");
                }
            });
        }
    });
    assert_eq!(log.log_end_offset(), Offset(100));
    assert_eq!(read_all(log.as_ref(), Offset(0)).len(), 100);
}

/// What a compaction model remembers of one produced record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRecord {
    /// Key.
    pub key: Bytes,
    /// Value; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// Headers as produced.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Everything produced to a compacted partition, by offset.
#[derive(Debug, Default, Clone)]
pub struct CompactionModel {
    /// Produced records by offset (offsets of one partition are dense from 0).
    pub produced: std::collections::BTreeMap<i64, ModelRecord>,
    /// With a codec, every other batch is produced compressed with it (the codec ids
    /// taking turns) and [`CompactionModel::check`] reads them through it.
    pub codec: rafka_core::CompactionCodec,
}

/// A test "codec" for compressed batches: a magic byte, then every byte xor 0x5a. It
/// refuses to decompress past `max_bytes`.
#[derive(Debug, Default)]
pub struct XorCodec;

impl rafka_core::BatchCodec for XorCodec {
    fn decompress(
        &self,
        _c: rafka_core::CompressionType,
        data: &[u8],
        max_bytes: usize,
    ) -> Result<Vec<u8>, rafka_core::CodecError> {
        match data.split_first() {
            Some((&0xc0, rest)) if rest.len() <= max_bytes => {
                Ok(rest.iter().map(|b| b ^ 0x5a).collect())
            }
            _ => Err(rafka_core::CodecError("not xor data".into())),
        }
    }

    fn compress(
        &self,
        _c: rafka_core::CompressionType,
        data: &[u8],
    ) -> Result<Vec<u8>, rafka_core::CodecError> {
        Ok(std::iter::once(0xc0)
            .chain(data.iter().map(|b| b ^ 0x5a))
            .collect())
    }
}

impl CompactionModel {
    /// Appends one batch of `(key, value)` records at time `ts` to `log` and remembers it.
    pub fn produce(
        &mut self,
        log: &dyn PartitionLog,
        records: &[(String, Option<String>)],
        ts: i64,
    ) {
        let mut b = BatchBuilder::new(Offset(0));
        for (i, (k, v)) in records.iter().enumerate() {
            b = b.record(SimpleRecord {
                key: Some(Bytes::from(k.clone())),
                value: v.clone().map(Bytes::from),
                headers: vec![("i".to_string(), Some(Bytes::from(format!("{ts}-{i}"))))],
                timestamp: Timestamp(ts),
            });
        }
        let mut b = b.build();
        let end = self.produced.keys().next_back().map_or(0, |o| o + 1);
        if self.codec != rafka_core::CompactionCodec::none() && end % 2 == 0 {
            use rafka_core::CompressionType::{Gzip, Lz4, Snappy, Zstd};
            let c = [Gzip, Snappy, Lz4, Zstd][(end / 2 % 4) as usize];
            b = rafka_core::compact::recompress_for_compaction(&b, c, &self.codec)
                .expect("test codec compresses");
        }
        let info = log
            .append(ValidatedBatch::new(b).expect("valid"))
            .expect("append");
        for (i, (k, v)) in records.iter().enumerate() {
            self.produced.insert(
                info.base_offset.0 + i as i64,
                ModelRecord {
                    key: Bytes::from(k.clone()),
                    value: v.clone().map(Bytes::from),
                    headers: vec![("i".to_string(), Some(Bytes::from(format!("{ts}-{i}"))))],
                },
            );
        }
    }

    /// Checks `log` read from its start against the model: offsets strictly increasing;
    /// every record read was produced at that offset with that key, value and headers; for
    /// every key its latest value is present (its latest tombstone may be gone, but then no
    /// older record of the key remains); below `cleaned_to`, at most one record per key.
    /// Returns the number of records read.
    pub fn check(&self, log: &dyn PartitionLog, cleaned_to: Offset) -> usize {
        let mut seen: Vec<(i64, SimpleRecord)> = Vec::new();
        for b in read_all(log, log.log_start_offset()) {
            let plain = rafka_core::compact::decompress_for_compaction(&b, &self.codec)
                .expect("batches decompress with the model's codec");
            let recs = plain
                .decode_uncompressed_with_offsets()
                .expect("uncompressed batches decode");
            assert!(
                recs.iter()
                    .all(|(o, _)| *o >= b.base_offset() && *o <= b.last_offset()),
                "record outside its batch's offsets"
            );
            seen.extend(recs.into_iter().map(|(o, r)| (o.0, r)));
        }
        for w in seen.windows(2) {
            assert!(
                w[0].0 < w[1].0,
                "offsets must increase: {} then {}",
                w[0].0,
                w[1].0
            );
        }
        let mut latest: std::collections::HashMap<&Bytes, i64> = Default::default();
        for (&o, r) in &self.produced {
            latest.insert(&r.key, o);
        }
        let mut read_per_key: std::collections::HashMap<Bytes, Vec<i64>> = Default::default();
        for (o, r) in &seen {
            let want = self
                .produced
                .get(o)
                .unwrap_or_else(|| panic!("offset {o} was never produced"));
            assert_eq!(r.key.as_ref(), Some(&want.key), "key at {o}");
            assert_eq!(r.value, want.value, "value at {o}");
            assert_eq!(r.headers, want.headers, "headers at {o}");
            read_per_key.entry(want.key.clone()).or_default().push(*o);
        }
        for (key, &o) in &latest {
            let got = read_per_key.get(*key).map(Vec::as_slice).unwrap_or(&[]);
            let is_tombstone = self.produced[&o].value.is_none();
            if !is_tombstone || !got.is_empty() {
                assert!(
                    got.contains(&o),
                    "key {key:?}: latest record {o} missing, read {got:?}"
                );
            }
            let below: Vec<_> = got.iter().filter(|&&x| x < cleaned_to.0).collect();
            assert!(
                below.len() <= 1,
                "key {key:?}: duplicates below {cleaned_to}: {below:?}"
            );
        }
        seen.len()
    }
}

/// Compaction against a model: rounds of produce (tombstones included), compaction with a
/// roomy and then a tiny dedupe map, and reopening; after each, the partition read from its
/// start holds each key's latest value with its original offset, value and headers, nothing
/// else that was not produced, offsets increasing; a tombstone goes only once its
/// `delete.retention.ms` has passed, and then nothing older of its key remains. An engine
/// without compaction must say `Unsupported`.
pub fn compaction_keeps_the_latest_value_per_key(make: Factory) {
    compaction_rounds(make, true, false);
}

/// [`compaction_keeps_the_latest_value_per_key`] with every other batch compressed (gzip,
/// snappy, lz4 and zstd ids in turn, through a test codec handed in the plan): compressed
/// batches are cleaned too, and a cleaned one keeps its codec.
pub fn compaction_cleans_compressed_batches(make: Factory) {
    compaction_rounds(make, true, true);
}

/// [`compaction_keeps_the_latest_value_per_key`] without reopening, for an engine that
/// keeps nothing across a reopen (the memory engine without a directory).
pub fn compaction_in_memory_only(make: Factory) {
    compaction_rounds(make, false, false);
}

fn compaction_rounds(make: Factory, reopen: bool, compressed: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig {
        segment_bytes: 1500,
        index_interval_bytes: 128,
        retention_ms: -1,
        ..LogConfig::default()
    };
    let mut engine = make(dir.path());
    let mut log = open(&engine, &cfg);
    let mut model = CompactionModel::default();
    if compressed {
        model.codec = rafka_core::CompactionCodec::new(Arc::new(XorCodec));
    }
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut first_dirty = Offset(0);
    let mut now = 1_000_000i64;
    let delete_retention_ms = 5_000;
    let mut total_removed = 0;
    for round in 0..8 {
        for _ in 0..30 {
            let n = 1 + rand(4) as usize;
            let records: Vec<(String, Option<String>)> = (0..n)
                .map(|_| {
                    let key = format!("k{}", rand(25));
                    let value = (rand(7) != 0).then(|| format!("v{round}-{}", rand(1000)));
                    (key, value)
                })
                .collect();
            model.produce(log.as_ref(), &records, now);
        }
        let plan = CompactionPlan {
            first_dirty,
            end: log.log_end_offset(),
            now: Timestamp(now),
            min_compaction_lag_ms: 0,
            delete_retention_ms,
            // Every third round a map of 8 keys: cleaning stops where it filled.
            dedupe_buffer_bytes: if round % 3 == 2 { 8 * 32 } else { 1 << 20 },
            codec: model.codec.clone(),
        };
        let stats = match log.compact(&plan) {
            Err(StorageError::Unsupported { .. }) => return,
            other => other.expect("compact"),
        };
        assert!(stats.cleaned_to >= first_dirty.max(log.log_start_offset()));
        assert!(stats.cleaned_to <= log.log_end_offset());
        first_dirty = stats.cleaned_to;
        total_removed += stats.records_removed;
        let end_before = log.log_end_offset();
        model.check(
            log.as_ref(),
            if round % 3 == 2 {
                Offset(0)
            } else {
                stats.cleaned_to
            },
        );
        assert_eq!(
            log.log_end_offset(),
            end_before,
            "compaction never moves the log end"
        );
        if reopen && round % 2 == 1 {
            engine.close().expect("close");
            drop(log);
            engine = make(dir.path());
            log = open(&engine, &cfg);
            model.check(log.as_ref(), Offset(0));
            assert_eq!(log.log_end_offset(), end_before);
            // After a restart the broker knows no cleaned offset: all is dirty again.
            first_dirty = log.log_start_offset();
        }
        now += 3_000;
    }
    assert!(total_removed > 0, "compaction removed nothing");
    if compressed {
        // Some compressed batch lost records and kept its codec.
        let cleaned_compressed = read_all(log.as_ref(), log.log_start_offset())
            .iter()
            .filter(|b| {
                b.compression() != rafka_core::CompressionType::None
                    && (b.record_count() as i64) < b.last_offset().0 - b.base_offset().0 + 1
            })
            .count();
        assert!(cleaned_compressed > 0, "no compressed batch was cleaned");
    }
    // Appends continue at the log end after all that.
    let end = log.log_end_offset();
    let info = log.append(batch(1, now, 10)).expect("append");
    assert_eq!(info.base_offset, end);
}

/// Appends `n_txns` transactions of producers 1..=3 (two data batches each, of
/// `value_bytes` values, so small segments roll), each ended by a marker: every other one
/// aborted, and records the aborts as the broker does. Returns the aborted entries.
pub fn append_transactions(
    log: &dyn PartitionLog,
    n_txns: usize,
    value_bytes: usize,
) -> Vec<AbortedTxn> {
    let mut aborted = Vec::new();
    for t in 0..n_txns {
        let pid = 1 + (t % 3) as i64;
        let mut first = None;
        for k in 0..2 {
            let b = BatchBuilder::new(Offset(0))
                .producer(pid, 0, (t * 2 + k) as i32)
                .transactional()
                .kv(b"k", &vec![7u8; value_bytes], Timestamp(1_000 + t as i64))
                .build();
            let info = log
                .append(ValidatedBatch::new(b).expect("valid"))
                .expect("append data");
            first.get_or_insert(info.base_offset);
        }
        let kind = if t % 2 == 0 {
            ControlType::Abort
        } else {
            ControlType::Commit
        };
        let marker = rafka_core::batch::control_batch(pid, 0, 0, kind, Timestamp(1_000 + t as i64));
        let info = log
            .append(ValidatedBatch::new(marker).expect("valid"))
            .expect("append marker");
        if kind == ControlType::Abort {
            let e = AbortedTxn {
                producer_id: pid,
                first_offset: first.expect("two batches"),
                last_offset: info.base_offset,
                last_stable_offset: info.base_offset.plus(1),
            };
            log.record_aborted_txn(e).expect("record");
            aborted.push(e);
        }
    }
    aborted
}

fn all_aborted(log: &dyn PartitionLog) -> Vec<AbortedTxn> {
    log.aborted_txns(Offset(0), Offset(i64::MAX))
        .expect("aborted_txns")
}

/// Aborted transactions are kept in marker order, queried by overlap, recorded at most
/// once, and survive a clean restart and a crash (after a flush).
pub fn aborted_transactions_survive_restart_and_crash(make: Factory) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig {
        segment_bytes: 2048,
        retention_ms: -1,
        ..LogConfig::default()
    };
    let expected = {
        let engine = make(dir.path());
        let log = open(&engine, &cfg);
        let expected = append_transactions(log.as_ref(), 20, 300);
        assert_eq!(expected.len(), 10);
        assert_eq!(all_aborted(log.as_ref()), expected);
        // Recording one again changes nothing.
        log.record_aborted_txn(expected[3]).expect("again");
        assert_eq!(all_aborted(log.as_ref()), expected);
        // Overlap: the marker at or after `from`, the first record before `to`.
        let e = expected[4];
        let got = log
            .aborted_txns(e.first_offset, e.first_offset.plus(1))
            .expect("query");
        assert_eq!(got, vec![e]);
        let got = log
            .aborted_txns(e.last_offset.plus(1), Offset(i64::MAX))
            .expect("query");
        assert_eq!(got, expected[5..]);
        engine.close().expect("close");
        expected
    };
    let engine = make(dir.path());
    let log = open(&engine, &cfg);
    assert_eq!(all_aborted(log.as_ref()), expected, "after a clean restart");
    let more = append_transactions(log.as_ref(), 4, 300);
    log.flush().expect("flush");
    drop(log);
    drop(engine); // no close: a crash after the flush
    let engine = make(dir.path());
    let log = open(&engine, &cfg);
    let mut all = expected.clone();
    all.extend(more);
    assert_eq!(all_aborted(log.as_ref()), all, "after a crash");
}

/// `delete_before`, retention and `truncate_after` drop the entries whose markers they
/// remove, and the trimmed list is what a restart sees.
pub fn aborted_transactions_are_trimmed_with_the_log(make: Factory) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = LogConfig {
        segment_bytes: 2048,
        retention_ms: -1,
        retention_bytes: -1,
        ..LogConfig::default()
    };
    let expected = {
        let engine = make(dir.path());
        let log = open(&engine, &cfg);
        let all = append_transactions(log.as_ref(), 24, 300);
        // DeleteRecords just past the third aborted marker.
        log.delete_before(all[2].last_offset.plus(1))
            .expect("delete");
        assert_eq!(all_aborted(log.as_ref()), all[3..]);
        // Retention by size removes more from the front.
        cfg.retention_bytes = 6000;
        log.set_config(cfg.clone());
        log.apply_retention(Timestamp(10_000)).expect("retention");
        let start = log.log_start_offset();
        assert!(
            start > all[3].last_offset,
            "retention removed an aborted marker"
        );
        let kept: Vec<AbortedTxn> = all
            .iter()
            .filter(|a| a.last_offset >= start)
            .copied()
            .collect();
        assert_eq!(all_aborted(log.as_ref()), kept);
        // Truncation through the last two aborted markers.
        let cut = kept[kept.len() - 2].last_offset;
        log.truncate_after(cut).expect("truncate");
        let kept = kept[..kept.len() - 2].to_vec();
        assert_eq!(all_aborted(log.as_ref()), kept);
        engine.close().expect("close");
        kept
    };
    let engine = make(dir.path());
    let log = open(&engine, &cfg);
    assert_eq!(all_aborted(log.as_ref()), expected, "after a restart");
    // New aborts go on from the truncated end.
    let more = append_transactions(log.as_ref(), 2, 10);
    assert_eq!(more.len(), 1);
    assert!(more[0].first_offset >= expected.last().expect("some").last_offset);
    let mut all = expected;
    all.extend(more);
    assert_eq!(all_aborted(log.as_ref()), all);
}

/// A producer snapshot is stored durably, replaced by the next, refused past the log end,
/// and dropped by a truncation below its offset.
pub fn producer_snapshots_survive_restart_and_truncation(make: Factory) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig {
        segment_bytes: 2048,
        ..LogConfig::default()
    };
    let snap = |offset: i64, tag: &str| ProducerSnapshot {
        offset: Offset(offset),
        bytes: Bytes::from(format!("state at {offset}: {tag}")),
    };
    {
        let engine = make(dir.path());
        let log = open(&engine, &cfg);
        assert_eq!(log.producer_snapshot().expect("read"), None);
        for i in 0..20 {
            log.append(batch(2, i, 200)).expect("append");
        }
        assert!(matches!(
            log.write_producer_snapshot(snap(41, "past the end")),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        log.write_producer_snapshot(snap(10, "a")).expect("write");
        log.write_producer_snapshot(snap(30, "b")).expect("write");
        assert_eq!(log.producer_snapshot().expect("read"), Some(snap(30, "b")));
        for i in 0..5 {
            log.append(batch(1, i, 10)).expect("append");
        }
        drop(log);
        drop(engine); // a crash: the snapshot was durable when written
    }
    let engine = make(dir.path());
    let log = open(&engine, &cfg);
    assert_eq!(log.producer_snapshot().expect("read"), Some(snap(30, "b")));
    log.write_producer_snapshot(snap(40, "c")).expect("write");
    // A truncation below the snapshot's offset drops it: it describes records now gone.
    log.truncate_after(Offset(36)).expect("truncate");
    assert_eq!(log.log_end_offset(), Offset(36));
    assert_eq!(log.producer_snapshot().expect("read"), None);
    log.write_producer_snapshot(snap(36, "d")).expect("write");
    // At the log end exactly: kept through a truncation that does not reach it.
    log.truncate_after(Offset(40)).expect("no-op truncate");
    engine.close().expect("close");
    let engine = make(dir.path());
    let log = open(&engine, &cfg);
    assert_eq!(log.producer_snapshot().expect("read"), Some(snap(36, "d")));
}

/// The bytes of a region, read from its file.
fn region_bytes(r: &rafka_core::RegionRead) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; r.region.len];
    r.region
        .file
        .read_exact_at(&mut buf, r.region.position)
        .expect("the region's bytes are in its file");
    buf
}

/// Where an engine offers a file region for a read (`read_region`), its bytes are exactly
/// what `read` returns, its batch list matches them, and it survives the segment being
/// deleted: from every offset, at segment boundaries, with `max_bytes` cutting a batch,
/// smaller than one batch, and past a compaction.
pub fn regions_are_the_bytes_read_returns(make: Factory) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = make(dir.path());
    let cfg = LogConfig {
        segment_bytes: 4096,
        retention_ms: -1,
        ..LogConfig::default()
    };
    let log = open(&engine, &cfg);
    for i in 0..30 {
        log.append(batch(
            1 + (i % 3) as usize,
            1000 + i,
            200 + 37 * (i as usize % 5),
        ))
        .expect("append");
    }
    let end = log.log_end_offset();
    let mut offered = 0;
    for from in 0..end.0 {
        for max in [1, 100, 700, 1500, 4096, 10_000, 1 << 20] {
            let read = log.read(Offset(from), max).expect("read");
            let Some(region) = log.read_region(Offset(from), max).expect("read_region") else {
                continue;
            };
            offered += 1;
            assert_eq!(region.log_end_offset, read.log_end_offset);
            assert_eq!(region.log_start_offset, read.log_start_offset);
            let bytes = region_bytes(&region);
            assert_eq!(
                &bytes[..],
                &read.records[..],
                "from {from}, max_bytes {max}"
            );
            let got = batches(&read.records);
            assert_eq!(region.batches.len(), got.len());
            for (b, g) in region.batches.iter().zip(&got) {
                assert_eq!(b.next_offset, g.last_offset().plus(1));
                assert_eq!(b.size_bytes as usize, g.size_bytes());
                assert_eq!(b.record_count as i32, g.record_count());
            }
        }
    }
    assert!(
        log.read_region(end, 1 << 20)
            .expect("read_region")
            .is_none(),
        "nothing to send at the log end"
    );
    if engine.name() == "log" {
        assert!(offered > 300, "the log engine offers regions: {offered}");
    }
    if offered == 0 {
        return; // the engine keeps no batches in files
    }
    // A region in flight keeps its bytes when retention deletes its segment.
    let region = log
        .read_region(Offset(0), 1 << 20)
        .expect("read_region")
        .expect("a region");
    let before = region_bytes(&region);
    log.delete_before(Offset(20)).expect("delete_before");
    assert_eq!(region_bytes(&region), before);
    assert!(matches!(
        log.read_region(Offset(0), 100),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    regions_of_many_small_batches(&engine);
}

/// Thousands of small batches of many sizes in one segment: a region of a MiB walks
/// hundreds of headers, whatever the engine's way of finding them, and is still exactly
/// the bytes `read` returns.
fn regions_of_many_small_batches(engine: &Arc<dyn StorageEngine>) {
    let cfg = LogConfig {
        segment_bytes: 64 << 20,
        retention_ms: -1,
        ..LogConfig::default()
    };
    let log = engine
        .open(&tp("conformance-small", 0), &cfg)
        .expect("open partition");
    for i in 0..3000usize {
        log.append(batch(1 + i % 4, i as i64, 10 + (i * 7919) % 1500))
            .expect("append");
    }
    let end = log.log_end_offset().0;
    for from in [0, 1, 17, 500, 2345, end / 2, end - 3] {
        for max in [1, 5000, 65_536, 200_000, 1 << 20, 16 << 20] {
            let read = log.read(Offset(from), max).expect("read");
            let Some(region) = log.read_region(Offset(from), max).expect("read_region") else {
                assert_ne!(engine.name(), "log", "the log engine offers a region");
                return;
            };
            assert_eq!(
                region_bytes(&region),
                &read.records[..],
                "from {from}, max_bytes {max}"
            );
            let got = batches(&read.records);
            assert_eq!(
                region.batches.len(),
                got.len(),
                "from {from}, max_bytes {max}"
            );
            for (b, g) in region.batches.iter().zip(&got) {
                assert_eq!(b.next_offset, g.last_offset().plus(1));
                assert_eq!(b.size_bytes as usize, g.size_bytes());
            }
        }
    }
}
