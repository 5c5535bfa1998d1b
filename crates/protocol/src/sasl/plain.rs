//! RFC 4616 `PLAIN`: `[authzid] NUL authcid NUL passwd`.

use super::{text, SaslError};

/// A parsed `PLAIN` message. Field lengths are bounded only by the message bound, as in
/// Kafka (RFC 4616's 255-octet limit is not enforced by Kafka's clients either).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainMessage {
    /// The identity to act as; empty when the client gave none.
    pub authzid: String,
    /// The user name to authenticate.
    pub username: String,
    /// The password.
    pub password: String,
}

/// Parses a `PLAIN` message. As Kafka does, an authorization id other than the user name is
/// refused, and an empty user name or password is malformed.
pub fn parse(msg: &[u8]) -> Result<PlainMessage, SaslError> {
    let s = text(msg)?;
    let mut parts = s.split('\u{0}');
    let (Some(authzid), Some(username), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed(
            "PLAIN needs exactly three NUL-separated fields".into(),
        ));
    };
    if username.is_empty() {
        return Err(SaslError::Malformed("PLAIN user name is empty".into()));
    }
    if password.is_empty() {
        return Err(SaslError::Malformed("PLAIN password is empty".into()));
    }
    if !authzid.is_empty() && authzid != username {
        return Err(SaslError::Malformed(
            "PLAIN authorization id differs from the user name".into(),
        ));
    }
    Ok(PlainMessage {
        authzid: authzid.to_string(),
        username: username.to_string(),
        password: password.to_string(),
    })
}

/// The client's `PLAIN` message, without an authorization id.
pub fn encode(username: &str, password: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(username.len() + password.len() + 2);
    out.push(0);
    out.extend_from_slice(username.as_bytes());
    out.push(0);
    out.extend_from_slice(password.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_with_and_without_authzid() {
        let m = parse(b"\0alice\0secret").unwrap();
        assert_eq!(
            (m.username.as_str(), m.password.as_str()),
            ("alice", "secret")
        );
        assert_eq!(m.authzid, "");
        let m = parse(b"alice\0alice\0secret").unwrap();
        assert_eq!(m.authzid, "alice");
    }

    #[test]
    fn refuses_what_kafka_refuses() {
        for bad in [
            &b"alice\0secret"[..],
            b"\0\0secret",
            b"\0alice\0",
            b"bob\0alice\0secret",
            b"\0alice\0se\0cret",
            b"\0al\xffice\0secret",
        ] {
            assert!(
                matches!(parse(bad), Err(SaslError::Malformed(_))),
                "{bad:?}"
            );
        }
        let long = vec![b'a'; super::super::SASL_MESSAGE_BYTES_MAX + 1];
        assert!(parse(&long).is_err());
    }

    proptest! {
        #[test]
        fn every_encoded_message_parses_back(
            user in "[^\u{0}]{1,64}",
            pass in "[^\u{0}]{1,64}",
        ) {
            let m = parse(&encode(&user, &pass)).unwrap();
            prop_assert_eq!(m.username, user);
            prop_assert_eq!(m.password, pass);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&bytes);
        }
    }
}
