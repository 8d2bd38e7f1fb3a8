//! Bounds-checked packet parsing shared by the XDP and TC programs.
//!
//! Both program types expose the packet as a `[data, data_end)` window, so one parser serves
//! both. Every read goes through [`Packet::ptr_at`], the single place that proves to the
//! verifier that an access stays inside the packet. Loops are bounded by constants. A failure
//! returns the [`Counter`] that names why, and the caller lets the packet pass.

use core::mem::size_of;

use sensor_common::{Addr, Counter, v4_mapped};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const VLAN_HLEN: usize = 4;
/// Tags followed at most: 802.1ad outer plus 802.1Q inner (`QinQ`).
const MAX_VLAN_TAGS: usize = 2;

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
const IPV6_HOPOPTS: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DSTOPTS: u8 = 60;
/// Extension headers followed at most before giving up (counted as `XdpPassExtHdrLimit`).
const MAX_IPV6_EXT_HDRS: usize = 6;

/// The packet window.
#[derive(Clone, Copy)]
pub struct Packet {
    start: usize,
    end: usize,
}

impl Packet {
    /// Wraps the `[data, data_end)` window of a context.
    #[inline(always)]
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// Length of the window (the linear part of the packet).
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Pointer to a `T` at `offset`, or `Err(on_short)` if it does not fit in the window.
    #[inline(always)]
    fn ptr_at<T>(&self, offset: usize, on_short: Counter) -> Result<*const T, Counter> {
        let p = self.start + offset;
        if p + size_of::<T>() > self.end {
            return Err(on_short);
        }
        Ok(p as *const T)
    }

    /// Copies the `N` bytes at `offset` out of the packet. Each header is read whole through
    /// one checked pointer, so the compiler cannot re-derive a field's address from a register
    /// the verifier has not range-checked.
    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize, on_short: Counter) -> Result<[u8; N], Counter> {
        // SAFETY: ptr_at checked the bounds; the read is unaligned-safe.
        Ok(unsafe { self.ptr_at::<[u8; N]>(offset, on_short)?.read_unaligned() })
    }
}

#[inline(always)]
fn be16(b0: u8, b1: u8) -> u16 {
    u16::from_be_bytes([b0, b1])
}

#[inline(always)]
fn be32(b: [u8; 4]) -> u32 {
    u32::from_be_bytes(b)
}

/// What the L3 parser found.
pub struct L3 {
    /// Source address (IPv4 mapped).
    pub src: Addr,
    /// Destination address (IPv4 mapped).
    pub dst: Addr,
    /// 4 or 6.
    pub version: u8,
    /// Upper-layer protocol after extension headers.
    pub proto: u8,
    /// Offset of the L4 header from the start of the frame.
    pub l4_off: usize,
    /// Bytes of L4 header plus payload according to the IP header (not the frame, which may be
    /// padded).
    pub l4_len: usize,
    /// True for a fragment other than the first: there is no L4 header to read.
    pub later_fragment: bool,
}

/// Skips Ethernet and up to two VLAN tags. Returns the `EtherType` and the L3 offset.
#[inline(always)]
pub fn parse_eth(pkt: &Packet) -> Result<(u16, usize), Counter> {
    let eth: [u8; ETH_HLEN] = pkt.read(0, Counter::XdpPassTruncated)?;
    let mut proto = be16(eth[12], eth[13]);
    let mut off = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        // The tag's TCI comes first, the encapsulated EtherType after it.
        let tag: [u8; VLAN_HLEN] = pkt.read(off, Counter::XdpPassTruncated)?;
        proto = be16(tag[2], tag[3]);
        off += VLAN_HLEN;
    }
    Ok((proto, off))
}

/// Parses IPv4 or IPv6 at `off`, following IPv6 extension headers.
#[inline(always)]
pub fn parse_l3(pkt: &Packet, ethertype: u16, off: usize) -> Result<L3, Counter> {
    match ethertype {
        ETH_P_IP => parse_ipv4(pkt, off),
        ETH_P_IPV6 => parse_ipv6(pkt, off),
        _ => Err(Counter::XdpPassNotIp),
    }
}

