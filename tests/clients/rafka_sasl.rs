//! Rafka's own clients over SASL: rafka-producer and rafka-consumer over `SASL_SSL` with
//! SCRAM-SHA-512 and PLAIN and over `SASL_PLAINTEXT` with SCRAM-SHA-256, records exact and
//! the broker seeing `User:alice`; a wrong password, an unknown user and a mechanism the
//! listener does not offer each fail at once with [`ClientError::Authentication`] carrying
//! the broker's message (no retry loop); a credential created with the admin calls
//! `rafka user` runs lets librdkafka in, until it is deleted; and with 2 s sessions
//! (KIP-368) the producer and consumer re-authenticate on their connections, records exact.

use crate::rafka_tls::round_trip;
use crate::support;
use crate::tls::{Pki, Principals};

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rafka_broker::{Broker, Config, ListenerConfig, ListenerSslConfig, ScramUserConfig};
use rafka_client::{
    Client, ClientConfig, ClientError, SaslConfig, SaslMechanism, ScramMechanism, SecurityConfig,
    SecurityProtocol, TlsConfig,
};
use rdkafka::consumer::{BaseConsumer, Consumer};

fn listener(name: &str, protocol: SecurityProtocol, pki: &Pki) -> ListenerConfig {
    ListenerConfig {
        name: name.into(),
        listen: "127.0.0.1:0".into(),
        advertised: None,
        security_protocol: protocol,
        ssl: matches!(protocol, SecurityProtocol::SaslSsl | SecurityProtocol::Ssl).then(|| {
            ListenerSslConfig {
                certificate: pki.server_cert.clone(),
                key: pki.server_key.clone(),
                client_ca: None,
                client_auth: None,
                principal_mapping_rules: None,
            }
        }),
        sasl_enabled_mechanisms: matches!(
            protocol,
            SecurityProtocol::SaslSsl | SecurityProtocol::SaslPlaintext
        )
        .then(|| rafka_broker::SaslMechanism::ALL.to_vec()),
    }
}

/// A broker with `LOCAL` (plaintext), `SSL_SASL` (SASL_SSL, every mechanism), `PLAIN_SASL`
/// (SASL_PLAINTEXT), `SCRAM_ONLY` (SASL_SSL, SCRAM-SHA-512), `TLS` (SSL) and the user alice.
async fn start(dir: &Path, pki: &Pki, hook: Arc<Principals>, reauth_ms: u64) -> Broker {
    support::log_to_test_output();
    let mut cfg = Config::default();
    cfg.storage.path = dir.join("data");
    cfg.admin.listen = "127.0.0.1:0".into();
    cfg.broker.connections_max_reauth_ms = reauth_ms;
    cfg.broker.scram_users = vec![ScramUserConfig {
        name: "alice".into(),
        password: "alice-secret".into(),
        mechanisms: vec!["SCRAM-SHA-256".into(), "SCRAM-SHA-512".into()],
        iterations: 4096,
    }];
    let mut scram_only = listener("SCRAM_ONLY", SecurityProtocol::SaslSsl, pki);
    scram_only.sasl_enabled_mechanisms = Some(vec![rafka_broker::SaslMechanism::ScramSha512]);
    cfg.broker.listeners = vec![
        listener("LOCAL", SecurityProtocol::Plaintext, pki),
        listener("SSL_SASL", SecurityProtocol::SaslSsl, pki),
        listener("PLAIN_SASL", SecurityProtocol::SaslPlaintext, pki),
        scram_only,
        listener("TLS", SecurityProtocol::Ssl, pki),
    ];
    Broker::builder()
        .config(cfg)
        .hook_arc(hook)
        .start()
        .await
        .expect("broker starts")
}

