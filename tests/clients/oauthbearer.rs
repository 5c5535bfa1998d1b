//! SASL/OAUTHBEARER with librdkafka: its unsecured development JWT (`alg: none`, accepted
//! only with `sasl_oauthbearer_unsecured_validator_enable`) over `SASL_PLAINTEXT`, and ES256
//! tokens signed in the test and handed to librdkafka through the rdkafka crate's token
//! callback over `SASL_SSL` (with a client certificate no `ssl_principal_mapping_rules` rule
//! matches: SASL names the principal there), verified against a JWKS file with audience and
//! issuer checks, and a rotated JWKS picked up without a restart.
//! Records exact, hooks see `User:<sub>`. An expired token and a badly signed one are refused
//! (raw: the `{"status":"invalid_token"}` challenge, then SASL_AUTHENTICATION_FAILED and a
//! close; librdkafka: an authentication error, nothing delivered) while a good client is
//! served. With 8 s tokens, librdkafka refreshes its token and re-authenticates (KIP-368)
//! before each session, which lasts as long as the token, ends.

use crate::common;
use crate::support;
use crate::tls::{expected, Pki, Principals};

use std::error::Error;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::StrBytes;
use rafka_broker::{
    Broker, ClientAuth, Config, ListenerConfig, ListenerSslConfig, SaslMechanism, SecurityProtocol,
};
use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};

/// The bound on a refusal.
const REFUSAL_BOUND: Duration = Duration::from_secs(5);
const SASL_AUTHENTICATION_FAILED: i16 = 58;

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn es256_key() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap()
}

/// A compact JWS: `claims` signed by `key` with ES256 under key id `kid`.
fn es256(key: &EcdsaKeyPair, kid: &str, claims: &serde_json::Value) -> String {
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": kid});
    let input = format!(
        "{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    );
    let sig = key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", B64URL.encode(sig.as_ref()))
}

fn claims(sub: &str, exp: i64) -> serde_json::Value {
    serde_json::json!({
        "sub": sub, "iat": now_s() - 5, "exp": exp,
        "aud": "rafka", "iss": "https://idp.test",
    })
}

/// The JWKS document of `key` (kid `k1`).
fn jwks(key: &EcdsaKeyPair) -> serde_json::Value {
    let point = key.public_key().as_ref();
    serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
        "x": B64URL.encode(&point[1..33]), "y": B64URL.encode(&point[33..65]),
    }]})
}

/// A broker with an OAUTHBEARER listener `SECURE` (`protocol`), a `SASL_PLAINTEXT`
/// OAUTHBEARER listener `RAW` (for wire-level checks) and a plaintext `LOCAL` one.
async fn start(
    dir: &Path,
    pki: &Pki,
    protocol: SecurityProtocol,
    hook: Arc<Principals>,
    configure: impl FnOnce(&mut Config),
) -> Broker {
    support::log_to_test_output();
    let mut cfg = Config::default();
    cfg.storage.path = dir.join("data");
    let listener = |name: &str, protocol: SecurityProtocol| ListenerConfig {
        name: name.into(),
        listen: "127.0.0.1:0".into(),
        advertised: None,
        security_protocol: protocol,
        // Client certificates are asked for: on SASL_SSL the principal is still SASL's.
        ssl: (protocol == SecurityProtocol::SaslSsl).then(|| ListenerSslConfig {
            certificate: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            client_ca: Some(pki.ca.clone()),
            client_auth: Some(ClientAuth::Requested),
            principal_mapping_rules: None,
        }),
        sasl_enabled_mechanisms: (protocol != SecurityProtocol::Plaintext)
            .then(|| vec![SaslMechanism::OAuthBearer]),
    };
    cfg.broker.listeners = vec![
        listener("LOCAL", SecurityProtocol::Plaintext),
        listener("SECURE", protocol),
        listener("RAW", SecurityProtocol::SaslPlaintext),
    ];
    configure(&mut cfg);
    Broker::builder()
        .config(cfg)
        .hook_arc(hook)
        .start()
        .await
        .expect("broker starts")
}

