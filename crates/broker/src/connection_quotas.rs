//! Kafka's `max.connections.per.ip` and `max.connections.per.ip.overrides`: how many
//! connections one address may hold at once. The accept loops take a [`IpSlot`] per
//! connection, or close it at once when its address is at its limit; the slot is given
//! back when the connection's task ends. The map holds only addresses with a connection,
//! so it is bounded by `max_connections`.
//!
//! And Kafka's `connection_creation_rate` of `ip` quota entities (KIP-612, set with
//! AlterClientQuotas, [`ConnectionRates`]): before its per-address count, a new connection
//! is recorded against its address's rate (the address's own entity, else the default
//! address's), measured as the client quotas are (`quota.window.num` samples of
//! `quota.window.size.seconds`). A connection that takes the address over its rate is
//! taken back out of the rate and not served: as Kafka's acceptor does, it is held open,
//! unread, for its throttle time and then closed, so a client that reconnects at once is
//! slowed down rather than spinning. At most [`DELAYED_CLOSES_MAX`] such connections are
//! held at once (more are closed at once), outside the `max_connections` slots.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::quota::{QuotaConfigs, QuotaKind, Rate, RateConfig};

/// Most addresses whose connection rate is measured at once.
const RATE_SENSORS_MAX: usize = 100_000;
/// Most throttled connections held open until their close at once.
pub(crate) const DELAYED_CLOSES_MAX: usize = 1_000;
/// How often the rate sensors are swept for idle ones.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct RateSensors {
    map: HashMap<IpAddr, (Rate, Instant)>,
    swept: Instant,
}

/// The connection rates per address of `connection_creation_rate`.
#[derive(Debug)]
pub(crate) struct ConnectionRates {
    config: RateConfig,
    sensors: Mutex<RateSensors>,
    delayed: Arc<AtomicUsize>,
}

/// A throttled connection held until its close; counted in [`ConnectionRates`].
struct Delayed(Arc<AtomicUsize>);

