//! The scorecard (`docs/SCORECARD.md`): one table of what every scenario measured, with the
//! command that reproduces it, the date, the machine, the tools' versions and notes.
use std::fmt::Write as _;
use std::process::Command;

use super::others::OtherTools;
use super::overhead::Overhead;
use super::scenario::Measured;

/// The command that reproduces the scorecard.
pub const COMMAND: &str = "cargo xtask lab --scorecard";

/// Everything the scorecard reports.
pub struct Scorecard<'a> {
    /// Each scenario's measurement.
    pub measured: &'a [Measured],
    /// fail2ban's and `CrowdSec`'s results on the same traffic, per scenario (same order), with
    /// the comparison pass's first malicious request (Unix ns).
    pub others: &'a [(u64, OtherTools)],
    /// The overhead run, if it ran.
    pub overhead: Option<&'a Overhead>,
}

/// The first line a program prints for `args` (its version), or `?`.
pub fn version(program: &str, args: &[&str]) -> String {
    Command::new(program).args(args).output().ok().map_or_else(
        || "?".to_owned(),
        |o| {
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("?")
                .to_owned()
        },
    )
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
    #[expect(clippy::too_many_lines, reason = "one document, read top to bottom")]
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
        let _ = writeln!(
            md,
            "| scenario | detected | by | s to block | s to first drop | malicious answered | benign refused | agent CPU s | agent peak MiB |"
        );
        let _ = writeln!(md, "|---|---|---|---:|---:|---:|---:|---:|---:|");
        for m in self.measured {
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
            let answered = match m.malicious_sent {
                Some((sent, refused)) => format!(
                    "{} (of {sent} sent, {refused} refused)",
                    m.malicious_answered
                ),
                None if is_attack => m.malicious_answered.to_string(),
                None => "–".to_owned(),
            };
            let _ = writeln!(
                md,
                "| {} | {detected} | {} | {} | {} | {answered} | {} of {} ({} sources) | {:.2} | {} |",
                m.scenario.name(),
                if by.is_empty() { "–" } else { &by },
                secs(m.block.as_ref().map(|b| b.0)),
                secs(m.first_drop_s),
                m.benign_refused,
                m.benign_sent,
                m.benign_sources_refused.len(),
                m.agent_cpu_s,
                m.agent_peak_rss_kib / 1024,
            );
        }
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
            OtherTools::write_section(&mut md, self.measured, self.others);
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
             - *agent CPU s*: the agent's user and system time over the scenario \
             (`/proc/PID/stat`); *peak MiB*: its `VmHWM`.\n"
        );
        md
    }
}
