//! The closed loop, timed in the namespace lab: a failed-login attacker at 20 attempts per
//! second, a new connection per attempt, against nginx behind the release agent with its
//! default configuration, while a benign client on a neighbouring address of the same /24
//! browses and logs in. Per trial (a fresh attacker address each time) it reports the time from
//! the attacker's first request (the kernel's timestamp of it, from the agent's transaction
//! log) to its block being in the map (the agent's `written_ns`), the attempts answered before
//! the kernel refused them (counted by the client), the decision-to-map latency (from the
//! kernel timestamp of the response that crossed the threshold to the block in the map) and
//! the benign requests refused.
//!
//! `cargo run --release -p apisensor-tests --bin block_bench -- [TRIALS]` (as root) prints a
//! markdown section on stdout. `cargo xtask bench` runs it.
use std::{
    fmt::Write as _,
    net::IpAddr,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use apisensor_tests::{
    agent::{self, AgentFiles, PinDir, json_lines},
    lab::Lab,
};

/// Attempts per second.
const RATE: u32 = 20;
/// Attempts per trial at most (3 s at 20 per second).
const ATTEMPTS: u32 = 60;
/// How long one attempt may wait for its answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// What one trial measured.
struct Trial {
    attacker: IpAddr,
    /// First request (kernel time) to block in the map, seconds.
    to_block_s: f64,
    /// Attempts that got an answer.
    answered: u32,
    /// Attempts made.
    attempts: u32,
    /// Crossing response (kernel time) to block in the map, milliseconds.
    decision_to_map_ms: f64,
}

fn main() {
    let trials: u32 = std::env::args()
        .nth(1)
        .map_or(5, |s| s.parse().expect("TRIALS must be a number"));
    assert!((1..=20).contains(&trials), "TRIALS must be 1..=20");
    let (results, benign_sent, benign_refused) = measure(trials);
    print!("{}", report(&results, benign_sent, benign_refused));
}

/// Spawns one attempt from `src` in the background; its output file gets the HTTP status
/// (`000` when there was no answer).
fn attempt(lab: &mut Lab, src: IpAddr, out: &Path, account: &str) -> u32 {
    let ns = lab.client_ns().to_owned();
    let src_s = src.to_string();
    let body = format!("username={account}&password=wrong");
    let max_time = format!("{:.1}", ATTEMPT_TIMEOUT.as_secs_f64());
    lab.spawn(
        &ns,
        "curl",
        &[
            "-s",
            "--interface",
            &src_s,
            "--max-time",
            &max_time,
            "-X",
            "POST",
            "-d",
            &body,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://198.51.100.1:80/login",
        ],
        Some(out),
    )
}

#[expect(clippy::too_many_lines, reason = "one measurement, read top to bottom")]
fn measure(trials: u32) -> (Vec<Trial>, u32, u32) {
    let mut lab = Lab::new("blockb");
    lab.start_nginx(80);
    let pins = PinDir::new("blockbench");
    let cif = lab.client_if().to_owned();
    let client_ns = lab.client_ns().to_owned();
    // One attacker address per trial, in the lab's /24.
    let attackers: Vec<IpAddr> = (0..trials)
        .map(|i| IpAddr::from([198, 51, 100, 20 + u8::try_from(i).expect("trials <= 20")]))
        .collect();
    for a in &attackers {
        let out = lab.run(
            &client_ns,
            "ip",
            &["addr", "add", &format!("{a}/24"), "dev", &cif],
            Duration::from_secs(5),
        );
        assert!(out.status.success(), "ip addr add {a}: {out:?}");
    }
    // The default configuration.
    let files = AgentFiles::in_lab(&lab, 1, "");
    let (tx_log, events) = (files.stdout.clone(), files.events.clone());
    let agent = agent::start(&mut lab, &pins, &files, &["--log-transactions"]);
    let neighbour = IpAddr::from(lab.client_v4_alt());
    let (mut benign_sent, mut benign_refused) = (0_u32, 0_u32);
    let mut results = Vec::new();
    for (t, &attacker) in attackers.iter().enumerate() {
        // The benign neighbour logs in before each trial.
        let out = lab.curl(
            neighbour,
            "http://198.51.100.1:80/login",
            &[
                "-X",
                "POST",
                "-d",
                "username=carol&password=right",
                "-H",
                "X-Test-Login: ok",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ],
            Duration::from_secs(3),
        );
        benign_sent += 1;
        if String::from_utf8_lossy(&out.stdout).trim() != "200" {
            benign_refused += 1;
        }
        let start = Instant::now();
        let mut pending = Vec::new();
        for i in 0..ATTEMPTS {
            let due = start + Duration::from_secs(1) * i / RATE;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            let out = lab.tmp_dir().join(format!("t{t}a{i}.out"));
            let pid = attempt(&mut lab, attacker, &out, &format!("user{i}"));
            pending.push((pid, out));
            // Every fifth attempt, the neighbour browses.
            if i % 5 == 0 {
                let got = lab.status(
                    neighbour,
                    "http://198.51.100.1:80/",
                    &[],
                    Duration::from_millis(500),
                );
                benign_sent += 1;
                if got != Some(200) {
                    benign_refused += 1;
                }
            }
        }
        let deadline = Instant::now() + ATTEMPT_TIMEOUT + Duration::from_secs(5);
        for (pid, _) in &pending {
            while lab.is_running(*pid) {
                assert!(Instant::now() < deadline, "an attempt did not end");
                thread::sleep(Duration::from_millis(10));
            }
        }
        let answered = u32::try_from(
            pending
                .iter()
                .filter(|(_, out)| std::fs::read_to_string(out).unwrap_or_default().trim() == "401")
                .count(),
        )
        .unwrap_or(u32::MAX);
        // The agent's own record: its first transaction from the attacker, and the decision.
        thread::sleep(Duration::from_millis(200));
        let attacker_text = attacker.to_string();
        let first_ns = json_lines(&tx_log)
            .iter()
            .filter(|v| v["client"] == attacker_text.as_str() && v["method"] == "POST")
            .filter_map(|v| v["ts_ns"].as_u64())
            .min()
            .unwrap_or_else(|| panic!("no transaction from {attacker} in the agent's log"));
        let target = format!("{attacker}/32");
        let decision = json_lines(&events)
            .into_iter()
            .find(|e| {
                e["type"] == "decision" && e["action"] == "block" && e["target"] == target.as_str()
            })
            .unwrap_or_else(|| {
                panic!(
                    "no block decision for {attacker}; agent: {}",
                    lab.stderr_of(agent)
                )
            });
        let written = decision["written_ns"]
            .as_u64()
            .unwrap_or_else(|| panic!("block not written: {decision}"));
        let crossed = decision["at_ns"].as_u64().expect("at_ns");
        #[expect(clippy::cast_precision_loss, reason = "durations for display")]
        results.push(Trial {
            attacker,
            to_block_s: written.saturating_sub(first_ns) as f64 / 1e9,
            answered,
            attempts: ATTEMPTS,
            decision_to_map_ms: written.saturating_sub(crossed) as f64 / 1e6,
        });
    }
    let status = lab.stop(agent);
    assert!(
        status.success(),
        "agent exit: {status:?}: {}",
        lab.stderr_of(agent)
    );
    (results, benign_sent, benign_refused)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

fn report(trials: &[Trial], benign_sent: u32, benign_refused: u32) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Closed loop: a failed-login attacker blocked in the kernel\n"
    );
    let _ = writeln!(
        md,
        "In the namespace lab, the release agent with its default configuration on the server's \
         veth, nginx answering `POST /login` with 401. The attacker makes {RATE} attempts per \
         second, each a new curl process and connection, one account per attempt, from a fresh \
         address per trial; the neighbour 198.51.100.3 (same /24) logs in before each trial and \
         fetches `/` after every fifth attempt. *To block*: from the kernel's timestamp of the \
         attacker's first request (the agent's transaction log) to the block in the map (the \
         agent's `written_ns`). *Decision to map*: from the kernel timestamp of the response \
         that crossed the threshold to the block in the map (ring transport, the drain timer \
         (1 ms while records arrive, 5 ms idle), detection, policy and the map write). \
         *Answered*: attempts that got their 401.\n"
    );
    let _ = writeln!(
        md,
        "| trial | attacker | to block (s) | answered / made | decision to map (ms) |"
    );
    let _ = writeln!(md, "|---:|---|---:|---:|---:|");
    for (i, t) in trials.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {:.3} | {} / {} | {:.2} |",
            i + 1,
            t.attacker,
            t.to_block_s,
            t.answered,
            t.attempts,
            t.decision_to_map_ms
        );
    }
    let to_block = median(trials.iter().map(|t| t.to_block_s).collect());
    let answered = median(trials.iter().map(|t| f64::from(t.answered)).collect());
    let d2m = median(trials.iter().map(|t| t.decision_to_map_ms).collect());
    let max_d2m = trials
        .iter()
        .map(|t| t.decision_to_map_ms)
        .fold(0.0, f64::max);
    let pass = |ok: bool| if ok { "PASS" } else { "FAIL" };
    let _ = writeln!(
        md,
        "\n| target | measured (median of {}) | result |",
        trials.len()
    );
    let _ = writeln!(md, "|---|---:|---|");
    let _ = writeln!(
        md,
        "| first request to kernel refusal under 0.4 s | {to_block:.3} s | {} |",
        pass(to_block < 0.4)
    );
    let _ = writeln!(
        md,
        "| at most 6 attempts answered | {answered:.0} | {} |",
        pass(answered <= 6.0)
    );
    let _ = writeln!(
        md,
        "| decision to map under 10 ms (here the worst of the trials, not a p99) | {max_d2m:.2} ms (median {d2m:.2} ms) | {} |",
        pass(max_d2m < 10.0)
    );
    let _ = writeln!(
        md,
        "| benign neighbour never refused | {benign_refused} of {benign_sent} refused | {} |",
        pass(benign_refused == 0)
    );
    let _ = writeln!(
        md,
        "\nReproduce: `cargo run --release -p apisensor-tests --bin block_bench -- {}` (as root), \
         or `cargo xtask bench`.",
        trials.len()
    );
    md
}
