//! End to end, in a two-namespace lab: the real agent attached to the server's veth, nginx
//! behind it, curl in front of it. Written as "trigger, then expect": a request must show up as
//! ring-buffer events (request from XDP, response head from TC), a block must drop the client
//! at once while its second address is still served, unblocking must restore it, an allowlisted
//! client is never dropped, blocks survive an agent restart, and an expired block stops
//! dropping by the kernel's own clock while the agent was stopped. IPv4 and IPv6.
use std::{
    net::IpAddr,
    path::PathBuf,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use apisensor_tests::{agent::PinDir, apisensor_bin, lab::Lab};

fn counter(pin: &PinDir, name: &str) -> u64 {
    let json: serde_json::Value =
        serde_json::from_str(&pin.cli_ok(&["stats", "--json"])).expect("stats json");
    json[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {json}"))
}

/// The agent, running in the server namespace.
struct Agent {
    pid: u32,
    stdout: PathBuf,
    /// The API inventory file the agent keeps.
    catalogue: PathBuf,
}

fn start_agent(lab: &mut Lab, pin: &PinDir, n: u32, extra: &[&str]) -> Agent {
    let stdout = lab.tmp_dir().join(format!("agent{n}.out"));
    let catalogue = lab.tmp_dir().join(format!("catalogue{n}.json"));
    let catalogue_arg = catalogue.to_str().expect("utf-8").to_owned();
    // Each agent keeps its state in the lab, not in the machine's /var/lib/apisensor.
    let state_arg = lab
        .tmp_dir()
        .join("state")
        .to_str()
        .expect("utf-8")
        .to_owned();
    let bin = apisensor_bin();
    let iface = lab.server_if().to_owned();
    let ns = lab.server_ns().to_owned();
    let mut args = vec![
        "run",
        "--iface",
        &iface,
        "--pin-dir",
        pin.as_str(),
        "--log-events",
        "--log-transactions",
        "--catalogue",
        &catalogue_arg,
        "--state-dir",
        &state_arg,
    ];
    args.extend_from_slice(extra);
    let pid = lab.spawn(&ns, bin.to_str().expect("utf-8"), &args, Some(&stdout));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let err = lab.stderr_of(pid);
        if err.contains("ready") {
            return Agent {
                pid,
                stdout,
                catalogue,
            };
        }
        assert!(lab.is_running(pid), "agent exited at start: {err}");
        assert!(
            Instant::now() < deadline,
            "agent not ready within 20 s: {err}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (bounded) for an event line matching `pred` in the agent's stdout.
fn expect_event(
    agent: &Agent,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let text = std::fs::read_to_string(&agent.stdout).unwrap_or_default();
        if let Some(ev) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| pred(v))
        {
            return ev;
        }
        assert!(
            Instant::now() < deadline,
            "no event {what} within 3 s; events:\n{text}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn url(ip: IpAddr, path: &str) -> String {
    match ip {
        IpAddr::V4(a) => format!("http://{a}:80{path}"),
        IpAddr::V6(a) => format!("http://[{a}]:80{path}"),
    }
}

/// One request; returns the HTTP status, or None if it failed (dropped, timed out).
fn get(lab: &Lab, src: IpAddr, target: &str, timeout: Duration) -> Option<u16> {
    lab.status(src, target, &[], timeout)
}

/// A request from `src` to the server's `/` is dropped (times out after 500 ms).
fn assert_dropped(lab: &Lab, src: IpAddr, f: &Family, what: &str) {
    let got = get(lab, src, &url(f.server, "/"), Duration::from_millis(500));
    assert_eq!(got, None, "{what}: request from {src} was served");
}

/// A request from `src` to the server's `/` is served with 200.
fn assert_served(lab: &Lab, src: IpAddr, f: &Family, what: &str) {
    let got = get(lab, src, &url(f.server, "/"), Duration::from_secs(3));
    assert_eq!(got, Some(200), "{what}: request from {src}");
}

fn xdp_attached(lab: &Lab) -> bool {
    let out = lab.run(
        lab.server_ns(),
        "ip",
        &["link", "show", "dev", lab.server_if()],
        Duration::from_secs(5),
    );
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

struct Family {
    tag: &'static str,
    /// Extra agent arguments (attach modes).
    agent_args: &'static [&'static str],
    /// What the agent's ready line must say about the attach modes.
    attached: &'static str,
    server: IpAddr,
    client: IpAddr,
    client_alt: IpAddr,
    prefix: &'static str,
}

#[expect(
    clippy::too_many_lines,
    reason = "one scenario, read top to bottom as trigger-then-expect steps"
)]
fn scenario(f: &Family) {
    let mut lab = Lab::new(f.tag);
    lab.start_nginx(80);
    let pin = PinDir::new(f.tag);
    let agent = start_agent(&mut lab, &pin, 1, f.agent_args);
    assert!(xdp_attached(&lab), "XDP not attached after ready");
    let ready = lab.stderr_of(agent.pid);
    assert!(
        ready.contains(f.attached),
        "expected {} in: {ready}",
        f.attached
    );
    let client = f.client.to_string();
    let alt = f.client_alt.to_string();

    // tcpdump records the same traffic, to replay it through the same pipeline below.
    let capture = lab.tmp_dir().join("baseline.pcap");
    let (server_ns, server_if) = (lab.server_ns().to_owned(), lab.server_if().to_owned());
    let tcpdump = lab.spawn(
        &server_ns,
        "tcpdump",
        &[
            "-i",
            &server_if,
            "-n",
            // Without immediate mode, packets wait in the kernel's capture block until it
            // fills or times out, and a capture stopped soon after misses them.
            "--immediate-mode",
            "-U",
            "-w",
            capture.to_str().expect("utf-8"),
            "tcp port 80",
        ],
        None,
    );
    lab.wait_for_stderr(tcpdump, "listening on", Duration::from_secs(10));

    // A request appears as an ingress event with its request line, and its response head as
    // an egress event from TC.
    let ok = get(
        &lab,
        f.client,
        &url(f.server, "/users/42?q=1"),
        Duration::from_secs(3),
    );
    assert_eq!(ok, Some(200), "baseline request");
    let req = expect_event(&agent, "request", |v| {
        v["dir"] == "ingress" && v["first_line"] == "GET /users/42?… HTTP/1.1"
    });
    assert_eq!(
        req["src"]
            .as_str()
            .map(|s| s.parse::<std::net::SocketAddr>().map(|a| a.ip())),
        Some(Ok(f.client))
    );
    assert!(
        req["captured_len"].as_u64() == req["payload_len"].as_u64(),
        "whole request captured: {req}"
    );
    expect_event(&agent, "response head", |v| {
        v["dir"] == "egress" && v["first_line"] == "HTTP/1.1 200 OK"
    });
    expect_event(&agent, "SYN", |v| v["dir"] == "ingress" && v["flags"] == 2);
    // The same request, analysed live: one transaction, as `replay --json` prints them.
    let tx = expect_event(&agent, "transaction", |v| {
        v["method"] == "GET" && v["path"] == "/users/42"
    });
    assert_eq!(tx["status"], 200, "{tx}");
    assert_eq!(tx["route"], "/users/{id}", "{tx}");
    assert_eq!(tx["query_keys"], serde_json::json!(["q"]), "{tx}");
    assert_eq!(tx["client"], f.client.to_string(), "{tx}");
    assert!(tx["latency_ns"].as_u64().is_some_and(|l| l > 0), "{tx}");
    // curl's SYN, read by XDP: a Linux stack one hop away (the replay below must agree).
    assert!(
        tx["transport_fingerprint"]
            .as_str()
            .is_some_and(|f| f.starts_with("tcp1_64_")),
        "{tx}"
    );

    // Replaying tcpdump's capture of that request gives the same transaction, up to the
    // clocks (capture stamps versus kernel stamps) and the session key (random per agent).
    thread::sleep(Duration::from_millis(200));
    lab.interrupt(tcpdump);
    let inventory_file = lab.tmp_dir().join("replayed-catalogue.json");
    let out = Command::new(apisensor_bin())
        .args(["replay", "--json"])
        .arg(&capture)
        .arg("--catalogue")
        .arg(&inventory_file)
        .output()
        .expect("apisensor replay");
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("replay json line"))
        .collect();
    assert_eq!(replayed.len(), 1, "one request was captured: {replayed:?}");
    let strip = |v: &serde_json::Value| {
        let mut v = v.clone();
        for clock_or_key in ["ts_ns", "latency_ns", "session"] {
            v.as_object_mut().expect("object").remove(clock_or_key);
        }
        v
    };
    assert_eq!(
        strip(&replayed[0]),
        strip(&tx),
        "live and replayed transactions differ"
    );
    let inventory: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&inventory_file).expect("replay --catalogue file"))
            .expect("catalogue json");
    assert_eq!(inventory[0]["route"], "/users/{id}", "{inventory}");
    assert_eq!(inventory[0]["count"], 1, "{inventory}");

    // Block the client: its next request is dropped at once; its other address is served.
    let t_added = sensor_user::clock::boot_ns();
    pin.cli_ok(&[
        "blocks", "add", &client, "--ttl", "60s", "--reason", "e2e test",
    ]);
    assert_dropped(&lab, f.client, f, "blocked client served");
    let top: serde_json::Value =
        serde_json::from_str(&pin.cli_ok(&["top", "--json", "-n", "10"])).expect("top json");
    let row = top
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["source"] == client.as_str()))
        .unwrap_or_else(|| panic!("client missing from top: {top}"));
    assert!(row["dropped"].as_u64() >= Some(1), "no drop counted: {row}");
    // The block's own record of its latest drop: curl sent one SYN (its 500 ms timeout is
    // shorter than the first retransmission), so the latest drop is the first one.
    let listed: serde_json::Value =
        serde_json::from_str(&pin.cli_ok(&["blocks", "list", "--json"])).expect("json");
    let hit_ago_ms = listed[0]["last_hit_ago_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no drop recorded: {listed}"));
    let dropped_at = sensor_user::clock::boot_ns().saturating_sub(hit_ago_ms * 1_000_000);
    // The drop of the first packet after `blocks add` returned (curl's start included).
    let delay_ms = dropped_at.saturating_sub(t_added) / 1_000_000;
    eprintln!(
        "{}: first drop {delay_ms} ms after the block was added",
        f.tag
    );
    assert!(
        delay_ms < 100,
        "first drop {delay_ms} ms after the block was added"
    );
    assert_served(&lab, f.client_alt, f, "second address");
    let list: serde_json::Value =
        serde_json::from_str(&pin.cli_ok(&["blocks", "list", "--json"])).expect("json");
    assert_eq!(list[0]["text"], "e2e test", "{list}");
    assert!(list[0]["hits"].as_u64() >= Some(1), "{list}");
    assert!(list[0]["ttl_left_s"].as_u64() > Some(50), "{list}");

    // Unblock: served again.
    pin.cli_ok(&["blocks", "rm", &client]);
    assert_served(&lab, f.client, f, "after rm");

    // A prefix block covering both addresses, one of them allowlisted: that one is never dropped.
    pin.cli_ok(&["allow", "add", &alt]);
    pin.cli_ok(&[
        "blocks", "add", f.prefix, "--ttl", "60s", "--reason", "prefix",
    ]);
    let allowed_before = counter(&pin, "xdp_pass_allowlisted");
    let prefix_before = counter(&pin, "xdp_drop_prefix_block");
    assert_dropped(&lab, f.client, f, "prefix-blocked client served");
    for _ in 0..3 {
        assert_served(&lab, f.client_alt, f, "allowlisted");
    }
    assert!(counter(&pin, "xdp_pass_allowlisted") > allowed_before);
    assert!(counter(&pin, "xdp_drop_prefix_block") > prefix_before);
    pin.cli_ok(&["blocks", "rm", f.prefix]);
    pin.cli_ok(&["allow", "rm", &alt]);

    // A second agent on the same pins is refused with a clear error.
    let second = lab.run(
        lab.server_ns(),
        apisensor_bin().to_str().expect("utf-8"),
        &["run", "--iface", lab.server_if(), "--pin-dir", pin.as_str()],
        Duration::from_secs(20),
    );
    assert!(!second.status.success(), "second agent started");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another apisensor agent"),
        "unclear error: {err}"
    );
    // With its own pin directory, it is refused by the interface itself.
    let other_pins = PinDir::new(&format!("{}-other", f.tag));
    let third = lab.run(
        lab.server_ns(),
        apisensor_bin().to_str().expect("utf-8"),
        &[
            "run",
            "--iface",
            lab.server_if(),
            "--pin-dir",
            other_pins.as_str(),
        ],
        Duration::from_secs(20),
    );
    assert!(
        !third.status.success(),
        "a second agent took over the interface"
    );
    let err = String::from_utf8_lossy(&third.stderr);
    assert!(
        err.contains("already has an XDP program attached"),
        "unclear error: {err}"
    );

    // Blocks survive a restart; a 2 s block expires by the kernel's clock while the agent is
    // stopped (the restarted agent purges nothing during its first period).
    pin.cli_ok(&[
        "blocks", "add", &client, "--ttl", "60s", "--reason", "survives",
    ]);
    pin.cli_ok(&["blocks", "add", &alt, "--ttl", "2s", "--reason", "expires"]);
    assert_dropped(&lab, f.client_alt, f, "2 s block not active");
    let status = lab.stop(agent.pid);
    assert!(status.success(), "agent did not exit cleanly: {status:?}");
    assert!(
        !xdp_attached(&lab),
        "XDP still attached after the agent stopped"
    );
    let filters = lab.run(
        lab.server_ns(),
        "tc",
        &["filter", "show", "dev", lab.server_if(), "egress"],
        Duration::from_secs(5),
    );
    assert!(
        !String::from_utf8_lossy(&filters.stdout).contains("bpf"),
        "TC filter still attached after the agent stopped"
    );
    // The stopped agent left its API inventory behind, with the route it saw.
    let inventory: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&agent.catalogue).expect("catalogue file written at exit"),
    )
    .expect("catalogue json");
    let users = inventory
        .as_array()
        .and_then(|e| e.iter().find(|e| e["route"] == "/users/{id}"))
        .unwrap_or_else(|| panic!("no /users/{{id}} in {inventory}"));
    assert_eq!(users["method"], "GET", "{users}");
    assert!(users["count"].as_u64() >= Some(1), "{users}");
    thread::sleep(Duration::from_millis(2500));
    let agent2 = start_agent(&mut lab, &pin, 2, f.agent_args);
    let expired_before = counter(&pin, "xdp_pass_expired_block");
    let listed = pin.cli_ok(&["blocks", "list"]);
    assert!(
        listed.contains("expired") && listed.contains("survives"),
        "{listed}"
    );
    assert_dropped(&lab, f.client, f, "block lost on restart");
    assert_served(&lab, f.client_alt, f, "expired block still drops");
    assert!(counter(&pin, "xdp_pass_expired_block") > expired_before);
    let status = lab.stop(agent2.pid);
    assert!(status.success(), "agent did not exit cleanly: {status:?}");
}

