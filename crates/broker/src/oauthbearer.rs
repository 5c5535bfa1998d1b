//! SASL/OAUTHBEARER on the server side, sans-IO: the RFC 7628 client-first message
//! (`n,a=<authzid>,^Aauth=Bearer <token>^A<extensions>^A^A`), and the JWT it carries checked
//! the way Kafka's default validator (KIP-768) checks it: an `RS256`/`RS384`/`RS512` or
//! `ES256`/`ES384` signature against the configured public keys (PEM files) or JWKS file
//! (RFC 7517), `exp` and `iat` required, `nbf` honoured, both with
//! `sasl_oauthbearer_clock_skew_seconds`; `aud` and `iss` when expected ones are configured;
//! the principal from `sasl_oauthbearer_sub_claim_name`. Unsigned tokens (`alg: none`,
//! Kafka's unsecured validator, for development) only with
//! `sasl_oauthbearer_unsecured_validator_enable`.
//!
//! A token that fails is answered as Kafka answers it: a server challenge
//! `{"status":"invalid_token"}`; the client acknowledges with `0x01`, and the exchange fails
//! with that JSON as the message. The caller reads the clock and passes it in; nothing here
//! does I/O after [`Validator::from_config`] read the key files.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

use crate::config::{BrokerConfig, ConfigError};

/// The server's answer to a token it refuses (Kafka's `jsonErrorResponse`).
pub const INVALID_TOKEN: &str = r#"{"status":"invalid_token"}"#;

/// Longest token read: a JWT is a few KiB at most.
pub const TOKEN_BYTES_MAX: usize = 16 * 1024;

/// Most keys read from the key files and the JWKS file.
pub const KEYS_MAX: usize = 256;

/// A signature algorithm of a JWT's `alg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Rs256,
    Rs384,
    Rs512,
    Es256,
    Es384,
}

impl Alg {
    fn from_name(name: &str) -> Option<Alg> {
        Some(match name {
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
        }
    }
}

/// Public key material.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyMaterial {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// The uncompressed point on P-256.
    P256(Vec<u8>),
    /// The uncompressed point on P-384.
    P384(Vec<u8>),
}

/// A verification key: from a PEM file (no key id) or a JWKS entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VerifyKey {
    kid: Option<String>,
    /// The JWK's `alg`, when it names one: the key is used for that algorithm only.
    alg: Option<String>,
    material: KeyMaterial,
}

impl VerifyKey {
    fn verifies(&self, alg: Alg, message: &[u8], sig: &[u8]) -> bool {
        if self.alg.as_deref().is_some_and(|a| a != alg.name()) {
            return false;
        }
        match (&self.material, alg) {
            (KeyMaterial::Rsa { n, e }, Alg::Rs256 | Alg::Rs384 | Alg::Rs512) => {
                let params = match alg {
                    Alg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Alg::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    _ => &signature::RSA_PKCS1_2048_8192_SHA512,
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, message, sig)
                    .is_ok()
            }
            (KeyMaterial::P256(point), Alg::Es256) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            (KeyMaterial::P384(point), Alg::Es384) => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            _ => false,
        }
    }
}

/// Why a token was refused (for the log; the client is told only `invalid_token`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWS compact serialization, bad base64 or JSON, a claim of the wrong type.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `alg` is not one this broker verifies.
    #[error("unsupported signature algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// `alg: none` while the unsecured validator is off.
    #[error("unsigned token (alg none) refused: the unsecured validator is not enabled")]
    Unsecured,
    /// A signed token while no verification key is configured.
    #[error("no verification key is configured for signed tokens")]
    NoKeys,
    /// The token's `kid` names no configured key.
    #[error("no verification key with kid {0:?}")]
    UnknownKeyId(String),
    /// No configured key verifies the signature.
    #[error("signature does not verify")]
    BadSignature,
    /// A required claim is missing.
    #[error("required claim {0:?} is missing")]
    MissingClaim(String),
    /// `exp` is past (beyond the clock skew).
    #[error("token expired at {exp} (now {now}, clock skew {skew} s)")]
    Expired {
        /// The token's `exp`, seconds.
        exp: i64,
        /// The broker's clock, seconds.
        now: i64,
        /// The allowed skew, seconds.
        skew: i64,
    },
    /// `nbf` (or `iat` for an unsecured token) is in the future (beyond the clock skew).
    #[error("token not valid before {nbf} (now {now}, clock skew {skew} s)")]
    NotYetValid {
        /// The token's `nbf`, seconds.
        nbf: i64,
        /// The broker's clock, seconds.
        now: i64,
        /// The allowed skew, seconds.
        skew: i64,
    },
    /// None of the token's audiences is expected.
    #[error("audience {found:?} is not one of {expected:?}")]
    Audience {
        /// The token's `aud`.
        found: Vec<String>,
        /// `sasl_oauthbearer_expected_audience`.
        expected: Vec<String>,
    },
    /// `iss` is not the expected issuer.
    #[error("issuer {found:?} is not {expected:?}")]
    Issuer {
        /// The token's `iss`.
        found: Option<String>,
        /// `sasl_oauthbearer_expected_issuer`.
        expected: String,
    },
}

/// A valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidToken {
    /// The principal name (the `sasl_oauthbearer_sub_claim_name` claim).
    pub principal: String,
    /// `exp` in milliseconds since the epoch: the credential's lifetime (KIP-368).
    pub expires_at_ms: i64,
}

/// The checks of `sasl.oauthbearer.*`, with the keys read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validator {
    keys: Vec<VerifyKey>,
    expected_audience: Vec<String>,
    expected_issuer: Option<String>,
    sub_claim_name: String,
    clock_skew_s: i64,
    unsecured: bool,
}

fn invalid(key: &'static str, problem: String) -> ConfigError {
    ConfigError::Invalid { key, problem }
}

