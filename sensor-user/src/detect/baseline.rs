//! Learned traffic baselines by hour of week.
//!
//! # What it learns
//!
//! For each [`BaselineKey`] (an endpoint, or a source prefix) the caller reports counts with
//! [`Baselines::record`]. Counts add up in fixed counting periods (`bucket_s`, one minute by
//! default). When a period has ended, [`Baselines::tick`] folds each key's total for it into the
//! running mean and variance (Welford's online algorithm) of the hour-of-week slot in which the
//! period started: 168 slots, UTC, Monday 00:00-00:59 is slot 0. Only periods in which the key
//! counted something are learned, so the mean is the rate of a key while it is active, which
//! keeps detectors built on it conservative. [`Baselines::expected`] answers for the current
//! hour of week once that slot has `min_samples` periods, and [`Baselines::exceeds`] is the
//! threshold test detectors share.
//!
//! # Why only during the warm-up
//!
//! The baselines learn for `warmup_s` after they were first created and are frozen afterwards:
//! [`Baselines::record`] then does nothing. A baseline that kept learning could be trained by
//! an attacker who raises their rate slowly until the attack looks normal. A snapshot keeps the
//! original start of the warm-up, so a restarted agent continues the warm-up where it stopped,
//! or stays frozen.
//!
//! # Bounds
//!
//! At most `max_keys` keys are kept. A new key beyond the bound evicts the least recently
//! recorded key and increments [`Baselines::evicted`], so an eviction is never silent. Slots
//! are stored sparsely, a sorted `Vec` per key, so a key costs memory in proportion to the
//! hours of week in which it was seen (at most 168 slots of 24 bytes).
//! [`Baselines::memory_bytes`] estimates the heap in use.
//!
//! The module is pure: no I/O and no clock. Every time is passed in as Unix nanoseconds, and
//! all state lives in ordered maps, so iteration and output order are deterministic.
//! Persistence is [`Baselines::snapshot`] and [`Baselines::restore`]; the caller writes and
//! reads the file.
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

const NS_PER_S: u64 = 1_000_000_000;
const S_PER_HOUR: u64 = 3_600;
/// Hour-of-week slots per key: 7 days of 24 hours.
pub const SLOTS_PER_WEEK: u8 = 168;
/// Hours from Monday 00:00 to the Unix epoch, a Thursday 00:00 UTC.
const EPOCH_HOUR_OF_WEEK: u64 = 72;
/// The [`BaselineSnapshot::version`] this code writes and accepts.
pub const SNAPSHOT_VERSION: u32 = 1;

/// What a baseline is learned for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineKey {
    /// An endpoint: method, host and route template joined by the caller, for example
    /// `"GET example.com /users/{id}"`.
    Endpoint(String),
    /// A source prefix: a /24 for IPv4, a /64 or /48 for IPv6, truncated by the caller.
    Prefix(ipnet::IpNet),
    /// All traffic.
    Global,
}

impl fmt::Display for BaselineKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Endpoint(endpoint) => write!(f, "endpoint {endpoint}"),
            Self::Prefix(prefix) => write!(f, "prefix {prefix}"),
            Self::Global => f.write_str("global"),
        }
    }
}

/// Settings of the baselines.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BaselineConfig {
    /// How long the baselines learn after they were first created, in seconds (default 7 days).
    /// A restored snapshot keeps its original start.
    pub warmup_s: u64,
    /// The counting period whose per-key totals are learned, in seconds (default 60; 0 is
    /// taken as 1).
    pub bucket_s: u64,
    /// Periods needed in one hour-of-week slot before [`Baselines::expected`] answers
    /// (default 5).
    pub min_samples: u32,
    /// The most keys kept (default 10000; 0 is taken as 1). A new key beyond it evicts the
    /// least recently recorded key.
    pub max_keys: usize,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        Self {
            warmup_s: 7 * 24 * S_PER_HOUR,
            bucket_s: 60,
            min_samples: 5,
            max_keys: 10_000,
        }
    }
}

impl BaselineConfig {
    fn bucket_ns(&self) -> u64 {
        self.bucket_s.max(1).saturating_mul(NS_PER_S)
    }

    fn key_bound(&self) -> usize {
        self.max_keys.max(1)
    }
}

