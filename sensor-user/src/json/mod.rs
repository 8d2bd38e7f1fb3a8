//! The one JSON output of the agent and the replay: transactions (`apisensor run
//! --log-transactions` and `apisensor replay --json` both write them with
//! [`JsonCache::line`]), the event lines of findings and decisions (apisensor's own, or as
//! OCSF Detection Findings: [`ocsf`]), and the API inventory file.

pub mod ocsf;
mod transaction;

pub use transaction::JsonCache;

use serde::Serialize;

use crate::decide::Decision;
use crate::detect::Finding;

/// An event line of the agent (and of `replay --findings`): a finding or a decision, tagged
/// with `"type"`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventLine<'a> {
    /// A finding, with its evidence.
    Finding(&'a Finding),
    /// A decision, with the findings behind it.
    Decision(&'a Decision),
    /// A decision as the agent enforced it: the same fields, and when its block was in the
    /// map.
    #[serde(rename = "decision")]
    Enforced(Enforced<'a>),
}

/// A decision and what the agent's map writer did with it.
#[derive(Serialize)]
pub struct Enforced<'a> {
    /// The decision.
    #[serde(flatten)]
    pub decision: &'a Decision,
    /// When its block was written into the kernel's map, Unix ns (`null` when nothing was
    /// written: an alert, a dry run, a block enforced upstream, or a failed write).
    pub written_ns: Option<u64>,
    /// Why the map writer failed, if it did.
    pub write_error: Option<String>,
}

/// Replaces the API inventory file at `path` with `catalogue`'s endpoints, pretty-printed:
/// written to a temporary file beside it, then renamed, so a reader never sees half a file.
/// The one writer of the inventory, for the agent and the replay.
pub fn write_catalogue(
    catalogue: &crate::http::Catalogue,
    path: &std::path::Path,
) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(&catalogue.endpoints()).map_err(std::io::Error::from)?;
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Appends an event line and a newline to `buf`.
pub fn event_line(event: &EventLine<'_>, buf: &mut Vec<u8>) {
    // Serializing into a vector fails only on a non-finite float, which serde_json writes as
    // null; nothing else in these types can fail.
    if serde_json::to_writer(&mut *buf, event).is_ok() {
        buf.push(b'\n');
    }
}
