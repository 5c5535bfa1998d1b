//! SASL authentication on a `SASL_PLAINTEXT` or `SASL_SSL` listener, sans-IO: one
//! [`Authenticator`] per connection takes the connection's requests (or, after SaslHandshake
//! v0, its raw tokens) before the request pipeline and says what to do with each — pass it
//! on, answer it, swap the session's principal, or refuse and close. `server.rs` owns the
//! socket, the clock and the failed-authentication delay.
//!
//! Kafka's rules, as its `SaslServerAuthenticator` applies them:
//! - Before authentication only ApiVersions and SaslHandshake are read; anything else closes
//!   the connection unanswered. After a SaslHandshake v1 only SaslAuthenticate is; another
//!   request is answered ILLEGAL_SASL_STATE and the connection closed. After SaslHandshake
//!   v0 the client's next frames are raw SASL tokens (no request header), answered raw.
//! - A mechanism the listener does not offer is answered UNSUPPORTED_SASL_MECHANISM with the
//!   offered list; bad credentials SASL_AUTHENTICATION_FAILED with a message (KIP-152). Both
//!   close the connection, after `connection.failed.authentication.delay.ms`.
//! - KIP-368: with `connections.max.reauth.ms` set, a successful SaslAuthenticate v1+ carries
//!   the session lifetime; the client re-authenticates with SaslHandshake + SaslAuthenticate
//!   on the open connection, as the same principal and mechanism, and a connection whose
//!   session has expired is closed at its next other request.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{
    RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::ResponseError;

use rafka_hooks::{ErrorCode, Rejection};
use rafka_protocol::connection::{DecodedRequest, ResponseMeta};
use rafka_protocol::sasl::plain;
use rafka_protocol::sasl::scram::{ScramCredential, ScramMechanism, ScramServer};

use crate::api::sb;
use crate::config::SaslMechanism;
use crate::oauthbearer::{OAuthBearerServer, Outcome, ValidatorCell};

/// Largest SASL token read (in a SaslAuthenticate request or raw); Kafka's
/// `sasl.server.max.receive.size` default, 512 KiB, is for GSSAPI, which Rafka does not
/// offer: PLAIN and SCRAM messages are a few hundred bytes.
pub(crate) const SASL_TOKEN_BYTES_MAX: usize = 64 * 1024;

/// How long an authentication (or re-authentication) may take from its first request (the
/// connection's accept, for the first one) before the connection is closed: the TLS
/// handshake's bound.
pub(crate) const AUTHENTICATION_TIMEOUT: Duration = crate::tls::HANDSHAKE_TIMEOUT;

/// What the authenticator needs from the broker: stored credentials and random nonces.
pub(crate) trait AuthBackend {
    /// The SCRAM credential of `user` for `mechanism`.
    fn scram_credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential>;
    /// Whether `password` is `user`'s (against any of their stored SCRAM credentials).
    fn verify_plain(&self, user: &str, password: &str) -> bool;
    /// A fresh server nonce (printable, no `,`), from a cryptographic RNG.
    fn server_nonce(&self) -> String;
    /// The wall clock in milliseconds since the epoch (OAUTHBEARER's `exp` and `nbf`).
    fn unix_time_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A listener's SASL settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SaslSettings {
    /// The mechanisms offered, in the configured order (SaslHandshake lists them so).
    pub mechanisms: Vec<SaslMechanism>,
    /// `connections.max.reauth.ms`; `None` when 0 (sessions never expire).
    pub session_lifetime: Option<Duration>,
    /// OAUTHBEARER's token checks (`None`: every token is refused).
    pub oauthbearer: Option<std::sync::Arc<ValidatorCell>>,
}

impl SaslSettings {
    /// The settings of a `SASL_*` listener.
    pub fn new(mechanisms: Vec<SaslMechanism>, connections_max_reauth_ms: u64) -> SaslSettings {
        SaslSettings {
            mechanisms,
            session_lifetime: (connections_max_reauth_ms > 0)
                .then(|| Duration::from_millis(connections_max_reauth_ms)),
            oauthbearer: None,
        }
    }

    /// With OAUTHBEARER's token checks.
    pub fn with_oauthbearer(self, validator: std::sync::Arc<ValidatorCell>) -> SaslSettings {
        SaslSettings {
            oauthbearer: Some(validator),
            ..self
        }
    }
}

/// An answer of the authenticator.
// One per SASL request, written at once: boxing the common Kafka case buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Out {
    /// A Kafka response, with its header's metadata.
    Kafka(ResponseMeta, ResponseKind),
    /// A raw SASL token (SaslHandshake v0 framing): written size-prefixed, no header.
    Raw(Bytes),
}

/// What the connection does with one request or token.
#[derive(Debug)]
pub(crate) enum Step {
    /// Not the authenticator's: the request pipeline handles it with the current session.
    Pass,
    /// Write this answer and read on.
    Answer(Out),
    /// Authentication (or re-authentication) succeeded: write the answer; from the next
    /// request on the session's principal is `User:<user>`, authenticated by `mechanism`.
    Authenticated {
        /// The last answer of the exchange.
        out: Out,
        /// The authenticated user name.
        user: String,
        /// How.
        mechanism: SaslMechanism,
    },
    /// Authentication failed: read nothing more; write `out` (if any) after the
    /// failed-authentication delay, then close.
    Failed {
        /// The error answer (none in raw-token framing, where Kafka just closes).
        out: Option<Out>,
        /// For the log.
        reason: String,
    },
    /// Close now, answering nothing: nothing this client sends can be trusted.
    Close(String),
}

/// How tokens travel after SaslHandshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// In SaslAuthenticate requests (SaslHandshake v1).
    Kafka,
    /// Raw, size-prefixed (SaslHandshake v0).
    Raw,
}

/// A mechanism's exchange in progress.
enum Exchange {
    /// PLAIN: one message, one (empty) answer.
    Plain,
    /// SCRAM: client-first, then client-final.
    Scram {
        server: Box<ScramServer>,
        first_done: bool,
    },
    /// OAUTHBEARER: the client-first message (and, after a refused token, its `0x01`).
    OAuthBearer(OAuthBearerServer),
    /// A re-authentication asked for another mechanism: Kafka answers the handshake, then
    /// fails the exchange with this message.
    Refused(String),
}

enum Phase {
    /// Waiting for ApiVersions or SaslHandshake.
    Handshake,
    /// Tokens of `mechanism` in `framing`.
    Exchanging {
        mechanism: SaslMechanism,
        framing: Framing,
        exchange: Exchange,
    },
    /// Authenticated; requests pass while the session lasts.
    Authenticated,
    /// Failed or closed: nothing more is read.
    Done,
}

