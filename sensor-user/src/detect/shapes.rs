//! Request shapes: the parts of a request fingerprint (method, version, header names in order,
//! language) with the whole user agent, hashed. A client program keeps its shape; a tool that
//! randomises its fingerprint to look like many clients changes it request after request, and
//! a campaign that rotates fingerprints makes an endpoint see a surge of shapes it did not see
//! before. Both are alerts: they raise attention, and campaigns and per-source detectors block.

use super::config::ShapeConfig;
use super::counters::share;
use super::finding::Measure;
use super::state::{Answers, Detail, EndpointState};

/// The measures of a source rotating its request shape.
pub(crate) fn rotation(cfg: &ShapeConfig, d: &Detail, answers: &Answers) -> Option<Vec<Measure>> {
    let shapes = d.shapes.estimate();
    #[expect(
        clippy::cast_possible_truncation,
        reason = "an estimate of a few hundred"
    )]
    let per_request = share(shapes as f32, answers.answered);
    (shapes >= cfg.rotation_min_shapes && per_request >= cfg.rotation_min_per_request).then(|| {
        vec![
            Measure::at_least("shapes", shapes, cfg.rotation_min_shapes),
            Measure::at_least(
                "shapes_per_request",
                per_request,
                cfg.rotation_min_per_request,
            ),
        ]
    })
}

/// The measures of a surge of new shapes on an endpoint: many distinct shapes in the current
/// window, far more than in the window before.
pub(crate) fn surge(cfg: &ShapeConfig, e: &EndpointState) -> Option<Vec<Measure>> {
    let (now, before) = e.shapes.by_window();
    let limit = cfg.surge_factor * before.max(1.0);
    (now >= cfg.surge_min_shapes && now >= limit).then(|| {
        vec![
            Measure::at_least("shapes", now, cfg.surge_min_shapes.max(limit)),
            Measure::at_least("shapes_window_before", before, 0.0),
        ]
    })
}
