//! The admin HTTP endpoint scraped during a librdkafka produce/consume run: the traffic
//! counters equal what the test sent and read, the group lag gauge equals the real lag,
//! request and error counters are labelled by API and Kafka error name, and the health
//! endpoints answer as documented.
//!
//! What the byte counters count: `rafka_topic_bytes_in_total` is the record-batch bytes
//! appended by Produce, exactly as stored (batch headers included), so on a fresh topic
//! of the `log` engine it equals `rafka_partition_size_bytes`; `rafka_topic_bytes_out_total`
//! is the whole batches sent in Fetch answers, so a consumer that reads the partition
//! once from the start sees the same figure.

use crate::common;
use crate::support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{client_config, create_topic, producer, start_broker_with};

const TOPIC: &str = "metered";
const GROUP: &str = "meter-group";
const RECORDS: usize = 300;
const VALUE_BYTES: usize = 200;
const COMMITTED: i64 = 210;

/// Status line, headers and body of one HTTP/1.1 GET (the server closes after answering).
pub(crate) async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect to admin");
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send request");
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut raw))
        .await
        .expect("admin answers in time")
        .expect("read answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.parse().ok())
        .expect("Content-Length");
    assert_eq!(length, body.len(), "Content-Length matches the body");
    (status, head.to_string(), body.to_string())
}

/// One sample: metric name and its labels, sorted.
type Key = (String, BTreeMap<String, String>);

/// A strict parser of the Prometheus text format as Rafka writes it: every sample belongs
/// to a family announced by `# HELP` and `# TYPE` before it (histogram samples by their
/// `_bucket`/`_sum`/`_count` suffix), label values are quoted with `\\`, `\"` and `\n`
/// escapes, values are numbers, and no sample appears twice.
fn parse_exposition(text: &str) -> BTreeMap<Key, f64> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped: Vec<String> = Vec::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has a name and text");
            assert!(!help.is_empty(), "empty help for {name}");
            helped.push(name.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a name and a type");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "type {kind} of {name}"
            );
            assert!(helped.iter().any(|h| h == name), "{name}: TYPE before HELP");
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "{name} declared twice"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "stray comment {line:?}");
        if line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                (name.to_string(), parse_labels(body))
            }
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(&name);
        assert!(types.contains_key(family), "{name} has no # TYPE");
        if types[family] == "counter" {
            assert!(
                name.ends_with("_total"),
                "counter {name} must end in _total"
            );
        }
        assert!(name.starts_with("rafka_"), "{name} lacks the rafka_ prefix");
        assert!(
            out.insert((name.clone(), labels), value).is_none(),
            "duplicate sample {line:?}"
        );
    }
    out
}

fn parse_labels(body: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "label {name} value is quoted");
        let mut value = String::new();
        loop {
            match chars.next().expect("label value ends") {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c @ ('\\' | '"')) => value.push(c),
                    other => panic!("bad escape {other:?}"),
                },
                c => value.push(c),
            }
        }
        assert!(labels.insert(name, value).is_none(), "label twice");
        match chars.next() {
            None => break,
            Some(',') => {}
            Some(c) => panic!("unexpected {c:?} after a label"),
        }
    }
    labels
}

