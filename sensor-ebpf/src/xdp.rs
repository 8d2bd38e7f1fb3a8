//! The XDP ingress program: parse, enforce, count per source, sample monitored TCP.
//!
//! Enforcement order (first match decides): an unexpired exact block, then an unexpired prefix
//! block, in the maps of the packet's address family; a matching block drops unless the source
//! is allowlisted. Maps that `MAPS_IN_USE` says are empty are not looked up at all (the common
//! case costs no lookup). A drop touches only the block entry (`hits`, `last_hit_ns`) and one
//! counter: no TCP parse, no per-source update. The allowlist is consulted only when a block
//! matched, which gives the same outcome as checking it first ("allowlist
//! always passes") while keeping an LPM lookup off the pass path. Expiry is checked here, in
//! the kernel, so a block outlives no agent crash past its TTL.
//!
//! Flow blocks (`FLOW_BLOCKS`, one TCP connection each) come after the address blocks and
//! before the pass path: their key needs the TCP ports, so `flow_block` parses up to the TCP
//! header itself, and a flow drop too touches only its block entry and one counter
//! (`XdpDropFlow`), with no per-source update. They follow the same rules (expiry here, the
//! allowlist wins), with one verdict per packet: an expired flow block passes as
//! `XdpPassExpired`; a source the allowlist already let past an address block is not looked up
//! again (its allowlist entry counts the packet once). Only segments whose TCP header is read
//! are matched: a later IP fragment of a blocked connection passes as `XdpPassFragment`.
//!
//! Behind a proxy that speaks the PROXY protocol, every connection comes from the proxy, and the
//! first data segment of each starts with a header naming the real client. While address blocks
//! exist, a segment to a monitored port whose payload starts with one (v2 over TCP, either
//! family; v1 `TCP4`) is enforced on as if it came from that client, by the same rules, and
//! dropped as `XdpDropProxied` (no per-source update, no record) when a block of the client
//! drops. That one segment is enough: the server never gets the header, the proxy's
//! retransmissions of it are dropped alike, and what the connection sends after it waits
//! behind the hole and never reaches the server application, so no flow entry is needed and a
//! blocked client's every new connection is refused. No trust check is needed either: a client
//! that sends a header itself only gets its own connection dropped. v1 `TCP6` headers pass
//! unparsed; the agent blocks those clients by connection (`FLOW_BLOCKS`).

use aya_ebpf::{
    bindings::{BPF_NOEXIST, xdp_action, xdp_md},
    helpers::generated::{bpf_ktime_get_boot_ns, bpf_xdp_load_bytes},
    maps::lpm_trie::Key,
    programs::XdpContext,
};
use sensor_common::{
    Addr, BlockValue, Counter, Direction, MapsInUse, REQ_DATA_LEN, SourceStats, block_table,
    tcp_flags,
};

use crate::{
    emit::{self, RingCounters, atomic_add},
    maps::{
        ALLOW, BLOCK_EXACT_V4, BLOCK_EXACT_V6, BLOCK_PREFIX_V4, BLOCK_PREFIX_V6, BLOCK_TABLE_V4,
        CPU_STATE, FLOW_BLOCKS, MAPS_IN_USE, PORTS, REQ_EVENTS, RingWake, SOURCES,
    },
    parse::{
        self, AddrKey, FlowLookup, IPPROTO_TCP, IPPROTO_UDP, LpmLookup, LpmLookupV4, Packet,
        Source, Tcp,
    },
};

const COUNTERS: RingCounters = RingCounters {
    submitted: Counter::ReqEvents,
    control: Counter::ReqControlEvents,
    full: Counter::ReqRingFull,
    wakeups: Counter::ReqWakeups,
    wake: RingWake::REQ,
};

/// Outcome of one packet: the XDP action and the verdict counter that records it.
pub struct Verdict {
    /// `XDP_PASS` or `XDP_DROP`.
    pub action: u32,
    /// The one counter this packet increments.
    pub counter: Counter,
}

impl Verdict {
    const fn pass(counter: Counter) -> Self {
        Self {
            action: xdp_action::XDP_PASS,
            counter,
        }
    }

    const fn drop(counter: Counter) -> Self {
        Self {
            action: xdp_action::XDP_DROP,
            counter,
        }
    }
}

