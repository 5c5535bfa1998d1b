//! Rafka's own clients over TLS: rafka-producer and rafka-consumer through an `SSL`
//! listener (hostname verified against the certificate's SANs) and through a mutual-TLS
//! listener (the broker sees the client certificate's principal), records exact; a broker
//! certificate for another name is refused at once (no retry loop) unless
//! `ssl.endpoint.identification.algorithm` is empty, and a certificate from an unknown CA
//! is refused either way. Certificates come from the rcgen PKI of `tls.rs`.

use crate::support;
use crate::tls::{ca, leaf, plaintext_listener, start, Pki, Principals};

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rafka_broker::{ClientAuth, ListenerConfig, ListenerSslConfig};
use rafka_client::{
    Client, ClientConfig, ClientError, SecurityConfig, SecurityProtocol, TlsConfig,
};
use rafka_consumer::{Consumer, OffsetReset};
use rafka_producer::{Producer, Record};
use rcgen::{DnType, ExtendedKeyUsagePurpose};

fn ssl(pki: &Pki, with_cert: bool) -> SecurityConfig {
    SecurityConfig {
        protocol: SecurityProtocol::Ssl,
        tls: TlsConfig {
            ca_location: Some(pki.ca.clone()),
            certificate_location: with_cert.then(|| pki.client_cert.clone()),
            key_location: with_cert.then(|| pki.client_key.clone()),
            endpoint_identification: true,
        },
        sasl: None,
    }
}

/// Produces `n` records to partition 0 of `topic` with rafka-producer, then reads them
/// back with rafka-consumer, both over `security`; asserts offsets, keys and values.
pub(crate) async fn round_trip(bootstrap: &str, security: &SecurityConfig, topic: &str, n: usize) {
    let p = Producer::builder()
        .bootstrap(bootstrap)
        .security(security.clone())
        .build()
        .await
        .expect("producer over TLS");
    let mut pending = Vec::new();
    for i in 0..n {
        let r = Record::to(topic)
            .key(format!("k-{i}"))
            .value(format!("v-{i}-{}", "x".repeat(i % 50)))
            .partition(0);
        pending.push(p.enqueue(r).await.expect("enqueued"));
    }
    let mut offsets = Vec::new();
    for d in pending {
        offsets.push(d.await.expect("delivered").offset);
    }
    assert_eq!(offsets, (0..n as i64).collect::<Vec<_>>());
    p.close().await.unwrap();

    let c = Consumer::builder()
        .bootstrap(bootstrap)
        .security(security.clone())
        .assign([(topic, 0)])
        .auto_offset_reset(OffsetReset::Earliest)
        .build()
        .await
        .expect("consumer over TLS");
    for i in 0..n {
        let r = tokio::time::timeout(Duration::from_secs(15), c.recv())
            .await
            .expect("a record within 15 s")
            .expect("recv");
        assert_eq!(r.offset, i as i64);
        assert_eq!(r.key.as_deref(), Some(format!("k-{i}").as_bytes()));
        assert_eq!(
            r.value.as_deref(),
            Some(format!("v-{i}-{}", "x".repeat(i % 50)).as_bytes())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rafka_clients_over_ssl_and_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::write(dir.path());
    let hook = Arc::new(Principals(Mutex::new(Vec::new())));
    let broker = start(
        dir.path(),
        vec![
            plaintext_listener("LOCAL"),
            pki.ssl_listener("SECURE", None),
            pki.ssl_listener("MTLS", Some(ClientAuth::Required)),
        ],
        hook.clone(),
    )
    .await;
    let plain = broker.listener_address("LOCAL").unwrap().to_string();
    let secure = broker.listener_address("SECURE").unwrap().to_string();
    let mtls = broker.listener_address("MTLS").unwrap().to_string();
    support::create_topic(&plain, "rafka-tls", 1, &[]).await;
    support::create_topic(&plain, "rafka-mtls", 1, &[]).await;

    // The certificate names 127.0.0.1 and localhost: both verify.
    round_trip(&secure, &ssl(&pki, false), "rafka-tls", 300).await;
    let port = secure.rsplit_once(':').unwrap().1;
    let mut cfg = ClientConfig::new(&format!("localhost:{port}"));
    cfg.security = ssl(&pki, false);
    let c = Client::connect(cfg).await.expect("localhost verifies");
    assert_eq!(c.metadata().brokers.len(), 1);

    round_trip(&mtls, &ssl(&pki, true), "rafka-mtls", 300).await;
    let seen = hook.0.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|s| s == "MTLS SSL User:CN=alice,OU=eng,O=Example"),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|s| s == "SECURE SSL User:ANONYMOUS"),
        "{seen:?}"
    );

    // No client certificate on the required-mTLS listener: TLS 1.3 reports the refusal at
    // the first read; it is still a TLS error, at once and not retried.
    let mut cfg = ClientConfig::new(&mtls);
    cfg.security = ssl(&pki, false);
    let started = Instant::now();
    let e = Client::connect(cfg).await.unwrap_err();
    assert!(matches!(e, ClientError::Tls { .. }), "{e}");
    assert!(e.to_string().contains("CertificateRequired"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2), "{e}");
    broker.shutdown().await.unwrap();
}

