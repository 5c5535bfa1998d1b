//! Client quotas against librdkafka: a producer with a 1 MB/s `producer_byte_rate` on its
//! client id, trying as fast as it can, is held near 1 MB/s while a producer with another
//! client id keeps producing much faster beside it; a consumer with a 1 MB/s
//! `consumer_byte_rate` likewise, beside an unthrottled one; the throttling shows in
//! `/metrics`. The quotas are set with AlterClientQuotas on a raw connection (librdkafka
//! has no client-quota admin call).
//!
//! Kafka's quota lets a new client send about `quota × (quota.window.num − 1)` windows'
//! worth at once (its first samples are measured as if ten empty windows preceded them),
//! and within the first window span each throttle is measured over a window that does not
//! grow with the wait, so a new client gets more than its quota for its first 11 s. The
//! rates are measured over 10 s after that warm-up, as Kafka's quota holds them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::{AlterClientQuotasRequest, ApiKey, RequestKind, ResponseKind};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, TopicPartitionList};

use crate::common::{str_bytes, KafkaConn};
use crate::support::{client_config, create_topic, start_broker_with};

const QUOTA: f64 = 1_000_000.0;
/// The measured time.
const RUN: Duration = Duration::from_secs(10);
const VALUE_BYTES: usize = 10_000;

/// Counts the bytes of the values delivered.
struct Delivered(Arc<AtomicU64>);

impl ClientContext for Delivered {}

impl ProducerContext for Delivered {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(m) = result {
            self.0.fetch_add(m.payload_len() as u64, Ordering::Relaxed);
        }
    }
}

async fn set_quota(bootstrap: &str, client_id: &str, key: &str) {
    let mut conn = KafkaConn::connect(bootstrap).await;
    let req = AlterClientQuotasRequest::default().with_entries(vec![EntryData::default()
        .with_entity(vec![EntityData::default()
            .with_entity_type(str_bytes("client-id"))
            .with_entity_name(Some(str_bytes(client_id)))])
        .with_ops(vec![OpData::default()
            .with_key(str_bytes(key))
            .with_value(QUOTA)])]);
    let ResponseKind::AlterClientQuotas(r) = conn
        .send(
            ApiKey::AlterClientQuotas,
            1,
            RequestKind::AlterClientQuotas(req),
        )
        .await
    else {
        panic!("not an AlterClientQuotas response")
    };
    assert_eq!(r.entries[0].error_code, 0);
}

/// Bytes done at `checkpoints` (from the start), stopping at the last one or at `limit`
/// bytes; and the time `limit` was reached, if it was.
struct Progress {
    at: Vec<u64>,
    limit_reached: Option<Duration>,
}

