//! Detectors and policy on attack streams and on the benign traffic that must not be blocked.
//! Each case is a stream of transactions (built by a few generators), the findings that must
//! come out of it and the blocks that may.

use std::net::{IpAddr, SocketAddr};

use crate::decide::{Action, Enforcement, Policy, PolicyConfig, Refusal};
use crate::http::{LoginOutcome, Transaction};

use super::*;

const NS: u64 = 1_000_000_000;
/// Start of every stream: a Monday, 2026-12-07 09:00 UTC.
const T0: u64 = 1_796_634_000 * NS;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// A request from `client` at `t_ns` for `method path` answered with `status`, with an
/// optional account (a login when `login` is set), session and latency of 20 ms.
#[derive(Clone)]
struct Req {
    t_ns: u64,
    client: IpAddr,
    method: &'static str,
    path: String,
    route: String,
    status: Option<u16>,
    account: Option<String>,
    session: Option<String>,
    login: Option<LoginOutcome>,
    /// The client program's `User-Agent` (its request fingerprint's family), `None` for the
    /// default shape every request of these tests shares.
    ua: Option<String>,
    /// The SYN of the client's connection (its transport fingerprint), `None` when unseen.
    syn: Option<sensor_common::SynOptions>,
}

impl Req {
    fn get(t_ns: u64, client: IpAddr, path: &str, status: u16) -> Self {
        Self {
            t_ns,
            client,
            method: "GET",
            path: path.to_owned(),
            route: crate::http::route_template(path),
            status: Some(status),
            account: None,
            session: None,
            login: None,
            ua: None,
            syn: None,
        }
    }

    fn login(t_ns: u64, client: IpAddr, account: &str, ok: bool) -> Self {
        Self {
            t_ns,
            client,
            method: "POST",
            path: "/login".to_owned(),
            route: "/login".to_owned(),
            status: Some(if ok { 302 } else { 401 }),
            account: Some(account.to_owned()),
            session: None,
            login: Some(if ok {
                LoginOutcome::Success
            } else {
                LoginOutcome::Failure
            }),
            ua: None,
            syn: None,
        }
    }

    fn session(mut self, s: String) -> Self {
        self.session = Some(s);
        self
    }

    /// The request as the client program `ua` sends it: its agent and a header order of its
    /// own.
    fn agent(mut self, ua: &str) -> Self {
        self.ua = Some(ua.to_owned());
        self
    }

    /// The request on a connection whose SYN had the TTL, window and option bytes given.
    fn stack(mut self, ttl: u8, window: u16, options: &[u8]) -> Self {
        self.syn = Some(crate::http::transport::read_syn(ttl, window, options));
        self
    }

    fn tx(&self) -> Transaction {
        let peer = SocketAddr::new(self.client, 40000);
        let server: SocketAddr = "198.51.100.1:80".parse().expect("server");
        let mut tx = Transaction::empty(self.t_ns, peer, server);
        tx.method = self.method.into();
        tx.host = Some("api.example.test".to_owned());
        tx.path.clone_from(&self.path);
        tx.route.clone_from(&self.route);
        tx.status = self.status;
        tx.latency_ns = Some(20_000_000);
        tx.account.clone_from(&self.account);
        tx.session.clone_from(&self.session);
        tx.login = self.login;
        tx.transport_fingerprint = self
            .syn
            .as_ref()
            .and_then(crate::http::TransportFingerprint::of);
        if let Some(ua) = &self.ua {
            tx.user_agent = Some(ua.clone());
            tx.header_order
                .extend_lowercase(["Host", "User-Agent", "Accept", "Content-Type"].into_iter());
        }
        tx
    }
}

/// What a stream made.
#[derive(Default)]
struct Outcome {
    findings: Vec<Finding>,
    blocks: Vec<(IpNet, u64)>,
    /// Every kernel block decision (renewals too) with the exceptions it carries.
    block_decisions: Vec<(IpNet, Vec<IpNet>)>,
    refused: Vec<(Detector, Refusal)>,
    alerts: Vec<Detector>,
    /// Addresses blocked by connection, with their marks.
    marked: Vec<(IpNet, Vec<Mark>)>,
}

use ipnet::IpNet;

