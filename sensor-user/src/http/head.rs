//! From a parsed head to transaction fields: target split into path, route and query names,
//! `Host`, `User-Agent`, header order, identities and proxy resolution for requests; status,
//! reason and cookies set for responses. One pass over the headers, and allocations only for
//! the strings the record keeps.

use std::borrow::Cow;
use std::mem;
use std::net::IpAddr;

use super::config::{HttpConfig, LoginRule};
use super::identity::{self, Authorization, BodyKind};
use super::parser::{self, Framing};
use super::proxy;
use super::reuse::{Field, Pools};
use super::route;
use super::transaction::{Flag, HttpVersion, LoginOutcome, NameList, Transaction, push_ascii};

/// Longest `Host` kept, in bytes.
const MAX_HOST: usize = 255;
/// Longest `User-Agent` kept, in bytes.
const MAX_USER_AGENT: usize = 512;
/// Most query parameter names kept.
const MAX_QUERY_KEYS: usize = 64;
/// Longest query parameter name kept, in bytes.
const MAX_QUERY_KEY: usize = 64;
/// Longest reason phrase kept, in bytes.
const MAX_REASON: usize = 128;

/// What the method means for the response and the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MethodKind {
    /// `HEAD`: the response has no body.
    Head,
    /// `CONNECT`: a tunnel follows.
    Connect,
    /// Any other method.
    Other,
}

/// A request head as parsed by httparse.
pub(crate) struct RequestHead<'h, 'b> {
    /// Method token.
    pub method: &'b str,
    /// Request target.
    pub target: &'b str,
    /// Minor HTTP version.
    pub minor: u8,
    /// Header fields in order.
    pub headers: &'h [httparse::Header<'b>],
}

/// Everything the connection needs from a request head besides the record itself.
pub(crate) struct RequestFacts {
    /// How the body is delimited.
    pub framing: Framing,
    /// What the method means for the response.
    pub kind: MethodKind,
    /// Index of the matching login route.
    pub login: Option<LoginRule>,
    /// Encoding of the body, for login routes.
    pub body_kind: BodyKind,
}

