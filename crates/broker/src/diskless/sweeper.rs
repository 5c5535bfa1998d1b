//! The sweeper: deletes objects nothing will ever read — uploaded but never committed
//! (state 0: the broker died between upload and commit, or its commit failed) and
//! unreferenced (state 2: no batch index row refers to them) — once they are older than
//! `object_grace_ms` (a commit still under way, or a fetch in flight, may need them until
//! then).
//!
//! An object is claimed first (`state` moved to 3 in one statement, which a commit's
//! `WHERE state = 0` then cannot match), then deleted from the store, then its row. A
//! sweeper that dies in between leaves a state-3 row, which the next pass finishes.

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as ObjectPath;

use super::commit::state;
use super::{Diskless, DisklessError};

/// Objects deleted per pass at most.
const SWEEP_BATCH: i64 = 1000;

/// One pass: returns how many objects were deleted.
pub async fn sweep_once(d: &Diskless) -> Result<usize, DisklessError> {
    let grace_ms = i64::try_from(d.config.object_grace_ms).unwrap_or(i64::MAX);
    let client = d.pg.get().await?;
    let rows = client
        .query(
            "UPDATE rafka_objects SET state = $3, state_changed_at = now() \
             WHERE object_id IN (SELECT object_id FROM rafka_objects \
               WHERE (state IN ($4, $5) AND state_changed_at < now() - $1 * interval '1 millisecond') \
                  OR (state = $3 AND state_changed_at < now() - interval '1 minute') \
               ORDER BY state_changed_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
             RETURNING object_id, object_key",
            &[
                &(grace_ms as f64),
                &SWEEP_BATCH,
                &state::DELETING,
                &state::PENDING,
                &state::UNREFERENCED,
            ],
        )
        .await?;
    let mut deleted = 0;
    for r in rows {
        let (id, key): (i64, String) = (r.get(0), r.get(1));
        match d.store.delete(&ObjectPath::from(key.as_str())).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(object = key, error = %e, "sweeper could not delete an object");
                continue;
            }
        }
        client
            .execute(
                "DELETE FROM rafka_objects WHERE object_id = $1 AND state = $2",
                &[&id, &state::DELETING],
            )
            .await?;
        deleted += 1;
    }
    if deleted > 0 {
        tracing::info!(deleted, "sweeper deleted objects");
    }
    Ok(deleted)
}

/// The sweeper task of a diskless broker: a pass every `object_grace_ms / 4` (between 1 s
/// and 60 s). Ends when the broker's `Diskless` is dropped.
pub fn spawn(d: &Arc<Diskless>) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(d);
    let every = Duration::from_millis((d.config.object_grace_ms / 4).clamp(1_000, 60_000));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(d) = weak.upgrade() else { return };
            if let Err(e) = sweep_once(&d).await {
                tracing::warn!(error = %e, "sweeper pass failed");
            }
        }
    })
}

/// Retention of one partition, as Kafka deletes segments: the oldest batch index rows go
/// while their newest record is older than `now_ms - retention_ms` or the rows after them
/// still hold `retention_bytes` (-1: no such limit); the log start offset moves past them
/// and an object left with no row becomes unreferenced (state 2, deleted by the sweeper
/// after the grace period). Returns how many offsets were removed.
pub async fn retain_partition(
    d: &Diskless,
    client: &mut tokio_postgres::Client,
    tp: super::commit::Tp,
    retention_ms: i64,
    retention_bytes: i64,
    now_ms: i64,
) -> Result<i64, DisklessError> {
    let time_cutoff = if retention_ms >= 0 {
        now_ms.saturating_sub(retention_ms)
    } else {
        i64::MIN
    };
    let cut = Cut::Retention {
        time_cutoff,
        retention_bytes,
    };
    Ok(match cut_partition(d, client, tp, cut).await? {
        Cutting::Moved { before, log_start } => log_start - before,
        Cutting::NoPartition | Cutting::OutOfRange => 0,
    })
}

/// DeleteRecords on one partition: the log start offset moves to `offset` (-1: the high
/// watermark), as Kafka's; batches wholly below it go, and objects left with no batch
/// become unreferenced. An offset beyond the high watermark is out of range.
pub async fn delete_records(
    d: &Diskless,
    tp: super::commit::Tp,
    offset: i64,
) -> Result<Cutting, DisklessError> {
    let mut client = super::pg::connect(d.coordinator()).await?;
    cut_partition(d, &mut client, tp, Cut::Before(offset)).await
}

/// What a cut of a partition's head removes.
enum Cut {
    /// Batches past the retention limits (see [`retain_partition`]).
    Retention {
        time_cutoff: i64,
        retention_bytes: i64,
    },
    /// Every offset below this one (-1: the high watermark).
    Before(i64),
}

/// What a cut did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cutting {
    /// The log start offset is now `log_start` (it was `before`).
    Moved {
        /// The log start offset before the cut.
        before: i64,
        /// The log start offset after it.
        log_start: i64,
    },
    /// No such partition.
    NoPartition,
    /// The offset asked for lies beyond the high watermark (or below -1).
    OutOfRange,
}

