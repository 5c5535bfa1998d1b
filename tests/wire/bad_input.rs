//! Bad input from one peer: frames that cannot be trusted close that connection; bad
//! record batches and bad topics get Kafka's error code. Either way nothing is stored, and
//! a second connection opened beforehand, as well as new connections, keep working.

use crate::common;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, MetadataRequest, RequestKind};

use common::{
    create_topic, encode, log_end_offset, produce, simple_batch, start_broker, KafkaConn,
    TestBroker,
};

const CORRUPT_MESSAGE: i16 = 2;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const MESSAGE_TOO_LARGE: i16 = 10;
const INVALID_TOPIC_EXCEPTION: i16 = 17;

/// A valid Metadata v12 request frame.
fn metadata_frame(correlation_id: i32) -> Bytes {
    encode(
        ApiKey::Metadata,
        12,
        correlation_id,
        &RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![]))),
    )
}

/// A broker, a bystander connection (already used once, so it is fully set up) and a
/// fresh connection for the bad input.
async fn setup(
    configure: impl FnOnce(&mut rafka_broker::Config),
) -> (TestBroker, KafkaConn, KafkaConn) {
    let broker = start_broker(configure).await;
    let mut bystander = KafkaConn::connect(&broker.addr()).await;
    bystander.check_alive().await;
    let victim = KafkaConn::connect(&broker.addr()).await;
    (broker, bystander, victim)
}

