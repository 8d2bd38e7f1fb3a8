//! The lab's sample API behind nginx: logins with good and bad credentials from the client
//! namespace over IPv4 and IPv6, the login delay, the session cookie, items, and both access
//! logs (nginx's `combined` one and the API's own).
use std::net::IpAddr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use apisensor_tests::lab::Lab;

/// Port nginx listens on.
const PORT: u16 = 8080;
/// Port the sample API listens on.
const API_PORT: u16 = 8081;
/// Bound on each curl.
const CURL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a log may take to show a request's line.
const LOG_TIMEOUT: Duration = Duration::from_secs(5);

/// One answer: status, headers (lowercased), body, seconds curl took.
struct Answer {
    /// The status code.
    status: u16,
    /// The response headers, lowercased.
    headers: String,
    /// The body.
    body: String,
    /// curl's `time_total`.
    seconds: f64,
}

/// curl from `src` to `url` with `extra` arguments.
fn curl(lab: &Lab, src: IpAddr, url: &str, extra: &[&str]) -> Answer {
    let mut args = vec!["-D", "/dev/stderr", "-w", "\n%{http_code} %{time_total}"];
    args.extend_from_slice(extra);
    let out = lab.curl(src, url, &args, CURL_TIMEOUT);
    let headers = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
    assert!(out.status.success(), "curl {url} failed: {headers}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = stdout.rsplit_once('\n').expect("curl's -w line");
    let (status, seconds) = tail.split_once(' ').expect("status and time");
    Answer {
        status: status.parse().expect("status code"),
        headers,
        body: body.to_owned(),
        seconds: seconds.parse().expect("time_total"),
    }
}

/// A form login from `src` through `base`.
fn login(lab: &Lab, src: IpAddr, base: &str, user: &str, password: &str) -> Answer {
    let data = format!("username={user}&password={password}");
    curl(lab, src, &format!("{base}/login"), &["--data", &data])
}

/// Waits (bounded) until every needle is in the file at `path`; returns its text.
fn wait_for_lines(path: &Path, needles: &[&str]) -> String {
    let deadline = Instant::now() + LOG_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if needles.iter().all(|n| text.contains(n)) {
            return text;
        }
        let missing: Vec<&&str> = needles.iter().filter(|n| !text.contains(**n)).collect();
        assert!(
            Instant::now() < deadline,
            "{} lacks {missing:?} after {LOG_TIMEOUT:?}:\n{text}",
            path.display()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sample_api_behind_nginx_answers_and_logs() {
    let mut lab = Lab::new("sapi");
    let api = lab.start_sample_api(API_PORT, &["--accounts", "100", "--items", "1000"]);
    let proxy = lab.start_nginx_for_api(PORT, API_PORT);
    let v4: IpAddr = lab.client_v4().into();
    let v6: IpAddr = lab.client_v6().into();
    let base4 = format!("http://{}:{PORT}", lab.server_v4());
    let base6 = format!("http://[{}]:{PORT}", lab.server_v6());

    let ok = login(&lab, v4, &base4, "user0001", "pw-0001");
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body, "{\"login\":\"ok\"}\n");
    let cookie = ok
        .headers
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a session cookie");
    let session = cookie
        .split(';')
        .next()
        .expect("name=value")
        .trim()
        .to_owned();
    assert!(
        session.starts_with("session=") && session.len() == 8 + 32,
        "{cookie}"
    );
    assert!(
        cookie.contains("path=/") && cookie.contains("httponly"),
        "{cookie}"
    );

    for (src, base) in [(v4, &base4), (v6, &base6)] {
        let bad = login(&lab, src, base, "user0001", "wrong");
        assert_eq!(bad.status, 403, "from {src}: {}", bad.body);
        assert!(bad.body.contains("invalid credentials"), "{}", bad.body);
        assert!(!bad.headers.contains("set-cookie"), "{}", bad.headers);
        assert!(
            bad.seconds >= 0.045,
            "a failed login from {src} took {}s",
            bad.seconds
        );
    }

    let notes = format!("{base4}/notifications");
    let with = curl(&lab, v4, &notes, &["-H", &format!("Cookie: {session}")]);
    assert_eq!(with.status, 200, "{}", with.body);
    assert!(with.body.contains("\"polls\":1"), "{}", with.body);
    assert_eq!(curl(&lab, v4, &notes, &[]).status, 401);

    assert_eq!(curl(&lab, v4, &format!("{base4}/items/5"), &[]).status, 200);
    assert_eq!(
        curl(&lab, v6, &format!("{base6}/items/999999"), &[]).status,
        404
    );
    // The API itself listens on IPv6 too (nginx reaches it on 127.0.0.1).
    let direct = curl(
        &lab,
        v6,
        &format!("http://[{}]:{API_PORT}/health", lab.server_v6()),
        &[],
    );
    assert_eq!((direct.status, direct.body.as_str()), (200, "ok\n"));

    check_nginx_log(&lab, &proxy.access_log);
    check_api_log(&lab, &api.log, &session);
}

/// nginx's `combined` log has every request, with the client's address.
fn check_nginx_log(lab: &Lab, access_log: &Path) {
    // `addr - - [time] "request" status bytes "referer" "agent"`.
    let c4 = lab.client_v4().to_string();
    let c6 = lab.client_v6().to_string();
    let access = wait_for_lines(
        access_log,
        &[
            &format!("{c4} - - ["),
            "\"POST /login HTTP/1.1\" 200 ",
            "\"POST /login HTTP/1.1\" 403 ",
            "\"GET /notifications HTTP/1.1\" 200 ",
            "\"GET /notifications HTTP/1.1\" 401 ",
            "\"GET /items/5 HTTP/1.1\" 200 ",
            "\"GET /items/999999 HTTP/1.1\" 404 ",
        ],
    );
    let logins: Vec<&str> = access.lines().filter(|l| l.contains("/login")).collect();
    assert_eq!(logins.len(), 3, "{access}");
    assert!(
        logins[0].starts_with(&format!("{c4} - - [")),
        "{}",
        logins[0]
    );
    assert!(
        logins[2].starts_with(&format!("{c6} - - [")),
        "{}",
        logins[2]
    );
    assert!(
        logins.iter().all(|l| l.contains(" \"-\" \"curl/")),
        "referer and user agent: {access}"
    );
}

/// The API's log names the real client and never a secret.
fn check_api_log(lab: &Lab, log: &Path, session: &str) {
    let c4 = lab.client_v4().to_string();
    let c6 = lab.client_v6().to_string();
    let own = wait_for_lines(
        log,
        &[
            &format!("real_ip={c4} forwarded_for={c4} method=POST path=/login status=200 "),
            &format!("real_ip={c4} forwarded_for={c4} method=POST path=/login status=403 "),
            &format!("real_ip={c6} forwarded_for={c6} method=POST path=/login status=403 "),
            "path=/items/999999 status=404 ",
        ],
    );
    for line in own.lines().filter(|l| l.contains("path=/login")) {
        assert!(line.contains(" peer=127.0.0.1:"), "{line}");
        assert!(line.contains(" account=user0001 login="), "{line}");
    }
    let token = session.trim_start_matches("session=");
    for secret in ["pw-0001", "wrong", token] {
        assert!(
            !own.contains(secret),
            "the API log holds {secret:?}:\n{own}"
        );
    }
}
