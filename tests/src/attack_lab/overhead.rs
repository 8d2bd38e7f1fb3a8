//! The agent's overhead on the server: wrk through nginx to the sample API's `/health` in one
//! lab, interleaved over [`ROUNDS`] rounds of three runs, one per [`Variant`]: the agent
//! attached; the floor, a bare `XDP_PASS` program attached natively to the server's veth
//! instead; and nothing attached (the agent stopped: its programs are detached when it
//! exits). The medians of throughput and p99 latency are compared. The floor separates what
//! any native XDP program costs on a veth (the receiving end switches to its NAPI path) from
//! apisensor's own cost. Before every run, `ip -j -d link show` in the server namespace must
//! show the variant's program attached natively (or none), else the run panics. Each wrk run
//! is shorter than the volume detector's sustain time (10 s), so the agent never blocks wrk:
//! what is measured is the cost of watching, not of refusing.
//!
//! The floor is [`FLOOR_SOURCE`], two instructions (`r0 = XDP_PASS; exit`), compiled by
//! clang-19 into the lab's directory and attached with iproute2 (`ip link set dev IFACE
//! xdpdrv obj ...`, detached with `xdpdrv off`). xdp-bench's `pass` (xdp-tools 1.3.1, Debian
//! 12's) would be the ready-made choice but cannot load on kernels without the
//! `xdp_redirect_map` and `xdp_redirect_map_err` tracepoints (removed upstream in 2025, gone
//! from the 6.18 kernel here): its object carries `tp_btf` programs for them, so libbpf
//! refuses the whole object (its log: failed to find kernel BTF type ID of
//! `xdp_redirect_map_err`) and xdp-bench exits with "Failed to attach XDP program: No such
//! process".
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use sensor_common::program_names;

use crate::agent;
use crate::lab::{Lab, run_in_ns_ok};

use super::bpf_stats::{self, ProgCounters, StatsOn};
use super::measure::Usage;
use super::topology::Testbed;
use super::traffic;
use super::version;

/// Rounds of one run per variant.
const ROUNDS: usize = 12;
/// Length of one wrk run, seconds (under the volume detector's 10 s).
const RUN_S: u32 = 6;
/// The floor's program, C for clang: it passes every packet without reading it or touching
/// a map. `struct xdp_md` is only declared: the program never dereferences its context.
const FLOOR_SOURCE: &str = "struct xdp_md;

