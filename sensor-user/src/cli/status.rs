//! `apisensor status`: the running agent's version, attachment, uptime, event rate, blocks and
//! detectors (from its control socket), with the kernel's ring-buffer losses and blocks (from
//! the pinned maps).
use std::path::Path;

use clap::Args;
use sensor_common::Counter;

use super::table::{ask, print_json, unexpected};
use crate::control::protocol::{Request, Response, Status};
use crate::{clock, maps, verdict::Verdicts};

/// Options of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// What the kernel's maps say.
#[derive(Debug, serde::Serialize)]
struct Kernel {
    /// Ring-buffer records lost because a ring was full (both rings).
    ring_losses: u64,
    /// Blocks in the maps (address and prefix) that have not expired.
    blocks: usize,
}

#[derive(serde::Serialize)]
struct Output<'a> {
    agent: &'a Status,
    kernel: Option<Kernel>,
}

fn kernel(pin_dir: &Path) -> anyhow::Result<Kernel> {
    let counters = maps::read_counters(pin_dir)?;
    let ring_losses = counters
        .iter()
        .filter(|(c, _)| matches!(c, Counter::ReqRingFull | Counter::RespRingFull))
        .map(|(_, v)| v)
        .sum();
    let blocks = Verdicts::open_pinned(pin_dir)?
        .blocks(clock::boot_ns())?
        .iter()
        .filter(|b| b.ttl_left_s > 0)
        .count();
    Ok(Kernel {
        ring_losses,
        blocks,
    })
}

/// Prints the status.
pub fn main(args: &StatusArgs, pin_dir: &Path) -> anyhow::Result<()> {
    let status = match ask(pin_dir, &Request::Status)? {
        Response::Status(s) => s,
        other => return Err(unexpected(&other)),
    };
    let kernel = kernel(pin_dir);
    if args.json {
        return print_json(&Output {
            agent: &status,
            kernel: kernel.ok(),
        });
    }
    let s = &status;
    let rows = [
        ("version", s.version.clone()),
        ("pid", s.pid.to_string()),
        (
            "attached",
            format!("{} (xdp {}, tc {})", s.iface, s.xdp_mode, s.tc_mode),
        ),
        (
            "uptime",
            super::age(s.uptime_s.saturating_mul(1_000_000_000)),
        ),
        (
            "events",
            format!(
                "{} ({:.1}/s, {} undecodable)",
                s.events, s.events_per_s, s.decode_errors
            ),
        ),
        (
            "ring losses",
            kernel.as_ref().map_or_else(
                |e| format!("unknown ({e:#})"),
                |k| k.ring_losses.to_string(),
            ),
        ),
        (
            "active blocks",
            format!(
                "{} by the policy, {} in the kernel's maps ({} written this run)",
                s.active_blocks,
                kernel
                    .as_ref()
                    .map_or_else(|_| "?".to_owned(), |k| k.blocks.to_string()),
                s.blocks_written
            ),
        ),
        (
            "detection",
            if s.detection {
                format!(
                    "on{}: {}",
                    if s.dry_run { " (dry run)" } else { "" },
                    s.detectors.join(" ")
                )
            } else {
                "off".to_owned()
            },
        ),
        (
            "traffic",
            format!(
                "{} transactions, {} findings, {} decisions, {} sources tracked",
                s.transactions, s.findings, s.decisions, s.sources_tracked
            ),
        ),
        (
            "configuration",
            s.config
                .clone()
                .unwrap_or_else(|| "(embedded default)".to_owned()),
        ),
    ];
    for (name, value) in rows {
        println!("{name:<14} {value}");
    }
    Ok(())
}