/// Hands librdkafka a fixed token; records the errors it reports.
#[derive(Clone)]
struct Bearer {
    token: String,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Bearer {
    fn new(token: String) -> Bearer {
        Bearer {
            token,
            errors: Arc::default(),
        }
    }
}

impl ClientContext for Bearer {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _: Option<&str>) -> Result<OAuthToken, Box<dyn Error>> {
        // librdkafka only takes a token it believes unexpired: the broker judges the JWT.
        Ok(OAuthToken {
            token: self.token.clone(),
            principal_name: "from-the-token".into(),
            lifetime_ms: (now_s() + 3600) * 1000,
        })
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.errors
            .lock()
            .unwrap()
            .push(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Bearer {}

fn sasl_ssl_client(broker: &Broker, pki: &Pki) -> ClientConfig {
    let addr = broker.listener_address("SECURE").unwrap().to_string();
    let mut c = support::client_config(&addr);
    c.set("security.protocol", "sasl_ssl")
        .set("ssl.ca.location", pki.ca.to_str().unwrap())
        .set(
            "ssl.certificate.location",
            pki.client_cert.to_str().unwrap(),
        )
        .set("ssl.key.location", pki.client_key.to_str().unwrap())
        .set("sasl.mechanism", "OAUTHBEARER");
    c
}

/// Produces `n` keyed records to partition 0 with `ctx`'s token; the acked offsets.
async fn produce_with(cfg: &ClientConfig, ctx: Bearer, topic: &str, n: usize) -> Vec<i64> {
    let p: FutureProducer<Bearer> = cfg
        .clone()
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create_with_context(ctx)
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

/// Reads `n` records of partition 0 from the start with `ctx`'s token; blocking.
fn consume_with(
    cfg: &ClientConfig,
    ctx: Bearer,
    topic: &str,
    n: usize,
) -> Vec<(i64, String, String)> {
    let c: BaseConsumer<Bearer> = cfg
        .clone()
        .set("group.id", "oauth-reader")
        .set("enable.auto.commit", "false")
        .create_with_context(ctx)
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

/// A raw OAUTHBEARER exchange on the `RAW` listener with `token`: the SaslAuthenticate
/// answers (error code, auth bytes, message) until the broker fails or accepts it.
async fn raw_exchange(broker: &Broker, token: &str) -> Vec<(i16, Bytes, Option<String>)> {
    let addr = broker.listener_address("RAW").unwrap().to_string();
    let mut conn = common::KafkaConn::connect(&addr).await;
    let ResponseKind::SaslHandshake(h) = conn
        .send(
            ApiKey::SaslHandshake,
            1,
            RequestKind::SaslHandshake(
                SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str("OAUTHBEARER")),
            ),
        )
        .await
    else {
        panic!("not a SaslHandshake answer")
    };
    assert_eq!(h.error_code, 0);
    let mut answers = Vec::new();
    let mut message = format!("n,,\x01auth=Bearer {token}\x01\x01").into_bytes();
    loop {
        let ResponseKind::SaslAuthenticate(a) = conn
            .send(
                ApiKey::SaslAuthenticate,
                2,
                RequestKind::SaslAuthenticate(
                    SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message)),
                ),
            )
            .await
        else {
            panic!("not a SaslAuthenticate answer")
        };
        let done = a.error_code != 0 || a.auth_bytes.is_empty();
        answers.push((
            a.error_code,
            a.auth_bytes.clone(),
            a.error_message
                .as_ref()
                .map(|m| m.to_string())
                .filter(|m| !m.is_empty()),
        ));
        if a.error_code != 0 {
            conn.expect_closed().await;
        }
        if done || answers.len() > 2 {
            return answers;
        }
        // The client's acknowledgement of the server's error (RFC 7628 section 3.2.3).
        message = vec![0x01];
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_unsecured_jwt_only_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::write(dir.path());
    let hook = Arc::new(Principals(Mutex::new(Vec::new())));
    let broker = start(
        dir.path(),
        &pki,
        SecurityProtocol::SaslPlaintext,
        hook.clone(),
        |c| c.broker.sasl_oauthbearer_unsecured_validator_enable = true,
    )
    .await;
    let local = broker.listener_address("LOCAL").unwrap().to_string();
    let topic = "oauth-unsecured";
    support::create_topic(&local, topic, 1, &[]).await;
    let addr = broker.listener_address("SECURE").unwrap().to_string();
    let mut client = support::client_config(&addr);
    client
        .set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanism", "OAUTHBEARER")
        .set("enable.sasl.oauthbearer.unsecure.jwt", "true")
        .set("sasl.oauthbearer.config", "principal=alice");
    let n = 100;
    let offsets = crate::tls::produce(&client, topic, n).await;
    assert_eq!(offsets, (0..n as i64).collect::<Vec<_>>());
    let got = {
        let c = client.clone();
        tokio::task::spawn_blocking(move || crate::tls::consume(&c, topic, n))
            .await
            .unwrap()
    };
    assert_eq!(got, expected(n));
    let seen = hook.0.lock().unwrap().clone();
    let secure: Vec<&String> = seen.iter().filter(|l| l.starts_with("SECURE ")).collect();
    assert!(!secure.is_empty(), "{seen:?}");
    assert!(
        secure
            .iter()
            .all(|l| *l == "SECURE SASL_PLAINTEXT User:alice"),
        "{secure:?}"
    );
    broker.shutdown().await.unwrap();

    // The same client against a broker without the unsecured validator: refused.
    let dir2 = tempfile::tempdir().unwrap();
    let hook = Arc::new(Principals(Mutex::new(Vec::new())));
    let broker = start(
        dir2.path(),
        &pki,
        SecurityProtocol::SaslPlaintext,
        hook,
        |_| {},
    )
    .await;
    let addr = broker.listener_address("SECURE").unwrap().to_string();
    client.set("bootstrap.servers", &addr);
    let (failed, took) = tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = client.create().unwrap();
        let started = Instant::now();
        let failed = c.fetch_metadata(None, REFUSAL_BOUND).is_err();
        (failed, started.elapsed())
    })
    .await
    .unwrap();
    assert!(failed, "an unsigned token was served");
    assert!(took <= REFUSAL_BOUND + Duration::from_secs(1), "{took:?}");
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_tokens_over_sasl_ssl_and_the_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::write(dir.path());
    let key = es256_key();
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, jwks(&key).to_string()).unwrap();
    let hook = Arc::new(Principals(Mutex::new(Vec::new())));
    let broker = start(
        dir.path(),
        &pki,
        SecurityProtocol::SaslSsl,
        hook.clone(),
        |c| {
            c.broker.sasl_oauthbearer_jwks_endpoint_url =
                Some(format!("file://{}", jwks_path.display()));
            c.broker.sasl_oauthbearer_expected_audience = vec!["rafka".into()];
            c.broker.sasl_oauthbearer_expected_issuer = Some("https://idp.test".into());
            // Rules no client certificate matches: they apply on SSL listeners only.
            c.broker.ssl_principal_mapping_rules = "RULE:^CN=nobody,.*$/nobody/".into();
        },
    )
    .await;
    let local = broker.listener_address("LOCAL").unwrap().to_string();
    let topic = "oauth-signed";
    support::create_topic(&local, topic, 1, &[]).await;

