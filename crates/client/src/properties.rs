//! Kafka's client properties files (`--command-config client.properties`), read the way
//! Kafka's tools read them (`java.util.Properties.load`): `key=value`, `key: value` or
//! `key value`; `#` and `!` comment lines; a line ending in an odd number of backslashes
//! continues on the next; escapes `\t`, `\n`, `\r`, `\f`, `\uXXXX`, and `\` before any
//! other character stands for that character. A later key replaces an earlier one.
//!
//! [`ClientConfig::apply_properties`] maps the keys onto a [`ClientConfig`].

use std::path::PathBuf;
use std::time::Duration;

use crate::client::ClientConfig;
use crate::error::ClientError;
use crate::security::{SaslConfig, SaslMechanism, SecurityProtocol};

/// Largest properties file read; a client config is a few hundred bytes.
pub const PROPERTIES_BYTES_MAX: usize = 1024 * 1024;

/// A properties file that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertiesError {
    /// A `\u` escape without four hex digits (Java refuses it too).
    #[error("line {line}: malformed \\uXXXX escape")]
    BadUnicodeEscape {
        /// 1-based line number.
        line: usize,
    },
    /// Over [`PROPERTIES_BYTES_MAX`].
    #[error("{0} bytes is over the {PROPERTIES_BYTES_MAX}-byte limit of a properties file")]
    TooLarge(usize),
}

/// Parses properties text into `(key, value)` pairs in file order, each key once (its last
/// value, at the place it first appeared).
pub fn parse(text: &str) -> Result<Vec<(String, String)>, PropertiesError> {
    if text.len() > PROPERTIES_BYTES_MAX {
        return Err(PropertiesError::TooLarge(text.len()));
    }
    let mut out: Vec<(String, String)> = Vec::new();
    let mut lines = text.split('\n').enumerate();
    while let Some((n, first)) = lines.next() {
        let first = first.strip_suffix('\r').unwrap_or(first);
        let trimmed = first.trim_start_matches([' ', '\t', '\x0c']);
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
            continue;
        }
        // Join continuation lines: an odd number of trailing backslashes.
        let mut logical = String::from(trimmed);
        while ends_with_odd_backslashes(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => {
                    let next = next.strip_suffix('\r').unwrap_or(next);
                    logical.push_str(next.trim_start_matches([' ', '\t', '\x0c']));
                }
                None => break,
            }
        }
        let (key, value) = split_entry(&logical, n + 1)?;
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => out.push((key, value)),
        }
    }
    Ok(out)
}

fn ends_with_odd_backslashes(s: &str) -> bool {
    s.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// Splits one logical line into its unescaped key and value.
fn split_entry(line: &str, number: usize) -> Result<(String, String), PropertiesError> {
    let mut chars = line.chars().peekable();
    let mut key = String::new();
    let mut separator_seen = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => key.extend(unescape(&mut chars, number)?),
            '=' | ':' => {
                separator_seen = true;
                break;
            }
            ' ' | '\t' | '\x0c' => break,
            c => key.push(c),
        }
    }
    // Whitespace, then at most one `=` or `:` (if the key ended at whitespace), then
    // whitespace again, all belong to the separator.
    while matches!(chars.peek(), Some(' ' | '\t' | '\x0c')) {
        chars.next();
    }
    if !separator_seen && matches!(chars.peek(), Some('=' | ':')) {
        chars.next();
        while matches!(chars.peek(), Some(' ' | '\t' | '\x0c')) {
            chars.next();
        }
    }
    let mut value = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => value.extend(unescape(&mut chars, number)?),
            c => value.push(c),
        }
    }
    Ok((key, value))
}

/// The character an escape stands for; `None` for a lone backslash at the very end of the
/// file, which Java drops.
fn unescape(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    line: usize,
) -> Result<Option<char>, PropertiesError> {
    Ok(Some(match chars.next() {
        Some('t') => '\t',
        Some('n') => '\n',
        Some('r') => '\r',
        Some('f') => '\x0c',
        Some('u') => {
            let mut code = 0u32;
            for _ in 0..4 {
                let d = chars
                    .next()
                    .and_then(|c| c.to_digit(16))
                    .ok_or(PropertiesError::BadUnicodeEscape { line })?;
                code = code * 16 + d;
            }
            // A lone surrogate half cannot be a Rust char; Java would keep it as a UTF-16
            // unit. It has no place in a client config: replace it.
            char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER)
        }
        Some(c) => c,
        None => return Ok(None),
    }))
}

