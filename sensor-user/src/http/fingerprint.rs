//! The request fingerprint: a stable hash of a client's observable HTTP shape, the same for
//! every request a given client program sends and different between programs, whatever
//! address, session or account it uses. Attack tools rotate addresses and sessions; they
//! rotate their request shape far less.
//!
//! # Format (version 1)
//!
//! `apr1_<m><v><c><r><nn><llll>_<hhhhhhhhhhhh>_<ua>`, for example
//! `apr1_ge11cn07enus_3f1c0b9a22de_chrome`:
//!
//! - `m`: the method's first two letters, lowercased (`ge`, `po`, `pu`, `de`, `pa`, `he`,
//!   `op`); `xx` for an empty or non-alphabetic method.
//! - `v`: the HTTP version, `10` or `11` (`00` when unknown).
//! - `c`: `c` when the request has a `Cookie` header, `n` when not; `r`: the same for
//!   `Referer`.
//! - `nn`: the number of header fields other than `Cookie` and `Referer`, two digits, at most
//!   99.
//! - `llll`: the first four letters or digits of `Accept-Language`, lowercased (`enus` for
//!   `en-US,en;q=0.9`), `0000` without one; shorter values are padded with `0`.
//! - `hhhhhhhhhhhh`: the first 48 bits, in hex, of SipHash-2-4 with the all-zero key over the
//!   lowercased names of those header fields in the order sent, each followed by `,`.
//! - `ua`: the user-agent family: `edge`, `opera`, `chrome`, `firefox`, `safari` or `mozilla`
//!   for browser-style agents, otherwise the agent's first product name lowercased (`curl`,
//!   `python-requests`, `go-http-client`), at most 24 letters, digits, `-`, `.` or `_`; `none`
//!   without a `User-Agent`.
//!
//! Only the shape is used: header names, not values (but for the language's first letters and
//! the agent's family), so no secret reaches a fingerprint. The hash's key is public on
//! purpose: fingerprints are compared across installations and runs.

use std::fmt::{self, Write as _};
use std::hash::Hasher as _;

use siphasher::sip::SipHasher24;

use super::transaction::{HttpVersion, Transaction};

/// Longest user-agent family kept.
const MAX_FAMILY: usize = 24;

/// A request fingerprint; see the module docs for its text form.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestFingerprint {
    /// The text form.
    text: String,
}

impl RequestFingerprint {
    /// The fingerprint of a transaction's request (`None` when its request head was not
    /// parsed).
    pub fn of(tx: &Transaction) -> Option<Self> {
        if tx.method.is_empty() {
            return None;
        }
        let mut text = String::with_capacity(48);
        text.push_str("apr1_");
        let mut m = tx
            .method
            .bytes()
            .take(2)
            .filter(u8::is_ascii_alphabetic)
            .map(|b| char::from(b.to_ascii_lowercase()));
        match (m.next(), m.next()) {
            (Some(a), Some(b)) => {
                text.push(a);
                text.push(b);
            }
            _ => text.push_str("xx"),
        }
        text.push_str(match tx.version {
            Some(HttpVersion::Http10) => "10",
            Some(HttpVersion::Http11) => "11",
            None => "00",
        });
        let (mut cookie, mut referer, mut count) = (false, false, 0_usize);
        let mut hash = SipHasher24::new_with_keys(0, 0);
        for name in tx.header_order.iter() {
            match name {
                "cookie" => cookie = true,
                "referer" => referer = true,
                _ => {
                    count += 1;
                    hash.write(name.as_bytes());
                    hash.write_u8(b',');
                }
            }
        }
        text.push(if cookie { 'c' } else { 'n' });
        text.push(if referer { 'r' } else { 'n' });
        let _ = write!(text, "{:02}", count.min(99));
        let lang = tx.language.unwrap_or(*b"0000");
        text.extend(lang.iter().map(|&b| char::from(b)));
        let _ = write!(text, "_{:012x}_", hash.finish() >> 16);
        push_family(&mut text, tx.user_agent.as_deref());
        Some(Self { text })
    }

