//! SASL mechanisms without sockets: message parsing and the proofs, shared by the broker's
//! authenticator and Rafka's client. Callers hand in nonces and salts, so nothing here reads
//! a clock or a random source.
//!
//! - [`plain`] — RFC 4616 `PLAIN`: one message with the user name and password.
//! - [`scram`] — RFC 5802 / RFC 7677 `SCRAM-SHA-256` and `SCRAM-SHA-512`: the salted
//!   credential a server stores, and both halves of the exchange.

pub mod plain;
pub mod scram;

/// Longest SASL message either side accepts; Kafka's clients send a few hundred bytes.
pub const SASL_MESSAGE_BYTES_MAX: usize = 64 * 1024;

/// Why a SASL exchange failed. The `Display` text is what a KIP-152 error answer carries,
/// so it never says whether a user exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The message does not follow the mechanism's grammar.
    #[error("malformed SASL message: {0}")]
    Malformed(String),
    /// The user has no credential for this mechanism.
    #[error("authentication failed: invalid credentials")]
    UnknownUser,
    /// The password (or proof) does not match the stored credential.
    #[error("authentication failed: invalid credentials")]
    BadCredentials,
    /// The server asked for an iteration count outside what the client accepts.
    #[error("SCRAM iteration count {0} is outside {min}..={max}", min = scram::MIN_ITERATIONS, max = scram::MAX_CLIENT_ITERATIONS)]
    IterationsOutOfRange(u32),
    /// The server's final message failed to prove it knows the credential, or reported
    /// an error.
    #[error("SCRAM server authentication failed: {0}")]
    ServerNotVerified(String),
    /// A message came in a state where none was expected.
    #[error("unexpected SASL message in this state")]
    OutOfOrder,
}

/// Refuses a message longer than [`SASL_MESSAGE_BYTES_MAX`] or not UTF-8.
fn text(msg: &[u8]) -> Result<&str, SaslError> {
    if msg.len() > SASL_MESSAGE_BYTES_MAX {
        return Err(SaslError::Malformed(format!(
            "{} bytes, more than {SASL_MESSAGE_BYTES_MAX}",
            msg.len()
        )));
    }
    std::str::from_utf8(msg).map_err(|_| SaslError::Malformed("not UTF-8".into()))
}
