//! Types and constants shared by the kernel programs (`sensor-ebpf`) and user space
//! (`sensor-user`).
//!
//! Every type here is `#[repr(C)]`, has no implicit padding (checked by a `size_of` assertion
//! beside it) and holds no `bool`: a padded map key silently misses lookups, and a padded event
//! leaks stack bytes. Multi-byte numbers are in host byte order unless a field name ends in
//! `_be`. Addresses in events and in the per-source and allowlist maps are 16 bytes: IPv4 is
//! stored IPv4-mapped (`::ffff:a.b.c.d`), so one key format serves both families. The block
//! maps, on the drop path, come in one map per family instead: IPv4 keys are the 4 address
//! bytes ([`V4Addr`]), which hash and compare in a fraction of the time of 16-byte keys.
#![no_std]

use core::mem::size_of;

/// A source or destination address: IPv6, or IPv4 mapped into `::ffff:0:0/96`.
pub type Addr = [u8; 16];

/// An IPv4 address as the IPv4 block maps key it: its four bytes in network order.
pub type V4Addr = [u8; 4];

/// Number of leading bits that the IPv4-mapped prefix `::ffff:0:0/96` adds to an IPv4 prefix
/// length in the LPM tries.
pub const V4_MAPPED_PREFIX_BITS: u32 = 96;

/// Maps an IPv4 address, given as its four bytes in network order, to an [`Addr`].
#[inline(always)]
pub const fn v4_mapped(octets: [u8; 4]) -> Addr {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, octets[0], octets[1], octets[2], octets[3],
    ]
}

/// Returns true if `addr` is an IPv4-mapped address.
#[inline(always)]
pub const fn is_v4_mapped(addr: &Addr) -> bool {
    let mut i = 0;
    while i < 10 {
        if addr[i] != 0 {
            return false;
        }
        i += 1;
    }
    addr[10] == 0xff && addr[11] == 0xff
}

/// Names of the maps, as the loader finds them in the object and pins them.
pub mod map_names {
    /// Exact IPv4 blocks that found no slot in [`BLOCK_TABLE_V4`] ([`super::BlockValue`] by
    /// [`super::V4Addr`]).
    pub const BLOCK_EXACT_V4: &str = "BLOCK_EXACT_V4";
    /// IPv4 blocks, exact and prefix, open-addressed: an array of [`super::BlockSlotV4`] (see
    /// [`super::block_table`]). [`BLOCK_EXACT_V4`] and [`BLOCK_PREFIX_V4`] take the blocks that
    /// find no slot.
    pub const BLOCK_TABLE_V4: &str = "BLOCK_TABLE_V4";
    /// Exact IPv6 blocks ([`super::BlockValue`] by [`super::Addr`]).
    pub const BLOCK_EXACT_V6: &str = "BLOCK_EXACT_V6";
    /// IPv4 prefix blocks that found no slot in [`BLOCK_TABLE_V4`] (LPM trie of
    /// [`super::V4Addr`] to [`super::BlockValue`]).
    pub const BLOCK_PREFIX_V4: &str = "BLOCK_PREFIX_V4";
    /// IPv6 prefix blocks (LPM trie of [`super::Addr`] to [`super::BlockValue`]).
    pub const BLOCK_PREFIX_V6: &str = "BLOCK_PREFIX_V6";
    /// Allowlist (LPM trie of [`super::Addr`] to [`super::AllowValue`]).
    pub const ALLOW: &str = "ALLOW";
    /// Per-source counters (LRU hash of [`super::Addr`] to [`super::SourceStats`]).
    pub const SOURCES: &str = "SOURCES";
    /// Per-CPU action and event counters, indexed by [`super::Counter`].
    pub const STATS: &str = "STATS";
    /// One [`super::SensorConfig`] at index 0.
    pub const CONFIG: &str = "CONFIG";
    /// Monitored TCP ports: a `u8` per port number, non-zero when monitored.
    pub const PORTS: &str = "PORTS";
    /// Ring buffer of ingress (client to server) events from XDP.
    pub const REQ_EVENTS: &str = "REQ_EVENTS";
    /// Ring buffer of egress (server to client) events from TC.
    pub const RESP_EVENTS: &str = "RESP_EVENTS";
    /// Verdict notes ([`super::VerdictNote`] by verdict id), user space only.
    pub const VERDICT_NOTES: &str = "VERDICT_NOTES";
    /// One [`super::MapsInUse`]: which enforcement maps have entries.
    pub const MAPS_IN_USE: &str = "MAPS_IN_USE";
    /// Flow blocks: one TCP connection each ([`super::BlockValue`] by [`super::FlowKey`]).
    pub const FLOW_BLOCKS: &str = "FLOW_BLOCKS";

