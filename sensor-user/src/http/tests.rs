//! Connection-level tests of [`HttpConn`]: conversations as tables of chunks in, transactions
//! out; chunking invariance; holes and losses; hostile shapes; identities; proxies; secrets;
//! memory; and properties over arbitrary input.

use std::fmt::Write as _;
use std::sync::Arc;

use proptest::prelude::*;

use super::identity::{b64, b64url};
use super::*;
use crate::segment::{Chunk, Dir};

const CLIENT: &str = "198.51.100.10:40000";
const PROXY: &str = "203.0.113.5:40000";
const SERVER: &str = "203.0.113.80:80";

/// One input event of a conversation.
#[derive(Clone, Debug)]
enum Ev {
    Req(Vec<u8>),
    Resp(Vec<u8>),
    ReqHole(u32),
    RespHole(u32),
    ReqLost(u32),
    RespLost(u32),
}

fn req(s: impl AsRef<[u8]>) -> Ev {
    Ev::Req(s.as_ref().to_vec())
}

fn resp(s: impl AsRef<[u8]>) -> Ev {
    Ev::Resp(s.as_ref().to_vec())
}

fn config() -> HttpConfig {
    HttpConfig {
        login_routes: vec![
            LoginRoute {
                method: "POST".into(),
                path: "/login".into(),
                account_field: "username".into(),
                success_status: vec![200, 302],
                failure_status: vec![401, 403],
                success_set_cookie: None,
            },
            LoginRoute {
                method: "POST".into(),
                path: "/api/session".into(),
                account_field: "user.email".into(),
                success_status: vec![],
                failure_status: vec![401],
                success_set_cookie: Some("sid".into()),
            },
        ],
        trusted_proxies: vec!["203.0.113.0/24".parse().expect("net")],
        ..HttpConfig::default()
    }
}

fn meta(peer: &str) -> ConnMeta {
    ConnMeta {
        client: peer.parse().expect("peer"),
        server: SERVER.parse().expect("server"),
    }
}

/// Feeds events (event `i` at time `(i + 1) * 1000`), closes, returns the transactions.
fn run_with(cfg: &HttpConfig, peer: &str, events: &[Ev]) -> Vec<Transaction> {
    let mut conn = HttpConn::new(Arc::new(cfg.clone()), meta(peer));
    let mut out = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        let ts = (i as u64 + 1) * 1000;
        feed(&mut conn, ts, ev, &mut out);
    }
    conn.on_close(u64::MAX, &mut out);
    assert_eq!(
        conn.memory(),
        std::mem::size_of::<HttpConn>(),
        "a closed connection holds nothing"
    );
    out
}

fn feed(conn: &mut HttpConn, ts: u64, ev: &Ev, out: &mut Vec<Transaction>) {
    match ev {
        Ev::Req(d) => conn.on_chunk(Dir::ToServer, ts, Chunk::Data(d), out),
        Ev::Resp(d) => conn.on_chunk(Dir::ToClient, ts, Chunk::Data(d), out),
        Ev::ReqHole(n) => conn.on_chunk(Dir::ToServer, ts, Chunk::Uncaptured(*n), out),
        Ev::RespHole(n) => conn.on_chunk(Dir::ToClient, ts, Chunk::Uncaptured(*n), out),
        Ev::ReqLost(n) => conn.on_chunk(Dir::ToServer, ts, Chunk::Lost(*n), out),
        Ev::RespLost(n) => conn.on_chunk(Dir::ToClient, ts, Chunk::Lost(*n), out),
    }
}

fn run(events: &[Ev]) -> Vec<Transaction> {
    run_with(&config(), CLIENT, events)
}

/// `METHOD PATH STATUS +flag,flag` with `-` for empty fields.
fn line(tx: &Transaction) -> String {
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    let mut s = format!(
        "{} {} {}",
        dash(&tx.method),
        dash(&tx.path),
        tx.status.map_or("-".to_owned(), |c| c.to_string())
    );
    if !tx.flags.is_empty() {
        let names: Vec<_> = tx.flags.iter().map(Flag::name).collect();
        let _ = write!(s, " +{}", names.join(","));
    }
    s
}

#[track_caller]
fn check_lines(name: &str, events: &[Ev], expected: &[&str]) {
    let got: Vec<String> = run(events).iter().map(line).collect();
    assert_eq!(got, expected, "case {name:?}");
}

fn chunked(parts: &[&str]) -> String {
    let mut body = String::new();
    for p in parts {
        let _ = write!(body, "{:x};ext=1\r\n{p}\r\n", p.len());
    }
    body.push_str("0\r\nX-Trailer: t\r\n\r\n");
    body
}

