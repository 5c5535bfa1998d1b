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