fn sasl(pki: &Pki, tls: bool, mechanism: SaslMechanism, user: &str, pw: &str) -> SecurityConfig {
    SecurityConfig {
        protocol: if tls {
            SecurityProtocol::SaslSsl
        } else {
            SecurityProtocol::SaslPlaintext
        },
        tls: TlsConfig {
            ca_location: Some(pki.ca.clone()),
            ..TlsConfig::default()
        },
        sasl: Some(SaslConfig {
            mechanism,
            username: user.into(),
            password: pw.into(),
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rafka_clients_over_sasl_ssl_and_sasl_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::write(dir.path());
    let hook = Arc::new(Principals(Mutex::new(Vec::new())));
    let broker = start(dir.path(), &pki, hook.clone(), 0).await;
    let local = broker.listener_address("LOCAL").unwrap().to_string();
    let ssl = broker.listener_address("SSL_SASL").unwrap().to_string();
    let plain = broker.listener_address("PLAIN_SASL").unwrap().to_string();
    for (topic, addr, security) in [
        (
            "scram512",
            &ssl,
            sasl(
                &pki,
                true,
                SaslMechanism::ScramSha512,
                "alice",
                "alice-secret",
            ),
        ),
        (
            "plain",
            &ssl,
            sasl(&pki, true, SaslMechanism::Plain, "alice", "alice-secret"),
        ),
        (
            "scram256",
            &plain,
            sasl(
                &pki,
                false,
                SaslMechanism::ScramSha256,
                "alice",
                "alice-secret",
            ),
        ),
    ] {
        support::create_topic(&local, topic, 1, &[]).await;
        let started = Instant::now();
        round_trip(addr, &security, topic, 200).await;
        println!(
            "{} over {}: 200 records produced and consumed in {:?}",
            security.sasl.as_ref().unwrap().mechanism.name(),
            security.protocol.name(),
            started.elapsed()
        );
    }
    let seen = hook.0.lock().unwrap().clone();
    let sasl_lines: Vec<&String> = seen.iter().filter(|l| l.contains("_SASL ")).collect();
    assert!(sasl_lines.len() > 20, "{sasl_lines:?}");
    assert!(
        sasl_lines.iter().all(|l| l.ends_with(" User:alice")),
        "{sasl_lines:?}"
    );
    assert!(seen.iter().any(|l| l == "SSL_SASL SASL_SSL User:alice"));
    assert!(seen
        .iter()
        .any(|l| l == "PLAIN_SASL SASL_PLAINTEXT User:alice"));
    broker.shutdown().await.unwrap();
}

/// Connects with `security` to `addr`: the error and how long it took.
async fn refusal(addr: &str, security: SecurityConfig) -> (ClientError, Duration) {
    let mut cfg = ClientConfig::new(addr);
    cfg.security = security;
    let started = Instant::now();
    let e = Client::connect(cfg).await.expect_err("refused");
    (e, started.elapsed())
}

/// Whether librdkafka authenticating as `user` gets Metadata over `addr`.
async fn librdkafka_served(addr: &str, pki: &Pki, user: &str, password: &str) -> bool {
    let mut c = support::client_config(addr);
    c.set("security.protocol", "sasl_ssl")
        .set("ssl.ca.location", pki.ca.to_str().unwrap())
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", user)
        .set("sasl.password", password);
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = c.create().unwrap();
        consumer
            .fetch_metadata(None, Duration::from_secs(5))
            .is_ok()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_typed_and_immediate_and_created_users_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::write(dir.path());
    let hook = Arc::new(Principals(Mutex::new(Vec::new())));
    let broker = start(dir.path(), &pki, hook, 0).await;
    let ssl = broker.listener_address("SSL_SASL").unwrap().to_string();
    let scram_only = broker.listener_address("SCRAM_ONLY").unwrap().to_string();

    for (addr, mechanism, user, pw, want) in [
        (
            &ssl,
            SaslMechanism::ScramSha512,
            "alice",
            "wrong",
            "SaslAuthenticationFailed",
        ),
        (
            &ssl,
            SaslMechanism::Plain,
            "alice",
            "wrong",
            "SaslAuthenticationFailed",
        ),
        (
            &ssl,
            SaslMechanism::ScramSha256,
            "mallory",
            "x",
            "SaslAuthenticationFailed",
        ),
        (
            &scram_only,
            SaslMechanism::Plain,
            "alice",
            "alice-secret",
            "UnsupportedSaslMechanism: mechanism PLAIN (the broker enables SCRAM-SHA-512)",
        ),
    ] {
        let (e, took) = refusal(addr, sasl(&pki, true, mechanism, user, pw)).await;
        assert!(matches!(e, ClientError::Authentication { .. }), "{e}");
        assert!(e.to_string().contains(want), "{e}");
        assert!(!e.is_retriable());
        // One attempt: the broker's failed-authentication delay, no retry rounds.
        assert!(took < Duration::from_secs(3), "{user}: {took:?}");
    }

    // `rafka user create` and `rafka user delete` run these calls (as alice, over SASL).
    let mut cfg = ClientConfig::new(&ssl);
    cfg.security = sasl(
        &pki,
        true,
        SaslMechanism::ScramSha512,
        "alice",
        "alice-secret",
    );
    let admin = Client::connect(cfg).await.unwrap();
    assert!(!librdkafka_served(&ssl, &pki, "carol", "carol-pw").await);
    admin
        .upsert_scram_credential("carol", ScramMechanism::Sha512, "carol-pw", 8192)
        .await
        .unwrap();
    assert!(librdkafka_served(&ssl, &pki, "carol", "carol-pw").await);
    assert!(!librdkafka_served(&ssl, &pki, "carol", "wrong").await);
    let described = admin
        .describe_user_scram_credentials(&["carol".to_string()])
        .await
        .unwrap();
    assert_eq!(
        described[0].credentials,
        vec![(ScramMechanism::Sha512, 8192)]
    );
    admin
        .delete_scram_credential("carol", ScramMechanism::Sha512)
        .await
        .unwrap();
    assert!(!librdkafka_served(&ssl, &pki, "carol", "carol-pw").await);
    broker.shutdown().await.unwrap();
}

/// `rafka_requests_total{api="<api>"}` and `rafka_connections_accepted_total`.
async fn counts(broker: &Broker, api: &str) -> (u64, u64) {
    let (status, _, text) =
        crate::metrics::http(broker.admin_address().unwrap(), "GET", "/metrics").await;
    assert_eq!(status, 200);
    let value = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    };
    (
        value(&format!("rafka_requests_total{{api=\"{api}\"}} ")),
        value("rafka_connections_accepted_total "),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rafka_clients_reauthenticate_on_their_connections() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::write(dir.path());
    let hook = Arc::new(Principals(Mutex::new(Vec::new())));
    let broker = start(dir.path(), &pki, hook.clone(), 2000).await;
    let local = broker.listener_address("LOCAL").unwrap().to_string();
    let ssl = broker.listener_address("SSL_SASL").unwrap().to_string();
    let topic = "rafka-reauth";
    support::create_topic(&local, topic, 1, &[]).await;
    let security = sasl(
        &pki,
        true,
        SaslMechanism::ScramSha512,
        "alice",
        "alice-secret",
    );
    let producer = rafka_producer::Producer::builder()
        .bootstrap(&ssl)
        .security(security.clone())
        .build()
        .await
        .unwrap();
    let consumer = rafka_consumer::Consumer::builder()
        .bootstrap(&ssl)
        .security(security)
        .assign([(topic, 0)])
        .auto_offset_reset(rafka_consumer::OffsetReset::Earliest)
        .build()
        .await
        .unwrap();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await {
            got.push((r.offset, r.value.unwrap()));
        }
        got
    });
    // About 6 s of traffic, three sessions' worth: five records every 300 ms.
    let started = Instant::now();
    let (mut n, mut baseline) = (0i64, None);
    while started.elapsed() < Duration::from_secs(6) {
        for _ in 0..5 {
            let r = rafka_producer::Record::to(topic)
                .value(format!("r-{n}"))
                .partition(0);
            let m = producer
                .send(r)
                .await
                .expect("delivered across re-authentications");
            assert_eq!(m.offset, n);
            n += 1;
        }
        if baseline.is_none() && started.elapsed() > Duration::from_millis(1000) {
            baseline = Some(counts(&broker, "SaslHandshake").await);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (handshakes_before, accepted_before) = baseline.unwrap();
    let got = reader.await.unwrap();
    let want: Vec<(i64, bytes::Bytes)> = (0..n)
        .map(|i| (i, bytes::Bytes::from(format!("r-{i}"))))
        .collect();
    assert_eq!(got, want);
    let (handshakes, accepted) = counts(&broker, "SaslHandshake").await;
    println!(
        "rafka re-authentication: {handshakes} SaslHandshakes after {:?} ({handshakes_before} at \
         1 s); {accepted} connections accepted ({accepted_before} at 1 s)",
        started.elapsed()
    );
    // Each of the producer's and the consumer's connections re-authenticated every
    // 1.7-1.9 s: at least two more handshakes each.
    assert!(
        handshakes >= handshakes_before + 4,
        "{handshakes} SaslHandshakes (before {handshakes_before})"
    );
    // And kept its connection: none was closed for an expired session and opened again.
    assert!(
        accepted <= accepted_before + 1,
        "connections re-opened: {accepted_before} at 1 s, {accepted} at the end"
    );
    broker.shutdown().await.unwrap();
}

/// Connection set-up cost of rafka-client per security protocol (TCP, TLS handshake,
/// ApiVersions, SASL, Metadata), 30 sequential connections each; printed as a figure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_setup_figures() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::write(dir.path());
    let hook = Arc::new(Principals(Mutex::new(Vec::new())));
    let broker = start(dir.path(), &pki, hook, 0).await;
    let local = broker.listener_address("LOCAL").unwrap().to_string();
    let ssl = broker.listener_address("SSL_SASL").unwrap().to_string();
    let tls = broker.listener_address("TLS").unwrap().to_string();
    let mut tls_only = sasl(&pki, true, SaslMechanism::Plain, "alice", "alice-secret");
    tls_only.protocol = SecurityProtocol::Ssl;
    let cases = [
        ("PLAINTEXT", &local, SecurityConfig::default()),
        ("SSL", &tls, tls_only),
        (
            "SASL_SSL PLAIN",
            &ssl,
            sasl(&pki, true, SaslMechanism::Plain, "alice", "alice-secret"),
        ),
        (
            "SASL_SSL SCRAM-SHA-512",
            &ssl,
            sasl(
                &pki,
                true,
                SaslMechanism::ScramSha512,
                "alice",
                "alice-secret",
            ),
        ),
    ];
    for (name, addr, security) in cases {
        let n = 30;
        let started = Instant::now();
        for _ in 0..n {
            let mut cfg = ClientConfig::new(addr);
            cfg.security = security.clone();
            let c = Client::connect(cfg).await.unwrap();
            assert_eq!(c.metadata().brokers.len(), 1);
        }
        let each = started.elapsed() / n;
        println!(
            "{name}: {each:?} per connection set-up ({:.0}/s, debug build)",
            1.0 / each.as_secs_f64()
        );
    }
    broker.shutdown().await.unwrap();
}