impl Outcome {
    fn detectors(&self) -> Vec<(Detector, Entity)> {
        let mut v: Vec<_> = self
            .findings
            .iter()
            .map(|f| (f.detector, f.entity.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn found(&self, d: Detector) -> bool {
        self.findings.iter().any(|f| f.detector == d)
    }

    fn found_about(&self, entity: impl Fn(&Entity) -> bool, d: Detector) -> bool {
        self.findings
            .iter()
            .any(|f| f.detector == d && entity(&f.entity))
    }

    /// The time of the first block of `target`.
    fn blocked_at(&self, target: &str) -> Option<u64> {
        let net: IpNet = target.parse().expect("target");
        self.blocks.iter().find(|(n, _)| *n == net).map(|b| b.1)
    }
}

/// Runs requests (sorted by time) and SYNs through detection and policy.
fn run(reqs: Vec<Req>) -> Outcome {
    run_syns(reqs, &[])
}

/// [`run`] with SYNs.
fn run_syns(mut reqs: Vec<Req>, syns: &[(u64, IpAddr)]) -> Outcome {
    run_with(
        &mut reqs,
        syns,
        DetectConfig::default(),
        PolicyConfig::default(),
    )
}

fn run_with(
    reqs: &mut [Req],
    syns: &[(u64, IpAddr)],
    cfg: DetectConfig,
    policy: PolicyConfig,
) -> Outcome {
    reqs.sort_by_key(|r| r.t_ns);
    let mut det = Detection::new(cfg, [7; 16], None, T0).expect("detection");
    let mut pol = Policy::new(policy, Vec::new());
    let mut out = Outcome::default();
    let mut findings = Vec::new();
    let mut syns = syns.to_vec();
    syns.sort_by_key(|s| s.0);
    let mut next_syn = 0;
    let mut last_tick = T0;
    for r in reqs.iter() {
        while let Some(&(t, src)) = syns.get(next_syn)
            && t <= r.t_ns
        {
            det.on_packets(
                src,
                Packets {
                    packets: 1,
                    syns: 1,
                },
                t,
                &mut findings,
            );
            next_syn += 1;
        }
        if r.t_ns >= last_tick + NS {
            last_tick = r.t_ns;
            det.on_tick(r.t_ns, &mut findings);
        }
        det.on_transaction(&r.tx(), &mut findings);
        decide(&mut pol, &mut findings, &mut out);
    }
    for &(t, src) in syns.get(next_syn..).unwrap_or_default() {
        det.on_packets(
            src,
            Packets {
                packets: 1,
                syns: 1,
            },
            t,
            &mut findings,
        );
        decide(&mut pol, &mut findings, &mut out);
    }
    decide(&mut pol, &mut findings, &mut out);
    out
}

fn decide(pol: &mut Policy, findings: &mut Vec<Finding>, out: &mut Outcome) {
    for f in findings.drain(..) {
        if let Some(d) = pol.on_finding(&f) {
            if let (true, Some(t)) = (d.blocks_in_kernel(), d.target) {
                out.block_decisions.push((t, d.exceptions.clone()));
            }
            match (d.action, d.refused, d.target) {
                (Action::Block, None, Some(t)) if d.enforcement == Enforcement::Connection => {
                    out.marked.push((t, d.marks.clone()));
                }
                (Action::Block, None, Some(t)) => out.blocks.push((t, d.at_ns)),
                (_, Some(r), _) => out.refused.push((f.detector, r)),
                (Action::Alert, None, _) => out.alerts.push(f.detector),
                _ => {}
            }
        }
        out.findings.push(f);
    }
}

/// `n` requests from `make(i)`, `every_ns` apart from `start`.
fn series(n: u64, start: u64, every_ns: u64, make: impl Fn(u64, u64) -> Req) -> Vec<Req> {
    (0..n).map(|i| make(i, start + i * every_ns)).collect()
}

/// A deterministic jitter in `0..span` for the `i`-th event of stream `seed`.
fn jitter(seed: u64, i: u64, span: u64) -> u64 {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 29;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 32)) % span.max(1)
}

#[test]
fn brute_force_is_blocked_by_its_fifth_failure() {
    let a = ip("198.51.100.66");
    // 20 attempts per second on one account, 60 of them.
    let out = run(series(60, T0, NS / 20, |_, t| {
        Req::login(t, a, "admin", false)
    }));
    assert!(out.found(Detector::BruteForce), "{:?}", out.detectors());
    let at = out.blocked_at("198.51.100.66/32").expect("blocked");
    // The fifth failure is answered 0.2 s + 20 ms after the first request.
    assert!(
        at <= T0 + NS / 20 * 4 + 20_000_000,
        "blocked {} ms in",
        (at - T0) / 1_000_000
    );
    assert_eq!(out.blocks.len(), 1, "one block, renewed later at most");
}

#[test]
fn credential_stuffing_and_slow_brute_force_are_blocked() {
    let a = ip("203.0.113.9");
    // One attempt per account, 60 accounts, one every 2 s.
    let stuffing = series(60, T0, 2 * NS, |i, t| {
        Req::login(t, a, &format!("user{i}"), false)
    });
    let out = run(stuffing);
    assert!(
        out.found(Detector::CredentialStuffing),
        "{:?}",
        out.detectors()
    );
    assert!(out.blocked_at("203.0.113.9/32").is_some());
    // One attempt every 40 s for an hour: under the fast threshold, over the slow one.
    let b = ip("203.0.113.10");
    let slow = series(90, T0, 40 * NS, |_, t| Req::login(t, b, "root", false));
    let out = run(slow);
    assert!(out.found(Detector::BruteForce), "{:?}", out.detectors());
    let f = out
        .findings
        .iter()
        .find(|f| f.detector == Detector::BruteForce)
        .expect("finding");
    assert_eq!(
        f.measures.first().map(|m| m.name),
        Some("failed_logins_slow")
    );
    assert!(out.blocked_at("203.0.113.10/32").is_some());
}

#[test]
fn an_account_attacked_from_many_sources_is_an_alert_listing_them() {
    // 30 sources, one failed login each on the same account, one every 3 s, each from a
    // program of its own (a shared one would make them a campaign).
    let reqs = series(30, T0, 3 * NS, |i, t| {
        Req::login(t, ip(&format!("198.51.100.{}", 10 + i)), "alice", false)
            .agent(&format!("client{i}/1.0"))
    });
    let out = run(reqs);
    let f = out
        .findings
        .iter()
        .find(|f| f.detector == Detector::AccountAttacked)
        .unwrap_or_else(|| panic!("no account finding: {:?}", out.detectors()));
    assert_eq!(f.entity, Entity::Account("alice".into()));
    assert!(f.sources.len() >= 10, "{:?}", f.sources);
    assert!(out.alerts.contains(&Detector::AccountAttacked));
    assert!(
        out.blocks.is_empty(),
        "nobody who failed once is blocked: {:?}",
        out.blocks
    );
}

#[test]
fn a_brute_force_spread_over_a_prefix_is_an_alert_on_the_prefix() {
    // 12 addresses of one /24 take turns, 4 failed logins each (under the per-source
    // threshold of 5), 48 in all within 24 s; each runs a program of its own (a shared
    // fingerprint would make them a campaign).
    let reqs = series(48, T0, NS / 2, |i, t| {
        Req::login(
            t,
            ip(&format!("198.51.100.{}", 20 + i % 12)),
            "admin",
            false,
        )
        .agent(&format!("client{}/1.0", i % 12))
    });
    let out = run(reqs);
    let net: IpNet = "198.51.100.0/24".parse().expect("net");
    let f = out
        .findings
        .iter()
        .find(|f| f.detector == Detector::BruteForce && f.entity == Entity::Prefix(net))
        .unwrap_or_else(|| panic!("no prefix finding: {:?}", out.detectors()));
    let sources = f
        .measures
        .iter()
        .find(|m| m.name == "sources")
        .expect("sources");
    assert!(sources.value >= 10.0, "{sources:?}");
    assert!(
        !out.found_about(|e| matches!(e, Entity::Source(_)), Detector::BruteForce),
        "no source crossed on its own: {:?}",
        out.detectors()
    );
    assert!(out.blocks.is_empty(), "{:?}", out.blocks);
}

#[test]
fn a_prefix_or_session_gets_state_from_its_second_source() {
    let mut det = Detection::new(DetectConfig::default(), [1; 16], None, T0).expect("detection");
    let mut findings = Vec::new();
    // One source alone in its /64 (and /48), with a session: none of them has state.
    let first = ip("2001:db8:1:2::a");
    for i in 0..20 {
        let r = Req::get(T0 + i * NS, first, "/x", 200).session("s1".to_owned());
        det.on_transaction(&r.tx(), &mut findings);
    }
    let c = det.counters();
    assert_eq!((c.sources, c.prefixes, c.sessions), (1, 0, 0));
    // A second address of the same /64 with the same session: the /64, the /48 and the
    // session get state.
    let second = ip("2001:db8:1:2::b");
    let r = Req::get(T0 + 30 * NS, second, "/x", 200).session("s1".to_owned());
    det.on_transaction(&r.tx(), &mut findings);
    let c = det.counters();
    assert_eq!((c.sources, c.prefixes, c.sessions), (2, 2, 1));
}

/// A stuffing run rotating over 200 addresses (75 in each of two IPv4 /24s, 50 IPv6 over seven
/// /64s), each sending one to three failed logins on distinct accounts with one program, spread
/// over 30 s, while five users of a browser in the same /24s, there from the start, log in
/// (one mistypes first) and browse.
/// When the rotation campaign of [`rotation_run`] starts: after the users of its /24s have
/// logged in (they are the prefixes' customers in good standing when it is escalated to).
const ROTATION_START: u64 = T0 + 30 * NS;

fn rotation_run() -> (Vec<Req>, Vec<IpAddr>, Vec<IpAddr>) {
    const BOT: &str = "python-requests/2.31.0";
    const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0.0.0 Safari/537.36";
    let mut reqs = Vec::new();
    let mut attackers = Vec::new();
    for k in 0..200_u64 {
        let a = match k {
            0..75 => ip(&format!("198.51.100.{}", 100 + k)),
            75..150 => ip(&format!("203.0.113.{}", 25 + k)),
            _ => ip(&format!("2001:db8:bad:{:x}::{:x}", k % 7, k)),
        };
        attackers.push(a);
        let start = ROTATION_START + k * 150_000_000;
        for n in 0..=(k % 3) {
            let t = start + n * 700_000_000;
            reqs.push(Req::login(t, a, &format!("user{k}x{n}"), false).agent(BOT));
        }
    }
    let mut benign = Vec::new();
    // A slow crawler in one of the /24s, reading a page every 3 s, never logging in.
    let crawler = ip("203.0.113.20");
    benign.push(crawler);
    for i in 0..40_u64 {
        let t = T0 + i * 3 * NS + jitter(9, i, NS);
        reqs.push(
            Req::get(t, crawler, &format!("/docs/{}", (i * 37) % 500), 200).agent("ExampleBot/1.0"),
        );
    }
    for u in 0..5_u64 {
        let b = if u < 3 {
            ip(&format!("198.51.100.{}", 10 + u))
        } else {
            ip(&format!("203.0.113.{}", 10 + u))
        };
        benign.push(b);
        let t = T0 + u * NS / 2;
        if u == 0 {
            reqs.push(Req::login(t, b, "alice", false).agent(BROWSER));
        }
        reqs.push(Req::login(t + NS, b, &format!("member{u}"), true).agent(BROWSER));
        for i in 0..60_u64 {
            let page = ["/", "/items", "/cart", "/help", "/items/42", "/account"][(i % 6) as usize];
            let t = t + (2 + i) * NS + jitter(u, i, NS / 2);
            reqs.push(Req::get(t, b, page, 200).agent(BROWSER));
        }
    }
    (reqs, attackers, benign)
}

#[test]
fn a_rotation_campaign_is_found_early_and_its_members_are_blocked_but_no_user() {
    let (reqs, attackers, benign) = rotation_run();
    let out = run(reqs.clone());
    let campaign = out
        .findings
        .iter()
        .find(|f| f.detector == Detector::Campaign)
        .unwrap_or_else(|| panic!("no campaign: {:?}", out.detectors()));
    let Entity::Campaign(name) = &campaign.entity else {
        panic!("{campaign:?}");
    };
    assert!(
        name.contains("python-requests") && name.contains("/login"),
        "{name}"
    );
    // Found before 20 distinct sources had tried (the 5 users among them), within 60 s of the
    // first attempt.
    let seen_before: std::collections::BTreeSet<IpAddr> = reqs
        .iter()
        .filter(|r| r.t_ns + 20_000_000 <= campaign.at_ns)
        .map(|r| r.client)
        .collect();
    assert!(
        seen_before.len() < 20,
        "{} sources before the campaign",
        seen_before.len()
    );
    assert!(campaign.at_ns < ROTATION_START + 60 * NS);
    assert!(campaign.sources.len() >= 10, "{:?}", campaign.sources);
    // Every attacker is blocked: those seen before the campaign when it was found, the later
    // ones after their first attempt.
    for a in &attackers {
        let first = reqs
            .iter()
            .filter(|r| r.client == *a)
            .map(|r| r.t_ns)
            .min()
            .expect("attempts");
        let at = out
            .blocked_at(&IpNet::from(*a).to_string())
            .unwrap_or_else(|| panic!("{a} not blocked"));
        assert!(
            at <= first.max(campaign.at_ns) + 20_000_000,
            "{a} blocked late"
        );
    }
    // No user is refused, though they share the /24s and one mistyped: the /24s are blocked
    // as a whole with the users in good standing there as exceptions (written before the
    // block), and no user is blocked on its own. Every block decision covering a user, its
    // first as well as its renewals, carries the user's exception.
    let v4_prefixes: Vec<IpNet> = out
        .blocks
        .iter()
        .filter(|(n, _)| n.prefix_len() == 24)
        .map(|(n, _)| *n)
        .collect();
    assert!(
        v4_prefixes.contains(&"198.51.100.0/24".parse().expect("net"))
            && v4_prefixes.contains(&"203.0.113.0/24".parse().expect("net")),
        "{:?}",
        out.blocks
    );
    for b in &benign {
        let host = IpNet::from(*b);
        let covering: Vec<&(IpNet, Vec<IpNet>)> = out
            .block_decisions
            .iter()
            .filter(|(net, _)| net.contains(b))
            .collect();
        assert!(!covering.is_empty(), "{b}'s /24 is not blocked");
        for (net, exceptions) in covering {
            assert!(
                *net != host && exceptions.contains(&host),
                "{b} covered by the block of {net} without its exception: {exceptions:?}"
            );
        }
    }
    let spared: Vec<IpNet> = out
        .block_decisions
        .iter()
        .flat_map(|(_, e)| e.clone())
        .collect();
    // Only users are spared; no attacker ever is.
    assert!(
        spared
            .iter()
            .all(|s| benign.iter().any(|b| IpNet::from(*b) == *s)),
        "spared {spared:?}"
    );
    assert!(
        !out.refused
            .contains(&(Detector::CampaignPrefix, Refusal::GoodStanding)),
        "{:?}",
        out.refused
    );
    let v6_prefixes = out
        .blocks
        .iter()
        .filter(|(n, _)| n.prefix_len() == 64)
        .count();
    assert!(v6_prefixes >= 5, "{:?}", out.blocks);
}

#[test]
fn one_program_on_two_tcp_stacks_is_two_campaigns_named_by_their_stacks() {
    // The rotation run's bot, half of its addresses on a Linux stack, half on a Windows one:
    // the same request fingerprint, two transport fingerprints, two campaigns.
    const LINUX: [u8; 20] = [
        2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
    ];
    const WINDOWS: [u8; 12] = [2, 4, 5, 180, 1, 3, 3, 8, 1, 1, 4, 2];
    let (reqs, _, _) = rotation_run();
    let reqs: Vec<Req> = reqs
        .into_iter()
        .map(|r| match (r.login, r.client) {
            (Some(LoginOutcome::Failure), IpAddr::V4(a)) if a.octets()[3] % 2 == 0 => {
                r.stack(64, 64240, &LINUX)
            }
            (Some(LoginOutcome::Failure), _) => r.stack(128, 64240, &WINDOWS),
            _ => r,
        })
        .collect();
    let out = run(reqs);
    let names: std::collections::BTreeSet<String> = out
        .findings
        .iter()
        .filter(|f| f.detector == Detector::Campaign)
        .filter_map(|f| match &f.entity {
            Entity::Campaign(name) => Some(name.clone()),
            _ => None,
        })
        .collect();
    for stack in [
        "tcp1_64_m44_1460_7_M-S-T-N-W",
        "tcp1_128_m44_1460_8_M-N-W-N-N-S",
    ] {
        assert!(
            names
                .iter()
                .any(|n| n.contains(stack) && n.contains("python-requests")),
            "no campaign of {stack}: {names:?}"
        );
    }
}

#[test]
fn users_of_one_browser_on_one_login_form_are_no_campaign() {
    // 300 users of the same browser (one fingerprint) log in within 5 minutes from their own
    // addresses; one in ten mistypes once first. A university /24 and a carrier's range.
    const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0.0.0 Safari/537.36";
    let mut reqs = Vec::new();
    for u in 0..300_u64 {
        let a = if u < 200 {
            ip(&format!("198.51.100.{}", 1 + u))
        } else {
            ip(&format!("2001:db8:cafe::{u:x}"))
        };
        let t = T0 + u * NS;
        if u % 10 == 0 {
            reqs.push(Req::login(t, a, &format!("student{u}"), false).agent(BROWSER));
        }
        reqs.push(Req::login(t + 2 * NS, a, &format!("student{u}"), true).agent(BROWSER));
    }
    let out = run(reqs);
    assert!(!out.found(Detector::Campaign), "{:?}", out.detectors());
    assert!(out.blocks.is_empty(), "{:?}", out.blocks);
}

#[test]
fn a_session_shared_by_many_addresses_is_an_alert_and_a_network_switch_is_not() {
    // A user switches from Wi-Fi to mobile: one session, two addresses within a minute.
    let switch = series(40, T0, NS, |i, t| {
        let a = if i < 20 {
            "198.51.100.20"
        } else {
            "203.0.113.20"
        };
        Req::get(t, ip(a), "/feed", 200).session("s-user".to_owned())
    });
    let out = run(switch);
    assert!(!out.found(Detector::SessionShared), "{:?}", out.detectors());
    // One session handed around six addresses.
    let shared = series(30, T0, NS, |i, t| {
        Req::get(t, ip(&format!("203.0.113.{}", 40 + i % 6)), "/feed", 200)
            .session("s-stolen".to_owned())
    });
    let out = run(shared);
    let f = out
        .findings
        .iter()
        .find(|f| f.detector == Detector::SessionShared)
        .unwrap_or_else(|| panic!("{:?}", out.detectors()));
    assert!(f.sources.len() >= 5, "{:?}", f.sources);
    assert!(out.alerts.contains(&Detector::SessionShared));
    assert!(out.blocks.is_empty(), "{:?}", out.blocks);
}

#[test]
fn a_source_rotating_sessions_is_an_alert_and_an_office_is_not() {
    // A scraper presenting a fresh session on every request.
    let rotator = series(80, T0, NS / 2, |i, t| {
        Req::get(t, ip("203.0.113.50"), "/catalogue", 200).session(format!("fresh{i}"))
    });
    let out = run(rotator);
    assert!(
        out.found(Detector::SessionRotation),
        "{:?}",
        out.detectors()
    );
    // An office: 60 users behind one address arriving over two minutes, each with its own
    // session, 20 requests each over the next minute.
    let mut office = Vec::new();
    for u in 0..60_u64 {
        let start = T0 + u * 2 * NS;
        for i in 0..20 {
            let t = start + i * 3 * NS + jitter(u, i, NS);
            office.push(
                Req::get(t, ip("198.51.100.60"), "/dashboard", 200).session(format!("user{u}")),
            );
        }
    }
    let out = run(office);
    assert!(
        !out.found(Detector::SessionRotation),
        "{:?}",
        out.detectors()
    );
}

#[test]
fn a_source_rotating_its_fingerprint_is_an_alert_and_a_browser_update_is_not() {
    let rotator = series(60, T0, NS, |i, t| {
        Req::get(t, ip("203.0.113.70"), "/catalogue", 200).agent(&format!("agent{}/1.{i}", i % 17))
    });
    let out = run(rotator);
    assert!(
        out.found(Detector::FingerprintRotation),
        "{:?}",
        out.detectors()
    );
    assert!(out.blocks.is_empty(), "an alert only: {:?}", out.blocks);
    let update = series(60, T0, NS, |i, t| {
        let version = if i < 30 { "126.0.0.0" } else { "127.0.0.0" };
        Req::get(t, ip("198.51.100.70"), "/catalogue", 200).agent(&format!(
            "Mozilla/5.0 (X11; Linux x86_64) Chrome/{version} Safari/537.36"
        ))
    });
    let out = run(update);
    assert!(
        !out.found(Detector::FingerprintRotation),
        "{:?}",
        out.detectors()
    );
}

#[test]
fn a_surge_of_new_fingerprints_on_an_endpoint_is_an_alert_and_steady_traffic_is_not() {
    // One window of 10 programs, then one of 150 (a campaign rotating fingerprints), each
    // from its own address.
    let run_of = |second: u64| {
        let mut reqs = Vec::new();
        for (w, programs) in [(0_u64, 10_u64), (1, second)] {
            for p in 0..programs {
                for n in 0..2 {
                    let t = T0 + w * 300 * NS + (p * 2 + n) * NS;
                    let a = ip(&format!("2001:db8:{w}:{p:x}::{n}"));
                    reqs.push(Req::get(t, a, "/search", 200).agent(&format!("tool{p}/{w}")));
                }
            }
        }
        run(reqs)
    };
    let out = run_of(150);
    assert!(
        out.found(Detector::FingerprintSurge),
        "{:?}",
        out.detectors()
    );
    // The same 10 programs again: no surge.
    let out = run_of(10);
    assert!(
        !out.found(Detector::FingerprintSurge),
        "{:?}",
        out.detectors()
    );
}

#[test]
fn content_discovery_and_low_success_are_blocked() {
    let a = ip("198.51.100.77");
    // ffuf-like: 200 guessed paths at 40 per second, all 404 but two.
    let reqs = series(200, T0, NS / 40, |i, t| {
        let status = if i == 50 || i == 120 { 200 } else { 404 };
        Req::get(
            t,
            a,
            &format!(
                "/{}",
                ["admin", "backup", "wp-login", "config", ".git"][(i % 5) as usize].to_owned()
                    + &i.to_string()
            ),
            status,
        )
    });
    let out = run(reqs);
    assert!(
        out.found(Detector::ContentDiscovery),
        "{:?}",
        out.detectors()
    );
    assert!(out.found(Detector::LowSuccess), "{:?}", out.detectors());
    assert!(out.blocked_at("198.51.100.77/32").is_some());
}

#[test]
fn a_sustained_flood_is_blocked_and_a_burst_is_not() {
    let a = ip("198.51.100.88");
    // 300 requests per second for 30 s.
    let flood = series(9000, T0, NS / 300, |_, t| Req::get(t, a, "/search", 200));
    let out = run(flood);
    assert!(out.found(Detector::Volume), "{:?}", out.detectors());
    let at = out.blocked_at("198.51.100.88/32").expect("blocked");
    assert!(
        at >= T0 + 10 * NS,
        "a flood is judged after it is sustained"
    );
    // The same rate for 3 s: a burst.
    let b = ip("198.51.100.89");
    let burst = series(900, T0, NS / 300, |_, t| Req::get(t, b, "/search", 200));
    let out = run(burst);
    assert!(!out.found(Detector::Volume), "{:?}", out.detectors());
    assert!(out.blocks.is_empty());
}

#[test]
fn an_identifier_walk_is_blocked_and_a_slow_crawler_is_not() {
    let a = ip("203.0.113.50");
    let walk = series(60, T0, NS / 5, |i, t| {
        Req::get(t, a, &format!("/users/{}", 1000 + i), 200)
    });
    let out = run(walk);
    assert!(out.found(Detector::Enumeration), "{:?}", out.detectors());
    assert!(out.blocked_at("203.0.113.50/32").is_some());
    // A legitimate crawler: the same walk at one page every 6 s (with jitter).
    let b = ip("203.0.113.51");
    let crawl = series(200, T0, 6 * NS, |i, t| {
        Req::get(
            t + jitter(3, i, NS),
            b,
            &format!("/products/{}", 1 + i),
            200,
        )
    });
    let out = run(crawl);
    assert!(out.blocks.is_empty(), "{:?}", out.detectors());
    assert!(!out.found(Detector::Enumeration));
}

#[test]
fn a_syn_flood_from_many_addresses_blocks_nobody() {
    // 50 spoofed sources, 100 SYNs per second each for 20 s, no request at all.
    let mut syns = Vec::new();
    for s in 0..50_u64 {
        let src = ip(&format!("203.0.113.{}", 100 + s));
        for i in 0..2000 {
            syns.push((T0 + i * NS / 100 + s * 1000, src));
        }
    }
    let out = run_syns(Vec::new(), &syns);
    assert!(out.found(Detector::PacketFlood), "{:?}", out.detectors());
    assert!(out.blocks.is_empty(), "{:?}", out.blocks);
    assert!(
        out.refused
            .iter()
            .all(|(d, r)| *d == Detector::PacketFlood && *r == Refusal::Unverified),
        "{:?}",
        out.refused
    );
}

#[test]
fn a_health_checker_is_a_metronome_but_never_blocked() {
    let h = ip("198.51.100.200");
    let out = run(series(100, T0, 10 * NS, |_, t| {
        Req::get(t, h, "/health", 200)
    }));
    assert!(out.found(Detector::BotTiming), "{:?}", out.detectors());
    assert!(out.blocks.is_empty() && out.alerts.is_empty() && out.refused.is_empty());
}

#[test]
fn benign_traffic_is_never_blocked() {
    // A user who mistypes three times, then logs in, then browses.
    let u = ip("198.51.100.20");
    let mut user = vec![
        Req::login(T0, u, "bob", false),
        Req::login(T0 + 6 * NS, u, "bob", false),
        Req::login(T0 + 15 * NS, u, "bob", false),
        Req::login(T0 + 25 * NS, u, "bob", true),
    ];
    user.extend(series(40, T0 + 30 * NS, 3 * NS, |i, t| {
        Req::get(
            t + jitter(1, i, 4 * NS),
            u,
            &format!("/orders/{}", 500 + i * 7),
            200,
        )
    }));
    // A mobile app polling every 2 s (with jitter) for 20 minutes.
    let m = ip("198.51.100.21");
    let poll = series(600, T0, 2 * NS, |i, t| {
        Req::get(
            t + jitter(2, i, NS / 2),
            m,
            "/notifications",
            if i % 3 == 0 { 200 } else { 304 },
        )
        .session("mobile-session".into())
    });
    // An office behind NAT: 300 users, each with a session and an account, logging in (a few
    // mistyped) and browsing, about 150 requests per second in total for two minutes.
    let nat = ip("203.0.113.7");
    let mut office = Vec::new();
    for user in 0..300_u64 {
        let start = T0 + jitter(4, user, 60 * NS);
        let session = format!("s{user:04}");
        if user % 40 == 0 {
            office.push(Req::login(start, nat, &format!("emp{user}"), false));
        }
        office.push(
            Req::login(start + NS, nat, &format!("emp{user}"), true).session(session.clone()),
        );
        for i in 0..60 {
            let t = start + 2 * NS + i * 2 * NS + jitter(5, user * 100 + i, NS);
            office.push(
                Req::get(t, nat, &format!("/docs/{}", user * 1000 + i), 200)
                    .session(session.clone()),
            );
        }
    }
    let mut all = user;
    all.extend(poll);
    all.extend(office);
    let out = run(all);
    assert!(
        out.blocks.is_empty(),
        "blocked: {:?} for {:?}",
        out.blocks,
        out.detectors()
    );
    // The office is loud: whatever it triggered was refused as a shared address.
    assert!(
        out.refused
            .iter()
            .all(|(_, r)| *r == Refusal::SharedAddress),
        "{:?}",
        out.refused
    );
    assert!(!out.found(Detector::BruteForce) && !out.found(Detector::LowSuccess));
}

#[test]
fn findings_carry_evidence_without_secrets_and_repeat_at_most_every_repeat_s() {
    let a = ip("198.51.100.66");
    let out = run(series(200, T0, NS / 10, |_, t| {
        Req::login(t, a, "admin", false)
    }));
    let bf: Vec<_> = out
        .findings
        .iter()
        .filter(|f| f.detector == Detector::BruteForce && f.entity == Entity::Source(a))
        .collect();
    // 20 s of attack, one report per 30 s at most.
    assert_eq!(bf.len(), 1, "{bf:?}");
    let f = bf[0];
    assert!(f.score >= 1.0);
    assert!(f.measures.iter().all(Measure::crossed), "{:?}", f.measures);
    assert!(!f.samples.is_empty() && f.samples.len() <= 3);
    assert!(
        f.samples
            .iter()
            .all(|s| s.path == "/login" && s.account.as_deref() == Some("admin"))
    );
    assert_eq!(f.standing.map(|s| s.verified), Some(true));
    let json = serde_json::to_string(f).expect("json");
    assert!(!json.contains("password"), "{json}");
}

#[test]
fn state_is_bounded_and_evictions_are_counted() {
    let mut cfg = DetectConfig::default();
    cfg.limits.sources = 100;
    cfg.limits.prefixes = 10;
    let mut reqs = series(1000, T0, NS / 100, |i, t| {
        Req::get(
            t,
            ip(&format!("2001:db8:{:x}::{:x}", i % 300, i)),
            "/x",
            200,
        )
    });
    let _ = run_with(&mut reqs, &[], cfg.clone(), PolicyConfig::default());
    let mut det = Detection::new(cfg, [1; 16], None, T0).expect("detection");
    let mut f = Vec::new();
    for r in &reqs {
        det.on_transaction(&r.tx(), &mut f);
    }
    let c = det.counters();
    assert_eq!(c.sources, 100);
    assert_eq!(c.evicted_sources, 900);
    assert_eq!(c.prefixes, 10);
    assert!(c.evicted_prefixes > 0);
}

#[test]
fn detection_is_deterministic() {
    let a = ip("198.51.100.66");
    let reqs = series(100, T0, NS / 20, |i, t| {
        Req::login(t, a, &format!("u{}", i % 13), false)
    });
    let one = run(reqs.clone());
    let two = run(reqs);
    assert_eq!(one.findings, two.findings);
    assert_eq!(one.blocks, two.blocks);
}

#[test]
fn a_packet_flood_in_the_kernel_counters_is_an_alert() {
    let a = ip("198.51.100.90");
    let mut det = Detection::new(DetectConfig::default(), [7; 16], None, T0).expect("detection");
    let mut pol = Policy::new(PolicyConfig::default(), Vec::new());
    let mut findings = Vec::new();
    let mut out = Outcome::default();
    // One verified request, then 20k packets a second for 20 s, polled every second.
    det.on_transaction(&Req::get(T0, a, "/", 200).tx(), &mut findings);
    for s in 1..=20 {
        let counts = Packets {
            packets: 20_000,
            syns: 0,
        };
        det.on_packets(a, counts, T0 + s * NS, &mut findings);
        decide(&mut pol, &mut findings, &mut out);
    }
    assert!(out.found(Detector::PacketRate), "{:?}", out.detectors());
    assert!(out.alerts.contains(&Detector::PacketRate));
    assert!(out.blocks.is_empty());
}

#[test]
fn an_endpoint_far_above_its_learned_hour_is_an_alert() {
    let mut cfg = DetectConfig::default();
    cfg.baseline.warmup_s = 3600;
    cfg.baseline.min_samples = 5;
    let u = ip("198.51.100.30");
    // Warm-up: 10 requests a minute to /search for the first hour (the same hour of week).
    let mut reqs: Vec<Req> = series(600, T0, 6 * NS, |i, t| {
        Req::get(
            t,
            ip(&format!("198.51.100.{}", 30 + i % 50)),
            "/search",
            200,
        )
    });
    // A week later, same hour: 200 a minute from many sources for five minutes.
    let week = 7 * 24 * 3600 * NS;
    reqs.extend(series(1000, T0 + week, 300_000_000, |i, t| {
        Req::get(t, ip(&format!("203.0.113.{}", i % 200)), "/search", 200)
    }));
    // And a quiet endpoint that stays within its baseline.
    reqs.extend(series(50, T0 + week, 6 * NS, |_, t| {
        Req::get(t, u, "/about", 200)
    }));
    let out = run_with(&mut reqs, &[], cfg, PolicyConfig::default());
    let rate: Vec<_> = out
        .findings
        .iter()
        .filter(|f| f.detector == Detector::EndpointRate)
        .collect();
    assert!(!rate.is_empty(), "{:?}", out.detectors());
    // /search, and all traffic with it; not /about.
    let search = Entity::Endpoint("GET api.example.test /search".into());
    assert!(
        rate.iter()
            .all(|f| f.entity == search || f.entity == Entity::Global),
        "{rate:?}"
    );
    assert!(rate.iter().any(|f| f.entity == search), "{rate:?}");
    assert!(rate.iter().any(|f| f.entity == Entity::Global), "{rate:?}");
    assert!(out.alerts.contains(&Detector::EndpointRate));
    assert!(out.blocks.is_empty(), "{:?}", out.blocks);
}

#[test]
fn context_raises_a_decision_and_never_decides_alone() {
    let mut cfg = DetectConfig::default();
    cfg.baseline.warmup_s = 600;
    let mut det = Detection::new(cfg, [3; 16], None, T0).expect("detection");
    let mut findings = Vec::new();
    // Warm-up: users browse /search for ten minutes; /login is never used.
    for i in 0..200_u64 {
        let r = Req::get(
            T0 + i * 3 * NS,
            ip(&format!("198.51.100.{}", 1 + i % 40)),
            "/search",
            200,
        );
        det.on_transaction(&r.tx(), &mut findings);
        det.on_tick(T0 + i * 3 * NS, &mut findings);
    }
    findings.clear();
    // After it, at the same hour a day later (an hour /search was seen in): a new source
    // browses a little, then brute-forces /login, which was never seen.
    let day = 24 * 3600 * NS;
    let a = ip("203.0.113.77");
    for i in 0..5 {
        let r = Req::get(T0 + day + i * NS, a, "/search", 200);
        det.on_transaction(&r.tx(), &mut findings);
    }
    assert!(
        findings.is_empty(),
        "browsing makes no finding: {findings:?}"
    );
    let mut group = Vec::new();
    for i in 0..5 {
        let r = Req::login(T0 + day + (10 + i) * NS, a, "admin", false);
        det.on_transaction(&r.tx(), &mut findings);
        if findings.iter().any(|f| f.detector == Detector::BruteForce) {
            group = std::mem::take(&mut findings);
            break;
        }
    }
    let detectors: Vec<Detector> = group.iter().map(|f| f.detector).collect();
    assert!(detectors.contains(&Detector::ShortLived), "{detectors:?}");
    assert!(detectors.contains(&Detector::UnseenRoute), "{detectors:?}");
    assert!(!detectors.contains(&Detector::OffHours), "{detectors:?}");
    let mut pol = Policy::new(PolicyConfig::default(), Vec::new());
    let d = pol.on_findings(&group).expect("decision");
    let lead = group
        .iter()
        .find(|f| f.detector == Detector::BruteForce)
        .expect("lead");
    assert_eq!(d.action, Action::Block);
    assert!(
        (d.score - lead.score * 1.5).abs() < 1e-9,
        "{} vs {}",
        d.score,
        lead.score
    );
    assert!(
        d.notes
            .iter()
            .any(|n| n.contains("short_lived") && n.contains("unseen_route")),
        "{:?}",
        d.notes
    );
    // Context alone decides nothing.
    let context_only: Vec<Finding> = group
        .iter()
        .filter(|f| f.detector.strength() == Strength::Context)
        .cloned()
        .collect();
    assert!(!context_only.is_empty());
    assert_eq!(pol.on_findings(&context_only), None);
}

#[test]
fn a_request_the_openapi_document_does_not_declare_is_context() {
    let doc = "openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths:\n  /items/{itemId}:\n    get: {responses: {'200': {description: ok}}}\n";
    let spec = super::api_spec::ApiSpec::parse(doc, false).expect("spec");
    let mut cfg = DetectConfig::default();
    cfg.context.api_spec = Some(std::sync::Arc::new(spec));
    let mut det = Detection::new(cfg, [3; 16], None, T0).expect("detection");
    let mut findings = Vec::new();
    // A documented route browsed, then logins on /login, which the document does not declare.
    let a = ip("203.0.113.78");
    for i in 0..5 {
        let r = Req::get(T0 + i * NS, a, &format!("/items/{}", 100 + i * 7), 200);
        det.on_transaction(&r.tx(), &mut findings);
    }
    assert!(findings.is_empty(), "{findings:?}");
    for i in 0..5 {
        let r = Req::login(T0 + (10 + i) * NS, a, "admin", false);
        det.on_transaction(&r.tx(), &mut findings);
    }
    let detectors: Vec<Detector> = findings.iter().map(|f| f.detector).collect();
    assert!(detectors.contains(&Detector::BruteForce), "{detectors:?}");
    assert!(detectors.contains(&Detector::Undocumented), "{detectors:?}");
}

const BROWSER: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36";
const WINDOWS_SYN: &[u8] = &[2, 4, 0x05, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2];
const LINUX_SYN: &[u8] = &[
    2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
];

/// `users` people behind `nat` with one browser on one system, each browsing (30 requests)
/// and logging in once, `mistypes(u)` failures first, from `start` on over two minutes.
fn office(nat: IpAddr, users: u64, start: u64, mistypes: impl Fn(u64) -> u64) -> Vec<Req> {
    let mut v = Vec::new();
    for u in 0..users {
        let t = start + jitter(11, u, 120 * NS);
        let (account, session) = (format!("emp{u}@{nat}"), format!("s{u}@{nat}"));
        for m in 0..mistypes(u) {
            v.push(
                Req::login(t + m * 4 * NS, nat, &account, false)
                    .agent(BROWSER)
                    .stack(128, 64240, WINDOWS_SYN),
            );
        }
        let logged_in = t + mistypes(u) * 4 * NS + NS;
        v.push(
            Req::login(logged_in, nat, &account, true)
                .agent(BROWSER)
                .stack(128, 64240, WINDOWS_SYN)
                .session(session.clone()),
        );
        v.extend(series(30, logged_in + NS, 3 * NS, |i, at| {
            // Pages in no particular order: a reader, not an identifier walk.
            let page = (i * 7919 + u * 31) % 1000;
            Req::get(
                at + jitter(12, u * 100 + i, 2 * NS),
                nat,
                &format!("/docs/{page}"),
                200,
            )
            .agent(BROWSER)
            .stack(128, 64240, WINDOWS_SYN)
            .session(session.clone())
        }));
    }
    v
}

/// A script failing to log in `n` times from `client`, one account each, every `every_ns`.
fn stuffer(client: IpAddr, n: u64, start: u64, every_ns: u64, agent: &str) -> Vec<Req> {
    series(n, start, every_ns, |i, t| {
        Req::login(t, client, &format!("victim{i}"), false)
            .agent(agent)
            .stack(64, 64240, LINUX_SYN)
    })
}

#[test]
fn an_attacker_sharing_an_address_with_users_is_marked_and_only_its_connections_blocked() {
    let nat = ip("203.0.113.7");
    // Six users, then a script stuffing from behind the same address, one attempt a second.
    let mut reqs = office(nat, 6, T0, |u| u64::from(u == 2));
    reqs.extend(stuffer(nat, 40, T0 + 60 * NS, NS, "python-requests/2.32"));
    let out = run(reqs.clone());
    assert!(
        out.blocks.is_empty(),
        "the address is never blocked: {:?}",
        out.blocks
    );
    assert!(out.found(Detector::MarkedClient), "{:?}", out.detectors());
    let (target, marks) = out.marked.first().expect("blocked by connection");
    assert_eq!(*target, "203.0.113.7/32".parse::<IpNet>().expect("net"));
    // One mark: the script's shape, as the pipeline will compute it for its next requests.
    let det = Detection::new(DetectConfig::default(), [7; 16], None, T0).expect("detection");
    let script = stuffer(nat, 1, T0, NS, "python-requests/2.32")[0].tx();
    let fp = crate::http::RequestFingerprint::of(&script).expect("fingerprint");
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert_eq!(
        marks[0].shape,
        det.client_key(&fp, script.transport_fingerprint)
    );
    assert!(marks[0].failed >= 5.0 && marks[0].ok == 0.0, "{marks:?}");
}

#[test]
fn shared_addresses_of_honest_users_mark_nobody() {
    // A carrier's CGNAT address: forty users of one browser, a few mistyping twice before
    // they log in.
    let cgnat = office(
        ip("203.0.113.8"),
        40,
        T0,
        |u| if u % 7 == 0 { 2 } else { 0 },
    );
    // An office whose one user with a browser of its own mistypes three times, then logs in.
    let mut odd = office(ip("203.0.113.9"), 5, T0, |_| 0);
    for m in 0..3 {
        odd.push(
            Req::login(T0 + 30 * NS + m * 5 * NS, ip("203.0.113.9"), "boss", false)
                .agent("Mozilla/5.0 Firefox/133.0"),
        );
    }
    odd.push(
        Req::login(T0 + 50 * NS, ip("203.0.113.9"), "boss", true)
            .agent("Mozilla/5.0 Firefox/133.0"),
    );
    // A university /24: many honest users of one browser, one address each, one in ten
    // mistyping twice.
    let mut campus = Vec::new();
    for h in 0..60_u64 {
        let a = ip(&format!("198.51.100.{}", 10 + h));
        campus.extend(office(a, 1, T0, |_| if h % 10 == 3 { 2 } else { 0 }));
    }
    for (name, reqs) in [("cgnat", cgnat), ("office", odd), ("campus", campus)] {
        let out = run(reqs);
        assert!(out.marked.is_empty(), "{name}: marked {:?}", out.marked);
        assert!(
            !out.found(Detector::MarkedClient),
            "{name}: {:?}",
            out.detectors()
        );
        assert!(
            out.blocks.is_empty(),
            "{name}: blocked {:?} for {:?}",
            out.blocks,
            out.detectors()
        );
    }
}

#[test]
fn a_script_alone_at_its_address_is_blocked_by_address_not_by_connection() {
    let out = run(stuffer(
        ip("203.0.113.50"),
        20,
        T0,
        NS,
        "python-requests/2.32",
    ));
    assert!(
        out.blocked_at("203.0.113.50/32").is_some(),
        "{:?}",
        out.detectors()
    );
    assert!(out.marked.is_empty() && !out.found(Detector::MarkedClient));
}

#[test]
fn an_attacker_with_the_users_own_browser_and_system_is_not_marked() {
    // Nothing tells its connections from theirs: its failures are not most of that shape's
    // logins, so there is no mark, and the address is judged as a whole.
    let nat = ip("203.0.113.7");
    let mut reqs = office(nat, 12, T0, |_| 0);
    reqs.extend(series(6, T0 + 60 * NS, 5 * NS, |i, t| {
        Req::login(t, nat, &format!("victim{i}"), false)
            .agent(BROWSER)
            .stack(128, 64240, WINDOWS_SYN)
    }));
    let out = run(reqs);
    assert!(out.marked.is_empty(), "{:?}", out.marked);
    assert!(!out.found(Detector::MarkedClient));
}

#[test]
fn views_summarise_sources_accounts_and_fingerprints() {
    let mut det = Detection::new(DetectConfig::default(), [7; 16], None, T0).expect("detection");
    let mut findings = Vec::new();
    let (attacker, user) = (ip("198.51.100.9"), ip("198.51.100.20"));
    let mut reqs = series(12, T0, NS / 10, |_, t| {
        Req::login(t, attacker, "admin", false)
    });
    reqs.push(Req::login(T0 + 5 * NS, user, "carol", true));
    reqs.push(Req::get(T0 + 6 * NS, user, "/items/7", 200));
    reqs.sort_by_key(|r| r.t_ns);
    for r in &reqs {
        det.on_transaction(&r.tx(), &mut findings);
    }
    let mut all: Vec<view::SourceSummary> = det.sources().collect();
    all.sort_by_key(|s| s.source);
    assert_eq!(
        all.iter().map(|s| s.source).collect::<Vec<_>>(),
        [attacker, user]
    );
    let (a, u) = (&all[0], &all[1]);
    assert_eq!(a.requests_total, 12);
    assert!(a.logins_failed > 11.0 && a.logins_failed <= 12.0, "{a:?}");
    assert_eq!(a.success_share, Some(0.0), "{a:?}");
    assert!(a.failures > 11.0 && a.verified, "{a:?}");
    assert!((a.accounts - 1.0).abs() < f64::EPSILON, "{a:?}");
    assert_eq!(u.success_share, Some(1.0), "{u:?}");
    assert_eq!(u.last_seen_ns, T0 + 6 * NS + 20_000_000, "{u:?}");
    assert_eq!(det.source_summary(attacker).as_ref(), Some(a));
    assert!(det.source_summary(ip("203.0.113.1")).is_none());

    let shown = det.source(attacker).expect("attacker tracked");
    assert_eq!(shown.accounts, ["admin"]);
    assert!(!shown.samples.is_empty(), "{shown:?}");
    assert!(
        shown
            .samples
            .iter()
            .all(|s| s.path == "/login" && s.login.as_deref() == Some("failure")),
        "{shown:?}"
    );
    assert!(
        shown
            .median_interval_ms
            .is_some_and(|m| (m - 100.0).abs() < 1.0),
        "{shown:?}"
    );
    let light = det.source(user).expect("user tracked");
    assert!(
        light.samples.is_empty() && light.median_interval_ms.is_none(),
        "{light:?}"
    );

    let admin = det.account("admin").expect("admin tracked");
    assert_eq!(admin.sources.len(), 1, "{admin:?}");
    assert_eq!(admin.sources[0].source, attacker);
    assert!(admin.sources[0].failed_here);
    assert_eq!(admin.sources[0].summary.as_ref(), Some(a));
    assert!(
        admin.logins_failed > 11.0 && admin.logins_ok == 0.0,
        "{admin:?}"
    );
    assert!(det.account("nobody").is_none());

    let ttps = det.ttps(10);
    assert_eq!(ttps.len(), 1, "one client program: {ttps:?}");
    let t = &ttps[0];
    assert!(t.fingerprint.starts_with("apr1_po"), "{t:?}");
    assert_eq!((t.logins, t.successes, t.failures), (13, 1, 12));
    assert!((t.sources - 2.0).abs() < f64::EPSILON, "{t:?}");
    assert_eq!(t.first_seen_ns, T0 + 20_000_000);
    assert!(det.ttps(0).is_empty());
    let hours = det.fingerprints_per_hour(T0 + 7 * NS);
    assert_eq!(hours.len(), 24);
    assert!(
        (hours[23].fingerprints - 1.0).abs() < f64::EPSILON,
        "{hours:?}"
    );
    assert!(
        hours[..23].iter().all(|h| h.fingerprints == 0.0),
        "{hours:?}"
    );
    // A day later the ring holds none of them.
    let later = det.fingerprints_per_hour(T0 + 25 * 3600 * NS);
    assert!(later.iter().all(|h| h.fingerprints == 0.0), "{later:?}");
}
