//! Decisions as OCSF Detection Findings (class 2004, category 2 Findings, schema 1.5.0, with
//! the Security Control profile): one line per decision, which SIEMs that read OCSF (Splunk,
//! Elastic, a data lake) take without a parser of their own. `docs/EVENTS.md` documents the
//! mapping field by field.
//!
//! - `finding_info.uid` is the decision's id in hex: a renewal of a block is an `Update`
//!   (activity 2) of the same finding, a new decision a `Create` (activity 1).
//! - `severity_id` follows the action and how far over its thresholds the decision is (its
//!   score): observe 1 Informational; alert 2 Low, 3 Medium from a score of 2; block 4 High,
//!   5 Critical from a score of 4.
//! - `action_id`/`disposition_id`: a block written into this host's kernel is 2 Denied / 2
//!   Blocked; everything else is 3 Observed, with 19 Alert (an alert), 17 Logged (observe),
//!   15 Detected (a block not enforced: dry run), 7 Custom Action (a block for the upstream
//!   proxy or hook to enforce) or 27 Error (the map writer refused it).
//! - `evidences`: per finding its detector, measures and score, and per sample request its
//!   method, path (never a query), status and account; `observables` the addresses, prefixes,
//!   account names and client fingerprints; `unmapped.apisensor` the rest of the decision.
//!
//! Findings hold no secrets (no password, cookie, token or query value reaches them), and
//! nothing here adds any.
use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::decide::{Action, Decision, Enforcement};
use crate::detect::{Entity, Finding};

use super::Enforced;

/// The OCSF schema version the lines follow.
pub const OCSF_VERSION: &str = "1.5.0";
/// Detection Finding.
pub const CLASS_UID: u32 = 2004;
/// Findings.
pub const CATEGORY_UID: u32 = 2;

/// The names of `severity_id` 0..=5.
const SEVERITIES: [&str; 6] = [
    "Unknown",
    "Informational",
    "Low",
    "Medium",
    "High",
    "Critical",
];

/// `severity_id` of a decision.
pub fn severity_id(d: &Decision) -> u8 {
    match d.action {
        Action::Observe => 1,
        Action::Alert if d.score >= 2.0 => 3,
        Action::Alert => 2,
        Action::Block if d.score >= 4.0 => 5,
        Action::Block => 4,
    }
}

/// `(action_id, action, disposition_id, disposition)` of a decision as the agent enforced it.
pub fn disposition(e: &Enforced<'_>) -> (u8, &'static str, u8, &'static str) {
    const OBSERVED: (u8, &str) = (3, "Observed");
    let d = e.decision;
    let (id, name) = match d.action {
        Action::Observe => (17, "Logged"),
        Action::Alert => (19, "Alert"),
        Action::Block if e.write_error.is_some() => (27, "Error"),
        Action::Block if d.blocks_in_kernel() => return (2, "Denied", 2, "Blocked"),
        Action::Block if d.enforcement == Enforcement::Upstream => (7, "Custom Action"),
        Action::Block => (15, "Detected"),
    };
    (OBSERVED.0, OBSERVED.1, id, name)
}

/// Unix ns to ms.
fn ms(ns: u64) -> u64 {
    ns / 1_000_000
}

/// The finding that leads a decision: the strongest, then the highest score (as the policy
/// picks it).
fn lead(d: &Decision) -> Option<&Finding> {
    d.findings.iter().max_by(|a, b| {
        a.detector
            .strength()
            .cmp(&b.detector.strength())
            .then(a.score.total_cmp(&b.score))
    })
}

/// The OCSF Detection Finding of a decision.
pub fn detection_finding(e: &Enforced<'_>) -> Value {
    let d = e.decision;
    let (activity_id, activity) = if d.renewal {
        (2, "Update")
    } else {
        (1, "Create")
    };
    let severity = severity_id(d);
    let (action_id, action, disposition_id, disposition) = disposition(e);
    let first_seen = d
        .findings
        .iter()
        .flat_map(|f| f.samples.iter().map(|s| s.ts_ns).chain([f.at_ns]))
        .min()
        .unwrap_or(d.at_ns)
        .min(d.at_ns);
    let mut types: Vec<&str> = d.findings.iter().map(|f| f.detector.name()).collect();
    types.dedup();
    let analytic = lead(d).map(|f| {
        json!({
            "name": f.detector.name(),
            "uid": f.detector.name(),
            "type_id": 2,
            "type": "Behavioral",
            "category": f.detector.strength(),
        })
    });
    let mut finding_info = json!({
        "uid": format!("{:016x}", d.id),
        "title": format!("{}: {} ({})", d.reason, d.entity, d.action),
        "types": types,
        "created_time": ms(d.at_ns),
        "first_seen_time": ms(first_seen),
        "last_seen_time": ms(d.at_ns),
    });
    if let Some(a) = analytic {
        finding_info["analytic"] = a;
    }
    if !d.notes.is_empty() {
        finding_info["desc"] = json!(d.notes.join(" "));
    }
    json!({
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "activity_id": activity_id,
        "activity_name": activity,
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": format!("Detection Finding: {activity}"),
        "time": ms(d.at_ns),
        "start_time": ms(first_seen),
        "end_time": ms(d.at_ns),
        "timezone_offset": 0,
        "severity_id": severity,
        "severity": SEVERITIES[usize::from(severity)],
        "status_id": 1,
        "status": "New",
        "action_id": action_id,
        "action": action,
        "disposition_id": disposition_id,
        "disposition": disposition,
        "is_alert": d.action != Action::Observe,
        "message": d.summary(),
        "metadata": metadata(d),
        "finding_info": finding_info,
        "evidences": evidences(d),
        "observables": observables(d),
        "unmapped": { "apisensor": unmapped(e) },
    })
}

