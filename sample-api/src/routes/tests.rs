//! The handlers, driven in process: a table of requests and their answers, then the login
//! flow, the login delay, the body limit and hostile input.
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Frame;
use hyper::{HeaderMap, Request, StatusCode};

use super::{App, MAX_BODY, Routed, handle};
use crate::access_log::LoginOutcome;
use crate::accounts::Accounts;

/// An app with 100 accounts, 1000 items and no login delay.
fn app() -> App {
    App::new(Accounts::new(100), 1000, Duration::ZERO)
}

/// One answer, taken apart.
struct Answer {
    /// The status.
    status: StatusCode,
    /// The headers.
    headers: HeaderMap,
    /// The body as text.
    body: String,
    /// What the login handler noted.
    routed_login: Option<(Option<String>, LoginOutcome)>,
}

/// Sends `method uri` with `headers` and `body` to `app`.
async fn send(app: &App, method: &str, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    for &(name, value) in headers {
        req = req.header(name, value);
    }
    let req = req
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("a valid test request");
    answer(handle(app, req).await).await
}

/// Takes a handler's answer apart.
async fn answer(routed: Routed) -> Answer {
    let (parts, body) = routed.response.into_parts();
    let body = body.collect().await.expect("full body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(body.to_vec()).expect("utf-8 body"),
        routed_login: routed.login.map(|n| (n.account, n.outcome)),
    }
}

/// The form content type.
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
/// The JSON content type.
const JSON: (&str, &str) = ("content-type", "application/json; charset=utf-8");

/// One request and what must come back.
struct Case {
    /// The method.
    method: &'static str,
    /// The request target.
    uri: &'static str,
    /// Request headers.
    headers: &'static [(&'static str, &'static str)],
    /// The request body.
    body: &'static str,
    /// The expected status.
    status: u16,
    /// A substring the body must contain.
    contains: &'static str,
}

/// Shorthand for a [`Case`].
const fn case(
    method: &'static str,
    uri: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    status: u16,
    contains: &'static str,
) -> Case {
    Case {
        method,
        uri,
        headers,
        body,
        status,
        contains,
    }
}

