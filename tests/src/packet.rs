//! A small builder of Ethernet frames for `BPF_PROG_TEST_RUN` fixtures: Ethernet with up to any
//! number of VLAN tags, IPv4 (with options and fragments) or IPv6 (with extension headers),
//! then TCP, UDP, ICMP or raw bytes. Checksums are computed, so the frames are also valid on a
//! wire; malformed frames are made by editing the built bytes (see the `OFF_*` offsets).
//!
//! ```
//! use apisensor_tests::packet::{Eth, Tcp, tcp_flags};
//! let frame = Eth::new()
//!     .ipv4([198, 51, 100, 2], [203, 0, 113, 1])
//!     .tcp(&Tcp::new(40000, 8080).flags(tcp_flags::PSH | tcp_flags::ACK), b"GET / HTTP/1.1\r\n\r\n");
//! assert_eq!(frame.len(), 14 + 20 + 20 + 18);
//! ```

use std::net::Ipv6Addr;

pub use sensor_common::tcp_flags;

/// `EtherType` of IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// `EtherType` of IPv6.
pub const ETH_P_IPV6: u16 = 0x86DD;
/// `EtherType` of ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// TPID of an 802.1Q (customer) VLAN tag.
pub const ETH_P_8021Q: u16 = 0x8100;
/// TPID of an 802.1ad (service, outer `QinQ`) VLAN tag.
pub const ETH_P_8021AD: u16 = 0x88A8;
/// Length of the Ethernet header without tags.
pub const ETH_HLEN: usize = 14;
/// Length of one VLAN tag.
pub const VLAN_HLEN: usize = 4;
/// Minimum Ethernet frame length without the FCS; shorter frames are padded on the wire.
pub const ETH_ZLEN: usize = 60;

/// IP protocol number of ICMP.
pub const IPPROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of `ICMPv6`.
pub const IPPROTO_ICMPV6: u8 = 58;
/// IPv6 hop-by-hop options header.
pub const IPV6_HOPOPTS: u8 = 0;
/// IPv6 routing header.
pub const IPV6_ROUTING: u8 = 43;
/// IPv6 fragment header.
pub const IPV6_FRAGMENT: u8 = 44;
/// IPv6 destination options header.
pub const IPV6_DSTOPTS: u8 = 60;
/// "No next header" in IPv6.
pub const IPV6_NONXT: u8 = 59;

/// Offset of the IPv4 version/IHL byte from the start of the IP header.
pub const OFF_V4_VER_IHL: usize = 0;
/// Offset of the IPv4 total length (big endian u16) from the start of the IP header.
pub const OFF_V4_TOTAL_LEN: usize = 2;
/// Offset of the IPv6 payload length (big endian u16) from the start of the IP header.
pub const OFF_V6_PAYLOAD_LEN: usize = 4;
/// Offset of the TCP data offset byte from the start of the TCP header.
pub const OFF_TCP_DOFF: usize = 12;

/// Source MAC address of built frames (locally administered).
pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// Destination MAC address of built frames (locally administered).
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// The Ethernet layer: MAC addresses and VLAN tags, outermost first.
#[derive(Clone, Debug, Default)]
pub struct Eth {
    vlans: Vec<(u16, u16)>,
}

impl Eth {
    /// An untagged Ethernet header.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a VLAN tag (after those added before) with protocol identifier `tpid` and VLAN id
    /// `vid`.
    #[must_use]
    pub fn vlan(mut self, tpid: u16, vid: u16) -> Self {
        self.vlans.push((tpid, vid & 0x0fff));
        self
    }

    /// Length of this Ethernet header with its tags.
    pub fn header_len(&self) -> usize {
        ETH_HLEN + VLAN_HLEN * self.vlans.len()
    }

    /// The frame of `body` with `EtherType` `ethertype` (after the tags).
    pub fn frame(&self, ethertype: u16, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.header_len() + body.len());
        out.extend_from_slice(&DST_MAC);
        out.extend_from_slice(&SRC_MAC);
        for (tpid, vid) in &self.vlans {
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&vid.to_be_bytes());
        }
        out.extend_from_slice(&ethertype.to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// An IPv4 layer on top of this Ethernet header.
    pub fn ipv4(self, src: [u8; 4], dst: [u8; 4]) -> Ipv4 {
        Ipv4 {
            eth: self,
            src,
            dst,
            options: Vec::new(),
            frag_offset: 0,
            more_fragments: false,
            id: 0x1234,
            ttl: 64,
        }
    }

    /// An IPv6 layer on top of this Ethernet header.
    pub fn ipv6(self, src: Ipv6Addr, dst: Ipv6Addr) -> Ipv6 {
        Ipv6 {
            eth: self,
            src,
            dst,
            ext: Vec::new(),
            hop_limit: 64,
        }
    }
}

