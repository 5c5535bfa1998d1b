//! `rafka bench produce|consume|e2e`: load from Rafka's own clients against any Kafka
//! broker, like Kafka's producer/consumer perf tools in one binary. It prints a summary
//! (records/s, MB/s, latency percentiles) or, with `--json`, one JSON object.
//!
//! Latencies: `produce` measures send → acknowledgement of each record (a collector task
//! awaits the delivery futures as they complete, not in send order); `e2e` measures send →
//! receipt by a consumer in the same process (the first 8 bytes of each value carry the
//! send time), which is what a pipeline sees.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::stream::{FuturesUnordered, StreamExt};
use rafka_client::admin::{EARLIEST, LATEST};
use rafka_client::{Client, ClientConfig, ClientError};
use rafka_consumer::Consumer;
use rafka_producer::{Acks, Compression, Producer, ProducerError, Record};
use tokio::sync::mpsc;

/// Help for `rafka bench`.
pub const USAGE: &str = "\
BENCHMARKS (Rafka's own clients; any Kafka broker):
    rafka bench produce|consume|e2e --topic T [--records N] [--record-size S]
                [--partitions P] [--acks 0|1|all] [--batch-size B] [--linger-ms L]
                [--compression none|gzip|snappy|lz4|zstd] [--rate R] [--json]
                [--bootstrap HOST:PORT] [--command-config FILE]
        produce   send N records of S bytes; throughput and send->ack latency
        consume   read N records from the start of T (default: all it holds)
        e2e       produce and consume at once; send->receive latency (use --rate)
    Defaults: 1,000,000 records of 1,024 bytes, 1 partition (the topic is created when
    missing), acks=all, batch 64 KiB, linger 5 ms.

EXAMPLES:
    rafka bench produce --topic perf --records 200000 --acks 1
    rafka bench consume --topic perf
    rafka bench e2e --topic lat --records 100000 --record-size 100 --rate 10000 --json
";

#[derive(Debug, Clone)]
struct Opts {
    mode: String,
    bootstrap: String,
    topic: String,
    records: Option<u64>,
    record_size: usize,
    partitions: i32,
    acks: Acks,
    batch_size: usize,
    linger: Duration,
    compression: Compression,
    rate: Option<u64>,
    json: bool,
    /// Connection settings: `--command-config` over the defaults, `--bootstrap` winning.
    client: ClientConfig,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut it = args.iter();
    let mode = it
        .next()
        .context("bench needs a mode: produce, consume or e2e")?
        .clone();
    if !["produce", "consume", "e2e"].contains(&mode.as_str()) {
        bail!("unknown bench mode {mode:?}: produce, consume or e2e");
    }
    let mut o = Opts {
        mode,
        bootstrap: "127.0.0.1:9092".into(),
        topic: String::new(),
        records: None,
        record_size: 1024,
        partitions: 1,
        acks: Acks::All,
        batch_size: 64 * 1024,
        linger: Duration::from_millis(5),
        compression: Compression::None,
        rate: None,
        json: false,
        client: ClientConfig::new("127.0.0.1:9092"),
    };
    let (mut bootstrap_given, mut command_config) = (false, None);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        let num = |v: &String| -> Result<u64> {
            v.parse()
                .with_context(|| format!("{a} needs a non-negative number, got {v:?}"))
        };
        match a.as_str() {
            "--bootstrap" | "-b" => {
                o.bootstrap = value()?.clone();
                bootstrap_given = true;
            }
            "--command-config" => command_config = Some(value()?.clone()),
            "--topic" => o.topic = value()?.clone(),
            "--records" => o.records = Some(num(value()?)?),
            "--record-size" => o.record_size = num(value()?)? as usize,
            "--partitions" => o.partitions = num(value()?)?.clamp(1, 10_000) as i32,
            "--batch-size" => o.batch_size = num(value()?)?.max(1) as usize,
            "--linger-ms" => o.linger = Duration::from_millis(num(value()?)?),
            "--rate" => o.rate = Some(num(value()?)?.max(1)),
            "--json" => o.json = true,
            "--acks" => {
                o.acks = match value()?.as_str() {
                    "0" => Acks::None,
                    "1" => Acks::Leader,
                    "all" | "-1" => Acks::All,
                    v => bail!("--acks must be 0, 1 or all, got {v:?}"),
                }
            }
            "--compression" => {
                o.compression = match value()?.as_str() {
                    "none" => Compression::None,
                    "gzip" => Compression::Gzip,
                    "snappy" => Compression::Snappy,
                    "lz4" => Compression::Lz4,
                    "zstd" => Compression::Zstd,
                    v => bail!("--compression must be none, gzip, snappy, lz4 or zstd, got {v:?}"),
                }
            }
            s => bail!("unknown bench option {s:?} (see rafka --help)"),
        }
    }
    if o.topic.is_empty() {
        bail!("bench needs --topic");
    }
    if o.mode == "e2e" && o.record_size < 8 {
        bail!("e2e needs --record-size of at least 8 (the send time travels in the value)");
    }
    o.client =
        crate::cli::command_config(command_config.as_deref(), &o.bootstrap, bootstrap_given)?;
    o.bootstrap = o.client.bootstrap.join(",");
    Ok(o)
}

