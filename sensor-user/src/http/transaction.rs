//! The transaction record: one request paired with its response, as emitted by
//! [`HttpConn`](super::HttpConn). It is written for JSON lines and for detectors, so it holds
//! names and hashes, never secrets: query parameter names without values, cookie names without
//! values, the session as a keyed hash, and no `Authorization` value at all.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};

/// One request and its response on one connection.
///
/// Sizes count wire bytes (head and body, chunk framing included, uncaptured bytes included).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Transaction {
    /// Time of the first byte of the request head, in nanoseconds since the Unix epoch. For a
    /// response seen without its request, the time of the response's first byte.
    pub ts_ns: u64,
    /// The direct TCP peer on the client side of the connection.
    pub peer: SocketAddr,
    /// The client after proxy resolution (PROXY protocol, `Forwarded`, `X-Forwarded-For`);
    /// the peer's address when there is no trusted proxy in front.
    pub client: IpAddr,
    /// How `client` was learned when it is not the peer: from a trusted PROXY protocol header
    /// (one client per connection: the connection can be blocked by itself) or from forwarded
    /// headers (a proxy's connection may carry many clients).
    pub proxy: Option<ProxyVia>,
    /// The server side of the connection.
    pub server: SocketAddr,
    /// Request method, empty when the request head could not be parsed.
    pub method: Cow<'static, str>,
    /// HTTP version of the request.
    pub version: Option<HttpVersion>,
    /// `Host` header (or the authority of an absolute-form target), lowercased.
    pub host: Option<String>,
    /// Path of the request target without the query string and without `;` parameters (they
    /// may carry session ids such as `;jsessionid=`).
    pub path: String,
    /// The path with identifiers collapsed, see [`route_template`](super::route_template).
    pub route: String,
    /// Names of the query parameters, in request order; values are never kept.
    pub query_keys: NameList,
    /// Final status code of the response, `None` when no response was seen.
    pub status: Option<u16>,
    /// Reason phrase of the response.
    pub reason: Option<Cow<'static, str>>,
    /// Time from the first byte of the request to the first byte of the final response.
    pub latency_ns: Option<u64>,
    /// Request bytes on the wire: head plus body.
    pub req_bytes: u64,
    /// Response bytes on the wire: interim responses, head and body.
    pub resp_bytes: u64,
    /// `User-Agent` header, truncated to a bounded length.
    pub user_agent: Option<String>,
    /// Lowercased header names in the order the client sent them.
    pub header_order: NameList,
    /// The first four letters or digits of `Accept-Language`, lowercased and padded with `0`
    /// (the language part of the request fingerprint; never written out).
    #[serde(skip)]
    pub language: Option<[u8; 4]>,
    /// Names of the cookies the response sets; values are never kept.
    pub set_cookies: NameList,
    /// The account the request acts for (login form field, HTTP Basic user or JWT `sub`).
    pub account: Option<String>,
    /// Keyed hash (hex) of the session cookie or bearer token, never the value itself.
    pub session: Option<String>,
    /// Outcome of a request to a configured login route, `None` for other requests.
    pub login: Option<LoginOutcome>,
    /// Anomalies seen while parsing this request and its response.
    pub flags: Flags,
    /// The transport fingerprint of the connection's client SYN
    /// ([`TransportFingerprint`](super::TransportFingerprint)), `None` when the SYN was not
    /// seen (a connection picked up mid-stream).
    pub transport_fingerprint: Option<super::TransportFingerprint>,
}

impl Transaction {
    /// An empty record for the given connection endpoints, filled in by the parser.
    pub(crate) fn empty(ts_ns: u64, peer: SocketAddr, server: SocketAddr) -> Self {
        Transaction {
            ts_ns,
            peer,
            client: peer.ip(),
            proxy: None,
            server,
            method: Cow::Borrowed(""),
            version: None,
            host: None,
            path: String::new(),
            route: String::new(),
            query_keys: NameList::default(),
            status: None,
            reason: None,
            latency_ns: None,
            req_bytes: 0,
            resp_bytes: 0,
            user_agent: None,
            header_order: NameList::default(),
            language: None,
            set_cookies: NameList::default(),
            account: None,
            session: None,
            login: None,
            flags: Flags::EMPTY,
            transport_fingerprint: None,
        }
    }