    /// The text form.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for RequestFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for RequestFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The `llll` part from an `Accept-Language` value: its first four letters or digits,
/// lowercased, padded with `0` (`None` when it has none).
pub(crate) fn language_of(value: &[u8]) -> Option<[u8; 4]> {
    let mut out = *b"0000";
    let mut n = 0;
    for &b in value.iter().filter(|b| b.is_ascii_alphanumeric()).take(4) {
        if let Some(slot) = out.get_mut(n) {
            *slot = b.to_ascii_lowercase();
        }
        n += 1;
    }
    (n > 0).then_some(out)
}

/// Appends the user-agent family of `ua`.
fn push_family(text: &mut String, ua: Option<&str>) {
    let Some(ua) = ua.map(str::trim).filter(|u| !u.is_empty()) else {
        text.push_str("none");
        return;
    };
    // Browser-style agents all claim `Mozilla/5.0`; the engine tokens tell them apart, most
    // specific first (Edge and Opera also claim Chrome, Chrome also claims Safari).
    if ua.starts_with("Mozilla/") {
        let family = [
            ("Edg/", "edge"),
            ("OPR/", "opera"),
            ("Chrome/", "chrome"),
            ("Firefox/", "firefox"),
            ("Safari/", "safari"),
        ]
        .iter()
        .find(|(token, _)| ua.contains(token))
        .map_or("mozilla", |(_, family)| family);
        text.push_str(family);
        return;
    }
    let start = text.len();
    text.extend(
        ua.chars()
            .take_while(|c| !matches!(c, '/' | ' ' | ';' | '(' | ')'))
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
            .take(MAX_FAMILY)
            .map(|c| c.to_ascii_lowercase()),
    );
    if text.len() == start {
        text.push_str("other");
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn tx(
        method: &'static str,
        headers: &str,
        ua: Option<&str>,
        lang: Option<&str>,
    ) -> Transaction {
        let peer: SocketAddr = "198.51.100.7:40000".parse().expect("peer");
        let server: SocketAddr = "198.51.100.1:80".parse().expect("server");
        let mut tx = Transaction::empty(0, peer, server);
        tx.method = method.into();
        tx.version = Some(HttpVersion::Http11);
        tx.header_order
            .extend_lowercase(headers.split(' ').filter(|h| !h.is_empty()));
        tx.user_agent = ua.map(str::to_owned);
        tx.language = lang.and_then(|l| language_of(l.as_bytes()));
        tx
    }

    const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                          Chrome/126.0.0.0 Safari/537.36";

    #[test]
    fn the_text_form_follows_the_documented_format() {
        let cases = [
            (
                tx(
                    "GET",
                    "Host User-Agent Accept Accept-Language Cookie",
                    Some(CHROME),
                    Some("en-US,en;q=0.9"),
                ),
                "apr1_ge11cn04enus_",
                "_chrome",
            ),
            (
                tx(
                    "POST",
                    "Host User-Agent Accept Content-Length Content-Type",
                    Some("curl/8.5.0"),
                    None,
                ),
                "apr1_po11nn050000_",
                "_curl",
            ),
            (
                tx("DELETE", "Host Referer", None, Some("de")),
                "apr1_de11nr01de00_",
                "_none",
            ),
            (
                tx("GET", "Host", Some("python-requests/2.31"), None),
                "apr1_ge11nn010000_",
                "_python-requests",
            ),
        ];
        for (t, prefix, suffix) in cases {
            let f = RequestFingerprint::of(&t).expect("fingerprint");
            let s = f.as_str();
            assert!(s.starts_with(prefix) && s.ends_with(suffix), "{s}");
            let hash = s.split('_').nth(2).expect("hash part");
            assert_eq!(hash.len(), 12, "{s}");
            assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{s}");
        }
    }

    #[test]
    fn the_shape_decides_not_the_values() {
        let base = tx("GET", "Host User-Agent Accept", Some(CHROME), Some("en-US"));
        let mut other = base.clone();
        other.path = "/other".to_owned();
        other.account = Some("alice".to_owned());
        assert_eq!(
            RequestFingerprint::of(&base),
            RequestFingerprint::of(&other)
        );
        // Header order is part of the shape.
        let reordered = tx("GET", "User-Agent Host Accept", Some(CHROME), Some("en-US"));
        assert_ne!(
            RequestFingerprint::of(&base),
            RequestFingerprint::of(&reordered)
        );
        // So is the agent's family, and the language.
        let firefox = tx(
            "GET",
            "Host User-Agent Accept",
            Some("Mozilla/5.0 Firefox/128.0"),
            Some("en-US"),
        );
        assert_ne!(
            RequestFingerprint::of(&base),
            RequestFingerprint::of(&firefox)
        );
        let french = tx("GET", "Host User-Agent Accept", Some(CHROME), Some("fr-FR"));
        assert_ne!(
            RequestFingerprint::of(&base),
            RequestFingerprint::of(&french)
        );
        // A Chrome update keeps the fingerprint.
        let updated = tx(
            "GET",
            "Host User-Agent Accept",
            Some(&CHROME.replace("126", "127")),
            Some("en-US"),
        );
        assert_eq!(
            RequestFingerprint::of(&base),
            RequestFingerprint::of(&updated)
        );
        // No parsed request, no fingerprint.
        assert_eq!(RequestFingerprint::of(&tx("", "", None, None)), None);
    }

    #[test]
    fn the_hash_is_stable() {
        // The documented hash of a fixed header list: the same on every machine and run.
        let t = tx("GET", "Host Accept", Some("curl/8.5.0"), None);
        let mut h = SipHasher24::new_with_keys(0, 0);
        h.write(b"host,accept,");
        let want = format!("apr1_ge11nn020000_{:012x}_curl", h.finish() >> 16);
        assert_eq!(RequestFingerprint::of(&t).expect("fp").as_str(), want);
    }

    #[test]
    fn families_of_agents() {
        let cases = [
            (CHROME, "chrome"),
            (
                "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/126.0 Safari/537.36 Edg/126.0",
                "edge",
            ),
            (
                "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15",
                "safari",
            ),
            ("Mozilla/5.0 (Hydra)", "mozilla"),
            ("Go-http-client/1.1", "go-http-client"),
            ("Fuzz Faster U Fool v2.1.0", "fuzz"),
            ("((()))", "other"),
            ("   ", "none"),
        ];
        for (ua, want) in cases {
            let mut s = String::new();
            push_family(&mut s, Some(ua));
            assert_eq!(s, want, "{ua}");
        }
        assert_eq!(language_of(b"en-US,en;q=0.9"), Some(*b"enus"));
        assert_eq!(language_of(b"*"), None);
        assert_eq!(language_of(b"de"), Some(*b"de00"));
    }
}
