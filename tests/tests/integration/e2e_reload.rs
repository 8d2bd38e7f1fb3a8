//! SIGHUP end to end: the agent reads its configuration file again without detaching or losing
//! state. A brute forcer under thresholds too lenient to block it is blocked on its next
//! failure once the file with the default thresholds is reloaded (the failures before the
//! reload still count); a broken file is refused in one line and the agent keeps running and
//! enforcing.
use std::{
    net::IpAddr,
    thread,
    time::{Duration, Instant},
};

use apisensor_tests::{
    agent::{self, AgentFiles, PinDir, json_lines},
    lab::Lab,
};

/// A failed login from `src` on a new connection: its status, `None` when unanswered.
fn fail_login(lab: &Lab, src: IpAddr, server: IpAddr) -> Option<u16> {
    lab.login(src, server, "admin", false, Duration::from_millis(800))
}

/// Sends SIGHUP to `pid` and waits (bounded) until its stderr shows `expect` once more than
/// it did.
fn hang_up(lab: &Lab, pid: u32, expect: &str) {
    let before = lab.stderr_of(pid).matches(expect).count();
    // SAFETY: kill has no memory preconditions; the PID is the agent this test started.
    let rc = unsafe { libc::kill(i32::try_from(pid).expect("pid"), libc::SIGHUP) };
    assert_eq!(rc, 0, "kill -HUP {pid}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab.stderr_of(pid).matches(expect).count() == before {
        assert!(
            Instant::now() < deadline,
            "no {expect:?} after SIGHUP: {}",
            lab.stderr_of(pid)
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_reload_applies_new_thresholds_keeps_state_and_refuses_a_broken_file() {
    let mut lab = Lab::new("reload");
    lab.start_nginx(80);
    let pin = PinDir::new("reload");
    let lenient = "[detect.brute_force]\nmin_failures = 1000.0\nslow_min_failures = 1000.0\n";
    let files = AgentFiles::in_lab(&lab, 1, lenient);
    let agent = agent::start(&mut lab, &pin, &files, &[]);
    let server = IpAddr::V4(lab.server_v4());
    let attacker = IpAddr::V4(lab.client_v4());

    // Eight failures, all answered: nothing blocks under these thresholds.
    for _ in 0..8 {
        assert_eq!(fail_login(&lab, attacker, server), Some(401));
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(300));
    let blocks = |events: &[serde_json::Value]| {
        events
            .iter()
            .filter(|e| e["type"] == "decision" && e["action"] == "block")
            .count()
    };
    assert_eq!(
        blocks(&json_lines(&files.events)),
        0,
        "blocked before the reload"
    );

    // The default thresholds: the ninth failure finds the eight before it.
    std::fs::write(&files.config, "").expect("writing the configuration");
    hang_up(&lab, agent, "configuration reloaded");
    thread::sleep(Duration::from_millis(200));
    assert_eq!(fail_login(&lab, attacker, server), Some(401), "the ninth");
    let deadline = Instant::now() + Duration::from_secs(5);
    while fail_login(&lab, attacker, server).is_some() {
        assert!(
            Instant::now() < deadline,
            "not blocked after the reload: {}",
            lab.stderr_of(agent)
        );
        thread::sleep(Duration::from_millis(50));
    }
    let events = json_lines(&files.events);
    assert!(blocks(&events) >= 1, "no block decision");

    // A broken file: refused in one line, the agent keeps running and the block holds.
    std::fs::write(&files.config, "[detect\n").expect("writing the configuration");
    hang_up(&lab, agent, "reload refused");
    let refusal = lab
        .stderr_of(agent)
        .lines()
        .rfind(|l| l.contains("reload refused"))
        .unwrap_or_default()
        .to_owned();
    assert!(refusal.contains("1:"), "names the place: {refusal}");
    assert!(lab.is_running(agent), "{}", lab.stderr_of(agent));
    assert_eq!(fail_login(&lab, attacker, server), None, "the block holds");
}
