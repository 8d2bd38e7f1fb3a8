//! `cargo xtask setup`: installs what is missing, idempotently.
use std::process::Command;

use anyhow::Context as _;

use crate::util::{probe, status};

/// Debian packages the tests and benchmarks use.
const APT_PACKAGES: [&str; 19] = [
    "nginx",
    "haproxy",
    "curl",
    "iproute2",
    "tcpdump",
    "tshark",
    "wrk",
    "hydra",
    "ffuf",
    "bpftool",
    "xdp-tools",
    "clang-19",
    "valgrind",
    // systemd-analyze, which checks the packaged unit (no service is started).
    "systemd",
    // The pseudo-terminal the integration test `e2e_control` drives `apisensor top --live` in.
    "tmux",
    // The lab's comparison: fail2ban and CrowdSec read nginx's logs and ban through nftables
    // (in the lab's server namespace), which the block monitor reads with `nft`.
    "fail2ban",
    "crowdsec",
    "crowdsec-firewall-bouncer",
    "nftables",
];
/// The cargo-deb that `cargo xtask dist` builds the Debian package with (builds on rustc 1.95).
const CARGO_DEB_VERSION: &str = "3.8.0";
/// `CrowdSec`'s file of central API credentials. Its postinst registers with the central API
/// unless the file exists; the machines here cannot reach it, and the lab runs `CrowdSec`
/// offline, so a comment line is written before the package is installed.
const CROWDSEC_ONLINE_CREDENTIALS: &str = "/etc/crowdsec/online_api_credentials.yaml";
/// The bpf-linker that works with the nightly's LLVM on these machines.
const BPF_LINKER_VERSION: &str = "0.10.3";

/// Runs every step.
pub fn run() -> anyhow::Result<()> {
    rust_src()?;
    bpf_linker()?;
    cargo_deb()?;
    apt()?;
    Ok(())
}

fn rust_src() -> anyhow::Result<()> {
    let out = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .context("rustup is required (https://rustup.rs)")?;
    let installed = String::from_utf8_lossy(&out.stdout).into_owned();
    // rust-src for build-std, clippy for the eBPF crate's lint pass.
    let missing: Vec<&str> = ["rust-src", "clippy"]
        .into_iter()
        .filter(|c| !installed.lines().any(|l| l.starts_with(c)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !out.status.success() {
        status(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    status(
        Command::new("rustup")
            .args(["component", "add", "--toolchain", "nightly"])
            .args(&missing),
    )
}

fn bpf_linker() -> anyhow::Result<()> {
    let out = Command::new("bpf-linker").arg("--version").output();
    if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)) {
        return Ok(());
    }
    status(Command::new("cargo").args([
        "+nightly",
        "install",
        &format!("bpf-linker@{BPF_LINKER_VERSION}"),
        "--locked",
        "--force",
    ]))
}

fn cargo_deb() -> anyhow::Result<()> {
    let out = Command::new("cargo").args(["deb", "--version"]).output();
    if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_DEB_VERSION)) {
        return Ok(());
    }
    status(Command::new("cargo").args([
        "install",
        &format!("cargo-deb@{CARGO_DEB_VERSION}"),
        "--locked",
        "--force",
    ]))
}

fn apt() -> anyhow::Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !probe("dpkg-query", &["-W", "-f=${Status}", p]) || !installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    if missing.contains(&"crowdsec") && !std::path::Path::new(CROWDSEC_ONLINE_CREDENTIALS).exists()
    {
        std::fs::create_dir_all("/etc/crowdsec").context("creating /etc/crowdsec")?;
        std::fs::write(
            CROWDSEC_ONLINE_CREDENTIALS,
            "# apisensor lab: CrowdSec runs offline, without the central API\n",
        )
        .with_context(|| format!("writing {CROWDSEC_ONLINE_CREDENTIALS}"))?;
    }
    status(Command::new("apt-get").arg("update"))?;
    status(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}
