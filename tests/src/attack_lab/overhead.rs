//! The agent's overhead on the server: wrk through nginx to the sample API's `/health`, with
//! the agent attached and detached (stopped: its programs are detached when it exits),
//! interleaved in one lab, and the medians of throughput and p99 latency compared. Each wrk run
//! is shorter than the volume detector's sustain time (10 s), so the agent never blocks wrk:
//! what is measured is the cost of watching, not of refusing.
use std::fmt::Write as _;
use std::time::Duration;

use crate::agent;

use super::scorecard::version;
use super::topology::Testbed;
use super::traffic;

/// Rounds of one attached and one detached run.
const ROUNDS: usize = 5;
/// Length of one wrk run, seconds (under the volume detector's 10 s).
const RUN_S: u32 = 6;

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
    /// Runs with it detached.
    pub detached: Vec<WrkRun>,
    /// wrk's failures (non-2xx answers, socket errors) over all runs, if any.
    pub errors: Vec<String>,
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

/// Runs the interleaved measurement in a lab of its own.
///
/// # Panics
///
/// If the lab or the agent cannot be started.
pub fn run() -> Overhead {
    let mut bed = Testbed::new("lovh", &[], false);
    let url = format!("{}/health", bed.base_url());
    let duration = format!("{RUN_S}s");
    let mut o = Overhead {
        attached: Vec::new(),
        detached: Vec::new(),
        errors: Vec::new(),
    };
    let mut agent = Some(bed.agent);
    for round in 0..ROUNDS {
        for attached in [true, false] {
            if traffic::interrupted() {
                return o;
            }
            match (attached, agent) {
                (true, None) => {
                    agent = Some(agent::start(&mut bed.lab, &bed.pin, &bed.files, &[]));
                }
                (false, Some(pid)) => {
                    bed.lab.stop(pid);
                    agent = None;
                }
                _ => {}
            }
            let run = bed.run_tool(
                "wrk",
                &["-t", "2", "-c", "16", "-d", &duration, "--latency", &url],
                Duration::from_secs(u64::from(RUN_S) + 10),
                &mut || false,
            );
            for l in run
                .stdout
                .lines()
                .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
            {
                o.errors
                    .push(format!("round {round}, attached {attached}: {}", l.trim()));
            }
            match parse_wrk(&run.stdout) {
                Some(r) if attached => o.attached.push(r),
                Some(r) => o.detached.push(r),
                None => o.errors.push(format!(
                    "round {round}: wrk printed no result: {}",
                    run.stderr
                )),
            }
        }
    }
    o
}

impl Overhead {
    /// Medians: (attached rps, detached rps, attached p99 ms, detached p99 ms).
    pub fn medians(&self) -> (f64, f64, f64, f64) {
        let rps = |v: &[WrkRun]| median(v.iter().map(|r| r.rps).collect());
        let p99 = |v: &[WrkRun]| median(v.iter().map(|r| r.p99_ms).collect());
        (
            rps(&self.attached),
            rps(&self.detached),
            p99(&self.attached),
            p99(&self.detached),
        )
    }

    /// The overhead section of the scorecard.
    pub fn write_section(&self, md: &mut String) {
        let (ra, rd, pa, pd) = self.medians();
        let _ = writeln!(md, "\n## Overhead\n");
        let _ = writeln!(
            md,
            "{} (`-t 2 -c 16 -d {RUN_S}s --latency`) from the client namespace through nginx to \
             the sample API's `/health`, {ROUNDS} rounds of one run with the agent attached and \
             one with it detached, interleaved in one lab; medians. Both cores are shared by \
             wrk, nginx, the sample API and the agent. On a veth, attaching an XDP program \
             switches the receiving end to veth's NAPI path (frames are queued and polled in \
             batches instead of handed over per packet), so \"detached\" is the veth without \
             XDP at all, not the same path without apisensor's work, and neither says what a \
             physical NIC would show.\n",
            version("wrk", &["-v"]).split(" [").next().unwrap_or("wrk")
        );
        let _ = writeln!(md, "| measure | attached | detached | ratio | target |");
        let _ = writeln!(md, "|---|---:|---:|---:|---|");
        let _ = writeln!(
            md,
            "| throughput, requests/s | {ra:.0} | {rd:.0} | {:.1} % | ≥ 95 % |",
            100.0 * ra / rd
        );
        let _ = writeln!(
            md,
            "| p99 latency, ms | {pa:.2} | {pd:.2} | {:+.1} % | within 10 % |",
            100.0 * (pa / pd - 1.0)
        );
        let runs = |v: &[WrkRun]| {
            v.iter()
                .map(|r| format!("{:.0}/{:.2}", r.rps, r.p99_ms))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            md,
            "\nEvery run (requests/s / p99 ms): attached {}; detached {}.",
            runs(&self.attached),
            runs(&self.detached)
        );
        if !self.errors.is_empty() {
            let _ = writeln!(md, "\nwrk reported: {}.", self.errors.join("; "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_wrk;

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
}
