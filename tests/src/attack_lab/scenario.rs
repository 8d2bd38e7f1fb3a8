//! The scenarios and the run of one: a fresh [`Testbed`] (so no scenario inherits another's
//! blocks or state), the benign actors from the start, the attack after a warm-up, a cool-down,
//! then the measurement. A pass is enforced by the agent, or by fail2ban or `CrowdSec` with the
//! agent only reporting.
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::attacks::{self, AttackRun};
use super::benign;
use super::client::Outcome;
use super::measure::{self, BlockMonitor, BlockSource, Usage};
use super::others::Other;
use super::topology::Testbed;
use super::traffic::{self, Role};

/// Benign traffic alone before the attack starts (the users log in and settle).
const WARMUP: Duration = Duration::from_secs(8);
/// Benign traffic after the attack ended.
const COOLDOWN: Duration = Duration::from_secs(5);

/// A scenario of the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// hydra brute-forcing one account's password from one address.
    Hydra,
    /// Credential stuffing of many accounts from one address.
    Stuffing,
    /// Credential stuffing rotating over 120 addresses, a few attempts each.
    DistributedStuffing,
    /// ffuf content discovery.
    Ffuf,
    /// A wrk flood.
    Flood,
    /// Numeric ids walked at a fixed interval.
    Scraping,
    /// A fresh session on every request.
    SessionRotation,
    /// User agent and header order changing per request.
    FingerprintRotation,
    /// A brute force below the per-minute threshold over minutes.
    SlowBruteforce,
    /// No attack: the benign actors alone.
    BenignOnly,
}

impl Scenario {
    /// Every scenario, in the scorecard's order.
    pub const ALL: [Scenario; 10] = [
        Scenario::Hydra,
        Scenario::Stuffing,
        Scenario::DistributedStuffing,
        Scenario::Ffuf,
        Scenario::Flood,
        Scenario::Scraping,
        Scenario::SessionRotation,
        Scenario::FingerprintRotation,
        Scenario::SlowBruteforce,
        Scenario::BenignOnly,
    ];

    /// The short run CI does: one tool attack, the rotation, and the benign actors alone.
    pub const SHORT: [Scenario; 3] = [
        Scenario::Hydra,
        Scenario::DistributedStuffing,
        Scenario::BenignOnly,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Hydra => "hydra",
            Scenario::Stuffing => "stuffing",
            Scenario::DistributedStuffing => "distributed-stuffing",
            Scenario::Ffuf => "ffuf",
            Scenario::Flood => "flood",
            Scenario::Scraping => "scraping",
            Scenario::SessionRotation => "session-rotation",
            Scenario::FingerprintRotation => "fingerprint-rotation",
            Scenario::SlowBruteforce => "slow-bruteforce",
            Scenario::BenignOnly => "benign-only",
        }
    }

    /// The scenario named `name`.
    pub fn parse(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// One line on what it does, for the scorecard.
    pub fn describe(self) -> &'static str {
        match self {
            Scenario::Hydra => {
                "hydra 9.4 `http-post-form` on `/login`, one account, 300 passwords, 4 tasks, from one address"
            }
            Scenario::Stuffing => {
                "400 leaked pairs (one in eight valid) on `/login` from one address, 5/s"
            }
            Scenario::DistributedStuffing => {
                "120 addresses (40 per IPv4 /24, 40 over four IPv6 /64s), 1-3 failed logins each, 200 ms apart, one program"
            }
            Scenario::Ffuf => "ffuf, 406 words, 10 threads, from one address",
            Scenario::Flood => {
                "wrk, 2 threads, 16 connections, 30 s on `/items/7`, from one address"
            }
            Scenario::Scraping => "`/items/1`, `/items/2`, ... every 200 ms from one address",
            Scenario::SessionRotation => {
                "a never-seen session cookie on every request, 4/s, item pages and `/notifications`"
            }
            Scenario::FingerprintRotation => {
                "user agent, header set and order changing on every request, 4/s"
            }
            Scenario::SlowBruteforce => {
                "one failed login on one account every 20 s (under the per-minute threshold)"
            }
            Scenario::BenignOnly => "no attack: the benign actors alone",
        }
    }

    /// The attacking addresses (the primary client address for tools).
    pub fn attackers(self, tool_source: IpAddr) -> Vec<IpAddr> {
        match self {
            Scenario::Hydra | Scenario::Ffuf | Scenario::Flood => vec![tool_source],
            Scenario::DistributedStuffing => attacks::distributed_sources(),
            Scenario::BenignOnly => Vec::new(),
            _ => vec![attacks::ATTACKER],
        }
    }

    /// The longest the attack may take.
    fn attack_bound(self) -> Duration {
        match self {
            Scenario::SlowBruteforce => Duration::from_secs(570),
            Scenario::BenignOnly => Duration::from_secs(30),
            _ => Duration::from_secs(70),
        }
    }
}