/// An IPv4 header under construction.
#[derive(Clone, Debug)]
pub struct Ipv4 {
    eth: Eth,
    src: [u8; 4],
    dst: [u8; 4],
    options: Vec<u8>,
    frag_offset: u16,
    more_fragments: bool,
    id: u16,
    ttl: u8,
}

impl Ipv4 {
    /// Adds IP options; they are padded with End-of-Options to a multiple of four bytes.
    #[must_use]
    pub fn options(mut self, options: &[u8]) -> Self {
        self.options = options.to_vec();
        while !self.options.len().is_multiple_of(4) {
            self.options.push(0);
        }
        self
    }

    /// Sets the TTL.
    #[must_use]
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    /// Makes this a fragment at `offset_units` (units of eight bytes), with More Fragments set
    /// if `more`.
    #[must_use]
    pub fn fragment(mut self, offset_units: u16, more: bool) -> Self {
        self.frag_offset = offset_units & 0x1fff;
        self.more_fragments = more;
        self
    }

    /// Length of the IPv4 header including options.
    pub fn header_len(&self) -> usize {
        20 + self.options.len()
    }

    /// Offset of the IP header in the frame.
    pub fn l3_offset(&self) -> usize {
        self.eth.header_len()
    }

    /// Offset of the L4 header in the frame.
    pub fn l4_offset(&self) -> usize {
        self.l3_offset() + self.header_len()
    }

    fn pseudo_sum(&self, proto: u8, len: usize) -> u32 {
        let mut p = Vec::with_capacity(12);
        p.extend_from_slice(&self.src);
        p.extend_from_slice(&self.dst);
        p.extend_from_slice(&[0, proto]);
        p.extend_from_slice(&(len as u16).to_be_bytes());
        sum16(&p)
    }

    /// The frame carrying `l4` (an L4 header and payload, already encoded) as protocol `proto`.
    pub fn raw(&self, proto: u8, l4: &[u8]) -> Vec<u8> {
        let hlen = self.header_len();
        let total = (hlen + l4.len()) as u16;
        let mut h = Vec::with_capacity(hlen + l4.len());
        h.push(0x40 | (hlen / 4) as u8);
        h.push(0);
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&self.id.to_be_bytes());
        let flags = self.frag_offset | if self.more_fragments { 0x2000 } else { 0 };
        h.extend_from_slice(&flags.to_be_bytes());
        h.push(self.ttl);
        h.push(proto);
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(&self.src);
        h.extend_from_slice(&self.dst);
        h.extend_from_slice(&self.options);
        let csum = fold(sum16(&h));
        h[10..12].copy_from_slice(&csum.to_be_bytes());
        h.extend_from_slice(l4);
        self.eth.frame(ETH_P_IP, &h)
    }

    /// The frame carrying a TCP segment.
    pub fn tcp(&self, tcp: &Tcp, payload: &[u8]) -> Vec<u8> {
        let len = tcp.header_len() + payload.len();
        self.raw(
            IPPROTO_TCP,
            &tcp.encode(payload, self.pseudo_sum(IPPROTO_TCP, len)),
        )
    }

    /// The frame carrying a UDP datagram.
    pub fn udp(&self, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let len = 8 + payload.len();
        self.raw(
            IPPROTO_UDP,
            &udp(sport, dport, payload, self.pseudo_sum(IPPROTO_UDP, len)),
        )
    }

    /// The frame carrying an ICMP echo request.
    pub fn icmp_echo(&self, payload: &[u8]) -> Vec<u8> {
        self.raw(IPPROTO_ICMP, &icmp_echo(8, payload, 0))
    }
}

/// An IPv6 extension header.
#[derive(Clone, Copy, Debug)]
pub enum Ext {
    /// Hop-by-hop options, `(len8 + 1) * 8` bytes of `PadN`.
    HopByHop {
        /// Length in units of eight bytes, not counting the first eight.
        len8: u8,
    },
    /// A type-4 routing header with no segments left, `(len8 + 1) * 8` bytes.
    Routing {
        /// Length in units of eight bytes, not counting the first eight.
        len8: u8,
    },
    /// Destination options, `(len8 + 1) * 8` bytes of `PadN`.
    DestOpts {
        /// Length in units of eight bytes, not counting the first eight.
        len8: u8,
    },
    /// A fragment header.
    Fragment {
        /// Fragment offset in units of eight bytes.
        offset_units: u16,
        /// More Fragments.
        more: bool,
    },
}

