//! Produce throughput through the broker's produce handler (`api::dispatch`, in process, no
//! sockets) with no hooks, with `topic_policy` only (no record access: must stay within 5%
//! of no hooks) and with `add_headers` (decode + rewrite + re-encode every batch), on
//! uncompressed and lz4 batches; then the append-time checks of `normalize`: batches with a
//! -1 max timestamp (read record by record), a topic with a timestamp bound (every batch
//! read), a topic with `compression.type=zstd` (every batch re-encoded). `cargo bench -p rafka-broker --bench hooks_produce`.
//!
//! Each variant appends the same requests (one partition, 100 records of 100 bytes per
//! batch) to a fresh log with `fsync: never`; rounds alternate variants so disk and CPU noise
//! hit all alike, and the best round of each is reported.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ProduceRequest, RequestHeader, RequestKind, TopicName as WireTopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};

use rafka_broker::rafka_hooks::{Api, RequestContext};
use rafka_broker::{dispatch, Reply};
use rafka_broker::{Broker, Config, FsyncPolicy};
use rafka_core::batch::BatchBuilder;
use rafka_core::{Offset, Timestamp};
use rafka_protocol::connection::DecodedRequest;

const REQUESTS: usize = 10_000;
const RECORDS_PER_BATCH: usize = 100;
const VALUE_BYTES: usize = 100;
const ROUNDS: usize = 7;

fn batch(compression: Compression) -> Bytes {
    let value = vec![b'x'; VALUE_BYTES];
    let mut b = BatchBuilder::new(Offset(0));
    for i in 0..RECORDS_PER_BATCH {
        b = b.kv(
            format!("key-{i}").as_bytes(),
            &value,
            Timestamp(1_700_000_000_000),
        );
    }
    let plain = b.build().into_bytes();
    if matches!(compression, Compression::None) {
        return plain;
    }
    let mut buf = plain;
    let set = RecordBatchDecoder::decode(&mut buf).expect("decode");
    let mut out = bytes::BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut out, set.records.iter(), &opts).expect("encode");
    out.freeze()
}

fn request(records: &Bytes) -> DecodedRequest {
    let body = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(WireTopicName(StrBytes::from_static_str("bench")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records.clone()))])]);
    DecodedRequest {
        header: RequestHeader::default()
            .with_request_api_key(0)
            .with_request_api_version(9)
            .with_client_id(Some(StrBytes::from_static_str("bench"))),
        api_key: ApiKey::Produce,
        body: RequestKind::Produce(body),
        frame_bytes: records.len() + 100,
    }
}

/// The same batch with its header max timestamp at -1, as Sarama 1.22 sends it.
fn sarama_header(records: &Bytes) -> Bytes {
    let mut b = rafka_core::RecordBatch::parse(records.clone()).expect("one batch");
    b.set_max_timestamp(Timestamp(-1));
    b.into_bytes()
}

/// One round: a fresh broker, `REQUESTS` produce requests; returns the elapsed time.
async fn round(hooks_yaml: &str, topic_configs: &[(&str, &str)], records: &Bytes) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = Config::from_yaml(hooks_yaml).expect("config");
    cfg.broker.listen = "127.0.0.1:0".into();
    cfg.admin.listen = String::new(); // no fixed port 9644 from the YAML default
    cfg.storage.path = dir.path().to_path_buf();
    cfg.durability.fsync = FsyncPolicy::Never;
    let broker = Broker::start(cfg).await.expect("broker");
    let shared = broker.shared().clone();
    shared
        .cluster
        .create_topic(
            &rafka_core::TopicName::new("bench").unwrap(),
            1,
            topic_configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            false,
        )
        .expect("topic");
    let peer = "127.0.0.1:1".parse().unwrap();
    let session = Arc::new(rafka_hooks::Session::plaintext(peer, peer));
    let reqs: Vec<DecodedRequest> = (0..REQUESTS).map(|_| request(records)).collect();
    let started = Instant::now();
    for (i, req) in reqs.into_iter().enumerate() {
        let ctx = Arc::new(RequestContext {
            api: Api::Produce,
            api_version: 9,
            correlation_id: i as i32,
            client_id: "bench".into(),
            peer,
            received: Timestamp::now(),
            session: session.clone(),
        });
        match dispatch(&shared, req, &ctx) {
            Reply::Now(kafka_protocol::messages::ResponseKind::Produce(r)) => {
                assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
            }
            _ => panic!("unexpected reply"),
        }
    }
    let elapsed = started.elapsed();
    broker.shutdown().await.expect("shutdown");
    elapsed
}

/// A variant: hooks YAML, topic configs, and whether batches carry a -1 max timestamp.
type Variant = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    bool,
);

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let variants: [Variant; 6] = [
        ("no hooks", "", &[], false),
        (
            "topic_policy",
            "hooks:\n- type: topic_policy\n  allowed: ['bench', 'orders-.*']\n  denied: ['tmp-.*']\n",
            &[],
            false,
        ),
        (
            "add_headers",
            "hooks:\n- type: add_headers\n  headers: {source: rafka}\n  client_id_header: client\n",
            &[],
            false,
        ),
        // Append-time checks (`normalize`): a -1 header is read record by record; a
        // timestamp bound reads every batch; a topic codec re-encodes every batch.
        ("max ts -1", "", &[], true),
        (
            "ts bound",
            "",
            &[("message.timestamp.before.max.ms", "9223372036854775806")],
            false,
        ),
        ("topic zstd", "", &[("compression.type", "zstd")], false),
    ];
    for (codec_name, codec) in [("none", Compression::None), ("lz4", Compression::Lz4)] {
        let records = batch(codec);
        let sarama = sarama_header(&records);
        let mut best = vec![Duration::MAX; variants.len()];
        for _ in 0..ROUNDS {
            for (i, (_, yaml, configs, minus_one)) in variants.iter().enumerate() {
                let input = if *minus_one { &sarama } else { &records };
                let t = rt.block_on(round(yaml, configs, input));
                best[i] = best[i].min(t);
            }
        }
        let base = best[0].as_secs_f64();
        for ((name, ..), t) in variants.iter().zip(&best) {
            let secs = t.as_secs_f64();
            let n = (REQUESTS * RECORDS_PER_BATCH) as f64;
            println!(
                "codec {codec_name:4} {name:13} {:>10.0} records/s {:>8.1} MB/s (batch bytes)  throughput {:6.1}% of no hooks",
                n / secs,
                (REQUESTS * records.len()) as f64 / secs / 1e6,
                base / secs * 100.0,
            );
        }
    }
}
