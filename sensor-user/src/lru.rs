//! A hash table with a least-recently-used order: the storage of the flow table and of the
//! detectors' entity state.
//!
//! Entries live in a slab of fixed-size pages addressed by `u32` slot numbers; a hash table of
//! slot numbers finds them by key (the key is stored once, in the slab: the index costs 5 bytes
//! per bucket), and the slots form an intrusive doubly linked list from the most to the least
//! recently touched. Keys are hashed with a randomly keyed foldhash (see `crate::keyed_hash` for
//! why hostile addresses cannot aim at one bucket). Lookup, insert, touch, remove and "oldest"
//! are O(1). Pages never move, so growing the table never copies the entries, and memory grows
//! one page at a time instead of doubling. Free slots are chained through the slab itself.
//!
//! A page keeps the keys and links of its slots in one dense array and the values in another,
//! so that lookups and recency updates, which touch the keys and links of slots other than the
//! one being used, stay within a few cache lines instead of one per (large) value.

use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;

use crate::keyed_hash::{KeyedState, keyed_state};

/// Slots per page.
const PAGE: usize = 256;

/// "No slot" in the links.
const NIL: u32 = u32::MAX;

/// The key and links of one slot. They are kept apart from the values, in a dense array: a
/// lookup compares keys and a touch rewrites the links of two other slots, and with the values
/// (a few hundred bytes each) beside them every one of those accesses was a cache miss of its
/// own.
#[derive(Clone, Copy)]
struct Head<K> {
    /// The key of a used slot (left over in a free one).
    key: K,
    /// Used slot: the next more recently touched slot. Free slot: the next free slot.
    newer: u32,
    /// Used slot: the next less recently touched slot.
    older: u32,
}

/// A page of slots: slot `i` of the page is `heads[i]` and `values[i]`, used when its value is
/// `Some`.
struct Page<K, V> {
    /// Keys and links.
    heads: Box<[Head<K>]>,
    /// Values, `None` in free slots.
    values: Box<[Option<V>]>,
}

/// A map from `K` to `V` that knows which entry was touched least recently.
pub(crate) struct LruTable<K, V> {
    /// Slot numbers, hashed by their entry's key.
    index: HashTable<u32>,
    /// Hasher of keys.
    hasher: KeyedState,
    /// The slab.
    pages: Vec<Page<K, V>>,
    /// First free slot.
    free: u32,
    /// Most recently touched slot.
    newest: u32,
    /// Least recently touched slot.
    oldest: u32,
    /// The key [`LruTable::find_remembered`] found last and its slot: consecutive segments of
    /// one connection (a response and its ACK, a handshake, a close) look the same key up
    /// again. Always a used slot holding that key: [`LruTable::remove`] forgets it.
    last: Option<(K, u32)>,
}

impl<K: Hash + Eq + Copy + Default, V> LruTable<K, V> {
    /// An empty table that allocates nothing yet.
    pub(crate) fn new() -> Self {
        Self {
            index: HashTable::new(),
            hasher: keyed_state(),
            pages: Vec::new(),
            free: NIL,
            newest: NIL,
            oldest: NIL,
            last: None,
        }
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// The slot of `key`.
    pub(crate) fn find(&self, key: &K) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        // The index holds used slots only, so the key of any slot it names is live.
        self.index
            .find(hash, |&slot| self.head(slot).is_some_and(|h| h.key == *key))
            .copied()
    }

    /// [`LruTable::find`], answered without hashing when `key` is the key this found last.
    pub(crate) fn find_remembered(&mut self, key: &K) -> Option<u32> {
        if let Some((last, slot)) = &self.last
            && last == key
        {
            return Some(*slot);
        }
        let slot = self.find(key)?;
        self.last = Some((*key, slot));
        Some(slot)
    }

    /// The value in `slot`.
    pub(crate) fn get(&self, slot: u32) -> Option<&V> {
        let slot = slot as usize;
        self.pages
            .get(slot / PAGE)?
            .values
            .get(slot % PAGE)?
            .as_ref()
    }

    /// The value in `slot`, mutably.
    pub(crate) fn get_mut(&mut self, slot: u32) -> Option<&mut V> {
        let slot = slot as usize;
        self.pages
            .get_mut(slot / PAGE)?
            .values
            .get_mut(slot % PAGE)?
            .as_mut()
    }

    /// The least recently touched slot.
    pub(crate) fn oldest(&self) -> Option<u32> {
        (self.oldest != NIL).then_some(self.oldest)
    }

