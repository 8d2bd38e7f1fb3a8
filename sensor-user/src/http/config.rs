//! Configuration of the HTTP layer: who the account and session of a request are, which
//! requests are logins and how their outcome is decided, which peers are trusted proxies, and
//! the limits that keep hostile input bounded.
//!
//! A request is a login attempt, in this order of priority, when it matches a configured
//! `login_routes` entry; when it is a `POST` to a path ending in one of `login_path_suffixes`;
//! or when it carries an HTTP Basic credential (`basic_auth_logins`). The last two work with
//! no configuration file at all.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

/// HTTP parsing and identity configuration, shared by every connection.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Cookie names whose value identifies a session. Names compare case-sensitively, as
    /// cookie names do. The value is kept only as a keyed hash.
    pub session_cookies: Vec<String>,
    /// Whether a bearer token (`Authorization: Bearer ...`) counts as the session when no
    /// session cookie is present. Kept only as a keyed hash.
    pub bearer_session: bool,
    /// Routes whose requests are login attempts. A matching route takes priority over the
    /// default rules below (`login_path_suffixes`, `basic_auth_logins`).
    pub login_routes: Vec<LoginRoute>,
    /// Path endings that make a `POST` a login attempt when no `login_routes` entry matches.
    /// The path (without query and `;` parameters, one trailing `/` ignored) must end with one
    /// of them, compared ASCII case-insensitively; each starts with `/`, so it matches whole
    /// segments: `/login` matches `/api/v1/login` and `/Login/` but not `/blogin` or
    /// `/login/help`. An empty list turns this rule off.
    #[serde(deserialize_with = "path_suffixes")]
    pub login_path_suffixes: Vec<String>,
    /// Whether a request carrying an HTTP Basic credential with a user name is a login
    /// attempt on any route (Basic authenticates every request it is sent with). The account
    /// is the Basic user; the password is never decoded into text.
    pub basic_auth_logins: bool,
    /// Body fields holding the account of a login recognised by `login_path_suffixes`, tried
    /// in this order: form fields or top-level JSON members, matched exactly (dots are not
    /// followed: use a `login_routes` entry's `account_field` for nested members).
    pub account_fields: Vec<String>,
    /// Status codes that mean failure for logins recognised by `login_path_suffixes` or
    /// `basic_auth_logins`. Any other 2xx or 3xx status means success; anything else (or no
    /// response) leaves the outcome unknown.
    pub login_failure_status: Vec<u16>,
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
            login_path_suffixes: [
                "/login",
                "/signin",
                "/auth",
                "/token",
                "/oauth/token",
                "/session",
                "/sessions",
            ]
            .map(String::from)
            .to_vec(),
            basic_auth_logins: true,
            account_fields: [
                "username",
                "user",
                "email",
                "login",
                "account",
                "user_name",
                "userName",
                "identifier",
                "phone",
                "usr",
            ]
            .map(String::from)
            .to_vec(),
            login_failure_status: vec![401, 403],
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
            .field("login_path_suffixes", &self.login_path_suffixes)
            .field("basic_auth_logins", &self.basic_auth_logins)
            .field("account_fields", &self.account_fields)
            .field("login_failure_status", &self.login_failure_status)
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

    /// The login rule (see [`HttpConfig::login`]) of a request with this method and path:
    /// the first matching `login_routes` entry, else [`LoginRule::Path`] for a `POST` to a
    /// path ending in one of `login_path_suffixes`. `path` has no query and no `;` parameters.
    pub(crate) fn login_route(&self, method: &str, path: &str) -> Option<LoginRule> {
        if let Some(i) = self
            .login_routes
            .iter()
            .position(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
        {
            return Some(LoginRule::Route(u32::try_from(i).unwrap_or(u32::MAX)));
        }
        (method.eq_ignore_ascii_case("POST") && self.has_login_suffix(path))
            .then_some(LoginRule::Path)
    }

    /// Whether `path`, less one trailing `/`, ends with one of `login_path_suffixes` (ASCII
    /// case-insensitively). Only the last bytes of the path are read, and nothing is copied:
    /// this runs on every `POST`.
    fn has_login_suffix(&self, path: &str) -> bool {
        let path = path.as_bytes();
        let path = match path {
            [rest @ .., b'/'] if !rest.is_empty() => rest,
            _ => path,
        };
        self.login_path_suffixes.iter().any(|suffix| {
            let suffix = suffix.as_bytes();
            path.len()
                .checked_sub(suffix.len())
                .and_then(|start| path.get(start..))
                .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
        })
    }

    /// What made a request a login attempt, from its rule (which travels, small and `Copy`,
    /// from the head to the response): the configured route it names, or a default rule.
    pub(crate) fn login(&self, rule: LoginRule) -> Option<Login<'_>> {
        match rule {
            LoginRule::Path => Some(Login::Path),
            LoginRule::Basic => Some(Login::Basic),
            LoginRule::Route(i) => self.login_routes.get(i as usize).map(Login::Route),
        }
    }

    /// Whether `name` is a configured session cookie.
    pub(crate) fn is_session_cookie(&self, name: &[u8]) -> bool {
        self.session_cookies.iter().any(|c| c.as_bytes() == name)
    }
}

