//! Server-side TLS for `SSL` and `SASL_SSL` listeners: the rustls configuration built from a listener's
//! PEM files (checked before any port is bound), reloaded when those files change
//! ([`TlsListener::reload_if_changed`], polled by [`reload_loop`]), and the principal of a
//! client certificate (Kafka's default principal builder: `User:` and the subject's RFC 2253
//! DN, mapped by `ssl.principal.mapping.rules`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::WebPkiClientVerifier;

use rafka_hooks::Principal;

use crate::config::{ClientAuth, ConfigError, ListenerConfig, ListenerSslConfig};
use crate::ssl_principal_mapper::{NoMatchingRule, SslPrincipalMapper};

/// How long a client has to finish the TLS handshake; then the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn invalid(listener: &str, problem: String) -> ConfigError {
    ConfigError::Invalid {
        key: "broker.listeners",
        problem: format!("listener {listener}: {problem}"),
    }
}

fn read_certs(
    listener: &str,
    what: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bytes = std::fs::read(path)
        .map_err(|e| invalid(listener, format!("{what} {}: {e}", path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(listener, format!("{what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(
            listener,
            format!("{what} {}: no PEM CERTIFICATE in it", path.display()),
        ));
    }
    Ok(certs)
}

/// The rustls server configuration of an `SSL` listener (TLS 1.2 and 1.3, the ring
/// provider): reads and parses the certificate chain, the key (and checks it matches the
/// certificate) and the client CA. `None` for a listener without `ssl:`.
pub fn server_config(l: &ListenerConfig) -> Result<Option<Arc<rustls::ServerConfig>>, ConfigError> {
    match &l.ssl {
        None => Ok(None),
        Some(ssl) => ssl_server_config(&l.name, ssl).map(Some),
    }
}

/// The rustls server configuration of listener `name`'s `ssl:` settings.
fn ssl_server_config(
    name: &str,
    ssl: &ListenerSslConfig,
) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    let certs = read_certs(name, "ssl.certificate", &ssl.certificate)?;
    let key_bytes = std::fs::read(&ssl.key)
        .map_err(|e| invalid(name, format!("ssl.key {}: {e}", ssl.key.display())))?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes)
        .map_err(|e| invalid(name, format!("ssl.key {}: {e}", ssl.key.display())))?;
    // The ring provider (lean to build; rustls deprecates it only for lacking post-quantum
    // key exchange, which needs aws-lc-rs): TLS 1.2 and 1.3 with X25519 and the P curves.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = match (ssl.effective_client_auth(), &ssl.client_ca) {
        (ClientAuth::None, _) | (_, None) => WebPkiClientVerifier::no_client_auth(),
        (auth, Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(name, "ssl.client_ca", ca)? {
                roots
                    .add(c)
                    .map_err(|e| invalid(name, format!("ssl.client_ca {}: {e}", ca.display())))?;
            }
            let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let b = if auth == ClientAuth::Requested {
                b.allow_unauthenticated()
            } else {
                b
            };
            b.build()
                .map_err(|e| invalid(name, format!("ssl.client_ca {}: {e}", ca.display())))?
        }
    };
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| invalid(name, e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| {
            invalid(
                name,
                format!(
                    "ssl.certificate {} and ssl.key {}: {e}",
                    ssl.certificate.display(),
                    ssl.key.display()
                ),
            )
        })?;
    Ok(Arc::new(cfg))
}

/// An `SSL` listener's TLS state: the configuration new handshakes use, swapped when the
/// listener's PEM files change, and its principal mapping rules.
pub(crate) struct TlsListener {
    name: String,
    ssl: ListenerSslConfig,
    current: parking_lot::RwLock<Arc<rustls::ServerConfig>>,
    /// The SHA-256 of the certificate, key and client CA files last read: a reload happens
    /// when it differs (also after a failed attempt, which is not retried until the files
    /// change again).
    files_seen: parking_lot::Mutex<Vec<u8>>,
    mapper: SslPrincipalMapper,
}

