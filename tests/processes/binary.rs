//! The `rafka` binary as a user runs it: bad flags and config values stop the start with a
//! message naming the problem; SIGTERM shuts down cleanly.

use crate::support;

use std::process::Command;
use std::time::Duration;

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rafka"))
        .args(args)
        .output()
        .expect("run rafka");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn bad_flags_and_config_values_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let (ok, err) = run(&["serve", "--listen", "not-an-address", "--data-dir", data]);
    assert!(!ok);
    assert!(err.contains("broker.listen"), "{err}");
    let (ok, err) = run(&["--bogus"]);
    assert!(!ok);
    assert!(err.contains("unknown argument \"--bogus\""), "{err}");
    let (ok, err) = run(&["--listen"]);
    assert!(!ok);
    assert!(err.contains("--listen needs a value"), "{err}");

    let cfg = dir.path().join("bad.yaml");
    std::fs::write(&cfg, "broker:\n  num_partitions: 0\n").unwrap();
    let (ok, err) = run(&["--config", cfg.to_str().unwrap(), "--data-dir", data]);
    assert!(!ok);
    assert!(err.contains("broker.num_partitions"), "{err}");
    std::fs::write(&cfg, "storage:\n  storage_typ: log\n").unwrap();
    let (ok, err) = run(&["--config", cfg.to_str().unwrap(), "--data-dir", data]);
    assert!(!ok);
    assert!(err.contains("storage_typ"), "{err}");
    let (ok, err) = run(&["--config", "/nonexistent/rafka.yaml"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/rafka.yaml"), "{err}");
    // Listeners: SASL_SSL without `ssl:` and an unknown SASL mechanism are refused; --listen
    // cannot override a listeners list; an SSL
    // listener's unreadable certificate is named before any port is bound.
    let listeners = "broker:\n  listeners:\n    - name: EXT\n      listen: 127.0.0.1:0\n";
    std::fs::write(
        &cfg,
        format!("{listeners}      security_protocol: SASL_SSL\n"),
    )
    .unwrap();
    let (ok, err) = run(&["--config", cfg.to_str().unwrap(), "--data-dir", data]);
    assert!(!ok);
    assert!(
        err.contains("broker.listeners") && err.contains("SASL_SSL needs `ssl:`"),
        "{err}"
    );
    std::fs::write(
        &cfg,
        format!("{listeners}      security_protocol: SASL_PLAINTEXT\n      sasl_enabled_mechanisms: [GSSAPI]\n"),
    )
    .unwrap();
    let (ok, err) = run(&["--config", cfg.to_str().unwrap(), "--data-dir", data]);
    assert!(!ok);
    assert!(err.contains("GSSAPI"), "{err}");
    std::fs::write(&cfg, listeners).unwrap();
    let (ok, err) = run(&["--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert!(!ok);
    assert!(err.contains("broker.listeners replaces"), "{err}");
    std::fs::write(
        &cfg,
        format!(
            "{listeners}      security_protocol: SSL\n      ssl:\n        certificate: /nonexistent/c.pem\n        key: /nonexistent/k.pem\n"
        ),
    )
    .unwrap();
    let (ok, err) = run(&["--config", cfg.to_str().unwrap(), "--data-dir", data]);
    assert!(!ok);
    assert!(
        err.contains("EXT") && err.contains("/nonexistent/c.pem"),
        "{err}"
    );
}

#[test]
fn a_storage_type_missing_from_the_build_is_refused_with_the_way_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // Its own ports: `rafka` alone reads config/config.yaml here (the repository root), whose
    // admin endpoint is 127.0.0.1:9644, taken when the user runs the README's broker.
    let serve = |engine: &str| {
        run(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
            data,
            "--storage-type",
            engine,
        ])
    };
    let (ok, err) = serve("tape");
    assert!(!ok);
    assert!(err.contains("known engines: log, memory, rocksdb"), "{err}");
    // With the feature, `rocksdb` would start and serve: only a default build refuses it.
    if cfg!(not(feature = "rocksdb")) {
        let (ok, err) = serve("rocksdb");
        assert!(!ok);
        assert!(err.contains("\"rocksdb\" is not in this build"), "{err}");
        assert!(err.contains("cargo build --features rocksdb"), "{err}");
        assert!(
            err.contains("apt-get install librocksdb-dev libclang-dev"),
            "{err}"
        );
        assert!(err.contains("or choose one of: log, memory"), "{err}");
    }
}

/// The whole configuration is checked before any port is bound: with both ports taken (as
/// when the README's broker runs beside the tests), a missing engine or a bad value is what
/// the user reads, not "address in use".
#[test]
fn config_problems_are_reported_before_ports_are_bound() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let kafka = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let kafka = kafka.local_addr().unwrap().to_string();
    let admin = admin.local_addr().unwrap().to_string();
    let serve = |extra: &[&str]| {
        let mut args = vec![
            "serve",
            "--listen",
            &kafka,
            "--admin-listen",
            &admin,
            "--data-dir",
            data,
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    // The taken ports alone: the bind error names the port.
    let (ok, err) = serve(&[]);
    assert!(!ok);
    assert!(err.contains("cannot listen on"), "{err}");
    assert!(err.contains("Address already in use"), "{err}");

    let (ok, err) = serve(&["--storage-type", "tape"]);
    assert!(!ok);
    assert!(err.contains("known engines: log, memory, rocksdb"), "{err}");
    assert!(!err.contains("cannot listen"), "{err}");
    if cfg!(not(feature = "rocksdb")) {
        let (ok, err) = serve(&["--storage-type", "rocksdb"]);
        assert!(!ok);
        assert!(err.contains("\"rocksdb\" is not in this build"), "{err}");
        assert!(!err.contains("cannot listen"), "{err}");
    }
    // A bad storage value (checked by the engine's own validation) and a bad hook entry.
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(&cfg, "storage:\n  log_segment_bytes: 10\n").unwrap();
    let (ok, err) = serve(&["--config", cfg.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("log_segment_bytes"), "{err}");
    assert!(!err.contains("cannot listen"), "{err}");
    std::fs::write(
        &cfg,
        "hooks:\n  - type: topic_policy\n    allowed: [\"orders-(\"]\n",
    )
    .unwrap();
    let (ok, err) = serve(&["--config", cfg.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("hooks[0] (topic_policy): bad topic pattern"),
        "{err}"
    );
    assert!(!err.contains("cannot listen"), "{err}");
}

#[test]
fn sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = support::BrokerProcess::start(dir.path());
    let pid = broker.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let code = broker
        .wait_exit(Duration::from_secs(15))
        .expect("rafka stops after SIGTERM");
    assert!(code.success(), "{code:?}");
    assert!(
        dir.path().join("clean-shutdown").exists(),
        "clean-shutdown marker written"
    );
}

/// `log.format: json` writes one JSON object per line, `log.level` applies when `RUST_LOG`
/// is unset, and the admin endpoint named in the startup line answers.
#[test]
fn json_logs_and_the_admin_endpoint() {
    use std::io::{Read, Write};
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rafka.yaml");
    std::fs::write(
        &cfg,
        format!(
            "broker:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nlog:\n  level: \"rafka_broker=info,warn\"\n  format: json\nstorage:\n  path: {}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rafka"))
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rafka");
    let (line, _) = support::startup_line(&mut child);
    let admin = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .and_then(|w| w.strip_suffix("/metrics)"))
        .unwrap_or_else(|| panic!("no admin address in {line:?}"))
        .to_string();
    assert!(
        !admin.ends_with(":9644"),
        "port 0 picked a free port: {admin}"
    );
    let mut s = std::net::TcpStream::connect(&admin).expect("connect to admin");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\n{\"status\":\"ready\"}"),
        "{answer}"
    );

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(child.wait().unwrap().success());
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l:?}")))
        .collect();
    let messages: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|e| Some((e["level"].as_str()?, e["fields"]["message"].as_str()?)))
        .collect();
    // The filter from log.level: info for rafka_broker, warn for everything else.
    assert!(
        messages.contains(&("INFO", "created topic")),
        "{messages:?}"
    );
    assert!(
        !messages
            .iter()
            .any(|m| *m == ("INFO", "opened log engine") || *m == ("INFO", "shutting down")),
        "rafka_storage and rafka log at warn only: {messages:?}"
    );
}

