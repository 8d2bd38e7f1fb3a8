//! Bot timing: intervals between a source's requests too regular to be human. The measure is
//! robust: the median absolute deviation of the intervals over their median, so a few pauses
//! or bursts do not hide a metronome. It is context only: a health checker is a metronome too.

use super::config::TimingConfig;
use super::finding::Measure;

/// The median of `v` (sorted in place); 0 for an empty slice.
fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v.get(mid).copied().unwrap_or(0.0)
    } else {
        f64::midpoint(
            v.get(mid - 1).copied().unwrap_or(0.0),
            v.get(mid).copied().unwrap_or(0.0),
        )
    }
}

/// The robust dispersion of intervals (microseconds): MAD over median, `None` when the median
/// is zero.
pub(crate) fn dispersion(intervals: &[u32]) -> Option<(f64, f64)> {
    let mut v: Vec<f64> = intervals.iter().map(|&i| f64::from(i)).collect();
    let med = median(&mut v);
    if med <= 0.0 {
        return None;
    }
    let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
    Some((median(&mut dev) / med, med))
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