    /// Maps whose pins survive an agent restart: enforcement state must outlive the agent.
    pub const PERSISTENT: [&str; 9] = [
        BLOCK_TABLE_V4,
        BLOCK_EXACT_V4,
        BLOCK_EXACT_V6,
        BLOCK_PREFIX_V4,
        BLOCK_PREFIX_V6,
        FLOW_BLOCKS,
        ALLOW,
        VERDICT_NOTES,
        MAPS_IN_USE,
    ];
    /// Every map the loader pins.
    pub const ALL: [&str; 15] = [
        BLOCK_TABLE_V4,
        BLOCK_EXACT_V4,
        BLOCK_EXACT_V6,
        BLOCK_PREFIX_V4,
        BLOCK_PREFIX_V6,
        FLOW_BLOCKS,
        ALLOW,
        SOURCES,
        STATS,
        CONFIG,
        PORTS,
        REQ_EVENTS,
        RESP_EVENTS,
        VERDICT_NOTES,
        MAPS_IN_USE,
    ];
}

/// Names of the programs in the object.
pub mod program_names {
    /// The XDP ingress program.
    pub const XDP_INGRESS: &str = "apisensor_xdp";
    /// The TC egress program.
    pub const TC_EGRESS: &str = "apisensor_tc";
}

/// The open-addressed table of IPv4 blocks, exact and prefix, `BLOCK_TABLE_V4`.
///
/// A hash-map or LPM-trie lookup is an out-of-line kernel call (hashing, a bucket or node walk,
/// `memcmp`), which costs more than the rest of the drop path on machines with return-thunk
/// mitigations; an array lookup is inlined by the verifier. So IPv4 blocks live in an array of
/// [`BlockSlotV4`], each keyed by its network and prefix length and placed by linear probing
/// from [`slot_of`]. Longest-prefix match probes one key per prefix length in use, longest
/// first (the lengths are a bitmap in `MapsInUse`), at most [`MAX_PROBE`] slots each. A block that
/// finds no free slot within its window goes to the `BLOCK_EXACT_V4` hash or the
/// `BLOCK_PREFIX_V4` trie instead, which XDP consults only while they have entries. The
/// multiplier is random and secret per table, so an attacker cannot choose addresses that pile
/// up in one probe window.
///
/// Only `verdict.rs` writes the table, through a shared memory mapping (the array is
/// `BPF_F_MMAPABLE`), in an order that keeps every slot XDP can see consistent: a new block is
/// written into a free slot, and only then is its `state` set to [`USED`]; a removal sets `state`
/// to [`DELETED`] (a tombstone, reused by later inserts, that does not end a probe).
pub mod block_table {
    /// Slots in the table: 2^18, enough for the exact and prefix capacities at a load that
    /// keeps probes short.
    pub const SLOTS: u32 = 1 << 18;
    /// log2 of [`SLOTS`].
    pub const SLOT_BITS: u32 = SLOTS.trailing_zeros();
    /// Slots looked at, from the home slot on, before giving up.
    pub const MAX_PROBE: u32 = 16;
    /// A slot never used: ends a probe.
    pub const EMPTY: u32 = 0;
    /// A slot holding a block.
    pub const USED: u32 = 1;
    /// A slot whose block was removed: skipped by lookups, reused by inserts.
    pub const DELETED: u32 = 2;

    const _: () = assert!(SLOTS.is_power_of_two());

    /// The network bits of a `prefix_len` (0 to 32) prefix, as a mask of an address loaded
    /// from a packet (network byte order in memory, read as a native word).
    #[inline(always)]
    pub const fn mask(prefix_len: u32) -> u32 {
        if prefix_len == 0 {
            0
        } else {
            (u32::MAX << (32 - prefix_len)).to_be()
        }
    }

    /// The home slot of the network `addr` (masked, as [`mask`] gives) of length `prefix_len`,
    /// under the table's multiplier `seed` (odd): multiply-shift hashing.
    #[inline(always)]
    pub const fn slot_of(addr: u32, prefix_len: u32, seed: u64) -> u32 {
        let key = addr as u64 | (prefix_len as u64) << 32;
        ((key ^ (seed >> 24)).wrapping_mul(seed | 1) >> (64 - SLOT_BITS)) as u32
    }
}

