//! The scorecard (`docs/SCORECARD.md`): one table of what every scenario measured, with the
//! command that reproduces it, the date, the machine, the tools' versions and notes.
use std::fmt::Write as _;

use super::others::Other;
use super::overhead::Overhead;
use super::scenario::{Measured, Pass};
use super::version;

/// The command that reproduces the scorecard.
pub const COMMAND: &str = "cargo xtask lab --scorecard";

/// Everything the scorecard reports.
pub struct Scorecard<'a> {
    /// Each scenario's measurement.
    pub measured: &'a [Measured],
    /// The comparison passes: fail2ban and `CrowdSec` enforcing on the same scenarios.
    pub others: &'a [Measured],
    /// The overhead run, if it ran.
    pub overhead: Option<&'a Overhead>,
}

/// One tool's table: a row per scenario; `drops` adds the first-drop column (the agent's
/// blocks have drop hits per block, the tools' sets do not).
fn table<'m>(md: &mut String, rows: impl Iterator<Item = &'m Measured>, drops: bool) {
    let _ = writeln!(
        md,
        "| scenario | detected | by | s to block |{} malicious answered | benign refused | CPU s | peak MiB |",
        if drops { " s to first drop |" } else { "" }
    );
    let _ = writeln!(
        md,
        "|---|---|---|---:|{}---:|---:|---:|---:|",
        if drops { "---:|" } else { "" }
    );
    for m in rows {
        let is_attack = !m.attackers.is_empty();
        let detected = match (&m.block, is_attack) {
            (_, false) => "–".to_owned(),
            (Some(_), true) => "yes: blocked".to_owned(),
            (None, true) if !m.detectors.is_empty() => "alert only".to_owned(),
            (None, true) => "**no**".to_owned(),
        };
        let by = match &m.block {
            Some((_, d)) => d.join(" + "),
            None => m.detectors.iter().cloned().collect::<Vec<_>>().join(", "),
        };
        let drop = if drops {
            format!(" {} |", secs(m.first_drop_s))
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "| {} | {detected} | {} | {} |{drop} {} | {} | {:.2} | {} |",
            m.scenario.name(),
            if by.is_empty() { "–" } else { &by },
            secs(m.block.as_ref().map(|b| b.0)),
            answered(m),
            refused(m),
            m.cpu_s,
            m.peak_rss_kib / 1024,
        );
    }
}

/// Malicious requests answered (and for the lab's own clients, sent and refused).
fn answered(m: &Measured) -> String {
    match m.malicious_sent {
        Some((sent, refused)) => format!(
            "{} (of {sent} sent, {refused} refused)",
            m.malicious_answered
        ),
        None if !m.attackers.is_empty() => m.malicious_answered.to_string(),
        None => "–".to_owned(),
    }
}

/// Benign requests refused, of those sent, and from how many sources (bold when any).
fn refused(m: &Measured) -> String {
    let text = format!(
        "{} of {} ({} sources)",
        m.benign_refused,
        m.benign_sent,
        m.benign_sources_refused.len()
    );
    if m.benign_refused > 0 {
        format!("**{text}**")
    } else {
        text
    }
}

/// One cell of the side-by-side table: blocked after how long, and what got answered.
fn side_cell(m: Option<&Measured>) -> String {
    let Some(m) = m else {
        return "not run".to_owned();
    };
    if m.attackers.is_empty() {
        return if m.benign_refused > 0 {
            format!("**{} benign refused**", m.benign_refused)
        } else {
            "–".to_owned()
        };
    }
    let benign = if m.benign_refused > 0 {
        format!(", **{} benign refused**", m.benign_refused)
    } else {
        String::new()
    };
    match &m.block {
        Some((s, _)) => format!("{s:.1} s, {} answered{benign}", m.malicious_answered),
        None if !m.detectors.is_empty() => {
            format!("alert only ({} answered){benign}", m.malicious_answered)
        }
        None => format!("no ({} answered){benign}", m.malicious_answered),
    }
}

/// `s` seconds with two decimals, or a dash.
fn secs(s: Option<f64>) -> String {
    s.map_or_else(|| "–".to_owned(), |s| format!("{s:.2}"))
}

/// The machine: kernel, CPU model and count, memory.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("?", |(_, m)| m.trim())
        .to_owned();
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    format!(
        "{cpus} × {model}, {} GiB, Linux {}",
        mem_kib / (1024 * 1024),
        version("uname", &["-r"])
    )
}

