//! Low success rate: a source with enough answered requests of which almost none succeeded.
//! The source documents put attackers under 5 % and normal clients above 85 %; success is a
//! 2xx or 3xx answer, so failed logins, refused requests and 404s all count against it.

use super::config::LowSuccessConfig;
use super::counters::share;
use super::finding::Measure;
use super::state::Answers;

/// The measures of a low-success source (from how its requests were answered), if it is one.
pub(crate) fn source(cfg: &LowSuccessConfig, s: &Answers) -> Option<Vec<Measure>> {
    let answered = f64::from(s.answered);
    let success = share(s.ok, s.answered);
    (answered >= cfg.min_requests && success <= cfg.max_success_share).then(|| {
        vec![
            Measure::at_least("answered_requests", answered, cfg.min_requests),
            Measure::at_most("success_share", success, cfg.max_success_share),
        ]
    })
}
