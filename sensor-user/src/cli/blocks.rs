//! `apisensor blocks add|list|rm`.
//!
//! `list` shows address blocks, then flow blocks (one TCP connection each, written by the
//! agent). Its JSON is one array: address blocks as objects with `net`, then flow blocks as
//! objects with `flow` (`"client -> server"`), `client` and `server` instead; the other fields
//! are the same.
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
    /// List blocks (addresses and prefixes, then flows) with reason, TTL left and drop hits.
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
            let now = clock::boot_ns();
            let mut blocks = v.blocks(now)?;
            blocks.sort_by_key(|b| b.net);
            let mut flows = v.flow_blocks(now)?;
            flows.sort_by_key(|f| (f.client, f.server));
            if *json {
                let listed: Vec<Listed<'_>> = blocks
                    .iter()
                    .map(Listed::Block)
                    .chain(flows.iter().map(|f| Listed::Flow {
                        flow: flow_name(f),
                        entry: f,
                    }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&listed)?);
            } else {
                println!(
                    "{:<43} {:<10} {:>10} {:>12}  TEXT",
                    "ADDRESS", "REASON", "TTL LEFT", "DROP HITS"
                );
                let rows = blocks
                    .iter()
                    .map(|b| (b.net.to_string(), b.reason, b.ttl_left_s, b.hits, &b.text))
                    .chain(
                        flows
                            .iter()
                            .map(|f| (flow_name(f), f.reason, f.ttl_left_s, f.hits, &f.text)),
                    );
                for (what, reason, ttl_left_s, hits, text) in rows {
                    let left = if ttl_left_s == 0 {
                        "expired".to_owned()
                    } else {
                        humantime::format_duration(std::time::Duration::from_secs(ttl_left_s))
                            .to_string()
                    };
                    println!(
                        "{what:<43} {reason:<10} {left:>10} {hits:>12}  {}",
                        text.as_deref().unwrap_or("")
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

/// One element of `list --json`: an address block as it always was, or a flow block.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Listed<'a> {
    Block(&'a verdict::BlockEntry),
    Flow {
        flow: String,
        #[serde(flatten)]
        entry: &'a verdict::FlowBlockEntry,
    },
}

/// A flow block's name in listings: `client -> server`.
fn flow_name(f: &verdict::FlowBlockEntry) -> String {
    format!("{} -> {}", f.client, f.server)
}
