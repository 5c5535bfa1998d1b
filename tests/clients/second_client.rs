//! A second, independent client implementation (`rskafka`, pure Rust) reads what librdkafka
//! wrote and writes what librdkafka reads, so neither client's leniency hides a broker bug.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::producer::FutureRecord;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::ClientBuilder;
use rskafka::record::Record;

use support::{consume, create_topic, producer, start_broker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rskafka_and_librdkafka_interoperate() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path()).await;
    let addr = broker.bootstrap_address();
    create_topic(&addr, "interop", 1, &[]).await;

    // librdkafka writes (lz4 and zstd batches), rskafka reads.
    for codec in ["none", "zstd"] {
        let p = producer(&addr, &[("compression.codec", codec)]);
        for i in 0..50 {
            let (k, v) = (format!("k{i}"), format!("{codec}-{i}"));
            p.send(
                FutureRecord::to("interop").key(&k).payload(&v).partition(0),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        }
    }
    let client = ClientBuilder::new(vec![addr.clone()])
        .build()
        .await
        .unwrap();
    let pc = client
        .partition_client("interop", 0, UnknownTopicHandling::Error)
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut offset = 0;
    while got.len() < 100 {
        let (records, high_watermark) =
            pc.fetch_records(offset, 1..1_000_000, 1_000).await.unwrap();
        assert_eq!(high_watermark, 100);
        for r in records {
            // A fetch may start inside a batch: skip what precedes the requested offset.
            if r.offset >= offset {
                got.push(r);
            }
        }
        offset = got.last().map_or(0, |r| r.offset + 1);
    }
    for (n, r) in got.iter().enumerate() {
        let (codec, i) = if n < 50 {
            ("none", n)
        } else {
            ("zstd", n - 50)
        };
        assert_eq!(r.offset, n as i64);
        assert_eq!(r.record.key.as_deref(), Some(format!("k{i}").as_bytes()));
        assert_eq!(
            r.record.value.as_deref(),
            Some(format!("{codec}-{i}").as_bytes())
        );
    }

    // rskafka writes (plain and gzip), librdkafka reads.
    let ts = rskafka::chrono::DateTime::from_timestamp_millis(1_650_000_000_000).unwrap();
    let mut offsets = Vec::new();
    for (compression, tag) in [
        (Compression::NoCompression, "plain"),
        (Compression::Gzip, "gzip"),
    ] {
        let records = (0..20)
            .map(|i| Record {
                key: Some(format!("rk{i}").into_bytes()),
                value: Some(format!("{tag}-{i}").into_bytes()),
                headers: BTreeMap::from([("h".to_string(), tag.as_bytes().to_vec())]),
                timestamp: ts,
            })
            .collect();
        offsets.extend(pc.produce(records, compression).await.unwrap());
    }
    assert_eq!(offsets, (100..140).collect::<Vec<i64>>());
    let a = addr.clone();
    let read = tokio::task::spawn_blocking(move || {
        consume(&a, "interop", 1, 140, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert_eq!(read.len(), 140);
    for (n, r) in read[100..].iter().enumerate() {
        let (tag, i) = if n < 20 {
            ("plain", n)
        } else {
            ("gzip", n - 20)
        };
        assert_eq!(r.offset, 100 + n as i64);
        assert_eq!(r.key.as_deref(), Some(format!("rk{i}").as_bytes()));
        assert_eq!(r.value.as_deref(), Some(format!("{tag}-{i}").as_bytes()));
        assert_eq!(
            r.headers,
            vec![("h".to_string(), Some(tag.as_bytes().to_vec()))]
        );
        assert_eq!(r.timestamp, Some(1_650_000_000_000));
    }
    broker.shutdown().await.unwrap();
}
