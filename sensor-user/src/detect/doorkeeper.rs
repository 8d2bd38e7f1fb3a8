//! The doorkeeper of the prefix and session tables: a prefix or a session gets an entry once a
//! second source is seen in it. Most prefixes and sessions have one source (an IPv6 /64 is
//! usually one host, a session one client), and their state would only repeat that source's:
//! what a prefix or session adds is the sum over its sources. This keeps those tables for the
//! ones that have several (a NAT pool, a /24 of rotating addresses, a session shared between
//! addresses) instead of churning through every source's.
//!
//! It is the doorkeeper of `TinyLFU` caches (a Bloom filter that admits a key on its second
//! sighting), keyed by (entity, source) pairs: a pair seen for the first time marks the entity
//! as seen, and a new pair of an entity already seen admits it. Each key sets two bits; a
//! generation takes a fixed number of keys (one per sixteen bits, so at most an eighth of its
//! bits are set) and is then replaced by a new one, the previous generation still answering. So
//! its false positives stay near 3 % whatever the traffic (a one-source entity admitted early,
//! or a second source taken for the first: a third admits it), and it remembers the latest one
//! to two generations of keys: the time that covers shrinks as traffic grows, like that of an
//! LRU table. The counts of an entity start when it is admitted: the traffic of its first
//! source before the second came is not in them (the source's own state has it).

/// Bits set per key.
const BITS_PER_KEY: usize = 2;
/// Bits of a generation per key it takes.
const BITS_PER_SLOT: usize = 16;

/// Two generations of a Bloom filter of (entity, source) pairs and entities.
pub(crate) struct Doorkeeper {
    /// The generation being filled.
    cur: Box<[u64]>,
    /// The generation before it.
    prev: Box<[u64]>,
    /// Bits per generation, minus one (a power of two, at most 2^32).
    mask: u64,
    /// Keys added to `cur`.
    added: usize,
    /// Keys a generation takes.
    per_generation: usize,
}

impl Doorkeeper {
    /// A doorkeeper whose generations take at least `keys` keys each (at most 2^28).
    pub(crate) fn new(keys: usize) -> Self {
        let bits = keys
            .clamp(1, 1 << 28)
            .saturating_mul(BITS_PER_SLOT)
            .next_power_of_two()
            .max(64);
        Self {
            cur: vec![0; bits / 64].into_boxed_slice(),
            prev: vec![0; bits / 64].into_boxed_slice(),
            mask: bits as u64 - 1,
            added: 0,
            per_generation: bits / BITS_PER_SLOT,
        }
    }

    /// Whether the entity with hash `entity` is admitted on this sighting from a source, whose
    /// pair with the entity hashes to `pair` (both keyed hashes): `true` when the pair is new
    /// and another source was seen in the entity before. Records the sighting.
    pub(crate) fn admits(&mut self, entity: u64, pair: u64) -> bool {
        if self.contains(pair) {
            return false;
        }
        self.insert(pair);
        if self.contains(entity) {
            return true;
        }
        self.insert(entity);
        false
    }

    /// Bytes held.
    pub(crate) fn memory(&self) -> usize {
        (self.cur.len() + self.prev.len()) * size_of::<u64>()
    }

    /// The bits of key `h`.
    fn bits(&self, h: u64) -> [u64; BITS_PER_KEY] {
        [h & self.mask, (h >> 32) & self.mask]
    }

    /// Whether every bit of `h` is set in one generation.
    fn contains(&self, h: u64) -> bool {
        let bits = self.bits(h);
        let all = |g: &[u64]| bits.iter().all(|&b| test(g, b));
        all(&self.cur) || all(&self.prev)
    }

    /// Adds `h` to the current generation, starting a new one when it is full.
    fn insert(&mut self, h: u64) {
        if self.added >= self.per_generation {
            std::mem::swap(&mut self.cur, &mut self.prev);
            self.cur.fill(0);
            self.added = 0;
        }
        for b in self.bits(h) {
            if let Some(w) = self.cur.get_mut((b / 64) as usize) {
                *w |= 1 << (b % 64);
            }
        }
        self.added += 1;
    }
}

/// Whether bit `b` of `g` is set.
fn test(g: &[u64], b: u64) -> bool {
    g.get((b / 64) as usize)
        .is_some_and(|w| w & (1 << (b % 64)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A well-mixed hash of a small integer.
    fn mix(i: u64) -> u64 {
        let mut x = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// The pair of entity `e` and source `s`.
    fn pair(e: u64, s: u64) -> u64 {
        mix(mix(e) ^ s.rotate_left(29) ^ 0x5555)
    }

    #[test]
    fn an_entity_is_admitted_by_its_second_source_only() {
        let mut k = Doorkeeper::new(1000);
        let e = mix(1);
        assert!(!k.admits(e, pair(1, 10)), "first source");
        assert!(!k.admits(e, pair(1, 10)), "the same source again");
        assert!(k.admits(e, pair(1, 11)), "a second source");
        assert!(!k.admits(e, pair(1, 11)), "the second source again");
        assert!(k.admits(e, pair(1, 12)), "a third source");
    }

    #[test]
    fn false_admissions_stay_rare_however_many_keys_pass() {
        // 1000 keys per generation; 200,000 one-source entities go through, far more than it
        // holds, and few are admitted.
        let mut k = Doorkeeper::new(1000);
        let admitted = (0..200_000_u64)
            .filter(|&i| k.admits(mix(i << 1), pair(i << 1, i)))
            .count();
        assert!(
            admitted < 200_000 / 20,
            "{admitted} one-source entities admitted"
        );
        // An entity whose second source comes within a generation is admitted.
        let e = mix(u64::MAX);
        assert!(!k.admits(e, pair(u64::MAX, 1)));
        for i in 0..500_u64 {
            k.admits(mix(i << 1 | 1), pair(i << 1 | 1, i));
        }
        assert!(k.admits(e, pair(u64::MAX, 2)));
        assert_eq!(k.memory(), 2 * 16_384 / 8);
    }
}