/// What one scenario measured.
#[derive(Debug)]
pub struct Measured {
    /// The scenario.
    pub scenario: Scenario,
    /// Attacking addresses.
    pub attackers: Vec<IpAddr>,
    /// Who enforced.
    pub pass: Pass,
    /// The first block covering an attacker: seconds from the first malicious request to it,
    /// and the detectors behind it (the agent's block written; a tool's ban as its firewall
    /// set first held it, with its rule).
    pub block: Option<(f64, Vec<String>)>,
    /// Seconds from the first malicious request to the first kernel drop the monitor saw
    /// (its 200 ms polling included; the agent's blocks only).
    pub first_drop_s: Option<f64>,
    /// Every detector with a finding about the attackers (alerts too; a tool's rules that
    /// banned them).
    pub detectors: BTreeSet<String>,
    /// Malicious requests answered (nginx's log; everything answered came before the block).
    pub malicious_answered: usize,
    /// Malicious requests the lab's own client sent, and how many got no answer (tools'
    /// requests are counted by nginx only).
    pub malicious_sent: Option<(usize, usize)>,
    /// Benign requests sent, and refused.
    pub benign_sent: usize,
    /// See `benign_sent`.
    pub benign_refused: usize,
    /// Benign sources with a refused request.
    pub benign_sources_refused: BTreeSet<IpAddr>,
    /// Blocks seen covering a benign source (a prefix block's exceptions spare some).
    pub benign_covered: Vec<String>,
    /// The enforcer's CPU seconds over the scenario and its peak RSS (the agent, or the
    /// tool's processes together).
    pub cpu_s: f64,
    /// See `cpu_s`.
    pub peak_rss_kib: u64,
    /// The scenario's length (benign traffic), seconds.
    pub wall_s: f64,
    /// The attack's own length, seconds.
    pub attack_s: f64,
    /// The tool's summary line.
    pub tool_summary: Option<String>,
    /// The first malicious request, Unix ns.
    pub first_malicious_ns: u64,
}

/// Who enforces in a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// The agent.
    Enforce,
    /// Another tool, with the agent in `--dry-run` (it reports but never blocks).
    Compare(Other),
}

