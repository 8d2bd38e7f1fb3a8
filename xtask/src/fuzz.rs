//! `cargo xtask fuzz`: time-boxed libFuzzer runs of every fuzz target in `fuzz/` with
//! cargo-fuzz on the nightly toolchain. A crash fails the task and names the artifact to
//! reproduce it with.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::util;

/// The targets in `fuzz/fuzz_targets/`, in the order they run.
pub const TARGETS: [&str; 3] = ["replay_bytes", "segments_to_transactions", "http_conn"];

/// Runs every target for `seconds_per_target` seconds, installing cargo-fuzz first if it is
/// missing. Fails on the first target that crashes, leaks beyond libFuzzer's limits or times
/// out.
pub fn run(seconds_per_target: u64) -> anyhow::Result<()> {
    if seconds_per_target == 0 {
        return Ok(());
    }
    ensure_tools()?;
    let root = util::root();
    seed_corpus(&root)?;
    for target in TARGETS {
        let corpus = root.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("cannot create {}", corpus.display()))?;
        let max_time = format!("-max_total_time={seconds_per_target}");
        let mut cmd = Command::new("cargo");
        cmd.args(["+nightly", "fuzz", "run", target])
            .arg(&corpus)
            .args(["--", &max_time, "-rss_limit_mb=2048", "-timeout=10"])
            // sensor-user's build script would otherwise build the eBPF object; the fuzz
            // targets need only the pure modules.
            .env("AYA_BUILD_SKIP", "1");
        util::status(&mut cmd).with_context(|| {
            format!(
                "fuzz target {target} failed: the crashing input is in {}; reproduce with \
                 `cargo +nightly fuzz run {target} <file>`",
                root.join("fuzz/artifacts").join(target).display()
            )
        })?;
    }
    Ok(())
}

/// Installs cargo-fuzz when `cargo fuzz` is not available and checks for the nightly toolchain.
fn ensure_tools() -> anyhow::Result<()> {
    if !util::probe("rustup", &["run", "nightly", "rustc", "--version"]) {
        bail!(
            "the nightly toolchain is missing (libFuzzer needs it): run `cargo xtask setup` or \
             `rustup toolchain install nightly`"
        );
    }
    if !util::probe("cargo", &["fuzz", "--version"]) {
        util::cargo(&["install", "cargo-fuzz", "--locked"])?;
    }
    Ok(())
}

/// Writes small valid captures as starting points for `replay_bytes`, so the fuzzer begins
/// from real pcap structure rather than from nothing. Existing seeds are kept.
fn seed_corpus(root: &Path) -> anyhow::Result<()> {
    let dir = root.join("fuzz/corpus/replay_bytes");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let seed = dir.join("seed-synthetic.pcap");
    if !seed.exists() {
        // The mode byte 0 keeps the file as it is (see the target's docs).
        let tmp = dir.join("seed-synthetic.tmp");
        crate::replay_bench::generate_capture(&tmp, 6, 3)?;
        let body = std::fs::read(&tmp).with_context(|| format!("cannot read {}", tmp.display()))?;
        let mut with_mode = Vec::with_capacity(body.len() + 1);
        with_mode.push(0);
        with_mode.extend_from_slice(&body);
        std::fs::write(&seed, with_mode)
            .with_context(|| format!("cannot write {}", seed.display()))?;
        std::fs::remove_file(&tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
    }
    Ok(())
}
