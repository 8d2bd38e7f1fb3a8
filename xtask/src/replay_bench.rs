//! The replay benchmark: a large synthetic capture of realistic HTTP/1.1 traffic, replayed by
//! `apisensor replay` (printing the transactions, and through the full detection pipeline with
//! `--findings`) and by `tshark` on the same file, comparing time, CPU and peak memory.
//!
//! [`generate_capture`] writes a deterministic pcap: many interleaved TCP connections with
//! handshakes, proper sequence and acknowledgement numbers, FIN closes, keep-alive connections
//! and single-request ones with `Connection: close`, realistic request heads (user agents,
//! cookies, bearer tokens, query strings, form and JSON bodies) and responses (JSON, large
//! static files split over several segments, chunked bodies, `Set-Cookie` on logins, 201, 302,
//! 401, 404).

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use etherparse::PacketBuilder;
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

use crate::util;

/// Requests in the benchmark capture.
pub const BENCH_REQUESTS: usize = 1_000_000;
/// Connections in the benchmark capture.
pub const BENCH_FLOWS: usize = 100_000;
/// Runs of each apisensor command (`--json` and `--findings`); the median is reported (its
/// runs take seconds, and this machine's timings drift between runs).
const RUNS_OURS: usize = 5;
/// Runs of the replay's floor (`sensor-user/examples/replay_floor.rs`); the median is reported.
const RUNS_FLOOR: usize = 5;
/// Runs of tshark (two minutes each); the median is reported.
const RUNS_TSHARK: usize = 3;
/// Connections open at the same time while generating (their packets interleave).
const CONCURRENCY: usize = 512;
/// Capture time between two packets.
const PACKET_GAP_NS: u64 = 20_000;
/// Largest TCP payload per segment (a typical Ethernet MSS).
const MSS: usize = 1448;
/// Issue 4's throughput target: transactions per second per core (per second of CPU time).
const TARGET_PER_CORE: f64 = 1_000_000.0;
/// Issue 4's target against tshark: at least this many times less CPU for the same file.
const TARGET_VS_TSHARK: f64 = 20.0;
/// Issue 13's target against tshark: `replay --findings` (the full detection pipeline) takes
/// at least this many times less CPU than tshark extracting the HTTP fields of the same file.
const TARGET_FINDINGS_VS_TSHARK: f64 = 30.0;
/// Requests and connections of the smaller capture whose instructions are counted under
/// valgrind, which runs the replay about fifty times slower.
const COUNTED: (usize, usize) = (100_000, 10_000);

/// Generates the capture, times `apisensor replay --json`, `apisensor replay --findings` and
/// `tshark` on it, and appends a markdown section to `out_md`.
pub fn run(out_md: &mut String) -> anyhow::Result<()> {
    run_with(out_md, BENCH_REQUESTS, BENCH_FLOWS)
}

/// [`run`] with a chosen size, for quick runs while developing.
pub fn run_with(out_md: &mut String, requests: usize, flows: usize) -> anyhow::Result<()> {
    let root = util::root();
    util::cargo(&["build", "--release", "-p", "sensor-user"])?;
    util::cargo(&[
        "build",
        "--release",
        "-p",
        "sensor-user",
        "--example",
        "replay_floor",
    ])?;
    let apisensor = root.join("target/release/apisensor");
    let floor_bin = root.join("target/release/examples/replay_floor");
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let capture = dir.join("replay-bench.pcap");
    let started = Instant::now();
    generate_capture(&capture, requests, flows)?;
    let gen_time = started.elapsed();
    let size = std::fs::metadata(&capture)
        .with_context(|| format!("cannot stat {}", capture.display()))?
        .len();
    let file = capture
        .to_str()
        .context("the capture path is not UTF-8")?
        .to_owned();

    let mut ours = Vec::new();
    for _ in 0..RUNS_OURS {
        let mut cmd = Command::new(&apisensor);
        cmd.args(["replay", "--json", &file]);
        ours.push(measure(cmd, count_json_lines)?);
    }
    // The same capture through entity state, every detector and the decision policy.
    let mut detection = Vec::new();
    for _ in 0..RUNS_OURS {
        let mut cmd = Command::new(&apisensor);
        cmd.args(["replay", "--findings", &file]);
        detection.push(measure_detection(cmd)?);
    }
    // The floor writes as many bytes per transaction as the replay did.
    let line_bytes = median(&ours)
        .map(|m| m.out_bytes.div_ceil(m.transactions.max(1)))
        .context("no replay run")?;
    let mut floor = Vec::new();
    for _ in 0..RUNS_FLOOR {
        let mut cmd = Command::new(&floor_bin);
        cmd.arg(&file).arg(line_bytes.to_string());
        floor.push(measure(cmd, count_json_lines)?);
    }
    let counted = count_instructions(&apisensor, &dir)?;
    let tshark_available = util::probe("tshark", &["--version"]);
    let mut theirs = Vec::new();
    if tshark_available {
        for _ in 0..RUNS_TSHARK {
            let mut cmd = Command::new("tshark");
            cmd.args(["-n", "-r", &file, "-Y", "http", "-T", "fields"])
                .args(["-e", "http.request.method", "-e", "http.request.uri"])
                .args(["-e", "http.response.code"]);
            theirs.push(measure(cmd, count_tshark_requests)?);
        }
    }
    write_markdown(
        out_md,
        &BenchInput {
            requests,
            flows,
            size,
            gen_time,
        },
        &Runs {
            ours: &ours,
            detection: &detection,
            floor: &floor,
            theirs: &theirs,
        },
        &counted,
        line_bytes,
    );
    Ok(())
}

/// Instructions the replay executed on the smaller capture, as valgrind counts them.
struct Counted {
    /// Requests in that capture.
    requests: usize,
    /// Connections in that capture.
    flows: usize,
    /// User-space instructions of the whole run.
    instructions: u64,
    /// Transactions it printed.
    transactions: u64,
}

