//! Disk faults: a full file system makes produce answer KAFKA_STORAGE_ERROR while reads and
//! everything else keep working, and produce works again once space returns; a partition
//! whose segment cannot be opened at startup is reported by file name and served offline
//! (KAFKA_STORAGE_ERROR) while the broker starts and serves the others.
//!
//! The full-disk cases mount a small tmpfs, which needs root (or the right to mount): where
//! this process cannot mount one, they are reported `ignored` and the reason is printed.
//! Deciding that at run time needs a harness of our own (libtest-mimic, `harness = false`),
//! hence a test binary of its own.

mod common;
mod support;

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use bytes::Bytes;
use libtest_mimic::{Arguments, Trial};
use rafka_broker::{Broker, Config};
use rafka_core::batch::BatchBuilder;
use rafka_core::{Offset, Timestamp};

use common::{
    create_topic, decode_records, fetch, list_offsets, metadata, produce, FetchArgs, KafkaConn,
    LATEST,
};
use support::{LogCapture, Tmpfs};

fn main() -> ExitCode {
    let args = Arguments::from_args();
    // Broker logs of the full-disk cases go to the output, as in the other test binaries.
    support::log_to_test_output();
    let no_tmpfs = tmpfs_unavailable();
    if let Some(why) = &no_tmpfs {
        eprintln!(
            "full-disk cases ignored: cannot mount a tmpfs to fill ({why}); run as root to \
             test a full disk"
        );
    }
    let full_disk_case = |name: &str, storage_type: &'static str| {
        Trial::test(name, move || {
            runtime().block_on(full_disk(storage_type));
            Ok(())
        })
        .with_ignored_flag(no_tmpfs.is_some())
    };
    let trials = vec![
        full_disk_case(
            "a_full_disk_refuses_produce_with_storage_error_and_recovers_when_space_returns",
            "log",
        ),
        full_disk_case(
            "a_full_disk_under_the_memory_engine_refuses_produce_and_recovers",
            "memory",
        ),
        Trial::test(
            "an_unopenable_segment_takes_only_its_partition_offline",
            || {
                an_unopenable_segment_takes_only_its_partition_offline();
                Ok(())
            },
        ),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}

