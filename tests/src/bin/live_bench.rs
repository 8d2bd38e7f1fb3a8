//! The live path, measured in the namespace lab: wrk drives nginx through the agent (XDP and TC
//! attached, `--log-transactions`), and we report what the agent's ring-buffer consumer sustained
//! into the analyzer: events and transactions per second, and ring losses.
//!
//! `cargo run --release -p apisensor-tests --bin live_bench -- [SECONDS]` (as root) prints a
//! markdown section on stdout. `cargo xtask bench` runs it.
use std::{
    fmt::Write as _,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use apisensor_tests::{
    agent::{self, AgentFiles, PinDir},
    apisensor_bin,
    lab::Lab,
};

fn stats(pin: &Path) -> serde_json::Value {
    let out = Command::new(apisensor_bin())
        .args(["stats", "--json", "--pin-dir"])
        .arg(pin)
        .output()
        .expect("apisensor stats");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stats json")
}

fn get(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"))
}

/// What one run measured.
struct Measured {
    seconds: u64,
    elapsed: f64,
    wrk_rps: String,
    events: u64,
    lost: u64,
    transactions: usize,
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .map_or(10, |s| s.parse().expect("SECONDS must be a number"));
    assert!(
        (1..=120).contains(&seconds),
        "SECONDS must be 1..=120 (bounded load)"
    );
    print!("{}", report(&measure(seconds)));
}

fn measure(seconds: u64) -> Measured {
    let mut lab = Lab::new("live");
    lab.start_nginx(80);
    let pins = PinDir::new("livebench");
    // Detection runs as it does by default, but in a dry run: wrk is one client far over the
    // volume ceiling, and a block would end the measurement.
    let files = AgentFiles::in_lab(&lab, 1, "");
    let tx_log = files.stdout.clone();
    let agent = agent::start(
        &mut lab,
        &pins,
        &files,
        &["--log-transactions", "--dry-run"],
    );
    let before = stats(pins.path());
    let started = Instant::now();
    let duration = format!("{seconds}s");
    let client_ns = lab.client_ns().to_owned();
    let wrk = lab.run(
        &client_ns,
        "wrk",
        &[
            "-t2",
            "-c32",
            "-d",
            &duration,
            "--latency",
            "http://198.51.100.1:80/users/1234",
        ],
        Duration::from_secs(seconds + 30),
    );
    assert!(
        wrk.status.success(),
        "wrk failed: {}",
        String::from_utf8_lossy(&wrk.stderr)
    );
    let status = lab.stop(agent);
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        status.success(),
        "agent exit: {status:?}: {}",
        lab.stderr_of(agent)
    );
    let after = stats(pins.path());
    let delta = |k: &str| get(&after, k) - get(&before, k);
    let events = delta("req_events")
        + delta("req_control_events")
        + delta("resp_events")
        + delta("resp_control_events");
    let lost = delta("req_ring_full") + delta("resp_ring_full");
    let transactions = std::fs::read_to_string(&tx_log)
        .expect("transactions file")
        .lines()
        .filter(|l| l.starts_with("{\"ts_ns\":") && l.contains("\"method\":\"GET\""))
        .count();
    let wrk_out = String::from_utf8_lossy(&wrk.stdout);
    let wrk_rps = wrk_out
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");

    Measured {
        seconds,
        elapsed,
        wrk_rps: wrk_rps.to_owned(),
        events,
        lost,
        transactions,
    }
}

#[expect(clippy::cast_precision_loss, reason = "rates for display")]
fn report(m: &Measured) -> String {
    let Measured {
        seconds,
        elapsed,
        ref wrk_rps,
        events,
        lost,
        transactions,
    } = *m;
    let mut md = String::new();
    let _ = writeln!(md, "## Live path: ring-buffer consumer into the analyzer\n");
    let _ = writeln!(
        md,
        "wrk (`-t2 -c32 -d{seconds}s`, keep-alive GETs) in the client namespace against nginx in \
         the server namespace, the release agent attached to the server's veth (native XDP, TCX) \
         with `--log-transactions` to a file and its default detection in a dry run (`--dry-run`: it decides, it does not block wrk). nginx, wrk and the agent share the 2 cores.\n"
    );
    let _ = writeln!(md, "| measure | value |\n|---|---|");
    let _ = writeln!(md, "| wrk requests/s | {wrk_rps} |");
    let _ = writeln!(
        md,
        "| ring events consumed | {events} ({:.0}/s) |",
        events as f64 / elapsed
    );
    let _ = writeln!(md, "| ring events lost (ring full) | {lost} |");
    let _ = writeln!(
        md,
        "| transactions logged | {transactions} ({:.0}/s) |",
        transactions as f64 / elapsed
    );
    let _ = writeln!(md, "| wall time | {elapsed:.1} s |");
    let _ = writeln!(
        md,
        "\nReproduce: `cargo run --release -p apisensor-tests --bin live_bench -- {seconds}` (as \
         root), or `cargo xtask bench`."
    );
    md
}
