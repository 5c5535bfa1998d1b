//! Fetch, ListOffsets and DeleteRecords semantics over raw requests: whole batches starting
//! with the one that holds the fetch offset, at least one batch whatever `max_bytes` says,
//! OFFSET_OUT_OF_RANGE outside the log, offsets by time, a moved log start offset, and
//! topic ids in Fetch v13+.

use crate::common;

use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

use common::{
    create_topic, decode_records, fetch, fetch_request, list_offsets, produce, simple_batch,
    start_broker, FetchArgs, KafkaConn, TestBroker, EARLIEST, LATEST,
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
    let p = common::delete_records(&mut conn, TOPIC, 0, 7).await;
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

// ---- Batch headers whose max timestamp is -1 (Sarama 1.22) or wrong -------------------

const INVALID_TIMESTAMP: i16 = 32;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A batch as a client encodes it (records with these timestamps, keys `{prefix}-{i}`),
/// then with `header_max` forced into its header, as Sarama 1.22 leaves -1 there.
fn batch_with_header_max(
    prefix: &str,
    timestamps: &[i64],
    codec: kafka_protocol::records::Compression,
    header_max: i64,
) -> bytes::Bytes {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions};
    let records: Vec<Record> = timestamps
        .iter()
        .enumerate()
        .map(|(i, ts)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: kafka_protocol::records::TimestampType::Creation,
            offset: i as i64,
            // No producer id: kafka-protocol derives base sequence -1 from these.
            sequence: i as i32 - 1,
            timestamp: *ts,
            key: Some(format!("{prefix}-{i}").into()),
            value: Some(format!("value-{i}").into()),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression: codec,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &opts).unwrap();
    let mut b = rafka_core::RecordBatch::parse(buf.freeze()).unwrap();
    b.set_max_timestamp(rafka_core::Timestamp(header_max));
    b.validate().unwrap();
    b.into_bytes()
}

/// The stored batches of a partition from `offset`: (base offset, header max timestamp,
/// codec id), each checked to validate (CRC included).
async fn stored_headers(conn: &mut KafkaConn, topic: &str, offset: i64) -> Vec<(i64, i64, i16)> {
    let data = fetch(conn, topic, 0, FetchArgs::at(offset)).await;
    assert_eq!(data.error_code, 0);
    rafka_core::RecordBatch::split_all(data.records.unwrap_or_default())
        .unwrap()
        .iter()
        .map(|b| {
            b.validate().expect("stored batch validates");
            (b.base_offset().0, b.max_timestamp().0, b.attributes() & 7)
        })
        .collect()
}

