//! The keyed hash of the analysis' hash tables (the flow table and the API inventory), whose
//! keys are chosen by remote peers: addresses and ports, methods, hosts and paths.
//!
//! The tables hash with foldhash, keyed with 128 random bits per table drawn from std's
//! `RandomState`, whose own keys come from the operating system's random source. That is what
//! keeps a flood of chosen keys from landing in one bucket (HashDoS): foldhash mixes every input
//! word with the secret seeds through full 64x64->128-bit multiplications, so without the
//! seeds a peer cannot compute which keys collide, and foldhash has no known seed-independent
//! collisions. Its own documentation scopes this to attackers who cannot study the process to
//! recover its seeds; the sensor never reveals a table hash or bucket order (output is in
//! emission order, the inventory is sorted), and the tables stay bounded (`max_flows`, the
//! inventory's endpoint cap) whatever the keys. foldhash's own default seed comes from address
//! layout and time, which is why the seeds here are drawn from the OS instead. It replaced
//! `SipHash`-1-3, which cost three to four times as much per 36-byte flow key.

use std::hash::BuildHasher;
use std::sync::OnceLock;

use foldhash::SharedSeed;
use foldhash::fast::SeedableRandomState;

/// The [`BuildHasher`] of the analysis' hash tables.
pub(crate) type KeyedState = SeedableRandomState;

/// A new hasher with fresh random seeds: 64 bits shared by every table of the process, drawn
/// once, and 64 bits of its own.
pub(crate) fn keyed_state() -> KeyedState {
    static SHARED: OnceLock<SharedSeed> = OnceLock::new();
    // A std `RandomState` is keyed from the OS's random source; the values it hashes only need
    // to differ, the randomness is in its key.
    let os_random = std::hash::RandomState::new();
    let shared = SHARED.get_or_init(|| SharedSeed::from_u64(os_random.hash_one(0_u64)));
    SeedableRandomState::with_seed(os_random.hash_one(1_u64), shared)
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::keyed_state;

    #[test]
    fn hashers_are_keyed_apart() {
        let (a, b) = (keyed_state(), keyed_state());
        let key = [7_u8; 36];
        assert_eq!(a.hash_one(key), a.hash_one(key), "one hasher is stable");
        assert_ne!(
            a.hash_one(key),
            b.hash_one(key),
            "two tables have different keys"
        );
    }
}