/// The bystander still gets answers and the broker still accepts connections.
async fn check_others_unaffected(broker: &TestBroker, bystander: &mut KafkaConn) {
    bystander.check_alive().await;
    common::metadata(bystander, None).await;
    let mut fresh = KafkaConn::connect(&broker.addr()).await;
    fresh.check_alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_close_the_connection() {
    let (broker, mut bystander, mut victim) = setup(|_| {}).await;
    // A plain-text protocol: "GET " read as a size prefix is about 1.1 GB, over the limit.
    victim
        .write_raw(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    victim.expect_closed().await;
    // A plausible size prefix followed by junk: API key -1 is not served.
    let mut victim = KafkaConn::connect(&broker.addr()).await;
    let mut junk = 16i32.to_be_bytes().to_vec();
    junk.extend_from_slice(&[0xff; 16]);
    victim.write_raw(&junk).await;
    victim.expect_closed().await;
    check_others_unaffected(&broker, &mut bystander).await;
    broker.shutdown().await;
}

/// Peak virtual memory of this process in KiB (Linux), to catch an allocation of the
/// advertised frame size even if it is freed again.
fn vm_peak_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmPeak:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_gib_size_prefix_closes_without_allocating() {
    let (broker, mut bystander, mut victim) = setup(|_| {}).await;
    let before = vm_peak_kib();
    for size in [i32::MAX, i32::MIN, -1] {
        let mut frame = size.to_be_bytes().to_vec();
        // The start of a plausible header, so only the size is wrong.
        frame.extend_from_slice(&metadata_frame(1)[4..]);
        // The broker may close before it reads everything we send.
        let _ = victim.try_write_raw(&frame).await;
        victim.expect_closed().await;
        victim = KafkaConn::connect(&broker.addr()).await;
    }
    if let (Some(before), Some(after)) = (before, vm_peak_kib()) {
        assert!(
            after < before + 1024 * 1024,
            "peak virtual memory grew from {before} KiB to {after} KiB"
        );
    }
    victim.check_alive().await;
    check_others_unaffected(&broker, &mut bystander).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_frame_then_eof_closes() {
    let (broker, mut bystander, mut victim) = setup(|_| {}).await;
    let frame = metadata_frame(1);
    victim.write_raw(&frame[..frame.len() - 5]).await;
    victim.shutdown_write().await;
    // The broker sees EOF in the middle of a frame: no answer, just a close.
    victim.expect_closed().await;
    // A frame whose size prefix is shorter than its header: decoding runs out of bytes.
    let mut victim = KafkaConn::connect(&broker.addr()).await;
    let mut short = BytesMut::from(&frame[..]);
    short.truncate(4 + 6);
    short[..4].copy_from_slice(&6i32.to_be_bytes());
    victim.write_raw(&short).await;
    victim.expect_closed().await;
    check_others_unaffected(&broker, &mut bystander).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_api_key_closes() {
    let (broker, mut bystander, mut victim) = setup(|_| {}).await;
    let mut frame = BytesMut::from(&metadata_frame(1)[..]);
    frame[4..6].copy_from_slice(&999i16.to_be_bytes());
    victim.write_raw(&frame).await;
    victim.expect_closed().await;
    check_others_unaffected(&broker, &mut bystander).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_version_of_a_served_api_closes() {
    let (broker, mut bystander, mut victim) = setup(|_| {}).await;
    // Metadata above its maximum, Fetch below its minimum (KIP-896), Produce far above.
    for (key, version) in [
        (ApiKey::Metadata, 13i16),
        (ApiKey::Fetch, 3),
        (ApiKey::Produce, 99),
    ] {
        let mut frame = BytesMut::from(&metadata_frame(1)[..]);
        frame[4..6].copy_from_slice(&(key as i16).to_be_bytes());
        frame[6..8].copy_from_slice(&version.to_be_bytes());
        victim.write_raw(&frame).await;
        victim.expect_closed().await;
        victim = KafkaConn::connect(&broker.addr()).await;
    }
    check_others_unaffected(&broker, &mut bystander).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_a_wrong_crc_is_corrupt_message_and_not_stored() {
    let (broker, mut bystander, mut victim) = setup(|_| {}).await;
    assert_eq!(create_topic(&mut victim, "crc", 1, &[]).await, 0);
    let good = produce(
        &mut victim,
        "crc",
        0,
        simple_batch("good", 3, 1_000).into_bytes(),
    )
    .await;
    assert_eq!((good.error_code, good.base_offset), (0, 0));
    let before = log_end_offset(&mut victim, "crc", 0).await;
    assert_eq!(before, 3);

    let mut bad = BytesMut::from(&simple_batch("bad", 2, 2_000).into_bytes()[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0x01; // in a record value, inside the CRC range
    let r = produce(&mut victim, "crc", 0, bad.freeze()).await;
    assert_eq!(r.error_code, CORRUPT_MESSAGE);
    assert_eq!(r.base_offset, -1);

    // A good batch followed by a bad one in the same record set: neither is written.
    let mut set = BytesMut::from(&simple_batch("ok", 1, 3_000).into_bytes()[..]);
    let mut bad = BytesMut::from(&simple_batch("bad2", 1, 3_001).into_bytes()[..]);
    bad[17] ^= 0xff; // the stored CRC itself
    set.extend_from_slice(&bad);
    let r = produce(&mut victim, "crc", 0, set.freeze()).await;
    assert_eq!(r.error_code, CORRUPT_MESSAGE);

    assert_eq!(log_end_offset(&mut victim, "crc", 0).await, before);
    victim.check_alive().await;
    check_others_unaffected(&broker, &mut bystander).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_max_message_bytes_is_refused_and_not_stored() {
    let (broker, mut bystander, mut victim) = setup(|_| {}).await;
    assert_eq!(
        create_topic(&mut victim, "small", 1, &[("max.message.bytes", "1000")]).await,
        0
    );
    let big = rafka_core::batch::BatchBuilder::new(rafka_core::Offset(0))
        .kv(b"k", &[b'x'; 2000], rafka_core::Timestamp(1_000))
        .build();
    assert!(big.size_bytes() > 1000);
    let r = produce(&mut victim, "small", 0, big.into_bytes()).await;
    assert_eq!(r.error_code, MESSAGE_TOO_LARGE);
    assert_eq!(log_end_offset(&mut victim, "small", 0).await, 0);
    // A batch under the limit is still accepted on the same connection.
    let small = simple_batch("fits", 2, 1_000);
    assert!(small.size_bytes() <= 1000);
    let r = produce(&mut victim, "small", 0, small.into_bytes()).await;
    assert_eq!((r.error_code, r.base_offset), (0, 0));
    assert_eq!(log_end_offset(&mut victim, "small", 0).await, 2);
    check_others_unaffected(&broker, &mut bystander).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_to_an_invalid_topic_name_is_invalid_topic() {
    let (broker, mut bystander, mut victim) = setup(|_| {}).await;
    for name in ["bad/name", "..", "", &"x".repeat(250)] {
        let r = produce(&mut victim, name, 0, simple_batch("k", 1, 0).into_bytes()).await;
        assert_eq!(r.error_code, INVALID_TOPIC_EXCEPTION, "topic {name:?}");
    }
    // Nothing was auto-created under an invalid name.
    let m = common::metadata(&mut victim, None).await;
    let user_topics: Vec<_> = m
        .topics
        .iter()
        .filter(|t| !t.is_internal)
        .map(|t| t.name.as_ref().map(|n| n.to_string()))
        .collect();
    assert!(user_topics.is_empty(), "{user_topics:?}");
    check_others_unaffected(&broker, &mut bystander).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_to_a_missing_topic_without_auto_creation_is_unknown() {
    let (broker, mut bystander, mut victim) =
        setup(|c| c.broker.auto_create_topics_enable = false).await;
    let r = produce(
        &mut victim,
        "missing",
        0,
        simple_batch("k", 1, 0).into_bytes(),
    )
    .await;
    assert_eq!(r.error_code, UNKNOWN_TOPIC_OR_PARTITION);
    // A partition that does not exist in an existing topic: the same code.
    assert_eq!(create_topic(&mut victim, "present", 1, &[]).await, 0);
    let r = produce(
        &mut victim,
        "present",
        1,
        simple_batch("k", 1, 0).into_bytes(),
    )
    .await;
    assert_eq!(r.error_code, UNKNOWN_TOPIC_OR_PARTITION);
    let m = common::metadata(&mut victim, Some(&["missing"])).await;
    assert_eq!(m.topics.len(), 1);
    assert_eq!(m.topics[0].error_code, UNKNOWN_TOPIC_OR_PARTITION);
    check_others_unaffected(&broker, &mut bystander).await;
    broker.shutdown().await;
}