/// Body of the program. `Err` carries the reason a packet could not be parsed; it passes.
#[inline(always)]
pub fn try_ingress(ctx: &XdpContext) -> Result<Verdict, Counter> {
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    let (ethertype, l3_off) = parse::parse_eth(&pkt)?;
    let src = parse::parse_source(&pkt, ethertype, l3_off)?;
    let in_use = match MAPS_IN_USE.get(0) {
        Some(m) => *m,
        None => MapsInUse::ALL,
    };
    // The drop path stays minimal: only the source address is parsed, no per-source update;
    // the block entry's own `hits` and `last_hit_ns` account for the drop. A blocked source is
    // dropped once its IP header checks out, whatever follows it.
    let (enforced, now) = enforce(src, &in_use);
    if let Some(c @ (Counter::XdpDropExact | Counter::XdpDropPrefix)) = enforced {
        return Ok(Verdict::drop(c));
    }
    // The verdict of a block that matched and let the packet pass (`XdpPassExpired` or
    // `XdpPassAllowlisted`), `XdpPass` while none did: a plain counter rather than an `Option`,
    // whose merge with the flow lookup's result LLVM paid for with compares on every pass.
    let mut decided = enforced.unwrap_or(Counter::XdpPass);
    // The packet's TCP connection, looked up only while `FLOW_BLOCKS` has entries (with none,
    // this costs the test of one field of `in_use`), and not for a source the allowlist already
    // let past an address block (its allowlist entry counts the packet once). A flow drop, like
    // an address drop, touches only its entry and one counter: no per-source update.
    if in_use.flow != 0 && decided != Counter::XdpPassAllowlisted {
        let c = flow_block(&pkt, ethertype, l3_off, &in_use, now);
        if c == Counter::XdpDropFlow {
            return Ok(Verdict::drop(c));
        }
        if c != Counter::XdpPass {
            decided = c;
        }
    }
    let verdict_for_pass = |counter: Counter| {
        if decided == Counter::XdpPass {
            counter
        } else {
            decided
        }
    };
    let l3 = parse::parse_l3(&pkt, ethertype, l3_off)?;
    let coarse = |now: u64| if now == 0 { emit::coarse_now() } else { now };
    let len = pkt.len() as u64;
    // Every passing packet updates its source exactly once. Each branch below calls
    // `update_source` itself rather than carrying an optional TCP header past one shared call:
    // LLVM would spill the unset fields of the `None` case, which the verifier rejects as reads
    // of uninitialised registers.
    if l3.proto != IPPROTO_TCP || l3.later_fragment {
        update_source(&l3.src, len, false, coarse(now));
        let counter = if l3.later_fragment {
            Counter::XdpPassFragment
        } else if l3.proto == IPPROTO_UDP {
            parse::check_udp(&pkt, &l3)?;
            Counter::XdpPass
        } else {
            Counter::XdpPassOtherL4
        };
        return Ok(Verdict::pass(verdict_for_pass(counter)));
    }
    let tcp = match parse::parse_tcp(&pkt, &l3) {
        Ok(t) => t,
        Err(e) => {
            update_source(&l3.src, len, false, coarse(now));
            return Err(e);
        }
    };
    let is_syn = tcp.flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
    let monitored = PORTS.get(u32::from(tcp.dport)).is_some_and(|m| *m != 0);
    let emits = monitored
        && (tcp.payload_len > 0
            || tcp.flags & (tcp_flags::SYN | tcp_flags::FIN | tcp_flags::RST) != 0);
    if !emits {
        update_source(&l3.src, len, is_syn, coarse(now));
        let counter = if monitored {
            Counter::XdpPassSampled
        } else {
            Counter::XdpPass
        };
        return Ok(Verdict::pass(verdict_for_pass(counter)));
    }
    // The client a PROXY protocol header names is enforced on as a packet of its own; a drop,
    // as the other drops, touches only the block entry and one counter.
    let sampled = proxy_verdict(ctx, &pkt, &tcp, &in_use);
    if sampled == Counter::XdpDropProxied {
        return Ok(Verdict::drop(sampled));
    }
    // A client SYN's TTL, window and options are read only here, in a global function, into
    // this CPU's `CpuState::syn`, which `emit_control` copies into the SYN's record: no other
    // packet pays for the walk. Nothing is handed back: a value kept live from here to the
    // record grew the program's stack past the verifier's limit on its deepest call chain. Nor
    // is the TTL's offset passed: computed here, LLVM hoisted it into the IP parsers (a
    // constant per family, spilled), two instructions on every passing packet.
    if is_syn && tcp.payload_len == 0 {
        apisensor_syn_options(ctx.ctx, l3.l4_off as u64);
    }
    // The exact clock, read once, for the record and the source: request timing (latencies,
    // inter-arrival regularity) comes from it. Packets that emit nothing make do with the
    // per-jiffy clock; reading the exact one costs about 40 ns here.
    // SAFETY: helper without arguments.
    let ts = unsafe { bpf_ktime_get_boot_ns() };
    update_source(&l3.src, len, is_syn, ts);
    let header = emit::header(
        &l3,
        &tcp,
        ts,
        // SAFETY: reading a field of the context.
        unsafe { (*ctx.ctx).ingress_ifindex },
        Direction::Ingress,
    );
    let cfg = emit::config();
    if tcp.payload_len > 0 {
        emit::emit_segment::<_, REQ_DATA_LEN>(
            ctx,
            &REQ_EVENTS,
            &header,
            tcp.payload_off,
            pkt.len(),
            cfg.req_capture_len,
            cfg.wakeup_bytes,
            &COUNTERS,
        );
    } else {
        emit::emit_control(&REQ_EVENTS, &header, is_syn, cfg.wakeup_bytes, &COUNTERS);
    }
    Ok(Verdict::pass(verdict_for_pass(sampled)))
}

