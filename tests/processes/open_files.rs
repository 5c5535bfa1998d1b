//! `storage.log.max_open_files` on the `rafka` binary: with a bound of 16 segment files,
//! 100 partitions of several segments each are written (acks=all) and read back, the
//! process never holds more than 16 `.log` files open while idle, and after a SIGKILL the
//! restarted broker, under the same bound, serves every acknowledged record at its offset.

use crate::support;

use std::path::Path;
use std::time::Duration;

use rdkafka::producer::FutureRecord;

use support::{consume, create_topic, producer, BrokerProcess};

const BOUND: usize = 16;
const PARTITIONS: i32 = 100;
const PER_PARTITION: usize = 12;

/// The segment (`.log`) files under `data` a process holds open, from `/proc/<pid>/fd`
/// (its inherited stderr may be a `.log` file of the test runner's).
fn open_segment_files(pid: u32, data: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|t| t.starts_with(data) && t.extension().is_some_and(|x| x == "log"))
                .collect()
        })
        .unwrap_or_default()
}

fn value(p: i32, i: usize) -> String {
    format!("p{p}-r{i}-{}", "x".repeat(600))
}

/// Reads every partition back and checks each record at its offset.
async fn check_all(addr: &str) {
    let addr = addr.to_string();
    let got = tokio::task::spawn_blocking(move || {
        consume(
            &addr,
            "many",
            PARTITIONS,
            PARTITIONS as usize * PER_PARTITION,
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    assert_eq!(got.len(), PARTITIONS as usize * PER_PARTITION);
    for r in &got {
        let v = String::from_utf8(r.value.clone().unwrap()).unwrap();
        assert_eq!(v, value(r.partition, r.offset as usize));
    }
}

async fn idle_within_bound(broker: &BrokerProcess, data: &Path) {
    // A read holds its file until its answer is sent (beyond the bound, by design).
    let pid = broker.child.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let open = open_segment_files(pid, data);
        if open.len() <= BOUND {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} segment files open: {open:#?}",
            open.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn start(dir: &Path, cfg: &Path) -> BrokerProcess {
    BrokerProcess::start_with_config(dir, cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_partitions_under_a_small_open_file_bound_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rafka.yaml");
    std::fs::write(
        &cfg,
        format!("storage:\n  log:\n    max_open_files: {BOUND}\n    segment_bytes: 4096\n"),
    )
    .unwrap();
    let data = dir.path().join("data");
    let broker = start(&data, &cfg);
    create_topic(&broker.address, "many", PARTITIONS, &[]).await;
    idle_within_bound(&broker, &data).await;

    let p = producer(&broker.address, &[("acks", "all")]);
    for i in 0..PER_PARTITION {
        let sends: Vec<_> = (0..PARTITIONS)
            .map(|part| {
                let v = value(part, i);
                let p = p.clone();
                async move {
                    let d = p
                        .send(
                            FutureRecord::<(), _>::to("many")
                                .payload(&v)
                                .partition(part),
                            Duration::from_secs(30),
                        )
                        .await
                        .unwrap_or_else(|(e, _)| panic!("produce to {part}: {e}"));
                    assert_eq!((d.partition, d.offset), (part, i as i64));
                }
            })
            .collect();
        futures::future::join_all(sends).await;
    }
    drop(p);
    idle_within_bound(&broker, &data).await;
    let segments = std::fs::read_dir(data.join("many-7"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".log")
        })
        .count();
    assert!(segments >= 2, "several segments per partition ({segments})");
    check_all(&broker.address).await;
    idle_within_bound(&broker, &data).await;

    broker.kill();
    let broker = start(&data, &cfg);
    idle_within_bound(&broker, &data).await;
    check_all(&broker.address).await;
    idle_within_bound(&broker, &data).await;
}