fn b64url(part: &str, what: &str) -> Result<Vec<u8>, String> {
    B64URL
        .decode(part.trim_end_matches('='))
        .map_err(|e| format!("{what} is not base64url: {e}"))
}

/// Big-endian unsigned integer without leading zeros.
fn unsigned(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes[start..].to_vec()
}

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// A DER `SubjectPublicKeyInfo` (PEM `PUBLIC KEY`): RSA, or EC on P-256 or P-384.
fn spki_key(spki_der: &[u8]) -> Option<KeyMaterial> {
    use crate::tls::der;
    let (_, spki, _) = der(spki_der)?;
    let (_, algorithm, rest) = der(spki)?;
    let (tag, bits, _) = der(rest)?;
    if tag != 0x03 {
        return None;
    }
    let (&unused, key) = bits.split_first()?;
    if unused != 0 {
        return None;
    }
    let (_, oid, params) = der(algorithm)?;
    if oid == OID_RSA {
        let (_, seq, _) = der(key)?;
        let (_, n, rest) = der(seq)?;
        let (_, e, _) = der(rest)?;
        return Some(KeyMaterial::Rsa {
            n: unsigned(n),
            e: unsigned(e),
        });
    }
    if oid == OID_EC {
        let (_, curve, _) = der(params)?;
        return match curve {
            c if c == OID_P256 => Some(KeyMaterial::P256(key.to_vec())),
            c if c == OID_P384 => Some(KeyMaterial::P384(key.to_vec())),
            _ => None,
        };
    }
    None
}

/// The keys of a JWKS document (RFC 7517): RSA and EC (P-256, P-384) signature keys; keys
/// for encryption (`use: enc`) and other types are skipped.
fn jwks_keys(text: &str) -> Result<Vec<VerifyKey>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Some(keys) = doc.get("keys").and_then(Value::as_array) else {
        return Err("no \"keys\" array".into());
    };
    let mut out = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let field = |name: &str| k.get(name).and_then(Value::as_str);
        if field("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let bytes = |name: &str| -> Result<Vec<u8>, String> {
            let v = field(name).ok_or_else(|| format!("key {i}: no {name:?}"))?;
            b64url(v, &format!("key {i} {name:?}"))
        };
        let material = match (field("kty"), field("crv")) {
            (Some("RSA"), _) => KeyMaterial::Rsa {
                n: unsigned(&bytes("n")?),
                e: unsigned(&bytes("e")?),
            },
            (Some("EC"), Some(crv @ ("P-256" | "P-384"))) => {
                let (x, y) = (bytes("x")?, bytes("y")?);
                let size = if crv == "P-256" { 32 } else { 48 };
                if x.len() != size || y.len() != size {
                    return Err(format!("key {i}: x and y of {crv} are {size} bytes"));
                }
                let mut point = vec![0x04];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                if crv == "P-256" {
                    KeyMaterial::P256(point)
                } else {
                    KeyMaterial::P384(point)
                }
            }
            _ => continue,
        };
        out.push(VerifyKey {
            kid: field("kid").map(str::to_string),
            alg: field("alg").map(str::to_string),
            material,
        });
    }
    Ok(out)
}

/// The path of a `file:` URL (`file:///etc/jwks.json`, `file:/etc/jwks.json`).
fn file_url_path(url: &str) -> Option<&Path> {
    let rest = url.strip_prefix("file:")?;
    let path = rest.strip_prefix("//").unwrap_or(rest);
    path.starts_with('/').then(|| Path::new(path))
}

/// A JSON NumericDate (seconds, possibly fractional) as whole seconds.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => match v.as_i64().or_else(|| v.as_f64().map(|f| f.floor() as i64)) {
            Some(t) => Ok(Some(t)),
            None => Err(TokenError::Malformed(format!(
                "claim {name:?} is not a number"
            ))),
        },
    }
}

impl Validator {
    /// The validator of `broker.sasl_oauthbearer_*`; reads the key files (a config error
    /// when one cannot be read or holds no usable key).
    pub fn from_config(b: &BrokerConfig) -> Result<Validator, ConfigError> {
        let mut keys = Vec::new();
        for path in &b.sasl_oauthbearer_public_key_files {
            let key = "broker.sasl_oauthbearer_public_key_files";
            use rustls_pki_types::pem::PemObject;
            let bytes = std::fs::read(path)
                .map_err(|e| invalid(key, format!("{}: {e}", path.display())))?;
            let spki = rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_slice(&bytes)
                .map_err(|e| invalid(key, format!("{}: {e}", path.display())))?;
            let material = spki_key(spki.as_ref()).ok_or_else(|| {
                invalid(
                    key,
                    format!("{}: not an RSA, P-256 or P-384 public key", path.display()),
                )
            })?;
            keys.push(VerifyKey {
                kid: None,
                alg: None,
                material,
            });
        }
        if let Some(url) = &b.sasl_oauthbearer_jwks_endpoint_url {
            let key = "broker.sasl_oauthbearer_jwks_endpoint_url";
            let path = file_url_path(url).ok_or_else(|| {
                invalid(
                    key,
                    format!("{url:?}: only file: URLs are supported (file:///path/jwks.json)"),
                )
            })?;
            let text = std::fs::read_to_string(path)
                .map_err(|e| invalid(key, format!("{}: {e}", path.display())))?;
            let found =
                jwks_keys(&text).map_err(|e| invalid(key, format!("{}: {e}", path.display())))?;
            if found.is_empty() {
                return Err(invalid(
                    key,
                    format!("{}: no RSA or EC signature key in it", path.display()),
                ));
            }
            keys.extend(found);
        }
        if keys.len() > KEYS_MAX {
            return Err(invalid(
                "broker.sasl_oauthbearer_jwks_endpoint_url",
                format!("{} keys; at most {KEYS_MAX}", keys.len()),
            ));
        }
        if b.sasl_oauthbearer_sub_claim_name.is_empty() {
            return Err(invalid(
                "broker.sasl_oauthbearer_sub_claim_name",
                "must not be empty".into(),
            ));
        }
        Ok(Validator {
            keys,
            expected_audience: b.sasl_oauthbearer_expected_audience.clone(),
            expected_issuer: b.sasl_oauthbearer_expected_issuer.clone(),
            sub_claim_name: b.sasl_oauthbearer_sub_claim_name.clone(),
            clock_skew_s: i64::try_from(b.sasl_oauthbearer_clock_skew_seconds).unwrap_or(i64::MAX),
            unsecured: b.sasl_oauthbearer_unsecured_validator_enable,
        })
    }