/// Runs `scenario` in a fresh lab, enforced as `pass` says.
///
/// # Panics
///
/// If the lab cannot be built or the maps cannot be read.
#[expect(
    clippy::too_many_lines,
    reason = "one scenario's run, read top to bottom"
)]
#[expect(clippy::cast_precision_loss, reason = "durations for display")]
pub fn run(scenario: Scenario, pass: Pass) -> Measured {
    let tag = format!(
        "{}{}",
        match pass {
            Pass::Enforce => "l",
            Pass::Compare(o) => o.tag(),
        },
        scenario.name().chars().take(3).collect::<String>()
    );
    let tool_source = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 2));
    let attackers = scenario.attackers(tool_source);
    let mut clients = benign::sources();
    clients.extend(attackers.iter().copied());
    let mut bed = Testbed::new(&tag, &clients, pass != Pass::Enforce);
    assert_eq!(
        bed.tool_source(),
        tool_source,
        "the lab's primary client address"
    );
    // The other tool is ready before the scenario's clock starts.
    let (other, source) = match pass {
        Pass::Enforce => (None, BlockSource::Pinned(bed.pin.path().to_path_buf())),
        Pass::Compare(o) => (
            Some(o.start(&mut bed)),
            BlockSource::Nftables(bed.lab.server_ns().to_owned()),
        ),
    };
    let start = Instant::now();
    let deadline = start + WARMUP + scenario.attack_bound() + COOLDOWN + Duration::from_secs(10);
    let traffic = bed.traffic(deadline);
    let enforcers = other
        .as_ref()
        .map_or_else(|| vec![bed.agent], |o| o.pids.clone());
    let monitor = BlockMonitor::start(source);
    let usage_before = Usage::of_all(&enforcers);
    let actors = benign::start(&traffic);
    traffic.pause(WARMUP);
    let attack = if traffic::interrupted() {
        AttackRun::default()
    } else {
        eprintln!("lab: {}: attack starts", scenario.name());
        match scenario {
            Scenario::Hydra => attacks::hydra(&mut bed, &monitor),
            Scenario::Ffuf => attacks::ffuf(&mut bed, &monitor),
            Scenario::Flood => attacks::flood(&mut bed, &monitor),
            Scenario::Stuffing => attacks::stuffing(&traffic),
            Scenario::DistributedStuffing => attacks::distributed(&traffic),
            Scenario::Scraping => attacks::scraping(&traffic),
            Scenario::SessionRotation => attacks::session_rotation(&traffic),
            Scenario::FingerprintRotation => attacks::fingerprint_rotation(&traffic),
            Scenario::SlowBruteforce => attacks::slow_bruteforce(&traffic, 28),
            Scenario::BenignOnly => {
                let started_ns = sensor_user::clock::unix_ns();
                traffic.pause(scenario.attack_bound());
                AttackRun {
                    started_ns,
                    ended_ns: sensor_user::clock::unix_ns(),
                    ..AttackRun::default()
                }
            }
        }
    };
    traffic.pause(COOLDOWN);
    traffic.stop();
    for a in actors {
        let _ = a.join();
    }
    let seen = monitor.finish().unwrap_or_else(|e| panic!("{e}"));
    let usage_after = Usage::of_all(&enforcers);
    let wall_s = start.elapsed().as_secs_f64();
    let sent = traffic.sent();

    // The first malicious request: the client's own record, else the tool's start.
    let first_ns = sent
        .iter()
        .filter(|s| s.role == Role::Attack)
        .map(|s| s.at_ns)
        .min()
        .unwrap_or(attack.started_ns);
    let secs = |t: u64| t.saturating_sub(first_ns) as f64 / 1e9;
    let verdict = measure::verdict(&bed.files.events, &attackers);
    let (block, detectors) = match &other {
        None => (
            verdict
                .first_block
                .as_ref()
                .map(|(t, d)| (secs(*t), d.clone())),
            verdict.finding_detectors,
        ),
        Some(o) => {
            let rules = o.rules(&bed, &seen);
            let on_attackers: Vec<_> = seen
                .iter()
                .filter(|b| attackers.iter().any(|a| b.net.contains(a)))
                .collect();
            let first = on_attackers.iter().min_by_key(|b| b.seen_ns).map(|b| {
                let rule = rules.get(&b.net.addr()).cloned().unwrap_or_default();
                (secs(b.seen_ns), vec![rule])
            });
            let all = on_attackers
                .iter()
                .filter_map(|b| rules.get(&b.net.addr()).cloned())
                .collect();
            (first, all)
        }
    };
    let first_drop = seen
        .iter()
        .filter(|b| attackers.iter().any(|a| b.net.contains(a)))
        .filter_map(|b| b.first_hit_ns)
        .min();
    let answered = measure::answered_by_nginx(&bed.proxy.access_log);
    let malicious_answered = attackers.iter().filter_map(|a| answered.get(a)).sum();
    let own: Vec<_> = sent.iter().filter(|s| s.role == Role::Attack).collect();
    let malicious_sent = (!own.is_empty()).then(|| {
        let refused = own
            .iter()
            .filter(|s| matches!(s.outcome, Outcome::Refused(_)))
            .count();
        (own.len(), refused)
    });
    let benign: Vec<_> = sent.iter().filter(|s| s.role == Role::Benign).collect();
    let refused: Vec<_> = benign
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Refused(_)))
        .collect();
    for r in &refused {
        eprintln!("lab: {}: benign request refused: {r:?}", scenario.name());
    }
    let benign_sources = benign::sources();
    let benign_covered = seen
        .iter()
        .filter(|b| benign_sources.iter().any(|a| b.net.contains(a)))
        .map(|b| b.net.to_string())
        .collect();
    Measured {
        scenario,
        pass,
        block,
        first_drop_s: first_drop.map(secs),
        detectors,
        malicious_answered,
        malicious_sent,
        benign_sent: benign.len(),
        benign_refused: refused.len(),
        benign_sources_refused: refused.iter().map(|s| s.src).collect(),
        benign_covered,
        cpu_s: usage_after.cpu_s - usage_before.cpu_s,
        peak_rss_kib: usage_after.peak_rss_kib,
        wall_s,
        attack_s: attack.ended_ns.saturating_sub(attack.started_ns) as f64 / 1e9,
        tool_summary: attack.tool_summary,
        first_malicious_ns: first_ns,
        attackers,
    }
}
