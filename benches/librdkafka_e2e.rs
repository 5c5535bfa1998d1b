//! End-to-end throughput through librdkafka against an in-process Rafka (log engine, on
//! disk), with a physical baseline measured in the same run: a loopback TCP transfer of the
//! same number of bytes. Run with `cargo bench --bench librdkafka_e2e` (optionally
//! `-- RECORDS` to change the record count). Prints one table; not a pass/fail test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rafka_broker::{Broker, Config};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const RECORD_BYTES: usize = 1024;

fn loopback_mb_s(total: usize) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < total {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0);
            got += n;
        }
    });
    let chunk = vec![7u8; 1 << 20];
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    let mut sent = 0;
    while sent < total {
        let n = chunk.len().min(total - sent);
        s.write_all(&chunk[..n]).unwrap();
        sent += n;
    }
    reader.join().unwrap();
    total as f64 / start.elapsed().as_secs_f64() / 1e6
}

async fn produce_mb_s(addr: &str, topic: &str, records: usize, acks: &str) -> f64 {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", acks)
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
    p.flush(Duration::from_secs(30)).unwrap();
    (records * RECORD_BYTES) as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn consume_mb_s(addr: &str, topic: &str, records: usize) -> f64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let start = Instant::now();
    let mut n = 0;
    while n < records {
        if let Some(m) = c.poll(Duration::from_secs(5)) {
            m.unwrap();
            n += 1;
        }
    }
    (records * RECORD_BYTES) as f64 / start.elapsed().as_secs_f64() / 1e6
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
        let addr = broker.bootstrap_address();
        let total = records * RECORD_BYTES;
        let baseline = loopback_mb_s(total);
        let acks1 = produce_mb_s(&addr, "bench-acks1", records, "1").await;
        let acks_all = produce_mb_s(&addr, "bench-acksall", records, "all").await;
        let a = addr.clone();
        let consume = tokio::task::spawn_blocking(move || consume_mb_s(&a, "bench-acks1", records))
            .await
            .unwrap();
        println!("records: {records} x {RECORD_BYTES} B, 1 partition, log engine on disk, fsync on_ack_all");
        println!("{:<34} {:>10} {:>14}", "workload", "MB/s", "vs loopback");
        for (name, v) in [
            ("loopback TCP (baseline)", baseline),
            ("produce acks=1", acks1),
            ("produce acks=all (fsync)", acks_all),
            ("consume from start", consume),
        ] {
            println!("{name:<34} {v:>10.1} {:>13.1}%", 100.0 * v / baseline);
        }
        println!("acks=all / acks=1: {:.0}%", 100.0 * acks_all / acks1);
        broker.shutdown().await.unwrap();
    });
}