impl Ext {
    fn number(self) -> u8 {
        match self {
            Self::HopByHop { .. } => IPV6_HOPOPTS,
            Self::Routing { .. } => IPV6_ROUTING,
            Self::DestOpts { .. } => IPV6_DSTOPTS,
            Self::Fragment { .. } => IPV6_FRAGMENT,
        }
    }

    /// Encoded length in bytes.
    pub fn len(self) -> usize {
        match self {
            Self::HopByHop { len8 } | Self::Routing { len8 } | Self::DestOpts { len8 } => {
                (usize::from(len8) + 1) * 8
            }
            Self::Fragment { .. } => 8,
        }
    }

    /// Always false: every extension header has at least eight bytes.
    pub fn is_empty(self) -> bool {
        false
    }

    fn encode(self, next: u8, out: &mut Vec<u8>) {
        let start = out.len();
        match self {
            Self::HopByHop { len8 } | Self::DestOpts { len8 } => {
                out.extend_from_slice(&[next, len8]);
                // One PadN option filling the rest of the header.
                let pad = self.len() - 2;
                out.extend_from_slice(&[1, (pad - 2) as u8]);
                out.resize(start + self.len(), 0);
            }
            Self::Routing { len8 } => {
                // Routing type 4 (segment routing) with zero segments left.
                out.extend_from_slice(&[next, len8, 4, 0]);
                out.resize(start + self.len(), 0);
            }
            Self::Fragment { offset_units, more } => {
                out.extend_from_slice(&[next, 0]);
                let v = (offset_units << 3) | u16::from(more);
                out.extend_from_slice(&v.to_be_bytes());
                out.extend_from_slice(&0x0bad_cafe_u32.to_be_bytes());
            }
        }
    }
}

/// An IPv6 header under construction.
#[derive(Clone, Debug)]
pub struct Ipv6 {
    eth: Eth,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ext: Vec<Ext>,
    hop_limit: u8,
}

impl Ipv6 {
    /// Sets the hop limit.
    #[must_use]
    pub fn hop_limit(mut self, hop_limit: u8) -> Self {
        self.hop_limit = hop_limit;
        self
    }

    /// Appends an extension header (after those added before).
    #[must_use]
    pub fn ext(mut self, ext: Ext) -> Self {
        self.ext.push(ext);
        self
    }

    /// Offset of the IPv6 header in the frame.
    pub fn l3_offset(&self) -> usize {
        self.eth.header_len()
    }

    /// Offset of the L4 header in the frame (after every extension header).
    pub fn l4_offset(&self) -> usize {
        self.l3_offset() + 40 + self.ext.iter().map(|e| e.len()).sum::<usize>()
    }

    fn pseudo_sum(&self, proto: u8, len: usize) -> u32 {
        let mut p = Vec::with_capacity(40);
        p.extend_from_slice(&self.src.octets());
        p.extend_from_slice(&self.dst.octets());
        p.extend_from_slice(&(len as u32).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, proto]);
        sum16(&p)
    }

    /// The frame carrying `l4` as upper-layer protocol `proto` after the extension headers.
    pub fn raw(&self, proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut ext = Vec::new();
        for (i, e) in self.ext.iter().enumerate() {
            let next = self.ext.get(i + 1).map_or(proto, |n| n.number());
            e.encode(next, &mut ext);
        }
        let first = self.ext.first().map_or(proto, |e| e.number());
        let payload_len = (ext.len() + l4.len()) as u16;
        let mut h = Vec::with_capacity(40 + payload_len as usize);
        h.extend_from_slice(&[0x60, 0, 0, 0]);
        h.extend_from_slice(&payload_len.to_be_bytes());
        h.push(first);
        h.push(self.hop_limit);
        h.extend_from_slice(&self.src.octets());
        h.extend_from_slice(&self.dst.octets());
        h.extend_from_slice(&ext);
        h.extend_from_slice(l4);
        self.eth.frame(ETH_P_IPV6, &h)
    }

    /// The frame carrying a TCP segment.
    pub fn tcp(&self, tcp: &Tcp, payload: &[u8]) -> Vec<u8> {
        let len = tcp.header_len() + payload.len();
        self.raw(
            IPPROTO_TCP,
            &tcp.encode(payload, self.pseudo_sum(IPPROTO_TCP, len)),
        )
    }

    /// The frame carrying a UDP datagram.
    pub fn udp(&self, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let len = 8 + payload.len();
        self.raw(
            IPPROTO_UDP,
            &udp(sport, dport, payload, self.pseudo_sum(IPPROTO_UDP, len)),
        )
    }

    /// The frame carrying an `ICMPv6` echo request.
    pub fn icmp_echo(&self, payload: &[u8]) -> Vec<u8> {
        let len = 8 + payload.len();
        self.raw(
            IPPROTO_ICMPV6,
            &icmp_echo(128, payload, self.pseudo_sum(IPPROTO_ICMPV6, len)),
        )
    }
}

