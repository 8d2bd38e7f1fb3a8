//! The closed loop end to end, in a two-namespace lab: the real agent with its default
//! detectors attached to the server's veth, nginx behind it (its `/login` answers 401 unless
//! the test header says otherwise), curl in front. A brute-force client opening a new
//! connection per attempt is blocked in the kernel while a benign client on a neighbouring
//! address of the same /24 keeps being served; the agent killed with -9 leaves its block to
//! lapse at its TTL by the kernel's clock.
use std::{
    net::IpAddr,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use apisensor_tests::{
    agent::{self, AgentFiles, PinDir, json_lines},
    apisensor_bin,
    lab::Lab,
};

/// The TTL of the agent's blocks in this test: short, so the lapse is seen.
const BLOCK_TTL_S: u64 = 10;
/// Attempts the attacker makes at most.
const ATTEMPTS: u32 = 60;
/// Its pace: one attempt per 50 ms (20 per second).
const PACE: Duration = Duration::from_millis(50);

/// `GET /` from `src`: the status, or None if it got no answer.
fn get(lab: &Lab, src: IpAddr, server: IpAddr, timeout: Duration) -> Option<u16> {
    lab.status(src, &format!("http://{server}:80/"), &[], timeout)
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario, read top to bottom as trigger-then-expect steps"
)]
fn brute_force_is_blocked_in_the_kernel_and_lapses_after_kill_9() {
    let mut lab = Lab::new("detect");
    lab.start_nginx(80);
    let pin = PinDir::new("detect");
    let config_text = format!("[policy]\nblock_ttl_s = {BLOCK_TTL_S}\n");
    let files = AgentFiles::in_lab(&lab, 1, &config_text);
    let agent = agent::start(&mut lab, &pin, &files, &[]);
    let (config, state) = (files.config.clone(), files.state.clone());
    let (stdout, events_file) = (files.stdout.clone(), files.events.clone());
    let (ns, iface) = (lab.server_ns().to_owned(), lab.server_if().to_owned());
    let bin = apisensor_bin();
    // tcpdump records what reaches the stack (XDP's drops never do), to replay it below
    // through the same pipeline with the same configuration and state directory.
    let capture = lab.tmp_dir().join("attack.pcap");
    let tcpdump = lab.spawn(
        &ns,
        "tcpdump",
        &[
            "-i",
            &iface,
            "-n",
            "-U",
            "--immediate-mode",
            "-w",
            capture.to_str().expect("utf-8"),
            "tcp port 80",
        ],
        None,
    );
    lab.wait_for_stderr(tcpdump, "listening on", Duration::from_secs(10));
    let server = IpAddr::V4(lab.server_v4());
    let attacker = IpAddr::V4(lab.client_v4());
    let neighbour = IpAddr::V4(lab.client_v4_alt());

    // The neighbour logs in (and once mistypes) before the attack: a benign history.
    assert_eq!(
        lab.login(neighbour, server, "carol", false, Duration::from_secs(3)),
        Some(401)
    );
    assert_eq!(
        lab.login(neighbour, server, "carol", true, Duration::from_secs(3)),
        Some(200)
    );

    // The attacker: 20 attempts a second, a new connection each, until one gets no answer.
    let start = Instant::now();
    let mut answered = 0;
    let mut refused_after = None;
    for i in 0..ATTEMPTS {
        let due = start + PACE * i;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let Some(status) = lab.login(attacker, server, "admin", false, Duration::from_millis(400))
        else {
            refused_after = Some(start.elapsed());
            break;
        };
        assert_eq!(status, 401, "attempt {i}");
        answered += 1;
    }
    // The block was made before the first refused attempt started.
    let blocked_at = Instant::now();
    let refused_after = refused_after.unwrap_or_else(|| {
        panic!(
            "{ATTEMPTS} attempts, none refused; agent: {}",
            lab.stderr_of(agent)
        )
    });
    eprintln!("attacker refused after {refused_after:?}, {answered} attempts answered");
    assert!(
        answered <= 10,
        "{answered} attempts answered before the block"
    );
    // The neighbour on the same /24 is still served, and can still log in.
    assert_eq!(
        get(&lab, neighbour, server, Duration::from_secs(3)),
        Some(200)
    );
    assert_eq!(
        lab.login(neighbour, server, "carol", true, Duration::from_secs(3)),
        Some(200)
    );
    assert_eq!(
        get(&lab, attacker, server, Duration::from_millis(500)),
        None,
        "still dropped"
    );

    // The decision is an event line (stdout and the event file) with its evidence, and the
    // kernel's block carries the decision's id.
    let deadline = Instant::now() + Duration::from_secs(3);
    let decision = loop {
        if let Some(d) = json_lines(&events_file).into_iter().find(|e| {
            e["type"] == "decision" && e["action"] == "block" && e["target"] == "198.51.100.2/32"
        }) {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "no block decision in {:?}",
            json_lines(&events_file)
        );
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(decision["enforcement"], "kernel", "{decision}");
    assert_eq!(decision["ttl_s"], BLOCK_TTL_S, "{decision}");
    let finding = &decision["findings"][0];
    assert_eq!(finding["detector"], "brute_force", "{decision}");
    assert!(finding["samples"][0]["path"] == "/login", "{decision}");
    let text = std::fs::read_to_string(&events_file).expect("events");
    assert!(!text.contains("guess"), "a password reached the event file");
    assert!(
        json_lines(&stdout).iter().any(|e| e["type"] == "decision"),
        "decision not on stdout"
    );
    assert!(
        json_lines(&events_file)
            .iter()
            .filter(|e| e["type"] == "decision" && e["action"] == "block")
            .all(|e| e["target"] == "198.51.100.2/32"),
        "only the attacker is blocked: {text}"
    );
    // The same capture and configuration give the same findings and block decisions in
    // replay as live (the replay reads the agent's state directory: same hash key).
    thread::sleep(Duration::from_millis(500));
    let stopped = lab.interrupt(tcpdump);
    assert!(
        stopped.success() || stopped.code().is_none(),
        "tcpdump: {stopped}"
    );
    let replay = Command::new(&bin)
        .args(["replay", "--findings", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(&state)
        .arg(&capture)
        .output()
        .expect("apisensor replay");
    assert!(
        replay.status.success(),
        "replay: {}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let summary = |lines: &[serde_json::Value]| {
        let mut s: Vec<String> = lines
            .iter()
            .filter_map(|e| match e["type"].as_str() {
                Some("finding") => Some(format!("finding {} {}", e["detector"], e["entity"])),
                Some("decision") => Some(format!(
                    "decision {} {} {} {}",
                    e["action"], e["enforcement"], e["target"], e["reason"]
                )),
                _ => None,
            })
            .collect();
        s.sort();
        s.dedup();
        s
    };
    let replayed: Vec<serde_json::Value> = String::from_utf8_lossy(&replay.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let live = summary(&json_lines(&events_file));
    assert!(!live.is_empty());
    assert_eq!(
        summary(&replayed),
        live,
        "replay --findings differs from the live agent"
    );

    let listed = Command::new(&bin)
        .args(["blocks", "list", "--json", "--pin-dir", pin.as_str()])
        .output()
        .expect("blocks list");
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    let block = listed
        .as_array()
        .and_then(|b| b.iter().find(|b| b["net"] == "198.51.100.2/32"))
        .unwrap_or_else(|| panic!("no block listed: {listed}"));
    assert_eq!(
        block["verdict_id"].as_u64(),
        decision["id"].as_u64().map(|id| id | 1),
        "{block} vs {decision}"
    );

    // Killed with -9 mid-attack: nothing is cleaned up. The programs go with the process (their
    // links close), the block stays pinned; a new agent enforces it again at once, does not
    // renew what it did not decide, and the block lapses at its TTL by the kernel's clock.
    // SAFETY: kill(2) on the agent's PID, which this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(agent.cast_signed(), libc::SIGKILL) }, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab.is_running(agent) {
        assert!(Instant::now() < deadline, "agent survived SIGKILL");
        thread::sleep(Duration::from_millis(20));
    }
    let files2 = AgentFiles::in_lab(&lab, 2, &config_text);
    let agent2 = agent::start(&mut lab, &pin, &files2, &[]);
    let blocked_for = blocked_at.elapsed();
    assert!(
        blocked_for < Duration::from_secs(BLOCK_TTL_S - 2),
        "restart took too long to check the block ({blocked_for:?})"
    );
    assert_eq!(
        get(&lab, attacker, server, Duration::from_millis(500)),
        None,
        "block lost across kill -9 and restart"
    );
    let deadline = blocked_at + Duration::from_secs(BLOCK_TTL_S + 10);
    loop {
        if get(&lab, attacker, server, Duration::from_millis(500)) == Some(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the block did not lapse at its TTL after the agent was killed"
        );
        thread::sleep(Duration::from_millis(250));
    }
    let lapsed_after = blocked_at.elapsed();
    eprintln!("block lapsed {lapsed_after:?} after it was made");
    assert!(
        lapsed_after + Duration::from_millis(1500) >= Duration::from_secs(BLOCK_TTL_S),
        "lapsed before its TTL: {lapsed_after:?}"
    );
    assert_eq!(
        get(&lab, neighbour, server, Duration::from_secs(3)),
        Some(200)
    );
    let status = lab.stop(agent2);
    assert!(status.success(), "agent did not exit cleanly: {status:?}");
}