/// `/health/ready` answers 503 while the broker opens its partitions after a crash and 200
/// once the Kafka listener accepts; `/health/live` answers 200 throughout.
#[test]
fn readiness_waits_for_recovery() {
    use std::io::{Read, Write};
    use std::process::Stdio;
    use std::time::Instant;

    const PARTITIONS: i32 = 3000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let b = support::BrokerProcess::start(&data);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(support::create_topic(&b.address, "many", PARTITIONS, &[]));
        b.kill();
    }
    // A port for the admin endpoint known before the start-up line (which comes after
    // recovery): free now, taken by the broker a moment later.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_rafka"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", &admin])
        .arg("--data-dir")
        .arg(&data)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn rafka");
    // Killed when dropped, also when an assertion fails.
    let mut broker = support::BrokerProcess {
        child,
        address: String::new(),
    };
    let get = |path: &str| -> Option<(u16, String)> {
        let mut s = std::net::TcpStream::connect(&admin).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).ok()?;
        let status = answer.split(' ').nth(1)?.parse().ok()?;
        Some((status, answer.split_once("\r\n\r\n")?.1.to_string()))
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen: Vec<(u16, String)> = Vec::new();
    let mut live_while_recovering = None;
    loop {
        assert!(Instant::now() < deadline, "never ready; saw {seen:?}");
        if let Some(answer) = get("/health/ready") {
            if seen.last() != Some(&answer) {
                seen.push(answer.clone());
            }
            if answer.0 == 200 {
                break;
            }
            live_while_recovering.get_or_insert_with(|| get("/health/live"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        seen,
        [
            (503, "{\"status\":\"not_ready\"}".to_string()),
            (200, "{\"status\":\"ready\"}".to_string())
        ]
    );
    assert_eq!(
        live_while_recovering,
        Some(Some((200, "{\"status\":\"live\"}".to_string())))
    );
    let (line, _) = support::startup_line(&mut broker.child);
    let recovered: i32 = line
        .split(", ")
        .find_map(|p| p.strip_suffix(" partitions recovered"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no partition count in {line:?}"));
    assert!(recovered >= PARTITIONS, "{line}");
}