    /// Whether this validator can accept any token (keys, or the unsecured mode).
    pub fn can_validate(&self) -> bool {
        !self.keys.is_empty() || self.unsecured
    }

    /// Checks a compact JWS `token` at `now_ms` (milliseconds since the epoch).
    pub fn validate(&self, token: &str, now_ms: i64) -> Result<ValidToken, TokenError> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(TokenError::Malformed(format!(
                "{} bytes, more than {TOKEN_BYTES_MAX}",
                token.len()
            )));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed(
                "not three dot-separated parts".into(),
            ));
        };
        let object = |part: &str, what: &str| -> Result<Map<String, Value>, TokenError> {
            let bytes = b64url(part, what).map_err(TokenError::Malformed)?;
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(m)) => Ok(m),
                _ => Err(TokenError::Malformed(format!(
                    "{what} is not a JSON object"
                ))),
            }
        };
        let header = object(h, "header")?;
        let claims = object(p, "payload")?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| TokenError::Malformed("header has no \"alg\"".into()))?;
        if header.contains_key("crit") {
            return Err(TokenError::Malformed(
                "critical header parameters are not supported".into(),
            ));
        }
        if alg == "none" {
            if !self.unsecured {
                return Err(TokenError::Unsecured);
            }
            if !s.is_empty() {
                return Err(TokenError::Malformed(
                    "an unsecured token has an empty signature".into(),
                ));
            }
        } else {
            let alg = Alg::from_name(alg)
                .ok_or_else(|| TokenError::UnsupportedAlgorithm(alg.to_string()))?;
            if self.keys.is_empty() {
                return Err(TokenError::NoKeys);
            }
            let sig = b64url(s, "signature").map_err(TokenError::Malformed)?;
            let kid = header.get("kid").and_then(Value::as_str);
            let candidates: Vec<&VerifyKey> = self
                .keys
                .iter()
                .filter(|k| match (kid, &k.kid) {
                    (Some(want), Some(have)) => want == have,
                    _ => true,
                })
                .collect();
            if let (Some(kid), true) = (kid, candidates.is_empty()) {
                return Err(TokenError::UnknownKeyId(kid.to_string()));
            }
            let signed = &token[..h.len() + 1 + p.len()];
            if !candidates
                .iter()
                .any(|k| k.verifies(alg, signed.as_bytes(), &sig))
            {
                return Err(TokenError::BadSignature);
            }
        }
        self.check_claims(&claims, alg == "none", now_ms)
    }

    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        unsecured: bool,
        now_ms: i64,
    ) -> Result<ValidToken, TokenError> {
        let now = now_ms.div_euclid(1000);
        let skew = self.clock_skew_s;
        let exp =
            numeric_date(claims, "exp")?.ok_or_else(|| TokenError::MissingClaim("exp".into()))?;
        let iat = numeric_date(claims, "iat")?;
        // Kafka's validator requires `iat`; its unsecured one only checks it when present.
        if iat.is_none() && !unsecured {
            return Err(TokenError::MissingClaim("iat".into()));
        }
        if now >= exp.saturating_add(skew) {
            return Err(TokenError::Expired { exp, now, skew });
        }
        if let Some(nbf) = numeric_date(claims, "nbf")? {
            if now.saturating_add(skew) < nbf {
                return Err(TokenError::NotYetValid { nbf, now, skew });
            }
        }
        if let (Some(iat), true) = (iat, unsecured) {
            if now.saturating_add(skew) < iat {
                return Err(TokenError::NotYetValid {
                    nbf: iat,
                    now,
                    skew,
                });
            }
        }
        if !self.expected_audience.is_empty() {
            let found: Vec<String> = match claims.get("aud") {
                Some(Value::String(a)) => vec![a.clone()],
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                _ => Vec::new(),
            };
            if !found.iter().any(|a| self.expected_audience.contains(a)) {
                return Err(TokenError::Audience {
                    found,
                    expected: self.expected_audience.clone(),
                });
            }
        }
        if let Some(expected) = &self.expected_issuer {
            let found = claims.get("iss").and_then(Value::as_str);
            if found != Some(expected.as_str()) {
                return Err(TokenError::Issuer {
                    found: found.map(str::to_string),
                    expected: expected.clone(),
                });
            }
        }
        let principal = match claims.get(&self.sub_claim_name) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            Some(Value::String(_)) | None => {
                return Err(TokenError::MissingClaim(self.sub_claim_name.clone()))
            }
            Some(_) => {
                return Err(TokenError::Malformed(format!(
                    "claim {:?} is not a string",
                    self.sub_claim_name
                )))
            }
        };
        Ok(ValidToken {
            principal,
            expires_at_ms: exp.saturating_mul(1000),
        })
    }
}

