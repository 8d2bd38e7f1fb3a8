//! Tests of the loader: the embedded default, files beside the configuration, and a table of
//! invalid files with the place and message of each problem.
use std::collections::BTreeSet;

use super::*;

/// The embedded default with every commented-out key (`# key = value`) and table header
/// (`# [table]`) uncommented: the file as it documents every key.
fn uncommented_default() -> String {
    DEFAULT_CONFIG_TOML
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if is_toml_line(rest) => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A key-value line (`name = ...`) or a table header.
fn is_toml_line(line: &str) -> bool {
    let key = line.split_once(" = ").map(|(k, _)| k);
    (line.starts_with('[') && line.ends_with(']'))
        || key.is_some_and(|k| {
            !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

/// Dotted paths of every key of `table`; the entries of an array of tables add theirs under
/// the array's key.
fn documented_keys(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => documented_keys(&path, inner, out),
            toml::Value::Array(entries) => {
                for entry in entries.iter().filter_map(toml::Value::as_table) {
                    documented_keys(&path, entry, out);
                }
            }
            _ => {}
        }
        out.insert(path);
    }
}

/// The problems of `text`, as `LINE:COLUMN: message` lines.
fn problems(text: &str) -> Vec<String> {
    match Config::parse(text, "t.toml") {
        Ok(_) => panic!("{text:?} is valid"),
        Err(ConfigError::Invalid { path, problems }) => {
            assert_eq!(path, "t.toml");
            problems.iter().map(ToString::to_string).collect()
        }
        Err(e) => panic!("{text:?}: {e}"),
    }
}

#[test]
fn embedded_default_equals_the_built_in_defaults() {
    // The file states every key with the value the program takes when the key is left out.
    let cfg = Config::default_config();
    assert_eq!(cfg, Config::default());
    assert_eq!(Config::parse("", "empty").expect("an empty file"), cfg);
    assert_eq!(Config::load(None).expect("the embedded default"), cfg);
    assert!(cfg.sensor.ports.contains(&80) && cfg.sensor.ports.contains(&8080));
    assert!(
        cfg.analyzer
            .http
            .login_path_suffixes
            .iter()
            .any(|s| s == "/login"),
        "`POST /login` is a login without a route"
    );
}

#[test]
fn every_accepted_key_is_documented_in_the_embedded_default() {
    let accepted = schema::accepted_keys::<Config>();
    let text = uncommented_default();
    let table: toml::Table = toml::from_str(&text).expect("the uncommented default is TOML");
    let mut documented = BTreeSet::new();
    documented_keys("", &table, &mut documented);
    let undocumented: Vec<_> = accepted.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "keys the loader accepts that default-config.toml does not show: {undocumented:?}"
    );
    // The other way round, unknown keys are errors: the commented-out examples are valid.
    assert_eq!(accepted, documented);
    let examples = Config::parse(&text, "uncommented").expect("the examples are valid");
    assert_eq!(examples.analyzer.http.login_routes.len(), 1);
    assert!(examples.lists.mmdb.is_some() && examples.detect.context.openapi.is_some());
    // The probe finds nested tables, arrays of tables and optional keys.
    for key in [
        "analyzer.reassembly.window",
        "analyzer.http.login_routes.success_set_cookie",
        "analyzer.http.limits.max_pending",
        "detect.context.openapi",
        "lists.mmdb",
    ] {
        assert!(accepted.contains(key), "{key} not found by the probe");
    }
}

/// Invalid files, each with its one problem: line, column and a fragment of the message.
const INVALID: &[(&str, (usize, usize, &str))] = &[
    (
        "[events]\nformat = \"cef\"\n",
        (
            2,
            1,
            "events.format = \"cef\" is not allowed (expected \"apisensor\" or \"ocsf\")",
        ),
    ),
    (
        "[events]\nmax_bytes = 100\n",
        (
            2,
            1,
            "events.max_bytes = 100 is out of range (expected 4096..=1099511627776)",
        ),
    ),
    (
        "[events]\nkeep = 5000\n",
        (
            2,
            1,
            "events.keep = 5000 is out of range (expected 0..=1000)",
        ),
    ),
    (
        "[events]\nstdout = \"yes\"\n",
        (2, 10, "invalid type: string \"yes\", expected a boolean"),
    ),
    (
        "[metrics]\naddress = \"localhost:9464\"\n",
        (
            2,
            1,
            "metrics.address = \"localhost:9464\" is not allowed (expected an IP address and port",
        ),
    ),
    (
        "[sensor]\nports = [80]\nbogus = 1\n",
        (3, 1, "unknown field `bogus`, expected one of `ports`"),
    ),
    (
        "[sensors]\nports = [80]\n",
        (1, 2, "unknown field `sensors`"),
    ),
    (
        "[detect.brute_force]\nmin_failures = \"five\"\n",
        (2, 16, "invalid type: string \"five\", expected f64"),
    ),
    ("[sensor]\nports = [80, 70000]\n", (2, 14, "expected u16")),
    (
        "[policy]\nallowlist = [\"10.0.0.0/33\"]\n",
        (2, 14, "invalid IP address syntax"),
    ),
    (
        "[analyzer.http]\ntrusted_proxies = [\"not a prefix\"]\n",
        (2, 20, "invalid IP address syntax"),
    ),
    (
        "[sensor]\nports = [0]\n",
        (
            2,
            10,
            "sensor.ports[0] = 0 is not allowed (expected a port, 1..=65535)",
        ),
    ),
    (
        "[sensor]\nports = []\n",
        (
            2,
            1,
            "sensor.ports has 0 entries (expected 1 to 1024 ports)",
        ),
    ),
    (
        "[sensor]\nmax_sources = 8\n",
        (
            2,
            1,
            "sensor.max_sources = 8 is out of range (expected 16..=16777216)",
        ),
    ),
    (
        "[sensor]\nreq_capture_len = 4096\n",
        (
            2,
            1,
            "sensor.req_capture_len = 4096 is out of range (expected 1..=2048)",
        ),
    ),
    (
        "[detect.limits]\nsources = -1\n",
        (2, 11, "invalid value: integer `-1`, expected usize"),
    ),
    (
        "[detect.brute_force]\nmin_failures = 0.0\n",
        (
            2,
            1,
            "detect.brute_force.min_failures = 0 is out of range (expected a number above 0)",
        ),
    ),
    (
        "[detect.volume]\nsource_ceiling_rps = -5.0\n",
        (
            2,
            1,
            "source_ceiling_rps = -5 is out of range (expected a number above 0)",
        ),
    ),
    (
        "[detect.low_success]\nmax_success_share = 5\n",
        (
            2,
            1,
            "max_success_share = 5 is out of range (expected a share, 0 to 1)",
        ),
    ),
    (
        "[policy]\nescalation = 0.5\n",
        (
            2,
            1,
            "policy.escalation = 0.5 is out of range (expected 1 to 100)",
        ),
    ),
    (
        "[policy]\ndry_run = \"yes\"\n",
        (2, 11, "invalid type: string \"yes\", expected a boolean"),
    ),
    (
        "[lists]\ndeny_countries = [\"XA\"]\n",
        (2, 1, "lists.deny_countries needs lists.mmdb"),
    ),
    (
        "[lists]\nmmdb = \"c.mmdb\"\ndeny_countries = [\"XA\", \"XAB\"]\n",
        (
            3,
            25,
            "lists.deny_countries[1] = \"XAB\" is not allowed (expected an ISO 3166-1",
        ),
    ),
    (
        "[lists]\nmmdb = \"c.mmdb\"\ndeny_countries = [\"XA\"]\nallow_countries = [\"XB\"]\n",
        (4, 1, "lists.allow_countries"),
    ),
    (
        "[lists]\nallow_countries = [\"XB\"]\n",
        (2, 1, "lists.allow_countries needs lists.mmdb"),
    ),
    (
        "[lists]\nrefresh_s = 60\nttl_s = 100\n",
        (
            3,
            1,
            "lists.ttl_s = 100 is out of range (expected 120..=7776000, at least twice",
        ),
    ),
    // A rule about a key the file leaves out points at its table.
    (
        "\n[lists]\nrefresh_s = 3600\n",
        (2, 2, "lists.ttl_s = 3600 is out of range (expected 7200..="),
    ),
    (
        "[analyzer.http]\nlogin_path_suffixes = [\"login\"]\n",
        (2, 23, "login path suffix \"login\" must start with `/`"),
    ),
    (
        "[[analyzer.http.login_routes]]\nmethod = \"POST\"\n",
        (1, 1, "missing field `path`"),
    ),
    (
        "[sensor\nports = [80]\n",
        (1, 8, "unclosed table, expected `]`"),
    ),
    (
        "[sensor]\nports = [80,\n",
        (2, 13, "unclosed array, expected `]`"),
    ),
    // A key without a value (the parser takes it for an unquoted string).
    (
        "[sensor]\nmax_sources = \n",
        (2, 15, "string values must be quoted"),
    ),
    (
        "[sensor]\nports = [80]\n[sensor]\n",
        (3, 2, "duplicate key"),
    ),
];

#[test]
fn invalid_files_are_reported_at_their_line_and_column() {
    for (text, (line, column, fragment)) in INVALID {
        let got = problems(text);
        let place = format!("{line}:{column}: ");
        assert!(
            got.len() == 1 && got[0].starts_with(&place) && got[0].contains(fragment),
            "{text:?}: want one problem at {place}… {fragment:?}, got {got:#?}"
        );
    }
}

#[test]
fn every_syntax_error_and_every_broken_rule_is_reported() {
    let got = problems("[sensor\nports = [80]\n[policy\n");
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[0].starts_with("1:8: ") && got[1].starts_with("3:8: "),
        "{got:#?}"
    );
    let got =
        problems("[sensor]\nports = [0, 80, 0]\nmax_sources = 1\n\n[policy]\nescalation = 0.5\n");
    let places: Vec<_> = got
        .iter()
        .map(|p| p.split(": ").next().unwrap_or(""))
        .collect();
    assert_eq!(places, ["2:10", "2:17", "3:1", "6:1"], "{got:#?}");
}

