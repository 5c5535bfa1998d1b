//! Fetch long polls: a waiting fetch is answered as soon as data arrives, and an empty one
//! is answered after roughly `max_wait_ms`. These use real time (the broker runs on the
//! same runtime and real sockets), with generous bounds. Also: responses pipelined behind
//! a long poll keep request order.

use crate::common;

use std::time::{Duration, Instant};

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ProduceRequest, RequestKind, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use common::{
    create_topic, decode_records, decode_response, encode, fetch, fetch_request, produce,
    simple_batch, start_broker, topic_name, FetchArgs, KafkaConn,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_fetch_returns_as_soon_as_data_arrives() {
    let broker = start_broker(|_| {}).await;
    let mut consumer = KafkaConn::connect(&broker.addr()).await;
    let mut producer = KafkaConn::connect(&broker.addr()).await;
    assert_eq!(create_topic(&mut consumer, "poll", 1, &[]).await, 0);

    let produced = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = produce(
            &mut producer,
            "poll",
            0,
            simple_batch("late", 1, 1_000).into_bytes(),
        )
        .await;
        assert_eq!((r.error_code, r.base_offset), (0, 0));
    });
    let started = Instant::now();
    let data = fetch(
        &mut consumer,
        "poll",
        0,
        FetchArgs {
            max_wait_ms: 10_000,
            min_bytes: 1,
            ..FetchArgs::at(0)
        },
    )
    .await;
    let elapsed = started.elapsed();
    produced.await.expect("producer task");

    assert_eq!(data.error_code, 0);
    let (_, records) = decode_records(data.records);
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].offset, records[0].key.as_str()), (0, "late-0"));
    assert!(
        elapsed < Duration::from_millis(5_000),
        "answered after {elapsed:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(400),
        "did not wait: {elapsed:?}"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_fetch_waits_max_wait_ms() {
    let broker = start_broker(|_| {}).await;
    let mut conn = KafkaConn::connect(&broker.addr()).await;
    assert_eq!(create_topic(&mut conn, "idle", 1, &[]).await, 0);
    let started = Instant::now();
    let data = fetch(
        &mut conn,
        "idle",
        0,
        FetchArgs {
            max_wait_ms: 300,
            min_bytes: 1,
            ..FetchArgs::at(0)
        },
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(data.error_code, 0);
    assert_eq!(data.high_watermark, 0);
    assert!(data.records.unwrap_or_default().is_empty());
    assert!(
        elapsed >= Duration::from_millis(250),
        "answered after only {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(3_000),
        "answered after {elapsed:?}"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_for_another_topic_does_not_end_the_wait() {
    let broker = start_broker(|_| {}).await;
    let mut consumer = KafkaConn::connect(&broker.addr()).await;
    let mut producer = KafkaConn::connect(&broker.addr()).await;
    assert_eq!(create_topic(&mut consumer, "watched", 1, &[]).await, 0);
    assert_eq!(create_topic(&mut consumer, "other", 1, &[]).await, 0);
    let produced = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = produce(
            &mut producer,
            "other",
            0,
            simple_batch("x", 1, 0).into_bytes(),
        )
        .await;
        assert_eq!(r.error_code, 0);
    });
    let started = Instant::now();
    let data = fetch(
        &mut consumer,
        "watched",
        0,
        FetchArgs {
            max_wait_ms: 600,
            min_bytes: 1,
            ..FetchArgs::at(0)
        },
    )
    .await;
    let elapsed = started.elapsed();
    produced.await.expect("producer task");
    assert_eq!(data.error_code, 0);
    assert!(data.records.unwrap_or_default().is_empty());
    assert!(
        elapsed >= Duration::from_millis(550),
        "woken early: {elapsed:?}"
    );
    broker.shutdown().await;
}

/// A long poll on several partitions sleeps through appends to a partition it does not
/// read, and is answered by the first append to any partition it reads, with that data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_on_several_partitions_wakes_on_any_of_them() {
    let broker = start_broker(|_| {}).await;
    let mut consumer = KafkaConn::connect(&broker.addr()).await;
    let mut producer = KafkaConn::connect(&broker.addr()).await;
    assert_eq!(create_topic(&mut consumer, "multi", 3, &[]).await, 0);
    let produced = tokio::spawn(async move {
        // Partition 2 is not in the fetch: appends to it must not answer it.
        for i in 0..3 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let r = produce(
                &mut producer,
                "multi",
                2,
                simple_batch(&format!("other{i}"), 1, 0).into_bytes(),
            )
            .await;
            assert_eq!(r.error_code, 0);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = produce(
            &mut producer,
            "multi",
            1,
            simple_batch("wanted", 2, 0).into_bytes(),
        )
        .await;
        assert_eq!((r.error_code, r.base_offset), (0, 0));
    });
    let mut req = fetch_request(
        "multi",
        Default::default(),
        0,
        FetchArgs {
            max_wait_ms: 10_000,
            min_bytes: 1,
            ..FetchArgs::at(0)
        },
    );
    let second = req.topics[0].partitions[0].clone().with_partition(1);
    req.topics[0].partitions.push(second);
    let started = Instant::now();
    let ResponseKind::Fetch(r) = consumer
        .send(ApiKey::Fetch, 12, RequestKind::Fetch(req))
        .await
    else {
        panic!("not a Fetch response")
    };
    let elapsed = started.elapsed();
    produced.await.expect("producer task");
    let parts = &r.responses[0].partitions;
    assert_eq!(parts.len(), 2);
    assert_eq!((parts[0].partition_index, parts[0].error_code), (0, 0));
    assert!(parts[0].records.clone().unwrap_or_default().is_empty());
    assert_eq!((parts[1].partition_index, parts[1].error_code), (1, 0));
    assert_eq!(parts[1].high_watermark, 2);
    let (_, records) = decode_records(parts[1].records.clone());
    let keys: Vec<_> = records.iter().map(|r| (r.offset, r.key.as_str())).collect();
    assert_eq!(keys, [(0, "wanted-0"), (1, "wanted-1")]);
    assert!(
        elapsed >= Duration::from_millis(450),
        "woken by another partition's append: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(5_000),
        "answered after {elapsed:?}"
    );
    broker.shutdown().await;
}

/// Requests pipelined behind a long poll are answered after it, in request order, and a
/// Produce with acks=0 gets no response at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_responses_keep_request_order() {
    let broker = start_broker(|_| {}).await;
    let mut conn = KafkaConn::connect(&broker.addr()).await;
    assert_eq!(create_topic(&mut conn, "order", 1, &[]).await, 0);

    let poll = fetch_request(
        "order",
        Default::default(),
        0,
        FetchArgs {
            max_wait_ms: 400,
            min_bytes: 1,
            ..FetchArgs::at(0)
        },
    );
    let no_ack = ProduceRequest::default()
        .with_acks(0)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name("order"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(simple_batch("silent", 2, 0).into_bytes()))])]);
    let versions = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("rafka-it"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    let mut frames = Vec::new();
    frames.extend_from_slice(&encode(ApiKey::Fetch, 12, 101, &RequestKind::Fetch(poll)));
    frames.extend_from_slice(&encode(
        ApiKey::Produce,
        9,
        102,
        &RequestKind::Produce(no_ack),
    ));
    frames.extend_from_slice(&encode(
        ApiKey::ApiVersions,
        3,
        103,
        &RequestKind::ApiVersions(versions),
    ));
    conn.write_raw(&frames).await;

    // The fetch is answered first, although the ApiVersions answer was ready long before.
    // The acks=0 produce that arrived behind it may or may not be visible to it.
    let first = conn.read_frame().await.expect("fetch response");
    let ResponseKind::Fetch(f) = decode_response(ApiKey::Fetch, 12, 101, first) else {
        panic!("not a Fetch response")
    };
    assert_eq!(f.responses[0].partitions[0].error_code, 0);
    // Next comes ApiVersions: correlation id 103, nothing for 102.
    let second = conn.read_frame().await.expect("ApiVersions response");
    let ResponseKind::ApiVersions(v) = decode_response(ApiKey::ApiVersions, 3, 103, second) else {
        panic!("not an ApiVersions response")
    };
    assert_eq!(v.error_code, 0);
    // The acks=0 batch was written all the same.
    assert_eq!(common::log_end_offset(&mut conn, "order", 0).await, 2);
    broker.shutdown().await;
}

