//! The kernel's own account of a process's BPF programs: with `kernel.bpf_stats_enabled` on,
//! the kernel counts each program's runs and the nanoseconds spent in them (`run_cnt`,
//! `run_time_ns`, read with `bpftool -j prog show`). The statistics add two clock reads to
//! every run, so runs measured with them on are kept apart from the timed ones.
use std::time::Duration;

use serde_json::Value;

/// The sysctl that turns the statistics on.
const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
/// The longest `bpftool` may take.
const BPFTOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// One program's counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgCounters {
    /// The program's name.
    pub name: String,
    /// Its runs.
    pub runs: u64,
    /// Nanoseconds spent in it.
    pub ns: u64,
}

/// Keeps the statistics on while it lives and puts the sysctl back as it was when dropped.
#[derive(Debug)]
pub struct StatsOn {
    before: String,
}

impl StatsOn {
    /// Turns the statistics on.
    ///
    /// # Errors
    ///
    /// If the sysctl cannot be read or written.
    pub fn new() -> Result<Self, String> {
        let before = std::fs::read_to_string(SYSCTL).map_err(|e| format!("{SYSCTL}: {e}"))?;
        std::fs::write(SYSCTL, "1").map_err(|e| format!("{SYSCTL}: {e}"))?;
        Ok(Self { before })
    }
}

impl Drop for StatsOn {
    fn drop(&mut self) {
        let _ = std::fs::write(SYSCTL, self.before.trim());
    }
}

/// The counters of the programs named `names`, one each (bpftool here does not say which
/// process holds a program, so a name loaded twice, by another agent, is an error).
///
/// # Errors
///
/// If bpftool fails or prints something else than its JSON, or a name is not loaded exactly
/// once.
pub fn programs(names: &[&str]) -> Result<Vec<ProgCounters>, String> {
    let mut cmd = std::process::Command::new("bpftool");
    cmd.args(["-j", "prog", "show"]);
    let out = crate::lab::output_bounded(cmd, BPFTOOL_TIMEOUT, "bpftool prog show");
    if !out.status.success() {
        return Err(format!(
            "bpftool prog show failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse(&String::from_utf8_lossy(&out.stdout), names)
}

/// The programs of `bpftool -j prog show`'s output named `names`, one each.
fn parse(json: &str, names: &[&str]) -> Result<Vec<ProgCounters>, String> {
    let progs: Value =
        serde_json::from_str(json).map_err(|e| format!("bpftool's JSON does not parse: {e}"))?;
    let mut out = Vec::new();
    for p in progs.as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or_default();
        if names.contains(&name) {
            out.push(ProgCounters {
                name: name.to_owned(),
                runs: p["run_cnt"].as_u64().unwrap_or(0),
                ns: p["run_time_ns"].as_u64().unwrap_or(0),
            });
        }
    }
    for name in names {
        let n = out.iter().filter(|p| p.name == *name).count();
        if n != 1 {
            return Err(format!(
                "{n} programs named {name} are loaded; the measurement needs exactly one"
            ));
        }
    }
    Ok(out)
}

/// Each program's runs and nanoseconds between two readings.
pub fn delta(before: &[ProgCounters], after: &[ProgCounters]) -> Vec<ProgCounters> {
    after
        .iter()
        .map(|a| {
            let b = before.iter().find(|b| b.name == a.name);
            ProgCounters {
                name: a.name.clone(),
                runs: a.runs - b.map_or(0, |b| b.runs.min(a.runs)),
                ns: a.ns - b.map_or(0, |b| b.ns.min(a.ns)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{ProgCounters, delta, parse};

    #[test]
    fn a_process_programs_and_their_counters() {
        let json = r#"[
          {"id": 7, "type": "xdp", "name": "apisensor_xdp", "run_time_ns": 5000, "run_cnt": 10},
          {"id": 8, "type": "sched_cls", "name": "apisensor_tc", "run_time_ns": 900, "run_cnt": 3},
          {"id": 10, "type": "xdp", "name": "other"}
        ]"#;
        let names = ["apisensor_xdp", "apisensor_tc"];
        let got = parse(json, &names).expect("parses");
        let c = |name: &str, runs, ns| ProgCounters {
            name: name.to_owned(),
            runs,
            ns,
        };
        assert_eq!(
            got,
            vec![c("apisensor_xdp", 10, 5000), c("apisensor_tc", 3, 900)]
        );
        let later = [c("apisensor_xdp", 15, 8000), c("apisensor_tc", 3, 900)];
        assert_eq!(
            delta(&got, &later),
            vec![c("apisensor_xdp", 5, 3000), c("apisensor_tc", 0, 0)]
        );
        assert!(parse("{", &[]).is_err());
        let twice = json.replace(r#""other""#, r#""apisensor_xdp""#);
        assert!(
            parse(&twice, &names)
                .expect_err("loaded twice")
                .contains("2 programs")
        );
        assert!(parse("[]", &names).is_err());
    }
}
