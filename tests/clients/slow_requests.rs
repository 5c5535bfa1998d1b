//! The slow-request log line (`log.slow_request_ms`), read from the broker's own log
//! output: a produce that a hook holds up is reported with its API and time, a fast one
//! is not, and a fetch that waits out its `max_wait_ms` on an empty partition (a wait the
//! client asked for) is not reported either.

use crate::support;
use crate::support::LogCapture;

use std::time::{Duration, Instant};

use rafka_broker::rafka_hooks::{
    Hook, HookResult, Interest, RecordSet, RequestContext, Stages, TopicFilter, Verdict,
};
use rafka_broker::{Broker, Config};
use rafka_core::TopicPartition;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

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

#[test]
fn slow_requests_are_logged_and_deliberate_waits_are_not() {
    // This test's broker logs to `captured` only (other tests' brokers share the process).
    let captured = LogCapture::default();
    captured.runtime().block_on(async {
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
    });

    let lines = captured.lines_with("slow request");
    assert_eq!(
        lines.len(),
        1,
        "one slow request, the held-up produce: {lines:#?}"
    );
    let line = &lines[0];
    assert!(line.contains("api=Produce"), "{line}");
    assert!(line.contains("principal=User:ANONYMOUS"), "{line}");
    let took: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("took_ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no took_ms in {line}"));
    assert!((300..10_000).contains(&took), "took_ms={took} in {line}");
    assert!(line.contains("allowed_wait_ms=0"), "{line}");
}
