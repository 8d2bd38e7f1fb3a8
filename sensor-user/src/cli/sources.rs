//! `apisensor sources`: the investigator's table of source addresses (the agent's detection
//! state with its latest decisions, and the kernel's first-seen times); `sources show ADDR`:
//! everything known about one address, the kernel's counters and block beside the agent's
//! state, findings and decisions.
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use clap::{Args, Subcommand};
use sensor_common::SourceStats;

use super::table::{Table, ago, ask, count, percent, print_json, rate, unexpected};
use crate::clock::{self, BootToUnix};
use crate::control::protocol::{MAX_LIMIT, Request, Response, SortKey, SourceReport, SourceRow};
use crate::maps;
use crate::verdict::{BlockEntry, Verdicts};

/// Options of `sources`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SourcesArgs {
    /// Sort by (largest first).
    #[arg(long, value_enum, default_value_t = SortKey::Score)]
    pub sort: SortKey,
    /// Only sources seen within this long (for example `10m`, `1h`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<std::time::Duration>,
    /// Most rows.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=MAX_LIMIT as i64))]
    pub limit: u32,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
    /// One source.
    #[command(subcommand)]
    pub command: Option<SourcesCommand>,
}

/// Subcommands of `sources`.
#[derive(Debug, Subcommand)]
pub enum SourcesCommand {
    /// Everything known about one source address.
    Show {
        /// The address.
        addr: IpAddr,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

/// A row as printed: the agent's, with the kernel's times.
#[derive(serde::Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    agent: &'a SourceRow,
    /// First packet the kernel counted, Unix ns (`null` once the kernel evicted it).
    first_seen_ns: Option<u64>,
    /// Seconds from the first packet (or the detailed history) to the latest event.
    active_s: f64,
}

/// The kernel's per-source counters by address (empty if the map cannot be read).
fn kernel_sources(pin_dir: &Path) -> HashMap<IpAddr, SourceStats> {
    maps::read_sources(pin_dir)
        .map(|v| {
            v.into_iter()
                .map(|(ip, s)| (ip.to_canonical(), s))
                .collect()
        })
        .unwrap_or_default()
}

#[expect(clippy::cast_precision_loss, reason = "display only")]
fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Runs `sources`.
pub fn main(args: &SourcesArgs, pin_dir: &Path) -> anyhow::Result<()> {
    if let Some(SourcesCommand::Show { addr, json }) = &args.command {
        return show(*addr, *json, pin_dir);
    }
    let request = Request::Sources {
        sort: args.sort,
        since_s: args.since.map(|d| d.as_secs().max(1)),
        limit: args.limit as usize,
    };
    let (tracked, rows) = match ask(pin_dir, &request)? {
        Response::Sources { tracked, sources } => (tracked, sources),
        other => return Err(unexpected(&other)),
    };
    let kernel = kernel_sources(pin_dir);
    let to_unix = BootToUnix::now();
    let rows: Vec<Row<'_>> = rows
        .iter()
        .map(|row| {
            let s = &row.summary;
            let first_seen_ns = kernel
                .get(&s.source.to_canonical())
                .map(|k| to_unix.convert(k.first_seen_ns));
            let start = first_seen_ns
                .or(s.history_since_ns)
                .unwrap_or(s.last_seen_ns);
            Row {
                agent: row,
                first_seen_ns,
                active_s: secs(s.last_seen_ns.saturating_sub(start)),
            }
        })
        .collect();
    if args.json {
        return print_json(&rows);
    }
    let now = clock::unix_ns();
    let mut t = Table::new(
        &[
            "SOURCE",
            "FIRST",
            "LAST",
            "ACTIVE",
            "REQS",
            "REQ/S",
            "OK",
            "FAILED",
            "OK%",
            "LOGIN-FAIL",
            "ACCOUNTS",
            "SESSIONS",
            "SCORE",
            "DECISION",
        ],
        &[13],
    );
    for r in &rows {
        let s = &r.agent.summary;
        let d = r.agent.decision.as_ref();
        t.row(vec![
            s.source.to_string(),
            r.first_seen_ns.map_or_else(|| "-".into(), |f| ago(now, f)),
            ago(now, s.last_seen_ns),
            format!("{:.1}s", r.active_s),
            if s.requests_total >= 255 {
                "255+".into()
            } else {
                s.requests_total.to_string()
            },
            rate(s.request_rate),
            count(s.successes),
            count(s.failures),
            percent(s.success_share),
            count(s.logins_failed),
            count(s.accounts),
            count(s.sessions),
            d.map_or_else(|| "-".into(), |d| format!("{:.1}", d.score)),
            d.map_or_else(|| "-".into(), |d| format!("{} ({})", d.action, d.reason)),
        ]);
    }
    print!("{}", t.render());
    println!("{} of {tracked} tracked sources", rows.len());
    Ok(())
}

/// What the kernel's maps hold about one address.
#[derive(serde::Serialize)]
struct KernelView {
    /// Its per-source counters (`null`: not in the map).
    packets: Option<u64>,
    bytes: Option<u64>,
    syns: Option<u64>,
    first_seen_ns: Option<u64>,
    last_seen_ns: Option<u64>,
    /// The blocks covering it, with TTL left and drop hits.
    blocks: Vec<BlockEntry>,
}

#[derive(serde::Serialize)]
struct Shown<'a> {
    source: IpAddr,
    kernel: KernelView,
    #[serde(flatten)]
    agent: &'a SourceReport,
}

