//! Named listeners and TLS: librdkafka over an `SSL` listener while a `PLAINTEXT` one
//! serves beside it (each answers Metadata with its own address), mutual TLS with the
//! principal taken from the client certificate, and the refusals (a plaintext client on
//! the TLS port, a TLS client on the plaintext port, a client certificate from another CA),
//! each within a bound while the broker keeps serving. Certificates are made per test with
//! rcgen: a CA, a server certificate for 127.0.0.1/localhost, a client certificate, and an
//! unrelated second CA with its own client. Also: certificates reloaded without a restart
//! when their files change, and `ssl_principal_mapping_rules` applied to the client's DN.

use crate::common;
use crate::support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestKind};
use rafka_broker::rafka_hooks::{
    Hook, HookResult, Interest, RequestContext, Stages, TopicFilter, Verdict,
};
use rafka_broker::{
    Broker, ClientAuth, Config, ListenerConfig, ListenerSslConfig, SecurityProtocol,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// The bound on every refusal: well under the broker's 10 s handshake timeout.
const REFUSAL_BOUND: Duration = Duration::from_secs(5);

/// A throwaway PKI written to a directory.
pub(crate) struct Pki {
    pub(crate) ca: PathBuf,
    pub(crate) server_cert: PathBuf,
    pub(crate) server_key: PathBuf,
    pub(crate) client_cert: PathBuf,
    pub(crate) client_key: PathBuf,
    other_client_cert: PathBuf,
    other_client_key: PathBuf,
}

pub(crate) fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A leaf certificate and its key (PEM) signed by `issuer`.
pub(crate) fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    sans: &[&str],
    dn: &[(DnType, &str)],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    // Only the given RDNs, in this order (`new` starts with a default CN).
    p.distinguished_name = DistinguishedName::new();
    for (t, v) in dn {
        p.distinguished_name.push(t.clone(), *v);
    }
    p.extended_key_usages = vec![usage];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = p.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    pub(crate) fn write(dir: &Path) -> Pki {
        let ca1 = ca("rafka test CA");
        let ca2 = ca("unrelated CA");
        let (server_cert, server_key) = leaf(
            &ca1,
            &["127.0.0.1", "localhost"],
            &[(DnType::CommonName, "broker")],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(
            &ca1,
            &[],
            &[
                (DnType::OrganizationName, "Example"),
                (DnType::OrganizationalUnitName, "eng"),
                (DnType::CommonName, "alice"),
            ],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let (other_cert, other_key) = leaf(
            &ca2,
            &[],
            &[(DnType::CommonName, "mallory")],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let put = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        Pki {
            ca: put("ca.pem", &ca1.pem()),
            server_cert: put("server.pem", &server_cert),
            server_key: put("server.key", &server_key),
            client_cert: put("client.pem", &client_cert),
            client_key: put("client.key", &client_key),
            other_client_cert: put("other-client.pem", &other_cert),
            other_client_key: put("other-client.key", &other_key),
        }
    }

    pub(crate) fn ssl_listener(
        &self,
        name: &str,
        client_auth: Option<ClientAuth>,
    ) -> ListenerConfig {
        ListenerConfig {
            name: name.into(),
            listen: "127.0.0.1:0".into(),
            advertised: None,
            security_protocol: SecurityProtocol::Ssl,
            ssl: Some(ListenerSslConfig {
                certificate: self.server_cert.clone(),
                key: self.server_key.clone(),
                client_ca: client_auth.map(|_| self.ca.clone()),
                client_auth,
                principal_mapping_rules: None,
            }),
            sasl_enabled_mechanisms: None,
        }
    }
}

pub(crate) fn plaintext_listener(name: &str) -> ListenerConfig {
    ListenerConfig {
        name: name.into(),
        listen: "127.0.0.1:0".into(),
        advertised: None,
        security_protocol: SecurityProtocol::Plaintext,
        ssl: None,
        sasl_enabled_mechanisms: None,
    }
}

/// Records `listener principal` of every request.
pub(crate) struct Principals(pub(crate) Mutex<Vec<String>>);

impl Hook for Principals {
    fn name(&self) -> &str {
        "principals"
    }
    fn interest(&self) -> Interest {
        Interest {
            stages: Stages::REQUEST,
            topics: TopicFilter::All,
            record_access: false,
        }
    }
    fn on_request(&self, ctx: &RequestContext) -> HookResult {
        let s = &ctx.session;
        self.0.lock().unwrap().push(format!(
            "{} {} {}",
            s.listener,
            s.security_protocol.name(),
            s.principal
        ));
        Ok(Verdict::Continue)
    }
}

pub(crate) async fn start(
    dir: &Path,
    listeners: Vec<ListenerConfig>,
    hook: Arc<Principals>,
) -> Broker {
    start_with(dir, listeners, hook, |_| {}).await
}

async fn start_with(
    dir: &Path,
    listeners: Vec<ListenerConfig>,
    hook: Arc<Principals>,
    tweak: impl FnOnce(&mut Config),
) -> Broker {
    support::log_to_test_output();
    let mut cfg = Config::default();
    cfg.storage.path = dir.join("data");
    cfg.broker.listeners = listeners;
    tweak(&mut cfg);
    Broker::builder()
        .config(cfg)
        .hook_arc(hook)
        .start()
        .await
        .expect("broker starts")
}

fn ssl_client(bootstrap: &str, pki: &Pki, with_cert: bool) -> ClientConfig {
    let mut c = support::client_config(bootstrap);
    c.set("security.protocol", "ssl")
        .set("ssl.ca.location", pki.ca.to_str().unwrap());
    if with_cert {
        c.set(
            "ssl.certificate.location",
            pki.client_cert.to_str().unwrap(),
        )
        .set("ssl.key.location", pki.client_key.to_str().unwrap());
    }
    c
}

/// Produces `n` keyed records to partition 0 over `client`; returns the acked offsets.
pub(crate) async fn produce(client: &ClientConfig, topic: &str, n: usize) -> Vec<i64> {
    let p: FutureProducer = client
        .clone()
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    let mut offsets = Vec::new();
    for i in 0..n {
        let (k, v) = (format!("k-{i}"), format!("v-{i}-{}", "x".repeat(i % 50)));
        let d = p
            .send(
                FutureRecord::to(topic).key(&k).payload(&v).partition(0),
                Duration::from_secs(30),
            )
            .await
            .expect("delivered");
        offsets.push(d.offset);
    }
    offsets
}

/// Reads `n` records of partition 0 from the start; blocking.
pub(crate) fn consume(client: &ClientConfig, topic: &str, n: usize) -> Vec<(i64, String, String)> {
    let c: BaseConsumer = client
        .clone()
        .set("group.id", "tls-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.expect("message");
            got.push((
                m.offset(),
                String::from_utf8(m.key().unwrap().to_vec()).unwrap(),
                String::from_utf8(m.payload().unwrap().to_vec()).unwrap(),
            ));
        }
    }
    got
}

/// The broker port of the Metadata answer the client gets over `client`.
fn metadata_port(client: &ClientConfig) -> i32 {
    let c: BaseConsumer = client.create().expect("client");
    let md = c
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    assert_eq!(md.brokers().len(), 1);
    md.brokers()[0].port()
}

pub(crate) fn expected(n: usize) -> Vec<(i64, String, String)> {
    (0..n)
        .map(|i| {
            (
                i as i64,
                format!("k-{i}"),
                format!("v-{i}-{}", "x".repeat(i % 50)),
            )
        })
        .collect()
}

/// An ApiVersions round trip over a plaintext connection: the broker still serves.
pub(crate) async fn plaintext_alive(addr: SocketAddr) {
    let mut conn = common::KafkaConn::connect(&addr.to_string()).await;
    conn.check_alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_and_plaintext_listeners_serve_together() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::write(dir.path());
    let hook = Arc::new(Principals(Mutex::new(Vec::new())));
    let broker = start(
        dir.path(),
        vec![
            plaintext_listener("LOCAL"),
            pki.ssl_listener("SECURE", None),
        ],
        hook.clone(),
    )
    .await;
    let plain = broker.listener_address("LOCAL").unwrap();
    let secure = broker.listener_address("SECURE").unwrap();
    assert_ne!(plain.port(), secure.port());
    assert_eq!(broker.local_addr(), plain);

    let ssl = ssl_client(&secure.to_string(), &pki, false);
    let topic = "tls-roundtrip";
    support::create_topic(&plain.to_string(), topic, 1, &[]).await;
    let n = 200;
    let offsets = produce(&ssl, topic, n).await;
    assert_eq!(offsets, (0..n as i64).collect::<Vec<_>>());
    let got = {
        let ssl = ssl.clone();
        tokio::task::spawn_blocking(move || consume(&ssl, topic, n))
            .await
            .unwrap()
    };
    assert_eq!(got, expected(n));
    // The same records over the plaintext listener.
    let plain_client = support::client_config(&plain.to_string());
    let got = {
        let c = plain_client.clone();
        tokio::task::spawn_blocking(move || consume(&c, topic, n))
            .await
            .unwrap()
    };
    assert_eq!(got, expected(n));

    // Each listener advertises itself.
    let (ssl_port, plain_port) =
        tokio::task::spawn_blocking(move || (metadata_port(&ssl), metadata_port(&plain_client)))
            .await
            .unwrap();
    assert_eq!(ssl_port, secure.port() as i32);
    assert_eq!(plain_port, plain.port() as i32);
    let mut conn = common::KafkaConn::connect(&plain.to_string()).await;
    let md = common::metadata(&mut conn, None).await;
    assert_eq!(md.brokers[0].port, plain.port() as i32);

    let seen = hook.0.lock().unwrap().clone();
    assert!(
        seen.iter().any(|s| s == "SECURE SSL User:ANONYMOUS"),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|s| s == "LOCAL PLAINTEXT User:ANONYMOUS"),
        "{seen:?}"
    );
    broker.shutdown().await.unwrap();
}

fn client_tls(pki: &Pki, cert: Option<(&Path, &Path)>) -> tokio_rustls::TlsConnector {
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&pki.ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match cert {
        Some((c, k)) => b
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(c)
                    .unwrap()
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_file(k).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// Sends ApiVersions over `stream` and reads one answer's size: `Ok(size)` if the broker
/// answered, `Err` if it closed or failed the connection.
/// Whether a TLS client `connector` is refused by the listener at `addr` within
/// [`REFUSAL_BOUND`]: the handshake fails, or (TLS 1.3 reports a refused client
/// certificate at the first read) the first request gets no answer. Panics past the bound.
async fn tls_refused(
    connector: &tokio_rustls::TlsConnector,
    addr: std::net::SocketAddr,
    server_name: &rustls::pki_types::ServerName<'static>,
) -> bool {
    tokio::time::timeout(REFUSAL_BOUND, async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        match connector.connect(server_name.clone(), tcp).await {
            Err(_) => true,
            Ok(mut s) => api_versions(&mut s).await.is_err(),
        }
    })
    .await
    .expect("refused within the bound")
}

async fn api_versions<S>(stream: &mut S) -> std::io::Result<i32>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let req = common::encode(
        ApiKey::ApiVersions,
        3,
        7,
        &RequestKind::ApiVersions(ApiVersionsRequest::default()),
    );
    stream.write_all(&req).await?;
    stream.flush().await?;
    let size = stream.read_i32().await?;
    let mut body = vec![0u8; size.clamp(0, 1 << 20) as usize];
    stream.read_exact(&mut body).await?;
    // The correlation id comes back.
    assert_eq!(&body[..4], &7i32.to_be_bytes());
    Ok(size)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_principal_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::write(dir.path());
    let hook = Arc::new(Principals(Mutex::new(Vec::new())));
    let broker = start(
        dir.path(),
        vec![
            plaintext_listener("PLAINTEXT"),
            pki.ssl_listener("MTLS", Some(ClientAuth::Required)),
        ],
        hook.clone(),
    )
    .await;
    let plain = broker.listener_address("PLAINTEXT").unwrap();
    let mtls = broker.listener_address("MTLS").unwrap();
    let server_name = ServerName::try_from("127.0.0.1").unwrap().to_owned();

    // librdkafka with a certificate from the CA: produce and consume, exact.
    let client = ssl_client(&mtls.to_string(), &pki, true);
    let topic = "mtls";
    support::create_topic(&plain.to_string(), topic, 1, &[]).await;
    let started = Instant::now();
    let offsets = produce(&client, topic, 50).await;
    assert_eq!(offsets, (0..50).collect::<Vec<_>>());
    let got = tokio::task::spawn_blocking(move || consume(&client, topic, 50))
        .await
        .unwrap();
    assert_eq!(got, expected(50));
    eprintln!(
        "mTLS produce+consume of 50 records: {:?}",
        started.elapsed()
    );
    let seen = hook.0.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|s| s == "MTLS SSL User:CN=alice,OU=eng,O=Example"),
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|s| s.starts_with("MTLS") && s.ends_with("ANONYMOUS")),
        "{seen:?}"
    );

    // A rustls client with the CA's client certificate: one handshake, timed.
    let good = client_tls(&pki, Some((&pki.client_cert, &pki.client_key)));
    let t = Instant::now();
    let tcp = TcpStream::connect(mtls).await.unwrap();
    let mut tls = good.connect(server_name.clone(), tcp).await.unwrap();
    let handshake = t.elapsed();
    assert!(api_versions(&mut tls).await.unwrap() > 0);
    eprintln!("mutual TLS handshake (client side, debug build): {handshake:?}");

    // A client certificate from another CA: refused within the bound (TLS 1.3 reports it
    // at the first read), nothing served.
    let other = client_tls(&pki, Some((&pki.other_client_cert, &pki.other_client_key)));
    assert!(tls_refused(&other, mtls, &server_name).await);

    // No client certificate on the required-mTLS listener: refused too.
    let none = client_tls(&pki, None);
    assert!(tls_refused(&none, mtls, &server_name).await);

    // A plaintext Kafka client on the TLS port: closed, nothing answered.
    let refused = tokio::time::timeout(REFUSAL_BOUND, async {
        let mut tcp = TcpStream::connect(mtls).await.unwrap();
        api_versions(&mut tcp).await.is_err()
    })
    .await
    .expect("closed within the bound");
    assert!(refused);

    // A TLS client on the plaintext port: the handshake fails (the broker reads its
    // ClientHello as an oversized frame and closes).
    let refused = tokio::time::timeout(REFUSAL_BOUND, async {
        let tcp = TcpStream::connect(plain).await.unwrap();
        good.connect(server_name.clone(), tcp).await.is_err()
    })
    .await
    .expect("failed within the bound");
    assert!(refused);

    // A client that connects to the TLS port and says nothing holds only its own slot:
    // everyone else is served meanwhile.
    let silent_since = Instant::now();
    let mut silent = TcpStream::connect(mtls).await.unwrap();
    plaintext_alive(plain).await;
    assert!(api_versions(&mut tls).await.unwrap() > 0);
    let mut tls2 = good
        .connect(server_name, TcpStream::connect(mtls).await.unwrap())
        .await
        .unwrap();
    assert!(api_versions(&mut tls2).await.unwrap() > 0);
    // The silent client is dropped when the handshake bound (10 s) runs out.
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut buf))
        .await
        .expect("closed within the handshake bound");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    let waited = silent_since.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(20),
        "{waited:?}"
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_tls_material_is_a_config_error_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::write(dir.path());
    // Occupy a port: the config error must come first, not "address in use".
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let cases: Vec<(ListenerSslConfig, &str)> = vec![
        (
            ListenerSslConfig {
                certificate: dir.path().join("missing.pem"),
                key: pki.server_key.clone(),
                client_ca: None,
                client_auth: None,
                principal_mapping_rules: None,
            },
            "missing.pem",
        ),
        (
            ListenerSslConfig {
                certificate: pki.server_key.clone(),
                key: pki.server_key.clone(),
                client_ca: None,
                client_auth: None,
                principal_mapping_rules: None,
            },
            "no PEM CERTIFICATE",
        ),
        (
            // The client's key does not match the server's certificate.
            ListenerSslConfig {
                certificate: pki.server_cert.clone(),
                key: pki.client_key.clone(),
                client_ca: None,
                client_auth: None,
                principal_mapping_rules: None,
            },
            "ssl.key",
        ),
        (
            ListenerSslConfig {
                certificate: pki.server_cert.clone(),
                key: pki.server_key.clone(),
                client_ca: Some(pki.server_key.clone()),
                client_auth: None,
                principal_mapping_rules: None,
            },
            "ssl.client_ca",
        ),
    ];
    for (ssl, want) in cases {
        let mut cfg = Config::default();
        cfg.storage.path = dir.path().join("data");
        cfg.broker.listeners = vec![ListenerConfig {
            name: "SECURE".into(),
            listen: busy_addr.clone(),
            advertised: None,
            security_protocol: SecurityProtocol::Ssl,
            ssl: Some(ssl),
            sasl_enabled_mechanisms: None,
        }];
        let e = Broker::start(cfg).await.err().expect("refused").to_string();
        assert!(
            e.contains("broker.listeners") && e.contains("SECURE") && e.contains(want),
            "{want}: {e}"
        );
    }
}