/// What a baseline expects of one key in one hour-of-week slot, per counting period.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Expected {
    /// Mean count per period in which the key was active.
    pub mean: f64,
    /// Sample standard deviation of that count (0 with a single sample).
    pub stddev: f64,
    /// Periods learned in the slot.
    pub samples: u32,
}

/// Errors of [`Baselines::restore`].
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// The snapshot was written in another format.
    #[error("baseline snapshot version {found} is not supported (expected {expected})")]
    Version {
        /// Version in the snapshot.
        found: u32,
        /// Version this code reads.
        expected: u32,
    },
    /// A slot index is not an hour of week.
    #[error("baseline of {key}: slot {slot} is out of range (0..168)")]
    SlotOutOfRange {
        /// Key.
        key: BaselineKey,
        /// Slot index.
        slot: u8,
    },
    /// Slots of a key are not in strictly increasing order.
    #[error("baseline of {key}: slot {slot} is out of order or repeated")]
    UnsortedSlots {
        /// Key.
        key: BaselineKey,
        /// The first slot out of order.
        slot: u8,
    },
    /// A mean or M2 is NaN or infinite.
    #[error("baseline of {key}: slot {slot} has a non-finite mean or m2")]
    NonFinite {
        /// Key.
        key: BaselineKey,
        /// Slot index.
        slot: u8,
    },
    /// Finite statistics that no sequence of counts produces (no samples, negative M2).
    #[error("baseline of {key}: slot {slot} has {samples} samples and m2 {m2}")]
    InvalidStats {
        /// Key.
        key: BaselineKey,
        /// Slot index.
        slot: u8,
        /// Samples.
        samples: u32,
        /// M2.
        m2: f64,
    },
    /// A key appears twice.
    #[error("baseline of {key} appears twice in the snapshot")]
    DuplicateKey {
        /// Key.
        key: BaselineKey,
    },
}

/// A persistable copy of [`Baselines`], meant for JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineSnapshot {
    /// Format version, [`SNAPSHOT_VERSION`] when written by this code.
    pub version: u32,
    /// Start of the warm-up, in Unix nanoseconds.
    pub started_ns: u64,
    /// The keys, from least to most recently recorded (the eviction order).
    pub keys: Vec<KeySnapshot>,
}

/// One key of a [`BaselineSnapshot`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySnapshot {
    /// The key.
    pub key: BaselineKey,
    /// The counting period still open for the key, if any.
    pub pending: Option<PendingSnapshot>,
    /// Learned slots, in strictly increasing slot order.
    pub slots: Vec<SlotSnapshot>,
}

/// An open counting period in a [`KeySnapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingSnapshot {
    /// Start of the period, in Unix nanoseconds.
    pub bucket_start_ns: u64,
    /// Count so far.
    pub count: u64,
}

/// One learned hour-of-week slot in a [`KeySnapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotSnapshot {
    /// Hour of week, 0..168 (Monday 00h UTC is 0).
    pub slot: u8,
    /// Periods learned.
    pub samples: u32,
    /// Mean count per period.
    pub mean: f64,
    /// Sum of squared deviations from the mean (Welford's M2).
    pub m2: f64,
}

/// The hour-of-week slot (0..168, UTC, Monday 00:00 is 0) of an instant in Unix nanoseconds.
pub fn hour_of_week(now_ns: u64) -> u8 {
    let hours = now_ns / NS_PER_S / S_PER_HOUR;
    ((hours + EPOCH_HOUR_OF_WEEK) % u64::from(SLOTS_PER_WEEK)) as u8
}

/// Online mean and variance of one slot.
#[derive(Clone, Copy, Debug, PartialEq)]
struct SlotStats {
    samples: u32,
    mean: f64,
    m2: f64,
}

impl SlotStats {
    const EMPTY: Self = Self {
        samples: 0,
        mean: 0.0,
        m2: 0.0,
    };

    /// Welford's update.
    fn add(&mut self, x: f64) {
        if self.samples == u32::MAX {
            return;
        }
        self.samples += 1;
        let delta = x - self.mean;
        self.mean += delta / f64::from(self.samples);
        self.m2 += delta * (x - self.mean);
    }

    fn expected(&self) -> Expected {
        let stddev = if self.samples < 2 {
            0.0
        } else {
            (self.m2 / f64::from(self.samples - 1)).max(0.0).sqrt()
        };
        Expected {
            mean: self.mean,
            stddev,
            samples: self.samples,
        }
    }
}