    // A good token: produce and consume, exact, as User:alice.
    let good = es256(&key, "k1", &claims("alice", now_s() + 600));
    let client = sasl_ssl_client(&broker, &pki);
    let n = 100;
    let offsets = produce_with(&client, Bearer::new(good.clone()), topic, n).await;
    assert_eq!(offsets, (0..n as i64).collect::<Vec<_>>());
    let got = {
        let c = client.clone();
        let ctx = Bearer::new(good.clone());
        tokio::task::spawn_blocking(move || consume_with(&c, ctx, topic, n))
            .await
            .unwrap()
    };
    assert_eq!(got, expected(n));
    let seen = hook.0.lock().unwrap().clone();
    let secure: Vec<&String> = seen.iter().filter(|l| l.starts_with("SECURE ")).collect();
    assert!(!secure.is_empty(), "{seen:?}");
    assert!(
        secure.iter().all(|l| *l == "SECURE SASL_SSL User:alice"),
        "{secure:?}"
    );

    // DescribeConfigs of the broker shows the settings under Kafka's names.
    let described = support::admin(&local)
        .describe_configs(
            &[rdkafka::admin::ResourceSpecifier::Broker(0)],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await
        .unwrap();
    let res = described[0].as_ref().unwrap();
    for (name, want) in [
        ("sasl.oauthbearer.expected.audience", "rafka"),
        ("sasl.oauthbearer.expected.issuer", "https://idp.test"),
        ("sasl.oauthbearer.sub.claim.name", "sub"),
        ("sasl.oauthbearer.clock.skew.seconds", "30"),
        ("ssl.principal.mapping.rules", "RULE:^CN=nobody,.*$/nobody/"),
    ] {
        assert_eq!(
            res.get(name).and_then(|e| e.value.as_deref()),
            Some(want),
            "{name}"
        );
    }

    // On the wire: a good token is accepted at once (empty answer, the token's lifetime)...
    let answers = raw_exchange(&broker, &good).await;
    assert_eq!(answers.len(), 1);
    assert_eq!((answers[0].0, answers[0].1.len()), (0, 0));
    // ...an expired one and a badly signed one get the JSON challenge, then
    // SASL_AUTHENTICATION_FAILED with it as the message, then the connection is closed.
    let expired = es256(&key, "k1", &claims("alice", now_s() - 120));
    let forged = es256(&es256_key(), "k1", &claims("alice", now_s() + 600));
    let wrong_audience = {
        let mut c = claims("alice", now_s() + 600);
        c["aud"] = "someone-else".into();
        es256(&key, "k1", &c)
    };
    for (what, token) in [
        ("expired", &expired),
        ("bad signature", &forged),
        ("wrong audience", &wrong_audience),
    ] {
        let started = Instant::now();
        let answers = raw_exchange(&broker, token).await;
        let invalid = Some(r#"{"status":"invalid_token"}"#.to_string());
        assert_eq!(
            answers,
            vec![
                (
                    0,
                    Bytes::from_static(br#"{"status":"invalid_token"}"#),
                    None
                ),
                (SASL_AUTHENTICATION_FAILED, Bytes::new(), invalid),
            ],
            "{what}"
        );
        assert!(
            started.elapsed() < REFUSAL_BOUND,
            "{what}: {:?}",
            started.elapsed()
        );
    }

    // librdkafka with the expired and the forged token: an authentication error within the
    // bound, nothing delivered; a good client is served meanwhile.
    for (i, (what, token)) in [("expired", expired), ("bad signature", forged)]
        .into_iter()
        .enumerate()
    {
        let ctx = Bearer::new(token);
        let errors = ctx.errors.clone();
        let p: FutureProducer<Bearer> = client
            .clone()
            .set("message.timeout.ms", "3000")
            .create_with_context(ctx)
            .unwrap();
        let started = Instant::now();
        let sent = p
            .send(
                FutureRecord::to(topic)
                    .key("refused")
                    .payload("refused")
                    .partition(0),
                Duration::from_secs(1),
            )
            .await;
        assert!(sent.is_err(), "{what}: delivered");
        support::wait_for("librdkafka's authentication error", REFUSAL_BOUND, || {
            errors
                .lock()
                .unwrap()
                .iter()
                .any(|e| e.contains("invalid_token"))
        })
        .await;
        eprintln!(
            "{what}: refused in {:?}: {:?}",
            started.elapsed(),
            errors.lock().unwrap()
        );
        let offsets = produce_with(&client, Bearer::new(good.clone()), topic, 1).await;
        assert_eq!(offsets, vec![(n + i) as i64], "{what}: the good client");
    }
    // Key rotation: the identity provider's JWKS now has only a new key. The periodic
    // refresh is an hour away; the first token with the new key id makes the broker reread
    // the file (that token is refused), and the client's retry is accepted; the old key's
    // tokens are not.
    let rotated = es256_key();
    let mut set = jwks(&rotated);
    set["keys"][0]["kid"] = "k2".into();
    std::fs::write(&jwks_path, set.to_string()).unwrap();
    let mut claims_k2 = claims("carol", now_s() + 600);
    claims_k2["aud"] = serde_json::json!(["other", "rafka"]);
    let new_token = {
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": "k2"});
        let input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims_k2.to_string())
        );
        let sig = rotated
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", B64URL.encode(sig.as_ref()))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answers = raw_exchange(&broker, &new_token).await;
        if answers.len() == 1 && answers[0].0 == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated key is not used after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        raw_exchange(&broker, &good).await.len(),
        2,
        "the old key still verifies"
    );
    broker.shutdown().await.unwrap();
}

/// Lifetime of the tokens of the re-authentication test.
const TOKEN_LIFETIME_S: i64 = 8;

/// Signs a fresh ES256 token for `alice` at each refresh, valid for `lifetime_s`.
#[derive(Clone)]
struct Minting {
    key: Arc<EcdsaKeyPair>,
    lifetime_s: i64,
    minted: Arc<Mutex<usize>>,
}

impl ClientContext for Minting {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _: Option<&str>) -> Result<OAuthToken, Box<dyn Error>> {
        let exp = now_s() + self.lifetime_s;
        *self.minted.lock().unwrap() += 1;
        Ok(OAuthToken {
            token: es256(&self.key, "k1", &claims("alice", exp)),
            principal_name: "alice".into(),
            lifetime_ms: exp * 1000,
        })
    }
}

