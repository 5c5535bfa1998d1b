//! rafka-producer against librdkafka's producer: 1 KiB records, acks=all, one partition,
//! the same in-process broker in the same run. `cargo bench --bench producer_vs_librdkafka
//! [-- RECORDS]` prints MB/s for each and the ratio; not a pass/fail test.

mod common;

use std::time::Instant;

use rafka_broker::{Broker, Config};
use rafka_producer::{Producer, Record};

const RECORD_BYTES: usize = 1024;

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
    for _ in 0..records {
        let r = Record::to(topic).partition(0).value(payload.clone());
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
    let dir = tempfile::tempdir().unwrap();
    let (broker, addr) = rt.block_on(async {
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
        (broker, addr)
    });
    // librdkafka's loop blocks this thread; the broker runs on the runtime's workers.
    let rd_time = common::librdkafka_produce(&addr, "bench-rd", records, RECORD_BYTES, "all");
    let rd = (records * RECORD_BYTES) as f64 / rd_time.as_secs_f64() / 1e6;
    let ours = rt.block_on(rafka_mb_s(&addr, "bench-rafka", records));
    println!("{records} records of {RECORD_BYTES} B, acks=all, 1 partition");
    println!("librdkafka producer   {rd:8.1} MB/s");
    println!("rafka-producer        {ours:8.1} MB/s");
    println!("ratio rafka/librdkafka {:.2}", ours / rd);
    rt.block_on(broker.shutdown()).unwrap();
}
