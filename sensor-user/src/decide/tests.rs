//! The policy's safety rules and block lifecycle, one rule per case.
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::*;
use crate::detect::{Finding, Flow, Mark, Measure, Standing};
use crate::http::ProxyVia;

const NS: u64 = 1_000_000_000;
const T0: u64 = 1_800_000_000 * NS;

fn finding(at: u64, detector: Detector, who: &str) -> Finding {
    let entity = match who.parse::<IpAddr>() {
        Ok(ip) => Entity::Source(ip),
        Err(_) => Entity::Prefix(who.parse().expect("prefix")),
    };
    let mut f = Finding::new(
        at,
        detector,
        entity,
        vec![Measure::at_least("failed_logins", 5.0, 5.0)],
    );
    f.standing = Some(Standing {
        verified: true,
        requests: 10.0,
        ..Standing::default()
    });
    f
}

fn net(s: &str) -> IpNet {
    s.parse().expect("net")
}

#[test]
fn safety_rules_refuse_in_order() {
    let cfg = PolicyConfig {
        allowlist: vec![net("198.51.100.0/28")],
        ..PolicyConfig::default()
    };
    let mut p = Policy::new(cfg, vec![net("203.0.113.1/32")]);
    let bf = Detector::BruteForce;
    let cases: Vec<(Finding, Option<Refusal>, Action)> = vec![
        (
            finding(T0, bf, "198.51.100.3"),
            Some(Refusal::Allowlisted),
            Action::Alert,
        ),
        // A prefix that contains an allowlisted range is not blocked either.
        (
            finding(T0, Detector::Volume, "198.51.100.0/24"),
            Some(Refusal::Allowlisted),
            Action::Alert,
        ),
        (
            finding(T0, bf, "203.0.113.1"),
            Some(Refusal::TrustedProxy),
            Action::Alert,
        ),
        (
            {
                let mut f = finding(T0, bf, "203.0.113.2");
                f.standing = Some(Standing::default());
                f
            },
            Some(Refusal::Unverified),
            Action::Alert,
        ),
        (
            {
                let mut f = finding(T0, Detector::Volume, "203.0.113.3");
                f.standing = Some(Standing {
                    verified: true,
                    success_share: 0.97,
                    good_sessions: 250.0,
                    ..Standing::default()
                });
                f
            },
            Some(Refusal::SharedAddress),
            Action::Alert,
        ),
        (finding(T0, bf, "203.0.113.4"), None, Action::Block),
        // Failed logins spread over a prefix alert; only volume blocks a whole prefix.
        (finding(T0, bf, "198.51.100.128/25"), None, Action::Alert),
        (
            finding(T0, Detector::Volume, "198.51.100.128/25"),
            None,
            Action::Block,
        ),
        (
            finding(T0, Detector::AccountAggregation, "203.0.113.5"),
            None,
            Action::Alert,
        ),
    ];
    for (f, refused, action) in cases {
        let d = p.on_finding(&f).expect("a decision");
        assert_eq!((d.refused, d.action), (refused, action), "{}", f.summary());
        assert_eq!(
            d.blocks_in_kernel(),
            refused.is_none() && action == Action::Block
        );
    }
    // Context never decides.
    assert!(
        p.on_finding(&finding(T0, Detector::BotTiming, "203.0.113.9"))
            .is_none()
    );
}

