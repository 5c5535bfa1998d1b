//! Kafka's security protocols: one per broker listener, and a client's `security.protocol`.

/// Whether a connection is encrypted (TLS) and whether it authenticates with SASL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SecurityProtocol {
    /// Plain TCP, no authentication (the default, as in Kafka).
    #[default]
    Plaintext,
    /// TLS, optionally with client certificates.
    Ssl,
    /// SASL authentication over plain TCP.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Every protocol.
    pub const ALL: [SecurityProtocol; 4] = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    /// Kafka's name (`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`).
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// The protocol named `name`, in any case and with surrounding blanks (Kafka and
    /// librdkafka accept `ssl` as well as `SSL`).
    pub fn from_name(name: &str) -> Option<SecurityProtocol> {
        let name = name.trim();
        SecurityProtocol::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }

    /// Whether the connection runs TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether the connection authenticates with SASL before anything else.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_any_case() {
        for p in SecurityProtocol::ALL {
            assert_eq!(SecurityProtocol::from_name(p.name()), Some(p));
            let lower = format!(" {} ", p.name().to_ascii_lowercase());
            assert_eq!(SecurityProtocol::from_name(&lower), Some(p));
        }
        assert_eq!(SecurityProtocol::from_name("TLS"), None);
        assert_eq!(SecurityProtocol::from_name(""), None);
        assert!(SecurityProtocol::SaslSsl.uses_tls() && SecurityProtocol::SaslSsl.uses_sasl());
        assert!(
            !SecurityProtocol::Plaintext.uses_tls() && !SecurityProtocol::Plaintext.uses_sasl()
        );
    }
}
