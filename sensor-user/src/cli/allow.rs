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
    /// List allowlist entries with the blocked packets they let pass; exceptions the policy
    /// wrote beside a prefix block show their TTL left and the decision they came with.
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
            let mut entries = verdict::Verdicts::open_pinned(pin_dir)?.allows(clock::boot_ns())?;
            entries.sort_by_key(|e| e.net);
            if *json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                // An operator's entry is permanent; an exception (spared from a prefix block)
                // shows its TTL left and the decision it came with.
                println!(
                    "{:<43} {:>12} {:>10} {:<16}",
                    "PREFIX", "HITS", "TTL_LEFT", "ORIGIN"
                );
                for e in &entries {
                    let (ttl, origin) = match (e.ttl_left_s, e.verdict_id) {
                        (Some(t), Some(id)) => (format!("{t}s"), format!("{id:016x}")),
                        _ => ("permanent".to_owned(), "operator".to_owned()),
                    };
                    println!(
                        "{:<43} {:>12} {:>10} {:<16}",
                        e.net.to_string(),
                        e.hits,
                        ttl,
                        origin
                    );
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
