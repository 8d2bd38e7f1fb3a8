//! The TC egress program: sample the heads of server responses from monitored ports so user
//! space can pair them with requests (status codes, Set-Cookie), and drop the segments of
//! flow-blocked connections (`FLOW_BLOCKS`, looked up with the addresses and ports swapped):
//! a connection blocked while its request was being answered gets no answer. Every other path
//! returns `TC_ACT_UNSPEC` (`TCX_NEXT`), letting other programs and the stack decide.

use aya_ebpf::{helpers::generated::bpf_ktime_get_boot_ns, programs::TcContext};
use sensor_common::{BlockValue, Counter, Direction, MapsInUse, RESP_DATA_LEN, tcp_flags};

use crate::{
    emit::{self, RingCounters, atomic_add},
    maps::{FLOW_BLOCKS, MAPS_IN_USE, PORTS, RESP_EVENTS, RingWake},
    parse::{self, FlowLookup, IPPROTO_TCP, L3, Packet, Tcp},
    xdp,
};

const COUNTERS: RingCounters = RingCounters {
    submitted: Counter::RespEvents,
    control: Counter::RespControlEvents,
    full: Counter::RespRingFull,
    wakeups: Counter::RespWakeups,
    wake: RingWake::RESP,
};

/// Body of the program; returns the verdict counter of this packet.
#[inline(always)]
pub fn try_egress(ctx: &TcContext) -> Result<Counter, Counter> {
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    let (ethertype, l3_off) = parse::parse_eth(&pkt)?;
    let l3 = parse::parse_l3(&pkt, ethertype, l3_off)?;
    if l3.proto != IPPROTO_TCP || l3.later_fragment {
        return Ok(Counter::TcPass);
    }
    let tcp = parse::parse_tcp(&pkt, &l3)?;
    let monitored = PORTS.get(u32::from(tcp.sport)).is_some_and(|m| *m != 0);
    if !monitored {
        return Ok(Counter::TcPass);
    }
    // A flow block's key has the server's port, a monitored one: only these are looked up,
    // and only while the map has entries.
    let in_use = match MAPS_IN_USE.get(0) {
        Some(m) => *m,
        None => MapsInUse::ALL,
    };
    if in_use.flow != 0 && flow_blocked(&l3, &tcp, &in_use) {
        return Ok(Counter::TcDropFlow);
    }
    if tcp.payload_len == 0 && tcp.flags & (tcp_flags::FIN | tcp_flags::RST) == 0 {
        // A bare ACK: nothing to record, so no clock read either.
        return Ok(Counter::TcPassSampled);
    }
    let header = emit::header(
        &l3,
        &tcp,
        // SAFETY: helper without arguments.
        unsafe { bpf_ktime_get_boot_ns() },
        // SAFETY: reading a field of the context.
        unsafe { (*ctx.skb.skb).ifindex },
        Direction::Egress,
    );
    let cfg = emit::config();
    if tcp.payload_len > 0 {
        // `ctx.len()` is the whole skb, including paged data that `load_bytes` can reach.
        emit::emit_segment::<_, RESP_DATA_LEN>(
            ctx,
            &RESP_EVENTS,
            &header,
            tcp.payload_off,
            ctx.len() as usize,
            cfg.resp_capture_len,
            cfg.wakeup_bytes,
            &COUNTERS,
        );
    } else {
        emit::emit_control(&RESP_EVENTS, &header, false, cfg.wakeup_bytes, &COUNTERS);
    }
    Ok(Counter::TcPassSampled)
}

/// Whether the connection of a segment from the server is flow-blocked: an unexpired block of
/// its client-to-server key whose client the allowlist does not let pass (the rules of XDP's
/// flow lookup). A drop counts a hit on the block entry. A subprogram, like XDP's lookup: the
/// sampling path does not carry its registers.
#[inline(never)]
fn flow_blocked(l3: &L3, tcp: &Tcp, in_use: &MapsInUse) -> bool {
    let Some(b) = FLOW_BLOCKS.get_ptr_mut(FlowLookup::reply(l3, tcp)) else {
        return false;
    };
    let b: *mut BlockValue = b;
    let t = emit::coarse_now();
    // SAFETY: pointer to a live map value (hash values are writable in the kernel).
    if unsafe { (*b).expires_at_ns } <= t {
        return false;
    }
    // The client is the packet's destination; the allowlist is keyed by the 16-byte form.
    if in_use.allow != 0 && xdp::allowlisted(&l3.dst, t) {
        return false;
    }
    // SAFETY: as above; `last_hit_ns` is a plain store, the last writer wins.
    unsafe {
        atomic_add(&raw mut (*b).hits, 1);
        (*b).last_hit_ns = t;
    }
    true
}
