//! `apisensor allow add|list|rm`.
use std::path::Path;

use clap::Subcommand;

use crate::{clock, verdict};

/// Allowlist actions.
#[derive(Debug, Subcommand)]
pub enum AllowCommand {
    /// Never drop this address or prefix, whatever blocks say.
    Add {
        /// Address or prefix.
        net: String,
    },
    /// List allowlist entries with the blocked packets they let pass.
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Remove the allowlist entry of exactly this address or prefix.
    Rm {
        /// Address or prefix.
        net: String,
    },
}

/// Runs an allowlist action.
pub fn main(cmd: &AllowCommand, pin_dir: &Path) -> anyhow::Result<()> {
    match cmd {
        AllowCommand::Add { net } => {
            let net = verdict::parse_net(net)?;
            verdict::Verdicts::open_pinned(pin_dir)?.allow(net, clock::boot_ns())?;
            println!("allowlisted {net}");
        }
        AllowCommand::List { json } => {
            let mut entries = verdict::Verdicts::open_pinned(pin_dir)?.allows()?;
            entries.sort_by_key(|e| e.net);
            if *json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                println!("{:<43} {:>12}", "PREFIX", "HITS");
                for e in &entries {
                    println!("{:<43} {:>12}", e.net.to_string(), e.hits);
                }
            }
        }
        AllowCommand::Rm { net } => {
            let net = verdict::parse_net(net)?;
            verdict::Verdicts::open_pinned(pin_dir)?.unallow(net)?;
            println!("removed {net} from the allowlist");
        }
    }
    Ok(())
}
