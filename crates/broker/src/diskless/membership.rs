//! Cluster membership: this broker's row in `rafka_brokers`, its lease, and its view of
//! the live brokers.
//!
//! At start (once its listeners are bound, so its advertised address is known) a broker
//! registers under a new random incarnation with a lease of `broker_session_timeout_ms`
//! by PostgreSQL's clock; a restarted broker with the same node id takes the row over,
//! which fences the process it replaces. The heartbeat renews the lease every
//! `broker_heartbeat_interval_ms` (only while the row holds this incarnation: if a newer
//! one took it, this process is fenced for good) and reloads the live brokers — those
//! whose lease has not expired, by PostgreSQL's clock, so brokers' clocks need not agree.
//! A clean shutdown deletes the row.
//!
//! A broker that cannot renew its lease does not know whether the others still count it:
//! once the lease it last obtained could have expired (measured on its own monotonic
//! clock from before that renewal was sent) it treats itself as not live, and the API
//! handlers answer retriable errors rather than serve from stale metadata.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::pg::SharedClient;
use super::DisklessError;

/// A live broker as `rafka_brokers` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveBroker {
    /// Node id.
    pub node_id: i32,
    /// Advertised host (its first listener's).
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// `broker.rack`, if set.
    pub rack: Option<String>,
    /// Every listener's advertised host and port, by listener name.
    pub listeners: BTreeMap<String, (String, i32)>,
}

impl LiveBroker {
    /// The address a client of listener `name` is given (Kafka's rule: the listener of
    /// the same name on every broker), else the first listener's.
    pub fn address_for(&self, name: &str) -> (String, i32) {
        self.listeners
            .get(name)
            .cloned()
            .unwrap_or_else(|| (self.host.clone(), self.port))
    }
}

/// This broker's registration and its view of the cluster.
pub struct Membership {
    node_id: i32,
    incarnation: Uuid,
    session_timeout: Duration,
    /// The live brokers at the last heartbeat, by node id.
    live: parking_lot::RwLock<Arc<Vec<LiveBroker>>>,
    /// Until when this broker's own lease surely holds (local monotonic clock).
    lease_until: parking_lot::Mutex<Option<Instant>>,
    /// A newer incarnation of this node id took the row: never serve again.
    fenced: AtomicBool,
}

impl Membership {
    /// A membership for `node_id` under a new incarnation; not registered yet.
    pub fn new(node_id: i32, session_timeout: Duration) -> Membership {
        Membership {
            node_id,
            incarnation: Uuid::new_v4(),
            session_timeout,
            live: parking_lot::RwLock::new(Arc::new(Vec::new())),
            lease_until: parking_lot::Mutex::new(None),
            fenced: AtomicBool::new(false),
        }
    }

    /// This process's incarnation.
    pub fn incarnation(&self) -> Uuid {
        self.incarnation
    }

    fn lease_ms(&self) -> i64 {
        self.session_timeout.as_millis().min(i64::MAX as u128) as i64
    }

    /// Registers this broker with its listeners' advertised addresses (name, host, port;
    /// the first one is its main address), taking the row over from an older
    /// incarnation, then loads the live brokers.
    pub async fn register(
        &self,
        pg: &SharedClient,
        listeners: &[(String, String, i32)],
        rack: Option<&str>,
    ) -> Result<(), DisklessError> {
        let (host, port) = listeners
            .first()
            .map(|(_, h, p)| (h.as_str(), *p))
            .ok_or_else(|| DisklessError::Config("no listener".into()))?;
        let by_name: BTreeMap<&str, (&str, i32)> = listeners
            .iter()
            .map(|(n, h, p)| (n.as_str(), (h.as_str(), *p)))
            .collect();
        let listeners_json = serde_json::to_string(&by_name)
            .map_err(|e| DisklessError::Config(format!("listeners: {e}")))?;
        let sent = Instant::now();
        let client = pg.get().await?;
        client
            .execute(
                "INSERT INTO rafka_brokers (node_id, incarnation, host, port, rack, \
                 lease_expires_at, listeners) VALUES ($1, $2, $3, $4, $5, \
                 now() + $6::bigint * interval '1 millisecond', $7::text::jsonb) \
                 ON CONFLICT (node_id) DO UPDATE SET incarnation = EXCLUDED.incarnation, \
                 host = EXCLUDED.host, port = EXCLUDED.port, rack = EXCLUDED.rack, \
                 registered_at = now(), lease_expires_at = EXCLUDED.lease_expires_at, \
                 listeners = EXCLUDED.listeners",
                &[
                    &self.node_id,
                    &self.incarnation,
                    &host,
                    &port,
                    &rack,
                    &self.lease_ms(),
                    &listeners_json,
                ],
            )
            .await?;
        *self.lease_until.lock() = Some(sent + self.session_timeout);
        tracing::info!(node_id = self.node_id, incarnation = %self.incarnation, host, port,
            "registered in the diskless cluster");
        self.reload(pg).await
    }

    /// Renews the lease (if the row is still this incarnation's) and reloads the live
    /// brokers. `Ok(false)`: this process is fenced.
    pub async fn heartbeat(&self, pg: &SharedClient) -> Result<bool, DisklessError> {
        if self.is_fenced() {
            return Ok(false);
        }
        let sent = Instant::now();
        let client = pg.get().await?;
        let n = client
            .execute(
                "UPDATE rafka_brokers SET lease_expires_at = \
                 now() + $3::bigint * interval '1 millisecond' \
                 WHERE node_id = $1 AND incarnation = $2",
                &[&self.node_id, &self.incarnation, &self.lease_ms()],
            )
            .await?;
        if n == 0 {
            self.fenced.store(true, Ordering::Release);
            *self.lease_until.lock() = None;
            tracing::error!(
                node_id = self.node_id,
                incarnation = %self.incarnation,
                "another broker registered with this node id: this one is fenced and stops \
                 serving diskless requests"
            );
            return Ok(false);
        }
        *self.lease_until.lock() = Some(sent + self.session_timeout);
        self.reload(pg).await?;
        Ok(true)
    }