/// What [`TlsListener::reload_if_changed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reload {
    /// The files are as last read.
    Unchanged,
    /// New handshakes use the new material.
    Reloaded,
    /// The new files are bad; the previous material stays in use.
    Failed(String),
}

/// The SHA-256 of the three files' contents (a missing file reads as empty; the reload
/// then reports it). No copy of the key is kept.
fn files_fingerprint(ssl: &ListenerSslConfig) -> Vec<u8> {
    let paths = [
        Some(&ssl.certificate),
        Some(&ssl.key),
        ssl.client_ca.as_ref(),
    ];
    files_digest(paths.into_iter().flatten())
}

/// The SHA-256 of files' contents, each prefixed by its length (unreadable files as
/// empty): what the reload loops compare.
pub(crate) fn files_digest<'a>(paths: impl IntoIterator<Item = &'a std::path::PathBuf>) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for path in paths {
        let bytes = std::fs::read(path).unwrap_or_default();
        ctx.update(&(bytes.len() as u64).to_le_bytes());
        ctx.update(&bytes);
    }
    ctx.finish().as_ref().to_vec()
}

impl TlsListener {
    /// Reads the listener's PEM files (a config error when they are bad). `None` for a
    /// listener without `ssl:`.
    pub fn load(
        l: &ListenerConfig,
        mapper: SslPrincipalMapper,
    ) -> Result<Option<Arc<TlsListener>>, ConfigError> {
        let Some(ssl) = &l.ssl else { return Ok(None) };
        let seen = files_fingerprint(ssl);
        let Some(cfg) = server_config(l)? else {
            return Ok(None);
        };
        Ok(Some(Arc::new(TlsListener {
            name: l.name.clone(),
            ssl: ssl.clone(),
            current: parking_lot::RwLock::new(cfg),
            files_seen: parking_lot::Mutex::new(seen),
            mapper,
        })))
    }

    /// The acceptor for a new connection: the material in effect now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().clone())
    }

    /// Rereads the PEM files; when they changed, builds a new configuration for new
    /// handshakes (connections already open keep theirs). Bad new files keep the old
    /// material. Blocking file reads (small files).
    pub fn reload_if_changed(&self) -> Reload {
        let now = files_fingerprint(&self.ssl);
        {
            let mut seen = self.files_seen.lock();
            if *seen == now {
                return Reload::Unchanged;
            }
            *seen = now;
        }
        match ssl_server_config(&self.name, &self.ssl) {
            Ok(cfg) => {
                *self.current.write() = cfg;
                Reload::Reloaded
            }
            Err(e) => Reload::Failed(e.to_string()),
        }
    }

    /// The principal of a handshake's client certificate, mapped by the listener's
    /// `ssl.principal.mapping.rules`; `User:ANONYMOUS` without a certificate.
    pub fn principal(
        &self,
        peer_certs: Option<&[CertificateDer<'_>]>,
    ) -> Result<Principal, NoMatchingRule> {
        match peer_certs
            .and_then(|c| c.first())
            .and_then(|c| subject_dn(c))
        {
            Some(dn) => Ok(Principal::user(self.mapper.name(&dn)?)),
            None => Ok(Principal::anonymous()),
        }
    }
}

/// Polls the listeners' PEM files every `interval` until shutdown and swaps in new
/// material when they change; a bad file is logged once (at error) and the old material
/// keeps serving.
pub(crate) async fn reload_loop(
    listeners: Vec<Arc<TlsListener>>,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    if listeners.is_empty() || interval.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        for l in &listeners {
            let l2 = l.clone();
            let outcome = tokio::task::spawn_blocking(move || l2.reload_if_changed())
                .await
                .unwrap_or_else(|e| Reload::Failed(e.to_string()));
            match outcome {
                Reload::Unchanged => {}
                Reload::Reloaded => {
                    tracing::info!(listener = %l.name, "TLS certificate reloaded")
                }
                Reload::Failed(error) => tracing::error!(
                    listener = %l.name,
                    %error,
                    "TLS certificate files changed but cannot be used; keeping the previous ones"
                ),
            }
        }
    }
}

