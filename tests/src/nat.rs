//! The shared-address run, shared by its end-to-end test and its benchmark: six users and a
//! credential stuffer share one client address, as an office behind NAT does (what the server
//! sees of a NAT: one address, each client's own connections and request shapes), in front of
//! the sample API (its login answering in about 50 ms, as password hashing does) and the real
//! agent with its default configuration. The users browse and log in with a browser's header
//! set; the stuffer's script fails to log in, a new connection per attempt, five a second.
//!
//! The agent must block the stuffer by connection, not the address: after its decision, every
//! attempt's request is matched as it arrives and its connection dropped before the answer,
//! while every user request is served.
use std::{
    net::IpAddr,
    path::PathBuf,
    process::Child,
    thread,
    time::{Duration, Instant},
};

use crate::{
    agent::{self, AgentFiles, PinDir, json_lines},
    flight::{Flight, Flights},
    lab::Lab,
};

/// The stuffer's program.
const BOT_AGENT: &str = "python-requests/2.32.3";
/// The users' browser.
const BROWSER: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36";
/// Users behind the address.
const USERS: usize = 6;
/// How long the users browse before the stuffer starts, and with it.
const WARM_UP: Duration = Duration::from_secs(6);
/// See [`WARM_UP`].
const ATTACK: Duration = Duration::from_secs(20);
/// Spacing of the stuffer's attempts.
const NEXT_ATTEMPT: Duration = Duration::from_millis(200);
/// Spacing of one user's requests (plus up to as much again of jitter).
const NEXT_CLICK: Duration = Duration::from_millis(500);
/// The sample API's port (monitored by the default configuration).
const PORT: u16 = 80;

/// What one run measured.
#[derive(Debug)]
pub struct Report {
    /// Seconds from the stuffer's first attempt to the agent's decision on the address.
    pub decided_after_s: f64,
    /// How the decision is enforced (`connection` expected).
    pub enforcement: String,
    /// The stuffer's attempts before the decision, and how many were answered.
    pub attempts_before: usize,
    /// See `attempts_before`.
    pub answered_before: usize,
    /// Attempts started after the decision, and how many were answered.
    pub attempts_after: usize,
    /// See `attempts_after`.
    pub answered_after: usize,
    /// Connections the agent blocked, one decision each.
    pub connections_blocked: usize,
    /// The users' requests, and how many were served.
    pub user_requests: usize,
    /// See `user_requests`.
    pub users_served: usize,
    /// Responses the kernel dropped at egress, and client segments it dropped at ingress, on
    /// blocked connections.
    pub tc_drops: u64,
    /// See `tc_drops`.
    pub xdp_drops: u64,
    /// Whether the address itself was ever blocked.
    pub address_blocked: bool,
}

/// A deterministic jitter in `0..span` ms for event `i` of stream `seed`.
fn jitter_ms(seed: u64, i: u64, span: u64) -> u64 {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 29;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 32)) % span.max(1)
}

/// Starts user `u`'s `n`th request: pages, searches, notifications with its session, and a
/// login every fourth request (its cookie jar keeps the session).
fn user_request(lab: &Lab, src: IpAddr, server: &str, jar: &str, u: usize, n: u64) -> Child {
    let src_s = src.to_string();
    let item = format!("{server}/items/{}", 1 + jitter_ms(u as u64, n, 9000));
    let search = format!("{server}/search?q=report{}", n % 7);
    let login = format!("{server}/login");
    let body = format!("username=user{u:04}&password=pw-{u:04}");
    let notes = format!("{server}/notifications");
    let mut args = vec![
        "-sS",
        "--interface",
        &src_s,
        "--max-time",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-A",
        BROWSER,
        "-H",
        "Accept-Language: en-US,en;q=0.9",
        "-H",
        "Accept: text/html,application/json",
        "-b",
        jar,
        "-c",
        jar,
    ];
    match n % 4 {
        0 => args.extend_from_slice(&["-X", "POST", "-d", &body, &login]),
        1 => args.push(&item),
        2 => args.push(&search),
        _ => args.push(&notes),
    }
    lab.start_in_client("curl", &args)
}

/// Starts the stuffer's `n`th attempt: a failed login, on a connection of its own.
fn attempt(lab: &Lab, src: IpAddr, server: &str, n: u64) -> Child {
    let src_s = src.to_string();
    let login = format!("{server}/login");
    let body = format!("username=user{:04}&password=Summer2026!{n}", 100 + n);
    // A refused attempt never completes: it gives up after two seconds.
    lab.start_in_client(
        "curl",
        &[
            "-sS",
            "--interface",
            &src_s,
            "--max-time",
            "2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-A",
            BOT_AGENT,
            "-H",
            "Accept: */*",
            "-X",
            "POST",
            "-d",
            &body,
            &login,
        ],
    )
}

/// The HTTP status curl printed, 0 when nothing was answered.
fn status(child: Child) -> u16 {
    child
        .wait_with_output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0)
}

/// The kernel counter `name` of the agent's maps.
fn counter(pin: &PinDir, name: &str) -> u64 {
    let out = std::process::Command::new(crate::apisensor_bin())
        .args(["stats", "--json", "--pin-dir", pin.as_str()])
        .output()
        .expect("apisensor stats");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v[name].as_u64().unwrap_or(0)
}

