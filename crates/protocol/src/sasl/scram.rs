//! SCRAM (RFC 5802) with SHA-256 and SHA-512 (RFC 7677), as Kafka uses it: no channel
//! binding, the user name as the SASL name (`=2C`/`=3D` escaping), extensions read past.
//!
//! A server stores a [`ScramCredential`]: the salt, the iteration count and two keys
//! derived from the salted password, never the password. [`ScramServer`] and
//! [`ScramClient`] are the two halves of the three-message exchange.

use std::fmt;
use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::{digest, hmac, pbkdf2};

use super::{text, SaslError};

/// The fewest iterations Kafka accepts for a stored credential (RFC 7677's minimum).
pub const MIN_ITERATIONS: u32 = 4096;
/// The most iterations Kafka accepts in AlterUserScramCredentials.
pub const MAX_ITERATIONS: u32 = 16384;
/// The most iterations Rafka's client computes when a server asks, bounding its CPU.
pub const MAX_CLIENT_ITERATIONS: u32 = 1 << 20;

/// A SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScramMechanism {
    /// `SCRAM-SHA-256`.
    Sha256,
    /// `SCRAM-SHA-512`.
    Sha512,
}

impl ScramMechanism {
    /// Both mechanisms, in Kafka's type order.
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism of a SASL mechanism name (exact, as Kafka compares them).
    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        ScramMechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The `mechanism` field of Describe/AlterUserScramCredentials (0 is UNKNOWN).
    pub fn kafka_type(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    /// The mechanism of a Describe/AlterUserScramCredentials `mechanism` field.
    pub fn from_kafka_type(t: i8) -> Option<ScramMechanism> {
        ScramMechanism::ALL
            .into_iter()
            .find(|m| m.kafka_type() == t)
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            ScramMechanism::Sha256 => hmac::HMAC_SHA256,
            ScramMechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            ScramMechanism::Sha256 => &digest::SHA256,
            ScramMechanism::Sha512 => &digest::SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            ScramMechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramMechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    /// Output length of the hash, in bytes.
    pub fn hash_len(self) -> usize {
        self.digest().output_len()
    }

    fn mac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac(), key), data)
            .as_ref()
            .to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest(), data).as_ref().to_vec()
    }
}

impl fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `Hi(password, salt, i)`: the salted password (PBKDF2 with the mechanism's HMAC). An
/// iteration count of 0 is taken as 1.
pub fn salted_password(
    mech: ScramMechanism,
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    let mut out = vec![0u8; mech.hash_len()];
    let n = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(mech.pbkdf2(), n, salt, password.as_bytes(), &mut out);
    out
}

/// What a server stores for one user and mechanism.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    /// The mechanism the keys belong to.
    pub mechanism: ScramMechanism,
    /// The salt the password was salted with.
    pub salt: Vec<u8>,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
    /// The iteration count of the salting.
    pub iterations: u32,
}

impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// The credential of a password.
    pub fn from_password(
        mech: ScramMechanism,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> ScramCredential {
        let salted = salted_password(mech, password, salt, iterations);
        ScramCredential::from_salted_password(mech, salt, &salted, iterations)
    }

    /// The credential of a salted password (what AlterUserScramCredentials carries).
    pub fn from_salted_password(
        mech: ScramMechanism,
        salt: &[u8],
        salted_password: &[u8],
        iterations: u32,
    ) -> ScramCredential {
        let client_key = mech.mac(salted_password, b"Client Key");
        ScramCredential {
            mechanism: mech,
            salt: salt.to_vec(),
            stored_key: mech.hash(&client_key),
            server_key: mech.mac(salted_password, b"Server Key"),
            iterations,
        }
    }

    /// Whether `password` is the password this credential was made from (what `PLAIN`
    /// checks against a stored SCRAM credential). Compares in constant time.
    pub fn verify_password(&self, password: &str) -> bool {
        let other =
            ScramCredential::from_password(self.mechanism, password, &self.salt, self.iterations);
        ct_eq(&other.stored_key, &self.stored_key)
    }
}

