//! `apisensor replay FILE`: runs a pcap or pcapng capture through the same analyzer as the live
//! agent and prints the transactions, as JSON lines (`--json`) or one compact line each, then a
//! summary line on stderr. A damaged file still prints everything before the damage, then
//! fails.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;

use crate::analyzer::{Analyzer, AnalyzerConfig};
use crate::http::Transaction;
use crate::replay::{ReplaySummary, replay_file_partial};

/// Arguments of `apisensor replay`.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Capture file (pcap or pcapng).
    pub file: PathBuf,
    /// Print one JSON object per transaction instead of the compact text line.
    #[arg(long)]
    pub json: bool,
    /// TOML configuration; only its `[analyzer]` table is read (defaults otherwise).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Runs the replay and prints its output.
pub fn run(args: &ReplayArgs) -> anyhow::Result<()> {
    let cfg = match &args.config {
        Some(path) => load_config(path)?,
        // The same analyzer settings as the agent's embedded default configuration.
        None => crate::config::Config::default_config().analyzer,
    };
    let mut analyzer = Analyzer::new(cfg);
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut write_err: Option<io::Error> = None;
    let (summary, result) = replay_file_partial(&args.file, &mut analyzer, &mut |tx| {
        if write_err.is_some() {
            return;
        }
        let written = if args.json {
            serde_json::to_writer(&mut out, tx)
                .map_err(io::Error::from)
                .and_then(|()| out.write_all(b"\n"))
        } else {
            writeln!(out, "{}", human_line(tx))
        };
        if let Err(e) = written {
            write_err = Some(e);
        }
    });
    if write_err.is_none()
        && let Err(e) = out.flush()
    {
        write_err = Some(e);
    }
    eprintln!("{}", summary_line(&args.file, &summary, &analyzer));
    result.with_context(|| format!("replay of {} stopped early", args.file.display()))?;
    match write_err {
        // A closed pipe (`apisensor replay x.pcap | head`) is not a failure of the replay.
        Some(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Some(e) => Err(e).context("cannot write the transactions to stdout"),
        None => Ok(()),
    }
}

/// Reads the `[analyzer]` table of a TOML file; other tables are left to their own commands.
fn load_config(path: &Path) -> anyhow::Result<AnalyzerConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration {}", path.display()))?;
    analyzer_config_from_toml(&text)
        .with_context(|| format!("invalid configuration {}", path.display()))
}

/// Parses the `[analyzer]` table of a TOML document (defaults when absent).
fn analyzer_config_from_toml(text: &str) -> anyhow::Result<AnalyzerConfig> {
    let mut table: toml::Table = toml::from_str(text)?;
    match table.remove("analyzer") {
        Some(value) => Ok(value.try_into().context("in table [analyzer]")?),
        None => Ok(AnalyzerConfig::default()),
    }
}

/// One compact line per transaction: time, client, server, method, host and path, route,
/// status, latency, sizes, identity and flags. Holds only what the record holds, which is never
/// a secret (the session is a keyed hash).
fn human_line(tx: &Transaction) -> String {
    use std::fmt::Write as _;
    let mut line = String::with_capacity(160);
    let ts = SystemTime::UNIX_EPOCH + Duration::from_nanos(tx.ts_ns);
    let _ = write!(line, "{} {}", humantime::format_rfc3339_micros(ts), tx.peer);
    if tx.client != tx.peer.ip() {
        let _ = write!(line, " (client {})", tx.client);
    }
    let method = if tx.method.is_empty() {
        "-"
    } else {
        &tx.method
    };
    let _ = write!(
        line,
        " -> {} {method} {}{}",
        tx.server,
        tx.host.as_deref().unwrap_or(""),
        tx.path
    );
    if tx.route != tx.path {
        let _ = write!(line, " [{}]", tx.route);
    }
    match tx.status {
        Some(s) => {
            let _ = write!(line, " {s}");
        }
        None => line.push_str(" -"),
    }
    if let Some(l) = tx.latency_ns {
        let _ = write!(
            line,
            " {:.3}ms",
            Duration::from_nanos(l).as_secs_f64() * 1e3
        );
    }
    let _ = write!(line, " req={}B resp={}B", tx.req_bytes, tx.resp_bytes);
    if let Some(a) = &tx.account {
        let _ = write!(line, " account={a}");
    }
    if let Some(s) = &tx.session {
        let _ = write!(line, " session={s}");
    }
    if let Some(l) = tx.login {
        let name = match l {
            crate::http::LoginOutcome::Success => "success",
            crate::http::LoginOutcome::Failure => "failure",
            crate::http::LoginOutcome::Unknown => "unknown",
        };
        let _ = write!(line, " login={name}");
    }
    let mut flags = tx.flags.iter().map(crate::http::Flag::name).peekable();
    if flags.peek().is_some() {
        line.push_str(" flags=");
        line.push_str(&flags.collect::<Vec<_>>().join(","));
    }
    line
}

/// The stderr summary: what the file held and what the analyzer made of it.
fn summary_line(path: &Path, s: &ReplaySummary, analyzer: &Analyzer) -> String {
    let c = analyzer.counters();
    format!(
        "replay {}: {} packets ({} tcp, {} partly captured, {} not tcp, {} fragments, {} \
         malformed, {} unsupported link), {} transactions, {} flows, {} gaps, {} lost bytes",
        path.display(),
        s.packets,
        s.tcp_segments,
        s.partial_segments,
        s.not_tcp,
        s.fragments,
        s.malformed,
        s.unsupported_link,
        s.transactions,
        c.flows_opened,
        c.gaps,
        c.lost_bytes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analyzer_table_is_read_and_the_rest_ignored() {
        #[track_caller]
        fn check(text: &str, expect: impl Fn(&anyhow::Result<AnalyzerConfig>)) {
            expect(&analyzer_config_from_toml(text));
        }
        check("", |c| {
            let c = c.as_ref().expect("empty file is the default");
            assert_eq!(c.monitored_ports, AnalyzerConfig::default().monitored_ports);
        });
        check(
            "[agent]\ninterface = \"veth0\"\n[analyzer]\nmonitored_ports = [8443]\n\
             [[analyzer.http.login_routes]]\nmethod = \"POST\"\npath = \"/login\"\n",
            |c| {
                let c = c.as_ref().expect("valid analyzer table");
                assert_eq!(c.monitored_ports, vec![8443]);
                assert_eq!(c.http.login_routes.len(), 1);
            },
        );
        check("[analyzer]\nno_such_field = 1\n", |c| {
            let e = c.as_ref().expect_err("unknown field is rejected");
            assert!(format!("{e:#}").contains("no_such_field"), "{e:#}");
        });
        check("not toml at all [", |c| {
            assert!(c.is_err(), "broken TOML is an error");
        });
    }
}
