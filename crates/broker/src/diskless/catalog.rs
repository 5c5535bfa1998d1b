//! The diskless cluster's topics, as PostgreSQL holds them, and this broker's cached view.
//! PostgreSQL is the truth; the cache is refreshed from it (`refresh`) and a lookup that
//! misses reads through, so a topic created on another broker is found at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use uuid::Uuid;

use super::pg::SharedClient;
use super::DisklessError;

/// One diskless topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisklessTopic {
    /// Kafka's topic id.
    pub id: Uuid,
    /// The name.
    pub name: String,
    /// Partitions `0..partitions`.
    pub partitions: i32,
    /// Topic configs set on it (Kafka's names and string values).
    pub configs: BTreeMap<String, String>,
}

/// Why a topic could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateTopicError {
    /// A topic of that name exists (TOPIC_ALREADY_EXISTS).
    #[error("topic {0:?} already exists")]
    Exists(String),
    /// The coordinator failed.
    #[error(transparent)]
    Coordinator(#[from] DisklessError),
}

/// Why partitions could not be added.
#[derive(Debug, thiserror::Error)]
pub enum AddPartitionsError {
    /// No such topic (UNKNOWN_TOPIC_OR_PARTITION).
    #[error("topic {0:?} does not exist")]
    Unknown(String),
    /// Not more than today, or too many (INVALID_PARTITIONS).
    #[error("{0}")]
    Invalid(String),
    /// The coordinator failed.
    #[error(transparent)]
    Coordinator(#[from] DisklessError),
}

/// The topics this broker knows of.
#[derive(Default)]
pub struct Catalog {
    by_name: parking_lot::RwLock<HashMap<String, Arc<DisklessTopic>>>,
}

fn topic_of(row: &tokio_postgres::Row) -> Result<DisklessTopic, DisklessError> {
    let configs: String = row.get(3);
    let configs: BTreeMap<String, String> = serde_json::from_str(&configs)
        .map_err(|e| DisklessError::Config(format!("rafka_topics.configs: {e}")))?;
    Ok(DisklessTopic {
        id: row.get(0),
        name: row.get(1),
        partitions: row.get(2),
        configs,
    })
}

const SELECT_TOPICS: &str = "SELECT topic_id, name, partitions, configs::text FROM rafka_topics";

impl Catalog {
    /// The cached topic `name`, if known.
    pub fn cached(&self, name: &str) -> Option<Arc<DisklessTopic>> {
        self.by_name.read().get(name).cloned()
    }

