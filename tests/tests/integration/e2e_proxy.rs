//! Behind a trusted proxy speaking the PROXY protocol, end to end: `haproxy` in the client's
//! namespace (TCP mode, one server connection per client connection, each starting with a
//! PROXY header), nginx behind it on a port that expects the header, the real agent on the
//! server's veth trusting the proxy. A brute-force client opening a new connection per attempt
//! through the proxy is blocked in the kernel by its own address, named by the PROXY header of
//! each new connection, while another client of the same proxy keeps being served and the
//! proxy's own address is never blocked. Once with PROXY protocol version 1, once with 2.
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    thread,
    time::{Duration, Instant},
};

use apisensor_tests::{
    agent::{self, AgentFiles, PinDir, blocks, json_lines},
    lab::Lab,
};

/// Port nginx serves the proxy on (PROXY protocol required).
const PROXIED_PORT: u16 = 8081;
/// Attempts an attacker makes at most.
const ATTEMPTS: u32 = 60;
/// Its pace: one attempt per 50 ms (20 per second).
const PACE: Duration = Duration::from_millis(50);
/// Unanswered attempts in a row after which it gives up.
const GIVE_UP_AFTER: u32 = 3;

/// One request through the proxy at `via` from `src`, on a new connection: the HTTP status,
/// or None if it got no answer in `timeout`.
fn request(lab: &Lab, src: IpAddr, via: SocketAddr, login: bool, timeout: Duration) -> Option<u16> {
    if login {
        let attempt = ["-X", "POST", "-d", "username=admin&password=guess"];
        lab.status(src, &format!("http://{via}/login"), &attempt, timeout)
    } else {
        lab.status(src, &format!("http://{via}/"), &[], timeout)
    }
}

/// One scenario: `haproxy` sending PROXY headers with `send_proxy`, an attacker at `attacker`
/// and a benign client at `benign` (both addresses of the client namespace, behind the proxy).
fn scenario(send_proxy: &str, tag: &str, attacker: Ipv4Addr, benign: Ipv4Addr) {
    let mut lab = Lab::new(tag);
    lab.start_nginx_behind_proxy(80, PROXIED_PORT);
    let proxy = SocketAddr::new(IpAddr::V4(lab.client_v4()), 8000);
    let server = SocketAddr::new(IpAddr::V4(lab.server_v4()), PROXIED_PORT);
    let (attacker, benign) = (IpAddr::V4(attacker), IpAddr::V4(benign));
    lab.add_client_address(attacker);
    lab.add_client_address(benign);
    lab.start_haproxy(proxy, server, send_proxy);
    let pin = PinDir::new(tag);
    let config = format!(
        "[sensor]\nports = [80, {PROXIED_PORT}]\n\n[analyzer.http]\ntrusted_proxies = [\"{}/32\"]\n\n[policy]\nblock_ttl_s = 60\n",
        proxy.ip()
    );
    let files = AgentFiles::in_lab(&lab, 1, &config);
    let agent = agent::start(&mut lab, &pin, &files, &[]);

    // The benign client before the attack.
    assert_eq!(
        request(&lab, benign, proxy, false, Duration::from_secs(3)),
        Some(200)
    );
    // The attacker: 20 attempts a second through the proxy, a new connection each, until a
    // few in a row get no answer. The benign client is served in between.
    let start = Instant::now();
    let (mut answered, mut unanswered_in_a_row, mut first_unanswered) = (0, 0, None);
    for i in 0..ATTEMPTS {
        let due = start + PACE * i;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        if let Some(status) = request(&lab, attacker, proxy, true, Duration::from_millis(400)) {
            assert_eq!(status, 401, "attempt {i}");
            assert!(
                first_unanswered.is_none(),
                "attempt {i} answered after attempt {first_unanswered:?} was not"
            );
            answered += 1;
            unanswered_in_a_row = 0;
        } else {
            first_unanswered.get_or_insert(i);
            unanswered_in_a_row += 1;
            if unanswered_in_a_row >= GIVE_UP_AFTER {
                break;
            }
        }
        if i % 5 == 0 {
            assert_eq!(
                request(&lab, benign, proxy, false, Duration::from_secs(3)),
                Some(200),
                "the benign client behind the same proxy, at attempt {i}"
            );
        }
    }
    eprintln!(
        "{send_proxy}: attacker refused from attempt {first_unanswered:?}, {answered} attempts answered"
    );
    assert!(
        unanswered_in_a_row >= GIVE_UP_AFTER,
        "{ATTEMPTS} attempts, the attacker was never refused; agent: {}",
        lab.stderr_of(agent)
    );
    assert!(
        answered <= 6,
        "{answered} attempts answered before the block"
    );
    // The benign client and the proxy itself (straight to nginx's plain port) are served.
    assert_eq!(
        request(&lab, benign, proxy, false, Duration::from_secs(3)),
        Some(200)
    );
    let direct = format!("http://{}:80/", lab.server_v4());
    assert_eq!(
        lab.status(proxy.ip(), &direct, &[], Duration::from_secs(3)),
        Some(200),
        "the proxy itself"
    );

    // One block decision, by connection, on the real client.
    let events = json_lines(&files.events);
    let decisions: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "decision" && e["action"] == "block" && e["renewal"] != true)
        .collect();
    let target = format!("{attacker}/32");
    assert!(
        decisions.iter().all(|d| d["target"] == target.as_str()),
        "only the attacker is blocked: {decisions:?}"
    );
    let decision = decisions
        .first()
        .unwrap_or_else(|| panic!("no block in {events:?}"));
    assert_eq!(decision["enforcement"], "flow", "{decision}");
    // The kernel's block is on the attacker's address, and it is what dropped its new
    // connections (the attacker never reaches the server directly: every hit is a connection
    // the proxy opened for it); nothing covers the proxy.
    let list = blocks(&pin);
    let block = list
        .iter()
        .find(|b| b["net"] == target.as_str())
        .unwrap_or_else(|| panic!("no block on {target}: {list:?}"));
    assert!(
        block["hits"].as_u64().is_some_and(|h| h > 0),
        "the attacker's block dropped nothing: {block}"
    );
    assert!(
        list.iter()
            .all(|b| b["net"] != format!("{}/32", proxy.ip()).as_str()),
        "the proxy is blocked: {list:?}"
    );
}

#[test]
fn a_client_behind_a_proxy_protocol_v1_proxy_is_blocked_without_blocking_the_proxy() {
    scenario(
        "send-proxy",
        "proxy1",
        Ipv4Addr::new(203, 0, 113, 10),
        Ipv4Addr::new(203, 0, 113, 11),
    );
}

#[test]
fn a_client_behind_a_proxy_protocol_v2_proxy_is_blocked_without_blocking_the_proxy() {
    scenario(
        "send-proxy-v2",
        "proxy2",
        Ipv4Addr::new(203, 0, 113, 20),
        Ipv4Addr::new(203, 0, 113, 21),
    );
}