// One case a line: a table reads better than rustfmt's one argument a line.
#[rustfmt::skip]
const CASES: &[Case] = &[
    case("GET", "/health", &[], "", 200, "ok"),
    case("HEAD", "/health", &[], "", 200, ""),
    case("POST", "/health", &[], "", 405, "method not allowed"),
    case("GET", "/login", &[], "", 200, "<form method=\"post\" action=\"/login\">"),
    case("PUT", "/login", &[], "", 405, "method not allowed"),
    case("POST", "/login", &[FORM], "username=user0001&password=pw-0001", 200, r#"{"login":"ok"}"#),
    case("POST", "/login", &[], "username=user0001&password=pw-0001", 200, r#"{"login":"ok"}"#),
    case("POST", "/login", &[JSON], r#"{"username":"user0099","password":"pw-0099"}"#, 200, "ok"),
    case("POST", "/login", &[FORM], "username=user0001&password=pw-0002", 403, r#"{"error":"invalid credentials"}"#),
    case("POST", "/login", &[FORM], "username=user0100&password=pw-0100", 403, "invalid credentials"),
    case("POST", "/login", &[FORM], "username=&password=", 403, "invalid credentials"),
    case("POST", "/login", &[JSON], r#"{"username":"user0001","password":"x"}"#, 403, "invalid credentials"),
    case("POST", "/login", &[FORM], "username=user0001", 400, "expected username and password"),
    case("POST", "/login", &[FORM], "username=%zz&password=pw-0001", 400, "expected"),
    case("POST", "/login", &[FORM], "", 400, "expected"),
    case("POST", "/login", &[JSON], r#"{"username":"user0001"}"#, 400, "expected"),
    case("POST", "/login", &[JSON], r#"{"username":1,"password":2}"#, 400, "expected"),
    case("POST", "/login", &[JSON], "{not json", 400, "expected"),
    case("POST", "/login", &[JSON], "username=user0001&password=pw-0001", 400, "expected"),
    case("POST", "/login", &[("content-type", "text/plain")], "x", 415, "application/json"),
    case("GET", "/me", &[], "", 401, "not logged in"),
    case("GET", "/me", &[("cookie", "session=00000000000000000000000000000000")], "", 401, "not logged in"),
    case("GET", "/notifications", &[], "", 401, "not logged in"),
    case("GET", "/notifications", &[("cookie", "session=../../etc/passwd")], "", 401, "not logged in"),
    case("DELETE", "/notifications", &[], "", 405, "method not allowed"),
    case("GET", "/logout", &[], "", 200, r#"{"logout":"ok"}"#),
    case("PUT", "/logout", &[], "", 405, ""),
    case("GET", "/items/5", &[], "", 200, r#""id":5,"name":"crimson anchor""#),
    case("GET", "/items/1", &[], "", 200, r#""id":1"#),
    case("GET", "/items/1000", &[], "", 200, r#""id":1000"#),
    case("GET", "/items/1001", &[], "", 404, "no such item"),
    case("GET", "/items/0", &[], "", 404, "no such item"),
    case("GET", "/items/999999", &[], "", 404, "no such item"),
    case("GET", "/items/99999999999999999999999999", &[], "", 404, "no such item"),
    case("GET", "/items/abc", &[], "", 400, "item ids are numbers"),
    case("GET", "/items/-1", &[], "", 400, "item ids are numbers"),
    case("GET", "/items/5/x", &[], "", 400, "item ids are numbers"),
    case("GET", "/items/", &[], "", 400, "item ids are numbers"),
    case("GET", "/items/5?x=1", &[], "", 200, r#""id":5"#),
    case("POST", "/items/5", &[], "", 405, ""),
    case("GET", "/items", &[], "", 404, "not found"),
    case("GET", "/search?q=crimson+anchor", &[], "", 200, r#""results":[{"id":5,"#),
    case("GET", "/search?q=LAMP&page=2", &[], "", 200, r#""query":"LAMP""#),
    case("GET", "/search?q=zzz", &[], "", 200, r#""results":[]"#),
    case("GET", "/search?q=%22%3Cscript%3E", &[], "", 200, r#""query":"\"<script>""#),
    case("GET", "/search", &[], "", 400, "missing q"),
    case("GET", "/search?q=", &[], "", 400, "missing q"),
    case("GET", "/search?q=+++", &[], "", 400, "missing q"),
    case("GET", "/search?q=%", &[], "", 400, "bad query string"),
    case("GET", "/search?q=%ff", &[], "", 400, "bad query string"),
    case("GET", "/", &[], "", 404, r#"{"error":"not found"}"#),
    case("GET", "/admin", &[], "", 404, "not found"),
    case("DELETE", "/admin", &[], "", 404, "not found"),
    case("GET", "/health/", &[], "", 404, "not found"),
];

#[tokio::test]
async fn every_route_answers_as_documented() {
    let app = app();
    for c in CASES {
        let a = send(&app, c.method, c.uri, c.headers, c.body.as_bytes()).await;
        let what = format!("{} {} {:?}", c.method, c.uri, c.body);
        assert_eq!(a.status.as_u16(), c.status, "{what}: {}", a.body);
        assert!(a.body.contains(c.contains), "{what}: body {:?}", a.body);
        if c.status == 405 {
            assert!(a.headers.contains_key("allow"), "{what}: no Allow header");
        }
        let content_type = a.headers.get("content-type").expect("a content type");
        if !a.body.is_empty() && !a.body.starts_with('<') && a.body != "ok\n" {
            assert_eq!(content_type, "application/json", "{what}");
            serde_json::from_str::<serde_json::Value>(&a.body)
                .unwrap_or_else(|e| panic!("{what}: not JSON: {e}: {:?}", a.body));
        }
    }
}

#[tokio::test]
async fn search_for_a_long_query_is_refused() {
    let app = app();
    let uri = format!("/search?q={}", "a".repeat(super::MAX_QUERY + 1));
    assert_eq!(send(&app, "GET", &uri, &[], b"").await.status, 400);
}

/// The `session=...` pair of a `Set-Cookie` header.
fn session_pair(a: &Answer) -> String {
    let cookie = a
        .headers
        .get("set-cookie")
        .expect("a set-cookie header")
        .to_str()
        .expect("ascii cookie");
    let (pair, attrs) = cookie.split_once(';').expect("cookie attributes");
    assert_eq!(attrs, " Path=/; HttpOnly", "{cookie}");
    pair.to_owned()
}

#[tokio::test]
async fn a_login_opens_a_session_that_logout_closes() {
    let app = app();
    let a = send(
        &app,
        "POST",
        "/login",
        &[FORM],
        b"username=user0042&password=pw-0042",
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.routed_login,
        Some((Some("user0042".to_owned()), LoginOutcome::Ok))
    );
    let pair = session_pair(&a);
    let token = pair.strip_prefix("session=").expect("named session");
    assert_eq!(token.len(), 32, "{pair}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{pair}");

    let cookie = format!("theme=dark; {pair}; lang=en");
    let with = [("cookie", cookie.as_str())];
    let me = send(&app, "GET", "/me", &with, b"").await;
    assert_eq!(
        (me.status.as_u16(), me.body.as_str()),
        (200, "{\"account\":\"user0042\"}\n")
    );
    for polls in 1..=3 {
        let n = send(&app, "GET", "/notifications", &with, b"").await;
        assert_eq!(n.status, 200, "{}", n.body);
        assert!(n.body.contains(&format!("\"polls\":{polls}")), "{}", n.body);
        assert!(n.body.contains("\"unread\":0"), "{}", n.body);
    }

    // A second login has its own session.
    let b = send(
        &app,
        "POST",
        "/login",
        &[JSON],
        br#"{"username":"user0042","password":"pw-0042"}"#,
    )
    .await;
    assert_ne!(session_pair(&b), pair);

    let out = send(&app, "GET", "/logout", &with, b"").await;
    assert_eq!(out.status, 200);
    let cleared = out.headers.get("set-cookie").expect("cleared cookie");
    assert_eq!(cleared, "session=; Path=/; HttpOnly; Max-Age=0");
    assert_eq!(send(&app, "GET", "/me", &with, b"").await.status, 401);
    assert_eq!(
        send(&app, "GET", "/notifications", &with, b"").await.status,
        401
    );
    assert_eq!(
        app.sessions.len(),
        1,
        "only the second login's session is left"
    );
}

#[tokio::test]
async fn failed_and_malformed_logins_are_noted_without_a_cookie() {
    let app = app();
    let a = send(
        &app,
        "POST",
        "/login",
        &[FORM],
        b"username=user0001&password=nope",
    )
    .await;
    assert_eq!(a.status, 403);
    assert!(!a.headers.contains_key("set-cookie"));
    assert_eq!(
        a.routed_login,
        Some((Some("user0001".to_owned()), LoginOutcome::Failed))
    );
    let b = send(&app, "POST", "/login", &[JSON], b"[]").await;
    assert_eq!(b.status, 400);
    assert_eq!(b.routed_login, Some((None, LoginOutcome::Malformed)));
    assert!(
        send(&app, "GET", "/health", &[], b"")
            .await
            .routed_login
            .is_none()
    );
    assert!(app.sessions.is_empty());
}

#[tokio::test]
async fn every_credential_check_takes_the_login_delay() {
    let app = App::new(Accounts::new(10), 10, Duration::from_millis(50));
    for (body, status) in [
        (&b"username=user0001&password=pw-0001"[..], 200),
        (b"username=user0001&password=wrong", 403),
        (b"username=nobody&password=wrong", 403),
    ] {
        let start = Instant::now();
        let a = send(&app, "POST", "/login", &[FORM], body).await;
        let took = start.elapsed();
        assert_eq!(a.status, status);
        assert!(took >= Duration::from_millis(50), "{status} after {took:?}");
    }
    // A malformed body is refused at once.
    let start = Instant::now();
    assert_eq!(send(&app, "POST", "/login", &[FORM], b"").await.status, 400);
    assert!(start.elapsed() < Duration::from_millis(50));
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let app = app();
    let big = format!(
        "username=user0001&password=pw-0001&pad={}",
        "x".repeat(MAX_BODY)
    );
    let a = send(&app, "POST", "/login", &[FORM], big.as_bytes()).await;
    assert_eq!(a.status, 413, "{}", a.body);
    assert_eq!(a.routed_login, Some((None, LoginOutcome::Malformed)));
    // Declared too large: refused before reading.
    let a = send(
        &app,
        "POST",
        "/login",
        &[FORM, ("content-length", "99999999")],
        b"",
    )
    .await;
    assert_eq!(a.status, 413);
    // Exactly at the limit is read.
    let mut at_limit = b"username=user0001&password=pw-0001&pad=".to_vec();
    at_limit.resize(MAX_BODY, b'x');
    assert_eq!(
        send(&app, "POST", "/login", &[FORM], &at_limit)
            .await
            .status,
        200
    );

    // A streamed (chunked) body of many small frames is cut at the limit too.
    let frames = (0..MAX_BODY / 100 + 2)
        .map(|_| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![b'a'; 100]))));
    let req = Request::post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(FrameIter(frames))
        .expect("request");
    assert_eq!(answer(handle(&app, req).await).await.status, 413);
}

/// A body whose frames come from an iterator, always ready and with no size hint (a chunked
/// upload).
struct FrameIter<I>(I);

impl<I: Iterator + Unpin> hyper::body::Body for FrameIter<I>
where
    I::Item: Into<Result<Frame<Bytes>, std::convert::Infallible>>,
{
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.next().map(Into::into))
    }
}
