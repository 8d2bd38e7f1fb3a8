//! Bounds-checked packet parsing shared by the XDP and TC programs.
//!
//! Both program types expose the packet as a `[data, data_end)` window, so one parser serves
//! both. Every read goes through [`Packet::get`] (or [`Packet::load`], which names the failure),
//! the single place that proves to the verifier that an access stays inside the packet. Loops
//! are bounded by constants. A failure returns the [`Counter`] that names why, and the caller
//! lets the packet pass.
//!
//! Headers are read as `#[repr(C)]` structs with their fields in network byte order, and
//! addresses go straight into 8-byte aligned map keys ([`AddrKey`]): the eBPF object is built
//! with misaligned loads enabled (see `build.rs`), so a field costs one load, while everything
//! kept on the stack stays aligned, as the verifier requires.

use core::mem::size_of;

use sensor_common::{Addr, Counter, FlowKey, MAX_SYN_OPTIONS, SynOptions, syn_flags};

const ETH_HLEN: usize = 14;
/// `EtherType` of IPv4.
pub const ETH_P_IP: u16 = 0x0800;
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

/// An address as the kernel maps key it: the 16 bytes of [`Addr`] (IPv4 mapped into IPv6),
/// held as two words so that the key is 8-byte aligned on the stack and built with two stores.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct AddrKey {
    /// The address bytes, in memory order.
    pub words: [u64; 2],
}

const _: () = assert!(size_of::<AddrKey>() == size_of::<Addr>());

impl AddrKey {
    /// The IPv4-mapped key of an IPv4 address loaded from the packet as a native-endian word
    /// (its bytes in network order in memory).
    #[inline(always)]
    pub fn v4(raw: u32) -> Self {
        // Bytes 8..16 of `::ffff:a.b.c.d` are `00 00 ff ff a b c d`; read as a little-endian
        // word that is 0xffff << 16 with the raw address in the high half.
        Self {
            words: [0, (u64::from(raw) << 32) | 0xffff_0000],
        }
    }

    /// The key as the shared [`Addr`] byte array.
    #[inline(always)]
    pub fn addr(&self) -> Addr {
        // SAFETY: same size, and every byte pattern is a valid `[u8; 16]`.
        unsafe { core::mem::transmute::<[u64; 2], Addr>(self.words) }
    }
}

/// The key of a `FLOW_BLOCKS` lookup: the layout of [`FlowKey`] (addresses as [`AddrKey`]
/// words, ports in host byte order as [`Tcp`] holds them), 8-byte aligned on the stack.
#[repr(C, align(8))]
pub struct FlowLookup {
    src: [u64; 2],
    dst: [u64; 2],
    sport: u16,
    dport: u16,
    zero: u32,
}

const _: () = assert!(size_of::<FlowLookup>() == size_of::<FlowKey>());
const _: () =
    assert!(core::mem::offset_of!(FlowLookup, dst) == core::mem::offset_of!(FlowKey, dst));
const _: () =
    assert!(core::mem::offset_of!(FlowLookup, sport) == core::mem::offset_of!(FlowKey, sport));
const _: () =
    assert!(core::mem::offset_of!(FlowLookup, dport) == core::mem::offset_of!(FlowKey, dport));

impl FlowLookup {
    /// The key of the connection a TCP segment belongs to, client (its source) to server.
    #[inline(always)]
    pub fn new(l3: &L3, tcp: &Tcp) -> Self {
        Self {
            src: l3.src.words,
            dst: l3.dst.words,
            sport: tcp.sport,
            dport: tcp.dport,
            zero: 0,
        }
    }

    /// The key of the connection a TCP segment from the server (its source) to the client
    /// belongs to: [`FlowLookup::new`] of the client's segments.
    #[inline(always)]
    pub fn reply(l3: &L3, tcp: &Tcp) -> Self {
        Self {
            src: l3.dst.words,
            dst: l3.src.words,
            sport: tcp.dport,
            dport: tcp.sport,
            zero: 0,
        }
    }
}

