//! `RAFKA_BENCH_ONLY=floor`: what the broker spends per byte against what this machine
//! spends per byte on the bare work alone, in the same run.
//!
//! The floor of produce is a process that receives the bytes over loopback TCP into one
//! reused 1 MiB buffer, takes their CRC-32C, and writes them to a file (page cache, no
//! fsync) — the three passes a broker cannot avoid. It is measured in steps (receive
//! only; receive and CRC; all three) so each pass has its price, and once more with every
//! write starting 61 bytes into a page, as a log's batches land wherever the one before
//! ended: the page cache charges more for writes that do not start on a page boundary
//! (smaller folios), and a broker cannot choose where a batch starts. The floor of consume is a
//! process sending a file of the same bytes, already in the page cache, to a loopback
//! reader in 1 MiB answers: with `sendfile` under `TCP_CORK` per answer (no copy through
//! user space; the broker does the same with `splice` through a larger pipe), and by
//! reading into a buffer and writing it (the copying path). The receive floor reads whole
//! 1 MiB frames and writes each with one call, as the broker writes a batch.
//! Each floor process is this bench binary re-run in a role; it counts its own CPU time
//! (utime + stime from /proc/self/stat) around the work, so start-up is not in it, just as
//! the broker's figure is taken around each workload.
//!
//! Every reading starts after [`SETTLE`] of quiet. On this VM the guest reports free
//! memory to the hypervisor (virtio-balloon free page reporting), and the first touch of a
//! reported page costs a host fault charged to whoever touches it: a process writing 1 GB
//! of new page cache pays about twice the CPU when the free pages were reported as when
//! they were freed a moment before. Settling puts every reading in the reported state, so
//! neither the broker nor a floor inherits pages another reading just freed.
//!
//! Alternated with the floors, `RAFKA_BENCH_ROUNDS` times (default 3), one release broker
//! (defaults: log engine, zero-copy fetch) takes produce 1 KiB acks=1 and a consume from
//! the start of the same number of bytes from librdkafka. The table gives medians (ranges)
//! and the broker's cost over the floor's.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};

use super::full_cache::{self, FullCache};
use super::{
    common, consume_with, cpu_seconds, create_topic, env_num, median_range, perf_record, perf_stop,
    Server,
};

/// The environment variable naming a floor process's role.
const ROLE: &str = "RAFKA_BENCH_FLOOR_ROLE";

/// Bytes per read and per answer.
const CHUNK: usize = 1 << 20;

/// Where the unaligned writer's writes start within a page (a record batch's header is 61
/// bytes).
const UNALIGNED: usize = 61;

/// Quiet before each reading: long enough for the kernel to report freed pages (it
/// reports free blocks two seconds after they appear).
const SETTLE: std::time::Duration = std::time::Duration::from_secs(5);

/// What a floor process does with the bytes.
#[derive(Clone, Copy)]
enum Role {
    /// Receive only.
    Receive,
    /// Receive and CRC-32C.
    ReceiveCrc,
    /// Receive, CRC-32C, write to a file.
    ReceiveCrcWrite,
    /// The same, every write starting [`UNALIGNED`] bytes past a page boundary, as a log's
    /// batches do: they follow each other at whatever offset the last one ended.
    ReceiveCrcWriteUnaligned,
    /// Send a file with `sendfile`, corked per answer.
    SendFile,
    /// Send a file by reading it into a buffer and writing that.
    SendCopy,
}

impl Role {
    const ALL: [Role; 6] = [
        Role::Receive,
        Role::ReceiveCrc,
        Role::ReceiveCrcWrite,
        Role::ReceiveCrcWriteUnaligned,
        Role::SendFile,
        Role::SendCopy,
    ];

    fn name(self) -> &'static str {
        match self {
            Role::Receive => "receive",
            Role::ReceiveCrc => "receive+crc",
            Role::ReceiveCrcWrite => "receive+crc+write",
            Role::ReceiveCrcWriteUnaligned => "receive+crc+write@61",
            Role::SendFile => "sendfile",
            Role::SendCopy => "read+write",
        }
    }

    fn sends(self) -> bool {
        matches!(self, Role::SendFile | Role::SendCopy)
    }
}

