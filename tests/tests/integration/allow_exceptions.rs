//! Allowlist exceptions, the policy's way to block a campaign's prefix while sparing its
//! sources in good standing: `verdict.rs` writes them (before the block, with its TTL and the
//! decision's id), `apisensor allow list` shows their TTL left and origin beside the operator's
//! permanent entries, a host block withdraws the host's exception, a renewal extends them and
//! the agent's purge deletes the lapsed ones. (That the kernel honours an exception until it
//! lapses, and an operator's entry for ever, is in `xdp_fixtures.rs`.)
//!
//! Runs as root (bpffs, map creation). Nothing is attached and no traffic is sent; the pin
//! directory is private to the test and removed by a guard, also on failure.
use std::time::Duration;

use apisensor_tests::agent::PinDir;
use ipnet::IpNet;
use sensor_common::capacity;
use sensor_user::{
    clock,
    decide::{Action, Decision, Enforcement},
    detect::Entity,
    loader::{self, LoadOptions},
    verdict::{ExceptionWrite, Verdicts},
};

const S: u64 = 1_000_000_000;
const TTL_S: u64 = 600;
const MINUTE: Duration = Duration::from_mins(1);
/// The id of the prefix block decision the tests apply.
const ID: u64 = 0x0123_4567_89ab_cdef;

fn net(s: &str) -> IpNet {
    s.parse().expect("net")
}

/// A kernel block decision of the policy's shape.
fn block(id: u64, target: &str, exceptions: &[&str], renewal: bool) -> Decision {
    let target = net(target);
    Decision {
        id,
        at_ns: 0,
        action: Action::Block,
        enforcement: Enforcement::Kernel,
        entity: if target.prefix_len() == target.max_prefix_len() {
            Entity::Source(target.addr())
        } else {
            Entity::Prefix(target)
        },
        target: Some(target),
        flows: Vec::new(),
        marks: Vec::new(),
        exceptions: exceptions.iter().map(|e| net(e)).collect(),
        ttl_s: TTL_S,
        renewal,
        offence: 1,
        reason: "apisensor: campaign_prefix".to_owned(),
        refused: None,
        notes: Vec::new(),
        findings: Vec::new(),
        score: 1.0,
    }
}

/// `allow list --json` as (net, hits, verdict id, ttl left).
fn listed(pin: &PinDir) -> Vec<(String, Option<u64>, Option<u64>)> {
    let json: serde_json::Value =
        serde_json::from_str(&pin.cli_ok(&["allow", "list", "--json"])).expect("json");
    json.as_array()
        .expect("an array")
        .iter()
        .map(|e| {
            (
                e["net"].as_str().expect("net").to_owned(),
                e["verdict_id"].as_u64(),
                e["ttl_left_s"].as_u64(),
            )
        })
        .collect()
}

/// `allow list --json`'s networks.
fn nets(pin: &PinDir) -> Vec<String> {
    listed(pin).into_iter().map(|e| e.0).collect()
}

/// Pins the maps in a private pin directory (loaded once, nothing attached) and opens them;
/// adds the operator's entry 198.51.100.64/28 and applies the block of 198.51.100.0/24 sparing
/// .7, .8 and .70 (inside the operator's entry).
fn setup(tag: &str) -> (PinDir, Verdicts, u64) {
    let pin = PinDir::new(tag);
    {
        let _lock = loader::lock_pin_dir(pin.path()).expect("agent lock");
        drop(
            loader::load(&LoadOptions {
                pin_dir: Some(pin.path().to_path_buf()),
                max_sources: capacity::SOURCES,
            })
            .unwrap_or_else(|e| panic!("loading with pins: {e}")),
        );
    }
    let mut v = Verdicts::open_pinned(pin.path()).expect("pinned maps");
    let now = clock::boot_ns();
    // The operator's entry, permanent.
    pin.cli_ok(&["allow", "add", "198.51.100.64/28"]);
    let d = block(
        ID,
        "198.51.100.0/24",
        &["198.51.100.7/32", "198.51.100.8/32", "198.51.100.70/32"],
        false,
    );
    assert!(v.apply(&d, now).expect("applying"));
    (pin, v, now)
}

