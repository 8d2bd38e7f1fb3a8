//! fail2ban and `CrowdSec` on the same traffic: each scenario's nginx logs (from its comparison
//! pass, where the agent only reported, so the logs hold the whole attack) replayed through
//! fail2ban's shipped nginx filters with the shipped jails' `maxretry`/`findtime`, and through
//! `CrowdSec`'s shipped nginx parser and HTTP scenarios (`crowdsec -dsn file://... -type nginx`,
//! offline, with a private configuration and database in a temporary directory, its local API
//! on loopback). Neither touches a firewall: a ban is the time the tool would have banned, by
//! the log's own timestamps (one-second resolution).
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::scenario::Measured;
use super::scorecard::version;

/// fail2ban's shipped nginx jails: the filter, the log it reads, `maxretry`, `findtime` (s)
/// (jail.conf's defaults: none of these jails changes them).
const FAIL2BAN_JAILS: [(&str, LogKind, usize, u64); 4] = [
    ("nginx-http-auth", LogKind::Error, 5, 600),
    ("nginx-limit-req", LogKind::Error, 5, 600),
    ("nginx-botsearch", LogKind::Access, 5, 600),
    ("nginx-bad-request", LogKind::Access, 5, 600),
];
/// `CrowdSec`'s firewall bouncer's default poll of the local API, seconds.
const BOUNCER_DEFAULT_POLL_S: f64 = 10.0;

/// Which of nginx's logs.
#[derive(Clone, Copy)]
enum LogKind {
    Access,
    Error,
}

/// One tool's bans on one scenario's traffic.
#[derive(Debug, Clone, Default)]
pub struct Bans {
    /// The first ban of each address, Unix seconds (log time), with the rule.
    pub first: BTreeMap<IpAddr, (u64, String)>,
    /// Why the tool could not be run, if it could not.
    pub error: Option<String>,
}

/// Both tools on one scenario.
#[derive(Debug, Clone, Default)]
pub struct OtherTools {
    /// fail2ban's bans.
    pub fail2ban: Bans,
    /// `CrowdSec`'s bans (the alert's overflow time; its bouncer adds its poll).
    pub crowdsec: Bans,
}

/// A log pair of one comparison pass.
#[derive(Debug)]
pub struct Logs {
    /// nginx's access log.
    pub access: PathBuf,
    /// nginx's error log.
    pub error: PathBuf,
}

/// The most access-log lines replayed: a flood's log holds hundreds of thousands, which
/// `CrowdSec`'s replay reads for many minutes; the first lines (in time order) are the ones a
/// ban would come from.
pub const MAX_REPLAYED_LINES: usize = 100_000;

/// Runs both tools on `logs`; `work` is a scratch directory.
pub fn replay(logs: &Logs, work: &Path) -> OtherTools {
    let access = cut(&logs.access, work);
    let logs = Logs {
        access,
        error: logs.error.clone(),
    };
    OtherTools {
        fail2ban: fail2ban(&logs),
        crowdsec: crowdsec(&logs.access, work).unwrap_or_else(|e| Bans {
            error: Some(e),
            ..Bans::default()
        }),
    }
}

/// `log`, or its first [`MAX_REPLAYED_LINES`] lines in a file beside it in `work`.
fn cut(log: &Path, work: &Path) -> PathBuf {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let Some((at, _)) = text.match_indices('\n').nth(MAX_REPLAYED_LINES - 1) else {
        return log.to_path_buf();
    };
    let to = work.join("replayed.access.log");
    match std::fs::write(&to, &text[..=at]) {
        Ok(()) => to,
        Err(_) => log.to_path_buf(),
    }
}

/// fail2ban: each shipped nginx filter through `fail2ban-regex`, then its jail's rule: an
/// address is banned at its `maxretry`-th failure within `findtime`.
fn fail2ban(logs: &Logs) -> Bans {
    let mut bans = Bans::default();
    for (jail, kind, maxretry, findtime) in FAIL2BAN_JAILS {
        let log = match kind {
            LogKind::Access => &logs.access,
            LogKind::Error => &logs.error,
        };
        let filter = format!("/etc/fail2ban/filter.d/{jail}.conf");
        let out = Command::new("fail2ban-regex")
            .arg("-o")
            .arg("<ip> <time>")
            .arg(log)
            .arg(&filter)
            .stdin(Stdio::null())
            .output();
        let out = match out {
            Ok(o) if o.status.success() => o,
            Ok(o) => {
                bans.error = Some(format!(
                    "fail2ban-regex {jail}: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
                continue;
            }
            Err(e) => {
                bans.error = Some(format!("cannot run fail2ban-regex: {e}"));
                return bans;
            }
        };
        let mut failures: BTreeMap<IpAddr, Vec<u64>> = BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut parts = line.split_whitespace();
            let (Some(ip), Some(t)) = (parts.next(), parts.next()) else {
                continue;
            };
            if let (Ok(ip), Ok(t)) = (ip.parse::<IpAddr>(), t.parse::<f64>()) {
                #[expect(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "log times are positive whole seconds"
                )]
                failures.entry(ip).or_default().push(t as u64);
            }
        }
        for (ip, mut times) in failures {
            times.sort_unstable();
            let ban = (maxretry - 1..times.len())
                .find(|&i| times[i] - times[i + 1 - maxretry] <= findtime)
                .map(|i| times[i]);
            if let Some(t) = ban {
                let e = bans.first.entry(ip).or_insert((t, jail.to_owned()));
                if t < e.0 {
                    *e = (t, jail.to_owned());
                }
            }
        }
    }
    bans
}

