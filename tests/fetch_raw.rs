//! Fetch, ListOffsets and DeleteRecords semantics over raw requests: whole batches starting
//! with the one that holds the fetch offset, at least one batch whatever `max_bytes` says,
//! OFFSET_OUT_OF_RANGE outside the log, offsets by time, a moved log start offset, and
//! topic ids in Fetch v13+.

mod common;

use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::{ApiKey, DeleteRecordsRequest, RequestKind, ResponseKind};

use common::{
    create_topic, decode_records, fetch, fetch_request, list_offsets, produce, simple_batch,
    start_broker, topic_name, FetchArgs, KafkaConn, TestBroker, EARLIEST, LATEST,
};

const OFFSET_OUT_OF_RANGE: i16 = 1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const UNKNOWN_TOPIC_ID: i16 = 100;
/// ListOffsets timestamp asking for the record with the largest timestamp (KIP-734).
const MAX_TIMESTAMP: i64 = -3;

const TOPIC: &str = "fetch";

/// Timestamp of record `i` of batch `b`.
fn ts(b: i64, i: i64) -> i64 {
    10_000 + b * 100 + i
}

/// A broker with topic `fetch` holding 3 batches of 5 records at offsets 0, 5 and 10.
async fn three_batches() -> (TestBroker, KafkaConn) {
    let broker = start_broker(|_| {}).await;
    let mut conn = KafkaConn::connect(&broker.addr()).await;
    assert_eq!(create_topic(&mut conn, TOPIC, 1, &[]).await, 0);
    for b in 0..3 {
        let batch = simple_batch(&format!("b{b}"), 5, ts(b, 0));
        let r = produce(&mut conn, TOPIC, 0, batch.into_bytes()).await;
        assert_eq!((r.error_code, r.base_offset), (0, b * 5));
    }
    (broker, conn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_returns_whole_batches_from_the_one_holding_the_offset() {
    let (broker, mut conn) = three_batches().await;

    // Offset 7 is inside the second batch: the answer starts with that whole batch.
    let data = fetch(&mut conn, TOPIC, 0, FetchArgs::at(7)).await;
    assert_eq!(data.error_code, 0);
    assert_eq!((data.high_watermark, data.log_start_offset), (15, 0));
    let (bases, records) = decode_records(data.records);
    assert_eq!(bases, vec![5, 10]);
    assert_eq!(records.len(), 10);
    assert_eq!(records[0].offset, 5);
    assert_eq!(records[0].key, "b1-0");
    assert_eq!(records[2].offset, 7);
    assert_eq!(
        (records[2].key.as_str(), records[2].value.as_str()),
        ("b1-2", "value-2")
    );
    assert_eq!(records[2].timestamp, ts(1, 2));
    assert_eq!(records[9].key, "b2-4");

    // max_bytes = 1 still gets exactly one whole batch, so the consumer makes progress.
    for (max_bytes, partition_max_bytes) in [(1, 1 << 20), (1 << 20, 1), (1, 1)] {
        let data = fetch(
            &mut conn,
            TOPIC,
            0,
            FetchArgs {
                max_bytes,
                partition_max_bytes,
                ..FetchArgs::at(0)
            },
        )
        .await;
        assert_eq!(data.error_code, 0);
        let (bases, records) = decode_records(data.records);
        assert_eq!(
            bases,
            vec![0],
            "max_bytes {max_bytes}, partition {partition_max_bytes}"
        );
        assert_eq!(records.len(), 5);
    }

    // At the log end: nothing yet, no error. Past it: OFFSET_OUT_OF_RANGE.
    let data = fetch(&mut conn, TOPIC, 0, FetchArgs::at(15)).await;
    assert_eq!(data.error_code, 0);
    assert!(data.records.unwrap_or_default().is_empty());
    let data = fetch(&mut conn, TOPIC, 0, FetchArgs::at(16)).await;
    assert_eq!(data.error_code, OFFSET_OUT_OF_RANGE);
    assert_eq!(data.high_watermark, 15);
    let data = fetch(&mut conn, TOPIC, 0, FetchArgs::at(-5)).await;
    assert_eq!(data.error_code, OFFSET_OUT_OF_RANGE);

    // A partition that does not exist.
    let data = fetch(&mut conn, TOPIC, 3, FetchArgs::at(0)).await;
    assert_eq!(data.error_code, UNKNOWN_TOPIC_OR_PARTITION);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fetch_version_returns_the_same_batches() {
    let (broker, mut conn) = three_batches().await;
    let m = common::metadata(&mut conn, Some(&[TOPIC])).await;
    let topic_id = m.topics[0].topic_id;
    for version in 4..=16i16 {
        let req = fetch_request(TOPIC, topic_id, 0, FetchArgs::at(7));
        let ResponseKind::Fetch(r) = conn
            .send(ApiKey::Fetch, version, RequestKind::Fetch(req))
            .await
        else {
            panic!("not a Fetch response")
        };
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "v{version}");
        assert_eq!(p.high_watermark, 15, "v{version}");
        let (bases, records) = decode_records(p.records.clone());
        assert_eq!(bases, vec![5, 10], "v{version}");
        assert_eq!(records.len(), 10, "v{version}");
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_response_byte_budget_spans_partitions() {
    let broker = start_broker(|_| {}).await;
    let mut conn = KafkaConn::connect(&broker.addr()).await;
    assert_eq!(create_topic(&mut conn, "two", 2, &[]).await, 0);
    for p in 0..2 {
        let r = produce(
            &mut conn,
            "two",
            p,
            simple_batch(&format!("p{p}"), 3, 0).into_bytes(),
        )
        .await;
        assert_eq!((r.error_code, r.base_offset), (0, 0));
    }
    let mut req = fetch_request(
        "two",
        Default::default(),
        0,
        FetchArgs {
            max_bytes: 1,
            ..FetchArgs::at(0)
        },
    );
    req.topics[0].partitions.push(
        FetchPartition::default()
            .with_partition(1)
            .with_current_leader_epoch(-1)
            .with_fetch_offset(0)
            .with_log_start_offset(-1)
            .with_partition_max_bytes(1 << 20),
    );
    let ResponseKind::Fetch(r) = conn.send(ApiKey::Fetch, 12, RequestKind::Fetch(req)).await else {
        panic!("not a Fetch response")
    };
    let parts = &r.responses[0].partitions;
    assert_eq!(parts.len(), 2);
    assert_eq!((parts[0].error_code, parts[1].error_code), (0, 0));
    // The first partition gets its one batch over the budget; the second gets nothing
    // (and still reports its high watermark so the consumer knows it is behind).
    let (_, first) = decode_records(parts[0].records.clone());
    let (_, second) = decode_records(parts[1].records.clone());
    assert_eq!(first.len(), 3);
    assert_eq!(second.len(), 0);
    assert_eq!(parts[1].high_watermark, 3);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_earliest_latest_and_max_timestamp() {
    let (broker, mut conn) = three_batches().await;
    let earliest = list_offsets(&mut conn, TOPIC, 0, EARLIEST).await;
    assert_eq!((earliest.error_code, earliest.offset), (0, 0));
    let latest = list_offsets(&mut conn, TOPIC, 0, LATEST).await;
    assert_eq!((latest.error_code, latest.offset), (0, 15));
    let max = list_offsets(&mut conn, TOPIC, 0, MAX_TIMESTAMP).await;
    assert_eq!(max.error_code, 0);
    assert_eq!((max.offset, max.timestamp), (14, ts(2, 4)));
    // After every record: no offset, and no error.
    let after_all = list_offsets(&mut conn, TOPIC, 0, ts(9, 0)).await;
    assert_eq!(after_all.error_code, 0);
    assert_eq!((after_all.offset, after_all.timestamp), (-1, -1));
    let missing = list_offsets(&mut conn, "no-such-topic", 0, LATEST).await;
    assert_eq!(missing.error_code, UNKNOWN_TOPIC_OR_PARTITION);
    broker.shutdown().await;
}

/// Kafka answers a timestamp query with the first *record* whose timestamp is at or after
/// the target, and that record's timestamp (`FileRecords.searchForTimestamp`), not the
/// batch's base offset and max timestamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_by_timestamp_finds_the_record() {
    let (broker, mut conn) = three_batches().await;
    let cases = [
        // (target, expected offset, expected timestamp)
        (0, 0, ts(0, 0)),
        (ts(0, 0), 0, ts(0, 0)),
        (ts(1, 2), 7, ts(1, 2)),
        (ts(1, 4) + 1, 10, ts(2, 0)),
        (ts(2, 4), 14, ts(2, 4)),
    ];
    let mut wrong = Vec::new();
    for (target, offset, timestamp) in cases {
        let r = list_offsets(&mut conn, TOPIC, 0, target).await;
        assert_eq!(r.error_code, 0, "target {target}");
        if (r.offset, r.timestamp) != (offset, timestamp) {
            wrong.push(format!(
                "target {target}: got ({}, {}), Kafka gives ({offset}, {timestamp})",
                r.offset, r.timestamp
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_the_log_start_offset() {
    let (broker, mut conn) = three_batches().await;
    let req = DeleteRecordsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic_name(TOPIC))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(7)])]);
    let ResponseKind::DeleteRecords(r) = conn
        .send(ApiKey::DeleteRecords, 2, RequestKind::DeleteRecords(req))
        .await
    else {
        panic!("not a DeleteRecords response")
    };
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.error_code, p.low_watermark), (0, 7));

    let earliest = list_offsets(&mut conn, TOPIC, 0, EARLIEST).await;
    assert_eq!(earliest.offset, 7);
    assert_eq!(list_offsets(&mut conn, TOPIC, 0, LATEST).await.offset, 15);

    // Below the log start offset: out of range.
    let data = fetch(&mut conn, TOPIC, 0, FetchArgs::at(3)).await;
    assert_eq!(data.error_code, OFFSET_OUT_OF_RANGE);
    assert_eq!(data.log_start_offset, 7);
    // At it: the batch holding offset 7 (base offset 5) comes back whole.
    let data = fetch(&mut conn, TOPIC, 0, FetchArgs::at(7)).await;
    assert_eq!(data.error_code, 0);
    assert_eq!(data.log_start_offset, 7);
    let (bases, records) = decode_records(data.records);
    assert_eq!(bases[0], 5);
    assert!(records.iter().any(|r| r.offset == 7));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_by_topic_id() {
    let (broker, mut conn) = three_batches().await;
    let m = common::metadata(&mut conn, Some(&[TOPIC])).await;
    assert_eq!(m.topics.len(), 1);
    assert_eq!(m.topics[0].error_code, 0);
    let topic_id = m.topics[0].topic_id;
    assert!(!topic_id.is_nil(), "Metadata v12 gives the topic id");

    // v13+ name the topic by id only; the name in the request is not sent.
    let req = fetch_request("", topic_id, 0, FetchArgs::at(0));
    let ResponseKind::Fetch(r) = conn.send(ApiKey::Fetch, 13, RequestKind::Fetch(req)).await else {
        panic!("not a Fetch response")
    };
    assert_eq!(r.responses.len(), 1);
    assert_eq!(r.responses[0].topic_id, topic_id);
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let (bases, records) = decode_records(p.records.clone());
    assert_eq!(bases, vec![0, 5, 10]);
    assert_eq!(records.len(), 15);

    // An id no topic has.
    let unknown = uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
    let req = fetch_request("", unknown, 0, FetchArgs::at(0));
    let ResponseKind::Fetch(r) = conn.send(ApiKey::Fetch, 16, RequestKind::Fetch(req)).await else {
        panic!("not a Fetch response")
    };
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, UNKNOWN_TOPIC_ID);
    broker.shutdown().await;
}
