//! `CrowdSec` live: `crowdsec` (its agent and local API in one process) in the server
//! namespace with a copy of `/etc/crowdsec` in the lab directory (the hub's parsers and
//! scenarios Debian installs: the nginx collection and the HTTP scenarios; the database, logs
//! and data files moved there, no central API), acquiring the lab's nginx access log as
//! `type: nginx`; and `crowdsec-firewall-bouncer` from the shipped configuration file in
//! `nftables` mode, registered with the local API, polling it every `poll_s` seconds and
//! dropping through its own `ip crowdsec` and `ip6 crowdsec6` tables.
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::lab::{run_in_ns, run_in_ns_ok};

use super::super::topology::Testbed;
use super::{BanReasons, CLIENT_TIMEOUT, Other, Running, copy_dir, read_or_note, tail, wait_ready};

/// The local API's address in the server namespace (the bouncer's shipped `api_url`).
const LAPI: &str = "127.0.0.1:8080";
/// The shipped bouncer configuration.
const BOUNCER_CONFIG: &str = "/etc/crowdsec/bouncers/crowdsec-firewall-bouncer.yaml";

/// Starts `CrowdSec` and its bouncer; see the module docs.
///
/// # Panics
///
/// If the configuration cannot be written, a `cscli` step fails, or either process is not
/// ready within the ready time.
pub fn start(bed: &mut Testbed, poll_s: u32) -> Running {
    let dir = bed.lab.tmp_dir().join("crowdsec");
    let (cfg, data) = (dir.join("cfg"), dir.join("data"));
    let config = write_config(&dir, &cfg, &data, &bed.proxy.access_log)
        .unwrap_or_else(|e| panic!("cannot configure CrowdSec: {e}"));
    let ns = bed.lab.server_ns().to_owned();
    let text = |p: &Path| p.to_str().expect("lab paths are UTF-8").to_owned();
    let config_s = text(&config);
    let creds = text(&cfg.join("local_api_credentials.yaml"));
    cscli(
        &ns,
        &config_s,
        &["machines", "add", "apisensor-lab", "--auto", "-f", &creds],
    );
    // A key of this run's own (the bouncer's shipped file names it `${API_KEY}`).
    let key = format!(
        "{:016x}{:016x}",
        sensor_user::clock::unix_ns(),
        u64::from(std::process::id())
    );
    cscli(
        &ns,
        &config_s,
        &["bouncers", "add", "apisensor-lab-firewall", "-k", &key],
    );
    let crowdsec = bed.lab.spawn(
        &ns,
        "crowdsec",
        &["-c", &config_s],
        Some(&dir.join("stdout")),
    );
    let (agent_log, bouncer_log) = (
        dir.join("crowdsec.log"),
        dir.join("crowdsec-firewall-bouncer.log"),
    );
    // The bouncer gives up if the local API does not answer its first poll.
    wait_ready(
        "CrowdSec's local API",
        &mut || {
            run_in_ns(
                &ns,
                "cscli",
                &["-c", &config_s, "lapi", "status"],
                CLIENT_TIMEOUT,
            )
            .status
            .success()
        },
        &|| format!("crowdsec's log:\n{}", tail(&read_or_note(&agent_log), 15)),
    );
    let bouncer_config = dir.join("bouncer.yaml");
    let shipped = std::fs::read_to_string(BOUNCER_CONFIG)
        .unwrap_or_else(|e| panic!("cannot read {BOUNCER_CONFIG}: {e}"));
    let yaml = bouncer_yaml(&shipped, &dir, poll_s, &key).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&bouncer_config, yaml)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", bouncer_config.display()));
    let bouncer = bed.lab.spawn(
        &ns,
        "crowdsec-firewall-bouncer",
        &["-c", &text(&bouncer_config)],
        None,
    );
    wait_ready(
        "CrowdSec and its bouncer",
        &mut || {
            let tables = run_in_ns(&ns, "nft", &["list", "tables"], CLIENT_TIMEOUT);
            read_or_note(&agent_log).contains("Starting processing data")
                && String::from_utf8_lossy(&tables.stdout).contains("crowdsec")
        },
        &|| {
            format!(
                "crowdsec's log:\n{}\nthe bouncer's log:\n{}",
                tail(&read_or_note(&agent_log), 15),
                tail(&read_or_note(&bouncer_log), 15)
            )
        },
    );
    Running {
        other: Other::CrowdSec { poll_s },
        pids: vec![crowdsec, bouncer],
        reasons: BanReasons::Alerts(config),
    }
}