/// Runs the scenario in a lab tagged `tag` and reports what it measured.
///
/// # Panics
///
/// If the lab, the sample API or the agent cannot be set up, a user cannot log in before the
/// attack, or the agent made no decision on the address.
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
pub fn run(tag: &str) -> Report {
    let mut lab = Lab::new(tag);
    lab.start_sample_api(PORT, &["--login-delay-ms", "50"]);
    let server = format!("http://{}:{PORT}", lab.server_v4());
    let nat = IpAddr::V4(lab.client_v4());
    let pin = PinDir::new(tag);
    let files = AgentFiles::in_lab(&lab, 1, "");
    let agent = agent::start(&mut lab, &pin, &files, &[]);
    let jars: Vec<String> = (0..USERS)
        .map(|u| {
            let p: PathBuf = lab.tmp_dir().join(format!("jar{u}"));
            p.to_str().expect("UTF-8 lab paths").to_owned()
        })
        .collect();

    // The schedule: each user clicks every 0.5 to 1 s for the whole run, the stuffer tries
    // every 200 ms once the warm-up is over.
    let total = WARM_UP + ATTACK;
    let mut schedule: Vec<(Duration, Option<usize>, u64)> = Vec::new();
    for u in 0..USERS {
        let mut at = Duration::from_millis(jitter_ms(99, u as u64, 500));
        let mut n = 0;
        while at < total {
            schedule.push((at, Some(u), n));
            n += 1;
            at += NEXT_CLICK + Duration::from_millis(jitter_ms(u as u64, n, 500));
        }
    }
    let attempts = (ATTACK.as_millis() / NEXT_ATTEMPT.as_millis()) as u64;
    for n in 0..attempts {
        schedule.push((WARM_UP + NEXT_ATTEMPT * n as u32, None, n));
    }
    schedule.sort_by_key(|s| s.0);
    let start = Instant::now();
    let mut flights = Flights(Vec::new());
    for (at, who, n) in schedule {
        if let Some(wait) = (start + at).checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let child = match who {
            Some(u) => user_request(&lab, nat, &server, &jars[u], u, n),
            None => attempt(&lab, nat, &server, n),
        };
        flights.0.push(Flight {
            src: nat,
            started: Instant::now(),
            attack: who.is_none(),
            child,
        });
    }
    let mut results = Vec::new();
    for f in std::mem::take(&mut flights.0) {
        results.push((f.started, f.attack, status(f.child)));
    }

    // The decision on the address, and the connections it blocked.
    let events = json_lines(&files.events);
    let decisions: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["type"] == "decision" && e["action"] == "block")
        .collect();
    let first = decisions
        .iter()
        .find(|e| e["target"] == format!("{nat}/32"))
        .unwrap_or_else(|| panic!("no decision on {nat}; agent: {}", lab.stderr_of(agent)));
    let decided_ns = first["at_ns"].as_u64().expect("at_ns");
    let wall_at_decision = {
        // Event times are the requests' kernel times (Unix ns); map to this clock.
        let now_unix = sensor_user::clock::unix_ns();
        let ago = Duration::from_nanos(now_unix.saturating_sub(decided_ns));
        Instant::now().checked_sub(ago).expect("clock")
    };
    // The attempt whose answer made the decision was sent a moment before it.
    let margin = Duration::from_millis(50);
    let before: Vec<u16> = results
        .iter()
        .filter(|r| r.1 && r.0 < wall_at_decision)
        .map(|r| r.2)
        .collect();
    let after: Vec<u16> = results
        .iter()
        .filter(|r| r.1 && r.0 > wall_at_decision + margin)
        .map(|r| r.2)
        .collect();
    let users: Vec<u16> = results.iter().filter(|r| !r.1).map(|r| r.2).collect();
    for (started, _, code) in results.iter().filter(|r| !r.1 && r.2 == 0) {
        eprintln!(
            "user request at {:?} not served ({code})",
            started.duration_since(start)
        );
    }
    let connections_blocked = decisions
        .iter()
        .filter(|e| {
            e["enforcement"] == "connection" && e["flows"].as_array().is_some_and(|f| !f.is_empty())
        })
        .count();
    let address_blocked = decisions
        .iter()
        .any(|e| e["target"] == format!("{nat}/32") && e["enforcement"] == "kernel");
    let first_attempt = start + WARM_UP;
    Report {
        decided_after_s: wall_at_decision
            .saturating_duration_since(first_attempt)
            .as_secs_f64(),
        enforcement: first["enforcement"].as_str().unwrap_or("?").to_owned(),
        attempts_before: before.len(),
        answered_before: before.iter().filter(|c| **c != 0).count(),
        attempts_after: after.len(),
        answered_after: after.iter().filter(|c| **c != 0).count(),
        connections_blocked,
        user_requests: users.len(),
        users_served: users.iter().filter(|c| (200..400).contains(*c)).count(),
        tc_drops: counter(&pin, "tc_drop_flow_block"),
        xdp_drops: counter(&pin, "xdp_drop_flow_block"),
        address_blocked,
    }
}