/// Equal in time independent of where the slices differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A SASL name with `,` and `=` escaped (RFC 5802 `saslname`).
fn escape_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// The user name of a `saslname`; `=` must start `=2C` or `=3D`.
fn unescape_name(name: &str) -> Result<String, SaslError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3);
        match esc {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(SaslError::Malformed("bad escape in the user name".into())),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A nonce is printable ASCII without `,` (RFC 5802 `printable`).
fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// The value of attribute `key` (`key=value`), or a malformed error naming it.
fn attr(part: Option<&str>, key: char) -> Result<&str, SaslError> {
    part.and_then(|p| p.strip_prefix(key))
        .and_then(|p| p.strip_prefix('='))
        .ok_or_else(|| SaslError::Malformed(format!("expected the `{key}=` attribute")))
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn unb64(s: &str, what: &str) -> Result<Vec<u8>, SaslError> {
    B64.decode(s)
        .map_err(|_| SaslError::Malformed(format!("{what} is not base64")))
}

/// The client-first message split into its parts.
struct ClientFirst {
    gs2_header: String,
    bare: String,
    username: String,
    nonce: String,
}

fn parse_client_first(s: &str) -> Result<ClientFirst, SaslError> {
    // gs2-header: cbind flag, authzid, then the bare message.
    let mut it = s.splitn(3, ',');
    let flag = it.next().unwrap_or_default();
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => {
            return Err(SaslError::Malformed(
                "channel binding is not supported".into(),
            ))
        }
        _ => return Err(SaslError::Malformed("bad GS2 channel-binding flag".into())),
    }
    let authzid = match it.next() {
        Some("") => None,
        Some(a) => Some(unescape_name(attr(Some(a), 'a')?)?),
        None => return Err(SaslError::Malformed("missing GS2 header".into())),
    };
    let bare = it
        .next()
        .ok_or_else(|| SaslError::Malformed("missing client-first-message-bare".into()))?;
    let gs2_header = s[..s.len() - bare.len()].to_string();
    let mut parts = bare.split(',');
    let first = parts.next();
    if first.is_some_and(|p| p.starts_with("m=")) {
        return Err(SaslError::Malformed(
            "mandatory extensions are not supported".into(),
        ));
    }
    let username = unescape_name(attr(first, 'n')?)?;
    let nonce = attr(parts.next(), 'r')?.to_string();
    // Extensions (Kafka's `tokenauth=true` and others) are read past.
    if username.is_empty() {
        return Err(SaslError::Malformed("empty user name".into()));
    }
    if !valid_nonce(&nonce) {
        return Err(SaslError::Malformed("bad client nonce".into()));
    }
    if authzid.is_some_and(|a| a != username) {
        return Err(SaslError::Malformed(
            "authorization id differs from the user name".into(),
        ));
    }
    Ok(ClientFirst {
        gs2_header,
        bare: bare.to_string(),
        username,
        nonce,
    })
}

enum ServerState {
    Start,
    SentFirst {
        cred: ScramCredential,
        username: String,
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Done {
        username: String,
    },
    Failed,
}

/// The server half of a SCRAM exchange: client-first in, server-first out; client-final
/// in, server-final out. Any error leaves it failed.
pub struct ScramServer {
    mechanism: ScramMechanism,
    server_nonce: String,
    state: ServerState,
}

impl ScramServer {
    /// A server for `mechanism`, which will append `server_nonce` (printable, no `,`; the
    /// caller draws it from a secure random source) to the client's nonce.
    pub fn new(mechanism: ScramMechanism, server_nonce: String) -> ScramServer {
        ScramServer {
            mechanism,
            server_nonce,
            state: ServerState::Start,
        }
    }

    /// The mechanism this exchange runs.
    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// Takes the client-first message; `lookup` gives the stored credential of the user it
    /// names. Returns the server-first message.
    pub fn client_first(
        &mut self,
        msg: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, SaslError> {
        if !matches!(self.state, ServerState::Start) {
            self.state = ServerState::Failed;
            return Err(SaslError::OutOfOrder);
        }
        self.state = ServerState::Failed;
        let first = parse_client_first(text(msg)?)?;
        if !valid_nonce(&self.server_nonce) {
            return Err(SaslError::Malformed("bad server nonce".into()));
        }
        let cred = lookup(&first.username).ok_or(SaslError::UnknownUser)?;
        if cred.mechanism != self.mechanism {
            return Err(SaslError::UnknownUser);
        }
        let nonce = format!("{}{}", first.nonce, self.server_nonce);
        let server_first = format!("r={nonce},s={},i={}", b64(&cred.salt), cred.iterations);
        let out = server_first.clone().into_bytes();
        self.state = ServerState::SentFirst {
            cred,
            username: first.username,
            gs2_header: first.gs2_header,
            client_first_bare: first.bare,
            server_first,
            nonce,
        };
        Ok(out)
    }

    /// Takes the client-final message and checks its proof. Returns the server-final
    /// message (`v=` and the server signature).
    pub fn client_final(&mut self, msg: &[u8]) -> Result<Vec<u8>, SaslError> {
        let state = std::mem::replace(&mut self.state, ServerState::Failed);
        let ServerState::SentFirst {
            cred,
            username,
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
        } = state
        else {
            return Err(SaslError::OutOfOrder);
        };
        let s = text(msg)?;
        let idx = s
            .rfind(",p=")
            .ok_or_else(|| SaslError::Malformed("missing the client proof".into()))?;
        let without_proof = &s[..idx];
        let proof = unb64(&s[idx + 3..], "the client proof")?;
        let mut parts = without_proof.split(',');
        let binding = unb64(attr(parts.next(), 'c')?, "the channel binding")?;
        if binding != gs2_header.as_bytes() {
            return Err(SaslError::Malformed(
                "channel binding differs from the GS2 header".into(),
            ));
        }
        // Kafka's rule (ScramSaslServer): the client's nonce must *end with* the one the
        // server sent. librdkafka before 1.x (Debian's kcat) sends its own nonce again in
        // front of it; the proof covers the message as sent, so nothing is weakened.
        if !attr(parts.next(), 'r')?.ends_with(nonce.as_str()) {
            return Err(SaslError::Malformed("nonce mismatch".into()));
        }
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let mech = self.mechanism;
        let client_signature = mech.mac(&cred.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(SaslError::BadCredentials);
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        if !ct_eq(&mech.hash(&client_key), &cred.stored_key) {
            return Err(SaslError::BadCredentials);
        }
        let server_signature = mech.mac(&cred.server_key, auth_message.as_bytes());
        self.state = ServerState::Done { username };
        Ok(format!("v={}", b64(&server_signature)).into_bytes())
    }

    /// The authenticated user, once [`ScramServer::client_final`] succeeded.
    pub fn username(&self) -> Option<&str> {
        match &self.state {
            ServerState::Done { username } => Some(username),
            _ => None,
        }
    }
}

impl fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramServer")
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
}

/// The client half of a SCRAM exchange.
pub struct ScramClient {
    mechanism: ScramMechanism,
    username: String,
    password: String,
    client_nonce: String,
    expected_server_signature: Option<Vec<u8>>,
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// A client authenticating `username` with `password`; `client_nonce` is printable
    /// ASCII without `,`, drawn by the caller from a secure random source.
    pub fn new(
        mechanism: ScramMechanism,
        username: &str,
        password: &str,
        client_nonce: String,
    ) -> ScramClient {
        ScramClient {
            mechanism,
            username: username.to_string(),
            password: password.to_string(),
            client_nonce,
            expected_server_signature: None,
        }
    }

    fn client_first_bare(&self) -> String {
        format!("n={},r={}", escape_name(&self.username), self.client_nonce)
    }

    /// The client-first message.
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare()).into_bytes()
    }

    /// Takes the server-first message; returns the client-final message with the proof.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, SaslError> {
        let (mech, password) = (self.mechanism, self.password.clone());
        self.client_final_salted(server_first, |salt, iterations| {
            salted_password(mech, &password, salt, iterations)
        })
    }

    /// [`ScramClient::client_final`] with the salting handed to `salted(salt, iterations)`,
    /// so a client opening many connections can salt its password once per salt and
    /// iteration count (the salting is the exchange's whole cost on the client side).
    pub fn client_final_salted(
        &mut self,
        server_first: &[u8],
        salted: impl FnOnce(&[u8], u32) -> Vec<u8>,
    ) -> Result<Vec<u8>, SaslError> {
        let sf = text(server_first)?;
        let mut parts = sf.split(',');
        let first = parts.next();
        if first.is_some_and(|p| p.starts_with("m=")) {
            return Err(SaslError::Malformed(
                "mandatory extensions are not supported".into(),
            ));
        }
        let nonce = attr(first, 'r')?;
        if !nonce.starts_with(&self.client_nonce)
            || nonce.len() <= self.client_nonce.len()
            || !valid_nonce(nonce)
        {
            return Err(SaslError::Malformed(
                "server nonce does not extend ours".into(),
            ));
        }
        let salt = unb64(attr(parts.next(), 's')?, "the salt")?;
        let iterations: u32 = attr(parts.next(), 'i')?
            .parse()
            .map_err(|_| SaslError::Malformed("bad iteration count".into()))?;
        if !(MIN_ITERATIONS..=MAX_CLIENT_ITERATIONS).contains(&iterations) {
            return Err(SaslError::IterationsOutOfRange(iterations));
        }
        let mech = self.mechanism;
        let salted = salted(&salt, iterations);
        let client_key = mech.mac(&salted, b"Client Key");
        let stored_key = mech.hash(&client_key);
        let without_proof = format!("c={},r={nonce}", b64(b"n,,"));
        let auth_message = format!("{},{sf},{without_proof}", self.client_first_bare());
        let client_signature = mech.mac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = mech.mac(&salted, b"Server Key");
        self.expected_server_signature = Some(mech.mac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", b64(&proof)).into_bytes())
    }

    /// Checks the server-final message: the server proved it holds the credential.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), SaslError> {
        let s = text(server_final)?;
        if let Some(e) = s.strip_prefix("e=") {
            return Err(SaslError::ServerNotVerified(e.to_string()));
        }
        let Some(expected) = &self.expected_server_signature else {
            return Err(SaslError::OutOfOrder);
        };
        let v = s.split(',').next();
        let sig = unb64(attr(v, 'v')?, "the server signature")?;
        if ct_eq(&sig, expected) {
            Ok(())
        } else {
            Err(SaslError::ServerNotVerified(
                "server signature does not match".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // RFC 7677 section 3's example exchange (user "user", password "pencil").
    const RFC_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const RFC_SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_credential() -> ScramCredential {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        ScramCredential::from_password(ScramMechanism::Sha256, "pencil", &salt, 4096)
    }

    #[test]
    fn client_matches_rfc_7677() {
        let mut c = ScramClient::new(
            ScramMechanism::Sha256,
            "user",
            "pencil",
            RFC_CLIENT_NONCE.into(),
        );
        assert_eq!(c.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let fin = c.client_final(RFC_SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(std::str::from_utf8(&fin).unwrap(), RFC_CLIENT_FINAL);
        c.verify_server_final(RFC_SERVER_FINAL.as_bytes()).unwrap();
        assert!(c.verify_server_final(b"v=AAAA").is_err());
        assert_eq!(
            c.verify_server_final(b"e=invalid-proof"),
            Err(SaslError::ServerNotVerified("invalid-proof".into()))
        );
    }

    #[test]
    fn a_cached_salting_gives_the_same_proof() {
        let mut c = ScramClient::new(
            ScramMechanism::Sha256,
            "user",
            "pencil",
            RFC_CLIENT_NONCE.into(),
        );
        let salted = salted_password(
            ScramMechanism::Sha256,
            "pencil",
            &B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap(),
            4096,
        );
        let fin = c
            .client_final_salted(RFC_SERVER_FIRST.as_bytes(), |_, i| {
                assert_eq!(i, 4096);
                salted.clone()
            })
            .unwrap();
        assert_eq!(std::str::from_utf8(&fin).unwrap(), RFC_CLIENT_FINAL);
    }

    #[test]
    fn server_matches_rfc_7677() {
        let mut s = ScramServer::new(ScramMechanism::Sha256, RFC_SERVER_NONCE.into());
        let sf = s
            .client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", |u| {
                (u == "user").then(rfc_credential)
            })
            .unwrap();
        assert_eq!(std::str::from_utf8(&sf).unwrap(), RFC_SERVER_FIRST);
        let fin = s.client_final(RFC_CLIENT_FINAL.as_bytes()).unwrap();
        assert_eq!(std::str::from_utf8(&fin).unwrap(), RFC_SERVER_FINAL);
        assert_eq!(s.username(), Some("user"));
    }

    fn exchange(
        mech: ScramMechanism,
        stored_password: &str,
        client_password: &str,
        user: &str,
    ) -> Result<String, SaslError> {
        let cred = ScramCredential::from_password(mech, stored_password, b"salty", 4096);
        let mut c = ScramClient::new(mech, user, client_password, "cnonce".into());
        let mut s = ScramServer::new(mech, "snonce".into());
        let sf = s.client_first(&c.client_first(), |u| (u == user).then(|| cred.clone()))?;
        let cf = c.client_final(&sf)?;
        let fin = s.client_final(&cf)?;
        c.verify_server_final(&fin)?;
        Ok(s.username().unwrap().to_string())
    }

    #[test]
    fn both_mechanisms_authenticate_and_refuse_a_wrong_password() {
        for mech in ScramMechanism::ALL {
            assert_eq!(exchange(mech, "pw", "pw", "alice").unwrap(), "alice");
            assert_eq!(
                exchange(mech, "pw", "wrong", "alice"),
                Err(SaslError::BadCredentials)
            );
        }
        // Names with the escaped characters survive the round trip.
        assert_eq!(
            exchange(ScramMechanism::Sha512, "pw", "pw", "a,b=c").unwrap(),
            "a,b=c"
        );
    }

    #[test]
    fn a_client_final_nonce_ending_with_the_servers_is_accepted_as_kafka_does() {
        // Old librdkafka: `r=` + its own nonce + the whole server nonce.
        let mech = ScramMechanism::Sha256;
        let cred = ScramCredential::from_password(mech, "pw", b"salty", 4096);
        let mut s = ScramServer::new(mech, "snonce".into());
        let bare = "n=alice,r=cnonce";
        let sf = s
            .client_first(format!("n,,{bare}").as_bytes(), |_| Some(cred.clone()))
            .unwrap();
        let sf = String::from_utf8(sf).unwrap();
        let without_proof = "c=biws,r=cnoncecnoncesnonce";
        let salted = salted_password(mech, "pw", b"salty", 4096);
        let client_key = mech.mac(&salted, b"Client Key");
        let sig = mech.mac(
            &mech.hash(&client_key),
            format!("{bare},{sf},{without_proof}").as_bytes(),
        );
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(k, s)| k ^ s).collect();
        let fin = s
            .client_final(format!("{without_proof},p={}", b64(&proof)).as_bytes())
            .unwrap();
        assert!(fin.starts_with(b"v="));
        assert_eq!(s.username(), Some("alice"));
        // A nonce that does not end with the server's is still refused.
        let mut s = ScramServer::new(mech, "snonce".into());
        s.client_first(format!("n,,{bare}").as_bytes(), |_| Some(cred.clone()))
            .unwrap();
        assert_eq!(
            s.client_final(format!("c=biws,r=cnoncesnonceX,p={}", b64(&proof)).as_bytes()),
            Err(SaslError::Malformed("nonce mismatch".into()))
        );
    }

    #[test]
    fn unknown_user_and_wrong_mechanism_are_refused_at_client_first() {
        let mut s = ScramServer::new(ScramMechanism::Sha512, "n".into());
        assert_eq!(
            s.client_first(b"n,,n=bob,r=x", |_| None),
            Err(SaslError::UnknownUser)
        );
        let mut s = ScramServer::new(ScramMechanism::Sha512, "n".into());
        assert_eq!(
            s.client_first(b"n,,n=bob,r=x", |_| Some(rfc_credential())),
            Err(SaslError::UnknownUser)
        );
    }

    #[test]
    fn malformed_and_out_of_order_messages_are_refused() {
        for bad in [
            &b""[..],
            b"n",
            b"p=tls-unique,,n=u,r=x",
            b"x,,n=u,r=x",
            b"n,,m=ext,n=u,r=x",
            b"n,,n=,r=x",
            b"n,,n=u=,r=x",
            b"n,,n=u,r=",
            b"n,,n=u,r=a b",
            b"n,a=other,n=u,r=x",
        ] {
            let mut s = ScramServer::new(ScramMechanism::Sha256, "n".into());
            assert!(
                matches!(
                    s.client_first(bad, |_| Some(rfc_credential())),
                    Err(SaslError::Malformed(_))
                ),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut s = ScramServer::new(ScramMechanism::Sha256, "n".into());
        assert_eq!(
            s.client_final(b"c=biws,r=x,p=AA=="),
            Err(SaslError::OutOfOrder)
        );
        // After a failure nothing further is accepted.
        assert_eq!(
            s.client_first(b"n,,n=user,r=x", |_| Some(rfc_credential())),
            Err(SaslError::OutOfOrder)
        );
        // A nonce that is not ours, and a binding that is not the header, are refused.
        let mut s = ScramServer::new(ScramMechanism::Sha256, RFC_SERVER_NONCE.into());
        s.client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", |_| {
            Some(rfc_credential())
        })
        .unwrap();
        assert!(s
            .client_final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO,p=AA==")
            .is_err());
        let mut s = ScramServer::new(ScramMechanism::Sha256, RFC_SERVER_NONCE.into());
        s.client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", |_| {
            Some(rfc_credential())
        })
        .unwrap();
        let swapped = RFC_CLIENT_FINAL.replace("c=biws", "c=eSws");
        assert!(s.client_final(swapped.as_bytes()).is_err());
    }

    #[test]
    fn client_refuses_a_weak_or_costly_iteration_count_and_a_foreign_nonce() {
        let mut c = ScramClient::new(ScramMechanism::Sha256, "u", "p", "abc".into());
        assert_eq!(
            c.client_final(b"r=abcdef,s=AAAA,i=1000"),
            Err(SaslError::IterationsOutOfRange(1000))
        );
        assert!(matches!(
            c.client_final(b"r=abcdef,s=AAAA,i=4294967295"),
            Err(SaslError::IterationsOutOfRange(_))
        ));
        assert!(c.client_final(b"r=xyz,s=AAAA,i=4096").is_err());
        assert!(c.client_final(b"r=abc,s=AAAA,i=4096").is_err());
    }

    #[test]
    fn plain_passwords_check_against_stored_credentials() {
        let cred = ScramCredential::from_password(ScramMechanism::Sha512, "pw", b"s", 4096);
        assert!(cred.verify_password("pw"));
        assert!(!cred.verify_password("pW"));
        assert!(!format!("{cred:?}").contains("stored_key"));
    }

    #[test]
    fn kafka_mechanism_numbers_and_names_round_trip() {
        for m in ScramMechanism::ALL {
            assert_eq!(ScramMechanism::from_kafka_type(m.kafka_type()), Some(m));
            assert_eq!(ScramMechanism::from_name(m.name()), Some(m));
        }
        assert_eq!(ScramMechanism::from_kafka_type(0), None);
        assert_eq!(ScramMechanism::from_name("scram-sha-256"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn every_user_and_password_authenticates(
            user in "[^\u{0}]{1,24}",
            pass in ".{0,24}",
            sha512 in any::<bool>(),
        ) {
            let mech = if sha512 { ScramMechanism::Sha512 } else { ScramMechanism::Sha256 };
            prop_assert_eq!(exchange(mech, &pass, &pass, &user).unwrap(), user);
        }

        #[test]
        fn arbitrary_messages_never_panic(
            a in proptest::collection::vec(any::<u8>(), 0..128),
            b in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            let mut s = ScramServer::new(ScramMechanism::Sha256, "n".into());
            let _ = s.client_first(&a, |_| Some(rfc_credential()));
            let _ = s.client_final(&b);
            let mut c = ScramClient::new(ScramMechanism::Sha256, "u", "p", "n".into());
            let _ = c.client_final(&a);
            let _ = c.verify_server_final(&b);
        }
    }
}