/// An open counting period of one key.
#[derive(Clone, Copy, Debug)]
struct Pending {
    bucket: u64,
    count: u64,
}

/// The state of one key.
#[derive(Debug)]
struct Entry {
    /// Position in `Baselines::recency`.
    seq: u64,
    pending: Option<Pending>,
    /// Sorted by slot, no repeats.
    slots: Vec<(u8, SlotStats)>,
}

impl Entry {
    fn fold(&mut self, pending: Pending, bucket_ns: u64) {
        let slot = hour_of_week(pending.bucket.saturating_mul(bucket_ns));
        #[expect(clippy::cast_precision_loss, reason = "counts stay far below 2^53")]
        let x = pending.count as f64;
        let i = match self.slots.binary_search_by_key(&slot, |&(s, _)| s) {
            Ok(i) => i,
            Err(i) => {
                self.slots.insert(i, (slot, SlotStats::EMPTY));
                i
            }
        };
        self.slots[i].1.add(x);
    }
}

/// Learned per-key baselines by hour of week. See the module documentation.
#[derive(Debug)]
pub struct Baselines {
    cfg: BaselineConfig,
    started_ns: u64,
    entries: BTreeMap<Arc<BaselineKey>, Entry>,
    /// Keys by last record, least recent first.
    recency: BTreeMap<u64, Arc<BaselineKey>>,
    next_seq: u64,
    /// No open period starts before this bucket; `None` when none is open.
    oldest_pending: Option<u64>,
    evicted: u64,
}

impl Baselines {
    /// Empty baselines whose warm-up starts at `now_ns`.
    pub fn new(cfg: BaselineConfig, now_ns: u64) -> Self {
        Self {
            cfg,
            started_ns: now_ns,
            entries: BTreeMap::new(),
            recency: BTreeMap::new(),
            next_seq: 0,
            oldest_pending: None,
            evicted: 0,
        }
    }

    /// Whether the baselines still learn: `now_ns` is before the end of the warm-up.
    pub fn learning(&self, now_ns: u64) -> bool {
        now_ns < self.warmup_end_ns()
    }

    /// End of the warm-up, in Unix nanoseconds.
    pub fn warmup_end_ns(&self) -> u64 {
        self.started_ns
            .saturating_add(self.cfg.warmup_s.saturating_mul(NS_PER_S))
    }

    /// Adds `count` to the key's total in the current counting period. Does nothing after the
    /// warm-up. A new key beyond `max_keys` evicts the least recently recorded key.
    pub fn record(&mut self, key: &BaselineKey, now_ns: u64, count: u32) {
        if !self.learning(now_ns) {
            return;
        }
        let bucket_ns = self.cfg.bucket_ns();
        let bucket = now_ns / bucket_ns;
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(entry) = self.entries.get_mut(key) {
            let shared = self
                .recency
                .remove(&entry.seq)
                .unwrap_or_else(|| Arc::new(key.clone()));
            self.recency.insert(seq, shared);
            entry.seq = seq;
            match &mut entry.pending {
                // A clock that stepped back counts into the open period.
                Some(p) if p.bucket >= bucket => {
                    p.count = p.count.saturating_add(u64::from(count));
                }
                pending => {
                    if let Some(finished) = pending.replace(Pending {
                        bucket,
                        count: u64::from(count),
                    }) {
                        entry.fold(finished, bucket_ns);
                    }
                }
            }
        } else {
            while self.entries.len() >= self.cfg.key_bound() {
                self.evict_least_recent();
            }
            let shared = Arc::new(key.clone());
            self.recency.insert(seq, Arc::clone(&shared));
            self.entries.insert(
                shared,
                Entry {
                    seq,
                    pending: Some(Pending {
                        bucket,
                        count: u64::from(count),
                    }),
                    slots: Vec::new(),
                },
            );
        }
        self.oldest_pending = Some(self.oldest_pending.map_or(bucket, |b| b.min(bucket)));
    }

    fn evict_least_recent(&mut self) {
        if let Some((_, key)) = self.recency.pop_first() {
            self.entries.remove(&key);
            self.evicted += 1;
        }
    }