/// Which rule made a request a login attempt, as it is kept with the pending request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LoginRule {
    /// The `login_routes` entry with this index.
    Route(u32),
    /// A `POST` recognised by `login_path_suffixes`.
    Path,
    /// A request recognised by its Basic credential (`basic_auth_logins`).
    Basic,
}

/// What made a request a login attempt, which decides where its account is read and how its
/// outcome is told.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Login<'a> {
    /// A configured `login_routes` entry: its `account_field` and status or cookie rules.
    Route(&'a LoginRoute),
    /// A `POST` to a path ending in one of `login_path_suffixes`: the account is the first of
    /// `account_fields` in the body; the outcome follows `login_failure_status`, 2xx and 3xx.
    Path,
    /// An HTTP Basic credential: the account is the Basic user; the outcome as for `Path`.
    Basic,
}

/// Reads `login_path_suffixes`, rejecting entries that would not match whole segments.
fn path_suffixes<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    let suffixes = Vec::<String>::deserialize(de)?;
    for suffix in &suffixes {
        let valid = suffix.len() > 1
            && suffix.starts_with('/')
            && !suffix.ends_with('/')
            && !suffix.contains(['?', '#', ';']);
        if !valid {
            return Err(serde::de::Error::custom(format_args!(
                "login path suffix {suffix:?} must start with `/`, not end with `/`, and hold no `?`, `#` or `;`"
            )));
        }
    }
    Ok(suffixes)
}

/// A login endpoint: where the account field is and how the outcome is decided.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
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
            assert_eq!(c.login_path_suffixes.len(), 7);
            assert!(c.basic_auth_logins);
            assert_eq!(
                c.account_fields.first().map(String::as_str),
                Some("username")
            );
            assert_eq!(c.login_failure_status, [401, 403]);
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
        check(
            "login_path_suffixes = []\nbasic_auth_logins = false\naccount_fields = ['cust']\n\
             login_failure_status = [400]",
            |c| {
                assert!(c.login_path_suffixes.is_empty());
                assert!(!c.basic_auth_logins);
                assert_eq!(c.account_fields, ["cust"]);
                assert_eq!(c.login_failure_status, [400]);
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
            "login_suffixes = ['/login']",
            "login_path_suffixes = ['login']",
            "login_path_suffixes = ['/login/']",
            "login_path_suffixes = ['/']",
            "login_path_suffixes = ['/login?x']",
            "login_path_suffixes = '/login'",
        ] {
            assert!(
                toml::from_str::<HttpConfig>(text).is_err(),
                "{text:?} should be rejected"
            );
        }
    }

    #[test]
    fn matches_login_paths() {
        #[track_caller]
        fn check(cfg: &HttpConfig, method: &str, path: &str, expected: Option<LoginRule>) {
            assert_eq!(
                cfg.login_route(method, path),
                expected,
                "{method} {path:?} with suffixes {:?}",
                cfg.login_path_suffixes
            );
        }
        let cfg = HttpConfig::default();
        for path in [
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
            "/v2/OAuth/Token",
            "//login",
            "/a/b/c/d/e/f/sessions/",
        ] {
            check(&cfg, "POST", path, Some(LoginRule::Path));
        }
        check(&cfg, "post", "/login", Some(LoginRule::Path));
        for path in [
            "/blogin",
            "/login/help",
            "/login//",
            "/loginx",
            "/logins",
            "/my-auth",
            "/tokens",
            "/api/oauth-token",
            "/session/new",
            "login",
            "/",
            "",
            "/l\u{e9}login",
        ] {
            check(&cfg, "POST", path, None);
        }
        for method in ["GET", "PUT", "HEAD", "OPTIONS"] {
            check(&cfg, method, "/login", None);
        }
        let off = HttpConfig {
            login_path_suffixes: Vec::new(),
            ..HttpConfig::default()
        };
        check(&off, "POST", "/login", None);
        let custom = HttpConfig {
            login_path_suffixes: vec!["/connexion".into()],
            login_routes: vec![LoginRoute {
                method: "POST".into(),
                path: "/api/login".into(),
                account_field: "username".into(),
                success_status: vec![200],
                failure_status: vec![400],
                success_set_cookie: None,
            }],
            ..HttpConfig::default()
        };
        check(&custom, "POST", "/api/login", Some(LoginRule::Route(0)));
        check(&custom, "POST", "/fr/Connexion", Some(LoginRule::Path));
        check(&custom, "POST", "/login", None);
        assert!(
            matches!(custom.login(LoginRule::Route(0)), Some(Login::Route(r)) if r.path == "/api/login")
        );
        assert!(matches!(custom.login(LoginRule::Path), Some(Login::Path)));
        assert!(matches!(custom.login(LoginRule::Basic), Some(Login::Basic)));
        assert!(custom.login(LoginRule::Route(1)).is_none());
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