/// The DER of the certificate the listener at `addr` presents to a new connection.
async fn presented_certificate(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
) -> Vec<u8> {
    let server_name = ServerName::try_from("127.0.0.1").unwrap().to_owned();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(server_name, tcp)
        .await
        .expect("handshake");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn pem_certificate(path: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pki_a = Pki::write(dir.path());
    let dir_b = tempfile::tempdir().unwrap();
    let pki_b = Pki::write(dir_b.path());
    let (cert_a, cert_b) = (
        pem_certificate(&pki_a.server_cert),
        pem_certificate(&pki_b.server_cert),
    );
    assert_ne!(cert_a, cert_b);
    let hook = Arc::new(Principals(Mutex::new(Vec::new())));
    let broker = start_with(
        dir.path(),
        vec![pki_a.ssl_listener("SECURE", None)],
        hook,
        |c| c.broker.ssl_certificate_reload_interval_ms = 100,
    )
    .await;
    let addr = broker.listener_address("SECURE").unwrap();
    // A client that trusts both CAs, to see which certificate is presented.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in [&pki_a.ca, &pki_b.ca] {
        roots
            .add(
                CertificateDer::pem_file_iter(ca)
                    .unwrap()
                    .next()
                    .unwrap()
                    .unwrap(),
            )
            .unwrap();
    }
    let connector = tokio_rustls::TlsConnector::from(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ));
    assert_eq!(presented_certificate(&connector, addr).await, cert_a);
    // A connection opened with certificate A, kept across the reloads.
    let server_name = ServerName::try_from("127.0.0.1").unwrap().to_owned();
    let mut old = connector
        .connect(server_name, TcpStream::connect(addr).await.unwrap())
        .await
        .unwrap();
    assert!(api_versions(&mut old).await.unwrap() > 0);

    // A broken certificate file: logged, A stays in use.
    std::fs::write(&pki_a.server_cert, "not a certificate\n").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(presented_certificate(&connector, addr).await, cert_a);
    // Certificate B with key A (half-way through an update): they don't match, A stays.
    std::fs::copy(&pki_b.server_cert, &pki_a.server_cert).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(presented_certificate(&connector, addr).await, cert_a);
    // Key B too: new handshakes get B, within a few polls.
    std::fs::copy(&pki_b.server_key, &pki_a.server_key).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while presented_certificate(&connector, addr).await != cert_b {
        assert!(Instant::now() < deadline, "certificate B not served in 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection opened before still works.
    assert!(api_versions(&mut old).await.unwrap() > 0);
    // librdkafka trusting only B's CA connects (and would refuse A).
    let client_b = ssl_client(&addr.to_string(), &pki_b, false);
    let port = tokio::task::spawn_blocking(move || metadata_port(&client_b))
        .await
        .unwrap();
    assert_eq!(port, addr.port() as i32);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_principal_mapping_rules_name_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::write(dir.path());
    let hook = Arc::new(Principals(Mutex::new(Vec::new())));
    let broker = start_with(
        dir.path(),
        vec![pki.ssl_listener("MTLS", Some(ClientAuth::Required))],
        hook.clone(),
        |c| {
            c.broker.ssl_principal_mapping_rules =
                "RULE:^CN=(.*?),OU=ServiceUsers.*$/svc-$1/, RULE:^CN=(.*?),OU=(.*?),O=.*$/$1/L, DEFAULT"
                    .into()
        },
    )
    .await;
    let addr = broker.listener_address("MTLS").unwrap();
    let client = ssl_client(&addr.to_string(), &pki, true);
    let port = tokio::task::spawn_blocking(move || metadata_port(&client))
        .await
        .unwrap();
    assert_eq!(port, addr.port() as i32);
    let seen = hook.0.lock().unwrap().clone();
    assert!(seen.iter().any(|s| s == "MTLS SSL User:alice"), "{seen:?}");
    assert!(!seen.iter().any(|s| s.contains("CN=")), "{seen:?}");
    broker.shutdown().await.unwrap();

    // Rules that apply to no one: the client is refused after its handshake (Kafka's
    // NoMatchingRule), within the bound. A listener with its own rules
    // (`listener.name.<name>.ssl.principal.mapping.rules`) uses those instead.
    let dir2 = tempfile::tempdir().unwrap();
    let hook = Arc::new(Principals(Mutex::new(Vec::new())));
    let mut own = pki.ssl_listener("OWN", Some(ClientAuth::Required));
    own.ssl.as_mut().unwrap().principal_mapping_rules = Some("RULE:^CN=([a-z]+),.*$/$1/U".into());
    let broker = start_with(
        dir2.path(),
        vec![pki.ssl_listener("MTLS", Some(ClientAuth::Required)), own],
        hook.clone(),
        |c| c.broker.ssl_principal_mapping_rules = "RULE:^CN=bob,.*$/bob/".into(),
    )
    .await;
    let addr = broker.listener_address("MTLS").unwrap();
    let good = client_tls(&pki, Some((&pki.client_cert, &pki.client_key)));
    let server_name = ServerName::try_from("127.0.0.1").unwrap().to_owned();
    assert!(tls_refused(&good, addr, &server_name).await);
    let own_addr = broker.listener_address("OWN").unwrap();
    let client = ssl_client(&own_addr.to_string(), &pki, true);
    let port = tokio::task::spawn_blocking(move || metadata_port(&client))
        .await
        .unwrap();
    assert_eq!(port, own_addr.port() as i32);
    let seen = hook.0.lock().unwrap().clone();
    assert!(seen.iter().any(|s| s == "OWN SSL User:ALICE"), "{seen:?}");
    assert!(!seen.iter().any(|s| s.starts_with("MTLS ")), "{seen:?}");
    broker.shutdown().await.unwrap();
}
