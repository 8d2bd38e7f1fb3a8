//! `cargo xtask lab [SCENARIO...] [--short] [--scorecard]` or `cargo xtask lab
//! --overhead-only`: builds the agent, the sample API and the lab binary (release), then
//! replaces itself with the lab (as root), so an interrupt reaches the lab, which tears its
//! namespaces down.
use anyhow::bail;

use crate::util::{cargo, exec, root, target_dir};

/// Builds what the lab runs and runs it.
pub fn run(
    scenarios: &[String],
    short: bool,
    scorecard: bool,
    overhead_only: bool,
) -> anyhow::Result<()> {
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
        "apisensor",
        "--bin",
        "sample-api",
    ])?;
    let mut args: Vec<String> = scenarios.to_vec();
    if short {
        args.push("--short".into());
    }
    if overhead_only {
        args.push("--overhead-only".into());
    }
    if scorecard {
        args.push("--scorecard".into());
        args.push(root().join("docs/SCORECARD.md").display().to_string());
    }
    exec(&target_dir().join("release/lab"), &args)
}
