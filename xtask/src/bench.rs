//! `cargo xtask bench`: the kernel benchmark (`BPF_PROG_TEST_RUN`), the live path, the closed
//! loop in the lab, the detection engine in process, the rotation and NAT runs in the lab, the
//! replay benchmark, and an optional long fuzz run; writes docs/BENCHMARKS.md. Then the attack
//! lab's full scorecard (docs/SCORECARD.md).
use std::{fmt::Write as _, process::Command};

use anyhow::{Context as _, bail};

use crate::util::{cargo, root, target_dir};

/// A benchmark that can be run on its own.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Only {
    /// `apisensor replay` against tshark on the synthetic capture.
    Replay,
}

/// The first heading of the report that a run keeps from the previous report.
const HISTORY_HEADING: &str = "## History of ";

/// Runs one benchmark and prints its section of the report (docs/BENCHMARKS.md is left as it
/// is: copy the section in by hand).
pub fn run_only(only: Only) -> anyhow::Result<()> {
    let mut md = String::new();
    match only {
        Only::Replay => crate::replay_bench::run(&mut md)?,
    }
    print!("{md}");
    Ok(())
}

/// Runs the benchmarks and writes the report.
pub fn run(fuzz_seconds: u64) -> anyhow::Result<()> {
    cargo(&[
        "build",
        "--release",
        "-p",
        "sensor-user",
        "-p",
        "sample-api",
        "-p",
        "apisensor-tests",
    ])?;
    let mut md = String::new();
    writeln!(md, "# Benchmarks\n")?;
    writeln!(
        md,
        "Reproduce with `cargo xtask bench` (as root). Every figure below was measured in one run of \
         that command on the machine described in each section; medians and ratios come from the \
         same run.\n"
    )?;
    let exe = target_dir().join("release/kernel_bench");
    let out = Command::new(&exe)
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if !out.status.success() {
        bail!(
            "kernel_bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    md.push_str(&String::from_utf8_lossy(&out.stdout));
    md.push('\n');
    let exe = target_dir().join("release/live_bench");
    let out = Command::new(&exe)
        .arg("10")
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if !out.status.success() {
        bail!(
            "live_bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    md.push_str(&String::from_utf8_lossy(&out.stdout));
    md.push('\n');
    for (bin, args) in [
        ("block_bench", &["5"][..]),
        ("detect_bench", &[][..]),
        ("rotation_bench", &[][..]),
        ("nat_bench", &[][..]),
    ] {
        let exe = target_dir().join("release").join(bin);
        let out = Command::new(&exe)
            .args(args)
            .output()
            .with_context(|| format!("cannot run {}", exe.display()))?;
        if !out.status.success() {
            bail!("{bin} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        md.push_str(&String::from_utf8_lossy(&out.stdout));
        md.push('\n');
    }
    crate::replay_bench::run(&mut md)?;
    let exe = target_dir().join("release/flow_memory");
    let out = Command::new(&exe)
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if !out.status.success() {
        bail!(
            "flow_memory failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    md.push('\n');
    md.push_str(&String::from_utf8_lossy(&out.stdout));
    if fuzz_seconds > 0 {
        crate::fuzz::run(fuzz_seconds)?;
        writeln!(
            md,
            "\nLong fuzz run: {fuzz_seconds} s per target, no crash."
        )?;
    }
    let path = root().join("docs/BENCHMARKS.md");
    // The history sections at the end of the report (measurements of earlier sessions, moved
    // there from ARCHITECTURE.md) are kept as they are; everything above them is this run's.
    if let Ok(old) = std::fs::read_to_string(&path)
        && let Some(at) = old.find(HISTORY_HEADING)
    {
        md.push('\n');
        md.push_str(&old[at..]);
    }
    std::fs::create_dir_all(root().join("docs"))?;
    std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("xtask: wrote {}", path.display());
    // The attack lab's scorecard: every scenario, fail2ban and CrowdSec on the same traffic,
    // and the overhead run (about 40 minutes).
    let scorecard = root().join("docs/SCORECARD.md");
    crate::util::status(
        Command::new(target_dir().join("release/lab"))
            .arg("--scorecard")
            .arg(&scorecard),
    )
    .context("the attack lab's scorecard")
}