/// A listener whose certificate names only `other.example`, signed by a CA written to
/// `dir/ca2.pem`.
fn misnamed_listener(dir: &Path) -> ListenerConfig {
    let issuer = ca("second test CA");
    let (cert, key) = leaf(
        &issuer,
        &["other.example"],
        &[(DnType::CommonName, "other")],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    std::fs::write(dir.join("ca2.pem"), issuer.pem()).unwrap();
    std::fs::write(dir.join("other.pem"), cert).unwrap();
    std::fs::write(dir.join("other.key"), key).unwrap();
    ListenerConfig {
        name: "OTHER".into(),
        listen: "127.0.0.1:0".into(),
        advertised: None,
        security_protocol: SecurityProtocol::Ssl,
        ssl: Some(ListenerSslConfig {
            certificate: dir.join("other.pem"),
            key: dir.join("other.key"),
            client_ca: None,
            client_auth: None,
            principal_mapping_rules: None,
        }),
        sasl_enabled_mechanisms: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostname_verification_and_unknown_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::write(dir.path());
    let hook = Arc::new(Principals(Mutex::new(Vec::new())));
    let broker = start(
        dir.path(),
        vec![plaintext_listener("LOCAL"), misnamed_listener(dir.path())],
        hook,
    )
    .await;
    let other = broker.listener_address("OTHER").unwrap().to_string();
    let with_ca = |ca: &Path, verify_name: bool| {
        let mut cfg = ClientConfig::new(&other);
        cfg.security = SecurityConfig {
            protocol: SecurityProtocol::Ssl,
            tls: TlsConfig {
                ca_location: Some(ca.to_path_buf()),
                endpoint_identification: verify_name,
                ..TlsConfig::default()
            },
            sasl: None,
        };
        cfg
    };

    // The name does not match 127.0.0.1: a TLS error at once, not retried.
    let started = Instant::now();
    let e = Client::connect(with_ca(&dir.path().join("ca2.pem"), true))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Tls { .. }), "{e}");
    assert!(e.to_string().contains("not valid for name"), "{e}");
    assert!(!e.is_retriable());
    assert!(started.elapsed() < Duration::from_secs(2), "retried");

    // ssl.endpoint.identification.algorithm= (empty): the chain alone is checked.
    let c = Client::connect(with_ca(&dir.path().join("ca2.pem"), false))
        .await
        .expect("chain verifies without the name check");
    assert_eq!(c.metadata().brokers.len(), 1);

    // A certificate from a CA the client does not trust is refused either way.
    for verify_name in [true, false] {
        let e = Client::connect(with_ca(&pki.ca, verify_name))
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::Tls { .. }), "{e}");
        assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    }
    broker.shutdown().await.unwrap();
}