    /// Inserts a key that is not in the table yet, as the most recently touched entry, and
    /// returns its slot. Returns `None` if the key is present already or the slab is full.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<u32> {
        if self.find(&key).is_some() {
            return None;
        }
        let slot = self.take_free()?;
        let old_newest = self.newest;
        {
            let i = slot as usize;
            let page = self.pages.get_mut(i / PAGE)?;
            *page.values.get_mut(i % PAGE)? = Some(value);
            *page.heads.get_mut(i % PAGE)? = Head {
                key,
                newer: NIL,
                older: old_newest,
            };
        }
        self.set_newer(old_newest, slot);
        self.newest = slot;
        if self.oldest == NIL {
            self.oldest = slot;
        }
        let hash = self.hasher.hash_one(key);
        let (pages, hasher) = (&self.pages, &self.hasher);
        self.index.insert_unique(hash, slot, |&s| {
            Self::head_in(pages, s).map_or(0, |h| hasher.hash_one(h.key))
        });
        Some(slot)
    }

    /// Marks `slot` as the most recently touched.
    pub(crate) fn touch(&mut self, slot: u32) {
        if slot == self.newest {
            return;
        }
        if self.unlink(slot).is_none() {
            return;
        }
        let old_newest = self.newest;
        if let Some(h) = self.head_mut(slot) {
            h.newer = NIL;
            h.older = old_newest;
        }
        self.set_newer(old_newest, slot);
        self.newest = slot;
        if self.oldest == NIL {
            self.oldest = slot;
        }
    }

    /// Removes the entry in `slot`.
    pub(crate) fn remove(&mut self, slot: u32) -> Option<(K, V)> {
        self.get(slot)?;
        if self.last.is_some_and(|(_, s)| s == slot) {
            self.last = None;
        }
        let key = self.head(slot)?.key;
        let hash = self.hasher.hash_one(key);
        self.unlink(slot)?;
        if let Ok(entry) = self.index.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
        let free = self.free;
        let i = slot as usize;
        let page = self.pages.get_mut(i / PAGE)?;
        let value = page.values.get_mut(i % PAGE)?.take()?;
        if let Some(h) = page.heads.get_mut(i % PAGE) {
            h.newer = free;
        }
        self.free = slot;
        Some((key, value))
    }

    /// Keys, in slot order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = K> + '_ {
        self.pages.iter().flat_map(|page| {
            page.heads
                .iter()
                .zip(page.values.iter())
                .filter(|(_, v)| v.is_some())
                .map(|(h, _)| h.key)
        })
    }

    /// Keys and values, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (K, &V)> {
        self.pages.iter().flat_map(|page| {
            page.heads
                .iter()
                .zip(page.values.iter())
                .filter_map(|(h, v)| v.as_ref().map(|v| (h.key, v)))
        })
    }

    /// Values, in slot order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.pages
            .iter()
            .flat_map(|page| page.values.iter().filter_map(Option::as_ref))
    }

    /// Bytes held by the table itself (slab pages and index), not by the values' own heap.
    pub(crate) fn memory(&self) -> usize {
        let pages = self.pages.capacity() * size_of::<Page<K, V>>()
            + self.pages.len() * PAGE * (size_of::<Head<K>>() + size_of::<Option<V>>());
        // A bucket holds a slot number and a control byte; the table keeps 1/8 of its buckets
        // free, so it has capacity * 8 / 7 of them (rounded up to a power of two, which the
        // capacity already reflects).
        let buckets = self.index.capacity().div_ceil(7) * 8;
        pages + buckets * (size_of::<u32>() + 1)
    }

    /// The key and links of `slot`, used or free.
    fn head(&self, slot: u32) -> Option<&Head<K>> {
        Self::head_in(&self.pages, slot)
    }

    /// The key and links of `slot` of `pages`, used or free.
    fn head_in(pages: &[Page<K, V>], slot: u32) -> Option<&Head<K>> {
        let slot = slot as usize;
        pages.get(slot / PAGE)?.heads.get(slot % PAGE)
    }

    /// The key and links of `slot`, mutably.
    fn head_mut(&mut self, slot: u32) -> Option<&mut Head<K>> {
        let slot = slot as usize;
        self.pages.get_mut(slot / PAGE)?.heads.get_mut(slot % PAGE)
    }

    /// Detaches `slot` from the recency list, keeping it used.
    fn unlink(&mut self, slot: u32) -> Option<()> {
        self.get(slot)?;
        let Head { newer, older, .. } = *self.head(slot)?;
        if newer == NIL {
            self.newest = older;
        } else if let Some(h) = self.head_mut(newer) {
            h.older = older;
        }
        if older == NIL {
            self.oldest = newer;
        } else if let Some(h) = self.head_mut(older) {
            h.newer = newer;
        }
        Some(())
    }

    /// Sets the `newer` link of `slot` (`NIL` is no slot, and nothing is set).
    fn set_newer(&mut self, slot: u32, newer: u32) {
        if let Some(h) = self.head_mut(slot) {
            h.newer = newer;
        }
    }

    /// Pops a free slot, adding a page if none is left.
    fn take_free(&mut self) -> Option<u32> {
        if self.free == NIL {
            let first = u32::try_from(self.pages.len() * PAGE).ok()?;
            // The last slot of the page must stay below NIL.
            first.checked_add(PAGE as u32)?;
            let heads: Box<[Head<K>]> = (0..PAGE as u32)
                .map(|i| Head {
                    key: K::default(),
                    newer: if i + 1 == PAGE as u32 {
                        NIL
                    } else {
                        first + i + 1
                    },
                    older: NIL,
                })
                .collect();
            let values: Box<[Option<V>]> = (0..PAGE).map(|_| None).collect();
            self.pages.push(Page { heads, values });
            self.free = first;
        }
        let slot = self.free;
        if self.get(slot).is_some() {
            return None;
        }
        self.free = self.head(slot)?.newer;
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::LruTable;

    /// One step of a scenario on a table of `u32` keys.
    #[derive(Clone, Copy, Debug)]
    enum Op {
        Insert(u32),
        Touch(u32),
        Remove(u32),
        RemoveOldest,
    }

    /// Runs `ops` and checks the keys from the least to the most recently touched.
    fn check(name: &str, ops: &[Op], want_oldest_first: &[u32]) {
        let mut table = LruTable::new();
        for &op in ops {
            match op {
                Op::Insert(k) => {
                    table.insert(k, k * 10);
                }
                Op::Touch(k) => {
                    let slot = table
                        .find_remembered(&k)
                        .unwrap_or_else(|| panic!("{name}: {k} missing"));
                    table.touch(slot);
                }
                Op::Remove(k) => {
                    let slot = table
                        .find_remembered(&k)
                        .unwrap_or_else(|| panic!("{name}: {k} missing"));
                    assert_eq!(table.remove(slot), Some((k, k * 10)), "{name}: remove {k}");
                }
                Op::RemoveOldest => {
                    let slot = table.oldest().unwrap_or_else(|| panic!("{name}: empty"));
                    table.remove(slot);
                }
            }
            // The remembered lookup agrees with the plain one after every step, whichever
            // key it remembers (slots are reused after a removal).
            for k in 0..8 {
                let plain = table.find(&k);
                assert_eq!(table.find_remembered(&k), plain, "{name}: {k} after {op:?}");
                assert_eq!(table.find_remembered(&k), plain, "{name}: {k} again");
            }
        }
        let mut got = Vec::new();
        while let Some(slot) = table.oldest() {
            let (k, v) = table
                .remove(slot)
                .unwrap_or_else(|| panic!("{name}: bad oldest"));
            assert_eq!(v, k * 10, "{name}: value of {k}");
            got.push(k);
        }
        assert_eq!(got, want_oldest_first, "{name}: order");
        assert_eq!(table.len(), 0, "{name}: map not emptied");
    }

    #[test]
    fn lru_order() {
        use Op::{Insert, Remove, RemoveOldest, Touch};
        let cases: &[(&str, &[Op], &[u32])] = &[
            ("empty", &[], &[]),
            (
                "insertion order",
                &[Insert(1), Insert(2), Insert(3)],
                &[1, 2, 3],
            ),
            (
                "duplicate insert ignored",
                &[Insert(1), Insert(2), Insert(1)],
                &[1, 2],
            ),
            (
                "touch oldest",
                &[Insert(1), Insert(2), Insert(3), Touch(1)],
                &[2, 3, 1],
            ),
            (
                "touch middle",
                &[Insert(1), Insert(2), Insert(3), Touch(2)],
                &[1, 3, 2],
            ),
            ("touch newest", &[Insert(1), Insert(2), Touch(2)], &[1, 2]),
            (
                "remove middle",
                &[Insert(1), Insert(2), Insert(3), Remove(2)],
                &[1, 3],
            ),
            (
                "remove oldest",
                &[Insert(1), Insert(2), RemoveOldest, Insert(3)],
                &[2, 3],
            ),
            (
                "slot reuse",
                &[
                    Insert(1),
                    Insert(2),
                    Remove(1),
                    Insert(3),
                    Insert(4),
                    Touch(2),
                ],
                &[3, 4, 2],
            ),
            ("single touched", &[Insert(1), Touch(1)], &[1]),
        ];
        for (name, ops, want) in cases {
            check(name, ops, want);
        }
    }

    #[test]
    fn grows_past_one_page_and_reuses_slots() {
        let mut table = LruTable::new();
        for k in 0..1000u32 {
            assert!(table.insert(k, k).is_some(), "insert {k}");
        }
        let pages_before = table.pages.len();
        for _ in 0..500 {
            let slot = table.oldest().unwrap_or_else(|| panic!("table empty"));
            table.remove(slot);
        }
        for k in 1000..1500u32 {
            assert!(table.insert(k, k).is_some(), "insert {k}");
        }
        assert_eq!(table.len(), 1000, "entry count");
        assert_eq!(
            table.pages.len(),
            pages_before,
            "freed slots were not reused"
        );
        let slot = table.oldest().unwrap_or_else(|| panic!("table empty"));
        assert_eq!(table.get(slot), Some(&500), "oldest entry");
        assert_eq!(table.values().count(), 1000, "values");
    }
}
