//! Context: facts about a source or its request that make its other findings more credible but
//! prove nothing alone. A source that appeared a minute ago, a request at an hour its endpoint
//! is never used, a route never seen while the baselines learned (a scanner's guess, or an
//! undocumented endpoint), an operation the API's OpenAPI document does not declare: each is
//! common enough in honest traffic that it never decides, but
//! with a finding it raises the decision's score and is listed in it.

use super::baseline::{BaselineKey, Baselines};
use super::config::ContextConfig;
use super::counters::NS;
use super::finding::{Detector, Measure};
use super::state::Detail;

/// The context of a source's findings at `now_ns`, from its detailed history (if any) and the
/// endpoint of the request that made them.
pub(crate) fn of(
    cfg: &ContextConfig,
    detail: Option<&Detail>,
    baselines: &Baselines,
    (method, route, endpoint): (&str, &str, &BaselineKey),
    now_ns: u64,
) -> Vec<(Detector, Vec<Measure>)> {
    let mut found = Vec::new();
    if let Some(d) = detail.filter(|d| d.first_ns != 0) {
        #[expect(clippy::cast_precision_loss, reason = "seconds")]
        let age_s = now_ns.saturating_sub(d.first_ns) as f64 / NS as f64;
        #[expect(clippy::cast_precision_loss, reason = "seconds")]
        let limit = cfg.short_lived_s as f64;
        if age_s < limit {
            found.push((
                Detector::ShortLived,
                vec![Measure::at_most("seconds_since_busy", age_s, limit)],
            ));
        }
    }
    match baselines.learned(endpoint, now_ns) {
        Some(false) => found.push((
            Detector::UnseenRoute,
            vec![Measure::at_most("periods_learned", 0.0, 0.0)],
        )),
        Some(true) if baselines.usual_hour(endpoint, now_ns) == Some(false) => found.push((
            Detector::OffHours,
            vec![Measure::at_most("periods_learned_this_hour", 0.0, 0.0)],
        )),
        _ => {}
    }
    if let Some(spec) = &cfg.api_spec
        && !spec.documents(method, route)
    {
        found.push((
            Detector::Undocumented,
            vec![Measure::at_most("documented_operations_matched", 0.0, 0.0)],
        ));
    }
    found
}
