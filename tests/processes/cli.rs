//! The `rafka` client commands used as a person would: a 100,000-line file produced and
//! consumed back, `topic describe` and `group describe` output, a wrong bootstrap address.

use crate::support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn rafka(args: &[&str]) -> (bool, String, String) {
    rafka_with_input(args, "")
}

/// Runs the binary with `input` on its stdin; (success, stdout, stderr).
fn rafka_with_input(args: &[&str], input: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_rafka"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rafka");
    // Dropping stdin after writing closes it: the child sees end of input.
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

#[test]
fn help_for_client_commands_and_bench() {
    let (ok, out, _) = rafka(&["bench", "produce", "--help"]);
    assert!(ok);
    assert!(out.contains("rafka bench produce|consume|e2e"), "{out}");
    let (ok, out, _) = rafka(&["topic", "-h"]);
    assert!(ok);
    assert!(out.contains("rafka topic create NAME"), "{out}");
}

#[test]
fn produce_a_file_and_consume_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::BrokerProcess::start(&dir.path().join("data"));
    let b = broker.address.as_str();
    let (ok, out, err) = rafka(&[
        "topic",
        "create",
        "lines",
        "--partitions",
        "1",
        "--config",
        "retention.ms=3600000",
        "--bootstrap",
        b,
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "created topic lines");

    let file = dir.path().join("lines.txt");
    let lines: Vec<String> = (0..100_000)
        .map(|i| format!("k{i}:line number {i}"))
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let (ok, _, err) = rafka(&[
        "produce",
        "lines",
        "--file",
        file.to_str().unwrap(),
        "--key-separator",
        ":",
        "--bootstrap",
        b,
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("produced 100000 records to lines"), "{err}");

    let (ok, out, err) = rafka(&[
        "consume",
        "lines",
        "--group",
        "readers",
        "--from-beginning",
        "--count",
        "100000",
        "--bootstrap",
        b,
    ]);
    assert!(ok, "{err}");
    let got: Vec<&str> = out.lines().collect();
    let want: Vec<String> = (0..100_000).map(|i| format!("line number {i}")).collect();
    assert_eq!(got.len(), want.len());
    assert!(
        got.iter().zip(&want).all(|(g, w)| g == w),
        "values in order"
    );

    let (ok, out, _) = rafka(&[
        "consume",
        "lines",
        "--from-beginning",
        "--count",
        "1",
        "--format",
        "json",
        "--bootstrap",
        b,
    ]);
    assert!(ok);
    assert!(out.starts_with("{\"partition\":0,\"offset\":0,"), "{out}");
    assert!(
        out.contains("\"key\":\"k0\",\"value\":\"line number 0\""),
        "{out}"
    );

    let (ok, out, _) = rafka(&["topic", "describe", "lines", "--bootstrap", b]);
    assert!(ok);
    assert!(out.contains("topic lines: 1 partitions"), "{out}");
    assert!(out.contains("0\t0\t0\t100000\t100000"), "{out}");
    assert!(
        out.contains("retention.ms=3600000  (set on topic)"),
        "{out}"
    );

    let (ok, out, _) = rafka(&["group", "describe", "readers", "--bootstrap", b]);
    assert!(ok);
    assert!(
        out.contains("lines\t0\t100000\t100000\t0"),
        "committed at the end, lag 0: {out}"
    );
    let (ok, out, _) = rafka(&["group", "list", "--bootstrap", b]);
    assert!(ok);
    assert!(out.contains("readers\tconsumer\tEmpty"), "{out}");

    let (ok, out, err) = rafka(&[
        "group",
        "reset-offsets",
        "readers",
        "--topic",
        "lines",
        "--to-offset",
        "99990",
        "--bootstrap",
        b,
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "lines\t0\t99990");
    let (ok, out, _) = rafka(&[
        "consume",
        "lines",
        "--group",
        "readers",
        "--count",
        "10",
        "--bootstrap",
        b,
    ]);
    assert!(ok);
    assert_eq!(out.lines().next(), Some("line number 99990"));
}

#[test]
fn produce_json_lines_and_read_them_back_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::BrokerProcess::start(&dir.path().join("data"));
    let b = broker.address.as_str();
    let (ok, _, err) = rafka(&[
        "topic",
        "create",
        "js",
        "--partitions",
        "2",
        "--bootstrap",
        b,
    ]);
    assert!(ok, "{err}");
    let input = concat!(
        r#"{"key":"a","value":"first","headers":{"src":"cli","n":"1"},"partition":1}"#,
        "\n",
        r#"{"value":{"nested":true},"partition":1}"#,
        "\n",
        r#"{"key":"c","value":null,"partition":0}"#,
        "\n"
    );
    let (ok, _, err) = rafka_with_input(
        &["produce", "js", "--format", "json", "--bootstrap", b],
        input,
    );
    assert!(ok, "{err}");
    assert!(err.contains("produced 3 records to js"), "{err}");
    let (ok, out, err) = rafka(&[
        "consume",
        "js",
        "--partition",
        "1",
        "--from-beginning",
        "--count",
        "2",
        "--format",
        "json",
        "--bootstrap",
        b,
    ]);
    assert!(ok, "{err}");
    let got: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["offset"], 0);
    assert_eq!(got[0]["key"], "a");
    assert_eq!(got[0]["value"], "first");
    assert_eq!(got[0]["headers"]["src"], "cli");
    assert_eq!(got[0]["headers"]["n"], "1");
    assert_eq!(got[1]["offset"], 1);
    assert_eq!(got[1]["key"], serde_json::Value::Null);
    assert_eq!(got[1]["value"], r#"{"nested":true}"#);
    let (ok, out, _) = rafka(&[
        "consume",
        "js",
        "--partition",
        "0",
        "--from-beginning",
        "--count",
        "1",
        "--format",
        "json",
        "--bootstrap",
        b,
    ]);
    assert!(ok);
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((r["key"].as_str(), r["value"].is_null()), (Some("c"), true));
    // A bad line stops the command with its line number, before anything after it is sent.
    let (ok, _, err) = rafka_with_input(
        &["produce", "js", "--format", "json", "--bootstrap", b],
        "{\"value\":\"ok\"}\n{\"value\":\"x\",\"oops\":1}\n",
    );
    assert!(!ok);
    assert!(
        err.contains("line 2") && err.contains("unknown field \"oops\""),
        "{err}"
    );
}

#[test]
fn a_wrong_bootstrap_fails_fast_with_a_clear_reason() {
    // A port nothing listens on: picked free, then released (no fixed port is assumed
    // closed; a user may run anything anywhere).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let started = Instant::now();
    let (ok, _, err) = rafka(&[
        "topic",
        "list",
        "--bootstrap",
        &closed,
        "--timeout-ms",
        "3000",
    ]);
    assert!(!ok);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        err.starts_with(&format!("rafka: cannot reach {closed}")),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let (ok, _, err) = rafka(&["topic", "frobnicate"]);
    assert!(!ok);
    assert!(err.contains("unknown topic command"), "{err}");
}

#[test]
fn bench_produce_consume_and_e2e_report_what_they_moved() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::BrokerProcess::start(&dir.path().join("data"));
    let b = broker.address.as_str();
    let json = |args: &[&str]| -> serde_json::Value {
        let (ok, out, err) = rafka(args);
        assert!(ok, "{args:?}: {err}");
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let p = json(&[
        "bench",
        "produce",
        "--topic",
        "perf",
        "--records",
        "2000",
        "--record-size",
        "200",
        "--partitions",
        "2",
        "--acks",
        "all",
        "--json",
        "--bootstrap",
        b,
    ]);
    assert_eq!(p["mode"], "produce");
    assert_eq!(p["records"], 2000);
    assert_eq!(p["bytes"], 400_000);
    let lat = &p["latency_ms"];
    assert!(lat["p50"].as_f64().unwrap() > 0.0, "{p}");
    assert!(
        lat["p50"].as_f64() <= lat["p99"].as_f64() && lat["p99"].as_f64() <= lat["max"].as_f64()
    );
    // The broker holds exactly what the benchmark says it sent.
    let (ok, out, _) = rafka(&["topic", "describe", "perf", "--bootstrap", b]);
    assert!(ok);
    assert!(out.contains("topic perf: 2 partitions"), "{out}");
    let ends: i64 = out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() >= 4 && f[0].parse::<i32>().is_ok()).then(|| f[3].parse::<i64>().unwrap())
        })
        .sum();
    assert_eq!(ends, 2000, "{out}");

    let c = json(&[
        "bench",
        "consume",
        "--topic",
        "perf",
        "--json",
        "--bootstrap",
        b,
    ]);
    assert_eq!(
        (c["records"].as_u64(), c["bytes"].as_u64()),
        (Some(2000), Some(400_000))
    );
    let (ok, _, err) = rafka(&[
        "bench",
        "consume",
        "--topic",
        "perf",
        "--records",
        "5000",
        "--bootstrap",
        b,
    ]);
    assert!(!ok && err.contains("holds 2000 records"), "{err}");

    let e = json(&[
        "bench",
        "e2e",
        "--topic",
        "lat",
        "--records",
        "500",
        "--record-size",
        "100",
        "--rate",
        "1000",
        "--linger-ms",
        "0",
        "--json",
        "--bootstrap",
        b,
    ]);
    assert_eq!(
        (e["records"].as_u64(), e["bytes"].as_u64()),
        (Some(500), Some(50_000))
    );
    // Paced at 1,000 records/s, 500 records take about half a second.
    assert!(e["seconds"].as_f64().unwrap() >= 0.45, "{e}");
    let lat = &e["latency_ms"];
    assert!(lat["max"].as_f64().unwrap() > 0.0 && lat["p50"].as_f64() <= lat["max"].as_f64());
}

