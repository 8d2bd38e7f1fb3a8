//! The agent's configuration file (TOML). An embedded default applies when no file is given;
//! a file overrides it field by field. Unknown keys are errors, so a typo never silently
//! reverts a setting to its default.
use std::path::Path;

use sensor_common::{REQ_DATA_LEN, RESP_DATA_LEN, SensorConfig};

/// The configuration the binary ships with.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../default-config.toml");

/// Errors of reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading the file failed.
    #[error("reading config {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML for this schema.
    #[error("config {path}: {source}")]
    Parse {
        /// File.
        path: String,
        /// Why.
        source: toml::de::Error,
    },
    /// Settings that do not go together.
    #[error("config {path}: {what}")]
    Invalid {
        /// File.
        path: String,
        /// What is wrong.
        what: &'static str,
    },
    /// Not an ISO 3166-1 alpha-2 code.
    #[error("config {path}: lists.deny_countries: {code:?} is not a two-letter country code")]
    Country {
        /// File.
        path: String,
        /// The code.
        code: String,
    },
    /// The OpenAPI document named by `detect.context.openapi` cannot be used.
    #[error("config: detect.context.openapi: {0}")]
    ApiSpec(#[from] crate::detect::api_spec::ApiSpecError),
    /// A share out of 0..=1 (or a factor out of its range).
    #[error("config {path}: {field} = {value} is out of range")]
    Share {
        /// File.
        path: String,
        /// Field.
        field: &'static str,
        /// Value.
        value: f64,
    },
    /// A value out of range.
    #[error("config {path}: {field} = {value} is out of range ({range})")]
    Range {
        /// File.
        path: String,
        /// Field.
        field: &'static str,
        /// Value.
        value: u64,
        /// Allowed range.
        range: &'static str,
    },
}