/// One slot of `BLOCK_TABLE_V4` (see [`block_table`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockSlotV4 {
    /// The blocked network, masked, as an address loaded from a packet (network byte order in
    /// memory).
    pub addr: u32,
    /// [`block_table::EMPTY`], [`block_table::USED`] or [`block_table::DELETED`].
    pub state: u32,
    /// Its prefix length, 0 to 32.
    pub prefix_len: u32,
    /// Zero.
    pub reserved: u32,
    /// The block.
    pub value: BlockValue,
}
const _: () = assert!(size_of::<BlockSlotV4>() == 56);

/// Default capacities of the maps, used by the kernel object; the loader may override some.
pub mod capacity {
    /// Exact blocks, per family.
    pub const BLOCK_EXACT: u32 = 65_536;
    /// Exact IPv4 blocks that found no slot in the table.
    pub const BLOCK_EXACT_V4_OVERFLOW: u32 = 8_192;
    /// Prefix blocks, per family.
    pub const BLOCK_PREFIX: u32 = 131_072;
    /// Flow blocks (TCP connections, both families).
    pub const FLOW_BLOCKS: u32 = 65_536;
    /// Allowlist entries.
    pub const ALLOW: u32 = 16_384;
    /// Tracked sources in the LRU map (configurable at load).
    pub const SOURCES: u32 = 65_536;
    /// Counter slots in `STATS`; at least [`super::Counter::COUNT`].
    pub const STATS: u32 = 32;
    /// One entry per TCP port.
    pub const PORTS: u32 = 65_536;
    /// Ingress ring buffer size in bytes (a power of two, a multiple of the page size).
    pub const REQ_RING_BYTES: u32 = 16 << 20;
    /// Egress ring buffer size in bytes.
    pub const RESP_RING_BYTES: u32 = 8 << 20;
}

/// Value of an exact or prefix block.
///
/// Written by user space (`verdict.rs` only); the kernel reads it and adds to `hits`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockValue {
    /// `CLOCK_BOOTTIME` nanoseconds after which the block no longer drops. Never zero: every
    /// block expires, so a crashed agent cannot leave a permanent block behind.
    pub expires_at_ns: u64,
    /// Identifier of the verdict that created this block (user space keeps the evidence).
    pub verdict_id: u64,
    /// Packets dropped by this entry; incremented atomically by the kernel.
    pub hits: u64,
    /// `CLOCK_BOOTTIME` nanoseconds of the latest drop (zero before the first).
    pub last_hit_ns: u64,
    /// Why the block exists, a [`Reason`] value.
    pub reason: u32,
    /// Prefix length of the blocked network (32 or 128 for a host). The IPv4 lookup compares
    /// it between the block table and the overflow trie, which does not say what matched. A
    /// flow block has 128: both of its addresses match whole, in their 16-byte form.
    pub prefix_len: u32,
}
const _: () = assert!(size_of::<BlockValue>() == 40);

/// One TCP connection as XDP sees its packets on ingress, from the client to the server: the
/// key of `FLOW_BLOCKS`. TC looks a server-to-client packet up with its addresses and ports
/// swapped, so a blocked connection's responses are dropped on egress too.
///
/// Addresses are 16 bytes, IPv4 mapped into `::ffff:0:0/96` as in the other 16-byte keys; the
/// ports are in host byte order, as the XDP parser holds them (`parse::Tcp::sport`/`dport` are
/// converted from the header once). 40 bytes, no padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowKey {
    /// The client's address: the packet's source.
    pub src: Addr,
    /// The server's address: the packet's destination.
    pub dst: Addr,
    /// The client's TCP port (the packet's source port), host byte order.
    pub sport: u16,
    /// The server's TCP port (the packet's destination port), host byte order.
    pub dport: u16,
    /// Zero.
    pub zero: u32,
}
const _: () = assert!(size_of::<FlowKey>() == 40);

