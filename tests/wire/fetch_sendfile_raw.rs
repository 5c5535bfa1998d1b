//! Fetch answers sent from segment files with `sendfile` (`broker.zero_copy_fetch`, on by
//! default for plaintext connections on the log engine) are byte for byte the answers
//! copied through memory: the same batches produced to two brokers, one with the switch
//! off, then the same raw Fetch requests to both, at every offset, across segment
//! boundaries, with byte limits that cut batches, over two partitions sharing one budget,
//! at both isolation levels and at versions with and without zero copy (before v10 it is
//! never used). A topic with an `on_fetch` hook takes the copying path and is rewritten.

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, RequestKind};

use rafka_broker::{Broker, Config};

use crate::common::{self, create_topic, encode, produce, topic_name, KafkaConn};

/// Batches produced to each partition: sizes vary so segments (3,000 bytes) roll inside
/// runs of small batches and after large ones.
const BATCHES: usize = 24;

async fn start(zero_copy: bool) -> (Broker, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg =
        Config::from_yaml("hooks:\n- type: redact\n  topics: ['users-.*']\n  fields: [ssn]\n")
            .expect("config parses");
    cfg.broker.listen = "127.0.0.1:0".into();
    cfg.admin.listen = "127.0.0.1:0".into();
    cfg.broker.zero_copy_fetch = zero_copy;
    cfg.storage.path = dir.path().to_path_buf();
    (Broker::start(cfg).await.expect("broker starts"), dir)
}

/// Batch `b` of a partition: 1 to 9 records with values of 20 to 420 bytes.
fn batch(prefix: &str, b: usize, json: bool) -> Bytes {
    let n = 1 + (b * 7) % 9;
    let mut builder = rafka_core::batch::BatchBuilder::new(rafka_core::Offset(0));
    for i in 0..n {
        let filler = "x".repeat(20 + (b * 53 + i * 31) % 400);
        let value = if json {
            format!("{{\"ssn\":\"123-45-{b:02}{i}\",\"note\":\"{filler}\"}}")
        } else {
            format!("value-{b}-{i}-{filler}")
        };
        builder = builder.kv(
            format!("{prefix}-{b}-{i}").as_bytes(),
            value.as_bytes(),
            rafka_core::Timestamp(1_700_000_000_000 + (b * 10 + i) as i64),
        );
    }
    builder.build().into_bytes()
}

/// One Fetch request over the given partitions of `topic`.
fn request(
    topic: &str,
    parts: &[(i32, i64)],
    max_bytes: i32,
    part_max: i32,
    iso: i8,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(max_bytes)
        .with_isolation_level(iso)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(
                parts
                    .iter()
                    .map(|&(p, offset)| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_current_leader_epoch(-1)
                            .with_fetch_offset(offset)
                            .with_log_start_offset(-1)
                            .with_partition_max_bytes(part_max)
                    })
                    .collect(),
            )])
}

/// `rafka_fetch_sendfile_bytes_total` from the broker's `/metrics`.
async fn sendfile_bytes(broker: &Broker) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = broker.admin_address().expect("an admin endpoint");
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to admin");
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send request");
    let mut raw = String::new();
    tokio::time::timeout(common::READ_TIMEOUT, s.read_to_string(&mut raw))
        .await
        .expect("admin answers in time")
        .expect("read answer");
    raw.lines()
        .find_map(|l| l.strip_prefix("rafka_fetch_sendfile_bytes_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("rafka_fetch_sendfile_bytes_total")
}

/// The raw answer frame of one request.
async fn answer(
    conn: &mut KafkaConn,
    version: i16,
    correlation_id: i32,
    req: &FetchRequest,
) -> Bytes {
    let frame = encode(
        ApiKey::Fetch,
        version,
        correlation_id,
        &RequestKind::Fetch(req.clone()),
    );
    conn.write_raw(&frame).await;
    conn.read_frame().await.expect("a Fetch answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_answers_sent_from_files_equal_the_copied_ones() {
    let (copy, _d1) = start(false).await;
    let (zero, _d2) = start(true).await;
    let mut conns = [
        KafkaConn::connect(&copy.bootstrap_address()).await,
        KafkaConn::connect(&zero.bootstrap_address()).await,
    ];
    for conn in &mut conns {
        for topic in ["zc", "users-zc"] {
            let configs = [("segment.bytes", "3000")];
            assert_eq!(create_topic(conn, topic, 2, &configs).await, 0);
            for p in 0..2 {
                for b in 0..BATCHES {
                    let r = produce(
                        conn,
                        topic,
                        p,
                        batch(&format!("{topic}{p}"), b, topic != "zc"),
                    )
                    .await;
                    assert_eq!(r.error_code, 0);
                }
            }
        }
    }
    let end = common::log_end_offset(&mut conns[0], "zc", 0).await;
    assert!(end > 100, "{end} records");

    let mut correlation_id = 1000;
    let mut compared = 0usize;
    for version in [4i16, 10, 12] {
        for iso in [0i8, 1] {
            for (max_bytes, part_max) in [
                (1 << 20, 1 << 20),
                (1, 1),
                (1 << 20, 700),
                (2500, 1 << 20),
                (1 << 20, 3000),
            ] {
                for offset in (0..=end).step_by(if version == 12 { 1 } else { 3 }) {
                    for (topic, parts) in [
                        ("zc", vec![(0, offset)]),
                        ("zc", vec![(1, offset), (0, end - offset)]),
                        ("users-zc", vec![(0, offset)]),
                    ] {
                        let req = request(topic, &parts, max_bytes, part_max, iso);
                        correlation_id += 1;
                        let a = answer(&mut conns[0], version, correlation_id, &req).await;
                        let b = answer(&mut conns[1], version, correlation_id, &req).await;
                        assert_eq!(
                            a, b,
                            "v{version} {topic} {parts:?} max_bytes {max_bytes}/{part_max} isolation {iso}"
                        );
                        compared += 1;
                    }
                }
            }
        }
    }
    assert!(compared > 1000, "{compared} answers compared");
    let sent = sendfile_bytes(&zero).await;
    assert!(
        sent > 1_000_000,
        "the zero-copy broker sent {sent} bytes with sendfile"
    );
    assert_eq!(sendfile_bytes(&copy).await, 0);

    // The hook's topic went through memory and was rewritten on both.
    let req = request("users-zc", &[(0, 0)], 1 << 20, 1 << 20, 0);
    let before = sendfile_bytes(&zero).await;
    let a = answer(&mut conns[1], 12, 1, &req).await;
    assert_eq!(sendfile_bytes(&zero).await, before);
    let text = String::from_utf8_lossy(&a);
    assert!(!text.contains("123-45-"), "redacted");
    assert!(
        text.contains("\"ssn\""),
        "the field is kept, its value masked"
    );

    copy.shutdown().await.expect("clean shutdown");
    zero.shutdown().await.expect("clean shutdown");
}