fn kernel_view(ip: IpAddr, pin_dir: &Path) -> anyhow::Result<KernelView> {
    let to_unix = BootToUnix::now();
    let k = kernel_sources(pin_dir).remove(&ip.to_canonical());
    let blocks: Vec<BlockEntry> = Verdicts::open_pinned(pin_dir)?
        .blocks(clock::boot_ns())?
        .into_iter()
        .filter(|b| b.net.contains(&ip.to_canonical()))
        .collect();
    Ok(KernelView {
        packets: k.map(|k| k.packets),
        bytes: k.map(|k| k.bytes),
        syns: k.map(|k| k.syns),
        first_seen_ns: k.map(|k| to_unix.convert(k.first_seen_ns)),
        last_seen_ns: k.map(|k| to_unix.convert(k.last_seen_ns)),
        blocks,
    })
}

/// One event line in one line of text.
pub(crate) fn event_summary(e: &serde_json::Value, now: u64) -> Vec<String> {
    let at = e["at_ns"].as_u64().unwrap_or(0);
    let kind = e["type"].as_str().unwrap_or("?").to_owned();
    let entity = match (&e["entity"]["kind"], &e["entity"]["id"]) {
        (serde_json::Value::String(k), serde_json::Value::String(id)) => format!("{k} {id}"),
        (serde_json::Value::String(k), _) => k.clone(),
        _ => "-".into(),
    };
    let what = if kind == "finding" {
        e["detector"].as_str().unwrap_or("?").to_owned()
    } else {
        let mut w = format!(
            "{} {}",
            e["action"].as_str().unwrap_or("?"),
            e["reason"].as_str().unwrap_or("")
        );
        if let Some(ttl) = e["ttl_s"].as_u64().filter(|&t| t > 0) {
            let _ = write!(w, " ttl {ttl}s");
        }
        if let Some(r) = e["refused"].as_str() {
            let _ = write!(w, " (refused: {r})");
        }
        w
    };
    let evidence = e["measures"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    format!(
                        "{}={:.1}/{:.1}",
                        m["name"].as_str().unwrap_or("?"),
                        m["value"].as_f64().unwrap_or(0.0),
                        m["threshold"].as_f64().unwrap_or(0.0)
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    vec![
        ago(now, at),
        kind,
        entity,
        what,
        e["score"]
            .as_f64()
            .map_or_else(|| "-".into(), |s| format!("{s:.1}")),
        evidence,
    ]
}

/// The columns of [`event_summary`].
pub(crate) const EVENT_HEAD: [&str; 6] = ["WHEN", "TYPE", "ENTITY", "WHAT", "SCORE", "EVIDENCE"];

#[expect(
    clippy::too_many_lines,
    reason = "one report, printed section by section top to bottom"
)]
fn show(ip: IpAddr, json: bool, pin_dir: &Path) -> anyhow::Result<()> {
    let report = match ask(pin_dir, &Request::Source { source: ip })? {
        Response::Source(r) => r,
        other => return Err(unexpected(&other)),
    };
    let kernel = kernel_view(ip, pin_dir)?;
    if json {
        return print_json(&Shown {
            source: ip,
            kernel,
            agent: &report,
        });
    }
    let now = clock::unix_ns();
    println!("source {ip}");
    println!("\nkernel");
    match (kernel.packets, kernel.first_seen_ns, kernel.last_seen_ns) {
        (Some(p), Some(f), Some(l)) => println!(
            "  packets {p}  bytes {}  syns {}  first seen {} ago  last seen {} ago",
            kernel.bytes.unwrap_or(0),
            kernel.syns.unwrap_or(0),
            ago(now, f),
            ago(now, l)
        ),
        _ => println!("  not in the per-source map"),
    }
    if kernel.blocks.is_empty() {
        println!("  no block");
    }
    for b in &kernel.blocks {
        println!(
            "  block {}  ttl left {}s  drop hits {}  reason {}{}",
            b.net,
            b.ttl_left_s,
            b.hits,
            b.reason,
            b.text
                .as_deref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default()
        );
    }
    println!("\ndetection");
    match &report.detection {
        None => println!("  not tracked"),
        Some(v) => {
            let s = &v.summary;
            println!(
                "  last seen {} ago  requests {}{}  rate {}/s  ok {}  failed {}  ok% {}",
                ago(now, s.last_seen_ns),
                s.requests_total,
                if s.requests_total >= 255 { "+" } else { "" },
                rate(s.request_rate),
                count(s.successes),
                count(s.failures),
                percent(s.success_share)
            );
            println!(
                "  logins failed {}  ok {}  accounts {}  sessions {}  packets {}/s  syns {}/s",
                count(s.logins_failed),
                count(s.logins_ok),
                count(s.accounts),
                count(s.sessions),
                rate(s.packet_rate),
                rate(s.syn_rate)
            );
            if let (Some(p), Some(m)) = (v.distinct_paths, v.median_interval_ms) {
                println!("  distinct paths {}  median interval {m:.0} ms", count(p));
            }
            println!("  accounts: {}", list(&v.accounts));
            println!("  sessions (hashed): {}", list(&v.sessions));
            if !v.samples.is_empty() {
                println!("  sample requests:");
                for r in &v.samples {
                    println!(
                        "    {} ago  {} {}  {}{}{}",
                        ago(now, r.ts_ns),
                        r.method,
                        r.path,
                        r.status.map_or_else(|| "-".into(), |s| s.to_string()),
                        r.account
                            .as_deref()
                            .map(|a| format!("  account {a}"))
                            .unwrap_or_default(),
                        r.login
                            .as_deref()
                            .map(|l| format!("  login {l}"))
                            .unwrap_or_default(),
                    );
                }
            }
        }
    }
    println!("\ndecision");
    match &report.decision {
        None => println!("  none"),
        Some(d) => println!(
            "  {} ago  {} ({})  score {:.1}  ttl {}s  {}",
            ago(now, d.at_ns),
            d.action,
            d.enforcement,
            d.score,
            d.ttl_s,
            d.reason
        ),
    }
    println!("\nfindings and decisions");
    let mut t = Table::new(&EVENT_HEAD, &[1, 2, 3, 5]);
    for e in &report.events {
        t.row(event_summary(e, now));
    }
    for line in t.render().lines() {
        println!("  {line}");
    }
    Ok(())
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(" ")
    }
}
