//! The `rafka` client commands: `topic`, `produce`, `consume`, `group`, `user`, `acl` and
//! `transactions`, built on
//! rafka-client, rafka-producer and rafka-consumer. Every command takes `--bootstrap`
//! (default 127.0.0.1:9092) and fails with a one-line reason.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rafka_client::admin::{EARLIEST, LATEST};
use rafka_client::txn::ProducerDescription;
use rafka_client::{Client, ClientConfig, ScramMechanism};
use rafka_consumer::{Consumer, IsolationLevel, OffsetReset};
use rafka_producer::{Producer, Record};

/// Help for the client commands.
pub const USAGE: &str = "\
CLIENT COMMANDS (all take --bootstrap HOST:PORT, default 127.0.0.1:9092, and
--command-config FILE: Kafka client properties such as security.protocol, ssl.ca.location,
ssl.certificate.location, ssl.key.location, ssl.endpoint.identification.algorithm,
sasl.mechanism, sasl.username, sasl.password or sasl.jaas.config, bootstrap.servers):
    rafka topic create NAME [--partitions N] [--config KEY=VALUE]...
    rafka topic list
    rafka topic describe NAME [--format text|json] [--admin HOST:PORT]
                                     partitions with start/end offsets and sizes, the
                                     active producers of each partition, configs; with
                                     --admin (the broker's admin endpoint), a compacted
                                     topic's dirty ratio, clean/dirty bytes and last
                                     cleaning per partition
    rafka topic alter NAME [--partitions N] [--config KEY=VALUE]...
    rafka topic delete NAME
    rafka produce TOPIC [--file F] [--key-separator S] [--header K=V]... [--partition P]
                        [--format text|json]
                        one record per line of stdin (or F); with json, each line is
                        {\"key\":..,\"value\":..,\"headers\":{\"k\":\"v\"},\"partition\":N} (all optional);
                        reading a file shows a progress bar on a terminal
    rafka consume TOPIC [--group G] [--from-beginning] [--partition P] [--offset O]
                        [--count N] [--format text|json] [--timeout-ms MS]
                        [--isolation-level read_committed|read_uncommitted]
                        (read_committed by default: aborted transactions are skipped)
    rafka group list
    rafka group describe GROUP       members and per-partition committed offset and lag
    rafka group reset-offsets GROUP --topic T (--to-earliest | --to-latest | --to-offset O)
    rafka group delete GROUP
    rafka transactions list [--state STATE]... [--format text|json]
                                     transactional ids, producer ids and states
                                     (STATE: Empty, Ongoing, PrepareCommit, PrepareAbort,
                                     CompleteCommit, CompleteAbort, Dead, PrepareEpochFence)
    rafka transactions describe ID [--format text|json]
                                     state, producer id/epoch, timeout, partitions
    rafka user create NAME [--password P] [--mechanism M]... [--iterations N]
                                     SCRAM credentials (M: SCRAM-SHA-256, SCRAM-SHA-512;
                                     both by default; N: 4096..16384, default 4096); the
                                     password is read from stdin without --password, and
                                     only a salted form of it is sent
    rafka user list [NAME]... [--format text|json]
    rafka user delete NAME [--mechanism M]...   (all of the user's mechanisms by default)
    rafka acl add --principal P --operation OP... RESOURCE [--deny] [--host H]
                  [--resource-pattern-type literal|prefixed]
                                     ACL bindings (an authorizer must be configured);
                                     RESOURCE: --topic T, --group G, --cluster or
                                     --transactional-id X; OP: READ, WRITE, CREATE, DELETE,
                                     ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS,
                                     ALTER_CONFIGS, IDEMPOTENT_WRITE, ALL; ALLOW unless --deny
    rafka acl list [RESOURCE] [--principal P] [--resource-pattern-type any|match|literal|prefixed]
                   [--format text|json]
    rafka acl remove RESOURCE [--principal P] [--operation OP]... [--deny] [--host H]
                     [--resource-pattern-type ...]   (what matches is removed and printed)
    rafka quota set (--user U | --user-default) (--client-id C | --client-id-default)
                    [--config KEY=VALUE]... [--delete KEY]...
                                     client quotas (KEY: producer_byte_rate,
                                     consumer_byte_rate, request_percentage,
                                     controller_mutation_rate) of a user, a client id or
                                     both; at least one of them
    rafka quota set (--ip ADDRESS | --ip-default) [--config connection_creation_rate=N]
                    [--delete connection_creation_rate]
                                     connections accepted per second from an address
    rafka quota describe [--user U | --user-default] [--client-id C | --client-id-default]
                    [--ip ADDRESS | --ip-default]
                    [--format text|json]   every quota, or those of matching entities

EXAMPLES:
    rafka topic create orders --partitions 3 --config retention.ms=86400000
    seq 1 1000 | rafka produce orders
    rafka produce orders --file orders.txt --key-separator :
    echo '{\"key\":\"k1\",\"value\":\"v1\",\"headers\":{\"source\":\"cli\"}}' | rafka produce orders --format json
    rafka consume orders --from-beginning --count 10 --format json
    rafka group describe billing
    rafka topic list --command-config client.properties
    echo 's3cret' | rafka user create alice --mechanism SCRAM-SHA-512
    rafka acl add --principal User:alice --operation READ --topic orders- --resource-pattern-type prefixed
    rafka quota set --client-id batch-loader --config producer_byte_rate=1048576
";

/// Parsed options shared by the commands.
#[derive(Debug, Default)]
struct Opts {
    bootstrap: String,
    /// Whether `--bootstrap` was given (it wins over `bootstrap.servers` in the file).
    bootstrap_given: bool,
    command_config: Option<String>,
    password: Option<String>,
    mechanisms: Vec<String>,
    iterations: Option<u32>,
    positional: Vec<String>,
    partitions: Option<i32>,
    configs: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    file: Option<String>,
    key_separator: Option<String>,
    partition: Option<i32>,
    group: Option<String>,
    from_beginning: bool,
    offset: Option<i64>,
    count: Option<usize>,
    json: bool,
    timeout: Duration,
    topic: Option<String>,
    to: Option<i64>,
    states: Vec<String>,
    isolation: Option<IsolationLevel>,
    admin: Option<String>,
    principal: Option<String>,
    operations: Vec<String>,
    deny: bool,
    host: Option<String>,
    cluster: bool,
    transactional_id: Option<String>,
    pattern_type: Option<String>,
    /// `--user`, `--client-id`, `--ip` and their `-default` forms: a quota entity.
    entity: Vec<(String, Option<String>)>,
    /// `--delete KEY`: quotas to remove.
    deletes: Vec<String>,
}

fn pair(s: &str, what: &str) -> Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .with_context(|| format!("{what} {s:?} is not KEY=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        bootstrap: "127.0.0.1:9092".into(),
        timeout: Duration::from_secs(10),
        ..Opts::default()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        let num = |v: &String| -> Result<i64> {
            v.parse()
                .with_context(|| format!("{a} needs a number, got {v:?}"))
        };
        match a.as_str() {
            "--bootstrap" | "-b" => {
                o.bootstrap = value()?.clone();
                o.bootstrap_given = true;
            }
            "--command-config" => o.command_config = Some(value()?.clone()),
            "--password" => o.password = Some(value()?.clone()),
            "--mechanism" => o.mechanisms.push(value()?.clone()),
            "--iterations" => {
                let n = num(value()?)?;
                o.iterations =
                    Some(u32::try_from(n).with_context(|| {
                        format!("--iterations needs a positive number, got {n}")
                    })?)
            }
            "--partitions" => o.partitions = Some(num(value()?)? as i32),
            "--config" => o.configs.push(pair(value()?, "--config")?),
            "--header" => o.headers.push(pair(value()?, "--header")?),
            "--file" => o.file = Some(value()?.clone()),
            "--key-separator" => o.key_separator = Some(value()?.clone()),
            "--partition" => o.partition = Some(num(value()?)? as i32),
            "--group" => o.group = Some(value()?.clone()),
            "--from-beginning" => o.from_beginning = true,
            "--offset" => o.offset = Some(num(value()?)?),
            "--count" => o.count = Some(num(value()?)?.max(0) as usize),
            "--format" => match value()?.as_str() {
                "json" => o.json = true,
                "text" => o.json = false,
                f => bail!("--format must be text or json, got {f:?}"),
            },
            "--timeout-ms" => o.timeout = Duration::from_millis(num(value()?)?.max(1) as u64),
            "--topic" => o.topic = Some(value()?.clone()),
            "--to-earliest" => o.to = Some(EARLIEST),
            "--to-latest" => o.to = Some(LATEST),
            "--to-offset" => o.to = Some(num(value()?)?.max(0)),
            "--state" => o.states.push(value()?.clone()),
            "--admin" => o.admin = Some(value()?.clone()),
            "--principal" => o.principal = Some(value()?.clone()),
            "--operation" => o.operations.push(value()?.clone()),
            "--deny" => o.deny = true,
            "--host" => o.host = Some(value()?.clone()),
            "--cluster" => o.cluster = true,
            "--transactional-id" => o.transactional_id = Some(value()?.clone()),
            "--resource-pattern-type" => o.pattern_type = Some(value()?.clone()),
            "--user" => o.entity.push(("user".into(), Some(value()?.clone()))),
            "--client-id" => o.entity.push(("client-id".into(), Some(value()?.clone()))),
            "--user-default" => o.entity.push(("user".into(), None)),
            "--client-id-default" => o.entity.push(("client-id".into(), None)),
            "--ip" => o.entity.push(("ip".into(), Some(value()?.clone()))),
            "--ip-default" => o.entity.push(("ip".into(), None)),
            "--delete" => o.deletes.push(value()?.clone()),
            "--isolation-level" => {
                o.isolation = Some(match value()?.as_str() {
                    "read_committed" => IsolationLevel::ReadCommitted,
                    "read_uncommitted" => IsolationLevel::ReadUncommitted,
                    l => bail!(
                        "--isolation-level must be read_committed or read_uncommitted, got {l:?}"
                    ),
                })
            }
            s if s.starts_with('-') => bail!("unknown option {s:?} (see rafka --help)"),
            s => o.positional.push(s.to_string()),
        }
    }
    Ok(o)
}

/// The client config of a command: `--command-config` properties (Kafka's client
/// properties file), with `--bootstrap` over the file's `bootstrap.servers`.
fn client_config(o: &Opts) -> Result<ClientConfig> {
    command_config(o.command_config.as_deref(), &o.bootstrap, o.bootstrap_given)
}

/// Reads a Kafka client properties file over the defaults for `bootstrap`; an explicit
/// `bootstrap` wins over the file's `bootstrap.servers`. Keys the client does not use are
/// reported on stderr (as Kafka's "supplied but isn't a known config") and ignored.
pub(crate) fn command_config(
    file: Option<&str>,
    bootstrap: &str,
    bootstrap_given: bool,
) -> Result<ClientConfig> {
    let mut cfg = ClientConfig::new(bootstrap);
    let Some(path) = file else { return Ok(cfg) };
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(f, rafka_client::properties::PROPERTIES_BYTES_MAX as u64 + 1),
        &mut text,
    )
    .with_context(|| format!("cannot read {path}"))?;
    let props = rafka_client::properties::parse(&text).with_context(|| format!("in {path}"))?;
    for key in cfg
        .apply_properties(&props)
        .with_context(|| format!("in {path}"))?
    {
        tracing::warn!(
            "the configuration '{key}' in {path} was supplied but isn't a known config (ignored)"
        );
    }
    if bootstrap_given {
        cfg.bootstrap = ClientConfig::new(bootstrap).bootstrap;
    }
    Ok(cfg)
}

async fn connect(o: &Opts) -> Result<Client> {
    let mut cfg = client_config(o)?;
    cfg.connect_timeout = o.timeout.min(Duration::from_secs(10));
    cfg.request_timeout = o.timeout.max(Duration::from_secs(5));
    let addresses = cfg.bootstrap.join(",");
    tokio::time::timeout(o.timeout, Client::connect(cfg))
        .await
        .map_err(|_| anyhow::anyhow!("cannot reach {addresses}: no answer within {:?}", o.timeout))?
        .with_context(|| format!("cannot reach {addresses}"))
}

fn one<'a>(o: &'a Opts, what: &str) -> Result<&'a str> {
    o.positional
        .first()
        .map(String::as_str)
        .with_context(|| format!("missing {what} (see rafka --help)"))
}

