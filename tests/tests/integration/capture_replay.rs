//! Captures written by real tools, replayed: in a network lab, nginx serves curl (keep-alive with
//! several URLs, chunked and large bodies, logins), wrk and a pipelining client over IPv4 and
//! IPv6, while tcpdump (Ethernet pcap, Linux cooked v2 with nanosecond timestamps, a short snap
//! length) and dumpcap (pcapng) capture in the server namespace. Each capture is then replayed
//! with `sensor_user::replay::replay_file`, and the transactions must be exactly what the tools
//! sent: methods, paths, status codes, counts, route templates, login outcomes, pipelined order.
//! Needs root, nginx, tcpdump, dumpcap, curl, wrk and bash.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use apisensor_tests::lab::{BIG_BODY_LEN, Lab};
use sensor_user::analyzer::{Analyzer, AnalyzerConfig};
use sensor_user::http::{LoginOutcome, LoginRoute, Transaction, route_template};
use sensor_user::replay::{ReplaySummary, read_segments_partial, replay_file};

/// nginx's port in the lab; monitored by the default analyzer configuration.
const PORT: u16 = 8080;
/// Bound on each client command.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long captures get to start or to catch up.
const CAPTURE_SETTLE: Duration = Duration::from_secs(10);
/// Pause between two readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// Paths fetched by one curl over one keep-alive connection, in order.
const KEEPALIVE_PATHS: [&str; 6] = ["/", "/users/1", "/users/2", "/big", "/chunked", "/users/3"];
/// Paths sent pipelined in one write, in order.
const PIPELINED_PATHS: [&str; 3] = ["/users/11", "/users/12", "/users/13"];
/// Path hammered by wrk.
const WRK_PATH: &str = "/users/5";
/// wrk's connection count (`-c`).
const WRK_CONNECTIONS: u64 = 4;

/// One capture tool run.
struct Capture {
    /// What it is, for messages.
    name: &'static str,
    /// The file it writes.
    path: PathBuf,
    /// Its PID in the lab.
    pid: u32,
    /// Text on its stderr once it has started (not proof that it captures yet).
    ready: &'static str,
    /// Whether it records only a short prefix of each packet.
    short_snaplen: bool,
}

/// What the clients did in one address family.
struct Sent {
    /// The server address they talked to.
    server: IpAddr,
    /// Requests wrk reports as completed.
    wrk_completed: u64,
}

#[test]
fn captures_from_real_tools_replay_to_what_the_tools_sent() {
    let mut lab = Lab::new("cap");
    lab.require_tools(&["tcpdump", "dumpcap", "curl", "wrk", "bash"]);
    lab.start_nginx(PORT);
    let mut captures = start_captures(&mut lab);
    wait_until_capturing(&lab, &captures);

    let sent = [
        drive_traffic(
            &lab,
            lab.server_v4().into(),
            lab.client_v4().into(),
            lab.client_v4_alt().into(),
        ),
        drive_traffic(
            &lab,
            lab.server_v6().into(),
            lab.client_v6().into(),
            lab.client_v6_alt().into(),
        ),
    ];
    let diags = stop_captures(&mut lab, &mut captures);

    let mut baseline: Option<(&str, Vec<Summary>)> = None;
    let mut stacks_seen = None;
    for (cap, diag) in captures.iter().zip(&diags) {
        let (txs, summary) = replay(&cap.path);
        let ctx = format!("capture {} ({diag})", cap.name);
        // The short snap length really cut packets (the 100 KiB body), and nothing else did.
        assert_eq!(
            summary.partial_segments > 0,
            cap.short_snaplen,
            "{ctx}: partly captured segments: {summary:?}"
        );
        for s in &sent {
            check_family(&txs, s, &ctx);
        }
        // Every connection's SYN was captured: each transaction carries the transport
        // fingerprint of curl's Linux stack (initial TTL 64), the same in every capture format
        // and link type.
        let stacks: std::collections::BTreeSet<String> = txs
            .iter()
            .map(|t| {
                t.transport_fingerprint
                    .map_or_else(|| "none".to_owned(), |f| f.to_string())
            })
            .collect();
        assert!(
            !stacks.is_empty() && stacks.iter().all(|f| f.starts_with("tcp1_64_")),
            "{ctx}: transport fingerprints {stacks:?}"
        );
        match &stacks_seen {
            None => stacks_seen = Some(stacks),
            Some(want) => assert_eq!(&stacks, want, "{ctx}: transport fingerprints differ"),
        }
        // Every capture of the same traffic yields the same transactions (times aside).
        let seen = summarize(&txs);
        match &baseline {
            None => baseline = Some((cap.name, seen)),
            Some((first, want)) => assert!(
                &seen == want,
                "{ctx}: transactions differ from those of capture {first}"
            ),
        }
    }

    // Deterministic: the same file twice gives identical transactions.
    let pcapng = captures
        .iter()
        .find(|c| c.name == "dumpcap pcapng")
        .expect("the pcapng capture is in the list");
    assert_eq!(
        replay(&pcapng.path).0,
        replay(&pcapng.path).0,
        "replay is not deterministic"
    );
}