/* The overhead run's floor: pass every packet, read nothing. */
__attribute__((section(\"xdp\"), used)) int xdp_pass(struct xdp_md *ctx)
{
\treturn 2; /* XDP_PASS */
}

char _license[] __attribute__((section(\"license\"), used)) = \"GPL\";
";
/// The floor's program as the kernel names it (its function's name).
const FLOOR_PROG: &str = "xdp_pass";
/// The compiler of the floor's program (`cargo xtask setup` installs it).
const CLANG: &str = "clang-19";
/// How long the server's veth may take to show a program attached or gone.
const VETH_TIMEOUT: Duration = Duration::from_secs(15);
/// `IFLA_XDP_ATTACHED`'s value for a program attached in native (driver) mode
/// (`XDP_ATTACHED_DRV` in `include/uapi/linux/if_link.h`).
const XDP_ATTACHED_DRV: u64 = 1;

/// What is attached to the server's veth during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The agent: its XDP and TC programs, its ring buffer and its userspace.
    Attached,
    /// The floor: a bare `XDP_PASS` program, natively, and nothing else.
    Floor,
    /// Nothing.
    Detached,
}

impl Variant {
    /// Its name in the scorecard's list of runs and in error lines.
    fn name(self) -> &'static str {
        match self {
            Self::Attached => "attached",
            Self::Floor => "floor",
            Self::Detached => "detached",
        }
    }

    /// The program the server's veth must show natively attached during its runs.
    fn program(self) -> Option<&'static str> {
        match self {
            Self::Attached => Some(program_names::XDP_INGRESS),
            Self::Floor => Some(FLOOR_PROG),
            Self::Detached => None,
        }
    }
}

/// The order of the runs in a round: round `r` takes `ORDERS[r % 6]`, the six permutations in
/// turn, so no variant always follows the same other one (nor always opens a round).
const ORDERS: [[Variant; 3]; 6] = {
    use Variant::{Attached as A, Detached as D, Floor as F};
    [
        [A, F, D],
        [F, D, A],
        [D, A, F],
        [A, D, F],
        [D, F, A],
        [F, A, D],
    ]
};

/// One wrk run.
#[derive(Debug, Clone, Copy)]
pub struct WrkRun {
    /// Requests per second.
    pub rps: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
}

/// What the overhead run measured.
#[derive(Debug, Clone)]
pub struct Overhead {
    /// Runs with the agent attached.
    pub attached: Vec<WrkRun>,
    /// Runs with the floor (a bare `XDP_PASS` program) attached instead.
    pub floor: Vec<WrkRun>,
    /// Runs with nothing attached.
    pub detached: Vec<WrkRun>,
    /// The agent's CPU seconds (user and system) during each attached run.
    pub agent_cpu_s: Vec<f64>,
    /// wrk's failures (non-2xx answers, socket errors) over all runs, if any.
    pub errors: Vec<String>,
    /// Where an attached run's time goes, from one more run with the kernel's BPF statistics
    /// on (not among the timed runs), or why it could not be measured.
    pub breakdown: Result<Breakdown, String>,
}

/// Where an attached run's time goes.
#[derive(Debug, Clone)]
pub struct Breakdown {
    /// Requests wrk completed.
    pub requests: f64,
    /// The agent's programs' runs and nanoseconds during the run.
    pub programs: Vec<ProgCounters>,
    /// The agent's userspace and system CPU seconds during the run.
    pub agent_cpu_s: f64,
}

/// The medians of one variant's runs.
#[derive(Debug, Clone, Copy)]
pub struct Medians {
    /// Requests per second.
    pub rps: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
}

/// The XDP program on an interface, as `ip -j -d link show` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct XdpProg {
    /// `IFLA_XDP_ATTACHED`: 1 native, 2 generic, 3 offloaded, 4 several.
    mode: u64,
    /// The program's name (the kernel keeps 15 bytes).
    name: String,
}

/// wrk's `Requests/sec` and `99%` latency.
fn parse_wrk(out: &str) -> Option<WrkRun> {
    let rps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let p99 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))?
        .trim();
    let (num, unit) = p99.split_at(p99.find(|c: char| c.is_ascii_alphabetic())?);
    let scale = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        _ => return None,
    };
    Some(WrkRun {
        rps,
        p99_ms: num.parse::<f64>().ok()? * scale,
    })
}

/// The median of some values.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => f64::midpoint(v[n / 2 - 1], v[n / 2]),
    }
}

/// The XDP program `ip -j -d link show dev IFACE` reports (`None` if none is attached).
fn parse_xdp(json: &str) -> Result<Option<XdpProg>, String> {
    let links: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("not JSON ({e}): {json}"))?;
    let link = links
        .get(0)
        .ok_or_else(|| format!("no interface in {json}"))?;
    let Some(xdp) = link.get("xdp") else {
        return Ok(None);
    };
    let mode = xdp
        .get("mode")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| format!("no XDP mode in {xdp}"))?;
    let name = xdp
        .pointer("/prog/name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok(Some(XdpProg { mode, name }))
}

/// The XDP program on the server's veth now.
///
/// # Panics
///
/// If `ip` fails or prints something else than expected.
fn xdp_on_server(lab: &Lab) -> Option<XdpProg> {
    let out = run_in_ns_ok(
        lab.server_ns(),
        "ip",
        &["-j", "-d", "link", "show", "dev", lab.server_if()],
        Duration::from_secs(10),
    );
    parse_xdp(&String::from_utf8_lossy(&out.stdout))
        .unwrap_or_else(|e| panic!("ip link show {}: {e}", lab.server_if()))
}