/// Runs a client command (`args` without the program name); `Ok(false)` if `args` is not one.
pub async fn run(args: &[String]) -> Result<bool> {
    let Some(cmd) = args.first() else {
        return Ok(false);
    };
    if args.iter().any(|a| a == "--help" || a == "-h") {
        let usage = if cmd == "bench" {
            crate::bench::USAGE
        } else {
            USAGE
        };
        print!("{usage}");
        return Ok(true);
    }
    match cmd.as_str() {
        "topic" => topic(&args[1..]).await?,
        "produce" => produce(&parse(&args[1..])?).await?,
        "consume" => consume(&parse(&args[1..])?).await?,
        "group" => group(&args[1..]).await?,
        "transactions" => transactions(&args[1..]).await?,
        "user" => user(&args[1..]).await?,
        "acl" => acl(&args[1..]).await?,
        "quota" => quota(&args[1..]).await?,
        "bench" => crate::bench::run(&args[1..]).await?,
        _ => return Ok(false),
    }
    Ok(true)
}

async fn topic(args: &[String]) -> Result<()> {
    let sub = args.first().map(String::as_str).unwrap_or_default();
    if !["create", "list", "describe", "alter", "delete"].contains(&sub) {
        bail!("unknown topic command {sub:?}: create, list, describe, alter or delete");
    }
    let o = parse(args.get(1..).unwrap_or_default())?;
    let client = connect(&o).await?;
    match sub {
        "create" => {
            let name = one(&o, "topic name")?;
            client
                .create_topic(name, o.partitions.unwrap_or(-1), &o.configs)
                .await
                .with_context(|| format!("cannot create topic {name}"))?;
            println!("created topic {name}");
        }
        "list" => {
            let mut names: Vec<String> = client
                .refresh_metadata(None)
                .await?
                .into_iter()
                .filter(|t| !t.is_internal)
                .map(|t| format!("{}\t{} partitions", t.name, t.partitions.len()))
                .collect();
            names.sort();
            for n in names {
                println!("{n}");
            }
        }
        "describe" => {
            let name = one(&o, "topic name")?;
            let t = client
                .topic(name)
                .await
                .with_context(|| format!("cannot describe topic {name}"))?;
            let parts: Vec<i32> = t.partitions.iter().map(|p| p.partition).collect();
            let start = client.list_offsets(name, &parts, EARLIEST).await?;
            let end = client.list_offsets(name, &parts, LATEST).await?;
            let producers = client
                .describe_producers(name, &parts)
                .await
                .with_context(|| format!("cannot describe the producers of {name}"))?;
            let configs = client.describe_topic_configs(name).await?;
            let cleaner = match &o.admin {
                Some(admin) => Some(
                    cleaner_figures(admin, name, o.timeout)
                        .await
                        .with_context(|| format!("cannot read the metrics at {admin}"))?,
                ),
                None => None,
            };
            if o.json {
                let mut v = topic_json(name, &t.partitions, &start, &end, &producers, &configs);
                if let (Some(c), Some(parts)) = (&cleaner, v["partitions"].as_array_mut()) {
                    for p in parts {
                        let f = p["partition"].as_i64().and_then(|i| c.get(&(i as i32)));
                        if let Some(f) = f {
                            p["cleaner"] = serde_json::json!({
                                "dirty_ratio": f.dirty_ratio,
                                "clean_bytes": f.clean_bytes,
                                "dirty_bytes": f.dirty_bytes,
                                "last_cleaned_ms": f.last_cleaned_ms,
                            });
                        }
                    }
                }
                println!("{v}");
                return Ok(());
            }
            println!("topic {name}: {} partitions", parts.len());
            println!("partition\tleader\tstart\tend\trecords");
            for p in &t.partitions {
                let (s, e) = (
                    start.get(&p.partition).copied().unwrap_or(-1),
                    end.get(&p.partition).copied().unwrap_or(-1),
                );
                println!("{}\t{}\t{s}\t{e}\t{}", p.partition, p.leader, e - s);
            }
            println!("producers (partition, producer id, epoch, last sequence, txn start offset):");
            for (partition, ps) in &producers {
                for d in ps {
                    let txn = match d.current_txn_start_offset {
                        o if o >= 0 => o.to_string(),
                        _ => "-".into(),
                    };
                    println!(
                        "producer\t{partition}\t{}\t{}\t{}\t{txn}",
                        d.producer_id, d.producer_epoch, d.last_sequence
                    );
                }
            }
            if let Some(c) = cleaner.filter(|c| !c.is_empty()) {
                println!(
                    "cleaner (partition, dirty ratio, clean bytes, dirty bytes, last cleaned ms):"
                );
                for (partition, f) in c {
                    let at = f
                        .last_cleaned_ms
                        .map_or_else(|| "-".to_string(), |ms| ms.to_string());
                    println!(
                        "cleaner\t{partition}\t{:.4}\t{}\t{}\t{at}",
                        f.dirty_ratio, f.clean_bytes, f.dirty_bytes
                    );
                }
            }
            println!("configs:");
            for (k, (v, is_default)) in configs {
                let mark = if is_default { "" } else { "  (set on topic)" };
                println!("  {k}={}{mark}", v.unwrap_or_default());
            }
        }
        "alter" => {
            let name = one(&o, "topic name")?;
            if let Some(n) = o.partitions {
                client
                    .create_partitions(name, n)
                    .await
                    .with_context(|| format!("cannot grow {name} to {n} partitions"))?;
            }
            if !o.configs.is_empty() {
                let changes: Vec<(String, Option<String>)> = o
                    .configs
                    .iter()
                    .map(|(k, v)| (k.clone(), Some(v.clone())))
                    .collect();
                client
                    .alter_topic_configs(name, &changes)
                    .await
                    .with_context(|| format!("cannot alter {name}"))?;
            }
            println!("altered topic {name}");
        }
        "delete" => {
            let name = one(&o, "topic name")?;
            client
                .delete_topic(name)
                .await
                .with_context(|| format!("cannot delete topic {name}"))?;
            println!("deleted topic {name}");
        }
        other => bail!("unknown topic command {other:?}: create, list, describe, alter or delete"),
    }
    Ok(())
}

