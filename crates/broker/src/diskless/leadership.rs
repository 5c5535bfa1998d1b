//! Who leads what in a diskless cluster. Any broker can serve any partition (offsets are
//! decided in PostgreSQL), so "leader" only tells clients where to send a partition's
//! requests, spreading the load. Every broker computes the same answer from the same live
//! set, with no coordination: rendezvous (highest random weight) hashing, so a broker that
//! leaves moves only the partitions (and groups) it led, and one that joins takes about
//! `1/n` of them.

use uuid::Uuid;

/// FNV-1a over `bytes`, then a SplitMix64 finaliser: stable across builds and platforms
/// (unlike `std`'s hasher), which every broker of a cluster must agree on.
fn hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The node of `live` with the highest weight for `key` (ties, which need a 64-bit
/// collision, go to the lowest node id).
fn rendezvous(live: &[i32], key: &[&[u8]]) -> Option<i32> {
    live.iter()
        .map(|&n| {
            let node = n.to_be_bytes();
            let mut parts = key.to_vec();
            parts.push(&node);
            (hash(&parts), std::cmp::Reverse(n))
        })
        .max()
        .map(|(_, std::cmp::Reverse(n))| n)
}

/// The leader of partition `partition` of topic `topic_id` among the `live` node ids.
pub fn partition_leader(live: &[i32], topic_id: Uuid, partition: i32) -> Option<i32> {
    rendezvous(
        live,
        &[b"partition", topic_id.as_bytes(), &partition.to_be_bytes()],
    )
}

/// The coordinator of `key` (a group id, key type 0) among the `live` node ids.
pub fn group_coordinator(live: &[i32], group: &str) -> Option<i32> {
    rendezvous(live, &[b"group", group.as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaders_are_spread_stable_and_move_only_when_their_broker_leaves() {
        let topic = Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788);
        let all = [1, 2, 3];
        let leaders: Vec<i32> = (0..300)
            .map(|p| partition_leader(&all, topic, p).unwrap())
            .collect();
        // The order of the live list does not matter.
        for (p, l) in leaders.iter().enumerate() {
            assert_eq!(partition_leader(&[3, 1, 2], topic, p as i32), Some(*l));
        }
        // Spread: each broker leads a fair share of 300 partitions.
        for n in all {
            let led = leaders.iter().filter(|l| **l == n).count();
            assert!((70..=130).contains(&led), "node {n} leads {led}");
        }
        // Node 2 leaves: only its partitions move.
        for (p, l) in leaders.iter().enumerate() {
            let after = partition_leader(&[1, 3], topic, p as i32).unwrap();
            if *l != 2 {
                assert_eq!(after, *l, "partition {p}");
            } else {
                assert_ne!(after, 2);
            }
        }
        assert_eq!(partition_leader(&[], topic, 0), None);
        assert_eq!(group_coordinator(&[7], "g"), Some(7));
        // A fixed answer: every build and platform must agree.
        assert_eq!(hash(&[b"a"]), hash(&[b"a"]));
        assert_ne!(hash(&[b"ab", b"c"]), hash(&[b"a", b"bc"]));
    }
}
