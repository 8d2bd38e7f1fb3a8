//! Every map of the kernel programs. For each: who writes it, who reads it, and what happens
//! when it is full. User space finds them by these names (`sensor_common::map_names`) and pins
//! them under the pin directory (`/sys/fs/bpf/apisensor/` by default).

use crate::parse::{AddrKey, FlowLookup};
use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC},
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use sensor_common::{
    Addr, AllowValue, BlockSlotV4, BlockValue, MapsInUse, SensorConfig, SourceStats, SynOptions,
    VerdictNote, block_table, capacity,
};

/// Exact IPv4 blocks, open-addressed (`sensor_common::block_table`): slots written by user
/// space (`verdict.rs`, through a memory mapping), probed by XDP with inlined array lookups,
/// which adds to each matching slot's `hits`. Pinned and reused across agent restarts.
#[map]
pub static BLOCK_TABLE_V4: Array<BlockSlotV4> =
    Array::with_max_entries(block_table::SLOTS, BPF_F_MMAPABLE);

/// Exact IPv4 blocks that found no free slot in `BLOCK_TABLE_V4`'s probe window, keyed by the
/// address as loaded from the packet (network byte order). Written by user space, read by XDP
/// only while it has entries (adds to `hits`). Full: user space's insert fails and is
/// reported. Pinned and reused across restarts. One map per family: a 4-byte key hashes and
/// compares much faster than a 16-byte one.
#[map]
pub static BLOCK_EXACT_V4: HashMap<u32, BlockValue> =
    HashMap::with_max_entries(capacity::BLOCK_EXACT_V4_OVERFLOW, 0);

/// Exact IPv6 blocks; otherwise as `BLOCK_EXACT_V4`.
#[map]
pub static BLOCK_EXACT_V6: HashMap<AddrKey, BlockValue> =
    HashMap::with_max_entries(capacity::BLOCK_EXACT, 0);

/// IPv4 prefix blocks, longest prefix wins. Written by user space, read by XDP (adds to
/// `hits`). Full: user space's insert fails and is reported. Pinned and reused across
/// restarts. A 32-bit trie walks far less key than the IPv4-mapped 128-bit one would.
#[map]
pub static BLOCK_PREFIX_V4: LpmTrie<u32, BlockValue> =
    LpmTrie::with_max_entries(capacity::BLOCK_PREFIX, 0);

/// IPv6 prefix blocks; otherwise as `BLOCK_PREFIX_V4`.
#[map]
pub static BLOCK_PREFIX_V6: LpmTrie<Addr, BlockValue> =
    LpmTrie::with_max_entries(capacity::BLOCK_PREFIX, 0);

/// Flow blocks: one TCP connection each, keyed by its client address and port and server
/// address and port as its ingress packets carry them (`parse::FlowLookup`, the layout of
/// `sensor_common::FlowKey`; both families, IPv4 mapped). Written by user space (`verdict.rs`),
/// read by XDP for every TCP segment that parsed, only while `MAPS_IN_USE` says it has
/// entries (adds to `hits`). Full: user space's insert fails and is reported. Pinned and reused
/// across restarts, like the address blocks: a flow block has a TTL like theirs, checked here.
#[map]
pub static FLOW_BLOCKS: HashMap<FlowLookup, BlockValue> =
    HashMap::with_max_entries(capacity::FLOW_BLOCKS, 0);

/// Allowlist prefixes: a source matching one is never dropped. Written by user space, read by
/// XDP only when a block matched (adds to `hits`), so it stays one IPv4-mapped trie for both
/// families. Pinned and reused across restarts.
#[map]
pub static ALLOW: LpmTrie<Addr, AllowValue> = LpmTrie::with_max_entries(capacity::ALLOW, 0);

/// Per-source counters. Written by XDP for every IP packet; read by the CLI (`top`) and the
/// agent. Full: the kernel evicts the least recently used source (LRU hash).
#[map]
pub static SOURCES: LruHashMap<AddrKey, SourceStats> =
    LruHashMap::with_max_entries(capacity::SOURCES, 0);

