//! The two measures every entity's state is made of: event counts that decay with time, and
//! distinct counts over a window.
//!
//! A decayed count loses half its value every half-life, so it needs no window to roll and no
//! ring of buckets: one `f32` per measure and one timestamp per entity. For a steady rate `r`
//! per second it settles at `r * half_life / ln 2`, which is how [`Decay::rate`] turns it back
//! into a rate. A burst of `n` events counts about `n` at once, so a threshold on a decayed
//! count reacts on the event that crosses it, and the same count remembers a slow attacker for
//! as long as its half-life.
//!
//! A distinct count is a bitmap of `64 * W` bits (linear counting): each value sets the bit its
//! hash picks, and the number of distinct values is estimated from the share of bits still
//! clear. It is exact in the common case of a few values and within a few per cent up to about
//! twice its bit count; two maps (the current window and the one before) make it a sliding
//! window of one to two window lengths.

use std::num::NonZeroU16;

/// Nanoseconds per second.
pub(crate) const NS: u64 = 1_000_000_000;

/// The decay of counts with one half-life.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Decay {
    /// Half-life in nanoseconds, at least 1.
    half_life_ns: u64,
}

impl Decay {
    /// A decay with this half-life in seconds (at least one second).
    pub(crate) fn from_secs(half_life_s: u64) -> Self {
        Self {
            half_life_ns: half_life_s.max(1).saturating_mul(NS),
        }
    }

    /// The factor a count is multiplied by after `elapsed_ns`.
    pub(crate) fn factor(self, elapsed_ns: u64) -> f32 {
        if elapsed_ns == 0 {
            return 1.0;
        }
        #[expect(clippy::cast_precision_loss, reason = "a ratio of durations")]
        let halvings = elapsed_ns as f64 / self.half_life_ns as f64;
        #[expect(clippy::cast_possible_truncation, reason = "a factor in 0..=1")]
        let factor = (-halvings).exp2() as f32;
        factor
    }

    /// The steady rate per second that a decayed count stands for.
    pub(crate) fn rate(self, count: f32) -> f64 {
        #[expect(clippy::cast_precision_loss, reason = "seconds")]
        let half_life_s = self.half_life_ns as f64 / NS as f64;
        f64::from(count) * std::f64::consts::LN_2 / half_life_s
    }
}

/// A count of whole events as a threshold compares it: decayed counts of a burst sit just
/// below the number of events (each older event has decayed a little), so they are rounded.
pub(crate) fn events(count: f32) -> f64 {
    f64::from(count).round()
}

/// A share `part / whole`, zero when `whole` is zero.
pub(crate) fn share(part: f32, whole: f32) -> f64 {
    if whole <= 0.0 {
        0.0
    } else {
        f64::from(part) / f64::from(whole)
    }
}

/// A bitmap of `64 * W` bits for distinct counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bits<const W: usize>([u64; W]);

impl<const W: usize> Default for Bits<W> {
    fn default() -> Self {
        Self([0; W])
    }
}

impl<const W: usize> Bits<W> {
    /// Sets the bit that `hash` picks (its top bits pick the word, its low bits the bit).
    pub(crate) fn insert(&mut self, hash: u64) {
        let word = ((hash >> 32) as usize) % W;
        if let Some(w) = self.0.get_mut(word) {
            *w |= 1 << (hash & 63);
        }
    }

    /// Bits set.
    pub(crate) fn ones(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }

    /// The union of two maps.
    pub(crate) fn union(&self, other: &Self) -> Self {
        let mut out = *self;
        for (a, b) in out.0.iter_mut().zip(other.0.iter()) {
            *a |= *b;
        }
        out
    }

    /// The linear-counting estimate of the distinct values inserted: `-m ln(zeros / m)`, and
    /// about `m ln m` once every bit is set.
    pub(crate) fn estimate(&self) -> f64 {
        let m = f64::from(u32::try_from(W * 64).unwrap_or(u32::MAX));
        let zeros = m - f64::from(self.ones());
        if zeros <= 0.0 {
            return m * m.ln();
        }
        (-m * (zeros / m).ln()).round()
    }
}

/// A distinct count over a sliding window: the values of the current window and of the one
/// before. `epoch` numbers windows from the Unix epoch, shared by every entity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Distinct<const W: usize> {
    /// Values of the current window.
    cur: Bits<W>,
    /// Values of the window before it.
    prev: Bits<W>,
}

impl<const W: usize> Distinct<W> {
    /// Moves the window on by `windows` (0: the same window).
    pub(crate) fn roll(&mut self, windows: u64) {
        match windows {
            0 => {}
            1 => {
                self.prev = self.cur;
                self.cur = Bits::default();
            }
            _ => *self = Self::default(),
        }
    }

    /// Records a value by its hash.
    pub(crate) fn insert(&mut self, hash: u64) {
        self.cur.insert(hash);
    }

    /// Estimated distinct values over both windows.
    pub(crate) fn estimate(&self) -> f64 {
        self.cur.union(&self.prev).estimate()
    }

    /// Estimated distinct values of the current window, and of the one before.
    pub(crate) fn by_window(&self) -> (f64, f64) {
        (self.cur.estimate(), self.prev.estimate())
    }
}

/// Since when a rate has been over its limit, in two bytes: the Unix second it went over,
/// modulo [`Since::MODULUS`], plus one (zero is "not over", and `Option`'s niche). Durations
/// read back are exact up to [`Since::MAX_S`]; past it the start moves forward, so a rate that
/// stays over (and is checked at least every ten hours) reads as over for that long, eight
/// hours. A time before the start (events a little out of order) reads as just over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Since(Option<NonZeroU16>);

