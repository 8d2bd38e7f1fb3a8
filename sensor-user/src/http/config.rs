//! Configuration of the HTTP layer: who the account and session of a request are, which
//! routes are logins and how their outcome is decided, which peers are trusted proxies, and the
//! limits that keep hostile input bounded.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

/// HTTP parsing and identity configuration, shared by every connection.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Cookie names whose value identifies a session. Names compare case-sensitively, as
    /// cookie names do. The value is kept only as a keyed hash.
    pub session_cookies: Vec<String>,
    /// Whether a bearer token (`Authorization: Bearer ...`) counts as the session when no
    /// session cookie is present. Kept only as a keyed hash.
    pub bearer_session: bool,
    /// Routes whose requests are login attempts.
    pub login_routes: Vec<LoginRoute>,
    /// Peers (IP prefixes) trusted to report the real client through a PROXY protocol header,
    /// `Forwarded` or `X-Forwarded-For`. The same headers from any other peer are ignored and
    /// flagged `forwarded_from_untrusted`.
    pub trusted_proxies: Vec<IpNet>,
    /// Limits that bound memory and work on hostile input.
    pub limits: HttpLimits,
    /// Key of the session hash (SipHash-1-3). Not read from configuration: the default is a
    /// zero key because replay uses a fixed key so its output is deterministic; the live agent
    /// sets a random one at start.
    #[serde(skip)]
    pub hash_key: [u8; 16],
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            session_cookies: ["session", "sessionid", "JSESSIONID", "PHPSESSID", "sid"]
                .map(String::from)
                .to_vec(),
            bearer_session: true,
            login_routes: Vec::new(),
            trusted_proxies: Vec::new(),
            limits: HttpLimits::default(),
            hash_key: [0; 16],
        }
    }
}

impl fmt::Debug for HttpConfig {
    /// Shows everything except the hash key, which is a secret on a live agent.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConfig")
            .field("session_cookies", &self.session_cookies)
            .field("bearer_session", &self.bearer_session)
            .field("login_routes", &self.login_routes)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("limits", &self.limits)
            .field("hash_key", &"<redacted>")
            .finish()
    }
}

impl HttpConfig {
    /// Whether `ip` is in one of the trusted proxy prefixes.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// Index of the login route matching this method and path.
    pub(crate) fn login_route(&self, method: &str, path: &str) -> Option<usize> {
        self.login_routes
            .iter()
            .position(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
    }

    /// Whether `name` is a configured session cookie.
    pub(crate) fn is_session_cookie(&self, name: &[u8]) -> bool {
        self.session_cookies.iter().any(|c| c.as_bytes() == name)
    }
}

/// A login endpoint: where the account field is and how the outcome is decided.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRoute {
    /// Request method, e.g. `POST` (compared case-insensitively).
    pub method: String,
    /// Exact request path without the query, e.g. `/login`.
    pub path: String,
    /// Name of the body field holding the account: a form field
    /// (`application/x-www-form-urlencoded`) or a JSON member; dots select nested JSON members
    /// (`user.email`). Only the captured part of the body is read.
    #[serde(default = "default_account_field")]
    pub account_field: String,
    /// Status codes that mean the login succeeded (when `success_set_cookie` is not set).
    #[serde(default = "default_success_status")]
    pub success_status: Vec<u16>,
    /// Status codes that mean the login failed. They win over every success rule.
    #[serde(default = "default_failure_status")]
    pub failure_status: Vec<u16>,
    /// When set, the login succeeded exactly when the response sets this cookie, and failed
    /// otherwise; `success_status` is then not used.
    #[serde(default)]
    pub success_set_cookie: Option<String>,
}

fn default_account_field() -> String {
    "username".to_owned()
}

fn default_success_status() -> Vec<u16> {
    vec![200, 302]
}

fn default_failure_status() -> Vec<u16> {
    vec![401, 403]
}

/// Limits on what one connection may make the parser hold or do.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpLimits {
    /// Largest request or response head (start line and header fields) that is buffered when
    /// it spans chunks, and the largest head accepted at all. A larger head is flagged
    /// `head_too_large` and the parser resynchronises at the next message.
    pub max_head_bytes: usize,
    /// Most header fields in one head (at most 256). More is flagged `too_many_headers`.
    pub max_headers: usize,
    /// Most requests waiting for their responses on one connection; beyond it the oldest is
    /// emitted without its response and flagged `pending_overflow`.
    pub max_pending: usize,
    /// Most bytes of a login request body kept to find the account field.
    pub max_login_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_pending: 64,
            max_login_body_bytes: 4096,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserializes_with_defaults() {
        #[track_caller]
        fn check(toml_text: &str, expect: impl Fn(&HttpConfig)) {
            let cfg: HttpConfig = toml::from_str(toml_text).expect("config parses");
            expect(&cfg);
        }
        check("", |c| {
            assert_eq!(c.session_cookies.len(), 5);
            assert!(c.bearer_session);
            assert_eq!(c.limits.max_head_bytes, 16 * 1024);
            assert_eq!(c.hash_key, [0; 16]);
        });
        check(
            r#"
            trusted_proxies = ["203.0.113.0/24", "2001:db8::/32"]
            [[login_routes]]
            method = "POST"
            path = "/login"
            "#,
            |c| {
                let route = &c.login_routes[0];
                assert_eq!(route.account_field, "username");
                assert_eq!(route.success_status, [200, 302]);
                assert_eq!(route.failure_status, [401, 403]);
                assert!(c.is_trusted("203.0.113.9".parse().expect("ip")));
                assert!(c.is_trusted("::ffff:203.0.113.9".parse().expect("ip")));
                assert!(!c.is_trusted("198.51.100.9".parse().expect("ip")));
            },
        );
        check("[limits]\nmax_headers = 7", |c| {
            assert_eq!(c.limits.max_headers, 7);
            assert_eq!(c.limits.max_pending, 64);
        });
    }

    #[test]
    fn rejects_unknown_fields() {
        for text in [
            "hash_key = 'x'",
            "nope = 1",
            "[limits]\nmax_body = 1",
            "[[login_routes]]\nmethod = 'POST'\npath = '/l'\nextra = 1",
            "[[login_routes]]\npath = '/l'",
        ] {
            assert!(
                toml::from_str::<HttpConfig>(text).is_err(),
                "{text:?} should be rejected"
            );
        }
    }

    #[test]
    fn debug_hides_hash_key() {
        let cfg = HttpConfig {
            hash_key: [0xab; 16],
            ..HttpConfig::default()
        };
        let text = format!("{cfg:?}");
        assert!(!text.contains("171"), "hash key leaked: {text}");
        assert!(text.contains("redacted"));
    }
}
