//! The attacks, each with the real tool where one exists (hydra, ffuf, wrk) and the lab's own
//! client otherwise. Every loop is bounded in count and by the traffic's deadline; a tool is
//! bounded by its own limits and by [`Testbed::run_tool`]'s timeout, and is stopped a few
//! seconds after the kernel blocked its source (it would only wait on dropped packets).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::thread;
use std::time::{Duration, Instant};

use super::client::{Outcome, Request};
use super::measure::BlockMonitor;
use super::topology::Testbed;
use super::traffic::{Rng, Role, Traffic};

/// How long a tool goes on after its source was blocked (to see its attempts refused).
const AFTER_BLOCK: Duration = Duration::from_secs(4);
/// Consecutive refused attempts after which the lab's own attackers give up.
const GIVE_UP_AFTER: u32 = 4;
/// The single attacking address of the lab's own clients.
pub const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 20));
/// A scripted client's user agent.
const SCRIPT_AGENT: &str = "python-requests/2.31.0";

/// What an attack did, for the measurement.
#[derive(Debug, Default)]
pub struct AttackRun {
    /// Its first request, Unix ns (a tool's start).
    pub started_ns: u64,
    /// When it ended.
    pub ended_ns: u64,
    /// The tool, if a real tool ran.
    pub tool: Option<&'static str>,
    /// What the tool printed that matters (its summary line), for the notes.
    pub tool_summary: Option<String>,
}

/// The distributed stuffing's 120 addresses: 40 in each IPv4 documentation /24 and 40 over
/// four IPv6 /64s of one /48.
pub fn distributed_sources() -> Vec<IpAddr> {
    let mut out = Vec::new();
    for i in 0..40_u8 {
        out.push(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 100 + i)));
        out.push(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 100 + i)));
        out.push(IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0xbad,
            u16::from(i % 4),
            0,
            0,
            0,
            0x10 + u16::from(i),
        )));
    }
    out
}

/// A scripted client's headers.
fn script_headers() -> Vec<(String, String)> {
    vec![
        ("User-Agent".into(), SCRIPT_AGENT.into()),
        ("Accept-Encoding".into(), "gzip, deflate".into()),
        ("Accept".into(), "*/*".into()),
    ]
}

/// hydra's form brute force on one account's password (`http-post-form`, failures told by the
/// 403 body), from the primary client address.
///
/// # Panics
///
/// If the password list cannot be written.
pub fn hydra(bed: &mut Testbed, monitor: &BlockMonitor) -> AttackRun {
    let passwords: Vec<String> = (0..300).map(|i| format!("Summer{i:03}!")).collect();
    let list = bed.write_list("passwords.txt", &passwords);
    let list = list.to_str().expect("lab paths are UTF-8").to_owned();
    let server = bed.lab.server_v4().to_string();
    let src = [bed.tool_source()];
    // `-I` ignores a restore file, `-t 4` tasks, `-w`/`-W` bound its waits.
    let run = bed.run_tool(
        "hydra",
        &[
            "-I",
            "-l",
            "user0500",
            "-P",
            &list,
            "-s",
            "80",
            "-t",
            "4",
            "-w",
            "5",
            "-W",
            "0",
            &server,
            "http-post-form",
            "/login:username=^USER^&password=^PASS^:F=invalid credentials",
        ],
        Duration::from_mins(1),
        &mut || monitor.blocked_for(&src, AFTER_BLOCK),
    );
    let summary = run
        .stdout
        .lines()
        .find(|l| l.contains("valid password"))
        .map(str::to_owned);
    AttackRun {
        started_ns: run.started_ns,
        ended_ns: run.ended_ns,
        tool: Some("hydra"),
        tool_summary: summary,
    }
}

