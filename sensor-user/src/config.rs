//! The agent's configuration file (TOML). An embedded default applies when no file is given;
//! a file overrides it field by field. Unknown keys are errors, so a typo never silently
//! reverts a setting to its default.
use std::path::Path;

use sensor_common::{REQ_DATA_LEN, RESP_DATA_LEN, SensorConfig};

/// The configuration the binary ships with.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../default-config.toml");

mod report;
mod rule;
#[cfg(test)]
mod schema;
#[cfg(test)]
mod tests;

pub use report::{Problem, ProblemKind};
pub use rule::{Number, Rule};

/// Errors of reading the configuration.
#[derive(Debug)]
pub enum ConfigError {
    /// Reading the file failed.
    Read {
        /// File.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// The file has problems: syntax, schema or rules, each at its place.
    Invalid {
        /// File.
        path: String,
        /// The problems, at least one, in the order of their places in the file.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The file the error is about.
    pub fn path(&self) -> &str {
        match self {
            Self::Read { path, .. } | Self::Invalid { path, .. } => path,
        }
    }
}

/// One line: the file, then its first problem (`FILE:LINE:COLUMN: message`) and how many more
/// there are.
impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Read { path, error } => {
                write!(f, "{path}: cannot read the configuration: {error}")
            }
            Self::Invalid { path, problems } => {
                let mut problems = problems.iter();
                if let Some(first) = problems.next() {
                    write!(f, "{path}:{first}")?;
                }
                match problems.len() {
                    0 => Ok(()),
                    more => write!(
                        f,
                        " (and {more} more: `apisensor config check {path}` lists them)"
                    ),
                }
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Top-level configuration: the one loader of the whole file, for the agent and the replay
/// alike. Every table and key may be left out and takes the embedded default.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the agent attaches and keeps its state (the command line's options win).
    #[serde(default)]
    pub agent: AgentSettings,
    /// Kernel-side settings.
    #[serde(default)]
    pub sensor: SensorSettings,
    /// Analyzer settings (flow table, reassembly, HTTP, identities). Its monitored ports are
    /// `sensor.ports`, the ports the kernel samples, live and in replay.
    #[serde(default)]
    pub analyzer: crate::analyzer::AnalyzerConfig,
    /// Detector thresholds and state bounds.
    #[serde(default)]
    pub detect: crate::detect::DetectConfig,
    /// The decision policy: TTLs, caps, allowlist, blast-radius guard, dry run.
    #[serde(default)]
    pub policy: crate::decide::PolicyConfig,
    /// Reputation lists kept in the block maps.
    #[serde(default)]
    pub lists: crate::lists::ListsConfig,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: crate::metrics::MetricsConfig,
    /// The event lines: format, standard output, the event file and its rotation.
    #[serde(default)]
    pub events: crate::event_log::EventsConfig,
}

/// Where the agent attaches and keeps its state: the `[agent]` table. `apisensor run`'s
/// `--iface`, `--xdp-mode`, `--tc-mode` and `--state-dir` override it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSettings {
    /// The interface to attach to (XDP ingress, TC egress); the command line must give it
    /// when the file does not.
    pub interface: Option<String>,
    /// How XDP is attached.
    pub xdp_mode: crate::loader::XdpAttachMode,
    /// How TC is attached.
    pub tc_mode: crate::loader::TcAttachMode,
    /// The state directory: the hash key and the learned baselines.
    pub state_dir: std::path::PathBuf,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            interface: None,
            xdp_mode: crate::loader::XdpAttachMode::Auto,
            tc_mode: crate::loader::TcAttachMode::Auto,
            state_dir: crate::state_dir::DEFAULT_STATE_DIR.into(),
        }
    }
}

/// Kernel-side settings.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SensorSettings {
    /// TCP ports whose traffic is sampled (server side).
    pub ports: Vec<u16>,
    /// Capacity of the per-source LRU map.
    pub max_sources: u32,
    /// Payload bytes copied per request segment (1..=2048).
    pub req_capture_len: u32,
    /// Payload bytes copied per response segment (1..=1024).
    pub resp_capture_len: u32,
    /// Pending ring bytes at which the kernel wakes the reader.
    pub wakeup_bytes: u32,
    /// The reader's longest drain period, in milliseconds (bounds event latency below the
    /// threshold); it drains every `reader::BUSY_PERIOD` while records arrive.
    pub drain_interval_ms: u64,
    /// How often expired blocks are deleted from the maps, in seconds.
    pub purge_interval_s: u64,
    /// How often the agent reads the kernel's per-source counters (packets, SYNs) into the
    /// detectors, in milliseconds.
    pub source_poll_ms: u64,
}