/// Waits (up to [`VETH_TIMEOUT`]) until the server's veth has program `want` attached
/// natively, or nothing if `want` is `None`.
///
/// # Panics
///
/// If it does not, with what the veth has.
fn await_veth(lab: &Lab, want: Option<&str>) {
    let deadline = Instant::now() + VETH_TIMEOUT;
    loop {
        let on = xdp_on_server(lab);
        let ok = match (&on, want) {
            (None, None) => true,
            (Some(p), Some(name)) => p.mode == XDP_ATTACHED_DRV && p.name == name,
            _ => false,
        };
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {on:?} after {VETH_TIMEOUT:?}, expected {want:?} in native mode",
            lab.server_if(),
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Compiles [`FLOOR_SOURCE`] into the lab's directory and returns the object's path.
///
/// # Panics
///
/// If it cannot be written or compiled.
fn build_floor(lab: &Lab) -> PathBuf {
    let src = lab.tmp_dir().join("xdp_pass.c");
    let obj = lab.tmp_dir().join("xdp_pass.o");
    std::fs::write(&src, FLOOR_SOURCE)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", src.display()));
    let out = lab.run(
        lab.server_ns(),
        CLANG,
        &[
            "-O2",
            "-g",
            "-target",
            "bpf",
            "-c",
            path_text(&src),
            "-o",
            path_text(&obj),
        ],
        Duration::from_mins(1),
    );
    assert!(
        out.status.success(),
        "{CLANG} cannot compile the floor's program ({}; `cargo xtask setup` installs it): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    obj
}

/// Attaches (`Some(object)`) or detaches (`None`) the floor on the server's veth with
/// iproute2, in native mode only (`xdpdrv`).
///
/// # Panics
///
/// If `ip` fails.
fn set_floor(lab: &Lab, obj: Option<&Path>) {
    let iface = lab.server_if();
    let mut args = vec!["link", "set", "dev", iface, "xdpdrv"];
    match obj {
        Some(obj) => args.extend(["obj", path_text(obj), "sec", "xdp"]),
        None => args.push("off"),
    }
    run_in_ns_ok(lab.server_ns(), "ip", &args, Duration::from_secs(30));
}

/// A lab path as a command-line argument.
fn path_text(p: &Path) -> &str {
    p.to_str().expect("lab paths are UTF-8")
}

/// What is on the server's veth between runs.
#[derive(Debug)]
struct OnVeth {
    /// The agent's PID, if it is running.
    agent: Option<u32>,
    /// Whether the floor is attached.
    floor: bool,
    /// The floor's compiled object.
    floor_obj: PathBuf,
}

impl OnVeth {
    /// Removes what `to` does not run (stops the agent with SIGTERM, detaches the floor),
    /// waits until the veth is bare, starts or attaches what `to` runs, and waits until the
    /// veth has `to`'s program natively.
    ///
    /// # Panics
    ///
    /// If anything fails to start or attach, or the veth does not show what it should.
    fn switch(&mut self, bed: &mut Testbed, to: Variant) {
        let mut removed = false;
        if to != Variant::Attached
            && let Some(pid) = self.agent.take()
        {
            bed.lab.stop(pid);
            removed = true;
        }
        if to != Variant::Floor && self.floor {
            set_floor(&bed.lab, None);
            self.floor = false;
            removed = true;
        }
        if removed {
            await_veth(&bed.lab, None);
        }
        match to {
            Variant::Attached if self.agent.is_none() => {
                self.agent = Some(agent::start(&mut bed.lab, &bed.pin, &bed.files, &[]));
            }
            Variant::Floor if !self.floor => {
                set_floor(&bed.lab, Some(&self.floor_obj));
                self.floor = true;
            }
            _ => {}
        }
        await_veth(&bed.lab, to.program());
    }
}

/// How far the slowest run's p99 is above the fastest's, percent (NaN without runs).
fn p99_spread(runs: &[WrkRun]) -> f64 {
    let p99 = runs.iter().map(|r| r.p99_ms);
    let (lo, hi) = p99.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p), hi.max(p))
    });
    if runs.is_empty() {
        f64::NAN
    } else {
        100.0 * (hi / lo - 1.0)
    }
}