/// Starts the four capture variants in the server namespace.
fn start_captures(lab: &mut Lab) -> Vec<Capture> {
    let dir = lab.tmp_dir().to_owned();
    let server_if = lab.server_if().to_owned();
    let server_ns = lab.server_ns().to_owned();
    // UDP too, for the readiness probes (see `wait_until_capturing`).
    let filter = format!("port {PORT}");
    let mut captures = Vec::new();
    let variants: [(&str, &str, &str, Vec<String>, bool); 4] = [
        (
            "tcpdump ethernet pcap",
            "a.pcap",
            "listening on",
            vec!["-i".into(), server_if.clone()],
            false,
        ),
        (
            "tcpdump any (cooked v2) nanosecond pcap",
            "b.pcap",
            "listening on",
            vec![
                "-i".into(),
                "any".into(),
                "--time-stamp-precision=nano".into(),
            ],
            false,
        ),
        (
            "tcpdump snaplen 400",
            "c.pcap",
            "listening on",
            vec!["-i".into(), server_if.clone(), "-s".into(), "400".into()],
            true,
        ),
        (
            "dumpcap pcapng",
            "d.pcapng",
            "Capturing on",
            Vec::new(),
            false,
        ),
    ];
    for (name, file, ready, mut args, short_snaplen) in variants {
        let path = dir.join(file);
        let path_s = path.to_str().expect("lab paths are UTF-8").to_owned();
        let program = if name.starts_with("dumpcap") {
            args.extend(["-i".into(), server_if.clone(), "-B".into(), "64".into()]);
            args.extend(["-f".into(), filter.clone(), "-w".into(), path_s]);
            "dumpcap"
        } else {
            args.extend(["-n".into(), "-U".into(), "-B".into(), "65536".into()]);
            args.extend(["-w".into(), path_s, filter.clone()]);
            "tcpdump"
        };
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let pid = lab.spawn(&server_ns, program, &argv, None);
        captures.push(Capture {
            name,
            path,
            pid,
            ready,
            short_snaplen,
        });
    }
    captures
}