/// The validator in effect, swapped when its key files change (the JWKS file and the PEM
/// public keys, checked every `sasl_oauthbearer_jwks_endpoint_refresh_ms` by
/// [`refresh_loop`]): an identity provider's key rotation needs no restart. New files that
/// do not load keep the previous keys.
#[derive(Debug)]
pub struct ValidatorCell {
    config: BrokerConfig,
    current: parking_lot::RwLock<std::sync::Arc<Validator>>,
    /// SHA-256 of the key files last read.
    seen: parking_lot::Mutex<Vec<u8>>,
    /// Wakes [`refresh_loop`] early: a token named a key id no key has (the provider may
    /// have rotated its keys).
    expedite: tokio::sync::Notify,
}

impl PartialEq for ValidatorCell {
    fn eq(&self, other: &ValidatorCell) -> bool {
        *self.get() == *other.get()
    }
}

impl Eq for ValidatorCell {}

impl ValidatorCell {
    /// Reads the key files of `b` (a config error when they are bad).
    pub fn new(b: &BrokerConfig) -> Result<ValidatorCell, ConfigError> {
        let seen = crate::tls::files_digest(&key_files(b));
        let validator = Validator::from_config(b)?;
        Ok(ValidatorCell {
            config: b.clone(),
            current: parking_lot::RwLock::new(std::sync::Arc::new(validator)),
            seen: parking_lot::Mutex::new(seen),
            expedite: tokio::sync::Notify::new(),
        })
    }

    /// A cell that never reloads (tests).
    #[cfg(test)]
    pub fn fixed(v: Validator) -> ValidatorCell {
        ValidatorCell {
            config: BrokerConfig::default(),
            current: parking_lot::RwLock::new(std::sync::Arc::new(v)),
            seen: parking_lot::Mutex::new(Vec::new()),
            expedite: tokio::sync::Notify::new(),
        }
    }

    /// The validator in effect now.
    pub fn get(&self) -> std::sync::Arc<Validator> {
        self.current.read().clone()
    }

    /// Asks for the key files to be reread soon (a token named an unknown key id, as
    /// Kafka's refreshing JWKS does); the token at hand is refused all the same.
    pub fn expedite_refresh(&self) {
        self.expedite.notify_one();
    }

    /// Rereads the key files; when they changed, builds a new validator (bad files keep
    /// the old one). Blocking file reads (small files).
    pub fn reload_if_changed(&self) -> crate::tls::Reload {
        use crate::tls::Reload;
        let files = key_files(&self.config);
        if files.is_empty() {
            return Reload::Unchanged;
        }
        let now = crate::tls::files_digest(&files);
        {
            let mut seen = self.seen.lock();
            if *seen == now {
                return Reload::Unchanged;
            }
            *seen = now;
        }
        match Validator::from_config(&self.config) {
            Ok(v) => {
                *self.current.write() = std::sync::Arc::new(v);
                Reload::Reloaded
            }
            Err(e) => Reload::Failed(e.to_string()),
        }
    }
}

/// The files the keys come from.
fn key_files(b: &BrokerConfig) -> Vec<std::path::PathBuf> {
    let mut files = b.sasl_oauthbearer_public_key_files.clone();
    if let Some(p) = b
        .sasl_oauthbearer_jwks_endpoint_url
        .as_deref()
        .and_then(file_url_path)
    {
        files.push(p.to_path_buf());
    }
    files
}

/// Least time between two rereads asked for by unknown key ids.
pub const EXPEDITED_REFRESH_GAP: std::time::Duration = std::time::Duration::from_secs(1);

/// Rereads OAUTHBEARER's key files every `interval` (0: only when asked) and when a token
/// names an unknown key id (at most once per [`EXPEDITED_REFRESH_GAP`]), until shutdown;
/// new keys verify the next tokens, a bad file is logged (at error) and the previous keys
/// stay.
pub async fn refresh_loop(
    cell: std::sync::Arc<ValidatorCell>,
    interval: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    if key_files(&cell.config).is_empty() {
        return;
    }
    let periodic = !interval.is_zero();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval), if periodic => {}
            _ = cell.expedite.notified() => {}
            _ = shutdown.changed() => return,
        }
        let c = cell.clone();
        let outcome = tokio::task::spawn_blocking(move || c.reload_if_changed())
            .await
            .unwrap_or_else(|e| crate::tls::Reload::Failed(e.to_string()));
        match outcome {
            crate::tls::Reload::Unchanged => {}
            crate::tls::Reload::Reloaded => {
                tracing::info!("OAUTHBEARER verification keys reloaded")
            }
            crate::tls::Reload::Failed(error) => tracing::error!(
                %error,
                "OAUTHBEARER key files changed but cannot be used; keeping the previous keys"
            ),
        }
        // Bounds the rereads a stream of bad key ids can cause.
        tokio::select! {
            _ = tokio::time::sleep(EXPEDITED_REFRESH_GAP) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// A parsed client-first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The authorization id (`a=`), decoded; empty when absent.
    pub authzid: String,
    /// The bearer token.
    pub token: String,
    /// SASL extensions (every key but `auth`), in the order sent.
    pub extensions: Vec<(String, String)>,
}