async fn produce(o: &Opts) -> Result<()> {
    let topic = one(o, "topic")?.to_string();
    connect(o).await?; // fail fast, with the bootstrap address in the message
    let mut cfg = client_config(o)?;
    cfg.allow_auto_topic_creation = true;
    let producer = Producer::builder()
        .client_config(cfg)
        .build()
        .await
        .context("cannot start the producer")?;
    let (reader, total_bytes): (Box<dyn BufRead>, Option<u64>) = match &o.file {
        Some(f) => {
            let file = std::fs::File::open(f).with_context(|| format!("cannot open {f}"))?;
            let size = file.metadata().ok().map(|m| m.len());
            (Box::new(std::io::BufReader::new(file)), size)
        }
        None => (Box::new(std::io::BufReader::new(std::io::stdin())), None),
    };
    // A progress bar only where a person watches (a file's size gives the total).
    let mut bar = total_bytes
        .filter(|_| std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .map(|total| (total, Instant::now()));
    let started = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    let (mut n, mut bytes_read) = (0u64, 0u64);
    for (number, line) in reader.lines().enumerate() {
        let line = line.context("cannot read input")?;
        bytes_read += line.len() as u64 + 1;
        let mut r = if o.json {
            json_record(&topic, &line).with_context(|| format!("line {}", number + 1))?
        } else {
            let mut r = Record::to(topic.clone());
            let value = match o.key_separator.as_deref().and_then(|s| line.split_once(s)) {
                Some((k, v)) => {
                    r = r.key(k.to_string());
                    v.to_string()
                }
                None => line,
            };
            r.value(value)
        };
        for (k, v) in &o.headers {
            r = r.header(k.clone(), v.clone());
        }
        if let Some(p) = o.partition {
            r = r.partition(p);
        }
        pending.push_back(producer.enqueue(r).await?);
        // Bound what is awaited at once; the producer's own buffer bounds the bytes.
        if pending.len() >= 10_000 {
            pending.pop_front().expect("non-empty").await?;
        }
        n += 1;
        if let Some((total, last)) = &mut bar {
            if last.elapsed() >= Duration::from_millis(200) {
                *last = Instant::now();
                eprint!(
                    "\r{}",
                    progress_line(bytes_read, *total, n, started.elapsed())
                );
            }
        }
    }
    for f in pending {
        f.await?;
    }
    producer.close().await?;
    if let Some((total, _)) = bar {
        eprintln!("\r{}", progress_line(total, total, n, started.elapsed()));
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "produced {n} records to {topic} in {secs:.2} s ({:.0} records/s, {:.1} MB/s of input)",
        n as f64 / secs,
        bytes_read as f64 / 1e6 / secs
    );
    Ok(())
}

/// One progress line: a 30-cell bar, the percentage, records and the input rate.
pub(crate) fn progress_line(done: u64, total: u64, records: u64, elapsed: Duration) -> String {
    const CELLS: u64 = 30;
    let frac = if total == 0 {
        1.0
    } else {
        (done.min(total) as f64) / total as f64
    };
    let filled = ((frac * CELLS as f64) as u64).min(CELLS);
    let rate = done as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9);
    format!(
        "[{}{}] {:>3.0}% {records} records, {rate:.1} MB/s",
        "#".repeat(filled as usize),
        " ".repeat((CELLS - filled) as usize),
        frac * 100.0
    )
}

