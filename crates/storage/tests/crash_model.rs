//! Property test: random sequences of append / roll / read / delete_before / truncate_after
//! / flush / crash (drop without close, then damage the unflushed tail) / reopen against
//! every engine, checked against a simple in-memory model of the log. One test, one
//! [`Kind`] per engine: `log`, `memory` and (feature `rocksdb`) `rocksdb`.
//!
//! After any crash the log must hold exactly a prefix of what was appended, that prefix
//! must include everything flushed, and no read may ever return a batch that fails
//! validation. Aborted transactions (a transactional batch, an abort marker, the entry
//! recorded) are checked too: the engine lists exactly the model's entries whose markers
//! are stored; after a crash, a subset of them holding every entry whose marker was
//! flushed (one whose marker survived unflushed may be lost: the broker records it again
//! when it replays the log after its producer snapshot). "Roll" is each engine's durability boundary: a new segment (`log`), a
//! snapshot (`memory`), a memtable flush (`rocksdb`). The damaged file is the one that
//! holds the unflushed tail: the active segment, the newest WAL.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use rafka_core::batch::BatchBuilder;
use rafka_core::{
    AbortedTxn, ControlType, LogConfig, Offset, PartitionLog, RecordBatch, StorageEngine,
    Timestamp, TopicName, TopicPartition, ValidatedBatch,
};
use rafka_storage::{LogEngine, MemoryEngine, MemoryOptions};

/// The engine under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Log,
    Memory,
    #[cfg(feature = "rocksdb")]
    Rocks,
}

/// Forces a snapshot (`memory`) or memtable flush (`rocksdb`).
type Checkpoint = Box<dyn Fn()>;

/// An open engine, its partition, and the engine's own durability boundary.
struct Opened {
    engine: Arc<dyn StorageEngine>,
    log: Arc<dyn PartitionLog>,
    /// Forces a snapshot (`memory`) or memtable flush (`rocksdb`); `None` for `log`,
    /// which rolls through its config.
    checkpoint: Option<Checkpoint>,
}

impl Kind {
    /// Whether `delete_before` / `truncate_after` make everything before them durable
    /// (they sync the WAL), rather than only their own checkpoint.
    fn metadata_ops_sync(self) -> bool {
        self != Kind::Log
    }

    /// The file holding the unflushed tail after a crash.
    fn tail_file(self, root: &Path) -> PathBuf {
        match self {
            Kind::Log => newest(&root.join(tp().dir_name()), |n| n.ends_with(".log")),
            Kind::Memory => newest(root, |n| n.starts_with("wal-")),
            #[cfg(feature = "rocksdb")]
            Kind::Rocks => newest(root, |n| n.ends_with(".log")),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Leave the files as the process left them.
    None,
    /// Cut the active segment somewhere in its unflushed tail.
    Cut,
    /// Flip a byte somewhere in the active segment's unflushed tail.
    Flip,
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        n_records: usize,
        value_bytes: usize,
    },
    Roll,
    Read {
        at: u16,
        max_bytes: usize,
    },
    DeleteBefore {
        at: u16,
    },
    TruncateAfter {
        at: u16,
    },
    Flush,
    Crash {
        damage: Damage,
        at: u16,
    },
    Reopen,
    /// A transaction of one batch of `value_bytes`, aborted.
    Abort {
        value_bytes: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..4, 0usize..400).prop_map(|(n_records, value_bytes)| Op::Append { n_records, value_bytes }),
        1 => Just(Op::Roll),
        3 => (any::<u16>(), prop_oneof![Just(1usize), Just(700), Just(5000)])
            .prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
        1 => any::<u16>().prop_map(|at| Op::DeleteBefore { at }),
        1 => any::<u16>().prop_map(|at| Op::TruncateAfter { at }),
        2 => Just(Op::Flush),
        2 => (prop_oneof![Just(Damage::None), Just(Damage::Cut), Just(Damage::Flip)], any::<u16>())
            .prop_map(|(damage, at)| Op::Crash { damage, at }),
        1 => Just(Op::Reopen),
        2 => (0usize..400).prop_map(|value_bytes| Op::Abort { value_bytes }),
    ]
}