/// If this process was started as a floor process, plays that role and returns true.
/// Its stdout: the port it listens on, then (when done) its CPU-seconds for the work.
pub fn child() -> bool {
    let Ok(spec) = std::env::var(ROLE) else {
        return false;
    };
    // spec: "<role> <bytes> <file>"
    let f: Vec<&str> = spec.split_whitespace().collect();
    let role = Role::ALL
        .into_iter()
        .find(|r| r.name() == f[0])
        .expect("floor role");
    let total: usize = f[1].parse().expect("floor bytes");
    let file = Path::new(f[2]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    println!("{}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    let (mut socket, _) = listener.accept().unwrap();
    let mut buf = vec![0u8; CHUNK];
    let cpu0 = cpu_seconds("self");
    if role.sends() {
        let mut src = std::fs::File::open(file).unwrap();
        let mut sent = 0;
        while sent < total {
            let n = CHUNK.min(total - sent);
            match role {
                // std's copy from a file to a socket is `sendfile` on Linux.
                Role::SendFile => {
                    rustix::net::sockopt::set_tcp_cork(&socket, true).unwrap();
                    let moved = std::io::copy(&mut (&mut src).take(n as u64), &mut socket).unwrap();
                    rustix::net::sockopt::set_tcp_cork(&socket, false).unwrap();
                    assert_eq!(moved as usize, n, "file shorter than {total}");
                }
                _ => {
                    src.read_exact(&mut buf[..n]).unwrap();
                    socket.write_all(&buf[..n]).unwrap();
                }
            }
            sent += n;
        }
    } else {
        let mut out = matches!(role, Role::ReceiveCrcWrite | Role::ReceiveCrcWriteUnaligned)
            .then(|| std::fs::File::create(file).unwrap());
        if let (Some(out), Role::ReceiveCrcWriteUnaligned) = (&mut out, role) {
            // Not counted: the bytes before the first batch.
            out.write_all(&buf[..UNALIGNED]).unwrap();
        }
        let mut got = 0;
        let mut crc = 0u32;
        while got < total {
            let n = CHUNK.min(total - got);
            socket.read_exact(&mut buf[..n]).unwrap();
            if !matches!(role, Role::Receive) {
                crc = crc32c::crc32c_append(crc, &buf[..n]);
            }
            if let Some(out) = &mut out {
                out.write_all(&buf[..n]).unwrap();
            }
            got += n;
        }
        std::hint::black_box(crc);
    }
    let cpu = cpu_seconds("self") - cpu0;
    println!("{cpu}");
    true
}

/// Runs one floor process over `total` bytes (`file` is what a sender sends or a writer
/// writes), inside `cache` when given; returns its CPU-seconds per GB.
fn floor(role: Role, total: usize, file: &Path, cache: Option<&FullCache>) -> f64 {
    let mut child = Command::new(std::env::current_exe().expect("bench binary"))
        .env(ROLE, format!("{} {total} {}", role.name(), file.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("floor process");
    if let Some(cache) = cache {
        // Before it is connected to, so before it touches a byte.
        cache.enter(child.id());
    }
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let port: u16 = lines.next().unwrap().unwrap().parse().unwrap();
    let perf = std::env::var_os("RAFKA_BENCH_PERF").and_then(|d| {
        let d = std::path::PathBuf::from(d);
        std::fs::create_dir_all(&d).ok()?;
        perf_record(child.id(), &d.join(format!("floor-{}.data", role.name())))
    });
    let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut buf = vec![7u8; CHUNK];
    let mut moved = 0;
    while moved < total {
        if role.sends() {
            let n = socket.read(&mut buf).unwrap();
            assert!(n > 0, "floor sender stopped at {moved} of {total}");
            moved += n;
        } else {
            let n = CHUNK.min(total - moved);
            socket.write_all(&buf[..n]).unwrap();
            moved += n;
        }
    }
    let cpu: f64 = lines.next().unwrap().unwrap().parse().unwrap();
    perf_stop(perf);
    child.wait().unwrap();
    cpu / (total as f64 / 1e9)
}

/// The bench: floors and the broker alternated, one table.
pub fn run(dir: &Path, records: usize) {
    let rounds = env_num("RAFKA_BENCH_ROUNDS", 3);
    let total = records * 1024;
    let source = dir.join("floor-source.bin");
    {
        // In the page cache for the senders, as the broker's segments are for its consume.
        let mut f = std::fs::File::create(&source).unwrap();
        let chunk = vec![7u8; CHUNK];
        let mut written = 0;
        while written < total {
            let n = CHUNK.min(total - written);
            f.write_all(&chunk[..n]).unwrap();
            written += n;
        }
    }
    let server = Server::rafka(&dir.join("rafka"));
    let pid = server.pid().to_string();
    let cache = FullCache::from_env(dir, server.pid());
    let fill = || full_cache::fill(cache.as_ref());
    let gb = total as f64 / 1e9;
    // `RAFKA_BENCH_PERF=<dir>`: the broker sampled during each workload, as the floors are.
    let profile = |name: &str| {
        let d = std::path::PathBuf::from(std::env::var_os("RAFKA_BENCH_PERF")?);
        std::fs::create_dir_all(&d).ok()?;
        perf_record(server.pid(), &d.join(name))
    };
    // Per round: the five floors, then broker produce and consume CPU-s/GB.
    let mut floors: Vec<Vec<f64>> = vec![Vec::new(); Role::ALL.len()];
    let mut broker: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        let topic = format!("floor-{round}");
        create_topic(&server.address, &topic, 1);
        fill();
        std::thread::sleep(SETTLE);
        let perf = profile(&format!("rafka-produce-{round}.data"));
        let cpu0 = cpu_seconds(&pid);
        common::librdkafka_produce(&server.address, &topic, records, 1024, "1");
        broker[0].push((cpu_seconds(&pid) - cpu0) / gb);
        perf_stop(perf);
        std::thread::sleep(SETTLE);
        let perf = profile(&format!("rafka-consume-{round}.data"));
        let cpu0 = cpu_seconds(&pid);
        consume_with(&server.address, &topic, records, &[]);
        broker[1].push((cpu_seconds(&pid) - cpu0) / gb);
        perf_stop(perf);
        for (i, role) in Role::ALL.into_iter().enumerate() {
            let file = if role.sends() {
                source.clone()
            } else {
                dir.join(format!("floor-written-{round}.bin"))
            };
            if !role.sends() {
                fill();
            }
            std::thread::sleep(SETTLE);
            floors[i].push(floor(role, total, &file, cache.as_ref()));
            if !role.sends() {
                let _ = std::fs::remove_file(&file);
            }
        }
        eprintln!(
            "  round {round}: broker produce {:.3}, consume {:.3} CPU-s/GB; floors {}",
            broker[0][round],
            broker[1][round],
            Role::ALL
                .iter()
                .zip(&floors)
                .map(|(r, v)| format!("{} {:.3}", r.name(), v[round]))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    server.stop("-TERM");
    let _ = std::fs::remove_file(&source);
    let ratios = |b: &[f64], f: &[f64]| b.iter().zip(f).map(|(b, f)| b / f).collect::<Vec<_>>();
    println!("bytes: {total} per reading; one rafka (release, defaults: log engine, zero-copy fetch), librdkafka produce 1 KiB acks=1 and consume from the start; floor processes over loopback TCP; medians (ranges) of {rounds} alternated rounds; CPU-seconds per GB; {}", full_cache::describe(cache.as_ref()));
    println!();
    println!("| what | CPU-s/GB | rafka / floor |");
    println!("|---|---:|---:|");
    let row = |name: &str, v: &[f64], ratio: Option<Vec<f64>>| {
        let r = ratio.map_or(String::new(), |r| median_range(&r, 2));
        println!("| {name} | {} | {r} |", median_range(v, 3));
    };
    row("rafka: produce 1 KiB acks=1", &broker[0], None);
    for (i, role) in Role::ALL.into_iter().enumerate() {
        if !role.sends() {
            row(&format!("floor: {}", role.name()), &floors[i], None);
        }
    }
    row(
        "rafka produce against floor receive+crc+write",
        &broker[0],
        Some(ratios(&broker[0], &floors[2])),
    );
    row(
        "rafka produce against floor receive+crc+write@61",
        &broker[0],
        Some(ratios(&broker[0], &floors[3])),
    );
    row("rafka: consume from the start", &broker[1], None);
    row("floor: sendfile", &floors[4], None);
    row("floor: read+write", &floors[5], None);
    row(
        "rafka consume against floor sendfile",
        &broker[1],
        Some(ratios(&broker[1], &floors[4])),
    );
}
