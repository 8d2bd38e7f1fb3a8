//! Who a request acts for: the account (HTTP Basic user, JWT `sub` claim, or the account field
//! of a login form or JSON body) and the session (a configured cookie or a bearer token); and
//! how a login attempt ended.
//!
//! Secrets never leave this module in clear: passwords are never decoded into a string,
//! sessions leave only as a keyed SipHash-1-3 in hex, and JWTs are decoded without being
//! verified, only to read `sub`.

use std::borrow::Cow;
use std::hash::Hasher;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use siphasher::sip::SipHasher13;

use super::config::{HttpConfig, Login, LoginRoute, LoginRule};
use super::transaction::{LoginOutcome, NameList, push_ascii};

/// The methods of a body visitor for every JSON value that is not the object it reads: the
/// value is consumed and ignored (a body that is an array or a scalar holds no account).
macro_rules! ignore_other_values {
    () => {
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(())
        }

        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
            Ok(())
        }

        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
            Ok(())
        }

        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
            Ok(())
        }

        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
            Ok(())
        }

        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
            Ok(())
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
            Ok(())
        }
    };
}

/// Longest account name kept, in bytes.
pub(crate) const MAX_ACCOUNT: usize = 256;
/// Longest base64 text decoded for a Basic credential or a JWT payload.
const MAX_B64: usize = 4096;

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

/// The keyed hash of a session value, as 16 hex digits.
pub(crate) fn session_hash(key: &[u8; 16], value: &[u8]) -> String {
    let mut hex = String::with_capacity(16);
    push_session_hash(&mut hex, key, value);
    hex
}

/// Appends [`session_hash`]`(key, value)` to `out`.
pub(crate) fn push_session_hash(out: &mut String, key: &[u8; 16], value: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hasher = SipHasher13::new_with_key(key);
    hasher.write(value);
    let hash = hasher.finish();
    let mut digits = [0u8; 16];
    for (i, digit) in digits.iter_mut().enumerate() {
        *digit = DIGITS[((hash >> ((15 - i) * 4)) & 0xF) as usize];
    }
    let appended = push_ascii(out, &digits);
    debug_assert!(appended, "hex digits are ASCII");
}

/// Decodes base64 `text` with `engine` and hands the bytes to `read`, decoding on the stack
/// into a buffer sized for typical credentials and only zeroing a large one when needed.
fn with_decoded<T>(
    engine: &GeneralPurpose,
    text: &[u8],
    read: impl FnOnce(&[u8]) -> Option<T>,
) -> Option<T> {
    if text.is_empty() || text.len() > MAX_B64 {
        return None;
    }
    if text.len() <= 512 {
        let mut small = [0u8; 384];
        let len = engine.decode_slice(text, &mut small).ok()?;
        read(small.get(..len)?)
    } else {
        let mut large = [0u8; MAX_B64 / 4 * 3];
        let len = engine.decode_slice(text, &mut large).ok()?;
        read(large.get(..len)?)
    }
}

/// What an `Authorization` header says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Authorization<'a> {
    /// HTTP Basic: the user name (the password is never decoded into text).
    Basic(String),
    /// A bearer token: the token (for the session hash) and the JWT `sub`, if it is a JWT.
    Bearer {
        /// The raw token.
        token: &'a [u8],
        /// The `sub` claim of a JWT payload.
        sub: Option<String>,
    },
    /// A scheme this module does not read.
    Other,
    /// A Basic or Bearer value that could not be decoded.
    Invalid,
}

/// Reads an `Authorization` header value.
pub(crate) fn authorization(value: &[u8]) -> Authorization<'_> {
    let value = super::proxy::trim_ows(value);
    let (scheme, rest) = match memchr::memchr(b' ', value) {
        Some(sp) => (
            value.get(..sp).unwrap_or_default(),
            super::proxy::trim_ows(value.get(sp + 1..).unwrap_or_default()),
        ),
        None => (value, &b""[..]),
    };
    if scheme.eq_ignore_ascii_case(b"basic") {
        basic_user(rest).map_or(Authorization::Invalid, Authorization::Basic)
    } else if scheme.eq_ignore_ascii_case(b"bearer") {
        if rest.is_empty() {
            Authorization::Invalid
        } else {
            Authorization::Bearer {
                token: rest,
                sub: jwt_sub(rest),
            }
        }
    } else {
        Authorization::Other
    }
}