/// Runs `apisensor replay --json` under `valgrind --tool=callgrind` on a capture of
/// [`COUNTED`] requests generated like the timed one. The count depends only on the binary and
/// the input, so it compares builds on a machine whose timings drift between runs.
fn count_instructions(apisensor: &Path, dir: &Path) -> anyhow::Result<Counted> {
    let (requests, flows) = COUNTED;
    let capture = dir.join("replay-counted.pcap");
    generate_capture(&capture, requests, flows)?;
    let mut cmd = Command::new("valgrind");
    cmd.args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(apisensor)
        .args(["replay", "--json"])
        .arg(&capture)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{cmd:?}");
    eprintln!("xtask: {shown}");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {shown} (is valgrind installed?)"))?;
    let mut stdout = child.stdout.take().context("child stdout")?;
    let transactions = count_json_lines(&mut stdout);
    let output = child
        .wait_with_output()
        .with_context(|| format!("waiting for {shown}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("{shown} failed ({}): {stderr}", output.status);
    }
    let instructions = collected(&stderr)
        .with_context(|| format!("no instruction count in the output of {shown}: {stderr}"))?;
    Ok(Counted {
        requests,
        flows,
        instructions,
        transactions,
    })
}

/// The total of callgrind's `Collected : N` line.
fn collected(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|line| {
        let (_, rest) = line.split_once("Collected :")?;
        rest.trim().parse().ok()
    })
}

/// What was benchmarked, for the report.
struct BenchInput {
    /// Requests in the capture.
    requests: usize,
    /// Connections in the capture.
    flows: usize,
    /// File size in bytes.
    size: u64,
    /// Time to generate the capture.
    gen_time: Duration,
}

/// One measured run of a tool.
#[derive(Clone, Copy, Debug)]
struct Measurement {
    /// Wall-clock time.
    wall: Duration,
    /// User plus system CPU time of the child.
    cpu: Duration,
    /// Peak resident set size of the child, in KiB.
    max_rss_kib: u64,
    /// Transactions (or HTTP requests) the tool reported.
    transactions: u64,
    /// Bytes the tool wrote to stdout.
    out_bytes: u64,
}

/// One measured run of `apisensor replay --findings`.
#[derive(Clone, Copy, Debug)]
struct DetectionRun {
    /// The run; its transactions are those of the stderr summary (stdout holds only events).
    run: Measurement,
    /// Findings of the stderr summary.
    findings: u64,
    /// Decisions of the stderr summary.
    decisions: u64,
    /// Event lines (findings and decisions) on stdout.
    events: u64,
}

/// The measured runs of each tool.
struct Runs<'a> {
    /// `apisensor replay --json`.
    ours: &'a [Measurement],
    /// `apisensor replay --findings`.
    detection: &'a [DetectionRun],
    /// The replay's floor.
    floor: &'a [Measurement],
    /// tshark (empty when it is not installed).
    theirs: &'a [Measurement],
}

/// A reader that counts the bytes read through it.
struct Counting<R> {
    /// The reader.
    inner: R,
    /// Bytes read so far.
    bytes: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Runs `cmd` with stdout piped into `count`, and measures it with `wait4`.
fn measure(cmd: Command, count: fn(&mut dyn Read) -> u64) -> anyhow::Result<Measurement> {
    measure_keeping_stderr(cmd, count, false).map(|(m, _)| m)
}

/// Runs `apisensor replay --findings` like [`measure`], counting its event lines, and reads
/// the transactions, findings and decisions of its stderr summary.
fn measure_detection(cmd: Command) -> anyhow::Result<DetectionRun> {
    let shown = format!("{cmd:?}");
    let (mut run, stderr) = measure_keeping_stderr(cmd, count_json_lines, true)?;
    let (transactions, findings, decisions) = detection_summary(&stderr)
        .with_context(|| format!("no findings summary in the stderr of {shown}: {stderr}"))?;
    let events = run.transactions;
    run.transactions = transactions;
    Ok(DetectionRun {
        run,
        findings,
        decisions,
        events,
    })
}

/// Transactions, findings and decisions of the stderr summary of `replay --findings`
/// (`replay FILE: ..., N transactions, ..., N findings, M decisions`).
fn detection_summary(stderr: &str) -> Option<(u64, u64, u64)> {
    let line = stderr.lines().rev().find(|l| l.starts_with("replay "))?;
    let count = |what: &str| {
        line.rsplit(", ")
            .find_map(|part| part.strip_suffix(what)?.parse().ok())
    };
    Some((
        count(" transactions")?,
        count(" findings")?,
        count(" decisions")?,
    ))
}

/// [`measure`], also returning what the child wrote to stderr when `keep_stderr` is set
/// (read on a thread, so that neither pipe can fill up and stall the child).
fn measure_keeping_stderr(
    mut cmd: Command,
    count: fn(&mut dyn Read) -> u64,
    keep_stderr: bool,
) -> anyhow::Result<(Measurement, String)> {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: {shown}");
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if keep_stderr {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .spawn()
        .with_context(|| format!("cannot start {shown}"))?;
    let stderr_reader = child.stderr.take().map(|mut stderr| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    });
    let stdout = child.stdout.take().context("child stdout")?;
    let mut stdout = Counting {
        inner: stdout,
        bytes: 0,
    };
    let transactions = count(&mut stdout);
    let out_bytes = stdout.bytes;
    drop(stdout);
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own unreaped child; status and usage point to live locals. Reaping
    // it here means `child.wait()` is never called.
    let rc = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
    let wall = started.elapsed();
    if rc != pid {
        bail!(
            "wait4 on {shown} failed: {}",
            std::io::Error::last_os_error()
        );
    }
    let stderr = match stderr_reader {
        Some(reader) => reader
            .join()
            .map_err(|_| anyhow::anyhow!("the stderr reader of {shown} panicked"))?,
        None => String::new(),
    };
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("{shown} failed (wait status {status:#x}): {stderr}");
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    let m = Measurement {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        transactions,
        out_bytes,
    };
    Ok((m, stderr))
}

/// Counts newline-terminated lines (one JSON transaction each).
fn count_json_lines(r: &mut dyn Read) -> u64 {
    let mut buf = vec![0_u8; 1 << 16];
    let mut lines = 0_u64;
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        lines += buf.get(..n).map_or(0, count_newlines);
    }
    lines
}