/// acks=all produces waiting for their fsync do not fill the connection's pipeline: behind
/// a long poll (which holds its answer, and so every later one, back) a client sends
/// 200 acks=all produce requests on the same connection; all 200 are read and written
/// while the poll still waits — past the 64 requests of any kind a connection decodes
/// ahead — and then answered in order with consecutive offsets, the records reading back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_produces_waiting_for_fsync_do_not_fill_the_pipeline() {
    const N: usize = 200;
    let broker = start_broker(|_| {}).await;
    let mut conn = KafkaConn::connect(&broker.addr()).await;
    let mut other = KafkaConn::connect(&broker.addr()).await;
    assert_eq!(create_topic(&mut conn, "idle", 1, &[]).await, 0);
    assert_eq!(create_topic(&mut conn, "busy", 1, &[]).await, 0);

    let poll = fetch_request(
        "idle",
        Default::default(),
        0,
        FetchArgs {
            max_wait_ms: 4_000,
            min_bytes: 1,
            ..FetchArgs::at(0)
        },
    );
    let mut frames = Vec::new();
    frames.extend_from_slice(&encode(ApiKey::Fetch, 12, 1, &RequestKind::Fetch(poll)));
    for i in 0..N {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name("busy"))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(
                        simple_batch(&format!("r{i}"), 2, 0).into_bytes(),
                    ))])]);
        let id = 2 + i as i32;
        frames.extend_from_slice(&encode(ApiKey::Produce, 9, id, &RequestKind::Produce(req)));
    }
    let started = Instant::now();
    conn.write_raw(&frames).await;

    // Every produce is written while the fetch in front of them still waits.
    let mut end = 0;
    while started.elapsed() < Duration::from_millis(3_000) {
        end = common::log_end_offset(&mut other, "busy", 0).await;
        if end == 2 * N as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(end, 2 * N as i64, "written behind the poll");
    assert!(
        started.elapsed() < Duration::from_millis(3_500),
        "the poll was still waiting"
    );

    let first = conn.read_frame().await.expect("fetch response");
    let ResponseKind::Fetch(f) = decode_response(ApiKey::Fetch, 12, 1, first) else {
        panic!("not a Fetch response")
    };
    assert_eq!(f.responses[0].partitions[0].error_code, 0);
    for i in 0..N {
        let frame = conn.read_frame().await.expect("produce response");
        let id = 2 + i as i32;
        let ResponseKind::Produce(p) = decode_response(ApiKey::Produce, 9, id, frame) else {
            panic!("not a Produce response")
        };
        let r = &p.responses[0].partition_responses[0];
        assert_eq!(
            (r.error_code, r.base_offset),
            (0, 2 * i as i64),
            "request {i}"
        );
    }
    let data = fetch(&mut other, "busy", 0, FetchArgs::at(0)).await;
    let (_, records) = decode_records(data.records);
    let got: Vec<(i64, String)> = records
        .iter()
        .map(|r| (r.offset, format!("{}={}", r.key, r.value)))
        .take(6)
        .collect();
    let want: Vec<(i64, String)> = (0..6)
        .map(|o| (o, format!("r{}-{}=value-{}", o / 2, o % 2, o % 2)))
        .collect();
    assert_eq!(got, want);
    broker.shutdown().await;
}