#[test]
fn an_error_is_one_line_naming_the_file_and_the_first_problem() {
    let err = Config::parse("[sensor]\nports = [0]\nmax_sources = 1\n", "/etc/a.toml")
        .expect_err("two problems");
    assert_eq!(
        err.to_string(),
        "/etc/a.toml:2:10: sensor.ports[0] = 0 is not allowed (expected a port, 1..=65535) \
         (and 1 more: `apisensor config check /etc/a.toml` lists them)"
    );
    let err = Config::parse("[sensor]\nports = [\"80\"]\n", "a.toml").expect_err("a string");
    assert_eq!(
        err.to_string(),
        "a.toml:2:10: invalid type: string \"80\", expected u16"
    );
    let err = Config::load(Some(Path::new("/nonexistent/apisensor.toml"))).expect_err("no file");
    assert!(
        err.to_string()
            .starts_with("/nonexistent/apisensor.toml: cannot read the configuration: "),
        "{err}"
    );
    assert!(!err.to_string().contains('\n'));
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
    // A missing or broken document is a clear error at its key, not a silent default.
    let name = cfg_path.display();
    std::fs::write(&cfg_path, "[detect.context]\nopenapi = \"missing.yaml\"\n").expect("write");
    let err = Config::load(Some(&cfg_path))
        .expect_err("missing document")
        .to_string();
    assert!(
        err.starts_with(&format!("{name}:2:1: detect.context.openapi: cannot read"))
            && err.contains("missing.yaml"),
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
fn list_files_are_taken_from_the_configuration_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg_path = dir.path().join("apisensor.toml");
    std::fs::write(
        &cfg_path,
        "[lists]\nfiles = [\"drop.txt\", \"/etc/x.txt\"]\nmmdb = \"c.mmdb\"\n",
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
    assert_eq!(cfg.lists.mmdb, Some(dir.path().join("c.mmdb")));
}
