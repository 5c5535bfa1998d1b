//! `audit_log`: one JSON line per produce partition and per topic admin operation (time,
//! principal, client id, peer, listener, api, topic, partition, records, bytes, error code,
//! outcome, latency),
//! appended to a file and rotated by size.
//!
//! Off the request path: `on_response` formats the line and hands it to a writer thread
//! through a bounded channel (`limits::AUDIT_LOG_QUEUE_MAX`); when the queue is full the
//! line is dropped and counted rather than delaying the request.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Mutex;
use std::thread::JoinHandle;

use serde::Deserialize;

use rafka_core::limits::AUDIT_LOG_QUEUE_MAX;

use super::{topic_filter, BuildError};
use crate::hook::{Api, Hook, Interest, Outcome, RequestContext, Stages, TopicFilter};

/// YAML settings of `type: audit_log`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditLogConfig {
    /// The file lines are appended to (created if missing).
    pub path: PathBuf,
    /// Rotate when the file would grow past this. Default 100 MiB.
    pub max_bytes: Option<u64>,
    /// Rotated files kept (`audit.log.1` is the newest). Default 5.
    pub max_files: Option<usize>,
    /// Topic patterns; empty means every topic.
    pub topics: Vec<String>,
}

/// The `audit_log` hook. Dropping it closes the queue and waits for the writer to flush.
pub struct AuditLog {
    topics: TopicFilter,
    tx: Option<SyncSender<String>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    pub(crate) fn new(c: &AuditLogConfig) -> Result<AuditLog, BuildError> {
        if c.path.as_os_str().is_empty() {
            return Err(BuildError::Invalid("path: required".into()));
        }
        let max_bytes = c.max_bytes.unwrap_or(100 * 1024 * 1024);
        if max_bytes < 1024 {
            return Err(BuildError::Invalid(format!(
                "max_bytes {max_bytes}: at least 1024"
            )));
        }
        let file = RotatingFile::open(c.path.clone(), max_bytes, c.max_files.unwrap_or(5))
            .map_err(|e| BuildError::Invalid(format!("cannot open {}: {e}", c.path.display())))?;
        let (tx, rx) = sync_channel(AUDIT_LOG_QUEUE_MAX);
        let writer = std::thread::Builder::new()
            .name("rafka-audit-log".into())
            .spawn(move || write_lines(rx, file))
            .map_err(|e| BuildError::Invalid(format!("cannot start the writer thread: {e}")))?;
        Ok(AuditLog {
            topics: topic_filter(&c.topics)?,
            tx: Some(tx),
            writer: Mutex::new(Some(writer)),
            dropped: AtomicU64::new(0),
        })
    }

