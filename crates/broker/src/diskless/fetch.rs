//! The fetch path of diskless topics.
//!
//! - [`Watermarks`]: each partition's log start offset and high watermark, cached and kept
//!   current by a task LISTENing on `rafka_hw` (every broker's commit notifies it; on
//!   every (re)connection all are read again). Long polls wait on its [`Watermarks::moved`].
//! - [`BatchIndex`]: the `rafka_batches` rows read for fetches, per partition, bounded.
//! - [`read`]: a partition's batches from an offset, byte ranges read through the broker's
//!   one [`super::cache::RangeCache`], each batch's base offset written into its header on
//!   the way out (outside the CRC-32C).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

use rafka_core::RecordBatch;

use super::commit::{parse_payload, Tp};
use super::{Diskless, DisklessError};

/// Log start offset and high watermark per partition.
#[derive(Default)]
pub struct Watermarks {
    map: parking_lot::Mutex<HashMap<Tp, (i64, i64)>>,
    moved: Notify,
}

impl Watermarks {
    /// Moves a partition's marks forward (never back) and wakes the long polls if they
    /// moved.
    pub fn advance(&self, tp: Tp, log_start: i64, hw: i64) {
        let changed = {
            let mut map = self.map.lock();
            let e = map.entry(tp).or_insert((-1, -1));
            let before = *e;
            e.0 = e.0.max(log_start);
            e.1 = e.1.max(hw);
            before != *e
        };
        if changed {
            self.moved.notify_waiters();
        }
    }

    /// The cached marks of `tp`: (log start offset, high watermark).
    pub fn get(&self, tp: Tp) -> Option<(i64, i64)> {
        self.map.lock().get(&tp).copied()
    }

    /// Notified whenever a partition's marks move. Enable the `Notified` before looking
    /// at the marks, so that a move between the look and the wait is not lost.
    pub fn moved(&self) -> &Notify {
        &self.moved
    }

    async fn refresh_all(&self, client: &tokio_postgres::Client) -> Result<(), DisklessError> {
        let rows = client
            .query(
                "SELECT topic_id, partition, log_start_offset, high_watermark \
                 FROM rafka_partitions",
                &[],
            )
            .await?;
        for r in rows {
            self.advance((r.get(0), r.get(1)), r.get(2), r.get(3));
        }
        Ok(())
    }
}

/// The LISTEN task: keeps `marks` current until `marks` is dropped elsewhere (the task is
/// aborted with its `Diskless`).
pub(crate) async fn listen(conn: String, marks: Arc<Watermarks>) {
    loop {
        if let Err(e) = listen_once(&conn, &marks).await {
            tracing::warn!(error = %e, "rafka_hw listener lost its connection; reconnecting");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Notifications queued between the connection and the task applying them.
const NOTIFICATIONS_QUEUED: usize = 1024;

async fn listen_once(conn: &str, marks: &Watermarks) -> Result<(), DisklessError> {
    let config: tokio_postgres::Config = conn
        .parse()
        .map_err(|e: tokio_postgres::Error| DisklessError::Config(e.to_string()))?;
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(NOTIFICATIONS_QUEUED);
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_string()).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "rafka_hw listener connection ended");
                    break;
                }
            }
        }
    });
    let _abort = AbortOnDrop(driver);
    client.batch_execute("LISTEN rafka_hw").await?;
    // Moves made while this broker was not listening.
    marks.refresh_all(&client).await?;
    while let Some(payload) = rx.recv().await {
        for (tp, (ls, hw)) in parse_payload(&payload) {
            marks.advance(tp, ls, hw);
        }
    }
    Err(DisklessError::Config("notification stream ended".into()))
}

/// Aborts a task when dropped.
pub(crate) struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One `rafka_batches` row: a partition's run of batches in one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRow {
    /// Offset of its first record.
    pub base_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
    /// The object's key.
    pub key: Arc<str>,
    /// Where the run starts in the object.
    pub byte_offset: u64,
    /// Its length.
    pub byte_length: u64,
    /// How many batches it holds.
    pub batch_count: i32,
    /// The largest batch max timestamp in it.
    pub max_timestamp: i64,
}