    /// Makes a spent record equal to [`Transaction::empty`]`(ts_ns, peer, server)` in place:
    /// `path`, `route`, `query_keys`, `header_order` and `set_cookies` are emptied but keep
    /// their heap buffers for the strings of the new record; everything else is dropped.
    pub(crate) fn reset(&mut self, ts_ns: u64, peer: SocketAddr, server: SocketAddr) {
        // Destructured so that a new field is a compile error here, not a value left over
        // from the spent record.
        let Transaction {
            ts_ns: ts,
            peer: direct,
            client,
            proxy,
            server: local,
            method,
            version,
            host,
            path,
            route,
            query_keys,
            status,
            reason,
            latency_ns,
            req_bytes,
            resp_bytes,
            user_agent,
            header_order,
            language,
            set_cookies,
            account,
            session,
            login,
            flags,
            transport_fingerprint,
        } = self;
        *ts = ts_ns;
        *direct = peer;
        *client = peer.ip();
        *proxy = None;
        *local = server;
        *method = Cow::Borrowed("");
        *version = None;
        *host = None;
        path.clear();
        route.clear();
        query_keys.0.clear();
        *status = None;
        *reason = None;
        *latency_ns = None;
        *req_bytes = 0;
        *resp_bytes = 0;
        *user_agent = None;
        header_order.0.clear();
        *language = None;
        set_cookies.0.clear();
        *account = None;
        *session = None;
        *login = None;
        *flags = Flags::EMPTY;
        *transport_fingerprint = None;
    }

    /// Heap bytes held by the record's strings.
    pub(crate) fn heap_bytes(&self) -> usize {
        let cow = |c: &Cow<'static, str>| match c {
            Cow::Borrowed(_) => 0,
            Cow::Owned(s) => s.capacity(),
        };
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        cow(&self.method)
            + opt(&self.host)
            + self.path.capacity()
            + self.route.capacity()
            + self.query_keys.0.capacity()
            + self.reason.as_ref().map_or(0, cow)
            + opt(&self.user_agent)
            + self.header_order.0.capacity()
            + self.set_cookies.0.capacity()
            + opt(&self.account)
            + opt(&self.session)
    }
}

/// HTTP version of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum HttpVersion {
    /// HTTP/1.0.
    #[serde(rename = "HTTP/1.0")]
    Http10,
    /// HTTP/1.1.
    #[serde(rename = "HTTP/1.1")]
    Http11,
}

impl HttpVersion {
    /// The version from httparse's minor version number.
    pub(crate) fn from_minor(minor: u8) -> Self {
        if minor == 0 {
            HttpVersion::Http10
        } else {
            HttpVersion::Http11
        }
    }
}

/// How a transaction's client was learned from a proxy in front of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyVia {
    /// A trusted PROXY protocol header at the start of the connection.
    ProxyProtocol,
    /// `Forwarded` or `X-Forwarded-For` from a trusted proxy.
    Forwarded,
}

/// Outcome of a login attempt, decided by the login route's rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginOutcome {
    /// The response matched a success rule.
    Success,
    /// The response matched a failure rule (or lacked the configured success cookie).
    Failure,
    /// No response, or a response that matched no rule.
    Unknown,
}

/// A list of names (header names, query keys, cookie names) held in one string, separated by
/// spaces, which none of these names can contain. Serializes as a JSON array of strings.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct NameList(String);

impl NameList {
    /// The names in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.split(' ').filter(|s| !s.is_empty())
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names joined by single spaces, handy as a fingerprint key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Empties the list, keeping its buffer.
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    /// Makes room for `bytes` more bytes of names.
    pub(crate) fn reserve(&mut self, bytes: usize) {
        self.0.reserve(bytes);
    }

    /// Bytes of heap the list holds.
    pub(crate) fn capacity(&self) -> usize {
        self.0.capacity()
    }

    /// Appends a name; empty names and names containing a space are skipped.
    pub(crate) fn push(&mut self, name: &str) {
        if name.is_empty() || name.bytes().any(|b| b == b' ') {
            return;
        }
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        self.0.push_str(name);
    }

    /// Appends a name, lowercased, from ASCII bytes (header names are tokens, so ASCII).
    pub(crate) fn push_lowercase(&mut self, name: &str) {
        let start = self.0.len();
        self.push(name);
        if let Some(added) = self.0.get_mut(start..) {
            added.make_ascii_lowercase();
        }
    }

    /// Appends names, lowercased, with the result of [`NameList::push_lowercase`] on each in
    /// turn. Names are copied whole, then everything appended is checked for spaces and
    /// lowercased at once (header names from a parsed head never hold a space, so the check only
    /// confirms it); if a name does hold a space, the names are appended one by one instead.
    pub(crate) fn extend_lowercase<'a>(&mut self, names: impl Iterator<Item = &'a str> + Clone) {
        let start = self.0.len();
        let mut separators = 0_usize;
        for name in names.clone().filter(|n| !n.is_empty()) {
            if !self.0.is_empty() {
                self.0.push(' ');
                separators += 1;
            }
            self.0.push_str(name);
        }
        let Some(added) = self.0.get_mut(start..) else {
            return;
        };
        if bytecount::count(added.as_bytes(), b' ') == separators {
            added.make_ascii_lowercase();
        } else {
            self.0.truncate(start);
            for name in names {
                self.push_lowercase(name);
            }
        }
    }
}

