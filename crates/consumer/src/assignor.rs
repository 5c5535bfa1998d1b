//! Client-side partition assignors of the classic group protocol, computed by the group
//! leader: `range` and `roundrobin`, with the Java client's algorithms.

use std::collections::BTreeMap;

/// A partition assignment strategy (the JoinGroup protocol name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Per topic, consecutive ranges of partitions to members in member-id order.
    Range,
    /// All partitions, sorted, dealt to subscribed members in turn.
    RoundRobin,
}

impl Assignor {
    /// The protocol name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
        }
    }

    /// The assignor with this wire name.
    pub fn from_name(name: &str) -> Option<Assignor> {
        match name {
            "range" => Some(Assignor::Range),
            "roundrobin" => Some(Assignor::RoundRobin),
            _ => None,
        }
    }

    /// Assigns: `subscriptions` is member id → topics; `partitions` is topic → count.
    /// Returns member id → topic → partitions (every member present, maybe empty).
    pub fn assign(
        self,
        subscriptions: &BTreeMap<String, Vec<String>>,
        partitions: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
        let mut out: BTreeMap<String, BTreeMap<String, Vec<i32>>> = subscriptions
            .keys()
            .map(|m| (m.clone(), BTreeMap::new()))
            .collect();
        match self {
            Assignor::Range => {
                for (topic, &count) in partitions {
                    let members: Vec<&String> = subscriptions
                        .iter()
                        .filter(|(_, ts)| ts.contains(topic))
                        .map(|(m, _)| m)
                        .collect();
                    if members.is_empty() {
                        continue;
                    }
                    let n = members.len() as i32;
                    let (per, extra) = (count / n, count % n);
                    let mut next = 0;
                    for (i, m) in members.into_iter().enumerate() {
                        let take = per + i32::from((i as i32) < extra);
                        if take > 0 {
                            out.get_mut(m)
                                .expect("member")
                                .insert(topic.clone(), (next..next + take).collect());
                        }
                        next += take;
                    }
                }
            }
            Assignor::RoundRobin => {
                let members: Vec<&String> = subscriptions.keys().collect();
                let mut turn = 0usize;
                for (topic, &count) in partitions {
                    for p in 0..count {
                        // The next member (circularly) subscribed to this topic.
                        for _ in 0..members.len() {
                            let m = members[turn % members.len()];
                            turn += 1;
                            if subscriptions[m].contains(topic) {
                                out.get_mut(m)
                                    .expect("member")
                                    .entry(topic.clone())
                                    .or_default()
                                    .push(p);
                                break;
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        a: Assignor,
        subs: &[(&str, &[&str])],
        parts: &[(&str, i32)],
    ) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
        let subs = subs
            .iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect();
        let parts = parts.iter().map(|(t, n)| (t.to_string(), *n)).collect();
        a.assign(&subs, &parts)
    }

    #[test]
    fn range_gives_the_first_members_the_extra_partition() {
        let r = check(
            Assignor::Range,
            &[("a", &["t"]), ("b", &["t"])],
            &[("t", 5)],
        );
        assert_eq!(r["a"]["t"], vec![0, 1, 2]);
        assert_eq!(r["b"]["t"], vec![3, 4]);
    }

    #[test]
    fn roundrobin_deals_in_turn_and_skips_unsubscribed() {
        let r = check(
            Assignor::RoundRobin,
            &[("a", &["t", "u"]), ("b", &["t"])],
            &[("t", 3), ("u", 2)],
        );
        assert_eq!(r["a"]["t"], vec![0, 2]);
        assert_eq!(r["b"]["t"], vec![1]);
        assert_eq!(r["a"]["u"], vec![0, 1]);
    }
}
