//! librdkafka against the ACL authorizer: alice (SASL PLAIN) may read and describe topic
//! `t` but neither write it nor READ her group. Her producer's records fail with
//! TOPIC_AUTHORIZATION_FAILED and none is written; her group consumer sees
//! GROUP_AUTHORIZATION_FAILED and receives nothing. The operator (a super user on the
//! plaintext listener) then grants WRITE, and alice's next record is written; with group
//! READ granted too, her group consumer reads it and commits.
//! Denials show in `rafka_authorization_failures_total` and in the `audit_log` hook's file.

use std::time::{Duration, Instant};

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::{ApiKey, CreateAclsRequest, RequestKind, ResponseKind};
use rafka_broker::ScramUserConfig;
use rafka_broker::{Broker, BrokerConfig, Config, ListenerConfig, SaslMechanism, SecurityProtocol};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use crate::common::{create_topic, log_end_offset, str_bytes, KafkaConn};
use crate::support;

pub(crate) const STANDARD_AUTHORIZER: &str =
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer";

pub(crate) fn listener(name: &str, protocol: SecurityProtocol) -> ListenerConfig {
    ListenerConfig {
        name: name.into(),
        listen: "127.0.0.1:0".into(),
        advertised: None,
        security_protocol: protocol,
        ssl: None,
        sasl_enabled_mechanisms: (protocol == SecurityProtocol::SaslPlaintext)
            .then(|| vec![SaslMechanism::Plain]),
    }
}

async fn start(dir: &std::path::Path) -> Broker {
    support::log_to_test_output();
    let mut cfg = Config::default();
    cfg.storage.path = dir.join("data");
    let audit = format!(
        "hooks:\n- type: audit_log\n  path: {}\n",
        dir.join("audit.log").display()
    );
    cfg.hooks = Config::from_yaml(&audit).unwrap().hooks;
    cfg.admin.listen = "127.0.0.1:0".into();
    with_alice(&mut cfg.broker);
    Broker::start(cfg).await.expect("broker starts")
}

/// A LOCAL plaintext listener (the operator, `User:ANONYMOUS`, a super user) and a SECURE
/// SASL PLAIN one where alice (password `alice-secret`) logs in; Kafka's standard authorizer.
pub(crate) fn with_alice(broker: &mut BrokerConfig) {
    broker.listeners = vec![
        listener("LOCAL", SecurityProtocol::Plaintext),
        listener("SECURE", SecurityProtocol::SaslPlaintext),
    ];
    broker.authorizer_class_name = STANDARD_AUTHORIZER.into();
    broker.super_users = vec!["User:ANONYMOUS".into()];
    broker.scram_users = vec![ScramUserConfig {
        name: "alice".into(),
        password: "alice-secret".into(),
        mechanisms: vec!["SCRAM-SHA-256".into()],
        iterations: 4096,
    }];
}

/// The operator allows alice `op` (Kafka's code) on the topic or group `name`.
pub(crate) async fn allow(admin: &mut KafkaConn, resource_type: i8, name: &str, op: i8) {
    let creation = AclCreation::default()
        .with_resource_type(resource_type)
        .with_resource_name(str_bytes(name))
        .with_resource_pattern_type(3)
        .with_principal(str_bytes("User:alice"))
        .with_host(str_bytes("*"))
        .with_operation(op)
        .with_permission_type(3);
    let req = CreateAclsRequest::default().with_creations(vec![creation]);
    match admin
        .send(ApiKey::CreateAcls, 3, RequestKind::CreateAcls(req))
        .await
    {
        ResponseKind::CreateAcls(r) => assert_eq!(r.results[0].error_code, 0),
        other => panic!("{other:?}"),
    }
}

/// A raw connection to `addr` authenticated as `user` (password `<user>-secret`) with PLAIN.
pub(crate) async fn login_plain(addr: &str, user: &str) -> KafkaConn {
    let mut c = KafkaConn::connect(addr).await;
    c.authenticate_plain(user, &format!("{user}-secret")).await;
    c
}