    /// Lines dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn send(&self, line: String) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed);
                if n.checked_rem(1000) == Some(0) {
                    tracing::warn!(dropped = n + 1, "audit log queue full; dropping lines");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.tx.take();
        let handle = match self.writer.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

fn audited(api: Api) -> bool {
    matches!(
        api,
        Api::Produce
            | Api::CreateTopics
            | Api::DeleteTopics
            | Api::CreatePartitions
            | Api::AlterConfigs
            | Api::IncrementalAlterConfigs
    )
}

impl Hook for AuditLog {
    fn name(&self) -> &str {
        "audit_log"
    }

    fn interest(&self) -> Interest {
        Interest {
            stages: Stages::RESPONSE,
            topics: self.topics.clone(),
            record_access: false,
        }
    }

    fn on_response(&self, ctx: &RequestContext, outcome: &Outcome) {
        if !audited(ctx.api) {
            return;
        }
        let now = rafka_core::Timestamp::now().0;
        for item in &outcome.items {
            if !self.topics.matches(&item.topic) {
                continue;
            }
            let line = serde_json::json!({
                "time": now,
                "principal": ctx.session.principal.to_string(),
                "client_id": ctx.client_id,
                "peer": ctx.peer.to_string(),
                "listener": ctx.session.listener,
                "api": ctx.api.name(),
                "topic": item.topic,
                "partition": item.partition,
                "records": item.records,
                "bytes": item.bytes,
                "error_code": item.error_code.0,
                "outcome": if item.error_code.is_error() { "error" } else { "ok" },
                "latency_us": outcome.latency.as_micros() as u64,
            });
            self.send(line.to_string());
        }
    }
}

/// The audit file, rotated by size: `path` → `path.1` → ... → `path.<max_files>` (dropped).
struct RotatingFile {
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    max_bytes: u64,
    max_files: usize,
}

fn open_append(path: &Path) -> std::io::Result<(BufWriter<File>, u64)> {
    let f = OpenOptions::new().create(true).append(true).open(path)?;
    let size = f.metadata()?.len();
    Ok((BufWriter::new(f), size))
}

fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl RotatingFile {
    fn open(path: PathBuf, max_bytes: u64, max_files: usize) -> std::io::Result<RotatingFile> {
        let (out, size) = open_append(&path)?;
        Ok(RotatingFile {
            path,
            out,
            size,
            max_bytes,
            max_files,
        })
    }

    fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        let n = line.len() as u64 + 1;
        if self.size > 0 && self.size + n > self.max_bytes {
            self.rotate()?;
        }
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.size += n;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        if self.max_files == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for i in (1..self.max_files).rev() {
                let from = rotated(&self.path, i);
                if from.exists() {
                    std::fs::rename(&from, rotated(&self.path, i + 1))?;
                }
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        let (out, size) = open_append(&self.path)?;
        self.out = out;
        self.size = size;
        Ok(())
    }
}

/// The writer thread: drains whatever is queued, flushes, waits for more. Ends when the
/// hook is dropped.
fn write_lines(rx: Receiver<String>, mut file: RotatingFile) {
    let mut failing = false;
    while let Ok(first) = rx.recv() {
        let mut result = file.write_line(&first);
        while let Ok(line) = rx.try_recv() {
            result = result.and_then(|()| file.write_line(&line));
        }
        result = result.and_then(|()| file.out.flush());
        match result {
            Err(e) if !failing => {
                tracing::error!(path = %file.path.display(), error = %e, "audit log write failed");
                failing = true;
            }
            Err(_) => {}
            Ok(()) => failing = false,
        }
    }
    let _ = file.out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hook::{ErrorCode, OutcomeItem};
    use std::time::Duration;

    fn ctx(api: Api) -> RequestContext {
        RequestContext {
            api,
            api_version: 9,
            correlation_id: 0,
            client_id: "app".into(),
            peer: "127.0.0.1:1".parse().unwrap(),
            received: rafka_core::Timestamp(0),
            session: std::sync::Arc::new(crate::Session::plaintext(
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            )),
        }
    }

    fn outcome(topic: &str, code: i16) -> Outcome {
        Outcome {
            latency: Duration::from_micros(5),
            error_code: ErrorCode(code),
            items: vec![OutcomeItem {
                topic: topic.into(),
                partition: Some(0),
                error_code: ErrorCode(code),
                records: 3,
                bytes: 100,
            }],
        }
    }

    /// Writes `n` produce outcomes, drops the hook (flush) and returns every file's lines.
    fn check(max_bytes: u64, n: usize) -> Vec<Vec<serde_json::Value>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let hook = AuditLog::new(&AuditLogConfig {
            path: path.clone(),
            max_bytes: Some(max_bytes),
            max_files: Some(2),
            topics: vec![],
        })
        .unwrap();
        for i in 0..n {
            hook.on_response(&ctx(Api::Produce), &outcome("t", (i % 2) as i16));
        }
        hook.on_response(&ctx(Api::Metadata), &outcome("t", 0));
        drop(hook);
        [
            path.clone(),
            rotated(&path, 1),
            rotated(&path, 2),
            rotated(&path, 3),
        ]
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        })
        .collect()
    }

    #[test]
    fn lines_and_rotation() {
        let files = check(1 << 20, 2);
        assert_eq!(files[0].len(), 2);
        let l = &files[0][1];
        assert_eq!(l["api"], "Produce");
        assert_eq!(l["principal"], "User:ANONYMOUS");
        assert_eq!(l["listener"], "PLAINTEXT");
        assert_eq!(l["topic"], "t");
        assert_eq!(l["records"], 3);
        assert_eq!(l["outcome"], "error");
        assert_eq!(files[0][0]["outcome"], "ok");
        // ~200-byte lines in 1 KiB files: the current file, two rotated ones, no fourth.
        let files = check(1024, 30);
        assert!(files[0].len() <= 6 && !files[1].is_empty() && !files[2].is_empty());
        assert!(files[3].is_empty());
    }
}