/// The README's first example (`cargo run --example quickstart`) runs and round-trips its
/// three records. `cargo test` builds the examples beside the test binaries.
#[test]
fn the_quickstart_example_round_trips() {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let example = profile_dir
        .join("examples")
        .join(format!("quickstart{}", std::env::consts::EXE_SUFFIX));
    assert!(
        example.exists(),
        "{} is missing: `cargo test` builds the examples (a lone `--test processes` does not)",
        example.display()
    );
    let mut child = std::process::Command::new(&example)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("quickstart did not finish in 90 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..3 {
        assert!(
            stdout.contains(&format!("produced  key-{i} -> partition 0 offset {i}")),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!(
                "consumed  key-{i} -> \"hello #{i}\" (partition 0 offset {i})"
            )),
            "{stdout}"
        );
    }
    assert!(stdout.trim_end().ends_with("round trip ok"), "{stdout}");
}

/// `rafka transactions list|describe` and the producers in `rafka topic describe`, text
/// and JSON, against one open and one committed librdkafka transaction.
#[test]
fn transactions_and_producers_are_listed_and_described() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let dir = tempfile::tempdir().unwrap();
    let broker = support::BrokerProcess::start(&dir.path().join("data"));
    let b = broker.address.as_str();
    let (ok, _, err) = rafka(&[
        "topic",
        "create",
        "txcli",
        "--partitions",
        "2",
        "--bootstrap",
        b,
    ]);
    assert!(ok, "{err}");
    let t = Duration::from_secs(20);
    let txn = |id: &str| {
        let p: BaseProducer = support::client_config(b)
            .set("transactional.id", id)
            .set("linger.ms", "5")
            .create()
            .unwrap();
        p.init_transactions(t).unwrap();
        p.begin_transaction().unwrap();
        p
    };
    let send = |p: &BaseProducer, partition: i32, key: &str| {
        p.send(
            BaseRecord::to("txcli")
                .partition(partition)
                .key(key)
                .payload("v"),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    };
    // Left open: 3 records on partition 0 (offsets 0-2), 1 on partition 1 (offset 0).
    let open = txn("cli-open");
    for k in ["a", "b", "c"] {
        send(&open, 0, k);
    }
    send(&open, 1, "d");
    open.flush(t).unwrap();
    // Committed: 2 records on partition 1 (offsets 1-2).
    let done = txn("cli-done");
    send(&done, 1, "e");
    send(&done, 1, "f");
    done.commit_transaction(t).unwrap();

    // EndTxn is answered once PrepareCommit is logged; the coordinator reaches
    // CompleteCommit after the markers, a moment later on a loaded machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (out, list) = loop {
        let (ok, out, err) = rafka(&["transactions", "list", "--format", "json", "--bootstrap", b]);
        assert!(ok, "{err}");
        let list: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
        let settled = list
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] != "PrepareCommit");
        if settled || std::time::Instant::now() > deadline {
            break (out, list);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{out}");
    let pid = |id: &str| {
        list.iter()
            .find(|t| t["transactional_id"] == id)
            .unwrap_or_else(|| panic!("{id} in {out}"))["producer_id"]
            .as_i64()
            .unwrap()
    };
    let (open_pid, done_pid) = (pid("cli-open"), pid("cli-done"));
    assert_ne!(open_pid, done_pid);
    assert_eq!(list[0]["transactional_id"], "cli-done");
    assert_eq!(list[0]["state"], "CompleteCommit");
    assert_eq!(list[1]["state"], "Ongoing");

    let (ok, out, _) = rafka(&["transactions", "list", "--bootstrap", b]);
    assert!(ok);
    assert!(
        out.contains(&format!("cli-open\t{open_pid}\tOngoing")),
        "{out}"
    );
    assert!(
        out.contains(&format!("cli-done\t{done_pid}\tCompleteCommit")),
        "{out}"
    );
    let (ok, out, _) = rafka(&[
        "transactions",
        "list",
        "--state",
        "Ongoing",
        "--bootstrap",
        b,
    ]);
    assert!(ok);
    assert!(out.contains("cli-open\t"), "{out}");
    assert!(!out.contains("cli-done"), "{out}");

    let (ok, out, err) = rafka(&["transactions", "describe", "cli-open", "--bootstrap", b]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!(
            "transactional id cli-open: state Ongoing, producer id {open_pid} epoch 0"
        )),
        "{out}"
    );
    assert!(out.contains("  txcli-0\n  txcli-1\n"), "{out}");
    let (ok, out, _) = rafka(&[
        "transactions",
        "describe",
        "cli-done",
        "--format",
        "json",
        "--bootstrap",
        b,
    ]);
    assert!(ok);
    let d: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(d["state"], "CompleteCommit");
    assert_eq!(d["producer_id"], done_pid);
    assert_eq!(d["partitions"], serde_json::json!({}));
    let (ok, _, err) = rafka(&["transactions", "describe", "nobody", "--bootstrap", b]);
    assert!(!ok);
    assert!(
        err.contains("cannot describe transactional id nobody"),
        "{err}"
    );

    let (ok, out, err) = rafka(&["topic", "describe", "txcli", "--bootstrap", b]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("producer\t0\t{open_pid}\t0\t2\t0\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!("producer\t1\t{open_pid}\t0\t0\t0\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!("producer\t1\t{done_pid}\t0\t1\t-\n")),
        "{out}"
    );
    let (ok, out, _) = rafka(&[
        "topic",
        "describe",
        "txcli",
        "--format",
        "json",
        "--bootstrap",
        b,
    ]);
    assert!(ok);
    let d: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    let producers = |p: usize| d["partitions"][p]["producers"].as_array().unwrap().clone();
    let p0 = producers(0);
    assert_eq!(p0.len(), 1, "{out}");
    assert_eq!(p0[0]["producer_id"], open_pid);
    assert_eq!(p0[0]["last_sequence"], 2);
    assert_eq!(p0[0]["current_txn_start_offset"], 0);
    let p1 = producers(1);
    let find = |pid: i64| p1.iter().find(|p| p["producer_id"] == pid).unwrap().clone();
    assert_eq!(find(open_pid)["current_txn_start_offset"], 0);
    assert_eq!(find(done_pid)["current_txn_start_offset"], -1);
    assert_eq!(find(done_pid)["last_sequence"], 1);
    // The committed transaction's records and marker: end 4 on partition 1.
    assert_eq!(d["partitions"][1]["end"], 4, "{out}");
    drop(open);
}