/// Produces values of [`VALUE_BYTES`] as fast as librdkafka takes them. Blocking.
fn produce_flat_out(
    bootstrap: &str,
    topic: &str,
    client_id: &str,
    checkpoints: &[Duration],
    limit: u64,
) -> Progress {
    let delivered = Arc::new(AtomicU64::new(0));
    let producer: BaseProducer<Delivered> = client_config(bootstrap)
        .set("client.id", client_id)
        .set("linger.ms", "5")
        .set("batch.size", "100000")
        .set("queue.buffering.max.kbytes", "8192")
        .set("message.timeout.ms", "60000")
        .create_with_context(Delivered(delivered.clone()))
        .expect("producer");
    let value = vec![b'x'; VALUE_BYTES];
    let started = Instant::now();
    let mut p = Progress {
        at: Vec::new(),
        limit_reached: None,
    };
    let mut sent = 0u64;
    while p.at.len() < checkpoints.len() {
        let now = started.elapsed();
        let done = delivered.load(Ordering::Relaxed);
        if now >= checkpoints[p.at.len()] {
            p.at.push(done);
            continue;
        }
        if done >= limit {
            p.limit_reached = Some(now);
            break;
        }
        if sent < limit {
            match producer.send(BaseRecord::<(), _>::to(topic).payload(&value)) {
                Ok(()) => sent += VALUE_BYTES as u64,
                Err(_) => {
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
        producer.poll(if sent < limit {
            Duration::ZERO
        } else {
            Duration::from_millis(1)
        });
    }
    // What is still queued is not waited for.
    producer.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
    p
}

/// Reads `topic` partition 0 from the start. Blocking.
fn consume_flat_out(
    bootstrap: &str,
    topic: &str,
    client_id: &str,
    checkpoints: &[Duration],
    limit: u64,
) -> Progress {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("client.id", client_id)
        .set("group.id", client_id)
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let started = Instant::now();
    let mut p = Progress {
        at: Vec::new(),
        limit_reached: None,
    };
    let mut got = 0u64;
    while p.at.len() < checkpoints.len() {
        let now = started.elapsed();
        if now >= checkpoints[p.at.len()] {
            p.at.push(got);
            continue;
        }
        if got >= limit {
            p.limit_reached = Some(now);
            break;
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) {
            got += m.payload_len() as u64;
        }
    }
    p
}

fn mb_per_s(bytes: u64, over: Duration) -> f64 {
    bytes as f64 / over.as_secs_f64() / 1e6
}

/// The `rafka_quota_throttled_total` and `rafka_quota_throttle_time_ms_total` of `quota`.
async fn throttled(admin: std::net::SocketAddr, quota: &str) -> (u64, u64) {
    let (status, _, text) = crate::metrics::http(admin, "GET", "/metrics").await;
    assert_eq!(status, 200);
    let read = |name: &str| {
        let prefix = format!("{name}{{quota=\"{quota}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
    };
    (
        read("rafka_quota_throttled_total"),
        read("rafka_quota_throttle_time_ms_total"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_producer_and_a_consumer_are_held_to_their_quota_and_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker_with(dir.path(), |c| c.admin.listen = "127.0.0.1:0".into()).await;
    let admin = broker.admin_address().expect("admin endpoint is on");
    let bs = broker.bootstrap_address();
    for t in ["quota-slow", "quota-fast", "quota-fill"] {
        create_topic(&bs, t, 1, &[]).await;
    }
    set_quota(&bs, "slow-producer", "producer_byte_rate").await;
    set_quota(&bs, "slow-consumer", "consumer_byte_rate").await;
    // What the consumers read: written by a client without a quota.
    const FILL: u64 = 40_000_000;
    let b = bs.clone();
    let filled = tokio::task::spawn_blocking(move || {
        produce_flat_out(&b, "quota-fill", "filler", &[Duration::from_secs(60)], FILL)
    })
    .await
    .unwrap();
    assert!(filled.limit_reached.is_some(), "{:?}", filled.at);

    // All four at once: the quota'd ones warm up for 11 s, then are measured for 10 s;
    // the others move 40 MB as fast as they can meanwhile.
    let warm = Duration::from_secs(11);
    let checkpoints = [warm, warm + RUN];
    let (b1, b2, b3, b4) = (bs.clone(), bs.clone(), bs.clone(), bs.clone());
    let slow_p = tokio::task::spawn_blocking(move || {
        produce_flat_out(&b1, "quota-slow", "slow-producer", &checkpoints, u64::MAX)
    });
    let slow_c = tokio::task::spawn_blocking(move || {
        consume_flat_out(&b2, "quota-fill", "slow-consumer", &checkpoints, u64::MAX)
    });
    let long = [Duration::from_secs(60)];
    let fast_p = tokio::task::spawn_blocking(move || {
        produce_flat_out(&b3, "quota-fast", "fast-producer", &long, FILL)
    });
    let fast_c = tokio::task::spawn_blocking(move || {
        consume_flat_out(&b4, "quota-fill", "fast-consumer", &long, FILL)
    });
    let (fast_p, fast_c) = (fast_p.await.unwrap(), fast_c.await.unwrap());
    let (slow_p, slow_c) = (slow_p.await.unwrap(), slow_c.await.unwrap());
    let rate = |p: &Progress| mb_per_s(p.at[1] - p.at[0], RUN);
    let fast_rate = |p: &Progress| mb_per_s(FILL, p.limit_reached.expect("40 MB moved"));
    let (sp, sc, fp, fc) = (
        rate(&slow_p),
        rate(&slow_c),
        fast_rate(&fast_p),
        fast_rate(&fast_c),
    );
    eprintln!(
        "1 MB/s quotas, measured over {RUN:?} after {warm:?}: producer {sp:.3} MB/s \
         ({:.3} MB/s over the first {warm:?}), consumer {sc:.3} MB/s ({:.3} MB/s); \
         beside them without quotas: producer {fp:.1} MB/s, consumer {fc:.1} MB/s",
        mb_per_s(slow_p.at[0], warm),
        mb_per_s(slow_c.at[0], warm),
    );
    assert!(
        (0.7..=1.3).contains(&sp),
        "the quota'd producer got {sp:.3} MB/s"
    );
    assert!(
        (0.7..=1.3).contains(&sc),
        "the quota'd consumer got {sc:.3} MB/s"
    );
    assert!(fp > 3.0 * sp, "the unthrottled producer got {fp:.3} MB/s");
    assert!(fc > 3.0 * sc, "the unthrottled consumer got {fc:.3} MB/s");
    for quota in ["producer_byte_rate", "consumer_byte_rate"] {
        let (count, ms) = throttled(admin, quota).await;
        assert!(count > 0 && ms > 0, "{quota}: {count} throttled, {ms} ms");
    }
    broker.shutdown().await.unwrap();
}