/// The verdict of a segment that emits, as a PROXY protocol header at the start of its payload
/// decides: `XdpPassSampled` unless [`apisensor_proxied_client`] says otherwise. The header is
/// looked for only while address blocks exist (with none, this costs one test, of five flags
/// of `in_use` together), and only past a four-byte compare: a payload that is no PROXY header
/// costs that much more while blocks exist. The payload's length is left to the function:
/// tested here, it gave the verifier one more range of it (a copy length, so tracked exactly)
/// to walk the rest of the path with, which cost some 150k more instructions verified than
/// the compare alone.
#[inline(always)]
fn proxy_verdict(ctx: &XdpContext, pkt: &Packet, tcp: &Tcp, in_use: &MapsInUse) -> Counter {
    if !in_use.address_blocks() || !parse::may_start_proxy_header(pkt, tcp.payload_off) {
        return Counter::XdpPassSampled;
    }
    // A global function's answer is a number the verifier knows nothing of, and it stays one:
    // turned back into a counter without a branch per value, it leaves the rest of the path one
    // state to be verified with, not one per counter it could be.
    let c = apisensor_proxied_client(ctx.ctx, tcp.payload_off as u64, tcp.payload_len as u64);
    Counter::from_index(c).unwrap_or(Counter::XdpPassSampled)
}

