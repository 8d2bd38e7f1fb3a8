//! A writer of small MaxMind DB files for tests: an IPv6 search tree (IPv4 networks under
//! `::/96`), 24-bit records, one `{"country": {"iso_code": CC}}` record per country, and the
//! metadata readers require. Enough to hand the `maxminddb` reader a database built in the
//! test itself, as the format's specification describes it.

use std::collections::BTreeMap;

use ipnet::IpNet;

/// A trie node: each side is another node, a country, or nothing.
#[derive(Clone, Copy, Default)]
enum Side {
    /// No data.
    #[default]
    Empty,
    /// Node index.
    Node(usize),
    /// Country index.
    Data(usize),
}

/// The bits of `net` from the root of an IPv6 tree.
fn bits(net: IpNet) -> (u128, u32) {
    match net {
        IpNet::V4(n) => (
            u128::from(n.network().to_bits()),
            96 + u32::from(n.prefix_len()),
        ),
        IpNet::V6(n) => (n.network().to_bits(), u32::from(n.prefix_len())),
    }
}

/// A database mapping `networks` to their country codes.
pub(crate) fn write(networks: &[(IpNet, &str)]) -> Vec<u8> {
    let mut countries: Vec<String> = Vec::new();
    let mut nodes: Vec<[Side; 2]> = vec![[Side::Empty; 2]];
    for &(net, cc) in networks {
        let data = countries.iter().position(|c| c == cc).unwrap_or_else(|| {
            countries.push(cc.to_owned());
            countries.len() - 1
        });
        let (addr, len) = bits(net);
        let mut node = 0;
        for depth in 0..len {
            let bit = usize::from((addr >> (127 - depth)) & 1 == 1);
            if depth + 1 == len {
                nodes[node][bit] = Side::Data(data);
                break;
            }
            node = if let Side::Node(next) = nodes[node][bit] {
                next
            } else {
                nodes.push([Side::Empty; 2]);
                let next = nodes.len() - 1;
                nodes[node][bit] = Side::Node(next);
                next
            };
        }
    }
    // Data section: one record per country.
    let mut data = Vec::new();
    let mut offsets = Vec::new();
    for cc in &countries {
        offsets.push(data.len());
        map(&mut data, 1);
        string(&mut data, "country");
        map(&mut data, 1);
        string(&mut data, "iso_code");
        string(&mut data, cc);
    }
    let node_count = nodes.len();
    let record = |side: Side| -> u32 {
        let value = match side {
            Side::Empty => node_count,
            Side::Node(n) => n,
            Side::Data(d) => node_count + 16 + offsets[d],
        };
        u32::try_from(value).expect("small database")
    };
    let mut out = Vec::new();
    for [left, right] in &nodes {
        for side in [*left, *right] {
            out.extend_from_slice(&record(side).to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    map(&mut out, 9);
    string(&mut out, "node_count");
    uint(&mut out, 6, node_count as u64);
    string(&mut out, "record_size");
    uint(&mut out, 5, 24);
    string(&mut out, "ip_version");
    uint(&mut out, 5, 6);
    string(&mut out, "database_type");
    string(&mut out, "apisensor-test-country");
    string(&mut out, "languages");
    out.extend_from_slice(&[0x01, 0x04]); // an array (extended type 11) of one
    string(&mut out, "en");
    string(&mut out, "binary_format_major_version");
    uint(&mut out, 5, 2);
    string(&mut out, "binary_format_minor_version");
    uint(&mut out, 5, 0);
    string(&mut out, "build_epoch");
    out.extend_from_slice(&[0x08, 0x02]); // uint64 (extended type 9) of 8 bytes
    out.extend_from_slice(&1_796_000_000_u64.to_be_bytes());
    string(&mut out, "description");
    map(&mut out, 1);
    string(&mut out, "en");
    string(&mut out, "test");
    out
}

/// A map of `n` pairs.
fn map(out: &mut Vec<u8>, n: u8) {
    out.push((7 << 5) | n);
}

/// A UTF-8 string (shorter than 29 bytes).
fn string(out: &mut Vec<u8>, s: &str) {
    let len = u8::try_from(s.len()).expect("short string");
    assert!(len < 29, "short strings only");
    out.push((2 << 5) | len);
    out.extend_from_slice(s.as_bytes());
}

/// An unsigned integer of type `kind` (5: uint16, 6: uint32), in as few bytes as it needs.
fn uint(out: &mut Vec<u8>, kind: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let body = &bytes[skip..];
    out.push((kind << 5) | u8::try_from(body.len()).expect("8 bytes at most"));
    out.extend_from_slice(body);
}

/// The country of each network in `networks`, for checking a database against its input.
pub(crate) fn expected(networks: &[(IpNet, &str)]) -> BTreeMap<IpNet, String> {
    networks
        .iter()
        .map(|(n, c)| (*n, (*c).to_owned()))
        .collect()
}