/// One transaction: the partition row locked, the batch index rows the cut removes
/// deleted, the log start offset moved, objects left with no row marked unreferenced,
/// and the new marks announced.
async fn cut_partition(
    d: &Diskless,
    client: &mut tokio_postgres::Client,
    tp: super::commit::Tp,
    cut: Cut,
) -> Result<Cutting, DisklessError> {
    let tx = client.transaction().await?;
    let Some(row) = tx
        .query_opt(
            "SELECT log_start_offset, high_watermark FROM rafka_partitions \
             WHERE topic_id = $1 AND partition = $2 FOR UPDATE",
            &[&tp.0, &tp.1],
        )
        .await?
    else {
        return Ok(Cutting::NoPartition);
    };
    let (before, hw): (i64, i64) = (row.get(0), row.get(1));
    let (deleted, target) = match cut {
        Cut::Retention {
            time_cutoff,
            retention_bytes,
        } => {
            let deleted = tx
                .query(
                    "WITH r AS (SELECT base_offset, max_timestamp, \
                       sum(byte_length) OVER (ORDER BY base_offset DESC) - byte_length \
                       AS after_bytes FROM rafka_batches WHERE topic_id = $1 AND partition = $2), \
                     keep AS (SELECT coalesce(min(base_offset), 9223372036854775807) AS cut \
                       FROM r WHERE NOT (max_timestamp < $3::bigint \
                         OR ($4::bigint >= 0 AND after_bytes >= $4::bigint))) \
                     DELETE FROM rafka_batches b USING keep \
                     WHERE b.topic_id = $1 AND b.partition = $2 AND b.base_offset < keep.cut \
                     RETURNING b.last_offset, b.object_id",
                    &[&tp.0, &tp.1, &time_cutoff, &retention_bytes],
                )
                .await?;
            let Some(target) = deleted.iter().map(|r| r.get::<_, i64>(0) + 1).max() else {
                return Ok(Cutting::Moved {
                    before,
                    log_start: before,
                });
            };
            (deleted, target)
        }
        Cut::Before(offset) => {
            let target = if offset == -1 { hw } else { offset };
            if target < 0 || target > hw {
                return Ok(Cutting::OutOfRange);
            }
            let deleted = tx
                .query(
                    "DELETE FROM rafka_batches WHERE topic_id = $1 AND partition = $2 \
                     AND last_offset < $3 RETURNING last_offset, object_id",
                    &[&tp.0, &tp.1, &target],
                )
                .await?;
            (deleted, target)
        }
    };
    let mut objects: Vec<i64> = deleted.iter().map(|r| r.get(1)).collect();
    objects.sort_unstable();
    objects.dedup();
    let marks = tx
        .query_one(
            "UPDATE rafka_partitions SET log_start_offset = greatest(log_start_offset, $3) \
             WHERE topic_id = $1 AND partition = $2 \
             RETURNING log_start_offset, high_watermark",
            &[&tp.0, &tp.1, &target],
        )
        .await?;
    let (log_start, hw): (i64, i64) = (marks.get(0), marks.get(1));
    // Locked first, so that two partitions' retention of one object see each other's
    // deletions (the second to lock reads after the first committed).
    tx.query(
        "SELECT object_id FROM rafka_objects WHERE object_id = ANY($1) \
         ORDER BY object_id FOR UPDATE",
        &[&objects],
    )
    .await?;
    tx.execute(
        "UPDATE rafka_objects o SET state = $2, state_changed_at = now() \
         WHERE o.object_id = ANY($1) AND o.state = $3 \
         AND NOT EXISTS (SELECT 1 FROM rafka_batches b WHERE b.object_id = o.object_id)",
        &[&objects, &state::UNREFERENCED, &state::COMMITTED],
    )
    .await?;
    for payload in super::commit::notify_payloads(&[(tp, (log_start, hw))]) {
        tx.execute("SELECT pg_notify('rafka_hw', $1)", &[&payload])
            .await?;
    }
    tx.commit().await?;
    d.marks.advance(tp, log_start, hw);
    Ok(Cutting::Moved { before, log_start })
}

/// Retention of every diskless topic's partitions; `limits` gives a topic's
/// (`retention.ms`, `retention.bytes`). Run on the broker's retention tick.
pub async fn retention_pass(
    d: &Diskless,
    limits: impl Fn(&super::catalog::DisklessTopic) -> (i64, i64),
) -> Result<i64, DisklessError> {
    d.catalog.refresh(&d.pg).await?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.as_millis() as i64);
    let mut removed = 0;
    let mut client = None;
    for t in d.catalog.all() {
        let (ms, bytes) = limits(&t);
        if ms < 0 && bytes < 0 {
            continue;
        }
        for p in 0..t.partitions {
            let c = match &mut client {
                Some(c) => c,
                None => client.insert(super::pg::connect(d.coordinator()).await?),
            };
            match retain_partition(d, c, (t.id, p), ms, bytes, now_ms).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(topic = %t.name, partition = p, offsets = n, "retention removed records");
                    removed += n;
                }
                Err(e) => {
                    tracing::warn!(topic = %t.name, partition = p, error = %e, "diskless retention failed")
                }
            }
        }
    }
    Ok(removed)
}
