//! The `rafka` client commands against a broker process whose only listener is `SSL`,
//! configured the way Kafka's tools are: `--command-config client.properties` with
//! `security.protocol`, `ssl.ca.location` and `bootstrap.servers`. Topic creation, 1,000
//! lines produced and consumed back exactly, an unknown key reported and ignored, the same
//! commands refused without the file, and `rafka user create|list|delete` over the wire.

use crate::support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// Runs the binary with `input` on stdin; (success, stdout, stderr).
fn rafka(args: &[&str], input: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_rafka"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rafka");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("rafka exits");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A CA (written to `ca.pem`) and a server certificate for 127.0.0.1 signed by it
/// (`server.pem`, `server.key`).
fn write_pki(dir: &Path) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "cli test CA");
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = p.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

#[test]
fn client_commands_over_ssl_with_a_command_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_pki(d);
    let config = d.join("broker.yaml");
    std::fs::write(
        &config,
        format!(
            "broker:\n  listeners:\n    - name: SECURE\n      listen: 127.0.0.1:0\n      \
             security_protocol: SSL\n      ssl:\n        certificate: {}\n        key: {}\n",
            d.join("server.pem").display(),
            d.join("server.key").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rafka"))
        .args(["serve", "--admin-listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(d.join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn rafka");
    let (_, address) = support::startup_line(&mut child);
    let _broker = support::BrokerProcess { child, address };
    let addr = _broker.address.clone();

    let props = d.join("client.properties");
    std::fs::write(
        &props,
        format!(
            "# as for kafka-topics.sh --command-config\nbootstrap.servers={addr}\n\
             security.protocol=SSL\nssl.ca.location = {}\nacks=all\n",
            d.join("ca.pem").display()
        ),
    )
    .unwrap();
    let cc = props.to_str().unwrap();

    let (ok, out, err) = rafka(
        &[
            "topic",
            "create",
            "tls-cli",
            "--partitions",
            "1",
            "--command-config",
            cc,
        ],
        "",
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "created topic tls-cli");
    assert!(
        err.contains("'acks'") && err.contains("isn't a known config"),
        "{err}"
    );

    let lines: Vec<String> = (0..1000).map(|i| format!("k{i}:value {i}")).collect();
    let (ok, _, err) = rafka(
        &[
            "produce",
            "tls-cli",
            "--key-separator",
            ":",
            "--command-config",
            cc,
        ],
        &(lines.join("\n") + "\n"),
    );
    assert!(ok, "{err}");
    let (ok, out, err) = rafka(
        &[
            "consume",
            "tls-cli",
            "--from-beginning",
            "--count",
            "1000",
            "--command-config",
            cc,
        ],
        "",
    );
    assert!(ok, "{err}");
    let got: Vec<&str> = out.lines().collect();
    let want: Vec<String> = (0..1000).map(|i| format!("value {i}")).collect();
    assert_eq!(got, want);

    // Without the file: a plaintext client on the TLS port, refused within a bound.
    let started = Instant::now();
    let (ok, _, err) = rafka(
        &[
            "topic",
            "list",
            "--bootstrap",
            &addr,
            "--timeout-ms",
            "3000",
        ],
        "",
    );
    assert!(!ok);
    assert!(err.contains("cannot reach"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));

    // SCRAM users over the same connection settings.
    let (ok, out, err) = rafka(
        &["user", "create", "alice", "--command-config", cc],
        "s3cret\n",
    );
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "set SCRAM-SHA-256 credential of user alice (4096 iterations)",
            "set SCRAM-SHA-512 credential of user alice (4096 iterations)",
        ]
    );
    let (ok, _, err) = rafka(
        &[
            "user",
            "create",
            "bob",
            "--password",
            "pw",
            "--mechanism",
            "SCRAM-SHA-512",
            "--iterations",
            "8192",
            "--command-config",
            cc,
        ],
        "",
    );
    assert!(ok, "{err}");
    let (ok, out, err) = rafka(&["user", "list", "--command-config", cc], "");
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "alice\tSCRAM-SHA-256 (4096 iterations), SCRAM-SHA-512 (4096 iterations)\n\
         bob\tSCRAM-SHA-512 (8192 iterations)\n"
    );
    // Kafka's bound on iterations, from the broker.
    let (ok, _, err) = rafka(
        &[
            "user",
            "create",
            "carol",
            "--password",
            "pw",
            "--iterations",
            "100",
            "--command-config",
            cc,
        ],
        "",
    );
    assert!(!ok);
    assert!(err.contains("UnacceptableCredential"), "{err}");

    let (ok, out, err) = rafka(&["user", "delete", "alice", "--command-config", cc], "");
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    let (ok, out, err) = rafka(
        &["user", "list", "--format", "json", "--command-config", cc],
        "",
    );
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        r#"{"credentials":[{"iterations":8192,"mechanism":"SCRAM-SHA-512"}],"user":"bob"}"#
    );
    let (ok, _, err) = rafka(&["user", "list", "alice", "--command-config", cc], "");
    assert!(!ok);
    assert!(err.contains("ResourceNotFound"), "{err}");
}