/// Waits (bounded) until every capture really captures. The banner is not enough: dumpcap
/// prints "Capturing on" before it has opened the interface, so the first connections after the
/// banner could be missing from its file. So UDP probes go to the server's port until every file
/// holds one; they are not TCP, so they never reach the analyzer.
fn wait_until_capturing(lab: &Lab, captures: &[Capture]) {
    let deadline = Instant::now() + CAPTURE_SETTLE;
    for c in captures {
        while !lab.stderr_of(c.pid).contains(c.ready) {
            assert!(
                Instant::now() < deadline,
                "{} did not start capturing: {}",
                c.name,
                lab.stderr_of(c.pid)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let probe = format!("printf probe >/dev/udp/{}/{PORT}", lab.server_v4());
    loop {
        let waiting: Vec<&str> = captures
            .iter()
            .filter(|c| probes_in(&c.path) == 0)
            .map(|c| c.name)
            .collect();
        if waiting.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no readiness probe reached the files of {waiting:?}"
        );
        let out = lab.run(lab.client_ns(), "bash", &["-c", &probe], CLIENT_TIMEOUT);
        assert!(
            out.status.success(),
            "readiness probe failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(PROBE_INTERVAL);
    }
}

/// Readiness probes (the only packets that are not TCP) in a capture file so far. The tool may
/// be in the middle of writing a record: what precedes it counts.
fn probes_in(path: &Path) -> u64 {
    let Ok(file) = File::open(path) else {
        return 0;
    };
    let (summary, _) = read_segments_partial(file, path, &mut |_| {});
    summary.not_tcp
}

/// Lets the captures catch up (their files stop growing), stops them with SIGINT, and returns
/// each one's statistics line for messages. Panics if a tool reports kernel drops.
fn stop_captures(lab: &mut Lab, captures: &mut [Capture]) -> Vec<String> {
    let size = |c: &Capture| std::fs::metadata(&c.path).map_or(0, |m| m.len());
    let deadline = Instant::now() + CAPTURE_SETTLE;
    let mut last: Vec<u64> = captures.iter().map(size).collect();
    loop {
        std::thread::sleep(Duration::from_millis(700));
        let now: Vec<u64> = captures.iter().map(size).collect();
        if now == last || Instant::now() > deadline {
            break;
        }
        last = now;
    }
    let mut diags = Vec::new();
    for c in captures.iter() {
        let exit = lab.interrupt(c.pid);
        let stderr = lab.stderr_of(c.pid);
        let stats: String = stderr
            .lines()
            .filter(|l| l.contains("packets") || l.contains("Packets"))
            .collect::<Vec<_>>()
            .join("; ");
        assert!(
            exit.success() || exit.code().is_none(),
            "{} exited with {exit}: {stderr}",
            c.name
        );
        assert_eq!(
            dropped(&stderr),
            Some(0),
            "{} dropped packets or reported no statistics: {stats}",
            c.name
        );
        diags.push(stats);
    }
    diags
}

/// Packets a capture tool says the kernel dropped: tcpdump's "N packets dropped by kernel" or
/// dumpcap's "Packets received/dropped on interface 'X': R/D".
fn dropped(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|l| {
        if let Some(n) = l.strip_suffix(" packets dropped by kernel") {
            return n.trim().parse().ok();
        }
        let (_, counts) = l.split_once("received/dropped on interface")?;
        let (_, counts) = counts.split_once(": ")?;
        let (_, d) = counts.split_whitespace().next()?.split_once('/')?;
        d.parse().ok()
    })
}

/// Runs every client against `server` and returns what they reported.
fn drive_traffic(lab: &Lab, server: IpAddr, src: IpAddr, src_alt: IpAddr) -> Sent {
    let host = match server {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    let base = format!("http://{host}:{PORT}");
    keepalive_curl(lab, &base, src);
    logins(lab, &base, src_alt);
    pipelined(lab, server);
    let wrk_completed = wrk(lab, &base);
    Sent {
        server,
        wrk_completed,
    }
}

/// One curl, several URLs: curl reuses the connection. `-o` pairs with the URLs in order.
fn keepalive_curl(lab: &Lab, base: &str, src: IpAddr) {
    let urls: Vec<String> = KEEPALIVE_PATHS
        .iter()
        .map(|p| format!("{base}{p}"))
        .collect();
    let (last, first) = urls.split_last().expect("several URLs");
    let mut extra: Vec<&str> = vec!["-w", "%{http_code} %{num_connects}\\n"];
    for u in first {
        extra.extend(["-o", "/dev/null", u.as_str()]);
    }
    extra.extend(["-o", "/dev/null"]);
    let out = lab.curl(src, last, &extra, CLIENT_TIMEOUT);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "keep-alive curl failed: {report}");
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(
        lines.len(),
        KEEPALIVE_PATHS.len(),
        "one report line per URL: {report}"
    );
    for (i, line) in lines.iter().enumerate() {
        // Only the first transfer opens a connection: the others reuse it.
        let want = format!("200 {}", u8::from(i == 0));
        assert_eq!(*line, want, "transfer {i} of the keep-alive curl: {report}");
    }
}

/// Two logins: one with the success header, one without.
fn logins(lab: &Lab, base: &str, src_alt: IpAddr) {
    let login = format!("{base}/login");
    let ok = lab.curl(
        src_alt,
        &login,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "X-Test-Login: ok",
            "--data",
            "username=alice&password=hunter2",
        ],
        CLIENT_TIMEOUT,
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        "200",
        "successful login"
    );
    let bad = lab.curl(
        src_alt,
        &login,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data",
            "username=bob&password=guess",
        ],
        CLIENT_TIMEOUT,
    );
    assert_eq!(String::from_utf8_lossy(&bad.stdout), "401", "failed login");
}