/// Whether `value` is an `Authorization` value of the Basic scheme (`Basic <credential>`).
fn is_basic(value: &[u8]) -> bool {
    let value = super::proxy::trim_ows(value);
    value
        .get(..6)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"basic "))
}

/// The login rule [`LoginRule::Basic`] when `basic_auth_logins` is on and the request carries a
/// Basic credential that gave `account`. Looks at the headers only when an account was found,
/// so requests without credentials pay one branch.
pub(crate) fn basic_login(
    cfg: &HttpConfig,
    account: Option<&str>,
    headers: &[httparse::Header<'_>],
) -> Option<LoginRule> {
    let basic = cfg.basic_auth_logins
        && account.is_some()
        && headers.iter().any(|h| {
            h.name.len() == 13 && h.name.eq_ignore_ascii_case("authorization") && is_basic(h.value)
        });
    basic.then_some(LoginRule::Basic)
}

/// The user of a Basic credential (`base64(user:password)`).
fn basic_user(b64: &[u8]) -> Option<String> {
    with_decoded(&STANDARD, b64, |plain| {
        let user = plain.get(..memchr::memchr(b':', plain)?)?;
        Some(bounded(&String::from_utf8_lossy(user)))
    })
}

/// The `sub` claim of a JWT (`header.payload.signature`), decoded but not verified.
fn jwt_sub(token: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Claims<'a> {
        #[serde(borrow, default)]
        sub: Option<Cow<'a, str>>,
    }
    let mut parts = token.split(|b| *b == b'.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    with_decoded(&URL_SAFE, payload, |json| {
        let claims: Claims<'_> = serde_json::from_slice(json).ok()?;
        claims.sub.map(|s| bounded(&s))
    })
}

/// `text` cut to at most [`MAX_ACCOUNT`] bytes at a character boundary.
pub(crate) fn bounded(text: &str) -> String {
    let mut end = text.len().min(MAX_ACCOUNT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_owned()
}

/// The value of the first cookie in a `Cookie` header whose name satisfies `wanted`.
pub(crate) fn find_cookie(header: &[u8], wanted: impl Fn(&[u8]) -> bool) -> Option<&[u8]> {
    header.split(|b| *b == b';').find_map(|pair| {
        let pair = super::proxy::trim_ows(pair);
        let eq = memchr::memchr(b'=', pair)?;
        let name = pair.get(..eq)?;
        wanted(name).then(|| pair.get(eq + 1..).unwrap_or_default())
    })
}

/// The cookie name and value of a `Set-Cookie` header (`name=value; Path=/`).
pub(crate) fn set_cookie(header: &[u8]) -> Option<(&str, &[u8])> {
    let first = header.split(|b| *b == b';').next()?;
    let eq = memchr::memchr(b'=', first)?;
    let name = super::proxy::trim_ows(first.get(..eq)?);
    let value = super::proxy::trim_ows(first.get(eq + 1..)?);
    let name = std::str::from_utf8(name).ok()?;
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    token.then_some((name, value))
}

/// How a login body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// `application/x-www-form-urlencoded`.
    Form,
    /// JSON.
    Json,
    /// Unknown content type: JSON if it starts with `{`, else a form.
    Sniff,
}

impl BodyKind {
    /// The kind for a `Content-Type` value.
    pub(crate) fn from_content_type(value: Option<&[u8]>) -> Self {
        let Some(value) = value else {
            return BodyKind::Sniff;
        };
        let value = super::proxy::trim_ows(value);
        let prefix = |p: &[u8]| {
            value
                .get(..p.len())
                .is_some_and(|v| v.eq_ignore_ascii_case(p))
        };
        if prefix(b"application/x-www-form-urlencoded") {
            BodyKind::Form
        } else if memchr::memmem::find(&value.to_ascii_lowercase(), b"json").is_some() {
            BodyKind::Json
        } else {
            BodyKind::Sniff
        }
    }
}