/// A TCP header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tcp {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags byte (see [`tcp_flags`]).
    pub flags: u8,
    /// Options, padded with End-of-Options to a multiple of four bytes.
    pub options: Vec<u8>,
}

impl Tcp {
    /// A header from `sport` to `dport` with PSH|ACK, sequence 1000 and acknowledgement 2000.
    pub fn new(sport: u16, dport: u16) -> Self {
        Self {
            sport,
            dport,
            seq: 1000,
            ack: 2000,
            flags: tcp_flags::PSH | tcp_flags::ACK,
            options: Vec::new(),
        }
    }

    /// Sets the sequence number.
    #[must_use]
    pub fn seq(mut self, seq: u32) -> Self {
        self.seq = seq;
        self
    }

    /// Sets the acknowledgement number.
    #[must_use]
    pub fn ack(mut self, ack: u32) -> Self {
        self.ack = ack;
        self
    }

    /// Sets the flags byte.
    #[must_use]
    pub fn flags(mut self, flags: u8) -> Self {
        self.flags = flags;
        self
    }

    /// Sets the options (padded to a multiple of four bytes, at most 40).
    #[must_use]
    pub fn options(mut self, options: &[u8]) -> Self {
        self.options = options.to_vec();
        while !self.options.len().is_multiple_of(4) {
            self.options.push(0);
        }
        self.options.truncate(40);
        self
    }

    /// Length of the header including options.
    pub fn header_len(&self) -> usize {
        20 + self.options.len()
    }

    /// The header followed by `payload`, with the checksum seeded by `pseudo`.
    pub fn encode(&self, payload: &[u8], pseudo: u32) -> Vec<u8> {
        let mut t = Vec::with_capacity(self.header_len() + payload.len());
        t.extend_from_slice(&self.sport.to_be_bytes());
        t.extend_from_slice(&self.dport.to_be_bytes());
        t.extend_from_slice(&self.seq.to_be_bytes());
        t.extend_from_slice(&self.ack.to_be_bytes());
        t.push(((self.header_len() / 4) as u8) << 4);
        t.push(self.flags);
        t.extend_from_slice(&64_240_u16.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0]);
        t.extend_from_slice(&self.options);
        t.extend_from_slice(payload);
        let csum = fold(pseudo + sum16(&t));
        t[16..18].copy_from_slice(&csum.to_be_bytes());
        t
    }
}

fn udp(sport: u16, dport: u16, payload: &[u8], pseudo: u32) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let csum = match fold(pseudo + sum16(&u)) {
        0 => 0xffff,
        c => c,
    };
    u[6..8].copy_from_slice(&csum.to_be_bytes());
    u
}

fn icmp_echo(kind: u8, payload: &[u8], pseudo: u32) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0, 0, 1, 0, 1];
    m.extend_from_slice(payload);
    let csum = fold(pseudo + sum16(&m));
    m[2..4].copy_from_slice(&csum.to_be_bytes());
    m
}

/// Pads `frame` with zeros to the Ethernet minimum ([`ETH_ZLEN`]), as a NIC does.
pub fn pad_to_min(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() < ETH_ZLEN {
        frame.resize(ETH_ZLEN, 0);
    }
    frame
}