/// Fills in the record of a request, except for sizes and the response. `tx` is an empty
/// record with time and endpoints; `start` is the address the connection comes from after any
/// PROXY header.
pub(crate) fn request<P>(
    cfg: &HttpConfig,
    tx: &mut Transaction,
    start: IpAddr,
    head: &RequestHead<'_, '_>,
    reuse: &mut Pools<P>,
) -> RequestFacts {
    let (method, known) = parser::method_name(head.method);
    if !known {
        tx.flags.insert(Flag::UnknownMethod);
    }
    let kind = match head.method {
        "HEAD" => MethodKind::Head,
        "CONNECT" => MethodKind::Connect,
        _ => MethodKind::Other,
    };
    tx.method = method;
    tx.version = Some(HttpVersion::from_minor(head.minor));
    fill_target(tx, head.target);

    tx.header_order.clear();
    tx.header_order
        .extend_lowercase(head.headers.iter().map(|h| h.name));
    let mut hosts = 0u32;
    let mut host = None;
    let mut content_type = None;
    let mut session_cookie = None;
    // Whether a header that `body_framing` or `resolve_client` reads is present: most requests
    // have none, and both then give what they give without those headers.
    let mut framing_headers = false;
    let mut forwarding_headers = false;
    for header in head.headers {
        let name = header.name;
        match name.len() {
            9 if name.eq_ignore_ascii_case("forwarded") => forwarding_headers = true,
            14 if name.eq_ignore_ascii_case("content-length") => framing_headers = true,
            15 if name.eq_ignore_ascii_case("x-forwarded-for") => forwarding_headers = true,
            15 if tx.language.is_none() && name.eq_ignore_ascii_case("accept-language") => {
                tx.language = super::fingerprint::language_of(header.value);
            }
            17 if name.eq_ignore_ascii_case("transfer-encoding") => framing_headers = true,
            4 if name.eq_ignore_ascii_case("host") => {
                hosts += 1;
                if host.is_none() {
                    host = Some(header.value);
                }
            }
            6 if session_cookie.is_none() && name.eq_ignore_ascii_case("cookie") => {
                session_cookie = identity::find_cookie(header.value, |n| cfg.is_session_cookie(n));
            }
            10 if tx.user_agent.is_none() && name.eq_ignore_ascii_case("user-agent") => {
                let mut ua = reuse.string(Field::UserAgent);
                push_bounded_lossy(&mut ua, header.value, MAX_USER_AGENT);
                tx.user_agent = Some(ua);
            }
            12 if name.eq_ignore_ascii_case("content-type") => content_type = Some(header.value),
            13 if name.eq_ignore_ascii_case("authorization") => {
                authorize(cfg, tx, header.value);
            }
            _ => {}
        }
    }
    if let Some(value) = host {
        let mut host = reuse.string(Field::Host);
        push_bounded_lossy(&mut host, value, MAX_HOST);
        host.make_ascii_lowercase();
        tx.host = Some(host);
    }
    if hosts > 1 {
        tx.flags.insert(Flag::MultipleHost);
    } else if hosts == 0 && head.minor == 1 {
        tx.flags.insert(Flag::MissingHost);
    }
    if let Some(value) = session_cookie {
        let mut session = reuse.string(Field::Session);
        identity::push_session_hash(&mut session, &cfg.hash_key, value);
        tx.session = Some(session);
    }
    tx.client = if forwarding_headers {
        proxy::resolve_client(cfg, start, head.headers, &mut tx.flags)
    } else {
        start
    };
    let framing = if framing_headers {
        parser::body_framing(head.headers, true, &mut tx.flags)
    } else {
        Framing::None
    };
    let login = cfg.login_route(&tx.method, &tx.path);
    let body_kind = if login.is_some() {
        tx.login = Some(LoginOutcome::Unknown);
        BodyKind::from_content_type(content_type)
    } else {
        BodyKind::Sniff
    };
    RequestFacts {
        framing,
        kind,
        login,
        body_kind,
    }
}

/// Applies an `Authorization` header: the Basic user or JWT `sub` as account, the bearer token
/// as session (hashed, when no session cookie is set and `bearer_session` is on).
fn authorize(cfg: &HttpConfig, tx: &mut Transaction, value: &[u8]) {
    match identity::authorization(value) {
        Authorization::Basic(user) => {
            if !user.is_empty() {
                tx.account = Some(user);
            }
        }
        Authorization::Bearer { token, sub } => {
            if let Some(sub) = sub.filter(|s| !s.is_empty()) {
                tx.account = Some(sub);
            }
            if cfg.bearer_session && tx.session.is_none() {
                tx.session = Some(identity::session_hash(&cfg.hash_key, token));
            }
        }
        Authorization::Other => {}
        Authorization::Invalid => tx.flags.insert(Flag::InvalidAuthorization),
    }
}