/// Decodes an RFC 5801 saslname (`=2C` is `,`, `=3D` is `=`).
fn saslname(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if c == '=' {
            match rest.get(..3) {
                Some("=2C") => out.push(','),
                Some("=3D") => out.push('='),
                _ => return None,
            }
            rest = &rest[3..];
        } else if c == ',' || !('\x01'..='\x7f').contains(&c) {
            return None;
        } else {
            out.push(c);
            rest = &rest[1..];
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Parses an OAUTHBEARER client-first message (RFC 7628 section 3.1, as Kafka's
/// `OAuthBearerClientInitialResponse`); the error is Kafka's message.
pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, String> {
    let bad = || "Invalid OAUTHBEARER client first message".to_string();
    if msg.len() > rafka_protocol::sasl::SASL_MESSAGE_BYTES_MAX {
        return Err(bad());
    }
    let text = std::str::from_utf8(msg).map_err(|_| bad())?;
    let rest = text.strip_prefix("n,").ok_or_else(bad)?;
    let (authzid, rest) = match rest.strip_prefix("a=") {
        Some(r) => {
            let (name, rest) = r.split_once(',').ok_or_else(bad)?;
            (saslname(name).ok_or_else(bad)?, rest)
        }
        None => (String::new(), rest.strip_prefix(',').ok_or_else(bad)?),
    };
    let pairs = rest
        .strip_prefix('\x01')
        .and_then(|r| r.strip_suffix('\x01'))
        .ok_or_else(bad)?;
    let mut auth = None;
    let mut extensions: Vec<(String, String)> = Vec::new();
    // Each pair is `key=value^A`.
    if !pairs.is_empty() && !pairs.ends_with('\x01') {
        return Err(bad());
    }
    for pair in pairs.split_terminator('\x01') {
        let (k, v) = pair.split_once('=').ok_or_else(bad)?;
        let key_ok = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphabetic());
        let value_ok = !v.is_empty()
            && v.chars()
                .all(|c| ('\x21'..='\x7e').contains(&c) || matches!(c, ' ' | '\t' | '\r' | '\n'));
        if !key_ok || !value_ok {
            return Err(bad());
        }
        if k == "auth" {
            auth = Some(v);
        } else {
            extensions.retain(|(e, _)| e != k);
            extensions.push((k.to_string(), v.to_string()));
        }
    }
    let auth = auth.ok_or_else(|| format!("{}: 'auth' not specified", bad()))?;
    // `(?<scheme>[\w]+)[ ]+(?<token>[-_\.a-zA-Z0-9]+)`, the whole value.
    let invalid_auth = || format!("{}: invalid 'auth' format", bad());
    let (scheme, token) = auth.split_once(' ').ok_or_else(invalid_auth)?;
    let token = token.trim_start_matches(' ');
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        || token.is_empty()
        || !token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid_auth());
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(format!("{}: invalid scheme", bad()));
    }
    Ok(ClientFirst {
        authzid,
        token: token.to_string(),
        extensions,
    })
}

/// What one client message leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Authenticated: answer with an empty message.
    Authenticated {
        /// The valid token's principal and lifetime.
        token: ValidToken,
        /// The client's SASL extensions (not validated: Rafka gives them no meaning).
        extensions: Vec<(String, String)>,
    },
    /// The token was refused: answer with this challenge (`{"status":"invalid_token"}`);
    /// the client's next message (`0x01`) ends the exchange in failure.
    Challenge {
        /// The server's message.
        challenge: Vec<u8>,
        /// Why (for the log).
        reason: TokenError,
    },
    /// The exchange failed: the KIP-152 message, and the reason for the log.
    Failed {
        /// What the client is told.
        message: String,
        /// Why.
        reason: String,
    },
}

/// One OAUTHBEARER exchange on the server.
#[derive(Debug, Default)]
pub struct OAuthBearerServer {
    /// The challenge sent and why, while waiting for the client's `0x01`.
    error: Option<(String, TokenError)>,
}

impl OAuthBearerServer {
    /// Takes one client message: the client-first message, or the `0x01` acknowledging a
    /// challenge.
    pub fn evaluate(&mut self, msg: &[u8], validator: &Validator, now_ms: i64) -> Outcome {
        if msg == [0x01] {
            if let Some((error, why)) = self.error.take() {
                return Outcome::Failed {
                    reason: format!("invalid token: {why}"),
                    message: error,
                };
            }
        }
        self.error = None;
        let first = match parse_client_first(msg) {
            Ok(f) => f,
            Err(e) => {
                return Outcome::Failed {
                    message: "Authentication failed during authentication due to invalid \
                              credentials with SASL mechanism OAUTHBEARER"
                        .into(),
                    reason: e,
                }
            }
        };
        match validator.validate(&first.token, now_ms) {
            Err(reason) => {
                self.error = Some((INVALID_TOKEN.to_string(), reason.clone()));
                Outcome::Challenge {
                    challenge: INVALID_TOKEN.as_bytes().to_vec(),
                    reason,
                }
            }
            Ok(token) if !first.authzid.is_empty() && first.authzid != token.principal => {
                Outcome::Failed {
                    message: format!(
                        "Authentication failed: Client requested an authorization id ({}) \
                         that is different from the token's principal name ({})",
                        first.authzid, token.principal
                    ),
                    reason: "authzid differs from the principal".into(),
                }
            }
            Ok(token) => Outcome::Authenticated {
                token,
                extensions: first.extensions,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair as _, RsaKeyPair};

    const NOW_S: i64 = 1_800_000_000;
    const NOW_MS: i64 = NOW_S * 1000;

    fn b64(bytes: &[u8]) -> String {
        B64URL.encode(bytes)
    }

    fn es256_key() -> EcdsaKeyPair {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap()
    }

    /// A test-only RSA key (made with `openssl genpkey`; ring cannot generate RSA keys).
    fn rs256_key() -> RsaKeyPair {
        use rustls_pki_types::pem::PemObject;
        let pem = include_bytes!("testdata/oauth_rs256_test_key.pem");
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem).unwrap();
        RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap()
    }

    fn es256(key: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }

    fn rs256(key: &RsaKeyPair, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut sig = vec![0u8; key.public().modulus_len()];
        key.sign(
            &signature::RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .unwrap();
        format!("{input}.{}", b64(&sig))
    }

    fn claims() -> Value {
        serde_json::json!({
            "sub": "alice", "iat": NOW_S - 10, "exp": NOW_S + 3600,
            "aud": ["rafka", "other"], "iss": "https://issuer.example",
        })
    }

    fn jwk_of(key: &EcdsaKeyPair, kid: &str) -> Value {
        let point = key.public_key().as_ref();
        serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        })
    }

