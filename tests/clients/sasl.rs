//! librdkafka over SASL: `SASL_SSL` with SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN, and
//! `SASL_PLAINTEXT`, each producing, consuming and running a consumer group with records
//! exact, every request seen by hooks under the authenticated principal; the refusals (a
//! wrong password, an unknown user, a mechanism the listener does not offer), each within a
//! bound while another client is served; and KIP-368 re-authentication, which librdkafka
//! does on its own when the broker gives a session lifetime.

use crate::support;
use crate::tls::{consume, expected, produce, Pki, Principals};

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rafka_broker::{
    Broker, Config, ListenerConfig, ListenerSslConfig, SaslMechanism, ScramUserConfig,
    SecurityProtocol,
};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;

/// The bound on a refusal (the failed-authentication delay is 100 ms).
const REFUSAL_BOUND: Duration = Duration::from_secs(5);

/// Broker settings of one test.
struct Setup {
    protocol: SecurityProtocol,
    mechanisms: Vec<SaslMechanism>,
    reauth_ms: u64,
}

fn users() -> Vec<ScramUserConfig> {
    ["alice", "bob"]
        .into_iter()
        .map(|u| ScramUserConfig {
            name: u.into(),
            password: format!("{u}-secret"),
            mechanisms: vec!["SCRAM-SHA-256".into(), "SCRAM-SHA-512".into()],
            iterations: 4096,
        })
        .collect()
}

/// A broker with a SASL listener `SECURE` and a plaintext `LOCAL` (for set-up).
async fn start(dir: &Path, pki: &Pki, setup: &Setup, hook: Arc<Principals>) -> Broker {
    support::log_to_test_output();
    let mut cfg = Config::default();
    cfg.storage.path = dir.join("data");
    cfg.admin.listen = "127.0.0.1:0".into();
    cfg.broker.scram_users = users();
    cfg.broker.connections_max_reauth_ms = setup.reauth_ms;
    let audit = format!(
        "hooks:\n- type: audit_log\n  path: {}\n",
        dir.join("audit.log").display()
    );
    cfg.hooks = Config::from_yaml(&audit).unwrap().hooks;
    let ssl = (setup.protocol == SecurityProtocol::SaslSsl).then(|| ListenerSslConfig {
        certificate: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: None,
        client_auth: None,
        principal_mapping_rules: None,
    });
    cfg.broker.listeners = vec![
        ListenerConfig {
            name: "LOCAL".into(),
            listen: "127.0.0.1:0".into(),
            advertised: None,
            security_protocol: SecurityProtocol::Plaintext,
            ssl: None,
            sasl_enabled_mechanisms: None,
        },
        ListenerConfig {
            name: "SECURE".into(),
            listen: "127.0.0.1:0".into(),
            advertised: None,
            security_protocol: setup.protocol,
            ssl,
            sasl_enabled_mechanisms: Some(setup.mechanisms.clone()),
        },
    ];
    Broker::builder()
        .config(cfg)
        .hook_arc(hook)
        .start()
        .await
        .expect("broker starts")
}

/// A librdkafka config for the SASL listener.
fn sasl_client(
    broker: &Broker,
    pki: &Pki,
    protocol: SecurityProtocol,
    mechanism: &str,
    user: &str,
    password: &str,
) -> ClientConfig {
    let addr = broker.listener_address("SECURE").unwrap().to_string();
    let mut c = support::client_config(&addr);
    c.set("sasl.mechanism", mechanism)
        .set("sasl.username", user)
        .set("sasl.password", password);
    if protocol == SecurityProtocol::SaslSsl {
        c.set("security.protocol", "sasl_ssl")
            .set("ssl.ca.location", pki.ca.to_str().unwrap());
    } else {
        c.set("security.protocol", "sasl_plaintext");
    }
    c
}

