//! Message framing below the head: how long a body is (RFC 9112 section 6), a byte-level
//! chunked decoder that needs no buffer, and the scanners that find the next request or status
//! line after bytes that could not be followed.
//!
//! Heads themselves are parsed by `httparse`; this module never decides on a head, it only
//! frames what follows one, in the style of "check, then parse": every function says whether
//! it needs more bytes, is done, or met something invalid.

use std::borrow::Cow;

use super::proxy::trim_ows;
use super::transaction::{Flag, Flags};

/// Standard HTTP and `WebDAV` methods. Anything else is flagged `unknown_method`, and only these
/// start a request line found by resynchronisation.
const METHODS: [&str; 20] = [
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "REPORT",
    "SEARCH",
    "MKCALENDAR",
    "PURGE",
];
/// Longest method name kept for an unknown method.
const MAX_METHOD: usize = 32;
/// Longest chunk-extension or trailer line accepted in chunked framing.
const MAX_CHUNK_LINE: u32 = 4096;
/// Hex digits of a chunk size (2^60 bytes is more than any real body).
const MAX_CHUNK_DIGITS: u8 = 15;
/// Longest request target or reason phrase a resynchronisation scan looks back or ahead over.
const MAX_SCAN_LINE: usize = 8192;

/// The method as a static string when it is a standard one.
pub(crate) fn known_method(method: &str) -> Option<&'static str> {
    METHODS.iter().copied().find(|m| *m == method)
}

/// The method for a record: static when standard, else an owned copy cut to a bounded length.
pub(crate) fn method_name(method: &str) -> (Cow<'static, str>, bool) {
    if let Some(m) = known_method(method) {
        return (Cow::Borrowed(m), true);
    }
    let end = method.len().min(MAX_METHOD);
    // Methods are tokens, hence ASCII, so any byte index is a character boundary.
    (
        Cow::Owned(method.get(..end).unwrap_or_default().to_owned()),
        false,
    )
}

/// How the body of a message is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
    /// The framing cannot be trusted (conflicting or invalid lengths, unknown codings on a
    /// request): the parser must resynchronise.
    Unknown,
}

/// The framing given by `Content-Length` and `Transfer-Encoding`, with smuggling shapes
/// flagged. Statuses and methods without a body are the caller's business.
pub(crate) fn body_framing(
    headers: &[httparse::Header<'_>],
    request: bool,
    flags: &mut Flags,
) -> Framing {
    let mut length: Option<u64> = None;
    let mut length_seen = false;
    let mut length_invalid = false;
    let mut length_conflict = false;
    let mut te_headers = 0u32;
    let mut chunked_count = 0u32;
    let mut last_chunked = false;
    let mut te_odd = false;
    for header in headers {
        let name = header.name;
        if name.len() == 14 && name.eq_ignore_ascii_case("content-length") {
            length_seen = true;
            for item in header.value.split(|b| *b == b',') {
                match parse_decimal(trim_ows(item)) {
                    Some(n) => match length {
                        Some(prev) if prev != n => length_conflict = true,
                        _ => length = Some(n),
                    },
                    None => length_invalid = true,
                }
            }
        } else if name.len() == 17 && name.eq_ignore_ascii_case("transfer-encoding") {
            te_headers += 1;
            for item in header.value.split(|b| *b == b',') {
                let coding = trim_ows(item);
                if coding.is_empty() {
                    continue;
                }
                if !coding.iter().all(|b| is_tchar(*b)) {
                    te_odd = true;
                    last_chunked = false;
                } else if coding.eq_ignore_ascii_case(b"chunked") {
                    chunked_count += 1;
                    last_chunked = true;
                } else {
                    last_chunked = false;
                    let known = [
                        &b"gzip"[..],
                        b"x-gzip",
                        b"deflate",
                        b"compress",
                        b"x-compress",
                        b"identity",
                    ];
                    if !known.iter().any(|k| coding.eq_ignore_ascii_case(k)) {
                        te_odd = true;
                    }
                }
            }
        }
    }
    if te_headers > 0 {
        if te_odd || te_headers > 1 || chunked_count > 1 {
            flags.insert(Flag::ObfuscatedTransferEncoding);
        }
        if length_seen {
            flags.insert(Flag::ContentLengthAndTransferEncoding);
        }
        return if last_chunked {
            Framing::Chunked
        } else if request {
            flags.insert(Flag::TransferEncodingNotChunked);
            Framing::Unknown
        } else {
            Framing::UntilClose
        };
    }
    if length_invalid {
        flags.insert(Flag::InvalidContentLength);
        return Framing::Unknown;
    }
    if length_conflict {
        flags.insert(Flag::ConflictingContentLength);
        return Framing::Unknown;
    }
    match length {
        Some(0) => Framing::None,
        Some(n) => Framing::Length(n),
        None if request => Framing::None,
        None => Framing::UntilClose,
    }
}

/// A plain decimal number (1 to 19 digits, nothing else).
fn parse_decimal(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 19 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// An RFC 9110 token character.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Where a chunked decoder is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading the hex digits of a chunk size.
    Size,
    /// Skipping chunk extensions (or whitespace) up to the end of the size line.
    Ext,
    /// After the CR of a size line.
    SizeLf,
    /// Inside chunk data.
    Data,
    /// After chunk data, expecting CR LF.
    DataCr,
    /// After the CR following chunk data.
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    TrailerLine,
    /// After the CR of the final empty line.
    TrailerLf,
}

/// What feeding bytes to a chunked decoder produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChunkEvent {
    /// The input was consumed and the body continues.
    More,
    /// The body ended (last chunk and trailers read).
    Done,
    /// The framing is invalid at the byte after the consumed ones.
    Invalid,
}