/// `metadata`: the schema version, the product, and this line's own id.
fn metadata(d: &Decision) -> Value {
    json!({
        "version": OCSF_VERSION,
        "product": {
            "name": "apisensor",
            "vendor_name": "apisensor",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "profiles": ["security_control"],
        "log_name": "decisions",
        "event_code": "decision",
        "uid": format!("{:016x}-{}", d.id, d.at_ns),
    })
}

/// `unmapped.apisensor`: the decision's own fields that OCSF has no place for.
fn unmapped(e: &Enforced<'_>) -> Value {
    let d = e.decision;
    json!({
        "decision_id": d.id,
        "at_ns": d.at_ns,
        "action": d.action,
        "enforcement": d.enforcement,
        "entity": d.entity,
        "target": d.target,
        "ttl_s": d.ttl_s,
        "renewal": d.renewal,
        "offence": d.offence,
        "reason": d.reason,
        "refused": d.refused,
        "score": d.score,
        "flows": d.flows,
        "marks": d.marks,
        "exceptions": d.exceptions,
        "written_ns": e.written_ns,
        "write_error": e.write_error,
    })
}

/// `src_endpoint` and `user` of an entity, as an evidence carries them.
fn entity_fields(entity: &Entity, artifact: &mut Value) {
    match entity {
        Entity::Source(ip) => artifact["src_endpoint"] = json!({ "ip": ip }),
        Entity::Account(name) => artifact["user"] = json!({ "name": name }),
        _ => {}
    }
}

/// One evidence per finding (its measures), then one per sample request.
fn evidences(d: &Decision) -> Vec<Value> {
    let mut out = Vec::new();
    for f in &d.findings {
        let mut artifact = json!({
            "name": f.detector.name(),
            "data": {
                "detector": f.detector.name(),
                "entity": f.entity,
                "score": f.score,
                "measures": f.measures,
                "sources": f.sources,
                "standing": f.standing,
            },
        });
        entity_fields(&f.entity, &mut artifact);
        out.push(artifact);
        for s in &f.samples {
            let mut artifact = json!({
                "name": "request",
                "http_request": {
                    "http_method": s.method,
                    "url": { "path": s.path },
                },
                "data": {
                    "detector": f.detector.name(),
                    "time": ms(s.ts_ns),
                    "login": s.login,
                },
            });
            entity_fields(&f.entity, &mut artifact);
            if let Some(code) = s.status {
                artifact["http_response"] = json!({ "code": code });
            }
            if let Some(account) = &s.account {
                artifact["user"] = json!({ "name": account });
            }
            out.push(artifact);
        }
    }
    out
}

/// The addresses, prefixes, account names and fingerprints of a decision, each once.
fn observables(d: &Decision) -> Vec<Value> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut add = |name: &str, type_id: u8, kind: &str, value: String| {
        if seen.insert((type_id, value.clone())) {
            out.push(json!({ "name": name, "type_id": type_id, "type": kind, "value": value }));
        }
    };
    if let Some(t) = d.target {
        if t.prefix_len() == t.max_prefix_len() {
            add(
                "unmapped.apisensor.target",
                2,
                "IP Address",
                t.addr().to_string(),
            );
        } else {
            add("unmapped.apisensor.target", 12, "Subnet", t.to_string());
        }
    }
    for f in &d.findings {
        match &f.entity {
            Entity::Source(ip) => add("evidences.src_endpoint.ip", 2, "IP Address", ip.to_string()),
            Entity::Prefix(net) => add("evidences.data.entity.id", 12, "Subnet", net.to_string()),
            Entity::Account(name) => add("evidences.user.name", 4, "User Name", name.clone()),
            Entity::Campaign(name) => {
                if let Some(fp) = name.split_whitespace().find(|w| w.starts_with("apr1_")) {
                    add("evidences.data.entity.id", 30, "Fingerprint", fp.to_owned());
                }
            }
            _ => {}
        }
        for ip in &f.sources {
            add("evidences.data.sources", 2, "IP Address", ip.to_string());
        }
        for s in &f.samples {
            if let Some(a) = &s.account {
                add("evidences.user.name", 4, "User Name", a.clone());
            }
        }
    }
    for m in &d.marks {
        add(
            "unmapped.apisensor.marks.shape",
            30,
            "Fingerprint",
            format!("{:016x}", m.shape),
        );
    }
    out
}