/// Reads `sasl.jaas.config` as the Java client writes it:
/// `org.apache.kafka.common.security.scram.ScramLoginModule required username="alice"
/// password="secret";` — only the `username` and `password` options matter here.
fn jaas_credentials(jaas: &str) -> Option<(String, String)> {
    let mut user = None;
    let mut pass = None;
    let mut rest = jaas;
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq]
            .rsplit(|c: char| c.is_whitespace())
            .next()
            .unwrap_or("");
        let after = rest[eq + 1..].trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let mut v = String::new();
            let mut it = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = it.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = it.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            (v, &quoted[end.min(quoted.len())..])
        } else {
            let end = after
                .find(|c: char| c.is_whitespace() || c == ';')
                .unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        match name {
            "username" => user = Some(value),
            "password" => pass = Some(value),
            _ => {}
        }
        rest = tail;
    }
    Some((user?, pass?))
}

fn millis(key: &str, v: &str) -> Result<Duration, ClientError> {
    v.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| ClientError::Invalid(format!("{key} must be a number of ms, got {v:?}")))
}

impl ClientConfig {
    /// Applies Kafka client properties (see [`parse`]): `bootstrap.servers`, `client.id`,
    /// `request.timeout.ms`, `retries`, `retry.backoff.ms`, `retry.backoff.max.ms`,
    /// `metadata.max.age.ms`, `security.protocol`, `ssl.ca.location` (or Java's
    /// `ssl.truststore.location` with `ssl.truststore.type=PEM`), `ssl.certificate.location`,
    /// `ssl.key.location`, `ssl.endpoint.identification.algorithm`, `sasl.mechanism`
    /// (librdkafka's `sasl.mechanisms` too), `sasl.username`, `sasl.password` and Java's
    /// `sasl.jaas.config`. Returns the keys it does not know, which the caller reports as
    /// Kafka's tools do ("supplied but isn't a known config") and otherwise ignores.
    pub fn apply_properties(
        &mut self,
        props: &[(String, String)],
    ) -> Result<Vec<String>, ClientError> {
        let mut unknown = Vec::new();
        let get = |k: &str| props.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let (mut mechanism, mut username, mut password) = (None, None, None);
        if let Some(s) = &self.security.sasl {
            mechanism = Some(s.mechanism.name().to_string());
            username = Some(s.username.clone());
            password = Some(s.password.clone());
        }
        let mut sasl_touched = false;
        for (key, value) in props {
            let path = || Some(PathBuf::from(value.trim()));
            match key.as_str() {
                "bootstrap.servers" => self.bootstrap = ClientConfig::new(value).bootstrap,
                "client.id" => self.client_id = value.clone(),
                "request.timeout.ms" => self.request_timeout = millis(key, value)?,
                "retry.backoff.ms" => self.retry_backoff = millis(key, value)?,
                "retry.backoff.max.ms" => self.retry_backoff_max = millis(key, value)?,
                "metadata.max.age.ms" => self.metadata_max_age = millis(key, value)?,
                "retries" => {
                    self.retries = value.trim().parse().map_err(|_| {
                        ClientError::Invalid(format!("retries must be a number, got {value:?}"))
                    })?
                }
                "security.protocol" => {
                    self.security.protocol =
                        SecurityProtocol::from_name(value).ok_or_else(|| {
                            ClientError::Invalid(format!(
                                "security.protocol must be PLAINTEXT, SSL, SASL_PLAINTEXT or \
                                 SASL_SSL, got {value:?}"
                            ))
                        })?
                }
                "ssl.ca.location" => self.security.tls.ca_location = path(),
                "ssl.truststore.location" => {
                    let pem = get("ssl.truststore.type")
                        .is_some_and(|t| t.trim().eq_ignore_ascii_case("PEM"));
                    if !pem {
                        return Err(ClientError::Invalid(
                            "ssl.truststore.location is read only with ssl.truststore.type=PEM \
                             (JKS and PKCS12 stores are not); or give the CA as PEM in \
                             ssl.ca.location"
                                .into(),
                        ));
                    }
                    self.security.tls.ca_location = path();
                }
                "ssl.truststore.type" => {}
                "ssl.certificate.location" => self.security.tls.certificate_location = path(),
                "ssl.key.location" => self.security.tls.key_location = path(),
                "ssl.endpoint.identification.algorithm" => {
                    self.security.tls.endpoint_identification =
                        match value.trim().to_ascii_lowercase().as_str() {
                            "https" => true,
                            "" | "none" => false,
                            _ => {
                                return Err(ClientError::Invalid(format!(
                                    "ssl.endpoint.identification.algorithm must be https or \
                                     empty, got {value:?}"
                                )))
                            }
                        }
                }
                "sasl.mechanism" | "sasl.mechanisms" => {
                    sasl_touched = true;
                    mechanism = Some(value.trim().to_string());
                }
                "sasl.username" => {
                    sasl_touched = true;
                    username = Some(value.clone());
                }
                "sasl.password" => {
                    sasl_touched = true;
                    password = Some(value.clone());
                }
                "sasl.jaas.config" => {
                    sasl_touched = true;
                    let (u, p) = jaas_credentials(value).ok_or_else(|| {
                        ClientError::Invalid(
                            "sasl.jaas.config needs username=\"...\" and password=\"...\"".into(),
                        )
                    })?;
                    username = Some(u);
                    password = Some(p);
                }
                _ => unknown.push(key.clone()),
            }
        }
        if sasl_touched {
            let mechanism =
                match mechanism {
                    Some(m) => SaslMechanism::from_name(&m).ok_or_else(|| {
                        ClientError::Invalid(format!(
                        "sasl.mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got {m:?}"
                    ))
                    })?,
                    None => return Err(ClientError::Invalid(
                        "sasl.mechanism is not set (Kafka's default, GSSAPI, is not supported): \
                         PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                            .into(),
                    )),
                };
            let (Some(username), Some(password)) = (username, password) else {
                return Err(ClientError::Invalid(
                    "SASL needs sasl.username and sasl.password (or sasl.jaas.config)".into(),
                ));
            };
            self.security.sasl = Some(SaslConfig {
                mechanism,
                username,
                password,
            });
        }
        Ok(unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(text: &str, want: &[(&str, &str)]) {
        let got = parse(text).unwrap();
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want, "{text:?}");
    }

    #[test]
    fn java_properties_syntax() {
        check("a=b\n", &[("a", "b")]);
        check("a = b \n", &[("a", "b ")]);
        check("a:b\r\nc d\n", &[("a", "b"), ("c", "d")]);
        check("  # comment\n! also\n\n\t\nk=v", &[("k", "v")]);
        check("k=v1\nk=v2\n", &[("k", "v2")]);
        check(
            "key\\ with\\=odd\\:chars = x",
            &[("key with=odd:chars", "x")],
        );
        check(
            "k=line one \\\n    continued\n",
            &[("k", "line one continued")],
        );
        check(
            "k=ends in a backslash\\\\\nj=2",
            &[("k", "ends in a backslash\\"), ("j", "2")],
        );
        check("k=\\u00e9t\\u00E9\\tx", &[("k", "été\tx")]);
        check("k", &[("k", "")]);
        check("k =", &[("k", "")]);
        check("k  :  v=w", &[("k", "v=w")]);
        check("k=a#b", &[("k", "a#b")]);
        check(
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\\n  username=\"alice\" password=\"s3cr=t\";",
            &[(
                "sasl.jaas.config",
                "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"alice\" password=\"s3cr=t\";",
            )],
        );
        assert_eq!(
            parse("k=\\u00zz"),
            Err(PropertiesError::BadUnicodeEscape { line: 1 })
        );
    }

    fn props(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap()
    }

    #[test]
    fn client_keys() {
        let mut c = ClientConfig::new("x:1");
        let unknown = c
            .apply_properties(&props(
                "bootstrap.servers=a:1,b:2\nsecurity.protocol=sasl_ssl\nssl.ca.location=/ca.pem\n\
                 ssl.endpoint.identification.algorithm=\nsasl.mechanism=SCRAM-SHA-512\n\
                 sasl.username=alice\nsasl.password=secret\nacks=all\nrequest.timeout.ms=1500\n",
            ))
            .unwrap();
        assert_eq!(unknown, vec!["acks".to_string()]);
        assert_eq!(c.bootstrap, vec!["a:1".to_string(), "b:2".to_string()]);
        assert_eq!(c.security.protocol, SecurityProtocol::SaslSsl);
        assert_eq!(c.security.tls.ca_location, Some(PathBuf::from("/ca.pem")));
        assert!(!c.security.tls.endpoint_identification);
        assert_eq!(c.request_timeout, Duration::from_millis(1500));
        let s = c.security.sasl.unwrap();
        assert_eq!(
            (s.mechanism, s.username.as_str(), s.password.as_str()),
            (SaslMechanism::ScramSha512, "alice", "secret")
        );

        let mut c = ClientConfig::new("x:1");
        c.apply_properties(&props(
            "sasl.mechanism=PLAIN\nsasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"bob\" password=\"p\\\\\\\"w\";\n",
        ))
        .unwrap();
        let s = c.security.sasl.unwrap();
        assert_eq!((s.username.as_str(), s.password.as_str()), ("bob", "p\"w"));

        for bad in [
            "security.protocol=TLS",
            "sasl.username=a\nsasl.password=b",
            "sasl.mechanism=GSSAPI\nsasl.username=a\nsasl.password=b",
            "sasl.mechanism=PLAIN\nsasl.username=a",
            "ssl.truststore.location=/x.jks",
            "ssl.endpoint.identification.algorithm=dns",
            "request.timeout.ms=soon",
        ] {
            let r = ClientConfig::new("x:1").apply_properties(&props(bad));
            assert!(matches!(r, Err(ClientError::Invalid(_))), "{bad}: {r:?}");
        }
        let mut c = ClientConfig::new("x:1");
        c.apply_properties(&props(
            "ssl.truststore.type=PEM\nssl.truststore.location=/t.pem",
        ))
        .unwrap();
        assert_eq!(c.security.tls.ca_location, Some(PathBuf::from("/t.pem")));
    }

    fn escape(s: &str, key: bool) -> String {
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\x0c' => out.push_str("\\f"),
                // As Java's Properties.store escapes them, in keys and values alike.
                '=' | ':' | '#' | '!' => out.push_str(&format!("\\{c}")),
                ' ' if key || i == 0 => out.push_str("\\ "),
                c => out.push(c),
            }
        }
        out
    }

    proptest! {
        // The mirror of the parser's refusals: every well-formed file (any keys and values,
        // escaped as Java's Properties.store escapes them, with any separator style,
        // comments, blank lines and continuations) parses to exactly its entries.
        #[test]
        fn every_well_formed_file_parses(
            entries in proptest::collection::btree_map("[^\u{0}]{1,12}", "[^\u{0}]{0,20}", 0..8),
            seps in proptest::collection::vec(0usize..5, 8),
            comments in proptest::collection::vec(proptest::option::of("[#!][^\n\r]{0,10}"), 8),
            split in proptest::collection::vec(proptest::option::of(0usize..20), 8),
        ) {
            let mut text = String::new();
            for (i, (k, v)) in entries.iter().enumerate() {
                if let Some(c) = &comments[i] {
                    text.push_str(c);
                    text.push('\n');
                }
                let sep = ["=", ":", " ", " = ", "\t:  "][seps[i]];
                let mut value = escape(v, false);
                if let Some(at) = split[i] {
                    // A continuation at a char boundary not inside an escape.
                    // (Not before whitespace, which the continuation line drops.)
                    if let Some(pos) = value.char_indices().map(|(p, _)| p).nth(at) {
                        let rest_starts_blank = value[pos..].starts_with([' ', '\t', '\x0c']);
                        if !ends_with_odd_backslashes(&value[..pos]) && !rest_starts_blank {
                            value = format!("{}\\\n   {}", &value[..pos], &value[pos..]);
                        }
                    }
                }
                text.push_str(&format!("{}{sep}{value}\n", escape(k, true)));
            }
            let want: Vec<(String, String)> = entries.into_iter().collect();
            let mut got = parse(&text).unwrap();
            got.sort();
            prop_assert_eq!(got, want, "{:?}", text);
        }

        #[test]
        fn no_panic_on_any_text(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }
    }
}