/// Reads a client SYN's TTL, window and TCP options (`parse::syn_options`) from the IP header
/// and the TCP header at `l4_off` into this CPU's `CpuState::syn`; returns 1
/// when it did, 0 (with `CpuState::syn` zero: not `PARSED`) when the headers were not in the
/// window.
///
/// A global BPF function, as [`apisensor_proxied_client`] is and for the same reason: the
/// option walk (a loop of up to 40 steps) is verified once, with its arguments unknown, not
/// again for every register state the emit path is reached with.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn apisensor_syn_options(ctx: *mut xdp_md, l4_off: u64) -> u32 {
    let Some(state) = CPU_STATE.get_ptr_mut(0) else {
        return 0;
    };
    // Not `PARSED` until the walk is done: no return below leaves an earlier SYN's fields.
    // SAFETY: this CPU's slot; programs do not migrate while running.
    unsafe { (*state).syn.flags = 0 };
    if l4_off > MAX_PAYLOAD_OFF {
        return 0;
    }
    let xdp = XdpContext::new(ctx);
    let pkt = Packet::new(xdp.data(), xdp.data_end());
    // The IP header is found again (Ethernet and VLAN tags, constant offsets): its TTL or hop
    // limit is byte 8 of an IPv4 header, byte 7 of an IPv6 one.
    let Ok((ethertype, l3_off)) = parse::parse_eth(&pkt) else {
        return 0;
    };
    let ttl_off = l3_off + if ethertype == parse::ETH_P_IP { 8 } else { 7 };
    // SAFETY: as above.
    let opts = unsafe { &mut (*state).opts };
    // The TTL byte is copied with the helper: read through a packet pointer next to the TCP
    // header's, LLVM re-derived its address past the bounds check and the verifier refused it.
    // SAFETY: `opts` holds 128 bytes.
    if unsafe { bpf_xdp_load_bytes(ctx.cast(), ttl_off as u32, opts.as_mut_ptr().cast(), 1) } != 0 {
        return 0;
    }
    let ttl = opts[0];
    let Some(hdr) = parse::syn_header(&pkt, ttl, l4_off as usize) else {
        return 0;
    };
    let mut copied = 0;
    if hdr.opt_len > 0 {
        // A length the verifier sees in 1..=64 (within the buffer), as `emit` bounds its copies.
        let want = emit::opaque(hdr.opt_len.min(parse::MAX_TCP_OPTION_BYTES) as u64);
        let len = ((want - 1) & 63) + 1;
        // SAFETY: `opts` holds 128 bytes.
        let rc = unsafe {
            bpf_xdp_load_bytes(
                ctx.cast(),
                hdr.opt_off as u32,
                opts.as_mut_ptr().cast(),
                len as u32,
            )
        };
        if rc == 0 {
            copied = len as usize;
        }
    }
    // SAFETY: as above.
    parse::syn_options(&hdr, opts, copied, unsafe { &mut (*state).syn });
    1
}

/// Largest payload offset [`apisensor_proxied_client`] reads at (no frame here has headers
/// that long): it gets the offset as an unknown number, and the verifier tracks a packet
/// pointer's range only while its variable offset is below `MAX_PACKET_OFF` (0xffff,
/// `include/linux/bpf.h`).
const MAX_PAYLOAD_OFF: u64 = 0x3fff;

/// Enforces the blocks of the client that a PROXY protocol header at the start of the TCP
/// payload (at `off`, `len` bytes by the IP header) names, as `enforce` does for a packet's own
/// source: exact, then prefix, unexpired, the allowlist (of the client's address) winning, a
/// drop counted on the block entry. Returns the index of a counter: `XdpDropProxied` for a
/// drop, `XdpPassExpired` or `XdpPassAllowlisted` when a block matched and let the segment
/// pass, and `XdpPassSampled` for no header, a header naming no address `parse::proxy_source`
/// reads (v1 `TCP6` and `UNKNOWN`, v2 `LOCAL`, other families) or a client no block matches.
///
/// Dropping the one segment that starts with the header refuses the connection: the server
/// never receives the header, the proxy's retransmissions of it start with the same header and
/// are dropped too, and the connection's later segments sit behind the hole and never reach the
/// server application. So no flow entry is needed, and a client that opens a connection per
/// attempt is refused on every one. The header is not checked for coming from a trusted proxy:
/// a client that sends one itself can only get its own connection dropped. A header in `TCP6`
/// text passes here; the agent still blocks such a client by connection (`FLOW_BLOCKS`) once
/// it has seen a transaction on it.
///
/// A global BPF function (`BTF_FUNC_GLOBAL`: exported, in `.text`, not `#[cold]`, see
/// `flow_block`), so that the verifier checks it once, its arguments unknown, and each call
/// only for the argument types. As a static subprogram it was verified again for each of the
/// dozens of register states the emit path is reached with, and the program went past the
/// verifier's million instructions (the address lookups alone are some 150k a time). So it
/// takes only the context and two numbers, reads the packet window from the context and
/// `MAPS_IN_USE` itself, and checks every bound again.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn apisensor_proxied_client(ctx: *mut xdp_md, off: u64, len: u64) -> u32 {
    if off > MAX_PAYLOAD_OFF {
        return Counter::XdpPassSampled as u32;
    }
    let ctx = XdpContext::new(ctx);
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    let Some(client) = parse::proxy_source(&pkt, off as usize, len as usize) else {
        return Counter::XdpPassSampled as u32;
    };
    let in_use = match MAPS_IN_USE.get(0) {
        Some(m) => *m,
        None => MapsInUse::ALL,
    };
    let c = match enforce(client, &in_use).0 {
        Some(Counter::XdpDropExact | Counter::XdpDropPrefix) => Counter::XdpDropProxied,
        Some(c) => c,
        None => Counter::XdpPassSampled,
    };
    c as u32
}