/// ffuf's content discovery with a generated word list (a few words the API serves).
///
/// # Panics
///
/// If the word list cannot be written.
pub fn ffuf(bed: &mut Testbed, monitor: &BlockMonitor) -> AttackRun {
    let mut words: Vec<String> = ["health", "login", "search", "me", "logout", "notifications"]
        .map(str::to_owned)
        .to_vec();
    let stems = [
        "admin", "backup", "config", "api", "old", "test", "dev", "static", "private", ".git",
    ];
    for i in 0..400 {
        words.push(format!("{}{}", stems[i % stems.len()], i / stems.len()));
    }
    let list = bed.write_list("words.txt", &words);
    let list = list.to_str().expect("lab paths are UTF-8").to_owned();
    let url = format!("{}/FUZZ", bed.base_url());
    let src = [bed.tool_source()];
    let run = bed.run_tool(
        "ffuf",
        &[
            "-u", &url, "-w", &list, "-t", "10", "-p", "0.01", "-maxtime", "50", "-timeout", "3",
            "-s",
        ],
        Duration::from_mins(1),
        &mut || monitor.blocked_for(&src, AFTER_BLOCK),
    );
    let found = run.stdout.lines().filter(|l| !l.trim().is_empty()).count();
    AttackRun {
        started_ns: run.started_ns,
        ended_ns: run.ended_ns,
        tool: Some("ffuf"),
        tool_summary: Some(format!("ffuf matched {found} paths")),
    }
}

/// A wrk flood on one item for 30 s (2 threads, 16 connections).
pub fn flood(bed: &mut Testbed, monitor: &BlockMonitor) -> AttackRun {
    let url = format!("{}/items/7", bed.base_url());
    let src = [bed.tool_source()];
    let run = bed.run_tool(
        "wrk",
        &["-t", "2", "-c", "16", "-d", "30s", "--timeout", "2s", &url],
        Duration::from_secs(40),
        &mut || monitor.blocked_for(&src, AFTER_BLOCK),
    );
    let summary = run
        .stdout
        .lines()
        .find(|l| l.contains("requests in"))
        .map(|l| l.trim().to_owned());
    AttackRun {
        started_ns: run.started_ns,
        ended_ns: run.ended_ns,
        tool: Some("wrk"),
        tool_summary: summary,
    }
}

/// Runs `body` on a thread in the client namespace and returns the attack's span.
fn on_client(t: &Traffic, body: impl FnOnce(&Traffic) + Send + 'static) -> AttackRun {
    let started_ns = sensor_user::clock::unix_ns();
    let t2 = t.clone();
    let handle = thread::spawn(move || {
        t2.enter();
        body(&t2);
    });
    let _ = handle.join();
    AttackRun {
        started_ns,
        ended_ns: sensor_user::clock::unix_ns(),
        ..AttackRun::default()
    }
}

/// Sends requests from `src` made by `next(i)` every `interval` (fixed, from the start), at
/// most `count`, until `GIVE_UP_AFTER` in a row are refused.
fn steady(
    t: &Traffic,
    actor: &'static str,
    src: IpAddr,
    count: u32,
    interval: Duration,
    mut next: impl FnMut(u32) -> Request,
) {
    let start = Instant::now();
    let mut refused = 0;
    for i in 0..count {
        let at = start + interval * i;
        if let Some(wait) = at.checked_duration_since(Instant::now())
            && !t.pause(wait)
        {
            return;
        }
        if t.over() {
            return;
        }
        match t.send(actor, Role::Attack, src, &next(i)) {
            Outcome::Answered { .. } => refused = 0,
            Outcome::Refused(_) => refused += 1,
        }
        if refused >= GIVE_UP_AFTER {
            return;
        }
    }
}

/// Credential stuffing from one address: a list of 400 leaked pairs, one in eight still valid
/// (so the accounts logged into add up too: account aggregation), five a second.
pub fn stuffing(t: &Traffic) -> AttackRun {
    on_client(t, |t| {
        steady(
            t,
            "stuffing",
            ATTACKER,
            400,
            Duration::from_millis(200),
            |i| {
                let account = 100 + i;
                let password = if i % 8 == 0 {
                    format!("pw-{account:04}")
                } else {
                    format!("Leaked-{i}")
                };
                Request::post_form(
                    "/login",
                    script_headers(),
                    format!("username=user{account:04}&password={password}"),
                )
            },
        );
    })
}

