//! Connection security, configured as Kafka clients are: `security.protocol`
//! (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), TLS from PEM files (`ssl.ca.location`, and
//! `ssl.certificate.location` + `ssl.key.location` for mutual TLS) with hostname
//! verification unless `ssl.endpoint.identification.algorithm` is empty, and SASL
//! (`sasl.mechanism`, `sasl.username`, `sasl.password`).
//!
//! TLS is rustls with the ring provider (TLS 1.2 and 1.3); no OpenSSL. The rustls client
//! configuration is built once per [`Client`](crate::Client) and shared by its connections.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::error::ClientError;

/// `security.protocol`: whether the connection is encrypted and whether it authenticates
/// with SASL (plain TCP by default).
pub use rafka_core::SecurityProtocol;

/// TLS settings (the `ssl.*` keys).
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// `ssl.ca.location`: PEM file of the CA certificates the broker's certificate must
    /// chain to. Unset: the system's CA bundle.
    pub ca_location: Option<PathBuf>,
    /// `ssl.certificate.location`: PEM certificate chain for mutual TLS.
    pub certificate_location: Option<PathBuf>,
    /// `ssl.key.location`: PEM private key of that certificate.
    pub key_location: Option<PathBuf>,
    /// `ssl.endpoint.identification.algorithm`: `https` (the default) checks that the
    /// broker's certificate names the host connected to; empty switches that check off
    /// (the chain is still verified).
    pub endpoint_identification: bool,
}

impl Default for TlsConfig {
    fn default() -> TlsConfig {
        TlsConfig {
            ca_location: None,
            certificate_location: None,
            key_location: None,
            endpoint_identification: true,
        }
    }
}

/// `sasl.mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// PLAIN (RFC 4616): the password goes to the broker; use it over TLS.
    Plain,
    /// SCRAM-SHA-256 (RFC 7677).
    ScramSha256,
    /// SCRAM-SHA-512.
    ScramSha512,
}

impl SaslMechanism {
    /// Kafka's name (`SCRAM-SHA-512`).
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// Parses Kafka's name (case-insensitive).
    pub fn from_name(s: &str) -> Option<SaslMechanism> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "PLAIN" => SaslMechanism::Plain,
            "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
            "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
            _ => return None,
        })
    }
}

/// SASL settings. `Debug` never prints the password.
#[derive(Clone)]
pub struct SaslConfig {
    /// `sasl.mechanism`.
    pub mechanism: SaslMechanism,
    /// `sasl.username`.
    pub username: String,
    /// `sasl.password`.
    pub password: String,
}

impl std::fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslConfig")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How a client secures its connections.
#[derive(Debug, Clone, Default)]
pub struct SecurityConfig {
    /// `security.protocol`.
    pub protocol: SecurityProtocol,
    /// Used when the protocol is SSL or SASL_SSL.
    pub tls: TlsConfig,
    /// Needed when the protocol is SASL_PLAINTEXT or SASL_SSL.
    pub sasl: Option<SaslConfig>,
}

impl SecurityConfig {
    /// Checks the combination (SASL settings for a SASL protocol, a key with a client
    /// certificate) and builds the TLS connector when the protocol uses TLS.
    pub(crate) fn prepare(&self) -> Result<Option<Arc<rustls::ClientConfig>>, ClientError> {
        if self.protocol.uses_sasl() && self.sasl.is_none() {
            return Err(ClientError::Invalid(format!(
                "security.protocol {} needs sasl.mechanism, sasl.username and sasl.password",
                self.protocol.name()
            )));
        }
        if !self.protocol.uses_tls() {
            return Ok(None);
        }
        tls_client_config(&self.tls).map(Some)
    }
}

/// Where the system's CA bundle usually is (Debian/Ubuntu, Fedora/RHEL, openSUSE, Alpine),
/// read when `ssl.ca.location` is unset, as librdkafka probes.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

fn invalid(key: &str, path: &Path, e: impl std::fmt::Display) -> ClientError {
    ClientError::Invalid(format!("{key} {}: {e}", path.display()))
}

fn read_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let bytes = std::fs::read(path).map_err(|e| invalid(key, path, e))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(key, path, e))?;
    if certs.is_empty() {
        return Err(invalid(key, path, "no PEM CERTIFICATE in it"));
    }
    Ok(certs)
}