/// A record from one JSON input line: an object with optional `key`, `value`, `headers`
/// (an object of strings) and `partition`. Strings are taken as UTF-8 bytes; any other
/// JSON value as its JSON text; `null` as no key or no value.
fn json_record(topic: &str, line: &str) -> Result<Record> {
    use serde_json::Value;
    let v: Value = serde_json::from_str(line).context("not JSON")?;
    let Value::Object(mut obj) = v else {
        bail!("expected a JSON object with key, value, headers");
    };
    let text = |v: Value| match v {
        Value::String(s) => Some(s),
        Value::Null => None,
        other => Some(other.to_string()),
    };
    let mut r = Record::to(topic.to_string());
    if let Some(k) = obj.remove("key").and_then(text) {
        r = r.key(k);
    }
    if let Some(v) = obj.remove("value").and_then(text) {
        r = r.value(v);
    }
    match obj.remove("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(hs)) => {
            for (k, v) in hs {
                r = r.header(k, text(v).unwrap_or_default());
            }
        }
        Some(_) => bail!("headers must be an object of strings"),
    }
    match obj.remove("partition") {
        None | Some(Value::Null) => {}
        Some(p) => match p.as_i64().and_then(|p| i32::try_from(p).ok()) {
            Some(p) if p >= 0 => r = r.partition(p),
            _ => bail!("partition must be a non-negative integer"),
        },
    }
    if let Some(unknown) = obj.keys().next() {
        bail!("unknown field {unknown:?} (expected key, value, headers, partition)");
    }
    Ok(r)
}