/// The key of an IPv4 LPM trie lookup for a full address (`prefix_len` 32): the layout of
/// `Key<u32>`, 8-byte aligned on the stack.
#[repr(C, align(8))]
pub struct LpmLookupV4 {
    prefix_len: u32,
    addr: u32,
}

impl LpmLookupV4 {
    /// A lookup key for the IPv4 address `raw` (network byte order in memory).
    #[inline(always)]
    pub fn new(raw: u32) -> Self {
        Self {
            prefix_len: 32,
            addr: raw,
        }
    }

    /// Pointer to the 8 key bytes.
    #[inline(always)]
    pub fn key_ptr(&self) -> *const u8 {
        (&raw const self.prefix_len).cast()
    }
}

/// The key of an IPv6 (or IPv4-mapped) LPM trie lookup for a full address (`prefix_len` 128),
/// laid out so that the address words are 8-byte aligned: the kernel reads the 20 key bytes
/// from `prefix_len` on.
#[repr(C, align(8))]
pub struct LpmLookup {
    _pad: u32,
    prefix_len: u32,
    addr: [u64; 2],
}

impl LpmLookup {
    /// A lookup key for `addr`.
    #[inline(always)]
    pub fn new(addr: &AddrKey) -> Self {
        Self {
            _pad: 0,
            prefix_len: 128,
            addr: addr.words,
        }
    }

    /// Pointer to the key bytes (`prefix_len` followed by the address), as the map expects.
    #[inline(always)]
    pub fn key_ptr(&self) -> *const u8 {
        (&raw const self.prefix_len).cast()
    }
}

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

    /// Reads the `T` at `offset`, or returns `Err(on_short)` if it does not fit in the window.
    /// Each header is read through one checked pointer, so the compiler cannot re-derive a
    /// field's address from a register the verifier has not range-checked.
    #[inline(always)]
    fn load<T: Copy>(&self, offset: usize, on_short: Counter) -> Result<T, Counter> {
        self.get(offset).ok_or(on_short)
    }

    /// Reads the `T` at `offset`, or `None` if it does not fit in the window: [`Packet::load`]
    /// for reads whose failure needs no reason.
    #[inline(always)]
    fn get<T: Copy>(&self, offset: usize) -> Option<T> {
        let p = self.start + offset;
        if p + size_of::<T>() > self.end {
            return None;
        }
        // SAFETY: the bounds were checked just above; the read tolerates any alignment.
        Some(unsafe { (p as *const T).read_unaligned() })
    }
}

/// The IPv4 header without options; multi-byte fields in network order.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv4Hdr {
    version_ihl: u8,
    tos: u8,
    total_len: u16,
    id: u16,
    frag_off: u16,
    ttl: u8,
    proto: u8,
    check: u16,
    saddr: u32,
    daddr: u32,
}

/// The fixed IPv6 header; multi-byte fields in network order.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv6Hdr {
    version_class_flow: u32,
    payload_len: u16,
    next: u8,
    hop_limit: u8,
    saddr: [u64; 2],
    daddr: [u64; 2],
}

/// The TCP header without options; multi-byte fields in network order.
#[repr(C)]
#[derive(Clone, Copy)]
struct TcpHdr {
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    data_off: u8,
    flags: u8,
    window: u16,
    check: u16,
    urgent: u16,
}

const _: () = assert!(size_of::<Ipv4Hdr>() == 20);
const _: () = assert!(size_of::<Ipv6Hdr>() == 40);
const _: () = assert!(size_of::<TcpHdr>() == 20);

/// What the L3 parser found.
pub struct L3 {
    /// Source address.
    pub src: AddrKey,
    /// Destination address.
    pub dst: AddrKey,
    /// Offset of the L4 header from the start of the frame.
    pub l4_off: usize,
    /// Bytes of L4 header plus payload according to the IP header (not the frame, which may be
    /// padded).
    pub l4_len: usize,
    /// 4 or 6.
    pub version: u8,
    /// Upper-layer protocol after extension headers.
    pub proto: u8,
    /// True for a fragment other than the first: there is no L4 header to read.
    pub later_fragment: bool,
}

