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
fn a_storage_type_missing_from_the_build_is_refused_with_the_way_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let serve = |engine: &str| {
        run(&[
            "serve",
            "--listen",
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
