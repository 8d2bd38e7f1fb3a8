//! Scraping and enumeration: a source walking sequential identifiers on one route, a source
//! reaching unusually many distinct paths, and content discovery (mostly 404 answers).
//!
//! The walk must be quick as well as long: a legitimate crawler that pages through a catalogue
//! slowly takes longer than `sequential_within_s` for the same run.

use super::config::ScrapingConfig;
use super::counters::{NS, share};
use super::finding::Measure;
use super::state::{Answers, Detail};

/// The identifier a path carries where its route template's first `{id}` segment is, if that
/// segment of the path is a decimal number. A route without a `{` (most of them) costs one byte
/// search: a substring search for `{id}` cost 200 instructions a request.
pub(crate) fn walked_id(path: &str, route: &str) -> Option<u64> {
    if !route.as_bytes().contains(&b'{') {
        return None;
    }
    let at = route.split('/').position(|r| r == crate::http::route::ID)?;
    path.split('/').nth(at)?.parse().ok()
}

/// The measures of an identifier walk, if the source is on one.
pub(crate) fn enumeration(cfg: &ScrapingConfig, d: &Detail, now_ns: u64) -> Option<Vec<Measure>> {
    #[expect(clippy::cast_precision_loss, reason = "seconds")]
    let took = now_ns.saturating_sub(d.walk_start_ns) as f64 / NS as f64;
    #[expect(clippy::cast_precision_loss, reason = "seconds")]
    let within = cfg.sequential_within_s as f64;
    (d.walk_run >= cfg.sequential_run && took <= within).then(|| {
        vec![
            Measure::at_least(
                "sequential_ids",
                f64::from(d.walk_run),
                f64::from(cfg.sequential_run),
            ),
            Measure::at_most("seconds", took, within),
        ]
    })
}

/// The measures of unusual breadth.
pub(crate) fn breadth(cfg: &ScrapingConfig, d: &Detail) -> Option<Vec<Measure>> {
    let paths = d.paths.estimate();
    (paths >= cfg.breadth_paths).then(|| {
        vec![Measure::at_least(
            "distinct_paths",
            paths,
            cfg.breadth_paths,
        )]
    })
}

/// The measures of content discovery, from how a source's requests were answered.
pub(crate) fn discovery(cfg: &ScrapingConfig, s: &Answers) -> Option<Vec<Measure>> {
    let answered = f64::from(s.answered);
    let not_found = share(s.not_found, s.answered);
    (answered >= cfg.discovery_min_requests && not_found >= cfg.discovery_not_found_share).then(
        || {
            vec![
                Measure::at_least("answered_requests", answered, cfg.discovery_min_requests),
                Measure::at_least("not_found_share", not_found, cfg.discovery_not_found_share),
            ]
        },
    )
}

#[cfg(test)]
mod tests {
    use super::walked_id;
    use crate::http::route::ID;

    /// The identifier as first written: a substring test, then the segments side by side.
    fn plain_walked_id(path: &str, route: &str) -> Option<u64> {
        if !route.contains(ID) {
            return None;
        }
        path.split('/')
            .zip(route.split('/'))
            .find(|(_, r)| *r == ID)
            .and_then(|(p, _)| p.parse::<u64>().ok())
    }

    #[test]
    fn the_identifier_is_the_path_segment_under_the_first_id() {
        let cases = [
            ("/users/42", "/users/{id}", Some(42)),
            ("/users/42/orders/7", "/users/{id}/orders/{id}", Some(42)),
            ("/users/abc", "/users/{id}", None),
            ("/users", "/users/{id}", None),
            ("/health", "/health", None),
            ("/a/{id}", "/a/{name}", None),
            ("/users/42", "/users/{id}x", None),
            ("/v1/9/x", "/v1/{id}/x", Some(9)),
            ("", "", None),
            ("/", "/{id}", None),
        ];
        for (path, route, want) in cases {
            assert_eq!(walked_id(path, route), want, "{path} {route}");
            assert_eq!(
                walked_id(path, route),
                plain_walked_id(path, route),
                "{path} {route}"
            );
        }
    }
}