/// Which enforcement maps hold entries, at index 0 of `MAPS_IN_USE`. XDP skips lookups in maps
/// marked empty (non-zero means "look up"). Written only by user space's `verdict.rs`, under its
/// writer lock, after every change, and re-derived from the maps by the agent periodically.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapsInUse {
    /// The multiplier of [`block_table::slot_of`] for `BLOCK_TABLE_V4`: random, odd, chosen
    /// once when the table is first written and kept while it has entries (pinned with it).
    pub table_seed: u64,
    /// Prefix lengths present in `BLOCK_TABLE_V4`: bit `n` set when a block of length `n`
    /// (0 to 32) is there. XDP probes only these lengths.
    pub table_lens_v4: u64,
    /// `BLOCK_EXACT_V4` has entries.
    pub exact_v4: u32,
    /// `BLOCK_EXACT_V6` has entries.
    pub exact_v6: u32,
    /// `BLOCK_PREFIX_V4` has entries.
    pub prefix_v4: u32,
    /// `BLOCK_PREFIX_V6` has entries.
    pub prefix_v6: u32,
    /// `ALLOW` has entries.
    pub allow: u32,
    /// `FLOW_BLOCKS` has entries. Zero in pins written before flow blocks existed, whose
    /// `FLOW_BLOCKS` is then created empty: the layout is unchanged.
    pub flow: u32,
}
const _: () = assert!(size_of::<MapsInUse>() == 40);

impl MapsInUse {
    /// Look everything up (used if the map cannot be read).
    pub const ALL: Self = Self {
        table_seed: 1,
        table_lens_v4: (1 << 33) - 1,
        exact_v4: 1,
        exact_v6: 1,
        prefix_v4: 1,
        prefix_v6: 1,
        allow: 1,
        flow: 1,
    };

    /// Whether any exact or prefix block map of either family may have entries (the IPv4
    /// table's lengths, the overflow maps, the IPv6 maps): one test of the OR of the flags.
    #[inline(always)]
    pub const fn address_blocks(&self) -> bool {
        self.table_lens_v4
            | (self.exact_v4 | self.exact_v6 | self.prefix_v4 | self.prefix_v6) as u64
            != 0
    }
}

/// Value of an allowlist entry: an operator's entry (permanent) or an exception the policy
/// wrote beside a prefix block to spare a source in good standing inside it (it expires with
/// the block).
///
/// 32 bytes since exceptions exist (16 before): the loader refuses an `ALLOW` pin of the older
/// layout by name, as for any persistent map whose layout changed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllowValue {
    /// `CLOCK_BOOTTIME` nanoseconds when the entry was added.
    pub added_at_ns: u64,
    /// Packets that a block would have dropped but this entry let pass.
    pub hits: u64,
    /// `CLOCK_BOOTTIME` nanoseconds after which the entry no longer allows (compared as block
    /// expiries are); zero for a permanent entry (the operator's).
    pub expires_ns: u64,
    /// The decision whose prefix block this exception pierces; zero for an operator's entry.
    pub verdict_id: u64,
}
const _: () = assert!(size_of::<AllowValue>() == 32);

impl AllowValue {
    /// Whether the entry allows at `now` (`CLOCK_BOOTTIME` ns).
    #[inline(always)]
    pub const fn allows_at(&self, now: u64) -> bool {
        self.expires_ns == 0 || self.expires_ns > now
    }
}

/// Bytes of reason text kept per verdict.
pub const NOTE_TEXT_LEN: usize = 96;

/// What user space remembers of a verdict beside the block entry: why, when, for how long.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerdictNote {
    /// `CLOCK_BOOTTIME` nanoseconds when the verdict was made.
    pub created_at_ns: u64,
    /// TTL given, in nanoseconds.
    pub ttl_ns: u64,
    /// Reason text, UTF-8, NUL-padded.
    pub text: [u8; NOTE_TEXT_LEN],
}
const _: () = assert!(size_of::<VerdictNote>() == 16 + NOTE_TEXT_LEN);

/// Why a source is blocked.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Added by an operator through the CLI.
    Manual = 1,
    /// Volumetric flood above baseline.
    Flood = 2,
    /// Credential stuffing or brute force.
    CredentialStuffing = 3,
    /// Scraping or enumeration.
    Scraping = 4,
    /// Any other detector.
    Detector = 5,
}

impl Reason {
    /// Decodes a stored reason code.
    pub const fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Manual,
            2 => Self::Flood,
            3 => Self::CredentialStuffing,
            4 => Self::Scraping,
            5 => Self::Detector,
            _ => return None,
        })
    }

    /// Short lowercase name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Flood => "flood",
            Self::CredentialStuffing => "credential-stuffing",
            Self::Scraping => "scraping",
            Self::Detector => "detector",
        }
    }
}