/// An acks=all answer of more than 64 partitions counts as any other wait: behind a long
/// poll, of 70 such produces only the 63 that fill the connection's 64 decoded-ahead
/// requests are written while the poll waits; the rest follow once it is answered, all in
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide_acks_all_produces_count_toward_the_pipeline() {
    const N: usize = 70;
    const PARTITIONS: i32 = 65;
    let broker = start_broker(|_| {}).await;
    let mut conn = KafkaConn::connect(&broker.addr()).await;
    let mut other = KafkaConn::connect(&broker.addr()).await;
    assert_eq!(create_topic(&mut conn, "idle", 1, &[]).await, 0);
    assert_eq!(create_topic(&mut conn, "wide", PARTITIONS, &[]).await, 0);

    let poll = fetch_request(
        "idle",
        Default::default(),
        0,
        FetchArgs {
            max_wait_ms: 3_000,
            min_bytes: 1,
            ..FetchArgs::at(0)
        },
    );
    let mut frames = Vec::new();
    frames.extend_from_slice(&encode(ApiKey::Fetch, 12, 1, &RequestKind::Fetch(poll)));
    for i in 0..N {
        let parts = (0..PARTITIONS)
            .map(|p| {
                PartitionProduceData::default()
                    .with_index(p)
                    .with_records(Some(simple_batch(&format!("w{i}"), 1, 0).into_bytes()))
            })
            .collect();
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name("wide"))
                .with_partition_data(parts)]);
        let id = 2 + i as i32;
        frames.extend_from_slice(&encode(ApiKey::Produce, 9, id, &RequestKind::Produce(req)));
    }
    let started = Instant::now();
    conn.write_raw(&frames).await;

    let mut end = 0;
    while end < 63 && started.elapsed() < Duration::from_millis(2_000) {
        end = common::log_end_offset(&mut other, "wide", 0).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    end = common::log_end_offset(&mut other, "wide", 0).await;
    assert!(
        started.elapsed() < Duration::from_millis(2_900),
        "the poll was still waiting"
    );
    assert_eq!(end, 63, "63 produces behind the poll fill the pipeline");

    let first = conn.read_frame().await.expect("fetch response");
    let ResponseKind::Fetch(f) = decode_response(ApiKey::Fetch, 12, 1, first) else {
        panic!("not a Fetch response")
    };
    assert_eq!(f.responses[0].partitions[0].error_code, 0);
    for i in 0..N {
        let frame = conn.read_frame().await.expect("produce response");
        let ResponseKind::Produce(p) = decode_response(ApiKey::Produce, 9, 2 + i as i32, frame)
        else {
            panic!("not a Produce response")
        };
        let parts = &p.responses[0].partition_responses;
        assert_eq!(parts.len(), PARTITIONS as usize);
        assert!(
            parts
                .iter()
                .all(|r| (r.error_code, r.base_offset) == (0, i as i64)),
            "request {i}"
        );
    }
    let data = fetch(&mut other, "wide", 7, FetchArgs::at(0)).await;
    let (_, records) = decode_records(data.records);
    let keys: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
    let want: Vec<String> = (0..N).map(|i| format!("w{i}-0")).collect();
    assert_eq!(keys, want);
    broker.shutdown().await;
}
