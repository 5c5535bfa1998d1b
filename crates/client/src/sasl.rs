//! SASL authentication of a new connection, as Kafka clients do it after ApiVersions:
//! SaslHandshake v1 names the mechanism, then SaslAuthenticate carries the mechanism's
//! messages (PLAIN: one; SCRAM-SHA-256/512: client-first, client-final, and the server's
//! final message checked so the broker proves it holds the credential). The exchange
//! itself is `rafka_protocol::sasl`; this file only moves its messages.
//!
//! A refusal is [`ClientError::Authentication`] with the broker's message (KIP-152), which
//! is not retried. The same exchange re-authenticates a connection before its session
//! lifetime ends (KIP-368; the gate is `BrokerConnection`'s `Reauth`).

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rafka_protocol::sasl::scram::{ScramClient, ScramMechanism};
use rafka_protocol::sasl::{plain, SaslError};

use crate::connection::BrokerConnection;
use crate::error::ClientError;
use crate::security::{random_bytes, SaslConfig, SaslMechanism};

/// SaslHandshake: v1 (v0 would mean unframed SASL tokens after it).
const HANDSHAKE_VERSIONS: (i16, i16) = (1, 1);
/// SaslAuthenticate: v1 adds `session_lifetime_ms`; v2 is its flexible form.
const AUTHENTICATE_VERSIONS: (i16, i16) = (0, 2);
/// Random bytes in a SCRAM client nonce (sent hex-encoded).
const NONCE_BYTES: usize = 24;

/// Authenticates `conn` with `sasl` (first, or again for KIP-368). Returns the session
/// lifetime the broker granted, if it set one; the connection re-authenticates before it
/// ends.
pub(crate) async fn authenticate(
    conn: &BrokerConnection,
    sasl: &SaslConfig,
) -> Result<Option<Duration>, ClientError> {
    let refused = |message: String| ClientError::Authentication {
        addr: conn.addr().to_string(),
        message,
    };
    let v = conn
        .version_for::<SaslHandshakeRequest>(HANDSHAKE_VERSIONS)
        .map_err(|_| refused("the broker does not serve SaslHandshake v1".into()))?;
    let req = SaslHandshakeRequest::default()
        .with_mechanism(StrBytes::from_static_str(sasl.mechanism.name()));
    let resp = conn.call_ungated(&req, v).await?;
    if resp.error_code != 0 {
        let enabled: Vec<&str> = resp.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(refused(format!(
            "{}: mechanism {} (the broker enables {})",
            error_name(resp.error_code),
            sasl.mechanism.name(),
            if enabled.is_empty() {
                "none".to_string()
            } else {
                enabled.join(", ")
            }
        )));
    }
    let version = conn.version_for::<SaslAuthenticateRequest>(AUTHENTICATE_VERSIONS)?;
    let step = |bytes: Vec<u8>| async move {
        let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes));
        let resp = conn.call_ungated(&req, version).await?;
        if resp.error_code != 0 {
            let message = match resp.error_message.as_ref().map(|m| m.as_str()) {
                Some(m) if !m.is_empty() => format!("{}: {m}", error_name(resp.error_code)),
                _ => error_name(resp.error_code),
            };
            return Err(refused(message));
        }
        Ok((resp.auth_bytes, resp.session_lifetime_ms))
    };
    let sasl_err = |e: SaslError| refused(e.to_string());
    let lifetime_ms = match sasl.mechanism {
        SaslMechanism::Plain => step(plain::encode(&sasl.username, &sasl.password)).await?.1,
        SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
            let mech = if sasl.mechanism == SaslMechanism::ScramSha256 {
                ScramMechanism::Sha256
            } else {
                ScramMechanism::Sha512
            };
            let mut nonce = [0u8; NONCE_BYTES];
            random_bytes(&mut nonce)?;
            let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
            let mut scram = ScramClient::new(mech, &sasl.username, &sasl.password, nonce);
            let (server_first, _) = step(scram.client_first()).await?;
            let client_final = scram.client_final(&server_first).map_err(sasl_err)?;
            let (server_final, lifetime_ms) = step(client_final).await?;
            scram.verify_server_final(&server_final).map_err(sasl_err)?;
            lifetime_ms
        }
    };
    tracing::debug!(
        addr = conn.addr(),
        mechanism = sasl.mechanism.name(),
        lifetime_ms,
        "authenticated"
    );
    Ok((lifetime_ms > 0).then(|| Duration::from_millis(lifetime_ms as u64)))
}

fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?}"),
        None => format!("error code {code}"),
    }
}
