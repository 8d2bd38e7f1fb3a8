//! The open-addressed table of IPv4 blocks (`BLOCK_TABLE_V4`, see
//! `sensor_common::block_table`), read and written through a shared memory mapping of the array.
//!
//! XDP reads the slots while this module writes them, so every access goes through atomics,
//! and writes follow one order: a block is written into a free slot (`EMPTY` or `DELETED`, which
//! XDP skips) and only then marked `USED` with a release store; a removal marks the slot
//! `DELETED`. XDP therefore never sees a `USED` slot with half of its fields. (XDP's plain loads
//! are ordered by x86-64's memory model; on weaker architectures the kernel side would need
//! load-acquire of `state`.) Writers are serialised by the verdict writer lock.

use std::{
    os::fd::{AsRawFd as _, BorrowedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
};

use sensor_common::{
    BlockSlotV4, BlockValue,
    block_table::{DELETED, EMPTY, MAX_PROBE, SLOTS, USED, slot_of},
};

/// The slots of the table.
pub(super) struct SlotTable {
    slots: NonNull<BlockSlotV4>,
    count: usize,
    /// Length of the shared mapping of the kernel array (zero when the slots are not mapped).
    mapped_len: usize,
    /// Ordinary memory holding the slots, for unit tests of the probing rules.
    #[cfg(test)]
    _heap: Option<Box<[BlockSlotV4]>>,
}

// SAFETY: the slots are only accessed through atomics, and the mapping lives as long as the
// table.
unsafe impl Send for SlotTable {}

impl Drop for SlotTable {
    fn drop(&mut self) {
        if self.mapped_len != 0 {
            // SAFETY: unmapping the mapping made in `map`, exactly once.
            unsafe { libc::munmap(self.slots.as_ptr().cast(), self.mapped_len) };
        }
    }
}

/// What an insert did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Insert {
    /// The address had a slot; its block was replaced. Carries the old verdict id.
    Replaced(u64),
    /// A free slot took the block.
    Added,
    /// No free slot within the probe window: the block must go elsewhere.
    Full,
}

impl SlotTable {
    /// Maps the array behind `fd` (a `BPF_F_MMAPABLE` array of [`SLOTS`] slots).
    pub(super) fn map(fd: BorrowedFd<'_>) -> std::io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let count = SLOTS as usize;
        let len = (count * size_of::<BlockSlotV4>()).div_ceil(page) * page;
        // SAFETY: a new shared mapping of the map's values; the kernel checks the length
        // against the array and the descriptor's access mode.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let slots = NonNull::new(ptr.cast::<BlockSlotV4>())
            .ok_or_else(|| std::io::Error::other("mmap returned a null mapping"))?;
        Ok(Self {
            slots,
            count,
            mapped_len: len,
            #[cfg(test)]
            _heap: None,
        })
    }

    /// A table in ordinary memory, all slots empty.
    #[cfg(test)]
    pub(super) fn heap() -> Self {
        let mut slots = vec![BlockSlotV4::default(); SLOTS as usize].into_boxed_slice();
        let ptr = NonNull::new(slots.as_mut_ptr()).expect("a boxed slice is not null");
        Self {
            slots: ptr,
            count: slots.len(),
            mapped_len: 0,
            _heap: Some(slots),
        }
    }

    fn slot(&self, i: usize) -> *mut BlockSlotV4 {
        assert!(i < self.count, "slot {i} out of {}", self.count);
        // SAFETY: in bounds (checked above).
        unsafe { self.slots.as_ptr().add(i) }
    }