impl Default for SensorSettings {
    fn default() -> Self {
        Self {
            ports: vec![80, 8080],
            max_sources: 65536,
            req_capture_len: 2048,
            resp_capture_len: 1024,
            wakeup_bytes: 1 << 20,
            drain_interval_ms: 5,
            purge_interval_s: 10,
            source_poll_ms: 1000,
        }
    }
}

impl Config {
    /// The analyzer's settings as the pipeline runs them: monitored ports from `[sensor]`.
    pub fn analyzer_config(&self) -> crate::analyzer::AnalyzerConfig {
        let mut cfg = self.analyzer.clone();
        cfg.monitored_ports.clone_from(&self.sensor.ports);
        cfg
    }

    /// The embedded default configuration.
    pub fn default_config() -> Self {
        Self::parse(DEFAULT_CONFIG_TOML, "<embedded default>")
            .unwrap_or_else(|e| unreachable!("the embedded default config is valid: {e}"))
    }

    /// Reads a configuration file, or the embedded default when `path` is `None`. Files it
    /// names (lists, the country database, the OpenAPI document) are taken from its directory
    /// when relative; the OpenAPI document is read now.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(p) = path else {
            return Self::parse(DEFAULT_CONFIG_TOML, "<embedded default>");
        };
        let name = p.display().to_string();
        let text = std::fs::read_to_string(p).map_err(|error| ConfigError::Read {
            path: name.clone(),
            error,
        })?;
        Self::from_text(&text, &name, Some(p.parent().unwrap_or(Path::new(""))))
    }

    /// Parses and validates TOML text; `name` names it in errors. Files it names are neither
    /// resolved nor read.
    pub fn parse(text: &str, name: &str) -> Result<Self, ConfigError> {
        Self::from_text(text, name, None)
    }

    /// Parses and validates `text`, reporting every syntax error, else the first schema
    /// error, else every broken rule (in file order); with `dir`, resolves the files the text names from it
    /// and reads the OpenAPI document.
    fn from_text(text: &str, name: &str, dir: Option<&Path>) -> Result<Self, ConfigError> {
        let invalid = |problems| ConfigError::Invalid {
            path: name.to_owned(),
            problems,
        };
        let (doc, syntax) = toml::de::DeTable::parse_recoverable(text);
        if !syntax.is_empty() {
            let problems = syntax.into_iter().map(|e| Problem::toml(text, e));
            return Err(invalid(problems.collect()));
        }
        let mut cfg: Self =
            toml::from_str(text).map_err(|e| invalid(vec![Problem::toml(text, e)]))?;
        let mut broken = cfg.broken_rules();
        if let Some(dir) = dir {
            let named = cfg.lists.files.iter_mut().chain(cfg.lists.mmdb.as_mut());
            for file in named.chain(cfg.events.file.as_mut()) {
                *file = dir.join(&*file);
            }
            if let Some(doc) = cfg.detect.context.openapi.as_ref() {
                match crate::detect::api_spec::ApiSpec::load(&dir.join(doc)) {
                    Ok(spec) => cfg.detect.context.api_spec = Some(std::sync::Arc::new(spec)),
                    Err(e) => broken.push(Rule::ApiSpec(e)),
                }
            }
        }
        if broken.is_empty() {
            return Ok(cfg);
        }
        let mut problems: Vec<_> = broken
            .into_iter()
            .map(|rule| Problem::rule(text, doc.get_ref(), rule))
            .collect();
        problems.sort_by_key(|p| (p.line, p.column));
        Err(invalid(problems))
    }

    /// Every rule beyond the schema these settings break.
    fn broken_rules(&self) -> Vec<Rule> {
        let mut broken = Vec::new();
        self.check_sensor(&mut broken);
        self.check_policy(&mut broken);
        self.check_lists(&mut broken);
        self.check_thresholds(&mut broken);
        if let Err(value) = self.metrics.socket_addr() {
            broken.push(Rule::Invalid {
                key: "metrics.address",
                value: format!("{value:?}"),
                expected: "an IP address and port such as \"127.0.0.1:9464\", or \"\" for no endpoint",
            });
        }
        self.check_events(&mut broken);
        broken
    }

    /// The ranges of the `[sensor]` settings.
    fn check_sensor(&self, broken: &mut Vec<Rule>) {
        let s = &self.sensor;
        let ranges: [(&'static str, u64, u64, u64); 7] = [
            (
                "sensor.req_capture_len",
                s.req_capture_len.into(),
                1,
                REQ_DATA_LEN as u64,
            ),
            (
                "sensor.resp_capture_len",
                s.resp_capture_len.into(),
                1,
                RESP_DATA_LEN as u64,
            ),
            ("sensor.max_sources", s.max_sources.into(), 16, 16 << 20),
            ("sensor.wakeup_bytes", s.wakeup_bytes.into(), 4096, 8 << 20),
            ("sensor.drain_interval_ms", s.drain_interval_ms, 1, 1000),
            ("sensor.source_poll_ms", s.source_poll_ms, 100, 60_000),
            ("sensor.purge_interval_s", s.purge_interval_s, 1, 3600),
        ];
        for (key, value, lo, hi) in ranges {
            check_range(broken, key, value, lo, hi);
        }
        if !(1..=1024).contains(&s.ports.len()) {
            broken.push(Rule::Count {
                key: "sensor.ports",
                count: s.ports.len(),
                expected: "1 to 1024 ports",
            });
        }
        for (index, _) in s.ports.iter().enumerate().filter(|(_, p)| **p == 0) {
            broken.push(Rule::Entry {
                key: "sensor.ports",
                index,
                value: "0".to_owned(),
                expected: "a port, 1..=65535",
            });
        }
    }

    /// The `[events]` settings: a known format, a rotation size that holds lines.
    fn check_events(&self, broken: &mut Vec<Rule>) {
        let e = &self.events;
        if e.format().is_none() {
            broken.push(Rule::Invalid {
                key: "events.format",
                value: format!("{:?}", e.format),
                expected: "\"apisensor\" or \"ocsf\"",
            });
        }
        if e.max_bytes != 0 {
            check_range(broken, "events.max_bytes", e.max_bytes, 4096, 1 << 40);
        }
        check_range(broken, "events.keep", e.keep.into(), 0, 1000);
    }

    /// The TTLs, shares and escalation of the `[policy]` settings.
    fn check_policy(&self, broken: &mut Vec<Rule>) {
        let max_ttl = crate::verdict::MAX_TTL.as_secs();
        let p = &self.policy;
        check_range(broken, "policy.block_ttl_s", p.block_ttl_s, 1, max_ttl);
        check_range(broken, "policy.max_ttl_s", p.max_ttl_s, 1, max_ttl);
        check_share(
            broken,
            "policy.shared_min_success_share",
            p.shared_min_success_share,
        );
        if !(p.escalation >= 1.0 && p.escalation <= 100.0) {
            broken.push(Rule::OutOfRange {
                key: "policy.escalation",
                value: Number::Float(p.escalation),
                expected: "1 to 100".into(),
            });
        }
    }

    /// The `[lists]` settings: countries need a database, and TTLs outlive two refreshes.
    fn check_lists(&self, broken: &mut Vec<Rule>) {
        let max_ttl = crate::verdict::MAX_TTL.as_secs();
        let l = &self.lists;
        let not_a_code = |c: &&String| c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic());
        for (key, codes) in [
            ("lists.deny_countries", &l.deny_countries),
            ("lists.allow_countries", &l.allow_countries),
        ] {
            if !codes.is_empty() && l.mmdb.is_none() {
                broken.push(Rule::Needs {
                    key,
                    needs: "lists.mmdb",
                    expected: "the MaxMind-format database to find the countries in",
                });
            }
            for (index, code) in codes.iter().enumerate() {
                if not_a_code(&code) {
                    broken.push(Rule::Entry {
                        key,
                        index,
                        value: format!("{code:?}"),
                        expected: "an ISO 3166-1 alpha-2 country code such as \"XA\"",
                    });
                }
            }
        }
        if !l.deny_countries.is_empty() && !l.allow_countries.is_empty() {
            broken.push(Rule::Count {
                key: "lists.allow_countries",
                count: l.allow_countries.len(),
                expected: "none when lists.deny_countries is given (one country rule at a time)",
            });
        }
        check_range(broken, "lists.refresh_s", l.refresh_s, 1, 86_400);
        let lo = l.refresh_s.saturating_mul(2).max(1);
        if l.ttl_s < lo || l.ttl_s > max_ttl {
            broken.push(Rule::OutOfRange {
                key: "lists.ttl_s",
                value: Number::Int(l.ttl_s),
                expected: format!("{lo}..={max_ttl}, at least twice lists.refresh_s").into(),
            });
        }
    }

    /// Shares within 0..=1, and the detectors' count and rate thresholds above 0 (a threshold
    /// of 0 or less would report every source).
    fn check_thresholds(&self, broken: &mut Vec<Rule>) {
        let d = &self.detect;
        let shares = [
            (
                "detect.brute_force.min_failure_share",
                d.brute_force.min_failure_share,
            ),
            (
                "detect.low_success.max_success_share",
                d.low_success.max_success_share,
            ),
            (
                "detect.volume.flood_max_requests_share",
                d.volume.flood_max_requests_share,
            ),
            (
                "detect.scraping.discovery_not_found_share",
                d.scraping.discovery_not_found_share,
            ),
            (
                "detect.campaign.min_failure_share",
                d.campaign.min_failure_share,
            ),
            (
                "detect.shared.mark_min_failure_share",
                d.shared.mark_min_failure_share,
            ),
            (
                "detect.shared.others_min_success_share",
                d.shared.others_min_success_share,
            ),
        ];
        for (key, value) in shares {
            check_share(broken, key, value);
        }
        for (key, value) in self.positive_thresholds() {
            if !(value > 0.0 && value.is_finite()) {
                broken.push(Rule::OutOfRange {
                    key,
                    value: Number::Float(value),
                    expected: "a number above 0".into(),
                });
            }
        }
        if !(d.timing.max_dispersion >= 0.0 && d.timing.max_dispersion.is_finite()) {
            broken.push(Rule::OutOfRange {
                key: "detect.timing.max_dispersion",
                value: Number::Float(d.timing.max_dispersion),
                expected: "a number of 0 or more".into(),
            });
        }
    }

    /// The count, rate and factor thresholds, which must be above 0.
    fn positive_thresholds(&self) -> [(&'static str, f64); 26] {
        let (b, v) = (&self.detect.brute_force, &self.detect.volume);
        let (s, h) = (&self.detect.sessions, &self.detect.shapes);
        [
            ("detect.brute_force.min_failures", b.min_failures),
            ("detect.brute_force.slow_min_failures", b.slow_min_failures),
            (
                "detect.brute_force.prefix_min_failures",
                b.prefix_min_failures,
            ),
            (
                "detect.brute_force.stuffing_min_accounts",
                b.stuffing_min_accounts,
            ),
            (
                "detect.brute_force.aggregation_min_accounts",
                b.aggregation_min_accounts,
            ),
            (
                "detect.brute_force.account_min_sources",
                b.account_min_sources,
            ),
            (
                "detect.low_success.min_requests",
                self.detect.low_success.min_requests,
            ),
            ("detect.volume.source_ceiling_rps", v.source_ceiling_rps),
            ("detect.volume.prefix_ceiling_rps", v.prefix_ceiling_rps),
            ("detect.volume.baseline_factor", v.baseline_factor),
            ("detect.volume.syn_ceiling_rps", v.syn_ceiling_rps),
            ("detect.volume.packet_ceiling_pps", v.packet_ceiling_pps),
            ("detect.volume.endpoint_factor", v.endpoint_factor),
            (
                "detect.scraping.breadth_paths",
                self.detect.scraping.breadth_paths,
            ),
            (
                "detect.scraping.discovery_min_requests",
                self.detect.scraping.discovery_min_requests,
            ),
            (
                "detect.campaign.min_sources",
                self.detect.campaign.min_sources,
            ),
            ("detect.sessions.shared_min_sources", s.shared_min_sources),
            (
                "detect.sessions.rotation_min_sessions",
                s.rotation_min_sessions,
            ),
            (
                "detect.sessions.rotation_min_per_request",
                s.rotation_min_per_request,
            ),
            ("detect.shapes.rotation_min_shapes", h.rotation_min_shapes),
            (
                "detect.shapes.rotation_min_per_request",
                h.rotation_min_per_request,
            ),
            ("detect.shapes.surge_min_shapes", h.surge_min_shapes),
            ("detect.shapes.surge_factor", h.surge_factor),
            (
                "detect.shared.mark_min_failures",
                self.detect.shared.mark_min_failures,
            ),
            (
                "detect.shared.others_min_logins",
                self.detect.shared.others_min_logins,
            ),
            (
                "policy.shared_min_identities",
                self.policy.shared_min_identities,
            ),
        ]
    }

    /// The kernel's view of these settings.
    pub fn kernel(&self) -> SensorConfig {
        SensorConfig {
            req_capture_len: self.sensor.req_capture_len,
            resp_capture_len: self.sensor.resp_capture_len,
            wakeup_bytes: self.sensor.wakeup_bytes,
            flags: 0,
        }
    }
}

/// Adds a broken rule unless `value` of `key` is within `lo..=hi`.
fn check_range(broken: &mut Vec<Rule>, key: &'static str, value: u64, lo: u64, hi: u64) {
    if !(lo..=hi).contains(&value) {
        broken.push(Rule::OutOfRange {
            key,
            value: Number::Int(value),
            expected: format!("{lo}..={hi}").into(),
        });
    }
}

/// Adds a broken rule unless `value` of `key` is a share, within 0..=1.
fn check_share(broken: &mut Vec<Rule>, key: &'static str, value: f64) {
    if !(0.0..=1.0).contains(&value) {
        broken.push(Rule::OutOfRange {
            key,
            value: Number::Float(value),
            expected: "a share, 0 to 1".into(),
        });
    }
}
