//! Kafka's `max.connections.per.ip` and `max.connections.per.ip.overrides`: how many
//! connections one address may hold at once. The accept loops take a [`IpSlot`] per
//! connection, or close it at once when its address is at its limit; the slot is given
//! back when the connection's task ends. The map holds only addresses with a connection,
//! so it is bounded by `max_connections`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

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
