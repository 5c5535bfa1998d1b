//! The slow-request log line (`log.slow_request_ms`), read from the broker's own log
//! output: a produce that a hook holds up is reported with its API and time, a fast one
//! is not, and a fetch that waits out its `max_wait_ms` on an empty partition (a wait the
//! client asked for) is not reported either.
//!
//! Its own test binary: it installs the process-wide log subscriber that captures lines.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rafka_broker::rafka_hooks::{
    Hook, HookResult, Interest, RecordSet, RequestContext, Stages, TopicFilter, Verdict,
};
use rafka_broker::{Broker, Config};
use rafka_core::TopicPartition;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

/// Log lines, as the broker wrote them.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn slow_lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains("slow request"))
            .map(str::to_string)
            .collect()
    }
}

/// Holds up every produce to the topic `slow` for 300 ms.
struct Sleepy;

impl Hook for Sleepy {
    fn name(&self) -> &str {
        "sleepy"
    }
    fn interest(&self) -> Interest {
        Interest {
            stages: Stages::PRODUCE,
            topics: TopicFilter::All,
            record_access: false,
        }
    }
    fn on_produce(&self, _: &RequestContext, tp: &TopicPartition, _: &mut RecordSet) -> HookResult {
        if tp.topic.as_str() == "slow" {
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(Verdict::Continue)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_are_logged_and_deliberate_waits_are_not() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_env_filter("warn")
        .init();

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.broker.listen = "127.0.0.1:0".into();
    cfg.storage.path = dir.path().to_path_buf();
    cfg.log.slow_request_ms = 150;
    let broker = Broker::builder()
        .config(cfg)
        .hook(Sleepy)
        .start()
        .await
        .unwrap();
    let addr = broker.bootstrap_address();
    support::create_topic(&addr, "slow", 1, &[]).await;
    support::create_topic(&addr, "fast", 1, &[]).await;

    // A fetch that waits 600 ms on an empty partition: allowed, not slow.
    let consumer: BaseConsumer = support::client_config(&addr)
        .set("group.id", "slow-test")
        .set("fetch.wait.max.ms", "600")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("fast", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let idle_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < idle_until {
        assert!(consumer.poll(Duration::from_millis(100)).is_none());
    }

    let producer = support::producer(&addr, &[("acks", "all")]);
    for topic in ["fast", "slow", "fast"] {
        producer
            .send(
                FutureRecord::<(), _>::to(topic).payload("x").partition(0),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    drop(consumer);
    broker.shutdown().await.unwrap();

    let lines = captured.slow_lines();
    assert_eq!(
        lines.len(),
        1,
        "one slow request, the held-up produce: {lines:#?}"
    );
    let line = &lines[0];
    assert!(line.contains("api=Produce"), "{line}");
    let took: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("took_ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no took_ms in {line}"));
    assert!((300..10_000).contains(&took), "took_ms={took} in {line}");
    assert!(line.contains("allowed_wait_ms=0"), "{line}");
}