/// Per-CPU counters indexed by `sensor_common::Counter`. Written by both programs, summed by
/// user space. Fixed size, never full.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(capacity::STATS, 0);

/// Run-time configuration at index 0. Written by the agent at start, read by both programs;
/// zero fields mean "use the default".
#[map]
pub static CONFIG: Array<SensorConfig> = Array::with_max_entries(1, 0);

/// Monitored TCP ports, one byte per port (non-zero: monitored). Written by the agent, read by
/// both programs: XDP samples segments to these ports, TC segments from them.
#[map]
pub static PORTS: Array<u8> = Array::with_max_entries(capacity::PORTS, 0);

/// Ingress records (`RequestEvent`, or a bare `EventHeader` for SYN/FIN/RST). Written by XDP,
/// drained by the agent, its only reader (see ARCHITECTURE.md, Pins). Full: the record is not
/// written, the packet still passes, and `ReqRingFull` counts the loss.
#[map]
pub static REQ_EVENTS: RingBuf = RingBuf::with_byte_size(capacity::REQ_RING_BYTES, 0);

/// Egress records (`ResponseEvent`, or a bare `EventHeader` for FIN/RST). Written by TC,
/// drained by the agent, its only reader. Full: loss counted in `RespRingFull`.
#[map]
pub static RESP_EVENTS: RingBuf = RingBuf::with_byte_size(capacity::RESP_RING_BYTES, 0);

/// Notes of manual and detector verdicts (reason text, creation time, TTL) by verdict id.
/// Written and read by user space only (`verdict.rs`, the CLI); the kernel never touches it.
/// It lives here so that it is created and pinned with the other maps and outlives the agent.
/// Not preallocated (`BPF_F_NO_PREALLOC`): it is off the data path, and preallocating its
/// capacity would cost tens of MiB for nothing. One note per block of either family; flow
/// blocks share the capacity (a block whose note does not fit is refused, nothing written).
#[map]
pub static VERDICT_NOTES: HashMap<u64, VerdictNote> = HashMap::with_max_entries(
    2 * (capacity::BLOCK_EXACT + capacity::BLOCK_PREFIX),
    BPF_F_NO_PREALLOC,
);

/// Which enforcement maps have entries (index 0). Written by user space (`verdict.rs`) after
/// every change, read by XDP to skip lookups in empty maps. Pinned and reused across restarts.
#[map]
pub static MAPS_IN_USE: Array<MapsInUse> = Array::with_max_entries(1, 0);

/// Kernel-only scratch state of each CPU (index 0): the cached clock of `emit::coarse_now` and
/// the wakeup checks of `emit::submit_flags`. Never read by user space.
#[map]
pub static CPU_STATE: PerCpuArray<CpuState> = PerCpuArray::with_max_entries(1, 0);

/// One CPU's scratch state.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CpuState {
    /// `jiffies64` when `boot_ns` was read.
    pub jiffies: u64,
    /// `bpf_ktime_get_boot_ns` at that jiffy.
    pub boot_ns: u64,
    /// Wakeup checks of the request ring (`RingWake::REQ`) and of the response ring.
    pub wake: [RingWake; 2],
    /// The options of the last client SYN `xdp::apisensor_syn_options` read, for the caller to
    /// copy into its record (a global function returns only a number).
    pub syn: SynOptions,
    /// A copy of the option bytes of the SYN being read (`xdp::apisensor_syn_options`; 40 at
    /// most, the rest keeps the walk's reads in bounds).
    pub opts: [u8; 128],
}

/// What one CPU knows about the pending data of one ring.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RingWake {
    /// Bytes this CPU reserved in the ring since it last asked the ring how much is pending.
    pub since_check: u32,
    /// Non-zero once this CPU forced a wakeup, until it sees the pending data below the
    /// threshold again: one wakeup per CPU per crossing.
    pub woke: u32,
}

impl RingWake {
    /// Index of the request ring's state in `CpuState::wake`.
    pub const REQ: usize = 0;
    /// Index of the response ring's state.
    pub const RESP: usize = 1;
}