/// Runs `cscli -c CONFIG ARGS` in `ns`.
///
/// # Panics
///
/// If it fails.
fn cscli(ns: &str, config: &str, args: &[&str]) -> String {
    let mut all = vec!["-c", config];
    all.extend_from_slice(args);
    let out = run_in_ns_ok(ns, "cscli", &all, CLIENT_TIMEOUT);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The scenario of each source's first alert (`cscli alerts list -o json`); empty if `CrowdSec`
/// cannot say.
pub fn alert_scenarios(bed: &Testbed, config: &Path) -> BTreeMap<IpAddr, String> {
    let Some(config) = config.to_str() else {
        return BTreeMap::new();
    };
    let out = run_in_ns(
        bed.lab.server_ns(),
        "cscli",
        &["-c", config, "-o", "json", "alerts", "list", "-l", "0"],
        CLIENT_TIMEOUT,
    );
    scenarios_of_alerts(&String::from_utf8_lossy(&out.stdout))
}

/// The scenario of each source's earliest alert in `cscli alerts list -o json`'s output.
fn scenarios_of_alerts(json: &str) -> BTreeMap<IpAddr, String> {
    let mut first: BTreeMap<IpAddr, (String, String)> = BTreeMap::new();
    let alerts: Value = serde_json::from_str(json).unwrap_or(Value::Null);
    for a in alerts.as_array().into_iter().flatten() {
        let (Some(ip), Some(scenario)) = (
            a["source"]["ip"]
                .as_str()
                .or_else(|| a["source"]["value"].as_str())
                .and_then(|t| t.parse::<IpAddr>().ok()),
            a["scenario"].as_str(),
        ) else {
            continue;
        };
        // RFC 3339 times in one zone sort as text.
        let at = a["start_at"].as_str().unwrap_or_default().to_owned();
        let e = first
            .entry(ip)
            .or_insert_with(|| (at.clone(), scenario.to_owned()));
        if at < e.0 {
            *e = (at, scenario.to_owned());
        }
    }
    first.into_iter().map(|(ip, (_, s))| (ip, s)).collect()
}

/// Writes the private configuration (see the module docs) and returns the main file's path.
fn write_config(dir: &Path, cfg: &Path, data: &Path, access_log: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(data).map_err(|e| format!("creating {}: {e}", data.display()))?;
    copy_dir(Path::new("/etc/crowdsec"), cfg)?;
    for f in ["local_api_credentials.yaml", "config.yaml.local"] {
        let _ = std::fs::remove_file(cfg.join(f));
    }
    for entry in std::fs::read_dir("/var/lib/crowdsec/data").map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name();
        if entry.path().is_file() && !name.to_string_lossy().starts_with("crowdsec.db") {
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
    let (c, d, l) = (cfg.display(), data.display(), dir.display());
    let config = format!(
        "common:\n  daemonize: false\n  log_media: file\n  log_dir: {l}/\n  log_level: info\n  \
         working_dir: .\n\
         config_paths:\n  config_dir: {c}/\n  data_dir: {d}/\n  simulation_path: {c}/simulation.yaml\n  \
         hub_dir: /var/lib/crowdsec/hub/\n  index_path: /var/lib/crowdsec/hub/.index.json\n  \
         notification_dir: {c}/notifications/\n  plugin_dir: /usr/lib/crowdsec/plugins/\n\
         crowdsec_service:\n  acquisition_path: {c}/acquis.yaml\n  parser_routines: 1\n\
         cscli:\n  output: human\n\
         db_config:\n  log_level: info\n  type: sqlite\n  db_path: {d}/crowdsec.db\n  use_wal: true\n\
         api:\n  client:\n    insecure_skip_verify: false\n    credentials_path: {c}/local_api_credentials.yaml\n  \
         server:\n    log_level: info\n    listen_uri: {LAPI}\n    profiles_path: {c}/profiles.yaml\n    \
         trusted_ips:\n      - 127.0.0.1\n\
         prometheus:\n  enabled: false\n"
    );
    let path = cfg.join("config.yaml");
    std::fs::write(&path, config).map_err(|e| e.to_string())?;
    std::fs::write(
        cfg.join("acquis.yaml"),
        format!(
            "filenames:\n  - {}\nlabels:\n  type: nginx\n",
            access_log.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    Ok(path)
}

/// The shipped bouncer configuration with the lab's values: `nftables` mode, the poll, the
/// key, no daemon, its pid file and log in `dir`. Every other line stays as shipped.
fn bouncer_yaml(shipped: &str, dir: &Path, poll_s: u32, key: &str) -> Result<String, String> {
    let d = dir.display();
    let replacements = [
        ("mode:", "mode: nftables".to_owned()),
        ("pid_dir:", format!("pid_dir: {d}/")),
        ("update_frequency:", format!("update_frequency: {poll_s}s")),
        ("daemonize:", "daemonize: false".to_owned()),
        ("log_dir:", format!("log_dir: {d}/")),
        ("api_url:", format!("api_url: http://{LAPI}/")),
        ("api_key:", format!("api_key: {key}")),
    ];
    let mut out = String::new();
    let mut replaced = vec![false; replacements.len()];
    for line in shipped.lines() {
        let at = replacements
            .iter()
            .position(|(key, _)| line.starts_with(key));
        match at {
            Some(i) => {
                replaced[i] = true;
                out.push_str(&replacements[i].1);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    match replaced.iter().position(|r| !r) {
        Some(i) => Err(format!(
            "{BOUNCER_CONFIG} has no top-level `{}` line to set",
            replacements[i].0
        )),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::path::Path;

    use super::{bouncer_yaml, scenarios_of_alerts};

    #[test]
    fn the_bouncer_keeps_its_shipped_lines_but_the_labs() {
        let shipped = "mode: ${BACKEND}\npid_dir: /var/run/\nupdate_frequency: 10s\n\
                       daemonize: true\nlog_mode: file\nlog_dir: /var/log/\n\
                       api_url: http://127.0.0.1:8080/\napi_key: ${API_KEY}\nnftables:\n  \
                       ipv4:\n    enabled: true\n";
        let yaml = bouncer_yaml(shipped, Path::new("/lab"), 1, "k3y").expect("every key set");
        assert_eq!(
            yaml,
            "mode: nftables\npid_dir: /lab/\nupdate_frequency: 1s\ndaemonize: false\n\
             log_mode: file\nlog_dir: /lab/\napi_url: http://127.0.0.1:8080/\napi_key: k3y\n\
             nftables:\n  ipv4:\n    enabled: true\n"
        );
        let missing = bouncer_yaml("mode: x\n", Path::new("/lab"), 1, "k");
        assert!(missing.expect_err("incomplete").contains("pid_dir"));
    }

    #[test]
    fn alerts_give_each_source_its_first_scenario() {
        let json = r#"[
          {"scenario": "crowdsecurity/http-probing", "start_at": "2026-12-05T05:00:09Z",
           "source": {"ip": "198.51.100.2", "scope": "Ip", "value": "198.51.100.2"}},
          {"scenario": "LePresidente/http-generic-403-bf", "start_at": "2026-12-05T05:00:03Z",
           "source": {"ip": "198.51.100.2", "scope": "Ip", "value": "198.51.100.2"}},
          {"scenario": "crowdsecurity/http-crawl-non_statics", "start_at": "2026-12-05T05:00:05Z",
           "source": {"scope": "Ip", "value": "2001:db8::7"}},
          {"scenario": "no source"}
        ]"#;
        let got = scenarios_of_alerts(json);
        let ip = |t: &str| t.parse::<IpAddr>().expect("address");
        assert_eq!(got.len(), 2);
        assert_eq!(got[&ip("198.51.100.2")], "LePresidente/http-generic-403-bf");
        assert_eq!(
            got[&ip("2001:db8::7")],
            "crowdsecurity/http-crawl-non_statics"
        );
        assert!(scenarios_of_alerts("null").is_empty());
    }
}
