//! The diskless data path against PostgreSQL and a file object store: the committer, the
//! fetch path, producer ids and the sweeper.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rafka_core::batch::BatchBuilder;
use rafka_core::{Offset, RecordBatch, Timestamp, ValidatedBatch};

use super::commit::{CommitError, Committed, Tp};
use super::fetch::{read, ReadError};
use super::tests::diskless;
use super::{ClusterConfig, ClusterMode, Diskless};

/// Another broker (node `node_id`) of `d`'s cluster: same database, same object store.
async fn another(d: &Diskless, node_id: i32) -> Diskless {
    Diskless::start(&d.config, node_id).await.unwrap()
}

/// A broker over a fresh database whose config `f` adjusts.
async fn diskless_with(
    label: &str,
    f: impl FnOnce(&mut ClusterConfig),
) -> (Diskless, tempfile::TempDir) {
    let db = super::test_postgres::Postgres::shared().fresh_database(label);
    let dir = tempfile::tempdir().unwrap();
    let mut config = ClusterConfig {
        mode: ClusterMode::Diskless,
        coordinator: Some(db),
        object_store: Some(format!("file://{}", dir.path().display())),
        ..ClusterConfig::default()
    };
    f(&mut config);
    (Diskless::start(&config, 0).await.unwrap(), dir)
}

/// A batch of `n` records `k{i}`/`v{i}` (producer `pid` at `epoch` from `seq`, or none).
fn batch(tag: &str, n: usize, producer: Option<(i64, i16, i32)>) -> ValidatedBatch {
    let mut b = BatchBuilder::new(Offset(0));
    if let Some((pid, epoch, seq)) = producer {
        b = b.producer(pid, epoch, seq);
    }
    for i in 0..n {
        b = b.kv(
            format!("{tag}-k{i}").as_bytes(),
            format!("{tag}-v{i}").as_bytes(),
            Timestamp(1_000 + i as i64),
        );
    }
    ValidatedBatch::new(b.build()).unwrap()
}

/// `b`'s bytes as a fetch returns them: base offset `base`.
fn at(b: &ValidatedBatch, base: i64) -> Bytes {
    let mut b = b.as_batch().clone();
    b.set_base_offset(Offset(base));
    b.into_bytes()
}

async fn topic(d: &Diskless, name: &str, partitions: i32) -> uuid::Uuid {
    d.catalog
        .create(&d.pg, name, partitions, &Default::default())
        .await
        .unwrap()
        .id
}

