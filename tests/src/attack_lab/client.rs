//! The lab's own HTTP/1.1 client: one request per connection from a chosen source address,
//! with headers in the order given (so a fingerprint can rotate), bounded connect and read
//! times, and an outcome that tells an answer from a refusal. Run it on a thread that entered
//! the client namespace ([`super::netns::enter`]).
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// The largest answer read; the rest is not needed.
const MAX_ANSWER: usize = 64 * 1024;

/// One request to send.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: &'static str,
    /// Path and query.
    pub path: String,
    /// Headers in the order they are sent (`Host` and `Content-Length` are added: `Host`
    /// first, `Content-Length` last).
    pub headers: Vec<(String, String)>,
    /// Body (a form for logins), empty for none.
    pub body: String,
}

impl Request {
    /// A `GET path` with these headers.
    pub fn get(path: impl Into<String>, headers: Vec<(String, String)>) -> Self {
        Self {
            method: "GET",
            path: path.into(),
            headers,
            body: String::new(),
        }
    }

    /// A form `POST path` with these headers (a `Content-Type` is added after them).
    pub fn post_form(
        path: impl Into<String>,
        mut headers: Vec<(String, String)>,
        body: String,
    ) -> Self {
        headers.push((
            "Content-Type".into(),
            "application/x-www-form-urlencoded".into(),
        ));
        Self {
            method: "POST",
            path: path.into(),
            headers,
            body,
        }
    }

    /// The bytes on the wire, `Connection: close` included.
    fn encode(&self, host: &str) -> Vec<u8> {
        let mut s = format!("{} {} HTTP/1.1\r\nHost: {host}\r\n", self.method, self.path);
        for (name, value) in &self.headers {
            s.push_str(name);
            s.push_str(": ");
            s.push_str(value);
            s.push_str("\r\n");
        }
        if !self.body.is_empty() || self.method == "POST" {
            let _ = write!(s, "Content-Length: {}\r\n", self.body.len());
        }
        s.push_str("Connection: close\r\n\r\n");
        s.push_str(&self.body);
        s.into_bytes()
    }
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer: its status and the value of a `session` cookie it set.
    Answered {
        /// The status code.
        status: u16,
        /// `session=VALUE` from `Set-Cookie`, if set.
        session: Option<String>,
    },
    /// No answer: the connection was not made, or was reset, or nothing came back in time.
    Refused(Refusal),
}

impl Outcome {
    /// The status, if answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Answered { status, .. } => Some(*status),
            Outcome::Refused(_) => None,
        }
    }
}

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The handshake did not complete within the connect timeout (a kernel drop looks so).
    ConnectTimeout,
    /// Any other connect error (reset, unreachable).
    ConnectError,
    /// The request could not be written, or the answer did not come within the read timeout
    /// or was cut before a status line.
    NoAnswer,
}

/// Connect and read bounds of one request.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Bound on the handshake.
    pub connect: Duration,
    /// Bound on each read and write.
    pub io: Duration,
}

/// Sends `req` from `src` to `server` on a new connection and reads the answer to its end.
pub fn send(src: IpAddr, server: SocketAddr, req: &Request, t: Timeouts) -> Outcome {
    let Ok(mut stream) = connect(src, server, t.connect) else {
        return Outcome::Refused(Refusal::ConnectError);
    };
    let Some(stream) = stream.as_mut() else {
        return Outcome::Refused(Refusal::ConnectTimeout);
    };
    let _ = stream.set_read_timeout(Some(t.io));
    let _ = stream.set_write_timeout(Some(t.io));
    let host = match server.ip() {
        IpAddr::V4(_) => server.ip().to_string(),
        IpAddr::V6(_) => format!("[{}]", server.ip()),
    };
    if stream.write_all(&req.encode(&host)).is_err() {
        return Outcome::Refused(Refusal::NoAnswer);
    }
    let mut answer = Vec::new();
    let mut buf = [0_u8; 8192];
    while answer.len() < MAX_ANSWER {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {
                if answer.is_empty() {
                    return Outcome::Refused(Refusal::NoAnswer);
                }
                break;
            }
        }
    }
    parse_head(&answer).map_or(Outcome::Refused(Refusal::NoAnswer), |(status, session)| {
        Outcome::Answered { status, session }
    })
}

/// A connection from `src`: `Ok(None)` when the handshake timed out.
fn connect(
    src: IpAddr,
    server: SocketAddr,
    timeout: Duration,
) -> std::io::Result<Option<TcpStream>> {
    let domain = if server.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
    match socket.connect_timeout(&SockAddr::from(server), timeout) {
        Ok(()) => Ok(Some(socket.into())),
        Err(e)
            if e.kind() == std::io::ErrorKind::TimedOut
                || e.kind() == std::io::ErrorKind::WouldBlock =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The status code and the `session` cookie of an answer's head.
fn parse_head(answer: &[u8]) -> Option<(u16, Option<String>)> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()?
        .strip_prefix("HTTP/1.")?
        .get(2..5)?
        .parse()
        .ok()?;
    let session = lines
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.eq_ignore_ascii_case("set-cookie"))
        .filter_map(|(_, value)| value.trim().split(';').next())
        .find(|c| c.starts_with("session=") && c.len() > "session=".len())
        .map(str::to_owned);
    Some((status, session))
}

#[cfg(test)]
mod tests {
    use super::parse_head;

    #[test]
    fn heads_give_their_status_and_session() {
        type Head<'a> = Option<(u16, Option<&'a str>)>;
        let cases: &[(&[u8], Head<'_>)] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                Some((200, None)),
            ),
            (
                b"HTTP/1.1 200 OK\r\nset-cookie: session=abc; Path=/; HttpOnly\r\n\r\n{}",
                Some((200, Some("session=abc"))),
            ),
            (
                b"HTTP/1.1 403 Forbidden\r\nSet-Cookie: session=; Max-Age=0\r\n\r\n",
                Some((403, None)),
            ),
            (b"HTTP/1.0 404 Not Found\r\n\r\n", Some((404, None))),
            (b"HTTP/1.1 200 OK\r\n", None),
            (b"SSH-2.0\r\n\r\n", None),
            (b"", None),
        ];
        for (raw, want) in cases {
            let got = parse_head(raw);
            let want = want.map(|(s, c)| (s, c.map(str::to_owned)));
            assert_eq!(got, want, "{}", String::from_utf8_lossy(raw));
        }
    }
}
