//! The access-log line: its fields, and escaping of client-chosen values.
use std::time::{Duration, UNIX_EPOCH};

use super::{Entry, LoginNote, LoginOutcome, MAX_VALUE_LEN};

/// An entry for `GET /health` from `127.0.0.1:40000` at a fixed time.
fn entry() -> Entry<'static> {
    Entry {
        time: UNIX_EPOCH + Duration::from_millis(1_777_777_777_123),
        peer: "127.0.0.1:40000".parse().expect("address"),
        real_ip: None,
        forwarded_for: None,
        method: "GET",
        path: "/health",
        status: 200,
        duration: Duration::from_micros(1_900),
        login: None,
    }
}

#[test]
fn a_plain_request_line() {
    assert_eq!(
        entry().format(),
        "2026-05-03T03:09:37.123Z INFO request peer=127.0.0.1:40000 method=GET path=/health \
         status=200 duration_ms=1"
    );
}

#[test]
fn a_proxied_login_line() {
    let note = LoginNote {
        account: Some("user0001".to_owned()),
        outcome: LoginOutcome::Failed,
    };
    let e = Entry {
        real_ip: Some(b"198.51.100.2"),
        forwarded_for: Some(b"203.0.113.9, 198.51.100.2"),
        method: "POST",
        path: "/login",
        status: 403,
        duration: Duration::from_millis(50),
        login: Some(&note),
        ..entry()
    };
    assert_eq!(
        e.format(),
        "2026-05-03T03:09:37.123Z INFO request peer=127.0.0.1:40000 real_ip=198.51.100.2 \
         forwarded_for=\"203.0.113.9, 198.51.100.2\" method=POST path=/login status=403 \
         duration_ms=50 account=user0001 login=failed"
    );
}

#[test]
fn client_chosen_values_cannot_split_or_forge_a_line() {
    let note = LoginNote {
        account: Some("x\" login=ok\nFAKE \\ é".to_owned()),
        outcome: LoginOutcome::Malformed,
    };
    let e = Entry {
        real_ip: Some(b"1.2.3.4\r\n2026 INFO request"),
        forwarded_for: Some(b""),
        login: Some(&note),
        ..entry()
    };
    let line = e.format();
    assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
    assert!(
        line.contains(r#" real_ip="1.2.3.4\x0d\x0a2026 INFO request" forwarded_for="" "#),
        "{line}"
    );
    assert!(
        line.ends_with(r#" account="x\" login=ok\x0aFAKE \\ \xc3\xa9" login=malformed"#),
        "{line}"
    );
}

#[test]
fn long_values_are_cut() {
    let long = "a".repeat(5 * MAX_VALUE_LEN);
    let e = Entry {
        real_ip: Some(long.as_bytes()),
        ..entry()
    };
    let line = e.format();
    let want = format!(" real_ip=\"{}...\" ", "a".repeat(MAX_VALUE_LEN));
    assert!(line.contains(&want), "{line}");
}
