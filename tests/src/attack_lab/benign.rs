//! The benign actors that run alongside every scenario, so "benign refused" is measured in
//! each: people who browse and log in with human timing (some mistype their password first),
//! an office of users behind one address (browser-like header sets, a session each), a
//! perfectly regular health checker, a chatty app polling its notifications with a session,
//! and a slow crawler. Each is a thread that stops when the traffic is over.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::client::{Outcome, Request};
use super::traffic::{Rng, Role, Traffic};

/// People browsing from addresses of their own: one per documentation prefix.
pub const HUMANS: [IpAddr; 3] = [
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10)),
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x10)),
];
/// The office's one public address (a NAT).
pub const OFFICE: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 50));
/// Users in the office.
pub const OFFICE_USERS: u32 = 12;
/// The health checker.
pub const HEALTH: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 60));
/// The polling app.
pub const POLLER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 61));
/// The slow crawler.
pub const CRAWLER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 70));

/// Every benign source address, for the lab's address plan and the measurement.
pub fn sources() -> Vec<IpAddr> {
    let mut all = HUMANS.to_vec();
    all.extend([OFFICE, HEALTH, POLLER, CRAWLER]);
    all
}

/// Browser-like header sets (name and value in a browser's order), one per user.
const BROWSERS: [&[(&str, &str)]; 3] = [
    &[
        (
            "User-Agent",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
        ),
        (
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("Accept-Encoding", "gzip, deflate"),
        ("Accept-Language", "en-US,en;q=0.9"),
    ],
    &[
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("Accept-Language", "de-DE,de;q=0.8,en-US;q=0.5,en;q=0.3"),
        ("Accept-Encoding", "gzip, deflate"),
    ],
    &[
        (
            "User-Agent",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
        ),
        (
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("Accept-Language", "fr-FR,fr;q=0.9"),
        ("Accept-Encoding", "gzip, deflate"),
    ],
];

/// Bound on any actor's rounds (the deadline ends them long before).
const MAX_ROUNDS: u32 = 3600;

/// Words people search for.
const WORDS: [&str; 8] = [
    "lamp", "chair", "blue", "desk", "red", "table", "green", "mug",
];

/// A browser's headers, with the session cookie if there is one.
fn browser_headers(browser: usize, session: Option<&str>) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = BROWSERS[browser % BROWSERS.len()]
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    if let Some(s) = session {
        h.push(("Cookie".into(), s.to_owned()));
    }
    h
}

/// Starts every benign actor; join the handles after [`Traffic::stop`].
pub fn start(traffic: &Traffic) -> Vec<JoinHandle<()>> {
    let mut handles = Vec::new();
    for (i, src) in HUMANS.iter().enumerate() {
        let t = traffic.clone();
        let src = *src;
        handles.push(thread::spawn(move || {
            t.enter();
            person(
                &t,
                "human",
                src,
                i as u32,
                i,
                Rng::new(100 + i as u64),
                1_000,
            );
        }));
    }
    for u in 0..OFFICE_USERS {
        let t = traffic.clone();
        handles.push(thread::spawn(move || {
            t.enter();
            // Office users start a little apart, as people arrive.
            if !t.pause(Duration::from_millis(250 * u64::from(u))) {
                return;
            }
            person(
                &t,
                "office",
                OFFICE,
                10 + u,
                u as usize,
                Rng::new(200 + u64::from(u)),
                2_000,
            );
        }));
    }
    let t = traffic.clone();
    handles.push(thread::spawn(move || {
        t.enter();
        health_checker(&t);
    }));
    let t = traffic.clone();
    handles.push(thread::spawn(move || {
        t.enter();
        poller(&t, 40);
    }));
    let t = traffic.clone();
    handles.push(thread::spawn(move || {
        t.enter();
        crawler(&t);
    }));
    handles
}

/// A person using account `account`: opens the login page, logs in (mistyping the password
/// first one time in five), browses a few pages with think times of `think_ms` to four times
/// that, logs out, and starts over.
fn person(
    t: &Traffic,
    actor: &'static str,
    src: IpAddr,
    account: u32,
    browser: usize,
    mut rng: Rng,
    think_ms: u64,
) {
    let name = format!("user{account:04}");
    for _ in 0..MAX_ROUNDS {
        if t.over() {
            return;
        }
        let page = Request::get("/login", browser_headers(browser, None));
        t.send(actor, Role::Benign, src, &page);
        if !t.pause(rng.millis(think_ms, think_ms * 3)) {
            return;
        }
        if rng.chance(20) {
            let typo = Request::post_form(
                "/login",
                browser_headers(browser, None),
                format!("username={name}&password=pw-{account:04}x"),
            );
            t.send(actor, Role::Benign, src, &typo);
            if !t.pause(rng.millis(think_ms, think_ms * 3)) {
                return;
            }
        }
        let login = Request::post_form(
            "/login",
            browser_headers(browser, None),
            format!("username={name}&password=pw-{account:04}"),
        );
        let session = match t.send(actor, Role::Benign, src, &login) {
            Outcome::Answered { session, .. } => session,
            Outcome::Refused(_) => None,
        };
        let pages = 3 + rng.below(6);
        for _ in 0..pages {
            if !t.pause(rng.millis(think_ms, think_ms * 4)) {
                return;
            }
            let path = match rng.below(4) {
                0 => format!("/items/{}", 1 + rng.below(5000)),
                1 => format!("/search?q={}", rng.pick(&WORDS)),
                2 => "/me".to_owned(),
                _ => "/notifications".to_owned(),
            };
            let req = Request::get(path, browser_headers(browser, session.as_deref()));
            t.send(actor, Role::Benign, src, &req);
        }
        let logout = Request::get("/logout", browser_headers(browser, session.as_deref()));
        t.send(actor, Role::Benign, src, &logout);
        if !t.pause(rng.millis(think_ms * 2, think_ms * 5)) {
            return;
        }
    }
}

/// `GET /health` every second on the second, as a load balancer's probe does.
fn health_checker(t: &Traffic) {
    let start = Instant::now();
    let headers = vec![("User-Agent".to_owned(), "kube-probe/1.30".to_owned())];
    let req = Request::get("/health", headers);
    for n in 0..MAX_ROUNDS {
        let at = start + Duration::from_secs(1) * n;
        if let Some(wait) = at.checked_duration_since(Instant::now())
            && !t.pause(wait)
        {
            return;
        }
        if t.over() {
            return;
        }
        t.send("health", Role::Benign, HEALTH, &req);
    }
}

/// A mobile app that logs in once and polls `/notifications` every two seconds with its
/// session, logging in again if the session is gone.
fn poller(t: &Traffic, account: u32) {
    let agent = (
        "User-Agent".to_owned(),
        "ExampleApp/3.2 (Android 14; Pixel 8)".to_owned(),
    );
    let mut session: Option<String> = None;
    for _ in 0..MAX_ROUNDS {
        if t.over() {
            return;
        }
        if session.is_none() {
            let login = Request::post_form(
                "/login",
                vec![agent.clone(), ("Accept".into(), "application/json".into())],
                format!("username=user{account:04}&password=pw-{account:04}"),
            );
            if let Outcome::Answered { session: s, .. } =
                t.send("poller", Role::Benign, POLLER, &login)
            {
                session = s;
            }
        } else {
            let mut headers = vec![agent.clone(), ("Accept".into(), "application/json".into())];
            headers.extend(session.iter().map(|s| ("Cookie".to_owned(), s.clone())));
            let poll = Request::get("/notifications", headers);
            if t.send("poller", Role::Benign, POLLER, &poll).status() == Some(401) {
                session = None;
            }
        }
        if !t.pause(Duration::from_secs(2)) {
            return;
        }
    }
}

/// A polite crawler: one item page every four seconds, in order.
fn crawler(t: &Traffic) {
    let headers = vec![
        (
            "User-Agent".to_owned(),
            "Mozilla/5.0 (compatible; ExampleBot/2.1; +https://example.com/bot)".to_owned(),
        ),
        ("Accept".to_owned(), "text/html,*/*".to_owned()),
    ];
    for id in 1..=MAX_ROUNDS {
        if t.over() {
            return;
        }
        let req = Request::get(format!("/items/{id}"), headers.clone());
        t.send("crawler", Role::Benign, CRAWLER, &req);
        if !t.pause(Duration::from_secs(4)) {
            return;
        }
    }
}
