//! Sessions: one session used from many addresses at once (a stolen token, or one handed
//! around the addresses of a botnet), and a source presenting many fresh sessions (a client
//! that drops its cookie jar to look new on every request). Both are alerts: a user switching
//! networks uses a session from two or three addresses, and an office behind one address holds
//! many sessions, each used for many requests, which is what tells it from a rotator.

use super::config::SessionConfig;
use super::counters::share;
use super::finding::Measure;
use super::state::{Answers, Identities, SessionState};

/// The measures of a session used from many addresses.
pub(crate) fn shared(cfg: &SessionConfig, s: &SessionState) -> Option<Vec<Measure>> {
    let sources = s.sources.estimate();
    (sources >= cfg.shared_min_sources).then(|| {
        vec![Measure::at_least(
            "sources",
            sources,
            cfg.shared_min_sources,
        )]
    })
}

/// The measures of a source rotating sessions: many distinct sessions, most used once or twice
/// (`answers` are the source's answered requests over about the same window).
pub(crate) fn rotation(
    cfg: &SessionConfig,
    ids: &Identities,
    answers: &Answers,
) -> Option<Vec<Measure>> {
    let sessions = ids.sessions.estimate();
    #[expect(
        clippy::cast_possible_truncation,
        reason = "an estimate of a few hundred"
    )]
    let per_request = share(sessions as f32, answers.answered);
    (sessions >= cfg.rotation_min_sessions && per_request >= cfg.rotation_min_per_request).then(
        || {
            vec![
                Measure::at_least("sessions", sessions, cfg.rotation_min_sessions),
                Measure::at_least(
                    "sessions_per_request",
                    per_request,
                    cfg.rotation_min_per_request,
                ),
            ]
        },
    )
}