/// Newlines in `b`.
#[expect(
    clippy::naive_bytecount,
    reason = "not worth a dependency in a benchmark driver"
)]
fn count_newlines(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

/// A count as a float for the report.
#[expect(clippy::cast_precision_loss, reason = "report figures, far below 2^52")]
fn f(n: u64) -> f64 {
    n as f64
}

/// Counts tshark output lines whose first field (the request method) is set: one per request.
fn count_tshark_requests(r: &mut dyn Read) -> u64 {
    let mut buf = vec![0_u8; 1 << 16];
    let mut requests = 0_u64;
    let mut at_line_start = true;
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        for &c in buf.get(..n).unwrap_or_default() {
            if at_line_start && c != b'\t' && c != b'\n' {
                requests += 1;
            }
            at_line_start = c == b'\n';
        }
    }
    requests
}

/// The median of the runs by wall time.
fn median(runs: &[Measurement]) -> Option<Measurement> {
    let mut sorted = runs.to_vec();
    sorted.sort_by_key(|m| m.wall);
    sorted.get(sorted.len() / 2).copied()
}

/// The median of the `replay --findings` runs by wall time, as [`median`] picks it.
fn median_detection(runs: &[DetectionRun]) -> Option<DetectionRun> {
    let mut sorted = runs.to_vec();
    sorted.sort_by_key(|d| d.run.wall);
    sorted.get(sorted.len() / 2).copied()
}

