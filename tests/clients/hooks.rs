//! Hooks end to end: every built-in hook configured from YAML and driven by librdkafka,
//! compressed batches through record-modifying hooks, custom Rust hooks (a panicking one,
//! two applied in order), and the record index of an invalid JSON record on the wire.

use crate::common;
use crate::support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as RdHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use rafka_broker::rafka_hooks::{
    Hook, HookResult, Interest, RecordSet, RequestContext, Stages, TopicFilter, Verdict,
};
use rafka_broker::{Broker, Config};
use rafka_core::batch::{BatchBuilder, SimpleRecord};
use rafka_core::{CompressionType, Offset, RecordBatch, Timestamp, TopicPartition};

use support::{admin, consume, create_topic, producer, Received};

/// A broker from YAML (the `hooks:` section as an operator writes it) plus custom hooks.
async fn start(dir: &Path, yaml: &str, custom: Vec<Arc<dyn Hook>>) -> Broker {
    support::log_to_test_output();
    let mut cfg = Config::from_yaml(yaml).expect("config parses");
    cfg.broker.listen = "127.0.0.1:0".into();
    // A config file turns the admin endpoint on at 9644: tests take a free port.
    cfg.admin.listen = "127.0.0.1:0".into();
    cfg.storage.path = dir.join("data");
    let mut b = Broker::builder().config(cfg);
    for h in custom {
        b = b.hook_arc(h);
    }
    b.start().await.expect("broker starts")
}

async fn send(p: &FutureProducer, topic: &str, value: &str) -> Result<(i32, i64), KafkaError> {
    send_with(p, topic, value, OwnedHeaders::new()).await
}

async fn send_with(
    p: &FutureProducer,
    topic: &str,
    value: &str,
    headers: OwnedHeaders,
) -> Result<(i32, i64), KafkaError> {
    let r = FutureRecord::<str, str>::to(topic)
        .payload(value)
        .partition(0)
        .headers(headers);
    p.send(r, Duration::from_secs(20))
        .await
        .map(|d| (d.partition, d.offset))
        .map_err(|(e, _)| e)
}

async fn read(bootstrap: &str, topic: &str, n: usize) -> Vec<Received> {
    let (b, t) = (bootstrap.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || consume(&b, &t, 1, n, Duration::from_secs(20)))
        .await
        .unwrap()
}

fn value_of(r: &Received) -> String {
    String::from_utf8(r.value.clone().unwrap_or_default()).unwrap()
}

fn header<'a>(r: &'a Received, key: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.as_deref())
        .map(|v| std::str::from_utf8(v).unwrap())
}

/// The batches stored in partition 0 of `topic`, read from the log (not through hooks).
fn stored(broker: &Broker, topic: &str) -> Vec<RecordBatch> {
    let t = broker.shared().cluster.topic(topic).expect("topic exists");
    let r = t.partitions[0]
        .read(
            Offset(0),
            16 * 1024 * 1024,
            rafka_broker::IsolationLevel::ReadUncommitted,
        )
        .unwrap();
    RecordBatch::split_all(r.records).unwrap()
}

