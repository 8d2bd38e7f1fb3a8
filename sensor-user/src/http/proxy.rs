//! The real client behind a proxy: PROXY protocol v1 and v2 headers at the start of the
//! client-to-server stream, and the `Forwarded` / `X-Forwarded-For` request headers.
//!
//! These are believed only from trusted peers (`HttpConfig::trusted_proxies`). Hops are walked
//! from the right (the hop closest to the server) and the client is the first hop that is not a
//! trusted proxy, so a client cannot choose its address by sending its own header through a
//! proxy that appends to it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::config::HttpConfig;
use super::transaction::{Flag, Flags};

/// The PROXY protocol v2 signature.
const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
/// The PROXY protocol v1 prefix.
const V1_PREFIX: &[u8] = b"PROXY ";
/// Longest v1 header, line break included (from the specification).
const V1_MAX: usize = 107;

/// What the start of a client-to-server stream holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProxyHeader {
    /// No PROXY header: the stream starts with something else.
    Absent,
    /// The bytes so far are a prefix of a PROXY header.
    NeedMore,
    /// A complete header of `len` bytes reporting `source` (`None` for `LOCAL`, `UNKNOWN` and
    /// non-IP families).
    Present {
        /// Header length in bytes.
        len: usize,
        /// The client address the proxy reports.
        source: Option<SocketAddr>,
    },
    /// A header that starts like a PROXY header but is malformed.
    Invalid,
}

/// Parses a PROXY protocol v1 or v2 header at the start of `bytes`. Headers longer than
/// `max_len` are invalid.
pub(crate) fn parse_header(bytes: &[u8], max_len: usize) -> ProxyHeader {
    let sig_len = bytes.len().min(V2_SIGNATURE.len());
    if bytes.get(..sig_len) == V2_SIGNATURE.get(..sig_len) && !bytes.is_empty() {
        return if bytes.len() < V2_SIGNATURE.len() {
            ProxyHeader::NeedMore
        } else {
            parse_v2(bytes, max_len)
        };
    }
    let prefix_len = bytes.len().min(V1_PREFIX.len());
    if !bytes.is_empty() && bytes.get(..prefix_len) == V1_PREFIX.get(..prefix_len) {
        return if bytes.len() < V1_PREFIX.len() {
            ProxyHeader::NeedMore
        } else {
            parse_v1(bytes)
        };
    }
    ProxyHeader::Absent
}

fn parse_v1(bytes: &[u8]) -> ProxyHeader {
    let window = bytes.get(..bytes.len().min(V1_MAX)).unwrap_or(bytes);
    let Some(cr) = memchr::memmem::find(window, b"\r\n") else {
        return if bytes.len() < V1_MAX {
            ProxyHeader::NeedMore
        } else {
            ProxyHeader::Invalid
        };
    };
    let Some(line) = window.get(..cr).and_then(|l| std::str::from_utf8(l).ok()) else {
        return ProxyHeader::Invalid;
    };
    let len = cr + 2;
    let mut fields = line.split(' ');
    let _proxy = fields.next();
    let source = match fields.next() {
        Some("UNKNOWN") => return ProxyHeader::Present { len, source: None },
        Some("TCP4") => fields
            .next()
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
            .map(IpAddr::V4),
        Some("TCP6") => fields
            .next()
            .and_then(|s| s.parse::<Ipv6Addr>().ok())
            .map(IpAddr::V6),
        _ => return ProxyHeader::Invalid,
    };
    let Some(ip) = source else {
        return ProxyHeader::Invalid;
    };
    let dst_ok = fields.next().is_some_and(|d| d.parse::<IpAddr>().is_ok());
    let sport = fields.next().and_then(|p| p.parse::<u16>().ok());
    let dport = fields.next().and_then(|p| p.parse::<u16>().ok());
    match (dst_ok, sport, dport, fields.next()) {
        (true, Some(port), Some(_), None) => ProxyHeader::Present {
            len,
            source: Some(SocketAddr::new(ip, port)),
        },
        _ => ProxyHeader::Invalid,
    }
}

