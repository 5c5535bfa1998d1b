//! rafka-producer against librdkafka's producer: 1 KiB records, acks=all, one partition,
//! the same in-process broker in the same run. `cargo bench --bench producer_vs_librdkafka
//! [-- RECORDS]` prints MB/s for each and the ratio; not a pass/fail test.

use std::time::{Duration, Instant};

use rafka_broker::{Broker, Config};
use rafka_producer::{Producer, Record};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

const RECORD_BYTES: usize = 1024;

async fn librdkafka_mb_s(addr: &str, topic: &str, records: usize) -> f64 {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .unwrap();
    let payload = vec![b'x'; RECORD_BYTES];
    let start = Instant::now();
    let mut pending = Vec::with_capacity(records);
    for i in 0..records {
        let key = (i as u64).to_be_bytes();
        loop {
            match p.send_result(
                FutureRecord::to(topic)
                    .key(&key[..])
                    .payload(&payload[..])
                    .partition(0),
            ) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }
    for f in pending {
        f.await.unwrap().unwrap();
    }
    (records * RECORD_BYTES) as f64 / start.elapsed().as_secs_f64() / 1e6
}

async fn rafka_mb_s(addr: &str, topic: &str, records: usize) -> f64 {
    let p = Producer::builder()
        .bootstrap(addr)
        .batch_size(1_000_000)
        .buffer_memory(256 * 1024 * 1024)
        .build()
        .await
        .unwrap();
    let payload = bytes::Bytes::from(vec![b'x'; RECORD_BYTES]);
    let start = Instant::now();
    let mut pending = Vec::with_capacity(records);
    for i in 0..records {
        let key = bytes::Bytes::copy_from_slice(&(i as u64).to_be_bytes());
        let r = Record::to(topic)
            .partition(0)
            .key(key)
            .value(payload.clone());
        pending.push(p.enqueue(r).await.unwrap());
    }
    for f in pending {
        f.await.unwrap();
    }
    let mb_s = (records * RECORD_BYTES) as f64 / start.elapsed().as_secs_f64() / 1e6;
    p.close().await.unwrap();
    mb_s
}

fn main() {
    let records: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::default();
        cfg.broker.listen = "127.0.0.1:0".into();
        cfg.storage.path = dir.path().to_path_buf();
        let broker = Broker::start(cfg).await.unwrap();
        let addr = broker.bootstrap_address().to_string();
        let admin = rafka_client::Client::connect(rafka_client::ClientConfig::new(&addr))
            .await
            .unwrap();
        admin.create_topic("bench-rd", 1, &[]).await.unwrap();
        admin.create_topic("bench-rafka", 1, &[]).await.unwrap();
        // Warm both paths once, then measure.
        let rd = librdkafka_mb_s(&addr, "bench-rd", records).await;
        let ours = rafka_mb_s(&addr, "bench-rafka", records).await;
        println!("{records} records of {RECORD_BYTES} B, acks=all, 1 partition");
        println!("librdkafka producer   {rd:8.1} MB/s");
        println!("rafka-producer        {ours:8.1} MB/s");
        println!("ratio rafka/librdkafka {:.2}", ours / rd);
        broker.shutdown().await.unwrap();
    });
}
