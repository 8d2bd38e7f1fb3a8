//! The control socket and the investigation commands against a running agent in the
//! two-namespace lab: a user logs in, a brute forcer is blocked; then each command, in its
//! human and JSON forms, is checked for what the investigator needs (the brute forcer's row
//! and decision, its findings and block TTL, the pivot from its account to it, the live
//! decision on `events --follow`, `/login` in the inventory, curl's fingerprint, the status);
//! a client that is not root is refused, by the socket's mode and by the server's credential
//! check; `top --live` is driven in tmux; and once the agent is stopped, the commands that
//! need it say so.
use std::{
    net::IpAddr,
    path::Path,
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use apisensor_tests::{
    agent::{self, AgentFiles, PinDir},
    apisensor_bin,
    lab::Lab,
};

/// Attempts the attacker makes at most.
const ATTEMPTS: u32 = 60;
/// Its pace.
const PACE: Duration = Duration::from_millis(50);

/// Runs the CLI with `--json` and parses its output.
fn json(pin: &PinDir, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let text = pin.cli_ok(&all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("apisensor {all:?}: {e}: {text}"))
}

/// A child process killed (by PID) and reaped when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tmux session killed when dropped.
struct Tmux(String);

/// Runs tmux with `args`.
fn tmux(args: &[&str]) -> Output {
    Command::new("tmux").args(args).output().expect("run tmux")
}

impl Tmux {
    fn screen(&self) -> String {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &self.0]).stdout).into_owned()
    }

    fn alive(&self) -> bool {
        tmux(&["has-session", "-t", &self.0]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = tmux(&["kill-session", "-t", &self.0]);
    }
}