fn parse_v2(bytes: &[u8], max_len: usize) -> ProxyHeader {
    let (Some(&ver_cmd), Some(&family), Some(len_hi), Some(len_lo)) =
        (bytes.get(12), bytes.get(13), bytes.get(14), bytes.get(15))
    else {
        return ProxyHeader::NeedMore;
    };
    if ver_cmd >> 4 != 2 {
        return ProxyHeader::Invalid;
    }
    let body_len = usize::from(u16::from_be_bytes([*len_hi, *len_lo]));
    let len = 16 + body_len;
    if len > max_len {
        return ProxyHeader::Invalid;
    }
    let Some(body) = bytes.get(16..len) else {
        return ProxyHeader::NeedMore;
    };
    match ver_cmd & 0x0F {
        // LOCAL: the proxy's own connection (health checks); keep the peer.
        0 => ProxyHeader::Present { len, source: None },
        1 => {
            let source = match family >> 4 {
                1 => match (body.get(0..4), body.get(8..10)) {
                    (Some(ip), Some(port)) => {
                        let ip: [u8; 4] = ip.try_into().unwrap_or_default();
                        let port = u16::from_be_bytes(port.try_into().unwrap_or_default());
                        Some(SocketAddr::new(IpAddr::from(ip), port))
                    }
                    _ => return ProxyHeader::Invalid,
                },
                2 => match (body.get(0..16), body.get(32..34)) {
                    (Some(ip), Some(port)) => {
                        let ip: [u8; 16] = ip.try_into().unwrap_or_default();
                        let port = u16::from_be_bytes(port.try_into().unwrap_or_default());
                        Some(SocketAddr::new(IpAddr::from(ip), port))
                    }
                    _ => return ProxyHeader::Invalid,
                },
                // AF_UNSPEC and AF_UNIX carry no IP address.
                0 | 3 => None,
                _ => return ProxyHeader::Invalid,
            };
            ProxyHeader::Present { len, source }
        }
        _ => ProxyHeader::Invalid,
    }
}

/// One hop of a forwarding header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hop {
    /// An IP address (any port dropped).
    Ip(IpAddr),
    /// `unknown` or an obfuscated identifier (`_hidden`): a hop with no address.
    Opaque,
    /// Not parseable.
    Malformed,
}

/// Resolves the client of one request. `start` is the address the connection comes from (the
/// peer, or the source of a trusted PROXY header); `headers` are the request headers.
pub(crate) fn resolve_client(
    cfg: &HttpConfig,
    start: IpAddr,
    headers: &[httparse::Header<'_>],
    flags: &mut Flags,
) -> IpAddr {
    let is_forwarded =
        |h: &&httparse::Header<'_>| h.name.len() == 9 && h.name.eq_ignore_ascii_case("forwarded");
    let is_xff = |h: &&httparse::Header<'_>| {
        h.name.len() == 15 && h.name.eq_ignore_ascii_case("x-forwarded-for")
    };
    let forwarded = headers.iter().any(|h| is_forwarded(&h));
    let xff = headers.iter().any(|h| is_xff(&h));
    if !forwarded && !xff {
        return start;
    }
    if !cfg.is_trusted(start) {
        flags.insert(Flag::ForwardedFromUntrusted);
        return start;
    }
    let wanted = |h: &&httparse::Header<'_>| {
        if forwarded {
            is_forwarded(h)
        } else {
            is_xff(h)
        }
    };
    let mut client = start;
    for header in headers.iter().rev().filter(wanted) {
        for element in header.value.rsplit(|b| *b == b',') {
            let element = trim_ows(element);
            if element.is_empty() {
                continue;
            }
            let hop = if forwarded {
                forwarded_hop(element)
            } else {
                parse_hop(element)
            };
            match hop {
                Hop::Ip(ip) => {
                    client = ip.to_canonical();
                    if !cfg.is_trusted(client) {
                        return client;
                    }
                }
                Hop::Opaque => return client,
                Hop::Malformed => {
                    flags.insert(Flag::InvalidForwarded);
                    return client;
                }
            }
        }
    }
    client
}

