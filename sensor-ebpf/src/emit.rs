//! Writing records into the ring buffers, and the counters.
//!
//! Wakeup policy: every record is submitted with `BPF_RB_NO_WAKEUP` (a default-wakeup submit
//! costs a self-interrupt, about 5 µs per record on a VM) unless its record made the pending
//! data reach `SensorConfig::wakeup_bytes`, or its CPU finds the pending data at or above the
//! threshold for the first time since it last found it below: that submit forces a wakeup. The
//! reader also drains on a short timer, so latency is bounded by that period when traffic is
//! light and by the threshold when it is heavy, and a burst wakes the reader once per CPU, not
//! once per record.
//!
//! Asking the ring how much is pending is a kernel call (about 15 ns here, against about 220 ns
//! for a whole 1 KiB record), so a CPU asks only once it has reserved a sixteenth of the
//! threshold since it last asked: a crossing is seen at most that late, and a threshold smaller
//! than a record still checks every record. A threshold below two records can leave an
//! edge-triggered reader asleep until its timer (the record it saw still being written is
//! committed without a wakeup, and later ones never find the ring below the threshold); the
//! agent accepts no threshold under 4 KiB.

use core::{ffi::c_void, mem::size_of};

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::generated::{
        bpf_jiffies64, bpf_ktime_get_boot_ns, bpf_skb_load_bytes, bpf_xdp_load_bytes,
    },
    maps::RingBuf,
    programs::{TcContext, XdpContext},
};
use sensor_common::{
    ControlEvent, Counter, Direction, EventHeader, EventKind, SensorConfig, SynOptions,
};

use crate::{
    maps::{CONFIG, CPU_STATE, STATS},
    parse::{L3, Tcp},
};

/// `CLOCK_BOOTTIME` now, to within one jiffy (1 to 10 ms), for expiry checks and per-source
/// timestamps. Reading the clock costs about 45 ns on these VMs (TSC read plus return thunks),
/// more than the rest of the drop path; `bpf_jiffies64` is inlined by the verifier into a plain
/// load, so the real clock is read once per jiffy per CPU and cached. Sampled events still read
/// the exact clock, since latencies are computed from them.
#[inline(always)]
pub fn coarse_now() -> u64 {
    // SAFETY: helpers without arguments.
    let jiffies = unsafe { bpf_jiffies64() };
    if let Some(c) = CPU_STATE.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; programs do not migrate while running.
        unsafe {
            if (*c).jiffies == jiffies && (*c).boot_ns != 0 {
                return (*c).boot_ns;
            }
            let now = bpf_ktime_get_boot_ns();
            (*c).jiffies = jiffies;
            (*c).boot_ns = now;
            return now;
        }
    }
    // SAFETY: as above.
    unsafe { bpf_ktime_get_boot_ns() }
}

/// Adds one to a counter of this CPU.
#[inline(always)]
pub fn count(c: Counter) {
    if let Some(p) = STATS.get_ptr_mut(c as u32) {
        // SAFETY: per-CPU slot of this CPU; programs do not migrate while running.
        unsafe { *p += 1 };
    }
}

/// The configuration, with zero fields replaced by defaults.
#[inline(always)]
pub fn config() -> SensorConfig {
    let mut cfg = match CONFIG.get(0) {
        Some(c) => *c,
        None => SensorConfig::DEFAULT,
    };
    if cfg.req_capture_len == 0 {
        cfg.req_capture_len = SensorConfig::DEFAULT.req_capture_len;
    }
    if cfg.resp_capture_len == 0 {
        cfg.resp_capture_len = SensorConfig::DEFAULT.resp_capture_len;
    }
    if cfg.wakeup_bytes == 0 {
        cfg.wakeup_bytes = SensorConfig::DEFAULT.wakeup_bytes;
    }
    cfg
}

/// A context whose packet bytes can be copied out with a helper (handles non-linear data).
pub trait LoadBytes {
    /// Copies `len` bytes at `offset` to `dst`; negative on error.
    fn load_bytes(&self, offset: u32, dst: *mut u8, len: u32) -> i64;
}

impl LoadBytes for XdpContext {
    #[inline(always)]
    fn load_bytes(&self, offset: u32, dst: *mut u8, len: u32) -> i64 {
        // SAFETY: dst points into a ring-buffer reservation of at least `len` bytes.
        unsafe { bpf_xdp_load_bytes(self.ctx.cast(), offset, dst.cast::<c_void>(), len) }
    }
}

impl LoadBytes for TcContext {
    #[inline(always)]
    fn load_bytes(&self, offset: u32, dst: *mut u8, len: u32) -> i64 {
        // SAFETY: as above.
        unsafe {
            bpf_skb_load_bytes(
                self.skb.skb.cast::<c_void>(),
                offset,
                dst.cast::<c_void>(),
                len,
            )
        }
    }
}