/// `CrowdSec`'s replay of `access_log` with a private configuration in `work`; its alerts are
/// read from its database.
fn crowdsec(access_log: &Path, work: &Path) -> Result<Bans, String> {
    let dir = work.join("crowdsec");
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = dir.join("cfg");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(|e| format!("creating {}: {e}", data.display()))?;
    copy_dir(Path::new("/etc/crowdsec"), &cfg)?;
    for f in ["local_api_credentials.yaml", "config.yaml.local"] {
        let _ = std::fs::remove_file(cfg.join(f));
    }
    for entry in std::fs::read_dir("/var/lib/crowdsec/data").map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with("crowdsec.db") {
            std::fs::copy(entry.path(), data.join(&name)).map_err(|e| e.to_string())?;
        }
    }
    // Debian's offline hub ships the path-traversal data file under an older name than the
    // scenario asks for.
    let traversal = data.join("path_traversal.txt");
    if traversal.exists() && !data.join("http_path_traversal.txt").exists() {
        std::fs::copy(&traversal, data.join("http_path_traversal.txt"))
            .map_err(|e| e.to_string())?;
    }
    let (c, d) = (cfg.display(), data.display());
    // The local API listens on loopback, on a port of this process's own.
    let port = 20_000 + std::process::id() % 20_000;
    let config = format!(
        "common:\n  daemonize: false\n  log_media: stdout\n  log_level: error\n  working_dir: .\n\
         config_paths:\n  config_dir: {c}/\n  data_dir: {d}/\n  simulation_path: {c}/simulation.yaml\n  \
         hub_dir: /var/lib/crowdsec/hub/\n  index_path: /var/lib/crowdsec/hub/.index.json\n  \
         notification_dir: {c}/notifications/\n  plugin_dir: /usr/lib/crowdsec/plugins/\n\
         crowdsec_service:\n  acquisition_path: {c}/acquis.yaml\n  parser_routines: 1\n\
         cscli:\n  output: json\n\
         db_config:\n  log_level: error\n  type: sqlite\n  db_path: {d}/crowdsec.db\n\
         api:\n  client:\n    insecure_skip_verify: false\n    credentials_path: {c}/local_api_credentials.yaml\n  \
         server:\n    log_level: error\n    listen_uri: 127.0.0.1:{port}\n    profiles_path: {c}/profiles.yaml\n    \
         trusted_ips:\n      - 127.0.0.1\n\
         prometheus:\n  enabled: false\n"
    );
    let config_path = cfg.join("config.yaml");
    std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
    std::fs::write(
        cfg.join("acquis.yaml"),
        "filenames:\n  - /dev/null\nlabels:\n  type: nginx\n",
    )
    .map_err(|e| e.to_string())?;
    let creds = cfg.join("local_api_credentials.yaml");
    run_bounded(
        Command::new("cscli")
            .arg("-c")
            .arg(&config_path)
            .args(["machines", "add", "apisensor-lab", "--auto", "-f"])
            .arg(&creds),
        "cscli machines add",
    )?;
    run_bounded(
        Command::new("crowdsec")
            .arg("-c")
            .arg(&config_path)
            .arg("-dsn")
            .arg(format!("file://{}", access_log.display()))
            .args(["-type", "nginx"]),
        "crowdsec -dsn",
    )?;
    let script = "import sqlite3, sys\n\
                  for ip, scenario, stopped in sqlite3.connect(sys.argv[1]).execute(\
                  'select source_ip, scenario, stopped_at from alerts'):\n    \
                  print(ip, scenario, stopped)";
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(data.join("crowdsec.db"))
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    let mut bans = Bans::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // `IP SCENARIO 2026-12-05 02:43:29+00:00`
        let mut parts = line.splitn(3, ' ');
        let (Some(ip), Some(scenario), Some(at)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (Ok(ip), Some(t)) = (ip.parse::<IpAddr>(), unix_of(at)) else {
            continue;
        };
        let e = bans.first.entry(ip).or_insert((t, scenario.to_owned()));
        if t < e.0 {
            *e = (t, scenario.to_owned());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(bans)
}

/// Runs a command to its end with its output captured (the tools here end on their own; the
/// replay is bounded by the log's size).
fn run_bounded(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&out.stderr);
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Err(format!("{what} failed ({}): {last}", out.status))
    }
}