/// The `for=` hop of one `Forwarded` element (`for=198.51.100.7;proto=https`).
fn forwarded_hop(element: &[u8]) -> Hop {
    for pair in element.split(|b| *b == b';') {
        let pair = trim_ows(pair);
        let Some(eq) = memchr::memchr(b'=', pair) else {
            return Hop::Malformed;
        };
        let (key, value) = (
            pair.get(..eq).unwrap_or_default(),
            pair.get(eq + 1..).unwrap_or_default(),
        );
        if !key.eq_ignore_ascii_case(b"for") {
            continue;
        }
        let value = match value {
            [b'"', inner @ .., b'"'] => inner,
            _ => value,
        };
        return parse_hop(value);
    }
    Hop::Opaque
}

/// One address: `198.51.100.7`, `198.51.100.7:80`, `2001:db8::1`, `[2001:db8::1]:80`,
/// `unknown`, or an obfuscated `_name`.
fn parse_hop(value: &[u8]) -> Hop {
    let Ok(text) = std::str::from_utf8(value) else {
        return Hop::Malformed;
    };
    if text.eq_ignore_ascii_case("unknown") || text.starts_with('_') {
        return Hop::Opaque;
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Hop::Ip(ip);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Hop::Ip(addr.ip());
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']'))
        && let Ok(ip) = inner.parse::<Ipv6Addr>()
    {
        return Hop::Ip(IpAddr::V6(ip));
    }
    Hop::Malformed
}

