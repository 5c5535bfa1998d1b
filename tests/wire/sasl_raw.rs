//! SASL on the wire, frame by frame: a `SASL_PLAINTEXT` listener beside a `PLAINTEXT` one.
//! Nothing but ApiVersions and the SASL exchange before authentication; KIP-152 answers and
//! the failed-authentication delay; SaslHandshake v0's raw tokens; a KIP-368 session that
//! expires; and SASL requests on a listener without SASL. Every refusal is checked to close
//! within a bound while the broker goes on serving another client.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, MetadataRequest, RequestKind, ResponseKind,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use rafka_broker::{ListenerConfig, SaslMechanism, ScramUserConfig, SecurityProtocol};
use rafka_protocol::sasl::plain;
use rafka_protocol::sasl::scram::{ScramClient, ScramMechanism};

use crate::common::{encode, start_broker, str_bytes, topic_name, KafkaConn, TestBroker};

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;
const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// The failed-authentication delay of these brokers.
const DELAY: Duration = Duration::from_millis(300);

fn listener(name: &str, protocol: SecurityProtocol) -> ListenerConfig {
    ListenerConfig {
        name: name.into(),
        listen: "127.0.0.1:0".into(),
        advertised: None,
        security_protocol: protocol,
        ssl: None,
        sasl_enabled_mechanisms: None,
    }
}

/// A broker with a `SASL` listener (PLAIN and both SCRAMs) and a `PLAIN_TEXT` one; users
/// alice and bob.
async fn sasl_broker(reauth_ms: u64) -> TestBroker {
    start_broker(|c| {
        c.broker.listeners = vec![
            ListenerConfig {
                sasl_enabled_mechanisms: Some(SaslMechanism::ALL.to_vec()),
                ..listener("SASL", SecurityProtocol::SaslPlaintext)
            },
            listener("PLAIN_TEXT", SecurityProtocol::Plaintext),
        ];
        c.broker.connections_max_reauth_ms = reauth_ms;
        c.broker.connection_failed_authentication_delay_ms = DELAY.as_millis() as u64;
        c.broker.scram_users = ["alice", "bob"]
            .into_iter()
            .map(|u| ScramUserConfig {
                name: u.into(),
                password: format!("{u}-secret"),
                mechanisms: vec!["SCRAM-SHA-256".into(), "SCRAM-SHA-512".into()],
                iterations: 4096,
            })
            .collect();
    })
    .await
}

async fn connect(b: &TestBroker, listener: &str) -> KafkaConn {
    let addr = b
        .broker
        .as_ref()
        .unwrap()
        .listener_address(listener)
        .unwrap();
    KafkaConn::connect(&addr.to_string()).await
}

async fn handshake(c: &mut KafkaConn, version: i16, mechanism: &str) -> SaslHandshakeResponse {
    let req = SaslHandshakeRequest::default().with_mechanism(str_bytes(mechanism));
    match c
        .send(
            ApiKey::SaslHandshake,
            version,
            RequestKind::SaslHandshake(req),
        )
        .await
    {
        ResponseKind::SaslHandshake(r) => r,
        other => panic!("{other:?}"),
    }
}

async fn authenticate(c: &mut KafkaConn, version: i16, token: Vec<u8>) -> SaslAuthenticateResponse {
    let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
    match c
        .send(
            ApiKey::SaslAuthenticate,
            version,
            RequestKind::SaslAuthenticate(req),
        )
        .await
    {
        ResponseKind::SaslAuthenticate(r) => r,
        other => panic!("{other:?}"),
    }
}

/// PLAIN with SaslHandshake v1 + SaslAuthenticate v2.
async fn plain_login(c: &mut KafkaConn, user: &str, password: &str) -> SaslAuthenticateResponse {
    assert_eq!(handshake(c, 1, "PLAIN").await.error_code, 0);
    authenticate(c, 2, plain::encode(user, password)).await
}

