//! `apisensor endpoints`: the API inventory the agent learned from traffic (method, host,
//! route template, counts, status mix, first and last seen), marking the routes the OpenAPI
//! document does not declare.
use std::path::Path;

use clap::Args;

use super::table::{Table, ago, ask, print_json, unexpected};
use crate::clock;
use crate::control::protocol::{MAX_LIMIT, Request, Response};

/// Options of `endpoints`.
#[derive(Debug, Args)]
pub struct EndpointsArgs {
    /// Most rows (busiest first).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=MAX_LIMIT as i64))]
    pub limit: u32,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// Prints the inventory.
pub fn main(args: &EndpointsArgs, pin_dir: &Path) -> anyhow::Result<()> {
    let request = Request::Endpoints {
        limit: args.limit as usize,
    };
    let response = ask(pin_dir, &request)?;
    let Response::Endpoints { openapi, endpoints } = &response else {
        return Err(unexpected(&response));
    };
    if args.json {
        return print_json(&response);
    }
    let now = clock::unix_ns();
    let mut t = Table::new(
        &[
            "METHOD", "HOST", "ROUTE", "COUNT", "2XX", "3XX", "4XX", "5XX", "NONE", "FIRST",
            "LAST", "OPENAPI",
        ],
        &[1, 2, 11],
    );
    for e in endpoints {
        t.row(vec![
            e.method.clone(),
            e.host.clone().unwrap_or_else(|| "-".into()),
            e.route.clone(),
            e.count.to_string(),
            e.success.to_string(),
            e.redirect.to_string(),
            e.client_error.to_string(),
            e.server_error.to_string(),
            e.other.to_string(),
            ago(now, e.first_seen_ns),
            ago(now, e.last_seen_ns),
            match e.documented {
                None => "-",
                Some(true) => "documented",
                Some(false) => "ABSENT",
            }
            .into(),
        ]);
    }
    print!("{}", t.render());
    if !openapi {
        println!("(no OpenAPI document configured: [detect.context] openapi)");
    }
    Ok(())
}