/// A chunked-body decoder that keeps no bytes: chunk extensions and trailers are skipped with
/// bounded line lengths, and data is handed to the caller as slices of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chunked {
    phase: Phase,
    digits: u8,
    line: u32,
    trailers: u32,
    remaining: u64,
}

impl Chunked {
    /// A decoder at the start of a body.
    pub(crate) fn new() -> Self {
        Chunked {
            phase: Phase::Size,
            digits: 0,
            line: 0,
            trailers: 0,
            remaining: 0,
        }
    }

    /// Decodes `input`, passing data bytes to `on_data`. Returns the bytes consumed and what
    /// happened; on `Done` and `Invalid` the bytes after the consumed ones belong to the
    /// caller. `max_trailers` bounds the total trailer size.
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        max_trailers: u32,
        on_data: &mut impl FnMut(&[u8]),
    ) -> (usize, ChunkEvent) {
        let mut i = 0;
        while i < input.len() {
            if self.phase == Phase::Data {
                let avail = input.len() - i;
                let take = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(avail);
                on_data(input.get(i..i + take).unwrap_or_default());
                i += take;
                self.remaining -= take as u64;
                if self.remaining == 0 {
                    self.phase = Phase::DataCr;
                }
                continue;
            }
            let Some(&b) = input.get(i) else { break };
            let ok = self.framing_byte(b, max_trailers);
            match ok {
                Some(ChunkEvent::More) => i += 1,
                Some(ChunkEvent::Done) => return (i + 1, ChunkEvent::Done),
                Some(ChunkEvent::Invalid) | None => return (i, ChunkEvent::Invalid),
            }
        }
        (i, ChunkEvent::More)
    }

    /// Steps over one framing byte.
    fn framing_byte(&mut self, b: u8, max_trailers: u32) -> Option<ChunkEvent> {
        match self.phase {
            Phase::Size => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    if self.digits >= MAX_CHUNK_DIGITS {
                        return None;
                    }
                    let digit = u64::from((b as char).to_digit(16)?);
                    self.remaining = self.remaining * 16 + digit;
                    self.digits += 1;
                }
                b';' | b' ' | b'\t' if self.digits > 0 => {
                    self.phase = Phase::Ext;
                    self.line = 0;
                }
                b'\r' if self.digits > 0 => self.phase = Phase::SizeLf,
                b'\n' if self.digits > 0 => self.end_size_line(),
                _ => return None,
            },
            Phase::Ext => match b {
                b'\r' => self.phase = Phase::SizeLf,
                b'\n' => self.end_size_line(),
                _ => {
                    self.line += 1;
                    if self.line > MAX_CHUNK_LINE {
                        return None;
                    }
                }
            },
            Phase::SizeLf => match b {
                b'\n' => self.end_size_line(),
                _ => return None,
            },
            Phase::DataCr => match b {
                b'\r' => self.phase = Phase::DataLf,
                b'\n' => self.start_size(),
                _ => return None,
            },
            Phase::DataLf => match b {
                b'\n' => self.start_size(),
                _ => return None,
            },
            Phase::TrailerStart => match b {
                b'\r' => self.phase = Phase::TrailerLf,
                b'\n' => return Some(ChunkEvent::Done),
                _ => {
                    self.phase = Phase::TrailerLine;
                    self.count_trailer(max_trailers)?;
                }
            },
            Phase::TrailerLine => {
                self.count_trailer(max_trailers)?;
                if b == b'\n' {
                    self.phase = Phase::TrailerStart;
                }
            }
            Phase::TrailerLf => match b {
                b'\n' => return Some(ChunkEvent::Done),
                _ => return None,
            },
            // Data is handled by the caller in bulk.
            Phase::Data => return None,
        }
        Some(ChunkEvent::More)
    }

    fn count_trailer(&mut self, max_trailers: u32) -> Option<()> {
        self.trailers += 1;
        (self.trailers <= max_trailers).then_some(())
    }

    fn start_size(&mut self) {
        self.phase = Phase::Size;
        self.digits = 0;
        self.remaining = 0;
    }

    fn end_size_line(&mut self) {
        self.phase = if self.remaining == 0 {
            Phase::TrailerStart
        } else {
            Phase::Data
        };
    }

    /// Skips `n` bytes known to exist but not captured. Succeeds only when they all fall inside
    /// the current chunk's data; otherwise the framing in the hole is unknown.
    pub(crate) fn skip_data(&mut self, n: u64) -> bool {
        if self.phase != Phase::Data || n > self.remaining {
            return false;
        }
        self.remaining -= n;
        if self.remaining == 0 {
            self.phase = Phase::DataCr;
        }
        true
    }
}

