//! Tests of the network lab itself: nginx answers every route over IPv4 and IPv6 from both
//! client addresses, and dropping the lab (also during a panic) removes its namespaces and
//! processes.

use std::net::IpAddr;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use apisensor_tests::lab::{BIG_BODY_LEN, LOGIN_COOKIE, Lab};

/// Port nginx listens on inside the server namespace.
const PORT: u16 = 8080;
/// Bound on each curl.
const CURL_TIMEOUT: Duration = Duration::from_secs(10);

/// One request and what must come back.
struct Case {
    /// What the case checks.
    name: &'static str,
    /// Path on the server.
    path: &'static str,
    /// Extra curl arguments.
    extra: &'static [&'static str],
    /// Expected status code.
    status: u16,
    /// A substring the headers (`-D -` output) must contain, lowercased.
    header: Option<&'static str>,
    /// A substring the body must contain.
    body: Option<&'static str>,
    /// Exact body length, when it matters.
    body_len: Option<usize>,
}

const CASES: &[Case] = &[
    Case {
        name: "root",
        path: "/",
        extra: &[],
        status: 200,
        header: Some("content-type: text/plain"),
        body: Some("hello from the apisensor lab"),
        body_len: None,
    },
    Case {
        name: "user json",
        path: "/users/42",
        extra: &[],
        status: 200,
        header: Some("content-type: application/json"),
        body: Some(r#"{"id":42,"name":"user42"}"#),
        body_len: None,
    },
    Case {
        name: "login ok",
        path: "/login",
        extra: &[
            "-X",
            "POST",
            "-H",
            "X-Test-Login: ok",
            "--data",
            "user=alice",
        ],
        status: 200,
        header: Some("set-cookie: session="),
        body: Some(r#""login":"ok""#),
        body_len: None,
    },
    Case {
        name: "login failed",
        path: "/login",
        extra: &["-X", "POST", "--data", "user=alice"],
        status: 401,
        header: None,
        body: Some(r#""login":"failed""#),
        body_len: None,
    },
    Case {
        name: "login wrong method",
        path: "/login",
        extra: &[],
        status: 405,
        header: None,
        body: None,
        body_len: None,
    },
    Case {
        name: "big",
        path: "/big",
        extra: &[],
        status: 200,
        header: Some("content-length: 102400"),
        body: None,
        body_len: Some(BIG_BODY_LEN),
    },
    Case {
        name: "chunked",
        path: "/chunked",
        extra: &[],
        status: 200,
        header: Some("transfer-encoding: chunked"),
        body: Some("line 199 replaced"),
        body_len: None,
    },
];

/// Runs one case from `src` against `host` (already bracketed for IPv6).
fn check(lab: &Lab, src: IpAddr, host: &str, case: &Case) {
    let url = format!("http://{host}:{PORT}{}", case.path);
    let mut extra: Vec<&str> = vec!["-D", "/dev/stderr"];
    extra.extend_from_slice(case.extra);
    let out = lab.curl(src, &url, &extra, CURL_TIMEOUT);
    let headers = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
    let body = String::from_utf8_lossy(&out.stdout);
    let ctx = format!("case {:?} from {src} to {url}", case.name);
    assert!(out.status.success(), "{ctx}: curl failed: {headers}");
    let status_line = headers.lines().next().unwrap_or_default();
    assert!(
        status_line.starts_with(&format!("http/1.1 {}", case.status)),
        "{ctx}: status line {status_line:?}, want {}",
        case.status
    );
    if let Some(h) = case.header {
        assert!(headers.contains(h), "{ctx}: headers lack {h:?}: {headers}");
    }
    if let Some(b) = case.body {
        assert!(body.contains(b), "{ctx}: body lacks {b:?}: {body}");
    }
    if let Some(n) = case.body_len {
        assert_eq!(out.stdout.len(), n, "{ctx}: body length");
    }
}

/// Whether a named network namespace exists.
fn ns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Whether a process exists (signal 0 probes without sending anything).
fn pid_alive(pid: u32) -> bool {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill with signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn nginx_answers_every_route_and_drop_cleans_up() {
    let mut lab = Lab::new("lab");
    let names = [lab.server_ns().to_owned(), lab.client_ns().to_owned()];
    assert!(lab.server_if().len() <= 15 && lab.client_if().len() <= 15);
    for n in &names {
        assert!(ns_exists(n), "namespace {n} missing after Lab::new");
    }
    let nginx = lab.start_nginx(PORT);

    let v4 = lab.server_v4().to_string();
    let v6 = format!("[{}]", lab.server_v6());
    let sources: [(IpAddr, &str); 4] = [
        (lab.client_v4().into(), &v4),
        (lab.client_v4_alt().into(), &v4),
        (lab.client_v6().into(), &v6),
        (lab.client_v6_alt().into(), &v6),
    ];
    for (src, host) in sources {
        for case in CASES {
            check(&lab, src, host, case);
        }
    }
    assert!(
        LOGIN_COOKIE.starts_with("session="),
        "the login cookie is named session"
    );

    // No default route: an address outside the lab is unreachable from the client.
    let out = lab.run(
        lab.client_ns(),
        "ip",
        &["route", "get", "203.0.113.9"],
        Duration::from_secs(5),
    );
    assert!(
        !out.status.success(),
        "client namespace has a route out of the lab: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A timeout is enforced and reported.
    let out = lab.run(
        lab.client_ns(),
        "sleep",
        &["30"],
        Duration::from_millis(300),
    );
    assert!(!out.status.success(), "sleep 30 was not cut short");
    assert!(String::from_utf8_lossy(&out.stderr).contains("timeout"));

    let sleeper = lab.spawn(lab.client_ns().to_owned().as_str(), "sleep", &["600"], None);
    assert!(lab.is_running(sleeper));
    lab.stop(sleeper);
    assert!(!pid_alive(sleeper), "stopped process {sleeper} still alive");

    drop(lab);
    for n in &names {
        assert!(!ns_exists(n), "namespace {n} left behind after drop");
    }
    assert!(!pid_alive(nginx), "nginx {nginx} left running after drop");
}

#[test]
fn panic_inside_a_test_still_cleans_up() {
    let (tx, rx) = mpsc::channel();
    let result = std::thread::spawn(move || {
        let mut lab = Lab::new("pnc");
        let pid = lab.spawn(lab.server_ns().to_owned().as_str(), "sleep", &["600"], None);
        tx.send((lab.server_ns().to_owned(), lab.client_ns().to_owned(), pid))
            .expect("receiver alive");
        panic!("deliberate panic with a live lab");
    })
    .join();
    assert!(result.is_err(), "the thread was meant to panic");
    let (srv, cli, pid) = rx.recv().expect("the lab reported its names");
    assert!(
        !ns_exists(&srv),
        "namespace {srv} left behind after a panic"
    );
    assert!(
        !ns_exists(&cli),
        "namespace {cli} left behind after a panic"
    );
    assert!(!pid_alive(pid), "process {pid} left running after a panic");
}