fn get(m: &BTreeMap<Key, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let key = (
        name.to_string(),
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    *m.get(&key)
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_the_traffic_and_the_group_lag() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker_with(dir.path(), |c| c.admin.listen = "127.0.0.1:0".into()).await;
    let addr = broker.bootstrap_address();
    let admin = broker.admin_address().expect("admin endpoint is on");
    assert_ne!(admin.port(), 9644, "port 0 picked a free port");

    let (status, _, body) = http(admin, "GET", "/health/ready").await;
    assert_eq!((status, body.as_str()), (200, "{\"status\":\"ready\"}"));
    let (status, head, body) = http(admin, "GET", "/health/live").await;
    assert_eq!((status, body.as_str()), (200, "{\"status\":\"live\"}"));
    assert!(head.contains("Content-Type: application/json"), "{head}");
    assert_eq!(http(admin, "GET", "/nope").await.0, 404);
    let (status, head, _) = http(admin, "POST", "/metrics").await;
    assert_eq!(status, 405);
    assert!(head.contains("Allow: GET"), "{head}");

    create_topic(&addr, TOPIC, 1, &[]).await;

    // N records of known size through librdkafka, acks=all (its default).
    let p = producer(&addr, &[("linger.ms", "2"), ("batch.num.messages", "64")]);
    let value = vec![b'v'; VALUE_BYTES];
    let mut pending = Vec::new();
    for i in 0..RECORDS {
        let key = format!("k{i:04}");
        let record = FutureRecord::to(TOPIC)
            .key(&key)
            .payload(&value)
            .partition(0);
        pending.push(p.send_result(record).expect("queue has room"));
    }
    for (i, f) in pending.into_iter().enumerate() {
        let d = f.await.expect("delivery").expect("delivered");
        assert_eq!(d.offset, i as i64);
    }
    drop(p);

    // Read everything once in a group, then commit an offset short of the end.
    let bootstrap = addr.clone();
    let consumed = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client_config(&bootstrap)
            .set("group.id", GROUP)
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "100")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)
            .unwrap();
        consumer.assign(&tpl).expect("assign");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut offsets = Vec::new();
        while offsets.len() < RECORDS && Instant::now() < deadline {
            if let Some(m) = consumer.poll(Duration::from_millis(200)) {
                let m = m.expect("consume");
                assert_eq!(m.payload().map(<[u8]>::len), Some(VALUE_BYTES));
                offsets.push(m.offset());
            }
        }
        let mut commit = TopicPartitionList::new();
        commit
            .add_partition_offset(TOPIC, 0, Offset::Offset(COMMITTED))
            .unwrap();
        consumer.commit(&commit, CommitMode::Sync).expect("commit");
        offsets
    })
    .await
    .unwrap();
    assert_eq!(consumed, (0..RECORDS as i64).collect::<Vec<_>>());

    // One request for a topic that does not exist: its error is counted by name.
    let mut conn = common::KafkaConn::connect(&addr).await;
    let batch = common::simple_batch("x", 1, 1_700_000_000_000);
    let r = common::produce(&mut conn, "no-such-topic", 0, batch.as_bytes().clone()).await;
    assert_eq!(r.error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");

    let (status, head, text) = http(admin, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let m = parse_exposition(&text);
    let topic = [("topic", TOPIC)];
    let part = [("topic", TOPIC), ("partition", "0")];

    // Records: exactly what was sent and what was read.
    assert_eq!(
        get(&m, "rafka_topic_records_in_total", &topic),
        RECORDS as f64
    );
    assert_eq!(
        get(&m, "rafka_topic_records_out_total", &topic),
        consumed.len() as f64
    );
    // Bytes: batches as stored. The log holds nothing else, and the consumer read it once.
    let size = get(&m, "rafka_partition_size_bytes", &part);
    let bytes_in = get(&m, "rafka_topic_bytes_in_total", &topic);
    assert_eq!(bytes_in, size);
    assert_eq!(get(&m, "rafka_topic_bytes_out_total", &topic), bytes_in);
    // Each record carries its 5-byte key and value plus a few bytes of varints; each batch
    // adds a 61-byte header, and there is at least one batch and at most one per record.
    let payload = (RECORDS * (VALUE_BYTES + 5)) as f64;
    assert!(bytes_in > payload + 61.0, "{bytes_in} vs payload {payload}");
    assert!(
        bytes_in < payload + (RECORDS * (61 + 16)) as f64,
        "{bytes_in} vs payload {payload}"
    );
    println!(
        "scraped: records_in={RECORDS} bytes_in={bytes_in} size={size} bytes_out={} records_out={}",
        get(&m, "rafka_topic_bytes_out_total", &topic),
        get(&m, "rafka_topic_records_out_total", &topic)
    );
    assert_eq!(get(&m, "rafka_partition_log_start_offset", &part), 0.0);
    assert_eq!(
        get(&m, "rafka_partition_log_end_offset", &part),
        RECORDS as f64
    );

    // The group's lag is the log end minus its commit.
    let gp = [("group", GROUP), ("topic", TOPIC), ("partition", "0")];
    assert_eq!(
        get(&m, "rafka_group_committed_offset", &gp),
        COMMITTED as f64
    );
    assert_eq!(
        get(&m, "rafka_group_lag", &gp),
        (RECORDS as i64 - COMMITTED) as f64
    );

    // Requests by API, errors by API and Kafka's error name.
    let produce = get(&m, "rafka_requests_total", &[("api", "Produce")]);
    let fetch = get(&m, "rafka_requests_total", &[("api", "Fetch")]);
    assert!(produce >= 2.0, "Produce requests {produce}");
    assert!(fetch >= 1.0, "Fetch requests {fetch}");
    assert!(get(&m, "rafka_requests_total", &[("api", "OffsetCommit")]) >= 1.0);
    assert_eq!(
        get(
            &m,
            "rafka_request_errors_total",
            &[("api", "Produce"), ("error", "UNKNOWN_TOPIC_OR_PARTITION")]
        ),
        1.0
    );
    assert!(
        !m.keys().any(|(n, l)| n == "rafka_request_errors_total"
            && l.get("api").map(String::as_str) == Some("Fetch")),
        "no Fetch failed"
    );
    // Latency histograms count every request, and their buckets are cumulative.
    let api = [("api", "Produce")];
    assert_eq!(
        get(&m, "rafka_request_duration_seconds_count", &api),
        produce
    );
    assert_eq!(
        get(
            &m,
            "rafka_request_duration_seconds_bucket",
            &[("api", "Produce"), ("le", "+Inf")]
        ),
        produce
    );
    let buckets: Vec<f64> = m
        .iter()
        .filter(|((n, l), _)| {
            n == "rafka_request_duration_seconds_bucket"
                && l.get("api").map(String::as_str) == Some("Fetch")
        })
        .map(|((_, l), v)| (l["le"].parse::<f64>().unwrap_or(f64::INFINITY), *v))
        .collect::<Vec<_>>()
        .into_iter()
        .fold(Vec::new(), |mut sorted: Vec<(f64, f64)>, b| {
            let at = sorted.partition_point(|(le, _)| *le < b.0);
            sorted.insert(at, b);
            sorted
        })
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(buckets.len(), 17);
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");

    // Connections: the producer, the consumer, the admin client's and the raw one.
    assert!(get(&m, "rafka_connections_accepted_total", &[]) >= 3.0);
    assert!(
        get(&m, "rafka_connections_open", &[]) >= 1.0,
        "the raw connection"
    );
    // acks=all under `fsync: on_ack_all` waited for fsyncs.
    assert!(get(&m, "rafka_fsync_total", &[]) >= 1.0);
    assert!(get(&m, "rafka_fsync_duration_seconds_count", &[]) >= 1.0);
    assert_eq!(get(&m, "rafka_storage_info", &[("engine", "log")]), 1.0);
    assert!(get(&m, "rafka_storage_bytes", &[]) >= size);
    assert!(get(&m, "rafka_process_resident_memory_bytes", &[]) > 1e6);
    assert!(get(&m, "rafka_process_open_fds", &[]) >= 3.0);

    // Every metric the Grafana dashboard plots is one the broker serves.
    let dashboard = include_str!("../../docs/grafana/rafka.json");
    let served: std::collections::BTreeSet<&str> = m.keys().map(|(n, _)| n.as_str()).collect();
    let mut plotted = 0;
    for (i, _) in dashboard.match_indices("rafka_") {
        let name: String = dashboard[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name == "rafka_" {
            continue; // not a metric name (e.g. a uid)
        }
        assert!(
            served.contains(name.as_str()),
            "dashboard plots unknown {name}"
        );
        plotted += 1;
    }
    assert!(plotted >= 14, "the dashboard plots {plotted} series");

    broker.shutdown().await.expect("clean shutdown");
}

#[test]
fn the_parser_rejects_what_prometheus_would() {
    let ok =
        "# HELP rafka_x_total X.\n# TYPE rafka_x_total counter\nrafka_x_total{a=\"q\\\"\\n\"} 3\n";
    let m = parse_exposition(ok);
    let labels = BTreeMap::from([("a".to_string(), "q\"\n".to_string())]);
    assert_eq!(m[&("rafka_x_total".to_string(), labels)], 3.0);
    for bad in [
        "rafka_x_total 1\n",
        "# HELP rafka_x_total X.\n# TYPE rafka_x_total counter\nrafka_x_total{a=q} 1\n",
        "# HELP rafka_x_total X.\n# TYPE rafka_x_total counter\nrafka_x_total one\n",
        "# HELP rafka_x X.\n# TYPE rafka_x counter\nrafka_x 1\n",
    ] {
        assert!(
            std::panic::catch_unwind(|| parse_exposition(bad)).is_err(),
            "accepted {bad:?}"
        );
    }
}

/// The transaction figures: open transactions, commits, aborts, aborts the coordinator
/// began (a new instance fencing the open transaction), and the LSO lag an open
/// transaction holds on its partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_metrics_follow_commits_aborts_and_the_lso() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker_with(dir.path(), |c| c.admin.listen = "127.0.0.1:0".into()).await;
    let addr = broker.bootstrap_address();
    let admin = broker.admin_address().expect("admin endpoint is on");
    create_topic(&addr, "tx-metered", 1, &[]).await;
    let t = Duration::from_secs(10);
    let txn_producer = move |bootstrap: String| {
        let p: BaseProducer = client_config(&bootstrap)
            .set("transactional.id", "tx-metered-id")
            .create()
            .expect("producer");
        p.init_transactions(t).expect("init_transactions");
        p
    };
    let send = move |p: &BaseProducer, n: usize| {
        for i in 0..n {
            p.send(
                BaseRecord::to("tx-metered")
                    .partition(0)
                    .key(&format!("k{i}"))
                    .payload("v"),
            )
            .map_err(|(e, _)| e)
            .expect("enqueued");
        }
        p.flush(t).expect("flushed");
    };
    let a = addr.clone();
    // Committed: 2 records + marker (0..=2); aborted: 1 + marker (3..=4); open: 3 (5..=7).
    let old = tokio::task::spawn_blocking(move || {
        let p = txn_producer(a);
        p.begin_transaction().unwrap();
        send(&p, 2);
        p.commit_transaction(t).unwrap();
        p.begin_transaction().unwrap();
        send(&p, 1);
        p.abort_transaction(t).unwrap();
        p.begin_transaction().unwrap();
        send(&p, 3);
        p
    })
    .await
    .unwrap();
    let part = [("topic", "tx-metered"), ("partition", "0")];
    let scrape = || async {
        let (status, _, text) = http(admin, "GET", "/metrics").await;
        assert_eq!(status, 200);
        parse_exposition(&text)
    };
    let figures = |m: &BTreeMap<Key, f64>| {
        (
            get(m, "rafka_transactions_ongoing", &[]),
            get(m, "rafka_transaction_commits_total", &[]),
            get(m, "rafka_transaction_aborts_total", &[]),
            get(m, "rafka_transaction_coordinator_aborts_total", &[]),
            get(m, "rafka_partition_lso_lag", &part),
        )
    };
    let m = scrape().await;
    assert_eq!(figures(&m), (1.0, 1.0, 1.0, 0.0, 3.0));
    assert_eq!(get(&m, "rafka_partition_log_end_offset", &part), 8.0);

    // A new instance fences the open transaction: the coordinator aborts it.
    let a = addr.clone();
    let new = tokio::task::spawn_blocking(move || txn_producer(a))
        .await
        .unwrap();
    let deadline = Instant::now() + t;
    let mut m = scrape().await;
    while figures(&m) != (0.0, 1.0, 2.0, 1.0, 0.0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        m = scrape().await;
    }
    assert_eq!(figures(&m), (0.0, 1.0, 2.0, 1.0, 0.0));
    // The abort marker follows the open transaction's records.
    assert_eq!(get(&m, "rafka_partition_log_end_offset", &part), 9.0);
    drop((old, new));
    broker.shutdown().await.unwrap();
}

/// The cleaner figures after a compaction: runs, bytes read and written and records removed
/// move, the compacted partition's dirty ratio drops from 1 (nothing clean yet) once the
/// cleaner has run, its clean and dirty bytes add up to its size, and an uncompacted topic
/// has no cleaner series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleaner_metrics_move_after_a_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker_with(dir.path(), |c| {
        c.admin.listen = "127.0.0.1:0".into();
        c.broker.log_cleaner_backoff_ms = 200;
    })
    .await;
    let addr = broker.bootstrap_address();
    let admin = broker.admin_address().expect("admin endpoint is on");
    create_topic(
        &addr,
        "cleaned-metered",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "100"),
            ("min.cleanable.dirty.ratio", "0.1"),
        ],
    )
    .await;
    create_topic(&addr, "plain-metered", 1, &[]).await;
    let part = [("topic", "cleaned-metered"), ("partition", "0")];
    let scrape = || async {
        let (status, _, text) = http(admin, "GET", "/metrics").await;
        assert_eq!(status, 200);
        parse_exposition(&text)
    };
    let m = scrape().await;
    assert_eq!(get(&m, "rafka_log_cleaner_runs_total", &[]), 0.0);
    assert_eq!(get(&m, "rafka_log_cleaner_bytes_read_total", &[]), 0.0);
    assert_eq!(get(&m, "rafka_partition_dirty_ratio", &part), 0.0, "empty");
    assert!(!m.contains_key(&(
        "rafka_partition_dirty_ratio".to_string(),
        [("topic", "plain-metered"), ("partition", "0")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    )));

    let p = producer(&addr, &[("linger.ms", "5")]);
    let send = |i: usize| {
        let key = format!("k{}", i % 10);
        let value = format!("v{i}");
        let p = p.clone();
        async move {
            p.send(
                FutureRecord::to("cleaned-metered")
                    .key(&key)
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await
            .expect("delivered");
        }
    };
    for i in 0..500 {
        send(i).await;
    }
    let m = scrape().await;
    let size = get(&m, "rafka_partition_size_bytes", &part);
    assert!(size > 0.0);
    if get(&m, "rafka_log_cleaner_runs_total", &[]) == 0.0 {
        assert_eq!(get(&m, "rafka_partition_dirty_ratio", &part), 1.0);
        assert_eq!(get(&m, "rafka_partition_dirty_bytes", &part), size);
    }
    // `segment.ms` is 100: a later record rolls the segment, so all of it is cleanable.
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(500).await;

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut m = scrape().await;
    let settled = |m: &BTreeMap<Key, f64>| {
        get(m, "rafka_partition_dirty_ratio", &part) < 0.5
            && get(m, "rafka_log_cleaner_records_removed_total", &[]) >= 480.0
    };
    while !settled(&m) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        m = scrape().await;
    }
    let ratio = get(&m, "rafka_partition_dirty_ratio", &part);
    assert!(ratio < 0.5, "dirty ratio {ratio} after compaction");
    assert!(get(&m, "rafka_log_cleaner_runs_total", &[]) >= 1.0);
    assert!(get(&m, "rafka_log_cleaner_bytes_read_total", &[]) > 0.0);
    assert!(get(&m, "rafka_log_cleaner_bytes_written_total", &[]) > 0.0);
    // 500 updates over 10 keys: at least 480 are older values.
    assert!(get(&m, "rafka_log_cleaner_records_removed_total", &[]) >= 480.0);
    assert!(get(&m, "rafka_log_cleaner_seconds_total", &[]) > 0.0);
    assert_eq!(get(&m, "rafka_log_cleaner_errors_total", &[]), 0.0);
    assert_eq!(
        get(&m, "rafka_log_cleaner_last_error_timestamp_seconds", &[]),
        0.0
    );
    // The cleaner chose the partition while all of it was dirty.
    assert!(get(&m, "rafka_log_cleaner_max_dirty_percent", &[]) >= 10.0);
    let clean = get(&m, "rafka_partition_clean_bytes", &part);
    let dirty = get(&m, "rafka_partition_dirty_bytes", &part);
    assert!(clean > 0.0);
    assert_eq!(clean + dirty, get(&m, "rafka_partition_size_bytes", &part));
    let cleaned_at = get(&m, "rafka_partition_last_cleaned_timestamp_seconds", &part);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(cleaned_at > now - 60.0 && cleaned_at <= now + 1.0);
    drop(p);
    broker.shutdown().await.unwrap();
}