#[test]
fn exceptions_are_written_with_their_block_and_listed() {
    let (pin, mut v, now) = setup("exceptions-list");
    let id = ID;
    // Written with the block's TTL and the decision's (odd) id, except inside the operator's
    // entry, which already spares .70 (and for ever).
    let origin = Some(id | 1);
    let l = listed(&pin);
    assert_eq!(
        l.iter().map(|e| (e.0.as_str(), e.1)).collect::<Vec<_>>(),
        [
            ("198.51.100.7/32", origin),
            ("198.51.100.8/32", origin),
            ("198.51.100.64/28", None),
        ],
        "{l:?}"
    );
    for (n, origin, ttl) in &l {
        match (origin, ttl) {
            (Some(_), Some(ttl)) => assert!((TTL_S - 5..=TTL_S).contains(ttl), "{n}: {ttl}"),
            (None, None) => {}
            _ => panic!("{n}: origin {origin:?} and TTL {ttl:?} go together"),
        }
    }
    let table = pin.cli_ok(&["allow", "list"]);
    assert!(
        table.lines().any(|l| l.starts_with("198.51.100.7/32")
            && l.contains(&format!("{:016x}", id | 1))
            && l.contains('s'))
            && table
                .lines()
                .any(|l| l.starts_with("198.51.100.64/28") && l.contains("permanent")),
        "{table}"
    );
    assert!(
        pin.cli_ok(&["blocks", "list"]).contains("198.51.100.0/24"),
        "the block is written"
    );
    assert_eq!(
        v.published_in_use().expect("in use").allow,
        1,
        "XDP looks the allowlist up"
    );

    // An exception never shortens a longer one nor replaces the operator's entry.
    assert_eq!(
        v.allow_exception(net("198.51.100.7/32"), Duration::from_secs(5), 0x99, now)
            .expect("write"),
        ExceptionWrite::Covered
    );
    assert_eq!(
        v.allow_exception(net("198.51.100.66/32"), Duration::from_secs(5), 0x99, now)
            .expect("write"),
        ExceptionWrite::Covered
    );
}

#[test]
fn exceptions_are_withdrawn_renewed_replaced_and_purged() {
    let (pin, mut v, now) = setup("exceptions-life");
    let (id, origin) = (ID, Some(ID | 1));
    // A spared source that turns bad is blocked on its own: its exception goes with it.
    assert!(
        v.apply(&block(0x31, "198.51.100.8/32", &[], false), now)
            .expect("applying")
    );
    assert_eq!(nets(&pin), ["198.51.100.7/32", "198.51.100.64/28"]);
    // Nor is one written for it while its own block lasts (it would lift that block too).
    assert_eq!(
        v.allow_exception(net("198.51.100.8/32"), MINUTE, 0x99, now)
            .expect("write"),
        ExceptionWrite::Blocked
    );
    let six = "2001:db8:9::8/128";
    assert!(
        v.apply(&block(0x33, six, &[], false), now)
            .expect("applying")
    );
    assert_eq!(
        v.allow_exception(net(six), MINUTE, 0x99, now)
            .expect("write"),
        ExceptionWrite::Blocked
    );

    // The operator's block of an address withdraws its exception the same way.
    assert_eq!(
        v.allow_exception(net("198.51.100.9/32"), MINUTE, 0x99, now)
            .expect("write"),
        ExceptionWrite::Written
    );
    pin.cli_ok(&[
        "blocks",
        "add",
        "198.51.100.9",
        "--ttl",
        "1m",
        "--reason",
        "by hand",
    ]);
    assert_eq!(nets(&pin), ["198.51.100.7/32", "198.51.100.64/28"]);
    pin.cli_ok(&["blocks", "rm", "198.51.100.9"]);

    // A renewal of the prefix block renews its exceptions (the same id, TTL from the renewal).
    let later = now + 300 * S;
    let renewal = block(id, "198.51.100.0/24", &["198.51.100.7/32"], true);
    assert!(v.apply(&renewal, later).expect("renewing"));
    let seven = v
        .allows(now)
        .expect("listing")
        .into_iter()
        .find(|e| e.net == net("198.51.100.7/32"))
        .expect("still there");
    assert_eq!(seven.verdict_id, origin);
    assert_eq!(seven.ttl_left_s, Some(300 + TTL_S));

    // An operator's entry added over an exception replaces it: a lapsed exception, the
    // longest match, would otherwise hide the operator's entry from its address.
    assert_eq!(
        v.allow_exception(net("203.0.113.5/32"), MINUTE, 0x99, now)
            .expect("write"),
        ExceptionWrite::Written
    );
    pin.cli_ok(&["allow", "add", "203.0.113.0/24"]);
    assert_eq!(
        nets(&pin),
        ["198.51.100.7/32", "198.51.100.64/28", "203.0.113.0/24"]
    );
    pin.cli_ok(&["allow", "rm", "203.0.113.0/24"]);

    // The purge deletes lapsed exceptions (and blocks); the operator's entry stays.
    assert_eq!(
        v.purge_expired(later + 200 * S).expect("purge"),
        0,
        "nothing lapsed yet"
    );
    let removed = v.purge_expired(later + (TTL_S + 1) * S).expect("purge");
    assert_eq!(
        removed, 4,
        "the /24 block, .8's and the IPv6 host's blocks and .7's exception"
    );
    assert_eq!(listed(&pin), [("198.51.100.64/28".to_owned(), None, None)]);
    assert!(v.blocks(now).expect("blocks").is_empty());
    pin.cli_ok(&["allow", "rm", "198.51.100.64/28"]);
    assert_eq!(v.refresh_in_use().expect("refresh").allow, 0);
}