impl ConsumerContext for Minting {}

/// `rafka_sasl_total` of `outcome`, from the admin endpoint.
async fn sasl_total(broker: &Broker, outcome: &str) -> u64 {
    let (status, _, text) =
        crate::metrics::http(broker.admin_address().unwrap(), "GET", "/metrics").await;
    assert_eq!(status, 200);
    let name = format!("rafka_sasl_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&name))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// KIP-368 with short-lived tokens: the broker gives each session the token's remaining
/// lifetime (no `connections_max_reauth_ms`), librdkafka refreshes its token (at 80 % of
/// its lifetime) and re-authenticates on the open connection (at 90 % of the session), and
/// records keep flowing, exact. The last 10 % of a session is the client's margin to
/// re-authenticate: 3 s tokens left too little of it on this loaded machine (a session
/// expired now and then, and librdkafka reconnected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_last_as_long_as_the_token_and_librdkafka_reauthenticates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::write(dir.path());
    let key = Arc::new(es256_key());
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, jwks(&key).to_string()).unwrap();
    let hook = Arc::new(Principals(Mutex::new(Vec::new())));
    let broker = start(
        dir.path(),
        &pki,
        SecurityProtocol::SaslPlaintext,
        hook.clone(),
        |c| {
            c.admin.listen = "127.0.0.1:0".into();
            c.broker.sasl_oauthbearer_jwks_endpoint_url =
                Some(format!("file://{}", jwks_path.display()));
        },
    )
    .await;
    let local = broker.listener_address("LOCAL").unwrap().to_string();
    let topic = "oauth-reauth";
    support::create_topic(&local, topic, 1, &[]).await;
    let addr = broker.listener_address("SECURE").unwrap().to_string();
    let mut client = support::client_config(&addr);
    client
        .set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanism", "OAUTHBEARER");
    let ctx = Minting {
        key: key.clone(),
        lifetime_s: TOKEN_LIFETIME_S,
        minted: Arc::default(),
    };
    let producer: FutureProducer<Minting> = client
        .clone()
        .set("linger.ms", "5")
        .create_with_context(ctx.clone())
        .unwrap();
    // About 10 s of traffic: more than one token's worth; a batch every 300 ms.
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(10) {
        for _ in 0..5 {
            let v = format!("r-{n}");
            let d = producer
                .send(
                    FutureRecord::<(), _>::to(topic).payload(&v).partition(0),
                    Duration::from_secs(10),
                )
                .await
                .expect("delivered across re-authentications");
            assert_eq!(d.offset, n as i64);
            n += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let reauthenticated = sasl_total(&broker, "reauthenticated").await;
    let minted = *ctx.minted.lock().unwrap();
    println!(
        "OAUTHBEARER, {TOKEN_LIFETIME_S} s tokens: {n} records in {:?}, {minted} tokens \
         minted, {reauthenticated} re-authentications",
        started.elapsed()
    );
    assert!(
        minted >= 2,
        "librdkafka refreshed no token ({minted} minted)"
    );
    assert!(
        reauthenticated >= 1,
        "no re-authentication in 10 s of {TOKEN_LIFETIME_S} s sessions"
    );
    assert_eq!(sasl_total(&broker, "expired").await, 0, "a session expired");
    assert_eq!(sasl_total(&broker, "failed").await, 0);
    let got = {
        let mut c = client.clone();
        tokio::task::spawn_blocking(move || {
            let c: BaseConsumer<Minting> = c
                .set("group.id", "oauth-reauth")
                .set("enable.auto.commit", "false")
                .create_with_context(Minting {
                    key,
                    lifetime_s: 60,
                    minted: Arc::default(),
                })
                .unwrap();
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, 0, Offset::Beginning)
                .unwrap();
            c.assign(&tpl).unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut got = Vec::new();
            while got.len() < n && Instant::now() < deadline {
                if let Some(m) = c.poll(Duration::from_millis(200)) {
                    let m = m.expect("message");
                    got.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
                }
            }
            got
        })
        .await
        .unwrap()
    };
    assert_eq!(got, (0..n).map(|i| format!("r-{i}")).collect::<Vec<_>>());
    assert!(hook
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("SECURE "))
        .all(|l| l == "SECURE SASL_PLAINTEXT User:alice"));
    broker.shutdown().await.unwrap();
}
