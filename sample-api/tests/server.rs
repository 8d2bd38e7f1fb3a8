//! The server over real sockets on loopback: keep-alive, IPv4 and IPv6 listeners on one port,
//! hostile input, and an access log without secrets.
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sample_api::access_log::AccessLog;
use sample_api::accounts::Accounts;
use sample_api::routes::App;
use sample_api::server;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Bound on every read and connect.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A log writer the test can read back.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    /// What was written so far.
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts a server on `127.0.0.1:0` (and `[::1]` on the same port when `v6`), 10 ms login
/// delay; returns its IPv4 address and its log.
fn start(v6: bool) -> (SocketAddr, SharedBuf) {
    let v4 = server::bind("127.0.0.1:0".parse().expect("addr")).expect("bind 127.0.0.1");
    let addr = v4.local_addr().expect("local addr");
    let mut listeners = vec![v4];
    if v6 {
        let six = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()));
        listeners.push(server::bind(six).expect("bind [::1] on the IPv4 listener's port"));
    }
    let buf = SharedBuf::default();
    let log = Arc::new(AccessLog::to_writer(Box::new(buf.clone())));
    let app = Arc::new(App::new(
        Accounts::new(100),
        1000,
        Duration::from_millis(10),
    ));
    tokio::spawn(server::serve(listeners, app, log));
    (addr, buf)
}

/// One parsed response.
#[derive(Debug)]
struct Resp {
    /// The status code.
    status: u16,
    /// The header block, lowercased.
    head: String,
    /// The body.
    body: String,
}