/// The account of a captured login body: the route's `account_field`, or for a login found by
/// a default rule the first of `account_fields` the body holds. `complete` says whether
/// `body` is the whole body.
pub(crate) fn login_account(
    cfg: &HttpConfig,
    login: Login<'_>,
    kind: BodyKind,
    body: &[u8],
    complete: bool,
) -> Option<String> {
    match login {
        Login::Route(route) => body_account(kind, &route.account_field, body, complete),
        Login::Path | Login::Basic => first_account(kind, &cfg.account_fields, body, complete),
    }
}

/// `kind`, with [`BodyKind::Sniff`] resolved from the first non-blank byte of `body`.
fn resolve(kind: BodyKind, body: &[u8]) -> BodyKind {
    match kind {
        BodyKind::Sniff => match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => BodyKind::Json,
            _ => BodyKind::Form,
        },
        other => other,
    }
}

/// The account field of a captured login body. `complete` says whether `body` is the whole
/// body; when it is not, a form value running to the end of `body` may be cut and is not used.
pub(crate) fn body_account(
    kind: BodyKind,
    field: &str,
    body: &[u8],
    complete: bool,
) -> Option<String> {
    match resolve(kind, body) {
        BodyKind::Json => json_field(body, field),
        _ => form_first(body, &[field], complete),
    }
}

/// The value of the first of `fields` (in the order of `fields`, not of the body) that a
/// login body holds with a non-empty value: form fields or top-level JSON members. One pass
/// over the body, however many fields are wanted.
pub(crate) fn first_account<F: AsRef<str>>(
    kind: BodyKind,
    fields: &[F],
    body: &[u8],
    complete: bool,
) -> Option<String> {
    match resolve(kind, body) {
        BodyKind::Json => json_first(body, fields),
        _ => form_first(body, fields, complete),
    }
}

/// The first of `fields` in a form body, percent-decoded. A value running to the end of a cut
/// body (`complete` false) may itself be cut and is not used.
fn form_first<F: AsRef<str>>(body: &[u8], fields: &[F], complete: bool) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    let mut pairs = body.split(|b| *b == b'&').peekable();
    while let Some(pair) = pairs.next() {
        let terminated = complete || pairs.peek().is_some();
        let (name, value) = match memchr::memchr(b'=', pair) {
            Some(eq) => (pair.get(..eq)?, pair.get(eq + 1..)?),
            None => (pair, &b""[..]),
        };
        // Only fields ranked before the best one found so far can improve on it.
        let wanted = fields.get(..best.as_ref().map_or(fields.len(), |(rank, _)| *rank))?;
        let Some(rank) = wanted
            .iter()
            .position(|f| percent_decoded_eq(name, f.as_ref().as_bytes()))
        else {
            continue;
        };
        if !terminated {
            break;
        }
        let value = percent_decode(value);
        if value.is_empty() {
            continue;
        }
        best = Some((rank, bounded(&String::from_utf8_lossy(&value))));
        if rank == 0 {
            break;
        }
    }
    best.map(|(_, value)| value)
}

/// Bytes of a form component with `+` as space and `%XX` escapes decoded.
fn percent_decode_iter(input: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let b = *input.get(i)?;
        i += 1;
        Some(match b {
            b'+' => b' ',
            b'%' => {
                let hex = |c: Option<&u8>| c.and_then(|c| (*c as char).to_digit(16));
                match (hex(input.get(i)), hex(input.get(i + 1))) {
                    (Some(hi), Some(lo)) => {
                        i += 2;
                        (hi * 16 + lo) as u8
                    }
                    _ => b'%',
                }
            }
            other => other,
        })
    })
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    percent_decode_iter(input).take(MAX_ACCOUNT * 4).collect()
}

fn percent_decoded_eq(encoded: &[u8], plain: &[u8]) -> bool {
    percent_decode_iter(encoded).eq(plain.iter().copied())
}

