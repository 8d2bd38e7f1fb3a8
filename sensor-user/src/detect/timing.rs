//! Bot timing: intervals between a source's requests too regular to be human. The measure is
//! robust: the median absolute deviation of the intervals over their median, so a few pauses
//! or bursts do not hide a metronome. It is context only: a health checker is a metronome too.

use super::config::TimingConfig;
use super::finding::Measure;

/// Twice the median of `v` (reordered in place), exact in integers; 0 for an empty slice.
fn doubled_median(v: &mut [u64]) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let n = v.len();
    let (below, &mut upper, _) = v.select_nth_unstable(n / 2);
    if n % 2 == 1 {
        2 * upper
    } else {
        // The lower middle value is the largest of those below the upper one.
        below.iter().max().map_or(2 * upper, |&lower| lower + upper)
    }
}

/// The robust dispersion of intervals (microseconds): MAD over median, `None` when the median
/// is zero.
///
/// Computed on integers: every value is kept doubled, so the half of an even count's median is
/// exact, and selecting the middle of at most `state::INTERVALS` integers costs a fraction of
/// two float sorts (this runs every eighth request of a busy source: the sorts were 4 % of a
/// replay's instructions on wrk's traffic). `tests` checks it against the plain floating-point
/// version, bit for bit.
pub(crate) fn dispersion(intervals: &[u32]) -> Option<(f64, f64)> {
    let mut v: Vec<u64> = intervals.iter().map(|&i| u64::from(i)).collect();
    // Twice the median, and twice each deviation from it.
    let median_x2 = doubled_median(&mut v);
    if median_x2 == 0 {
        return None;
    }
    for x in &mut v {
        *x = (2 * *x).abs_diff(median_x2);
    }
    // Four times the median deviation.
    let deviation_x4 = doubled_median(&mut v);
    #[expect(clippy::cast_precision_loss, reason = "below 2^35: exact")]
    let (deviation_x4, median_x2) = (deviation_x4 as f64, median_x2 as f64);
    Some((deviation_x4 / (2.0 * median_x2), median_x2 / 2.0))
}

/// The measures of too-regular timing.
pub(crate) fn regular(cfg: &TimingConfig, intervals: &[u32]) -> Option<Vec<Measure>> {
    if intervals.len() < cfg.min_samples.max(2) {
        return None;
    }
    let (disp, med) = dispersion(intervals)?;
    #[expect(clippy::cast_precision_loss, reason = "a count")]
    let n = intervals.len() as f64;
    (disp <= cfg.max_dispersion).then(|| {
        vec![
            #[expect(clippy::cast_precision_loss, reason = "a count")]
            Measure::at_least("intervals", n, cfg.min_samples as f64),
            Measure::at_most("dispersion", disp, cfg.max_dispersion),
            Measure::at_least("median_interval_ms", med / 1000.0, 0.0),
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The median of `v` in floating point, by a full sort: the oracle of [`dispersion`].
    fn median(v: &mut [f64]) -> f64 {
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        match v.len() {
            0 => 0.0,
            n if n % 2 == 1 => v[mid],
            _ => f64::midpoint(v[mid - 1], v[mid]),
        }
    }

    /// MAD over median in floating point, as the detector once computed it.
    fn plain_dispersion(intervals: &[u32]) -> Option<(f64, f64)> {
        let mut v: Vec<f64> = intervals.iter().map(|&i| f64::from(i)).collect();
        let med = median(&mut v);
        if med <= 0.0 {
            return None;
        }
        let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
        Some((median(&mut dev) / med, med))
    }

    #[test]
    fn integer_dispersion_equals_the_floating_point_one() {
        // xorshift64: deterministic intervals of every scale, with ties and zeros.
        let mut s = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for case in 0..5000 {
            let len = (next() % 33) as usize;
            let scale = [4_u64, 1000, 1_000_000, u64::from(u32::MAX)][case % 4];
            let v: Vec<u32> = (0..len)
                .map(|_| u32::try_from(next() % (scale + 1)).expect("fits"))
                .collect();
            assert_eq!(dispersion(&v), plain_dispersion(&v), "{v:?}");
        }
        assert_eq!(dispersion(&[]), None);
        assert_eq!(dispersion(&[0, 0, 7]), None);
        assert_eq!(
            dispersion(&[u32::MAX; 32]),
            Some((0.0, f64::from(u32::MAX)))
        );
    }

    #[test]
    fn dispersion_tells_metronomes_from_people() {
        let cfg = TimingConfig::default();
        let metronome: Vec<u32> = (0..20).map(|i| 1_000_000 + (i % 3) * 1000).collect();
        assert!(regular(&cfg, &metronome).is_some());
        // Human-like: think times spread from 0.4 s to 12 s.
        let human: Vec<u32> = (0..20_u32)
            .map(|i| 400_000 + (i * 7919 % 23) * 500_000)
            .collect();
        assert!(regular(&cfg, &human).is_none());
        // Too few samples.
        assert!(regular(&cfg, &metronome[..10]).is_none());
        // A few pauses do not hide the metronome.
        let mut paused = metronome.clone();
        paused[3] = 30_000_000;
        paused[9] = 9_000_000;
        assert!(regular(&cfg, &paused).is_some());
    }
}
