//! Brute force, credential stuffing and account aggregation: failed logins per source and per
//! prefix, distinct accounts per source, distinct sources per account.
//!
//! A source is a brute forcer when its failed logins cross a count *and* make up most of its
//! logins: a user who mistypes a few times and then logs in, and an office of many users
//! behind one address, stay below the share. The fast count (a one-minute half-life by
//! default) catches an attack in its first seconds; the slow one (an hour) catches a brute
//! force paced below the fast threshold. An account attacked from many sources is reported
//! with the sources, as an alert: blocking every address that failed once would block users.

use super::config::BruteForceConfig;
use super::counters::{events, share};
use super::finding::{Detector, Measure};
use super::state::{AccountState, Identities, PrefixState};

/// The findings about one source, from its logins: brute force, credential stuffing, account
/// aggregation, as (detector, measures).
pub(crate) fn source(cfg: &BruteForceConfig, s: &Identities) -> Vec<(Detector, Vec<Measure>)> {
    let mut found = Vec::new();
    let fast_share = share(s.login_failed, s.login_failed + s.login_ok);
    let slow_share = share(s.login_failed_slow, s.login_failed_slow + s.login_ok_slow);
    let fast = events(s.login_failed);
    let slow = events(s.login_failed_slow);
    if fast >= cfg.min_failures && fast_share >= cfg.min_failure_share {
        found.push((
            Detector::BruteForce,
            vec![
                Measure::at_least("failed_logins", fast, cfg.min_failures),
                Measure::at_least("failure_share", fast_share, cfg.min_failure_share),
            ],
        ));
    } else if slow >= cfg.slow_min_failures && slow_share >= cfg.min_failure_share {
        found.push((
            Detector::BruteForce,
            vec![
                Measure::at_least("failed_logins_slow", slow, cfg.slow_min_failures),
                Measure::at_least("failure_share", slow_share, cfg.min_failure_share),
            ],
        ));
    }
    // Distinct counts (a logarithm each) only for sources with logins of that kind.
    let failed_accounts = if s.login_failed_slow > 0.0 {
        s.failed_accounts.estimate()
    } else {
        0.0
    };
    let failure_share = fast_share.max(slow_share);
    if failed_accounts >= cfg.stuffing_min_accounts && failure_share >= cfg.min_failure_share {
        found.push((
            Detector::CredentialStuffing,
            vec![
                Measure::at_least(
                    "failed_accounts",
                    failed_accounts,
                    cfg.stuffing_min_accounts,
                ),
                Measure::at_least("failure_share", failure_share, cfg.min_failure_share),
            ],
        ));
    }
    let good_accounts = if s.login_ok_slow > 0.0 {
        s.good_accounts.estimate()
    } else {
        0.0
    };
    if good_accounts >= cfg.aggregation_min_accounts {
        found.push((
            Detector::AccountAggregation,
            vec![Measure::at_least(
                "accounts_logged_in",
                good_accounts,
                cfg.aggregation_min_accounts,
            )],
        ));
    }
    found
}

/// A brute force spread over one prefix.
pub(crate) fn prefix(cfg: &BruteForceConfig, p: &PrefixState) -> Option<Vec<Measure>> {
    let failed = events(p.login_failed);
    let failure_share = share(p.login_failed, p.login_failed + p.login_ok);
    (failed >= cfg.prefix_min_failures && failure_share >= cfg.min_failure_share).then(|| {
        vec![
            Measure::at_least("failed_logins", failed, cfg.prefix_min_failures),
            Measure::at_least("failure_share", failure_share, cfg.min_failure_share),
            Measure::at_least("sources", p.sources.estimate(), 0.0),
        ]
    })
}

/// One account failing from many sources.
pub(crate) fn account(cfg: &BruteForceConfig, a: &AccountState) -> Option<Vec<Measure>> {
    let sources = a.failed_sources.estimate();
    (sources >= cfg.account_min_sources).then(|| {
        vec![
            Measure::at_least("failing_sources", sources, cfg.account_min_sources),
            Measure::at_least("failed_logins", events(a.failed), 0.0),
        ]
    })
}