    fn config_with(dir: &Path, jwks: &Value) -> BrokerConfig {
        let path = dir.join("jwks.json");
        std::fs::write(&path, jwks.to_string()).unwrap();
        BrokerConfig {
            sasl_oauthbearer_jwks_endpoint_url: Some(format!("file://{}", path.display())),
            sasl_oauthbearer_expected_audience: vec!["rafka".into()],
            sasl_oauthbearer_expected_issuer: Some("https://issuer.example".into()),
            ..BrokerConfig::default()
        }
    }

    #[test]
    fn es256_from_jwks_and_the_claim_checks() {
        let dir = tempfile::tempdir().unwrap();
        let key = es256_key();
        let other = es256_key();
        let cfg = config_with(
            dir.path(),
            &serde_json::json!({"keys": [jwk_of(&other, "k0"), jwk_of(&key, "k1"),
                {"kty": "oct", "k": "c2VjcmV0"}, {"kty": "EC", "crv": "P-256", "use": "enc", "x": "", "y": ""}]}),
        );
        let v = Validator::from_config(&cfg).unwrap();
        assert_eq!(v.keys.len(), 2);
        let header = serde_json::json!({"alg": "ES256", "kid": "k1", "typ": "JWT"});
        let token = es256(&key, &header, &claims());
        assert_eq!(
            v.validate(&token, NOW_MS),
            Ok(ValidToken {
                principal: "alice".into(),
                expires_at_ms: (NOW_S + 3600) * 1000
            })
        );
        // Without a kid every key is tried.
        let token = es256(&key, &serde_json::json!({"alg": "ES256"}), &claims());
        assert!(v.validate(&token, NOW_MS).is_ok());

        let with = |f: &dyn Fn(&mut Map<String, Value>)| {
            let mut c = claims();
            f(c.as_object_mut().unwrap());
            es256(&key, &header, &c)
        };
        // Expired, beyond the 30 s clock skew; within it, still valid.
        let t = with(&|c| {
            c.insert("exp".into(), (NOW_S - 31).into());
        });
        assert!(matches!(
            v.validate(&t, NOW_MS),
            Err(TokenError::Expired { .. })
        ));
        let t = with(&|c| {
            c.insert("exp".into(), (NOW_S - 29).into());
        });
        assert!(v.validate(&t, NOW_MS).is_ok());
        // Not yet valid.
        let t = with(&|c| {
            c.insert("nbf".into(), (NOW_S + 31).into());
        });
        assert!(matches!(
            v.validate(&t, NOW_MS),
            Err(TokenError::NotYetValid { .. })
        ));
        let t = with(&|c| {
            c.insert("nbf".into(), (NOW_S + 29).into());
        });
        assert!(v.validate(&t, NOW_MS).is_ok());
        // Audience: a string or a list; a wrong or missing one is refused.
        let t = with(&|c| {
            c.insert("aud".into(), "rafka".into());
        });
        assert!(v.validate(&t, NOW_MS).is_ok());
        let t = with(&|c| {
            c.insert("aud".into(), "someone-else".into());
        });
        assert!(matches!(
            v.validate(&t, NOW_MS),
            Err(TokenError::Audience { .. })
        ));
        let t = with(&|c| {
            c.remove("aud");
        });
        assert!(matches!(
            v.validate(&t, NOW_MS),
            Err(TokenError::Audience { .. })
        ));
        // Issuer.
        let t = with(&|c| {
            c.insert("iss".into(), "https://evil.example".into());
        });
        assert!(matches!(
            v.validate(&t, NOW_MS),
            Err(TokenError::Issuer { .. })
        ));
        // Required claims.
        for claim in ["exp", "iat", "sub"] {
            let t = with(&|c| {
                c.remove(claim);
            });
            assert_eq!(
                v.validate(&t, NOW_MS),
                Err(TokenError::MissingClaim(claim.into()))
            );
        }
        // Signed by a key the JWKS has, but under the other key's kid.
        let t = es256(&other, &header, &claims());
        assert_eq!(v.validate(&t, NOW_MS), Err(TokenError::BadSignature));
        // A kid the JWKS does not have.
        let t = es256(
            &key,
            &serde_json::json!({"alg": "ES256", "kid": "k9"}),
            &claims(),
        );
        assert_eq!(
            v.validate(&t, NOW_MS),
            Err(TokenError::UnknownKeyId("k9".into()))
        );
        // A changed payload under the original signature.
        let good = es256(&key, &header, &claims());
        let mut parts: Vec<&str> = good.split('.').collect();
        let mut forged = claims();
        forged["sub"] = "admin".into();
        let forged = b64(forged.to_string().as_bytes());
        parts[1] = &forged;
        assert_eq!(
            v.validate(&parts.join("."), NOW_MS),
            Err(TokenError::BadSignature)
        );
        // An algorithm it does not verify (HS256 would let a public key act as a secret).
        let t = es256(
            &key,
            &serde_json::json!({"alg": "HS256", "kid": "k1"}),
            &claims(),
        );
        assert_eq!(
            v.validate(&t, NOW_MS),
            Err(TokenError::UnsupportedAlgorithm("HS256".into()))
        );
        // The principal from another claim.
        let cfg = BrokerConfig {
            sasl_oauthbearer_sub_claim_name: "client_id".into(),
            ..cfg
        };
        let v = Validator::from_config(&cfg).unwrap();
        let t = with(&|c| {
            c.insert("client_id".into(), "svc-7".into());
        });
        assert_eq!(v.validate(&t, NOW_MS).unwrap().principal, "svc-7");
    }