/// Per-source counters kept by XDP in the `SOURCES` LRU map, for packets that pass. Dropped
/// packets are counted by the block entry that dropped them (`BlockValue::hits`), which keeps
/// the drop path to one lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// IP packets seen from this source.
    pub packets: u64,
    /// Bytes of those packets (frame length).
    pub bytes: u64,
    /// TCP segments with SYN set and ACK clear.
    pub syns: u64,
    /// `CLOCK_BOOTTIME` nanoseconds of the first packet.
    pub first_seen_ns: u64,
    /// `CLOCK_BOOTTIME` nanoseconds of the latest packet.
    pub last_seen_ns: u64,
}
const _: () = assert!(size_of::<SourceStats>() == 40);

/// Run-time settings of the kernel programs, at index 0 of `CONFIG`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SensorConfig {
    /// Payload bytes copied per ingress segment, 1..=[`REQ_DATA_LEN`].
    pub req_capture_len: u32,
    /// Payload bytes copied per egress segment, 1..=[`RESP_DATA_LEN`].
    pub resp_capture_len: u32,
    /// A submit wakes the reader only once this many bytes are pending in the ring; below it,
    /// records are submitted with `BPF_RB_NO_WAKEUP` and the reader's timer drains them. Each
    /// CPU checks once per sixteenth of it reserved, and wakes once per crossing.
    pub wakeup_bytes: u32,
    /// Zero; reserved for flags.
    pub flags: u32,
}
const _: () = assert!(size_of::<SensorConfig>() == 16);

impl SensorConfig {
    /// Defaults used when the map was never written.
    pub const DEFAULT: Self = Self {
        req_capture_len: REQ_DATA_LEN as u32,
        resp_capture_len: RESP_DATA_LEN as u32,
        wakeup_bytes: 1024 * 1024,
        flags: 0,
    };
}

/// Counter slots of the `STATS` per-CPU array. Every packet increments exactly one verdict
/// counter (the `Xdp*` and `Tc*` verdicts); event counters are counted besides.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// XDP: IP packet passed, nothing to sample.
    XdpPass = 0,
    /// XDP: TCP segment to a monitored port passed (an event was emitted or its loss counted).
    XdpPassSampled = 1,
    /// XDP: a block matched but the allowlist let the packet pass.
    XdpPassAllowlisted = 2,
    /// XDP: a block matched but had expired.
    XdpPassExpired = 3,
    /// XDP: dropped by an exact block.
    XdpDropExact = 4,
    /// XDP: dropped by a prefix block.
    XdpDropPrefix = 5,
    /// XDP: not IPv4 or IPv6.
    XdpPassNotIp = 6,
    /// XDP: Ethernet, VLAN or IP header cut short.
    XdpPassTruncated = 7,
    /// XDP: IP header invalid (version, header length, total length).
    XdpPassMalformed = 8,
    /// XDP: a non-first IP fragment (no L4 header to read).
    XdpPassFragment = 9,
    /// XDP: neither TCP nor UDP.
    XdpPassOtherL4 = 10,
    /// XDP: TCP or UDP header cut short or invalid.
    XdpPassTruncatedL4 = 11,
    /// XDP: more IPv6 extension headers than the parser follows.
    XdpPassExtHdrLimit = 12,
    /// Ingress segment events submitted.
    ReqEvents = 13,
    /// Ingress SYN/FIN/RST events submitted.
    ReqControlEvents = 14,
    /// Ingress events lost because the ring was full.
    ReqRingFull = 15,
    /// Ingress submits that forced a wakeup of the reader.
    ReqWakeups = 16,
    /// New sources that could not be inserted in `SOURCES`.
    SourceInsertFailed = 17,
    /// TC: packet passed, nothing to sample.
    TcPass = 18,
    /// TC: segment from a monitored port passed (event emitted or loss counted).
    TcPassSampled = 19,
    /// TC: not IP, cut short or malformed.
    TcPassUnparsed = 20,
    /// Egress segment events submitted.
    RespEvents = 21,
    /// Egress FIN/RST events submitted.
    RespControlEvents = 22,
    /// Egress events lost because the ring was full.
    RespRingFull = 23,
    /// Egress submits that forced a wakeup of the reader.
    RespWakeups = 24,
    /// A payload copy failed (helper error); the event went out with no payload.
    CopyFailed = 25,
    /// XDP: dropped by a flow block (one TCP connection).
    XdpDropFlow = 26,
    /// XDP: a segment to a monitored port whose payload starts with a PROXY protocol header
    /// naming a client that an exact or prefix block drops, dropped.
    XdpDropProxied = 27,
    /// TC: a segment of a flow-blocked connection (server to client: its response) dropped.
    TcDropFlow = 28,
    /// XDP: a SYN on a flow-blocked connection's ports opened a new connection and removed
    /// the block (an event counter; the SYN's verdict is counted as any other's).
    FlowBlockReopened = 29,
}