/// Start of the first complete, plausible request line in `hay`: a standard method, a space,
/// a target (origin form `/...`, `*`, absolute `http(s)://...`, or an authority for
/// `CONNECT`), a space, `HTTP/1.0` or `HTTP/1.1`, and a line break. The method may directly
/// follow other bytes (the end of a body).
pub(crate) fn find_request_line(hay: &[u8]) -> Option<usize> {
    for p in memchr::memmem::find_iter(hay, b" HTTP/1.") {
        let minor = p + 8;
        let Some(&digit) = hay.get(minor) else { break };
        if digit != b'0' && digit != b'1' {
            continue;
        }
        match (hay.get(minor + 1), hay.get(minor + 2)) {
            (Some(b'\n'), _) | (Some(b'\r'), Some(b'\n')) => {}
            (None, _) | (Some(b'\r'), None) => break,
            _ => continue,
        }
        let floor = p.saturating_sub(MAX_SCAN_LINE);
        let mut t = p;
        while t > floor && hay.get(t - 1).is_some_and(|b| *b > b' ' && *b != 0x7F) {
            t -= 1;
        }
        if t == p || t == 0 || hay.get(t - 1) != Some(&b' ') {
            continue;
        }
        let space = t - 1;
        let target = hay.get(t..p).unwrap_or_default();
        let mut m = space;
        while m > 0 && space - m < 16 && hay.get(m - 1).is_some_and(u8::is_ascii_uppercase) {
            m -= 1;
        }
        let run = hay.get(m..space).unwrap_or_default();
        let Some(method) = METHODS
            .iter()
            .filter(|name| run.ends_with(name.as_bytes()))
            .max_by_key(|name| name.len())
        else {
            continue;
        };
        let lower = |n: usize| target.get(..n).map(<[u8]>::to_ascii_lowercase);
        let plausible = matches!(target.first(), Some(b'/' | b'*'))
            || lower(7).as_deref() == Some(b"http://")
            || lower(8).as_deref() == Some(b"https://")
            || *method == "CONNECT";
        if plausible {
            return Some(space - method.len());
        }
    }
    None
}