/// Writes a big-endian `u16` at `off` of `frame`.
///
/// # Panics
/// If `off + 2` exceeds the frame (a bug in the fixture, not in the program under test).
pub fn put_be16(frame: &mut [u8], off: usize, v: u16) {
    frame[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

/// `n` deterministic pseudo-random bytes from `seed` (xorshift64*), for garbage frames.
pub fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

fn sum16(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum()
}

fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    use super::*;

    const SRC4: [u8; 4] = [198, 51, 100, 2];
    const DST4: [u8; 4] = [203, 0, 113, 1];

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().expect("valid address literal")
    }

    /// What etherparse reads from a frame: VLAN ids, the IP version, fragment-ness, and for TCP
    /// the ports, flags byte and payload.
    #[derive(Debug, PartialEq, Eq)]
    struct Seen {
        vlans: usize,
        ip: u8,
        tcp: Option<(u16, u16, Vec<u8>)>,
        udp: Option<(u16, u16)>,
    }

    fn seen(frame: &[u8]) -> Seen {
        let p = SlicedPacket::from_ethernet(frame).expect("etherparse accepts the frame");
        let ip = match &p.net {
            Some(NetSlice::Ipv4(_)) => 4,
            Some(NetSlice::Ipv6(_)) => 6,
            other => panic!("no ip layer: {other:?}"),
        };
        let (tcp, udp) = match &p.transport {
            Some(TransportSlice::Tcp(t)) => (
                Some((t.source_port(), t.destination_port(), t.payload().to_vec())),
                None,
            ),
            Some(TransportSlice::Udp(u)) => (None, Some((u.source_port(), u.destination_port()))),
            _ => (None, None),
        };
        Seen {
            vlans: p.link_exts.len(),
            ip,
            tcp,
            udp,
        }
    }

    #[test]
    fn etherparse_reads_what_was_built() {
        let tcp = Tcp::new(40000, 8080);
        let body = b"GET / HTTP/1.1\r\n\r\n".to_vec();
        let cases: Vec<(&str, Vec<u8>, Seen)> = vec![
            (
                "ipv4 tcp",
                Eth::new().ipv4(SRC4, DST4).tcp(&tcp, &body),
                Seen {
                    vlans: 0,
                    ip: 4,
                    tcp: Some((40000, 8080, body.clone())),
                    udp: None,
                },
            ),
            (
                "qinq ipv4 options tcp options",
                Eth::new()
                    .vlan(ETH_P_8021AD, 100)
                    .vlan(ETH_P_8021Q, 200)
                    .ipv4(SRC4, DST4)
                    .options(&[1, 1, 1, 1, 1, 1, 1, 1])
                    .tcp(
                        &tcp.clone().options(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]),
                        &body,
                    ),
                Seen {
                    vlans: 2,
                    ip: 4,
                    tcp: Some((40000, 8080, body.clone())),
                    udp: None,
                },
            ),
            (
                "ipv6 extension chain tcp",
                Eth::new()
                    .ipv6(v6("2001:db8::2"), v6("2001:db8::1"))
                    .ext(Ext::HopByHop { len8: 0 })
                    .ext(Ext::Routing { len8: 2 })
                    .ext(Ext::DestOpts { len8: 1 })
                    .tcp(&tcp, &body),
                Seen {
                    vlans: 0,
                    ip: 6,
                    tcp: Some((40000, 8080, body.clone())),
                    udp: None,
                },
            ),
            (
                "ipv6 udp",
                Eth::new()
                    .ipv6(v6("2001:db8::2"), v6("2001:db8::1"))
                    .udp(5353, 53, b"q"),
                Seen {
                    vlans: 0,
                    ip: 6,
                    tcp: None,
                    udp: Some((5353, 53)),
                },
            ),
        ];
        for (name, frame, want) in cases {
            assert_eq!(seen(&frame), want, "case {name}");
        }
    }

    #[test]
    fn checksums_verify() {
        let frame = Eth::new()
            .ipv4(SRC4, DST4)
            .options(&[1, 1, 1, 1])
            .tcp(&Tcp::new(1, 2), b"abc");
        let ip = &frame[ETH_HLEN..ETH_HLEN + 24];
        assert_eq!(fold(sum16(ip)), 0, "ipv4 header checksum");
        let h = etherparse::Ipv4HeaderSlice::from_slice(&frame[ETH_HLEN..])
            .expect("ipv4 header")
            .to_header();
        let t = etherparse::TcpHeaderSlice::from_slice(&frame[ETH_HLEN + 24..])
            .expect("tcp header")
            .to_header();
        assert_eq!(
            t.calc_checksum_ipv4(&h, b"abc").expect("checksum"),
            t.checksum,
            "tcp checksum"
        );
    }

    #[test]
    fn offsets_match_the_layout() {
        let l4 = Eth::new()
            .vlan(ETH_P_8021Q, 1)
            .ipv6(v6("2001:db8::2"), v6("2001:db8::1"))
            .ext(Ext::Fragment {
                offset_units: 0,
                more: true,
            })
            .ext(Ext::DestOpts { len8: 3 });
        assert_eq!(l4.l4_offset(), 14 + 4 + 40 + 8 + 32);
        let v4 = Eth::new().ipv4(SRC4, DST4).options(&[1]);
        assert_eq!((v4.l3_offset(), v4.l4_offset()), (14, 14 + 24));
    }
}