/// Rows cached, all partitions together; past it the cache starts over.
const INDEX_ROWS_MAX: usize = 100_000;
/// Rows read from PostgreSQL at a time.
const INDEX_ROWS_PER_READ: i64 = 64;

/// A partition's cached rows by base offset.
type PartitionRows = BTreeMap<i64, Arc<IndexRow>>;

/// The batch index rows read for fetches, per partition (bounded by `INDEX_ROWS_MAX`).
#[derive(Default)]
pub struct BatchIndex {
    inner: parking_lot::Mutex<(HashMap<Tp, PartitionRows>, usize)>,
}

impl BatchIndex {
    /// Cached rows from the one holding `offset`, contiguous, up to `max_rows`.
    fn cached_from(&self, tp: Tp, offset: i64, max_rows: usize) -> Vec<Arc<IndexRow>> {
        let inner = self.inner.lock();
        let Some(rows) = inner.0.get(&tp) else {
            return Vec::new();
        };
        let mut out: Vec<Arc<IndexRow>> = Vec::new();
        let mut next = offset;
        for (_, r) in rows
            .range(..=offset)
            .next_back()
            .into_iter()
            .chain(rows.range(offset + 1..))
        {
            if out.len() >= max_rows || r.base_offset > next || r.last_offset < next {
                break;
            }
            next = r.last_offset + 1;
            out.push(r.clone());
        }
        out
    }

    fn insert(&self, tp: Tp, rows: &[Arc<IndexRow>]) {
        let mut inner = self.inner.lock();
        if inner.1 + rows.len() > INDEX_ROWS_MAX {
            inner.0.clear();
            inner.1 = 0;
        }
        let (map, count) = &mut *inner;
        let m = map.entry(tp).or_default();
        for r in rows {
            if m.insert(r.base_offset, r.clone()).is_none() {
                *count += 1;
            }
        }
    }

    /// Rows cached now (for tests).
    pub fn len(&self) -> usize {
        self.inner.lock().1
    }

    /// Whether no row is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows from the one holding `offset`, contiguous, at most `max_rows`: from the
    /// cache, the rest read from PostgreSQL.
    pub async fn rows_from(
        &self,
        d: &Diskless,
        tp: Tp,
        offset: i64,
        max_rows: usize,
    ) -> Result<Vec<Arc<IndexRow>>, DisklessError> {
        let mut rows = self.cached_from(tp, offset, max_rows);
        let next = rows.last().map_or(offset, |r| r.last_offset + 1);
        if rows.len() >= max_rows {
            return Ok(rows);
        }
        let client = d.pg.get().await?;
        let read = client
            .query(
                "SELECT b.base_offset, b.last_offset, o.object_key, b.byte_offset, \
                 b.byte_length, b.batch_count, b.max_timestamp \
                 FROM rafka_batches b JOIN rafka_objects o ON o.object_id = b.object_id \
                 WHERE b.topic_id = $1 AND b.partition = $2 AND b.base_offset >= \
                 coalesce((SELECT max(base_offset) FROM rafka_batches WHERE topic_id = $1 \
                 AND partition = $2 AND base_offset <= $3), 0) \
                 ORDER BY b.base_offset LIMIT $4",
                &[&tp.0, &tp.1, &next, &INDEX_ROWS_PER_READ],
            )
            .await?;
        let read: Vec<Arc<IndexRow>> = read
            .iter()
            .map(|r| {
                let key: String = r.get(2);
                Arc::new(IndexRow {
                    base_offset: r.get(0),
                    last_offset: r.get(1),
                    key: Arc::from(key),
                    byte_offset: r.get::<_, i64>(3) as u64,
                    byte_length: r.get::<_, i64>(4) as u64,
                    batch_count: r.get(5),
                    max_timestamp: r.get(6),
                })
            })
            .collect();
        self.insert(tp, &read);
        let mut want = next;
        for r in read {
            if rows.len() >= max_rows || r.base_offset > want {
                break;
            }
            if r.last_offset < want {
                continue;
            }
            want = r.last_offset + 1;
            rows.push(r);
        }
        Ok(rows)
    }
}