/// Fills path, route, query names and (for absolute and authority forms) host from a request
/// target. `;` parameters are dropped from the path, query values are never kept.
pub(crate) fn fill_target(tx: &mut Transaction, target: &str) {
    // The fragment starts at the first `#`; the query at the first `?` before it.
    let (mut path_part, query) = match memchr::memchr2(b'?', b'#', target.as_bytes()) {
        Some(q) if target.as_bytes().get(q) == Some(&b'?') => {
            let rest = target.get(q + 1..).unwrap_or_default();
            let end = memchr::memchr(b'#', rest.as_bytes()).unwrap_or(rest.len());
            (target.get(..q).unwrap_or_default(), rest.get(..end))
        }
        Some(hash) => (target.get(..hash).unwrap_or_default(), None),
        None => (target, None),
    };
    if !path_part.starts_with('/') && path_part != "*" {
        let lower = |n: usize| path_part.get(..n).map(str::to_ascii_lowercase);
        let scheme = if lower(7).as_deref() == Some("http://") {
            7
        } else if lower(8).as_deref() == Some("https://") {
            8
        } else {
            0
        };
        let rest = path_part.get(scheme..).unwrap_or_default();
        let (authority, path) = match rest.find('/') {
            Some(slash) if scheme > 0 => (
                rest.get(..slash).unwrap_or_default(),
                rest.get(slash..).unwrap_or("/"),
            ),
            _ if scheme > 0 => (rest, "/"),
            // Authority form (`CONNECT host:port`).
            _ => (rest, ""),
        };
        if tx.host.is_none() && !authority.is_empty() {
            let mut host = bounded_lossy(authority.as_bytes(), MAX_HOST);
            host.make_ascii_lowercase();
            tx.host = Some(host);
        }
        path_part = path;
    }
    // The record's own buffers are written (a reused record brings room for them).
    let (path, route) = (&mut tx.path, &mut tx.route);
    path.clear();
    route.clear();
    route.reserve(path_part.len());
    if memchr::memchr(b';', path_part.as_bytes()).is_none() {
        // Without `;` parameters the path is the target's path part as it is.
        path.push_str(path_part);
    } else {
        path.reserve(path_part.len());
        for (i, segment) in route::split_ascii(path_part, b'/').enumerate() {
            if i > 0 {
                path.push('/');
            }
            path.push_str(route::strip_params(segment));
        }
    }
    // The path now holds no `;`, `?` or `#`, as `push_template` requires.
    route::push_template(route, path);
    tx.query_keys.clear();
    if let Some(query) = query {
        let mut keys = mem::take(&mut tx.query_keys);
        keys.reserve(query.len().min(MAX_QUERY_KEYS * 8));
        for pair in route::split_ascii(query, b'&').take(MAX_QUERY_KEYS) {
            let name = match memchr::memchr(b'=', pair.as_bytes()) {
                Some(eq) => pair.get(..eq).unwrap_or_default(),
                None => pair,
            };
            if name.is_empty() {
                continue;
            }
            if route::is_identifier(name) || name.len() > MAX_QUERY_KEY {
                keys.push(route::ID);
            } else {
                keys.push(name);
            }
        }
        tx.query_keys = keys;
    }
}

/// The fields a response head gives its transaction.
pub(crate) struct ResponseFacts<'b> {
    /// Reason phrase, static when it is the canonical one.
    pub reason: Option<Cow<'static, str>>,
    /// Names of the cookies set.
    pub set_cookies: NameList,
    /// Value of a configured session cookie the response sets.
    pub new_session: Option<&'b [u8]>,
}

/// Reads status-independent facts of a response head.
pub(crate) fn response<'b>(
    cfg: &HttpConfig,
    code: u16,
    reason: &str,
    headers: &[httparse::Header<'b>],
) -> ResponseFacts<'b> {
    let mut set_cookies = NameList::default();
    let mut new_session = None;
    for header in headers {
        if header.name.len() == 10
            && header.name.eq_ignore_ascii_case("set-cookie")
            && let Some((name, value)) = identity::set_cookie(header.value)
        {
            set_cookies.push(name);
            if new_session.is_none() && cfg.is_session_cookie(name.as_bytes()) && !value.is_empty()
            {
                new_session = Some(value);
            }
        }
    }
    ResponseFacts {
        reason: reason_phrase(code, reason),
        set_cookies,
        new_session,
    }
}

/// The reason phrase, borrowed from a static table when canonical; `None` when empty.
fn reason_phrase(code: u16, reason: &str) -> Option<Cow<'static, str>> {
    if reason.is_empty() {
        return None;
    }
    let canonical = match code {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    };
    Some(if canonical == reason {
        Cow::Borrowed(canonical)
    } else {
        Cow::Owned(bounded_lossy(reason.as_bytes(), MAX_REASON))
    })
}

/// `bytes` as text (invalid UTF-8 replaced), cut to at most `max` bytes at a character
/// boundary.
fn bounded_lossy(bytes: &[u8], max: usize) -> String {
    let mut text = String::new();
    push_bounded_lossy(&mut text, bytes, max);
    text
}