/// Looks the packet's TCP connection up in `FLOW_BLOCKS`: parses the IP and TCP headers at
/// `l3_off` (the parsers of the pass path) and returns the verdict counter of a matching block
/// (`XdpDropFlow`, `XdpPassAllowlisted` or `XdpPassExpired`), or `XdpPass` when no flow block
/// matches or the packet is no TCP segment whose header can be read (a later IP fragment, for
/// one: the pass path then counts why). A SYN that matches opens a new connection on the
/// blocked one's ports: the block is removed (`FlowBlockReopened`) and the SYN passes. `now` is the time the address lookups read, zero if
/// they read none; the clock is read only on a match (and, for a packet a matching flow block
/// lets pass, once more by the caller for its source: rare, and cheaper than handing the time
/// back through memory).
///
/// A BPF subprogram with its own parse, called only while `FLOW_BLOCKS` has entries. Looked up
/// after the pass path's TCP parse instead, inlined or called from there, it cost every passing
/// TCP segment about 1.5 ns (11 to 26 more instructions on the benchmark's pass path), flow
/// blocks or not, in spills and moves of the values it kept alive; from here it costs one load
/// and one branch (one instruction more in all, measured within noise). While flow blocks
/// exist, a passing TCP segment is parsed twice; a flow drop is parsed once. Not `#[cold]`:
/// LLVM then puts the function in `.text.unlikely.`, and aya 0.14 links a call into any
/// section but `.text` to the wrong function.
#[inline(never)]
fn flow_block(
    pkt: &Packet,
    ethertype: u16,
    l3_off: usize,
    in_use: &MapsInUse,
    now: u64,
) -> Counter {
    let Ok(l3) = parse::parse_l3(pkt, ethertype, l3_off) else {
        return Counter::XdpPass;
    };
    if l3.proto != IPPROTO_TCP || l3.later_fragment {
        return Counter::XdpPass;
    }
    let Ok(tcp) = parse::parse_tcp(pkt, &l3) else {
        return Counter::XdpPass;
    };
    let key = FlowLookup::new(&l3, &tcp);
    let Some(b) = FLOW_BLOCKS.get_ptr_mut(&key) else {
        return Counter::XdpPass;
    };
    if tcp.flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN {
        // A SYN opens a new connection on the blocked one's ports (a NAT or a proxy reusing
        // its source port): the block was for the old connection, so it goes, and the SYN
        // takes the pass path. The server answers the old connection's segments no more.
        let _ = FLOW_BLOCKS.remove(&key);
        emit::count(Counter::FlowBlockReopened);
        return Counter::XdpPass;
    }
    let t = if now == 0 { emit::coarse_now() } else { now };
    // `l3.src` is the 16-byte (IPv4-mapped) form, the allowlist's key for either family.
    let src = Source::V6(l3.src);
    apply(b, t, src, in_use, Counter::XdpDropFlow).unwrap_or(Counter::XdpPassExpired)
}

/// Looks the source up in the block maps of its family, skipping maps that `in_use` says are
/// empty. Returns the verdict counter (`None`: no block applies) and the time, when it was read
/// (zero when not: `CLOCK_BOOTTIME` is never zero once the kernel runs programs). The time is a
/// plain word, not an `Option`: in one layout of the flow lookup LLVM spilled the unset payload
/// of `None` across its subprogram call, which the verifier rejects as a read of an
/// uninitialised register.
///
/// The IPv4 lookups are closures marked `#[inline(always)]`: with two callers of `enforce` (the
/// program and `apisensor_proxied_client`), LLVM otherwise kept the exact one, its probe loop
/// and all, as a subprogram, and the exact drop paid a call and a return.
#[inline(always)]
fn enforce(src: Source, in_use: &MapsInUse) -> (Option<Counter>, u64) {
    match src {
        Source::V4(raw) => enforce_with(
            src,
            in_use,
            #[inline(always)]
            || exact_v4(raw, in_use),
            #[inline(always)]
            || prefix_v4(raw, in_use),
        ),
        Source::V6(key) => enforce_with(
            src,
            in_use,
            || {
                if in_use.exact_v6 == 0 {
                    return None;
                }
                BLOCK_EXACT_V6.get_ptr_mut(key)
            },
            || {
                if in_use.prefix_v6 == 0 {
                    return None;
                }
                BLOCK_PREFIX_V6
                    .get(lpm_key(&LpmLookup::new(&key)))
                    .map(|b| (&raw const *b).cast_mut())
            },
        ),
    }
}