#[test]
fn ttl_escalates_for_repeat_offenders_and_blocks_renew_while_the_behaviour_goes_on() {
    let mut p = Policy::new(PolicyConfig::default(), Vec::new());
    let who = "198.51.100.50";
    let d1 = p
        .on_finding(&finding(T0, Detector::BruteForce, who))
        .expect("block");
    assert_eq!((d1.ttl_s, d1.offence, d1.renewal), (600, 1, false));
    // Still active and in its first half: nothing new.
    assert!(
        p.on_finding(&finding(T0 + 100 * NS, Detector::BruteForce, who))
            .is_none()
    );
    // In its second half: renewed with the same id and TTL.
    let renewed = p
        .on_finding(&finding(T0 + 400 * NS, Detector::BruteForce, who))
        .expect("renewal");
    assert!(renewed.renewal && renewed.blocks_in_kernel());
    assert_eq!((renewed.id, renewed.ttl_s), (d1.id, 600));
    // Drop hits renew too, once due; a block without recent hits is not renewed.
    let target = net("198.51.100.50/32");
    assert!(
        p.on_block_hit(target, T0 + 500 * NS, T0 + 600 * NS)
            .is_none()
    );
    let hit = p
        .on_block_hit(target, T0 + 900 * NS, T0 + 901 * NS)
        .expect("hit renewal");
    assert!(hit.renewal);
    assert!(
        p.on_block_hit(target, T0 + 902 * NS, T0 + 2000 * NS)
            .is_none(),
        "lapsed"
    );
    // After it lapsed, the next block is a repeat offence: 4 times the TTL.
    let d2 = p
        .on_finding(&finding(T0 + 2000 * NS, Detector::BruteForce, who))
        .expect("block");
    assert_eq!((d2.offence, d2.ttl_s), (2, 2400));
    // Escalation is capped.
    let cfg = PolicyConfig {
        max_ttl_s: 1000,
        ..PolicyConfig::default()
    };
    let mut p = Policy::new(cfg, Vec::new());
    let mut at = T0;
    let mut ttls = Vec::new();
    for _ in 0..4 {
        let d = p
            .on_finding(&finding(at, Detector::BruteForce, who))
            .expect("block");
        ttls.push(d.ttl_s);
        at += (d.ttl_s + 1) * NS;
    }
    assert_eq!(ttls, [600, 1000, 1000, 1000]);
}

#[test]
fn caps_turn_blocks_into_counted_alerts() {
    let cfg = PolicyConfig {
        max_active_blocks: 3,
        max_new_blocks_per_min: 2,
        ..PolicyConfig::default()
    };
    let mut p = Policy::new(cfg, Vec::new());
    let mut got = Vec::new();
    for i in 0..5_u64 {
        // One every 20 s: the third is the third in a minute; the fifth finds three active.
        let d = p
            .on_finding(&finding(
                T0 + i * 20 * NS,
                Detector::BruteForce,
                &format!("203.0.113.{i}"),
            ))
            .expect("decision");
        got.push(d.refused);
    }
    assert_eq!(
        got,
        [
            None,
            None,
            Some(Refusal::RateCap),
            None,
            Some(Refusal::ActiveCap)
        ]
    );
    let c = p.counters();
    assert_eq!((c.block, c.active), (3, 3));
    assert_eq!(c.refused.get("ratecap"), Some(&1));
    assert_eq!(c.refused.get("activecap"), Some(&1));
}

#[test]
fn dry_run_and_proxied_clients_are_reported_not_enforced() {
    let cfg = PolicyConfig {
        dry_run: true,
        ..PolicyConfig::default()
    };
    let mut p = Policy::new(cfg, Vec::new());
    let d = p
        .on_finding(&finding(T0, Detector::BruteForce, "198.51.100.9"))
        .expect("decision");
    assert_eq!(
        (d.action, d.refused),
        (Action::Block, Some(Refusal::DryRun))
    );
    assert!(!d.blocks_in_kernel());
    let mut p = Policy::new(PolicyConfig::default(), Vec::new());
    let mut f = finding(T0, Detector::BruteForce, "198.51.100.10");
    if let Some(s) = f.standing.as_mut() {
        s.proxy = Some(ProxyVia::Forwarded);
    }
    let d = p.on_finding(&f).expect("decision");
    assert_eq!(
        (d.action, d.enforcement),
        (Action::Block, Enforcement::Upstream)
    );
    assert!(!d.blocks_in_kernel());
    assert!(
        d.notes.iter().any(|n| n.contains("upstream")),
        "{:?}",
        d.notes
    );
}

#[test]
fn ids_are_unique_and_deterministic() {
    let make = || {
        let mut p = Policy::new(PolicyConfig::default(), Vec::new());
        (0..50_u64)
            .filter_map(|i| {
                p.on_finding(&finding(
                    T0 + i,
                    Detector::BruteForce,
                    &format!("2001:db8::{i:x}"),
                ))
            })
            .map(|d| d.id)
            .collect::<Vec<_>>()
    };
    let ids = make();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 50);
    assert_eq!(ids, make());
}