/// Reads one response (a `Content-Length` body) from `conn`; `None` when the server closed
/// the connection first.
async fn read_response(conn: &mut TcpStream, pending: &mut Vec<u8>) -> Option<Resp> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().expect("content-length"));
            if pending.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&pending[end + 4..end + 4 + len]).into_owned();
                pending.drain(..end + 4 + len);
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .expect("status code");
                return Some(Resp { status, head, body });
            }
        }
        let n = tokio::time::timeout(IO_TIMEOUT, conn.read(&mut chunk))
            .await
            .expect("the server answers in time")
            .expect("read");
        if n == 0 {
            return None;
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// Connects to `addr`.
async fn connect(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Sends `request` on a fresh connection and reads one response.
async fn once(addr: SocketAddr, request: &[u8]) -> Option<Resp> {
    let mut conn = connect(addr).await;
    conn.write_all(request).await.expect("write");
    read_response(&mut conn, &mut Vec::new()).await
}

/// A form login request for `user` with `password`.
fn login(user: &str, password: &str) -> Vec<u8> {
    let body = format!("username={user}&password={password}");
    format!(
        "POST /login HTTP/1.1\r\nHost: lab\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let (addr, log) = start(false);
    let mut conn = connect(addr).await;
    let mut pending = Vec::new();
    let mut requests = b"GET /health HTTP/1.1\r\nHost: lab\r\n\r\n".to_vec();
    requests.extend(login("user0001", "wrong"));
    requests.extend_from_slice(b"GET /items/5 HTTP/1.1\r\nHost: lab\r\n\r\n");
    // Pipelined: all three are sent before any answer is read.
    conn.write_all(&requests).await.expect("write");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = read_response(&mut conn, &mut pending)
            .await
            .expect("an answer");
        assert!(!r.head.contains("connection: close"), "{}", r.head);
        statuses.push(r.status);
    }
    assert_eq!(statuses, [200, 403, 200]);
    // And one more after a pause, on the same connection.
    conn.write_all(b"GET /items/999999 HTTP/1.1\r\nHost: lab\r\n\r\n")
        .await
        .expect("write");
    let r = read_response(&mut conn, &mut pending)
        .await
        .expect("an answer");
    assert_eq!(r.status, 404, "{}", r.body);

    let text = log.text();
    let peer = conn.local_addr().expect("local addr");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for line in &lines {
        assert!(line.contains(&format!(" peer={peer} ")), "{line}");
    }
    assert!(
        lines[1].contains(" method=POST path=/login status=403 "),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].ends_with(" account=user0001 login=failed"),
        "{}",
        lines[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_and_ipv6_listeners_share_a_port() {
    let (addr, _log) = start(true);
    let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()));
    for a in [addr, v6] {
        let r = once(a, b"GET /health HTTP/1.1\r\nHost: lab\r\n\r\n")
            .await
            .expect("answer");
        assert_eq!((r.status, r.body.as_str()), (200, "ok\n"), "{a}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_names_the_proxy_headers_and_never_a_secret() {
    let (addr, log) = start(false);
    let r = once(addr, &login("user0007", "pw-0007"))
        .await
        .expect("answer");
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = r
        .head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a cookie")
        .to_owned();
    let token = cookie
        .strip_prefix("session=")
        .and_then(|c| c.split(';').next())
        .expect("a session token")
        .to_owned();
    let proxied = format!(
        "GET /notifications?token=querysecret HTTP/1.1\r\nHost: lab\r\nCookie: session={token}\r\n\
         X-Real-IP: 198.51.100.2\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-For: 198.51.100.2\r\n\r\n"
    );
    let r = once(addr, proxied.as_bytes()).await.expect("answer");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = once(
        addr,
        b"GET /search?q=searchsecret HTTP/1.1\r\nHost: lab\r\n\r\n",
    )
    .await
    .expect("answer");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = once(addr, &login("user0007", "pw-0008-also-secret"))
        .await
        .expect("answer");
    assert_eq!(r.status, 403, "{}", r.body);

    let text = log.text();
    for secret in [
        "pw-0007",
        "pw-0008",
        &token,
        "querysecret",
        "searchsecret",
        "q=",
        "?",
    ] {
        assert!(!text.contains(secret), "the log holds {secret:?}:\n{text}");
    }
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].contains(" method=POST path=/login status=200 "),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].ends_with(" account=user0007 login=ok"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(
            " real_ip=198.51.100.2 forwarded_for=\"203.0.113.9, 198.51.100.2\" method=GET \
             path=/notifications status=200 "
        ),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains(" method=GET path=/search status=200 "),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].ends_with(" account=user0007 login=failed"),
        "{}",
        lines[3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_errors_and_the_server_goes_on() {
    let (addr, _log) = start(false);
    let big_declared = b"POST /login HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\n\
                         Content-Length: 1000000\r\n\r\n{";
    let r = once(addr, big_declared).await.expect("answer");
    assert_eq!(r.status, 413, "{}", r.body);

    let mut chunked =
        b"POST /login HTTP/1.1\r\nHost: lab\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..20 {
        chunked.extend_from_slice(b"400\r\n");
        chunked.extend_from_slice(&[b'a'; 0x400]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = once(addr, &chunked).await.expect("answer");
    assert_eq!(r.status, 413, "{}", r.body);

    let hostile: &[&[u8]] = &[
        b"\x00\x01\x02 garbage\r\n\r\n",
        b"GET /health HTTP/9.9\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: lab\r\nContent-Length: -1\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: lab\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"GET /he\x7flth HTTP/1.1\r\n\r\n",
        b"GET /items/\xff HTTP/1.1\r\n\r\n",
    ];
    for request in hostile {
        // Either an error status or a closed connection; never a hang or a crash.
        if let Some(r) = once(addr, request).await {
            assert!(
                r.status >= 400,
                "{:?} answered {}",
                String::from_utf8_lossy(request),
                r.status
            );
        }
    }
    let mut huge_header = b"GET /health HTTP/1.1\r\nHost: lab\r\nX-Pad: ".to_vec();
    huge_header.resize(huge_header.len() + 1_000_000, b'p');
    let mut conn = connect(addr).await;
    // The server may stop reading (and reset) before all of it is written.
    let _ = tokio::time::timeout(IO_TIMEOUT, conn.write_all(&huge_header)).await;
    drop(conn);

    let r = once(addr, b"GET /health HTTP/1.1\r\nHost: lab\r\n\r\n")
        .await
        .expect("answer");
    assert_eq!(r.status, 200, "the server still answers");
}