/// Whether librdkafka authenticating as `user` (SCRAM-SHA-512 over SASL_SSL) gets
/// Metadata from `addr` within 5 s.
fn librdkafka_served(addr: &str, ca: &Path, user: &str, password: &str) -> bool {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = support::client_config(addr)
        .set("security.protocol", "sasl_ssl")
        .set("ssl.ca.location", ca.to_str().unwrap())
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", user)
        .set("sasl.password", password)
        .create()
        .unwrap();
    consumer
        .fetch_metadata(None, Duration::from_secs(5))
        .is_ok()
}

#[test]
fn users_created_and_deleted_with_the_cli_over_sasl_ssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_pki(d);
    let config = d.join("broker.yaml");
    std::fs::write(
        &config,
        format!(
            "broker:\n  sasl_enabled_mechanisms: [SCRAM-SHA-512, PLAIN]\n  scram_users:\n    \
             - name: admin\n      password: admin-secret\n  listeners:\n    - name: SECURE\n      \
             listen: 127.0.0.1:0\n      security_protocol: SASL_SSL\n      ssl:\n        \
             certificate: {}\n        key: {}\n",
            d.join("server.pem").display(),
            d.join("server.key").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rafka"))
        .args(["serve", "--admin-listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(d.join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn rafka");
    let (_, address) = support::startup_line(&mut child);
    let broker = support::BrokerProcess { child, address };
    let addr = broker.address.clone();
    let ca = d.join("ca.pem");

    // The admin's properties as a Java client writes them (sasl.jaas.config).
    let props = d.join("admin.properties");
    std::fs::write(
        &props,
        format!(
            "bootstrap.servers={addr}\nsecurity.protocol=SASL_SSL\nssl.ca.location={}\n\
             sasl.mechanism=SCRAM-SHA-512\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\\n  \
             username=\"admin\" password=\"admin-secret\";\n",
            ca.display()
        ),
    )
    .unwrap();
    let cc = props.to_str().unwrap();

    assert!(!librdkafka_served(&addr, &ca, "carol", "carol-pw"));
    let (ok, _, err) = rafka(
        &[
            "user",
            "create",
            "carol",
            "--mechanism",
            "scram-sha-512",
            "--command-config",
            cc,
        ],
        "carol-pw\n",
    );
    assert!(ok, "{err}");
    assert!(librdkafka_served(&addr, &ca, "carol", "carol-pw"));
    assert!(!librdkafka_served(&addr, &ca, "carol", "wrong"));

    // The CLI itself as carol, with PLAIN, through sasl.username/sasl.password.
    let carol = d.join("carol.properties");
    std::fs::write(
        &carol,
        format!(
            "bootstrap.servers={addr}\nsecurity.protocol=SASL_SSL\nssl.ca.location={}\n\
             sasl.mechanism=PLAIN\nsasl.username=carol\nsasl.password=carol-pw\n",
            ca.display()
        ),
    )
    .unwrap();
    let (ok, out, err) = rafka(
        &["user", "list", "--command-config", carol.to_str().unwrap()],
        "",
    );
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "admin\tSCRAM-SHA-256 (4096 iterations), SCRAM-SHA-512 (4096 iterations)\n\
         carol\tSCRAM-SHA-512 (4096 iterations)\n"
    );

    let (ok, _, err) = rafka(&["user", "delete", "carol", "--command-config", cc], "");
    assert!(ok, "{err}");
    assert!(!librdkafka_served(&addr, &ca, "carol", "carol-pw"));
    // A refused login is one line with the broker's reason, at once.
    let started = Instant::now();
    let (ok, _, err) = rafka(
        &["topic", "list", "--command-config", carol.to_str().unwrap()],
        "",
    );
    assert!(!ok);
    assert!(
        err.contains("authentication to") && err.contains("SaslAuthenticationFailed"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}