/// Waits (bounded) until `done` holds.
fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario, read top to bottom as trigger-then-expect steps"
)]
fn investigation_commands_answer_from_the_running_agent() {
    assert!(
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success()),
        "tmux is missing: `cargo xtask setup` installs it"
    );
    let mut lab = Lab::new("control");
    lab.start_nginx(80);
    let pin = PinDir::new("control");
    let files = AgentFiles::in_lab(&lab, 1, "[policy]\nblock_ttl_s = 120\n");
    let agent = agent::start(&mut lab, &pin, &files, &[]);
    let socket = sensor_user::control::socket_path(pin.path());
    let server = IpAddr::V4(lab.server_v4());
    let attacker = IpAddr::V4(lab.client_v4());
    let user = IpAddr::V4(lab.client_v4_alt());
    wait_for("the control socket", Duration::from_secs(5), || {
        socket.exists()
    });

    // A follower, before anything happens: it must receive the live block decision.
    let follower = Command::new(apisensor_bin())
        .args([
            "events", "--follow", "--limit", "0", "--count", "50", "--json",
        ])
        .args(["--pin-dir", pin.as_str()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start events --follow");
    let mut follower = Reaped(follower);

    // A user who mistypes once, then logs in; then the brute forcer until refused.
    assert_eq!(
        lab.login(user, server, "carol", false, Duration::from_millis(500)),
        Some(401)
    );
    assert_eq!(
        lab.login(user, server, "carol", true, Duration::from_millis(500)),
        Some(200)
    );
    let start = Instant::now();
    let mut refused = false;
    for i in 0..ATTEMPTS {
        if let Some(wait) = (start + PACE * i).checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        if lab
            .login(attacker, server, "admin", false, Duration::from_millis(500))
            .is_none()
        {
            refused = true;
            break;
        }
    }
    assert!(
        refused,
        "the brute forcer was never refused: {}",
        lab.stderr_of(agent)
    );

    // events --follow: the live decision arrives within a bounded time (the follower stops
    // by itself after 50 events; it is read once the agent has made its decisions).
    thread::sleep(Duration::from_secs(2));
    let _ = follower.0.kill();
    let stream = follower.0.wait_with_output_ref();
    let received: Vec<serde_json::Value> = stream
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        received.iter().any(|e| e["type"] == "decision"
            && e["action"] == "block"
            && e["entity"]["id"] == attacker.to_string()),
        "no live block decision for {attacker}: {stream}"
    );

    // status
    let text = pin.cli_ok(&["status"]);
    let version = env!("CARGO_PKG_VERSION");
    for want in ["version", version, "uptime", "brute_force", "ring losses"] {
        assert!(text.contains(want), "status lacks {want:?}:\n{text}");
    }
    let status = json(&pin, &["status"]);
    assert_eq!(status["agent"]["version"], version, "{status}");
    assert!(status["agent"]["uptime_s"].as_u64().is_some(), "{status}");
    assert!(
        status["agent"]["active_blocks"].as_u64() >= Some(1),
        "{status}"
    );
    assert_eq!(status["agent"]["iface"], lab.server_if(), "{status}");
    assert_eq!(status["kernel"]["ring_losses"], 0, "{status}");

    // sources: the brute forcer's row with its decision, above the user's.
    let text = pin.cli_ok(&["sources"]);
    let line = text
        .lines()
        .find(|l| l.starts_with(&attacker.to_string()))
        .unwrap_or_else(|| panic!("no row for {attacker}:\n{text}"));
    assert!(
        line.contains("block") && line.contains("brute_force"),
        "{line}"
    );
    assert!(
        text.lines().next().is_some_and(|h| h.starts_with("SOURCE")),
        "{text}"
    );
    let rows = json(&pin, &["sources", "--sort", "score"]);
    let rows = rows.as_array().expect("array");
    assert_eq!(rows[0]["source"], attacker.to_string(), "{rows:?}");
    assert_eq!(rows[0]["decision"]["action"], "block", "{rows:?}");
    assert!(rows[0]["logins_failed"].as_f64() >= Some(4.0), "{rows:?}");
    assert!(rows[0]["first_seen_ns"].as_u64().is_some(), "{rows:?}");
    let user_row = rows
        .iter()
        .find(|r| r["source"] == user.to_string())
        .unwrap_or_else(|| panic!("no row for {user}: {rows:?}"));
    assert!(user_row["decision"].is_null(), "{user_row}");
    let recent = json(&pin, &["sources", "--since", "10m", "--limit", "1"]);
    assert_eq!(recent.as_array().map(Vec::len), Some(1), "{recent}");

    // sources show: kernel counters and block TTL beside findings and decisions.
    let text = pin.cli_ok(&["sources", "show", &attacker.to_string()]);
    let blocked = format!("block {attacker}/32");
    for want in [
        blocked.as_str(),
        "ttl left",
        "brute_force",
        "POST /login",
        "admin",
    ] {
        assert!(text.contains(want), "sources show lacks {want:?}:\n{text}");
    }
    let shown = json(&pin, &["sources", "show", &attacker.to_string()]);
    let ttl = shown["kernel"]["blocks"][0]["ttl_left_s"]
        .as_u64()
        .unwrap_or(0);
    assert!(ttl > 0 && ttl <= 120, "{shown}");
    assert!(shown["kernel"]["packets"].as_u64() > Some(0), "{shown}");
    assert!(
        shown["events"]
            .as_array()
            .is_some_and(|es| es.iter().any(|e| e["detector"] == "brute_force")),
        "{shown}"
    );
    assert_eq!(shown["detection"]["accounts"][0], "admin", "{shown}");
    let text = serde_json::to_string(&shown).expect("json");
    assert!(
        !text.contains("password") && !text.contains("guess"),
        "{text}"
    );

    // accounts show: from the account back to the address.
    let text = pin.cli_ok(&["accounts", "show", "admin"]);
    assert!(text.contains(&attacker.to_string()), "{text}");
    let account = json(&pin, &["accounts", "show", "admin"]);
    assert_eq!(
        account["sources"][0]["source"],
        attacker.to_string(),
        "{account}"
    );
    assert_eq!(account["sources"][0]["failed_here"], true, "{account}");
    // ... and from a user's account to the session its login opened.
    let carol = json(&pin, &["accounts", "show", "carol"]);
    assert_eq!(carol["logins"][0]["source"], user.to_string(), "{carol}");
    assert!(carol["logins"][0]["session"].is_string(), "{carol}");
    let text = pin.cli_ok(&["accounts", "show", "carol"]);
    assert!(text.contains("successful logins"), "{text}");
    let missing = pin.cli(&["accounts", "show", "nobody"]);
    assert!(!missing.status.success());

    // findings
    let text = pin.cli_ok(&["findings"]);
    assert!(
        text.contains("brute_force") && text.contains("block"),
        "{text}"
    );
    let lines = pin.cli_ok(&["findings", "--json"]);
    assert!(
        lines
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|e| e["type"] == "finding" && e["detector"] == "brute_force"),
        "{lines}"
    );

    // endpoints: /login with its failures.
    let text = pin.cli_ok(&["endpoints"]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("POST") && l.contains("/login")),
        "{text}"
    );
    let inventory = json(&pin, &["endpoints"]);
    let login_row = inventory["endpoints"]
        .as_array()
        .and_then(|es| es.iter().find(|e| e["route"] == "/login"))
        .unwrap_or_else(|| panic!("{inventory}"))
        .clone();
    assert!(login_row["client_error"].as_u64() >= Some(5), "{login_row}");

    // ttps: curl's fingerprint, used by both sources.
    let ttps = json(&pin, &["ttps"]);
    let top = &ttps["fingerprints"][0];
    let fingerprint = top["fingerprint"].as_str().unwrap_or_default().to_owned();
    assert!(
        fingerprint.starts_with("apr1_po") && fingerprint.contains("curl"),
        "{ttps}"
    );
    assert_eq!(top["sources"], 2.0, "{ttps}");
    assert_eq!(
        ttps["per_hour"].as_array().map(Vec::len),
        Some(24),
        "{ttps}"
    );
    let text = pin.cli_ok(&["ttps"]);
    assert!(
        text.contains(&fingerprint) && text.contains("per hour"),
        "{text}"
    );

    // A client that is not root: refused by the socket's mode, and by the server's check
    // of its credentials when the mode would let it in.
    let nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(apisensor_bin())
            .args(args)
            .args(["--pin-dir", pin.as_str()])
            .output()
            .expect("run setpriv")
    };
    let out = nobody(&["status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("root only"),
        "{stderr}"
    );
    set_mode(&socket, 0o666);
    let out = nobody(&["status"]);
    set_mode(&socket, 0o600);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("serves root only (client uid 65534)"),
        "{stderr}"
    );
    assert!(
        lab.stderr_of(agent)
            .contains("refused a client that is not root")
    );

    // top --live in a pseudo-terminal: the header and the brute forcer's row, then q.
    let session = Tmux(format!("apisensor-control-{}", std::process::id()));
    let command = format!(
        "{} top --live --pin-dir {}",
        apisensor_bin().display(),
        pin.as_str()
    );
    let started = tmux(&[
        "new-session",
        "-d",
        "-x",
        "160",
        "-y",
        "40",
        "-s",
        &session.0,
        &command,
    ]);
    assert!(started.status.success(), "{started:?}");
    let mut screen = String::new();
    wait_for("the live view", Duration::from_secs(10), || {
        screen = session.screen();
        screen.contains("apisensor top") && screen.contains(&attacker.to_string())
    });
    let row = screen
        .lines()
        .find(|l| l.contains(&attacker.to_string()))
        .unwrap_or_default();
    eprintln!("top --live:\n{screen}");
    assert!(row.contains("block"), "{screen}");
    assert!(screen.contains("agent "), "{screen}");
    tmux(&["send-keys", "-t", &session.0, "q"]);
    wait_for("the live view to quit on q", Duration::from_secs(5), || {
        !session.alive()
    });

    // Without the agent: the commands that need it say so; the map-based ones still work.
    let stopped = lab.stop(agent);
    assert!(stopped.success(), "{stopped:?}");
    assert!(!socket.exists(), "the socket outlived the agent");
    let out = pin.cli(&["sources"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("the agent is not running (no control socket at"),
        "{stderr}"
    );
    assert!(pin.cli_ok(&["top"]).contains(&attacker.to_string()));
    let session = Tmux(format!("apisensor-control-off-{}", std::process::id()));
    tmux(&[
        "new-session",
        "-d",
        "-x",
        "160",
        "-y",
        "40",
        "-s",
        &session.0,
        &command,
    ]);
    wait_for("the kernel-only live view", Duration::from_secs(10), || {
        let s = session.screen();
        s.contains("kernel data only") && s.contains(&attacker.to_string())
    });
    tmux(&["send-keys", "-t", &session.0, "q"]);
    wait_for("the live view to quit on q", Duration::from_secs(5), || {
        !session.alive()
    });
}

/// Sets the mode of `path`.
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Reading a killed child's standard output.
trait OutputOf {
    fn wait_with_output_ref(&mut self) -> String;
}

impl OutputOf for Child {
    fn wait_with_output_ref(&mut self) -> String {
        use std::io::Read as _;
        let _ = self.wait();
        let mut text = String::new();
        if let Some(out) = self.stdout.as_mut() {
            let _ = out.read_to_string(&mut text);
        }
        text
    }
}