/// Who the connection authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    user: String,
    mechanism: SaslMechanism,
    /// When the session expires (KIP-368); `None`: never.
    expires: Option<Instant>,
}

/// One connection's SASL state.
pub(crate) struct Authenticator {
    settings: std::sync::Arc<SaslSettings>,
    phase: Phase,
    /// The current authenticated identity; during a re-authentication, the one before it.
    identity: Option<Identity>,
    /// When the authentication in progress must be done.
    deadline: Option<Instant>,
    /// Whether the connection was closed because its session had expired.
    expired: bool,
}

impl Authenticator {
    /// A connection accepted at `accepted`, not yet authenticated.
    pub fn new(settings: std::sync::Arc<SaslSettings>, accepted: Instant) -> Authenticator {
        Authenticator {
            settings,
            phase: Phase::Handshake,
            identity: None,
            deadline: Some(accepted + AUTHENTICATION_TIMEOUT),
            expired: false,
        }
    }

    /// Whether the next frame is a raw SASL token rather than a Kafka request.
    pub fn wants_raw_token(&self) -> bool {
        matches!(
            self.phase,
            Phase::Exchanging {
                framing: Framing::Raw,
                ..
            }
        )
    }

    /// When the authentication in progress runs out of time (`None`: none in progress).
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Authenticated | Phase::Done => None,
            _ => self.deadline,
        }
    }

    /// Whether the connection was closed because its session had expired.
    pub fn closed_expired(&self) -> bool {
        self.expired
    }

    /// Whether the connection is authenticated (and its session had not expired at `now`).
    pub fn is_authenticated(&self, now: Instant) -> bool {
        matches!(self.phase, Phase::Authenticated)
            && self
                .identity
                .as_ref()
                .is_some_and(|i| i.expires.is_none_or(|e| now < e))
    }

    /// One decoded request.
    pub fn on_request(
        &mut self,
        req: &DecodedRequest,
        now: Instant,
        backend: &dyn AuthBackend,
    ) -> Step {
        let meta = req.meta();
        match &mut self.phase {
            Phase::Done => Step::Close("request after the authentication ended".into()),
            Phase::Authenticated => {
                // Re-authentication when the session has a lifetime: the configured one,
                // or an OAUTHBEARER token's.
                let reauth = self.identity.as_ref().is_some_and(|i| i.expires.is_some());
                match &req.body {
                    // As Kafka's SocketServer: a SaslHandshake begins a re-authentication
                    // even after the session expired; any other request then closes.
                    RequestKind::SaslHandshake(h) if reauth => {
                        self.deadline = Some(now + AUTHENTICATION_TIMEOUT);
                        self.handshake(meta, h.mechanism.as_str(), now, backend)
                    }
                    _ if !self.is_authenticated(now) => {
                        self.phase = Phase::Done;
                        self.expired = true;
                        Step::Close(format!(
                            "{:?} request after the SASL session expired",
                            meta.api_key
                        ))
                    }
                    // Everything else, SaslAuthenticate and SaslHandshake without
                    // re-authentication included (ILLEGAL_SASL_STATE in `api::sasl`).
                    _ => Step::Pass,
                }
            }
            Phase::Handshake => match &req.body {
                RequestKind::ApiVersions(_) => Step::Pass,
                RequestKind::SaslHandshake(h) => {
                    self.handshake(meta, h.mechanism.as_str(), now, backend)
                }
                _ => {
                    self.phase = Phase::Done;
                    Step::Close(format!(
                        "{:?} request before SASL authentication",
                        meta.api_key
                    ))
                }
            },
            Phase::Exchanging {
                framing: Framing::Raw,
                ..
            } => {
                self.phase = Phase::Done;
                Step::Close("a Kafka request where a raw SASL token was due".into())
            }
            Phase::Exchanging { .. } => match &req.body {
                RequestKind::SaslAuthenticate(a) => {
                    let token = a.auth_bytes.clone();
                    self.token(Some(meta), &token, now, backend)
                }
                other => {
                    let message = format!(
                        "Unexpected Kafka request of type {:?} during SASL authentication.",
                        meta.api_key
                    );
                    self.phase = Phase::Done;
                    let refusal = Rejection {
                        code: ErrorCode(ResponseError::IllegalSaslState.code()),
                        message: message.clone(),
                        record_errors: Vec::new(),
                    };
                    let out = crate::api::error_response(other, meta.api_version, &refusal)
                        .ok()
                        .flatten()
                        .map(|resp| Out::Kafka(meta, resp));
                    Step::Failed {
                        out,
                        reason: message,
                    }
                }
            },
        }
    }

    /// One raw token (only when [`wants_raw_token`](Self::wants_raw_token)).
    pub fn on_token(&mut self, token: &[u8], now: Instant, backend: &dyn AuthBackend) -> Step {
        if !self.wants_raw_token() {
            self.phase = Phase::Done;
            return Step::Close("a raw SASL token out of place".into());
        }
        self.token(None, token, now, backend)
    }

    fn handshake(
        &mut self,
        meta: ResponseMeta,
        asked: &str,
        now: Instant,
        backend: &dyn AuthBackend,
    ) -> Step {
        let offered: Vec<_> = self
            .settings
            .mechanisms
            .iter()
            .map(|m| sb(m.name()))
            .collect();
        let answer = |code: i16| {
            Out::Kafka(
                meta,
                ResponseKind::SaslHandshake(
                    SaslHandshakeResponse::default()
                        .with_error_code(code)
                        .with_mechanisms(offered.clone()),
                ),
            )
        };
        let Some(mechanism) =
            SaslMechanism::from_name(asked).filter(|m| self.settings.mechanisms.contains(m))
        else {
            self.phase = Phase::Done;
            return Step::Failed {
                out: Some(answer(ResponseError::UnsupportedSaslMechanism.code())),
                reason: format!("unsupported SASL mechanism {asked:?}"),
            };
        };
        let framing = if meta.api_version >= 1 {
            Framing::Kafka
        } else {
            Framing::Raw
        };
        let exchange = match &self.identity {
            Some(before) if before.mechanism != mechanism => Exchange::Refused(format!(
                "SASL mechanism '{}' requested by client is not supported for \
                 re-authentication of mechanism '{}'",
                mechanism.name(),
                before.mechanism.name()
            )),
            _ if mechanism == SaslMechanism::OAuthBearer => {
                Exchange::OAuthBearer(OAuthBearerServer::default())
            }
            _ => match scram_of(mechanism) {
                None => Exchange::Plain,
                Some(m) => Exchange::Scram {
                    server: Box::new(ScramServer::new(m, backend.server_nonce())),
                    first_done: false,
                },
            },
        };
        if self.identity.is_none() {
            // The first authentication keeps the bound counted from accept.
            self.deadline = self.deadline.or(Some(now + AUTHENTICATION_TIMEOUT));
        }
        self.phase = Phase::Exchanging {
            mechanism,
            framing,
            exchange,
        };
        Step::Answer(answer(0))
    }

    /// One token of the exchange; `meta` is the SaslAuthenticate's (`None`: raw framing).
    fn token(
        &mut self,
        meta: Option<ResponseMeta>,
        token: &[u8],
        now: Instant,
        backend: &dyn AuthBackend,
    ) -> Step {
        let reauthenticating = self.identity.is_some();
        let Phase::Exchanging {
            mechanism,
            exchange,
            ..
        } = &mut self.phase
        else {
            return Step::Close("a SASL token out of place".into());
        };
        let mechanism = *mechanism;
        let during = if reauthenticating {
            "re-authentication"
        } else {
            "authentication"
        };
        // Kafka's message for bad credentials names no user: it must not tell a guesser
        // which names exist.
        let invalid = || {
            format!(
                "Authentication failed during {during} due to invalid credentials with SASL \
                 mechanism {}",
                mechanism.name()
            )
        };
        // When the credential itself expires (an OAUTHBEARER token's `exp`), ms since epoch.
        let mut credential_expires_ms = None;
        let result: Result<(Vec<u8>, Option<String>), (String, String)> = if token.len()
            > SASL_TOKEN_BYTES_MAX
        {
            Err((
                "Failing SASL authentication due to invalid receive size".into(),
                format!("token of {} bytes", token.len()),
            ))
        } else {
            match exchange {
                Exchange::Refused(message) => Err((message.clone(), message.clone())),
                Exchange::OAuthBearer(server) => match &self.settings.oauthbearer {
                    None => Err((
                        invalid(),
                        "OAUTHBEARER: no token validator configured".into(),
                    )),
                    Some(v) => match server.evaluate(token, &v.get(), backend.unix_time_ms()) {
                        Outcome::Authenticated { token, .. } => {
                            credential_expires_ms = Some(token.expires_at_ms);
                            Ok((Vec::new(), Some(token.principal)))
                        }
                        // Kafka's error challenge; the client's `0x01` ends the exchange.
                        Outcome::Challenge { challenge, reason } => {
                            tracing::debug!(%reason, "OAUTHBEARER token refused");
                            if matches!(reason, crate::oauthbearer::TokenError::UnknownKeyId(_)) {
                                v.expedite_refresh();
                            }
                            Ok((challenge, None))
                        }
                        Outcome::Failed { message, reason } => {
                            Err((message, format!("OAUTHBEARER: {reason}")))
                        }
                    },
                },
                Exchange::Plain => match plain::parse(token) {
                    // Malformed (an authorization id other than the user included): the
                    // message says what, never whether the user exists.
                    Err(e) => Err((format!("Authentication failed: {e}"), format!("PLAIN: {e}"))),
                    Ok(m) if backend.verify_plain(&m.username, &m.password) => {
                        Ok((Vec::new(), Some(m.username)))
                    }
                    Ok(m) => Err((
                        "Authentication failed: Invalid username or password".into(),
                        format!("PLAIN: bad credentials for {:?}", m.username),
                    )),
                },
                Exchange::Scram { server, first_done } => {
                    let scram =
                        scram_of(mechanism).expect("a SCRAM exchange has a SCRAM mechanism");
                    if !*first_done {
                        *first_done = true;
                        server
                            .client_first(token, |user| backend.scram_credential(user, scram))
                            .map(|first| (first, None))
                            .map_err(|e| (invalid(), format!("SCRAM client-first: {e}")))
                    } else {
                        match server.client_final(token) {
                            Ok(last) => match server.username() {
                                Some(u) => Ok((last, Some(u.to_string()))),
                                None => {
                                    Err((invalid(), "SCRAM: no user after client-final".into()))
                                }
                            },
                            Err(e) => Err((invalid(), format!("SCRAM client-final: {e}"))),
                        }
                    }
                }
            }
        };
        let fail = |this: &mut Self, message: String, reason: String| {
            this.phase = Phase::Done;
            let out = meta.map(|meta| {
                Out::Kafka(
                    meta,
                    ResponseKind::SaslAuthenticate(
                        SaslAuthenticateResponse::default()
                            .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                            .with_error_message(Some(sb(message))),
                    ),
                )
            });
            Step::Failed { out, reason }
        };
        let reply = |meta: Option<ResponseMeta>, bytes: Vec<u8>, lifetime_ms: i64| match meta {
            Some(meta) => Out::Kafka(
                meta,
                ResponseKind::SaslAuthenticate(
                    SaslAuthenticateResponse::default()
                        .with_auth_bytes(Bytes::from(bytes))
                        .with_session_lifetime_ms(lifetime_ms),
                ),
            ),
            None => Out::Raw(Bytes::from(bytes)),
        };
        match result {
            Err((message, reason)) => fail(self, message, reason),
            Ok((bytes, None)) => Step::Answer(reply(meta, bytes, 0)),
            Ok((bytes, Some(user))) => {
                if let Some(before) = &self.identity {
                    if before.user != user {
                        let message = format!(
                            "Cannot change principals during re-authentication from User.{}: \
                             User.{user}",
                            before.user
                        );
                        return fail(self, message.clone(), message);
                    }
                }
                // KIP-368: the configured lifetime, cut short by the credential's expiry.
                let lifetime = match credential_expires_ms {
                    None => self.settings.session_lifetime,
                    Some(expires) => {
                        let left = u64::try_from(expires.saturating_sub(backend.unix_time_ms()))
                            .unwrap_or(0);
                        let left = Duration::from_millis(left);
                        Some(self.settings.session_lifetime.map_or(left, |l| l.min(left)))
                    }
                };
                self.identity = Some(Identity {
                    user: user.clone(),
                    mechanism,
                    expires: lifetime.map(|l| now + l),
                });
                self.phase = Phase::Authenticated;
                self.deadline = None;
                let lifetime_ms =
                    lifetime.map_or(0, |l| l.as_millis().min(i64::MAX as u128) as i64);
                Step::Authenticated {
                    out: reply(meta, bytes, lifetime_ms),
                    user,
                    mechanism,
                }
            }
        }
    }
}

