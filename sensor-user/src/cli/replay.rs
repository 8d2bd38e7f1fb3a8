//! `apisensor replay FILE`: runs a pcap or pcapng capture through the same pipeline as the live
//! agent, with the same configuration file, and prints the transactions (as JSON lines with
//! `--json`, or one compact line each) or, with `--findings`, the findings and decisions the
//! agent would have made, as the agent's event lines. A summary line goes to stderr. A damaged
//! file still prints everything before the damage, then fails.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;

use crate::analyzer::Analyzer;
use crate::config::Config;
use crate::decide::Decision;
use crate::detect::Finding;
use crate::http::Transaction;
use crate::json::{EventLine, JsonCache};
use crate::pipeline::{Pipeline, Sink};
use crate::replay::{ReplayEvent, ReplaySummary, read_segments_partial};
use crate::state_dir::StateDir;

/// Output bytes gathered before they are written to stdout.
pub const OUT_CHUNK: usize = 1 << 20;
/// Room for one more line beyond [`OUT_CHUNK`] without a reallocation in the common case.
const OUT_SLACK: usize = 1 << 12;

/// Arguments of `apisensor replay`.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Capture file (pcap or pcapng).
    pub file: PathBuf,
    /// Print one JSON object per transaction instead of the compact text line.
    #[arg(long)]
    pub json: bool,
    /// Print the findings and decisions the live agent would have made (its JSON event
    /// lines), instead of the transactions.
    #[arg(long)]
    pub findings: bool,
    /// The agent's configuration file (TOML), read whole as `apisensor run` reads it; the
    /// embedded default without it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The agent's state directory: its hash key (so session hashes match the agent's) and
    /// learned baselines are read, never written. Without it, a fixed all-zero key and no
    /// baselines.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Also write the API inventory learned from the capture (method, host, route template,
    /// counts, status mix, first and last seen) as JSON to this file, as `run --catalogue` does.
    #[arg(long)]
    pub catalogue: Option<PathBuf>,
}

/// Where the replay's output goes: whole lines gathered in one large buffer and handed to
/// stdout a chunk at a time, so no byte is copied twice and stdout's own line buffer is
/// bypassed.
struct ReplaySink<W: Write> {
    out: W,
    buf: Vec<u8>,
    cache: JsonCache,
    json: bool,
    findings: bool,
    transactions: u64,
    finding_count: u64,
    decision_count: u64,
    write_err: Option<io::Error>,
}

impl<W: Write> ReplaySink<W> {
    fn flush_if_full(&mut self) {
        if self.buf.len() >= OUT_CHUNK {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.write_err.is_none()
            && let Err(e) = self.out.write_all(&self.buf)
        {
            self.write_err = Some(e);
        }
        self.buf.clear();
    }
}

impl<W: Write> Sink for ReplaySink<W> {
    fn transaction(&mut self, tx: &Transaction) {
        self.transactions += 1;
        if self.findings || self.write_err.is_some() {
            return;
        }
        if self.json {
            self.cache.line(tx, &mut self.buf);
        } else {
            self.buf.extend_from_slice(human_line(tx).as_bytes());
            self.buf.push(b'\n');
        }
        self.flush_if_full();
    }

    fn finding(&mut self, finding: &Finding) {
        self.finding_count += 1;
        if self.findings {
            crate::json::event_line(&EventLine::Finding(finding), &mut self.buf);
            self.flush_if_full();
        }
    }

    fn decision(&mut self, decision: &Decision) {
        self.decision_count += 1;
        if self.findings {
            crate::json::event_line(&EventLine::Decision(decision), &mut self.buf);
            self.flush_if_full();
        }
    }
}

/// Runs the replay and prints its output.
pub fn run(args: &ReplayArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let (key, baselines) = match &args.state_dir {
        Some(dir) => {
            let state = StateDir::existing(dir)?;
            (state.key()?.unwrap_or_default(), state.baselines()?)
        }
        None => ([0; 16], None),
    };
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open capture {}", args.file.display()))?;
    // The warm-up of a replay without saved baselines starts at the capture's first packet.
    let mut pipeline: Option<Pipeline> = None;
    let make = |now_ns: u64| -> anyhow::Result<Pipeline> {
        let mut p = Pipeline::new(&config, key, baselines.clone(), now_ns)
            .context("restoring the baselines")?;
        p.set_detecting(args.findings);
        p.analyzer_mut().set_cataloguing(args.catalogue.is_some());
        Ok(p)
    };
    grow_stdout_pipe();
    let mut sink = ReplaySink {
        out: io::stdout().lock(),
        buf: Vec::with_capacity(OUT_CHUNK + OUT_SLACK),
        cache: JsonCache::default(),
        json: args.json,
        findings: args.findings,
        transactions: 0,
        finding_count: 0,
        decision_count: 0,
        write_err: None,
    };
    let mut setup_err = None;
    let (mut summary, result) = read_segments_partial(file, &args.file, &mut |event| {
        let now = match event {
            ReplayEvent::Tick(now) => now,
            ReplayEvent::Segment(seg) => seg.ts_ns,
        };
        if pipeline.is_none() {
            match make(now) {
                Ok(p) => pipeline = Some(p),
                Err(e) => {
                    setup_err.get_or_insert(e);
                    return;
                }
            }
        }
        let Some(p) = pipeline.as_mut() else { return };
        match event {
            ReplayEvent::Tick(now) => p.on_tick(now, &mut sink),
            ReplayEvent::Segment(seg) => p.on_segment(&seg, &mut sink),
        }
    });
    if let Some(e) = setup_err {
        return Err(e);
    }
    let p = match pipeline.as_mut() {
        Some(p) => p,
        None => pipeline.insert(make(0)?),
    };
    p.finish(&mut sink);
    sink.flush();
    if sink.write_err.is_none()
        && let Err(e) = sink.out.flush()
    {
        sink.write_err = Some(e);
    }
    summary.transactions = sink.transactions;
    let mut line = summary_line(&args.file, &summary, p.analyzer());
    if args.findings {
        use std::fmt::Write as _;
        let _ = write!(
            line,
            ", {} findings, {} decisions",
            sink.finding_count, sink.decision_count
        );
    }
    eprintln!("{line}");
    if let Some(path) = &args.catalogue {
        // Written even when the capture is damaged: it holds what was read before the damage.
        crate::json::write_catalogue(p.analyzer().catalogue(), path)
            .with_context(|| format!("cannot write the API inventory to {}", path.display()))?;
    }
    result.with_context(|| format!("replay of {} stopped early", args.file.display()))?;
    match sink.write_err {
        // A closed pipe (`apisensor replay x.pcap | head`) is not a failure of the replay.
        Some(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Some(e) => Err(e).context("cannot write to stdout"),
        None => Ok(()),
    }
}

/// Lets a pipe on stdout hold a whole output chunk, so that handing one over does not block
/// the replay (and wake the reader) once per 64 KiB, the default pipe size.
pub fn grow_stdout_pipe() {
    let size = libc::c_int::try_from(OUT_CHUNK).unwrap_or(libc::c_int::MAX);
    // SAFETY: `F_SETPIPE_SZ` on fd 1 only changes the capacity of a pipe. On anything else, or
    // beyond the system's limit, it fails without effect, and the replay works either way.
    let _ = unsafe { libc::fcntl(libc::STDOUT_FILENO, libc::F_SETPIPE_SZ, size) };
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
