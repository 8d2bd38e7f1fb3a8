//! The JSON writer against `serde_json`'s own bytes.
use super::*;

#[test]
fn json_line_matches_serde_json() {
    #[track_caller]
    fn check(tx: &Transaction) {
        let mut line = Vec::new();
        json_line(tx, &mut line);
        let mut expected = serde_json::to_vec(tx).expect("transaction serializes");
        expected.push(b'\n');
        assert_eq!(
            String::from_utf8_lossy(&line),
            String::from_utf8_lossy(&expected),
            "{tx:?}"
        );
    }
    use crate::http::{Flag, Flags, HttpVersion, LoginOutcome, NameList};
    let v4: std::net::SocketAddr = "198.51.100.7:0".parse().expect("v4");
    let v4b: std::net::SocketAddr = "203.0.113.255:65535".parse().expect("v4");
    let v6: std::net::SocketAddr = "[2001:db8::1%7]:8080".parse().expect("v6");
    let v6b: std::net::SocketAddr = "[2001:db8:0:0:1:0:0:1]:80".parse().expect("v6");
    let mut tx = Transaction::empty(0, v4, v4b);
    check(&tx);
    tx.ts_ns = u64::MAX;
    tx.peer = v6;
    tx.server = v6b;
    tx.client = "10.0.0.1".parse().expect("ip");
    tx.method = "GET".into();
    tx.version = Some(HttpVersion::Http10);
    tx.host = Some("api.example.test".to_owned());
    tx.path = "/a\"b\\c\u{1}\u{1f}\u{7f}é\t\n".to_owned();
    tx.route = "/users/{id}".to_owned();
    tx.query_keys = NameList::from(["page", "q\"x", "\u{0}"]);
    tx.status = Some(404);
    tx.reason = Some("Not \"Found\"".into());
    tx.latency_ns = Some(1_234_567);
    tx.req_bytes = 10;
    tx.resp_bytes = 1 << 40;
    tx.user_agent = Some("Mozilla/5.0 (X11) ☃".to_owned());
    tx.header_order = NameList::from(["host", "user-agent"]);
    tx.set_cookies = NameList::from(["sid"]);
    tx.account = Some("alice\\".to_owned());
    tx.session = Some("0123456789abcdef".to_owned());
    tx.login = Some(LoginOutcome::Failure);
    tx.flags = Flags::from([Flag::Gap, Flag::InvalidAuthorization]);
    check(&tx);
    tx.version = Some(HttpVersion::Http11);
    tx.login = Some(LoginOutcome::Success);
    tx.client = "2001:db8::ff".parse().expect("ip");
    tx.status = Some(0);
    check(&tx);
    tx.login = Some(LoginOutcome::Unknown);
    tx.peer = "0.0.0.0:9".parse().expect("v4");
    tx.flags = Flags::from(Flag::ALL);
    check(&tx);
    // Transport fingerprints: a Linux SYN, one with cut options and more than ten, none.
    let linux = crate::http::transport::read_syn(
        64,
        64240,
        &[
            2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ],
    );
    tx.transport_fingerprint = crate::http::TransportFingerprint::of(&linux);
    assert!(tx.transport_fingerprint.is_some());
    check(&tx);
    let mut odd = [1_u8; 14];
    odd[12] = 30;
    odd[13] = 9;
    tx.transport_fingerprint =
        crate::http::TransportFingerprint::of(&crate::http::transport::read_syn(255, 0, &odd));
    check(&tx);
    tx.transport_fingerprint = None;
    check(&tx);
}

/// An IPv6 address whose groups are mostly zero, so that runs of zeros of every length and
/// position come up, plus IPv4-mapped and IPv4-compatible shapes.
fn ipv6_strategy() -> impl proptest::strategy::Strategy<Value = std::net::Ipv6Addr> {
    use proptest::prelude::*;
    (
        proptest::collection::vec(prop_oneof![3 => Just(0_u16), 1 => any::<u16>()], 8),
        0_u8..4,
    )
        .prop_map(|(groups, shape)| {
            let mut g = [0_u16; 8];
            for (slot, v) in g.iter_mut().zip(groups) {
                *slot = v;
            }
            match shape {
                0 => g[..5].fill(0),
                1 => {
                    g[..5].fill(0);
                    g[5] = 0xffff;
                }
                _ => {}
            }
            std::net::Ipv6Addr::from(g)
        })
}

