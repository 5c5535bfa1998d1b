//! `rafka`: the broker binary. `rafka` alone (or `rafka serve`) runs the broker with
//! `config/config.yaml` when present, else the same defaults built in.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use rafka_broker::{Broker, Config, LogFormat};

mod bench;
mod cli;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The shipped configuration, used when no file is given and `config/config.yaml` is absent.
const EMBEDDED_CONFIG: &str = include_str!("../config/config.yaml");

const USAGE: &str = "\
rafka — a Kafka-compatible streaming broker

USAGE:
    rafka [serve] [OPTIONS]

OPTIONS:
    -c, --config FILE                 YAML config (default: config/config.yaml, else built-in defaults)
        --listen HOST:PORT            override broker.listen (port 0 picks a free port)
        --data-dir DIR                override storage.path
        --storage-type ENGINE         override storage.storage_type (log | memory | rocksdb)
        --advertised-listener HOST:PORT
                                      override broker.advertised_listener
        --admin-listen HOST:PORT      override admin.listen (/metrics, /health/*; \"\" = off)
    -h, --help                        print this help
    -V, --version                     print the version
";

struct Args {
    config: Option<PathBuf>,
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    storage_type: Option<String>,
    advertised: Option<String>,
    admin_listen: Option<String>,
}

fn parse_args() -> Result<Option<Args>> {
    let mut args = Args {
        config: None,
        listen: None,
        data_dir: None,
        storage_type: None,
        advertised: None,
        admin_listen: None,
    };
    let mut it = std::env::args().skip(1).peekable();
    if it.peek().map(String::as_str) == Some("serve") {
        it.next();
    }
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "-c" | "--config" => args.config = Some(PathBuf::from(value(&a)?)),
            "--listen" => args.listen = Some(value(&a)?),
            "--data-dir" => args.data_dir = Some(PathBuf::from(value(&a)?)),
            "--storage-type" => args.storage_type = Some(value(&a)?),
            "--advertised-listener" => args.advertised = Some(value(&a)?),
            "--admin-listen" => args.admin_listen = Some(value(&a)?),
            "-h" | "--help" => {
                print!("{USAGE}\n{}\n{}", cli::USAGE, bench::USAGE);
                return Ok(None);
            }
            "-V" | "--version" => {
                println!("rafka {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    Ok(Some(args))
}

fn load_config(args: &Args) -> Result<Config> {
    let mut cfg = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => {
            let default = PathBuf::from("config/config.yaml");
            if default.exists() {
                Config::from_file(&default)?
            } else {
                Config::from_yaml(EMBEDDED_CONFIG)?
            }
        }
    };
    if !cfg.broker.listeners.is_empty() && (args.listen.is_some() || args.advertised.is_some()) {
        bail!(
            "--listen and --advertised-listener set broker.listen and \
             broker.advertised_listener, which broker.listeners replaces: edit the listeners in \
             the config file instead"
        );
    }
    if let Some(l) = &args.listen {
        cfg.broker.listen = l.clone();
    }
    if let Some(d) = &args.data_dir {
        cfg.storage.path = d.clone();
    }
    if let Some(t) = &args.storage_type {
        cfg.storage.storage_type = t.clone();
    }
    if let Some(a) = &args.advertised {
        cfg.broker.advertised_listener = Some(a.clone());
    }
    if let Some(a) = &args.admin_listen {
        cfg.admin.listen = a.clone();
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Registers SIGINT and SIGTERM handlers now and returns a future that ends at the first
/// of them. Registered before the startup line is printed, so a supervisor that signals as
/// soon as it sees the line gets a clean stop rather than the default kill.
fn stop_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

async fn serve(cfg: Config) -> Result<()> {
    let engine = cfg.storage.storage_type.clone();
    let data = cfg.storage.path.display().to_string();
    let broker = Broker::start(cfg).await.context("broker failed to start")?;
    let stop = stop_signal()?;
    let admin = broker
        .admin_address()
        .map_or_else(|| "off".to_string(), |a| format!("http://{a}/metrics"));
    println!(
        "rafka listening on {} (engine {engine:?}, data {data}, {} partitions recovered, ready in {} ms, admin {admin})",
        broker.bootstrap_address(),
        broker.recovered_partitions(),
        broker.startup_time().as_millis()
    );
    stop.await;
    tracing::info!("shutting down");
    broker.shutdown().await.context("clean shutdown failed")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Logs to stderr at `RUST_LOG` when set, else at `level` (`log.level`), as human-readable
/// lines or JSON objects (`log.format`).
fn init_logging(level: &str, format: LogFormat) -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match EnvFilter::try_from_default_env() {
        Ok(f) => f,
        Err(_) => EnvFilter::try_new(level)
            .with_context(|| format!("log.level {level:?} is not a tracing filter"))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let client_command = matches!(
        args.first().map(String::as_str),
        Some(
            "topic"
                | "produce"
                | "consume"
                | "group"
                | "transactions"
                | "user"
                | "quota"
                | "acl"
                | "bench"
        )
    );
    let result = (|| -> Result<()> {
        if client_command {
            // Client commands print their results; their logs stay quiet unless asked for.
            init_logging("warn", LogFormat::Human)?;
            runtime()?.block_on(cli::run(&args))?;
            return Ok(());
        }
        let Some(args) = parse_args()? else {
            return Ok(());
        };
        let cfg = load_config(&args)?;
        init_logging(&cfg.log.level, cfg.log.format)?;
        runtime()?.block_on(serve(cfg))
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rafka: {e:#}");
            ExitCode::FAILURE
        }
    }
}