    /// Closes every counting period that ended by `now_ns`: each key's total in it is learned
    /// in the hour-of-week slot where the period started. Cheap when nothing has ended.
    pub fn tick(&mut self, now_ns: u64) {
        let bucket_ns = self.cfg.bucket_ns();
        let current = now_ns / bucket_ns;
        if self.oldest_pending.is_none_or(|b| b >= current) {
            return;
        }
        let mut oldest = None;
        for entry in self.entries.values_mut() {
            match entry.pending {
                Some(p) if p.bucket < current => {
                    entry.pending = None;
                    entry.fold(p, bucket_ns);
                }
                Some(p) => oldest = Some(oldest.map_or(p.bucket, |b: u64| b.min(p.bucket))),
                None => {}
            }
        }
        self.oldest_pending = oldest;
    }

    /// What the key's baseline expects in the hour of week of `now_ns`, once that slot has
    /// `min_samples` periods; `None` before, or for an unknown key.
    pub fn expected(&self, key: &BaselineKey, now_ns: u64) -> Option<Expected> {
        let entry = self.entries.get(key)?;
        let slot = hour_of_week(now_ns);
        let i = entry.slots.binary_search_by_key(&slot, |&(s, _)| s).ok()?;
        let stats = entry.slots[i].1;
        (stats.samples >= self.cfg.min_samples).then(|| stats.expected())
    }

    /// Whether `key` is usually active in the hour of week of `now_ns`: `None` while learning
    /// or for a key not learned; `Some(false)` when it was learned but never seen in that hour.
    pub fn usual_hour(&self, key: &BaselineKey, now_ns: u64) -> Option<bool> {
        if self.learning(now_ns) {
            return None;
        }
        let entry = self.entries.get(key)?;
        let slot = hour_of_week(now_ns);
        Some(entry.slots.binary_search_by_key(&slot, |&(s, _)| s).is_ok())
    }

    /// Whether `key` was seen while the baselines learned: `None` while they still learn.
    pub fn learned(&self, key: &BaselineKey, now_ns: u64) -> Option<bool> {
        (!self.learning(now_ns)).then(|| self.entries.contains_key(key))
    }

    /// The expectation when `observed_per_bucket` is above `factor` times
    /// `max(mean + 3 * stddev, 1)`; `None` when it is not, or when there is no expectation yet.
    pub fn exceeds(
        &self,
        key: &BaselineKey,
        now_ns: u64,
        observed_per_bucket: f64,
        factor: f64,
    ) -> Option<Expected> {
        let expected = self.expected(key, now_ns)?;
        let threshold = factor * (3.0f64.mul_add(expected.stddev, expected.mean)).max(1.0);
        (observed_per_bucket > threshold).then_some(expected)
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keys evicted by the `max_keys` bound since creation or restore.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Approximate heap bytes in use (keys, slots and both maps' entries; B-tree node slack
    /// is not counted).
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        let per_key = size_of::<(Arc<BaselineKey>, Entry)>()
            + size_of::<(u64, Arc<BaselineKey>)>()
            + 2 * size_of::<usize>()
            + size_of::<BaselineKey>();
        self.entries
            .iter()
            .map(|(key, entry)| {
                let key_heap = match &**key {
                    BaselineKey::Endpoint(s) => s.capacity(),
                    BaselineKey::Prefix(_) | BaselineKey::Global => 0,
                };
                per_key + key_heap + entry.slots.capacity() * size_of::<(u8, SlotStats)>()
            })
            .sum()
    }

    /// A copy of the state for persistence. The eviction counter is not part of it.
    pub fn snapshot(&self) -> BaselineSnapshot {
        let bucket_ns = self.cfg.bucket_ns();
        let keys = self
            .recency
            .values()
            .filter_map(|key| {
                let entry = self.entries.get(key)?;
                Some(KeySnapshot {
                    key: BaselineKey::clone(key),
                    pending: entry.pending.map(|p| PendingSnapshot {
                        bucket_start_ns: p.bucket.saturating_mul(bucket_ns),
                        count: p.count,
                    }),
                    slots: entry
                        .slots
                        .iter()
                        .map(|&(slot, s)| SlotSnapshot {
                            slot,
                            samples: s.samples,
                            mean: s.mean,
                            m2: s.m2,
                        })
                        .collect(),
                })
            })
            .collect();
        BaselineSnapshot {
            version: SNAPSHOT_VERSION,
            started_ns: self.started_ns,
            keys,
        }
    }

    /// Baselines from a snapshot, keeping its warm-up start. When the snapshot holds more keys
    /// than `cfg.max_keys`, the least recently recorded ones are evicted and counted.
    pub fn restore(cfg: BaselineConfig, snapshot: BaselineSnapshot) -> Result<Self, BaselineError> {
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(BaselineError::Version {
                found: snapshot.version,
                expected: SNAPSHOT_VERSION,
            });
        }
        let mut out = Self::new(cfg, snapshot.started_ns);
        let bucket_ns = out.cfg.bucket_ns();
        for ks in snapshot.keys {
            let slots = validate_slots(&ks)?;
            if out.entries.contains_key(&ks.key) {
                return Err(BaselineError::DuplicateKey { key: ks.key });
            }
            while out.entries.len() >= out.cfg.key_bound() {
                out.evict_least_recent();
            }
            let pending = ks.pending.map(|p| Pending {
                bucket: p.bucket_start_ns / bucket_ns,
                count: p.count,
            });
            if let Some(p) = pending {
                out.oldest_pending = Some(out.oldest_pending.map_or(p.bucket, |b| b.min(p.bucket)));
            }
            let seq = out.next_seq;
            out.next_seq += 1;
            let shared = Arc::new(ks.key);
            out.recency.insert(seq, Arc::clone(&shared));
            out.entries.insert(
                shared,
                Entry {
                    seq,
                    pending,
                    slots,
                },
            );
        }
        Ok(out)
    }
}

