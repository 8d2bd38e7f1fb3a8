//! `apisensor blocks add|list|rm`.
use std::path::Path;

use anyhow::Context as _;
use clap::Subcommand;
use sensor_common::Reason;

use crate::{clock, verdict};

/// Block actions.
#[derive(Debug, Subcommand)]
pub enum BlocksCommand {
    /// Block an address or prefix until its TTL runs out.
    Add {
        /// Address (`198.51.100.7`, `2001:db8::7`) or prefix (`198.51.100.0/24`).
        net: String,
        /// How long the block lasts, e.g. `30s`, `10m`, `2h` (at most 90 days).
        #[arg(long)]
        ttl: humantime::Duration,
        /// Why, kept with the block (at most 96 bytes).
        #[arg(long)]
        reason: String,
    },
    /// List blocks with reason, TTL left and drop hits.
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Remove the block of exactly this address or prefix.
    Rm {
        /// Address or prefix.
        net: String,
    },
}

/// Runs a block action.
pub fn main(cmd: &BlocksCommand, pin_dir: &Path) -> anyhow::Result<()> {
    match cmd {
        BlocksCommand::Add { net, ttl, reason } => {
            let net = verdict::parse_net(net)?;
            verdict::check_ttl(**ttl)?;
            let mut v = verdict::Verdicts::open_pinned(pin_dir)?;
            let id = v
                .block(net, **ttl, Reason::Manual, reason, clock::boot_ns())
                .with_context(|| format!("blocking {net}"))?;
            println!("blocked {net} for {ttl} (verdict {id:016x})");
        }
        BlocksCommand::List { json } => {
            let v = verdict::Verdicts::open_pinned(pin_dir)?;
            let mut blocks = v.blocks(clock::boot_ns())?;
            blocks.sort_by_key(|b| b.net);
            if *json {
                println!("{}", serde_json::to_string_pretty(&blocks)?);
            } else {
                println!(
                    "{:<43} {:<10} {:>10} {:>12}  TEXT",
                    "ADDRESS", "REASON", "TTL LEFT", "DROP HITS"
                );
                for b in &blocks {
                    let left = if b.ttl_left_s == 0 {
                        "expired".to_owned()
                    } else {
                        humantime::format_duration(std::time::Duration::from_secs(b.ttl_left_s))
                            .to_string()
                    };
                    println!(
                        "{:<43} {:<10} {:>10} {:>12}  {}",
                        b.net.to_string(),
                        b.reason,
                        left,
                        b.hits,
                        b.text.as_deref().unwrap_or("")
                    );
                }
            }
        }
        BlocksCommand::Rm { net } => {
            let net = verdict::parse_net(net)?;
            verdict::Verdicts::open_pinned(pin_dir)?.unblock(net)?;
            println!("unblocked {net}");
        }
    }
    Ok(())
}