/// Runs the interleaved measurement in a lab of its own.
///
/// # Panics
///
/// If the lab or the agent cannot be started, the floor cannot be compiled or attached, or
/// the server's veth does not show what a run needs.
pub fn run() -> Overhead {
    let mut bed = Testbed::new("lovh", &[], false);
    let url = format!("{}/health", bed.base_url());
    let duration = format!("{RUN_S}s");
    let mut o = Overhead {
        attached: Vec::new(),
        floor: Vec::new(),
        detached: Vec::new(),
        agent_cpu_s: Vec::new(),
        errors: Vec::new(),
        breakdown: Err("not run".to_owned()),
    };
    let mut on = OnVeth {
        agent: Some(bed.agent),
        floor: false,
        floor_obj: build_floor(&bed.lab),
    };
    for round in 0..ROUNDS {
        for variant in ORDERS[round % ORDERS.len()] {
            if traffic::interrupted() {
                return o;
            }
            on.switch(&mut bed, variant);
            let cpu_before = on.agent.map(|pid| Usage::of(pid).cpu_s);
            let run = bed.run_tool(
                "wrk",
                &["-t", "2", "-c", "16", "-d", &duration, "--latency", &url],
                Duration::from_secs(u64::from(RUN_S) + 10),
                &mut || false,
            );
            if let (Some(pid), Some(before)) = (on.agent, cpu_before) {
                o.agent_cpu_s.push(Usage::of(pid).cpu_s - before);
            }
            for l in run
                .stdout
                .lines()
                .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
            {
                o.errors
                    .push(format!("round {round}, {}: {}", variant.name(), l.trim()));
            }
            match parse_wrk(&run.stdout) {
                Some(r) => o.runs_mut(variant).push(r),
                None => o.errors.push(format!(
                    "round {round}, {}: wrk printed no result: {}",
                    variant.name(),
                    run.stderr
                )),
            }
        }
    }
    if !traffic::interrupted() {
        on.switch(&mut bed, Variant::Attached);
        o.breakdown = breakdown(&mut bed, on.agent.expect("the agent runs"), &url);
    }
    // The agent is stopped by the Testbed's drop; the floor is detached here (the
    // namespace's removal, which deletes the veth, would also free it).
    if on.floor {
        set_floor(&bed.lab, None);
    }
    o
}

/// One more attached run, with the kernel's BPF statistics on: the agent's programs' runs and
/// time, and its CPU.
fn breakdown(bed: &mut Testbed, agent: u32, url: &str) -> Result<Breakdown, String> {
    let names = [program_names::XDP_INGRESS, program_names::TC_EGRESS];
    let _stats = StatsOn::new()?;
    let before = bpf_stats::programs(&names)?;
    let cpu_before = Usage::of(agent).cpu_s;
    let run = bed.run_tool(
        "wrk",
        &[
            "-t",
            "2",
            "-c",
            "16",
            "-d",
            &format!("{RUN_S}s"),
            "--latency",
            url,
        ],
        Duration::from_secs(u64::from(RUN_S) + 10),
        &mut || false,
    );
    let agent_cpu_s = Usage::of(agent).cpu_s - cpu_before;
    let after = bpf_stats::programs(&names)?;
    let wrk = parse_wrk(&run.stdout).ok_or_else(|| format!("wrk: {}", run.stderr))?;
    Ok(Breakdown {
        requests: wrk.rps * f64::from(RUN_S),
        programs: bpf_stats::delta(&before, &after),
        agent_cpu_s,
    })
}

impl Overhead {
    /// The runs of `variant`.
    pub fn runs(&self, variant: Variant) -> &[WrkRun] {
        match variant {
            Variant::Attached => &self.attached,
            Variant::Floor => &self.floor,
            Variant::Detached => &self.detached,
        }
    }

    /// The runs of `variant`, to add to.
    fn runs_mut(&mut self, variant: Variant) -> &mut Vec<WrkRun> {
        match variant {
            Variant::Attached => &mut self.attached,
            Variant::Floor => &mut self.floor,
            Variant::Detached => &mut self.detached,
        }
    }

    /// The medians of `variant`'s runs (NaN if it has none).
    pub fn medians(&self, variant: Variant) -> Medians {
        let runs = self.runs(variant);
        Medians {
            rps: median(runs.iter().map(|r| r.rps).collect()),
            p99_ms: median(runs.iter().map(|r| r.p99_ms).collect()),
        }
    }