/// Hides a value from the optimiser (a register move the compiler cannot see through; an empty
/// asm block would leave two BTF line-info records on one instruction, which the kernel rejects) so the verifier sees the bounds check that follows it
/// applied to the register actually used (LLVM otherwise folds the clamp into the copy length
/// in a form the verifier cannot track).
#[inline(always)]
pub fn opaque(mut v: u64) -> u64 {
    // SAFETY: an empty asm block that only claims to modify `v`.
    unsafe { core::arch::asm!("{0} = {0}", inout(reg) v) };
    v
}

/// Atomically adds `v` to the `u64` at `p`, a field of a map value shared between CPUs.
///
/// The BPF target has no `AtomicU64` operations in `core`, so this emits the BPF atomic add
/// instruction (`BPF_ATOMIC | BPF_ADD`, what clang makes of `__sync_fetch_and_add`) directly.
#[inline(always)]
pub fn atomic_add(p: *mut u64, v: u64) {
    // SAFETY: `p` points to an aligned u64 inside a map value that lives as long as the map.
    unsafe { core::arch::asm!("lock *(u64 *)({p} + 0) += {v}", p = in(reg) p, v = in(reg) v) };
}

/// Counters used by one direction.
pub struct RingCounters {
    /// Records submitted.
    pub submitted: Counter,
    /// Header-only records submitted.
    pub control: Counter,
    /// Records lost to a full ring.
    pub full: Counter,
    /// Forced wakeups.
    pub wakeups: Counter,
    /// This ring's index in `CpuState::wake` (`RingWake::REQ` or `RingWake::RESP`).
    pub wake: usize,
}

/// Submit flags for a record of `size` bytes just reserved in `ring`: force a wakeup when this
/// record made the pending data reach `threshold`, or when this CPU finds it at or above the
/// threshold and has not woken the reader since it last found it below (see the module's
/// wakeup policy).
#[inline(always)]
fn submit_flags(ring: &RingBuf, size: u64, threshold: u32, counters: &RingCounters) -> u64 {
    let no_wakeup = u64::from(BPF_RB_NO_WAKEUP);
    let Some(state) = CPU_STATE.get_ptr_mut(0) else {
        return no_wakeup;
    };
    // SAFETY: this CPU's slot (programs do not migrate while running); `wake` is a constant
    // index below 2.
    let wake = unsafe { &mut (*state).wake[counters.wake & 1] };
    // A record occupies its size plus the kernel's 8-byte record header, rounded up to 8
    // (BPF_RINGBUF_HDR_SZ, kernel/bpf/ringbuf.c).
    let footprint = ((size + 8 + 7) & !7) as u32;
    let since = wake.since_check.saturating_add(footprint);
    if since < threshold >> 4 {
        wake.since_check = since;
        return no_wakeup;
    }
    wake.since_check = 0;
    let pending = ring.query(u64::from(BPF_RB_AVAIL_DATA));
    let threshold = u64::from(threshold);
    if pending < threshold {
        wake.woke = 0;
        return no_wakeup;
    }
    // This record made the pending data cross (a record landing in a drained ring, with a
    // threshold below one record, crosses every time), or a crossing happened since this CPU
    // last woke the reader.
    let crossed_here = pending.saturating_sub(u64::from(footprint)) < threshold;
    if !crossed_here && wake.woke != 0 {
        return no_wakeup;
    }
    wake.woke = 1;
    count(counters.wakeups);
    u64::from(BPF_RB_FORCE_WAKEUP)
}

/// What a record's header is made of, written straight into the ring reservation: building
/// the 72-byte header on the stack and copying it cost about as much as the copy of a short
/// payload.
pub struct Header<'a> {
    l3: &'a L3,
    tcp: &'a Tcp,
    ts_ns: u64,
    ifindex: u32,
    direction: Direction,
}

impl Header<'_> {
    /// Writes the header, with `kind` and `captured_len`, at `h`.
    ///
    /// # Safety
    /// `h` points to a writable, 8-byte aligned `EventHeader` (the start of a reservation).
    #[inline(always)]
    unsafe fn write(&self, h: *mut EventHeader, kind: EventKind, captured_len: u32) {
        // SAFETY: as the caller promises.
        unsafe {
            h.write(EventHeader {
                kind: kind as u32,
                captured_len,
                ts_ns: self.ts_ns,
                src: self.l3.src.addr(),
                dst: self.l3.dst.addr(),
                src_port: self.tcp.sport,
                dst_port: self.tcp.dport,
                seq: self.tcp.seq,
                ack: self.tcp.ack,
                payload_len: self.tcp.payload_len as u32,
                ifindex: self.ifindex,
                tcp_flags: self.tcp.flags,
                direction: self.direction as u8,
                ip_version: self.l3.version,
                reserved: 0,
            });
        }
    }
}

