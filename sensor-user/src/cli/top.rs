//! `apisensor top`: the busiest sources from the kernel's per-source LRU map.
use std::path::Path;

use clap::Args;

use crate::{clock, maps, verdict::Verdicts};

/// Options of `top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// JSON output.
    #[arg(long)]
    pub json: bool,
    /// How many sources to show.
    #[arg(short = 'n', long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub n: u32,
    /// A refreshing terminal view (q quits), with the agent's scores and decisions when it
    /// runs.
    #[arg(long)]
    pub live: bool,
}

/// One row.
#[derive(serde::Serialize)]
struct Row {
    source: std::net::IpAddr,
    packets: u64,
    bytes: u64,
    syns: u64,
    /// Drops by this address's exact block (drops are counted by the block that made them).
    dropped: u64,
    first_seen_ago_s: f64,
    last_seen_ago_s: f64,
}

#[expect(clippy::cast_precision_loss, reason = "display only")]
fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Prints the top sources by packets.
pub fn main(args: &TopArgs, pin_dir: &Path) -> anyhow::Result<()> {
    if args.live {
        return super::live::main(args.n as usize, pin_dir);
    }
    let mut sources = maps::read_sources(pin_dir)?;
    sources.sort_by(|a, b| b.1.packets.cmp(&a.1.packets).then(a.0.cmp(&b.0)));
    sources.truncate(args.n as usize);
    let now = clock::boot_ns();
    let dropped: std::collections::HashMap<std::net::IpAddr, u64> = Verdicts::open_pinned(pin_dir)?
        .blocks(now)?
        .into_iter()
        .filter(|b| b.net.prefix_len() == b.net.max_prefix_len())
        .map(|b| (b.net.addr(), b.hits))
        .collect();
    let rows: Vec<Row> = sources
        .iter()
        .map(|(ip, s)| Row {
            source: *ip,
            packets: s.packets,
            bytes: s.bytes,
            syns: s.syns,
            dropped: dropped.get(ip).copied().unwrap_or(0),
            first_seen_ago_s: secs(now.saturating_sub(s.first_seen_ns)),
            last_seen_ago_s: secs(now.saturating_sub(s.last_seen_ns)),
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:<40} {:>10} {:>12} {:>8} {:>10} {:>10} {:>10}",
            "SOURCE", "PACKETS", "BYTES", "SYNS", "DROPPED", "FIRST", "LAST"
        );
        for (r, (_, s)) in rows.iter().zip(&sources) {
            println!(
                "{:<40} {:>10} {:>12} {:>8} {:>10} {:>10} {:>10}",
                r.source.to_string(),
                r.packets,
                r.bytes,
                r.syns,
                r.dropped,
                super::age(now.saturating_sub(s.first_seen_ns)),
                super::age(now.saturating_sub(s.last_seen_ns)),
            );
        }
    }
    Ok(())
}