/// The SCRAM variant of a mechanism (`None` for PLAIN and OAUTHBEARER).
fn scram_of(m: SaslMechanism) -> Option<ScramMechanism> {
    match m {
        SaslMechanism::Plain | SaslMechanism::OAuthBearer => None,
        SaslMechanism::ScramSha256 => Some(ScramMechanism::Sha256),
        SaslMechanism::ScramSha512 => Some(ScramMechanism::Sha512),
    }
}

/// Bytes of randomness in a server nonce (hex-encoded: printable, no `,`).
const SERVER_NONCE_BYTES: usize = 24;

impl AuthBackend for crate::shared::Shared {
    fn scram_credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        self.credentials.lookup(user, mechanism)
    }

    fn verify_plain(&self, user: &str, password: &str) -> bool {
        self.credentials.verify_plain(user, password)
    }

    fn server_nonce(&self) -> String {
        crate::credentials::random_bytes::<SERVER_NONCE_BYTES>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Arc;

    use kafka_protocol::messages::{
        ApiKey, ApiVersionsRequest, MetadataRequest, ProduceRequest, RequestHeader,
        SaslAuthenticateRequest, SaslHandshakeRequest,
    };
    use kafka_protocol::protocol::StrBytes;
    use proptest::prelude::*;
    use rafka_protocol::connection::{decode_request, encode_request, Inbound};
    use rafka_protocol::sasl::scram::ScramClient;

    const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
    const SASL_AUTHENTICATION_FAILED: i16 = 58;

    /// Users and passwords; credentials salted with a fixed salt, the minimum iterations.
    struct Users(HashMap<&'static str, &'static str>);

    impl Users {
        fn new() -> Users {
            Users(HashMap::from([
                ("alice", "alice-secret"),
                ("bob", "bob-secret"),
            ]))
        }
    }

    impl AuthBackend for Users {
        fn scram_credential(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
            let pw = self.0.get(user)?;
            Some(ScramCredential::from_password(m, pw, b"fixed-salt", 4096))
        }
        fn verify_plain(&self, user: &str, password: &str) -> bool {
            self.0.get(user).is_some_and(|p| *p == password)
        }
        fn server_nonce(&self) -> String {
            "servernonce".into()
        }
    }

    fn decoded(key: ApiKey, version: i16, body: RequestKind) -> DecodedRequest {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("t")));
        let framed = encode_request(&header, &body).expect("encodes");
        match decode_request(framed.slice(4..)).expect("decodes") {
            Inbound::Request(r) => *r,
            Inbound::Answered(_) => panic!("answered by the protocol layer"),
        }
    }

    fn handshake(version: i16, mechanism: &str) -> DecodedRequest {
        decoded(
            ApiKey::SaslHandshake,
            version,
            RequestKind::SaslHandshake(
                SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from(mechanism.to_string())),
            ),
        )
    }

    fn authenticate(version: i16, token: Vec<u8>) -> DecodedRequest {
        decoded(
            ApiKey::SaslAuthenticate,
            version,
            RequestKind::SaslAuthenticate(
                SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
            ),
        )
    }

    fn metadata() -> DecodedRequest {
        decoded(
            ApiKey::Metadata,
            12,
            RequestKind::Metadata(MetadataRequest::default()),
        )
    }

    fn api_versions() -> DecodedRequest {
        decoded(
            ApiKey::ApiVersions,
            3,
            RequestKind::ApiVersions(ApiVersionsRequest::default()),
        )
    }

    fn settings(mechanisms: &[SaslMechanism], reauth_ms: u64) -> Arc<SaslSettings> {
        Arc::new(SaslSettings::new(mechanisms.to_vec(), reauth_ms))
    }

    fn all(reauth_ms: u64) -> Arc<SaslSettings> {
        settings(SaslMechanism::ALL, reauth_ms)
    }

    /// The SaslAuthenticate answer in `out`.
    fn auth_answer(out: &Out) -> &SaslAuthenticateResponse {
        match out {
            Out::Kafka(_, ResponseKind::SaslAuthenticate(r)) => r,
            other => panic!("not a SaslAuthenticate answer: {other:?}"),
        }
    }

    /// A PLAIN exchange on `a` as `user`/`password` (SaslHandshake v1 framing).
    fn plain(a: &mut Authenticator, user: &str, password: &str, now: Instant) -> Step {
        let users = Users::new();
        assert!(matches!(
            a.on_request(&handshake(1, "PLAIN"), now, &users),
            Step::Answer(_)
        ));
        a.on_request(&authenticate(2, plain::encode(user, password)), now, &users)
    }

    /// A full SCRAM exchange on `a` (SaslHandshake v1 framing); the last step.
    fn scram(
        a: &mut Authenticator,
        m: SaslMechanism,
        user: &str,
        password: &str,
        now: Instant,
    ) -> Step {
        let users = Users::new();
        let Step::Answer(_) = a.on_request(&handshake(1, m.name()), now, &users) else {
            panic!("handshake refused")
        };
        let mut client =
            ScramClient::new(scram_of(m).unwrap(), user, password, "clientnonce".into());
        let first = a.on_request(&authenticate(2, client.client_first()), now, &users);
        let Step::Answer(out) = first else {
            return first;
        };
        let server_first = auth_answer(&out).auth_bytes.clone();
        let Ok(last) = client.client_final(&server_first) else {
            panic!("server-first refused by the client")
        };
        let step = a.on_request(&authenticate(2, last), now, &users);
        if let Step::Authenticated { out, .. } = &step {
            client
                .verify_server_final(&auth_answer(out).auth_bytes)
                .expect("the server proves it knows the credential");
        }
        step
    }

    #[test]
    fn only_api_versions_and_the_handshake_come_before_authentication() {
        let users = Users::new();
        let t0 = Instant::now();
        let mut a = Authenticator::new(all(0), t0);
        assert_eq!(a.deadline(), Some(t0 + AUTHENTICATION_TIMEOUT));
        assert!(matches!(
            a.on_request(&api_versions(), t0, &users),
            Step::Pass
        ));
        assert!(matches!(
            a.on_request(&metadata(), t0, &users),
            Step::Close(_)
        ));
        // Closed: nothing more passes, not even ApiVersions.
        assert!(matches!(
            a.on_request(&api_versions(), t0, &users),
            Step::Close(_)
        ));
        // SaslAuthenticate before SaslHandshake is refused the same way.
        let mut a = Authenticator::new(all(0), t0);
        let s = a.on_request(
            &authenticate(2, plain::encode("alice", "alice-secret")),
            t0,
            &users,
        );
        assert!(matches!(s, Step::Close(_)), "{s:?}");
    }

    #[test]
    fn a_mechanism_not_offered_is_answered_with_the_offered_list() {
        let users = Users::new();
        let t0 = Instant::now();
        let mut a = Authenticator::new(settings(&[SaslMechanism::ScramSha512], 0), t0);
        for asked in ["PLAIN", "GSSAPI", "scram-sha-512"] {
            let mut a2 = Authenticator::new(settings(&[SaslMechanism::ScramSha512], 0), t0);
            let Step::Failed {
                out: Some(Out::Kafka(meta, ResponseKind::SaslHandshake(r))),
                ..
            } = a2.on_request(&handshake(1, asked), t0, &users)
            else {
                panic!("{asked}: not refused")
            };
            assert_eq!(meta.correlation_id, 7);
            assert_eq!(r.error_code, UNSUPPORTED_SASL_MECHANISM);
            assert_eq!(r.mechanisms, [sb("SCRAM-SHA-512")]);
        }
        let Step::Answer(Out::Kafka(_, ResponseKind::SaslHandshake(r))) =
            a.on_request(&handshake(1, "SCRAM-SHA-512"), t0, &users)
        else {
            panic!("offered mechanism refused")
        };
        assert_eq!(r.error_code, 0);
    }

    #[test]
    fn plain_authenticates_and_then_everything_passes() {
        let users = Users::new();
        let t0 = Instant::now();
        let mut a = Authenticator::new(all(0), t0);
        let Step::Authenticated {
            out,
            user,
            mechanism,
        } = plain(&mut a, "alice", "alice-secret", t0)
        else {
            panic!("PLAIN refused")
        };
        assert_eq!((user.as_str(), mechanism), ("alice", SaslMechanism::Plain));
        let r = auth_answer(&out);
        assert_eq!((r.error_code, r.session_lifetime_ms), (0, 0));
        assert!(a.is_authenticated(t0 + Duration::from_secs(1_000_000)));
        assert_eq!(a.deadline(), None);
        assert!(matches!(a.on_request(&metadata(), t0, &users), Step::Pass));
        // Without re-authentication SASL requests go to the pipeline (ILLEGAL_SASL_STATE).
        assert!(matches!(
            a.on_request(&handshake(1, "PLAIN"), t0, &users),
            Step::Pass
        ));
        assert!(matches!(
            a.on_request(&authenticate(2, vec![]), t0, &users),
            Step::Pass
        ));
    }

    #[test]
    fn bad_plain_credentials_fail_with_kip_152_messages() {
        let t0 = Instant::now();
        for (user, pw, want) in [
            ("alice", "wrong", "Invalid username or password"),
            ("mallory", "alice-secret", "Invalid username or password"),
        ] {
            let mut a = Authenticator::new(all(0), t0);
            let Step::Failed { out: Some(out), .. } = plain(&mut a, user, pw, t0) else {
                panic!("{user}/{pw} not refused")
            };
            let r = auth_answer(&out);
            assert_eq!(r.error_code, SASL_AUTHENTICATION_FAILED);
            assert!(r.error_message.as_deref().unwrap().contains(want), "{r:?}");
            assert!(matches!(
                a.on_request(&metadata(), t0, &Users::new()),
                Step::Close(_)
            ));
        }
        let users = Users::new();
        let mut a = Authenticator::new(all(0), t0);
        a.on_request(&handshake(1, "PLAIN"), t0, &users);
        let Step::Failed { out: Some(out), .. } =
            a.on_request(&authenticate(1, b"\0bob".to_vec()), t0, &users)
        else {
            panic!("malformed PLAIN not refused")
        };
        assert_eq!(auth_answer(&out).error_code, SASL_AUTHENTICATION_FAILED);
    }

    #[test]
    fn scram_sha_256_and_512_authenticate_and_refuse_bad_proofs() {
        let t0 = Instant::now();
        for m in [SaslMechanism::ScramSha256, SaslMechanism::ScramSha512] {
            let mut a = Authenticator::new(all(0), t0);
            let Step::Authenticated {
                user, mechanism, ..
            } = scram(&mut a, m, "bob", "bob-secret", t0)
            else {
                panic!("{m:?} refused")
            };
            assert_eq!((user.as_str(), mechanism), ("bob", m));
            for (user, pw) in [("bob", "wrong"), ("nobody", "bob-secret")] {
                let mut a = Authenticator::new(all(0), t0);
                let Step::Failed { out: Some(out), .. } = scram(&mut a, m, user, pw, t0) else {
                    panic!("{m:?} {user}/{pw} not refused")
                };
                let r = auth_answer(&out);
                assert_eq!(r.error_code, SASL_AUTHENTICATION_FAILED);
                let msg = r.error_message.as_deref().unwrap();
                assert!(
                    msg.contains("invalid credentials") && msg.contains(m.name()),
                    "{msg}"
                );
                assert!(!msg.contains(user), "the message names no user: {msg}");
            }
        }
    }

    #[test]
    fn another_request_during_the_exchange_is_answered_illegal_sasl_state() {
        let users = Users::new();
        let t0 = Instant::now();
        let mut a = Authenticator::new(all(0), t0);
        a.on_request(&handshake(1, "PLAIN"), t0, &users);
        let Step::Failed {
            out: Some(Out::Kafka(meta, ResponseKind::Metadata(_))),
            reason,
        } = a.on_request(&metadata(), t0, &users)
        else {
            panic!("Metadata during the exchange not refused")
        };
        assert_eq!(meta.api_key, ApiKey::Metadata);
        assert!(reason.contains("during SASL authentication"), "{reason}");
        // Produce with acks=0 has no answer: refused all the same.
        let mut a = Authenticator::new(all(0), t0);
        a.on_request(&handshake(1, "PLAIN"), t0, &users);
        let produce = decoded(
            ApiKey::Produce,
            9,
            RequestKind::Produce(ProduceRequest::default().with_acks(0)),
        );
        assert!(matches!(
            a.on_request(&produce, t0, &users),
            Step::Failed { out: None, .. }
        ));
    }

    #[test]
    fn handshake_v0_means_raw_tokens() {
        let users = Users::new();
        let t0 = Instant::now();
        let mut a = Authenticator::new(all(0), t0);
        assert!(matches!(
            a.on_request(&handshake(0, "PLAIN"), t0, &users),
            Step::Answer(_)
        ));
        assert!(a.wants_raw_token());
        // A Kafka request where a token is due closes.
        let mut b = Authenticator::new(all(0), t0);
        b.on_request(&handshake(0, "PLAIN"), t0, &users);
        assert!(matches!(
            b.on_request(&authenticate(1, vec![]), t0, &users),
            Step::Close(_)
        ));
        let Step::Authenticated {
            out: Out::Raw(token),
            user,
            ..
        } = a.on_token(&plain::encode("alice", "alice-secret"), t0, &users)
        else {
            panic!("raw PLAIN refused")
        };
        assert!(token.is_empty());
        assert_eq!(user, "alice");
        assert!(!a.wants_raw_token());
        assert!(matches!(a.on_request(&metadata(), t0, &users), Step::Pass));
        // A failure in raw framing has no answer (Kafka closes).
        let mut c = Authenticator::new(all(0), t0);
        c.on_request(&handshake(0, "PLAIN"), t0, &users);
        assert!(matches!(
            c.on_token(b"\0alice\0nope", t0, &users),
            Step::Failed { out: None, .. }
        ));
        // SCRAM in raw tokens.
        let mut d = Authenticator::new(all(0), t0);
        d.on_request(&handshake(0, "SCRAM-SHA-256"), t0, &users);
        let mut client = ScramClient::new(ScramMechanism::Sha256, "bob", "bob-secret", "cn".into());
        let Step::Answer(Out::Raw(first)) = d.on_token(&client.client_first(), t0, &users) else {
            panic!("client-first refused")
        };
        let last = client.client_final(&first).unwrap();
        let Step::Authenticated {
            out: Out::Raw(fin), ..
        } = d.on_token(&last, t0, &users)
        else {
            panic!("client-final refused")
        };
        client.verify_server_final(&fin).unwrap();
        // Tokens over the bound are refused.
        let mut e = Authenticator::new(all(0), t0);
        e.on_request(&handshake(0, "PLAIN"), t0, &users);
        let big = vec![b'a'; SASL_TOKEN_BYTES_MAX + 1];
        assert!(matches!(e.on_token(&big, t0, &users), Step::Failed { .. }));
    }

    #[test]
    fn kip_368_sessions_expire_and_reauthenticate_as_the_same_principal() {
        let users = Users::new();
        let t0 = Instant::now();
        let life = Duration::from_millis(2000);
        let mut a = Authenticator::new(all(2000), t0);
        let Step::Authenticated { out, .. } = scram(
            &mut a,
            SaslMechanism::ScramSha512,
            "alice",
            "alice-secret",
            t0,
        ) else {
            panic!("refused")
        };
        assert_eq!(auth_answer(&out).session_lifetime_ms, 2000);
        let t1 = t0 + Duration::from_millis(1500);
        assert!(matches!(a.on_request(&metadata(), t1, &users), Step::Pass));
        // Re-authentication before expiry: a new session from t1.
        assert!(matches!(
            scram(
                &mut a,
                SaslMechanism::ScramSha512,
                "alice",
                "alice-secret",
                t1
            ),
            Step::Authenticated { .. }
        ));
        assert_eq!(a.deadline(), None);
        let t2 = t0 + life + Duration::from_millis(100);
        assert!(
            a.is_authenticated(t2),
            "the new session runs from the re-authentication"
        );
        assert!(matches!(a.on_request(&metadata(), t2, &users), Step::Pass));
        // Expired: the next other request closes; a re-authentication may still start.
        let t3 = t1 + life;
        assert!(!a.is_authenticated(t3));
        let mut expired = Authenticator::new(all(2000), t0);
        plain(&mut expired, "bob", "bob-secret", t0);
        assert!(matches!(
            expired.on_request(&api_versions(), t3, &users),
            Step::Close(_)
        ));
        // Another principal, or another mechanism, fails the re-authentication.
        let Step::Failed { out: Some(out), .. } =
            scram(&mut a, SaslMechanism::ScramSha512, "bob", "bob-secret", t3)
        else {
            panic!("principal change allowed")
        };
        let msg = auth_answer(&out).error_message.clone().unwrap();
        assert!(msg.contains("Cannot change principals"), "{msg}");
        let mut b = Authenticator::new(all(2000), t0);
        plain(&mut b, "bob", "bob-secret", t0);
        let Step::Failed { out: Some(out), .. } =
            scram(&mut b, SaslMechanism::ScramSha256, "bob", "bob-secret", t1)
        else {
            panic!("mechanism change allowed")
        };
        let msg = auth_answer(&out).error_message.clone().unwrap();
        assert!(
            msg.contains("re-authentication of mechanism 'PLAIN'"),
            "{msg}"
        );
    }

    #[test]
    fn a_reauthentication_has_its_own_deadline() {
        let users = Users::new();
        let t0 = Instant::now();
        let mut a = Authenticator::new(all(1000), t0);
        plain(&mut a, "alice", "alice-secret", t0);
        let t1 = t0 + Duration::from_secs(30);
        a.on_request(&handshake(1, "PLAIN"), t1, &users);
        assert_eq!(a.deadline(), Some(t1 + AUTHENTICATION_TIMEOUT));
    }

    /// One thing a client may send.
    #[derive(Debug, Clone)]
    enum Input {
        ApiVersions,
        Metadata,
        Produce,
        Handshake(i16, String),
        Authenticate(i16, Vec<u8>),
        Raw(Vec<u8>),
        Wait(u64),
    }

    fn token() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            Just(plain::encode("alice", "alice-secret")),
            Just(plain::encode("alice", "wrong")),
            Just(plain::encode("bob", "bob-secret")),
            Just(b"n,,n=alice,r=abc".to_vec()),
            Just(b"c=biws,r=abcservernonce,p=AAAA".to_vec()),
        ]
    }

    fn input() -> impl Strategy<Value = Input> {
        prop_oneof![
            Just(Input::ApiVersions),
            Just(Input::Metadata),
            Just(Input::Produce),
            (
                0i16..=1,
                prop_oneof![
                    Just("PLAIN".to_string()),
                    Just("SCRAM-SHA-256".to_string()),
                    Just("SCRAM-SHA-512".to_string()),
                    "[A-Z-]{0,12}",
                ]
            )
                .prop_map(|(v, m)| Input::Handshake(v, m)),
            (0i16..=2, token()).prop_map(|(v, t)| Input::Authenticate(v, t)),
            token().prop_map(Input::Raw),
            (0u64..3000).prop_map(Input::Wait),
        ]
    }

    proptest! {
        /// Whatever a client sends, in whatever order: no panic, and nothing but ApiVersions
        /// passes to the pipeline unless the connection authenticated and its session is
        /// live; after a failure or a close nothing passes at all.
        #[test]
        fn nothing_passes_before_authentication(
            inputs in proptest::collection::vec(input(), 0..24),
            reauth_ms in prop_oneof![Just(0u64), 1u64..5000],
            offered in proptest::sample::subsequence(SaslMechanism::ALL.to_vec(), 1..=3),
        ) {
            let users = Users::new();
            let mut now = Instant::now();
            let mut a = Authenticator::new(settings(&offered, reauth_ms), now);
            // The model: who is authenticated until when.
            let mut live_until: Option<Option<Instant>> = None;
            let mut closed = false;
            for i in inputs {
                let (key, step) = match i {
                    Input::Wait(ms) => { now += Duration::from_millis(ms); continue; }
                    Input::Raw(t) => {
                        if !a.wants_raw_token() { continue; }
                        (None, a.on_token(&t, now, &users))
                    }
                    other if a.wants_raw_token() => {
                        // The server would read this frame as a raw token.
                        let _ = other;
                        (None, a.on_token(b"", now, &users))
                    }
                    Input::ApiVersions => (Some(ApiKey::ApiVersions), a.on_request(&api_versions(), now, &users)),
                    Input::Metadata => (Some(ApiKey::Metadata), a.on_request(&metadata(), now, &users)),
                    Input::Produce => {
                        let p = decoded(ApiKey::Produce, 9, RequestKind::Produce(ProduceRequest::default().with_acks(1)));
                        (Some(ApiKey::Produce), a.on_request(&p, now, &users))
                    }
                    Input::Handshake(v, m) => (Some(ApiKey::SaslHandshake), a.on_request(&handshake(v, &m), now, &users)),
                    Input::Authenticate(v, t) => (Some(ApiKey::SaslAuthenticate), a.on_request(&authenticate(v, t), now, &users)),
                };
                prop_assert!(!closed || !matches!(step, Step::Pass | Step::Answer(_) | Step::Authenticated { .. }),
                    "{step:?} after the connection closed");
                match step {
                    Step::Pass => {
                        let live = live_until.is_some_and(|until| until.is_none_or(|u| now < u));
                        prop_assert!(
                            live || key == Some(ApiKey::ApiVersions) && live_until.is_none(),
                            "{key:?} passed unauthenticated (session {live_until:?})"
                        );
                    }
                    Step::Authenticated { user, mechanism, .. } => {
                        prop_assert!(offered.contains(&mechanism));
                        prop_assert!(users.0.contains_key(user.as_str()));
                        live_until = Some((reauth_ms > 0).then(|| now + Duration::from_millis(reauth_ms)));
                    }
                    Step::Answer(_) => {}
                    Step::Failed { .. } | Step::Close(_) => {
                        closed = true;
                        live_until = None;
                    }
                }
            }
        }
    }

    /// A backend with a fixed wall clock.
    struct At(i64);

    impl AuthBackend for At {
        fn scram_credential(&self, _: &str, _: ScramMechanism) -> Option<ScramCredential> {
            None
        }
        fn verify_plain(&self, _: &str, _: &str) -> bool {
            false
        }
        fn server_nonce(&self) -> String {
            "n".into()
        }
        fn unix_time_ms(&self) -> i64 {
            self.0
        }
    }

    fn unsecured_token(sub: &str, exp_s: i64) -> Vec<u8> {
        use base64::Engine as _;
        let b64 = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = format!(
            "{}.{}.",
            b64(r#"{"alg":"none"}"#.into()),
            b64(format!(r#"{{"sub":"{sub}","exp":{exp_s}}}"#))
        );
        format!("n,,\x01auth=Bearer {jwt}\x01\x01").into_bytes()
    }

    #[test]
    fn oauthbearer_session_lasts_until_the_token_expires() {
        let validator = crate::oauthbearer::Validator::from_config(&crate::config::BrokerConfig {
            sasl_oauthbearer_unsecured_validator_enable: true,
            ..Default::default()
        })
        .unwrap();
        let now_ms = 1_800_000_000_000;
        let clock = At(now_ms);
        let start = Instant::now();
        for (reauth_ms, want_lifetime_ms) in [(0, 60_000), (10_000, 10_000), (600_000, 60_000)] {
            let s = Arc::new(
                SaslSettings::new(vec![SaslMechanism::OAuthBearer], reauth_ms).with_oauthbearer(
                    Arc::new(crate::oauthbearer::ValidatorCell::fixed(validator.clone())),
                ),
            );
            let mut a = Authenticator::new(s, start);
            let Step::Answer(_) = a.on_request(&handshake(1, "OAUTHBEARER"), start, &clock) else {
                panic!("handshake refused")
            };
            let token = unsecured_token("alice", now_ms / 1000 + 60);
            let Step::Authenticated {
                out,
                user,
                mechanism,
            } = a.on_request(&authenticate(2, token), start, &clock)
            else {
                panic!("not authenticated")
            };
            assert_eq!(
                (user.as_str(), mechanism),
                ("alice", SaslMechanism::OAuthBearer)
            );
            let answer = auth_answer(&out);
            assert_eq!(answer.error_code, 0);
            assert!(answer.auth_bytes.is_empty());
            assert_eq!(answer.session_lifetime_ms, want_lifetime_ms);
            assert!(a.is_authenticated(start));
            let later = start + Duration::from_millis(want_lifetime_ms as u64);
            assert!(!a.is_authenticated(later));
            // The client re-authenticates before then (KIP-368), even without
            // connections_max_reauth_ms: the token's lifetime is the session's.
            let Step::Answer(_) = a.on_request(&handshake(1, "OAUTHBEARER"), start, &clock) else {
                panic!("re-authentication handshake refused")
            };
        }
    }

    #[test]
    fn oauthbearer_refused_tokens_get_the_json_challenge_then_fail() {
        let validator = crate::oauthbearer::Validator::from_config(&crate::config::BrokerConfig {
            sasl_oauthbearer_unsecured_validator_enable: true,
            ..Default::default()
        })
        .unwrap();
        let now_ms = 1_800_000_000_000;
        let clock = At(now_ms);
        let start = Instant::now();
        let s = Arc::new(
            SaslSettings::new(vec![SaslMechanism::OAuthBearer], 0).with_oauthbearer(Arc::new(
                crate::oauthbearer::ValidatorCell::fixed(validator),
            )),
        );
        let mut a = Authenticator::new(s.clone(), start);
        let Step::Answer(_) = a.on_request(&handshake(1, "OAUTHBEARER"), start, &clock) else {
            panic!("handshake refused")
        };
        let expired = unsecured_token("alice", now_ms / 1000 - 3600);
        let Step::Answer(out) = a.on_request(&authenticate(2, expired), start, &clock) else {
            panic!("a challenge expected")
        };
        let answer = auth_answer(&out);
        assert_eq!(answer.error_code, 0);
        assert_eq!(&answer.auth_bytes[..], br#"{"status":"invalid_token"}"#);
        // Nothing passes meanwhile.
        assert!(!a.is_authenticated(start));
        let Step::Failed {
            out: Some(out),
            reason,
        } = a.on_request(&authenticate(2, vec![1]), start, &clock)
        else {
            panic!("failure expected")
        };
        assert!(reason.contains("expired"), "{reason}");
        let answer = auth_answer(&out);
        assert_eq!(answer.error_code, SASL_AUTHENTICATION_FAILED);
        assert_eq!(
            answer.error_message.as_deref(),
            Some(r#"{"status":"invalid_token"}"#)
        );
        // A listener without a validator refuses at once.
        let s = Arc::new(SaslSettings::new(vec![SaslMechanism::OAuthBearer], 0));
        let mut a = Authenticator::new(s, start);
        let Step::Answer(_) = a.on_request(&handshake(1, "OAUTHBEARER"), start, &clock) else {
            panic!("handshake refused")
        };
        let token = unsecured_token("alice", now_ms / 1000 + 60);
        let Step::Failed { out: Some(out), .. } =
            a.on_request(&authenticate(2, token), start, &clock)
        else {
            panic!("failure expected")
        };
        assert_eq!(auth_answer(&out).error_code, SASL_AUTHENTICATION_FAILED);
    }

    fn oauth_token() -> impl Strategy<Value = Vec<u8>> {
        let now_s = OAUTH_NOW_MS / 1000;
        prop_oneof![
            Just(unsecured_token("alice", now_s + 60)),
            Just(unsecured_token("alice", now_s - 3600)),
            Just(vec![1u8]),
            proptest::collection::vec(any::<u8>(), 0..64),
            "[ -~]{0,40}".prop_map(|t| format!("n,,\x01auth=Bearer {t}\x01\x01").into_bytes()),
        ]
    }

    const OAUTH_NOW_MS: i64 = 1_800_000_000_000;

    fn oauth_input() -> impl Strategy<Value = Input> {
        prop_oneof![
            Just(Input::ApiVersions),
            Just(Input::Metadata),
            (
                0i16..=1,
                prop_oneof![Just("OAUTHBEARER".to_string()), Just("PLAIN".to_string())]
            )
                .prop_map(|(v, m)| Input::Handshake(v, m)),
            (0i16..=2, oauth_token()).prop_map(|(v, t)| Input::Authenticate(v, t)),
            oauth_token().prop_map(Input::Raw),
            (0u64..70_000).prop_map(Input::Wait),
        ]
    }

    proptest! {
        /// OAUTHBEARER exchanges in any order (good, expired and malformed tokens, stray
        /// `0x01`s, v0 raw tokens, other requests, time passing): no panic; nothing but
        /// ApiVersions passes unless a good token authenticated and its session (until the
        /// token's `exp`, or `connections_max_reauth_ms` if sooner) is live; only the
        /// token's subject is ever authenticated.
        #[test]
        fn oauthbearer_nothing_passes_before_a_good_token(
            inputs in proptest::collection::vec(oauth_input(), 0..24),
            reauth_ms in prop_oneof![Just(0u64), 1u64..120_000],
        ) {
            let validator = crate::oauthbearer::Validator::from_config(&crate::config::BrokerConfig {
                sasl_oauthbearer_unsecured_validator_enable: true,
                ..Default::default()
            })
            .unwrap();
            let settings = Arc::new(
                SaslSettings::new(vec![SaslMechanism::OAuthBearer, SaslMechanism::Plain], reauth_ms)
                    .with_oauthbearer(Arc::new(crate::oauthbearer::ValidatorCell::fixed(validator))),
            );
            let clock = At(OAUTH_NOW_MS);
            let mut now = Instant::now();
            let mut a = Authenticator::new(settings, now);
            let mut live_until: Option<Instant> = None;
            let mut closed = false;
            for i in inputs {
                let (key, step) = match i {
                    Input::Wait(ms) => { now += Duration::from_millis(ms); continue; }
                    Input::Raw(t) => {
                        if !a.wants_raw_token() { continue; }
                        (None, a.on_token(&t, now, &clock))
                    }
                    _ if a.wants_raw_token() => (None, a.on_token(b"", now, &clock)),
                    Input::ApiVersions => (Some(ApiKey::ApiVersions), a.on_request(&api_versions(), now, &clock)),
                    Input::Metadata => (Some(ApiKey::Metadata), a.on_request(&metadata(), now, &clock)),
                    Input::Handshake(v, m) => (Some(ApiKey::SaslHandshake), a.on_request(&handshake(v, &m), now, &clock)),
                    Input::Authenticate(v, t) => (Some(ApiKey::SaslAuthenticate), a.on_request(&authenticate(v, t), now, &clock)),
                    Input::Produce => continue,
                };
                prop_assert!(!closed || !matches!(step, Step::Pass | Step::Answer(_) | Step::Authenticated { .. }),
                    "{step:?} after the connection closed");
                match step {
                    Step::Pass => {
                        let live = live_until.is_some_and(|u| now < u);
                        prop_assert!(
                            live || key == Some(ApiKey::ApiVersions) && live_until.is_none(),
                            "{key:?} passed unauthenticated (session until {live_until:?})"
                        );
                    }
                    Step::Authenticated { user, mechanism, .. } => {
                        prop_assert_eq!(user.as_str(), "alice");
                        prop_assert_eq!(mechanism, SaslMechanism::OAuthBearer);
                        let token_left = Duration::from_secs(60);
                        let lifetime = if reauth_ms == 0 {
                            token_left
                        } else {
                            token_left.min(Duration::from_millis(reauth_ms))
                        };
                        live_until = Some(now + lifetime);
                    }
                    Step::Answer(_) => {}
                    Step::Failed { .. } | Step::Close(_) => {
                        closed = true;
                        live_until = None;
                    }
                }
            }
        }
    }
}
