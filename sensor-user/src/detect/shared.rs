//! Shared addresses (an office behind NAT, a carrier's CGNAT): the logins of one address by
//! client shape, and the marks that tell its attacker's connections from its other users'.
//!
//! A client shape is what a client program shows whatever account or session it uses: its
//! request fingerprint (`http::fingerprint`) and its TCP stack's (`http::transport`, from the
//! SYN, when it was seen), hashed with the installation's key (`Detection::client_key`). A
//! busy address keeps its logins per shape for its [`SHAPES`] most active shapes. When a
//! finding about the address is made, the shapes whose logins there mostly failed are its
//! marks, provided the rest of the address is in good standing: its other shapes logged in,
//! mostly successfully. The address is then shared between an attacker and its users, and
//! the policy drops the connections that carry a mark instead of the address
//! (`decide::Enforcement::Connection`).
//!
//! Every user behind a NAT whose browser and system match the attacker's tool exactly would
//! share its shape; then the shape's logins do not mostly fail, it is no mark, and the
//! address is judged as a whole, as before.

use super::config::SharedConfig;
use super::counters::{Decay, share};
use super::finding::{Mark, Measure};
use super::state::Outcome;

/// Client shapes whose logins an address keeps.
pub(crate) const SHAPES: usize = 4;

/// The logins of one client shape at one address (decayed).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct ShapeLogins {
    /// The shape's key; 0 for an empty slot.
    pub(crate) key: u64,
    /// Failed logins.
    pub(crate) failed: f32,
    /// Successful logins.
    pub(crate) ok: f32,
}

impl ShapeLogins {
    fn logins(&self) -> f32 {
        self.failed + self.ok
    }
}

/// An address's logins by client shape: its most active shapes (a new shape takes the slot
/// of the least active one).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ClientShapes {
    slots: [ShapeLogins; SHAPES],
    /// Latest login counted, Unix ns (the time the counts are decayed to).
    last_ns: u64,
}

impl ClientShapes {
    /// Counts one login with outcome `o` from the shape `key` (other requests are not
    /// counted).
    pub(crate) fn add(&mut self, decay: Decay, now_ns: u64, key: u64, o: Outcome) {
        let (failed, ok) = (o.login_failed(), o.login_ok());
        if !failed && !ok {
            return;
        }
        if self.last_ns != 0 {
            let f = decay.factor(now_ns.saturating_sub(self.last_ns));
            for s in &mut self.slots {
                s.failed *= f;
                s.ok *= f;
            }
        }
        self.last_ns = self.last_ns.max(now_ns);
        let i = if let Some(i) = self.slots.iter().position(|s| s.key == key) {
            i
        } else {
            let (i, _) = self
                .slots
                .iter()
                .enumerate()
                .min_by(|(_, a), (_, b)| a.logins().total_cmp(&b.logins()))
                .unwrap_or((0, &ShapeLogins::default()));
            self.slots[i] = ShapeLogins {
                key,
                failed: 0.0,
                ok: 0.0,
            };
            i
        };
        let s = &mut self.slots[i];
        if failed {
            s.failed += 1.0;
        } else {
            s.ok += 1.0;
        }
    }

    /// The slots in use.
    pub(crate) fn shapes(&self) -> impl Iterator<Item = &ShapeLogins> {
        self.slots.iter().filter(|s| s.key != 0)
    }
}

/// The marks of an address: its shapes whose logins mostly failed, when its other shapes
/// logged in mostly successfully (empty otherwise: the address is not shared, or nothing
/// tells its attacker apart).
pub(crate) fn marks(cfg: &SharedConfig, shapes: &ClientShapes) -> Vec<Mark> {
    judge(cfg, shapes)
        .map(|(marks, _)| marks)
        .unwrap_or_default()
}

/// The marked-client detector: the marks of the address and the measures that made them,
/// when it has any.
pub(crate) fn check(cfg: &SharedConfig, shapes: &ClientShapes) -> Option<Vec<Measure>> {
    judge(cfg, shapes).map(|(_, measures)| measures)
}

fn judge(cfg: &SharedConfig, shapes: &ClientShapes) -> Option<(Vec<Mark>, Vec<Measure>)> {
    let is_mark = |s: &ShapeLogins| {
        f64::from(s.failed) >= cfg.mark_min_failures
            && share(s.failed, s.logins()) >= cfg.mark_min_failure_share
    };
    let (mut others_ok, mut others) = (0.0_f32, 0.0_f32);
    for s in shapes.shapes().filter(|s| !is_mark(s)) {
        others_ok += s.ok;
        others += s.logins();
    }
    let others_share = share(others_ok, others);
    if f64::from(others_ok) < cfg.others_min_logins || others_share < cfg.others_min_success_share {
        return None;
    }
    let marked: Vec<&ShapeLogins> = shapes.shapes().filter(|s| is_mark(s)).collect();
    // The measures of the shape that failed most.
    let worst = marked.iter().max_by(|a, b| a.failed.total_cmp(&b.failed))?;
    let measures = vec![
        Measure::at_least(
            "shape_failed_logins",
            f64::from(worst.failed),
            cfg.mark_min_failures,
        ),
        Measure::at_least(
            "shape_failure_share",
            share(worst.failed, worst.logins()),
            cfg.mark_min_failure_share,
        ),
        Measure::at_least(
            "other_shapes_logins_ok",
            f64::from(others_ok),
            cfg.others_min_logins,
        ),
        Measure::at_least(
            "other_shapes_success_share",
            others_share,
            cfg.others_min_success_share,
        ),
    ];
    let marks = marked
        .iter()
        .map(|s| Mark {
            shape: s.key,
            failed: f64::from(s.failed),
            ok: f64::from(s.ok),
        })
        .collect();
    Some((marks, measures))
}