#[test]
fn a_client_behind_a_proxy_protocol_proxy_is_blocked_by_connection() {
    let mut p = Policy::new(PolicyConfig::default(), vec![net("203.0.113.1/32")]);
    let flow = |port: u16| Flow {
        client: SocketAddr::new("203.0.113.1".parse().expect("proxy"), port),
        server: "198.51.100.1:80".parse().expect("server"),
    };
    let mut f = finding(T0, Detector::BruteForce, "198.51.100.77");
    f.flows = vec![flow(40_001), flow(40_002)];
    if let Some(s) = f.standing.as_mut() {
        s.proxy = Some(ProxyVia::ProxyProtocol);
    }
    let d = p.on_finding(&f).expect("decision");
    assert_eq!(
        (d.action, d.enforcement),
        (Action::Block, Enforcement::Flow)
    );
    assert!(d.blocks_in_kernel());
    assert_eq!(d.flows, [flow(40_001), flow(40_002)]);
    assert!(
        d.notes.iter().any(|n| n.contains("PROXY protocol")),
        "{:?}",
        d.notes
    );
    let client: IpAddr = "198.51.100.77".parse().expect("ip");
    // Its next connection joins the block, for what is left of the TTL; a known one does not.
    let more = p
        .on_connection(client, flow(40_003), T0 + 100 * NS)
        .expect("joins");
    assert_eq!(
        (more.id, more.flows.clone(), more.ttl_s),
        (d.id, vec![flow(40_003)], 500)
    );
    assert!(
        p.on_connection(client, flow(40_003), T0 + 101 * NS)
            .is_none()
    );
    assert!(
        p.on_connection(client, flow(40_004), T0 + 700 * NS)
            .is_none(),
        "lapsed"
    );
    // Another client of the same proxy, not blocked: nothing.
    assert!(
        p.on_connection("198.51.100.78".parse().expect("ip"), flow(40_005), T0)
            .is_none()
    );
    // Without a known connection, it is still blocked by connection: its address block stops
    // its new connections at their PROXY header, in the kernel.
    let mut g = finding(T0, Detector::BruteForce, "198.51.100.79");
    if let Some(s) = g.standing.as_mut() {
        s.proxy = Some(ProxyVia::ProxyProtocol);
    }
    let d = p.on_finding(&g).expect("decision");
    assert_eq!(
        (d.enforcement, d.flows.len(), d.blocks_in_kernel()),
        (Enforcement::Flow, 0, true)
    );
    // Behind a proxy that shares its connections (forwarded headers), it goes upstream.
    let mut forwarded = finding(T0, Detector::BruteForce, "198.51.100.80");
    if let Some(s) = forwarded.standing.as_mut() {
        s.proxy = Some(ProxyVia::Forwarded);
    }
    let d = p.on_finding(&forwarded).expect("decision");
    assert_eq!(d.enforcement, Enforcement::Upstream);
}

/// A campaign's prefix finding listing its sources in good standing.
fn campaign_prefix(at: u64, prefix: &str, spared: &[&str]) -> Finding {
    let mut f = finding(at, Detector::CampaignPrefix, prefix);
    f.sources = spared.iter().map(|s| s.parse().expect("address")).collect();
    f
}