/// Appends [`bounded_lossy`]`(bytes, max)` to `out`.
fn push_bounded_lossy(out: &mut String, bytes: &[u8], max: usize) {
    if bytes.len() <= max {
        // Header values are nearly always ASCII.
        if push_ascii(out, bytes) {
            return;
        }
        if let Ok(text) = std::str::from_utf8(bytes) {
            out.push_str(text);
            return;
        }
    }
    let text = String::from_utf8_lossy(bytes.get(..bytes.len().min(max + 3)).unwrap_or(bytes));
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.push_str(text.get(..end).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_targets() {
        #[track_caller]
        fn check(target: &str, host: Option<&str>, path: &str, route: &str, keys: &[&str]) {
            let addr = "198.51.100.1:1000".parse().expect("addr");
            let mut tx = Transaction::empty(0, addr, addr);
            fill_target(&mut tx, target);
            assert_eq!(tx.host.as_deref(), host, "host of {target:?}");
            assert_eq!(tx.path, path, "path of {target:?}");
            assert_eq!(tx.route, route, "route of {target:?}");
            assert_eq!(
                tx.query_keys.iter().collect::<Vec<_>>(),
                keys,
                "query keys of {target:?}"
            );
        }
        check("/", None, "/", "/", &[]);
        check(
            "/users/42?expand=1&fields=a,b",
            None,
            "/users/42",
            "/users/{id}",
            &["expand", "fields"],
        );
        check("/s?q=secret&&=x&flag", None, "/s", "/s", &["q", "flag"]);
        check(
            "/s?9f1c0a7b3e2d4c5f9f1c=1&ok",
            None,
            "/s",
            "/s",
            &["{id}", "ok"],
        );
        check("/s?12345", None, "/s", "/s", &["{id}"]);
        check(
            "/a;jsessionid=SECRET/b;x=1?k=v",
            None,
            "/a/b",
            "/a/b",
            &["k"],
        );
        check("/p#frag?x", None, "/p", "/p", &[]);
        check("*", None, "*", "*", &[]);
        check(
            "http://Example.COM:8080/a/1?x=2",
            Some("example.com:8080"),
            "/a/1",
            "/a/{id}",
            &["x"],
        );
        check("HTTPS://example.com", Some("example.com"), "/", "/", &[]);
        check("example.com:443", Some("example.com:443"), "", "", &[]);
        let many = format!(
            "/m?{}",
            (0..100)
                .map(|i| format!("k{i}=v"))
                .collect::<Vec<_>>()
                .join("&")
        );
        check(
            &many,
            None,
            "/m",
            "/m",
            &(0..64)
                .map(|i| format!("k{i}"))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
    }

    /// The path and route as the target was split before the fast path: cut at `#`, then at
    /// `?`, every segment stripped of `;` parameters.
    fn reference_path_route(target: &str) -> (String, String) {
        let target = target.split('#').next().unwrap_or_default();
        let path_part = target.split('?').next().unwrap_or_default();
        let (mut path, mut route) = (String::new(), String::new());
        for (i, segment) in path_part.split('/').enumerate() {
            if i > 0 {
                path.push('/');
                route.push('/');
            }
            let segment = route::strip_params(segment);
            path.push_str(segment);
            route::push_segment(&mut route, segment);
        }
        (path, route)
    }

    proptest::proptest! {
        #[test]
        fn origin_form_paths_split_as_before(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just("/".to_owned()),
                    proptest::strategy::Just("?".to_owned()),
                    proptest::strategy::Just("#".to_owned()),
                    proptest::strategy::Just(";".to_owned()),
                    proptest::strategy::Just("=".to_owned()),
                    proptest::strategy::Just("&".to_owned()),
                    "[a-z0-9]{1,12}",
                ],
                0..12,
            )
        ) {
            let target = format!("/{}", parts.concat());
            let addr = "198.51.100.1:1000".parse().expect("addr");
            let mut tx = Transaction::empty(0, addr, addr);
            fill_target(&mut tx, &target);
            let (path, route) = reference_path_route(&target);
            proptest::prop_assert_eq!(&tx.path, &path, "path of {:?}", target);
            proptest::prop_assert_eq!(&tx.route, &route, "route of {:?}", target);
        }
    }

    proptest::proptest! {
        /// `request` reads framing and forwarding headers only when one is present; it must
        /// give what `body_framing` and `resolve_client` give on the whole head, flags included.
        #[test]
        fn framing_and_client_match_the_full_scans(
            picks in proptest::collection::vec(
                (0..HEADERS.len(), 0..VALUES.len(), proptest::bool::ANY),
                0..6,
            ),
            trusted_peer in proptest::bool::ANY,
        ) {
            let names: Vec<String> = picks
                .iter()
                .map(|&(n, _, upper)| {
                    let name = HEADERS[n];
                    if upper { name.to_ascii_uppercase() } else { name.to_owned() }
                })
                .collect();
            let headers: Vec<httparse::Header<'_>> = picks
                .iter()
                .zip(&names)
                .map(|(&(_, v, _), name)| httparse::Header { name, value: VALUES[v] })
                .collect();
            let cfg = HttpConfig {
                trusted_proxies: vec!["203.0.113.0/24".parse().expect("net")],
                ..HttpConfig::default()
            };
            let peer: IpAddr = if trusted_peer { "203.0.113.7" } else { "198.51.100.7" }
                .parse()
                .expect("addr");
            let addr = std::net::SocketAddr::new(peer, 40000);
            let mut tx = Transaction::empty(0, addr, addr);
            let head = RequestHead { method: "POST", target: "/", minor: 1, headers: &headers };
            let facts = request(&cfg, &mut tx, peer, &head, &mut Pools::<()>::default());
            let mut flags = crate::http::Flags::EMPTY;
            let client = proxy::resolve_client(&cfg, peer, &headers, &mut flags);
            let framing = parser::body_framing(&headers, true, &mut flags);
            proptest::prop_assert_eq!(tx.client, client);
            proptest::prop_assert_eq!(facts.framing, framing);
            for flag in flags.iter() {
                proptest::prop_assert!(tx.flags.contains(flag), "{:?} missing", flag);
            }
        }
    }

    /// Header names for [`framing_and_client_match_the_full_scans`].
    const HEADERS: [&str; 7] = [
        "content-length",
        "transfer-encoding",
        "x-forwarded-for",
        "forwarded",
        "host",
        "x-forwarded-host",
        "content-type",
    ];

    /// Header values for [`framing_and_client_match_the_full_scans`].
    const VALUES: [&[u8]; 8] = [
        b"12",
        b"chunked",
        b"gzip, chunked",
        b"198.51.100.9",
        b"for=198.51.100.10",
        b"203.0.113.8, 198.51.100.11",
        b"x",
        b"",
    ];

    #[test]
    fn keeps_canonical_reasons_static() {
        for (code, reason, expected, borrowed) in [
            (200, "OK", Some("OK"), true),
            (200, "Okay", Some("Okay"), false),
            (404, "Not Found", Some("Not Found"), true),
            (299, "Custom", Some("Custom"), false),
            (200, "", None, false),
        ] {
            let got = reason_phrase(code, reason);
            assert_eq!(got.as_deref(), expected, "{code} {reason:?}");
            assert_eq!(
                matches!(got, Some(Cow::Borrowed(_))),
                borrowed,
                "{code} {reason:?}"
            );
        }
    }

    #[test]
    fn bounds_text() {
        for (input, max, expected) in [
            (&b"abc"[..], 2, "ab"),
            (b"abc", 10, "abc"),
            (b"abc", 3, "abc"),
            (b"a\x7f\x00", 3, "a\u{7f}\u{0}"),
            ("\u{e9}\u{e9}".as_bytes(), 10, "\u{e9}\u{e9}"),
            ("\u{e9}\u{e9}".as_bytes(), 3, "\u{e9}"),
            (b"a\xffb", 10, "a\u{fffd}b"),
        ] {
            assert_eq!(bounded_lossy(input, max), expected, "{input:?} max {max}");
        }
    }
}
