//! The shared-address benchmark: the NAT run (`apisensor_tests::nat`: six users and a
//! credential stuffer behind one address, the sample API's login answering in about 50 ms)
//! against the real agent with its default configuration, in the namespace lab. Prints a
//! markdown section for `docs/BENCHMARKS.md`.
//!
//! ```text
//! cargo run --release -p apisensor-tests --bin nat_bench
//! ```
use std::fmt::Write as _;

use apisensor_tests::nat;

/// The command that reproduces the section.
const COMMAND: &str = "cargo run --release -p apisensor-tests --bin nat_bench";

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

fn main() {
    let r = nat::run("natbench");
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## NAT run: a stuffer sharing an address with its users\n"
    );
    let _ = writeln!(
        md,
        "Reproduce: `{COMMAND}` (as root). The release `apisensor run` with its default \
         configuration on the lab's server veth, the sample API behind it on port 80 with its \
         login answering after 50 ms. One client address carries six users (curl with a \
         browser's header set and a cookie jar each, a request every 0.5 to 1 s: items, \
         searches, notifications, a login every fourth) and, after 6 s, a stuffer (curl with \
         another program's header set, a failed login on a connection of its own every 200 ms \
         for 20 s). \"After\" is relative to the agent's decision on the address (its kernel \
         time, plus 50 ms for the attempt that made it). One run.\n"
    );
    let _ = writeln!(md, "| measure | value | target | result |");
    let _ = writeln!(md, "|---|---:|---|---|");
    let _ = writeln!(
        md,
        "| how the decision on the address is enforced | {} | per connection | {} |",
        r.enforcement,
        verdict(r.enforcement == "connection" && !r.address_blocked)
    );
    let _ = writeln!(
        md,
        "| attempts answered after the decision | {} of {} | none | {} |",
        r.answered_after,
        r.attempts_after,
        verdict(r.answered_after == 0 && r.attempts_after > 0)
    );
    let _ = writeln!(
        md,
        "| user requests served | {} of {} | all | {} |",
        r.users_served,
        r.user_requests,
        verdict(r.users_served == r.user_requests)
    );
    let _ = writeln!(
        md,
        "| seconds from the first attempt to the decision | {:.2} |  |  |",
        r.decided_after_s
    );
    let _ = writeln!(
        md,
        "| attempts before the decision (answered) | {} ({}) |  |  |",
        r.attempts_before, r.answered_before
    );
    let _ = writeln!(
        md,
        "| connections blocked (one decision each) | {} |  |  |",
        r.connections_blocked
    );
    let _ = writeln!(
        md,
        "| segments dropped on them: responses at TC egress, client segments in XDP | {}, {} |  |  |",
        r.tc_drops, r.xdp_drops
    );
    print!("{md}");
}