/// Three requests in one write on one connection, the last one closing it.
fn pipelined(lab: &Lab, server: IpAddr) {
    let mut requests = String::new();
    for (i, p) in PIPELINED_PATHS.iter().enumerate() {
        let close = if i + 1 == PIPELINED_PATHS.len() {
            "Connection: close\\r\\n"
        } else {
            ""
        };
        let _ = write!(
            requests,
            "GET {p} HTTP/1.1\\r\\nHost: lab\\r\\n{close}\\r\\n"
        );
    }
    let script =
        format!("exec 3<>/dev/tcp/{server}/{PORT} || exit 1; printf '{requests}' >&3; cat <&3");
    let out = lab.run(lab.client_ns(), "bash", &["-c", &script], CLIENT_TIMEOUT);
    let responses = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        responses.matches("HTTP/1.1 200 OK").count(),
        PIPELINED_PATHS.len(),
        "pipelined responses: {responses}"
    );
}

/// wrk, bounded: one second, four connections, one thread. Returns the completed requests.
fn wrk(lab: &Lab, base: &str) -> u64 {
    let conns = WRK_CONNECTIONS.to_string();
    let out = lab.run(
        lab.client_ns(),
        "wrk",
        &[
            "-d",
            "1s",
            "-c",
            &conns,
            "-t",
            "1",
            &format!("{base}{WRK_PATH}"),
        ],
        CLIENT_TIMEOUT,
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {report}");
    let wrk_completed = report
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's report: {report}"));
    assert!(wrk_completed > 0, "wrk completed no request: {report}");
    wrk_completed
}

/// Replays a capture with the default analyzer plus a `POST /login` route with default rules.
fn replay(path: &Path) -> (Vec<Transaction>, ReplaySummary) {
    let mut cfg = AnalyzerConfig::default();
    cfg.http.login_routes.push(LoginRoute {
        method: "POST".to_owned(),
        path: "/login".to_owned(),
        account_field: "username".to_owned(),
        success_status: vec![200, 302],
        failure_status: vec![401, 403],
        success_set_cookie: None,
    });
    let mut analyzer = Analyzer::new(cfg);
    let mut txs = Vec::new();
    let summary = replay_file(path, &mut analyzer, &mut |tx| txs.push(tx.clone()))
        .unwrap_or_else(|e| panic!("replay of {} failed: {e}", path.display()));
    assert_eq!(summary.transactions as usize, txs.len());
    assert_eq!(
        summary.malformed,
        0,
        "{}: malformed packets: {summary:?}",
        path.display()
    );
    (txs, summary)
}

/// Checks the transactions of one address family against what its clients did.
fn check_family(txs: &[Transaction], sent: &Sent, ctx: &str) {
    let ctx = format!("{ctx}, server {}", sent.server);
    let mine: Vec<&Transaction> = txs
        .iter()
        .filter(|t| t.server.ip() == sent.server && t.server.port() == PORT)
        .collect();
    // Connections in order of their first transaction, each with its transactions in order.
    let mut by_peer: BTreeMap<SocketAddr, Vec<&Transaction>> = BTreeMap::new();
    for t in &mine {
        by_peer.entry(t.peer).or_default().push(t);
    }
    let paths = |conn: &[&Transaction]| conn.iter().map(|t| t.path.clone()).collect::<Vec<_>>();

    // Keep-alive: one connection, every URL in order, all 200.
    let keepalive: Vec<&Vec<&Transaction>> = by_peer
        .values()
        .filter(|c| paths(c) == KEEPALIVE_PATHS)
        .collect();
    assert_eq!(
        keepalive.len(),
        1,
        "{ctx}: one keep-alive connection with {KEEPALIVE_PATHS:?}; connections: {:?}",
        by_peer
            .values()
            .map(|c| paths(c))
            .filter(|p| p.len() < 10)
            .collect::<Vec<_>>()
    );
    for t in keepalive[0] {
        assert_eq!(t.method, "GET", "{ctx}: {}", t.path);
        assert_eq!(t.status, Some(200), "{ctx}: {}", t.path);
        assert_eq!(
            t.route,
            route_template(&t.path),
            "{ctx}: route of {}",
            t.path
        );
        if t.path == "/big" {
            assert!(
                t.resp_bytes >= BIG_BODY_LEN as u64,
                "{ctx}: /big response counted {} bytes",
                t.resp_bytes
            );
        }
    }
    let user_routes: Vec<&str> = keepalive[0]
        .iter()
        .filter(|t| t.path.starts_with("/users/"))
        .map(|t| t.route.as_str())
        .collect();
    assert!(
        user_routes.windows(2).all(|w| w[0] == w[1])
            && user_routes.iter().all(|r| !r.contains('1')),
        "{ctx}: /users/<n> must share one template without the id: {user_routes:?}"
    );

    check_logins(&mine, &ctx);

    // Pipelining: one connection, three requests, in the order sent, each answered.
    let pipelined: Vec<&Vec<&Transaction>> = by_peer
        .values()
        .filter(|c| paths(c) == PIPELINED_PATHS)
        .collect();
    assert_eq!(
        pipelined.len(),
        1,
        "{ctx}: one pipelined connection with {PIPELINED_PATHS:?}"
    );
    assert!(
        pipelined[0]
            .iter()
            .all(|t| t.status == Some(200) && t.method == "GET"),
        "{ctx}: pipelined statuses"
    );

    let wrk = check_wrk(&mine, sent, &ctx);

    // Nothing else.
    let expected = KEEPALIVE_PATHS.len() + 2 + PIPELINED_PATHS.len() + wrk;
    assert_eq!(mine.len(), expected, "{ctx}: unexpected extra transactions");
    assert!(
        mine.iter()
            .all(|t| t.flags.is_empty() || t.path == WRK_PATH),
        "{ctx}: anomaly flags on clean traffic: {:?}",
        mine.iter()
            .filter(|t| !t.flags.is_empty())
            .map(|t| (&t.path, t.flags))
            .collect::<Vec<_>>()
    );
}

/// The two logins: the one with the success header succeeded, the other failed, each with its
/// account.
fn check_logins(mine: &[&Transaction], ctx: &str) {
    let logins: Vec<&&Transaction> = mine.iter().filter(|t| t.path == "/login").collect();
    assert_eq!(logins.len(), 2, "{ctx}: two login requests");
    let find = |status: u16| {
        logins
            .iter()
            .find(|t| t.status == Some(status))
            .unwrap_or_else(|| panic!("{ctx}: no login answered {status}"))
    };
    let ok = find(200);
    assert_eq!(ok.method, "POST", "{ctx}");
    assert_eq!(
        ok.login,
        Some(LoginOutcome::Success),
        "{ctx}: successful login"
    );
    assert_eq!(
        ok.account.as_deref(),
        Some("alice"),
        "{ctx}: account of the successful login"
    );
    let bad = find(401);
    assert_eq!(
        bad.login,
        Some(LoginOutcome::Failure),
        "{ctx}: failed login"
    );
    assert_eq!(
        bad.account.as_deref(),
        Some("bob"),
        "{ctx}: account of the failed login"
    );
}

/// wrk: every completed request is there; at most one request per connection was still in
/// flight when wrk stopped. Returns how many wrk transactions there are.
fn check_wrk(mine: &[&Transaction], sent: &Sent, ctx: &str) -> usize {
    let wrk: Vec<&&Transaction> = mine.iter().filter(|t| t.path == WRK_PATH).collect();
    let answered = wrk.iter().filter(|t| t.status == Some(200)).count() as u64;
    let unanswered = wrk.iter().filter(|t| t.status.is_none()).count() as u64;
    assert!(
        answered >= sent.wrk_completed && answered <= sent.wrk_completed + WRK_CONNECTIONS,
        "{ctx}: wrk completed {} requests, the replay has {answered} answered",
        sent.wrk_completed
    );
    assert!(
        unanswered <= WRK_CONNECTIONS,
        "{ctx}: {unanswered} wrk requests without a response"
    );
    assert_eq!(
        wrk.len() as u64,
        answered + unanswered,
        "{ctx}: wrk requests with an unexpected status"
    );

    wrk.len()
}

/// The parts of a transaction that do not depend on the capture tool.
type Summary = (
    SocketAddr,
    String,
    String,
    Option<u16>,
    Option<LoginOutcome>,
);

/// Transactions without times, sorted, for comparing captures of the same traffic.
fn summarize(txs: &[Transaction]) -> Vec<Summary> {
    let mut v: Vec<Summary> = txs
        .iter()
        .map(|t| {
            (
                t.peer,
                t.method.to_string(),
                t.path.clone(),
                t.status,
                t.login,
            )
        })
        .collect();
    v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    v
}