/// A member of a JSON body (dots select nested members), read with a streaming visitor so a
/// member found before the end of a cut body is still used.
fn json_field(body: &[u8], field: &str) -> Option<String> {
    let mut found = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    // Errors after the member was found (a cut body) are expected and ignored.
    let _ = Lookup {
        path: field,
        found: &mut found,
    }
    .deserialize(&mut de);
    found
}

/// Looks up `path` in a JSON object, storing a string or number member in `found`.
struct Lookup<'p, 'o> {
    path: &'p str,
    found: &'o mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for Lookup<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Lookup<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (head, rest) = match self.path.split_once('.') {
            Some((head, rest)) => (head, Some(rest)),
            None => (self.path, None),
        };
        while let Some(matched) = map.next_key_seed(KeyIs(head))? {
            match (matched, rest) {
                (true, None) => {
                    *self.found = account_value(map.next_value()?);
                    return Ok(());
                }
                (true, Some(rest)) => {
                    map.next_value_seed(Lookup {
                        path: rest,
                        found: &mut *self.found,
                    })?;
                    if self.found.is_some() {
                        return Ok(());
                    }
                }
                (false, _) => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    ignore_other_values!();
}

/// An account from a JSON member: a non-empty string (bounded) or a number.
fn account_value(value: serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) if !s.is_empty() => Some(bounded(&s)),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The first of `fields` among the top-level members of a JSON body, read with a streaming
/// visitor so members found before the end of a cut body are still used.
fn json_first<F: AsRef<str>>(body: &[u8], fields: &[F]) -> Option<String> {
    let mut best = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    // Errors after a member was found (a cut body) are expected and ignored.
    let _ = FirstOf {
        fields,
        best: &mut best,
    }
    .deserialize(&mut de);
    best.map(|(_, value)| value)
}

/// Looks for `fields` among the members of a JSON object, keeping in `best` the value of the
/// best-ranked one (its index in `fields`) with a usable value.
struct FirstOf<'f, 'o, F> {
    fields: &'f [F],
    best: &'o mut Option<(usize, String)>,
}

impl<'de, F: AsRef<str>> DeserializeSeed<'de> for FirstOf<'_, '_, F> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de, F: AsRef<str>> Visitor<'de> for FirstOf<'_, '_, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        loop {
            // Only fields ranked before the best one found so far can improve on it.
            let limit = self
                .best
                .as_ref()
                .map_or(self.fields.len(), |(rank, _)| *rank);
            let wanted = self.fields.get(..limit).unwrap_or_default();
            let Some(rank) = map.next_key_seed(KeyRank(wanted))? else {
                return Ok(());
            };
            match rank {
                Some(rank) => {
                    if let Some(value) = account_value(map.next_value()?) {
                        *self.best = Some((rank, value));
                        if rank == 0 {
                            return Ok(());
                        }
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
    }

    ignore_other_values!();
}

/// A map key seed answering which of the wanted names (by index) the key is, without
/// allocating for keys without escapes.
struct KeyRank<'a, F>(&'a [F]);

impl<'de, F: AsRef<str>> DeserializeSeed<'de> for KeyRank<'_, F> {
    type Value = Option<usize>;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Option<usize>, D::Error> {
        de.deserialize_str(self)
    }
}

impl<F: AsRef<str>> Visitor<'_> for KeyRank<'_, F> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|f| f.as_ref() == key))
    }
}

