//! `apisensor accounts show NAME`: the sources and sessions that acted for an account, with
//! their outcomes, to pivot from an account to its addresses (and, with `sources show`, back).
use std::path::Path;

use clap::Subcommand;

use super::table::{Table, ago, ask, count, percent, print_json, unexpected};
use crate::clock;
use crate::control::protocol::{Request, Response};

/// Subcommands of `accounts`.
#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// The sources that acted for one account.
    Show {
        /// The account name, as the login requests carry it.
        name: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `accounts`.
pub fn main(command: &AccountsCommand, pin_dir: &Path) -> anyhow::Result<()> {
    let AccountsCommand::Show { name, json } = command;
    let request = Request::Account {
        account: name.clone(),
    };
    let account = match ask(pin_dir, &request)? {
        Response::Account { account } => account,
        other => return Err(unexpected(&other)),
    };
    if *json {
        return print_json(&account);
    }
    let Some(a) = account else {
        anyhow::bail!("nothing is known about the account {name:?}");
    };
    let now = clock::unix_ns();
    println!(
        "account {:?}  last login {} ago  logins failed {}  ok {}  failing sources {}",
        a.account,
        ago(now, a.last_seen_ns),
        count(a.logins_failed),
        count(a.logins_ok),
        count(a.failing_sources)
    );
    let mut t = Table::new(
        &[
            "SOURCE",
            "FAILED-HERE",
            "LAST",
            "OK%",
            "LOGIN-FAIL",
            "LOGIN-OK",
            "ACCOUNTS",
            "SAMPLES",
        ],
        &[1, 7],
    );
    for s in &a.sources {
        let sum = s.summary.as_ref();
        let samples: Vec<String> = s
            .samples
            .iter()
            .map(|r| {
                format!(
                    "{} {} {}{}",
                    r.method,
                    r.path,
                    r.status.map_or_else(|| "-".into(), |c| c.to_string()),
                    r.login
                        .as_deref()
                        .map(|l| format!(" {l}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        t.row(vec![
            s.source.to_string(),
            if s.failed_here { "yes" } else { "no" }.into(),
            sum.map_or_else(|| "-".into(), |x| ago(now, x.last_seen_ns)),
            percent(sum.and_then(|x| x.success_share)),
            sum.map_or_else(|| "-".into(), |x| count(x.logins_failed)),
            sum.map_or_else(|| "-".into(), |x| count(x.logins_ok)),
            sum.map_or_else(|| "-".into(), |x| count(x.accounts)),
            if samples.is_empty() {
                "-".into()
            } else {
                samples.join("; ")
            },
        ]);
    }
    print!("{}", t.render());
    if !a.logins.is_empty() {
        println!("successful logins (newest first)");
        let mut t = Table::new(&["WHEN", "SOURCE", "SESSION"], &[]);
        for l in &a.logins {
            t.row(vec![
                ago(now, l.at_ns),
                l.source.to_string(),
                l.session.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        print!("{}", t.render());
    }
    Ok(())
}
