//! The default partitioner: a keyed record goes where the Java client puts it
//! (`toPositive(murmur2(key)) % numPartitions`); keyless records stick to one partition
//! until its batch is sealed (KIP-480 sticky partitioning).

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), seed `0x9747b28c`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    // Java's switch falls through from case 3 to 1.
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client's default partitioner picks for `key`.
pub fn partition_for_key(key: &[u8], partitions: usize) -> i32 {
    debug_assert!(partitions > 0);
    ((murmur2(key) & 0x7fff_ffff) as usize % partitions.max(1)) as i32
}

/// A small xorshift generator for picking sticky partitions; not cryptographic.
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x1234_5678);
        Rng(seed | 1)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }

    /// A partition in `0..n` other than `current` when there is a choice.
    pub(crate) fn next_sticky(&mut self, n: usize, current: Option<i32>) -> i32 {
        if n <= 1 {
            return 0;
        }
        match current {
            Some(c) => ((c as usize + 1 + self.below(n - 1)) % n) as i32,
            None => self.below(n) as i32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(key: &[u8], hash: i32) {
        assert_eq!(
            murmur2(key),
            hash,
            "murmur2({:?})",
            String::from_utf8_lossy(key)
        );
    }

    /// Known answers from Kafka's own `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_kafka_utils_test() {
        check(b"21", -973_932_308);
        check(b"foobar", -790_332_482);
        check(b"a-little-bit-long-string", -985_981_536);
        check(b"a-little-bit-longer-string", -1_486_304_829);
        check(
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        );
        check(b"abc", 479_470_107);
    }

    #[test]
    fn partition_is_positive_hash_modulo_count() {
        // -973932308 & 0x7fffffff = 1173551340; % 10 = 0, % 7 = 1173551340 mod 7.
        assert_eq!(partition_for_key(b"21", 10), 0);
        assert_eq!(partition_for_key(b"21", 7), (1_173_551_340u32 % 7) as i32);
        // -790332482 & 0x7fffffff = 1357151166.
        assert_eq!(
            partition_for_key(b"foobar", 3),
            (1_357_151_166u32 % 3) as i32
        );
        for n in 1..50 {
            assert!((0..n as i32).contains(&partition_for_key(b"any", n)));
        }
    }

    #[test]
    fn sticky_moves_to_another_partition() {
        let mut r = Rng::new();
        for _ in 0..100 {
            let p = r.next_sticky(4, Some(2));
            assert!(p != 2 && (0..4).contains(&p));
        }
        assert_eq!(r.next_sticky(1, Some(0)), 0);
    }
}