    /// Every cached topic, by name.
    pub fn all(&self) -> Vec<Arc<DisklessTopic>> {
        let mut v: Vec<_> = self.by_name.read().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The topic `name`: from the cache, else read from PostgreSQL (and cached).
    pub async fn topic(
        &self,
        pg: &SharedClient,
        name: &str,
    ) -> Result<Option<Arc<DisklessTopic>>, DisklessError> {
        if let Some(t) = self.cached(name) {
            return Ok(Some(t));
        }
        let client = pg.get().await?;
        let row = client
            .query_opt(&format!("{SELECT_TOPICS} WHERE name = $1"), &[&name])
            .await?;
        let Some(row) = row else { return Ok(None) };
        let t = Arc::new(topic_of(&row)?);
        self.by_name.write().insert(t.name.clone(), t.clone());
        Ok(Some(t))
    }

    /// Replaces the cache with what PostgreSQL holds now.
    pub async fn refresh(&self, pg: &SharedClient) -> Result<(), DisklessError> {
        let client = pg.get().await?;
        let rows = client.query(SELECT_TOPICS, &[]).await?;
        let mut fresh = HashMap::with_capacity(rows.len());
        for row in &rows {
            let t = topic_of(row)?;
            fresh.insert(t.name.clone(), Arc::new(t));
        }
        *self.by_name.write() = fresh;
        Ok(())
    }

    /// Creates a topic and its partition rows in one transaction.
    pub async fn create(
        &self,
        pg: &SharedClient,
        name: &str,
        partitions: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<Arc<DisklessTopic>, CreateTopicError> {
        let client = pg.get().await?;
        let id = Uuid::new_v4();
        let configs_json = serde_json::to_string(configs)
            .map_err(|e| DisklessError::Config(format!("topic configs: {e}")))?;
        // One statement: the topic and its partitions, or nothing.
        let rows = client
            .execute(
                "WITH t AS (INSERT INTO rafka_topics (topic_id, name, partitions, configs) \
                 VALUES ($1, $2, $3, $4::text::jsonb) ON CONFLICT (name) DO NOTHING \
                 RETURNING topic_id, partitions) \
                 INSERT INTO rafka_partitions (topic_id, partition) \
                 SELECT t.topic_id, p FROM t, generate_series(0, t.partitions - 1) AS p",
                &[&id, &name, &partitions, &configs_json],
            )
            .await
            .map_err(DisklessError::from)?;
        if rows == 0 {
            return Err(CreateTopicError::Exists(name.to_string()));
        }
        let t = self
            .topic_uncached(pg, name)
            .await?
            .ok_or_else(|| DisklessError::Config(format!("topic {name:?} vanished")))?;
        if t.id != id {
            return Err(CreateTopicError::Exists(name.to_string()));
        }
        client
            .execute("SELECT pg_notify('rafka_topics', $1)", &[&name])
            .await
            .map_err(DisklessError::from)?;
        self.by_name.write().insert(t.name.clone(), t.clone());
        Ok(t)
    }

    /// The topic whose id is `id`: from the cache, else after a refresh.
    pub async fn topic_by_id(
        &self,
        pg: &SharedClient,
        id: Uuid,
    ) -> Result<Option<Arc<DisklessTopic>>, DisklessError> {
        let find = || self.by_name.read().values().find(|t| t.id == id).cloned();
        if let Some(t) = find() {
            return Ok(Some(t));
        }
        self.refresh(pg).await?;
        Ok(find())
    }

    /// Forgets the cached `name` (changed by this broker: the next lookup reads through).
    pub fn invalidate(&self, name: &str) {
        self.by_name.write().remove(name);
    }

    /// The leader epoch of every partition of the topics `ids`.
    pub async fn leader_epochs(
        &self,
        pg: &SharedClient,
        ids: &[Uuid],
    ) -> Result<HashMap<(Uuid, i32), i32>, DisklessError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let client = pg.get().await?;
        let rows = client
            .query(
                "SELECT topic_id, partition, leader_epoch FROM rafka_partitions \
                 WHERE topic_id = ANY($1)",
                &[&ids],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ((r.get(0), r.get(1)), r.get(2)))
            .collect())
    }

    /// Deletes the topic `name` with its partitions, batch index rows and producers (by
    /// cascade); the objects it leaves without any batch become unreferenced (state 2)
    /// for the sweeper. Its id, or `None` if there is no such topic.
    pub async fn delete(&self, conn: &str, name: &str) -> Result<Option<Uuid>, DisklessError> {
        let mut client = super::pg::connect(conn).await?;
        let tx = client.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "SELECT topic_id FROM rafka_topics WHERE name = $1 FOR UPDATE",
                &[&name],
            )
            .await?
        else {
            self.invalidate(name);
            return Ok(None);
        };
        let id: Uuid = row.get(0);
        let objects: Vec<i64> = tx
            .query(
                "SELECT DISTINCT object_id FROM rafka_batches WHERE topic_id = $1",
                &[&id],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        tx.execute("DELETE FROM rafka_topics WHERE topic_id = $1", &[&id])
            .await?;
        // Locked first, in the order retention locks them, so that a retention run (or
        // another deletion) freeing the same objects sees these deletions and this one
        // sees its: whichever locks second reads after the first committed, and the
        // object's last reference is never dropped by two transactions that each still
        // see the other's rows.
        tx.query(
            "SELECT object_id FROM rafka_objects WHERE object_id = ANY($1) \
             ORDER BY object_id FOR UPDATE",
            &[&objects],
        )
        .await?;
        tx.execute(
            "UPDATE rafka_objects o SET state = 2, state_changed_at = now() \
             WHERE o.object_id = ANY($1) AND o.state = 1 AND NOT EXISTS \
             (SELECT 1 FROM rafka_batches b WHERE b.object_id = o.object_id)",
            &[&objects],
        )
        .await?;
        tx.execute("SELECT pg_notify('rafka_topics', $1)", &[&name])
            .await?;
        tx.commit().await?;
        self.invalidate(name);
        tracing::info!(topic = name, %id, "deleted diskless topic");
        Ok(Some(id))
    }

