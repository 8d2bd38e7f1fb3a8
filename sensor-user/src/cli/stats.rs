//! `apisensor stats`: the kernel's per-reason action counters and ring-buffer events/losses.
use std::path::Path;

use clap::Args;

use crate::maps;

/// Options of `stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// JSON output (an object of counter name to value).
    #[arg(long)]
    pub json: bool,
}

/// Prints the counters.
pub fn main(args: &StatsArgs, pin_dir: &Path) -> anyhow::Result<()> {
    let counters = maps::read_counters(pin_dir)?;
    if args.json {
        let obj: serde_json::Map<String, serde_json::Value> = counters
            .iter()
            .map(|(c, v)| (c.name().to_owned(), (*v).into()))
            .collect();
        println!("{}", serde_json::to_string_pretty(&obj)?);
    } else {
        for (c, v) in &counters {
            println!("{:<28} {v:>14}", c.name());
        }
    }
    Ok(())
}