/// Distributed stuffing over [`distributed_sources`]: sources start 200 ms apart, each sending
/// one to three failed logins 700 ms apart on accounts of its own, with one program.
pub fn distributed(t: &Traffic) -> AttackRun {
    on_client(t, |t| {
        let sources = distributed_sources();
        let mut handles = Vec::new();
        for (k, src) in sources.into_iter().enumerate() {
            if !t.pause(if k == 0 {
                Duration::ZERO
            } else {
                Duration::from_millis(200)
            }) {
                break;
            }
            let t2 = t.clone();
            handles.push(thread::spawn(move || {
                for n in 0..=(k % 3) {
                    if n > 0 && !t2.pause(Duration::from_millis(700)) {
                        return;
                    }
                    let account = 600 + k * 3 + n;
                    let req = Request::post_form(
                        "/login",
                        script_headers(),
                        format!("username=user{account:04}&password=Leaked-{k}-{n}"),
                    );
                    t2.send("distributed", Role::Attack, src, &req);
                }
            }));
        }
        for h in handles {
            let _ = h.join();
        }
    })
}

/// Scraping: one item after the other, every 200 ms.
pub fn scraping(t: &Traffic) -> AttackRun {
    on_client(t, |t| {
        steady(
            t,
            "scraper",
            ATTACKER,
            300,
            Duration::from_millis(200),
            |i| Request::get(format!("/items/{}", i + 1), script_headers()),
        );
    })
}

/// Session rotation: every request carries a session cookie never seen before (random item
/// pages and searches, four a second).
pub fn session_rotation(t: &Traffic) -> AttackRun {
    on_client(t, |t| {
        let mut rng = Rng::new(7);
        steady(
            t,
            "sessions",
            ATTACKER,
            180,
            Duration::from_millis(250),
            |i| {
                let mut headers = script_headers();
                headers.push((
                    "Cookie".into(),
                    format!("session={:016x}{:016x}", rng.next_u64(), rng.next_u64()),
                ));
                let path = if i % 2 == 0 {
                    format!("/items/{}", 1 + rng.below(9000))
                } else {
                    "/notifications".to_owned()
                };
                Request::get(path, headers)
            },
        );
    })
}

/// User agents a rotating client draws from.
const AGENTS: [&str; 8] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/125.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "curl/8.5.0",
    "Go-http-client/1.1",
    "okhttp/4.12.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36",
];

/// Fingerprint rotation: user agent, header set and header order change on every request
/// (random item pages and searches, four a second).
pub fn fingerprint_rotation(t: &Traffic) -> AttackRun {
    on_client(t, |t| {
        let mut rng = Rng::new(11);
        steady(
            t,
            "shapes",
            ATTACKER,
            180,
            Duration::from_millis(250),
            |i| {
                let mut headers: Vec<(String, String)> = vec![
                    ("User-Agent".into(), (*rng.pick(&AGENTS)).into()),
                    ("Accept".into(), "*/*".into()),
                    (
                        "Accept-Language".into(),
                        (*rng.pick(&["en-US", "de", "fr-FR,fr;q=0.9", "es"])).into(),
                    ),
                    ("Accept-Encoding".into(), "gzip".into()),
                    ("Cache-Control".into(), "no-cache".into()),
                    ("X-Requested-With".into(), "XMLHttpRequest".into()),
                ];
                // A random subset of at least two headers, in a random order.
                let keep = 2 + rng.below(headers.len() as u64 - 1) as usize;
                for k in (1..headers.len()).rev() {
                    headers.swap(k, rng.below(k as u64 + 1) as usize);
                }
                headers.truncate(keep);
                let path = if i % 2 == 0 {
                    format!("/items/{}", 1 + rng.below(9000))
                } else {
                    format!("/search?q={}", rng.pick(&["lamp", "desk", "blue", "mug"]))
                };
                Request::get(path, headers)
            },
        );
    })
}

/// A slow brute force on one account: one failed login every 20 s (three a minute, below the
/// per-minute threshold), for up to `attempts`.
pub fn slow_bruteforce(t: &Traffic, attempts: u32) -> AttackRun {
    on_client(t, move |t| {
        steady(
            t,
            "slow-bf",
            ATTACKER,
            attempts,
            Duration::from_secs(20),
            |i| {
                Request::post_form(
                    "/login",
                    script_headers(),
                    format!("username=user0700&password=Autumn{i:03}"),
                )
            },
        );
    })
}