    /// Reloads the live brokers (lease not expired by PostgreSQL's clock).
    async fn reload(&self, pg: &SharedClient) -> Result<(), DisklessError> {
        let client = pg.get().await?;
        let rows = client
            .query(
                "SELECT node_id, host, port, rack, listeners::text FROM rafka_brokers \
                 WHERE lease_expires_at > now() ORDER BY node_id",
                &[],
            )
            .await?;
        let live: Vec<LiveBroker> = rows
            .iter()
            .map(|r| LiveBroker {
                node_id: r.get(0),
                host: r.get(1),
                port: r.get(2),
                rack: r.get(3),
                // A row written without listeners (or unreadable) gives the main address.
                listeners: serde_json::from_str(r.get::<_, &str>(4)).unwrap_or_default(),
            })
            .collect();
        *self.live.write() = Arc::new(live);
        Ok(())
    }

    /// Deletes this broker's row (clean shutdown), if it is still this incarnation's.
    pub async fn leave(&self, pg: &SharedClient) -> Result<(), DisklessError> {
        *self.lease_until.lock() = None;
        let client = pg.get().await?;
        client
            .execute(
                "DELETE FROM rafka_brokers WHERE node_id = $1 AND incarnation = $2",
                &[&self.node_id, &self.incarnation],
            )
            .await?;
        Ok(())
    }

    /// Whether a newer incarnation of this node id fenced this process.
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// Whether this broker may serve: registered, not fenced, and its lease surely holds.
    pub fn is_live(&self) -> bool {
        !self.is_fenced() && self.lease_until.lock().is_some_and(|t| Instant::now() < t)
    }

    /// The live brokers at the last heartbeat, by node id.
    pub fn live_brokers(&self) -> Arc<Vec<LiveBroker>> {
        self.live.read().clone()
    }

    /// The node ids of the live brokers, ascending.
    pub fn live_ids(&self) -> Vec<i32> {
        self.live.read().iter().map(|b| b.node_id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two listeners: PLAINTEXT at `host:port`, EXTERNAL at ext.example:(port + 10000).
    fn l(host: &str, port: i32) -> Vec<(String, String, i32)> {
        vec![
            ("PLAINTEXT".into(), host.into(), port),
            ("EXTERNAL".into(), "ext.example".into(), port + 10000),
        ]
    }

    #[tokio::test]
    async fn register_heartbeat_fence_and_leave() {
        let (d, _dir) = crate::diskless::tests::diskless("membership", 1).await;
        let a = Membership::new(1, Duration::from_secs(5));
        let b = Membership::new(2, Duration::from_secs(5));
        assert!(!a.is_live(), "not live before registering");
        a.register(&d.pg, &l("127.0.0.1", 9001), None)
            .await
            .unwrap();
        b.register(&d.pg, &l("127.0.0.1", 9002), Some("r1"))
            .await
            .unwrap();
        assert!(a.heartbeat(&d.pg).await.unwrap());
        assert!(a.is_live());
        assert_eq!(a.live_ids(), vec![1, 2]);
        assert_eq!(
            a.live_brokers()[1],
            LiveBroker {
                node_id: 2,
                host: "127.0.0.1".into(),
                port: 9002,
                rack: Some("r1".into()),
                listeners: [
                    ("PLAINTEXT".to_string(), ("127.0.0.1".to_string(), 9002)),
                    ("EXTERNAL".to_string(), ("ext.example".to_string(), 19002)),
                ]
                .into(),
            }
        );
        // A restart of node 1 (a new incarnation) fences the old process.
        let a2 = Membership::new(1, Duration::from_secs(5));
        a2.register(&d.pg, &l("127.0.0.1", 9003), None)
            .await
            .unwrap();
        assert!(!a.heartbeat(&d.pg).await.unwrap());
        assert!(a.is_fenced() && !a.is_live());
        assert!(a2.heartbeat(&d.pg).await.unwrap());
        assert_eq!(a2.live_brokers()[0].port, 9003);
        let b_seen = &a2.live_brokers()[1];
        assert_eq!(
            b_seen.address_for("EXTERNAL"),
            ("ext.example".into(), 19002)
        );
        assert_eq!(b_seen.address_for("UNKNOWN"), ("127.0.0.1".into(), 9002));
        // The fenced process's leave does not remove its successor's row.
        a.leave(&d.pg).await.unwrap();
        b.leave(&d.pg).await.unwrap();
        assert!(a2.heartbeat(&d.pg).await.unwrap());
        assert_eq!(a2.live_ids(), vec![1]);
    }

    #[tokio::test]
    async fn an_expired_lease_drops_the_broker() {
        let (d, _dir) = crate::diskless::tests::diskless("lease", 1).await;
        let short = Membership::new(1, Duration::from_millis(300));
        let other = Membership::new(2, Duration::from_secs(5));
        short.register(&d.pg, &l("h", 1), None).await.unwrap();
        other.register(&d.pg, &l("h", 2), None).await.unwrap();
        assert_eq!(other.live_ids(), vec![1, 2]);
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Not renewed: it knows itself not live, and the others drop it.
        assert!(!short.is_live());
        assert!(other.heartbeat(&d.pg).await.unwrap());
        assert_eq!(other.live_ids(), vec![2]);
        // A late heartbeat (same incarnation) brings it back.
        assert!(short.heartbeat(&d.pg).await.unwrap());
        assert!(short.is_live());
        assert_eq!(short.live_ids(), vec![1, 2]);
    }
}