#[test]
fn ipv4_sample_block_unblock_allow_expire() {
    scenario(&Family {
        tag: "e2e4",
        agent_args: &[],
        attached: "xdp=Driver tc=Tcx",
        server: "198.51.100.1".parse().expect("ip"),
        client: "198.51.100.2".parse().expect("ip"),
        client_alt: "198.51.100.3".parse().expect("ip"),
        prefix: "198.51.100.0/24",
    });
}

#[test]
fn ipv6_sample_block_unblock_allow_expire() {
    // The fallback attach paths, on IPv6: generic XDP and a clsact filter.
    scenario(&Family {
        tag: "e2e6",
        agent_args: &["--xdp-mode", "generic", "--tc-mode", "clsact"],
        attached: "xdp=Skb tc=Clsact",
        server: "2001:db8:100::1".parse().expect("ip"),
        client: "2001:db8:100::2".parse().expect("ip"),
        client_alt: "2001:db8:100::3".parse().expect("ip"),
        prefix: "2001:db8:100::/64",
    });
}

#[test]
fn cli_errors_are_one_clear_line() {
    let pin = PinDir::new("cli");
    let cases: [(&[&str], &str); 6] = [
        (&["stats"], "is not pinned"),
        (&["blocks", "list"], "is not pinned"),
        (
            &["blocks", "add", "not-an-ip", "--ttl", "1m", "--reason", "x"],
            "is not an IP address",
        ),
        (
            &[
                "blocks",
                "add",
                "198.51.100.0/33",
                "--ttl",
                "1m",
                "--reason",
                "x",
            ],
            "out of range",
        ),
        (
            &[
                "blocks",
                "add",
                "198.51.100.9",
                "--ttl",
                "0s",
                "--reason",
                "x",
            ],
            "ttl",
        ),
        (&["run", "--iface", "nonexistent0"], "unknown interface"),
    ];
    // Without root: one line saying so (setpriv from util-linux drops to nobody).
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(apisensor_bin())
        .args(["run", "--iface", "lo", "--pin-dir", pin.as_str()])
        .output()
        .expect("setpriv (util-linux) must be installed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("must run as root"),
        "{err}"
    );
    for (args, want) in cases {
        let out = pin.cli(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: not one line: {err}"
        );
    }
    assert!(!pin.path().exists(), "a failed command created pins");
}