/// The ring provider, as the broker uses (TLS 1.2 and 1.3).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Fills `buf` from the operating system's secure random source (through the TLS
/// provider's, so no second RNG crate): SCRAM nonces and salts.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<(), ClientError> {
    provider()
        .secure_random
        .fill(buf)
        .map_err(|_| ClientError::Protocol("the system random source failed".into()))
}

fn tls_client_config(tls: &TlsConfig) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let (key, ca) = match &tls.ca_location {
        Some(p) => ("ssl.ca.location", p.clone()),
        None => (
            "the system CA bundle",
            SYSTEM_CA_BUNDLES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    ClientError::Invalid(
                        "ssl.ca.location is not set and no system CA bundle was found".into(),
                    )
                })?,
        ),
    };
    let certs = read_certs(key, &ca)?;
    if tls.ca_location.is_some() {
        for c in certs {
            roots.add(c).map_err(|e| invalid(key, &ca, e))?;
        }
    } else {
        // A system bundle may hold certificates webpki cannot use; skip those as
        // librdkafka and Java do.
        let _ = roots.add_parsable_certificates(certs);
    }
    let provider = provider();
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| invalid(key, &ca, e))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Invalid(format!("TLS versions: {e}")))?;
    let builder = if tls.endpoint_identification {
        builder.with_webpki_verifier(webpki)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
    };
    let config = match (&tls.certificate_location, &tls.key_location) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key_path)) => {
            let chain = read_certs("ssl.certificate.location", cert)?;
            let key_bytes =
                std::fs::read(key_path).map_err(|e| invalid("ssl.key.location", key_path, e))?;
            let key = PrivateKeyDer::from_pem_slice(&key_bytes)
                .map_err(|e| invalid("ssl.key.location", key_path, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| invalid("ssl.key.location", key_path, e))?
        }
        _ => {
            return Err(ClientError::Invalid(
                "ssl.certificate.location and ssl.key.location go together".into(),
            ))
        }
    };
    Ok(Arc::new(config))
}

/// The name the broker's certificate must carry: the host part of `host:port` (an IP
/// address is matched against the certificate's IP SANs).
pub(crate) fn server_name(addr: &str) -> Result<ServerName<'static>, ClientError> {
    let host = match addr.rsplit_once(':') {
        Some((h, _)) => h,
        None => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| ClientError::Invalid(format!("broker address {addr}: {e}")))
}

/// `ssl.endpoint.identification.algorithm=` (empty): the chain, the validity dates and
/// the signatures are verified as usual; only a name mismatch is accepted.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in [
            SecurityProtocol::Plaintext,
            SecurityProtocol::Ssl,
            SecurityProtocol::SaslPlaintext,
            SecurityProtocol::SaslSsl,
        ] {
            assert_eq!(SecurityProtocol::from_name(p.name()), Some(p));
            assert_eq!(
                SecurityProtocol::from_name(&p.name().to_ascii_lowercase()),
                Some(p)
            );
        }
        assert_eq!(SecurityProtocol::from_name("TLS"), None);
        for m in [
            SaslMechanism::Plain,
            SaslMechanism::ScramSha256,
            SaslMechanism::ScramSha512,
        ] {
            assert_eq!(SaslMechanism::from_name(m.name()), Some(m));
        }
        assert_eq!(SaslMechanism::from_name("GSSAPI"), None);
    }

    #[test]
    fn server_names() {
        assert_eq!(
            server_name("127.0.0.1:9093").unwrap(),
            ServerName::try_from("127.0.0.1").unwrap()
        );
        assert_eq!(
            server_name("broker.example.com:9093").unwrap(),
            ServerName::try_from("broker.example.com").unwrap()
        );
        assert_eq!(
            server_name("[::1]:9093").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
    }

    #[test]
    fn sasl_protocol_needs_sasl_settings_and_debug_hides_the_password() {
        let cfg = SecurityConfig {
            protocol: SecurityProtocol::SaslPlaintext,
            ..SecurityConfig::default()
        };
        assert!(matches!(cfg.prepare(), Err(ClientError::Invalid(_))));
        let s = SaslConfig {
            mechanism: SaslMechanism::Plain,
            username: "alice".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn missing_files_are_named() {
        let cfg = SecurityConfig {
            protocol: SecurityProtocol::Ssl,
            tls: TlsConfig {
                ca_location: Some("/nonexistent/ca.pem".into()),
                ..TlsConfig::default()
            },
            sasl: None,
        };
        let e = cfg.prepare().unwrap_err().to_string();
        assert!(e.contains("ssl.ca.location /nonexistent/ca.pem"), "{e}");
    }
}