/// Appends the OCSF line of a decision and a newline to `buf`.
pub fn line(e: &Enforced<'_>, buf: &mut Vec<u8>) {
    // Serializing a `Value` into a vector cannot fail.
    if serde_json::to_writer(&mut *buf, &detection_finding(e)).is_ok() {
        buf.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::decide::Refusal;
    use crate::detect::{Detector, Measure, SampleRequest};
    use crate::http::LoginOutcome;

    const T: u64 = 1_800_000_000_123_456_789;
    const ATTACKER: &str = "203.0.113.7";

    /// A brute-force finding about the attacker, with one failed login as its sample.
    fn finding(detector: Detector, score: f64) -> Finding {
        let ip: IpAddr = ATTACKER.parse().expect("ip");
        let mut f = Finding::new(
            T,
            detector,
            Entity::Source(ip),
            vec![Measure::at_least("failed_logins", 12.0, 10.0)],
        );
        f.score = score;
        f.samples.push(SampleRequest {
            ts_ns: T - 2_000_000_000,
            method: "POST".into(),
            path: "/login".to_owned(),
            status: Some(401),
            account: Some("admin".to_owned()),
            login: Some(LoginOutcome::Failure),
        });
        f
    }

    /// A kernel block of the attacker on that finding.
    fn decision(action: Action, enforcement: Enforcement, score: f64) -> Decision {
        let f = finding(Detector::BruteForce, score);
        Decision {
            id: 0x0001_2345_6789_abcd,
            at_ns: T,
            action,
            enforcement,
            entity: f.entity.clone(),
            target: Some(format!("{ATTACKER}/32").parse().expect("net")),
            flows: Vec::new(),
            marks: Vec::new(),
            exceptions: Vec::new(),
            ttl_s: 600,
            renewal: false,
            offence: 1,
            reason: "apisensor: brute_force".to_owned(),
            refused: None,
            notes: Vec::new(),
            findings: vec![f, finding(Detector::ShortLived, 1.0)],
            score,
        }
    }

    fn enforced(d: &Decision) -> Enforced<'_> {
        Enforced {
            decision: d,
            written_ns: Some(T + 50_000),
            write_error: None,
        }
    }

    #[test]
    fn a_kernel_block_is_a_blocked_detection_finding() {
        let d = decision(Action::Block, Enforcement::Kernel, 1.5);
        let v = detection_finding(&enforced(&d));
        for (path, want) in [
            ("/class_uid", json!(2004)),
            ("/category_uid", json!(2)),
            ("/activity_id", json!(1)),
            ("/activity_name", json!("Create")),
            ("/type_uid", json!(200_401)),
            ("/time", json!(T / 1_000_000)),
            ("/start_time", json!((T - 2_000_000_000) / 1_000_000)),
            ("/severity_id", json!(4)),
            ("/severity", json!("High")),
            ("/status_id", json!(1)),
            ("/action_id", json!(2)),
            ("/disposition_id", json!(2)),
            ("/disposition", json!("Blocked")),
            ("/is_alert", json!(true)),
            ("/metadata/version", json!("1.5.0")),
            ("/metadata/product/name", json!("apisensor")),
            (
                "/metadata/product/version",
                json!(env!("CARGO_PKG_VERSION")),
            ),
            ("/finding_info/uid", json!("000123456789abcd")),
            ("/finding_info/types", json!(["brute_force", "short_lived"])),
            ("/finding_info/analytic/name", json!("brute_force")),
            ("/finding_info/analytic/type_id", json!(2)),
            ("/evidences/0/name", json!("brute_force")),
            ("/evidences/0/src_endpoint/ip", json!(ATTACKER)),
            ("/evidences/0/data/measures/0/name", json!("failed_logins")),
            ("/evidences/0/data/measures/0/value", json!(12.0)),
            ("/evidences/1/http_request/http_method", json!("POST")),
            ("/evidences/1/http_request/url/path", json!("/login")),
            ("/evidences/1/http_response/code", json!(401)),
            ("/evidences/1/user/name", json!("admin")),
            ("/unmapped/apisensor/enforcement", json!("kernel")),
            ("/unmapped/apisensor/ttl_s", json!(600)),
            (
                "/unmapped/apisensor/target",
                json!(format!("{ATTACKER}/32")),
            ),
            ("/unmapped/apisensor/written_ns", json!(T + 50_000)),
        ] {
            assert_eq!(v.pointer(path), Some(&want), "{path} in {v:#}");
        }
        // The attacker's address and the account name are observables, each once.
        let observables: Vec<(u64, &str)> = v["observables"]
            .as_array()
            .expect("observables")
            .iter()
            .map(|o| {
                (
                    o["type_id"].as_u64().expect("id"),
                    o["value"].as_str().expect("value"),
                )
            })
            .collect();
        assert_eq!(observables, [(2, ATTACKER), (4, "admin")]);
        // One line, newline-terminated, that parses back to the same value.
        let mut buf = Vec::new();
        line(&enforced(&d), &mut buf);
        assert_eq!(bytecount::count(&buf, b'\n'), 1);
        assert_eq!(serde_json::from_slice::<Value>(&buf).expect("json"), v);
    }

    #[test]
    fn severity_follows_action_and_score() {
        for (action, score, want) in [
            (Action::Observe, 9.0, 1),
            (Action::Alert, 1.0, 2),
            (Action::Alert, 2.0, 3),
            (Action::Block, 1.0, 4),
            (Action::Block, 3.9, 4),
            (Action::Block, 4.0, 5),
        ] {
            let d = decision(action, Enforcement::None, score);
            assert_eq!(severity_id(&d), want, "{action:?} {score}");
            let v = detection_finding(&enforced(&d));
            assert_eq!(v["severity"], SEVERITIES[usize::from(want)]);
        }
    }

    #[test]
    fn disposition_says_what_happened_to_the_block() {
        let kernel = decision(Action::Block, Enforcement::Kernel, 1.0);
        let upstream = decision(Action::Block, Enforcement::Upstream, 1.0);
        let mut dry = decision(Action::Block, Enforcement::None, 1.0);
        dry.refused = Some(Refusal::DryRun);
        let alert = decision(Action::Alert, Enforcement::None, 1.0);
        let observe = decision(Action::Observe, Enforcement::None, 1.0);
        let failed = Enforced {
            decision: &kernel,
            written_ns: None,
            write_error: Some("map full".to_owned()),
        };
        for (e, want) in [
            (enforced(&kernel), (2, "Denied", 2, "Blocked")),
            (failed, (3, "Observed", 27, "Error")),
            (enforced(&upstream), (3, "Observed", 7, "Custom Action")),
            (enforced(&dry), (3, "Observed", 15, "Detected")),
            (enforced(&alert), (3, "Observed", 19, "Alert")),
            (enforced(&observe), (3, "Observed", 17, "Logged")),
        ] {
            assert_eq!(disposition(&e), want, "{:?}", e.decision.enforcement);
        }
        assert_eq!(detection_finding(&enforced(&observe))["is_alert"], false);
    }

    #[test]
    fn a_renewal_updates_the_same_finding() {
        let mut d = decision(Action::Block, Enforcement::Kernel, 1.0);
        let created = detection_finding(&enforced(&d));
        d.renewal = true;
        d.at_ns += 300_000_000_000;
        let updated = detection_finding(&enforced(&d));
        assert_eq!(updated["activity_id"], 2);
        assert_eq!(updated["activity_name"], "Update");
        assert_eq!(updated["type_uid"], 200_402);
        assert_eq!(
            updated["finding_info"]["uid"],
            created["finding_info"]["uid"]
        );
        assert_ne!(updated["metadata"]["uid"], created["metadata"]["uid"]);
    }

    #[test]
    fn prefixes_marks_and_campaign_fingerprints_are_observables() {
        let mut d = decision(Action::Block, Enforcement::Connection, 1.0);
        d.target = Some("203.0.113.0/24".parse().expect("net"));
        d.marks.push(crate::detect::Mark {
            shape: 0xfeed,
            failed: 9.0,
            ok: 0.0,
        });
        let mut campaign = finding(Detector::Campaign, 1.0);
        campaign.entity = Entity::Campaign("apr1_0011223344556677 POST api.test/login".to_owned());
        campaign.sources.push("198.51.100.9".parse().expect("ip"));
        d.findings.push(campaign);
        let v = detection_finding(&enforced(&d));
        let has = |type_id: u64, value: &str| {
            v["observables"]
                .as_array()
                .expect("observables")
                .iter()
                .any(|o| o["type_id"] == type_id && o["value"] == value)
        };
        assert!(has(12, "203.0.113.0/24"), "{v:#}");
        assert!(has(30, "000000000000feed"), "{v:#}");
        assert!(has(30, "apr1_0011223344556677"), "{v:#}");
        assert!(has(2, "198.51.100.9"), "{v:#}");
    }
}