/// Why this process cannot mount a tmpfs, if it cannot: one is mounted and unmounted to see.
fn tmpfs_unavailable() -> Option<String> {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => return Some(format!("no temporary directory: {e}")),
    };
    let why = Tmpfs::mount(&dir.path().join("probe"), "1m").err()?;
    // `mount` explains over several lines: one line here.
    Some(why.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The runtime `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` would give.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

const KAFKA_STORAGE_ERROR: i16 = 56;

async fn start(path: &Path, configure: impl FnOnce(&mut Config)) -> Broker {
    let mut cfg = Config::default();
    cfg.broker.listen = "127.0.0.1:0".into();
    cfg.storage.path = path.to_path_buf();
    configure(&mut cfg);
    Broker::start(cfg).await.expect("broker starts")
}

/// A batch of `n` records of `size`-byte values, keys `{prefix}-{i}`.
fn batch(prefix: &str, n: usize, size: usize) -> Bytes {
    let mut b = BatchBuilder::new(Offset(0));
    for i in 0..n {
        let mut v = format!("{prefix}-{i}:").into_bytes();
        v.resize(size, b'.');
        b = b.kv(
            format!("{prefix}-{i}").as_bytes(),
            &v,
            Timestamp(1_000 + i as i64),
        );
    }
    b.build().as_bytes().clone()
}

/// All records of `topic`-`partition` from offset 0, fetched until the log end.
async fn read_all(conn: &mut KafkaConn, topic: &str, partition: i32) -> Vec<common::FetchedRecord> {
    let mut out: Vec<common::FetchedRecord> = Vec::new();
    loop {
        let next = out.last().map_or(0, |r| r.offset + 1);
        let d = fetch(conn, topic, partition, FetchArgs::at(next)).await;
        assert_eq!(d.error_code, 0, "fetch {topic}-{partition} at {next}");
        let (_, recs) = decode_records(d.records);
        if recs.is_empty() {
            return out;
        }
        out.extend(recs.into_iter().filter(|r| r.offset >= next));
    }
}

async fn full_disk(storage_type: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    // Run although ignored (`--ignored`) on a machine without a tmpfs: fail, saying why.
    let _fs = Tmpfs::mount(&mnt, "8m")
        .unwrap_or_else(|why| panic!("cannot mount a tmpfs to fill ({why}): run as root"));
    // Most of the file system is taken by a file the test removes later.
    let ballast = mnt.join("ballast");
    std::fs::write(&ballast, vec![7u8; 5 << 20]).unwrap();
    let broker = start(&mnt.join("data"), |c| {
        c.storage.storage_type = storage_type.to_string();
        c.storage.log.segment_bytes = 1 << 20;
    })
    .await;
    let addr = broker.bootstrap_address();
    let mut conn = KafkaConn::connect(&addr).await;
    assert_eq!(create_topic(&mut conn, "full", 2, &[]).await, 0);

    // 16 records of 4 KiB per batch until the disk is full; bounded well past 8 MiB.
    let mut acked = 0i64;
    let mut refused = None;
    for round in 0..200 {
        let r = produce(&mut conn, "full", 0, batch(&format!("r{round}"), 16, 4096)).await;
        if r.error_code != 0 {
            refused = Some((round, r.error_code));
            break;
        }
        assert_eq!(r.base_offset, acked, "contiguous offsets while space lasts");
        acked += 16;
    }
    let (round, code) = refused.expect("the disk filled up within 200 batches");
    assert_eq!(code, KAFKA_STORAGE_ERROR, "produce on a full disk");
    assert!(acked > 0, "some batches fit before the disk was full");
    eprintln!("{storage_type}: disk full after {round} batches ({acked} records acknowledged)");

    // Still full: produce keeps failing the same way, on every partition.
    let r = produce(&mut conn, "full", 1, batch("p1", 16, 4096)).await;
    assert_eq!(
        r.error_code, KAFKA_STORAGE_ERROR,
        "partition 1 on a full disk"
    );
    // Reads, metadata and new connections keep working.
    let got = read_all(&mut conn, "full", 0).await;
    assert_eq!(
        got.len() as i64,
        acked,
        "every acknowledged record reads back"
    );
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.offset, i as i64);
        let round = i / 16;
        assert_eq!(r.key, format!("r{round}-{}", i % 16));
    }
    let md = metadata(&mut KafkaConn::connect(&addr).await, Some(&["full"])).await;
    assert_eq!(md.topics[0].error_code, 0);
    assert_eq!(
        list_offsets(&mut conn, "full", 0, LATEST).await.offset,
        acked
    );

    // Space returns: produce works again and continues the same offsets, with no trace of
    // the refused batches.
    std::fs::remove_file(&ballast).unwrap();
    let r = produce(&mut conn, "full", 0, batch("after", 16, 4096)).await;
    assert_eq!(r.error_code, 0, "produce once space is back");
    assert_eq!(r.base_offset, acked);
    let r = produce(&mut conn, "full", 1, batch("after1", 4, 100)).await;
    assert_eq!((r.error_code, r.base_offset), (0, 0));
    let got = read_all(&mut conn, "full", 0).await;
    assert_eq!(got.len() as i64, acked + 16);
    assert_eq!(got.last().unwrap().key, "after-15");
    broker
        .shutdown()
        .await
        .expect("clean shutdown on a file system that was full");
    // A restart finds exactly the acknowledged records: nothing of the refused writes.
    let broker = start(&mnt.join("data"), |c| {
        c.storage.storage_type = storage_type.to_string();
    })
    .await;
    let mut conn = KafkaConn::connect(&broker.bootstrap_address()).await;
    let again = read_all(&mut conn, "full", 0).await;
    assert_eq!(
        again, got,
        "{storage_type}: the same records after a restart"
    );
    broker.shutdown().await.unwrap();
}