/// A whole SCRAM exchange; the last answer.
async fn scram_login(
    c: &mut KafkaConn,
    m: ScramMechanism,
    user: &str,
    password: &str,
) -> SaslAuthenticateResponse {
    assert_eq!(handshake(c, 1, m.name()).await.error_code, 0);
    let mut client = ScramClient::new(m, user, password, "rawclientnonce".into());
    let first = authenticate(c, 2, client.client_first()).await;
    if first.error_code != 0 {
        return first;
    }
    let last = client
        .client_final(&first.auth_bytes)
        .expect("server-first");
    let done = authenticate(c, 2, last).await;
    if done.error_code == 0 {
        client
            .verify_server_final(&done.auth_bytes)
            .expect("the broker proves it holds the credential");
    }
    done
}

/// A Metadata round trip for `topic` (no auto-creation); its error code.
async fn metadata_error(c: &mut KafkaConn, topic: &str) -> i16 {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
        ]))
        .with_allow_auto_topic_creation(false);
    match c
        .send(ApiKey::Metadata, 12, RequestKind::Metadata(req))
        .await
    {
        ResponseKind::Metadata(r) => r.topics[0].error_code,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_but_api_versions_and_sasl_before_authentication() {
    let b = sasl_broker(0).await;
    let mut c = connect(&b, "SASL").await;
    // ApiVersions is served, and lists the SASL APIs.
    let ResponseKind::ApiVersions(v) = c
        .send(
            ApiKey::ApiVersions,
            3,
            RequestKind::ApiVersions(ApiVersionsRequest::default()),
        )
        .await
    else {
        panic!("no ApiVersions answer")
    };
    for (key, max) in [(ApiKey::SaslHandshake, 1), (ApiKey::SaslAuthenticate, 2)] {
        let k = v.api_keys.iter().find(|k| k.api_key == key as i16).unwrap();
        assert_eq!((k.min_version, k.max_version), (0, max), "{key:?}");
    }
    // A Metadata that would auto-create a topic: the connection closes, nothing is done.
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name("created-before-auth")))
        ]))
        .with_allow_auto_topic_creation(true);
    let started = Instant::now();
    c.write_raw(&encode(
        ApiKey::Metadata,
        12,
        9,
        &RequestKind::Metadata(req),
    ))
    .await;
    c.expect_closed().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let mut p = connect(&b, "PLAIN_TEXT").await;
    assert_eq!(
        metadata_error(&mut p, "created-before-auth").await,
        UNKNOWN_TOPIC_OR_PARTITION,
        "the refused request created its topic"
    );
    // Another client authenticates and is served.
    let mut ok = connect(&b, "SASL").await;
    let r = plain_login(&mut ok, "alice", "alice-secret").await;
    assert_eq!((r.error_code, r.session_lifetime_ms), (0, 0));
    assert_eq!(
        metadata_error(&mut ok, "created-before-auth").await,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    // After authentication a SaslAuthenticate is out of place (Kafka's KafkaApis answer).
    let r = authenticate(&mut ok, 2, vec![]).await;
    assert_eq!(r.error_code, ILLEGAL_SASL_STATE);
    ok.check_alive().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentication_is_answered_after_the_delay_then_closed() {
    let b = sasl_broker(0).await;
    // Wrong password (PLAIN), unknown user (PLAIN, SCRAM), wrong password (SCRAM-SHA-512).
    for (user, password, mechanism, want) in [
        ("alice", "wrong", None, "Invalid username or password"),
        ("mallory", "x", None, "Invalid username or password"),
        (
            "mallory",
            "x",
            Some(ScramMechanism::Sha256),
            "invalid credentials with SASL mechanism SCRAM-SHA-256",
        ),
        (
            "bob",
            "alice-secret",
            Some(ScramMechanism::Sha512),
            "invalid credentials with SASL mechanism SCRAM-SHA-512",
        ),
    ] {
        let mut c = connect(&b, "SASL").await;
        let started = Instant::now();
        let r = match mechanism {
            None => plain_login(&mut c, user, password).await,
            Some(m) => scram_login(&mut c, m, user, password).await,
        };
        let took = started.elapsed();
        assert_eq!(
            r.error_code, SASL_AUTHENTICATION_FAILED,
            "{user}/{password}"
        );
        let msg = r.error_message.as_deref().unwrap_or_default().to_string();
        assert!(msg.contains(want), "{user}: {msg}");
        assert!(!msg.contains(user), "the message names the user: {msg}");
        assert!(
            took >= DELAY,
            "answered after {took:?}, before the {DELAY:?} delay"
        );
        assert!(took < DELAY + Duration::from_secs(2), "{took:?}");
        c.expect_closed().await;
    }
    // A mechanism the listener does not offer: the offered list, then closed.
    let mut c = connect(&b, "SASL").await;
    let started = Instant::now();
    let r = handshake(&mut c, 1, "GSSAPI").await;
    assert!(started.elapsed() >= DELAY);
    assert_eq!(r.error_code, UNSUPPORTED_SASL_MECHANISM);
    let offered: Vec<&str> = r.mechanisms.iter().map(|m| m.as_str()).collect();
    assert_eq!(
        offered,
        ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
    );
    c.expect_closed().await;
    // Another request in the middle of the exchange: ILLEGAL_SASL_STATE, closed.
    let mut c = connect(&b, "SASL").await;
    assert_eq!(handshake(&mut c, 1, "SCRAM-SHA-256").await.error_code, 0);
    let req = MetadataRequest::default().with_topics(Some(vec![]));
    let ResponseKind::Metadata(_) = c
        .send(ApiKey::Metadata, 12, RequestKind::Metadata(req))
        .await
    else {
        panic!("no Metadata answer")
    };
    c.expect_closed().await;
    // The delays held no one else up: a client authenticates at once.
    let mut ok = connect(&b, "SASL").await;
    let started = Instant::now();
    let r = scram_login(&mut ok, ScramMechanism::Sha512, "bob", "bob-secret").await;
    assert_eq!(r.error_code, 0);
    println!(
        "SCRAM-SHA-512 exchange (debug build, loopback): {:?}",
        started.elapsed()
    );
    assert_eq!(
        metadata_error(&mut ok, "none").await,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_v0_exchanges_raw_tokens() {
    let b = sasl_broker(0).await;
    // PLAIN: one token, an empty one back.
    let mut c = connect(&b, "SASL").await;
    assert_eq!(handshake(&mut c, 0, "PLAIN").await.error_code, 0);
    let token = plain::encode("alice", "alice-secret");
    let mut framed = (token.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&token);
    c.write_raw(&framed).await;
    assert_eq!(c.read_raw_token().await.as_deref(), Some(&[][..]));
    assert_eq!(
        metadata_error(&mut c, "none").await,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    // SCRAM-SHA-256 in raw tokens.
    let mut c = connect(&b, "SASL").await;
    assert_eq!(handshake(&mut c, 0, "SCRAM-SHA-256").await.error_code, 0);
    let mut client = ScramClient::new(
        ScramMechanism::Sha256,
        "bob",
        "bob-secret",
        "v0nonce".into(),
    );
    let raw = |t: &[u8]| {
        let mut f = (t.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(t);
        f
    };
    c.write_raw(&raw(&client.client_first())).await;
    let first = c.read_raw_token().await.expect("server-first");
    let last = client.client_final(&first).unwrap();
    c.write_raw(&raw(&last)).await;
    let fin = c.read_raw_token().await.expect("server-final");
    client.verify_server_final(&fin).unwrap();
    assert_eq!(
        metadata_error(&mut c, "none").await,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    // A bad password in raw tokens: no answer (Kafka just closes), after the delay.
    let mut c = connect(&b, "SASL").await;
    assert_eq!(handshake(&mut c, 0, "PLAIN").await.error_code, 0);
    let started = Instant::now();
    c.write_raw(&raw(&plain::encode("alice", "nope"))).await;
    assert_eq!(
        c.read_raw_token().await,
        None,
        "a failed raw exchange is answered"
    );
    assert!(started.elapsed() >= DELAY);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_closed_at_its_next_request() {
    let b = sasl_broker(600).await;
    let mut c = connect(&b, "SASL").await;
    let r = scram_login(&mut c, ScramMechanism::Sha256, "alice", "alice-secret").await;
    assert_eq!((r.error_code, r.session_lifetime_ms), (0, 600));
    assert_eq!(
        metadata_error(&mut c, "none").await,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    // Re-authenticated before expiry, as the same user: a new session.
    let mut again = connect(&b, "SASL").await;
    let r = plain_login(&mut again, "bob", "bob-secret").await;
    assert_eq!(r.session_lifetime_ms, 600);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let r = plain_login(&mut again, "bob", "bob-secret").await;
    assert_eq!((r.error_code, r.session_lifetime_ms), (0, 600));
    // Past the first session's end, within the second's.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        metadata_error(&mut again, "none").await,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    // `c` never re-authenticated: its next request closes it, unanswered.
    let started = Instant::now();
    c.write_raw(&encode(
        ApiKey::ApiVersions,
        3,
        99,
        &RequestKind::ApiVersions(ApiVersionsRequest::default()),
    ))
    .await;
    c.expect_closed().await;
    assert!(started.elapsed() < Duration::from_secs(2));
    // Re-authenticating as someone else fails and closes.
    let r = plain_login(&mut again, "alice", "alice-secret").await;
    assert_eq!(r.error_code, SASL_AUTHENTICATION_FAILED);
    let msg = r.error_message.unwrap();
    assert!(msg.contains("Cannot change principals"), "{msg}");
    again.expect_closed().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_requests_on_a_listener_without_sasl_are_illegal_sasl_state() {
    let b = sasl_broker(0).await;
    let mut c = connect(&b, "PLAIN_TEXT").await;
    for version in 0..=1 {
        let r = handshake(&mut c, version, "PLAIN").await;
        assert_eq!(r.error_code, ILLEGAL_SASL_STATE, "v{version}");
    }
    for version in 0..=2 {
        let r = authenticate(&mut c, version, plain::encode("alice", "alice-secret")).await;
        assert_eq!(r.error_code, ILLEGAL_SASL_STATE, "v{version}");
    }
    c.check_alive().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authentication_not_finished_in_time_is_closed() {
    let b = sasl_broker(0).await;
    let mut idle = connect(&b, "SASL").await;
    let started = Instant::now();
    idle.check_alive().await; // ApiVersions, then nothing.
                              // Meanwhile others are served.
    let mut ok = connect(&b, "SASL").await;
    assert_eq!(
        plain_login(&mut ok, "alice", "alice-secret")
            .await
            .error_code,
        0
    );
    tokio::time::sleep(Duration::from_secs(9)).await;
    idle.expect_closed().await;
    let took = started.elapsed();
    assert!(
        (Duration::from_secs(9)..Duration::from_secs(13)).contains(&took),
        "closed after {took:?}"
    );
    ok.check_alive().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_tokens_are_bounded() {
    let b = sasl_broker(0).await;
    // In a SaslAuthenticate: over 64 KiB fails the authentication (KIP-152 answer).
    let mut c = connect(&b, "SASL").await;
    assert_eq!(handshake(&mut c, 1, "PLAIN").await.error_code, 0);
    let r = authenticate(&mut c, 2, vec![b'a'; 64 * 1024 + 1]).await;
    assert_eq!(r.error_code, SASL_AUTHENTICATION_FAILED);
    c.expect_closed().await;
    // A raw token's size prefix over 64 KiB closes the connection before it is read.
    let mut c = connect(&b, "SASL").await;
    assert_eq!(handshake(&mut c, 0, "PLAIN").await.error_code, 0);
    c.write_raw(&(64 * 1024 + 1u32).to_be_bytes()).await;
    c.expect_closed().await;
    let mut ok = connect(&b, "SASL").await;
    assert_eq!(
        plain_login(&mut ok, "bob", "bob-secret").await.error_code,
        0
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_connections_set_up_one_after_another() {
    let b = sasl_broker(0).await;
    let n = 100;
    let started = Instant::now();
    for _ in 0..n {
        let mut c = connect(&b, "SASL").await;
        let r = scram_login(&mut c, ScramMechanism::Sha512, "alice", "alice-secret").await;
        assert_eq!(r.error_code, 0);
    }
    let took = started.elapsed();
    println!(
        "{n} SCRAM-SHA-512 connections one after another (connect, SaslHandshake, two \
         SaslAuthenticate; debug build, loopback): {took:?}, {:.0}/s",
        n as f64 / took.as_secs_f64()
    );
    b.shutdown().await;
}