/// `User:<subject DN>` of a verified client certificate, or `User:ANONYMOUS` when the client
/// sent none (or its subject cannot be read).
pub fn principal(peer_certs: Option<&[CertificateDer<'_>]>) -> Principal {
    match peer_certs
        .and_then(|c| c.first())
        .and_then(|c| subject_dn(c))
    {
        Some(dn) => Principal::user(dn),
        None => Principal::anonymous(),
    }
}

/// A DER element: tag, contents, and what follows it.
pub(crate) fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn oid_string(bytes: &[u8]) -> Option<String> {
    let (&first, rest) = bytes.split_first()?;
    let mut parts = vec![(first / 40).to_string(), (first % 40).to_string()];
    let mut v: u64 = 0;
    for &b in rest {
        v = v.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            parts.push(v.to_string());
            v = 0;
        }
    }
    Some(parts.join("."))
}

/// RFC 2253 escaping of an attribute value.
fn escape(value: &str, out: &mut String) {
    let n = value.chars().count();
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i + 1 == n && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
}

/// The subject of a DER certificate as an RFC 2253 string (`CN=alice,OU=eng,O=Example`):
/// the most specific RDN first, as Java's `X500Principal.getName()` writes it.
pub fn subject_dn(cert: &[u8]) -> Option<String> {
    let (_, cert, _) = der(cert)?; // Certificate
    let (_, tbs, _) = der(cert)?; // TBSCertificate
    let (tag, _, mut rest) = der(tbs)?;
    if tag == 0xa0 {
        // [0] version; the serial number follows.
        rest = der(rest)?.2;
    }
    let rest = der(rest)?.2; // signature algorithm
    let rest = der(rest)?.2; // issuer
    let rest = der(rest)?.2; // validity
    let (tag, mut name, _) = der(rest)?; // subject
    if tag != 0x30 {
        return None;
    }
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (_, mut set, next) = der(name)?;
        name = next;
        let mut rdn = Vec::new();
        while !set.is_empty() {
            let (_, atv, next) = der(set)?;
            set = next;
            let (_, oid, value) = der(atv)?;
            let (vtag, value, _) = der(value)?;
            let oid = oid_string(oid)?;
            let key = match oid.as_str() {
                "2.5.4.3" => "CN".to_string(),
                "2.5.4.6" => "C".to_string(),
                "2.5.4.7" => "L".to_string(),
                "2.5.4.8" => "ST".to_string(),
                "2.5.4.9" => "STREET".to_string(),
                "2.5.4.10" => "O".to_string(),
                "2.5.4.11" => "OU".to_string(),
                "0.9.2342.19200300.100.1.1" => "UID".to_string(),
                "0.9.2342.19200300.100.1.25" => "DC".to_string(),
                other => other.to_string(),
            };
            let text = match vtag {
                // UTF8String, PrintableString, IA5String, TeletexString (as Latin-1).
                0x0c | 0x13 | 0x16 => String::from_utf8_lossy(value).into_owned(),
                0x14 => value.iter().map(|&b| b as char).collect(),
                // BMPString: UTF-16BE.
                0x1e => {
                    let units: Vec<u16> = value
                        .chunks(2)
                        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                        .collect();
                    String::from_utf16_lossy(&units)
                }
                _ => value.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            };
            let mut s = format!("{key}=");
            escape(&text, &mut s);
            rdn.push(s);
        }
        rdns.push(rdn.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(dn: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let mut name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            name.push(t.clone(), *v);
        }
        params.distinguished_name = name;
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn subject_dn_is_rfc2253_most_specific_first() {
        let der = cert_with(&[
            (rcgen::DnType::CountryName, "DE"),
            (rcgen::DnType::OrganizationName, "Example, Inc"),
            (rcgen::DnType::OrganizationalUnitName, "eng"),
            (rcgen::DnType::CommonName, "alice"),
        ]);
        assert_eq!(
            subject_dn(&der).as_deref(),
            Some("CN=alice,OU=eng,O=Example\\, Inc,C=DE")
        );
        let p = principal(Some(&[CertificateDer::from(der)]));
        assert_eq!(p.to_string(), "User:CN=alice,OU=eng,O=Example\\, Inc,C=DE");
        assert_eq!(principal(None).to_string(), "User:ANONYMOUS");
    }

    /// A self-signed certificate and its key, PEM.
    fn self_signed(cn: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn reload_follows_the_files_and_keeps_the_old_material_on_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, ca) = (
            dir.path().join("c.pem"),
            dir.path().join("k.pem"),
            dir.path().join("ca.pem"),
        );
        let (c1, k1) = self_signed("one");
        let (ca1, _) = self_signed("ca-one");
        std::fs::write(&cert, &c1).unwrap();
        std::fs::write(&key, &k1).unwrap();
        std::fs::write(&ca, &ca1).unwrap();
        let l = ListenerConfig {
            name: "SECURE".into(),
            listen: "127.0.0.1:0".into(),
            advertised: None,
            security_protocol: rafka_core::SecurityProtocol::Ssl,
            ssl: Some(ListenerSslConfig {
                certificate: cert.clone(),
                key: key.clone(),
                client_ca: Some(ca.clone()),
                client_auth: None,
                principal_mapping_rules: None,
            }),
            sasl_enabled_mechanisms: None,
        };
        let t = TlsListener::load(&l, SslPrincipalMapper::default())
            .unwrap()
            .unwrap();
        let first = Arc::as_ptr(&t.current.read().clone());
        assert_eq!(t.reload_if_changed(), Reload::Unchanged);
        // A broken client CA: refused, named, the old configuration stays.
        std::fs::write(&ca, "garbage").unwrap();
        let Reload::Failed(e) = t.reload_if_changed() else {
            panic!("a broken CA file must fail")
        };
        assert!(e.contains("ssl.client_ca") && e.contains("SECURE"), "{e}");
        assert_eq!(Arc::as_ptr(&t.current.read().clone()), first);
        // Not retried until the files change again.
        assert_eq!(t.reload_if_changed(), Reload::Unchanged);
        // A new CA: a new configuration.
        let (ca2, _) = self_signed("ca-two");
        std::fs::write(&ca, &ca2).unwrap();
        assert_eq!(t.reload_if_changed(), Reload::Reloaded);
        let second = Arc::as_ptr(&t.current.read().clone());
        assert_ne!(second, first);
        // A missing key file: the previous material stays.
        std::fs::remove_file(&key).unwrap();
        assert!(matches!(t.reload_if_changed(), Reload::Failed(e) if e.contains("ssl.key")));
        assert_eq!(Arc::as_ptr(&t.current.read().clone()), second);
        // A new pair, written one file at a time: the half-way state fails, the whole
        // pair loads.
        let (c3, k3) = self_signed("three");
        std::fs::write(&key, &k3).unwrap();
        assert!(matches!(t.reload_if_changed(), Reload::Failed(_)));
        std::fs::write(&cert, &c3).unwrap();
        assert_eq!(t.reload_if_changed(), Reload::Reloaded);
    }

    #[test]
    fn garbage_is_no_subject() {
        assert_eq!(subject_dn(&[]), None);
        assert_eq!(subject_dn(&[0x30, 0x82, 0xff]), None);
        let der = cert_with(&[(rcgen::DnType::CommonName, "bob")]);
        for cut in 0..der.len() {
            // Never panics on a truncated certificate.
            let _ = subject_dn(&der[..cut]);
        }
    }
}