    /// Where the attached run's time goes, per request.
    fn write_breakdown(&self, md: &mut String) {
        let b = match &self.breakdown {
            Ok(b) => b,
            Err(e) => {
                let _ = writeln!(md, "\nWhere the time goes: not measured ({e}).");
                return;
            }
        };
        let programs: Vec<String> = b
            .programs
            .iter()
            .map(|p| {
                #[expect(clippy::cast_precision_loss, reason = "counts for display")]
                let (runs, ns) = (p.runs as f64, p.ns as f64);
                format!(
                    "`{}` ran {:.1} times per request, {:.0} ns a run",
                    p.name,
                    runs / b.requests,
                    ns / runs.max(1.0)
                )
            })
            .collect();
        #[expect(clippy::cast_precision_loss, reason = "nanoseconds for display")]
        let kernel_ns: f64 = b.programs.iter().map(|p| p.ns as f64).sum::<f64>() / b.requests;
        let _ = writeln!(
            md,
            "\nWhere the time goes, from one more attached run with the kernel's BPF statistics \
             on (`kernel.bpf_stats_enabled`, which adds its own clock reads to every program \
             run, so this run is not among the timed ones): {:.0} requests; {}; in all \
             {:.2} µs of the agent's kernel programs and {:.2} µs of the agent's own CPU per \
             request.",
            b.requests,
            programs.join("; "),
            kernel_ns / 1e3,
            b.agent_cpu_s * 1e6 / b.requests,
        );
    }

