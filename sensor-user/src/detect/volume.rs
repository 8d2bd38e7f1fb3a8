//! Volumetric detectors: a source or prefix whose request rate stays above its ceiling (or its
//! learned hour-of-week baseline by a factor) for a sustained time, a source whose SYNs far
//! outnumber its requests, and an endpoint far above its baseline.
//!
//! Rates are decayed counts read back as rates (see `counters.rs`), so one burst lifts the
//! rate for a few half-lives only, and "sustained" is the time since the rate last went over
//! (`counters::Since`).

use super::config::VolumeConfig;
use super::counters::Decay;
use super::finding::Measure;

/// The measures of a source or prefix over its ceiling for long enough. `limit_rps` is the
/// ceiling (or the baseline times its factor), `over_s` the time over.
pub(crate) fn over(
    cfg: &VolumeConfig,
    rate: f64,
    limit_rps: f64,
    over_s: f64,
) -> Option<Vec<Measure>> {
    #[expect(clippy::cast_precision_loss, reason = "seconds")]
    let sustain = cfg.sustain_s as f64;
    (rate >= limit_rps && over_s >= sustain).then(|| {
        vec![
            Measure::at_least("requests_per_s", rate, limit_rps),
            Measure::at_least("sustained_s", over_s, sustain),
        ]
    })
}

/// The measures of a packet flood seen in the kernel's counters: packets per second over the
/// ceiling for long enough, with few requests among them. An alert only: a large download's
/// acknowledgements look the same.
pub(crate) fn packets(
    cfg: &VolumeConfig,
    decay: Decay,
    packets: f32,
    requests: f32,
    over_s: Option<f64>,
) -> Option<Vec<Measure>> {
    let rate = decay.rate(packets);
    let per_packet = super::counters::share(requests, packets);
    #[expect(clippy::cast_precision_loss, reason = "seconds")]
    let sustain = cfg.sustain_s as f64;
    let over_s = over_s?;
    (rate >= cfg.packet_ceiling_pps
        && per_packet <= cfg.flood_max_requests_share
        && over_s >= sustain)
        .then(|| {
            vec![
                Measure::at_least("packets_per_s", rate, cfg.packet_ceiling_pps),
                Measure::at_most(
                    "requests_per_packet",
                    per_packet,
                    cfg.flood_max_requests_share,
                ),
                Measure::at_least("sustained_s", over_s, sustain),
            ]
        })
}

/// The measures of a SYN flood: SYNs per second over the ceiling for long enough, with few of
/// them turning into requests.
pub(crate) fn flood(
    cfg: &VolumeConfig,
    decay: Decay,
    syns: f32,
    requests: f32,
    over_s: Option<f64>,
) -> Option<Vec<Measure>> {
    let syn_rate = decay.rate(syns);
    let per_syn = super::counters::share(requests, syns);
    #[expect(clippy::cast_precision_loss, reason = "seconds")]
    let sustain = cfg.sustain_s as f64;
    let over_s = over_s?;
    (syn_rate >= cfg.syn_ceiling_rps
        && per_syn <= cfg.flood_max_requests_share
        && over_s >= sustain)
        .then(|| {
            vec![
                Measure::at_least("syns_per_s", syn_rate, cfg.syn_ceiling_rps),
                Measure::at_most("requests_per_syn", per_syn, cfg.flood_max_requests_share),
                Measure::at_least("sustained_s", over_s, sustain),
            ]
        })
}
