//! Committed offsets of groups in a diskless cluster, kept in PostgreSQL so that the broker
//! that coordinates a group after another one left finds them.
//!
//! Only one broker may write a group's offsets: before its first read or write of a group
//! a broker claims it (`rafka_groups.coordinator` = itself, `coordinator_epoch` bumped),
//! and every write is conditional on that claim still holding — the group row is locked
//! (`FOR SHARE`) by the write, so a takeover waits for a write in progress and a write
//! after a takeover fails. A broker that finds itself fenced forgets its claim and answers
//! NOT_COORDINATOR; the client looks the coordinator up again.

use std::collections::HashMap;

use super::pg::SharedClient;
use super::DisklessError;

/// Groups whose claims are remembered at most; past it the memory is cleared (the next
/// request of each group claims it again, which is harmless).
const CLAIMS_MAX: usize = 100_000;

/// One committed offset: topic, partition, offset, leader epoch, metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Topic name.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Next offset to consume.
    pub offset: i64,
    /// Leader epoch, or -1.
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: String,
    /// When it was committed (ms).
    pub commit_timestamp: i64,
}

/// This broker's claims on groups (group → coordinator epoch).
#[derive(Default)]
pub struct GroupOffsets {
    claims: parking_lot::Mutex<HashMap<String, i64>>,
}

impl GroupOffsets {
    /// This broker's epoch for `group`, claiming the group (bumping its epoch, which
    /// fences any other broker) if it holds no claim yet.
    async fn claim(
        &self,
        pg: &SharedClient,
        node_id: i32,
        group: &str,
    ) -> Result<i64, DisklessError> {
        if let Some(e) = self.claims.lock().get(group) {
            return Ok(*e);
        }
        let client = pg.get().await?;
        let row = client
            .query_one(
                "INSERT INTO rafka_groups (group_id, coordinator, coordinator_epoch) \
                 VALUES ($1, $2, 1) ON CONFLICT (group_id) DO UPDATE SET \
                 coordinator = EXCLUDED.coordinator, \
                 coordinator_epoch = rafka_groups.coordinator_epoch + 1 \
                 RETURNING coordinator_epoch",
                &[&group, &node_id],
            )
            .await?;
        let epoch: i64 = row.get(0);
        tracing::info!(
            group,
            node_id,
            epoch,
            "took over the group's committed offsets"
        );
        let mut claims = self.claims.lock();
        if claims.len() >= CLAIMS_MAX {
            claims.clear();
        }
        claims.insert(group.to_string(), epoch);
        Ok(epoch)
    }

    /// A write found the claim at `epoch` gone: forgets it and says so (always false, the
    /// write's answer).
    fn fenced(&self, group: &str, node_id: i32, epoch: i64) -> bool {
        tracing::warn!(
            group,
            node_id,
            epoch,
            "fenced: another broker took the group over"
        );
        self.forget(group);
        false
    }

    /// Forgets the claim on `group` (this broker no longer coordinates it, or was fenced).
    pub fn forget(&self, group: &str) {
        self.claims.lock().remove(group);
    }

    /// Writes `offsets` of `group`, if this broker's claim still holds. `Ok(false)`: it
    /// does not (another broker took the group over): nothing was written.
    pub async fn commit(
        &self,
        pg: &SharedClient,
        node_id: i32,
        group: &str,
        offsets: &[Committed],
    ) -> Result<bool, DisklessError> {
        if offsets.is_empty() {
            return Ok(true);
        }
        let epoch = self.claim(pg, node_id, group).await?;
        let topics: Vec<&str> = offsets.iter().map(|o| o.topic.as_str()).collect();
        let partitions: Vec<i32> = offsets.iter().map(|o| o.partition).collect();
        let values: Vec<i64> = offsets.iter().map(|o| o.offset).collect();
        let epochs: Vec<i32> = offsets.iter().map(|o| o.leader_epoch).collect();
        let metadata: Vec<&str> = offsets.iter().map(|o| o.metadata.as_str()).collect();
        let stamps: Vec<i64> = offsets.iter().map(|o| o.commit_timestamp).collect();
        let client = pg.get().await?;
        let n = client
            .execute(
                "INSERT INTO rafka_offsets (group_id, topic, partition, committed_offset, \
                 leader_epoch, metadata, commit_timestamp) \
                 SELECT $1, t, p, o, e, m, s \
                 FROM unnest($2::text[], $3::int[], $4::bigint[], $5::int[], $6::text[], \
                 $7::bigint[]) AS x(t, p, o, e, m, s) \
                 WHERE EXISTS (SELECT 1 FROM rafka_groups g WHERE g.group_id = $1 \
                 AND g.coordinator = $8 AND g.coordinator_epoch = $9 FOR SHARE) \
                 ON CONFLICT (group_id, topic, partition) DO UPDATE SET \
                 committed_offset = EXCLUDED.committed_offset, \
                 leader_epoch = EXCLUDED.leader_epoch, metadata = EXCLUDED.metadata, \
                 commit_timestamp = EXCLUDED.commit_timestamp",
                &[
                    &group,
                    &topics,
                    &partitions,
                    &values,
                    &epochs,
                    &metadata,
                    &stamps,
                    &node_id,
                    &epoch,
                ],
            )
            .await?;
        Ok(n > 0 || self.fenced(group, node_id, epoch))
    }