/// Appends `bytes` to `out` if they are all ASCII, and says whether it did. Testing for ASCII
/// goes a word at a time and costs a fraction of a UTF-8 validation on the short strings of a
/// head (header values, hash digits).
pub(crate) fn push_ascii(out: &mut String, bytes: &[u8]) -> bool {
    if !bytes.is_ascii() {
        return false;
    }
    // SAFETY: ASCII bytes are valid UTF-8.
    out.push_str(unsafe { std::str::from_utf8_unchecked(bytes) });
    true
}

impl<const N: usize> From<[&str; N]> for NameList {
    fn from(names: [&str; N]) -> Self {
        let mut list = NameList::default();
        for name in names {
            list.push(name);
        }
        list
    }
}

impl fmt::Debug for NameList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for NameList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for name in self.iter() {
            seq.serialize_element(name)?;
        }
        seq.end()
    }
}

/// One anomaly seen while parsing a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Flag {
    /// Bytes of this request or response were lost in capture.
    Gap,
    /// This message was found by scanning after bytes that could not be parsed or were lost.
    Resync,
    /// The request head is not valid HTTP/1.x (the method and path may be empty).
    InvalidRequest,
    /// The response head is not valid HTTP/1.x.
    InvalidResponse,
    /// The head is larger than `limits.max_head_bytes`.
    HeadTooLarge,
    /// The head was cut by uncaptured or lost bytes or by the end of the connection; only its
    /// complete lines were parsed.
    HeadTruncated,
    /// The head has more header fields than `limits.max_headers`.
    TooManyHeaders,
    /// The head contains a NUL byte.
    NulByte,
    /// The method is not a standard HTTP or `WebDAV` method.
    UnknownMethod,
    /// The request has no `Host` header although it is HTTP/1.1.
    MissingHost,
    /// The request has more than one `Host` header.
    MultipleHost,
    /// Both `Content-Length` and `Transfer-Encoding` are present (a request-smuggling shape).
    ContentLengthAndTransferEncoding,
    /// Several `Content-Length` values that differ.
    ConflictingContentLength,
    /// A `Content-Length` that is not a plain decimal number.
    InvalidContentLength,
    /// A `Transfer-Encoding` with unknown or repeated codings, odd characters, or repeated
    /// headers.
    ObfuscatedTransferEncoding,
    /// A request `Transfer-Encoding` whose final coding is not `chunked`.
    TransferEncodingNotChunked,
    /// Chunked framing that could not be decoded.
    InvalidChunked,
    /// The connection ended (or capture stopped following it) before the request ended; its
    /// size is a lower bound.
    IncompleteRequest,
    /// The connection ended (or capture stopped following it) before the response ended; its
    /// size is a lower bound.
    IncompleteResponse,
    /// A response with no request waiting for it.
    UnmatchedResponse,
    /// Emitted before its response because too many requests were waiting
    /// (`limits.max_pending`).
    PendingOverflow,
    /// A PROXY header, `Forwarded` or `X-Forwarded-For` came from a peer that is not a trusted
    /// proxy, and was ignored.
    ForwardedFromUntrusted,
    /// A PROXY header, `Forwarded` or `X-Forwarded-For` from a trusted proxy could not be
    /// parsed.
    InvalidForwarded,
    /// An `Authorization` header that could not be decoded.
    InvalidAuthorization,
}

impl Flag {
    /// Every flag, in bit order.
    pub const ALL: [Flag; 24] = [
        Flag::Gap,
        Flag::Resync,
        Flag::InvalidRequest,
        Flag::InvalidResponse,
        Flag::HeadTooLarge,
        Flag::HeadTruncated,
        Flag::TooManyHeaders,
        Flag::NulByte,
        Flag::UnknownMethod,
        Flag::MissingHost,
        Flag::MultipleHost,
        Flag::ContentLengthAndTransferEncoding,
        Flag::ConflictingContentLength,
        Flag::InvalidContentLength,
        Flag::ObfuscatedTransferEncoding,
        Flag::TransferEncodingNotChunked,
        Flag::InvalidChunked,
        Flag::IncompleteRequest,
        Flag::IncompleteResponse,
        Flag::UnmatchedResponse,
        Flag::PendingOverflow,
        Flag::ForwardedFromUntrusted,
        Flag::InvalidForwarded,
        Flag::InvalidAuthorization,
    ];

