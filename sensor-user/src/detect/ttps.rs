//! The tools seen logging in: per request fingerprint (`http::fingerprint`) of a login, its
//! logins and their outcomes, the distinct sources that sent it and when it was first seen;
//! and the distinct fingerprints of each of the last 24 hours. For the operator's `ttps`
//! view: nothing here feeds a detector.
//!
//! Bounded and cheap: one table of at most [`FINGERPRINTS`] entries (least recently seen out,
//! counted), updated only for logins, whose fingerprint detection already computes; a ring of
//! 24 hourly bitmaps of 256 bits each.

use super::counters::Distinct;
use super::state::{Outcome, Table};

/// Most fingerprints tracked.
pub(crate) const FINGERPRINTS: usize = 4096;
/// Hours of distinct counts kept.
pub(crate) const HOURS: usize = 24;
/// Nanoseconds per hour.
const HOUR_NS: u64 = 3_600_000_000_000;

/// One fingerprint.
#[derive(Clone, Debug, Default)]
pub(crate) struct FingerprintState {
    /// Its text form.
    pub(crate) name: String,
    /// First login seen with it, Unix ns.
    pub(crate) first_ns: u64,
    /// Latest login seen with it, Unix ns.
    pub(crate) last_ns: u64,
    /// Logins (not decayed).
    pub(crate) logins: u64,
    /// Of those, successful.
    pub(crate) ok: u64,
    /// Of those, failed.
    pub(crate) failed: u64,
    /// Distinct sources that sent it (never rolled: since it was first seen).
    pub(crate) sources: Distinct<2>,
}

/// The login fingerprints seen, and the distinct ones per hour.
pub(crate) struct Ttps {
    /// Per fingerprint, keyed by its keyed hash.
    pub(crate) table: Table<u64, FingerprintState>,
    /// Per hour: the hour number (Unix ns / 1 h) and the fingerprints seen in it, a ring
    /// indexed by hour number modulo [`HOURS`].
    pub(crate) hours: [(u64, Distinct<4>); HOURS],
}

impl Default for Ttps {
    fn default() -> Self {
        Self {
            table: Table::new(FINGERPRINTS),
            hours: [(0, Distinct::default()); HOURS],
        }
    }
}

impl Ttps {
    /// Counts one login with fingerprint `name` (keyed hash `key`) from the source with hash
    /// `source`, at `now_ns`.
    pub(crate) fn add(&mut self, key: u64, name: &str, source: u64, o: Outcome, now_ns: u64) {
        let hour = now_ns / HOUR_NS;
        if let Some(slot) = self.hours.get_mut((hour % HOURS as u64) as usize) {
            if slot.0 != hour {
                *slot = (hour, Distinct::default());
            }
            slot.1.insert(key);
        }
        let Some(f) = self.table.entry(key) else {
            return;
        };
        if f.name.is_empty() {
            name.clone_into(&mut f.name);
            f.first_ns = now_ns;
        }
        f.first_ns = f.first_ns.min(now_ns);
        f.last_ns = f.last_ns.max(now_ns);
        f.logins += 1;
        f.ok += u64::from(o.login_ok());
        f.failed += u64::from(o.login_failed());
        f.sources.insert(source);
    }

    /// Distinct fingerprints per hour for the last [`HOURS`] hours before `now_ns`, oldest
    /// first: (start of the hour, Unix ns; distinct fingerprints).
    pub(crate) fn per_hour(&self, now_ns: u64) -> Vec<(u64, f64)> {
        let now_hour = now_ns / HOUR_NS;
        (0..HOURS as u64)
            .rev()
            .filter_map(|back| now_hour.checked_sub(back))
            .map(|hour| {
                let slot = self.hours.get((hour % HOURS as u64) as usize);
                let count = slot
                    .filter(|(h, _)| *h == hour)
                    .map_or(0.0, |(_, d)| d.estimate());
                (hour * HOUR_NS, count)
            })
            .collect()
    }

    /// Bytes held: the table, the names and the ring.
    pub(crate) fn memory(&self) -> usize {
        self.table.memory(|f| f.name.capacity()) + size_of_val(&self.hours)
    }
}