fn json_str(out: &mut String, b: Option<&[u8]>) {
    let Some(b) = b else {
        out.push_str("null");
        return;
    };
    out.push('"');
    for c in String::from_utf8_lossy(b).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

async fn consume(o: &Opts) -> Result<()> {
    let topic = one(o, "topic")?.to_string();
    let client = connect(o).await?;
    let reset = if o.from_beginning {
        OffsetReset::Earliest
    } else {
        OffsetReset::Latest
    };
    let mut b = Consumer::builder()
        .client_config(client_config(o)?)
        .auto_offset_reset(reset)
        .isolation_level(o.isolation.unwrap_or_default());
    let partitions: Vec<i32> = match o.partition {
        Some(p) => vec![p],
        None => client
            .topic(&topic)
            .await
            .with_context(|| format!("cannot find topic {topic}"))?
            .partitions
            .iter()
            .map(|p| p.partition)
            .collect(),
    };
    b = match &o.group {
        Some(g) if o.partition.is_none() && o.offset.is_none() => {
            b.group(g.clone()).subscribe([topic.clone()])
        }
        Some(g) => b
            .group(g.clone())
            .assign(partitions.iter().map(|p| (topic.clone(), *p))),
        None => b.assign(partitions.iter().map(|p| (topic.clone(), *p))),
    };
    let consumer = b.build().await.context("cannot start the consumer")?;
    if let Some(off) = o.offset {
        for p in &partitions {
            consumer.seek(&topic, *p, off)?;
        }
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let limit = o.count.unwrap_or(usize::MAX);
    let mut n = 0;
    while n < limit {
        // With --count, stop when nothing arrives for --timeout-ms.
        let r = match tokio::time::timeout(o.timeout, consumer.recv()).await {
            Ok(r) => r?,
            Err(_) if o.count.is_some() => {
                bail!("only {n} of {limit} records arrived within {:?}", o.timeout)
            }
            Err(_) => continue,
        };
        if o.json {
            let mut s = format!(
                "{{\"partition\":{},\"offset\":{},\"timestamp\":{},\"key\":",
                r.partition, r.offset, r.timestamp
            );
            json_str(&mut s, r.key.as_deref());
            s.push_str(",\"value\":");
            json_str(&mut s, r.value.as_deref());
            s.push_str(",\"headers\":{");
            for (i, (k, v)) in r.headers.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                json_str(&mut s, Some(k.as_bytes()));
                s.push(':');
                json_str(&mut s, v.as_deref());
            }
            s.push_str("}}");
            writeln!(out, "{s}")?;
        } else {
            out.write_all(r.value.as_deref().unwrap_or_default())?;
            out.write_all(b"\n")?;
        }
        n += 1;
    }
    out.flush()?;
    drop(out);
    consumer.close().await?;
    Ok(())
}

async fn group(args: &[String]) -> Result<()> {
    let sub = args.first().map(String::as_str).unwrap_or_default();
    if !["list", "describe", "reset-offsets", "delete"].contains(&sub) {
        bail!("unknown group command {sub:?}: list, describe, reset-offsets or delete");
    }
    let o = parse(args.get(1..).unwrap_or_default())?;
    let client = connect(&o).await?;
    match sub {
        "list" => {
            for g in client.list_groups().await? {
                println!("{}\t{}\t{}", g.group_id, g.protocol_type, g.state);
            }
        }
        "describe" => {
            let name = one(&o, "group id")?;
            let d = client
                .describe_group(name)
                .await
                .with_context(|| format!("cannot describe group {name}"))?;
            println!(
                "group {name}: state {}, protocol {} {}, {} members",
                d.state,
                d.protocol_type,
                d.protocol,
                d.members.len()
            );
            for m in &d.members {
                println!(
                    "  member {} ({} {}): {:?}",
                    m.member_id, m.client_id, m.client_host, m.assignment
                );
            }
            let committed = client.committed_offsets(name, None).await?;
            let mut by_topic: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
            for ((t, p), off) in &committed {
                by_topic.entry(t.clone()).or_default().push((*p, *off));
            }
            println!("topic\tpartition\tcommitted\tend\tlag");
            for (t, parts) in by_topic {
                let ids: Vec<i32> = parts.iter().map(|(p, _)| *p).collect();
                let end = client.list_offsets(&t, &ids, LATEST).await?;
                for (p, off) in parts {
                    let e = end.get(&p).copied().unwrap_or(-1);
                    println!("{t}\t{p}\t{off}\t{e}\t{}", (e - off).max(0));
                }
            }
        }
        "reset-offsets" => {
            let name = one(&o, "group id")?;
            let topic = o.topic.as_deref().context("reset-offsets needs --topic")?;
            let to =
                o.to.context("reset-offsets needs --to-earliest, --to-latest or --to-offset")?;
            let t = client.topic(topic).await?;
            let ids: Vec<i32> = t.partitions.iter().map(|p| p.partition).collect();
            let targets: BTreeMap<(String, i32), i64> = if to >= 0 {
                ids.iter().map(|p| ((topic.to_string(), *p), to)).collect()
            } else {
                client
                    .list_offsets(topic, &ids, to)
                    .await?
                    .into_iter()
                    .map(|(p, off)| ((topic.to_string(), p), off))
                    .collect()
            };
            client
                .commit_offsets(name, -1, "", &targets)
                .await
                .with_context(|| {
                    format!("cannot reset {name} (a group with active members refuses)")
                })?;
            for ((t, p), off) in targets {
                println!("{t}\t{p}\t{off}");
            }
        }
        "delete" => {
            let name = one(&o, "group id")?;
            client
                .delete_group(name)
                .await
                .with_context(|| format!("cannot delete group {name}"))?;
            println!("deleted group {name}");
        }
        other => bail!("unknown group command {other:?}: list, describe, reset-offsets or delete"),
    }
    Ok(())
}

/// One compacted partition as the broker's cleaner sees it (from its admin endpoint).
#[derive(Debug, Default, Clone, Copy)]
struct CleanerFigures {
    dirty_ratio: f64,
    clean_bytes: u64,
    dirty_bytes: u64,
    last_cleaned_ms: Option<i64>,
}

/// Reads `/metrics` from the admin endpoint at `admin` and keeps the cleaner series of
/// `topic`'s partitions (empty when the topic is not compacted).
async fn cleaner_figures(
    admin: &str,
    topic: &str,
    timeout: Duration,
) -> Result<BTreeMap<i32, CleanerFigures>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = tokio::time::timeout(timeout, async {
        let mut s = tokio::net::TcpStream::connect(admin).await?;
        let req = format!("GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        // The metrics text of a large broker stays well under this.
        (&mut s).take(64 << 20).read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    })
    .await
    .context("timed out")??;
    let text = String::from_utf8_lossy(&body);
    let (head, body) = text.split_once("\r\n\r\n").context("not an HTTP answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("answered {:?}", head.lines().next().unwrap_or_default());
    }
    Ok(parse_cleaner_figures(body, topic))
}

/// The cleaner series of `topic` in a Prometheus text exposition.
fn parse_cleaner_figures(text: &str, topic: &str) -> BTreeMap<i32, CleanerFigures> {
    let mut out: BTreeMap<i32, CleanerFigures> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("rafka_partition_")) {
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let mut t = None;
        let mut partition = None;
        for l in labels.split(',') {
            match l.split_once('=') {
                Some(("topic", v)) => t = Some(v.trim_matches('"')),
                Some(("partition", v)) => partition = v.trim_matches('"').parse::<i32>().ok(),
                _ => {}
            }
        }
        let (Some(t), Some(partition)) = (t, partition) else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        if t != topic {
            continue;
        }
        let f = match name {
            "rafka_partition_dirty_ratio" => |f: &mut CleanerFigures, v: f64| f.dirty_ratio = v,
            "rafka_partition_clean_bytes" => {
                |f: &mut CleanerFigures, v: f64| f.clean_bytes = v as u64
            }
            "rafka_partition_dirty_bytes" => {
                |f: &mut CleanerFigures, v: f64| f.dirty_bytes = v as u64
            }
            "rafka_partition_last_cleaned_timestamp_seconds" => {
                |f: &mut CleanerFigures, v: f64| f.last_cleaned_ms = Some((v * 1e3).round() as i64)
            }
            _ => continue,
        };
        f(out.entry(partition).or_default(), v);
    }
    out
}