/// Appends the benchmark section.
fn write_markdown(
    out: &mut String,
    input: &BenchInput,
    runs: &Runs<'_>,
    counted: &Counted,
    line_bytes: u64,
) {
    let _ = writeln!(out, "## Replay: apisensor vs tshark\n");
    let _ = writeln!(
        out,
        "Synthetic capture: {} requests over {} connections, {:.1} MiB, generated in {:.1} s \
         (`cargo xtask bench`, `xtask/src/replay_bench.rs`; this section alone: `cargo xtask \
         bench --only replay`, which prints it). Median of {RUNS_OURS} runs of each apisensor \
         command and {RUNS_TSHARK} of tshark; CPU is user plus system time of the process; peak \
         memory is its maximum resident set size. `replay --findings` runs the capture through \
         the full detection pipeline (entity state, every detector, the decision policy) and \
         prints only its findings and decisions; its transactions are those of its stderr \
         summary.\n",
        input.requests,
        input.flows,
        f(input.size) / (1024.0 * 1024.0),
        input.gen_time.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| tool | command | wall (s) | CPU (s) | peak RSS (MiB) | transactions | transactions/s/core |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|");
    let ours_m = median(runs.ours);
    let detection_m = median_detection(runs.detection);
    let floor_m = median(runs.floor);
    let theirs_m = median(runs.theirs);
    if let Some(m) = &ours_m {
        table_row(out, "apisensor", "apisensor replay --json FILE", m);
    }
    if let Some(d) = &detection_m {
        table_row(
            out,
            "apisensor, detection",
            "apisensor replay --findings FILE",
            &d.run,
        );
    }
    if let Some(m) = &floor_m {
        table_row(
            out,
            "floor (no analysis)",
            &format!("replay_floor FILE {line_bytes}"),
            m,
        );
    }
    if let Some(m) = &theirs_m {
        table_row(
            out,
            "tshark",
            "tshark -n -r FILE -Y http -T fields -e http.request.method -e http.request.uri -e http.response.code",
            m,
        );
    }
    let _ = writeln!(out);
    match (ours_m, theirs_m) {
        (Some(o), Some(t)) => {
            let _ = writeln!(out, "apisensor is {}.", against_tshark(&o, &t));
        }
        (Some(_), None) => {
            let _ = writeln!(out, "tshark is not installed: no comparison.");
        }
        _ => {}
    }
    if let (Some(d), Some(t)) = (detection_m, theirs_m) {
        let _ = writeln!(
            out,
            "\nWith the full detection pipeline (`--findings`), apisensor is {}.",
            against_tshark(&d.run, &t)
        );
    }
    if let Some(d) = &detection_m {
        write_detection(out, input, ours_m.as_ref(), d);
    }
    if let Some(o) = &ours_m {
        write_targets(
            out,
            o,
            detection_m.as_ref().map(|d| &d.run),
            theirs_m.as_ref(),
        );
    }
    if let (Some(o), Some(fl)) = (ours_m, floor_m) {
        write_floor(out, input, &o, &fl, line_bytes);
    }
    write_counted(out, counted);
    if let Some(o) = ours_m
        && o.transactions != input.requests as u64
    {
        let _ = writeln!(
            out,
            "\n**Mismatch:** apisensor reported {} transactions for {} requests in the capture.",
            o.transactions, input.requests
        );
    }
    let _ = writeln!(out);
}

/// One row of the comparison table.
fn table_row(out: &mut String, name: &str, command: &str, m: &Measurement) {
    let _ = writeln!(
        out,
        "| {name} | `{command}` | {:.2} | {:.2} | {:.1} | {} | {:.0} |",
        m.wall.as_secs_f64(),
        m.cpu.as_secs_f64(),
        f(m.max_rss_kib) / 1024.0,
        m.transactions,
        per_cpu_second(m.transactions, m.cpu)
    );
}

/// How `o` compares with tshark's run `t`: "Nx faster than tshark in wall time and uses ...".
fn against_tshark(o: &Measurement, t: &Measurement) -> String {
    format!(
        "{:.1}x faster than tshark in wall time and uses {:.1}x less CPU and {:.1}x less memory",
        t.wall.as_secs_f64() / o.wall.as_secs_f64().max(1e-9),
        cpu_ratio(t, o),
        f(t.max_rss_kib) / f(o.max_rss_kib).max(1.0)
    )
}

/// Events per second of CPU time: `n` over `cpu`, or 0 when no CPU time was recorded.
fn per_cpu_second(n: u64, cpu: Duration) -> f64 {
    let cpu = cpu.as_secs_f64();
    if cpu > 0.0 { f(n) / cpu } else { 0.0 }
}

/// How many times more CPU time `theirs` took than `ours`.
fn cpu_ratio(theirs: &Measurement, ours: &Measurement) -> f64 {
    theirs.cpu.as_secs_f64() / ours.cpu.as_secs_f64().max(1e-9)
}

/// What `replay --findings` found, and the detection's cost per transaction estimated from the
/// CPU it takes beyond `replay --json`.
fn write_detection(
    out: &mut String,
    input: &BenchInput,
    ours: Option<&Measurement>,
    d: &DetectionRun,
) {
    let _ = writeln!(
        out,
        "\n`replay --findings` reported {} findings and {} decisions ({} event lines, {} bytes on \
         stdout) for {} transactions.",
        d.findings, d.decisions, d.events, d.run.out_bytes, d.run.transactions
    );
    if let Some(o) = ours {
        let extra = d.run.cpu.as_secs_f64() - o.cpu.as_secs_f64();
        let per_tx_us = extra * 1e6 / f(d.run.transactions.max(1));
        let _ = writeln!(
            out,
            "\nDetection throughput: `--findings` takes {extra:+.2} s of CPU against `--json`, \
             {per_tx_us:+.3} µs per transaction of detection{}. This is an estimate: `--json` \
             formats and writes every transaction while `--findings` prints only the events, \
             so the difference is the detection's cost less the JSON formatting and writing it \
             skips: the detection alone costs more than this, by what that formatting costs.",
            if per_tx_us > 0.0 {
                format!(" (about {:.0} transactions/s per core)", 1e6 / per_tx_us)
            } else {
                String::new()
            }
        );
    }
    if d.run.transactions != input.requests as u64 {
        let _ = writeln!(
            out,
            "\n**Mismatch:** `replay --findings` reported {} transactions for {} requests in the \
             capture.",
            d.run.transactions, input.requests
        );
    }
}

/// The issues' replay targets, each measured against its figure of this run: `o` is
/// `replay --json`, `detection` is `replay --findings`.
fn write_targets(
    out: &mut String,
    o: &Measurement,
    detection: Option<&Measurement>,
    theirs: Option<&Measurement>,
) {
    let verdict = |pass: bool| if pass { "PASS" } else { "FAIL" };
    let per_core = per_cpu_second(o.transactions, o.cpu);
    let _ = writeln!(
        out,
        "\n| target | measured | result |\n|---|---:|---|\n| at least {TARGET_PER_CORE:.0} \
         transactions/s per core | {per_core:.0} | {} |",
        verdict(per_core >= TARGET_PER_CORE)
    );
    match theirs {
        Some(t) => {
            let ratio = cpu_ratio(t, o);
            let _ = writeln!(
                out,
                "| at least {TARGET_VS_TSHARK:.0}x less CPU than tshark | {ratio:.1}x | {} |",
                verdict(ratio >= TARGET_VS_TSHARK)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "| at least {TARGET_VS_TSHARK:.0}x less CPU than tshark | tshark not installed | not measured |"
            );
        }
    }
    let findings_target = format!(
        "`replay --findings` at least {TARGET_FINDINGS_VS_TSHARK:.0}x less CPU than tshark"
    );
    match (detection, theirs) {
        (Some(d), Some(t)) => {
            let ratio = cpu_ratio(t, d);
            let _ = writeln!(
                out,
                "| {findings_target} | {ratio:.1}x | {} |",
                verdict(ratio >= TARGET_FINDINGS_VS_TSHARK)
            );
        }
        (None, _) => {
            let _ = writeln!(
                out,
                "| {findings_target} | no `--findings` run | not measured |"
            );
        }
        (Some(_), None) => {
            let _ = writeln!(
                out,
                "| {findings_target} | tshark not installed | not measured |"
            );
        }
    }
}

/// The instruction count's paragraph.
fn write_counted(out: &mut String, counted: &Counted) {
    let _ = writeln!(
        out,
        "\nInstructions per transaction: {:.0} (`valgrind --tool=callgrind`, user space only: {} \
         instructions for {} transactions of a capture of {} requests over {} connections \
         generated the same way). Unlike the times, this count depends only on the binary and \
         the input.",
        f(counted.instructions) / f(counted.transactions.max(1)),
        counted.instructions,
        counted.transactions,
        counted.requests,
        counted.flows
    );
    if counted.transactions != counted.requests as u64 {
        let _ = writeln!(
            out,
            "\n**Mismatch:** under valgrind, apisensor reported {} transactions for {} requests.",
            counted.transactions, counted.requests
        );
    }
}

/// The floor's paragraph: what is left of the 1M/s budget once the floor is paid.
fn write_floor(
    out: &mut String,
    input: &BenchInput,
    o: &Measurement,
    fl: &Measurement,
    line_bytes: u64,
) {
    // The CPU time 1M transactions/s per core allows for this capture.
    let budget = f(o.transactions) / TARGET_PER_CORE;
    let _ = writeln!(
        out,
        "\nThe floor (`sensor-user/examples/replay_floor.rs`, median of {RUNS_FLOOR} runs) is \
         the part of the replay no analysis can avoid: it reads the capture with the replay's \
         reader and decoder, parses every head with httparse, and writes {line_bytes} bytes \
         per transaction (the replay's mean line, rounded up) into the same kind of pipe, with \
         no flow table, reassembly, field extraction or formatting. At 1M transactions/s per \
         core this capture may take {budget:.2} s of CPU; the floor takes {:.2} s of it, which \
         leaves {:.2} s for the analysis and the formatting, on which the replay spends \
         {:.2} s.",
        fl.cpu.as_secs_f64(),
        budget - fl.cpu.as_secs_f64(),
        o.cpu.as_secs_f64() - fl.cpu.as_secs_f64()
    );
    if fl.transactions != input.requests as u64 {
        let _ = writeln!(
            out,
            "\n**Mismatch:** the floor wrote {} lines for {} requests.",
            fl.transactions, input.requests
        );
    }
}

/// A small deterministic generator (xorshift64*), so the same sizes give the same file.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One side's TCP state.
#[derive(Clone, Copy)]
struct Side {
    /// Address and port.
    addr: SocketAddr,
    /// Next sequence number this side sends.
    seq: u32,
}

/// What a connection does next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Three-way handshake.
    Handshake,
    /// Send the next request.
    Request,
    /// Send the response to the last request.
    Response,
    /// Close with FINs.
    Close,
    /// Nothing left.
    Done,
}

