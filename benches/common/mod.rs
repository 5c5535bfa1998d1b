//! What the benchmarks share: librdkafka's producer driven the same way everywhere.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

/// Produces `records` records of `size` bytes to partition 0 of `topic`.
pub fn librdkafka_produce(
    addr: &str,
    topic: &str,
    records: usize,
    size: usize,
    acks: &str,
) -> Duration {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", acks)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .unwrap();
    let payload = vec![b'x'; size];
    let start = Instant::now();
    let mut pending = Vec::with_capacity(records);
    for _ in 0..records {
        loop {
            match p.send_result(
                FutureRecord::<(), _>::to(topic)
                    .payload(&payload[..])
                    .partition(0),
            ) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err(_) => p.poll(Duration::from_millis(1)),
            }
        }
    }
    p.flush(Duration::from_secs(120)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for f in pending {
        rt.block_on(f).unwrap().unwrap();
    }
    start.elapsed()
}