/// A map key seed answering whether the key equals the wanted name, without allocating for
/// keys without escapes.
struct KeyIs<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<bool, D::Error> {
        de.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

/// The outcome of a login attempt from its response.
pub(crate) fn login_outcome(
    cfg: &HttpConfig,
    login: Login<'_>,
    status: Option<u16>,
    set_cookies: &NameList,
) -> LoginOutcome {
    let Some(status) = status else {
        return LoginOutcome::Unknown;
    };
    match login {
        Login::Route(route) => route_outcome(route, status, set_cookies),
        Login::Path | Login::Basic => default_outcome(&cfg.login_failure_status, status),
    }
}

/// The outcome by a route's rules: failure statuses first, then the success cookie or the
/// success statuses.
fn route_outcome(route: &LoginRoute, status: u16, set_cookies: &NameList) -> LoginOutcome {
    if route.failure_status.contains(&status) {
        return LoginOutcome::Failure;
    }
    if let Some(cookie) = &route.success_set_cookie {
        return if set_cookies.iter().any(|name| name == cookie) {
            LoginOutcome::Success
        } else {
            LoginOutcome::Failure
        };
    }
    if route.success_status.contains(&status) {
        LoginOutcome::Success
    } else {
        LoginOutcome::Unknown
    }
}

/// The outcome by the default rule: a failure status, else success for 2xx and 3xx.
fn default_outcome(failure_status: &[u16], status: u16) -> LoginOutcome {
    if failure_status.contains(&status) {
        LoginOutcome::Failure
    } else if (200..400).contains(&status) {
        LoginOutcome::Success
    } else {
        LoginOutcome::Unknown
    }
}

/// Encodes `text` as standard base64 (test helper for building credentials).
#[cfg(test)]
pub(crate) fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Encodes `text` as unpadded base64url (test helper for building JWTs).
#[cfg(test)]
pub(crate) fn b64url(text: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_authorization() {
        #[track_caller]
        fn check(value: &str, expected: &Authorization<'_>) {
            assert_eq!(
                &authorization(value.as_bytes()),
                expected,
                "value {value:?}"
            );
        }
        let jwt =
            |payload: &str| format!("{}.{}.sig", b64url(r#"{"alg":"none"}"#), b64url(payload));
        let bearer = |t: &'static str, sub: Option<&str>| Authorization::Bearer {
            token: t.as_bytes(),
            sub: sub.map(str::to_owned),
        };
        check(
            &format!("Basic {}", b64("alice:s3cret")),
            &Authorization::Basic("alice".into()),
        );
        check(
            &format!("basic  {}", b64("bob:pw:with:colons")),
            &Authorization::Basic("bob".into()),
        );
        check(
            &format!("Basic {}", b64(":nouser")),
            &Authorization::Basic(String::new()),
        );
        check(
            &format!("Basic {}", b64("nocolon")),
            &Authorization::Invalid,
        );
        check("Basic !!!", &Authorization::Invalid);
        check("Basic", &Authorization::Invalid);
        check(
            &format!("Basic {}", "QQ".repeat(3000)),
            &Authorization::Invalid,
        );
        check("Digest username=\"x\"", &Authorization::Other);
        check("Bearer opaque-token", &bearer("opaque-token", None));
        check("Bearer", &Authorization::Invalid);
        let token: &'static str = Box::leak(jwt(r#"{"sub":"user-42","exp":1}"#).into_boxed_str());
        check(&format!("Bearer {token}"), &bearer(token, Some("user-42")));
        let padded: &'static str =
            Box::leak(format!("h.{}==.s", b64url(r#"{"sub":"abc"}"#)).into_boxed_str());
        check(&format!("Bearer {padded}"), &bearer(padded, Some("abc")));
        for payload in [
            r#"{"sub":42}"#,
            r#"{"iss":"x"}"#,
            "not json",
            r#"{"sub":"a","sub":"b"}"#,
        ] {
            let token: &'static str = Box::leak(jwt(payload).into_boxed_str());
            check(&format!("Bearer {token}"), &bearer(token, None));
        }
        check("Bearer a.b", &bearer("a.b", None));
        check("Bearer a.b.c.d", &bearer("a.b.c.d", None));
        check("Bearer a.%%%.c", &bearer("a.%%%.c", None));
    }

    #[test]
    fn finds_cookies() {
        #[track_caller]
        fn check(header: &str, name: &str, expected: Option<&str>) {
            let got = find_cookie(header.as_bytes(), |n| n == name.as_bytes());
            assert_eq!(got, expected.map(str::as_bytes), "header {header:?}");
        }
        check("sid=abc", "sid", Some("abc"));
        check("a=1; sid=abc; b=2", "sid", Some("abc"));
        check("a=1;sid=abc", "sid", Some("abc"));
        check("SID=abc", "sid", None);
        check("sidx=abc", "sid", None);
        check("sid", "sid", None);
        check("sid=", "sid", Some(""));
        check("", "sid", None);
    }

    #[test]
    fn reads_set_cookie_names() {
        #[track_caller]
        fn check(header: &str, expected: Option<(&str, &str)>) {
            let got = set_cookie(header.as_bytes());
            assert_eq!(
                got,
                expected.map(|(n, v)| (n, v.as_bytes())),
                "header {header:?}"
            );
        }
        check("sid=abc; Path=/; HttpOnly", Some(("sid", "abc")));
        check(" theme = dark ", Some(("theme", "dark")));
        check("=abc", None);
        check("bad name=abc", None);
        check("noequals", None);
    }

    #[test]
    fn reads_login_body_fields() {
        #[track_caller]
        fn check(kind: BodyKind, field: &str, body: &str, complete: bool, expected: Option<&str>) {
            let got = body_account(kind, field, body.as_bytes(), complete);
            assert_eq!(
                got.as_deref(),
                expected,
                "{kind:?} {field:?} in {body:?} (complete {complete})"
            );
        }
        use BodyKind::{Form, Json, Sniff};
        check(
            Form,
            "username",
            "username=alice&password=pw",
            true,
            Some("alice"),
        );
        check(
            Form,
            "username",
            "password=pw&username=alice",
            true,
            Some("alice"),
        );
        check(Form, "username", "password=pw&username=alice", false, None);
        check(
            Form,
            "username",
            "username=alice&pass",
            false,
            Some("alice"),
        );
        check(
            Form,
            "username",
            "user%6Eame=al%69ce+b",
            true,
            Some("alice b"),
        );
        check(Form, "username", "username=", true, None);
        check(Form, "username", "other=1", true, None);
        check(
            Form,
            "email",
            "email=a%40example.com",
            true,
            Some("a@example.com"),
        );
        check(Form, "username", "username=%zz%4", true, Some("%zz%4"));
        check(
            Json,
            "username",
            r#"{"username":"alice","password":"pw"}"#,
            true,
            Some("alice"),
        );
        check(
            Json,
            "username",
            r#"{"password":"pw","username":"al\u0069ce"}"#,
            true,
            Some("alice"),
        );
        check(
            Json,
            "username",
            r#"{"username":"alice","password":"p"#,
            false,
            Some("alice"),
        );
        check(Json, "username", r#"{"password":"pw","user"#, false, None);
        check(
            Json,
            "username",
            r#"{"username":12345}"#,
            true,
            Some("12345"),
        );
        check(Json, "username", r#"{"username":{"x":1}}"#, true, None);
        check(
            Json,
            "user.email",
            r#"{"a":[1,2],"user":{"email":"a@b.c"}}"#,
            true,
            Some("a@b.c"),
        );
        check(Json, "user.email", r#"{"user":"flat"}"#, true, None);
        check(Json, "username", r#"["username","alice"]"#, true, None);
        check(Json, "username", "", true, None);
        check(
            Sniff,
            "username",
            r#" {"username":"alice"}"#,
            true,
            Some("alice"),
        );
        check(Sniff, "username", "username=alice", true, Some("alice"));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        check(Json, "username", &deep, true, None);
    }

    #[test]
    fn decides_login_outcome() {
        use LoginOutcome::{Failure, Success, Unknown};

        #[track_caller]
        fn check(login: Login<'_>, status: Option<u16>, cookies: &[&str], expected: LoginOutcome) {
            check_with(&HttpConfig::default(), login, status, cookies, expected);
        }
        #[track_caller]
        fn check_with(
            cfg: &HttpConfig,
            login: Login<'_>,
            status: Option<u16>,
            cookies: &[&str],
            expected: LoginOutcome,
        ) {
            let mut names = NameList::default();
            for c in cookies {
                names.push(c);
            }
            assert_eq!(
                login_outcome(cfg, login, status, &names),
                expected,
                "{login:?} status {status:?} cookies {cookies:?}"
            );
        }
        let by_status = LoginRoute {
            method: "POST".into(),
            path: "/login".into(),
            account_field: "username".into(),
            success_status: vec![200, 302],
            failure_status: vec![401, 403],
            success_set_cookie: None,
        };
        let by_cookie = LoginRoute {
            success_set_cookie: Some("sid".into()),
            ..by_status.clone()
        };
        let (by_status, by_cookie) = (Login::Route(&by_status), Login::Route(&by_cookie));
        check(by_status, Some(200), &[], Success);
        check(by_status, Some(302), &[], Success);
        check(by_status, Some(401), &[], Failure);
        check(by_status, Some(403), &["sid"], Failure);
        check(by_status, Some(500), &[], Unknown);
        check(by_status, Some(201), &[], Unknown);
        check(by_status, None, &[], Unknown);
        check(by_cookie, Some(302), &["sid"], Success);
        check(by_cookie, Some(302), &["other"], Failure);
        check(by_cookie, Some(200), &[], Failure);
        check(by_cookie, Some(401), &["sid"], Failure);
        for login in [Login::Path, Login::Basic] {
            for (status, expected) in [
                (Some(200), Success),
                (Some(201), Success),
                (Some(204), Success),
                (Some(302), Success),
                (Some(399), Success),
                (Some(401), Failure),
                (Some(403), Failure),
                (Some(199), Unknown),
                (Some(400), Unknown),
                (Some(404), Unknown),
                (Some(429), Unknown),
                (Some(500), Unknown),
                (None, Unknown),
            ] {
                check(login, status, &[], expected);
            }
            let strict = HttpConfig {
                login_failure_status: vec![400, 401, 403, 302],
                ..HttpConfig::default()
            };
            check_with(&strict, login, Some(400), &[], Failure);
            check_with(&strict, login, Some(302), &["sid"], Failure);
            check_with(&strict, login, Some(303), &[], Success);
        }
    }

    #[test]
    fn reads_first_account_field() {
        #[track_caller]
        fn check(
            kind: BodyKind,
            fields: &[&str],
            body: &str,
            complete: bool,
            expected: Option<&str>,
        ) {
            let got = first_account(kind, fields, body.as_bytes(), complete);
            assert_eq!(
                got.as_deref(),
                expected,
                "{kind:?} {fields:?} in {body:?} (complete {complete})"
            );
        }
        use BodyKind::{Form, Json, Sniff};
        let defaults = HttpConfig::default().account_fields;
        let defaults: Vec<&str> = defaults.iter().map(String::as_str).collect();
        for field in &defaults {
            let form = format!("password=pw&{field}=acct");
            let json = format!(r#"{{"password":"pw","{field}":"acct"}}"#);
            for kind in [Form, Sniff] {
                check(kind, &defaults, &form, true, Some("acct"));
            }
            for kind in [Json, Sniff] {
                check(kind, &defaults, &json, true, Some("acct"));
            }
            check(
                Form,
                &defaults,
                &format!("{field}=&password=pw"),
                true,
                None,
            );
            check(Json, &defaults, &format!(r#"{{"{field}":""}}"#), true, None);
        }
        // The order of `fields` decides, not the order of the body.
        let order = ["username", "email"];
        check(Form, &order, "email=e&username=u", true, Some("u"));
        check(Form, &order, "username=u&email=e", true, Some("u"));
        check(Form, &order, "email=e&username=", true, Some("e"));
        check(Form, &order, "email=e&username=u", false, Some("e"));
        check(Form, &order, "email=e&email=f", true, Some("e"));
        check(Form, &order, "emai%6C=e%40x", true, Some("e@x"));
        check(Form, &order, "password=pw&mail=x", true, None);
        check(Form, &order, "", true, None);
        check(
            Json,
            &order,
            r#"{"email":"e","username":"u"}"#,
            true,
            Some("u"),
        );
        check(
            Json,
            &order,
            r#"{"email":"e","username":{"x":1}}"#,
            true,
            Some("e"),
        );
        check(
            Json,
            &order,
            r#"{"email":"e","username":7}"#,
            true,
            Some("7"),
        );
        check(Json, &order, r#"{"email":"e","pass"#, false, Some("e"));
        check(Json, &order, r#"{"user":{"email":"nested"}}"#, true, None);
        check(Json, &order, r#"["username","u"]"#, true, None);
        check(
            Json,
            &["user.email"],
            r#"{"user.email":"dotted"}"#,
            true,
            Some("dotted"),
        );
        check(Json, &[], r#"{"username":"u"}"#, true, None);
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        check(Json, &order, &deep, true, None);
    }

    #[test]
    fn reads_login_accounts_by_rule() {
        #[track_caller]
        fn check(login: Login<'_>, body: &str, expected: Option<&str>) {
            let cfg = HttpConfig::default();
            let got = login_account(&cfg, login, BodyKind::Sniff, body.as_bytes(), true);
            assert_eq!(got.as_deref(), expected, "{login:?} in {body:?}");
        }
        let route = LoginRoute {
            method: "POST".into(),
            path: "/api/session".into(),
            account_field: "user.email".into(),
            success_status: vec![200],
            failure_status: vec![401],
            success_set_cookie: None,
        };
        let nested = r#"{"username":"flat","user":{"email":"nested"}}"#;
        check(Login::Route(&route), nested, Some("nested"));
        check(Login::Path, nested, Some("flat"));
        check(Login::Basic, "email=e", Some("e"));
        check(Login::Route(&route), "email=e", None);
    }

    #[test]
    fn recognises_basic_credentials() {
        #[track_caller]
        fn check(cfg: &HttpConfig, account: Option<&str>, headers: &[(&str, &str)], basic: bool) {
            let headers: Vec<_> = headers
                .iter()
                .map(|(name, value)| httparse::Header {
                    name,
                    value: value.as_bytes(),
                })
                .collect();
            assert_eq!(
                basic_login(cfg, account, &headers),
                basic.then_some(LoginRule::Basic),
                "account {account:?} headers {headers:?}"
            );
        }
        let cfg = HttpConfig::default();
        let cred = format!("Basic {}", b64("alice:pw"));
        check(&cfg, Some("alice"), &[("Authorization", &cred)], true);
        check(
            &cfg,
            Some("alice"),
            &[("host", "h"), ("authorization", " basic YTpi")],
            true,
        );
        check(
            &cfg,
            Some("alice"),
            &[("AUTHORIZATION", "BASIC YTpi")],
            true,
        );
        check(&cfg, None, &[("Authorization", &cred)], false);
        check(
            &cfg,
            Some("user-42"),
            &[("Authorization", "Bearer a.b.c")],
            false,
        );
        check(
            &cfg,
            Some("alice"),
            &[("Authorization", "Basically x")],
            false,
        );
        check(&cfg, Some("alice"), &[("X-Authorization", &cred)], false);
        check(&cfg, Some("alice"), &[], false);
        let off = HttpConfig {
            basic_auth_logins: false,
            ..HttpConfig::default()
        };
        check(&off, Some("alice"), &[("Authorization", &cred)], false);
    }

    #[test]
    fn hashes_sessions_with_the_key() {
        let a = session_hash(&[0; 16], b"value");
        let mut hasher = SipHasher13::new_with_key(&[0; 16]);
        hasher.write(b"value");
        assert_eq!(
            a,
            format!("{:016x}", hasher.finish()),
            "SipHash-1-3 in hex digits"
        );
        assert_eq!(a, session_hash(&[0; 16], b"value"), "hash is deterministic");
        assert_ne!(a, session_hash(&[1; 16], b"value"), "key changes the hash");
        assert_ne!(
            a,
            session_hash(&[0; 16], b"other"),
            "value changes the hash"
        );
    }

    #[test]
    fn classifies_content_types() {
        for (value, expected) in [
            (None, BodyKind::Sniff),
            (
                Some("application/x-www-form-urlencoded; charset=utf-8"),
                BodyKind::Form,
            ),
            (Some("Application/X-WWW-Form-Urlencoded"), BodyKind::Form),
            (Some("application/json"), BodyKind::Json),
            (Some("application/vnd.api+JSON"), BodyKind::Json),
            (Some("text/plain"), BodyKind::Sniff),
        ] {
            assert_eq!(
                BodyKind::from_content_type(value.map(str::as_bytes)),
                expected,
                "{value:?}"
            );
        }
    }
}