/// What one run measured.
#[derive(Debug, Default)]
struct Summary {
    records: u64,
    bytes: u64,
    elapsed: Duration,
    /// Latencies in microseconds (empty when not measured).
    latencies_us: Vec<u64>,
}

/// The `q` quantile (0..=1) of sorted values, nearest rank.
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Summary {
    fn render(&mut self, o: &Opts) -> String {
        self.latencies_us.sort_unstable();
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let (rps, mbps) = (self.records as f64 / secs, self.bytes as f64 / 1e6 / secs);
        let l = &self.latencies_us;
        let ms = |us: u64| us as f64 / 1000.0;
        let (p50, p99, p999, max) = (
            ms(quantile(l, 0.50)),
            ms(quantile(l, 0.99)),
            ms(quantile(l, 0.999)),
            ms(l.last().copied().unwrap_or(0)),
        );
        if o.json {
            let mut v = serde_json::json!({
                "mode": o.mode,
                "topic": o.topic,
                "records": self.records,
                "bytes": self.bytes,
                "record_size": o.record_size,
                "partitions": o.partitions,
                "seconds": secs,
                "records_per_sec": rps,
                "mb_per_sec": mbps,
            });
            if !l.is_empty() {
                v["latency_ms"] =
                    serde_json::json!({ "p50": p50, "p99": p99, "p99_9": p999, "max": max });
            }
            return v.to_string();
        }
        let mut s = format!(
            "{}: {} records ({:.1} MB) in {secs:.2} s: {rps:.0} records/s, {mbps:.1} MB/s",
            o.mode,
            self.records,
            self.bytes as f64 / 1e6
        );
        if !l.is_empty() {
            let what = if o.mode == "e2e" {
                "send->receive"
            } else {
                "send->ack"
            };
            s.push_str(&format!(
                "\n{what} latency ms: p50 {p50:.2}  p99 {p99:.2}  p99.9 {p999:.2}  max {max:.2}"
            ));
        }
        s
    }
}

/// Runs `rafka bench ...` (`args` after `bench`).
pub async fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let mut cfg = o.client.clone();
    cfg.connect_timeout = Duration::from_secs(10);
    let addresses = cfg.bootstrap.join(",");
    let client = tokio::time::timeout(Duration::from_secs(10), Client::connect(cfg))
        .await
        .map_err(|_| anyhow::anyhow!("cannot reach {addresses}: no answer within 10 s"))?
        .with_context(|| format!("cannot reach {addresses}"))?;
    let mut summary = match o.mode.as_str() {
        "produce" => {
            ensure_topic(&client, &o).await?;
            produce(&o, None).await?
        }
        "consume" => consume(&client, &o).await?,
        _ => {
            ensure_topic(&client, &o).await?;
            e2e(&client, &o).await?
        }
    };
    println!("{}", summary.render(&o));
    Ok(())
}

