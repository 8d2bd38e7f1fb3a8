//! Route templates: a request path with its identifiers collapsed to `{id}`, so that
//! `/users/12345/orders/9f1c...` and `/users/7/orders/aa01...` are one endpoint of the API
//! inventory.
//!
//! Each `/`-separated segment is classified on its own in one pass over its bytes, without
//! allocating: the only allocation is the output string. A segment is an identifier when it is
//!
//! - a number, or digits with separators (`2024-01-05`, `10.0.0.1`);
//! - a UUID (`8-4-4-4-12` hex digits);
//! - hexadecimal of 8 or more digits containing a decimal digit, or of 16 or more digits;
//! - an e-mail address (with `@` or `%40`);
//! - a token mixing letters and at least 4 digits, with digits a third of it or more
//!   (`INV20240001`, `item-12345`);
//! - a token of 8 or more characters with 2 or more digits that changes between lower case,
//!   upper case and digits at least every other character (`V1StGXR8_Z`);
//! - a base64-ish token of 16 or more characters with 2 or more digits, or whose character
//!   class changes more often than in words, `camelCase` or `TitleCase` (`dGhpcyBpcyBhIHRva2Vu`).
//!
//! Short words, versions (`v1`, `v2beta`) and names such as `api`, `oauth2-callback` stay as
//! they are. `;` parameters (`;jsessionid=...`) are dropped from every segment.

/// The placeholder that replaces an identifier segment.
pub const ID: &str = "{id}";

/// The route template of a path: identifier segments replaced by `{id}`, `;` parameters
/// dropped. A query string or fragment, if present, is ignored.
pub fn route_template(path: &str) -> String {
    let end = memchr::memchr2(b'?', b'#', path.as_bytes()).unwrap_or(path.len());
    let path = path.get(..end).unwrap_or(path);
    let mut out = String::with_capacity(path.len());
    for (i, segment) in split_ascii(path, b'/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        push_segment(&mut out, strip_params(segment));
    }
    out
}

/// Byte classes of [`push_template`]'s scan: the segment separator, and the bytes without one
/// of which a segment shorter than 8 bytes is never an identifier (see [`is_identifier`]).
const SEPARATOR: u8 = 1;
/// See [`SEPARATOR`].
const HINT: u8 = 2;
/// [`SEPARATOR`] and [`HINT`] of every byte.
const SCAN: [u8; 256] = {
    let mut table = [0; 256];
    table[b'/' as usize] = SEPARATOR;
    table[b'@' as usize] = HINT;
    table[b'%' as usize] = HINT;
    let mut d = b'0';
    while d <= b'9' {
        table[d as usize] = HINT;
        d += 1;
    }
    table
};

/// Appends the template of `path`, which holds no `;`, `?` or `#`, to `route`: the same text
/// as [`push_segment`] on every `/`-separated segment, joined by `/`. One pass over the bytes
/// finds the segments and whether each could be an identifier at all; runs of segments that
/// stay as they are then go into `route` in one copy, between the `{id}`s.
pub(crate) fn push_template(route: &mut String, path: &str) {
    let bytes = path.as_bytes();
    // `path[..copied]` is in `route` already; the current segment starts at `start`.
    let mut copied = 0;
    let mut start = 0;
    let mut hint = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let class = SCAN[usize::from(b)];
        if class & SEPARATOR != 0 {
            collapse(route, path, &mut copied, start, i, hint);
            start = i + 1;
            hint = 0;
        }
        hint |= class;
    }
    collapse(route, path, &mut copied, start, bytes.len(), hint);
    route.push_str(path.get(copied..).unwrap_or_default());
}

/// [`push_template`] at the end of the segment `path[start..end]`: when it is an identifier,
/// the text before it goes into `route`, then `{id}`.
fn collapse(
    route: &mut String,
    path: &str,
    copied: &mut usize,
    start: usize,
    end: usize,
    hint: u8,
) {
    // `is_identifier` says no to a segment shorter than 8 bytes without a hint byte.
    if hint & HINT == 0 && end - start < 8 {
        return;
    }
    if let Some(segment) = path.get(start..end)
        && is_identifier(segment)
    {
        route.push_str(path.get(*copied..start).unwrap_or_default());
        route.push_str(ID);
        *copied = end;
    }
}