impl Drop for Delayed {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnectionRates {
    pub(crate) fn new(config: RateConfig) -> ConnectionRates {
        ConnectionRates {
            config,
            sensors: Mutex::new(RateSensors {
                map: HashMap::new(),
                swept: Instant::now(),
            }),
            delayed: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Records a new connection from `ip` at `now` against its `connection_creation_rate`
    /// in `configs`. `Err(throttle time)` when it takes the address over its rate: the
    /// connection is not served, and not counted.
    pub(crate) fn admit(
        &self,
        ip: IpAddr,
        configs: &QuotaConfigs,
        now: Instant,
    ) -> Result<(), Duration> {
        let ip = ip.to_canonical();
        let Some((quota, stats)) = configs.ip_quota(ip) else {
            return Ok(());
        };
        let kind = QuotaKind::ConnectionCreationRate;
        let span = self.config.window * self.config.samples;
        let mut sensors = self.sensors.lock();
        let full = !sensors.map.contains_key(&ip) && sensors.map.len() >= RATE_SENSORS_MAX;
        if full || now.saturating_duration_since(sensors.swept) >= SWEEP_INTERVAL {
            // A sensor idle for the whole sample span measures zero, as a new one does.
            sensors.swept = now;
            sensors
                .map
                .retain(|_, (_, used)| now.saturating_duration_since(*used) < span);
            if full && sensors.map.len() >= RATE_SENSORS_MAX {
                tracing::warn!(
                    max = RATE_SENSORS_MAX,
                    "connection rate sensors full; a new address is not measured"
                );
                return Ok(());
            }
        }
        let config = self.config;
        let (rate, used) = sensors
            .map
            .entry(ip)
            .or_insert_with(|| (Rate::new(config), now));
        *used = now;
        rate.record(1.0, now);
        let time = rate.throttle_time(quota, now);
        if time.is_zero() {
            stats.record(kind, 1.0);
            return Ok(());
        }
        rate.unrecord(1.0, now);
        stats.throttled(kind, time);
        Err(time)
    }

    /// Closes `stream`, a connection throttled for `time`, once that time is over (or the
    /// broker shuts down); at once when [`DELAYED_CLOSES_MAX`] are held already. Call from
    /// within the runtime.
    pub(crate) fn close_later(
        &self,
        stream: tokio::net::TcpStream,
        time: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        if self.delayed.fetch_add(1, Ordering::Relaxed) >= DELAYED_CLOSES_MAX {
            self.delayed.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let held = Delayed(self.delayed.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(time) => {}
                _ = shutdown.changed() => {}
            }
            drop(stream);
            drop(held);
        });
    }

    /// Throttled connections held now.
    #[cfg(test)]
    pub(crate) fn delayed(&self) -> usize {
        self.delayed.load(Ordering::Relaxed)
    }
}

/// Connection counts per address, and their limits.
#[derive(Debug)]
pub(crate) struct ConnectionsPerIp {
    limit: usize,
    overrides: HashMap<IpAddr, usize>,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its address's count; given back on drop.
#[derive(Debug)]
pub(crate) struct IpSlot {
    ip: IpAddr,
    owner: Arc<ConnectionsPerIp>,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock();
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

impl ConnectionsPerIp {
    /// `limit` for every address but those in `overrides`.
    pub(crate) fn new(limit: usize, overrides: HashMap<IpAddr, usize>) -> ConnectionsPerIp {
        ConnectionsPerIp {
            limit,
            overrides,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for a new connection from `ip`, or `None` when `ip` has its limit already.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let limit = self.overrides.get(&ip).copied().unwrap_or(self.limit);
        let mut counts = self.counts.lock();
        let n = counts.entry(ip).or_insert(0);
        if *n >= limit {
            if *n == 0 {
                counts.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(IpSlot {
            ip,
            owner: self.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::QuotaEntity;

    #[test]
    fn an_address_over_its_connection_rate_is_throttled_and_not_counted() {
        let rates = ConnectionRates::new(RateConfig {
            samples: 2,
            window: Duration::from_secs(1),
        });
        let kind = QuotaKind::ConnectionCreationRate;
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let mut q = QuotaConfigs::default();
        q.set(&QuotaEntity::ip(Some(a)), kind, Some(2.0));
        q.set(&QuotaEntity::ip(None), kind, Some(3.0));
        let t0 = Instant::now();
        // Two a second for a (over at least one window): the third is throttled.
        assert!(rates.admit(a, &q, t0).is_ok());
        assert!(rates.admit(a, &q, t0).is_ok());
        let th = rates.admit(a, &q, t0).unwrap_err();
        assert_eq!(th, Duration::from_millis(500));
        // Not counted: still over by the same.
        assert_eq!(rates.admit(a, &q, t0).unwrap_err(), th);
        // b has the default's three; each address its own.
        for _ in 0..3 {
            assert!(rates.admit(b, &q, t0).is_ok());
        }
        assert!(rates.admit(b, &q, t0).is_err());
        assert!(rates.admit(c, &q, t0).is_ok());
        // A second later a has room again.
        assert!(rates
            .admit(a, &q, t0 + Duration::from_millis(1_600))
            .is_ok());
        // Without a quota nothing is measured.
        let none = QuotaConfigs::default();
        for _ in 0..100 {
            assert!(rates.admit(a, &none, t0).is_ok());
        }
        assert_eq!(rates.delayed(), 0);
    }

    #[test]
    fn each_address_has_its_limit_and_slots_come_back() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "::1".parse().unwrap();
        let limits = Arc::new(ConnectionsPerIp::new(2, HashMap::from([(b, 1), (c, 0)])));
        let a1 = limits.acquire(a).unwrap();
        let _a2 = limits.acquire(a).unwrap();
        assert!(limits.acquire(a).is_none());
        let _b1 = limits.acquire(b).unwrap();
        assert!(limits.acquire(b).is_none());
        assert!(limits.acquire(c).is_none());
        drop(a1);
        assert!(limits.acquire(a).is_some());
        assert_eq!(limits.counts.lock().len(), 2);
    }

    #[test]
    fn overrides_are_kafkas_host_count_pairs_and_bad_ones_are_config_errors() {
        let mut c = crate::config::Config::default();
        c.broker.max_connections_per_ip_overrides = " 10.0.0.1:5, ::1:7,[fe80::1]:0 ".into();
        let o = c.broker.connections_per_ip_overrides().unwrap();
        assert_eq!(o[&"10.0.0.1".parse::<IpAddr>().unwrap()], 5);
        assert_eq!(o[&"::1".parse::<IpAddr>().unwrap()], 7);
        assert_eq!(o[&"fe80::1".parse::<IpAddr>().unwrap()], 0);
        assert!(c.validate().is_ok());
        for bad in [
            "10.0.0.1",
            "host.example:3",
            "10.0.0.1:x",
            "10.0.0.1:1,10.0.0.1:2",
        ] {
            c.broker.max_connections_per_ip_overrides = bad.into();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("max_connections_per_ip_overrides"), "{bad}: {e}");
        }
        c.broker.max_connections_per_ip_overrides.clear();
        c.broker.max_connections_per_ip = 0;
        assert!(c.validate().is_err());
        c.broker.max_connections_per_ip = 10;
        c.broker.quota_window_num = 1;
        assert!(c.validate().is_err());
    }
}
