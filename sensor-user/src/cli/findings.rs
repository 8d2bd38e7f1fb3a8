//! `apisensor findings [--follow]` and `apisensor events --follow`: the agent's recent
//! findings and decisions (its journal), then, when following, each new one as it is made.
//! `--json` prints the agent's event lines as they are, one per line.
use std::io::Write as _;
use std::path::Path;

use clap::Args;

use super::sources::{EVENT_HEAD, event_summary};
use super::table::{Table, unexpected};
use crate::clock;
use crate::control::client::Client;
use crate::control::protocol::{MAX_LIMIT, Request, Response};

/// Options of `findings` and `events`.
#[derive(Debug, Args)]
pub struct FindingsArgs {
    /// Keep going: print each new finding and decision as it is made.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Recent events to print first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=MAX_LIMIT as i64))]
    pub limit: u32,
    /// With `--follow`, stop after this many new events.
    #[arg(long)]
    pub count: Option<u64>,
    /// JSON lines (the agent's event lines).
    #[arg(long)]
    pub json: bool,
}

/// Runs `findings` or `events`.
pub fn main(args: &FindingsArgs, pin_dir: &Path) -> anyhow::Result<()> {
    let mut client = Client::connect(pin_dir)?;
    let request = Request::Events {
        limit: args.limit as usize,
        follow: args.follow,
    };
    let recent = match client.request(&request)? {
        Response::Events { events } => events,
        other => return Err(unexpected(&other)),
    };
    let now = clock::unix_ns();
    if args.json {
        for e in &recent {
            println!("{e}");
        }
    } else {
        let mut t = Table::new(&EVENT_HEAD, &[1, 2, 3, 5]);
        for e in &recent {
            t.row(event_summary(e, now));
        }
        print!("{}", t.render());
    }
    if !args.follow {
        return Ok(());
    }
    let mut seen = 0_u64;
    let mut stdout = std::io::stdout().lock();
    while args.count.is_none_or(|c| seen < c) {
        match client.next_event()? {
            None => anyhow::bail!("the agent closed the stream (it stopped)"),
            Some(Response::Event { event }) => {
                seen += 1;
                if args.json {
                    writeln!(stdout, "{event}")?;
                } else {
                    let cells = event_summary(&event, clock::unix_ns());
                    writeln!(stdout, "{}", cells.join("  "))?;
                }
                stdout.flush()?;
            }
            Some(Response::Error { message }) => eprintln!("apisensor: warning: {message}"),
            Some(other) => return Err(unexpected(&other)),
        }
    }
    Ok(())
}