fn alice(broker: &Broker) -> ClientConfig {
    let addr = broker.listener_address("SECURE").unwrap().to_string();
    let mut c = support::client_config(&addr);
    c.set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanism", "PLAIN")
        .set("sasl.username", "alice")
        .set("sasl.password", "alice-secret");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_sees_topic_and_group_authorization_failures() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let local = broker.listener_address("LOCAL").unwrap().to_string();
    let mut admin = KafkaConn::connect(&local).await;
    assert_eq!(create_topic(&mut admin, "t", 1, &[]).await, 0);
    // READ implies DESCRIBE: alice sees the topic, may fetch it, may not write it.
    allow(&mut admin, 2, "t", 3).await;

    let producer: FutureProducer = alice(&broker)
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap();
    let sent = producer
        .send(
            FutureRecord::to("t").key("k").payload("refused"),
            Duration::from_secs(10),
        )
        .await;
    match sent {
        Err((KafkaError::MessageProduction(code), _)) => {
            assert_eq!(code, RDKafkaErrorCode::TopicAuthorizationFailed)
        }
        other => panic!("want TOPIC_AUTHORIZATION_FAILED, got {other:?}"),
    }
    assert_eq!(
        log_end_offset(&mut admin, "t", 0).await,
        0,
        "nothing written"
    );

    // A group consumer without READ on its group.
    let consumer: BaseConsumer = alice(&broker)
        .set("group.id", "g")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["t"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "no GROUP_AUTHORIZATION_FAILED; saw {seen:?}"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Err(e)) => {
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::GroupAuthorizationFailed) {
                    break;
                }
                seen.push(e.to_string());
            }
            Some(Ok(m)) => panic!("a record reached a consumer without group READ: {m:?}"),
            None => {}
        }
    }
    drop(consumer);

    // With WRITE, a producer's record is written (a new one: librdkafka keeps a topic's
    // authorization error until its next metadata refresh).
    allow(&mut admin, 2, "t", 4).await;
    drop(producer);
    let producer: FutureProducer = alice(&broker)
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap();
    let delivery = producer
        .send(
            FutureRecord::to("t").key("k").payload("allowed"),
            Duration::from_secs(10),
        )
        .await
        .expect("written once WRITE is granted");
    assert_eq!((delivery.partition, delivery.offset), (0, 0));
    assert_eq!(log_end_offset(&mut admin, "t", 0).await, 1);

    // With READ on the group too, a group consumer joins, reads the record and commits.
    allow(&mut admin, 3, "g", 3).await;
    let consumer: BaseConsumer = alice(&broker)
        .set("group.id", "g")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&["t"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let value = loop {
        assert!(Instant::now() < deadline, "no record with group READ");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => break rdkafka::Message::payload(&m).map(|p| p.to_vec()),
            Some(Err(e)) => panic!("{e}"),
            None => {}
        }
    };
    assert_eq!(value.as_deref(), Some(&b"allowed"[..]));
    consumer
        .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
        .expect("commit with group READ and topic READ");
    drop(consumer);

    let admin_addr = broker.admin_address().unwrap();
    let (status, _, metrics) = crate::metrics::http(admin_addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    for (api, rt) in [("Produce", "Topic"), ("FindCoordinator", "Group")] {
        let line =
            format!("rafka_authorization_failures_total{{api=\"{api}\",resource_type=\"{rt}\"}}");
        assert!(metrics.contains(&line), "{line} missing from\n{metrics}");
    }
    broker.shutdown().await.unwrap();
    // The audit log records the denial: alice's produce answered TOPIC_AUTHORIZATION_FAILED.
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    let denied = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["api"] == "Produce" && l["error_code"] == 29)
        .collect::<Vec<_>>();
    assert!(!denied.is_empty(), "{audit}");
    assert!(denied
        .iter()
        .all(|l| l["principal"] == "User:alice" && l["topic"] == "t"));
}
