//! A credential-stuffing run rotating over 200 addresses, end to end (`apisensor_tests::rotation`):
//! 75 in each of two IPv4 /24s and 50 IPv6 addresses, each sending one to three failed logins
//! with one program, over 30 s, while five users in the same /24s log in and browse. The agent
//! finds the campaign early, blocks its members and escalates to the prefixes where they are,
//! sparing the users; later attempts are refused and no user is.
use apisensor_tests::rotation;

#[test]
fn a_rotating_stuffing_run_is_found_refused_and_no_user_is() {
    let r = rotation::run("rotation");
    eprintln!("{r:?}");
    assert!(
        r.sources_before < 20,
        "{} sources before the decision",
        r.sources_before
    );
    assert!(r.decided_after_s < 60.0, "{r:?}");
    assert!(
        r.answered_after * 10 < r.attempts_after,
        "{} of {} answered after the decision",
        r.answered_after,
        r.attempts_after
    );
    assert_eq!(r.users_refused, 0, "users refused: {r:?}");
}