impl Since {
    /// Seconds are stored modulo this.
    const MODULUS: u32 = 65_535;
    /// Longest duration read back, in seconds.
    pub(crate) const MAX_S: u32 = 8 * 3600;

    /// The stamp of Unix second `s`.
    fn stamp(s: u32) -> Option<NonZeroU16> {
        NonZeroU16::new(u16::try_from(s % Self::MODULUS + 1).unwrap_or(u16::MAX))
    }

    /// Records whether the rate is `over` at `now_ns` and returns for how long it has been, in
    /// seconds (`None` while it is not).
    pub(crate) fn track(&mut self, over: bool, now_ns: u64) -> Option<f64> {
        if !over {
            self.0 = None;
            return None;
        }
        let second = u32::try_from(now_ns / NS).unwrap_or(u32::MAX);
        let start = *self
            .0
            .get_or_insert_with(|| Self::stamp(second).unwrap_or(NonZeroU16::MIN));
        let start_mod = u32::from(start.get()) - 1;
        let mut elapsed = (second % Self::MODULUS + Self::MODULUS - start_mod) % Self::MODULUS;
        if elapsed > Self::MODULUS / 2 {
            // Before the start.
            return Some(0.0);
        }
        if elapsed > Self::MAX_S {
            elapsed = Self::MAX_S;
            self.0 = Self::stamp(second - Self::MAX_S);
        }
        #[expect(clippy::cast_precision_loss, reason = "a fraction of a second")]
        let frac = (now_ns % NS) as f64 / NS as f64;
        Some(f64::from(elapsed) + frac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A well-mixed hash of a small integer (the state hashes values the same way).
    fn mix(i: u64) -> u64 {
        let mut x = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    #[test]
    fn decay_halves_per_half_life_and_reads_back_a_rate() {
        let d = Decay::from_secs(10);
        let cases = [
            (0, 1.0),
            (10 * NS, 0.5),
            (20 * NS, 0.25),
            (5 * NS, std::f32::consts::FRAC_1_SQRT_2),
        ];
        for (elapsed, want) in cases {
            let got = d.factor(elapsed);
            assert!((got - want).abs() < 1e-3, "{elapsed}: {got} != {want}");
        }
        // One event a second for a long time settles at 1 / (1 - 2^(-1/10)) ~ 14.9.
        let mut c = 0.0_f32;
        for _ in 0..1000 {
            c = c * d.factor(NS) + 1.0;
        }
        let rate = d.rate(c);
        assert!((rate - 1.0).abs() < 0.05, "rate {rate}");
    }

    #[test]
    fn events_of_a_burst_round_to_the_burst() {
        let d = Decay::from_secs(60);
        let mut c = 0.0_f32;
        for _ in 0..5 {
            c = c * d.factor(50_000_000) + 1.0;
        }
        assert!(c < 5.0);
        assert!((events(c) - 5.0).abs() < f64::EPSILON);
    }

    #[test]
    fn distinct_estimates_within_their_standard_error() {
        // Linear counting's standard error at 200 values in 256 bits is about 6 %.
        for (n, tolerance) in [(0_u64, 0.0), (1, 0.0), (5, 1.0), (50, 5.0), (200, 30.0)] {
            let mut d = Distinct::<4>::default();
            for i in 0..n {
                d.insert(mix(i));
                d.insert(mix(i));
            }
            #[expect(clippy::cast_precision_loss, reason = "small counts")]
            let want = n as f64;
            let got = d.estimate();
            assert!((got - want).abs() <= tolerance, "{n}: estimated {got}");
        }
    }

    #[test]
    fn since_reads_back_durations_across_its_wrap() {
        // Starts just before the stored seconds wrap, then stays over.
        let t0 = (65_535 * 3 - 10) * NS + NS / 4;
        let mut since = Since::default();
        assert_eq!(since.track(false, t0), None);
        assert_eq!(since.track(true, t0), Some(0.25));
        assert_eq!(since.track(true, t0 + 30 * NS), Some(30.25));
        // A little out of order: just over.
        assert_eq!(since.track(true, t0 - 2 * NS), Some(0.0));
        // Longer than it can tell: it reads as the longest while it goes on.
        let long = u64::from(Since::MAX_S);
        let longest = Some(f64::from(Since::MAX_S) + 0.25);
        assert_eq!(since.track(true, t0 + (long + 100) * NS), longest);
        assert_eq!(since.track(true, t0 + (long + 160) * NS), longest);
        assert_eq!(since.track(false, t0 + (long + 170) * NS), None);
        assert_eq!(since.track(true, t0 + (long + 171) * NS), Some(0.25));
        assert_eq!(size_of::<Since>(), 2);
    }

    #[test]
    fn distinct_windows_slide() {
        let mut d = Distinct::<1>::default();
        d.insert(mix(1));
        d.roll(1);
        d.insert(mix(2));
        assert!((d.estimate() - 2.0).abs() < f64::EPSILON);
        d.roll(1);
        // Only the second value is left.
        assert!((d.estimate() - 1.0).abs() < f64::EPSILON);
        d.insert(mix(2));
        assert!((d.estimate() - 1.0).abs() < f64::EPSILON);
        d.roll(2);
        assert!(d.estimate() < 0.5);
    }
}