/// Top-level configuration: the one loader of the whole file, for the agent and the replay
/// alike. Every table and key may be left out and takes the embedded default.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
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
    /// The reader's drain period, in milliseconds (bounds event latency below the threshold).
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

    /// Reads a configuration file, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        match path {
            None => Self::parse(DEFAULT_CONFIG_TOML, "<embedded default>"),
            Some(p) => {
                let name = p.display().to_string();
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: name.clone(),
                    source,
                })?;
                let mut cfg = Self::parse(&text, &name)?;
                if let Some(dir) = p.parent() {
                    for file in cfg.lists.files.iter_mut().chain(cfg.lists.mmdb.as_mut()) {
                        *file = dir.join(&*file);
                    }
                }
                // The OpenAPI document, relative to the configuration file's directory.
                if let Some(doc) = cfg.detect.context.openapi.clone() {
                    let doc = p.parent().map_or(doc.clone(), |dir| dir.join(&doc));
                    let spec = crate::detect::api_spec::ApiSpec::load(&doc)?;
                    cfg.detect.context.api_spec = Some(std::sync::Arc::new(spec));
                }
                Ok(cfg)
            }
        }
    }

    /// Parses and validates TOML text; `name` names it in errors.
    pub fn parse(text: &str, name: &str) -> Result<Self, ConfigError> {
        let cfg: Self = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: name.to_owned(),
            source,
        })?;
        cfg.validate_sensor(name)?;
        cfg.validate_policy(name)?;
        Ok(cfg)
    }

    /// Checks the ranges of the `[sensor]` settings; `name` names the file in errors.
    fn validate_sensor(&self, name: &str) -> Result<(), ConfigError> {
        let range = |field, value, lo, hi, range| check_range(name, field, value, lo, hi, range);
        let s = &self.sensor;
        range(
            "sensor.req_capture_len",
            s.req_capture_len.into(),
            1,
            REQ_DATA_LEN as u64,
            "1..=2048",
        )?;
        range(
            "sensor.resp_capture_len",
            s.resp_capture_len.into(),
            1,
            RESP_DATA_LEN as u64,
            "1..=1024",
        )?;
        range(
            "sensor.max_sources",
            s.max_sources.into(),
            16,
            16 << 20,
            "16..=16777216",
        )?;
        range(
            "sensor.wakeup_bytes",
            s.wakeup_bytes.into(),
            4096,
            8 << 20,
            "4096..=8388608",
        )?;
        range(
            "sensor.drain_interval_ms",
            s.drain_interval_ms,
            1,
            1000,
            "1..=1000",
        )?;
        range(
            "sensor.source_poll_ms",
            s.source_poll_ms,
            100,
            60_000,
            "100..=60000",
        )?;
        range(
            "sensor.purge_interval_s",
            s.purge_interval_s,
            1,
            3600,
            "1..=3600",
        )?;
        range(
            "sensor.ports (count)",
            s.ports.len() as u64,
            1,
            1024,
            "1..=1024",
        )?;
        if let Some(zero) = s.ports.iter().find(|p| **p == 0) {
            range("sensor.ports", u64::from(*zero), 1, 65535, "1..=65535")?;
        }
        Ok(())
    }

    /// Checks the TTLs, shares and escalation of the `[policy]` and `[detect]` settings; `name`
    /// names the file in errors.
    fn validate_policy(&self, name: &str) -> Result<(), ConfigError> {
        let range = |field, value, lo, hi, range| check_range(name, field, value, lo, hi, range);
        let max_ttl = crate::verdict::MAX_TTL.as_secs();
        let p = &self.policy;
        range(
            "policy.block_ttl_s",
            p.block_ttl_s,
            1,
            max_ttl,
            "1..=7776000",
        )?;
        range("policy.max_ttl_s", p.max_ttl_s, 1, max_ttl, "1..=7776000")?;
        let l = &self.lists;
        if !l.deny_countries.is_empty() && l.mmdb.is_none() {
            return Err(ConfigError::Invalid {
                path: name.to_owned(),
                what: "lists.deny_countries needs lists.mmdb, the database to find them in",
            });
        }
        if let Some(bad) = l
            .deny_countries
            .iter()
            .find(|c| c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            return Err(ConfigError::Country {
                path: name.to_owned(),
                code: bad.clone(),
            });
        }
        range("lists.refresh_s", l.refresh_s, 1, 86_400, "1..=86400")?;
        range("lists.ttl_s", l.ttl_s, 1, max_ttl, "1..=7776000")?;
        if l.ttl_s < 2 * l.refresh_s {
            range(
                "lists.ttl_s (at least twice lists.refresh_s)",
                l.ttl_s,
                2 * l.refresh_s,
                max_ttl,
                "2 * refresh_s..",
            )?;
        }
        let share = |field: &'static str, value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::Share {
                    path: name.to_owned(),
                    field,
                    value,
                })
            }
        };
        let d = &self.detect;
        share(
            "policy.shared_min_success_share",
            p.shared_min_success_share,
        )?;
        share(
            "detect.brute_force.min_failure_share",
            d.brute_force.min_failure_share,
        )?;
        share(
            "detect.low_success.max_success_share",
            d.low_success.max_success_share,
        )?;
        share(
            "detect.volume.flood_max_requests_share",
            d.volume.flood_max_requests_share,
        )?;
        share(
            "detect.scraping.discovery_not_found_share",
            d.scraping.discovery_not_found_share,
        )?;
        if !(p.escalation >= 1.0 && p.escalation <= 100.0) {
            return Err(ConfigError::Share {
                path: name.to_owned(),
                field: "policy.escalation (1 to 100)",
                value: p.escalation,
            });
        }
        Ok(())
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