    #[test]
    fn rs256_from_a_pem_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("pub.pem");
        std::fs::write(&pem, include_bytes!("testdata/oauth_rs256_test_pub.pem")).unwrap();
        let cfg = BrokerConfig {
            sasl_oauthbearer_public_key_files: vec![pem.clone()],
            ..BrokerConfig::default()
        };
        let v = Validator::from_config(&cfg).unwrap();
        let key = rs256_key();
        let header = serde_json::json!({"alg": "RS256", "kid": "any"});
        let token = rs256(&key, &header, &claims());
        assert_eq!(v.validate(&token, NOW_MS).unwrap().principal, "alice");
        // The same key does not verify an ES256 claim, nor a different signature.
        let other = es256(
            &es256_key(),
            &serde_json::json!({"alg": "ES256"}),
            &claims(),
        );
        assert_eq!(v.validate(&other, NOW_MS), Err(TokenError::BadSignature));
        // The EC public key of a PEM file, and a bad file.
        let ec = es256_key();
        let spki = {
            // SubjectPublicKeyInfo for P-256: the fixed prefix, then the point.
            let mut d = vec![
                0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
                0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
            ];
            d.extend_from_slice(ec.public_key().as_ref());
            d
        };
        let ec_pem = dir.path().join("ec.pem");
        std::fs::write(
            &ec_pem,
            format!(
                "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
                base64::engine::general_purpose::STANDARD.encode(&spki)
            ),
        )
        .unwrap();
        let cfg = BrokerConfig {
            sasl_oauthbearer_public_key_files: vec![pem, ec_pem],
            ..BrokerConfig::default()
        };
        let v = Validator::from_config(&cfg).unwrap();
        let t = es256(&ec, &serde_json::json!({"alg": "ES256"}), &claims());
        assert!(v.validate(&t, NOW_MS).is_ok());
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a key").unwrap();
        let cfg = BrokerConfig {
            sasl_oauthbearer_public_key_files: vec![bad],
            ..BrokerConfig::default()
        };
        let e = Validator::from_config(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("sasl_oauthbearer_public_key_files") && e.contains("bad.pem"),
            "{e}"
        );
        let cfg = BrokerConfig {
            sasl_oauthbearer_jwks_endpoint_url: Some("https://idp.example/jwks".into()),
            ..BrokerConfig::default()
        };
        let e = Validator::from_config(&cfg).unwrap_err().to_string();
        assert!(e.contains("only file: URLs"), "{e}");
    }

    #[test]
    fn key_rotation_through_the_cell() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (es256_key(), es256_key());
        let cfg = config_with(
            dir.path(),
            &serde_json::json!({"keys": [jwk_of(&old, "k1")]}),
        );
        let cell = ValidatorCell::new(&cfg).unwrap();
        let header = serde_json::json!({"alg": "ES256", "kid": "k2"});
        let token = es256(&new, &header, &claims());
        assert_eq!(
            cell.get().validate(&token, NOW_MS),
            Err(TokenError::UnknownKeyId("k2".into()))
        );
        assert_eq!(cell.reload_if_changed(), crate::tls::Reload::Unchanged);
        let jwks = dir.path().join("jwks.json");
        // A broken file: the old keys stay.
        std::fs::write(&jwks, "{").unwrap();
        assert!(matches!(
            cell.reload_if_changed(),
            crate::tls::Reload::Failed(e) if e.contains("jwks.json")
        ));
        assert_eq!(cell.reload_if_changed(), crate::tls::Reload::Unchanged);
        let t_old = es256(
            &old,
            &serde_json::json!({"alg": "ES256", "kid": "k1"}),
            &claims(),
        );
        assert!(cell.get().validate(&t_old, NOW_MS).is_ok());
        // The rotated set: the new key verifies, the old one is gone.
        let rotated = serde_json::json!({"keys": [jwk_of(&new, "k2")]});
        std::fs::write(&jwks, rotated.to_string()).unwrap();
        assert_eq!(cell.reload_if_changed(), crate::tls::Reload::Reloaded);
        assert!(cell.get().validate(&token, NOW_MS).is_ok());
        assert_eq!(
            cell.get().validate(&t_old, NOW_MS),
            Err(TokenError::UnknownKeyId("k1".into()))
        );
    }

    fn unsecured(claims: &Value) -> String {
        format!(
            "{}.{}.",
            b64(br#"{"alg":"none"}"#),
            b64(claims.to_string().as_bytes())
        )
    }

    #[test]
    fn unsecured_tokens_only_when_enabled() {
        let token = unsecured(&serde_json::json!({"sub": "dev", "exp": NOW_S + 60}));
        let off = Validator::from_config(&BrokerConfig::default()).unwrap();
        assert!(!off.can_validate());
        assert_eq!(off.validate(&token, NOW_MS), Err(TokenError::Unsecured));
        let on = Validator::from_config(&BrokerConfig {
            sasl_oauthbearer_unsecured_validator_enable: true,
            ..BrokerConfig::default()
        })
        .unwrap();
        assert_eq!(on.validate(&token, NOW_MS).unwrap().principal, "dev");
        // Still checked: expiry, and an empty signature.
        let old = unsecured(&serde_json::json!({"sub": "dev", "exp": NOW_S - 60}));
        assert!(matches!(
            on.validate(&old, NOW_MS),
            Err(TokenError::Expired { .. })
        ));
        assert!(matches!(
            on.validate(&format!("{token}c2ln"), NOW_MS),
            Err(TokenError::Malformed(_))
        ));
        // A signed token with no key configured.
        let signed = es256(
            &es256_key(),
            &serde_json::json!({"alg": "ES256"}),
            &claims(),
        );
        assert_eq!(on.validate(&signed, NOW_MS), Err(TokenError::NoKeys));
    }

    #[test]
    fn client_first_message() {
        let m = parse_client_first(b"n,,\x01auth=Bearer abc.def-_.g\x01\x01").unwrap();
        assert_eq!(m.token, "abc.def-_.g");
        assert_eq!(m.authzid, "");
        assert!(m.extensions.is_empty());
        let m = parse_client_first(
            b"n,a=us=2Cer=3D,\x01host=broker\x01auth=bearer   tok\x01traceId=x y\x01\x01",
        )
        .unwrap();
        assert_eq!(m.authzid, "us,er=");
        assert_eq!(m.token, "tok");
        assert_eq!(
            m.extensions,
            vec![
                ("host".into(), "broker".into()),
                ("traceId".into(), "x y".into())
            ]
        );
        let bad = "Invalid OAUTHBEARER client first message";
        for msg in [
            &b""[..],
            b"y,,\x01auth=Bearer t\x01\x01",
            b"n,\x01auth=Bearer t\x01\x01",
            b"n,,auth=Bearer t\x01\x01",
            b"n,,\x01auth=Bearer t\x01",
            b"n,,\x01auth=Bearer t",
            b"n,,\x01au th=Bearer t\x01\x01",
            b"n,,\x01k=\x01auth=Bearer t\x01\x01",
            b"n,a=x=2,\x01auth=Bearer t\x01\x01",
            b"n,,\x01auth=Bearer t\x00\x01\x01",
        ] {
            assert_eq!(parse_client_first(msg), Err(bad.to_string()), "{msg:?}");
        }
        assert_eq!(
            parse_client_first(b"n,,\x01host=x\x01\x01"),
            Err(format!("{bad}: 'auth' not specified"))
        );
        assert_eq!(
            parse_client_first(b"n,,\x01auth=Bearer a b\x01\x01"),
            Err(format!("{bad}: invalid 'auth' format"))
        );
        assert_eq!(
            parse_client_first(b"n,,\x01auth=Basic abc\x01\x01"),
            Err(format!("{bad}: invalid scheme"))
        );
    }

    #[test]
    fn exchange_answers_as_kafka() {
        let v = Validator::from_config(&BrokerConfig {
            sasl_oauthbearer_unsecured_validator_enable: true,
            ..BrokerConfig::default()
        })
        .unwrap();
        let token = unsecured(&serde_json::json!({"sub": "dev", "exp": NOW_S + 60}));
        let msg = format!("n,,\x01auth=Bearer {token}\x01\x01");
        let mut s = OAuthBearerServer::default();
        assert_eq!(
            s.evaluate(msg.as_bytes(), &v, NOW_MS),
            Outcome::Authenticated {
                token: ValidToken {
                    principal: "dev".into(),
                    expires_at_ms: (NOW_S + 60) * 1000
                },
                extensions: vec![]
            }
        );
        // An expired token: the JSON challenge, then failure with it as the message.
        let mut s = OAuthBearerServer::default();
        let Outcome::Challenge { challenge, reason } =
            s.evaluate(msg.as_bytes(), &v, (NOW_S + 120) * 1000)
        else {
            panic!("challenge expected")
        };
        assert_eq!(challenge, br#"{"status":"invalid_token"}"#);
        assert!(matches!(reason, TokenError::Expired { .. }));
        let Outcome::Failed { message, .. } = s.evaluate(b"\x01", &v, NOW_MS) else {
            panic!("failure expected")
        };
        assert_eq!(message, INVALID_TOKEN);
        // An authorization id other than the principal.
        let msg = format!("n,a=root,\x01auth=Bearer {token}\x01\x01");
        let Outcome::Failed { message, .. } =
            OAuthBearerServer::default().evaluate(msg.as_bytes(), &v, NOW_MS)
        else {
            panic!("failure expected")
        };
        assert!(
            message.contains("(root)") && message.contains("(dev)"),
            "{message}"
        );
        // A lone 0x01 without a challenge before it is a malformed message.
        assert!(matches!(
            OAuthBearerServer::default().evaluate(b"\x01", &v, NOW_MS),
            Outcome::Failed { .. }
        ));
    }

    proptest::proptest! {
        /// Any bytes as a client message, or any text as a token: an answer, never a panic.
        #[test]
        fn never_panics(msg in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
                        token in "[A-Za-z0-9_.=-]{0,200}") {
            let v = Validator::from_config(&BrokerConfig {
                sasl_oauthbearer_unsecured_validator_enable: true,
                ..BrokerConfig::default()
            })
            .unwrap();
            let _ = OAuthBearerServer::default().evaluate(&msg, &v, NOW_MS);
            let _ = v.validate(&token, NOW_MS);
            let framed = format!("n,,\x01auth=Bearer {token}\x01\x01");
            let _ = OAuthBearerServer::default().evaluate(framed.as_bytes(), &v, NOW_MS);
        }

        /// Well-formed tokens with any JSON-ish claims: validated or refused, never a panic.
        #[test]
        fn any_claims_never_panic(sub in proptest::option::of("\\PC{0,10}"),
                                  exp in proptest::option::of(proptest::num::i64::ANY),
                                  nbf in proptest::option::of(proptest::num::f64::ANY),
                                  aud in proptest::option::of("\\PC{0,10}")) {
            let v = Validator::from_config(&BrokerConfig {
                sasl_oauthbearer_unsecured_validator_enable: true,
                sasl_oauthbearer_expected_audience: vec!["x".into()],
                ..BrokerConfig::default()
            })
            .unwrap();
            let mut c = Map::new();
            if let Some(s) = sub { c.insert("sub".into(), s.into()); }
            if let Some(e) = exp { c.insert("exp".into(), e.into()); }
            if let Some(n) = nbf { c.insert("nbf".into(), serde_json::json!(n)); }
            if let Some(a) = aud { c.insert("aud".into(), a.into()); }
            let _ = v.validate(&unsecured(&Value::Object(c)), NOW_MS);
        }
    }
}