proptest::proptest! {
    #[test]
    fn addresses_are_written_as_display_writes_them(
        v6 in ipv6_strategy(),
        v4 in proptest::prelude::any::<u32>(),
        port in proptest::prelude::any::<u16>(),
        scope in proptest::prop_oneof![proptest::strategy::Just(0_u32), proptest::prelude::any::<u32>()],
    ) {
        let v4 = std::net::Ipv4Addr::from(v4);
        let addrs = [
            std::net::SocketAddr::V6(std::net::SocketAddrV6::new(v6, port, 0, scope)),
            std::net::SocketAddr::V4(std::net::SocketAddrV4::new(v4, port)),
        ];
        for addr in addrs {
            let mut buf = Vec::new();
            socket_text(&mut buf, addr);
            proptest::prop_assert_eq!(String::from_utf8_lossy(&buf), addr.to_string());
            buf.clear();
            ip_text(&mut buf, addr.ip());
            proptest::prop_assert_eq!(String::from_utf8_lossy(&buf), addr.ip().to_string());
        }
    }
}

#[test]
fn cached_lines_match_serde_json() {
    use crate::http::NameList;
    let mut cache = JsonCache::default();
    let names = [
        NameList::from(["host", "user-agent"]),
        NameList::from(["host"]),
        NameList::from(["a\"b", "c"]),
        NameList::default(),
    ];
    // More distinct addresses than slots, each written several times, so that hits,
    // misses and replaced slots all occur.
    for round in 0..3_u16 {
        for i in 0..(CACHE_SLOTS as u16 + 50) {
            let peer: std::net::SocketAddr = if i % 3 == 0 {
                format!("[2001:db8::{i:x}]:{}", 1000 + round)
                    .parse()
                    .expect("v6")
            } else {
                format!("10.0.{}.{}:{}", i / 256, i % 256, 1000 + round)
                    .parse()
                    .expect("v4")
            };
            let server: std::net::SocketAddr = "198.51.100.1:80".parse().expect("v4");
            let mut tx = Transaction::empty(u64::from(i), peer, server);
            tx.header_order = names[usize::from(i) % names.len()].clone();
            tx.query_keys = names[usize::from(i + round) % names.len()].clone();
            let mut line = Vec::new();
            cache.line(&tx, &mut line);
            let mut expected = serde_json::to_vec(&tx).expect("transaction serializes");
            expected.push(b'\n');
            assert_eq!(
                String::from_utf8_lossy(&line),
                String::from_utf8_lossy(&expected)
            );
        }
    }
}

#[test]
fn needs_escape_matches_a_byte_scan() {
    let plain = b"/api/v1/users/{id}?x=1 Mozilla/5.0 (X11) \x7f\xc3\xa9";
    let scan = |s: &[u8]| s.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
    for len in 0..plain.len() {
        let base = &plain[..len];
        assert_eq!(needs_escape(base), scan(base), "{base:?}");
        for at in 0..len {
            for bad in [0_u8, b'\n', 0x1f, b'"', b'\\'] {
                let mut s = base.to_vec();
                s[at] = bad;
                assert!(needs_escape(&s), "{s:?}");
            }
            for good in [0x20_u8, 0x21, 0x7f, 0x80, 0xff, b'#', b']'] {
                let mut s = base.to_vec();
                s[at] = good;
                assert_eq!(needs_escape(&s), scan(&s), "{s:?}");
            }
        }
    }
}

#[test]
fn put_appends_every_length() {
    let src: Vec<u8> = (0..40).collect();
    for n in 0..=src.len() {
        let mut buf = b"ab".to_vec();
        put(&mut buf, src.get(..n).expect("prefix"));
        assert_eq!(buf.get(2..), src.get(..n), "length {n}");
        assert_eq!(buf.len(), n + 2, "length {n}");
    }
}