/// Why a partition could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The partition does not exist.
    #[error("unknown partition")]
    Unknown,
    /// The offset is outside [log start, high watermark] (OFFSET_OUT_OF_RANGE).
    #[error("offset {offset} is outside [{log_start}, {high_watermark}]")]
    OutOfRange {
        /// The offset asked for.
        offset: i64,
        /// The partition's log start offset.
        log_start: i64,
        /// Its high watermark.
        high_watermark: i64,
    },
    /// The coordinator or the object store failed.
    #[error(transparent)]
    Diskless(#[from] DisklessError),
}

/// What a read returns.
#[derive(Debug, Clone)]
pub struct PartitionRead {
    /// Whole batches, base offsets written.
    pub records: Bytes,
    /// The partition's log start offset.
    pub log_start: i64,
    /// Its high watermark.
    pub high_watermark: i64,
}

/// A partition's log start offset and high watermark: cached, else read (and cached).
pub async fn watermarks(d: &Diskless, tp: Tp) -> Result<Option<(i64, i64)>, DisklessError> {
    if let Some(m) = d.marks.get(tp) {
        return Ok(Some(m));
    }
    let client = d.pg.get().await?;
    let row = client
        .query_opt(
            "SELECT log_start_offset, high_watermark FROM rafka_partitions \
             WHERE topic_id = $1 AND partition = $2",
            &[&tp.0, &tp.1],
        )
        .await?;
    Ok(row.and_then(|r| {
        d.marks.advance(tp, r.get(0), r.get(1));
        d.marks.get(tp)
    }))
}

/// Index rows read per fetch of one partition at most.
const ROWS_PER_FETCH: usize = 256;

/// Whole batches of `tp` from the one holding `offset`, up to `limit` bytes (at least one
/// batch when there is one).
pub async fn read(
    d: &Diskless,
    tp: Tp,
    offset: i64,
    limit: usize,
) -> Result<PartitionRead, ReadError> {
    let (log_start, hw) = watermarks(d, tp).await?.ok_or(ReadError::Unknown)?;
    if offset < log_start || offset > hw {
        return Err(ReadError::OutOfRange {
            offset,
            log_start,
            high_watermark: hw,
        });
    }
    let mut out = BytesMut::new();
    let mut next = offset;
    'rows: while next < hw && out.len() < limit.max(1) {
        let rows = d.index.rows_from(d, tp, next, ROWS_PER_FETCH).await?;
        if rows.is_empty() {
            break;
        }
        let before = next;
        for row in rows {
            let bytes = d
                .ranges
                .get(&d.store, &row.key, row.byte_offset, row.byte_length)
                .await
                .map_err(|e| DisklessError::Config(format!("object store: {e}")))?;
            let mut pos = 0usize;
            let mut base = row.base_offset;
            while pos < bytes.len() {
                let Some(len) = rafka_core::batch::batch_len_at(&bytes[pos..]) else {
                    break;
                };
                let Some(slice) = bytes.get(pos..pos + len) else {
                    break;
                };
                let batch = RecordBatch::parse(bytes.slice_ref(slice))
                    .map_err(|e| DisklessError::Config(format!("stored batch: {e}")))?;
                let last = base + i64::from(batch.last_offset_delta());
                if base >= hw {
                    break 'rows;
                }
                if last >= next {
                    if !out.is_empty() && out.len() + len > limit {
                        break 'rows;
                    }
                    let at = out.len();
                    out.extend_from_slice(slice);
                    out[at..at + 8].copy_from_slice(&base.to_be_bytes());
                    next = last + 1;
                }
                base = last + 1;
                pos += len;
            }
        }
        if next == before {
            // The index rows did not reach `next` (a row that does not hold what it says).
            break;
        }
    }
    Ok(PartitionRead {
        records: out.freeze(),
        log_start,
        high_watermark: hw,
    })
}

/// A diskless topic by id: from the cache, else after reading the catalog again.
pub async fn topic_by_id(
    d: &Diskless,
    id: Uuid,
) -> Result<Option<Arc<super::catalog::DisklessTopic>>, DisklessError> {
    let find = || d.catalog.all().into_iter().find(|t| t.id == id);
    if let Some(t) = find() {
        return Ok(Some(t));
    }
    d.catalog.refresh(&d.pg).await?;
    Ok(find())
}