/// Unix seconds of `2026-12-05 02:43:29+00:00` (UTC, as `CrowdSec`'s database stores it).
fn unix_of(at: &str) -> Option<u64> {
    let (date, time) = at.split_once(' ')?;
    let mut ymd = date.split('-').map(str::parse::<i64>);
    let (year, month, day) = (ymd.next()?.ok()?, ymd.next()?.ok()?, ymd.next()?.ok()?);
    let mut hms = time.get(..8)?.split(':').map(str::parse::<i64>);
    let (hour, minute, second) = (hms.next()?.ok()?, hms.next()?.ok()?, hms.next()?.ok()?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    u64::try_from(days * 86_400 + hour * 3600 + minute * 60 + second).ok()
}

/// Copies a directory tree (regular files and directories; links followed).
fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
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

impl OtherTools {
    /// One cell: attackers banned, the first ban's delay from `first_ns` and rule, and benign
    /// addresses banned; `extra_s` is added to the delay (a bouncer's poll).
    fn cell(bans: &Bans, m: &Measured, first_ns: u64, extra_s: f64) -> String {
        if let Some(e) = &bans.error {
            // One table cell: the error's first line, without the table's separator.
            let first = e.lines().next().unwrap_or_default().replace('|', "/");
            return format!("not run ({})", first.chars().take(120).collect::<String>());
        }
        let benign: Vec<String> = bans
            .first
            .keys()
            .filter(|ip| super::benign::sources().contains(ip))
            .map(ToString::to_string)
            .collect();
        let benign_note = if benign.is_empty() {
            String::new()
        } else {
            format!("; **benign banned: {}**", benign.join(", "))
        };
        if m.attackers.is_empty() {
            return format!("–{benign_note}");
        }
        let hit: Vec<(&IpAddr, &(u64, String))> = bans
            .first
            .iter()
            .filter(|(ip, _)| m.attackers.contains(ip))
            .collect();
        let Some((_, (t, rule))) = hit.iter().min_by_key(|(_, (t, _))| *t) else {
            return format!("no{benign_note}");
        };
        #[expect(clippy::cast_precision_loss, reason = "times for display")]
        let delay = (*t as f64 - first_ns as f64 / 1e9).max(0.0) + extra_s;
        let count = if m.attackers.len() > 1 {
            format!(" {} of {} addresses,", hit.len(), m.attackers.len())
        } else {
            String::new()
        };
        format!("yes,{count} ~{delay:.0} s ({rule}){benign_note}")
    }

    /// The comparison section of the scorecard.
    pub fn write_section(md: &mut String, measured: &[Measured], others: &[(u64, OtherTools)]) {
        let _ = writeln!(md, "\n## fail2ban and CrowdSec on the same traffic\n");
        let _ = writeln!(
            md,
            "fail2ban {} (`fail2ban-regex` with the shipped nginx filters `nginx-http-auth`, \
             `nginx-limit-req` on the error log and `nginx-botsearch`, `nginx-bad-request` on the \
             access log; a ban at the jail's `maxretry` (5) failures within `findtime` (10 min)); \
             CrowdSec {} (shipped nginx parser and HTTP scenarios, `crowdsec -dsn file://... \
             -type nginx` on the access log, a ban at the scenario's overflow; its firewall \
             bouncer {} polls every {BOUNCER_DEFAULT_POLL_S:.0} s by default, which the second \
             column adds, and 1 s in the third). Each replays nginx's logs of a second pass of \
             the scenario in the same run, where the agent ran with `--dry-run` (it reported but \
             did not block), so the logs hold the whole attack. Times are from the first \
             malicious request to the ban, by the logs' one-second timestamps, without the \
             tools' own reading delay. An access log of more than {MAX_REPLAYED_LINES} lines \
             (the flood's) is replayed up to that line.\n",
            version("fail2ban-server", &["-V"]),
            version("crowdsec", &["-version"])
                .rsplit("version: ")
                .next()
                .unwrap_or("?"),
            version(
                "dpkg-query",
                &["-W", "-f=${Version}", "crowdsec-firewall-bouncer"]
            ),
        );
        let _ = writeln!(
            md,
            "| scenario | fail2ban | CrowdSec (bouncer at 10 s) | CrowdSec (bouncer at 1 s) |"
        );
        let _ = writeln!(md, "|---|---|---|---|");
        for (m, (first_ns, o)) in measured.iter().zip(others) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                m.scenario.name(),
                Self::cell(&o.fail2ban, m, *first_ns, 0.0),
                Self::cell(&o.crowdsec, m, *first_ns, BOUNCER_DEFAULT_POLL_S),
                Self::cell(&o.crowdsec, m, *first_ns, 1.0),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::unix_of;

    #[test]
    fn crowdsec_times_read_as_unix_seconds() {
        let cases = [
            ("1970-01-01 00:00:00+00:00", Some(0)),
            ("2000-03-01 00:00:01+00:00", Some(951_868_801)),
            ("2026-12-05 02:43:29.123+00:00", Some(1_796_438_609)),
            ("yesterday", None),
        ];
        for (text, want) in cases {
            assert_eq!(unix_of(text), want, "{text}");
        }
    }
}