fn an_unopenable_segment_takes_only_its_partition_offline() {
    // This case's broker logs to `logs` only: the offline report is checked in it.
    let logs = LogCapture::default();
    logs.runtime().block_on(unopenable_segment(&logs));
}

async fn unopenable_segment(logs: &LogCapture) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let broker = start(&data, |_| {}).await;
        let mut conn = KafkaConn::connect(&broker.bootstrap_address()).await;
        assert_eq!(create_topic(&mut conn, "good", 1, &[]).await, 0);
        assert_eq!(create_topic(&mut conn, "bad", 2, &[]).await, 0);
        for (t, p) in [("good", 0), ("bad", 0), ("bad", 1)] {
            let r = produce(&mut conn, t, p, batch(&format!("{t}{p}"), 10, 50)).await;
            assert_eq!(r.error_code, 0);
        }
        broker.shutdown().await.unwrap();
    }
    // bad-0's segment becomes something no engine can open as a file: a directory.
    let seg = data.join("bad-0").join("00000000000000000000.log");
    std::fs::remove_file(&seg).unwrap();
    std::fs::create_dir(&seg).unwrap();

    let started = Instant::now();
    let broker = start(&data, |_| {}).await;
    eprintln!(
        "broker started in {:?} with bad-0 offline",
        started.elapsed()
    );
    let log = logs.text();
    let line = log
        .lines()
        .find(|l| l.contains("partition is offline") && l.contains("bad-0"))
        .unwrap_or_else(|| panic!("no offline report for bad-0 in the log:\n{log}"));
    assert!(
        line.contains(&seg.display().to_string()),
        "the report names the file: {line}"
    );

    let mut conn = KafkaConn::connect(&broker.bootstrap_address()).await;
    // The offline partition answers KAFKA_STORAGE_ERROR to produce, fetch and ListOffsets.
    let r = produce(&mut conn, "bad", 0, batch("x", 1, 10)).await;
    assert_eq!(
        r.error_code, KAFKA_STORAGE_ERROR,
        "produce to the offline partition"
    );
    let d = fetch(&mut conn, "bad", 0, FetchArgs::at(0)).await;
    assert_eq!(
        d.error_code, KAFKA_STORAGE_ERROR,
        "fetch from the offline partition"
    );
    let o = list_offsets(&mut conn, "bad", 0, LATEST).await;
    assert_eq!(
        o.error_code, KAFKA_STORAGE_ERROR,
        "ListOffsets of the offline partition"
    );
    // Metadata lists the replica as offline, as Kafka does for an offline log dir.
    let md = metadata(&mut conn, Some(&["bad", "good"])).await;
    let bad = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().unwrap().0.as_str() == "bad")
        .unwrap();
    let offline: Vec<(i32, Vec<i32>)> = bad
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                p.offline_replicas.iter().map(|b| b.0).collect(),
            )
        })
        .collect();
    assert_eq!(offline, vec![(0, vec![0]), (1, vec![])]);

    // Everything else serves: its data, and new writes.
    for (t, p) in [("good", 0), ("bad", 1)] {
        let got = read_all(&mut conn, t, p).await;
        let keys: Vec<String> = got.iter().map(|r| r.key.clone()).collect();
        let want: Vec<String> = (0..10).map(|i| format!("{t}{p}-{i}")).collect();
        assert_eq!(keys, want, "{t}-{p} after the restart");
        let r = produce(&mut conn, t, p, batch("more", 2, 10)).await;
        assert_eq!(
            (r.error_code, r.base_offset),
            (0, 10),
            "{t}-{p} takes writes"
        );
    }
    broker.shutdown().await.unwrap();

    // Repaired, the partition comes back with nothing lost but the removed segment.
    std::fs::remove_dir(&seg).unwrap();
    std::fs::File::create(&seg).unwrap();
    let broker = start(&data, |_| {}).await;
    let mut conn = KafkaConn::connect(&broker.bootstrap_address()).await;
    let r = produce(&mut conn, "bad", 0, batch("back", 1, 10)).await;
    assert_eq!(r.error_code, 0, "produce once the segment is a file again");
    broker.shutdown().await.unwrap();
}
