//! A credential stuffer behind an address it shares with six users, as behind an office's NAT
//! (`apisensor_tests::nat`), in front of the sample API whose login answers in about 50 ms: the
//! agent blocks the stuffer by connection, so its attempts after the decision get no answer,
//! and every user request is served; the address itself is never blocked.
use apisensor_tests::nat;

#[test]
fn a_stuffer_behind_a_shared_address_gets_no_answer_and_its_users_are_served() {
    let r = nat::run("nat");
    eprintln!("{r:?}");
    assert_eq!(r.enforcement, "connection", "{r:?}");
    assert!(!r.address_blocked, "{r:?}");
    assert!(r.attempts_after > 0, "{r:?}");
    assert_eq!(
        r.answered_after, 0,
        "attempts answered after the decision: {r:?}"
    );
    assert!(r.connections_blocked >= r.attempts_after, "{r:?}");
    assert!(r.tc_drops > 0, "no response dropped at egress: {r:?}");
    assert_eq!(r.users_served, r.user_requests, "users refused: {r:?}");
}
