//! `cargo xtask lint`: rustfmt, then clippy in two passes (host crates, then the eBPF crate):
//! one pass would unify features across the host and BPF targets and break the build.
use crate::util::cargo;

/// Runs the checks.
pub fn run() -> anyhow::Result<()> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    // Host crates; the eBPF object is not needed to lint them.
    temp_env_cargo(
        &[
            "clippy",
            "--workspace",
            "--exclude",
            "sensor-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[("AYA_BUILD_SKIP", "1")],
    )?;
    nightly_cargo(&[
        "clippy",
        "-p",
        "sensor-ebpf",
        "--bins",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--release",
        "--",
        "-D",
        "warnings",
    ])
}

/// Runs the nightly toolchain's cargo (through the rustup proxy, with the stable toolchain's
/// environment from `cargo xtask` removed).
pub fn nightly_cargo(args: &[&str]) -> anyhow::Result<()> {
    let mut cmd = std::process::Command::new("cargo");
    cmd.arg("+nightly").args(args);
    for k in [
        "CARGO",
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTUP_TOOLCHAIN",
        "RUSTDOC",
    ] {
        cmd.env_remove(k);
    }
    crate::util::status(&mut cmd)
}

fn temp_env_cargo(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut cmd =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    crate::util::status(&mut cmd)
}