/// `topic describe --format json`: one object.
fn topic_json(
    name: &str,
    partitions: &[rafka_client::PartitionMetadata],
    start: &BTreeMap<i32, i64>,
    end: &BTreeMap<i32, i64>,
    producers: &BTreeMap<i32, Vec<ProducerDescription>>,
    configs: &BTreeMap<String, (Option<String>, bool)>,
) -> serde_json::Value {
    let parts: Vec<serde_json::Value> = partitions
        .iter()
        .map(|p| {
            let s = start.get(&p.partition).copied().unwrap_or(-1);
            let e = end.get(&p.partition).copied().unwrap_or(-1);
            let ps: Vec<serde_json::Value> = producers
                .get(&p.partition)
                .map(|v| v.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "producer_id": d.producer_id,
                        "producer_epoch": d.producer_epoch,
                        "last_sequence": d.last_sequence,
                        "last_timestamp": d.last_timestamp,
                        "current_txn_start_offset": d.current_txn_start_offset,
                    })
                })
                .collect();
            serde_json::json!({
                "partition": p.partition,
                "leader": p.leader,
                "start": s,
                "end": e,
                "records": e - s,
                "producers": ps,
            })
        })
        .collect();
    let configs: serde_json::Map<String, serde_json::Value> = configs
        .iter()
        .map(|(k, (v, _))| (k.clone(), serde_json::json!(v)))
        .collect();
    serde_json::json!({ "topic": name, "partitions": parts, "configs": configs })
}

async fn transactions(args: &[String]) -> Result<()> {
    let sub = args.first().map(String::as_str).unwrap_or_default();
    if !["list", "describe"].contains(&sub) {
        bail!("unknown transactions command {sub:?}: list or describe");
    }
    let o = parse(args.get(1..).unwrap_or_default())?;
    let client = connect(&o).await?;
    match sub {
        "list" => {
            let ts = client
                .list_transactions(&o.states)
                .await
                .context("cannot list transactions")?;
            if o.json {
                let v: Vec<serde_json::Value> = ts
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "transactional_id": t.transactional_id,
                            "producer_id": t.producer_id,
                            "state": t.state,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                println!("transactional id\tproducer id\tstate");
                for t in ts {
                    println!("{}\t{}\t{}", t.transactional_id, t.producer_id, t.state);
                }
            }
        }
        _ => {
            let id = one(&o, "transactional id")?;
            let d = client
                .describe_transaction(id)
                .await
                .with_context(|| format!("cannot describe transactional id {id}"))?;
            if o.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "transactional_id": d.transactional_id,
                        "state": d.state,
                        "producer_id": d.producer_id,
                        "producer_epoch": d.producer_epoch,
                        "timeout_ms": d.timeout_ms,
                        "start_time_ms": d.start_time_ms,
                        "partitions": d.partitions,
                    })
                );
            } else {
                println!(
                    "transactional id {}: state {}, producer id {} epoch {}, timeout {} ms",
                    d.transactional_id, d.state, d.producer_id, d.producer_epoch, d.timeout_ms
                );
                if d.start_time_ms >= 0 {
                    println!("started at {} ms", d.start_time_ms);
                }
                println!("partitions:");
                for (t, ps) in &d.partitions {
                    for p in ps {
                        println!("  {t}-{p}");
                    }
                }
            }
        }
    }
    Ok(())
}

fn mechanisms(o: &Opts) -> Result<Vec<ScramMechanism>> {
    o.mechanisms
        .iter()
        .map(|m| {
            ScramMechanism::from_name(&m.to_ascii_uppercase()).with_context(|| {
                format!("--mechanism must be SCRAM-SHA-256 or SCRAM-SHA-512, got {m:?}")
            })
        })
        .collect()
}