/// `bytes` without leading and trailing spaces and tabs.
pub(crate) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | cmd);
        out.push(family);
        out.extend_from_slice(&u16::try_from(body.len()).expect("short body").to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn v2_tcp4(src: [u8; 4], sport: u16) -> Vec<u8> {
        let mut body = src.to_vec();
        body.extend_from_slice(&[203, 0, 113, 1]);
        body.extend_from_slice(&sport.to_be_bytes());
        body.extend_from_slice(&80u16.to_be_bytes());
        v2(1, 0x11, &body)
    }

    fn v2_tcp6(src: Ipv6Addr, sport: u16) -> Vec<u8> {
        let mut body = src.octets().to_vec();
        body.extend_from_slice(&"2001:db8::80".parse::<Ipv6Addr>().expect("ip").octets());
        body.extend_from_slice(&sport.to_be_bytes());
        body.extend_from_slice(&80u16.to_be_bytes());
        body.extend_from_slice(&[0x03, 0x00, 0x01, 0xAA]); // A TLV, ignored.
        v2(1, 0x21, &body)
    }

    #[test]
    #[expect(clippy::too_many_lines, reason = "one table of cases")]
    fn parses_proxy_headers() {
        #[track_caller]
        fn check(bytes: &[u8], expected: ProxyHeader) {
            assert_eq!(parse_header(bytes, 4096), expected, "input {bytes:?}");
        }
        let sock = |s: &str| Some(s.parse::<SocketAddr>().expect("addr"));
        let v1 = b"PROXY TCP4 198.51.100.7 203.0.113.1 40000 80\r\nGET / HTTP/1.1\r\n";
        check(
            v1,
            ProxyHeader::Present {
                len: 46,
                source: sock("198.51.100.7:40000"),
            },
        );
        check(
            b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 80\r\n",
            ProxyHeader::Present {
                len: 45,
                source: sock("[2001:db8::7]:40000"),
            },
        );
        check(
            b"PROXY UNKNOWN\r\n",
            ProxyHeader::Present {
                len: 15,
                source: None,
            },
        );
        check(
            b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
            ProxyHeader::Present {
                len: 35,
                source: None,
            },
        );
        check(
            b"PROXY TCP4 198.51.100.7 203.0.113.1 40000",
            ProxyHeader::NeedMore,
        );
        check(b"PROX", ProxyHeader::NeedMore);
        check(
            b"PROXY TCP4 198.51.100.7 203.0.113.1 99999 80\r\n",
            ProxyHeader::Invalid,
        );
        check(
            b"PROXY TCP4 2001:db8::1 203.0.113.1 1 80\r\n",
            ProxyHeader::Invalid,
        );
        check(
            b"PROXY TCP5 198.51.100.7 203.0.113.1 1 80\r\n",
            ProxyHeader::Invalid,
        );
        check(
            b"PROXY TCP4 198.51.100.7 203.0.113.1 1 80 extra\r\n",
            ProxyHeader::Invalid,
        );
        check(
            &[b'P', b'R', b'O', b'X', b'Y', b' '].repeat(30),
            ProxyHeader::Invalid,
        );
        check(b"GET / HTTP/1.1\r\n", ProxyHeader::Absent);
        check(b"PUT / HTTP/1.1\r\n", ProxyHeader::Absent);
        check(b"", ProxyHeader::Absent);

        let tcp4 = v2_tcp4([198, 51, 100, 9], 5555);
        check(
            &tcp4,
            ProxyHeader::Present {
                len: 28,
                source: sock("198.51.100.9:5555"),
            },
        );
        check(&tcp4[..20], ProxyHeader::NeedMore);
        check(&tcp4[..5], ProxyHeader::NeedMore);
        check(&tcp4[..13], ProxyHeader::NeedMore);
        let tcp6 = v2_tcp6("2001:db8::9".parse().expect("ip"), 6666);
        check(
            &tcp6,
            ProxyHeader::Present {
                len: 56,
                source: sock("[2001:db8::9]:6666"),
            },
        );
        check(
            &v2(0, 0x00, &[]),
            ProxyHeader::Present {
                len: 16,
                source: None,
            },
        );
        check(
            &v2(1, 0x31, &[0; 216]),
            ProxyHeader::Present {
                len: 232,
                source: None,
            },
        );
        check(&v2(1, 0x11, &[0; 4]), ProxyHeader::Invalid);
        check(&v2(7, 0x11, &[0; 12]), ProxyHeader::Invalid);
        check(&v2(1, 0x51, &[0; 12]), ProxyHeader::Invalid);
        let mut bad_version = tcp4.clone();
        bad_version[12] = 0x11;
        check(&bad_version, ProxyHeader::Invalid);
        assert_eq!(
            parse_header(&v2(1, 0x11, &[0; 200]), 100),
            ProxyHeader::Invalid
        );
        check(b"\r\n\r\n", ProxyHeader::NeedMore);
        check(b"\r\n\r\nX", ProxyHeader::Absent);
    }

    #[test]
    #[expect(clippy::too_many_lines, reason = "one table of cases")]
    fn resolves_forwarded_clients() {
        #[track_caller]
        fn check(start: &str, headers: &[(&str, &str)], client: &str, flags: Flags) {
            let cfg = HttpConfig {
                trusted_proxies: vec![
                    "203.0.113.0/24".parse().expect("net"),
                    "2001:db8:ffff::/48".parse().expect("net"),
                ],
                ..HttpConfig::default()
            };
            let headers: Vec<httparse::Header<'_>> = headers
                .iter()
                .map(|(name, value)| httparse::Header {
                    name,
                    value: value.as_bytes(),
                })
                .collect();
            let mut got_flags = Flags::EMPTY;
            let got = resolve_client(
                &cfg,
                start.parse().expect("start ip"),
                &headers,
                &mut got_flags,
            );
            assert_eq!(
                got,
                client.parse::<IpAddr>().expect("client ip"),
                "headers {headers:?}"
            );
            assert_eq!(got_flags, flags, "headers {headers:?}");
        }
        let none = Flags::EMPTY;
        let untrusted = Flags::from([Flag::ForwardedFromUntrusted]);
        let invalid = Flags::from([Flag::InvalidForwarded]);
        // No header.
        check("198.51.100.1", &[("Host", "a")], "198.51.100.1", none);
        // Trusted proxy, one hop.
        check(
            "203.0.113.5",
            &[("X-Forwarded-For", "198.51.100.7")],
            "198.51.100.7",
            none,
        );
        // Rightmost untrusted hop wins; the spoofed leftmost hop is ignored.
        check(
            "203.0.113.5",
            &[(
                "X-Forwarded-For",
                "198.51.100.66, 198.51.100.7, 203.0.113.9",
            )],
            "198.51.100.7",
            none,
        );
        // Several header lines are one list, in order.
        check(
            "203.0.113.5",
            &[
                ("X-Forwarded-For", "198.51.100.66"),
                ("X-Forwarded-For", "198.51.100.7"),
            ],
            "198.51.100.7",
            none,
        );
        // Every hop trusted: the leftmost.
        check(
            "203.0.113.5",
            &[("X-Forwarded-For", "203.0.113.7, 203.0.113.9")],
            "203.0.113.7",
            none,
        );
        // Ports and brackets.
        check(
            "203.0.113.5",
            &[("X-Forwarded-For", "198.51.100.7:4711")],
            "198.51.100.7",
            none,
        );
        check(
            "203.0.113.5",
            &[("X-Forwarded-For", "[2001:db8::7]:4711")],
            "2001:db8::7",
            none,
        );
        check(
            "203.0.113.5",
            &[("X-Forwarded-For", "2001:db8::7")],
            "2001:db8::7",
            none,
        );
        // Untrusted peer: ignored and flagged.
        check(
            "198.51.100.1",
            &[("X-Forwarded-For", "198.51.100.7")],
            "198.51.100.1",
            untrusted,
        );
        check(
            "198.51.100.1",
            &[("Forwarded", "for=198.51.100.7")],
            "198.51.100.1",
            untrusted,
        );
        // Malformed hop from a trusted proxy.
        check(
            "203.0.113.5",
            &[("X-Forwarded-For", "not-an-ip")],
            "203.0.113.5",
            invalid,
        );
        check(
            "203.0.113.5",
            &[("X-Forwarded-For", "198.51.100.7, junk, 203.0.113.9")],
            "203.0.113.9",
            invalid,
        );
        // Forwarded, with quoting, IPv6, parameters and several elements.
        check(
            "203.0.113.5",
            &[("Forwarded", "for=198.51.100.7;proto=https")],
            "198.51.100.7",
            none,
        );
        check(
            "203.0.113.5",
            &[("Forwarded", r#"for="[2001:db8::7]:4711", for=203.0.113.9"#)],
            "2001:db8::7",
            none,
        );
        check(
            "203.0.113.5",
            &[("Forwarded", "For=198.51.100.7")],
            "198.51.100.7",
            none,
        );
        check(
            "203.0.113.5",
            &[("Forwarded", "for=unknown")],
            "203.0.113.5",
            none,
        );
        check(
            "203.0.113.5",
            &[("Forwarded", "for=_hidden, for=203.0.113.9")],
            "203.0.113.9",
            none,
        );
        check(
            "203.0.113.5",
            &[("Forwarded", "proto=https")],
            "203.0.113.5",
            none,
        );
        check(
            "203.0.113.5",
            &[("Forwarded", "garbage")],
            "203.0.113.5",
            invalid,
        );
        // Forwarded wins over X-Forwarded-For.
        check(
            "203.0.113.5",
            &[
                ("X-Forwarded-For", "198.51.100.1"),
                ("Forwarded", "for=198.51.100.2"),
            ],
            "198.51.100.2",
            none,
        );
        // IPv6 trusted proxy and an IPv4-mapped hop.
        check(
            "2001:db8:ffff::1",
            &[("X-Forwarded-For", "::ffff:198.51.100.7")],
            "198.51.100.7",
            none,
        );
    }

    #[test]
    fn trims_optional_whitespace() {
        for (input, expected) in [
            (&b" a "[..], &b"a"[..]),
            (b"\ta b\t", b"a b"),
            (b"   ", b""),
            (b"", b""),
            (b"x", b"x"),
        ] {
            assert_eq!(trim_ows(input), expected, "input {input:?}");
        }
    }
}