    /// Grows the topic `name` to `total` partitions: the new partition rows and the count,
    /// in one transaction.
    pub async fn add_partitions(
        &self,
        conn: &str,
        name: &str,
        total: i32,
        validate_only: bool,
    ) -> Result<(), AddPartitionsError> {
        let mut client = super::pg::connect(conn).await?;
        let tx = client.transaction().await.map_err(DisklessError::from)?;
        let Some(row) = tx
            .query_opt(
                "SELECT topic_id, partitions FROM rafka_topics WHERE name = $1 FOR UPDATE",
                &[&name],
            )
            .await
            .map_err(DisklessError::from)?
        else {
            return Err(AddPartitionsError::Unknown(name.to_string()));
        };
        let (id, current): (Uuid, i32) = (row.get(0), row.get(1));
        if total <= current {
            return Err(AddPartitionsError::Invalid(format!(
                "Topic currently has {current} partitions, which is higher than or equal to \
                 the requested {total}."
            )));
        }
        if total > rafka_core::limits::PARTITIONS_PER_TOPIC_MAX {
            return Err(AddPartitionsError::Invalid(format!(
                "Number of partitions must be at most {}, got {total}",
                rafka_core::limits::PARTITIONS_PER_TOPIC_MAX
            )));
        }
        if validate_only {
            return Ok(());
        }
        tx.execute(
            "INSERT INTO rafka_partitions (topic_id, partition) \
             SELECT $1, p FROM generate_series($2::int, $3::int - 1) AS p",
            &[&id, &current, &total],
        )
        .await
        .map_err(DisklessError::from)?;
        tx.execute(
            "UPDATE rafka_topics SET partitions = $2 WHERE topic_id = $1",
            &[&id, &total],
        )
        .await
        .map_err(DisklessError::from)?;
        tx.execute("SELECT pg_notify('rafka_topics', $1)", &[&name])
            .await
            .map_err(DisklessError::from)?;
        tx.commit().await.map_err(DisklessError::from)?;
        self.invalidate(name);
        Ok(())
    }

    /// Replaces the configs of topic `name` with what `change` makes of them (read and
    /// written in one transaction, the row locked, so concurrent changes do not lose one
    /// another). `Ok(None)`: no such topic.
    pub async fn alter_configs<E>(
        &self,
        conn: &str,
        name: &str,
        change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), E>,
    ) -> Result<Option<Result<(), E>>, DisklessError> {
        let mut client = super::pg::connect(conn).await?;
        let tx = client.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "SELECT configs::text FROM rafka_topics WHERE name = $1 FOR UPDATE",
                &[&name],
            )
            .await?
        else {
            return Ok(None);
        };
        let text: String = row.get(0);
        let mut configs: BTreeMap<String, String> = serde_json::from_str(&text)
            .map_err(|e| DisklessError::Config(format!("rafka_topics.configs: {e}")))?;
        if let Err(e) = change(&mut configs) {
            return Ok(Some(Err(e)));
        }
        let json = serde_json::to_string(&configs)
            .map_err(|e| DisklessError::Config(format!("topic configs: {e}")))?;
        tx.execute(
            "UPDATE rafka_topics SET configs = $2::text::jsonb WHERE name = $1",
            &[&name, &json],
        )
        .await?;
        tx.execute("SELECT pg_notify('rafka_topics', $1)", &[&name])
            .await?;
        tx.commit().await?;
        self.invalidate(name);
        Ok(Some(Ok(())))
    }

    async fn topic_uncached(
        &self,
        pg: &SharedClient,
        name: &str,
    ) -> Result<Option<Arc<DisklessTopic>>, DisklessError> {
        let client = pg.get().await?;
        let row = client
            .query_opt(&format!("{SELECT_TOPICS} WHERE name = $1"), &[&name])
            .await?;
        row.map(|r| topic_of(&r).map(Arc::new)).transpose()
    }
}