/// Start of the first complete, plausible status line in `hay`: `HTTP/1.x`, a space, three
/// digits, then a space or a line break, and a line break within a bounded distance.
pub(crate) fn find_status_line(hay: &[u8]) -> Option<usize> {
    for p in memchr::memmem::find_iter(hay, b"HTTP/1.") {
        let Some(head) = hay.get(p..p + 13) else {
            break;
        };
        let shape = matches!(head.get(7), Some(b'0' | b'1'))
            && head.get(8) == Some(&b' ')
            && head
                .get(9..12)
                .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
            && matches!(head.get(12), Some(b' ' | b'\r' | b'\n'));
        if !shape {
            continue;
        }
        let rest = hay.get(p + 12..).unwrap_or_default();
        let window = rest
            .get(..rest.len().min(MAX_SCAN_LINE))
            .unwrap_or_default();
        if memchr::memchr(b'\n', window).is_some() {
            return Some(p);
        }
        if rest.len() < MAX_SCAN_LINE {
            break;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(pairs: &'a [(&'a str, &'a str)]) -> Vec<httparse::Header<'a>> {
        pairs
            .iter()
            .map(|(n, v)| httparse::Header {
                name: n,
                value: v.as_bytes(),
            })
            .collect()
    }

    #[test]
    #[expect(clippy::too_many_lines, reason = "one table of cases")]
    fn frames_bodies() {
        #[track_caller]
        fn check(request: bool, pairs: &[(&str, &str)], framing: Framing, flags: &[Flag]) {
            let mut got = Flags::EMPTY;
            assert_eq!(
                body_framing(&headers(pairs), request, &mut got),
                framing,
                "{pairs:?}"
            );
            let want: Flags = flags.iter().fold(Flags::EMPTY, |mut set, f| {
                set.insert(*f);
                set
            });
            assert_eq!(got, want, "{pairs:?}");
        }
        use Flag::*;
        use Framing::*;
        check(true, &[], None, &[]);
        check(false, &[], UntilClose, &[]);
        check(true, &[("Content-Length", "10")], Length(10), &[]);
        check(true, &[("content-length", "0")], None, &[]);
        check(false, &[("Content-Length", "0")], None, &[]);
        check(
            true,
            &[("Content-Length", "10"), ("Content-Length", "10")],
            Length(10),
            &[],
        );
        check(true, &[("Content-Length", "10, 10")], Length(10), &[]);
        check(
            true,
            &[("Content-Length", "10"), ("Content-Length", "11")],
            Unknown,
            &[ConflictingContentLength],
        );
        check(
            true,
            &[("Content-Length", "10, 12")],
            Unknown,
            &[ConflictingContentLength],
        );
        check(
            true,
            &[("Content-Length", "+10")],
            Unknown,
            &[InvalidContentLength],
        );
        check(
            true,
            &[("Content-Length", "0x10")],
            Unknown,
            &[InvalidContentLength],
        );
        check(
            true,
            &[("Content-Length", "")],
            Unknown,
            &[InvalidContentLength],
        );
        check(
            true,
            &[("Content-Length", "1 0")],
            Unknown,
            &[InvalidContentLength],
        );
        check(
            true,
            &[("Content-Length", "99999999999999999999")],
            Unknown,
            &[InvalidContentLength],
        );
        check(true, &[("Transfer-Encoding", "chunked")], Chunked, &[]);
        check(true, &[("Transfer-Encoding", "Chunked")], Chunked, &[]);
        check(
            true,
            &[("Transfer-Encoding", "gzip, chunked")],
            Chunked,
            &[],
        );
        check(
            true,
            &[("Transfer-Encoding", "chunked"), ("Content-Length", "5")],
            Chunked,
            &[ContentLengthAndTransferEncoding],
        );
        check(
            true,
            &[("Transfer-Encoding", "chunked, gzip")],
            Unknown,
            &[TransferEncodingNotChunked],
        );
        check(false, &[("Transfer-Encoding", "gzip")], UntilClose, &[]);
        check(
            true,
            &[("Transfer-Encoding", "xchunked")],
            Unknown,
            &[ObfuscatedTransferEncoding, TransferEncodingNotChunked],
        );
        check(
            true,
            &[("Transfer-Encoding", "chunked\x0b")],
            Unknown,
            &[ObfuscatedTransferEncoding, TransferEncodingNotChunked],
        );
        check(
            true,
            &[("Transfer-Encoding", "\"chunked\"")],
            Unknown,
            &[ObfuscatedTransferEncoding, TransferEncodingNotChunked],
        );
        check(
            true,
            &[("Transfer-Encoding", "chunked, chunked")],
            Chunked,
            &[ObfuscatedTransferEncoding],
        );
        check(
            true,
            &[
                ("Transfer-Encoding", "chunked"),
                ("Transfer-Encoding", "identity"),
            ],
            Unknown,
            &[ObfuscatedTransferEncoding, TransferEncodingNotChunked],
        );
        check(
            true,
            &[
                ("Transfer-Encoding", "identity"),
                ("Transfer-Encoding", "chunked"),
            ],
            Chunked,
            &[ObfuscatedTransferEncoding],
        );
        check(
            true,
            &[
                ("Transfer-Encoding", "chunked"),
                ("Content-Length", "3"),
                ("Content-Length", "4"),
            ],
            Chunked,
            &[ContentLengthAndTransferEncoding],
        );
        check(true, &[("Transfer-Encoding", "chunked \t")], Chunked, &[]);
        check(true, &[("Transfer-Encoding", ",chunked")], Chunked, &[]);
    }

    #[test]
    fn decodes_chunked_bodies() {
        /// Feeds `input` in pieces of `step` bytes; returns data, bytes consumed, final event.
        fn run(input: &[u8], step: usize) -> (Vec<u8>, usize, ChunkEvent) {
            let mut dec = Chunked::new();
            let mut data = Vec::new();
            let mut used = 0;
            for piece in input.chunks(step.max(1)) {
                let (n, event) = dec.feed(piece, 64, &mut |d| data.extend_from_slice(d));
                used += n;
                if event != ChunkEvent::More {
                    return (data, used, event);
                }
            }
            (data, used, ChunkEvent::More)
        }
        #[track_caller]
        fn check(input: &str, data: &str, used: usize, event: ChunkEvent) {
            for step in [1, 2, 3, 7, input.len()] {
                let got = run(input.as_bytes(), step);
                assert_eq!(
                    got,
                    (data.as_bytes().to_vec(), used, event),
                    "{input:?} in steps of {step}"
                );
            }
        }
        use ChunkEvent::*;
        check("5\r\nhello\r\n0\r\n\r\n", "hello", 15, Done);
        check("5\r\nhello\r\n0\r\n\r\nGET", "hello", 15, Done);
        check("5\nhello\n0\n\n", "hello", 11, Done);
        check("A\r\n0123456789\r\n0\r\n\r\n", "0123456789", 20, Done);
        check(
            "a;name=value;x\r\n0123456789\r\n0;last\r\n\r\n",
            "0123456789",
            38,
            Done,
        );
        check("5 \r\nhello\r\n0\r\n\r\n", "hello", 16, Done);
        check(
            "3\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n",
            "abcde",
            40,
            Done,
        );
        check("3\r\nabc\r\n", "abc", 8, More);
        check("3\r\nab", "ab", 5, More);
        check("0x5\r\nhello\r\n", "", 1, Invalid);
        check("-1\r\n", "", 0, Invalid);
        check("\r\n", "", 0, Invalid);
        check("5\r\nhelloXX", "hello", 8, Invalid);
        check("5\rX", "", 2, Invalid);
        check("ffffffffffffffff\r\n", "", 15, Invalid);
        check("0\r\nX: 1\r\n\rX", "", 10, Invalid);
        let long_ext = format!("1;{}\r\n", "e".repeat(5000));
        assert_eq!(
            run(long_ext.as_bytes(), 100).2,
            Invalid,
            "a long extension is invalid"
        );
        let long_trailer = format!("0\r\n{}\r\n\r\n", "t".repeat(100));
        assert_eq!(
            run(long_trailer.as_bytes(), 9).2,
            Invalid,
            "trailers beyond the limit are invalid"
        );
    }

    #[test]
    fn skips_uncaptured_chunk_data() {
        #[track_caller]
        fn check(prefix: &str, skip: u64, ok: bool, rest: &str, event: ChunkEvent) {
            let mut dec = Chunked::new();
            let (_, first) = dec.feed(prefix.as_bytes(), 64, &mut |_| {});
            assert_eq!(first, ChunkEvent::More, "prefix {prefix:?}");
            assert_eq!(dec.skip_data(skip), ok, "skip {skip} after {prefix:?}");
            if ok {
                let (_, event_after) = dec.feed(rest.as_bytes(), 64, &mut |_| {});
                assert_eq!(event_after, event, "rest {rest:?}");
            }
        }
        check("10\r\nab", 14, true, "\r\n0\r\n\r\n", ChunkEvent::Done);
        check("10\r\nab", 10, true, "cdef\r\n0\r\n\r\n", ChunkEvent::Done);
        check("10\r\nab", 15, false, "", ChunkEvent::More);
        check("10\r", 1, false, "", ChunkEvent::More);
    }

    #[test]
    fn finds_request_lines() {
        #[track_caller]
        fn check(hay: &str, expected: Option<usize>) {
            assert_eq!(find_request_line(hay.as_bytes()), expected, "{hay:?}");
        }
        check("GET / HTTP/1.1\r\n", Some(0));
        check("xx\r\nPOST /a?b=1 HTTP/1.0\n", Some(4));
        check("garbage bodyGET /next HTTP/1.1\r\nHost: a\r\n", Some(12));
        check("XYZGET /next HTTP/1.1\r\n", Some(3));
        check("BODYDELETE /x HTTP/1.1\r\n", Some(4));
        check("OPTIONS * HTTP/1.1\r\n", Some(0));
        check("GET http://example.com/ HTTP/1.1\r\n", Some(0));
        check("CONNECT example.com:443 HTTP/1.1\r\n", Some(0));
        check("GET example.com HTTP/1.1\r\n", None);
        check("FOO / HTTP/1.1\r\n", None);
        check("get / HTTP/1.1\r\n", None);
        check("GET / HTTP/1.1", None);
        check("GET / HTTP/1.1\r", None);
        check("GET / HTTP/1.2\r\n", None);
        check("GET / HTTP/1.1 \r\n", None);
        check("GET  HTTP/1.1\r\n", None);
        check(" HTTP/1.1\r\n", None);
        check("HTTP/1.1 200 OK\r\n", None);
        check("junk / HTTP/1.1\r\nPUT /x HTTP/1.1\r\n", Some(17));
        check("", None);
    }

    #[test]
    fn finds_status_lines() {
        #[track_caller]
        fn check(hay: &str, expected: Option<usize>) {
            assert_eq!(find_status_line(hay.as_bytes()), expected, "{hay:?}");
        }
        check("HTTP/1.1 200 OK\r\n", Some(0));
        check("body bytesHTTP/1.0 404 Not Found\r\n", Some(10));
        check("HTTP/1.1 204\r\n", Some(0));
        check("HTTP/1.1 204\n", Some(0));
        check("HTTP/1.1 200 OK", None);
        check("HTTP/1.1 20", None);
        check("HTTP/1.1 2000 OK\r\n", None);
        check("HTTP/1.2 200 OK\r\n", None);
        check("GET / HTTP/1.1\r\n", None);
        check("HTTP/1.1 abc\r\nHTTP/1.1 500 x\r\n", Some(14));
        check("", None);
    }

    #[test]
    fn names_methods() {
        for (method, name, known) in [
            ("GET", "GET", true),
            ("PROPFIND", "PROPFIND", true),
            ("get", "get", false),
            ("BREW", "BREW", false),
            (
                "X".repeat(40).leak() as &str,
                "X".repeat(32).leak() as &str,
                false,
            ),
        ] {
            let (got, got_known) = method_name(method);
            assert_eq!(
                (got.as_ref(), got_known),
                (name, known),
                "method {method:?}"
            );
            assert_eq!(
                matches!(got, Cow::Borrowed(_)),
                known,
                "static only when known"
            );
        }
    }
}