/// One generated connection.
struct Conn {
    /// Client side.
    client: Side,
    /// Server side.
    server: Side,
    /// Requests still to send.
    remaining: u32,
    /// Whether the last request asks the server to close.
    close_after: bool,
    /// Next step.
    stage: Stage,
    /// The response for the request just sent.
    response: Vec<u8>,
}

/// Writes frames into the pcap, advancing the capture clock.
struct Out {
    /// The pcap writer.
    w: PcapWriter<BufWriter<File>>,
    /// Capture clock.
    ts_ns: u64,
    /// Reused frame buffer.
    frame: Vec<u8>,
}

/// TCP flags of a generated segment, as bits.
#[derive(Clone, Copy)]
struct Flags(u8);

impl Flags {
    const FIN: Flags = Flags(0x01);
    const SYN: Flags = Flags(0x02);
    const ACK: Flags = Flags(0x10);
    const SYN_ACK: Flags = Flags(0x12);
    const FIN_ACK: Flags = Flags(0x11);
    const PSH_ACK: Flags = Flags(0x18);

    fn has(self, bit: Flags) -> bool {
        self.0 & bit.0 != 0
    }
}

impl Out {
    /// Writes one segment from `from` to `to`, advancing `from`'s sequence number.
    fn segment(
        &mut self,
        from: &mut Side,
        to: &Side,
        flags: Flags,
        payload: &[u8],
    ) -> anyhow::Result<()> {
        let ack = flags.has(Flags::ACK).then_some(to.seq);
        self.frame.clear();
        let window = 502;
        let mac_c = [2, 0, 0, 0, 0, 2];
        let mac_s = [2, 0, 0, 0, 0, 1];
        let eth = PacketBuilder::ethernet2(mac_c, mac_s);
        let ip = match (from.addr.ip(), to.addr.ip()) {
            (IpAddr::V4(a), IpAddr::V4(b)) => eth.ipv4(a.octets(), b.octets(), 64),
            (IpAddr::V6(a), IpAddr::V6(b)) => eth.ipv6(a.octets(), b.octets(), 64),
            _ => bail!("mixed address families in one connection"),
        };
        let mut tcp = ip.tcp(from.addr.port(), to.addr.port(), from.seq, window);
        if flags.has(Flags::SYN) {
            tcp = tcp.syn();
        }
        if let Some(a) = ack {
            tcp = tcp.ack(a);
        }
        if flags.0 & 0x08 != 0 {
            tcp = tcp.psh();
        }
        if flags.has(Flags::FIN) {
            tcp = tcp.fin();
        }
        tcp.write(&mut self.frame, payload)
            .context("cannot build a packet")?;
        let len = u32::try_from(self.frame.len()).context("frame too large")?;
        self.w
            .write_packet(&PcapPacket::new(
                Duration::from_nanos(self.ts_ns),
                len,
                &self.frame,
            ))
            .context("cannot write a packet")?;
        self.ts_ns += PACKET_GAP_NS;
        let consumed = u32::try_from(payload.len()).context("payload too large")?
            + u32::from(flags.has(Flags::SYN))
            + u32::from(flags.has(Flags::FIN));
        from.seq = from.seq.wrapping_add(consumed);
        Ok(())
    }
}

/// Writes a synthetic capture of `requests` HTTP requests over `flows` connections to `path`.
pub fn generate_capture(path: &Path, requests: usize, flows: usize) -> anyhow::Result<()> {
    if flows == 0 || requests < flows {
        bail!("need at least one request per connection ({requests} requests, {flows} flows)");
    }
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        snaplen: 65_535,
        ..PcapHeader::default()
    };
    let w = PcapWriter::with_header(BufWriter::with_capacity(1 << 20, file), header)
        .context("cannot write the pcap header")?;
    let mut out = Out {
        w,
        ts_ns: 1_700_000_000_000_000_000,
        frame: Vec::with_capacity(2048),
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let plan = plan_requests(requests, flows);
    let mut next_flow = 0_usize;
    let mut active: Vec<Conn> = Vec::with_capacity(CONCURRENCY);
    loop {
        while active.len() < CONCURRENCY && next_flow < flows {
            let n = plan(next_flow);
            active.push(new_conn(&mut rng, next_flow, n));
            next_flow += 1;
        }
        if active.is_empty() {
            break;
        }
        let i = usize::try_from(rng.below(active.len() as u64)).unwrap_or(0);
        let Some(conn) = active.get_mut(i) else {
            break;
        };
        step(conn, &mut out, &mut rng)?;
        if conn.stage == Stage::Done {
            active.swap_remove(i);
        }
    }
    out.w
        .into_writer()
        .into_inner()
        .map_err(std::io::IntoInnerError::into_error)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot finish {}", path.display()))?;
    Ok(())
}