async fn user(args: &[String]) -> Result<()> {
    let sub = args.first().map(String::as_str).unwrap_or_default();
    if !["create", "list", "delete"].contains(&sub) {
        bail!("unknown user command {sub:?}: create, list or delete");
    }
    let o = parse(args.get(1..).unwrap_or_default())?;
    let chosen = mechanisms(&o)?;
    match sub {
        "create" => {
            let name = one(&o, "user name")?;
            let iterations = o.iterations.unwrap_or(rafka_client::DEFAULT_ITERATIONS);
            let password = match &o.password {
                Some(p) => p.clone(),
                None => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("cannot read the password from stdin")?;
                    line.trim_end_matches(['\n', '\r']).to_string()
                }
            };
            if password.is_empty() {
                bail!("empty password (give --password or one line on stdin)");
            }
            let client = connect(&o).await?;
            let mechs = if chosen.is_empty() {
                ScramMechanism::ALL.to_vec()
            } else {
                chosen
            };
            for m in mechs {
                client
                    .upsert_scram_credential(name, m, &password, iterations)
                    .await?;
                println!("set {m} credential of user {name} ({iterations} iterations)");
            }
        }
        "list" => {
            let client = connect(&o).await?;
            let users = client
                .describe_user_scram_credentials(&o.positional)
                .await?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            for u in users {
                if o.json {
                    let creds: Vec<serde_json::Value> = u
                        .credentials
                        .iter()
                        .map(|(m, i)| serde_json::json!({"mechanism": m.name(), "iterations": i}))
                        .collect();
                    writeln!(
                        out,
                        "{}",
                        serde_json::json!({"user": u.user, "credentials": creds})
                    )?;
                } else {
                    let creds: Vec<String> = u
                        .credentials
                        .iter()
                        .map(|(m, i)| format!("{m} ({i} iterations)"))
                        .collect();
                    writeln!(out, "{}\t{}", u.user, creds.join(", "))?;
                }
            }
        }
        _ => {
            let name = one(&o, "user name")?;
            let client = connect(&o).await?;
            let mechs = if chosen.is_empty() {
                client
                    .describe_user_scram_credentials(&[name.to_string()])
                    .await?
                    .into_iter()
                    .flat_map(|u| u.credentials.into_iter().map(|(m, _)| m))
                    .collect()
            } else {
                chosen
            };
            for m in mechs {
                client.delete_scram_credential(name, m).await?;
                println!("deleted {m} credential of user {name}");
            }
        }
    }
    Ok(())
}

/// The resource an `acl` command names: (type code, name), at most one.
fn acl_resource(o: &Opts) -> Result<Option<(i8, String)>> {
    let mut named = Vec::new();
    if let Some(t) = &o.topic {
        named.push((2, t.clone()));
    }
    if let Some(g) = &o.group {
        named.push((3, g.clone()));
    }
    if o.cluster {
        named.push((4, "kafka-cluster".to_string()));
    }
    if let Some(x) = &o.transactional_id {
        named.push((5, x.clone()));
    }
    if named.len() > 1 {
        bail!("name one resource: --topic, --group, --cluster or --transactional-id");
    }
    Ok(named.pop())
}

fn acl_json(b: &rafka_client::AclBinding) -> serde_json::Value {
    use rafka_client::acls::names::*;
    serde_json::json!({
        "resource_type": name(&RESOURCE_TYPES, b.resource_type),
        "resource_name": b.resource_name,
        "pattern_type": name(&PATTERN_TYPES, b.pattern_type),
        "principal": b.principal,
        "host": b.host,
        "operation": name(&OPERATIONS, b.operation),
        "permission": name(&PERMISSIONS, b.permission),
    })
}

fn acl_text(b: &rafka_client::AclBinding) -> String {
    use rafka_client::acls::names::*;
    format!(
        "{}:{}:{}\t{}\t{}\t{}\t{}",
        name(&RESOURCE_TYPES, b.resource_type),
        name(&PATTERN_TYPES, b.pattern_type),
        b.resource_name,
        b.principal,
        b.host,
        name(&OPERATIONS, b.operation),
        name(&PERMISSIONS, b.permission)
    )
}

async fn acl(args: &[String]) -> Result<()> {
    use rafka_client::acls::names::*;
    use rafka_client::{AclBinding, AclBindingFilter};
    let sub = args.first().map(String::as_str).unwrap_or_default();
    if !["add", "list", "remove"].contains(&sub) {
        bail!("unknown acl command {sub:?}: add, list or remove");
    }
    let o = parse(args.get(1..).unwrap_or_default())?;
    let resource = acl_resource(&o)?;
    let pattern = match &o.pattern_type {
        Some(p) => code(&PATTERN_TYPES, p)
            .with_context(|| format!("unknown --resource-pattern-type {p:?}"))?,
        None if sub == "list" => 1,
        None => 3,
    };
    let mut operations = Vec::new();
    for op in &o.operations {
        let c = code(&OPERATIONS, op).with_context(|| format!("unknown --operation {op:?}"))?;
        operations.push(c);
    }
    if let Some(p) = &o.principal {
        if !p.contains(':') {
            bail!("--principal must be Type:name, e.g. User:alice, got {p:?}");
        }
    }
    let permission = if o.deny { 2 } else { 3 };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match sub {
        "add" => {
            let (rt, name) = resource
                .context("name a resource: --topic, --group, --cluster or --transactional-id")?;
            let principal = o.principal.clone().context("--principal is required")?;
            if operations.is_empty() {
                bail!("give at least one --operation");
            }
            if !(pattern == 3 || pattern == 4) {
                bail!("a binding's pattern type is literal or prefixed");
            }
            let bindings: Vec<AclBinding> = operations
                .iter()
                .map(|op| AclBinding {
                    resource_type: rt,
                    resource_name: name.clone(),
                    pattern_type: pattern,
                    principal: principal.clone(),
                    host: o.host.clone().unwrap_or_else(|| "*".into()),
                    operation: *op,
                    permission,
                })
                .collect();
            let client = connect(&o).await?;
            client
                .create_acls(&bindings)
                .await
                .context("cannot add the ACLs")?;
            for b in &bindings {
                writeln!(out, "added {}", acl_text(b))?;
            }
        }
        "list" => {
            let filter = AclBindingFilter {
                resource_type: resource.as_ref().map_or(1, |r| r.0),
                resource_name: resource.map(|r| r.1),
                pattern_type: pattern,
                principal: o.principal.clone(),
                host: o.host.clone(),
                ..AclBindingFilter::default()
            };
            let client = connect(&o).await?;
            for b in client
                .describe_acls(&filter)
                .await
                .context("cannot list the ACLs")?
            {
                if o.json {
                    writeln!(out, "{}", acl_json(&b))?;
                } else {
                    writeln!(out, "{}", acl_text(&b))?;
                }
            }
        }
        _ => {
            let (rt, name) = resource
                .context("name a resource: --topic, --group, --cluster or --transactional-id")?;
            let client = connect(&o).await?;
            let ops = if operations.is_empty() {
                vec![1]
            } else {
                operations
            };
            for op in ops {
                let filter = AclBindingFilter {
                    resource_type: rt,
                    resource_name: Some(name.clone()),
                    pattern_type: pattern,
                    principal: o.principal.clone(),
                    host: o.host.clone(),
                    operation: op,
                    permission: if o.deny { 2 } else { 1 },
                };
                for b in client
                    .delete_acls(&filter)
                    .await
                    .context("cannot remove the ACLs")?
                {
                    writeln!(out, "removed {}", acl_text(&b))?;
                }
            }
        }
    }
    Ok(())
}