/// The slot of the network `key` of length `len` in `BLOCK_TABLE_V4`, if it holds a block:
/// at most `MAX_PROBE` inlined array lookups, no kernel call.
#[inline(always)]
fn probe(key: u32, len: u32, seed: u64) -> Option<*mut BlockValue> {
    let home = block_table::slot_of(key, len, seed);
    for i in 0..block_table::MAX_PROBE {
        let slot = BLOCK_TABLE_V4.get_ptr_mut((home + i) & (block_table::SLOTS - 1))?;
        // SAFETY: pointer to a live map value. User space writes a slot's other fields before
        // it marks the slot used, and unmarks it before reusing it.
        unsafe {
            let state = (*slot).state;
            if state == block_table::EMPTY {
                return None;
            }
            if state == block_table::USED && (*slot).addr == key && (*slot).prefix_len == len {
                return Some(&raw mut (*slot).value);
            }
        }
    }
    None
}

/// The exact IPv4 block of `raw`: the table, then the overflow hash while it has entries.
#[inline(always)]
fn exact_v4(raw: u32, in_use: &MapsInUse) -> Option<*mut BlockValue> {
    if in_use.table_lens_v4 & (1 << 32) != 0
        && let Some(b) = probe(raw, 32, in_use.table_seed)
    {
        return Some(b);
    }
    if in_use.exact_v4 == 0 {
        return None;
    }
    BLOCK_EXACT_V4.get_ptr_mut(raw)
}

/// The longest IPv4 prefix block (shorter than /32) covering `raw`, if any prefix block exists.
///
/// Without this inlined test LLVM keeps the search below as a BPF subprogram, and every
/// passing IPv4 packet paid a call and a return (dear here: return thunks) to learn that there
/// is no prefix to look for.
#[inline(always)]
fn prefix_v4(raw: u32, in_use: &MapsInUse) -> Option<*mut BlockValue> {
    if in_use.table_lens_v4 & ((1 << 32) - 1) == 0 && in_use.prefix_v4 == 0 {
        return None;
    }
    prefix_v4_search(raw, in_use)
}

/// The longest IPv4 prefix block (shorter than /32) covering `raw`: one probe per prefix
/// length in the table, longest first, then the overflow trie while it has entries (its match
/// wins if longer; `BlockValue::prefix_len` says how long it is).
#[inline(never)]
fn prefix_v4_search(raw: u32, in_use: &MapsInUse) -> Option<*mut BlockValue> {
    let mut best: Option<*mut BlockValue> = None;
    let mut best_len = 0;
    let lens = in_use.table_lens_v4 & ((1 << 32) - 1);
    if lens != 0 {
        let mut len = 32u32;
        while len > 0 {
            len -= 1;
            if lens & (1 << len) == 0 {
                continue;
            }
            if let Some(b) = probe(raw & block_table::mask(len), len, in_use.table_seed) {
                best = Some(b);
                best_len = len;
                break;
            }
        }
    }
    if in_use.prefix_v4 != 0 {
        let key = LpmLookupV4::new(raw);
        // SAFETY: `key_ptr` points at the 8 bytes of a `Key<u32>` (`Key` is packed).
        let key = unsafe { &*key.key_ptr().cast::<Key<u32>>() };
        if let Some(b) = BLOCK_PREFIX_V4.get(key)
            && (best.is_none() || b.prefix_len > best_len)
        {
            return Some((&raw const *b).cast_mut());
        }
    }
    best
}