/// Appends `segment` to a template, or `{id}` when it is an identifier.
pub(crate) fn push_segment(out: &mut String, segment: &str) {
    if is_identifier(segment) {
        out.push_str(ID);
    } else {
        out.push_str(segment);
    }
}

/// The segment without its `;` parameters.
pub(crate) fn strip_params(segment: &str) -> &str {
    match memchr::memchr(b';', segment.as_bytes()) {
        Some(end) => segment.get(..end).unwrap_or(segment),
        None => segment,
    }
}

/// Splits `text` at every `sep` byte (an ASCII separator, so every piece is valid text), with
/// a plain byte loop: the pieces of paths and queries are short, and this beats a searcher.
pub(crate) fn split_ascii(text: &str, sep: u8) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let rest = bytes.get(start..)?;
        let end = if let Some(rel) = rest.iter().position(|b| *b == sep) {
            start + rel
        } else {
            done = true;
            bytes.len()
        };
        let piece = text.get(start..end)?;
        start = end + 1;
        Some(piece)
    })
}

/// Character class of a byte, for counting class changes inside a token.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Lower,
    Upper,
    Digit,
    Other,
}

/// Whether one path segment (or query name) looks like an identifier rather than a word.
pub(crate) fn is_identifier(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    let len = bytes.len();
    if len == 0 {
        return false;
    }
    // Fast path for short words: every rule below needs a digit, an `@` or `%`, or length.
    if len < 8
        && !bytes
            .iter()
            .any(|b| b.is_ascii_digit() || *b == b'@' || *b == b'%')
    {
        return false;
    }
    // Fast path for numbers, the most common identifier: digits only is "numeric" below.
    if bytes.iter().all(u8::is_ascii_digit) {
        return true;
    }
    let mut digits = 0usize;
    let mut letters = 0usize;
    let mut hex_only = true;
    let mut numeric_only = true;
    let mut token_only = true;
    let mut at: Option<usize> = None;
    let mut percent = false;
    let mut changes = 0usize;
    let mut alnum = 0usize;
    let mut prev = Class::Other;
    for (i, &b) in bytes.iter().enumerate() {
        let class = match b {
            b'0'..=b'9' => Class::Digit,
            b'a'..=b'z' => Class::Lower,
            b'A'..=b'Z' => Class::Upper,
            _ => Class::Other,
        };
        match class {
            Class::Digit => digits += 1,
            Class::Lower | Class::Upper => letters += 1,
            Class::Other => {}
        }
        if class != Class::Other {
            alnum += 1;
            if prev != Class::Other && prev != class {
                changes += 1;
            }
        }
        prev = class;
        if !b.is_ascii_hexdigit() {
            hex_only = false;
        }
        if !(b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.' | b':' | b',')) {
            numeric_only = false;
        }
        if !(b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'=' | b'%'))
        {
            token_only = false;
        }
        percent |= b == b'%';
        if b == b'@' && at.is_none() {
            at = Some(i);
        }
    }
    if numeric_only {
        return digits > 0 && digits * 2 >= len;
    }
    if is_uuid(bytes) {
        return true;
    }
    if hex_only && (len >= 16 || (len >= 8 && digits > 0)) {
        return true;
    }
    if (at.is_some() || percent) && is_email(bytes, at) {
        return true;
    }
    if !token_only || letters == 0 {
        return false;
    }
    if digits >= 4 && digits * 3 >= len {
        return true;
    }
    if len >= 8 && digits >= 2 && changes * 2 >= alnum {
        return true;
    }
    len >= 16 && (digits >= 2 || changes * 20 >= alnum * 11)
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hex digits.
fn is_uuid(bytes: &[u8]) -> bool {
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// `local@domain.tld`, with `@` either literal (at index `at`) or percent-encoded.
fn is_email(bytes: &[u8], at: Option<usize>) -> bool {
    let (local, domain) = match at {
        Some(i) => (bytes.get(..i), bytes.get(i + 1..)),
        None => match memchr::memmem::find(bytes, b"%40") {
            Some(i) => (bytes.get(..i), bytes.get(i + 3..)),
            None => return false,
        },
    };
    let (Some(local), Some(domain)) = (local, domain) else {
        return false;
    };
    if local.is_empty() {
        return false;
    }
    match memchr::memrchr(b'.', domain) {
        Some(dot) => dot > 0 && dot + 1 < domain.len(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(path: &str, expected: &str) {
        assert_eq!(route_template(path), expected, "template of {path:?}");
    }

    /// Paths without `;`, `?` or `#` whose segments are random or near the edges of the
    /// identifier rules: identifiers without a digit, lengths around 8 and 16.
    fn path_strategy() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let segment = prop_oneof![
            "[a-zA-Z0-9@%._~+=-]{0,40}",
            "[a-z]{1,9}",
            "[a-f]{7,17}",
            "[a-zA-Z]{14,20}",
            "[a-z]{1,6}(@|%40)[a-z]{1,6}\\.[a-z]{2,3}",
            Just(String::new()),
        ];
        proptest::collection::vec(segment, 0..8).prop_map(|segments| segments.join("/"))
    }

    proptest::proptest! {
        /// The one-pass template of a path without `;`, `?` or `#` is the segment-by-segment
        /// one.
        #[test]
        fn one_pass_template_matches_segments(path in path_strategy()) {
            let mut route = String::from("kept:");
            push_template(&mut route, &path);
            proptest::prop_assert_eq!(route, format!("kept:{}", route_template(&path)));
        }
    }

    #[test]
    fn collapses_identifiers() {
        for (path, expected) in [
            (
                "/users/12345/orders/9f1c0a7b3e2d4c5f",
                "/users/{id}/orders/{id}",
            ),
            ("/users/0", "/users/{id}"),
            ("/items/550e8400-e29b-41d4-a716-446655440000", "/items/{id}"),
            (
                "/items/550E8400-E29B-41D4-A716-446655440000/x",
                "/items/{id}/x",
            ),
            ("/objects/550e8400e29b41d4a716446655440000", "/objects/{id}"),
            ("/commits/a1b2c3d4", "/commits/{id}"),
            ("/blobs/deadbeefdeadbeef", "/blobs/{id}"),
            ("/users/alice@example.com/profile", "/users/{id}/profile"),
            ("/users/alice%40example.com", "/users/{id}"),
            ("/reports/2024-01-05", "/reports/{id}"),
            ("/hosts/10.0.0.1", "/hosts/{id}"),
            ("/invoices/INV20240001", "/invoices/{id}"),
            ("/items/item-12345", "/items/{id}"),
            ("/s/V1StGXR8_Z5jdHi6B-myT", "/s/{id}"),
            ("/t/dGhpcyBpcyBhIHRva2Vu", "/t/{id}"),
            ("/t/QWxhZGRpbjpPcGVuU2VzYW1l", "/t/{id}"),
            ("/n/V1StGXR8_Z", "/n/{id}"),
            ("/a/1/b/2/c/3", "/a/{id}/b/{id}/c/{id}"),
        ] {
            check(path, expected);
        }
    }

    #[test]
    fn keeps_words() {
        for path in [
            "/",
            "",
            "/api/v1/users",
            "/v2beta/items",
            "/oauth2/callback",
            "/oauth2-callback-handler",
            "/authentication-providers",
            "/getUserAccountInformation",
            "/ThisIsATitleCaseWord",
            "/deadbeef",
            "/cafe",
            "/web3/md5sum",
            "/static/app.min.js",
            "/users//orders/",
            "/abc123",
            "/ipv4-only",
            "/@me",
            "/user@localhost",
            "/*",
        ] {
            check(path, path);
        }
    }

    #[test]
    fn drops_params_query_and_fragment() {
        for (path, expected) in [
            ("/cart;jsessionid=0123456789ABCDEF/items", "/cart/items"),
            ("/login;jsessionid=A1B2C3", "/login"),
            ("/users/42?token=abc", "/users/{id}"),
            ("/users/42#frag", "/users/{id}"),
            ("/a;b/c", "/a/c"),
        ] {
            check(path, expected);
        }
    }

    #[test]
    fn handles_non_ascii_and_odd_bytes() {
        for (path, expected) in [
            ("/caf\u{e9}/12", "/caf\u{e9}/{id}"),
            ("/\u{4e2d}\u{6587}", "/\u{4e2d}\u{6587}"),
            ("/%E4%B8%AD", "/%E4%B8%AD"),
            ("/a b", "/a b"),
        ] {
            check(path, expected);
        }
    }
}