/// What the log should hold.
#[derive(Debug, Default)]
struct Model {
    /// Every batch still in the log (some may lie below the log start), offsets assigned.
    batches: Vec<RecordBatch>,
    log_start: i64,
    log_end: i64,
    /// `batches[..flushed]` are durable.
    flushed: usize,
    n_appends: i64,
    /// Aborted transactions recorded, in marker order (some markers may lie below the log
    /// start; none at or past the log end).
    aborted: Vec<AbortedTxn>,
}

impl Model {
    /// The log end if only `batches[..k]` survive.
    fn boundary(&self, k: usize) -> i64 {
        self.batches
            .get(k)
            .map_or(self.log_end, |b| b.base_offset().0)
    }

    fn pick(&self, at: u16) -> i64 {
        self.log_start + at as i64 % (self.log_end - self.log_start + 1)
    }

    /// The entries whose markers are stored.
    fn live_aborted(&self) -> Vec<AbortedTxn> {
        self.aborted
            .iter()
            .filter(|a| a.last_offset.0 >= self.log_start && a.last_offset.0 < self.log_end)
            .copied()
            .collect()
    }
}

fn all_aborted(log: &dyn PartitionLog) -> Vec<AbortedTxn> {
    log.aborted_txns(Offset(0), Offset(i64::MAX))
        .expect("aborted_txns")
}

/// After a crash: the engine's entries are live model entries and include every one whose
/// marker was flushed; the model takes the engine's list.
fn recover_aborted(log: &dyn PartitionLog, model: &mut Model) {
    let got = all_aborted(log);
    let live = model.live_aborted();
    for g in &got {
        assert!(live.contains(g), "entry {g:?} is not a live model entry");
    }
    let flushed_end = model.boundary(model.flushed);
    for l in &live {
        if l.last_offset.0 < flushed_end {
            assert!(got.contains(l), "flushed entry {l:?} lost");
        }
    }
    model.aborted = got;
}

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 1500,
        index_interval_bytes: 300,
        ..LogConfig::default()
    }
}

fn tp() -> TopicPartition {
    TopicPartition::new(TopicName::new("model").unwrap(), 0)
}

fn open(kind: Kind, root: &Path) -> Opened {
    let (engine, checkpoint): (Arc<dyn StorageEngine>, Option<Checkpoint>) = match kind {
        Kind::Log => (
            Arc::new(LogEngine::open(root.to_path_buf(), cfg()).expect("engine opens")),
            None,
        ),
        Kind::Memory => {
            let opts = MemoryOptions {
                dir: Some(root.to_path_buf()),
                // Snapshots only when the test says "roll", so failures replay exactly.
                snapshot_interval_bytes: u64::MAX,
                snapshot_interval_ms: 3_600_000,
                ..MemoryOptions::default()
            };
            let e = Arc::new(MemoryEngine::open(opts, cfg()).expect("engine opens"));
            let e2 = Arc::clone(&e);
            (
                e,
                Some(Box::new(move || e2.snapshot_now().expect("snapshot"))),
            )
        }
        #[cfg(feature = "rocksdb")]
        Kind::Rocks => {
            let e = Arc::new(
                rafka_storage::RocksEngine::open(root.to_path_buf(), cfg()).expect("engine opens"),
            );
            let e2 = Arc::clone(&e);
            (
                e,
                Some(Box::new(move || e2.flush_memtables().expect("flush"))),
            )
        }
    };
    let log = engine.open(&tp(), &cfg()).expect("partition opens");
    Opened {
        engine,
        log,
        checkpoint,
    }
}

/// Offsets and every byte from magic on: the partition leader epoch (bytes 12..16) is
/// outside the CRC, so a flipped epoch byte cannot be detected, as in Kafka.
fn same_batch(a: &RecordBatch, b: &RecordBatch) -> bool {
    a.base_offset() == b.base_offset() && a.as_bytes()[16..] == b.as_bytes()[16..]
}