#[test]
fn a_campaign_prefix_is_blocked_with_its_sources_in_good_standing_as_exceptions() {
    let mut p = Policy::new(PolicyConfig::default(), Vec::new());
    // One of the prefix's sources turned bad and is blocked on its own first.
    let bad = p
        .on_finding(&finding(T0, Detector::BruteForce, "198.51.100.9"))
        .expect("block");
    assert!(bad.blocks_in_kernel() && bad.exceptions.is_empty());
    let f = campaign_prefix(
        T0 + NS,
        "198.51.100.0/24",
        // The blocked one, a duplicate and an IPv4-mapped form are all handled.
        &[
            "198.51.100.7",
            "198.51.100.9",
            "::ffff:198.51.100.8",
            "198.51.100.7",
        ],
    );
    let d = p.on_finding(&f).expect("a decision");
    assert_eq!((d.action, d.refused), (Action::Block, None));
    assert!(d.blocks_in_kernel());
    assert_eq!(d.target, Some(net("198.51.100.0/24")));
    // The blocked source is no exception: it would pass its own block too.
    assert_eq!(
        d.exceptions,
        [net("198.51.100.7/32"), net("198.51.100.8/32")]
    );
    assert!(
        d.notes
            .iter()
            .any(|n| n.starts_with("2 sources in good standing spared")),
        "{:?}",
        d.notes
    );
    // The event line carries them.
    let line = serde_json::to_string(&d).expect("serializes");
    assert!(
        line.contains(r#""exceptions":["198.51.100.7/32","198.51.100.8/32"]"#),
        "{line}"
    );

    // A source in good standing seen later joins, and a renewal renews them all with the
    // block's id and TTL.
    let later = campaign_prefix(T0 + 400 * NS, "198.51.100.0/24", &["198.51.100.20"]);
    let r = p.on_finding(&later).expect("renewal");
    assert!(r.renewal && r.blocks_in_kernel());
    assert_eq!((r.id, r.ttl_s), (d.id, d.ttl_s));
    assert_eq!(
        r.exceptions,
        [
            net("198.51.100.7/32"),
            net("198.51.100.8/32"),
            net("198.51.100.20/32")
        ]
    );
    // A renewal by the kernel's drop hits renews them too.
    let hit = p
        .on_block_hit(net("198.51.100.0/24"), T0 + 800 * NS, T0 + 801 * NS)
        .expect("hit renewal");
    assert_eq!(hit.exceptions, r.exceptions);

    // A spared source that turns bad is blocked on its own and stops being an exception.
    let turned = p
        .on_finding(&finding(
            T0 + 802 * NS,
            Detector::BruteForce,
            "198.51.100.8",
        ))
        .expect("block");
    assert!(turned.blocks_in_kernel());
    let hit = p
        .on_block_hit(net("198.51.100.0/24"), T0 + 1150 * NS, T0 + 1151 * NS)
        .expect("hit renewal");
    assert_eq!(
        hit.exceptions,
        [net("198.51.100.7/32"), net("198.51.100.20/32")]
    );
}

#[test]
fn a_campaign_prefix_is_refused_only_with_more_sources_in_good_standing_than_it_spares() {
    let mut p = Policy::new(PolicyConfig::default(), Vec::new());
    // An IPv6 /64 with one more source in good standing than a block carries exceptions for.
    let many: Vec<String> = (0..=MAX_EXCEPTIONS)
        .map(|i| format!("2001:db8:5::{:x}", i + 1))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let d = p
        .on_finding(&campaign_prefix(T0, "2001:db8:5::/64", &many))
        .expect("a decision");
    assert_eq!(
        (d.action, d.refused),
        (Action::Alert, Some(Refusal::GoodStanding))
    );
    assert!(d.exceptions.is_empty() && !d.blocks_in_kernel());
    // Exactly as many as it spares: blocked, every one an exception.
    let d = p
        .on_finding(&campaign_prefix(
            T0,
            "2001:db8:6::/64",
            &many[..MAX_EXCEPTIONS]
                .iter()
                .map(|s| s.replace(":5::", ":6::"))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        ))
        .expect("a decision");
    assert!(d.blocks_in_kernel());
    assert_eq!(d.exceptions.len(), MAX_EXCEPTIONS);
    // Without sources in good standing, a plain prefix block with no exceptions.
    let d = p
        .on_finding(&campaign_prefix(T0, "203.0.113.0/24", &[]))
        .expect("a decision");
    assert!(d.blocks_in_kernel() && d.exceptions.is_empty());
    assert!(!d.notes.iter().any(|n| n.contains("spared")));
}

#[test]
fn the_other_safety_rules_still_hold_for_a_campaign_prefix() {
    let cfg = PolicyConfig {
        allowlist: vec![net("198.51.100.64/28")],
        ..PolicyConfig::default()
    };
    let mut p = Policy::new(cfg, vec![net("203.0.113.1/32")]);
    let d = p
        .on_finding(&campaign_prefix(T0, "198.51.100.0/24", &["198.51.100.7"]))
        .expect("a decision");
    assert_eq!(d.refused, Some(Refusal::Allowlisted));
    let d = p
        .on_finding(&campaign_prefix(T0, "203.0.113.0/24", &["203.0.113.7"]))
        .expect("a decision");
    assert_eq!(d.refused, Some(Refusal::TrustedProxy));
    let mut shared = campaign_prefix(T0, "2001:db8:7::/64", &["2001:db8:7::1"]);
    shared.standing = Some(Standing {
        verified: true,
        success_share: 0.97,
        good_sessions: 250.0,
        ..Standing::default()
    });
    let d = p.on_finding(&shared).expect("a decision");
    assert_eq!(d.refused, Some(Refusal::SharedAddress));
    assert!(d.exceptions.is_empty());
    // A dry run reports the exceptions it would write, and writes nothing.
    let mut p = Policy::new(
        PolicyConfig {
            dry_run: true,
            ..PolicyConfig::default()
        },
        Vec::new(),
    );
    let d = p
        .on_finding(&campaign_prefix(T0, "2001:db8:8::/64", &["2001:db8:8::1"]))
        .expect("a decision");
    assert_eq!(d.refused, Some(Refusal::DryRun));
    assert!(!d.blocks_in_kernel());
    assert_eq!(d.exceptions, [net("2001:db8:8::1/128")]);
}

/// A finding about `who`, shared with users in good standing, that marks `shape`.
fn marked(at: u64, who: &str, shape: u64) -> Finding {
    let mut f = finding(at, Detector::MarkedClient, who);
    f.marks = vec![Mark {
        shape,
        failed: 8.0,
        ok: 0.0,
    }];
    f
}

fn flow(client: &str) -> Flow {
    Flow {
        client: client.parse().expect("client"),
        server: "198.51.100.1:80".parse().expect("server"),
    }
}

#[test]
fn a_shared_address_is_blocked_by_connection_for_its_marked_requests_only() {
    let mut p = Policy::new(PolicyConfig::default(), Vec::new());
    let nat: IpAddr = "203.0.113.9".parse().expect("ip");
    assert!(!p.watches_requests());
    let d = p
        .on_finding(&marked(T0, "203.0.113.9", 0xabc))
        .expect("decision");
    assert_eq!(
        (d.action, d.enforcement),
        (Action::Block, Enforcement::Connection)
    );
    assert_eq!(d.target, Some(net("203.0.113.9/32")));
    assert!(d.flows.is_empty() && d.blocks_in_kernel() && d.marks.len() == 1);
    assert!(p.watches_requests());
    let name = || "apr1_test".to_owned();
    // Another client shape at the address: served.
    assert!(
        p.on_request(nat, 0xdef, flow("203.0.113.9:40001"), T0 + NS, name)
            .is_none()
    );
    // The marked shape: its connection is blocked, under the address's decision, for what is
    // left of its TTL; the same connection once.
    let c = p
        .on_request(nat, 0xabc, flow("203.0.113.9:40002"), T0 + 100 * NS, name)
        .expect("connection block");
    assert_eq!(c.id, d.id);
    assert_eq!(c.flows, [flow("203.0.113.9:40002")]);
    assert_eq!(c.ttl_s, d.ttl_s - 100);
    assert!(c.notes[0].contains("apr1_test"), "{c:?}");
    assert!(
        p.on_request(nat, 0xabc, flow("203.0.113.9:40002"), T0 + 101 * NS, name)
            .is_none()
    );
    // Another address with the same shape: not marked there.
    assert!(
        p.on_request(
            "203.0.113.10".parse().expect("ip"),
            0xabc,
            flow("203.0.113.10:40003"),
            T0 + 102 * NS,
            name
        )
        .is_none()
    );
    // A later finding without marks (its users' logins decayed away) keeps the address
    // blocked by connection, never as a whole.
    let later = finding(T0 + 400 * NS, Detector::BruteForce, "203.0.113.9");
    if let Some(r) = p.on_finding(&later) {
        assert_eq!(r.enforcement, Enforcement::Connection, "{r:?}");
        assert!(r.renewal);
    }
    assert_eq!(p.counters().connections, 1);
    // When the block lapses, nothing is matched any more.
    let end = T0 + 2 * d.ttl_s * NS;
    p.expire(end);
    assert!(!p.watches_requests());
    assert!(
        p.on_request(nat, 0xabc, flow("203.0.113.9:40004"), end, name)
            .is_none()
    );
}

#[test]
fn marks_are_ignored_for_clients_behind_proxies_and_in_dry_runs() {
    let mut p = Policy::new(PolicyConfig::default(), Vec::new());
    let mut f = marked(T0, "198.51.100.77", 0xabc);
    f.standing = Some(Standing {
        verified: true,
        proxy: Some(ProxyVia::Forwarded),
        ..Standing::default()
    });
    let d = p.on_finding(&f).expect("decision");
    assert_eq!(d.enforcement, Enforcement::Upstream, "{d:?}");
    let mut dry = Policy::new(
        PolicyConfig {
            dry_run: true,
            ..PolicyConfig::default()
        },
        Vec::new(),
    );
    let d = dry
        .on_finding(&marked(T0, "203.0.113.9", 0xabc))
        .expect("decision");
    assert_eq!(
        (d.enforcement, d.refused),
        (Enforcement::None, Some(Refusal::DryRun))
    );
    assert!(!d.blocks_in_kernel() && !dry.watches_requests());
}