    /// The `snake_case` name used in serialized records.
    pub fn name(self) -> &'static str {
        match self {
            Flag::Gap => "gap",
            Flag::Resync => "resync",
            Flag::InvalidRequest => "invalid_request",
            Flag::InvalidResponse => "invalid_response",
            Flag::HeadTooLarge => "head_too_large",
            Flag::HeadTruncated => "head_truncated",
            Flag::TooManyHeaders => "too_many_headers",
            Flag::NulByte => "nul_byte",
            Flag::UnknownMethod => "unknown_method",
            Flag::MissingHost => "missing_host",
            Flag::MultipleHost => "multiple_host",
            Flag::ContentLengthAndTransferEncoding => "content_length_and_transfer_encoding",
            Flag::ConflictingContentLength => "conflicting_content_length",
            Flag::InvalidContentLength => "invalid_content_length",
            Flag::ObfuscatedTransferEncoding => "obfuscated_transfer_encoding",
            Flag::TransferEncodingNotChunked => "transfer_encoding_not_chunked",
            Flag::InvalidChunked => "invalid_chunked",
            Flag::IncompleteRequest => "incomplete_request",
            Flag::IncompleteResponse => "incomplete_response",
            Flag::UnmatchedResponse => "unmatched_response",
            Flag::PendingOverflow => "pending_overflow",
            Flag::ForwardedFromUntrusted => "forwarded_from_untrusted",
            Flag::InvalidForwarded => "invalid_forwarded",
            Flag::InvalidAuthorization => "invalid_authorization",
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u8)
    }
}

/// A set of [`Flag`]s. Serializes as a list of `snake_case` names.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(u32);

impl Flags {
    /// No flags.
    pub const EMPTY: Flags = Flags(0);

    /// Whether `flag` is set.
    pub fn contains(self, flag: Flag) -> bool {
        self.0 & flag.bit() != 0
    }

    /// Sets `flag`.
    pub fn insert(&mut self, flag: Flag) {
        self.0 |= flag.bit();
    }

    /// Sets every flag of `other`.
    pub fn extend(&mut self, other: Flags) {
        self.0 |= other.0;
    }

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The flags set, in bit order.
    pub fn iter(self) -> impl Iterator<Item = Flag> {
        Flag::ALL.into_iter().filter(move |f| self.contains(*f))
    }
}

impl<const N: usize> From<[Flag; N]> for Flags {
    fn from(flags: [Flag; N]) -> Self {
        let mut set = Flags::EMPTY;
        for flag in flags {
            set.insert(flag);
        }
        set
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter().map(Flag::name)).finish()
    }
}

impl Serialize for Flags {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for flag in self.iter() {
            seq.serialize_element(flag.name())?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_serialize_as_snake_case_names() {
        #[track_caller]
        fn check(flags: Flags, expected: &str) {
            let json = serde_json::to_string(&flags).expect("flags serialize");
            assert_eq!(json, expected, "flags {flags:?}");
        }
        check(Flags::EMPTY, "[]");
        check(Flags::from([Flag::Gap]), r#"["gap"]"#);
        check(
            Flags::from([
                Flag::ForwardedFromUntrusted,
                Flag::ContentLengthAndTransferEncoding,
            ]),
            r#"["content_length_and_transfer_encoding","forwarded_from_untrusted"]"#,
        );
    }

    #[test]
    fn extend_lowercase_is_push_lowercase_on_each() {
        #[track_caller]
        fn check(start: &[&str], names: &[&str]) {
            let mut one_by_one = NameList::default();
            let mut at_once = NameList::default();
            for name in start {
                one_by_one.push(name);
                at_once.push(name);
            }
            for name in names {
                one_by_one.push_lowercase(name);
            }
            at_once.extend_lowercase(names.iter().copied());
            assert_eq!(at_once, one_by_one, "{start:?} then {names:?}");
        }
        check(&[], &[]);
        check(&[], &["Host", "User-Agent", "ACCEPT"]);
        check(&["x"], &["Host", "", "Cookie"]);
        check(&[], &["", ""]);
        check(&[], &["Host", "Bad Name", "X-Y"]);
        check(&["a", "b"], &["Sp ace", "Z"]);
    }

    #[test]
    fn flag_bits_and_names_are_distinct() {
        let mut names: Vec<&str> = Flag::ALL.iter().map(|f| f.name()).collect();
        for (i, flag) in Flag::ALL.iter().enumerate() {
            assert_eq!(*flag as usize, i, "{flag:?} is out of order in Flag::ALL");
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Flag::ALL.len(), "duplicate flag names");
    }

    #[test]
    fn name_list_serializes_as_array() {
        #[track_caller]
        fn check(names: &[&str], expected: &str) {
            let mut list = NameList::default();
            for name in names {
                list.push(name);
            }
            assert_eq!(serde_json::to_string(&list).expect("serialize"), expected);
            assert_eq!(
                list.len(),
                names
                    .iter()
                    .filter(|n| !n.is_empty() && !n.contains(' '))
                    .count()
            );
        }
        check(&[], "[]");
        check(&["a"], r#"["a"]"#);
        check(&["host", "user-agent", ""], r#"["host","user-agent"]"#);
        check(&["a b", "c"], r#"["c"]"#);
    }
}