async fn ensure_topic(client: &Client, o: &Opts) -> Result<()> {
    match client.create_topic(&o.topic, o.partitions, &[]).await {
        Ok(()) => Ok(()),
        Err(ClientError::Kafka {
            error: kafka_protocol::ResponseError::TopicAlreadyExists,
            ..
        }) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create topic {}", o.topic)),
    }
}

fn progress(o: &Opts) -> Option<(u64, Instant)> {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    (tty && !o.json).then(|| (o.records.unwrap_or(0), Instant::now()))
}

fn tick(bar: &mut Option<(u64, Instant)>, done: u64, size: usize, started: Instant) {
    if let Some((total, last)) = bar {
        if last.elapsed() >= Duration::from_millis(200) {
            *last = Instant::now();
            let t = *total * size as u64;
            eprint!(
                "\r{}",
                crate::cli::progress_line(done * size as u64, t, done, started.elapsed())
            );
        }
    }
}

/// Produces `--records` records. With `stamp`, the first 8 bytes of each value are the
/// send time (µs since `stamp`) for an end-to-end reader.
async fn produce(o: &Opts, stamp: Option<Instant>) -> Result<Summary> {
    let n = o.records.unwrap_or(1_000_000);
    let mut client = o.client.clone();
    client.allow_auto_topic_creation = true;
    let producer = Producer::builder()
        .client_config(client)
        .acks(o.acks)
        .batch_size(o.batch_size)
        .linger(o.linger)
        .compression(o.compression)
        .build()
        .await
        .context("cannot start the producer")?;
    let payload: Vec<u8> = (0..o.record_size).map(|i| b'a' + (i % 26) as u8).collect();
    // The collector awaits deliveries as they complete; the channel bounds what waits.
    let (tx, mut rx) = mpsc::channel::<(Instant, rafka_producer::DeliveryFuture)>(65_536);
    let measure = o.acks != Acks::None && stamp.is_none();
    let collector = tokio::spawn(async move {
        let mut waiting = FuturesUnordered::new();
        let mut latencies = Vec::new();
        let mut first_error: Option<ProducerError> = None;
        let mut open = true;
        while open || !waiting.is_empty() {
            tokio::select! {
                got = rx.recv(), if open => match got {
                    Some((sent, f)) => waiting.push(async move { (sent, f.await) }),
                    None => open = false,
                },
                Some((sent, result)) = waiting.next(), if !waiting.is_empty() => {
                    match result {
                        Ok(_) => latencies.push(sent.elapsed().as_micros() as u64),
                        Err(e) => { first_error.get_or_insert(e); }
                    }
                }
            }
        }
        (latencies, first_error)
    });
    let mut bar = progress(o);
    let started = Instant::now();
    for i in 0..n {
        if let Some(rate) = o.rate {
            let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
            if due > Instant::now() + Duration::from_millis(1) {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        let mut value = payload.clone();
        if let Some(base) = stamp {
            let us = base.elapsed().as_micros() as u64;
            value[..8].copy_from_slice(&us.to_be_bytes());
        }
        let sent = Instant::now();
        let f = producer
            .enqueue(Record::to(o.topic.clone()).value(value))
            .await?;
        if tx.send((sent, f)).await.is_err() {
            break;
        }
        tick(&mut bar, i + 1, o.record_size, started);
    }
    drop(tx);
    producer.flush().await?;
    let (latencies, error) = collector.await.context("delivery collector")?;
    let elapsed = started.elapsed();
    producer.close().await?;
    if bar.is_some() {
        eprintln!();
    }
    if let Some(e) = error {
        return Err(e).context("records failed");
    }
    Ok(Summary {
        records: n,
        bytes: n * o.record_size as u64,
        elapsed,
        latencies_us: if measure { latencies } else { Vec::new() },
    })
}

/// The topic's partitions.
async fn partitions(client: &Client, topic: &str) -> Result<Vec<i32>> {
    Ok(client
        .topic(topic)
        .await
        .with_context(|| format!("cannot find topic {topic}"))?
        .partitions
        .iter()
        .map(|p| p.partition)
        .collect())
}

/// A consumer assigned every partition of the topic at the given positions.
async fn reader(o: &Opts, at: &std::collections::BTreeMap<i32, i64>) -> Result<Consumer> {
    let c = Consumer::builder()
        .client_config(o.client.clone())
        .assign(at.keys().map(|p| (o.topic.clone(), *p)))
        .build()
        .await
        .context("cannot start the consumer")?;
    for (p, off) in at {
        c.seek(&o.topic, *p, *off)?;
    }
    Ok(c)
}

async fn consume(client: &Client, o: &Opts) -> Result<Summary> {
    let parts = partitions(client, &o.topic).await?;
    let start = client.list_offsets(&o.topic, &parts, EARLIEST).await?;
    let end = client.list_offsets(&o.topic, &parts, LATEST).await?;
    let held: u64 = parts
        .iter()
        .map(|p| (end[p] - start[p]).max(0) as u64)
        .sum();
    let n = o.records.unwrap_or(held);
    if n > held {
        bail!("{} holds {held} records, fewer than --records {n}", o.topic);
    }
    let c = reader(o, &start).await?;
    let mut bar = progress(&Opts {
        records: Some(n),
        ..o.clone()
    });
    let (mut got, mut bytes) = (0u64, 0u64);
    let started = Instant::now();
    while got < n {
        let r = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .map_err(|_| anyhow::anyhow!("no record for 30 s after {got} of {n}"))??;
        got += 1;
        bytes += r.value.map_or(0, |v| v.len() as u64) + r.key.map_or(0, |k| k.len() as u64);
        tick(&mut bar, got, o.record_size, started);
    }
    let elapsed = started.elapsed();
    if bar.is_some() {
        eprintln!();
    }
    c.close().await?;
    Ok(Summary {
        records: got,
        bytes,
        elapsed,
        latencies_us: Vec::new(),
    })
}

async fn e2e(client: &Client, o: &Opts) -> Result<Summary> {
    let n = o.records.unwrap_or(1_000_000);
    let parts = partitions(client, &o.topic).await?;
    // Read only what this run writes: start every partition at its current end.
    let end = client.list_offsets(&o.topic, &parts, LATEST).await?;
    let c = reader(o, &end).await?;
    let base = Instant::now();
    let consumer = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(n.min(10_000_000) as usize);
        let mut bytes = 0u64;
        while (latencies.len() as u64) < n {
            let r = match tokio::time::timeout(Duration::from_secs(30), c.recv()).await {
                Ok(r) => r?,
                Err(_) => bail!("no record for 30 s after {} of {n}", latencies.len()),
            };
            let v = r.value.unwrap_or_default();
            if v.len() < 8 {
                bail!("record {}-{} has no send time", r.partition, r.offset);
            }
            let sent = u64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
            let now = base.elapsed().as_micros() as u64;
            latencies.push(now.saturating_sub(sent));
            bytes += v.len() as u64;
        }
        c.close().await?;
        Ok((latencies, bytes))
    });
    let started = Instant::now();
    produce(o, Some(base)).await?;
    let (latencies, bytes) = consumer.await.context("consumer task")??;
    Ok(Summary {
        records: latencies.len() as u64,
        bytes,
        elapsed: started.elapsed(),
        latencies_us: latencies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(quantile(&v, 0.5), 500);
        assert_eq!(quantile(&v, 0.99), 990);
        assert_eq!(quantile(&v, 0.999), 999);
        assert_eq!(quantile(&v, 1.0), 1000);
        assert_eq!(quantile(&[7], 0.5), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }

    #[test]
    fn options_are_checked() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let o = parse(&args(
            "e2e --topic t --records 10 --record-size 100 --acks 1 --rate 5",
        ))
        .unwrap();
        assert_eq!(
            (o.records, o.record_size, o.acks, o.rate),
            (Some(10), 100, Acks::Leader, Some(5))
        );
        assert!(parse(&args("produce")).is_err(), "needs a topic");
        assert!(parse(&args("fly --topic t")).is_err());
        assert!(parse(&args("e2e --topic t --record-size 4")).is_err());
        assert!(parse(&args("produce --topic t --acks 2")).is_err());
    }
}
