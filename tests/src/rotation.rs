//! The rotation run, shared by its end-to-end test and its benchmark: a credential-stuffing run
//! rotating over 200 addresses, 75 in each of two IPv4 /24s and 50 IPv6 addresses, each sending
//! one to three failed logins on accounts of its own with one program (one request fingerprint),
//! over 30 s, while five users in the same /24s, there from the start, log in and browse, in
//! front of the real agent with its default configuration.
use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    process::Child,
    thread,
    time::{Duration, Instant},
};

use crate::{
    agent::{self, AgentFiles, PinDir, json_lines},
    flight::{Flight, Flights},
    lab::Lab,
};

/// The attack's program: its user agent and header order never change.
const BOT_AGENT: &str = "python-requests/2.31.0";
/// The users' browser.
const BROWSER: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36";
/// Spacing of the attackers' first attempts, and of one attacker's attempts.
const NEXT_SOURCE: Duration = Duration::from_millis(150);
/// See [`NEXT_SOURCE`].
const NEXT_ATTEMPT: Duration = Duration::from_millis(700);

/// Starts curl from `src`: a failed login (the attack) or a user's request.
fn launch(lab: &Lab, server: Ipv4Addr, src: IpAddr, attack: bool, n: usize) -> Flight {
    let src_s = src.to_string();
    let url_login = format!("http://{server}/login");
    // Users browse a few pages, not a walk through identifiers (that is enumeration).
    let page = ["/", "/users/42", "/big", "/users/7", "/chunked"][n % 5];
    let url_page = format!("http://{server}{page}");
    let body = format!("username=victim{n}&password=guess");
    // A refused request never completes: the attempts give up after a second, the users (whose
    // requests must all complete, on a loaded machine too) after five.
    let max_time = if attack { "1" } else { "5" };
    let mut args = vec![
        "-sS",
        "--interface",
        &src_s,
        "--max-time",
        max_time,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ];
    if attack {
        args.extend_from_slice(&["-A", BOT_AGENT, "-X", "POST", "-d", &body, &url_login]);
    } else {
        args.extend_from_slice(&["-A", BROWSER, "-H", "Accept-Language: en-US", &url_page]);
    }
    Flight {
        src,
        started: Instant::now(),
        attack,
        child: lab.start_in_client("curl", &args),
    }
}

/// Whether a finished request was answered.
fn answered(child: Child) -> bool {
    child
        .wait_with_output()
        .is_ok_and(|o| o.status.success() && o.stdout.first().is_some_and(|b| *b != b'0'))
}

/// What one run measured.
#[derive(Debug)]
pub struct Report {
    /// Seconds from the run's start to the campaign's first block decision.
    pub decided_after_s: f64,
    /// Distinct attacking sources that had tried before it.
    pub sources_before: usize,
    /// Attempts started after it, and how many of them were answered.
    pub attempts_after: usize,
    /// See `attempts_after`.
    pub answered_after: usize,
    /// Attempts in all, and answered in all.
    pub attempts: usize,
    /// See `attempts`.
    pub answered: usize,
    /// Users' requests, and how many were refused.
    pub user_requests: usize,
    /// See `user_requests`.
    pub users_refused: usize,
    /// Prefixes blocked for the campaign, with the sources spared in each.
    pub prefixes: Vec<(String, usize)>,
}