/// How many requests flow `i` carries: 30% of the connections carry one request with
/// `Connection: close`, the others share the rest as keep-alive connections.
fn plan_requests(requests: usize, flows: usize) -> impl Fn(usize) -> u32 {
    let singles = (flows * 3 / 10).min(flows.saturating_sub(1));
    let multi = flows - singles;
    let rest = requests - singles;
    let base = rest / multi.max(1);
    let extra = rest % multi.max(1);
    move |i| {
        if i < singles {
            1
        } else if i - singles < extra {
            u32::try_from(base + 1).unwrap_or(u32::MAX)
        } else {
            u32::try_from(base).unwrap_or(u32::MAX)
        }
    }
}

/// A new connection from a documentation-range client to the server.
fn new_conn(rng: &mut Rng, index: usize, requests: u32) -> Conn {
    let port = 1024 + u16::try_from(index % 60_000).unwrap_or(0);
    let host = u8::try_from(index / 60_000 % 200).unwrap_or(0);
    let server_port = if index.is_multiple_of(7) { 8080 } else { 80 };
    let (client_ip, server_ip) = if index % 10 == 3 {
        (
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                1,
                0,
                0,
                0,
                0,
                u16::from(host) + 2,
            )),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        )
    } else if index.is_multiple_of(2) {
        (
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, host.saturating_add(10))),
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
        )
    } else {
        (
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, host.saturating_add(10))),
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
        )
    };
    Conn {
        client: Side {
            addr: SocketAddr::new(client_ip, port),
            seq: rng.next() as u32,
        },
        server: Side {
            addr: SocketAddr::new(server_ip, server_port),
            seq: rng.next() as u32,
        },
        remaining: requests,
        close_after: requests == 1,
        stage: Stage::Handshake,
        response: Vec::new(),
    }
}

/// Advances one connection by one step (a handshake, a request, a response, or the close).
fn step(c: &mut Conn, out: &mut Out, rng: &mut Rng) -> anyhow::Result<()> {
    let (ack, data) = (Flags::ACK, Flags::PSH_ACK);
    match c.stage {
        Stage::Handshake => {
            out.segment(&mut c.client, &c.server, Flags::SYN, &[])?;
            out.segment(&mut c.server, &c.client, Flags::SYN_ACK, &[])?;
            out.segment(&mut c.client, &c.server, ack, &[])?;
            c.stage = Stage::Request;
        }
        Stage::Request => {
            let last = c.remaining == 1;
            let (request, response) = exchange(rng, last && c.close_after);
            for piece in request.chunks(MSS) {
                out.segment(&mut c.client, &c.server, data, piece)?;
            }
            c.response = response;
            c.remaining -= 1;
            c.stage = Stage::Response;
        }
        Stage::Response => {
            let response = std::mem::take(&mut c.response);
            for piece in response.chunks(MSS) {
                out.segment(&mut c.server, &c.client, data, piece)?;
            }
            out.segment(&mut c.client, &c.server, ack, &[])?;
            c.stage = if c.remaining == 0 {
                Stage::Close
            } else {
                Stage::Request
            };
        }
        Stage::Close => {
            let fin = Flags::FIN_ACK;
            // With `Connection: close` the server closes first, otherwise the client does.
            if c.close_after {
                out.segment(&mut c.server, &c.client, fin, &[])?;
                out.segment(&mut c.client, &c.server, fin, &[])?;
                out.segment(&mut c.server, &c.client, ack, &[])?;
            } else {
                out.segment(&mut c.client, &c.server, fin, &[])?;
                out.segment(&mut c.server, &c.client, fin, &[])?;
                out.segment(&mut c.client, &c.server, ack, &[])?;
            }
            c.stage = Stage::Done;
        }
        Stage::Done => {}
    }
    Ok(())
}

/// User agents of the synthetic clients.
const USER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "okhttp/4.12.0",
    "python-requests/2.32.3",
];

