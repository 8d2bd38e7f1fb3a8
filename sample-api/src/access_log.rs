//! The access log: one line per request, `key=value` pairs after a timestamp and a level, like
//! a normal application behind a proxy writes:
//!
//! ```text
//! 2026-05-04T10:00:00.123Z INFO request peer=127.0.0.1:41234 real_ip=198.51.100.2 forwarded_for=198.51.100.2 method=POST path=/login status=403 duration_ms=50 account=user0001 login=failed
//! ```
//!
//! `real_ip` and `forwarded_for` are the `X-Real-IP` and `X-Forwarded-For` headers as the proxy
//! passed them, present only when sent. The path never carries its query string, and no
//! password, cookie or query value is ever written. Values a client chooses are quoted and
//! escaped when they hold anything but plain printable characters, and cut to
//! [`MAX_VALUE_LEN`] bytes, so a client cannot forge or split lines.
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// The most bytes of one client-chosen value the log keeps.
pub const MAX_VALUE_LEN: usize = 200;

/// How a login attempt ended, as logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Good credentials; a session was created.
    Ok,
    /// Unknown account or wrong password.
    Failed,
    /// A body that could not be read as a login form.
    Malformed,
}

impl LoginOutcome {
    /// The value of the `login=` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Malformed => "malformed",
        }
    }
}

/// What a login handler adds to its request's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginNote {
    /// The account name the client sent (if it sent one).
    pub account: Option<String>,
    /// How it ended.
    pub outcome: LoginOutcome,
}

/// One request's line, before formatting.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// When the request ended.
    pub time: SystemTime,
    /// The TCP peer (nginx, behind the proxy).
    pub peer: SocketAddr,
    /// The `X-Real-IP` header, if sent.
    pub real_ip: Option<&'a [u8]>,
    /// The `X-Forwarded-For` headers, joined with `, `, if sent.
    pub forwarded_for: Option<&'a [u8]>,
    /// The request method.
    pub method: &'a str,
    /// The path, without the query string.
    pub path: &'a str,
    /// The answer's status code.
    pub status: u16,
    /// How long the request took.
    pub duration: Duration,
    /// The login's account and outcome, for `POST /login`.
    pub login: Option<&'a LoginNote>,
}

impl Entry<'_> {
    /// The line, without its newline.
    pub fn format(&self) -> String {
        let mut line = String::with_capacity(192);
        let _ = write!(
            line,
            "{} INFO request peer={}",
            humantime::format_rfc3339_millis(self.time),
            self.peer
        );
        if let Some(v) = self.real_ip {
            push_field(&mut line, "real_ip", v);
        }
        if let Some(v) = self.forwarded_for {
            push_field(&mut line, "forwarded_for", v);
        }
        push_field(&mut line, "method", self.method.as_bytes());
        push_field(&mut line, "path", self.path.as_bytes());
        let _ = write!(
            line,
            " status={} duration_ms={}",
            self.status,
            self.duration.as_millis()
        );
        if let Some(note) = self.login {
            if let Some(account) = &note.account {
                push_field(&mut line, "account", account.as_bytes());
            }
            let _ = write!(line, " login={}", note.outcome.as_str());
        }
        line
    }
}

/// Appends ` key=value`, quoting and escaping `value` unless it is plain (printable ASCII
/// without spaces, quotes, backslashes or `=`), and cutting it to [`MAX_VALUE_LEN`] bytes.
fn push_field(line: &mut String, key: &str, value: &[u8]) {
    let (value, cut) = if value.len() > MAX_VALUE_LEN {
        (&value[..MAX_VALUE_LEN], true)
    } else {
        (value, false)
    };
    let plain = !value.is_empty()
        && value
            .iter()
            .all(|&b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\' | b'='));
    line.push(' ');
    line.push_str(key);
    line.push('=');
    if plain && !cut {
        // Plain bytes are ASCII.
        line.extend(value.iter().map(|&b| char::from(b)));
        return;
    }
    line.push('"');
    for &b in value {
        match b {
            b'"' => line.push_str("\\\""),
            b'\\' => line.push_str("\\\\"),
            b' ' => line.push(' '),
            _ if b.is_ascii_graphic() => line.push(char::from(b)),
            _ => {
                let _ = write!(line, "\\x{b:02x}");
            }
        }
    }
    if cut {
        line.push_str("...");
    }
    line.push('"');
}

/// Where lines go: standard output or a file opened for appending.
pub struct AccessLog {
    /// The writer; one line is one `write_all` under the lock.
    out: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").finish_non_exhaustive()
    }
}

impl AccessLog {
    /// Lines to standard output.
    pub fn stdout() -> Self {
        Self::to_writer(Box::new(std::io::stdout()))
    }

    /// Lines appended to `path` (created if missing).
    pub fn append_to(path: &Path) -> std::io::Result<Self> {
        let file: File = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self::to_writer(Box::new(file)))
    }

    /// Lines to any writer (tests use a buffer).
    pub fn to_writer(out: Box<dyn Write + Send>) -> Self {
        Self {
            out: Mutex::new(out),
        }
    }

    /// Writes one request's line.
    pub fn request(&self, entry: &Entry<'_>) {
        self.line(&entry.format());
    }

    /// Writes an `INFO` line about the server itself (start, stop).
    pub fn note(&self, message: &str) {
        let time = humantime::format_rfc3339_millis(SystemTime::now());
        self.line(&format!("{time} INFO sample-api {message}"));
    }

    /// Writes `text` and a newline in one write, and flushes; a failure is reported on stderr
    /// (the server goes on answering).
    fn line(&self, text: &str) {
        let mut bytes = Vec::with_capacity(text.len() + 1);
        bytes.extend_from_slice(text.as_bytes());
        bytes.push(b'\n');
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = out.write_all(&bytes).and_then(|()| out.flush()) {
            eprintln!("sample-api: cannot write the access log: {e}");
        }
    }
}

#[cfg(test)]
mod tests;