fn validate_slots(ks: &KeySnapshot) -> Result<Vec<(u8, SlotStats)>, BaselineError> {
    let mut slots: Vec<(u8, SlotStats)> = Vec::with_capacity(ks.slots.len());
    for s in &ks.slots {
        let key = || ks.key.clone();
        if s.slot >= SLOTS_PER_WEEK {
            return Err(BaselineError::SlotOutOfRange {
                key: key(),
                slot: s.slot,
            });
        }
        if slots.last().is_some_and(|&(prev, _)| prev >= s.slot) {
            return Err(BaselineError::UnsortedSlots {
                key: key(),
                slot: s.slot,
            });
        }
        if !s.mean.is_finite() || !s.m2.is_finite() {
            return Err(BaselineError::NonFinite {
                key: key(),
                slot: s.slot,
            });
        }
        if s.samples == 0 || s.m2 < 0.0 {
            return Err(BaselineError::InvalidStats {
                key: key(),
                slot: s.slot,
                samples: s.samples,
                m2: s.m2,
            });
        }
        slots.push((
            s.slot,
            SlotStats {
                samples: s.samples,
                mean: s.mean,
                m2: s.m2,
            },
        ));
    }
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60 * NS_PER_S;
    const HOUR: u64 = 60 * MIN;
    /// 2026-12-07T13:00:00Z, a Monday.
    const MONDAY_13H: u64 = 1_796_648_400 * NS_PER_S;

    fn endpoint(s: &str) -> BaselineKey {
        BaselineKey::Endpoint(s.to_owned())
    }

    fn prefix(s: &str) -> BaselineKey {
        BaselineKey::Prefix(s.parse().expect("valid prefix"))
    }

    fn cfg(min_samples: u32, max_keys: usize) -> BaselineConfig {
        BaselineConfig {
            warmup_s: 30 * 24 * 3_600,
            bucket_s: 60,
            min_samples,
            max_keys,
        }
    }

    /// Records one count per one-minute bucket from `start`, then closes them all.
    fn learn(b: &mut Baselines, key: &BaselineKey, start: u64, counts: &[u32]) {
        let mut t = start;
        for &c in counts {
            b.record(key, t, c);
            t += MIN;
        }
        b.tick(t);
    }

    fn direct(counts: &[u32]) -> (f64, f64) {
        let xs: Vec<f64> = counts.iter().map(|&c| f64::from(c)).collect();
        let n = f64::from(u32::try_from(xs.len()).expect("a short table"));
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var.sqrt())
    }

    #[test]
    fn hour_of_week_slots() {
        let cases: &[(&str, u64, u8)] = &[
            ("1970-01-01T00:00Z thursday", 0, 72),
            ("1970-01-01T23:59:59Z thursday", 86_399, 95),
            ("1970-01-04T12:00Z sunday", 302_400, 156),
            ("1970-01-05T00:00Z monday", 345_600, 0),
            ("2024-02-29T00:00Z thursday", 1_709_164_800, 72),
            ("2026-12-07T13:00Z monday", 1_796_648_400, 13),
            ("2026-12-13T23:30Z sunday", 1_797_204_600, 167),
        ];
        for &(name, secs, want) in cases {
            assert_eq!(hour_of_week(secs * NS_PER_S), want, "{name}");
        }
        // One nanosecond before the hour is still the previous hour.
        assert_eq!(hour_of_week(MONDAY_13H - 1), 12);
    }

    #[test]
    fn learning_stops_after_warmup() {
        let c = BaselineConfig {
            warmup_s: 3_600,
            ..cfg(1, 10)
        };
        let mut b = Baselines::new(c, MONDAY_13H);
        let key = endpoint("GET example.com /users/{id}");
        assert!(b.learning(MONDAY_13H));
        assert!(b.learning(MONDAY_13H + HOUR - 1));
        assert!(!b.learning(MONDAY_13H + HOUR));
        b.record(&key, MONDAY_13H + HOUR - 1, 4);
        // After the warm-up, neither a known nor a new key learns.
        b.record(&key, MONDAY_13H + HOUR, 1_000);
        b.record(&endpoint("GET example.com /new"), MONDAY_13H + HOUR, 1);
        b.tick(MONDAY_13H + 2 * HOUR);
        assert_eq!(b.len(), 1);
        let e = b
            .expected(&key, MONDAY_13H + 7 * 24 * HOUR)
            .expect("one sample learned");
        assert_eq!((e.mean, e.samples), (4.0, 1));
        // The period that ended after the warm-up was learned in the slot where it started.
        assert!(b.expected(&key, MONDAY_13H).is_some());
        assert!(b.expected(&key, MONDAY_13H + HOUR).is_none());
    }

    #[test]
    fn mean_and_stddev_match_direct_computation() {
        let cases: &[&[u32]] = &[
            &[5, 5],
            &[3, 9, 4, 12, 7, 1],
            &[0, 100, 1, 99, 50, 50, 2, 1_000],
        ];
        for counts in cases {
            let mut b = Baselines::new(cfg(1, 10), MONDAY_13H);
            let key = prefix("203.0.113.0/24");
            learn(&mut b, &key, MONDAY_13H, counts);
            let e = b.expected(&key, MONDAY_13H).expect("learned");
            let (mean, stddev) = direct(counts);
            assert_eq!(e.samples as usize, counts.len(), "{counts:?}");
            assert!(
                (e.mean - mean).abs() < 1e-9,
                "{counts:?}: {} vs {mean}",
                e.mean
            );
            assert!(
                (e.stddev - stddev).abs() < 1e-9,
                "{counts:?}: {} vs {stddev}",
                e.stddev
            );
        }
    }

    #[test]
    fn records_in_one_bucket_add_up_and_tick_closes_finished_buckets_only() {
        let mut b = Baselines::new(cfg(1, 10), MONDAY_13H);
        let key = endpoint("POST example.com /login");
        // Bucket 13:59, counted in two records, still open at 13:59:59.
        let t = MONDAY_13H + 59 * MIN;
        // Another key's finished bucket makes the tick below walk every key.
        let other = endpoint("GET example.com /other");
        b.record(&other, t - MIN, 1);
        b.record(&key, t, 2);
        b.record(&key, t + 30 * NS_PER_S, 3);
        b.tick(t + MIN - 1);
        assert!(
            b.expected(&key, t).is_none(),
            "the open bucket is not learned"
        );
        assert!(
            b.expected(&other, t - MIN).is_some(),
            "the finished bucket is learned"
        );
        b.tick(t + MIN);
        let e = b.expected(&key, t).expect("closed at 14:00");
        assert_eq!((e.mean, e.samples), (5.0, 1));
        assert!(
            b.expected(&key, t + MIN).is_none(),
            "learned where the bucket started"
        );
        // A record in a later bucket closes the key's previous one without a tick.
        b.record(&key, t + 2 * MIN, 7);
        b.record(&key, t + 3 * MIN, 1);
        let e = b.expected(&key, t + MIN).expect("closed by the record");
        assert_eq!((e.mean, e.samples), (7.0, 1));
    }

    #[test]
    fn expected_needs_min_samples() {
        let mut b = Baselines::new(cfg(5, 10), MONDAY_13H);
        let key = endpoint("GET example.com /");
        learn(&mut b, &key, MONDAY_13H, &[1, 2, 3, 4]);
        assert_eq!(b.expected(&key, MONDAY_13H), None, "4 samples");
        learn(&mut b, &key, MONDAY_13H + 10 * MIN, &[5]);
        assert_eq!(b.expected(&key, MONDAY_13H).map(|e| e.samples), Some(5));
        assert_eq!(b.expected(&key, MONDAY_13H + HOUR), None, "another slot");
        assert_eq!(
            b.expected(&endpoint("GET other /"), MONDAY_13H),
            None,
            "unknown key"
        );
    }

    #[test]
    fn eviction_is_bounded_and_counted() {
        let mut b = Baselines::new(cfg(1, 3), MONDAY_13H);
        let keys: Vec<BaselineKey> = ["a", "b", "c", "d", "e"].map(endpoint).to_vec();
        for (i, k) in keys[..3].iter().enumerate() {
            b.record(k, MONDAY_13H + i as u64, 1);
        }
        assert_eq!((b.len(), b.evicted()), (3, 0));
        // "a" becomes the most recent, so "b" is the least recently recorded.
        b.record(&keys[0], MONDAY_13H + 10, 1);
        b.record(&keys[3], MONDAY_13H + 11, 1);
        assert_eq!((b.len(), b.evicted()), (3, 1));
        b.record(&keys[4], MONDAY_13H + 12, 1);
        assert_eq!((b.len(), b.evicted()), (3, 2));
        let held: Vec<BaselineKey> = b.snapshot().keys.into_iter().map(|k| k.key).collect();
        assert_eq!(
            held,
            vec![keys[0].clone(), keys[3].clone(), keys[4].clone()]
        );
    }

    #[test]
    fn memory_grows_with_slots_seen() {
        let mut b = Baselines::new(cfg(1, 10), MONDAY_13H);
        let key = prefix("2001:db8::/48");
        b.record(&key, MONDAY_13H, 1);
        let one_key = b.memory_bytes();
        assert!(one_key > 0);
        for h in 0..24 {
            learn(&mut b, &key, MONDAY_13H + h * HOUR, &[1]);
        }
        assert!(b.memory_bytes() >= one_key + 24 * std::mem::size_of::<(u8, SlotStats)>());
    }

    fn sample_baselines() -> Baselines {
        let mut b = Baselines::new(cfg(1, 10), MONDAY_13H);
        learn(
            &mut b,
            &endpoint("GET example.com /a"),
            MONDAY_13H,
            &[3, 9, 4, 12, 7],
        );
        learn(
            &mut b,
            &prefix("198.51.100.0/24"),
            MONDAY_13H + 5 * HOUR,
            &[1, 2],
        );
        learn(
            &mut b,
            &prefix("2001:db8:1::/64"),
            MONDAY_13H + 30 * HOUR,
            &[8],
        );
        b.record(&endpoint("GET example.com /a"), MONDAY_13H + 40 * HOUR, 6);
        b
    }

    #[test]
    fn snapshot_json_restore_round_trip() {
        let b = sample_baselines();
        let snap = b.snapshot();
        let json = serde_json::to_string(&snap).expect("serializes");
        let parsed: BaselineSnapshot = serde_json::from_str(&json).expect("parses");
        let restored = Baselines::restore(cfg(1, 10), parsed).expect("valid snapshot");
        assert_eq!(restored.snapshot(), snap);
        let json_again = serde_json::to_string(&restored.snapshot()).expect("serializes");
        assert_eq!(json_again, json);
        // The warm-up start is kept: the restored baselines learn, or not, as the original.
        let end = MONDAY_13H + 30 * 24 * HOUR;
        assert!(restored.learning(end - 1) && !restored.learning(end));
        // The open bucket continues after the restore.
        let mut restored = restored;
        let key = endpoint("GET example.com /a");
        restored.tick(MONDAY_13H + 41 * HOUR);
        let e = restored
            .expected(&key, MONDAY_13H + 40 * HOUR)
            .expect("closed");
        assert_eq!((e.mean, e.samples), (6.0, 1));
        // A smaller bound evicts the least recently recorded keys, and says so.
        let small = Baselines::restore(cfg(1, 1), snap).expect("valid snapshot");
        assert_eq!((small.len(), small.evicted()), (1, 2));
        assert!(small.expected(&key, MONDAY_13H).is_some());
    }

    #[test]
    fn restore_rejects_bad_snapshots() {
        type Mutate = fn(&mut BaselineSnapshot);
        let cases: &[(&str, Mutate, &str)] = &[
            ("version", |s| s.version = 2, "version 2 is not supported"),
            (
                "slot 168",
                |s| s.keys[0].slots[0].slot = 168,
                "slot 168 is out of range",
            ),
            (
                "nan mean",
                |s| s.keys[0].slots[0].mean = f64::NAN,
                "non-finite",
            ),
            (
                "infinite m2",
                |s| s.keys[0].slots[0].m2 = f64::INFINITY,
                "non-finite",
            ),
            ("negative m2", |s| s.keys[0].slots[0].m2 = -1.0, "m2 -1"),
            (
                "no samples",
                |s| s.keys[0].slots[0].samples = 0,
                "has 0 samples",
            ),
            (
                "repeated slot",
                |s| {
                    let first = s.keys[0].slots[0];
                    s.keys[0].slots.push(first);
                },
                "out of order or repeated",
            ),
            (
                "duplicate key",
                |s| {
                    let first = s.keys[0].clone();
                    s.keys.push(first);
                },
                "appears twice",
            ),
        ];
        let good = sample_baselines().snapshot();
        assert!(Baselines::restore(cfg(1, 10), good.clone()).is_ok());
        for &(name, mutate, want) in cases {
            let mut snap = good.clone();
            mutate(&mut snap);
            let err = Baselines::restore(cfg(1, 10), snap)
                .expect_err(name)
                .to_string();
            assert!(err.contains(want), "{name}: {err}");
        }
        // serde_json writes NaN as null, which does not parse back as a number.
        let mut nan = good;
        nan.keys[0].slots[0].mean = f64::NAN;
        let json = serde_json::to_string(&nan).expect("serializes");
        assert!(json.contains("\"mean\":null"), "{json}");
        assert!(serde_json::from_str::<BaselineSnapshot>(&json).is_err());
    }

    #[test]
    fn exceeds_on_both_sides_of_the_threshold() {
        let mut b = Baselines::new(cfg(1, 10), MONDAY_13H);
        // mean 10, sample stddev 2: threshold 2 * (10 + 3 * 2) = 32.
        let busy = endpoint("GET example.com /busy");
        learn(&mut b, &busy, MONDAY_13H, &[8, 12, 8, 12, 10]);
        let e = b.expected(&busy, MONDAY_13H).expect("learned");
        assert_eq!((e.mean, e.stddev), (10.0, 2.0));
        let threshold = 32.0;
        // mean 0, stddev 0: the floor of 1 applies, threshold 3 * 1 = 3.
        let quiet = endpoint("GET example.com /quiet");
        learn(&mut b, &quiet, MONDAY_13H, &[0, 0, 0]);
        let cases: &[(&str, &BaselineKey, u64, f64, f64, bool)] = &[
            (
                "busy below",
                &busy,
                MONDAY_13H,
                threshold - 0.01,
                2.0,
                false,
            ),
            ("busy at", &busy, MONDAY_13H, threshold, 2.0, false),
            ("busy above", &busy, MONDAY_13H, threshold + 0.01, 2.0, true),
            ("quiet at floor", &quiet, MONDAY_13H, 3.0, 3.0, false),
            ("quiet above floor", &quiet, MONDAY_13H, 3.01, 3.0, true),
            (
                "no baseline in this slot",
                &busy,
                MONDAY_13H + HOUR,
                1e9,
                2.0,
                false,
            ),
        ];
        for &(name, key, now, observed, factor, want) in cases {
            let got = b.exceeds(key, now, observed, factor);
            assert_eq!(got.is_some(), want, "{name}: {got:?}");
            if let Some(got) = got {
                assert_eq!(Some(got), b.expected(key, now), "{name}");
            }
        }
    }

    #[test]
    fn config_defaults_and_unknown_fields() {
        let c: BaselineConfig = toml::from_str("").expect("all fields default");
        assert_eq!(
            (c.warmup_s, c.bucket_s, c.min_samples, c.max_keys),
            (604_800, 60, 5, 10_000)
        );
        let c: BaselineConfig = toml::from_str("bucket_s = 10").expect("one field");
        assert_eq!((c.bucket_s, c.warmup_s), (10, 604_800));
        assert!(toml::from_str::<BaselineConfig>("warmup = 1").is_err());
    }
}
