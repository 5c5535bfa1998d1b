//! A PostgreSQL server for the diskless-mode tests: initialised in a scratch directory and
//! run as an unprivileged user (PostgreSQL refuses to run as root), on a free loopback
//! port. One server per test process (`Postgres::shared`); each test takes a database of
//! its own (`fresh_database`). `.ci/run` installs PostgreSQL when it is missing.

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The superuser the scratch cluster is initialised with.
pub const USER: &str = "rafka";

/// A running PostgreSQL server.
pub struct Postgres {
    bin: PathBuf,
    /// The scratch directory: `data/`, the socket and the server log.
    dir: PathBuf,
    _scratch: Option<tempfile::TempDir>,
    /// The loopback port.
    pub port: u16,
    /// Who the server runs as, when this process is root.
    run_as: Option<(u32, u32)>,
    child: Mutex<Option<Child>>,
}

/// Where PostgreSQL's server binaries are: `RAFKA_PG_BINDIR`, the newest
/// `/usr/lib/postgresql/*/bin`, or `pg_config --bindir`.
pub fn bin_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("RAFKA_PG_BINDIR") {
        return Some(d.into());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, b)) = versions.pop() {
        return Some(b);
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let b = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    b.join("initdb").exists().then_some(b)
}

/// The uid and gid of the first of `postgres`, `nobody` in /etc/passwd.
fn unprivileged_user() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    for name in ["postgres", "nobody"] {
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() > 3 && f[0] == name {
                return (f[2].parse().expect("uid"), f[3].parse().expect("gid"));
            }
        }
    }
    panic!("no unprivileged user (postgres or nobody) to run PostgreSQL as");
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Postgres {
    /// The test process's server, started on first use and stopped when the process ends.
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(Postgres::start)
    }

    /// A new server in a new scratch directory.
    pub fn start() -> Postgres {
        let bin = bin_dir().expect(
            "PostgreSQL's server binaries are needed for the diskless tests: \
             `apt-get install postgresql` (.ci/run does) or set RAFKA_PG_BINDIR",
        );
        let scratch = tempfile::Builder::new()
            .prefix("rafka-pg")
            .tempdir()
            .expect("scratch dir");
        let dir = scratch.path().to_path_buf();
        let run_as = is_root().then(unprivileged_user);
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown scratch dir");
        }
        let status = Self::command(&bin, "initdb", run_as)
            .args(["-A", "trust", "-U", USER, "--no-sync", "-E", "UTF8", "-D"])
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .expect("run initdb");
        assert!(status.success(), "initdb failed: {status}");
        let pg = Postgres {
            bin,
            dir,
            _scratch: Some(scratch),
            port: free_port(),
            run_as,
            child: Mutex::new(None),
        };
        pg.start_server();
        pg
    }

    fn command(bin: &Path, program: &str, run_as: Option<(u32, u32)>) -> Command {
        let mut c = Command::new(bin.join(program));
        if let Some((uid, gid)) = run_as {
            c.uid(uid).gid(gid);
        }
        c.env("LC_ALL", "C");
        c
    }

    fn start_server(&self) {
        let log = std::fs::File::create(self.dir.join("server.log")).expect("server log");
        if let Some((uid, gid)) = self.run_as {
            let _ = std::os::unix::fs::chown(self.dir.join("server.log"), Some(uid), Some(gid));
        }
        let child = Self::command(&self.bin, "postgres", self.run_as)
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                // A test cluster: no fsync (a restart is a process restart, not a power
                // loss), room for three brokers' connections per test.
                "-c",
                "fsync=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=32MB",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn postgres");
        // Statics are never dropped: a watchdog stops the server (immediate shutdown) once
        // this test process is gone, however it ended, and removes its scratch directory.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill -QUIT {pg} 2>/dev/null; \
                 while kill -0 {pg} 2>/dev/null; do sleep 0.2; done; rm -rf '{dir}'",
                me = std::process::id(),
                pg = child.id(),
                dir = self.dir.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        *self.child.lock().unwrap() = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            if let Some(status) = self
                .child
                .lock()
                .unwrap()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("postgres exited: {status}\n{}", self.server_log());
            }
            assert!(
                Instant::now() < deadline,
                "postgres not ready in 60 s\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's log so far.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// A connection string for database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// A new, empty database with a name no other test of this process uses; its URL.
    pub fn fresh_database(&self, label: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let clean: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let name = format!(
            "t{}_{}_{clean}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let status = Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .arg(&name)
            .status()
            .expect("run createdb");
        assert!(status.success(), "createdb {name} failed");
        self.url(&name)
    }

    /// Stops the server the hard way (SIGKILL; PostgreSQL recovers from its WAL).
    pub fn kill(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Fast shutdown (SIGINT: open transactions roll back, connections drop).
    pub fn stop(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and data (after `stop` or `kill`).
    pub fn restart(&self) {
        self.stop();
        self.start_server();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
    }
}