/// The diskless topics as the KIP-848 assignors see them (this broker's cached view,
/// refreshed every heartbeat).
impl crate::group::consumer::TopicView for Catalog {
    fn partitions(&self, topic: &str) -> Option<i32> {
        self.cached(topic).map(|t| t.partitions)
    }
    fn names(&self) -> Vec<String> {
        self.all().iter().map(|t| t.name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn grow_reconfigure_and_delete_a_topic() {
        let (d, _dir) = crate::diskless::tests::diskless("catalog_admin", 1).await;
        let t = d
            .catalog
            .create(&d.pg, "t", 2, &BTreeMap::new())
            .await
            .unwrap();
        // Partitions: more only, and the rows come with the count.
        assert!(matches!(
            d.catalog
                .add_partitions(d.coordinator(), "t", 2, false)
                .await,
            Err(AddPartitionsError::Invalid(_))
        ));
        assert!(matches!(
            d.catalog
                .add_partitions(d.coordinator(), "nope", 3, false)
                .await,
            Err(AddPartitionsError::Unknown(_))
        ));
        d.catalog
            .add_partitions(d.coordinator(), "t", 4, true)
            .await
            .unwrap();
        assert_eq!(
            d.catalog
                .topic(&d.pg, "t")
                .await
                .unwrap()
                .unwrap()
                .partitions,
            2
        );
        d.catalog
            .add_partitions(d.coordinator(), "t", 4, false)
            .await
            .unwrap();
        assert_eq!(
            d.catalog
                .topic(&d.pg, "t")
                .await
                .unwrap()
                .unwrap()
                .partitions,
            4
        );
        let epochs = d.catalog.leader_epochs(&d.pg, &[t.id]).await.unwrap();
        assert_eq!(epochs.len(), 4);
        // Configs: a refused change writes nothing.
        let r = d
            .catalog
            .alter_configs(d.coordinator(), "t", |c| {
                c.insert("retention.ms".into(), "1000".into());
                Err::<(), _>("no")
            })
            .await
            .unwrap();
        assert_eq!(r, Some(Err("no")));
        assert!(d
            .catalog
            .topic(&d.pg, "t")
            .await
            .unwrap()
            .unwrap()
            .configs
            .is_empty());
        d.catalog
            .alter_configs(d.coordinator(), "t", |c| {
                c.insert("retention.ms".into(), "1000".into());
                Ok::<(), ()>(())
            })
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let found = d.catalog.topic(&d.pg, "t").await.unwrap().unwrap();
        assert_eq!(found.configs["retention.ms"], "1000");
        // An object holding batches of this topic only, and one shared with another topic.
        let other = d
            .catalog
            .create(&d.pg, "other", 1, &BTreeMap::new())
            .await
            .unwrap();
        let client = d.pg.get().await.unwrap();
        client
            .batch_execute(&format!(
                "INSERT INTO rafka_objects (object_id, object_key, node_id, size_bytes, state) \
                 VALUES (1, 'a', 1, 10, 1), (2, 'b', 1, 10, 1); \
                 INSERT INTO rafka_batches VALUES \
                 ('{t}', 0, 0, 0, 1, 0, 10, 1, 0), ('{t}', 1, 0, 0, 2, 0, 5, 1, 0), \
                 ('{o}', 0, 0, 0, 2, 5, 5, 1, 0);",
                t = t.id,
                o = other.id
            ))
            .await
            .unwrap();
        assert_eq!(
            d.catalog.delete(d.coordinator(), "t").await.unwrap(),
            Some(t.id)
        );
        assert_eq!(d.catalog.delete(d.coordinator(), "t").await.unwrap(), None);
        assert!(d.catalog.topic(&d.pg, "t").await.unwrap().is_none());
        let states: Vec<(i64, i16)> = client
            .query(
                "SELECT object_id, state FROM rafka_objects ORDER BY object_id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(
            states,
            vec![(1, 2), (2, 1)],
            "only the object left empty is unreferenced"
        );
        let left: i64 = client
            .query_one("SELECT count(*) FROM rafka_batches", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 1);
    }
}