/// Runs the scenario in a lab tagged `tag` and reports what it measured.
///
/// # Panics
///
/// If the lab or the agent cannot be set up, or the agent made no campaign block.
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
pub fn run(tag: &str) -> Report {
    let mut lab = Lab::new(tag);
    lab.start_nginx(80);
    let server = lab.server_v4();
    let mut attackers: Vec<IpAddr> = Vec::new();
    for i in 0..75_u8 {
        attackers.push(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 100 + i)));
        attackers.push(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 100 + i)));
    }
    for i in 0..50_u16 {
        attackers.push(IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0xbad,
            i % 4,
            0,
            0,
            0,
            0x10 + i,
        )));
    }
    let users: Vec<IpAddr> = vec![
        IpAddr::V4(lab.client_v4()),
        IpAddr::V4(lab.client_v4_alt()),
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10)),
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)),
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 11)),
    ];
    // Every address but the lab's own two client addresses goes on the client's veth.
    for a in attackers.iter().chain(&users[2..]) {
        lab.add_client_address_on_link(*a, if a.is_ipv4() { 24 } else { 48 });
    }
    let pin = PinDir::new(tag);
    let files = AgentFiles::in_lab(&lab, 1, "");
    let agent = agent::start(&mut lab, &pin, &files, &[]);

    // The users log in (a session cookie each, though curl does not keep it) and browse.
    for (n, u) in users.iter().enumerate() {
        let out = lab.curl(
            *u,
            &format!("http://{server}/login"),
            &[
                "-A",
                BROWSER,
                "-H",
                "Accept-Language: en-US",
                "-H",
                "X-Test-Login: ok",
                "-X",
                "POST",
                "-d",
                &format!("username=user{n}&password=right"),
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ],
            Duration::from_secs(3),
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "200",
            "user {u} logs in"
        );
    }
    thread::sleep(Duration::from_secs(2));

    // The run: attacker k starts at k * 150 ms (the two /24s and the IPv6 addresses taking
    // turns), with 1 to 3 attempts 700 ms apart; the users browse every second.
    let order: Vec<IpAddr> = {
        let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = attackers.iter().partition(|a| a.is_ipv4());
        let mut out = Vec::new();
        let mut v6 = v6.into_iter();
        for (i, a) in v4.into_iter().enumerate() {
            out.push(a);
            if i % 3 == 2
                && let Some(b) = v6.next()
            {
                out.push(b);
            }
        }
        out.extend(v6);
        out
    };
    let mut schedule: Vec<(Duration, IpAddr, bool, usize)> = Vec::new();
    for (k, a) in order.iter().enumerate() {
        for n in 0..=(k % 3) {
            let at = NEXT_SOURCE * u32::try_from(k).expect("k")
                + NEXT_ATTEMPT * u32::try_from(n).expect("n");
            schedule.push((at, *a, true, k * 3 + n));
        }
    }
    for s in 0..32_u32 {
        for (n, u) in users.iter().enumerate() {
            schedule.push((Duration::from_secs(u64::from(s)), *u, false, n + s as usize));
        }
    }
    schedule.sort_by_key(|s| s.0);
    let start = Instant::now();
    let mut flights = Flights(Vec::new());
    for (at, src, attack, n) in schedule {
        if let Some(wait) = (start + at).checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        flights.0.push(launch(&lab, server, src, attack, n));
    }
    let mut results = Vec::new();
    for f in std::mem::take(&mut flights.0) {
        results.push((f.src, f.started, f.attack, answered(f.child)));
    }

    // The campaign's first block decision.
    let events = json_lines(&files.events);
    let blocks: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["type"] == "decision" && e["action"] == "block")
        .collect();
    let first = blocks
        .iter()
        .find(|e| {
            e["findings"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f["detector"] == "campaign_member"))
        })
        .unwrap_or_else(|| panic!("no campaign block; agent: {}", lab.stderr_of(agent)));
    let decided_ns = first["at_ns"].as_u64().expect("at_ns");
    let wall_at_decision = {
        // Event times are the requests' kernel times (Unix ns); map to this clock.
        let now_unix = sensor_user::clock::unix_ns();
        let ago = Duration::from_nanos(now_unix.saturating_sub(decided_ns));
        Instant::now().checked_sub(ago).expect("clock")
    };
    let before: BTreeSet<IpAddr> = results
        .iter()
        .filter(|r| r.2 && r.1 < wall_at_decision)
        .map(|r| r.0)
        .collect();
    let after: Vec<bool> = results
        .iter()
        .filter(|r| r.2 && r.1 > wall_at_decision + Duration::from_millis(50))
        .map(|r| r.3)
        .collect();
    let users_refused = results.iter().filter(|r| !r.2 && !r.3).count();
    for u in &users {
        let refused = results.iter().filter(|r| !r.2 && !r.3 && r.0 == *u).count();
        if refused > 0 {
            eprintln!("user {u}: {refused} requests refused");
        }
    }
    let prefixes = blocks
        .iter()
        .filter(|e| e["findings"][0]["detector"] == "campaign_prefix" && e["renewal"] != true)
        .map(|e| {
            let spared = e["exceptions"].as_array().map_or(0, Vec::len);
            (e["target"].as_str().unwrap_or("?").to_owned(), spared)
        })
        .collect();
    for e in events.iter().filter(|e| {
        e["type"] == "decision" && e["entity"]["kind"] == "prefix" && e["renewal"] != true
    }) {
        eprintln!(
            "prefix decision: {} {} refused {} notes {}",
            e["action"], e["target"], e["refused"], e["notes"]
        );
    }
    let attacks: Vec<_> = results.iter().filter(|r| r.2).collect();
    Report {
        decided_after_s: wall_at_decision.duration_since(start).as_secs_f64(),
        sources_before: before.len(),
        attempts_after: after.len(),
        answered_after: after.iter().filter(|a| **a).count(),
        attempts: attacks.len(),
        answered: attacks.iter().filter(|r| r.3).count(),
        user_requests: results.iter().filter(|r| !r.2).count(),
        users_refused,
        prefixes,
    }
}