/// `log_cleaner_io_max_bytes_per_second` holds the cleaner back: three partitions of ~5 KB
/// each to compact at 4 KB/s take the workers seconds, the throttle waiting between
/// compactions for the bytes already moved; the figures say how many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cleaner_io_limit_spreads_compactions_out() {
    const RATE: f64 = 4096.0;
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker_with(dir.path(), |c| {
        c.admin.listen = "127.0.0.1:0".into();
        c.broker.log_cleaner_backoff_ms = 50;
        c.broker.log_cleaner_io_max_bytes_per_second = RATE;
    })
    .await;
    let addr = broker.bootstrap_address();
    let admin = broker.admin_address().expect("admin endpoint is on");
    create_topic(
        &addr,
        "throttled",
        3,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "100"),
            ("min.cleanable.dirty.ratio", "0.1"),
        ],
    )
    .await;
    let p = producer(&addr, &[("linger.ms", "5")]);
    let mut sent = Vec::new();
    for i in 0..300 {
        for partition in 0..3 {
            sent.push(
                p.send_result(
                    FutureRecord::to("throttled")
                        .partition(partition)
                        .key(&format!("k{}", i % 5))
                        .payload(&format!("v{i}")),
                )
                .expect("queued"),
            );
        }
    }
    for f in sent {
        f.await.expect("delivered").expect("acknowledged");
    }
    // `segment.ms` is 100: a later record rolls each segment, so all of it is cleanable.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let scrape = || async {
        let (status, _, text) = http(admin, "GET", "/metrics").await;
        assert_eq!(status, 200);
        parse_exposition(&text)
    };
    let moved = |m: &BTreeMap<Key, f64>| {
        get(m, "rafka_log_cleaner_bytes_read_total", &[])
            + get(m, "rafka_log_cleaner_bytes_written_total", &[])
    };
    let m0 = scrape().await;
    let largest = ["0", "1", "2"]
        .iter()
        .map(|p| {
            get(
                &m0,
                "rafka_partition_size_bytes",
                &[("topic", "throttled"), ("partition", p)],
            )
        })
        .fold(0.0, f64::max);
    let started = Instant::now();
    for partition in 0..3 {
        p.send(
            FutureRecord::to("throttled")
                .partition(partition)
                .key("k0")
                .payload("last"),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered");
    }
    let ratio = |m: &BTreeMap<Key, f64>, partition: &str| {
        get(
            m,
            "rafka_partition_dirty_ratio",
            &[("topic", "throttled"), ("partition", partition)],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut m = scrape().await;
    while ["0", "1", "2"].iter().any(|p| ratio(&m, p) >= 0.5) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        m = scrape().await;
    }
    let took = started.elapsed();
    for partition in ["0", "1", "2"] {
        assert!(
            ratio(&m, partition) < 0.5,
            "partition {partition} compacted"
        );
    }
    let after = moved(&m) - moved(&m0);
    let runs = get(&m, "rafka_log_cleaner_runs_total", &[]);
    // The last compaction moves at most its partition's bytes three times (read for the
    // map, read and written by the copy); everything moved before it was waited for.
    let at_least = Duration::from_secs_f64(((after - 3.0 * largest) / RATE).max(0.0) * 0.9);
    println!(
        "cleaner io limit {RATE} B/s: {runs} compactions; {after} bytes moved after the last records in {took:?} (the throttle asks at least {at_least:?})"
    );
    assert!(after > 0.0);
    assert!(took >= at_least, "{took:?} < {at_least:?}");
    drop(p);
    broker.shutdown().await.unwrap();
}
