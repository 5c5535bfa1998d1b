//! `RAFKA_BENCH_PAGE_CACHE_MIB=<MiB>`: measure with the page cache full, as on a broker
//! that has been running for a while.
//!
//! A long-running broker's memory is all page cache (its older segments); every new page
//! it writes is one the kernel reclaims from that cache. A freshly booted VM is the other
//! extreme: its memory is free, and on this one free memory is reported to the hypervisor
//! (virtio-balloon free page reporting), so the first touch of each page costs a host
//! fault charged to whoever touches it — a bare 1 MiB-write loop here spent 1.5–2.8
//! CPU-seconds per GB writing into free memory against 0.22–0.24 into a full cache.
//!
//! To measure the long-running state without filling the whole machine, the measured
//! processes (the broker, a floor writer) run in a memory cgroup of the given size whose
//! page cache is filled before each reading with a ballast file written and synced by a
//! process in the same cgroup. The cgroup's memory is then full of clean, older pages;
//! what the measured process writes is charged to the cgroup and comes from reclaiming
//! the ballast, the oldest pages, first. Size the cgroup above the data a round writes plus
//! the broker's own memory, so a consume after the produce still finds its records cached.
//!
//! Works with the cgroup v2 hierarchy (`memory.max`) or v1's memory controller
//! (`memory.limit_in_bytes`); needs the right to create a cgroup (root here).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment variable asking for it, in MiB.
pub const VAR: &str = "RAFKA_BENCH_PAGE_CACHE_MIB";

/// A memory cgroup, removed when dropped.
pub struct FullCache {
    dir: PathBuf,
    bytes: u64,
    ballast: PathBuf,
}

impl FullCache {
    /// The cgroup `RAFKA_BENCH_PAGE_CACHE_MIB` asks for, with its ballast file in
    /// `scratch` and the `broker` process already in it; None when the variable is unset.
    /// Panics, saying why, when it is set and no memory cgroup can be made (a reading
    /// taken without it would be the other state, silently).
    pub fn from_env(scratch: &Path, broker: u32) -> Option<FullCache> {
        let mib: u64 = std::env::var(VAR).ok()?.parse().expect(VAR);
        let name = format!("rafka-bench-{}", std::process::id());
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers");
        let (dir, limit_file) = if std::fs::read_to_string(v2).is_ok_and(|c| c.contains("memory")) {
            let _ = std::fs::write("/sys/fs/cgroup/cgroup.subtree_control", "+memory");
            (Path::new("/sys/fs/cgroup").join(name), "memory.max")
        } else {
            (
                Path::new("/sys/fs/cgroup/memory").join(name),
                "memory.limit_in_bytes",
            )
        };
        let bytes = mib << 20;
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join(limit_file), bytes.to_string()))
            .unwrap_or_else(|e| panic!("{VAR}: cannot make memory cgroup {}: {e}", dir.display()));
        let cache = FullCache {
            dir,
            bytes,
            ballast: scratch.join("page-cache-ballast.bin"),
        };
        cache.enter(broker);
        Some(cache)
    }

    /// Moves a process (all its threads) into the cgroup; what it allocates from now on is
    /// charged there.
    pub fn enter(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap_or_else(|e| {
            panic!("{VAR}: cannot move {pid} into {}: {e}", self.dir.display())
        });
    }

    /// Fills the cgroup's memory with clean page cache: a process inside it writes a new
    /// ballast file of the cgroup's size and syncs it (the previous ballast deleted
    /// first). Pages written once sit on the inactive list, the ballast's oldest of all
    /// once the reading starts, so they are what the kernel reclaims first; a ballast
    /// rewritten in place or read again would be promoted to the active list instead.
    pub fn fill(&self) {
        let _ = std::fs::remove_file(&self.ballast);
        let mib = self.bytes >> 20;
        let dd = format!(
            "dd if=/dev/zero of={f} bs=1M count={mib} conv=fsync status=none",
            f = self.ballast.display(),
        );
        let status = inside(Some(self), &dd)
            .status()
            .expect("sh for the ballast");
        assert!(status.success(), "{VAR}: ballast writer failed: {status}");
    }
}

/// A shell running `command` inside the cgroup when there is one (it moves itself in,
/// then execs), else as it is.
pub fn inside(cache: Option<&FullCache>, command: &str) -> Command {
    let script = match cache {
        Some(c) => format!(
            "echo $$ > {procs} && exec {command}",
            procs = c.dir.join("cgroup.procs").display()
        ),
        None => format!("exec {command}"),
    };
    let mut sh = Command::new("sh");
    sh.args(["-c", &script]);
    sh
}

/// [`FullCache::fill`] when there is a cgroup.
pub fn fill(cache: Option<&FullCache>) {
    if let Some(cache) = cache {
        cache.fill();
    }
}

/// The page cache's state for a table's header.
pub fn describe(cache: Option<&FullCache>) -> String {
    match cache {
        Some(c) => format!(
            "page cache full: measured processes in a {} MiB memory cgroup filled with a synced ballast file before each reading",
            c.bytes >> 20
        ),
        None => "page cache: the machine's free memory".to_string(),
    }
}

impl Drop for FullCache {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ballast);
        // Fails while a process is still inside (a broker not yet reaped); harmless.
        let _ = std::fs::remove_dir(&self.dir);
    }
}
