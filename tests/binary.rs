//! The `rafka` binary as a user runs it: bad flags and config values stop the start with a
//! message naming the problem; SIGTERM shuts down cleanly.

mod support;

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