/// Checks that `value` of `field` is within `lo..=hi` (`range` spells it out for the error);
/// `name` names the file in errors.
fn check_range(
    name: &str,
    field: &'static str,
    value: u64,
    lo: u64,
    hi: u64,
    range: &'static str,
) -> Result<(), ConfigError> {
    if value < lo || value > hi {
        Err(ConfigError::Range {
            path: name.to_owned(),
            field,
            value,
            range,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let cfg = Config::default_config();
        assert!(cfg.sensor.ports.contains(&80) && cfg.sensor.ports.contains(&8080));
        let logins: Vec<_> = cfg
            .analyzer
            .http
            .login_routes
            .iter()
            .map(|r| (r.method.as_str(), r.path.as_str(), r.account_field.as_str()))
            .collect();
        assert_eq!(logins, [("POST", "/api/login", "username")]);
        let http = &cfg.analyzer.http;
        let defaults = crate::http::HttpConfig::default();
        assert_eq!(http.login_path_suffixes, defaults.login_path_suffixes);
        assert_eq!(http.account_fields, defaults.account_fields);
        assert_eq!(http.login_failure_status, defaults.login_failure_status);
        assert!(http.basic_auth_logins);
        assert!(
            http.login_path_suffixes.iter().any(|s| s == "/login"),
            "`POST /login` is a login without a route"
        );
    }

    #[test]
    fn embedded_default_states_the_built_in_defaults() {
        // The file documents every key of these tables with its value: it must say what the
        // program does when a key is left out.
        let cfg = Config::default_config();
        assert_eq!(cfg.sensor, SensorSettings::default());
        assert_eq!(cfg.detect, crate::detect::DetectConfig::default());
        assert_eq!(cfg.policy, crate::decide::PolicyConfig::default());
        let empty = Config::parse("", "empty").expect("an empty file is valid");
        assert_eq!(empty.detect, cfg.detect);
        assert_eq!(empty.policy, cfg.policy);
        assert_eq!(empty.sensor, cfg.sensor);
    }

    #[test]
    fn an_openapi_document_is_read_beside_the_configuration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let doc = "openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths:\n  /login:\n    post: {responses: {'200': {description: ok}}}\n";
        std::fs::write(dir.path().join("api.yaml"), doc).expect("write doc");
        let cfg_path = dir.path().join("apisensor.toml");
        std::fs::write(&cfg_path, "[detect.context]\nopenapi = \"api.yaml\"\n").expect("write cfg");
        let cfg = Config::load(Some(&cfg_path)).expect("config");
        let spec = cfg.detect.context.api_spec.expect("spec read");
        assert!(spec.documents("POST", "/login"));
        assert!(!spec.documents("GET", "/admin"));
        // A missing or broken document is a clear error, not a silent default.
        std::fs::write(&cfg_path, "[detect.context]\nopenapi = \"missing.yaml\"\n").expect("write");
        let err = Config::load(Some(&cfg_path))
            .expect_err("missing document")
            .to_string();
        assert!(
            err.contains("detect.context.openapi") && err.contains("missing.yaml"),
            "{err}"
        );
        std::fs::write(dir.path().join("api.yaml"), "openapi: [").expect("write");
        std::fs::write(&cfg_path, "[detect.context]\nopenapi = \"api.yaml\"\n").expect("write");
        let err = Config::load(Some(&cfg_path))
            .expect_err("broken document")
            .to_string();
        assert!(err.contains("not an OpenAPI 3 document"), "{err}");
    }

    #[test]
    fn list_files_are_taken_from_the_configuration_directory_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg_path = dir.path().join("apisensor.toml");
        std::fs::write(
            &cfg_path,
            "[lists]\nfiles = [\"drop.txt\", \"/etc/x.txt\"]\n",
        )
        .expect("write");
        let cfg = Config::load(Some(&cfg_path)).expect("config");
        assert_eq!(
            cfg.lists.files,
            [
                dir.path().join("drop.txt"),
                std::path::PathBuf::from("/etc/x.txt")
            ]
        );
        for (text, field) in [
            ("[lists]\ndeny_countries = [\"XA\"]\n", "lists.mmdb"),
            (
                "[lists]\nmmdb = \"c.mmdb\"\ndeny_countries = [\"XAB\"]\n",
                "\"XAB\"",
            ),
            ("[lists]\nrefresh_s = 0\n", "lists.refresh_s"),
            ("[lists]\nrefresh_s = 60\nttl_s = 100\n", "lists.ttl_s"),
        ] {
            let err = Config::parse(text, "t.toml").expect_err(text).to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn rejects_bad_files() {
        let cases = [
            (
                "[sensor]\nports = [80]\nmax_sources = 8\n",
                "sensor.max_sources = 8",
            ),
            ("[policy]\nescalation = 0.5\n", "policy.escalation"),
            (
                "[detect.low_success]\nmax_success_share = 5\n",
                "max_success_share",
            ),
            ("[detect]\nbogus = 1\n", "unknown field"),
            ("[sensor]\nbogus = 1\n", "unknown field"),
            ("not toml at all [", "config t"),
        ];
        for (text, want) in cases {
            let err = Config::parse(text, "t").expect_err(text).to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let base = DEFAULT_CONFIG_TOML;
        let out_of_range = [
            (
                "req_capture_len = 2048",
                "req_capture_len = 4096",
                "sensor.req_capture_len = 4096",
            ),
            (
                "req_capture_len = 2048",
                "req_capture_len = 0",
                "sensor.req_capture_len = 0",
            ),
            ("ports = [80, 8080]", "ports = [0]", "sensor.ports = 0"),
            (
                "ports = [80, 8080]",
                "ports = []",
                "sensor.ports (count) = 0",
            ),
        ];
        for (from, to, want) in out_of_range {
            assert!(base.contains(from), "default config changed: {from}");
            let text = base.replace(from, to);
            let err = Config::parse(&text, "t").expect_err(to).to_string();
            assert!(err.contains(want), "{to}: {err}");
        }
    }
}