async fn quota(args: &[String]) -> Result<()> {
    let sub = args.first().map(String::as_str).unwrap_or_default();
    if !["set", "describe"].contains(&sub) {
        bail!("unknown quota command {sub:?}: set or describe");
    }
    let o = parse(args.get(1..).unwrap_or_default())?;
    if !o.positional.is_empty() {
        bail!("unexpected argument {:?}", o.positional[0]);
    }
    let client = connect(&o).await?;
    if sub == "set" {
        if o.entity.is_empty() {
            bail!("give --user, --client-id or both, or --ip (or their -default forms)");
        }
        let mut ops: Vec<(String, Option<f64>)> = Vec::new();
        for (k, v) in &o.configs {
            let v: f64 = v
                .parse()
                .with_context(|| format!("{k} needs a number, got {v:?}"))?;
            ops.push((k.clone(), Some(v)));
        }
        ops.extend(o.deletes.iter().map(|k| (k.clone(), None)));
        if ops.is_empty() {
            bail!("nothing to change: give --config KEY=VALUE or --delete KEY");
        }
        client.alter_client_quotas(&o.entity, &ops, false).await?;
        println!("quotas of {} changed", entity_text(&o.entity));
        return Ok(());
    }
    let filter: Vec<(String, rafka_client::QuotaMatch)> = o
        .entity
        .iter()
        .map(|(t, n)| {
            let m = match n {
                Some(n) => rafka_client::QuotaMatch::Exact(n.clone()),
                None => rafka_client::QuotaMatch::Default,
            };
            (t.clone(), m)
        })
        .collect();
    let mut quotas = client.describe_client_quotas(&filter, false).await?;
    quotas.sort_by(|a, b| a.entity.cmp(&b.entity));
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for q in quotas {
        if o.json {
            let entity: serde_json::Map<String, serde_json::Value> = q
                .entity
                .iter()
                .map(|(t, n)| (t.clone(), serde_json::json!(n)))
                .collect();
            let values: serde_json::Map<String, serde_json::Value> = q
                .values
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::json!(v)))
                .collect();
            writeln!(
                out,
                "{}",
                serde_json::json!({"entity": entity, "quotas": values})
            )?;
        } else {
            let values: Vec<String> = q.values.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(out, "{}\t{}", entity_text(&q.entity), values.join(","))?;
        }
    }
    Ok(())
}

/// `user=alice,client-id=<default>`.
fn entity_text(entity: &[(String, Option<String>)]) -> String {
    entity
        .iter()
        .map(|(t, n)| format!("{t}={}", n.as_deref().unwrap_or("<default>")))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_fills_with_the_input() {
        let half = progress_line(50, 100, 7, Duration::from_secs(1));
        assert_eq!(
            half,
            format!(
                "[{}{}]  50% 7 records, 0.0 MB/s",
                "#".repeat(15),
                " ".repeat(15)
            )
        );
        let done = progress_line(2_000_000, 2_000_000, 9, Duration::from_secs(2));
        assert_eq!(
            done,
            format!("[{}] 100% 9 records, 1.0 MB/s", "#".repeat(30))
        );
        // An empty file is complete at once; more than the total is capped.
        assert!(progress_line(0, 0, 0, Duration::ZERO).contains("100%"));
        assert!(progress_line(150, 100, 1, Duration::from_secs(1))
            .starts_with(&format!("[{}]", "#".repeat(30))));
    }

    #[test]
    fn cleaner_series_of_one_topic_are_read() {
        let text = "\
# TYPE rafka_partition_dirty_ratio gauge
rafka_partition_dirty_ratio{topic=\"c\",partition=\"0\"} 0.25
rafka_partition_dirty_ratio{topic=\"c\",partition=\"1\"} 1
rafka_partition_dirty_ratio{topic=\"other\",partition=\"0\"} 0.5
rafka_partition_clean_bytes{topic=\"c\",partition=\"0\"} 300
rafka_partition_dirty_bytes{topic=\"c\",partition=\"0\"} 100
rafka_partition_size_bytes{topic=\"c\",partition=\"0\"} 400
rafka_partition_last_cleaned_timestamp_seconds{topic=\"c\",partition=\"0\"} 1700000000.5
rafka_log_cleaner_runs_total 3
";
        let c = parse_cleaner_figures(text, "c");
        assert_eq!(c.len(), 2);
        let p0 = c[&0];
        assert_eq!(
            (
                p0.dirty_ratio,
                p0.clean_bytes,
                p0.dirty_bytes,
                p0.last_cleaned_ms
            ),
            (0.25, 300, 100, Some(1_700_000_000_500))
        );
        assert_eq!((c[&1].dirty_ratio, c[&1].last_cleaned_ms), (1.0, None));
        assert!(parse_cleaner_figures(text, "none").is_empty());
    }

    #[test]
    fn json_lines_become_records() {
        let r = json_record(
            "t",
            r#"{"key":"k","value":{"a":1},"headers":{"h":"v"},"partition":2}"#,
        )
        .unwrap();
        assert_eq!(
            format!("{r:?}"),
            format!(
                "{:?}",
                Record::to("t")
                    .key("k")
                    .value("{\"a\":1}")
                    .header("h", "v")
                    .partition(2)
            )
        );
        let r = json_record("t", r#"{"value":null}"#).unwrap();
        assert_eq!(format!("{r:?}"), format!("{:?}", Record::to("t")));
        for bad in [
            r#"[1]"#,
            r#"{"value":"x","extra":1}"#,
            r#"{"partition":-1}"#,
            r#"{"headers":[1]}"#,
            "nope",
        ] {
            assert!(json_record("t", bad).is_err(), "{bad}");
        }
    }
}