/// `topic describe --admin`: a compacted topic's dirty ratio, clean and dirty bytes and last
/// cleaning per partition, read from the broker's admin endpoint, in text and JSON; a topic
/// that is not compacted shows none.
#[test]
fn topic_describe_shows_the_cleaner_figures_of_a_compacted_topic() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "broker:\n  listen: 127.0.0.1:0\n  log_cleaner_backoff_ms: 100\nadmin:\n  listen: 127.0.0.1:0\nstorage:\n  path: {}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rafka"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn rafka");
    let (line, address) = support::startup_line(&mut child);
    let b = address.as_str();
    let admin = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .and_then(|w| w.strip_suffix("/metrics)"))
        .unwrap_or_else(|| panic!("no admin address in {line:?}"))
        .to_string();
    for (name, configs) in [
        (
            "cleaned-cli",
            &[
                "cleanup.policy=compact",
                "segment.ms=100",
                "min.cleanable.dirty.ratio=0.1",
            ][..],
        ),
        ("plain-cli", &[][..]),
    ] {
        let mut args = vec![
            "topic",
            "create",
            name,
            "--partitions",
            "1",
            "--bootstrap",
            b,
        ];
        for c in configs {
            args.extend(["--config", c]);
        }
        let (ok, _, err) = rafka(&args);
        assert!(ok, "{err}");
    }
    let p: BaseProducer = support::client_config(b)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let send = |i: usize| {
        p.send(
            BaseRecord::to("cleaned-cli")
                .key(&format!("k{}", i % 5))
                .payload(&format!("v{i}")),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    };
    for i in 0..200 {
        send(i);
    }
    p.flush(Duration::from_secs(10)).unwrap();
    // `segment.ms` is 100: a later record rolls the segment, so all of it is cleanable.
    std::thread::sleep(Duration::from_millis(300));
    send(200);
    p.flush(Duration::from_secs(10)).unwrap();

    let describe = |name: &str, json: bool| {
        let mut args = vec![
            "topic",
            "describe",
            name,
            "--bootstrap",
            b,
            "--admin",
            &admin,
        ];
        if json {
            args.extend(["--format", "json"]);
        }
        let (ok, out, err) = rafka(&args);
        assert!(ok, "{err}");
        out
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut d: serde_json::Value = serde_json::Value::Null;
    while Instant::now() < deadline {
        let out = describe("cleaned-cli", true);
        d = serde_json::from_str(out.trim()).expect(&out);
        if d["partitions"][0]["cleaner"]["last_cleaned_ms"].is_i64()
            && d["partitions"][0]["cleaner"]["dirty_ratio"].as_f64() < Some(0.5)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let c = &d["partitions"][0]["cleaner"];
    let ratio = c["dirty_ratio"].as_f64().expect("a dirty ratio");
    assert!(ratio < 0.5, "{d}");
    let (clean, dirty) = (
        c["clean_bytes"].as_u64().unwrap(),
        c["dirty_bytes"].as_u64().unwrap(),
    );
    assert!(clean > 0, "{d}");
    assert!(
        (ratio - dirty as f64 / (clean + dirty) as f64).abs() < 1e-9,
        "{d}"
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let at = c["last_cleaned_ms"].as_i64().unwrap();
    assert!(at > now_ms - 60_000 && at <= now_ms + 1_000, "{d}");
    // 201 records, one per offset: compaction keeps the offsets.
    assert_eq!(d["partitions"][0]["end"], 201, "{d}");

    let out = describe("cleaned-cli", false);
    assert!(
        out.contains(
            "cleaner (partition, dirty ratio, clean bytes, dirty bytes, last cleaned ms):"
        ),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.starts_with("cleaner\t0\t"))
        .unwrap_or_else(|| panic!("no cleaner row in {out}"));
    let f: Vec<&str> = row.split('\t').collect();
    assert_eq!(f.len(), 6, "{row}");
    assert!(f[2].parse::<f64>().unwrap() < 0.5, "{row}");
    assert!(f[3].parse::<u64>().unwrap() > 0, "{row}");
    assert!(f[5].parse::<i64>().unwrap() > now_ms - 60_000, "{row}");

    let out = describe("plain-cli", false);
    assert!(!out.contains("cleaner"), "{out}");
    let out = describe("plain-cli", true);
    let d: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert!(d["partitions"][0].get("cleaner").is_none(), "{d}");
    // A wrong admin address fails with a reason.
    let (ok, _, err) = rafka(&[
        "topic",
        "describe",
        "plain-cli",
        "--bootstrap",
        b,
        "--admin",
        "127.0.0.1:1",
    ]);
    assert!(!ok);
    assert!(
        err.contains("cannot read the metrics at 127.0.0.1:1"),
        "{err}"
    );
    drop(p);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn quotas_are_set_described_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::BrokerProcess::start(&dir.path().join("data"));
    let b = broker.address.as_str();
    let (ok, out, err) = rafka(&[
        "quota",
        "set",
        "--user",
        "alice",
        "--client-id-default",
        "--config",
        "producer_byte_rate=1048576",
        "--config",
        "request_percentage=50",
        "--bootstrap",
        b,
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, "quotas of user=alice,client-id=<default> changed\n");
    let (ok, _, err) = rafka(&[
        "quota",
        "set",
        "--client-id",
        "app",
        "--config",
        "consumer_byte_rate=2000",
        "--bootstrap",
        b,
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = rafka(&["quota", "describe", "--bootstrap", b]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "client-id=app\tconsumer_byte_rate=2000\n\
         user=alice,client-id=<default>\tproducer_byte_rate=1048576,request_percentage=50\n"
    );
    let (ok, out, err) = rafka(&[
        "quota",
        "describe",
        "--user",
        "alice",
        "--format",
        "json",
        "--bootstrap",
        b,
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["entity"]["user"], "alice");
    assert_eq!(v["entity"]["client-id"], serde_json::Value::Null);
    assert_eq!(v["quotas"]["producer_byte_rate"], 1048576.0);
    // Removing the last value removes the entity; a bad key is Kafka's INVALID_REQUEST.
    let (ok, _, err) = rafka(&[
        "quota",
        "set",
        "--client-id",
        "app",
        "--delete",
        "consumer_byte_rate",
        "--bootstrap",
        b,
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = rafka(&[
        "quota",
        "set",
        "--client-id",
        "app",
        "--config",
        "producer.byte.rate=1",
        "--bootstrap",
        b,
    ]);
    assert!(!ok);
    assert!(
        err.contains("Invalid configuration key producer.byte.rate"),
        "{err}"
    );
    let (ok, out, err) = rafka(&["quota", "describe", "--client-id", "app", "--bootstrap", b]);
    assert!(ok, "{err}");
    assert_eq!(out, "");
    // An address's connection_creation_rate (KIP-612); an ip entity takes nothing else.
    for (ip, rate) in [("--ip", "10.0.0.7"), ("--ip-default", "")] {
        let mut args = vec!["quota", "set", ip];
        if !rate.is_empty() {
            args.push(rate);
        }
        args.extend(["--config", "connection_creation_rate=30", "--bootstrap", b]);
        let (ok, _, err) = rafka(&args);
        assert!(ok, "{err}");
    }
    let (ok, _, err) = rafka(&[
        "quota",
        "set",
        "--ip",
        "10.0.0.7",
        "--config",
        "producer_byte_rate=1",
        "--bootstrap",
        b,
    ]);
    assert!(!ok);
    assert!(
        err.contains("Invalid configuration key producer_byte_rate"),
        "{err}"
    );
    let (ok, out, err) = rafka(&["quota", "describe", "--ip", "10.0.0.7", "--bootstrap", b]);
    assert!(ok, "{err}");
    assert_eq!(out, "ip=10.0.0.7\tconnection_creation_rate=30\n");
    let (ok, out, err) = rafka(&["quota", "describe", "--ip-default", "--bootstrap", b]);
    assert!(ok, "{err}");
    assert_eq!(out, "ip=<default>\tconnection_creation_rate=30\n");
}