/// One request and its response.
fn exchange(rng: &mut Rng, close: bool) -> (Vec<u8>, Vec<u8>) {
    let id = rng.below(1_000_000);
    let ua = USER_AGENTS
        .get(usize::try_from(rng.below(USER_AGENTS.len() as u64)).unwrap_or(0))
        .copied()
        .unwrap_or("curl/8.0");
    let connection = if close { "close" } else { "keep-alive" };
    let session = rng.next();
    let mut req = String::with_capacity(512);
    let kind = rng.below(100);
    let (status, reason, body, extra_headers, chunked): (u16, &str, String, String, bool) =
        match kind {
            0..=44 => {
                let _ = write!(
                    req,
                    "GET /api/v1/users/{id} HTTP/1.1\r\nHost: api.example.test\r\nUser-Agent: {ua}\r\n\
                     Accept: application/json\r\nAccept-Encoding: gzip, deflate, br\r\n\
                     Cookie: session={session:016x}; theme=dark\r\nConnection: {connection}\r\n\r\n"
                );
                let body = format!(
                    "{{\"id\":{id},\"name\":\"user{id}\",\"email\":\"user{id}@example.test\",\"plan\":\"pro\"}}"
                );
                (200, "OK", body, String::new(), false)
            }
            45..=64 => {
                let page = rng.below(50);
                // A well-formed (unsigned) JWT whose `sub` the analyzer reads as the account.
                let claims = URL_SAFE_NO_PAD.encode(format!("{{\"sub\":\"user{id:x}\"}}"));
                let _ = write!(
                    req,
                    "GET /api/v1/orders/{id}/items?page={page}&limit=20&sort=desc HTTP/1.1\r\n\
                     Host: api.example.test\r\nUser-Agent: {ua}\r\nAccept: application/json\r\n\
                     Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.{claims}.c2lnbmF0dXJl\r\n\
                     Connection: {connection}\r\n\r\n"
                );
                let mut body = String::from("[");
                for i in 0..=rng.below(8) {
                    let _ = write!(body, "{{\"sku\":\"SKU-{id}-{i}\",\"qty\":{}}},", 1 + i % 3);
                }
                body.push_str("{}]");
                (200, "OK", body, String::new(), rng.below(3) == 0)
            }
            65..=74 => {
                let _ = write!(
                    req,
                    "GET /static/app.{id:06x}.js HTTP/1.1\r\nHost: www.example.test\r\n\
                     User-Agent: {ua}\r\nAccept: */*\r\nReferer: https://www.example.test/\r\n\
                     Connection: {connection}\r\n\r\n"
                );
                let size = 1_000 + usize::try_from(rng.below(2_000)).unwrap_or(0);
                let body: String = "function f(){return 42;}\n".repeat(size / 25);
                (200, "OK", body, String::new(), false)
            }
            75..=84 => {
                let ok = rng.below(4) != 0;
                let form = format!("username=user{id}&password=hunter{}", rng.below(100));
                let _ = write!(
                    req,
                    "POST /login HTTP/1.1\r\nHost: api.example.test\r\nUser-Agent: {ua}\r\n\
                     Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
                     Connection: {connection}\r\n\r\n{form}",
                    form.len()
                );
                if ok {
                    let cookie = format!(
                        "Set-Cookie: session={:016x}; Path=/; HttpOnly; Secure\r\nLocation: /home\r\n",
                        rng.next()
                    );
                    (302, "Found", String::new(), cookie, false)
                } else {
                    (
                        401,
                        "Unauthorized",
                        "{\"error\":\"bad credentials\"}".to_owned(),
                        String::new(),
                        false,
                    )
                }
            }
            85..=92 => {
                let json = format!(
                    "{{\"item\":{id},\"qty\":{},\"note\":\"synthetic\"}}",
                    1 + rng.below(5)
                );
                let _ = write!(
                    req,
                    "POST /api/v1/orders HTTP/1.1\r\nHost: api.example.test\r\nUser-Agent: {ua}\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\
                     Cookie: session={session:016x}\r\nConnection: {connection}\r\n\r\n{json}",
                    json.len()
                );
                let body = format!(
                    "{{\"order\":{},\"status\":\"created\"}}",
                    rng.below(1 << 30)
                );
                (
                    201,
                    "Created",
                    body,
                    format!("Location: /api/v1/orders/{id}\r\n"),
                    false,
                )
            }
            _ => {
                let _ = write!(
                    req,
                    "GET /search?q=item{id}&lang=en HTTP/1.1\r\nHost: www.example.test\r\n\
                     User-Agent: {ua}\r\nAccept: text/html\r\nConnection: {connection}\r\n\r\n"
                );
                (
                    404,
                    "Not Found",
                    "<html><body>not found</body></html>".to_owned(),
                    String::new(),
                    false,
                )
            }
        };
    let mut resp = format!(
        "HTTP/1.1 {status} {reason}\r\nServer: nginx/1.22.1\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\n\
         Content-Type: application/json\r\n{extra_headers}"
    );
    if close {
        resp.push_str("Connection: close\r\n");
    }
    if chunked {
        resp.push_str("Transfer-Encoding: chunked\r\n\r\n");
        let bytes = body.as_bytes();
        for piece in bytes.chunks(64) {
            let _ = write!(resp, "{:x}\r\n", piece.len());
            resp.push_str(&String::from_utf8_lossy(piece));
            resp.push_str("\r\n");
        }
        resp.push_str("0\r\n\r\n");
    } else {
        let _ = write!(resp, "Content-Length: {}\r\n\r\n{body}", body.len());
    }
    (req.into_bytes(), resp.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{SlicedPacket, TransportSlice};
    use std::collections::HashMap;

    /// Per connection (client, server) and direction: the next expected sequence number.
    type SeqState = HashMap<(SocketAddr, SocketAddr), u32>;

    #[test]
    fn targets_are_judged_on_the_measured_figures() {
        let run = |cpu_ms: u64, transactions: u64| Measurement {
            wall: Duration::from_millis(cpu_ms),
            cpu: Duration::from_millis(cpu_ms),
            max_rss_kib: 1024,
            transactions,
            out_bytes: 0,
        };
        // (CPU ms of `--json`, of `--findings`, of tshark or none, the three results in order)
        let cases: [(u64, u64, Option<u64>, [&str; 3]); 7] = [
            (2_000, 3_000, Some(110_000), ["FAIL", "PASS", "PASS"]),
            (2_000, 4_000, Some(110_000), ["FAIL", "PASS", "FAIL"]),
            (1_000, 700, Some(21_000), ["PASS", "PASS", "PASS"]),
            (1_000, 701, Some(21_000), ["PASS", "PASS", "FAIL"]),
            (1_000, 1_500, Some(20_000), ["PASS", "PASS", "FAIL"]),
            (900, 500, Some(17_000), ["PASS", "FAIL", "PASS"]),
            (1_001, 500, None, ["FAIL", "not measured", "not measured"]),
        ];
        for (ours, detection, theirs, want) in cases {
            let mut out = String::new();
            let theirs = theirs.map(|ms| run(ms, 1_000_000));
            write_targets(
                &mut out,
                &run(ours, 1_000_000),
                Some(&run(detection, 1_000_000)),
                theirs.as_ref(),
            );
            let results: Vec<&str> = out
                .lines()
                .filter(|l| l.starts_with("| ") && l.contains(" at least "))
                .filter_map(|l| l.trim_end_matches(" |").rsplit("| ").next())
                .collect();
            assert_eq!(
                results, want,
                "{ours} and {detection} ms against {theirs:?}:\n{out}"
            );
        }
        let mut out = String::new();
        write_targets(&mut out, &run(1_000, 1_000_000), None, None);
        assert!(
            out.contains("| no `--findings` run | not measured |"),
            "{out}"
        );
    }

    #[test]
    fn bearer_tokens_carry_a_decodable_sub() {
        let mut rng = Rng(0x5eed);
        let mut tokens = 0;
        for _ in 0..200 {
            let (request, _) = exchange(&mut rng, false);
            let text = String::from_utf8(request).expect("ASCII request");
            let Some(at) = text.find("Authorization: Bearer ") else {
                continue;
            };
            let token = text[at..].lines().next().expect("line")["Authorization: Bearer ".len()..]
                .to_owned();
            let payload = token.split('.').nth(1).expect("three parts");
            let claims = URL_SAFE_NO_PAD.decode(payload).expect("base64url payload");
            let claims = String::from_utf8(claims).expect("UTF-8 claims");
            assert!(
                claims.starts_with("{\"sub\":\"user") && claims.ends_with("\"}"),
                "{claims}"
            );
            tokens += 1;
        }
        assert!(tokens > 10, "only {tokens} bearer requests in 200");
    }

    #[test]
    fn generated_capture_has_consistent_tcp_and_every_request() {
        let dir = std::env::temp_dir().join(format!("replay-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("small.pcap");
        let (requests, flows) = (137, 23);
        generate_capture(&path, requests, flows).expect("generate");
        let bytes = std::fs::read(&path).expect("read back");
        let _ = std::fs::remove_dir_all(&dir);

        let mut reader = pcap_file::pcap::PcapReader::new(&bytes[..]).expect("pcap header");
        let mut next: SeqState = HashMap::new();
        let (mut syns, mut fins, mut request_lines, mut status_lines) = (0, 0, 0, 0);
        let mut last_ts = Duration::ZERO;
        while let Some(pkt) = reader.next_packet() {
            let pkt = pkt.expect("valid record");
            assert!(pkt.timestamp > last_ts, "timestamps increase");
            last_ts = pkt.timestamp;
            let sliced = SlicedPacket::from_ethernet(&pkt.data).expect("valid frame");
            let Some(TransportSlice::Tcp(tcp)) = sliced.transport else {
                panic!("only TCP is generated");
            };
            let (src, dst) = match sliced.net {
                Some(etherparse::NetSlice::Ipv4(v4)) => (
                    IpAddr::V4(v4.header().source_addr()),
                    IpAddr::V4(v4.header().destination_addr()),
                ),
                Some(etherparse::NetSlice::Ipv6(v6)) => (
                    IpAddr::V6(v6.header().source_addr()),
                    IpAddr::V6(v6.header().destination_addr()),
                ),
                _ => panic!("only IP is generated"),
            };
            let key = (
                SocketAddr::new(src, tcp.source_port()),
                SocketAddr::new(dst, tcp.destination_port()),
            );
            let payload = tcp.payload();
            if tcp.syn() {
                syns += 1;
            } else {
                let want = next.get(&key).copied().expect("SYN before data");
                assert_eq!(tcp.sequence_number(), want, "contiguous sequence numbers");
                if tcp.ack() {
                    let back = next.get(&(key.1, key.0)).copied().expect("peer seen");
                    assert_eq!(tcp.acknowledgment_number(), back, "ack of everything sent");
                }
            }
            if tcp.fin() {
                fins += 1;
            }
            if payload.starts_with(b"GET ") || payload.starts_with(b"POST ") {
                request_lines += 1;
            }
            if payload.starts_with(b"HTTP/1.1 ") {
                status_lines += 1;
            }
            let consumed = payload.len() as u32 + u32::from(tcp.syn()) + u32::from(tcp.fin());
            next.insert(key, tcp.sequence_number().wrapping_add(consumed));
        }
        assert_eq!(syns, 2 * flows, "SYN and SYN-ACK per connection");
        assert_eq!(fins, 2 * flows, "a FIN each way per connection");
        assert_eq!(request_lines, requests, "every request is in the capture");
        assert_eq!(status_lines, requests, "every request is answered");
    }

    #[test]
    fn reads_the_findings_summary() {
        let stderr = "warning: something first\n\
                      replay /tmp/a, b.pcap: 12 packets (12 tcp, 0 partly captured, 0 not tcp, 0 \
                      fragments, 0 malformed, 0 unsupported link), 1000000 transactions, 100000 \
                      flows, 0 gaps, 0 lost bytes, 37 findings, 5 decisions\n";
        assert_eq!(detection_summary(stderr), Some((1_000_000, 37, 5)));
        let without =
            "replay x.pcap: 1 packets (1 tcp), 3 transactions, 1 flows, 0 gaps, 0 lost bytes\n";
        assert_eq!(detection_summary(without), None);
        assert_eq!(detection_summary(""), None);
    }

    #[test]
    fn reads_callgrinds_total() {
        let stderr = "==7== Callgrind, a call-graph generating cache profiler\n\
                      ==7== Events    : Ir\n==7== Collected : 4197034757\n==7== \n\
                      ==7== I   refs:      4,197,034,757\n";
        assert_eq!(collected(stderr), Some(4_197_034_757));
        assert_eq!(collected("==7== I   refs: 12\n"), None);
        assert_eq!(collected("==7== Collected : many\n"), None);
    }

    #[test]
    fn plan_spreads_every_request() {
        for (requests, flows) in [(10, 10), (11, 10), (1_000, 100), (1_000_003, 100_000)] {
            let plan = plan_requests(requests, flows);
            let total: u64 = (0..flows).map(|i| u64::from(plan(i))).sum();
            assert_eq!(total, requests as u64, "{requests} over {flows}");
            assert!((0..flows).all(|i| plan(i) >= 1), "no empty connection");
        }
    }
}