/// The header of a record for a parsed TCP segment.
#[inline(always)]
pub fn header<'a>(
    l3: &'a L3,
    tcp: &'a Tcp,
    ts_ns: u64,
    ifindex: u32,
    direction: Direction,
) -> Header<'a> {
    Header {
        l3,
        tcp,
        ts_ns,
        ifindex,
        direction,
    }
}

/// Emits a control record (SYN/FIN/RST), with the client SYN's fields that
/// `xdp::apisensor_syn_options` left in this CPU's `CpuState::syn` when `syn` (zero otherwise;
/// a SYN whose headers it could not read has them zero there too).
#[inline(always)]
pub fn emit_control(
    ring: &RingBuf,
    header: &Header<'_>,
    syn: bool,
    threshold: u32,
    counters: &RingCounters,
) {
    let Some(mut entry) = ring.reserve::<ControlEvent>(0) else {
        count(counters.full);
        return;
    };
    let rec = entry.as_mut_ptr();
    // SAFETY: the reservation holds one ControlEvent, 8-byte aligned.
    unsafe {
        header.write(&raw mut (*rec).header, EventKind::Control, 0);
        let state = if syn { CPU_STATE.get_ptr(0) } else { None };
        (&raw mut (*rec).syn).write(match state {
            Some(s) => (*s).syn,
            None => SynOptions::default(),
        });
    }
    let flags = submit_flags(ring, size_of::<ControlEvent>() as u64, threshold, counters);
    entry.submit(flags);
    count(counters.control);
}

/// A segment record with a `D`-byte data area.
#[repr(C)]
struct Record<const D: usize> {
    header: EventHeader,
    data: [u8; D],
}

/// Emits a segment record with up to `N` data bytes (`N` a power of two, at least 256), copying
/// up to `cap` payload bytes at `payload_off` of a packet whose total length is `pkt_len`.
///
/// The record is reserved in the smallest size class that holds the bytes to copy (see
/// `sensor_common::data_class`): the ring's reservation size must be a constant, so each class
/// is its own branch. A 300-byte request then takes a 584-byte record instead of a 2 KiB one, so
/// the ring holds more records and the producer walks fewer of its pages.
#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "all are needed and inlined")]
pub fn emit_segment<C: LoadBytes, const N: usize>(
    ctx: &C,
    ring: &RingBuf,
    header: &Header<'_>,
    payload_off: usize,
    pkt_len: usize,
    cap: u32,
    threshold: u32,
    counters: &RingCounters,
) {
    let payload_len = header.tcp.payload_len as u64;
    let available = pkt_len.saturating_sub(payload_off) as u64;
    let want = payload_len.min(available).min(u64::from(cap)).min(N as u64);
    let args = (ctx, ring, header, payload_off, threshold, counters);
    if want > 1024 && N >= 2048 {
        emit_class::<C, 2048>(args, want);
    } else if want > 512 && N >= 1024 {
        emit_class::<C, 1024>(args, want);
    } else if want > 256 {
        emit_class::<C, 512>(args, want);
    } else {
        emit_class::<C, 256>(args, want);
    }
}

/// [`emit_segment`] for one size class: `want` bytes (at most `D`) into a `Record<D>`.
#[inline(always)]
fn emit_class<C: LoadBytes, const D: usize>(
    (ctx, ring, header, payload_off, threshold, counters): (
        &C,
        &RingBuf,
        &Header<'_>,
        usize,
        u32,
        &RingCounters,
    ),
    want: u64,
) {
    let Some(mut entry) = ring.reserve::<Record<D>>(0) else {
        count(counters.full);
        return;
    };
    // Records are 8-byte aligned in the ring.
    let rec = entry.as_mut_ptr();
    let mut captured = 0u32;
    if want > 0 {
        let want = opaque(want);
        // Bound the length to [1, D] in a form the verifier tracks: D is a power of two.
        let len = ((want - 1) & (D as u64 - 1)) + 1;
        // SAFETY: the data area of the record holds `D` bytes.
        let data = unsafe { (&raw mut (*rec).data).cast::<u8>() };
        if ctx.load_bytes(payload_off as u32, data, len as u32) == 0 {
            captured = len as u32;
        } else {
            count(Counter::CopyFailed);
        }
    }
    // SAFETY: the record starts with an EventHeader, 8-byte aligned.
    unsafe { header.write(&raw mut (*rec).header, EventKind::Segment, captured) };
    let flags = submit_flags(ring, size_of::<Record<D>>() as u64, threshold, counters);
    entry.submit(flags);
    count(counters.submitted);
}