#[inline(always)]
fn parse_ipv4(pkt: &Packet, off: usize) -> Result<L3, Counter> {
    let h: [u8; 20] = pkt.read(off, Counter::XdpPassTruncated)?;
    if h[0] >> 4 != 4 {
        return Err(Counter::XdpPassMalformed);
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(Counter::XdpPassMalformed);
    }
    let total = usize::from(be16(h[2], h[3]));
    if total < ihl {
        return Err(Counter::XdpPassMalformed);
    }
    let frag = be16(h[6], h[7]);
    let proto = h[9];
    Ok(L3 {
        src: v4_mapped([h[12], h[13], h[14], h[15]]),
        dst: v4_mapped([h[16], h[17], h[18], h[19]]),
        version: 4,
        proto,
        l4_off: off + ihl,
        l4_len: total - ihl,
        later_fragment: frag & 0x1fff != 0,
    })
}

#[inline(always)]
fn parse_ipv6(pkt: &Packet, off: usize) -> Result<L3, Counter> {
    let fixed: [u8; 8] = pkt.read(off, Counter::XdpPassTruncated)?;
    if fixed[0] >> 4 != 6 {
        return Err(Counter::XdpPassMalformed);
    }
    let payload_len = usize::from(be16(fixed[4], fixed[5]));
    let mut next = fixed[6];
    let src: [u8; 16] = pkt.read(off + 8, Counter::XdpPassTruncated)?;
    let dst: [u8; 16] = pkt.read(off + 24, Counter::XdpPassTruncated)?;
    let mut l4_off = off + 40;
    let mut later_fragment = false;
    let mut done = false;
    // One turn per extension header plus one to reach the upper-layer header.
    for _ in 0..=MAX_IPV6_EXT_HDRS {
        match next {
            IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS => {
                let ext: [u8; 2] = pkt.read(l4_off, Counter::XdpPassTruncated)?;
                next = ext[0];
                l4_off += (usize::from(ext[1]) + 1) * 8;
            }
            IPV6_FRAGMENT => {
                let frag: [u8; 8] = pkt.read(l4_off, Counter::XdpPassTruncated)?;
                later_fragment = be16(frag[2], frag[3]) & 0xfff8 != 0;
                next = frag[0];
                l4_off += 8;
            }
            _ => {
                done = true;
                break;
            }
        }
    }
    if !done {
        return Err(Counter::XdpPassExtHdrLimit);
    }
    let ext_len = l4_off - (off + 40);
    if payload_len < ext_len {
        return Err(Counter::XdpPassMalformed);
    }
    Ok(L3 {
        src,
        dst,
        version: 6,
        proto: next,
        l4_off,
        l4_len: payload_len - ext_len,
        later_fragment,
    })
}

/// What the TCP parser found.
pub struct Tcp {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags byte (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR).
    pub flags: u8,
    /// Offset of the payload from the start of the frame.
    pub payload_off: usize,
    /// True payload length, from the IP header.
    pub payload_len: usize,
}

/// Parses the TCP header at `l3.l4_off`.
#[inline(always)]
pub fn parse_tcp(pkt: &Packet, l3: &L3) -> Result<Tcp, Counter> {
    let off = l3.l4_off;
    let h: [u8; 20] = pkt.read(off, Counter::XdpPassTruncatedL4)?;
    let sport = be16(h[0], h[1]);
    let dport = be16(h[2], h[3]);
    let seq = be32([h[4], h[5], h[6], h[7]]);
    let ack = be32([h[8], h[9], h[10], h[11]]);
    let doff = usize::from(h[12] >> 4) * 4;
    let flags = h[13];
    if doff < 20 || doff > l3.l4_len {
        return Err(Counter::XdpPassTruncatedL4);
    }
    Ok(Tcp {
        sport,
        dport,
        seq,
        ack,
        flags,
        payload_off: off + doff,
        payload_len: l3.l4_len - doff,
    })
}

/// Checks that a UDP header is present.
#[inline(always)]
pub fn check_udp(pkt: &Packet, l3: &L3) -> Result<(), Counter> {
    pkt.read::<8>(l3.l4_off, Counter::XdpPassTruncatedL4)?;
    Ok(())
}
