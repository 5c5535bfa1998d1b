//! Client-side partition assignors of the classic group protocol, computed by the group
//! leader: `range` and `roundrobin` with the Java client's algorithms, and
//! `cooperative-sticky` (KIP-429): balanced, keeps what members already own, and never
//! hands a partition to a new owner in the same rebalance in which its old owner still
//! holds it.

use std::collections::{BTreeMap, BTreeSet};

/// A topic partition.
pub type TopicPartition = (String, i32);

/// What the leader knows of one member from its JoinGroup metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberSubscription {
    /// Topics the member subscribes to.
    pub topics: Vec<String>,
    /// Partitions the member says it owns (subscription v1+; cooperative members only).
    pub owned: Vec<TopicPartition>,
    /// The generation in which it owned them (subscription v2+), -1 when unknown.
    pub generation: i32,
}

impl MemberSubscription {
    /// A member that subscribes to `topics` and owns nothing.
    pub fn topics<I, S>(topics: I) -> MemberSubscription
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        MemberSubscription {
            topics: topics.into_iter().map(Into::into).collect(),
            owned: Vec::new(),
            generation: -1,
        }
    }

    fn subscribes(&self, topic: &str) -> bool {
        self.topics.iter().any(|t| t == topic)
    }
}

/// member id → topic → partitions, every member present (maybe with nothing).
pub type Assignment = BTreeMap<String, BTreeMap<String, Vec<i32>>>;

/// A partition assignment strategy (the JoinGroup protocol name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Per topic, consecutive ranges of partitions to members in member-id order.
    Range,
    /// All partitions, sorted, dealt to subscribed members in turn.
    RoundRobin,
    /// Balanced and sticky, with incremental (cooperative) rebalancing: members keep
    /// consuming what they keep across a rebalance.
    CooperativeSticky,
}

impl Assignor {
    /// The protocol name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// The assignor with this wire name.
    pub fn from_name(name: &str) -> Option<Assignor> {
        match name {
            "range" => Some(Assignor::Range),
            "roundrobin" => Some(Assignor::RoundRobin),
            "cooperative-sticky" => Some(Assignor::CooperativeSticky),
            _ => None,
        }
    }

    /// Whether members keep their partitions across a rebalance (KIP-429) rather than
    /// giving everything up before rejoining.
    pub fn is_cooperative(self) -> bool {
        self == Assignor::CooperativeSticky
    }

