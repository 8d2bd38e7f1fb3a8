//! The attack lab's short run (`cargo xtask lab --short`), as a test so a regression in the
//! closed loop fails the build: hydra's brute force and the distributed stuffing over 120
//! addresses must each end in a kernel block that refuses the attacker's later attempts, and
//! the benign actors must not be refused: none at all with hydra and with no attack.
//!
//! With the distributed stuffing, the campaign's prefix blocks (198.51.100.0/24,
//! 203.0.113.0/24) spare the sources in good standing there (successful logins, a mostly
//! successful history, a quiet reader's few successful requests): the people, the office, the
//! polling app and the slow crawler sharing 203.0.113.0/24 with 40 of the attackers must never
//! be refused.
use apisensor_tests::attack_lab::others::Other;
use apisensor_tests::attack_lab::scenario::{self, Measured, Pass, Scenario};

/// Checks an attack scenario was blocked and its later attempts refused.
fn expect_blocked(m: &Measured) {
    let name = m.scenario.name();
    assert!(
        m.block.is_some(),
        "{name}: no kernel block; findings {:?}",
        m.detectors
    );
    assert!(m.first_drop_s.is_some(), "{name}: the block never dropped");
}

#[test]
fn the_short_lab_blocks_both_attacks_and_refuses_no_benign_source() {
    let hydra = scenario::run(Scenario::Hydra, Pass::Enforce);
    eprintln!("{hydra:?}");
    expect_blocked(&hydra);
    assert_eq!(hydra.benign_refused, 0, "hydra: benign refused: {hydra:?}");

    let spread = scenario::run(Scenario::DistributedStuffing, Pass::Enforce);
    eprintln!("{spread:?}");
    expect_blocked(&spread);
    let (sent, refused) = spread
        .malicious_sent
        .expect("the lab's client sent the attempts");
    assert!(
        refused * 2 > sent,
        "most attempts are refused once the campaign is blocked: {refused} of {sent}"
    );
    assert_eq!(
        spread.benign_refused, 0,
        "distributed stuffing: benign refused: {:?}",
        spread.benign_sources_refused
    );

    let quiet = scenario::run(Scenario::BenignOnly, Pass::Enforce);
    eprintln!("{quiet:?}");
    assert!(quiet.block.is_none(), "a block with no attack: {quiet:?}");
    assert_eq!(quiet.benign_refused, 0, "benign only: refused: {quiet:?}");
}

/// The scorecard's comparison harness: `CrowdSec` and its bouncer start in the server
/// namespace, read nginx's log and ban hydra through the namespace's nftables, and the block
/// monitor sees the ban in the bouncer's set (its rule read back from `CrowdSec`'s alerts).
/// Hydra's failed logins overflow `CrowdSec`'s shipped 403 brute-force scenario; a regression
/// here is the harness's (or Debian's hub changed), not the agent's.
#[test]
fn crowdsec_enforces_in_the_comparison_harness() {
    let m = scenario::run(
        Scenario::Hydra,
        Pass::Compare(Other::CrowdSec { poll_s: 1 }),
    );
    eprintln!("{m:?}");
    let (_, rules) = m.block.as_ref().expect("CrowdSec banned hydra's address");
    assert!(
        rules.iter().any(|r| r.contains('/')),
        "the ban's CrowdSec scenario: {rules:?}"
    );
    // Unhindered, hydra's 300 passwords take two requests each.
    assert!(
        m.malicious_answered < 600,
        "the ban stopped hydra before its end: {m:?}"
    );
}