/// Produce `n` records, read them back exactly, then a consumer group reads them all and
/// commits; the committed offset is read back over the plaintext listener.
async fn round_trip(protocol: SecurityProtocol, mechanism: SaslMechanism) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::write(dir.path());
    let hook = Arc::new(Principals(Mutex::new(Vec::new())));
    let setup = Setup {
        protocol,
        mechanisms: SaslMechanism::ALL.to_vec(),
        reauth_ms: 0,
    };
    let broker = start(dir.path(), &pki, &setup, hook.clone()).await;
    let local = broker.listener_address("LOCAL").unwrap().to_string();
    let topic = "sasl-roundtrip";
    support::create_topic(&local, topic, 1, &[]).await;
    let client = sasl_client(
        &broker,
        &pki,
        protocol,
        mechanism.name(),
        "alice",
        "alice-secret",
    );
    let n = 150;
    let started = Instant::now();
    let offsets = produce(&client, topic, n).await;
    println!(
        "{} over {protocol:?}: {n} records produced in {:?}",
        mechanism.name(),
        started.elapsed()
    );
    assert_eq!(offsets, (0..n as i64).collect::<Vec<_>>());
    let got = {
        let c = client.clone();
        tokio::task::spawn_blocking(move || consume(&c, topic, n))
            .await
            .unwrap()
    };
    assert_eq!(got, expected(n));
    // A consumer group over the SASL listener.
    let mut group = client.clone();
    group
        .set("group.id", "sasl-group")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000");
    let member =
        support::GroupMember::start(&group, topic, rdkafka::consumer::DefaultConsumerContext);
    support::wait_for(
        "the group to read every record",
        Duration::from_secs(30),
        || member.seen().len() >= n,
    )
    .await;
    let seen = member.stop();
    let want: Vec<(i32, i64, String)> =
        expected(n).into_iter().map(|(o, _, v)| (0, o, v)).collect();
    assert_eq!(seen, want);
    let committed = {
        let local = local.clone();
        tokio::task::spawn_blocking(move || {
            let c: BaseConsumer = support::client_config(&local)
                .set("group.id", "sasl-group")
                .create()
                .unwrap();
            let mut tpl = rdkafka::TopicPartitionList::new();
            tpl.add_partition(topic, 0);
            c.committed_offsets(tpl, Duration::from_secs(10)).unwrap()
        })
        .await
        .unwrap()
    };
    assert_eq!(
        committed.find_partition(topic, 0).unwrap().offset(),
        rdkafka::Offset::Offset(n as i64)
    );
    // Every request on the SASL listener ran as alice (hooks see no ApiVersions).
    let seen = hook.0.lock().unwrap().clone();
    let secure: Vec<&String> = seen.iter().filter(|l| l.starts_with("SECURE ")).collect();
    assert!(secure.len() > 10, "{secure:?}");
    let want = format!(
        "SECURE {} User:alice",
        if protocol == SecurityProtocol::SaslSsl {
            "SASL_SSL"
        } else {
            "SASL_PLAINTEXT"
        }
    );
    assert!(secure.iter().all(|l| **l == want), "{secure:?}");
    broker.shutdown().await.unwrap();
    // The audit log names the principal of each produce.
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    let produced: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &serde_json::Value| l["api"] == "Produce")
        .collect();
    assert!(!produced.is_empty(), "{audit}");
    for l in produced {
        assert_eq!(l["principal"], "User:alice", "{l}");
        assert_eq!(l["listener"], "SECURE", "{l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_512_over_sasl_ssl() {
    round_trip(SecurityProtocol::SaslSsl, SaslMechanism::ScramSha512).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_256_over_sasl_ssl() {
    round_trip(SecurityProtocol::SaslSsl, SaslMechanism::ScramSha256).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_over_sasl_ssl() {
    round_trip(SecurityProtocol::SaslSsl, SaslMechanism::Plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_512_over_sasl_plaintext() {
    round_trip(SecurityProtocol::SaslPlaintext, SaslMechanism::ScramSha512).await;
}

/// Errors librdkafka reports.
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<String>>>);

impl ClientContext for Errors {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.lock().unwrap().push(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Errors {}

/// Whether a Metadata request over `cfg` fails; the errors librdkafka reported.
async fn refused(cfg: ClientConfig) -> (bool, Vec<String>, Duration) {
    tokio::task::spawn_blocking(move || {
        let errors = Errors::default();
        let c: BaseConsumer<Errors> = cfg.create_with_context(errors.clone()).unwrap();
        let started = Instant::now();
        let failed = c.fetch_metadata(None, REFUSAL_BOUND).is_err();
        // The error callback is served by poll.
        let _ = c.poll(Duration::from_millis(200));
        let took = started.elapsed();
        let errs = errors.0.lock().unwrap().clone();
        (failed, errs, took)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_and_mechanisms_are_refused_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::write(dir.path());
    let hook = Arc::new(Principals(Mutex::new(Vec::new())));
    let p = SecurityProtocol::SaslSsl;
    let setup = Setup {
        protocol: p,
        mechanisms: vec![SaslMechanism::ScramSha512],
        reauth_ms: 0,
    };
    let broker = start(dir.path(), &pki, &setup, hook.clone()).await;
    for (mechanism, user, password, want) in [
        ("SCRAM-SHA-512", "alice", "wrong", "Authentication failed"),
        (
            "SCRAM-SHA-512",
            "mallory",
            "alice-secret",
            "Authentication failed",
        ),
        (
            "PLAIN",
            "alice",
            "alice-secret",
            "Unsupported SASL mechanism",
        ),
    ] {
        let (failed, errors, took) =
            refused(sasl_client(&broker, &pki, p, mechanism, user, password)).await;
        assert!(failed, "{mechanism} {user}: served");
        assert!(
            errors.iter().any(|e| e.contains(want)),
            "{mechanism} {user}: {errors:?}"
        );
        assert!(took < REFUSAL_BOUND + Duration::from_secs(1), "{took:?}");
        // Someone else is served meanwhile.
        let ok = sasl_client(&broker, &pki, p, "SCRAM-SHA-512", "bob", "bob-secret");
        let (failed, errors, _) = refused(ok).await;
        assert!(!failed, "bob refused: {errors:?}");
    }
    // Each refused client failed at least once (librdkafka tries again within the bound);
    // bob authenticated each time.
    assert!(sasl_total(&broker, "failed").await >= 3);
    assert!(sasl_total(&broker, "authenticated").await >= 3);
    // Nothing was served to a refused client: every request on the SASL listener was bob's.
    let seen = hook.0.lock().unwrap().clone();
    assert!(
        seen.iter()
            .filter(|l| l.starts_with("SECURE "))
            .all(|l| l == "SECURE SASL_SSL User:bob"),
        "{seen:?}"
    );
    broker.shutdown().await.unwrap();
}

/// The value of the sample `name` (with its labels, as rendered) on the admin endpoint.
async fn metric(broker: &Broker, name: &str) -> u64 {
    let (status, _, text) =
        crate::metrics::http(broker.admin_address().unwrap(), "GET", "/metrics").await;
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// `rafka_sasl_total` of `outcome`.
async fn sasl_total(broker: &Broker, outcome: &str) -> u64 {
    metric(
        broker,
        &format!("rafka_sasl_total{{outcome=\"{outcome}\"}}"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_reauthenticates_on_its_connections() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::write(dir.path());
    let hook = Arc::new(Principals(Mutex::new(Vec::new())));
    let p = SecurityProtocol::SaslSsl;
    let setup = Setup {
        protocol: p,
        mechanisms: vec![SaslMechanism::ScramSha512],
        reauth_ms: 2000,
    };
    let broker = start(dir.path(), &pki, &setup, hook.clone()).await;
    let local = broker.listener_address("LOCAL").unwrap().to_string();
    let topic = "sasl-reauth";
    support::create_topic(&local, topic, 1, &[]).await;
    let client = sasl_client(&broker, &pki, p, "SCRAM-SHA-512", "alice", "alice-secret");
    let mut group = client.clone();
    group
        .set("group.id", "reauth-group")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000");
    let member =
        support::GroupMember::start(&group, topic, rdkafka::consumer::DefaultConsumerContext);
    // About 6 s of traffic: three sessions' worth; a batch every 300 ms.
    let started = Instant::now();
    let producer: rdkafka::producer::FutureProducer =
        client.clone().set("linger.ms", "5").create().unwrap();
    let mut n = 0;
    let mut baseline = None;
    while started.elapsed() < Duration::from_secs(6) {
        for _ in 0..5 {
            let v = format!("r-{n}");
            producer
                .send(
                    rdkafka::producer::FutureRecord::<(), _>::to(topic)
                        .payload(&v)
                        .partition(0),
                    Duration::from_secs(10),
                )
                .await
                .expect("delivered across re-authentications");
            n += 1;
        }
        if baseline.is_none() && started.elapsed() > Duration::from_millis(1000) {
            // The producer's and the consumer's connections are up by now.
            baseline = Some((
                sasl_total(&broker, "reauthenticated").await,
                metric(&broker, "rafka_connections_accepted_total").await,
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (reauth_before, accepted_before) = baseline.expect("a baseline after 1 s");
    support::wait_for(
        "the group to read every record",
        Duration::from_secs(30),
        || member.seen().len() >= n,
    )
    .await;
    let seen = member.stop();
    let want: Vec<(i32, i64, String)> = (0..n).map(|i| (0, i as i64, format!("r-{i}"))).collect();
    assert_eq!(seen, want);
    let reauth = sasl_total(&broker, "reauthenticated").await;
    let accepted = metric(&broker, "rafka_connections_accepted_total").await;
    println!(
        "re-authentication: {reauth} re-authentications after {:?} ({reauth_before} at 1 s); \
         {accepted} connections accepted ({accepted_before} at 1 s)",
        started.elapsed()
    );
    // Each live connection re-authenticated about every 1.6-2 s (librdkafka starts at 90 %
    // of the lifetime): several times in 5 s.
    assert!(
        reauth >= reauth_before + 4,
        "{reauth} re-authentications ({reauth_before} at 1 s): librdkafka did not re-authenticate"
    );
    assert_eq!(sasl_total(&broker, "expired").await, 0, "a session expired");
    assert_eq!(sasl_total(&broker, "failed").await, 0);
    // Re-authentication kept the connections: none was closed for an expired session and
    // opened again (that would be one more connection per connection and session).
    assert!(
        accepted <= accepted_before + 1,
        "connections were re-opened: {accepted_before} at 1 s, {accepted} at the end"
    );
    assert!(hook
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("SECURE "))
        .all(|l| l == "SECURE SASL_SSL User:alice"),);
    broker.shutdown().await.unwrap();
}