fn check_read(log: &dyn PartitionLog, model: &Model, from: i64, max_bytes: usize) {
    let r = log.read(Offset(from), max_bytes).expect("read in range");
    assert_eq!(r.log_end_offset, Offset(model.log_end));
    assert_eq!(r.log_start_offset, Offset(model.log_start));
    let got = RecordBatch::split_all(r.records).expect("whole batches");
    if from == model.log_end {
        assert!(got.is_empty());
        return;
    }
    assert!(!got.is_empty(), "read at {from} returned nothing");
    let first = model
        .batches
        .iter()
        .position(|b| b.next_offset().0 > from)
        .expect("model has the offset");
    for (i, b) in got.iter().enumerate() {
        b.validate().expect("every returned batch validates");
        assert!(
            same_batch(b, &model.batches[first + i]),
            "batch {} differs",
            first + i
        );
    }
}

fn check_all(log: &dyn PartitionLog, model: &Model) {
    assert_eq!(log.log_start_offset(), Offset(model.log_start));
    assert_eq!(log.log_end_offset(), Offset(model.log_end));
    assert_eq!(
        all_aborted(log),
        model.live_aborted(),
        "aborted transactions"
    );
    let mut from = model.log_start;
    while from < model.log_end {
        check_read(log, model, from, 1 << 16);
        let r = log.read(Offset(from), 1 << 16).expect("read");
        let got = RecordBatch::split_all(r.records).expect("whole batches");
        from = got.last().expect("non-empty").next_offset().0;
    }
}

/// The file in `dir` whose name matches and sorts last (names hold zero-padded numbers).
fn newest(dir: &Path, matches: impl Fn(&str) -> bool) -> PathBuf {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| matches(&p.file_name().unwrap().to_string_lossy()))
        .collect();
    files.sort();
    files.pop().expect("the engine has a file holding its tail")
}

fn run(kind: Kind, ops: Vec<Op>) {
    let root = tempfile::tempdir().unwrap();
    let mut opened = open(kind, root.path());
    let mut model = Model::default();
    for op in ops {
        let log = Arc::clone(&opened.log);
        match op {
            Op::Append {
                n_records,
                value_bytes,
            } => {
                append(log.as_ref(), &mut model, n_records, value_bytes);
            }
            Op::Roll => match &opened.checkpoint {
                Some(checkpoint) => checkpoint(),
                None => {
                    log.set_config(LogConfig {
                        segment_ms: 0,
                        ..cfg()
                    });
                    append(log.as_ref(), &mut model, 1, 10);
                    log.set_config(cfg());
                }
            },
            Op::Read { at, max_bytes } => {
                let from = model.pick(at);
                check_read(log.as_ref(), &model, from, max_bytes);
            }
            Op::DeleteBefore { at } => {
                let offset = model.pick(at);
                log.delete_before(Offset(offset))
                    .expect("delete_before in range");
                model.log_start = model.log_start.max(offset);
                if kind.metadata_ops_sync() {
                    model.flushed = model.batches.len();
                }
            }
            Op::TruncateAfter { at } => {
                let offset = model.pick(at);
                log.truncate_after(Offset(offset)).expect("truncate_after");
                if offset < model.log_end {
                    let k = model
                        .batches
                        .iter()
                        .position(|b| b.next_offset().0 > offset)
                        .expect("offset below the log end");
                    model.log_end = model.batches[k].base_offset().0;
                    model.batches.truncate(k);
                    let end = model.log_end;
                    model.aborted.retain(|a| a.last_offset.0 < end);
                    model.flushed = model.flushed.min(k);
                    model.log_start = model.log_start.min(model.log_end);
                }
                if kind.metadata_ops_sync() {
                    model.flushed = model.batches.len();
                }
            }
            Op::Flush => {
                log.flush().expect("flush");
                model.flushed = model.batches.len();
            }
            Op::Crash { damage, at } => {
                drop(log);
                drop(opened);
                let unflushed: u64 = model.batches[model.flushed..]
                    .iter()
                    .map(|b| b.size_bytes() as u64)
                    .sum();
                let seg = kind.tail_file(root.path());
                let len = fs::metadata(&seg).unwrap().len();
                let tail = unflushed.min(len);
                if tail > 0 {
                    let f = fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&seg)
                        .unwrap();
                    let pos = len - 1 - at as u64 % tail;
                    match damage {
                        Damage::None => {}
                        Damage::Cut => f.set_len(pos).unwrap(),
                        Damage::Flip => {
                            let mut byte = [0u8];
                            f.read_at(&mut byte, pos).unwrap();
                            f.write_all_at(&[byte[0] ^ 0x5a], pos).unwrap();
                        }
                    }
                }
                opened = open(kind, root.path());
                recover_model(opened.log.as_ref(), &mut model);
                recover_aborted(opened.log.as_ref(), &mut model);
                check_all(opened.log.as_ref(), &model);
            }
            Op::Reopen => {
                opened.engine.close().expect("close");
                drop(log);
                drop(opened);
                opened = open(kind, root.path());
                model.flushed = model.batches.len();
                check_all(opened.log.as_ref(), &model);
            }
            Op::Abort { value_bytes } => abort(log.as_ref(), &mut model, value_bytes),
        }
        let log = opened.log.as_ref();
        assert_eq!(log.log_end_offset(), Offset(model.log_end));
        assert_eq!(log.log_start_offset(), Offset(model.log_start));
    }
    check_all(opened.log.as_ref(), &model);
}

