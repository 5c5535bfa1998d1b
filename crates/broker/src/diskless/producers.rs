//! Idempotent producer ids unique across the cluster: each broker takes blocks of ids
//! from `rafka_cluster.next_producer_id` (one `UPDATE ... RETURNING` per block) and hands
//! them out from memory.

use super::pg::SharedClient;
use super::DisklessError;

/// Producer ids taken from the coordinator at a time.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// This broker's current block of producer ids.
#[derive(Default)]
pub struct ProducerIds {
    /// The next id to hand out and the end of the block (exclusive).
    block: parking_lot::Mutex<(i64, i64)>,
    /// One block refill at a time.
    refill: tokio::sync::Mutex<()>,
}

impl ProducerIds {
    fn take(&self) -> Option<i64> {
        let mut b = self.block.lock();
        (b.0 < b.1).then(|| {
            b.0 += 1;
            b.0 - 1
        })
    }

    /// A producer id no other broker of the cluster hands out.
    pub async fn next(&self, pg: &SharedClient) -> Result<i64, DisklessError> {
        if let Some(id) = self.take() {
            return Ok(id);
        }
        let _one = self.refill.lock().await;
        if let Some(id) = self.take() {
            return Ok(id);
        }
        let client = pg.get().await?;
        let row = client
            .query_one(
                "UPDATE rafka_cluster SET next_producer_id = next_producer_id + $1 \
                 WHERE id = 1 RETURNING next_producer_id",
                &[&PRODUCER_ID_BLOCK],
            )
            .await?;
        let end: i64 = row.get(0);
        *self.block.lock() = (end - PRODUCER_ID_BLOCK + 1, end);
        Ok(end - PRODUCER_ID_BLOCK)
    }
}
