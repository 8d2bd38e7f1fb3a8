//! The operator surface end to end, in a two-namespace lab: the agent serves its Prometheus
//! endpoint on the server namespace's loopback; benign requests and a brute force go by; a
//! scrape (curl inside the server namespace) shows every family with values that match what
//! happened: transactions, a brute-force finding, a kernel block decision written to the maps,
//! the kernel's drops of the blocked attacker, ring records read, tracked sources, latency
//! histograms observed. Its event lines, in OCSF, carry the block as a Blocked Detection
//! Finding with its evidence and no password.
use std::{
    net::IpAddr,
    thread,
    time::{Duration, Instant},
};

use apisensor_tests::{
    agent::{self, AgentFiles, PinDir, json_lines},
    lab::Lab,
};

/// Where the agent listens, inside the server namespace.
const METRICS: &str = "127.0.0.1:9469";
/// Attempts the attacker makes at most.
const ATTEMPTS: u32 = 60;
/// Benign requests before the attack.
const BENIGN: u32 = 5;

/// One request from `src`: the HTTP status, or None if it got no answer.
fn request(lab: &Lab, src: IpAddr, url: &str, extra: &[&str], timeout: Duration) -> Option<u16> {
    lab.status(src, url, extra, timeout)
}

/// One scrape of the endpoint from inside the server namespace.
fn scrape(lab: &Lab) -> String {
    let out = lab.run(
        lab.server_ns(),
        "curl",
        &[
            "-sS",
            "--max-time",
            "3",
            &format!("http://{METRICS}/metrics"),
        ],
        Duration::from_secs(5),
    );
    assert!(
        out.status.success(),
        "scrape failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The sum of the samples of `name` whose labels include every pair of `labels`.
fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name).then_some((rest, value))
        })
        .filter(|(rest, _)| {
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario, read top to bottom: traffic, then every family checked"
)]
fn every_family_is_scraped_with_values_that_match_the_traffic() {
    let mut lab = Lab::new("metrics");
    lab.start_nginx(80);
    let pin = PinDir::new("metrics");
    let config = format!(
        "[policy]\nblock_ttl_s = 30\n\n[metrics]\naddress = \"{METRICS}\"\n\n[events]\nformat = \"ocsf\"\n"
    );
    let files = AgentFiles::in_lab(&lab, 1, &config);
    let agent = agent::start(&mut lab, &pin, &files, &[]);
    let server = IpAddr::V4(lab.server_v4());
    let (attacker, neighbour) = (IpAddr::V4(lab.client_v4()), IpAddr::V4(lab.client_v4_alt()));

    // Before any traffic, every family is there.
    let text = scrape(&lab);
    for (family, _) in sensor_user::metrics::FAMILIES {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing: {text}"
        );
    }

    let home = format!("http://{server}:80/");
    for _ in 0..BENIGN {
        assert_eq!(
            request(&lab, neighbour, &home, &[], Duration::from_secs(3)),
            Some(200)
        );
    }
    // The brute force, a new connection per attempt, until one gets no answer.
    let login = format!("http://{server}:80/login");
    let attempt = ["-X", "POST", "-d", "username=admin&password=guess"];
    let mut answered = 0;
    let mut refused = false;
    for _ in 0..ATTEMPTS {
        thread::sleep(Duration::from_millis(50));
        let Some(status) = request(&lab, attacker, &login, &attempt, Duration::from_millis(400))
        else {
            refused = true;
            break;
        };
        assert_eq!(status, 401);
        answered += 1;
    }
    assert!(
        refused,
        "{ATTEMPTS} attempts, none refused: {}",
        lab.stderr_of(agent)
    );
    // One more, dropped: the kernel counts it.
    assert_eq!(
        request(&lab, attacker, &home, &[], Duration::from_millis(500)),
        None
    );

    // The snapshot is published about once a second: wait (bounded) for the block to show.
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = scrape(&lab);
        let blocks = sum(&text, "apisensor_decisions_total", &[("action", "block")]);
        let transactions = sum(&text, "apisensor_transactions_total", &[]);
        if blocks >= 1.0 && transactions >= f64::from(BENIGN + answered) {
            break text;
        }
        assert!(Instant::now() < deadline, "no block in the metrics: {text}");
        thread::sleep(Duration::from_millis(250));
    };
    for (family, _) in sensor_user::metrics::FAMILIES {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing: {text}"
        );
    }
    let at_least = |name: &str, labels: &[(&str, &str)], want: f64| {
        let got = sum(&text, name, labels);
        assert!(
            got >= want,
            "{name}{labels:?} = {got}, want >= {want}: {text}"
        );
    };
    at_least("apisensor_build_info", &[], 1.0);
    at_least(
        "apisensor_kernel_packets_total",
        &[
            ("program", "xdp"),
            ("action", "pass"),
            ("reason", "sampled"),
        ],
        f64::from(BENIGN + answered),
    );
    at_least(
        "apisensor_kernel_packets_total",
        &[("program", "xdp"), ("action", "drop")],
        1.0,
    );
    at_least("apisensor_kernel_packets_total", &[("program", "tc")], 1.0);
    at_least(
        "apisensor_ring_events_total",
        &[("ring", "request"), ("kind", "segment")],
        f64::from(BENIGN + answered),
    );
    at_least("apisensor_ring_events_total", &[("ring", "response")], 1.0);
    at_least(
        "apisensor_ring_records_read_total",
        &[("ring", "request")],
        f64::from(BENIGN + answered),
    );
    at_least("apisensor_segments_total", &[], 1.0);
    at_least("apisensor_flows_opened_total", &[], f64::from(BENIGN));
    at_least(
        "apisensor_findings_total",
        &[("detector", "brute_force")],
        1.0,
    );
    at_least(
        "apisensor_decisions_total",
        &[("action", "block"), ("enforcement", "kernel")],
        1.0,
    );
    at_least(
        "apisensor_block_writes_total",
        &[("result", "written")],
        1.0,
    );
    at_least("apisensor_blocks_active", &[], 1.0);
    at_least("apisensor_tracked_entities", &[("kind", "source")], 2.0);
    at_least("apisensor_tracked_entities", &[("kind", "endpoint")], 1.0);
    at_least("apisensor_batch_duration_seconds_count", &[], 1.0);
    at_least("apisensor_record_age_seconds_count", &[], 1.0);
    at_least("apisensor_block_write_duration_seconds_count", &[], 1.0);
    at_least("apisensor_detection_to_block_seconds_count", &[], 1.0);
    // Nothing failed or was lost at this pace.
    for (name, labels) in [
        ("apisensor_ring_events_lost_total", &[][..]),
        ("apisensor_ring_decode_errors_total", &[]),
        ("apisensor_block_writes_total", &[("result", "failed")]),
        ("apisensor_tracked_evictions_total", &[]),
    ] {
        // Counters: a count below one is none.
        assert!(sum(&text, name, labels) < 0.5, "{name}: {text}");
    }
    // A block is written within a second of the event that made it.
    let (count, total) = (
        sum(&text, "apisensor_detection_to_block_seconds_count", &[]),
        sum(&text, "apisensor_detection_to_block_seconds_sum", &[]),
    );
    assert!(
        total / count < 1.0,
        "mean detection to block {}",
        total / count
    );

    // The event file holds OCSF Detection Findings: the attacker's block among them, Blocked,
    // with its evidence, and never the password.
    let lines = json_lines(&files.events);
    assert!(!lines.is_empty(), "no event line");
    assert!(lines.iter().all(|e| e["class_uid"] == 2004), "{lines:?}");
    let attacker_s = attacker.to_string();
    let block = lines
        .iter()
        .find(|e| {
            e["disposition_id"] == 2
                && e["unmapped"]["apisensor"]["target"] == format!("{attacker_s}/32")
        })
        .unwrap_or_else(|| panic!("no Blocked finding for the attacker: {lines:?}"));
    assert_eq!(block["action_id"], 2, "{block}");
    assert_eq!(block["activity_id"], 1, "{block}");
    assert!(
        block["finding_info"]["types"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "brute_force")),
        "{block}"
    );
    assert_eq!(
        block["evidences"][0]["src_endpoint"]["ip"],
        attacker_s.as_str(),
        "{block}"
    );
    assert!(
        block["observables"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o["type_id"] == 4 && o["value"] == "admin")),
        "{block}"
    );
    let text = std::fs::read_to_string(&files.events).expect("events");
    assert!(!text.contains("guess"), "a password reached the event file");
    assert!(
        json_lines(&files.stdout)
            .iter()
            .any(|e| e["class_uid"] == 2004),
        "no OCSF line on stdout"
    );

    let status = lab.stop(agent);
    assert!(status.success(), "agent did not exit cleanly: {status:?}");
}
