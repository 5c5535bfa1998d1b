//! `cargo run --example quickstart`: starts an embedded Rafka broker on a free port,
//! produces a few records with rafka-producer, reads them back with rafka-consumer, prints
//! the round trip and exits 0.

use std::time::Duration;

use rafka_broker::{Broker, Config};
use rafka_consumer::{Consumer, OffsetReset};
use rafka_producer::{Producer, Record};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = Config::default();
    cfg.broker.listen = "127.0.0.1:0".into();
    cfg.storage.path = dir.path().to_path_buf();
    let broker = Broker::start(cfg).await?;
    let addr = broker.bootstrap_address().to_string();
    println!("broker listening on {addr}");

    let producer = Producer::builder().bootstrap(&addr).build().await?;
    producer.client().create_topic("quickstart", 1, &[]).await?;
    for i in 0..3 {
        let md = producer
            .send(
                Record::to("quickstart")
                    .key(format!("key-{i}"))
                    .value(format!("hello #{i}"))
                    .header("source", "quickstart"),
            )
            .await?;
        println!(
            "produced  key-{i} -> partition {} offset {}",
            md.partition, md.offset
        );
    }
    producer.close().await?;

    let consumer = Consumer::builder()
        .bootstrap(&addr)
        .group("quickstart")
        .subscribe(["quickstart"])
        .auto_offset_reset(OffsetReset::Earliest)
        .build()
        .await?;
    for _ in 0..3 {
        let r = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await??;
        println!(
            "consumed  {} -> {:?} (partition {} offset {})",
            String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()),
            String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()),
            r.partition,
            r.offset
        );
    }
    consumer.close().await?;
    broker.shutdown().await?;
    println!("round trip ok");
    Ok(())
}