    /// The atomic view of a `u32` field of a slot; `p` must point into this table's slots.
    #[expect(
        clippy::unused_self,
        reason = "ties the reference to the table's lifetime"
    )]
    fn u32_at(&self, p: *mut u32) -> &AtomicU32 {
        // SAFETY: `p` points into the slot array, which lives (and stays 8-byte aligned) as
        // long as `self`; all access to it is atomic.
        unsafe { AtomicU32::from_ptr(p) }
    }

    /// The atomic view of a `u64` field of a slot; `p` must point into this table's slots.
    #[expect(
        clippy::unused_self,
        reason = "ties the reference to the table's lifetime"
    )]
    fn u64_at(&self, p: *mut u64) -> &AtomicU64 {
        // SAFETY: as for `u32_at`.
        unsafe { AtomicU64::from_ptr(p) }
    }

    fn state(&self, i: usize) -> u32 {
        let s = self.slot(i);
        self.u32_at(unsafe { &raw mut (*s).state })
            .load(Ordering::Acquire)
    }

    /// A copy of slot `i`.
    pub(super) fn read(&self, i: usize) -> BlockSlotV4 {
        let s = self.slot(i);
        // SAFETY: field pointers of a live slot.
        unsafe {
            let v = &raw mut (*s).value;
            BlockSlotV4 {
                state: self.u32_at(&raw mut (*s).state).load(Ordering::Acquire),
                addr: self.u32_at(&raw mut (*s).addr).load(Ordering::Relaxed),
                prefix_len: self
                    .u32_at(&raw mut (*s).prefix_len)
                    .load(Ordering::Relaxed),
                reserved: self.u32_at(&raw mut (*s).reserved).load(Ordering::Relaxed),
                value: BlockValue {
                    expires_at_ns: self
                        .u64_at(&raw mut (*v).expires_at_ns)
                        .load(Ordering::Relaxed),
                    verdict_id: self
                        .u64_at(&raw mut (*v).verdict_id)
                        .load(Ordering::Relaxed),
                    hits: self.u64_at(&raw mut (*v).hits).load(Ordering::Relaxed),
                    last_hit_ns: self
                        .u64_at(&raw mut (*v).last_hit_ns)
                        .load(Ordering::Relaxed),
                    reason: self.u32_at(&raw mut (*v).reason).load(Ordering::Relaxed),
                    prefix_len: self
                        .u32_at(&raw mut (*v).prefix_len)
                        .load(Ordering::Relaxed),
                },
            }
        }
    }

    fn write_value(&self, i: usize, value: &BlockValue) {
        let s = self.slot(i);
        // SAFETY: field pointers of a live slot.
        unsafe {
            let v = &raw mut (*s).value;
            self.u64_at(&raw mut (*v).verdict_id)
                .store(value.verdict_id, Ordering::Relaxed);
            self.u64_at(&raw mut (*v).hits)
                .store(value.hits, Ordering::Relaxed);
            self.u64_at(&raw mut (*v).last_hit_ns)
                .store(value.last_hit_ns, Ordering::Relaxed);
            self.u32_at(&raw mut (*v).reason)
                .store(value.reason, Ordering::Relaxed);
            self.u32_at(&raw mut (*v).prefix_len)
                .store(value.prefix_len, Ordering::Relaxed);
            self.u64_at(&raw mut (*v).expires_at_ns)
                .store(value.expires_at_ns, Ordering::Release);
        }
    }

    /// The slots the network `addr`/`len` may occupy, in probe order.
    fn window(addr: u32, len: u32, seed: u64) -> impl Iterator<Item = usize> + use<> {
        let home = slot_of(addr, len, seed);
        let mask = SLOTS - 1;
        (0..MAX_PROBE).map(move |i| (home.wrapping_add(i) & mask) as usize)
    }

    /// The slot holding the network `addr`/`len`, if any.
    pub(super) fn find(&self, addr: u32, len: u32, seed: u64) -> Option<usize> {
        for i in Self::window(addr, len, seed) {
            match self.state(i) {
                EMPTY => return None,
                USED => {
                    let slot = self.read(i);
                    if slot.addr == addr && slot.prefix_len == len {
                        return Some(i);
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// Inserts or replaces the block of the network `addr`/`len` (`addr` masked).
    pub(super) fn insert(&self, addr: u32, len: u32, seed: u64, value: &BlockValue) -> Insert {
        if let Some(i) = self.find(addr, len, seed) {
            let old = self.read(i).value.verdict_id;
            self.write_value(i, value);
            return Insert::Replaced(old);
        }
        let free =
            Self::window(addr, len, seed).find(|&i| matches!(self.state(i), EMPTY | DELETED));
        let Some(i) = free else {
            return Insert::Full;
        };
        let s = self.slot(i);
        // The slot is not USED, so XDP skips it while it is filled in.
        self.u32_at(unsafe { &raw mut (*s).addr })
            .store(addr, Ordering::Relaxed);
        self.u32_at(unsafe { &raw mut (*s).prefix_len })
            .store(len, Ordering::Relaxed);
        self.write_value(i, value);
        self.u32_at(unsafe { &raw mut (*s).state })
            .store(USED, Ordering::Release);
        Insert::Added
    }

    /// Removes the block of the network `addr`/`len`; returns its verdict id, or `None` if it
    /// has no slot.
    pub(super) fn remove(&self, addr: u32, len: u32, seed: u64) -> Option<u64> {
        let i = self.find(addr, len, seed)?;
        let id = self.read(i).value.verdict_id;
        let s = self.slot(i);
        self.u32_at(unsafe { &raw mut (*s).state })
            .store(DELETED, Ordering::Release);
        Some(id)
    }

    /// Every block in the table.
    pub(super) fn blocks(&self) -> Vec<BlockSlotV4> {
        (0..self.count)
            .filter(|&i| self.state(i) == USED)
            .map(|i| self.read(i))
            .collect()
    }

    /// The prefix lengths of the blocks in the table: bit `n` for length `n`.
    pub(super) fn lens(&self) -> u64 {
        (0..self.count)
            .filter(|&i| self.state(i) == USED)
            .fold(0, |acc, i| acc | 1 << self.read(i).prefix_len.min(32))
    }

    /// Turns every tombstone back into an empty slot; only sound when no slot is used (then no
    /// probe can need to pass one), which the caller checks under the writer lock.
    pub(super) fn clear_tombstones(&self) {
        for i in 0..self.count {
            if self.state(i) == DELETED {
                let s = self.slot(i);
                self.u32_at(unsafe { &raw mut (*s).state })
                    .store(EMPTY, Ordering::Release);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(id: u64) -> BlockValue {
        BlockValue {
            expires_at_ns: 1_000 + id,
            verdict_id: id,
            ..BlockValue::default()
        }
    }

    /// Host addresses that share a home slot under `seed`, found by search.
    fn colliding(seed: u64, n: usize) -> Vec<u32> {
        let home = slot_of(0, 32, seed);
        (0u32..)
            .filter(|a| slot_of(*a, 32, seed) == home)
            .take(n)
            .collect()
    }

    #[test]
    fn insert_find_replace_remove() {
        let t = SlotTable::heap();
        let seed = 0x9e37_79b9_7f4a_7c15;
        for (step, addr) in [0x0a00_0001u32, 0xc633_6409, 0xcb00_7107]
            .into_iter()
            .enumerate()
        {
            let id = step as u64 + 1;
            assert_eq!(
                t.insert(addr, 32, seed, &block(id)),
                Insert::Added,
                "{addr:#x}"
            );
            let i = t.find(addr, 32, seed).expect("found after insert");
            assert_eq!(t.read(i).value, block(id));
            assert_eq!(
                t.find(addr, 31, seed),
                None,
                "another length is another key"
            );
            assert_eq!(
                t.insert(addr, 32, seed, &block(id + 10)),
                Insert::Replaced(id)
            );
            assert_eq!(t.read(i).value.verdict_id, id + 10, "replaced in place");
        }
        assert_eq!(t.blocks().len(), 3);
        assert_eq!(t.remove(0xc633_6409, 32, seed), Some(12));
        assert_eq!(t.find(0xc633_6409, 32, seed), None);
        assert_eq!(t.remove(0xc633_6409, 32, seed), None, "removed once");
        assert_eq!(t.blocks().len(), 2);
        assert_eq!(t.lens(), 1 << 32);
        let net = 0x0064_33c6; // 198.51.100.0 in memory order
        assert_eq!(t.insert(net, 24, seed, &block(50)), Insert::Added);
        assert_eq!(t.lens(), 1 << 32 | 1 << 24);
        assert!(t.find(net, 24, seed).is_some());
    }

    #[test]
    fn collisions_probe_past_tombstones_and_fill_the_window() {
        let t = SlotTable::heap();
        let seed = 0x1234_5678_9abc_def1;
        let addrs = colliding(seed, MAX_PROBE as usize + 1);
        for (k, a) in addrs.iter().take(MAX_PROBE as usize).enumerate() {
            assert_eq!(
                t.insert(*a, 32, seed, &block(k as u64)),
                Insert::Added,
                "{k}"
            );
        }
        let last = addrs[MAX_PROBE as usize];
        assert_eq!(
            t.insert(last, 32, seed, &block(99)),
            Insert::Full,
            "window full"
        );
        // A tombstone in the middle of the run does not hide the entries after it...
        assert_eq!(t.remove(addrs[2], 32, seed), Some(2));
        for (k, a) in addrs.iter().take(MAX_PROBE as usize).enumerate() {
            assert_eq!(t.find(*a, 32, seed).is_some(), k != 2, "address {k}");
        }
        // ...and the next insert reuses it.
        assert_eq!(t.insert(last, 32, seed, &block(99)), Insert::Added);
        assert!(t.find(last, 32, seed).is_some());
        assert_eq!(t.blocks().len(), MAX_PROBE as usize);
    }

    #[test]
    fn tombstones_clear_when_the_table_is_empty() {
        let t = SlotTable::heap();
        let seed = 0x9e37_79b9_7f4a_7c15;
        for a in 0..100u32 {
            assert_eq!(
                t.insert(a, 32, seed, &block(u64::from(a))),
                Insert::Added,
                "{a}"
            );
        }
        for a in 0..100u32 {
            assert!(t.remove(a, 32, seed).is_some(), "{a}");
        }
        assert_eq!(t.lens(), 0);
        t.clear_tombstones();
        assert!((0..t.count).all(|i| t.state(i) == EMPTY));
    }
}