/// Skips Ethernet and up to two VLAN tags. Returns the `EtherType` and the L3 offset.
#[inline(always)]
pub fn parse_eth(pkt: &Packet) -> Result<(u16, usize), Counter> {
    let mut proto = u16::from_be(pkt.load::<u16>(ETH_HLEN - 2, Counter::XdpPassTruncated)?);
    let mut off = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        // The tag's TCI comes first, the encapsulated EtherType after it.
        proto = u16::from_be(pkt.load::<u16>(off + 2, Counter::XdpPassTruncated)?);
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

/// A packet's source address, as the block maps of its family key it.
#[derive(Clone, Copy)]
pub enum Source {
    /// An IPv4 address as loaded from the packet (network byte order in memory).
    V4(u32),
    /// An IPv6 address.
    V6(AddrKey),
}

impl Source {
    /// The key of this address in the maps that hold both families.
    #[inline(always)]
    pub fn key(&self) -> AddrKey {
        match self {
            Self::V4(raw) => AddrKey::v4(*raw),
            Self::V6(k) => *k,
        }
    }
}

/// Reads only the source address of the IP packet at `off`, after the checks [`parse_l3`]
/// makes of the fixed header (length, version, header length). It serves the drop path, which
/// needs nothing else: the full parse is left to packets that pass, so that no other header
/// field is held, across the block lookups, by a drop that never reads it.
#[inline(always)]
pub fn parse_source(pkt: &Packet, ethertype: u16, off: usize) -> Result<Source, Counter> {
    match ethertype {
        ETH_P_IP => {
            let h: Ipv4Hdr = pkt.load(off, Counter::XdpPassTruncated)?;
            check_ipv4(&h)?;
            Ok(Source::V4(h.saddr))
        }
        ETH_P_IPV6 => {
            let h: Ipv6Hdr = pkt.load(off, Counter::XdpPassTruncated)?;
            check_ipv6(&h)?;
            Ok(Source::V6(AddrKey { words: h.saddr }))
        }
        _ => Err(Counter::XdpPassNotIp),
    }
}

/// Checks the fixed IPv4 header; returns its length and the total length.
#[inline(always)]
fn check_ipv4(h: &Ipv4Hdr) -> Result<(usize, usize), Counter> {
    if h.version_ihl >> 4 != 4 {
        return Err(Counter::XdpPassMalformed);
    }
    let ihl = usize::from(h.version_ihl & 0x0f) * 4;
    if ihl < 20 {
        return Err(Counter::XdpPassMalformed);
    }
    let total = usize::from(u16::from_be(h.total_len));
    if total < ihl {
        return Err(Counter::XdpPassMalformed);
    }
    Ok((ihl, total))
}

/// Checks the fixed IPv6 header's version.
#[inline(always)]
fn check_ipv6(h: &Ipv6Hdr) -> Result<(), Counter> {
    if u32::from_be(h.version_class_flow) >> 28 != 6 {
        return Err(Counter::XdpPassMalformed);
    }
    Ok(())
}

#[inline(always)]
fn parse_ipv4(pkt: &Packet, off: usize) -> Result<L3, Counter> {
    let h: Ipv4Hdr = pkt.load(off, Counter::XdpPassTruncated)?;
    let (ihl, total) = check_ipv4(&h)?;
    Ok(L3 {
        src: AddrKey::v4(h.saddr),
        dst: AddrKey::v4(h.daddr),
        l4_off: off + ihl,
        l4_len: total - ihl,
        version: 4,
        proto: h.proto,
        later_fragment: u16::from_be(h.frag_off) & 0x1fff != 0,
    })
}

#[inline(always)]
fn parse_ipv6(pkt: &Packet, off: usize) -> Result<L3, Counter> {
    let h: Ipv6Hdr = pkt.load(off, Counter::XdpPassTruncated)?;
    check_ipv6(&h)?;
    let payload_len = usize::from(u16::from_be(h.payload_len));
    let mut next = h.next;
    let mut l4_off = off + size_of::<Ipv6Hdr>();
    let mut later_fragment = false;
    let mut done = false;
    // One turn per extension header plus one to reach the upper-layer header.
    for _ in 0..=MAX_IPV6_EXT_HDRS {
        match next {
            IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS => {
                // Next header, then the length in 8-octet units not counting the first.
                let ext: [u8; 2] = pkt.load(l4_off, Counter::XdpPassTruncated)?;
                next = ext[0];
                l4_off += (usize::from(ext[1]) + 1) * 8;
            }
            IPV6_FRAGMENT => {
                // Next header, reserved, then offset and flags.
                let frag: [u16; 2] = pkt.load(l4_off, Counter::XdpPassTruncated)?;
                later_fragment = u16::from_be(frag[1]) & 0xfff8 != 0;
                next = frag[0].to_ne_bytes()[0];
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
    let ext_len = l4_off - (off + size_of::<Ipv6Hdr>());
    if payload_len < ext_len {
        return Err(Counter::XdpPassMalformed);
    }
    Ok(L3 {
        src: AddrKey { words: h.saddr },
        dst: AddrKey { words: h.daddr },
        l4_off,
        l4_len: payload_len - ext_len,
        version: 6,
        proto: next,
        later_fragment,
    })
}

/// What the TCP parser found.
pub struct Tcp {
    /// Offset of the payload from the start of the frame.
    pub payload_off: usize,
    /// True payload length, from the IP header.
    pub payload_len: usize,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Flags byte (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR).
    pub flags: u8,
}

/// Parses the TCP header at `l3.l4_off`.
#[inline(always)]
pub fn parse_tcp(pkt: &Packet, l3: &L3) -> Result<Tcp, Counter> {
    let off = l3.l4_off;
    let h: TcpHdr = pkt.load(off, Counter::XdpPassTruncatedL4)?;
    let doff = usize::from(h.data_off >> 4) * 4;
    if doff < 20 || doff > l3.l4_len {
        return Err(Counter::XdpPassTruncatedL4);
    }
    Ok(Tcp {
        payload_off: off + doff,
        payload_len: l3.l4_len - doff,
        seq: u32::from_be(h.seq),
        ack: u32::from_be(h.ack),
        sport: u16::from_be(h.sport),
        dport: u16::from_be(h.dport),
        flags: h.flags,
    })
}

/// Most option bytes a TCP header holds (a data offset of 15 words).
pub const MAX_TCP_OPTION_BYTES: usize = 40;

/// Where a SYN's TCP options are (`parse::syn_header`): the TTL or hop limit, the window, and
/// the offset and length of the option bytes.
pub struct SynHeader {
    /// The IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// The window, host order.
    pub window: u16,
    /// Offset of the first option byte.
    pub opt_off: usize,
    /// Option bytes (at most [`MAX_TCP_OPTION_BYTES`]).
    pub opt_len: usize,
}

/// Reads the TCP header at `l4_off` of a SYN whose TTL or hop limit is `ttl`. `None` if the
/// header is not in the window.
#[inline(always)]
pub fn syn_header(pkt: &Packet, ttl: u8, l4_off: usize) -> Option<SynHeader> {
    let h: TcpHdr = pkt.get(l4_off)?;
    let doff = usize::from(h.data_off >> 4) * 4;
    Some(SynHeader {
        ttl,
        window: u16::from_be(h.window),
        opt_off: l4_off + size_of::<TcpHdr>(),
        opt_len: doff.saturating_sub(size_of::<TcpHdr>()),
    })
}

/// Hides a value from the optimiser (see `emit::opaque`), so that the mask after it stays and
/// is applied to the register the verifier then tracks.
#[inline(always)]
fn opaque_usize(mut v: usize) -> usize {
    // SAFETY: an empty asm block that only claims to modify `v`.
    unsafe { core::arch::asm!("{0} = {0}", inout(reg) v) };
    v
}

/// Walks the TCP options of a SYN, copied to `opts` (`copied` bytes of the header's `opt_len`:
/// fewer when the frame ends inside the header), into its [`SynOptions`].
///
/// The walk reads a copy in a map value, not the packet, so the verifier checks no packet pointer in the loop (read from the packet, byte
/// by byte, LLVM merged the bounds checks into a form it rejected), at a position kept in
/// `0..64`, so that `at + 3` stays inside the 128-byte copy. At most 40 steps, each
/// consuming at least one byte. A length below 2 or past the options, or an option past the
/// copied bytes, ends the walk with `MALFORMED`; EOL ends it. The result goes to `out`. `sensor-user`'s
/// `http::transport::read_syn` is the same walk for the replay.
#[inline(always)]
pub fn syn_options(hdr: &SynHeader, opts: &[u8; 128], copied: usize, out: &mut SynOptions) {
    let opt_len = hdr.opt_len.min(MAX_TCP_OPTION_BYTES);
    let avail = copied.min(opt_len);
    let mut flags = syn_flags::PARSED;
    let mut mss = 0u16;
    let mut wscale = 0u8;
    let mut count = 0u64;
    let mut lo = 0u64;
    let mut hi = 0u64;
    let mut next = 0usize;
    for _ in 0..MAX_TCP_OPTION_BYTES {
        // Opaque and masked, so that the verifier sees the position in 0..64 on every path
        // (LLVM drops a mask it can prove idle) and `at + 3` inside the 128-byte copy.
        let at = opaque_usize(next) & 63;
        if at >= opt_len {
            break;
        }
        if at >= avail {
            flags |= syn_flags::MALFORMED;
            break;
        }
        let kind = opts[at];
        if count < 8 {
            lo |= u64::from(kind) << (count * 8);
            count += 1;
        } else if count < MAX_SYN_OPTIONS as u64 {
            hi |= u64::from(kind) << ((count - 8) * 8);
            count += 1;
        } else {
            flags |= syn_flags::MORE;
        }
        if kind == 0 {
            break;
        }
        if kind == 1 {
            next = at + 1;
            continue;
        }
        if at + 1 >= avail {
            flags |= syn_flags::MALFORMED;
            break;
        }
        let len = usize::from(opts[at + 1]);
        if len < 2 || at + len > opt_len {
            flags |= syn_flags::MALFORMED;
            break;
        }
        if at + len > avail {
            flags |= syn_flags::MALFORMED;
            break;
        }
        if kind == 2 && len == 4 {
            mss = u16::from_be_bytes([opts[at + 2], opts[at + 3]]);
            flags |= syn_flags::MSS;
        } else if kind == 3 && len == 3 {
            wscale = opts[at + 2];
            flags |= syn_flags::WSCALE;
        } else if kind == 8 {
            flags |= syn_flags::TIMESTAMP;
        }
        next = at + len;
    }
    // Written field by field into the map value: a struct built on the stack first pushed the
    // program's deepest call chain past the verifier's 512 bytes of stack.
    out.window = hdr.window;
    out.mss = mss;
    out.ttl = hdr.ttl;
    out.wscale = wscale;
    out.flags = flags;
    out.option_count = count as u8;
    let lo = lo.to_le_bytes();
    let hi = hi.to_le_bytes();
    out.kinds = [
        lo[0], lo[1], lo[2], lo[3], lo[4], lo[5], lo[6], lo[7], hi[0], hi[1],
    ];
    out.reserved = [0; 6];
}

/// Checks that a UDP header is present.
#[inline(always)]
pub fn check_udp(pkt: &Packet, l3: &L3) -> Result<(), Counter> {
    pkt.load::<[u64; 1]>(l3.l4_off, Counter::XdpPassTruncatedL4)?;
    Ok(())
}

// PROXY protocol headers (HAProxy's `proxy-protocol.txt`). Header bytes are compared as
// little-endian words: each load is converted with `from_le`, a no-op on `bpfel`.

/// The first four bytes of a PROXY protocol v1 header (`PROX`), as a little-endian word.
const PROXY_V1_WORD: u32 = u32::from_le_bytes(*b"PROX");
/// The first four bytes of the PROXY protocol v2 signature (`\r\n\r\n`), likewise.
const PROXY_V2_WORD: u32 = u32::from_le_bytes([0x0D, 0x0A, 0x0D, 0x0A]);
/// Bytes 0..8 of the v2 signature, likewise.
const PROXY_V2_SIG_LO: u64 = u64::from_le_bytes([0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51]);
/// Bytes 8..12 of the v2 signature, likewise.
const PROXY_V2_SIG_HI: u32 = u32::from_le_bytes([0x55, 0x49, 0x54, 0x0A]);
/// v2 version and command byte: version 2, command `PROXY` (`LOCAL`, 0x20, names no client).
const PROXY_V2_CMD_PROXY: u8 = 0x21;
/// v2 family and transport byte: TCP over IPv4.
const PROXY_V2_TCP4: u8 = 0x11;
/// v2 family and transport byte: TCP over IPv6.
const PROXY_V2_TCP6: u8 = 0x21;
/// v2 address block of TCP over IPv4 (source, destination, ports), which the length must cover.
const PROXY_V2_TCP4_LEN: u16 = 12;
/// v2 address block of TCP over IPv6.
const PROXY_V2_TCP6_LEN: u16 = 36;
/// Bytes 0..8 of a v1 `PROXY TCP4 ` line, as a little-endian word.
const PROXY_V1_TCP4_LO: u64 = u64::from_le_bytes(*b"PROXY TC");
/// Bytes 8..11 of it (`P4 `), the low three bytes of a little-endian word.
const PROXY_V1_TCP4_HI: u32 = u32::from_le_bytes(*b"P4 \0");
/// Where a v1 `TCP4` source address starts.
const PROXY_V1_ADDR_OFF: usize = 11;
/// Bytes of a v1 source address read: the longest dotted quad (15) and the space after it.
const PROXY_V1_ADDR_WINDOW: usize = 16;

/// The fixed 16 bytes of a PROXY protocol v2 header; the length in network order.
#[repr(C)]
#[derive(Clone, Copy)]
struct ProxyV2Hdr {
    sig_lo: u64,
    sig_hi: u32,
    ver_cmd: u8,
    family: u8,
    len: u16,
}

const _: () = assert!(size_of::<ProxyV2Hdr>() == 16);

/// Payload bytes that the shortest header [`proxy_source`] reads takes: a v2 fixed header and
/// its IPv4 source address. A v1 `TCP4` source takes 27, a v2 IPv6 one 32.
const PROXY_MIN_LEN: usize = size_of::<ProxyV2Hdr>() + 4;

/// Whether the payload at `off` may start a PROXY protocol header: its first four bytes are
/// `PROX` (v1) or `\r\n\r\n` (v2). One bounds check, one load and two compares: all that a
/// payload that is no PROXY header costs. False when the four bytes are not in the window.
#[inline(always)]
pub fn may_start_proxy_header(pkt: &Packet, off: usize) -> bool {
    pkt.get::<u32>(off)
        .is_some_and(|w| u32::from_le(w) == PROXY_V1_WORD || u32::from_le(w) == PROXY_V2_WORD)
}

/// The client that a PROXY protocol header at the start of a TCP payload (at `off`, `len`
/// bytes long by the IP header) names: v2 `PROXY` over TCP and IPv4 or IPv6 (an IPv4-mapped
/// source is the IPv4 client, as user space canonicalises it), and v1 `TCP4`. `None` for
/// anything else: no header, v2 `LOCAL`, other v2 families, v1 `TCP6` (textual IPv6 is left to
/// user space) and `UNKNOWN`, and every malformed or cut header. Every byte read is inside the
/// window and inside the payload's `len`; only the fields up to the source address are read.
///
/// A proxy sends its header at once (the specification requires it, so that a receiver gets it
/// whole from one read), so a header that does not fit in the segment is no header here.
#[inline(always)]
pub fn proxy_source(pkt: &Packet, off: usize, len: usize) -> Option<Source> {
    if len < PROXY_MIN_LEN {
        return None;
    }
    let h: ProxyV2Hdr = pkt.get(off)?;
    let (lo, hi) = (u64::from_le(h.sig_lo), u32::from_le(h.sig_hi));
    if lo == PROXY_V2_SIG_LO && hi == PROXY_V2_SIG_HI {
        return proxy_v2_source(pkt, off, len, &h);
    }
    if lo != PROXY_V1_TCP4_LO
        || hi & 0x00ff_ffff != PROXY_V1_TCP4_HI
        || len < PROXY_V1_ADDR_OFF + PROXY_V1_ADDR_WINDOW
    {
        return None;
    }
    let a: [u64; 2] = pkt.get(off + PROXY_V1_ADDR_OFF)?;
    let addr = dotted_quad(u64::from_le(a[0]), u64::from_le(a[1]))?;
    // The address as loaded from a packet: its bytes in network order in memory.
    Some(Source::V4(addr.to_be()))
}

/// The source address of the v2 header `h` (signature checked) at `off`.
#[inline(always)]
fn proxy_v2_source(pkt: &Packet, off: usize, len: usize, h: &ProxyV2Hdr) -> Option<Source> {
    if h.ver_cmd != PROXY_V2_CMD_PROXY {
        return None;
    }
    let body = u16::from_be(h.len);
    let src = off + size_of::<ProxyV2Hdr>();
    match h.family {
        PROXY_V2_TCP4 if body >= PROXY_V2_TCP4_LEN => Some(Source::V4(pkt.get(src)?)),
        PROXY_V2_TCP6 if body >= PROXY_V2_TCP6_LEN && len >= size_of::<ProxyV2Hdr>() + 16 => {
            let words: [u64; 2] = pkt.get(src)?;
            // `::ffff:a.b.c.d`: the high half of the second word is the IPv4 address as
            // loaded (see `AddrKey::v4`).
            let mapped = AddrKey::v4(0).words;
            if words[0] == mapped[0] && words[1] as u32 == mapped[1] as u32 {
                return Some(Source::V4((words[1] >> 32) as u32));
            }
            Some(Source::V6(AddrKey { words }))
        }
        _ => None,
    }
}

/// The IPv4 address, as a host-order number, of a v1 dotted quad followed by a space at the
/// start of the 16 bytes `lo` (bytes 0..8, the first in the low byte) and `hi` (bytes 8..16).
/// Rejects what user space's parser (`Ipv4Addr::from_str`) rejects: an octet above 255, an
/// empty one, a leading zero (`01`), fewer or more than four octets, any other byte, and no
/// space within the 16 bytes. Without leading zeros an octet of more than three digits is above
/// 255, so the digit count needs no test of its own. The bytes are shifted out of the two
/// registers, one per turn of a loop of constant bound: no byte array on the stack.
#[inline(always)]
fn dotted_quad(mut lo: u64, mut hi: u64) -> Option<u32> {
    let mut addr = 0u32;
    let mut octet = 0u32;
    let mut digits = 0u32;
    let mut dots = 0u32;
    for _ in 0..PROXY_V1_ADDR_WINDOW {
        let c = lo as u8;
        lo = (lo >> 8) | (hi << 56);
        hi >>= 8;
        match c {
            b'0'..=b'9' => {
                if digits != 0 && octet == 0 {
                    return None;
                }
                octet = octet * 10 + u32::from(c - b'0');
                if octet > 255 {
                    return None;
                }
                digits += 1;
            }
            b'.' | b' ' => {
                if digits == 0 {
                    return None;
                }
                addr = (addr << 8) | octet;
                if c == b' ' {
                    return (dots == 3).then_some(addr);
                }
                if dots == 3 {
                    return None;
                }
                dots += 1;
                octet = 0;
                digits = 0;
            }
            _ => return None,
        }
    }
    None
}
