//! SIGKILL the `rafka` process while an idempotent librdkafka producer with acks=all runs;
//! after a restart every acknowledged message is there at its acknowledged offset, offsets
//! are contiguous, and nothing is duplicated. Once per storage engine.

use crate::support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::producer::FutureRecord;

use support::{consume, create_topic, producer, BrokerProcess};

const PARTITIONS: i32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_message() {
    sigkill_then_restart("log").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_message_memory() {
    sigkill_then_restart("memory").await;
}

#[cfg(feature = "rocksdb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_message_rocksdb() {
    sigkill_then_restart("rocksdb").await;
}

async fn sigkill_then_restart(storage_type: &str) {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start_on(dir.path(), storage_type);
    create_topic(&broker.address, "crash", PARTITIONS, &[]).await;

    let acked: Arc<Mutex<Vec<(usize, i32, i64)>>> = Arc::default();
    let p = producer(
        &broker.address,
        &[
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("message.timeout.ms", "5000"),
        ],
    );
    let sender = {
        let acked = acked.clone();
        tokio::spawn(async move {
            let mut inflight = Vec::new();
            for i in 0..200_000usize {
                let v = format!("msg-{i}");
                let rec = FutureRecord::to("crash")
                    .key(&v)
                    .payload(&v)
                    .partition((i % 2) as i32);
                match p.send_result(rec) {
                    Ok(f) => inflight.push((i, f)),
                    Err(_) => break,
                }
                if inflight.len() >= 200 {
                    for (i, f) in inflight.drain(..) {
                        match f.await {
                            Ok(Ok(d)) => acked.lock().unwrap().push((i, d.partition, d.offset)),
                            _ => return,
                        }
                    }
                }
            }
        })
    };
    // Let a few thousand messages be acknowledged, then kill the broker mid-stream.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 3000 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    broker.kill();
    let _ = tokio::time::timeout(Duration::from_secs(15), sender).await;
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 3000,
        "producer was acknowledged {} messages",
        acked.len()
    );

    let broker = BrokerProcess::start_on(dir.path(), storage_type);
    let addr = broker.address.clone();
    // Everything on disk, acknowledged or not: read up to the log end.
    let got = tokio::task::spawn_blocking(move || {
        consume(
            &addr,
            "crash",
            PARTITIONS,
            usize::MAX,
            Duration::from_secs(8),
        )
    })
    .await
    .unwrap();
    let mut next = [0i64; PARTITIONS as usize];
    let mut seen = HashSet::new();
    for r in &got {
        let p = r.partition as usize;
        assert_eq!(r.offset, next[p], "contiguous offsets in partition {p}");
        next[p] += 1;
        let v = String::from_utf8(r.value.clone().unwrap()).unwrap();
        assert!(
            v.starts_with("msg-"),
            "a record that was never produced: {v}"
        );
        assert!(seen.insert(v.clone()), "duplicate {v}");
    }
    let by_position: std::collections::HashMap<(i32, i64), String> = got
        .iter()
        .map(|r| {
            (
                (r.partition, r.offset),
                String::from_utf8(r.value.clone().unwrap()).unwrap(),
            )
        })
        .collect();
    for (i, p, o) in &acked {
        assert_eq!(
            by_position.get(&(*p, *o)),
            Some(&format!("msg-{i}")),
            "acknowledged message {i} at {p}:{o}"
        );
    }
    eprintln!(
        "{storage_type}: acked {} messages before SIGKILL; {} on disk after restart",
        acked.len(),
        got.len()
    );
}

/// 300 acks=all produce requests pipelined on one raw connection (past the 64 requests a
/// connection decodes ahead; their fsync waits have their own bound): every answer comes in
/// order, and after a SIGKILL right after the last one every acknowledged record is read
/// back at its acknowledged offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_acks_all_answers_survive_sigkill() {
    use crate::common::{
        create_topic as raw_create_topic, decode_records, decode_response, encode, fetch,
        simple_batch, topic_name, FetchArgs, KafkaConn,
    };
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestKind, ResponseKind};
    const N: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path());
    let mut conn = KafkaConn::connect(&broker.address).await;
    assert_eq!(raw_create_topic(&mut conn, "deep", 1, &[]).await, 0);
    let mut frames = Vec::new();
    for i in 0..N {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name("deep"))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(
                        simple_batch(&format!("r{i}"), 2, 0).into_bytes(),
                    ))])]);
        let id = 1 + i as i32;
        frames.extend_from_slice(&encode(ApiKey::Produce, 9, id, &RequestKind::Produce(req)));
    }
    conn.write_raw(&frames).await;
    for i in 0..N {
        let frame = conn.read_frame().await.expect("produce response");
        let ResponseKind::Produce(p) = decode_response(ApiKey::Produce, 9, 1 + i as i32, frame)
        else {
            panic!("not a Produce response")
        };
        let r = &p.responses[0].partition_responses[0];
        assert_eq!(
            (r.error_code, r.base_offset),
            (0, 2 * i as i64),
            "request {i}"
        );
    }
    broker.kill();

    let broker = BrokerProcess::start(dir.path());
    let mut conn = KafkaConn::connect(&broker.address).await;
    let mut got = Vec::new();
    while got.len() < 2 * N {
        let from = got.len() as i64;
        let data = fetch(&mut conn, "deep", 0, FetchArgs::at(from)).await;
        assert_eq!(data.error_code, 0);
        let (_, records) = decode_records(data.records);
        assert!(
            !records.is_empty(),
            "acknowledged records missing after {}",
            got.len()
        );
        // A fetch starts at the batch holding `from`.
        got.extend(
            records
                .into_iter()
                .filter(|r| r.offset >= from)
                .map(|r| (r.offset, r.key)),
        );
    }
    let want: Vec<(i64, String)> = (0..2 * N)
        .map(|o| (o as i64, format!("r{}-{}", o / 2, o % 2)))
        .collect();
    assert_eq!(got, want);
}