fn code_of(e: &KafkaError) -> Option<RDKafkaErrorCode> {
    match e {
        KafkaError::MessageProduction(c) => Some(*c),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_policy_refuses_names_and_partition_counts_with_policy_violation() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "hooks:\n\
                - type: topic_policy\n  allowed: ['orders-.*', 'tmp-.*']\n  denied: ['tmp-.*']\n  \
                max_partitions: 4\n  required_configs: [retention.ms]\n";
    let broker = start(dir.path(), yaml, vec![]).await;
    let addr = broker.bootstrap_address();
    let admin = admin(&addr);
    let opts = AdminOptions::new();
    let topic = |name: &'static str, n: i32| {
        NewTopic::new(name, n, TopicReplication::Fixed(1)).set("retention.ms", "60000")
    };
    for (name, n) in [("tmp-scratch", 1), ("payments", 1), ("orders-big", 8)] {
        let res = admin.create_topics(&[topic(name, n)], &opts).await.unwrap();
        assert_eq!(
            res[0],
            Err((name.to_string(), RDKafkaErrorCode::PolicyViolation)),
            "{name}"
        );
    }
    let no_config = NewTopic::new("orders-bare", 1, TopicReplication::Fixed(1));
    let res = admin.create_topics(&[no_config], &opts).await.unwrap();
    assert_eq!(
        res[0],
        Err(("orders-bare".into(), RDKafkaErrorCode::PolicyViolation))
    );
    let res = admin
        .create_topics(&[topic("orders-eu", 2)], &opts)
        .await
        .unwrap();
    assert_eq!(res[0], Ok("orders-eu".to_string()));
    // Produce passes for an allowed topic; a denied one is never auto-created.
    let p = producer(&addr, &[("message.timeout.ms", "3000")]);
    send(&p, "orders-eu", "x").await.expect("allowed topic");
    assert!(send(&p, "tmp-auto", "x").await.is_err());
    assert!(broker.shared().cluster.topic("tmp-auto").is_none());
    assert!(broker.shared().cluster.topic("tmp-scratch").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_json_refuses_invalid_records_with_invalid_record_and_their_index() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("order.json");
    std::fs::write(&schema, r#"{"type":"object","required":["id"]}"#).unwrap();
    let yaml = format!(
        "hooks:\n- type: validate_json\n  topics: ['orders']\n  schema: {}\n",
        schema.display()
    );
    let broker = start(dir.path(), &yaml, vec![]).await;
    let addr = broker.bootstrap_address();
    create_topic(&addr, "orders", 1, &[]).await;
    create_topic(&addr, "free", 1, &[]).await;
    let p = producer(&addr, &[("message.timeout.ms", "5000")]);
    send(&p, "orders", r#"{"id":1}"#).await.expect("valid JSON");
    let e = send(&p, "orders", "{oops").await.unwrap_err();
    assert_eq!(code_of(&e), Some(RDKafkaErrorCode::InvalidRecord), "{e}");
    let e = send(&p, "orders", r#"{"no_id":1}"#).await.unwrap_err();
    assert_eq!(code_of(&e), Some(RDKafkaErrorCode::InvalidRecord), "{e}");
    send(&p, "orders", r#"{"id":2}"#).await.expect("valid JSON");
    send(&p, "free", "not json").await.expect("unmatched topic");
    let got = read(&addr, "orders", 2).await;
    assert_eq!(
        got.iter().map(value_of).collect::<Vec<_>>(),
        [r#"{"id":1}"#, r#"{"id":2}"#]
    );

    // On the wire: the offending record's index, and nothing of the batch written.
    let mut conn = common::KafkaConn::connect(&addr).await;
    let mut b = BatchBuilder::new(Offset(0));
    for v in [r#"{"id":3}"#, "nope", r#"{"id":4}"#] {
        b = b.kv(b"k", v.as_bytes(), Timestamp(1));
    }
    let r = common::produce(&mut conn, "orders", 0, b.build().into_bytes()).await;
    assert_eq!(r.error_code, 87, "INVALID_RECORD");
    assert_eq!(r.record_errors.len(), 1);
    assert_eq!(r.record_errors[0].batch_index, 1);
    assert!(r.error_message.unwrap().contains("not valid JSON"));
    assert_eq!(stored(&broker, "orders").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_headers_and_redact_work_on_every_codec() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "hooks:\n\
                - type: add_headers\n  topics: ['h-.*']\n  headers: {source: rafka}\n  \
                client_id_header: rafka.client.id\n  receive_time_header: rafka.received.ms\n\
                - type: redact\n  topics: ['users-.*']\n  fields: [ssn]\n";
    let broker = start(dir.path(), yaml, vec![]).await;
    let addr = broker.bootstrap_address();
    let before = Timestamp::now().0;
    for (codec, stored_as) in [
        ("none", CompressionType::None),
        ("gzip", CompressionType::Gzip),
        ("lz4", CompressionType::Lz4),
        ("zstd", CompressionType::Zstd),
    ] {
        let (h, u, plain) = (
            format!("h-{codec}"),
            format!("users-{codec}"),
            format!("plain-{codec}"),
        );
        for t in [&h, &u, &plain] {
            create_topic(&addr, t, 1, &[]).await;
        }
        let p = producer(
            &addr,
            &[("compression.type", codec), ("client.id", "hook-test")],
        );
        let mut futures = Vec::new();
        for i in 0..20 {
            let v = format!(
                r#"{{"n":{i},"ssn":"123-45-{i}","pad":"{}"}}"#,
                "x".repeat(50)
            );
            let mine = OwnedHeaders::new().insert(RdHeader {
                key: "mine",
                value: Some("1"),
            });
            for t in [&h, &u, &plain] {
                let r = FutureRecord::<str, str>::to(t)
                    .payload(&v)
                    .partition(0)
                    .headers(mine.clone());
                futures.push(p.send_result(r).expect("queued"));
            }
        }
        for f in futures {
            f.await.unwrap().expect("delivered");
        }
        // Headers were added at produce time, in the batch's own codec.
        let got = read(&addr, &h, 20).await;
        assert_eq!(got.len(), 20, "{codec}");
        for (i, r) in got.iter().enumerate() {
            assert_eq!(header(r, "mine"), Some("1"));
            assert_eq!(header(r, "source"), Some("rafka"));
            assert_eq!(header(r, "rafka.client.id"), Some("hook-test"));
            let t: i64 = header(r, "rafka.received.ms").unwrap().parse().unwrap();
            assert!(t >= before, "{codec}");
            assert!(value_of(r).contains(&format!(r#""n":{i},"#)));
        }
        for b in stored(&broker, &h) {
            b.validate().unwrap();
            assert_eq!(b.compression(), stored_as, "{codec}");
        }
        // Redacted on the way out, in full in the log and on the unmatched topic.
        let got = read(&addr, &u, 20).await;
        assert_eq!(got.len(), 20, "{codec}");
        for r in &got {
            let v: serde_json::Value = serde_json::from_str(&value_of(r)).unwrap();
            assert_eq!(v["ssn"], "***", "{codec}");
            assert_eq!(header(r, "mine"), Some("1"));
        }
        let got = read(&addr, &plain, 20).await;
        assert!(value_of(&got[3]).contains(r#""ssn":"123-45-3""#), "{codec}");
        if stored_as == CompressionType::None {
            let recs: Vec<SimpleRecord> = stored(&broker, &u)
                .iter()
                .flat_map(|b| b.decode_uncompressed().unwrap())
                .collect();
            let v = String::from_utf8(recs[3].value.clone().unwrap().to_vec()).unwrap();
            assert!(v.contains(r#""ssn":"123-45-3""#), "stored data unchanged");
        } else {
            for b in stored(&broker, &u) {
                assert_eq!(b.compression(), stored_as, "{codec}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_holds_a_line_per_produce_partition_and_admin_operation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let yaml = format!(
        "hooks:\n- type: audit_log\n  path: {}\n  max_bytes: 1048576\n",
        path.display()
    );
    let broker = start(dir.path(), &yaml, vec![]).await;
    let addr = broker.bootstrap_address();
    create_topic(&addr, "audited", 1, &[]).await;
    let p = producer(&addr, &[("client.id", "auditor"), ("linger.ms", "50")]);
    let futures: Vec<_> = (0..3)
        .map(|i| {
            let v = format!("v{i}");
            p.send_result(
                FutureRecord::<str, str>::to("audited")
                    .payload(&v)
                    .partition(0),
            )
            .expect("queued")
        })
        .collect();
    for f in futures {
        f.await.unwrap().expect("delivered");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let produced: u64 = lines
            .iter()
            .filter(|l| l["api"] == "Produce")
            .map(|l| l["records"].as_u64().unwrap())
            .sum();
        if produced >= 3 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let create = lines
        .iter()
        .find(|l| l["api"] == "CreateTopics")
        .expect("a CreateTopics line");
    assert_eq!(create["topic"], "audited");
    assert_eq!(create["outcome"], "ok");
    assert_eq!(create["partition"], serde_json::Value::Null);
    let produce: Vec<_> = lines.iter().filter(|l| l["api"] == "Produce").collect();
    assert!(!produce.is_empty());
    for l in &produce {
        assert_eq!(l["client_id"], "auditor");
        assert_eq!(l["topic"], "audited");
        assert_eq!(l["partition"], 0);
        assert_eq!(l["error_code"], 0);
        assert!(l["bytes"].as_u64().unwrap() > 0);
        assert!(l["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(l["time"].as_i64().unwrap() > 0);
    }
    let records: u64 = produce.iter().map(|l| l["records"].as_u64().unwrap()).sum();
    assert_eq!(records, 3);
}

/// Panics on a record whose value is "boom".
struct Panicky;

impl Hook for Panicky {
    fn name(&self) -> &str {
        "panicky"
    }
    fn interest(&self) -> Interest {
        Interest {
            stages: Stages::PRODUCE,
            topics: TopicFilter::All,
            record_access: true,
        }
    }
    fn on_produce(&self, _: &RequestContext, _: &TopicPartition, rs: &mut RecordSet) -> HookResult {
        if rs
            .records()
            .unwrap()
            .iter()
            .any(|r| r.value.as_deref() == Some(b"boom"))
        {
            panic!("custom hook bug");
        }
        Ok(Verdict::Continue)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_hook_answers_an_error_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), "", vec![Arc::new(Panicky)]).await;
    let addr = broker.bootstrap_address();
    create_topic(&addr, "t", 1, &[]).await;
    let p = producer(
        &addr,
        &[
            ("retries", "0"),
            ("linger.ms", "0"),
            ("message.timeout.ms", "5000"),
        ],
    );
    send(&p, "t", "first").await.expect("first");
    let e = send(&p, "t", "boom").await.unwrap_err();
    assert_eq!(code_of(&e), Some(RDKafkaErrorCode::Unknown), "{e}");
    let (_, offset) = send(&p, "t", "after").await.expect("next request succeeds");
    assert_eq!(offset, 1, "nothing of the rejected batch was written");
    let got = read(&addr, "t", 2).await;
    assert_eq!(
        got.iter().map(value_of).collect::<Vec<_>>(),
        ["first", "after"]
    );
}

/// Appends its tag to every value.
struct Tag(&'static str);

impl Hook for Tag {
    fn name(&self) -> &str {
        self.0
    }
    fn interest(&self) -> Interest {
        Interest {
            stages: Stages::PRODUCE,
            topics: TopicFilter::All,
            record_access: true,
        }
    }
    fn on_produce(&self, _: &RequestContext, _: &TopicPartition, rs: &mut RecordSet) -> HookResult {
        for r in rs.records_mut().unwrap() {
            let mut v = r.value.as_deref().unwrap_or_default().to_vec();
            v.extend_from_slice(self.0.as_bytes());
            r.value = Some(Bytes::from(v));
        }
        Ok(Verdict::Continue)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hooks_modifying_a_record_apply_in_configured_order() {
    let dir = tempfile::tempdir().unwrap();
    // YAML hooks first (add_headers), then the Rust hooks in the order added.
    let yaml = "hooks:\n- type: add_headers\n  headers: {first: yaml}\n";
    let broker = start(
        dir.path(),
        yaml,
        vec![Arc::new(Tag("-a")), Arc::new(Tag("-b"))],
    )
    .await;
    let addr = broker.bootstrap_address();
    create_topic(&addr, "ordered", 1, &[]).await;
    let p = producer(&addr, &[("compression.type", "lz4")]);
    send(&p, "ordered", "v").await.unwrap();
    let got = read(&addr, "ordered", 1).await;
    assert_eq!(value_of(&got[0]), "v-a-b");
    assert_eq!(header(&got[0], "first"), Some("yaml"));
    assert_eq!(broker.shared().hooks.names(), ["add_headers", "-a", "-b"]);
}

/// Refuses the group APIs of anonymous principals, and records the sessions it saw.
struct NoAnonymousGroups(std::sync::Mutex<Vec<String>>);

impl Hook for NoAnonymousGroups {
    fn name(&self) -> &str {
        "no_anonymous_groups"
    }
    fn interest(&self) -> Interest {
        Interest {
            stages: Stages::REQUEST,
            topics: TopicFilter::All,
            record_access: false,
        }
    }
    fn on_request(&self, ctx: &RequestContext) -> HookResult {
        use rafka_broker::rafka_hooks::{Api, ErrorCode, Rejection};
        let s = &ctx.session;
        self.0.lock().unwrap().push(format!(
            "{} {} {} {}",
            s.listener,
            s.security_protocol.name(),
            s.principal,
            s.peer == ctx.peer
        ));
        match ctx.api {
            Api::JoinGroup | Api::Heartbeat | Api::DeleteGroups => Ok(Verdict::Reject(Rejection {
                code: ErrorCode(30), // GROUP_AUTHORIZATION_FAILED
                message: format!("{} may not use groups", s.principal),
                record_errors: Vec::new(),
            })),
            _ => Ok(Verdict::Continue),
        }
    }
}

/// A refusal in `on_request` is answered in the API's own error fields for every API (once
/// JoinGroup, Heartbeat and DeleteGroups had none, and the connection was closed), and the
/// hook sees the connection's session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_of_any_api_gets_its_error_answer_and_the_connection_goes_on() {
    use kafka_protocol::messages::{
        ApiKey, DeleteGroupsRequest, GroupId, HeartbeatRequest, JoinGroupRequest, RequestKind,
        ResponseKind,
    };
    use kafka_protocol::protocol::StrBytes;
    let dir = tempfile::tempdir().unwrap();
    let hook = Arc::new(NoAnonymousGroups(Default::default()));
    let broker = start(dir.path(), "", vec![hook.clone()]).await;
    let addr = broker.bootstrap_address().to_string();
    let mut conn = common::KafkaConn::connect(&addr).await;
    let g = || GroupId(StrBytes::from_static_str("g"));
    let join = JoinGroupRequest::default()
        .with_group_id(g())
        .with_session_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"));
    for version in [0, 5, 9] {
        match conn
            .send(
                ApiKey::JoinGroup,
                version,
                RequestKind::JoinGroup(join.clone()),
            )
            .await
        {
            ResponseKind::JoinGroup(r) => {
                assert_eq!((r.error_code, r.generation_id), (30, -1), "v{version}")
            }
            other => panic!("{other:?}"),
        }
    }
    let hb = HeartbeatRequest::default().with_group_id(g());
    match conn
        .send(ApiKey::Heartbeat, 4, RequestKind::Heartbeat(hb))
        .await
    {
        ResponseKind::Heartbeat(r) => assert_eq!(r.error_code, 30),
        other => panic!("{other:?}"),
    }
    let del = DeleteGroupsRequest::default().with_groups_names(vec![g()]);
    match conn
        .send(ApiKey::DeleteGroups, 2, RequestKind::DeleteGroups(del))
        .await
    {
        ResponseKind::DeleteGroups(r) => {
            assert_eq!(r.results.len(), 1);
            assert_eq!(
                (&*r.results[0].group_id.0, r.results[0].error_code),
                ("g", 30)
            );
        }
        other => panic!("{other:?}"),
    }
    // The connection is still served.
    let md = common::metadata(&mut conn, None).await;
    assert_eq!(md.brokers.len(), 1);
    let seen = hook.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert!(
        seen.iter()
            .all(|s| s == "PLAINTEXT PLAINTEXT User:ANONYMOUS true"),
        "{seen:?}"
    );
}
