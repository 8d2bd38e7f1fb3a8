//! The TC egress program: sample the heads of server responses from monitored ports so user
//! space can pair them with requests (status codes, Set-Cookie). It never changes the packet's
//! fate: every path returns `TC_ACT_UNSPEC` (`TCX_NEXT`), letting other programs and the stack
//! decide.

use aya_ebpf::{helpers::generated::bpf_ktime_get_boot_ns, programs::TcContext};
use sensor_common::{Counter, Direction, RESP_DATA_LEN, tcp_flags};

use crate::{
    emit::{self, RingCounters},
    maps::{PORTS, RESP_EVENTS, RingWake},
    parse::{self, IPPROTO_TCP, Packet},
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
