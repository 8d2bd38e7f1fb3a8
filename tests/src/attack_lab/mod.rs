//! The attack lab (issue 15): scenarios of real attack tools and scripted abuse against the
//! sample API behind nginx, with benign actors alongside, in front of the real agent with its
//! default configuration; and what each scenario measured (detected or not and by which
//! detector, time to the kernel's block and first drop, malicious requests answered, benign
//! requests refused, the agent's CPU and memory). `cargo xtask lab` runs it through the `lab`
//! binary.
//!
//! # Layout
//!
//! - [`netns`]: moving a thread into a lab namespace.
//! - [`client`]: the lab's own HTTP/1.1 client (source address, header order, outcomes).
//! - [`traffic`]: the shared context of a scenario's actors, the interruption flag, the log of
//!   requests sent, a deterministic random source.
//! - [`topology`]: one scenario's lab (namespaces, sample API, nginx, agent, addresses).
//! - [`benign`]: the benign actors that run in every scenario.
//! - [`attacks`]: the attacks.
//! - [`measure`]: the block monitor, the agent's usage, the event file and nginx's log.
//! - [`scenario`]: the scenario list and the run of one (the agent enforcing, or another tool).
//! - [`others`]: fail2ban and `CrowdSec` enforcing live in comparison passes.
//! - [`bpf_stats`]: the kernel's run counts and times of the agent's programs.
//! - [`overhead`]: wrk through nginx with the agent attached, the sampling floor attached, a
//!   bare `XDP_PASS` program attached (the veth's floor) and nothing attached, interleaved.
//! - [`floors`]: the overhead run's two floors (the bare `XDP_PASS`, the minimal sampler).
//! - [`scorecard`]: the markdown scorecard.
//!
//! [`version`] reads an installed tool's version for the notes of the scorecard, the overhead
//! run and the comparison.
pub mod attacks;
pub mod benign;
pub mod bpf_stats;
pub mod client;
pub mod floors;
pub mod measure;
pub mod netns;
pub mod others;
pub mod overhead;
pub mod scenario;
pub mod scorecard;
pub mod topology;
pub mod traffic;

use std::process::Command;

/// The first line a program prints for `args` (its version), or `?`.
pub fn version(program: &str, args: &[&str]) -> String {
    Command::new(program).args(args).output().ok().map_or_else(
        || "?".to_owned(),
        |o| {
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("?")
                .to_owned()
        },
    )
}