    /// The overhead section of the scorecard.
    pub fn write_section(&self, md: &mut String) {
        let a = self.medians(Variant::Attached);
        let f = self.medians(Variant::Floor);
        let d = self.medians(Variant::Detached);
        let _ = writeln!(md, "\n## Overhead\n");
        let _ = writeln!(
            md,
            "{} (`-t 2 -c 16 -d {RUN_S}s --latency`) from the client namespace through nginx to \
             the sample API's `/health`, {ROUNDS} rounds of three runs interleaved in one lab \
             (the order changes every round, through all six permutations), medians: \
             *attached*, the agent at its default configuration on the server's veth; \
             *floor*, the agent stopped and a bare `XDP_PASS` program attached natively to the \
             same veth instead (two instructions, `r0 = XDP_PASS; exit`, built by {} and \
             attached with `ip link set dev IFACE xdpdrv obj`; xdp-bench's `pass` from \
             xdp-tools 1.3.1 cannot load on this kernel, which no longer has the \
             `xdp_redirect_map` tracepoints its object refers to); *detached*, nothing \
             attached. Before each run `ip -d link` in the server namespace showed the run's \
             program in native mode (`{}` or `{FLOOR_PROG}`), or none.\n",
            version("wrk", &["-v"]).split(" [").next().unwrap_or("wrk"),
            version(CLANG, &["--version"]),
            program_names::XDP_INGRESS,
        );
        let _ = writeln!(
            md,
            "| measure | attached | floor | detached | attached / detached | floor / detached \
             | attached / floor | target (attached / detached) |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---|");
        let pct = |x: f64, y: f64| 100.0 * x / y;
        let _ = writeln!(
            md,
            "| throughput, requests/s | {:.0} | {:.0} | {:.0} | {:.1} % | {:.1} % | {:.1} % | ≥ 95 % |",
            a.rps,
            f.rps,
            d.rps,
            pct(a.rps, d.rps),
            pct(f.rps, d.rps),
            pct(a.rps, f.rps)
        );
        let change = |x: f64, y: f64| 100.0 * (x / y - 1.0);
        let _ = writeln!(
            md,
            "| p99 latency, ms | {:.2} | {:.2} | {:.2} | {:+.1} % | {:+.1} % | {:+.1} % | within 10 % |",
            a.p99_ms,
            f.p99_ms,
            d.p99_ms,
            change(a.p99_ms, d.p99_ms),
            change(f.p99_ms, d.p99_ms),
            change(a.p99_ms, f.p99_ms)
        );
        let cpu = median(self.agent_cpu_s.clone());
        let _ = writeln!(
            md,
            "\nOn a veth, attaching any native XDP program switches the receiving end to veth's \
             NAPI path (frames are queued and polled in batches instead of handed over per \
             packet, and an skb that is cloned, as TCP's are, or has less than 256 bytes of \
             headroom is copied before the program sees it). \
             *floor / detached* is that cost of the veth's XDP mode, which any XDP program pays \
             here and which says nothing about a physical NIC. *attached / floor* is \
             apisensor's own cost: its XDP program's work beyond passing, its TC egress \
             program, the ring buffer, and the agent's userspace, which on these {} cores \
             competes with wrk, nginx and the sample API for CPU (median {cpu:.2} CPU s per \
             {RUN_S} s run, {:.0} % of one core). *attached / detached* is the two together, \
             what the target is set on. Within one variant the slowest run's p99 was up to \
             {:.0} % above the fastest's, so the p99 ratios are weaker evidence than the \
             throughput ones.",
            thread::available_parallelism().map_or(0, std::num::NonZero::get),
            100.0 * cpu / f64::from(RUN_S),
            [Variant::Attached, Variant::Floor, Variant::Detached]
                .map(|v| p99_spread(self.runs(v)))
                .into_iter()
                .fold(f64::NAN, f64::max),
        );
        let runs = |v: &[WrkRun]| {
            v.iter()
                .map(|r| format!("{:.0}/{:.2}", r.rps, r.p99_ms))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            md,
            "\nEvery run in order within its variant (requests/s / p99 ms): attached {}; floor \
             {}; detached {}. The agent's CPU s per attached run: {}.",
            runs(&self.attached),
            runs(&self.floor),
            runs(&self.detached),
            self.agent_cpu_s
                .iter()
                .map(|c| format!("{c:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !self.errors.is_empty() {
            let _ = writeln!(md, "\nwrk reported: {}.", self.errors.join("; "));
        }
        self.write_breakdown(md);
    }
}

#[cfg(test)]
mod tests {
    use super::{ORDERS, Variant, WrkRun, XdpProg, p99_spread, parse_wrk, parse_xdp};

    #[test]
    fn wrk_output_gives_throughput_and_p99() {
        let out = "Running 6s test @ http://198.51.100.1:80/health
  2 threads and 16 connections
  Latency Distribution
     50%  610.00us
     75%    0.90ms
     90%    1.50ms
     99%    3.25ms
  60000 requests in 6.00s, 9.00MB read
Requests/sec:  10000.50
Transfer/sec:      1.50MB
";
        let r = parse_wrk(out).expect("parsed");
        assert!((r.rps - 10000.5).abs() < 1e-9);
        assert!((r.p99_ms - 3.25).abs() < 1e-9);
        let slow = out.replace("3.25ms", "1.20s");
        assert!((parse_wrk(&slow).expect("parsed").p99_ms - 1200.0).abs() < 1e-9);
        let micro = out.replace("3.25ms", "950.00us");
        assert!((parse_wrk(&micro).expect("parsed").p99_ms - 0.95).abs() < 1e-9);
        assert!(parse_wrk("no result").is_none());
    }

    #[test]
    fn p99_spread_is_slowest_over_fastest() {
        let run = |p99_ms| WrkRun { rps: 1.0, p99_ms };
        assert!((p99_spread(&[run(1.0), run(1.5), run(1.2)]) - 50.0).abs() < 1e-9);
        assert!(p99_spread(&[run(2.0)]).abs() < 1e-9);
        assert!(p99_spread(&[]).is_nan());
    }

    #[test]
    fn ip_link_json_gives_the_xdp_program() {
        let prog = |mode, name: &str| {
            Some(XdpProg {
                mode,
                name: name.to_owned(),
            })
        };
        let cases: [(&str, Result<Option<XdpProg>, ()>); 5] = [
            (
                r#"[{"ifindex":2,"ifname":"sv","flags":["UP"],"mtu":1500}]"#,
                Ok(None),
            ),
            (
                r#"[{"ifindex":2,"ifname":"sv","xdp":{"mode":1,"prog":{"id":42,"name":"xdp_pass","tag":"3b185187f1855c4c","jited":1}}}]"#,
                Ok(prog(1, "xdp_pass")),
            ),
            (
                r#"[{"ifindex":2,"ifname":"sv","xdp":{"mode":2,"prog":{"id":7,"name":"apisensor_xdp"}}}]"#,
                Ok(prog(2, "apisensor_xdp")),
            ),
            ("[]", Err(())),
            ("Device \"sv\" does not exist.", Err(())),
        ];
        for (json, want) in cases {
            assert_eq!(parse_xdp(json).map_err(drop), want, "{json}");
        }
    }

    #[test]
    fn no_variant_always_follows_the_same_one() {
        for v in [Variant::Attached, Variant::Floor, Variant::Detached] {
            let before: std::collections::BTreeSet<_> = ORDERS
                .iter()
                .flat_map(|o| o.windows(2))
                .filter(|w| w[1] == v)
                .map(|w| w[0].name())
                .collect();
            assert_eq!(before.len(), 2, "{v:?} follows only {before:?}");
        }
        for o in ORDERS {
            assert!(o.contains(&Variant::Attached) && o.contains(&Variant::Floor));
            assert!(o.contains(&Variant::Detached));
        }
    }
}
