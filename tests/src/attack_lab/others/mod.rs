//! fail2ban and `CrowdSec` live on the same traffic: each runs in the server namespace of a
//! comparison pass (the agent there only reports, `--dry-run`), with the configuration Debian
//! ships (private copies in the lab directory: paths, sockets and the database moved there),
//! reads nginx's logs as nginx writes them, and enforces through its firewall action in the
//! server namespace's own nftables ruleset (nothing outside the lab is touched). The block
//! monitor reads their bans from those nftables sets
//! ([`super::measure::BlockSource::Nftables`]), so a ban counts from the moment the firewall
//! holds it.
//!
//! - [`fail2ban`]: `fail2ban-server` with the shipped nginx jails.
//! - [`crowdsec`]: `crowdsec` (agent and local API) with the shipped nginx collection, and its
//!   firewall bouncer polling the local API at its default interval or at 1 s.
pub mod crowdsec;
pub mod fail2ban;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::measure::SeenBlock;
use super::topology::Testbed;
use super::version;

/// `CrowdSec`'s firewall bouncer's shipped `update_frequency`, seconds.
pub const BOUNCER_DEFAULT_POLL_S: u32 = 10;
/// The longest a tool may take to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest one of the tools' client commands may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// A log-based tool compared with the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Other {
    /// fail2ban with its shipped nginx jails.
    Fail2ban,
    /// `CrowdSec` with its firewall bouncer polling every `poll_s` seconds.
    CrowdSec {
        /// The bouncer's `update_frequency`, seconds.
        poll_s: u32,
    },
}

impl Other {
    /// Every comparison, in the scorecard's order: fail2ban, `CrowdSec` with the bouncer's
    /// default poll, and with a 1 s poll.
    pub const ALL: [Other; 3] = [
        Other::Fail2ban,
        Other::CrowdSec {
            poll_s: BOUNCER_DEFAULT_POLL_S,
        },
        Other::CrowdSec { poll_s: 1 },
    ];

    /// Its name in the scorecard.
    pub fn name(self) -> String {
        match self {
            Other::Fail2ban => "fail2ban".to_owned(),
            Other::CrowdSec { poll_s } => format!("CrowdSec (bouncer at {poll_s} s)"),
        }
    }

    /// A short tag for the lab's namespace names.
    pub fn tag(self) -> &'static str {
        match self {
            Other::Fail2ban => "f",
            Other::CrowdSec { .. } => "c",
        }
    }

    /// The versions of what runs, from the installed programs.
    pub fn versions(self) -> String {
        match self {
            Other::Fail2ban => format!("fail2ban {}", version("fail2ban-server", &["-V"])),
            Other::CrowdSec { .. } => format!(
                "CrowdSec {}, crowdsec-firewall-bouncer {}",
                version("crowdsec", &["-version"])
                    .rsplit("version: ")
                    .next()
                    .unwrap_or("?"),
                version(
                    "dpkg-query",
                    &["-W", "-f=${Version}", "crowdsec-firewall-bouncer"]
                ),
            ),
        }
    }

    /// Starts it in `bed`'s server namespace and waits (bounded) until it reads the logs and
    /// its firewall action is in place.
    ///
    /// # Panics
    ///
    /// If it cannot be configured, started, or is not ready in time (its logs are printed).
    pub fn start(self, bed: &mut Testbed) -> Running {
        match self {
            Other::Fail2ban => fail2ban::start(bed),
            Other::CrowdSec { poll_s } => crowdsec::start(bed, poll_s),
        }
    }
}

/// A running comparison tool.
#[derive(Debug)]
pub struct Running {
    /// What runs.
    pub other: Other,
    /// Its processes (stopped with the lab).
    pub pids: Vec<u32>,
    /// Where its bans' reasons are read.
    reasons: BanReasons,
}

/// Where a running tool's bans' reasons are read.
#[derive(Debug)]
enum BanReasons {
    /// fail2ban: the jail, from the nftables set's name.
    JailOfSet,
    /// `CrowdSec`: the scenario of the source's alert, from `cscli` with this configuration.
    Alerts(PathBuf),
}

impl Running {
    /// The rule behind each address's ban: fail2ban's jail (from the set's name), `CrowdSec`'s
    /// scenario (from its alerts); the set's name if nothing better is known.
    pub fn rules(&self, bed: &Testbed, seen: &[SeenBlock]) -> BTreeMap<IpAddr, String> {
        let alerts = match &self.reasons {
            BanReasons::JailOfSet => BTreeMap::new(),
            BanReasons::Alerts(config) => crowdsec::alert_scenarios(bed, config),
        };
        seen.iter()
            .map(|b| {
                let addr = b.net.addr();
                let set = b.set.clone().unwrap_or_default();
                let rule = match self.reasons {
                    BanReasons::JailOfSet => fail2ban::jail_of_set(&set).map(str::to_owned),
                    BanReasons::Alerts(_) => alerts.get(&addr).cloned(),
                };
                (addr, rule.unwrap_or(set))
            })
            .collect()
    }
}

/// Polls `ready` every 200 ms until it says yes, up to [`READY_TIMEOUT`].
///
/// # Panics
///
/// When the time is up: with `what` and the text `why()` gives.
fn wait_ready(what: &str, ready: &mut dyn FnMut() -> bool, why: &dyn Fn() -> String) {
    let deadline = Instant::now() + READY_TIMEOUT;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} was not ready within {READY_TIMEOUT:?}: {}",
            why()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A file's text, or a note that it cannot be read.
fn read_or_note(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()))
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Copies a directory tree (regular files and directories; links followed).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("creating {}: {e}", to.display()))?;
    for entry in std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &dest)?;
        } else if path.is_file() {
            std::fs::copy(&path, &dest).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}