/// ListOffsets by timestamp and MAX_TIMESTAMP (both through the engine's
/// `offset_for_timestamp` / `max_timestamp`, i.e. its time index) and time retention answer
/// for batches whose header max timestamp was -1, or wrong where the topic has a timestamp
/// bound, as they do for correct headers: the broker derives the max from the records on
/// append and rewrites the header (and CRC), compressed batches included.
async fn headers_are_corrected_on_append(engine: &str) {
    use kafka_protocol::records::Compression;
    let broker = start_broker(|c| {
        c.storage.storage_type = engine.to_string();
        c.broker.log_retention_check_interval_ms = 50;
    })
    .await;
    let mut conn = KafkaConn::connect(&broker.addr()).await;
    let now = now_ms();
    let t = now - 60_000;

    // -1 headers, no topic config: uncompressed, zstd, and lz4 whose max is not the last.
    assert_eq!(create_topic(&mut conn, "sarama", 1, &[]).await, 0);
    let sets = [
        (Compression::None, vec![t, t + 1, t + 2, t + 3, t + 4]),
        (Compression::Zstd, vec![t + 100, t + 101, t + 102]),
        (Compression::Lz4, vec![t + 200, t + 240, t + 210]),
    ];
    for (i, (codec, ts)) in sets.iter().enumerate() {
        let b = batch_with_header_max(&format!("b{i}"), ts, *codec, -1);
        let r = produce(&mut conn, "sarama", 0, b).await;
        assert_eq!(r.error_code, 0, "{codec:?}: {:?}", r.error_message);
    }
    assert_eq!(
        stored_headers(&mut conn, "sarama", 0).await,
        vec![(0, t + 4, 0), (5, t + 102, 4), (8, t + 240, 3)],
        "header max timestamps derived from the records, codecs kept"
    );
    let cases = [
        // (target, expected offset, expected timestamp)
        (t, 0, t),
        (t + 2, 2, t + 2),
        (t + 50, 5, t + 100),
        (t + 102, 7, t + 102),
        (t + 103, 8, t + 200),
        (t + 205, 9, t + 240),
    ];
    for (target, offset, ts) in cases {
        let r = list_offsets(&mut conn, "sarama", 0, target).await;
        assert_eq!(r.error_code, 0);
        assert_eq!(
            (r.offset, r.timestamp),
            (offset, ts),
            "{engine}: target {target}"
        );
    }
    let max = list_offsets(&mut conn, "sarama", 0, MAX_TIMESTAMP).await;
    assert_eq!(
        (max.offset, max.timestamp),
        (9, t + 240),
        "{engine}: MAX_TIMESTAMP"
    );
    let after = list_offsets(&mut conn, "sarama", 0, t + 241).await;
    assert_eq!((after.offset, after.timestamp), (-1, -1));

    // A wrong positive header (the first record's timestamp, below the true max) is
    // rewritten where the topic has a timestamp bound; a record beyond the bound refuses
    // the whole record set with INVALID_TIMESTAMP and the index of the record.
    let day = 86_400_000i64;
    let bounded = [
        ("message.timestamp.before.max.ms", "86400000"),
        ("message.timestamp.after.max.ms", "3600000"),
    ];
    assert_eq!(create_topic(&mut conn, "bounded", 1, &bounded).await, 0);
    for (i, codec) in [Compression::None, Compression::Gzip]
        .into_iter()
        .enumerate()
    {
        let base = t + 1_000 * i as i64;
        let b = batch_with_header_max("w", &[base, base + 500, base + 20], codec, base);
        assert_eq!(produce(&mut conn, "bounded", 0, b).await.error_code, 0);
    }
    assert_eq!(
        stored_headers(&mut conn, "bounded", 0).await,
        vec![(0, t + 500, 0), (3, t + 1_500, 1)]
    );
    let r = list_offsets(&mut conn, "bounded", 0, t + 400).await;
    assert_eq!((r.offset, r.timestamp), (1, t + 500));
    let max = list_offsets(&mut conn, "bounded", 0, MAX_TIMESTAMP).await;
    assert_eq!((max.offset, max.timestamp), (4, t + 1_500));
    for (codec, ts) in [
        (Compression::None, vec![now, now - 2 * day]),
        (Compression::Zstd, vec![now, now - 2 * day]),
        (Compression::Snappy, vec![now, now + 2 * 3_600_000]),
    ] {
        let b = batch_with_header_max("late", &ts, codec, -1);
        let r = produce(&mut conn, "bounded", 0, b).await;
        assert_eq!(r.error_code, INVALID_TIMESTAMP, "{engine} {codec:?}");
        assert_eq!(r.record_errors.len(), 1);
        assert_eq!(r.record_errors[0].batch_index, 1);
    }
    assert_eq!(
        common::log_end_offset(&mut conn, "bounded", 0).await,
        6,
        "nothing written"
    );

    // Time retention: a -1 header on old records goes, a -1 header on fresh records stays.
    // One batch per segment (log engine); the last batch is never deleted by either engine.
    let retained = [("retention.ms", "3600000"), ("segment.bytes", "14")];
    assert_eq!(create_topic(&mut conn, "retained", 1, &retained).await, 0);
    for (prefix, ts, header) in [
        ("old", now - 10 * 3_600_000, -1),
        ("fresh", now, -1),
        ("last", now, now),
    ] {
        let b = batch_with_header_max(prefix, &[ts, ts + 1], Compression::None, header);
        assert_eq!(produce(&mut conn, "retained", 0, b).await.error_code, 0);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let start = loop {
        let start = list_offsets(&mut conn, "retained", 0, EARLIEST)
            .await
            .offset;
        if start > 0 || std::time::Instant::now() > deadline {
            break start;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(start, 2, "{engine}: the old batch is deleted by retention");
    // Ten more retention passes must leave the fresh batch alone (its header says now).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let start = list_offsets(&mut conn, "retained", 0, EARLIEST)
        .await
        .offset;
    assert_eq!(start, 2, "{engine}: the fresh batch is kept");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_corrected_on_append_log() {
    headers_are_corrected_on_append("log").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_corrected_on_append_memory() {
    headers_are_corrected_on_append("memory").await;
}

#[cfg(feature = "rocksdb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_corrected_on_append_rocksdb() {
    headers_are_corrected_on_append("rocksdb").await;
}