impl Counter {
    /// Number of counters.
    pub const COUNT: usize = 30;
    /// Every counter, in index order.
    pub const ALL: [Self; Self::COUNT] = [
        Self::XdpPass,
        Self::XdpPassSampled,
        Self::XdpPassAllowlisted,
        Self::XdpPassExpired,
        Self::XdpDropExact,
        Self::XdpDropPrefix,
        Self::XdpPassNotIp,
        Self::XdpPassTruncated,
        Self::XdpPassMalformed,
        Self::XdpPassFragment,
        Self::XdpPassOtherL4,
        Self::XdpPassTruncatedL4,
        Self::XdpPassExtHdrLimit,
        Self::ReqEvents,
        Self::ReqControlEvents,
        Self::ReqRingFull,
        Self::ReqWakeups,
        Self::SourceInsertFailed,
        Self::TcPass,
        Self::TcPassSampled,
        Self::TcPassUnparsed,
        Self::RespEvents,
        Self::RespControlEvents,
        Self::RespRingFull,
        Self::RespWakeups,
        Self::CopyFailed,
        Self::XdpDropFlow,
        Self::XdpDropProxied,
        Self::TcDropFlow,
        Self::FlowBlockReopened,
    ];

    /// The counter whose index is `i`, if there is one. No branch per value: the kernel turns
    /// the number a BPF function returns back into a counter with it, and the verifier goes on
    /// with one state, not one per counter the number could be.
    #[inline(always)]
    pub const fn from_index(i: u32) -> Option<Self> {
        if i < Self::COUNT as u32 {
            // SAFETY: `Counter` is `repr(u32)` and its discriminants are exactly 0..COUNT (the
            // assertion below `Counter`).
            Some(unsafe { core::mem::transmute::<u32, Self>(i) })
        } else {
            None
        }
    }

    /// Stable snake-case name, used by the CLI and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Self::XdpPass => "xdp_pass",
            Self::XdpPassSampled => "xdp_pass_sampled",
            Self::XdpPassAllowlisted => "xdp_pass_allowlisted",
            Self::XdpPassExpired => "xdp_pass_expired_block",
            Self::XdpDropExact => "xdp_drop_exact_block",
            Self::XdpDropPrefix => "xdp_drop_prefix_block",
            Self::XdpPassNotIp => "xdp_pass_not_ip",
            Self::XdpPassTruncated => "xdp_pass_truncated",
            Self::XdpPassMalformed => "xdp_pass_malformed",
            Self::XdpPassFragment => "xdp_pass_fragment",
            Self::XdpPassOtherL4 => "xdp_pass_other_l4",
            Self::XdpPassTruncatedL4 => "xdp_pass_truncated_l4",
            Self::XdpPassExtHdrLimit => "xdp_pass_ext_hdr_limit",
            Self::ReqEvents => "req_events",
            Self::ReqControlEvents => "req_control_events",
            Self::ReqRingFull => "req_ring_full",
            Self::ReqWakeups => "req_wakeups",
            Self::SourceInsertFailed => "source_insert_failed",
            Self::TcPass => "tc_pass",
            Self::TcPassSampled => "tc_pass_sampled",
            Self::TcPassUnparsed => "tc_pass_unparsed",
            Self::RespEvents => "resp_events",
            Self::RespControlEvents => "resp_control_events",
            Self::RespRingFull => "resp_ring_full",
            Self::RespWakeups => "resp_wakeups",
            Self::CopyFailed => "copy_failed",
            Self::XdpDropFlow => "xdp_drop_flow_block",
            Self::XdpDropProxied => "xdp_drop_proxied_client",
            Self::TcDropFlow => "tc_drop_flow_block",
            Self::FlowBlockReopened => "flow_block_reopened",
        }
    }
}
const _: () = assert!(Counter::COUNT <= capacity::STATS as usize);
// `ALL` lists every counter once, in index order: the discriminants are exactly 0..COUNT, which
// `Counter::from_index` relies on.
const _: () = {
    let mut i = 0;
    while i < Counter::COUNT {
        assert!(Counter::ALL[i] as usize == i);
        i += 1;
    }
};

