//! `cargo xtask lab [SCENARIO...] [--short] [--compare] [--scorecard]` or `cargo xtask lab
//! --overhead-only`: builds the agent, the sample API and the lab binary (release), then
//! replaces itself with the lab (as root), so an interrupt reaches the lab, which tears its
//! namespaces down.
use anyhow::bail;

use crate::util::{cargo, exec, root, target_dir};

/// Builds what the lab runs and runs it with `args` (scenarios and the lab's flags), and the
/// scorecard's path if `scorecard`.
pub fn run(mut args: Vec<String>, scorecard: bool) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("cargo xtask lab needs root: it creates network namespaces and attaches XDP");
    }
    cargo(&[
        "build",
        "--release",
        "-p",
        "sensor-user",
        "-p",
        "sample-api",
        "-p",
        "apisensor-tests",
        "--bin",
        "lab",
        "--bin",
        "overhead_sampler",
        "--bin",
        "apisensor",
        "--bin",
        "sample-api",
    ])?;
    if scorecard {
        args.push("--scorecard".into());
        args.push(root().join("docs/SCORECARD.md").display().to_string());
    }
    exec(&target_dir().join("release/lab"), &args)
}
