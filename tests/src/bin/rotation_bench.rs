//! The rotation benchmark: the rotation run (`apisensor_tests::rotation`: 200 addresses in two
//! IPv4 /24s and IPv6, one to three failed logins each with one program over 30 s, five users
//! in the same /24s) against the real agent with its default configuration, in the namespace
//! lab. Prints a markdown section for `docs/BENCHMARKS.md`.
//!
//! ```text
//! cargo run --release -p apisensor-tests --bin rotation_bench
//! ```
use std::fmt::Write as _;

use apisensor_tests::rotation;

/// The command that reproduces the section.
const COMMAND: &str = "cargo run --release -p apisensor-tests --bin rotation_bench";

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

fn main() {
    let r = rotation::run("rotbench");
    let share = if r.attempts_after == 0 {
        0.0
    } else {
        let count = |n: usize| f64::from(u32::try_from(n).unwrap_or(u32::MAX));
        100.0 * count(r.answered_after) / count(r.attempts_after)
    };
    let mut md = String::new();
    let _ = writeln!(md, "## Rotation run: a campaign over 200 addresses\n");
    let _ = writeln!(
        md,
        "Reproduce: `{COMMAND}` (as root). The release `apisensor run` with its default \
         configuration on the lab's server veth, nginx behind it. 200 attacking addresses (75 in \
         198.51.100.0/24, 75 in 203.0.113.0/24, 50 IPv6 over four /64s of one /48) start 150 ms \
         apart, each sending one to three failed logins 700 ms apart on accounts of its own with \
         one program (curl with one user agent: one request fingerprint), about 30 s in all; \
         five users in the same /24s log in first and browse every second throughout. Times are \
         from the attack's start; \"before\" and \"after\" are relative to the campaign's first \
         block decision (its kernel time). One run.\n"
    );
    let _ = writeln!(md, "| measure | value | target | result |");
    let _ = writeln!(md, "|---|---:|---|---|");
    let _ = writeln!(
        md,
        "| distinct attacking sources before the campaign decision | {} | under 20 | {} |",
        r.sources_before,
        verdict(r.sources_before < 20)
    );
    let _ = writeln!(
        md,
        "| seconds to the campaign decision | {:.1} | within 60 | {} |",
        r.decided_after_s,
        verdict(r.decided_after_s < 60.0)
    );
    let _ = writeln!(
        md,
        "| attempts answered after the decision | {} of {} ({share:.1} %) | under 10 % | {} |",
        r.answered_after,
        r.attempts_after,
        verdict(share < 10.0)
    );
    let _ = writeln!(
        md,
        "| user requests refused | {} of {} | 0 | {} |",
        r.users_refused,
        r.user_requests,
        verdict(r.users_refused == 0)
    );
    let _ = writeln!(
        md,
        "| attempts answered in all | {} of {} |  |  |",
        r.answered, r.attempts
    );
    let prefixes: Vec<String> = r
        .prefixes
        .iter()
        .map(|(p, spared)| format!("{p} ({spared} spared)"))
        .collect();
    let _ = writeln!(
        md,
        "| prefixes blocked for the campaign | {} |  |  |",
        if prefixes.is_empty() {
            "none".to_owned()
        } else {
            prefixes.join(", ")
        }
    );
    print!("{md}");
}