    /// Assigns `partitions` (topic → count) to the members of `subscriptions`.
    pub fn assign(
        self,
        subscriptions: &BTreeMap<String, MemberSubscription>,
        partitions: &BTreeMap<String, i32>,
    ) -> Assignment {
        let mut out: Assignment = subscriptions
            .keys()
            .map(|m| (m.clone(), BTreeMap::new()))
            .collect();
        match self {
            Assignor::Range => {
                for (topic, &count) in partitions {
                    let members: Vec<&String> = subscriptions
                        .iter()
                        .filter(|(_, s)| s.subscribes(topic))
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
                            if subscriptions[m].subscribes(topic) {
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
            Assignor::CooperativeSticky => {
                for (m, tps) in cooperative_sticky(subscriptions, partitions) {
                    let slot = out.get_mut(&m).expect("member");
                    for (t, p) in tps {
                        slot.entry(t).or_default().push(p);
                    }
                }
            }
        }
        out
    }
}

/// The cooperative-sticky assignment, as sets of partitions per member.
///
/// 1. Ownership claims are validated: a partition that still exists, of a topic the member
///    still subscribes to, claimed by one member only (on a conflict the claim from the
///    highest generation wins, then the lowest member id).
/// 2. Every member keeps its valid claims; unowned partitions go, in order, to the
///    eligible member holding the fewest.
/// 3. While some member holds two or more partitions more than an eligible other member,
///    one partition moves from the fuller to the emptier (newly given ones first), so the
///    result is balanced and moves as little as it can.
/// 4. Cooperative step: a partition that ends up with a member other than its valid
///    claimant is left out of this round. Its claimant sees it revoked and rejoins; the
///    follow-up rebalance finds it unowned and gives it out.
fn cooperative_sticky(
    subscriptions: &BTreeMap<String, MemberSubscription>,
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    let exists = |(t, p): &TopicPartition| partitions.get(t).is_some_and(|&n| *p >= 0 && *p < n);
    // 1. Valid claims, highest generation first.
    let mut claimants: Vec<(&String, &MemberSubscription)> = subscriptions.iter().collect();
    claimants.sort_by(|a, b| b.1.generation.cmp(&a.1.generation).then(a.0.cmp(b.0)));
    let mut owner: BTreeMap<TopicPartition, String> = BTreeMap::new();
    for (m, s) in claimants {
        for tp in &s.owned {
            if exists(tp) && s.subscribes(&tp.0) && !owner.contains_key(tp) {
                owner.insert(tp.clone(), m.clone());
            }
        }
    }
    // 2. Keep claims, then give out the rest to the least loaded eligible member.
    let mut held: BTreeMap<String, BTreeSet<TopicPartition>> = subscriptions
        .keys()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for (tp, m) in &owner {
        held.get_mut(m).expect("member").insert(tp.clone());
    }
    let mut given: BTreeSet<TopicPartition> = BTreeSet::new();
    for (t, &n) in partitions {
        for p in 0..n {
            let tp = (t.clone(), p);
            if owner.contains_key(&tp) {
                continue;
            }
            let target = subscriptions
                .iter()
                .filter(|(_, s)| s.subscribes(t))
                .map(|(m, _)| m)
                .min_by_key(|m| (held[*m].len(), (*m).clone()));
            if let Some(m) = target {
                held.get_mut(m).expect("member").insert(tp.clone());
                given.insert(tp);
            }
        }
    }
    // 3. Balance. Each move lowers the sum of squared loads, so this ends.
    loop {
        let mut fullest: Vec<&String> = held.keys().collect();
        fullest.sort_by_key(|m| std::cmp::Reverse(held[*m].len()));
        let mut step = None;
        'search: for from in fullest {
            // Newly given partitions move first, then owned ones, last ones first.
            let mut order: Vec<&TopicPartition> = held[from].iter().collect();
            order.sort_by_key(|tp| (!given.contains(*tp), std::cmp::Reverse(*tp)));
            for tp in order {
                let to = subscriptions
                    .iter()
                    .filter(|(m, s)| *m != from && s.subscribes(&tp.0))
                    .map(|(m, _)| m)
                    .min_by_key(|m| (held[*m].len(), (*m).clone()));
                if let Some(to) = to {
                    if held[from].len() > held[to].len() + 1 {
                        step = Some((from.clone(), to.clone(), tp.clone()));
                        break 'search;
                    }
                }
            }
        }
        let Some((from, to, tp)) = step else { break };
        held.get_mut(&from).expect("member").remove(&tp);
        held.get_mut(&to).expect("member").insert(tp);
    }
    // 4. Nothing changes hands within one rebalance.
    for (m, tps) in held.iter_mut() {
        tps.retain(|tp| owner.get(tp).is_none_or(|o| o == m));
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(list: &[(&str, &[&str])]) -> BTreeMap<String, MemberSubscription> {
        list.iter()
            .map(|(m, ts)| {
                (
                    m.to_string(),
                    MemberSubscription::topics(ts.iter().copied()),
                )
            })
            .collect()
    }

    fn parts(list: &[(&str, i32)]) -> BTreeMap<String, i32> {
        list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn owning(s: &mut BTreeMap<String, MemberSubscription>, m: &str, gen: i32, a: &Assignment) {
        let e = s.get_mut(m).unwrap();
        e.generation = gen;
        e.owned = a[m]
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
            .collect();
    }

    fn count(a: &Assignment, m: &str) -> usize {
        a[m].values().map(Vec::len).sum()
    }

    #[test]
    fn range_gives_the_first_members_the_extra_partition() {
        let r = Assignor::Range.assign(&subs(&[("a", &["t"]), ("b", &["t"])]), &parts(&[("t", 5)]));
        assert_eq!(r["a"]["t"], vec![0, 1, 2]);
        assert_eq!(r["b"]["t"], vec![3, 4]);
    }

    #[test]
    fn roundrobin_deals_in_turn_and_skips_unsubscribed() {
        let r = Assignor::RoundRobin.assign(
            &subs(&[("a", &["t", "u"]), ("b", &["t"])]),
            &parts(&[("t", 3), ("u", 2)]),
        );
        assert_eq!(r["a"]["t"], vec![0, 2]);
        assert_eq!(r["b"]["t"], vec![1]);
        assert_eq!(r["a"]["u"], vec![0, 1]);
    }

    #[test]
    fn sticky_alone_takes_everything() {
        let r = Assignor::CooperativeSticky.assign(&subs(&[("a", &["t"])]), &parts(&[("t", 6)]));
        assert_eq!(r["a"]["t"], vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_joining_member_gets_nothing_until_the_owner_has_let_go() {
        let p = parts(&[("t", 6)]);
        let mut s = subs(&[("a", &["t"])]);
        let first = Assignor::CooperativeSticky.assign(&s, &p);
        owning(&mut s, "a", 1, &first);
        s.insert("b".into(), MemberSubscription::topics(["t"]));
        // Round one: a keeps three, gives up three, and b gets none of them yet.
        let second = Assignor::CooperativeSticky.assign(&s, &p);
        assert_eq!(count(&second, "a"), 3);
        assert_eq!(count(&second, "b"), 0);
        let kept: BTreeSet<i32> = second["a"]["t"].iter().copied().collect();
        assert!(kept.is_subset(&(0..6).collect()));
        // Round two (a rejoined owning its three): b gets exactly the three a gave up.
        owning(&mut s, "a", 2, &second);
        let third = Assignor::CooperativeSticky.assign(&s, &p);
        assert_eq!(third["a"]["t"], second["a"]["t"], "a keeps what it kept");
        let b: BTreeSet<i32> = third["b"]["t"].iter().copied().collect();
        assert_eq!(b.len(), 3);
        assert!(b.is_disjoint(&kept));
    }

    #[test]
    fn a_leaving_member_s_partitions_go_out_at_once_and_the_rest_stay() {
        let p = parts(&[("t", 7), ("u", 2)]);
        let mut s = subs(&[("a", &["t", "u"]), ("b", &["t", "u"]), ("c", &["t", "u"])]);
        let first = Assignor::CooperativeSticky.assign(&s, &p);
        for m in ["a", "b", "c"] {
            owning(&mut s, m, 1, &first);
            assert!((2..=4).contains(&count(&first, m)), "{first:?}");
        }
        s.remove("b");
        let second = Assignor::CooperativeSticky.assign(&s, &p);
        for m in ["a", "c"] {
            for (t, ps) in &first[m] {
                for q in ps {
                    assert!(second[m][t].contains(q), "{m} lost {t}-{q}: {second:?}");
                }
            }
        }
        assert_eq!(count(&second, "a") + count(&second, "c"), 9);
        assert!(count(&second, "a").abs_diff(count(&second, "c")) <= 1);
    }

    #[test]
    fn conflicting_claims_go_to_the_newest_generation() {
        let p = parts(&[("t", 2)]);
        let mut s = subs(&[("a", &["t"]), ("b", &["t"])]);
        s.get_mut("a").unwrap().owned = vec![("t".into(), 0), ("t".into(), 1)];
        s.get_mut("a").unwrap().generation = 3;
        s.get_mut("b").unwrap().owned = vec![("t".into(), 0)];
        s.get_mut("b").unwrap().generation = 2;
        let r = Assignor::CooperativeSticky.assign(&s, &p);
        // a's claim wins both; balancing moves one to b, which waits for a to let go.
        assert_eq!(count(&r, "a"), 1);
        assert_eq!(count(&r, "b"), 0);
    }

    #[test]
    fn claims_on_vanished_topics_or_unsubscribed_ones_are_dropped() {
        let p = parts(&[("t", 2)]);
        let mut s = subs(&[("a", &["t"]), ("b", &["t"])]);
        s.get_mut("a").unwrap().owned = vec![("gone".into(), 0), ("t".into(), 5)];
        let r = Assignor::CooperativeSticky.assign(&s, &p);
        assert_eq!(r["a"]["t"], vec![0]);
        assert_eq!(r["b"]["t"], vec![1]);
    }

    #[test]
    fn sticky_balances_only_among_eligible_members() {
        let p = parts(&[("t", 4), ("u", 4)]);
        let s = subs(&[("a", &["t"]), ("b", &["t", "u"]), ("c", &["u"])]);
        let r = Assignor::CooperativeSticky.assign(&s, &p);
        assert!(r["a"].keys().all(|t| t == "t"));
        assert!(r["c"].keys().all(|t| t == "u"));
        let counts = [count(&r, "a"), count(&r, "b"), count(&r, "c")];
        assert_eq!(counts.iter().sum::<usize>(), 8);
        assert!(
            counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
            "{counts:?}"
        );
    }
}
