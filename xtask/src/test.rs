//! `cargo xtask test`: the one test command (README, `.ci/run`). Privileged tests need root and
//! run for real; if the machine lacks something they fail loudly, they are never skipped.
use anyhow::bail;

use crate::{lint, util::cargo};

/// Runs every test.
pub fn run(fuzz_seconds: u64) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "cargo xtask test needs root: the integration tests load XDP/TC programs and create network namespaces"
        );
    }
    lint::run()?;
    // The integration tests run the real binaries: the agent (with the embedded eBPF object)
    // and the lab's sample API.
    cargo(&["build", "-p", "sensor-user", "-p", "sample-api"])?;
    crate::fuzz::run(fuzz_seconds)?;
    cargo(&[
        "test",
        "--workspace",
        "--exclude",
        "apisensor-tests",
        "--exclude",
        "sensor-ebpf",
    ])?;
    // The Debian package, which `tests/tests/integration/package.rs` installs into a scratch root.
    crate::dist::run()?;
    // Network namespaces, XDP attach and BPF_PROG_TEST_RUN: one at a time.
    cargo(&["test", "-p", "apisensor-tests", "--", "--test-threads=1"])
}