impl Scorecard<'_> {
    /// The comparison section: the side-by-side table, each tool's table, how they ran.
    fn write_others(&self, md: &mut String) {
        let _ = writeln!(md, "\n## fail2ban and CrowdSec on the same traffic\n");
        let _ = writeln!(
            md,
            "Each scenario runs again for each tool, in a fresh lab with the same actors: the \
             tool runs live in the server namespace, reads nginx's logs as nginx writes them and \
             enforces through its firewall action (in the namespace's own nftables), while the \
             agent only reports (`--dry-run`). {}; {}. fail2ban: `fail2ban-server` with the \
             nginx jails `jail.conf` ships (`nginx-http-auth`, `nginx-limit-req`, \
             `nginx-botsearch`, `nginx-bad-request`: shipped filters, `maxretry` 5 within \
             `findtime` 10 min), through its `nftables-multiport` action (`jail.conf`'s default \
             action is iptables', which Debian 12 does not install); these jails look for HTTP \
             basic-auth failures, `limit_req` rejections and probes of a fixed list of paths in \
             nginx's error log, and for 400 answers in its access log, none of which an API's \
             failed logins (403), enumeration or floods produce. CrowdSec: its agent and \
             local API with the hub content Debian installs (the nginx parser and HTTP \
             scenarios), acquiring nginx's access log, and its firewall bouncer in `nftables` \
             mode polling the local API every {} s as shipped, or every 1 s. A block here is \
             the first poll of the namespace's nftables sets (every 200 ms) that held an \
             attacking address; *by* is the jail or CrowdSec scenario behind it.\n",
            Other::Fail2ban.versions(),
            Other::ALL[1].versions(),
            super::others::BOUNCER_DEFAULT_POLL_S,
        );
        let passes: Vec<Pass> = Other::ALL.map(Pass::Compare).to_vec();
        let _ = write!(md, "| scenario | apisensor |");
        for o in Other::ALL {
            let _ = write!(md, " {} |", o.name());
        }
        let _ = writeln!(md, "\n|---|---|{}", "---|".repeat(passes.len()));
        for m in self.measured {
            let _ = write!(md, "| {} | {} |", m.scenario.name(), side_cell(Some(m)));
            for p in &passes {
                let other = self
                    .others
                    .iter()
                    .find(|o| o.scenario == m.scenario && o.pass == *p);
                let _ = write!(md, " {} |", side_cell(other));
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(
            md,
            "\nCells: seconds from the first malicious request to the block, and malicious \
             requests answered (nginx's log); *alert only* when the agent reported the attackers \
             without blocking them, *no* when nothing blocked an attacking address.\n"
        );
        for p in passes {
            let Pass::Compare(o) = p else { continue };
            let _ = writeln!(md, "### {}\n", o.name());
            table(md, self.others.iter().filter(|m| m.pass == p), false);
            if p != Pass::Compare(Other::ALL[Other::ALL.len() - 1]) {
                let _ = writeln!(md);
            }
        }
    }

    /// What this run missed or refused wrongly, scenario by scenario, from the measurements.
    fn write_notes(&self, md: &mut String) {
        let mut notes = Vec::new();
        for m in self.measured {
            let name = m.scenario.name();
            if !m.attackers.is_empty() && m.block.is_none() {
                let found: Vec<String> = m.detectors.iter().cloned().collect();
                notes.push(if found.is_empty() {
                    format!("`{name}`: **missed**: no finding about the attackers.")
                } else {
                    format!(
                        "`{name}`: not blocked; the agent reported {} about the attackers \
                         (findings and alerts, no block decision).",
                        found.join(", ")
                    )
                });
            }
            if m.benign_refused > 0 {
                let who: Vec<String> = m
                    .benign_sources_refused
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                notes.push(format!(
                    "`{name}`: **{} benign requests refused**, from {} (blocks seen over benign \
                     sources: {}).",
                    m.benign_refused,
                    who.join(", "),
                    if m.benign_covered.is_empty() {
                        "none".to_owned()
                    } else {
                        m.benign_covered.join(", ")
                    }
                ));
            }
        }
        let _ = writeln!(md, "\nMisses and refusals in this run:\n");
        if notes.is_empty() {
            let _ = writeln!(md, "- none.");
        }
        for n in notes {
            let _ = writeln!(md, "- {n}");
        }
    }

    /// The markdown document.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Attack lab scorecard\n");
        let _ = writeln!(
            md,
            "Reproduce: `{COMMAND}` (as root). Measured {} on {}; apisensor at {}.\n",
            version("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            machine(),
            version(
                "git",
                &[
                    "-C",
                    concat!(env!("CARGO_MANIFEST_DIR"), "/.."),
                    "describe",
                    "--always",
                    "--dirty"
                ]
            ),
        );
        let _ = writeln!(
            md,
            "Each scenario runs in a fresh lab: a server network namespace with the sample API \
             (`sample-api`, 1000 accounts, a 50 ms login) behind nginx on port 80, and the \
             release `apisensor run` attached to the server's veth with its default \
             configuration (the lab gives it only its pin directory, state directory, \
             interface and event file); a client namespace carries every source address \
             (198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32). Benign actors run through every \
             scenario, from 8 s before the attack to 5 s after it: three people who browse and \
             log in with human think times (one login in five mistyped first), an office of 12 \
             users behind one address (browser header sets, a session each), a health checker \
             on `/health` every second, an app polling `/notifications` with its session every \
             2 s, and a crawler fetching one item every 4 s.\n"
        );
        let _ = writeln!(md, "## apisensor\n");
        table(&mut md, self.measured.iter(), true);
        let _ = writeln!(md, "\nScenarios:\n");
        for m in self.measured {
            let tool = m
                .tool_summary
                .as_deref()
                .map_or_else(String::new, |t| format!(" Tool: `{t}`."));
            let _ = writeln!(
                md,
                "- `{}`: {}. The attack ran {:.1} s.{tool}",
                m.scenario.name(),
                m.scenario.describe(),
                m.attack_s
            );
        }
        self.write_notes(&mut md);
        if !self.others.is_empty() {
            self.write_others(&mut md);
        }
        if let Some(o) = self.overhead {
            o.write_section(&mut md);
        }
        let _ = writeln!(md, "\n## How the columns are measured\n");
        let _ = writeln!(
            md,
            "- *detected*: a kernel block written for a decision whose target covers an \
             attacking address (from the agent's event file); *alert only* when the agent had \
             findings about the attackers but no block; *by*: the detectors of the first \
             block's findings (`short_lived` is context: it raises a decision's score, never \
             decides).\n\
             - *s to block*: from the first malicious request (the lab's client's clock, or the \
             tool's start) to the block's `written_ns`. *s to first drop*: to the first poll of \
             the pinned maps (every 200 ms) that showed drop hits on that block.\n\
             - *malicious answered*: nginx access-log lines from the attacking addresses (status \
             other than 499); after a block nothing from the address reaches nginx, so these \
             are the answers before the block. For the lab's own clients, what they sent and how \
             many got no answer.\n\
             - *benign refused*: benign requests that got no HTTP answer (no handshake within \
             3 s, reset, or no answer within 5 s), and how many distinct benign addresses had \
             one. Target: zero in every scenario.\n\
             - *CPU s*: the enforcer's user and system time over the scenario \
             (`/proc/PID/stat`): the agent's, or the tool's processes' together \
             (`fail2ban-server`; `crowdsec` and its bouncer); *peak MiB*: their `VmHWM`.\n"
        );
        md
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::IpAddr;

    use super::side_cell;
    use crate::attack_lab::scenario::{Measured, Pass, Scenario};

    /// A measurement with `attackers` attacking addresses and nothing else happening.
    fn measured(attackers: usize) -> Measured {
        Measured {
            scenario: Scenario::Hydra,
            attackers: (0..attackers)
                .map(|i| IpAddr::from([198, 51, 100, u8::try_from(i + 2).expect("few")]))
                .collect(),
            pass: Pass::Enforce,
            block: None,
            first_drop_s: None,
            detectors: BTreeSet::new(),
            malicious_answered: 7,
            malicious_sent: None,
            benign_sent: 10,
            benign_refused: 0,
            benign_sources_refused: BTreeSet::new(),
            benign_covered: Vec::new(),
            cpu_s: 0.0,
            peak_rss_kib: 0,
            wall_s: 0.0,
            attack_s: 0.0,
            tool_summary: None,
            first_malicious_ns: 0,
        }
    }

    #[test]
    fn side_by_side_cells_say_blocked_alerted_or_missed() {
        assert_eq!(side_cell(None), "not run");
        let mut m = measured(1);
        assert_eq!(side_cell(Some(&m)), "no (7 answered)");
        m.detectors.insert("session_rotation".to_owned());
        assert_eq!(side_cell(Some(&m)), "alert only (7 answered)");
        m.block = Some((1.26, vec!["brute_force".to_owned()]));
        assert_eq!(side_cell(Some(&m)), "1.3 s, 7 answered");
        m.benign_refused = 2;
        assert_eq!(
            side_cell(Some(&m)),
            "1.3 s, 7 answered, **2 benign refused**"
        );
        let mut quiet = measured(0);
        assert_eq!(side_cell(Some(&quiet)), "–");
        quiet.benign_refused = 1;
        assert_eq!(side_cell(Some(&quiet)), "**1 benign refused**");
    }
}