fn append(log: &dyn PartitionLog, model: &mut Model, n_records: usize, value_bytes: usize) {
    model.n_appends += 1;
    let mut b = BatchBuilder::new(Offset(0));
    for i in 0..n_records {
        let value = vec![(model.n_appends as u8).wrapping_add(i as u8); value_bytes];
        b = b.kv(b"k", &value, Timestamp(model.n_appends * 10 + i as i64));
    }
    store(log, model, b.build());
}

/// A transactional batch of producer 7, its abort marker, and the entry recorded.
fn abort(log: &dyn PartitionLog, model: &mut Model, value_bytes: usize) {
    model.n_appends += 1;
    let data = BatchBuilder::new(Offset(0))
        .producer(7, 0, model.n_appends as i32)
        .transactional()
        .kv(
            b"t",
            &vec![model.n_appends as u8; value_bytes],
            Timestamp(model.n_appends * 10),
        )
        .build();
    let first = store(log, model, data);
    let marker = rafka_core::batch::control_batch(
        7,
        0,
        0,
        ControlType::Abort,
        Timestamp(model.n_appends * 10),
    );
    let last = store(log, model, marker);
    let e = AbortedTxn {
        producer_id: 7,
        first_offset: first,
        last_offset: last,
        last_stable_offset: last.plus(1),
    };
    log.record_aborted_txn(e).expect("record");
    model.aborted.push(e);
}

/// Appends `batch` and the model's copy; returns its base offset.
fn store(log: &dyn PartitionLog, model: &mut Model, batch: RecordBatch) -> Offset {
    let info = log
        .append(ValidatedBatch::new(batch.clone()).expect("built batches are valid"))
        .expect("append");
    assert_eq!(info.base_offset, Offset(model.log_end));
    let mut stored = RecordBatch::parse(Bytes::copy_from_slice(batch.as_bytes())).unwrap();
    stored.set_base_offset(info.base_offset);
    model.log_end = stored.next_offset().0;
    model.batches.push(stored);
    info.base_offset
}

/// Checks that what survived a crash is an allowed prefix, and updates the model to it.
fn recover_model(log: &dyn PartitionLog, model: &mut Model) {
    let end = log.log_end_offset().0;
    let allowed = (model.flushed..=model.batches.len()).find(|&k| model.boundary(k) == end);
    match allowed {
        Some(k) if end >= model.log_start => {
            model.batches.truncate(k);
            model.log_end = end;
            model.flushed = model.flushed.min(k);
        }
        _ => {
            // Deleted up to a log start beyond what survived: the log restarts empty there,
            // which is only allowed if nothing flushed lies at or above the log start.
            assert_eq!(
                end, model.log_start,
                "log end {end} is not an allowed prefix"
            );
            assert!(model.boundary(model.flushed) <= model.log_start);
            model.batches.clear();
            model.log_end = end;
            model.flushed = 0;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model_across_crashes(ops in prop::collection::vec(op(), 1..40)) {
        run(Kind::Log, ops);
    }

    #[test]
    fn memory_matches_model_across_crashes(ops in prop::collection::vec(op(), 1..40)) {
        run(Kind::Memory, ops);
    }

    #[cfg(feature = "rocksdb")]
    #[test]
    fn rocksdb_matches_model_across_crashes(ops in prop::collection::vec(op(), 1..40)) {
        run(Kind::Rocks, ops);
    }
}