async fn count(d: &Diskless, sql: &str) -> i64 {
    d.pg.get()
        .await
        .unwrap()
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn offsets_contiguous_across_two_brokers_and_fetched_from_either() {
    let (a, _dir) = diskless("dl_two_brokers", 0).await;
    let b = Arc::new(another(&a, 1).await);
    let a = Arc::new(a);
    let id = topic(&a, "orders", 2).await;
    let tp: Tp = (id, 1);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let d = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let v = batch(&format!("s{i}"), 3, None);
            let c = d.committer.submit(tp, vec![v.clone()]).await.unwrap();
            (c.base_offset, v)
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    got.sort_by_key(|(o, _)| *o);
    let offsets: Vec<i64> = got.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (0..40).map(|i| i * 3).collect::<Vec<i64>>());
    let hw: i64 =
        a.pg.get()
            .await
            .unwrap()
            .query_one(
                "SELECT high_watermark FROM rafka_partitions WHERE topic_id = $1 AND partition = 1",
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(hw, 120);
    // Coalesced: at most one row per partition per object, and fewer objects than submits.
    let rows = count(&a, "SELECT count(*) FROM rafka_batches").await;
    let objects = count(&a, "SELECT count(*) FROM rafka_objects WHERE state = 1").await;
    assert_eq!(rows, objects);
    assert!(objects < 40, "{objects} objects for 40 submits");
    // Every broker returns the same log, byte for byte.
    let want: Vec<u8> = got.iter().flat_map(|(o, v)| at(v, *o).to_vec()).collect();
    for d in [&a, &b] {
        // The other broker learns the high watermark from `rafka_hw`.
        for _ in 0..100 {
            if d.marks.get(tp).is_some_and(|m| m.1 == 120) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut fetched = Vec::new();
        let mut next = 0;
        while next < 120 {
            let r = read(d, tp, next, 1 << 20).await.unwrap();
            assert_eq!(r.high_watermark, 120);
            let batches = RecordBatch::split_all(r.records.clone()).unwrap();
            next = batches.last().unwrap().next_offset().0;
            fetched.extend_from_slice(&r.records);
        }
        assert_eq!(fetched, want);
    }
    // The other partition is untouched.
    let r = read(&b, (id, 0), 0, 1 << 20).await.unwrap();
    assert_eq!((r.records.len(), r.high_watermark), (0, 0));
}

#[tokio::test]
async fn idempotent_duplicates_written_once_gaps_and_old_epochs_refused() {
    let (d, _dir) = diskless("dl_idempotent", 0).await;
    let id = topic(&d, "idem", 1).await;
    let tp: Tp = (id, 0);
    let first = batch("a", 3, Some((7, 0, 0)));
    let c = d.committer.submit(tp, vec![first.clone()]).await.unwrap();
    assert_eq!(c.base_offset, 0);
    // Another producer's batch in between.
    d.committer
        .submit(tp, vec![batch("x", 2, None)])
        .await
        .unwrap();
    // The resent batch: its original offset, nothing written.
    let again = d.committer.submit(tp, vec![first.clone()]).await.unwrap();
    assert_eq!(
        again,
        Committed {
            base_offset: 0,
            log_start_offset: 0
        }
    );
    assert_eq!(d.marks.get(tp), Some((0, 5)));
    // A gap.
    assert_eq!(
        d.committer
            .submit(tp, vec![batch("gap", 1, Some((7, 0, 5)))])
            .await,
        Err(CommitError::OutOfOrder { expected: 3 })
    );
    // A new producer must start at 0.
    assert_eq!(
        d.committer
            .submit(tp, vec![batch("new", 1, Some((8, 0, 2)))])
            .await,
        Err(CommitError::OutOfOrder { expected: 0 })
    );
    // The next in sequence, then a bumped epoch from 0, then the old epoch is fenced.
    let next = d
        .committer
        .submit(tp, vec![batch("b", 2, Some((7, 0, 3)))])
        .await
        .unwrap();
    assert_eq!(next.base_offset, 5);
    let bumped = d
        .committer
        .submit(tp, vec![batch("c", 1, Some((7, 1, 0)))])
        .await
        .unwrap();
    assert_eq!(bumped.base_offset, 7);
    assert_eq!(
        d.committer
            .submit(tp, vec![batch("old", 1, Some((7, 0, 5)))])
            .await,
        Err(CommitError::Fenced)
    );
    // Written once: 3 + 2 + 2 + 1 records, four rows; the producer row is the new epoch's.
    assert_eq!(d.marks.get(tp), Some((0, 8)));
    let r = read(&d, tp, 0, 1 << 20).await.unwrap();
    let bases: Vec<i64> = RecordBatch::split_all(r.records)
        .unwrap()
        .iter()
        .map(|b| b.base_offset().0)
        .collect();
    assert_eq!(bases, vec![0, 3, 5, 7]);
    let client = d.pg.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT producer_epoch, first_seqs, base_offsets FROM rafka_producers \
             WHERE producer_id = 7",
            &[],
        )
        .await
        .unwrap();
    let (epoch, firsts, offsets): (i16, Vec<i32>, Vec<i64>) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((epoch, firsts, offsets), (1, vec![0], vec![7]));
    // The same duplicate inside one submission with a new batch: only the new one is
    // written, in its own row.
    let dup_and_new = vec![
        batch("c", 1, Some((7, 1, 0))),
        batch("d", 2, Some((7, 1, 1))),
    ];
    let c = d.committer.submit(tp, dup_and_new).await.unwrap();
    assert_eq!(c.base_offset, 7);
    assert_eq!(d.marks.get(tp), Some((0, 10)));
}

#[tokio::test]
async fn failed_upload_answers_an_error_and_the_sweeper_removes_the_orphan() {
    let (d, dir) = diskless_with("dl_sweeper", |c| c.object_grace_ms = 1).await;
    let id = topic(&d, "swept", 1).await;
    let tp: Tp = (id, 0);
    // A file where the objects directory should be: every upload fails.
    std::fs::write(dir.path().join("objects"), b"in the way").unwrap();
    let r = d.committer.submit(tp, vec![batch("lost", 2, None)]).await;
    assert!(matches!(r, Err(CommitError::Upload(_))), "{r:?}");
    assert_eq!(d.marks.get(tp).map_or(0, |m| m.1), 0);
    assert_eq!(
        count(&d, "SELECT count(*) FROM rafka_objects WHERE state = 0").await,
        1
    );
    assert_eq!(count(&d, "SELECT count(*) FROM rafka_batches").await, 0);
    // Uploads work again; a committed object is never swept.
    std::fs::remove_file(dir.path().join("objects")).unwrap();
    let ok = d
        .committer
        .submit(tp, vec![batch("kept", 2, None)])
        .await
        .unwrap();
    assert_eq!(ok.base_offset, 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(super::sweeper::sweep_once(&d).await.unwrap(), 1);
    assert_eq!(count(&d, "SELECT count(*) FROM rafka_objects").await, 1);
    assert_eq!(
        count(&d, "SELECT count(*) FROM rafka_objects WHERE state = 1").await,
        1
    );
    let r = read(&d, tp, 0, 1 << 20).await.unwrap();
    assert_eq!(RecordBatch::split_all(r.records).unwrap().len(), 1);
    // An upload whose object the sweeper claimed before its commit is not committed.
    let client = d.pg.get().await.unwrap();
    client
        .execute(
            "INSERT INTO rafka_objects (object_key, node_id, size_bytes, state) \
             VALUES ('objects/b9/orphan.batches', 9, 10, 0)",
            &[],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(super::sweeper::sweep_once(&d).await.unwrap(), 1);
    assert_eq!(count(&d, "SELECT count(*) FROM rafka_objects").await, 1);
}

#[tokio::test]
async fn fetch_writes_base_offsets_across_objects_and_within_a_row() {
    let (d, _dir) = diskless_with("dl_fetch", |c| c.fetch_cache_bytes = 4096).await;
    let id = topic(&d, "reads", 1).await;
    let tp: Tp = (id, 0);
    // One submission of three batches: one row holding three batches.
    let row = vec![
        batch("r0", 2, None),
        batch("r1", 3, None),
        batch("r2", 1, None),
    ];
    d.committer.submit(tp, row.clone()).await.unwrap();
    // Another object.
    let more = batch("m", 4, None);
    let c = d.committer.submit(tp, vec![more.clone()]).await.unwrap();
    assert_eq!(c.base_offset, 6);
    let expected: Vec<Bytes> = vec![at(&row[0], 0), at(&row[1], 2), at(&row[2], 5), at(&more, 6)];
    let all: Vec<u8> = expected.iter().flat_map(|b| b.to_vec()).collect();
    assert_eq!(
        &read(&d, tp, 0, 1 << 20).await.unwrap().records[..],
        &all[..]
    );
    // From inside the second batch of the row: that batch on.
    let from3 = read(&d, tp, 3, 1 << 20).await.unwrap();
    let tail: Vec<u8> = expected[1..].iter().flat_map(|b| b.to_vec()).collect();
    assert_eq!(&from3.records[..], &tail[..]);
    // A limit smaller than a batch still gets one whole batch; a limit of two batches
    // gets two.
    assert_eq!(read(&d, tp, 0, 1).await.unwrap().records, expected[0]);
    let two = expected[0].len() + expected[1].len();
    let r = read(&d, tp, 0, two).await.unwrap();
    assert_eq!(r.records.len(), two);
    // At the high watermark: nothing; past it or below the start: out of range.
    let r = read(&d, tp, 10, 1 << 20).await.unwrap();
    assert_eq!((r.records.len(), r.log_start, r.high_watermark), (0, 0, 10));
    assert!(matches!(
        read(&d, tp, 11, 1).await,
        Err(ReadError::OutOfRange {
            high_watermark: 10,
            ..
        })
    ));
    assert!(matches!(
        read(&d, tp, -1, 1).await,
        Err(ReadError::OutOfRange { .. })
    ));
    // The records decode with their offsets.
    let b = RecordBatch::split_all(from3.records).unwrap();
    let recs = b[0].decode_uncompressed_with_offsets().unwrap();
    assert_eq!(recs[0].0, Offset(2));
    assert_eq!(recs[0].1.value.as_deref(), Some(&b"r1-v0"[..]));
    // The range cache stays within its bound.
    assert!(d.ranges.bytes() <= 4096);
    assert!(!d.ranges.is_empty());
}

#[tokio::test]
async fn long_polls_wake_on_another_brokers_commit() {
    let (a, _dir) = diskless("dl_notify", 0).await;
    let b = another(&a, 1).await;
    let id = topic(&a, "wake", 1).await;
    let tp: Tp = (id, 0);
    assert_eq!(
        super::fetch::watermarks(&b, tp).await.unwrap(),
        Some((0, 0))
    );
    // Give b's listener time to LISTEN.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moved = b.marks.moved().notified();
    tokio::pin!(moved);
    moved.as_mut().enable();
    a.committer
        .submit(tp, vec![batch("n", 2, None)])
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), moved)
        .await
        .expect("b's long polls woke");
    assert_eq!(b.marks.get(tp), Some((0, 2)));
}

#[tokio::test]
async fn producer_ids_unique_across_brokers() {
    let (a, _dir) = diskless("dl_pids", 0).await;
    let b = another(&a, 1).await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1500 {
        assert!(seen.insert(a.producer_ids.next(&a.pg).await.unwrap()));
        assert!(seen.insert(b.producer_ids.next(&b.pg).await.unwrap()));
    }
    assert_eq!(seen.len(), 3000);
}

/// Not a check: the committer's figures at `commit_interval_ms` 25 on one broker (16
/// producers, one 16 KiB batch in flight each, 5 s; `FIG_PRODUCERS` and `FIG_BATCH_KIB`
/// change those). Run with
/// `cargo test -p rafka-broker --lib commit_figures -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn commit_figures() {
    use std::sync::atomic::Ordering;
    let (d, _dir) = diskless_with("dl_figures", |c| c.commit_interval_ms = 25).await;
    let d = Arc::new(d);
    let id = topic(&d, "figures", 8).await;
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (producers, kib) = (env("FIG_PRODUCERS", 16), env("FIG_BATCH_KIB", 16));
    let value = "x".repeat(kib * 1024 - 100);
    let until = std::time::Instant::now() + Duration::from_secs(5);
    let mut tasks = Vec::new();
    for p in 0..producers {
        let (d, value) = (d.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut seq = 0;
            while std::time::Instant::now() < until {
                let b = BatchBuilder::new(Offset(0))
                    .producer(1000 + p as i64, 0, seq)
                    .kv(b"k", value.as_bytes(), Timestamp(1))
                    .build();
                seq += 1;
                let started = std::time::Instant::now();
                d.committer
                    .submit((id, p as i32 % 8), vec![ValidatedBatch::new(b).unwrap()])
                    .await
                    .unwrap();
                lat.push(started.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    lat.sort();
    let s = &d.committer.stats;
    let (objects, bytes, txns, micros) = (
        s.objects.load(Ordering::Relaxed),
        s.bytes.load(Ordering::Relaxed),
        s.transactions.load(Ordering::Relaxed),
        s.commit_micros.load(Ordering::Relaxed),
    );
    let gb = bytes as f64 / 1e9;
    println!(
        "submits {} p50 {:?} p99 {:?}; objects {objects} ({:.0}/GB), transactions {txns} \
         ({:.0}/GB), {:.1} MB/s, mean commit {} us",
        lat.len(),
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100],
        objects as f64 / gb,
        txns as f64 / gb,
        bytes as f64 / 5e6,
        micros / objects.max(1),
    );
}

#[tokio::test]
async fn retention_moves_the_log_start_and_unreferenced_objects_are_swept() {
    let (d, dir) = diskless_with("dl_retention", |c| c.object_grace_ms = 1).await;
    let id = topic(&d, "aging", 1).await;
    let tp: Tp = (id, 0);
    let batches: Vec<ValidatedBatch> = (0..3).map(|i| batch(&format!("r{i}"), 2, None)).collect();
    for b in &batches {
        // One object each.
        d.committer.submit(tp, vec![b.clone()]).await.unwrap();
    }
    let size = batches[0].as_batch().size_bytes() as i64;
    let files = || walk(&dir.path().join("objects"));
    assert_eq!(files(), 3);
    let mut client = super::pg::connect(d.coordinator()).await.unwrap();
    // Nothing is old enough and no size limit: nothing goes.
    let now = 10_000;
    assert_eq!(
        super::sweeper::retain_partition(&d, &mut client, tp, 1_000_000, -1, now)
            .await
            .unwrap(),
        0
    );
    // retention.bytes of one batch: the two oldest rows go.
    assert_eq!(
        super::sweeper::retain_partition(&d, &mut client, tp, -1, size, now)
            .await
            .unwrap(),
        4
    );
    assert_eq!(d.marks.get(tp), Some((4, 6)));
    assert!(matches!(
        read(&d, tp, 0, 1 << 20).await,
        Err(ReadError::OutOfRange { log_start: 4, .. })
    ));
    assert_eq!(
        read(&d, tp, 4, 1 << 20).await.unwrap().records,
        at(&batches[2], 4)
    );
    assert_eq!(
        count(&d, "SELECT count(*) FROM rafka_objects WHERE state = 2").await,
        2
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(super::sweeper::sweep_once(&d).await.unwrap(), 2);
    assert_eq!(files(), 1);
    // retention.ms: every record's timestamp (1000, 1001) is older than now - 1000.
    assert_eq!(
        super::sweeper::retain_partition(&d, &mut client, tp, 1_000, -1, 5_000)
            .await
            .unwrap(),
        2
    );
    assert_eq!(d.marks.get(tp), Some((6, 6)));
    let r = read(&d, tp, 6, 1 << 20).await.unwrap();
    assert_eq!((r.records.len(), r.log_start, r.high_watermark), (0, 6, 6));
    // Offsets continue after the log start.
    let c = d
        .committer
        .submit(tp, vec![batch("after", 1, None)])
        .await
        .unwrap();
    assert_eq!((c.base_offset, c.log_start_offset), (6, 6));
}

/// Files under `dir`, recursively.
fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        walk(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
