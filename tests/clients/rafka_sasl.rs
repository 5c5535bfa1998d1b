//! Rafka's own clients over SASL: rafka-producer and rafka-consumer over `SASL_SSL` with
//! SCRAM-SHA-512 and PLAIN and over `SASL_PLAINTEXT` with SCRAM-SHA-256, records exact and
//! the broker seeing `User:alice`; a wrong password, an unknown user and a mechanism the
//! listener does not offer each fail at once with [`ClientError::Authentication`] carrying
//! the broker's message (no retry loop); and a credential created with the admin calls
//! `rafka user` runs lets librdkafka in, until it is deleted.

use crate::rafka_tls::round_trip;
use crate::support;
use crate::tls::{Pki, Principals};

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rafka_broker::{
    Broker, Config, ListenerConfig, ListenerProtocol, ListenerSslConfig, ScramUserConfig,
};
use rafka_client::{
    Client, ClientConfig, ClientError, SaslConfig, SaslMechanism, ScramMechanism, SecurityConfig,
    SecurityProtocol, TlsConfig,
};
use rdkafka::consumer::{BaseConsumer, Consumer};

fn listener(name: &str, protocol: ListenerProtocol, pki: &Pki) -> ListenerConfig {
    ListenerConfig {
        name: name.into(),
        listen: "127.0.0.1:0".into(),
        advertised: None,
        security_protocol: protocol,
        ssl: (protocol == ListenerProtocol::SaslSsl).then(|| ListenerSslConfig {
            certificate: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            client_ca: None,
            client_auth: None,
        }),
        sasl_enabled_mechanisms: (protocol != ListenerProtocol::Plaintext)
            .then(|| rafka_broker::SaslMechanism::ALL.to_vec()),
    }
}

/// A broker with `LOCAL` (plaintext), `SSL_SASL` (SASL_SSL, every mechanism), `PLAIN_SASL`
/// (SASL_PLAINTEXT) and the user alice.
async fn start(dir: &Path, pki: &Pki, hook: Arc<Principals>) -> Broker {
    support::log_to_test_output();
    let mut cfg = Config::default();
    cfg.storage.path = dir.join("data");
    cfg.broker.scram_users = vec![ScramUserConfig {
        name: "alice".into(),
        password: "alice-secret".into(),
        mechanisms: vec!["SCRAM-SHA-256".into(), "SCRAM-SHA-512".into()],
        iterations: 4096,
    }];
    let mut scram_only = listener("SCRAM_ONLY", ListenerProtocol::SaslSsl, pki);
    scram_only.sasl_enabled_mechanisms = Some(vec![rafka_broker::SaslMechanism::ScramSha512]);
    cfg.broker.listeners = vec![
        listener("LOCAL", ListenerProtocol::Plaintext, pki),
        listener("SSL_SASL", ListenerProtocol::SaslSsl, pki),
        listener("PLAIN_SASL", ListenerProtocol::SaslPlaintext, pki),
        scram_only,
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
    let broker = start(dir.path(), &pki, hook.clone()).await;
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
    let broker = start(dir.path(), &pki, hook).await;
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
