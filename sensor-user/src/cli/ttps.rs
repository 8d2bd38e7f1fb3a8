//! `apisensor ttps`: the client programs seen logging in, by request fingerprint, ranked by
//! logins, with how many sources use each, their success rate and when each was first seen;
//! and the count of distinct fingerprints in each of the last 24 hours.
use std::path::Path;

use clap::Args;

use super::table::{Table, ago, ask, count, percent, print_json, unexpected};
use crate::clock;
use crate::control::protocol::{MAX_LIMIT, Request, Response};

/// Options of `ttps`.
#[derive(Debug, Args)]
pub struct TtpsArgs {
    /// Most fingerprints (most logins first).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=MAX_LIMIT as i64))]
    pub limit: u32,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// Prints the fingerprints.
pub fn main(args: &TtpsArgs, pin_dir: &Path) -> anyhow::Result<()> {
    let request = Request::Ttps {
        limit: args.limit as usize,
    };
    let response = ask(pin_dir, &request)?;
    let Response::Ttps {
        tracked,
        fingerprints,
        per_hour,
    } = &response
    else {
        return Err(unexpected(&response));
    };
    if args.json {
        return print_json(&response);
    }
    let now = clock::unix_ns();
    let mut t = Table::new(
        &[
            "FINGERPRINT",
            "LOGINS",
            "SOURCES",
            "OK%",
            "FAILED",
            "FIRST",
            "LAST",
        ],
        &[],
    );
    for f in fingerprints {
        t.row(vec![
            f.fingerprint.clone(),
            f.logins.to_string(),
            count(f.sources),
            percent(f.success_rate),
            f.failures.to_string(),
            ago(now, f.first_seen_ns),
            ago(now, f.last_seen_ns),
        ]);
    }
    print!("{}", t.render());
    println!("{} of {tracked} login fingerprints", fingerprints.len());
    let hours: Vec<String> = per_hour
        .iter()
        .map(|h| {
            let back = now.saturating_sub(h.hour_ns) / 3_600_000_000_000;
            format!("-{back}h:{}", count(h.fingerprints))
        })
        .collect();
    println!(
        "unique fingerprints per hour (oldest first): {}",
        hours.join(" ")
    );
    Ok(())
}