/// Kind of a ring-buffer record, the first field of every [`EventHeader`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A TCP segment with payload; the header is followed by its first bytes.
    Segment = 1,
    /// A TCP segment with SYN, FIN or RST and no payload sampled: a [`ControlEvent`].
    Control = 2,
}

/// Which way a segment travelled.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to server, seen by XDP on ingress.
    Ingress = 0,
    /// Server to client, seen by TC on egress.
    Egress = 1,
}

/// TCP flag bits as they appear in [`EventHeader::tcp_flags`].
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// Header of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    /// An [`EventKind`] value.
    pub kind: u32,
    /// Payload bytes that follow the header in this record (at most the record's data size).
    pub captured_len: u32,
    /// `bpf_ktime_get_boot_ns` when the packet was seen (`CLOCK_BOOTTIME`).
    pub ts_ns: u64,
    /// Source address of the packet.
    pub src: Addr,
    /// Destination address of the packet.
    pub dst: Addr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// TCP sequence number.
    pub seq: u32,
    /// TCP acknowledgement number.
    pub ack: u32,
    /// True TCP payload length of the segment (from the IP header), which may exceed
    /// `captured_len`: the rest is a known hole, not a loss.
    pub payload_len: u32,
    /// Interface index the packet was seen on.
    pub ifindex: u32,
    /// TCP flags (see [`tcp_flags`]).
    pub tcp_flags: u8,
    /// A [`Direction`] value.
    pub direction: u8,
    /// 4 or 6.
    pub ip_version: u8,
    /// Zero.
    pub reserved: u8,
}
const _: () = assert!(size_of::<EventHeader>() == 72);

/// Maximum payload bytes in an ingress record; a power of two so the kernel can mask lengths.
pub const REQ_DATA_LEN: usize = 2048;
/// Maximum payload bytes in an egress record; a power of two.
pub const RESP_DATA_LEN: usize = 1024;

/// The data-area size of a segment record that carries `captured` payload bytes: the smallest
/// of 256, 512, 1024 and 2048 that holds them. The kernel reserves each record in its size class
/// (`sensor-ebpf/src/emit.rs` mirrors this function, one branch per class), so a record is
/// `size_of::<EventHeader>() + data_class(captured_len)` bytes; [`RequestEvent`] and
/// [`ResponseEvent`] are the largest records of each direction.
pub const fn data_class(captured: usize) -> usize {
    if captured > 1024 {
        2048
    } else if captured > 512 {
        1024
    } else if captured > 256 {
        512
    } else {
        256
    }
}

/// Most TCP option kinds a [`SynOptions`] records, in the order they appear.
pub const MAX_SYN_OPTIONS: usize = 10;

/// Bits of [`SynOptions::flags`].
pub mod syn_flags {
    /// The record carries a client SYN's fields (a SYN without ACK seen by XDP); every other
    /// field is zero without it.
    pub const PARSED: u8 = 0x01;
    /// An MSS option (kind 2, length 4) was present; `mss` holds its value.
    pub const MSS: u8 = 0x02;
    /// A window scale option (kind 3, length 3) was present; `wscale` holds its shift.
    pub const WSCALE: u8 = 0x04;
    /// A timestamp option (kind 8) was present.
    pub const TIMESTAMP: u8 = 0x08;
    /// The options ended early: an option length below 2 or past the TCP header, or bytes past
    /// the end of the frame. The kinds read before that are kept.
    pub const MALFORMED: u8 = 0x10;
    /// More than [`super::MAX_SYN_OPTIONS`] options: the later kinds were not recorded.
    pub const MORE: u8 = 0x20;
}

/// What a client's SYN says about its TCP stack (the input of the transport fingerprint), read
/// by XDP from the IP and TCP headers and the TCP options. All zero unless
/// `flags & syn_flags::PARSED`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynOptions {
    /// The TCP window (unscaled, as on the wire).
    pub window: u16,
    /// The MSS option's value, when `flags & syn_flags::MSS`.
    pub mss: u16,
    /// The IPv4 TTL or the IPv6 hop limit.
    pub ttl: u8,
    /// The window scale option's shift, when `flags & syn_flags::WSCALE`.
    pub wscale: u8,
    /// [`syn_flags`] bits.
    pub flags: u8,
    /// How many entries of `kinds` are valid (at most [`MAX_SYN_OPTIONS`]).
    pub option_count: u8,
    /// Option kinds in order (EOL 0, NOP 1, MSS 2, window scale 3, SACK permitted 4,
    /// timestamp 8, ...).
    pub kinds: [u8; MAX_SYN_OPTIONS],
    /// Zero.
    pub reserved: [u8; 6],
}
const _: () = assert!(size_of::<SynOptions>() == 24);

