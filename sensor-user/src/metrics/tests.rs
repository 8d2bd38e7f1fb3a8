//! Tests of the registry: every family listed and encoded, the kernel counters placed, the
//! snapshot's values in the text, the indexes the counts use.
use std::collections::BTreeSet;

use super::*;

/// The families (`# TYPE` lines) of an encoding, with their types.
fn types(text: &str) -> BTreeSet<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_owned(), t.to_owned()))
        .collect()
}

/// The value of the sample `name{labels}` (labels as the text writes them), if present.
fn value(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn all_kernel_counters(v: u64) -> KernelReader {
    Box::new(move || Some(Counter::ALL.iter().map(|c| (*c, v)).collect()))
}

#[test]
fn the_encoding_has_exactly_the_listed_families() {
    let text = Metrics::new(all_kernel_counters(0)).encode();
    let want: BTreeSet<(String, String)> = FAMILIES
        .iter()
        .map(|(n, t)| {
            let t = match t {
                MetricType::Counter => "counter",
                MetricType::Gauge => "gauge",
                MetricType::Histogram => "histogram",
                _ => "other",
            };
            ((*n).to_owned(), t.to_owned())
        })
        .collect();
    assert_eq!(types(&text), want, "{text}");
    assert!(text.ends_with("# EOF\n"));
    // Every sample name a query may use is in the text (histograms included, unobserved).
    for name in sample_names() {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{"))),
            "{name} has no sample: {text}"
        );
    }
}

#[test]
fn every_kernel_counter_has_one_distinct_sample() {
    let mut seen = BTreeSet::new();
    for c in Counter::ALL {
        assert!(seen.insert(kernel_sample(c)), "{c:?} shares a sample");
    }
    let text = Metrics::new(all_kernel_counters(7)).encode();
    for (sample, want) in [
        (
            r#"apisensor_kernel_packets_total{program="xdp",action="drop",reason="exact_block"}"#,
            7.0,
        ),
        (
            r#"apisensor_kernel_packets_total{program="tc",action="drop",reason="flow_block"}"#,
            7.0,
        ),
        (
            r#"apisensor_ring_events_total{ring="request",kind="segment"}"#,
            7.0,
        ),
        (r#"apisensor_ring_events_lost_total{ring="response"}"#, 7.0),
        (r#"apisensor_ring_wakeups_total{ring="request"}"#, 7.0),
        (
            r#"apisensor_kernel_events_total{event="flow_block_reopened"}"#,
            7.0,
        ),
    ] {
        assert_eq!(value(&text, sample), Some(want), "{sample}: {text}");
    }
    let sampled = text
        .lines()
        .filter(|l| {
            [
                "kernel_packets",
                "kernel_events",
                "ring_events",
                "ring_wakeups",
            ]
            .iter()
            .any(|f| l.starts_with(&format!("apisensor_{f}")))
        })
        .count();
    assert_eq!(sampled, Counter::COUNT, "{text}");
    // Unreadable kernel counters leave their families empty, the rest intact.
    let text = Metrics::new(Box::new(|| None)).encode();
    assert!(text.contains("# TYPE apisensor_kernel_packets counter"));
    assert!(!text.contains("apisensor_kernel_packets_total{"));
    assert!(text.contains("apisensor_transactions_total 0"));
}

#[test]
fn the_published_snapshot_is_what_a_scrape_reads() {
    let m = Metrics::new(Box::new(|| None));
    let mut s = Snapshot::default();
    s.analyzer.transactions = 42;
    s.analyzer.flows_evicted = 3;
    s.analyzer.flows_active = 5;
    s.analyzer.gaps = 2;
    s.detection.sources = 9;
    s.detection.evicted_accounts = 4;
    s.active_blocks = 1;
    s.out.findings[Detector::BruteForce as usize] = 6;
    s.out.decisions[Action::Block as usize][Enforcement::Kernel as usize] = 2;
    s.out.refused[Refusal::DryRun as usize] = 1;
    s.out.records = [10, 11];
    m.publish(s);
    m.histograms.batch.observe(0.002);
    let text = m.encode();
    for (sample, want) in [
        ("apisensor_transactions_total", 42.0),
        (r#"apisensor_flows_closed_total{reason="evicted"}"#, 3.0),
        (r#"apisensor_tracked_entities{kind="flow"}"#, 5.0),
        (r#"apisensor_tracked_evictions_total{kind="flow"}"#, 3.0),
        ("apisensor_reassembly_gaps_total", 2.0),
        (r#"apisensor_tracked_entities{kind="source"}"#, 9.0),
        (r#"apisensor_tracked_evictions_total{kind="account"}"#, 4.0),
        ("apisensor_blocks_active", 1.0),
        (r#"apisensor_findings_total{detector="brute_force"}"#, 6.0),
        (r#"apisensor_findings_total{detector="volume"}"#, 0.0),
        (
            r#"apisensor_decisions_total{action="block",enforcement="kernel"}"#,
            2.0,
        ),
        (
            r#"apisensor_decisions_total{action="alert",enforcement="none"}"#,
            0.0,
        ),
        (
            r#"apisensor_decisions_refused_total{reason="dry_run"}"#,
            1.0,
        ),
        (
            r#"apisensor_ring_records_read_total{ring="response"}"#,
            11.0,
        ),
        ("apisensor_batch_duration_seconds_count", 1.0),
    ] {
        assert_eq!(value(&text, sample), Some(want), "{sample}: {text}");
    }
    let age = value(&text, "apisensor_snapshot_age_seconds").expect("age");
    assert!((0.0..60.0).contains(&age), "{age}");
}

#[test]
fn counts_index_by_declaration_order() {
    for (i, d) in Detector::ALL.iter().enumerate() {
        assert_eq!(*d as usize, i, "{d:?}");
    }
    for (i, r) in Refusal::ALL.iter().enumerate() {
        assert_eq!(*r as usize, i, "{r:?}");
        // The label is the name decisions write.
        assert_eq!(
            serde_json::to_value(r).expect("json"),
            serde_json::json!(refusal_name(*r))
        );
    }
    for (i, a) in ACTIONS.iter().enumerate() {
        assert_eq!(*a as usize, i);
        assert_eq!(a.to_string(), action_name(*a));
    }
    for (i, e) in ENFORCEMENTS.iter().enumerate() {
        assert_eq!(*e as usize, i);
        assert_eq!(
            serde_json::to_value(e).expect("json"),
            serde_json::json!(enforcement_name(*e))
        );
    }
}

#[test]
fn metrics_address_parses_or_turns_off() {
    let cfg = |a: &str| MetricsConfig {
        address: a.to_owned(),
    };
    assert_eq!(
        MetricsConfig::default().socket_addr(),
        Ok(Some("127.0.0.1:9464".parse().expect("addr")))
    );
    assert_eq!(cfg("").socket_addr(), Ok(None));
    assert_eq!(
        cfg("[::1]:9000").socket_addr(),
        Ok(Some("[::1]:9000".parse().expect("addr")))
    );
    assert_eq!(cfg("localhost:9464").socket_addr(), Err("localhost:9464"));
    assert_eq!(cfg("127.0.0.1").socket_addr(), Err("127.0.0.1"));
}

/// The Grafana dashboard shipped in `packaging/grafana/`.
const DASHBOARD: &str = include_str!("../../../packaging/grafana/apisensor.json");

/// Every `apisensor_*` name an expression uses.
fn metric_names(expr: &str) -> Vec<&str> {
    let is_name = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let bytes = expr.as_bytes();
    let mut names = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !is_name(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_name(bytes[i]) {
            i += 1;
        }
        let word = &expr[start..i];
        // A name, not a label value (quoted) or part of one.
        if word.starts_with("apisensor_") && (start == 0 || bytes[start - 1] != b'"') {
            names.push(word);
        }
    }
    names
}

#[test]
fn the_dashboard_queries_only_exposed_metrics() {
    let dash: serde_json::Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let exposed: BTreeSet<String> = sample_names().into_iter().collect();
    let mut used = BTreeSet::new();
    let panels = dash["panels"].as_array().expect("panels");
    let mut queried = 0;
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let targets = panel["targets"].as_array().map_or(&[][..], Vec::as_slice);
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("a PromQL expression");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{expr} names no apisensor metric");
            for name in names {
                assert!(
                    exposed.contains(name),
                    "{expr}: {name} is not exposed (exposed: {exposed:?})"
                );
                used.insert(name.to_owned());
            }
            queried += 1;
        }
    }
    assert!(queried >= 20, "{queried} queries");
    // Every family is on the dashboard (a histogram through its buckets).
    for (family, kind) in FAMILIES {
        let sample = match kind {
            MetricType::Counter => format!("{family}_total"),
            MetricType::Histogram => format!("{family}_bucket"),
            _ => (*family).to_owned(),
        };
        assert!(used.contains(&sample), "{sample} is on no panel");
    }
    // The latency panels are quantiles of the histograms.
    assert!(DASHBOARD.contains(
        "histogram_quantile(0.99, sum by (le) (rate(apisensor_detection_to_block_seconds_bucket"
    ));
}

#[test]
fn metric_names_are_found_in_expressions() {
    assert_eq!(
        metric_names(
            r#"sum by (le) (rate(apisensor_x_bucket{a="apisensor_no"}[5m])) / apisensor_y"#
        ),
        ["apisensor_x_bucket", "apisensor_y"]
    );
}