    /// Every committed offset of `group` (claiming the group first, so that a broker that
    /// coordinated it before can no longer move them).
    pub async fn fetch(
        &self,
        pg: &SharedClient,
        node_id: i32,
        group: &str,
    ) -> Result<Vec<Committed>, DisklessError> {
        self.claim(pg, node_id, group).await?;
        let client = pg.get().await?;
        let rows = client
            .query(
                "SELECT topic, partition, committed_offset, leader_epoch, \
                 coalesce(metadata, ''), commit_timestamp FROM rafka_offsets \
                 WHERE group_id = $1 ORDER BY topic, partition",
                &[&group],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Committed {
                topic: r.get(0),
                partition: r.get(1),
                offset: r.get(2),
                leader_epoch: r.get(3),
                metadata: r.get(4),
                commit_timestamp: r.get(5),
            })
            .collect())
    }

    /// Deletes the committed offsets of `partitions` (topic, partition) of `group`
    /// (OffsetDelete), if this broker's claim still holds. `Ok(false)`: it does not
    /// (another broker took the group over): nothing was deleted.
    pub async fn delete_offsets(
        &self,
        pg: &SharedClient,
        node_id: i32,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<bool, DisklessError> {
        if partitions.is_empty() {
            return Ok(true);
        }
        let epoch = self.claim(pg, node_id, group).await?;
        let topics: Vec<&str> = partitions.iter().map(|(t, _)| t.as_str()).collect();
        let numbers: Vec<i32> = partitions.iter().map(|(_, p)| *p).collect();
        let client = pg.get().await?;
        // One statement: the claim row locked and checked, the rows deleted only under it.
        let row = client
            .query_one(
                "WITH claim AS (SELECT 1 FROM rafka_groups WHERE group_id = $1 \
                 AND coordinator = $4 AND coordinator_epoch = $5 FOR SHARE), \
                 gone AS (DELETE FROM rafka_offsets o \
                 USING unnest($2::text[], $3::int[]) AS x(t, p) \
                 WHERE o.group_id = $1 AND o.topic = x.t AND o.partition = x.p \
                 AND EXISTS (SELECT 1 FROM claim) RETURNING 1) \
                 SELECT (SELECT count(*) FROM claim), (SELECT count(*) FROM gone)",
                &[&group, &topics, &numbers, &node_id, &epoch],
            )
            .await?;
        let held: i64 = row.get(0);
        Ok(held > 0 || self.fenced(group, node_id, epoch))
    }

    /// Deletes the group's offsets and claim row (DeleteGroups).
    pub async fn delete(&self, pg: &SharedClient, group: &str) -> Result<(), DisklessError> {
        self.forget(group);
        let client = pg.get().await?;
        client
            .execute("DELETE FROM rafka_offsets WHERE group_id = $1", &[&group])
            .await?;
        client
            .execute("DELETE FROM rafka_groups WHERE group_id = $1", &[&group])
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: i64) -> Vec<Committed> {
        vec![Committed {
            topic: "t".into(),
            partition: 0,
            offset,
            leader_epoch: -1,
            metadata: "m".into(),
            commit_timestamp: 1,
        }]
    }

    #[tokio::test]
    async fn a_takeover_fences_the_old_coordinator_and_keeps_the_offsets() {
        let (d, _dir) = crate::diskless::tests::diskless("group_offsets", 1).await;
        let (one, two) = (GroupOffsets::default(), GroupOffsets::default());
        assert!(one.commit(&d.pg, 1, "g", &at(10)).await.unwrap());
        assert!(one.commit(&d.pg, 1, "g", &at(20)).await.unwrap());
        // Broker 2 takes the group over: it reads what broker 1 committed.
        assert_eq!(two.fetch(&d.pg, 2, "g").await.unwrap(), at(20));
        // Broker 1, fenced, writes nothing and forgets its claim.
        assert!(!one.commit(&d.pg, 1, "g", &at(5)).await.unwrap());
        assert!(two.commit(&d.pg, 2, "g", &at(30)).await.unwrap());
        assert_eq!(two.fetch(&d.pg, 2, "g").await.unwrap(), at(30));
        // Broker 1 coordinating again claims anew, which fences broker 2.
        assert_eq!(one.fetch(&d.pg, 1, "g").await.unwrap(), at(30));
        assert!(!two.commit(&d.pg, 2, "g", &at(1)).await.unwrap());
        // OffsetDelete: broker 2 claims the group (broker 1's next write fails), broker 1
        // takes it back; broker 2, now fenced, deletes nothing; broker 1 deletes it.
        let t0 = [("t".to_string(), 0)];
        assert_eq!(two.fetch(&d.pg, 2, "g").await.unwrap(), at(30));
        assert!(!one.commit(&d.pg, 1, "g", &at(35)).await.unwrap());
        assert_eq!(one.fetch(&d.pg, 1, "g").await.unwrap(), at(30));
        assert!(!two.delete_offsets(&d.pg, 2, "g", &t0).await.unwrap());
        assert_eq!(one.fetch(&d.pg, 1, "g").await.unwrap(), at(30));
        assert!(one.delete_offsets(&d.pg, 1, "g", &t0).await.unwrap());
        assert!(one.fetch(&d.pg, 1, "g").await.unwrap().is_empty());
        assert!(one.commit(&d.pg, 1, "g", &at(40)).await.unwrap());
        one.delete(&d.pg, "g").await.unwrap();
        assert!(two.fetch(&d.pg, 2, "g").await.unwrap().is_empty());
    }
}