/// A control record: the header (`kind` [`EventKind::Control`], `captured_len` zero) and, for a
/// client SYN, its [`SynOptions`] (zero otherwise, and in every egress record).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlEvent {
    /// Header.
    pub header: EventHeader,
    /// The SYN's fields, or zero.
    pub syn: SynOptions,
}
const _: () = assert!(size_of::<ControlEvent>() == 96);

/// The largest ingress segment record: header plus the first payload bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RequestEvent {
    /// Header; `kind` is [`EventKind::Segment`].
    pub header: EventHeader,
    /// The first `header.captured_len` bytes are payload; the rest is undefined.
    pub data: [u8; REQ_DATA_LEN],
}
const _: () = assert!(size_of::<RequestEvent>() == 72 + REQ_DATA_LEN);

/// The largest egress segment record: header plus the first payload bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ResponseEvent {
    /// Header; `kind` is [`EventKind::Segment`].
    pub header: EventHeader,
    /// The first `header.captured_len` bytes are payload; the rest is undefined.
    pub data: [u8; RESP_DATA_LEN],
}
const _: () = assert!(size_of::<ResponseEvent>() == 72 + RESP_DATA_LEN);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all these types are `#[repr(C)]`, have no padding (see the size assertions) and
    // are valid for every bit pattern.
    unsafe impl aya::Pod for super::BlockValue {}
    unsafe impl aya::Pod for super::AllowValue {}
    unsafe impl aya::Pod for super::SourceStats {}
    unsafe impl aya::Pod for super::SensorConfig {}
    unsafe impl aya::Pod for super::EventHeader {}
    unsafe impl aya::Pod for super::SynOptions {}
    unsafe impl aya::Pod for super::ControlEvent {}
    unsafe impl aya::Pod for super::VerdictNote {}
    unsafe impl aya::Pod for super::MapsInUse {}
    unsafe impl aya::Pod for super::BlockSlotV4 {}
    unsafe impl aya::Pod for super::FlowKey {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_table_is_in_index_order() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{c:?} is out of order");
        }
    }

    #[test]
    fn counter_names_are_unique() {
        for (i, a) in Counter::ALL.iter().enumerate() {
            for b in &Counter::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
    }

    #[test]
    fn v4_mapping_round_trips() {
        let a = v4_mapped([198, 51, 100, 7]);
        assert!(is_v4_mapped(&a));
        assert_eq!(&a[12..], &[198, 51, 100, 7]);
        let mut v6 = [0u8; 16];
        v6[0] = 0x20;
        v6[1] = 0x01;
        assert!(!is_v4_mapped(&v6));
    }

    #[test]
    fn reasons_round_trip() {
        for r in [
            Reason::Manual,
            Reason::Flood,
            Reason::CredentialStuffing,
            Reason::Scraping,
            Reason::Detector,
        ] {
            assert_eq!(Reason::from_u32(r as u32), Some(r));
        }
        assert_eq!(Reason::from_u32(0), None);
        assert_eq!(Reason::from_u32(99), None);
    }

    #[test]
    fn header_field_offsets_are_stable() {
        // The user-space decoder and the kernel agree on these offsets; a change here is an ABI
        // change.
        assert_eq!(core::mem::offset_of!(EventHeader, ts_ns), 8);
        assert_eq!(core::mem::offset_of!(EventHeader, src), 16);
        assert_eq!(core::mem::offset_of!(EventHeader, dst), 32);
        assert_eq!(core::mem::offset_of!(EventHeader, src_port), 48);
        assert_eq!(core::mem::offset_of!(EventHeader, seq), 52);
        assert_eq!(core::mem::offset_of!(EventHeader, payload_len), 60);
        assert_eq!(core::mem::offset_of!(EventHeader, tcp_flags), 68);
    }

    #[test]
    fn flow_key_field_offsets_are_stable() {
        // The kernel's lookup key (`sensor-ebpf`'s `parse::FlowLookup`) mirrors these offsets.
        assert_eq!(core::mem::offset_of!(FlowKey, dst), 16);
        assert_eq!(core::mem::offset_of!(FlowKey, sport), 32);
        assert_eq!(core::mem::offset_of!(FlowKey, dport), 34);
        assert_eq!(core::mem::offset_of!(FlowKey, zero), 36);
    }
}