/// The enforcement order for one family: the exact block, then the prefix block (looked up only
/// if no unexpired exact block matched); a matching unexpired block drops unless `src` is
/// allowlisted.
#[inline(always)]
fn enforce_with(
    src: Source,
    in_use: &MapsInUse,
    exact: impl FnOnce() -> Option<*mut BlockValue>,
    prefix: impl FnOnce() -> Option<*mut BlockValue>,
) -> (Option<Counter>, u64) {
    let mut now = 0;
    let mut expired = false;
    if let Some(b) = exact() {
        now = emit::coarse_now();
        if let Some(c) = apply(b, now, src, in_use, Counter::XdpDropExact) {
            return (Some(c), now);
        }
        expired = true;
    }
    if let Some(b) = prefix() {
        if now == 0 {
            now = emit::coarse_now();
        }
        let t = now;
        if let Some(c) = apply(b, t, src, in_use, Counter::XdpDropPrefix) {
            return (Some(c), now);
        }
        expired = true;
    }
    (expired.then_some(Counter::XdpPassExpired), now)
}

/// Applies the block `b` at time `t`: `None` if it expired, else the verdict counter (`drop`,
/// or `XdpPassAllowlisted`); a drop counts a hit on the entry.
#[inline(always)]
fn apply(
    b: *mut BlockValue,
    t: u64,
    src: Source,
    in_use: &MapsInUse,
    drop: Counter,
) -> Option<Counter> {
    // SAFETY: pointer to a live map value (hash and trie values are writable in the kernel).
    if unsafe { (*b).expires_at_ns } <= t {
        return None;
    }
    if in_use.allow != 0 && allowlisted(&src.key(), t) {
        return Some(Counter::XdpPassAllowlisted);
    }
    // SAFETY: as above; `last_hit_ns` is a plain store, the last writer wins.
    unsafe {
        atomic_add(&raw mut (*b).hits, 1);
        (*b).last_hit_ns = t;
    }
    Some(drop)
}

/// Returns true, and counts a hit, when `src` falls in an allowlisted prefix whose entry has not
/// expired at `t` (the block's time: an exception lapses with the block it pierces, to a jiffy).
/// Only the longest match counts, as for prefix blocks: an expired exception inside an
/// operator's entry would not allow until the agent's purge deleted it, which is why
/// `verdict.rs` writes no exception inside an operator's entry and removes those inside one
/// the operator adds.
#[inline(always)]
pub fn allowlisted(src: &AddrKey, t: u64) -> bool {
    match ALLOW.get(lpm_key(&LpmLookup::new(src))) {
        Some(a) if a.allows_at(t) => {
            atomic_add((&raw const a.hits).cast_mut(), 1);
            true
        }
        _ => false,
    }
}

/// The aya view of a lookup key: `Key<Addr>` is packed (alignment 1), so any pointer to its 20
/// bytes is a valid reference to one.
#[inline(always)]
fn lpm_key(k: &LpmLookup) -> &Key<Addr> {
    // SAFETY: `key_ptr` points at 20 initialised bytes (`prefix_len`, then the address) that
    // live as long as `k`, the layout of `Key<Addr>`.
    unsafe { &*k.key_ptr().cast::<Key<Addr>>() }
}

/// Updates the per-source counters of a packet that passed.
#[inline(always)]
fn update_source(src: &AddrKey, bytes: u64, syn: bool, now: u64) {
    if let Some(s) = SOURCES.get_ptr_mut(src) {
        // SAFETY: pointer to a live map value; counters updated atomically, the timestamp with
        // a plain store where the last writer winning is fine.
        unsafe {
            atomic_add(&raw mut (*s).packets, 1);
            atomic_add(&raw mut (*s).bytes, bytes);
            if syn {
                atomic_add(&raw mut (*s).syns, 1);
            }
            (*s).last_seen_ns = now;
        }
        return;
    }
    let fresh = SourceStats {
        packets: 1,
        bytes,
        syns: u64::from(syn),
        first_seen_ns: now,
        last_seen_ns: now,
    };
    if SOURCES.insert(src, fresh, u64::from(BPF_NOEXIST)).is_err() {
        // Another CPU may have inserted the same source meanwhile; only a real failure counts.
        if SOURCES.get_ptr_mut(src).is_none() {
            emit::count(Counter::SourceInsertFailed);
        }
    }
}