#[test]
#[expect(clippy::too_many_lines, reason = "one table of cases")]
fn pipelines_requests_and_responses() {
    let get = |p: &str| format!("GET {p} HTTP/1.1\r\nHost: h\r\n\r\n");
    let ok = |body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let cases: Vec<(&str, Vec<Ev>, Vec<&str>)> = vec![
        (
            "two requests in one chunk, two responses in one chunk",
            vec![
                req(get("/a") + &get("/b")),
                resp(ok("x") + "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            ],
            vec!["GET /a 200", "GET /b 404"],
        ),
        (
            "content-length body then a request",
            vec![
                req(format!(
                    "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello{}",
                    get("/n")
                )),
                resp(ok("1") + &ok("22")),
            ],
            vec!["POST /p 200", "GET /n 200"],
        ),
        (
            "chunked request body with extensions and trailers",
            vec![
                req(format!(
                    "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{}{}",
                    chunked(&["abc", "GET / HTTP/1.1\r\n"]),
                    get("/after")
                )),
                resp(ok("") + &ok("")),
            ],
            vec!["POST /c 200", "GET /after 200"],
        ),
        (
            "chunked response then another",
            vec![
                req(get("/1") + &get("/2")),
                resp(
                    format!(
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{}",
                        chunked(&["hello", "HTTP/1.1 500 x\r\n"])
                    ) + &ok("z"),
                ),
            ],
            vec!["GET /1 200", "GET /2 200"],
        ),
        (
            "HEAD, 204 and 304 have no body",
            vec![
                req(format!(
                    "HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n{}{}{}",
                    get("/nc"),
                    get("/nm"),
                    get("/last")
                )),
                resp(
                    "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n\
                     HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n\
                     HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n\
                     HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
                ),
            ],
            vec!["HEAD /h 200", "GET /nc 204", "GET /nm 304", "GET /last 201"],
        ),
        (
            "interim 100 and 103 responses are not paired",
            vec![
                req(
                    "POST /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
                ),
                resp("HTTP/1.1 100 Continue\r\n\r\n"),
                req("ok"),
                resp(
                    "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
                ),
            ],
            vec!["POST /up 201"],
        ),
        (
            "response read until close",
            vec![
                req("GET /old HTTP/1.0\r\n\r\n"),
                resp("HTTP/1.0 200 OK\r\n\r\nHTTP/1.1 404 body text"),
            ],
            vec!["GET /old 200"],
        ),
        (
            "response before the request body ends",
            vec![
                req("POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n0123456789"),
                resp("HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n"),
                req("x".repeat(90)),
                req(get("/next")),
                resp(ok("")),
            ],
            vec!["POST /big 413", "GET /next 200"],
        ),
        (
            "request without response",
            vec![req(get("/a") + &get("/b")), resp(ok(""))],
            vec!["GET /a 200", "GET /b -"],
        ),
        (
            "response without request",
            vec![resp(ok("abc"))],
            vec!["- - 200 +unmatched_response"],
        ),
        (
            "101 switches both directions to a tunnel",
            vec![
                req(
                    "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                ),
                resp(
                    &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"
                        [..],
                ),
                req(&b"\x81\x85GET / HTTP/1.1\r\n\r\n"[..]),
            ],
            vec!["GET /ws 101"],
        ),
        (
            "CONNECT tunnels after a 2xx",
            vec![
                req(
                    "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01",
                ),
                resp(
                    "HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x03HTTP/1.1 200 OK\r\n\r\n",
                ),
            ],
            vec!["CONNECT - 200"],
        ),
        (
            "empty lines between requests",
            vec![
                req(format!("\r\n{}\r\n\n{}", get("/a"), get("/b"))),
                resp(ok("") + "\r\n" + &ok("")),
            ],
            vec!["GET /a 200", "GET /b 200"],
        ),
        (
            "HTTP/1.0 request without Host is fine, HTTP/1.1 is flagged",
            vec![req(
                "GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
            )],
            vec![
                "GET /a -",
                "GET /b - +missing_host",
                "GET /c - +multiple_host",
            ],
        ),
    ];
    for (name, events, expected) in &cases {
        check_lines(name, events, expected);
    }
}

#[test]
fn counts_sizes_and_latency() {
    let head = "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    let body = chunked(&["hello", "world!"]);
    let interim = "HTTP/1.1 100 Continue\r\n\r\n";
    let final_head = "HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n";
    let events = [
        req(head),
        resp(interim),
        req(&body),
        resp(final_head),
        resp("a".repeat(100)),
        Ev::RespHole(200),
    ];
    let txs = run(&events);
    assert_eq!(txs.len(), 1, "{txs:?}");
    let tx = &txs[0];
    assert_eq!(tx.req_bytes, (head.len() + body.len()) as u64);
    assert_eq!(
        tx.resp_bytes,
        (interim.len() + final_head.len() + 300) as u64
    );
    assert_eq!(tx.ts_ns, 1000, "request time is its first byte's chunk");
    assert_eq!(
        tx.latency_ns,
        Some(3000),
        "latency runs to the final response's first byte"
    );
    assert_eq!(tx.reason.as_deref(), Some("OK"));
    assert_eq!(tx.version, Some(HttpVersion::Http11));
    assert!(tx.flags.is_empty(), "{:?}", tx.flags);
}

/// Conversations whose result must not depend on where chunk boundaries fall.
fn split_conversations() -> Vec<(&'static str, String, String)> {
    let big = format!("GET /big HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "p".repeat(400));
    vec![
        (
            "pipelined with bodies",
            format!(
                "GET /a?x=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: t/1\r\nCookie: sid=abc\r\n\r\n\
                 POST /login HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 27\r\n\r\n\
                 username=alice&password=pw1\
                 PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{}",
                chunked(&["abc", "defgh"])
            ),
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc\
                 HTTP/1.1 302 Found\r\nSet-Cookie: sid=new; Path=/\r\nContent-Length: 0\r\n\r\n\
                 HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n{}",
                chunked(&["x"])
            ),
        ),
        (
            "garbage, NUL, and recovery",
            "\x16\x03\x01\x00\x05hello GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b\x00 HTTP/1.1\r\n\r\nPUT /pot HTTP/1.1\r\nHost: h\r\n\r\n"
                .to_owned(),
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nxxHTTP/1.1 418 Teapot\r\n\r\n"
                .to_owned(),
        ),
        (
            "head too large then recovery",
            format!("{big}GET /small HTTP/1.1\r\nHost: h\r\n\r\n"),
            "HTTP/1.1 431 Too Large\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_owned(),
        ),
        (
            "proxy v1 header from an untrusted peer",
            "PROXY TCP4 198.51.100.7 203.0.113.80 40000 80\r\nGET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 198.51.100.8\r\n\r\n"
                .to_owned(),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_owned(),
        ),
        (
            "smuggling shapes",
            "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
             POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxGET /c HTTP/1.1\r\nHost: h\r\n\r\n\
             GET /d HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\nGET /e HTTP/1.1\r\nHost: h\r\n\r\n"
                .to_owned(),
            String::new(),
        ),
        (
            "bytes invalid anywhere in a head",
            "G\x0bET / HTTP/1.1\r\n\r\n".to_owned(),
            "HTTP/1.1 100 Continue\r\n\x00\x00".to_owned(),
        ),
        (
            "response without length, HTTP/1.0",
            "GET / HTTP/1.0\r\n\r\n".to_owned(),
            "HTTP/1.0 200 OK\r\nServer: x\r\n\r\n<html>HTTP/1.1 200 OK\r\n</html>".to_owned(),
        ),
    ]
}

fn split_config() -> HttpConfig {
    HttpConfig {
        limits: HttpLimits {
            max_head_bytes: 256,
            ..HttpLimits::default()
        },
        ..config()
    }
}

/// Feeds the request stream in `req_pieces`, then the response stream in `resp_pieces`, all
/// at fixed times so the result depends on nothing but the bytes.
fn run_pieces(cfg: &HttpConfig, req_pieces: &[&[u8]], resp_pieces: &[&[u8]]) -> Vec<Transaction> {
    let mut conn = HttpConn::new(Arc::new(cfg.clone()), meta(CLIENT));
    let mut out = Vec::new();
    for p in req_pieces {
        conn.on_chunk(Dir::ToServer, 1000, Chunk::Data(p), &mut out);
    }
    for p in resp_pieces {
        conn.on_chunk(Dir::ToClient, 2000, Chunk::Data(p), &mut out);
    }
    conn.on_close(3000, &mut out);
    out
}

#[test]
fn results_do_not_depend_on_chunk_boundaries() {
    let cfg = split_config();
    for (name, reqs, resps) in split_conversations() {
        let (reqs, resps) = (reqs.as_bytes(), resps.as_bytes());
        let whole = run_pieces(&cfg, &[reqs], &[resps]);
        assert!(!whole.is_empty(), "case {name:?} yields transactions");
        for k in 0..=reqs.len() {
            let (a, b) = reqs.split_at(k);
            assert_eq!(
                run_pieces(&cfg, &[a, b], &[resps]),
                whole,
                "case {name:?}: request split at {k}"
            );
        }
        for k in 0..=resps.len() {
            let (a, b) = resps.split_at(k);
            assert_eq!(
                run_pieces(&cfg, &[reqs], &[a, b]),
                whole,
                "case {name:?}: response split at {k}"
            );
        }
        let bytes_req: Vec<&[u8]> = reqs.chunks(1).collect();
        let bytes_resp: Vec<&[u8]> = resps.chunks(1).collect();
        assert_eq!(
            run_pieces(&cfg, &bytes_req, &bytes_resp),
            whole,
            "case {name:?}: byte by byte"
        );
    }
}

#[test]
fn split_conversations_parse_as_expected() {
    let cfg = split_config();
    let expected: [&[&str]; 7] = [
        &["GET /a 200", "POST /login 302", "PUT /c 201"],
        &[
            "- - 400 +invalid_request",
            "GET /a 200 +resync",
            "GET - - +invalid_request,invalid_response,nul_byte",
            "PUT /pot 418 +resync",
        ],
        &["GET /big 431 +head_too_large", "GET /small 200 +resync"],
        &["GET / 200 +forwarded_from_untrusted"],
        &[
            "POST /a - +content_length_and_transfer_encoding",
            "POST /b - +conflicting_content_length",
            "GET /c - +resync",
            "GET /d - +invalid_request,obfuscated_transfer_encoding",
            "GET /e - +resync",
        ],
        &["- - 100 +invalid_request,invalid_response,nul_byte"],
        &["GET / 200"],
    ];
    for ((name, reqs, resps), want) in split_conversations().iter().zip(expected) {
        let got: Vec<String> = run_pieces(&cfg, &[reqs.as_bytes()], &[resps.as_bytes()])
            .iter()
            .map(line)
            .collect();
        assert_eq!(got, want, "case {name:?}");
    }
}

#[test]
fn skips_uncaptured_body_bytes_by_length() {
    let post = |len: usize, body: &str| {
        format!("POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: {len}\r\n\r\n{body}")
    };
    let te = "POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    let next = "GET /next HTTP/1.1\r\nHost: h\r\n\r\n";
    let cases: Vec<(&str, Vec<Ev>, Vec<&str>)> = vec![
        (
            "hole inside a content-length body",
            vec![req(post(100, "0123456789")), Ev::ReqHole(90), req(next)],
            vec!["POST /u -", "GET /next -"],
        ),
        (
            "hole ending exactly at the body end, next in the same segment",
            vec![req(post(10, "01234")), Ev::ReqHole(5), req(next)],
            vec!["POST /u -", "GET /next -"],
        ),
        (
            "hole running past the body into the next request",
            vec![
                req(post(10, "01234")),
                Ev::ReqHole(20),
                req("nored\r\n\r\n"),
                req(next),
            ],
            vec!["POST /u -", "GET /next - +resync"],
        ),
        (
            "hole inside chunk data",
            vec![
                req(format!("{te}20\r\n0123")),
                Ev::ReqHole(28),
                req(format!("\r\n0\r\n\r\n{next}")),
            ],
            vec!["POST /u -", "GET /next -"],
        ),
        (
            "hole past chunk data: framing unknown",
            vec![
                req(format!("{te}5\r\n01")),
                Ev::ReqHole(40),
                req(format!("3\r\nabc\r\n0\r\n\r\n{next}")),
            ],
            vec!["POST /u - +incomplete_request", "GET /next - +resync"],
        ),
        (
            "head cut by a hole",
            vec![
                req("GET /cut?a=1 HTTP/1.1\r\nHost: h\r\nX-Long: aaaa"),
                Ev::ReqHole(3000),
                req(next),
            ],
            vec![
                "GET /cut - +head_truncated,incomplete_request",
                "GET /next - +resync",
            ],
        ),
        (
            "request line cut by a hole",
            vec![req("GET /cu"), Ev::ReqHole(3000), req(next)],
            vec![
                "GET - - +head_truncated,incomplete_request",
                "GET /next - +resync",
            ],
        ),
        (
            "response body partly captured",
            vec![
                req(format!("GET /r HTTP/1.1\r\nHost: h\r\n\r\n{next}")),
                resp("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n<html>"),
                Ev::RespHole(4994),
                resp("HTTP/1.1 204 No Content\r\n\r\n"),
            ],
            vec!["GET /r 200", "GET /next 204"],
        ),
        (
            "uncaptured bytes while resynchronising",
            vec![
                req("\x00garbage"),
                Ev::ReqHole(10),
                req(format!("more{next}")),
            ],
            vec!["- - - +invalid_request,nul_byte", "GET /next - +resync"],
        ),
    ];
    for (name, events, expected) in &cases {
        check_lines(name, events, expected);
    }
}

#[test]
fn resynchronises_after_loss() {
    let get = |p: &str| format!("GET {p} HTTP/1.1\r\nHost: h\r\n\r\n");
    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let cases: Vec<(&str, Vec<Ev>, Vec<&str>)> = vec![
        (
            "loss between requests",
            vec![req(get("/a")), Ev::ReqLost(50), req(get("/b"))],
            vec!["GET /a -", "GET /b - +resync"],
        ),
        (
            "loss mid request line, scan finds the next one",
            vec![
                req(get("/a")),
                Ev::ReqLost(5),
                req(format!("ers=1 HTTP/1.1\r\nHost: h\r\n\r\n{}", get("/c"))),
            ],
            vec!["GET /a -", "GET /c - +resync"],
        ),
        (
            "loss inside a content-length body keeps the boundary",
            vec![
                req("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 20\r\n\r\n0123"),
                Ev::ReqLost(10),
                req(format!("456789{}", get("/n"))),
            ],
            vec!["POST /p - +gap", "GET /n -"],
        ),
        (
            "loss inside chunk data keeps the framing",
            vec![
                req("POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n01"),
                Ev::ReqLost(10),
                req(format!("cdef\r\n0\r\n\r\n{}", get("/n"))),
            ],
            vec!["POST /p - +gap", "GET /n -"],
        ),
        (
            "loss over chunk framing",
            vec![
                req("POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab"),
                Ev::ReqLost(30),
                req(format!("ef\r\n0\r\n\r\n{}", get("/n"))),
            ],
            vec!["POST /p - +gap,incomplete_request", "GET /n - +resync"],
        ),
        (
            "loss inside a head",
            vec![
                req("GET /h HTTP/1.1\r\nHost: h\r\nAcc"),
                Ev::ReqLost(100),
                req(get("/n")),
            ],
            vec![
                "GET /h - +gap,head_truncated,incomplete_request",
                "GET /n - +resync",
            ],
        ),
        (
            "loss on the response side",
            vec![
                req(get("/a") + &get("/b") + &get("/c")),
                resp("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"),
                Ev::RespLost(200),
                resp(format!("junk{ok}")),
            ],
            vec!["GET /a 200 +gap", "GET /b 200 +resync", "GET /c -"],
        ),
        (
            "loss in a read-until-close response",
            vec![
                req(get("/a")),
                resp("HTTP/1.1 200 OK\r\n\r\nabc"),
                Ev::RespLost(20),
                resp("def"),
            ],
            vec!["GET /a 200 +gap"],
        ),
        (
            "start line across chunks while resynchronising",
            vec![
                req(get("/a")),
                Ev::ReqLost(7),
                req("tail of lost body GE"),
                req("T /b HTTP/1.1\r\nHost: h\r\n\r\n"),
            ],
            vec!["GET /a -", "GET /b - +resync"],
        ),
    ];
    for (name, events, expected) in &cases {
        check_lines(name, events, expected);
    }
}

#[test]
#[expect(clippy::too_many_lines, reason = "one table of cases")]
fn flags_hostile_shapes() {
    let flood = (0..150).fold(String::new(), |mut s, i| {
        let _ = write!(s, "X-H{i}: v\r\n");
        s
    });
    let huge = format!(
        "GET /huge HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    let cases: Vec<(&str, Vec<Ev>, Vec<&str>)> = vec![
        (
            "oversized head",
            vec![req(&huge), req("GET /ok HTTP/1.1\r\nHost: h\r\n\r\n")],
            vec!["GET /huge - +head_too_large", "GET /ok - +resync"],
        ),
        (
            "oversized head trickling in",
            huge.as_bytes()
                .chunks(700)
                .map(req)
                .chain([req("GET /ok HTTP/1.1\r\nHost: h\r\n\r\n")])
                .collect(),
            vec!["GET /huge - +head_too_large", "GET /ok - +resync"],
        ),
        (
            "header flood",
            vec![req(format!(
                "GET /f HTTP/1.1\r\nHost: h\r\n{flood}\r\nGET /ok HTTP/1.1\r\nHost: h\r\n\r\n"
            ))],
            vec!["GET /f - +too_many_headers", "GET /ok - +resync"],
        ),
        (
            "NUL in a header",
            vec![req("GET /n HTTP/1.1\r\nHost: h\x00x\r\n\r\n")],
            vec!["GET /n - +invalid_request,nul_byte"],
        ),
        (
            "invalid method",
            vec![req("G(T / HTTP/1.1\r\n\r\n")],
            vec!["- - - +invalid_request"],
        ),
        (
            "lowercase method",
            vec![req("get / HTTP/1.1\r\nHost: h\r\n\r\n")],
            vec!["get / - +unknown_method"],
        ),
        (
            "unknown method",
            vec![req("BREW /pot HTTP/1.1\r\nHost: h\r\n\r\n")],
            vec!["BREW /pot - +unknown_method"],
        ),
        (
            "HTTP/2 preface",
            vec![req("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")],
            vec!["PRI * - +invalid_request"],
        ),
        (
            "content-length and transfer-encoding",
            vec![req(
                "POST /s HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n",
            )],
            vec![
                "POST /s - +content_length_and_transfer_encoding",
                "GET /x -",
            ],
        ),
        (
            "duplicate differing content-length",
            vec![req(
                "POST /s HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabcGET /x HTTP/1.1\r\nHost: h\r\n\r\n",
            )],
            vec!["POST /s - +conflicting_content_length", "GET /x - +resync"],
        ),
        (
            "obfuscated transfer-encoding value",
            vec![req(
                "POST /s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n",
            )],
            vec![
                "POST /s - +obfuscated_transfer_encoding,transfer_encoding_not_chunked",
                "GET /x - +resync",
            ],
        ),
        (
            "transfer-encoding with a space before the colon",
            vec![req(
                "POST /s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
            )],
            vec!["POST /s - +invalid_request,obfuscated_transfer_encoding"],
        ),
        (
            "transfer-encoding with a vertical tab",
            vec![req(
                "POST /s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n",
            )],
            vec!["POST /s - +invalid_request,obfuscated_transfer_encoding"],
        ),
        (
            "repeated transfer-encoding headers",
            vec![req(
                "POST /s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            )],
            vec!["POST /s - +obfuscated_transfer_encoding"],
        ),
        (
            "invalid chunk size",
            vec![req(
                "POST /s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n",
            )],
            vec!["POST /s - +invalid_chunked", "GET /x - +resync"],
        ),
        (
            "binary garbage",
            vec![req([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])],
            vec!["- - - +invalid_request"],
        ),
        (
            "garbage response",
            vec![
                req("GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
                resp("SSH-2.0-OpenSSH\r\n"),
            ],
            vec!["GET / - +invalid_response"],
        ),
        (
            "oversized response head",
            vec![
                req("GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
                resp(format!(
                    "HTTP/1.1 200 OK\r\nX: {}\r\n\r\n",
                    "v".repeat(20_000)
                )),
            ],
            vec!["GET / 200 +head_too_large"],
        ),
    ];
    for (name, events, expected) in &cases {
        check_lines(name, events, expected);
    }
}

#[test]
fn caps_waiting_requests() {
    let cfg = HttpConfig {
        limits: HttpLimits {
            max_pending: 3,
            ..HttpLimits::default()
        },
        ..config()
    };
    let mut conn = HttpConn::new(Arc::new(cfg), meta(CLIENT));
    let mut out = Vec::new();
    let many = (0..10).fold(String::new(), |mut s, i| {
        let _ = write!(s, "GET /{i} HTTP/1.1\r\nHost: h\r\n\r\n");
        s
    });
    conn.on_chunk(Dir::ToServer, 1, Chunk::Data(many.as_bytes()), &mut out);
    let got: Vec<String> = out.iter().map(line).collect();
    let want: Vec<String> = (0..7)
        .map(|i| format!("GET /{i} - +pending_overflow"))
        .collect();
    assert_eq!(got, want);
}

/// Account, whether a session hash is present, login outcome.
type Identity = (Option<String>, Option<String>, Option<LoginOutcome>);

fn identities(events: &[Ev]) -> Vec<Identity> {
    run(events)
        .into_iter()
        .map(|tx| (tx.account, tx.session, tx.login))
        .collect()
}

#[test]
#[expect(clippy::too_many_lines, reason = "one table of cases")]
fn finds_identities() {
    use LoginOutcome::{Failure, Success, Unknown};
    let key = [0u8; 16];
    let hash = |v: &str| Some(identity::session_hash(&key, v.as_bytes()));
    let jwt = format!(
        "{}.{}.c2ln",
        b64url(r#"{"alg":"HS256"}"#),
        b64url(r#"{"sub":"user-42","role":"admin"}"#)
    );
    let form = |body: &str| {
        format!(
            "POST /login HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let json = |body: &str| {
        format!(
            "POST /api/session HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let status =
        |code: u16, extra: &str| format!("HTTP/1.1 {code} X\r\n{extra}Content-Length: 0\r\n\r\n");
    let some = |s: &str| Some(s.to_owned());
    let cases: Vec<(&str, Vec<Ev>, Vec<Identity>)> = vec![
        (
            "basic",
            vec![req(format!(
                "GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Basic {}\r\n\r\n",
                b64("alice:pw")
            ))],
            vec![(some("alice"), None, Some(Unknown))],
        ),
        (
            "JWT bearer",
            vec![req(format!(
                "GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {jwt}\r\n\r\n"
            ))],
            vec![(some("user-42"), hash(&jwt), None)],
        ),
        (
            "opaque bearer",
            vec![req(
                "GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer tok123\r\n\r\n",
            )],
            vec![(None, hash("tok123"), None)],
        ),
        (
            "session cookie wins over bearer",
            vec![req(
                "GET / HTTP/1.1\r\nHost: h\r\nCookie: theme=dark; JSESSIONID=j1\r\nAuthorization: Bearer tok\r\n\r\n",
            )],
            vec![(None, hash("j1"), None)],
        ),
        (
            "unconfigured cookie is not a session",
            vec![req(
                "GET / HTTP/1.1\r\nHost: h\r\nCookie: tracking=abc\r\n\r\n",
            )],
            vec![(None, None, None)],
        ),
        (
            "form login succeeds by status and sets the session",
            vec![
                req(form("username=alice&password=hunter2")),
                resp(status(302, "Set-Cookie: sid=s1; HttpOnly\r\n")),
            ],
            vec![(some("alice"), hash("s1"), Some(Success))],
        ),
        (
            "form login fails by status",
            vec![req(form("password=x&username=bob")), resp(status(401, ""))],
            vec![(some("bob"), None, Some(Failure))],
        ),
        (
            "login status matching no rule",
            vec![req(form("username=carol")), resp(status(500, ""))],
            vec![(some("carol"), None, Some(Unknown))],
        ),
        (
            "login without response",
            vec![req(form("username=dave"))],
            vec![(some("dave"), None, Some(Unknown))],
        ),
        (
            "login body split across chunks",
            vec![
                req("POST /login HTTP/1.1\r\nHost: h\r\nContent-Length: 27\r\n\r\nusern"),
                req("ame=erin&p"),
                req("assword=xyz1"),
                resp(status(200, "")),
            ],
            vec![(some("erin"), None, Some(Success))],
        ),
        (
            "login field in an uncaptured part",
            vec![
                req("POST /login HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\n\r\npassword=x&"),
                Ev::ReqHole(29),
                resp(status(200, "")),
            ],
            vec![(None, None, Some(Success))],
        ),
        (
            "login field captured before a hole",
            vec![
                req("POST /login HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\n\r\nusername=frank&"),
                Ev::ReqHole(25),
                resp(status(200, "")),
            ],
            vec![(some("frank"), None, Some(Success))],
        ),
        (
            "chunked login body",
            vec![
                req(format!(
                    "POST /login HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{}",
                    chunked(&["username=gr", "ace&password=p"])
                )),
                resp(status(302, "")),
            ],
            vec![(some("grace"), None, Some(Success))],
        ),
        (
            "JSON login succeeds by cookie",
            vec![
                req(json(r#"{"user":{"email":"h@example.com"},"password":"p"}"#)),
                resp(status(200, "Set-Cookie: sid=s2\r\n")),
            ],
            vec![(some("h@example.com"), hash("s2"), Some(Success))],
        ),
        (
            "JSON login without the success cookie fails",
            vec![
                req(json(r#"{"user":{"email":"i@example.com"}}"#)),
                resp(status(200, "Set-Cookie: other=1\r\n")),
            ],
            vec![(some("i@example.com"), None, Some(Failure))],
        ),
        (
            "the body field beats the Basic user on a login route",
            vec![req(format!(
                "POST /login HTTP/1.1\r\nHost: h\r\nAuthorization: Basic {}\r\nContent-Length: 12\r\n\r\nusername=joe",
                b64("svc:pw")
            ))],
            vec![(some("joe"), None, Some(Unknown))],
        ),
        (
            "wrong method is not a login",
            vec![
                req("GET /login?username=x HTTP/1.1\r\nHost: h\r\n\r\n"),
                resp(status(200, "")),
            ],
            vec![(None, None, None)],
        ),
        (
            "pipelined logins keep their own outcomes",
            vec![
                req(form("username=k1") + &form("username=k2")),
                resp(status(401, "") + &status(302, "")),
            ],
            vec![
                (some("k1"), None, Some(Failure)),
                (some("k2"), None, Some(Success)),
            ],
        ),
    ];
    for (name, events, expected) in &cases {
        assert_eq!(&identities(events), expected, "case {name:?}");
    }
    let invalid = run(&[req(
        "GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Basic !!!\r\n\r\n",
    )]);
    assert_eq!(line(&invalid[0]), "GET / - +invalid_authorization");
}

/// Identities of one conversation under `cfg`, checked against `expected`.
#[track_caller]
fn check_logins(name: &str, cfg: &HttpConfig, events: &[Ev], expected: &[Identity]) {
    let got: Vec<Identity> = run_with(cfg, CLIENT, events)
        .into_iter()
        .map(|tx| (tx.account, tx.session, tx.login))
        .collect();
    assert_eq!(got, expected, "case {name:?}");
}

/// A `POST` to `target` with a form body (or JSON, when it starts with `{`), no content type.
fn post(target: &str, body: &str) -> Ev {
    req(format!(
        "POST {target} HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

fn status(code: u16) -> Ev {
    resp(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n"))
}

#[test]
fn recognises_login_paths_without_configuration() {
    use LoginOutcome::Failure;
    let cfg = HttpConfig::default();
    let some = |s: &str| Some(s.to_owned());
    for target in [
        "/login",
        "/signin",
        "/auth",
        "/token",
        "/oauth/token",
        "/session",
        "/sessions",
        "/api/v1/login",
        "/LOGIN",
        "/Api/SignIn",
        "/login/",
        "/login?next=/home",
        "/login;jsessionid=abc",
        "/v2/OAuth/Token?grant_type=password",
        "http://example.com/api/session",
    ] {
        check_logins(
            target,
            &cfg,
            &[post(target, "username=u&password=pw"), status(401)],
            &[(some("u"), None, Some(Failure))],
        );
    }
    for target in [
        "/blogin",
        "/login/help",
        "/login//",
        "/loginx",
        "/logins",
        "/my-auth",
        "/tokens",
        "/api/oauth-token",
        "/session/new",
        "/",
        "/search?q=/login",
        "/x#/login",
    ] {
        check_logins(
            target,
            &cfg,
            &[post(target, "username=u&password=pw"), status(401)],
            &[(None, None, None)],
        );
    }
    for method in ["GET", "PUT", "DELETE"] {
        check_logins(
            method,
            &cfg,
            &[
                req(format!(
                    "{method} /login HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nusername=u"
                )),
                status(401),
            ],
            &[(None, None, None)],
        );
    }
    let off = HttpConfig {
        login_path_suffixes: Vec::new(),
        ..HttpConfig::default()
    };
    check_logins(
        "suffix list off",
        &off,
        &[post("/login", "username=u"), status(401)],
        &[(None, None, None)],
    );
    let custom = HttpConfig {
        login_path_suffixes: vec!["/connexion".into()],
        ..HttpConfig::default()
    };
    check_logins(
        "custom suffix",
        &custom,
        &[
            post("/fr/connexion", "username=u"),
            post("/login", "username=v"),
            status(403),
            status(403),
        ],
        &[(some("u"), None, Some(Failure)), (None, None, None)],
    );
}

/// A `GET` to `target` with the Basic credential `alice:pw`.
fn basic(target: &str) -> Ev {
    req(format!(
        "GET {target} HTTP/1.1\r\nHost: h\r\nAuthorization: Basic {}\r\n\r\n",
        b64("alice:pw")
    ))
}

#[test]
fn decides_default_login_outcomes() {
    use LoginOutcome::{Failure, Success, Unknown};
    let cfg = HttpConfig::default();
    let some = |s: &str| Some(s.to_owned());
    for (code, outcome) in [
        (200, Success),
        (201, Success),
        (204, Success),
        (302, Success),
        (303, Success),
        (401, Failure),
        (403, Failure),
        (400, Unknown),
        (404, Unknown),
        (429, Unknown),
        (500, Unknown),
    ] {
        check_logins(
            &format!("path login answered {code}"),
            &cfg,
            &[
                post("/api/v1/login", "email=e%40x.org&password=pw"),
                status(code),
            ],
            &[(some("e@x.org"), None, Some(outcome))],
        );
        check_logins(
            &format!("Basic on a random route answered {code}"),
            &cfg,
            &[basic("/reports/7?page=2"), status(code)],
            &[(some("alice"), None, Some(outcome))],
        );
    }
    check_logins(
        "path login without response",
        &cfg,
        &[post("/signin", "user=bob")],
        &[(some("bob"), None, Some(Unknown))],
    );
    let strict = HttpConfig {
        login_failure_status: vec![400, 401, 403],
        ..HttpConfig::default()
    };
    check_logins(
        "configured failure statuses",
        &strict,
        &[
            post("/oauth/token", "username=u"),
            basic("/x"),
            status(400),
            status(400),
        ],
        &[
            (some("u"), None, Some(Failure)),
            (some("alice"), None, Some(Failure)),
        ],
    );
}

#[test]
fn recognises_basic_logins() {
    use LoginOutcome::{Success, Unknown};
    let cfg = HttpConfig::default();
    let some = |s: &str| Some(s.to_owned());
    check_logins(
        "Basic without response",
        &cfg,
        &[basic("/x")],
        &[(some("alice"), None, Some(Unknown))],
    );
    check_logins(
        "Basic with an empty user name is no login",
        &cfg,
        &[
            req(format!(
                "GET /x HTTP/1.1\r\nHost: h\r\nAuthorization: Basic {}\r\n\r\n",
                b64(":pw")
            )),
            status(401),
        ],
        &[(None, None, None)],
    );
    let jwt = format!("{}.{}.s", b64url("{}"), b64url(r#"{"sub":"u1"}"#));
    check_logins(
        "a JWT bearer is no login",
        &cfg,
        &[
            req(format!(
                "GET /x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {jwt}\r\n\r\n"
            )),
            status(401),
        ],
        &[(
            some("u1"),
            Some(identity::session_hash(&[0; 16], jwt.as_bytes())),
            None,
        )],
    );
    check_logins(
        "the body account beats the Basic user on a login path",
        &cfg,
        &[
            req(format!(
                "POST /auth HTTP/1.1\r\nHost: h\r\nAuthorization: Basic {}\r\nContent-Length: 10\r\n\r\nusername=u",
                b64("alice:pw")
            )),
            status(200),
        ],
        &[(some("u"), None, Some(Success))],
    );
    check_logins(
        "Basic on a POST elsewhere: the body is not read",
        &cfg,
        &[
            req(format!(
                "POST /orders HTTP/1.1\r\nHost: h\r\nAuthorization: Basic {}\r\nContent-Length: 10\r\n\r\nusername=u",
                b64("alice:pw")
            )),
            status(201),
        ],
        &[(some("alice"), None, Some(Success))],
    );
    let no_basic = HttpConfig {
        basic_auth_logins: false,
        ..HttpConfig::default()
    };
    check_logins(
        "Basic logins off",
        &no_basic,
        &[basic("/x"), status(401)],
        &[(some("alice"), None, None)],
    );
}

#[test]
fn reads_default_account_fields() {
    use LoginOutcome::Success;
    let cfg = HttpConfig::default();
    let some = |s: &str| Some(s.to_owned());
    let typed = |content_type: &str, body: &str| {
        req(format!(
            "POST /login HTTP/1.1\r\nHost: h\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    };
    for field in &cfg.account_fields {
        let form = format!("password=pw&{field}=acct%2B1");
        let json = format!(r#"{{"password":"pw","{field}":"acct+1"}}"#);
        for (kind, ev) in [
            ("form", typed("application/x-www-form-urlencoded", &form)),
            ("sniffed form", post("/login", &form)),
            ("JSON", typed("application/json; charset=utf-8", &json)),
            ("sniffed JSON", post("/login", &json)),
        ] {
            check_logins(
                &format!("{kind} field {field}"),
                &cfg,
                &[ev, status(200)],
                &[(some("acct+1"), None, Some(Success))],
            );
        }
    }
    for (name, body, account) in [
        (
            "list order beats body order",
            "email=e&username=u",
            Some("u"),
        ),
        ("empty value skipped", "username=&email=e", Some("e")),
        ("password alone", "password=pw", None),
        ("unknown field", "customer=c&password=pw", None),
        (
            "JSON list order",
            r#"{"login":"l","user":"u","pass":"p"}"#,
            Some("u"),
        ),
        (
            "JSON nested not followed",
            r#"{"user":{"email":"n"}}"#,
            None,
        ),
        (
            "JSON number",
            r#"{"phone":33612345678}"#,
            Some("33612345678"),
        ),
    ] {
        check_logins(
            name,
            &cfg,
            &[post("/login", body), status(200)],
            &[(account.map(str::to_owned), None, Some(Success))],
        );
    }
    let custom = HttpConfig {
        account_fields: vec!["customer_no".into()],
        ..HttpConfig::default()
    };
    check_logins(
        "configured account fields",
        &custom,
        &[post("/login", "username=u&customer_no=c7"), status(200)],
        &[(some("c7"), None, Some(Success))],
    );
}

#[test]
fn explicit_routes_override_default_logins() {
    use LoginOutcome::{Failure, Success, Unknown};
    let route = |path: &str, field: &str, failure: Vec<u16>, cookie: Option<&str>| LoginRoute {
        method: "POST".into(),
        path: path.into(),
        account_field: field.into(),
        success_status: vec![200],
        failure_status: failure,
        success_set_cookie: cookie.map(str::to_owned),
    };
    let cfg = HttpConfig {
        login_routes: vec![
            route("/api/login", "username", vec![400, 401, 403], None),
            route("/login", "user.email", vec![401], Some("sid")),
            route("/start", "username", vec![401], None),
        ],
        ..HttpConfig::default()
    };
    let some = |s: &str| Some(s.to_owned());
    let hash = |v: &str| Some(identity::session_hash(&[0; 16], v.as_bytes()));
    let nested = r#"{"username":"flat","user":{"email":"nested"}}"#;
    for (name, events, expected) in [
        (
            "route failure 400 (default: unknown)",
            vec![post("/api/login", "username=u"), status(400)],
            (some("u"), None, Some(Failure)),
        ),
        (
            "route success only 200 (default: success)",
            vec![post("/api/login", "username=u"), status(201)],
            (some("u"), None, Some(Unknown)),
        ),
        (
            "route field only (default: email)",
            vec![post("/api/login", "email=e"), status(200)],
            (None, None, Some(Success)),
        ),
        (
            "route nested field (default: username)",
            vec![post("/login", nested), status(401)],
            (some("nested"), None, Some(Failure)),
        ),
        (
            "route success cookie (default: success by status)",
            vec![post("/login", nested), status(200)],
            (some("nested"), None, Some(Failure)),
        ),
        (
            "route success cookie set",
            vec![
                post("/login", nested),
                resp("HTTP/1.1 200 X\r\nSet-Cookie: sid=s\r\nContent-Length: 0\r\n\r\n"),
            ],
            (some("nested"), hash("s"), Some(Success)),
        ),
        (
            "route on a path no suffix matches",
            vec![post("/start", "username=u"), status(401)],
            (some("u"), None, Some(Failure)),
        ),
        (
            "route beats Basic",
            vec![
                req(format!(
                    "POST /api/login HTTP/1.1\r\nHost: h\r\nAuthorization: Basic {}\r\nContent-Length: 10\r\n\r\nusername=u",
                    b64("alice:pw")
                )),
                status(400),
            ],
            (some("u"), None, Some(Failure)),
        ),
        (
            "other paths keep the defaults",
            vec![post("/v1/signin", "email=e"), status(400)],
            (some("e"), None, Some(Unknown)),
        ),
    ] {
        check_logins(name, &cfg, &events, &[expected]);
    }
}

#[test]
fn session_hash_uses_the_configured_key() {
    let events = [req("GET / HTTP/1.1\r\nHost: h\r\nCookie: sid=v\r\n\r\n")];
    let with_key = |key: [u8; 16]| {
        let cfg = HttpConfig {
            hash_key: key,
            ..config()
        };
        run_with(&cfg, CLIENT, &events)[0].session.clone()
    };
    assert_eq!(with_key([0; 16]), with_key([0; 16]));
    assert_ne!(with_key([0; 16]), with_key([7; 16]));
}

fn proxy_v2(src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut out = vec![
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0, 12,
    ];
    out.extend_from_slice(&src);
    out.extend_from_slice(&[203, 0, 113, 80]);
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&80u16.to_be_bytes());
    out
}

/// Name, peer, request bytes, expected client, expected flags.
type ProxyCase<'a> = (&'a str, &'a str, Vec<u8>, &'a str, &'a [Flag]);

#[test]
#[expect(clippy::too_many_lines, reason = "one table of cases")]
fn resolves_clients_behind_proxies() {
    let get = |extra: &str| format!("GET / HTTP/1.1\r\nHost: h\r\n{extra}\r\n");
    let v1 = |src: &str| format!("PROXY TCP4 {src} 203.0.113.80 5000 80\r\n");
    let cases: Vec<ProxyCase<'_>> = vec![
        (
            "no proxy",
            CLIENT,
            get("").into_bytes(),
            "198.51.100.10",
            &[],
        ),
        (
            "v1 from trusted",
            PROXY,
            (v1("198.51.100.7") + &get("")).into_bytes(),
            "198.51.100.7",
            &[],
        ),
        (
            "v1 from untrusted",
            CLIENT,
            (v1("198.51.100.7") + &get("")).into_bytes(),
            "198.51.100.10",
            &[Flag::ForwardedFromUntrusted],
        ),
        (
            "v2 from trusted",
            PROXY,
            [proxy_v2([198, 51, 100, 9], 7), get("").into_bytes()].concat(),
            "198.51.100.9",
            &[],
        ),
        (
            "v1 then XFF through a trusted chain",
            PROXY,
            (v1("203.0.113.6") + &get("X-Forwarded-For: 198.51.100.66, 198.51.100.8\r\n"))
                .into_bytes(),
            "198.51.100.8",
            &[],
        ),
        (
            "v1 client sending its own XFF",
            PROXY,
            (v1("198.51.100.7") + &get("X-Forwarded-For: 198.51.100.66\r\n")).into_bytes(),
            "198.51.100.7",
            &[Flag::ForwardedFromUntrusted],
        ),
        (
            "XFF from trusted",
            PROXY,
            get("X-Forwarded-For: 198.51.100.8\r\n").into_bytes(),
            "198.51.100.8",
            &[],
        ),
        (
            "XFF from untrusted",
            CLIENT,
            get("X-Forwarded-For: 198.51.100.8\r\n").into_bytes(),
            "198.51.100.10",
            &[Flag::ForwardedFromUntrusted],
        ),
        (
            "Forwarded from trusted",
            PROXY,
            get("Forwarded: for=\"[2001:db8::5]\"\r\n").into_bytes(),
            "2001:db8::5",
            &[],
        ),
        (
            "Forwarded from untrusted",
            CLIENT,
            get("Forwarded: for=198.51.100.8\r\n").into_bytes(),
            "198.51.100.10",
            &[Flag::ForwardedFromUntrusted],
        ),
        (
            "malformed v1 from trusted",
            PROXY,
            (v1("x.y") + &get("")).into_bytes(),
            "203.0.113.5",
            &[Flag::InvalidForwarded, Flag::InvalidRequest],
        ),
    ];
    for (name, peer, bytes, client, flags) in cases {
        let txs = run_with(&config(), peer, &[Ev::Req(bytes)]);
        let tx = txs
            .first()
            .unwrap_or_else(|| panic!("case {name:?}: no transaction"));
        assert_eq!(
            tx.client,
            client.parse::<std::net::IpAddr>().expect("ip"),
            "case {name:?}"
        );
        assert_eq!(
            tx.peer,
            peer.parse().expect("peer"),
            "case {name:?}: the direct peer is kept"
        );
        let want = flags.iter().fold(Flags::EMPTY, |mut f, x| {
            f.insert(*x);
            f
        });
        assert_eq!(tx.flags, want, "case {name:?}");
        let via = match name {
            "v1 from trusted" | "v2 from trusted" | "v1 client sending its own XFF" => {
                Some(ProxyVia::ProxyProtocol)
            }
            "v1 then XFF through a trusted chain"
            | "XFF from trusted"
            | "Forwarded from trusted" => Some(ProxyVia::Forwarded),
            _ => None,
        };
        assert_eq!(tx.proxy, via, "case {name:?}: how the client was learned");
    }
    // The PROXY header is only read at the start of the stream.
    let late = run_with(
        &config(),
        PROXY,
        &[req(get("") + &v1("198.51.100.7") + &get(""))],
    );
    assert_eq!(
        late.iter().map(line).collect::<Vec<_>>(),
        ["GET / -", "PROXY - - +invalid_request", "GET / - +resync"]
    );
}

#[test]
fn secrets_never_leave() {
    let secrets = [
        "hunter2-basic-pw",
        "sekrit-cookie-value",
        "bearer-opaque-secret",
        "form-password-secret",
        "json-password-secret",
        "query-value-secret",
        "jsessionid-path-secret",
        "set-cookie-secret",
        "jwt-signature-secret",
    ];
    let basic = b64("alice:hunter2-basic-pw");
    let jwt = format!(
        "{}.{}.jwt-signature-secret",
        b64url("{}"),
        b64url(r#"{"sub":"u1"}"#)
    );
    let form = "username=bob&password=form-password-secret";
    let json = r#"{"user":{"email":"c@example.com"},"password":"json-password-secret"}"#;
    let requests = [
        format!(
            "GET /a;jsessionid=jsessionid-path-secret?token=query-value-secret HTTP/1.1\r\nHost: h\r\nAuthorization: Basic {basic}\r\nCookie: sid=sekrit-cookie-value\r\n\r\n"
        ),
        "GET /b HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer bearer-opaque-secret\r\n\r\n"
            .to_owned(),
        format!("GET /c HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {jwt}\r\n\r\n"),
        format!(
            "POST /login HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ),
        format!(
            "POST /api/session HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
            json.len()
        ),
        // Invalid and cut heads carrying secrets.
        "GET /d HTTP/1.1\r\nCookie: sid=sekrit-cookie-value\r\nBad Header: x\r\n\r\n".to_owned(),
        format!("GET /e HTTP/1.1\r\nAuthorization: Basic {basic}\r\n"),
    ];
    let response = "HTTP/1.1 302 Found\r\nSet-Cookie: sid=set-cookie-secret; Path=/\r\nContent-Length: 0\r\n\r\n";
    let mut conn = HttpConn::new(Arc::new(config()), meta(CLIENT));
    let mut out = Vec::new();
    let mut debug = String::new();
    for (i, r) in requests.iter().enumerate() {
        // Feed each request in two pieces so buffers hold secrets while Debug runs.
        let (a, b) = r.as_bytes().split_at(r.len() / 2);
        conn.on_chunk(Dir::ToServer, i as u64, Chunk::Data(a), &mut out);
        let _ = write!(debug, "{conn:?}");
        conn.on_chunk(Dir::ToServer, i as u64, Chunk::Data(b), &mut out);
        conn.on_chunk(
            Dir::ToClient,
            i as u64,
            Chunk::Data(response.as_bytes()),
            &mut out,
        );
    }
    conn.on_close(99, &mut out);
    assert!(out.len() >= requests.len(), "{out:?}");
    let json_lines: String = out
        .iter()
        .map(|t| serde_json::to_string(t).expect("serialize") + "\n")
        .collect();
    let _ = write!(debug, "{out:?}{:?}", config());
    for text in [&json_lines, &debug] {
        for secret in secrets
            .iter()
            .copied()
            .chain([basic.as_str(), jwt.as_str()])
        {
            assert!(
                !text.contains(secret),
                "secret {secret:?} leaked into:\n{text}"
            );
        }
    }
    assert!(
        json_lines.contains(r#""account":"alice""#),
        "the Basic user is kept: {json_lines}"
    );
    assert!(
        json_lines.contains(r#""query_keys":["token"]"#),
        "query names are kept: {json_lines}"
    );
}

#[test]
fn serializes_records() {
    let txs = run(&[
        req(
            "GET /users/42?expand=1 HTTP/1.1\r\nHost: API.example\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n",
        ),
        resp("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ]);
    let json: serde_json::Value = serde_json::to_value(&txs[0]).expect("serialize");
    for (field, expected) in [
        ("peer", serde_json::json!(CLIENT)),
        ("client", serde_json::json!("198.51.100.10")),
        ("server", serde_json::json!(SERVER)),
        ("method", serde_json::json!("GET")),
        ("version", serde_json::json!("HTTP/1.1")),
        ("host", serde_json::json!("api.example")),
        ("path", serde_json::json!("/users/42")),
        ("route", serde_json::json!("/users/{id}")),
        ("query_keys", serde_json::json!(["expand"])),
        ("status", serde_json::json!(200)),
        ("user_agent", serde_json::json!("curl/8")),
        (
            "header_order",
            serde_json::json!(["host", "user-agent", "accept"]),
        ),
        ("flags", serde_json::json!([])),
        ("login", serde_json::Value::Null),
    ] {
        assert_eq!(json[field], expected, "field {field}");
    }
}

#[test]
fn idle_connections_hold_no_heap() {
    let size = std::mem::size_of::<HttpConn>();
    assert!(size <= 320, "HttpConn is {size} bytes inline");
    let mut conn = HttpConn::new(Arc::new(config()), meta(CLIENT));
    let mut out = Vec::new();
    assert_eq!(conn.memory(), size);
    let head = b"GET /a HTTP/1.1\r\nHost: h\r\nCookie: sid=x\r\n\r\n";
    for (a, b) in [(&head[..10], &head[10..]), (&head[..], &b""[..])] {
        conn.on_chunk(Dir::ToServer, 1, Chunk::Data(a), &mut out);
        conn.on_chunk(Dir::ToServer, 1, Chunk::Data(b), &mut out);
        assert!(conn.memory() > size, "a waiting request is counted");
        conn.on_chunk(
            Dir::ToClient,
            2,
            Chunk::Data(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            &mut out,
        );
        assert_eq!(conn.memory(), size, "idle after a complete exchange");
    }
    assert_eq!(out.len(), 2);
}

/// Fragments that make random streams look like HTTP often enough to reach deep states.
const VOCAB: &[&str] = &[
    "GET / HTTP/1.1\r\n",
    "POST /login HTTP/1.1\r\n",
    "HEAD /h HTTP/1.0\r\n",
    "CONNECT a:1 HTTP/1.1\r\n",
    "HTTP/1.1 200 OK\r\n",
    "HTTP/1.1 100 Continue\r\n",
    "HTTP/1.1 101 Switching\r\n",
    "HTTP/1.0 204 x\r\n",
    "Host: h\r\n",
    "Content-Length: 5\r\n",
    "Content-Length: 99999999\r\n",
    "Transfer-Encoding: chunked\r\n",
    "Cookie: sid=1\r\n",
    "Authorization: Basic YTpi\r\n",
    "X-Forwarded-For: 198.51.100.1\r\n",
    "Content-Type: application/json\r\n",
    "\r\n",
    "5\r\nhello\r\n",
    "0\r\n\r\n",
    "username=a&",
    "{\"username\":\"a\"}",
    "PROXY TCP4 198.51.100.1 203.0.113.1 1 2\r\n",
    "\r\n\r\n\0\r\nQUIT\n",
    "\0",
    ";",
    " ",
];

fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(VOCAB).prop_map(|s| s.as_bytes().to_vec()),
            1 => prop::collection::vec(any::<u8>(), 0..40),
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

fn event() -> impl Strategy<Value = Ev> {
    prop_oneof![
        4 => stream_bytes().prop_map(Ev::Req),
        4 => stream_bytes().prop_map(Ev::Resp),
        1 => (0u32..3000).prop_map(Ev::ReqHole),
        1 => (0u32..3000).prop_map(Ev::RespHole),
        1 => (0u32..3000).prop_map(Ev::ReqLost),
        1 => (0u32..3000).prop_map(Ev::RespLost),
    ]
}

fn small_limits() -> HttpConfig {
    HttpConfig {
        limits: HttpLimits {
            max_head_bytes: 256,
            max_headers: 8,
            max_pending: 4,
            max_login_body_bytes: 64,
        },
        ..config()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary chunk sequences never panic, memory stays bounded, and a closed connection
    /// holds nothing.
    #[test]
    fn never_panics_and_stays_bounded(events in prop::collection::vec(event(), 0..40), peer in prop::sample::select(vec![CLIENT, PROXY])) {
        let cfg = small_limits();
        let mut conn = HttpConn::new(Arc::new(cfg.clone()), meta(peer));
        let mut out = Vec::new();
        // Two buffers of at most a resync window plus a head or login body, with growth
        // slack, and the waiting requests with their strings.
        let bound = std::mem::size_of::<HttpConn>() + 2 * 8192 + (cfg.limits.max_pending + 2) * 4096;
        for (i, ev) in events.iter().enumerate() {
            feed(&mut conn, i as u64, ev, &mut out);
            prop_assert!(conn.memory() <= bound, "memory {} > {bound} after {ev:?}", conn.memory());
        }
        conn.on_close(u64::MAX, &mut out);
        prop_assert_eq!(conn.memory(), std::mem::size_of::<HttpConn>());
        for tx in &out {
            prop_assert!(tx.heap_bytes() <= 4 * 4096, "record too large: {tx:?}");
            let _ = serde_json::to_string(tx).expect("serializes");
        }
    }

    /// Writing transactions into spent records (recycled as soon as they are emitted, after a
    /// pool was filled with records of another conversation) gives the same transactions as
    /// fresh records.
    #[test]
    fn reused_records_give_the_same_transactions(
        events in prop::collection::vec(event(), 0..40),
        earlier in prop::collection::vec(event(), 0..40),
        peer in prop::sample::select(vec![CLIENT, PROXY]),
    ) {
        let cfg = Arc::new(small_limits());
        let fresh = run_with(&cfg, peer, &events);
        let mut reuse = Reuse::default();
        let mut out = Vec::new();
        let run_reusing = |events: &[Ev], out: &mut Vec<Transaction>, reuse: &mut Reuse| {
            let mut conn = HttpConn::new(Arc::clone(&cfg), meta(peer));
            let mut done = Vec::new();
            for (i, ev) in events.iter().enumerate() {
                let ts = (i as u64 + 1) * 1000;
                let (dir, chunk) = match ev {
                    Ev::Req(d) => (Dir::ToServer, Chunk::Data(d)),
                    Ev::Resp(d) => (Dir::ToClient, Chunk::Data(d)),
                    Ev::ReqHole(n) => (Dir::ToServer, Chunk::Uncaptured(*n)),
                    Ev::RespHole(n) => (Dir::ToClient, Chunk::Uncaptured(*n)),
                    Ev::ReqLost(n) => (Dir::ToServer, Chunk::Lost(*n)),
                    Ev::RespLost(n) => (Dir::ToClient, Chunk::Lost(*n)),
                };
                conn.on_chunk_reusing(dir, ts, chunk, &mut done, reuse);
                out.extend(done.iter().map(|tx| Transaction::clone(tx)));
                reuse.recycle_all(&mut done);
            }
            conn.on_close_reusing(u64::MAX, &mut done, reuse);
            for tx in done.drain(..) {
                out.push(Transaction::clone(&tx));
                reuse.recycle(tx);
            }
        };
        let mut discarded = Vec::new();
        run_reusing(&earlier, &mut discarded, &mut reuse);
        run_reusing(&events, &mut out, &mut reuse);
        prop_assert_eq!(out, fresh);
    }

    /// Any split of the same streams gives the same transactions.
    #[test]
    fn chunking_does_not_change_results(
        reqs in stream_bytes(),
        resps in stream_bytes(),
        req_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        resp_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let cfg = small_limits();
        let whole = run_pieces(&cfg, &[&reqs], &[&resps]);
        let pieces = |bytes: &[u8], cuts: &[prop::sample::Index]| -> Vec<Vec<u8>> {
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            at.sort_unstable();
            let mut out = Vec::new();
            let mut prev = 0;
            for a in at.into_iter().chain([bytes.len()]) {
                out.push(bytes[prev..a].to_vec());
                prev = a;
            }
            out
        };
        let rq = pieces(&reqs, &req_cuts);
        let rs = pieces(&resps, &resp_cuts);
        let rq: Vec<&[u8]> = rq.iter().map(Vec::as_slice).collect();
        let rs: Vec<&[u8]> = rs.iter().map(Vec::as_slice).collect();
        prop_assert_eq!(run_pieces(&cfg, &rq, &rs), whole);
    }
}
