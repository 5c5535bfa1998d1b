//! librdkafka consumers read the same records from a broker that sends fetched batches
//! from its segment files (`sendfile`, `broker.zero_copy_fetch`, the default) as from one
//! that copies them through memory: plain records of mixed sizes over small segments,
//! with a per-partition fetch limit smaller than many batches, and read_committed over
//! committed and aborted transactions.

use std::time::{Duration, Instant};

use rafka_broker::Broker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::support::{client_config, create_topic, start_broker_with};
use crate::transactions::{blocking, expected, interleave, read_all};

const T: Duration = Duration::from_secs(20);
const RECORDS: usize = 400;

async fn broker(dir: &std::path::Path, zero_copy: bool) -> Broker {
    start_broker_with(dir, move |c| {
        c.broker.zero_copy_fetch = zero_copy;
        c.broker.transaction_state_log_num_partitions = 5;
        c.broker.group_initial_rebalance_delay_ms = 0;
        c.admin.listen = "127.0.0.1:0".into();
    })
    .await
}

/// Record `i`: a value of 10 B to about 12 KiB, so batches of many sizes.
fn value(i: usize) -> Vec<u8> {
    let len = 10 + (i * 7919) % 12_000;
    (0..len).map(|k| b'a' + ((i + k) % 26) as u8).collect()
}

fn produce(addr: &str, topic: &str) {
    let p: BaseProducer = client_config(addr)
        .set("linger.ms", "2")
        .set("batch.size", "40000")
        .create()
        .expect("producer");
    for i in 0..RECORDS {
        let key = format!("k{i}");
        let v = value(i);
        loop {
            match p.send(BaseRecord::to(topic).partition(0).key(&key).payload(&v)) {
                Ok(()) => break,
                Err((e, _)) => {
                    assert!(
                        matches!(
                            e,
                            rdkafka::error::KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::QueueFull
                            )
                        ),
                        "{e}"
                    );
                    p.poll(Duration::from_millis(10));
                }
            }
        }
        if i % 50 == 49 {
            p.flush(T).expect("flush");
        }
    }
    p.flush(T).expect("flush");
}

/// (offset, key, value) of every record of partition 0, with a fetch limit of 5,000 bytes
/// per partition (most fetches hold one or two batches; larger batches come whole).
fn consume(addr: &str, topic: &str) -> Vec<(i64, String, Vec<u8>)> {
    let c: BaseConsumer = client_config(addr)
        .set("group.id", "zc-reader")
        .set("enable.auto.commit", "false")
        .set("max.partition.fetch.bytes", "5000")
        .set("fetch.wait.max.ms", "100")
        .set("check.crcs", "true")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + T;
    while out.len() < RECORDS && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.expect("consumer error");
            out.push((
                m.offset(),
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    out
}

async fn sendfile_bytes(b: &Broker) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = b.admin_address().expect("admin endpoint");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut raw = String::new();
    tokio::time::timeout(T, s.read_to_string(&mut raw))
        .await
        .expect("in time")
        .expect("read");
    raw.lines()
        .find_map(|l| l.strip_prefix("rafka_fetch_sendfile_bytes_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("rafka_fetch_sendfile_bytes_total")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_read_the_same_records_with_and_without_sendfile() {
    let mut plain = Vec::new();
    for zero_copy in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let b = broker(dir.path(), zero_copy).await;
        let addr = b.bootstrap_address();
        create_topic(&addr, "zc-plain", 1, &[("segment.bytes", "30000")]).await;
        create_topic(&addr, "zc-tx", 3, &[("segment.bytes", "300")]).await;
        let a = addr.clone();
        blocking(move || produce(&a, "zc-plain")).await;
        let a = addr.clone();
        let got = blocking(move || consume(&a, "zc-plain")).await;
        assert_eq!(got.len(), RECORDS, "zero_copy {zero_copy}");
        for (i, (offset, key, v)) in got.iter().enumerate() {
            assert_eq!(
                (*offset, key.as_str()),
                (i as i64, format!("k{i}").as_str())
            );
            assert_eq!(v, &value(i), "record {i}, zero_copy {zero_copy}");
        }
        plain.push(got);

        let a = addr.clone();
        blocking(move || interleave(&a, "zc-tx", "zc-tx-producer")).await;
        for (isolation, only_committed) in [("read_committed", true), ("read_uncommitted", false)] {
            let a = addr.clone();
            let got =
                blocking(move || read_all(&a, "zc-tx", 3, isolation, Duration::from_secs(2))).await;
            assert_eq!(
                got,
                expected(only_committed),
                "{isolation}, zero_copy {zero_copy}"
            );
        }
        let sent = sendfile_bytes(&b).await;
        if zero_copy {
            assert!(sent > 1_000_000, "{sent} bytes sent with sendfile");
        } else {
            assert_eq!(sent, 0);
        }
        b.shutdown().await.unwrap();
    }
    assert_eq!(plain[0], plain[1]);
}
