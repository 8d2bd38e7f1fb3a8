//! TCP stream reassembly: one [`Stream`] per direction of a flow turns segments, in any order,
//! into [`Chunk`]s in stream order.
//!
//! # Model
//!
//! A stream tracks `next`, the sequence number of the next byte it owes the reader. A segment
//! that starts exactly at `next` is delivered straight from the caller's slice, without a copy
//! or an allocation (the fast path of an in-order stream). A segment ahead of `next`, within
//! [`ReassemblyLimits::window`], is copied into a sorted out-of-order buffer until the hole
//! before it is filled. A segment behind `next` is a retransmission: the part already delivered
//! is dropped, the rest is delivered.
//!
//! Overlaps are resolved with **old data wins**: bytes that were delivered or buffered first are
//! never replaced by a later segment covering the same sequence range. Delivered bytes cannot be
//! taken back, so this is the only policy that treats buffered and delivered bytes alike.
//!
//! Only a prefix of each segment may have been captured ([`Segment::payload`] shorter than
//! [`Segment::payload_len`]); the rest of the segment is delivered as [`Chunk::Uncaptured`] at its
//! place in the stream, a hole of exact length that keeps the reader in sync.
//!
//! # Bounds
//!
//! The out-of-order buffer is capped by [`ReassemblyLimits::max_buffered_bytes`] (payload plus
//! bookkeeping). When it is exceeded, the stream gives up on the first hole: it delivers it as
//! [`Chunk::Lost`] and then every buffered byte that became contiguous. A segment further ahead
//! than the window makes the stream deliver its whole buffer, then skip to that segment. Sequence
//! numbers are compared with serial number arithmetic (RFC 1982), so streams cross 2^32 freely.
//!
//! An idle stream with an empty buffer owns no heap memory: the buffer is allocated on the first
//! out-of-order segment and freed as soon as it drains.
//!
//! [`Segment::payload`]: crate::segment::Segment::payload
//! [`Segment::payload_len`]: crate::segment::Segment::payload_len

use std::collections::VecDeque;

use crate::segment::Chunk;

#[cfg(test)]
mod tests;

/// The largest accepted [`ReassemblyLimits::window`]: a quarter of the sequence space, so that
/// "ahead" and "behind" stay unambiguous under serial number arithmetic.
pub const MAX_WINDOW: u32 = 1 << 30;

/// Bounds of one [`Stream`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReassemblyLimits {
    /// How far ahead of the next expected byte a segment may start and still be buffered.
    /// Further ahead, the stream skips to it. Clamped to [`MAX_WINDOW`].
    pub window: u32,
    /// Cap on out-of-order bytes held by one stream, payload plus per-segment bookkeeping.
    /// Clamped to `u32::MAX`.
    pub max_buffered_bytes: usize,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        Self {
            window: 256 * 1024,
            max_buffered_bytes: 64 * 1024,
        }
    }
}

/// What happened to one stream so far. Counters are 32-bit (they live in every tracked stream)
/// and saturate instead of wrapping; a flow table wanting exact byte totals counts the
/// [`Chunk::Lost`] and [`Chunk::Uncaptured`] chunks it receives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StreamStats {
    /// [`Chunk::Lost`] chunks delivered: holes given up on (loss, buffer cap, window jump).
    pub gaps: u32,
    /// Bytes delivered as [`Chunk::Lost`].
    pub lost_bytes: u32,
    /// Segments whose captured prefix was shorter than their length.
    pub truncated_segments: u32,
    /// Bytes delivered as [`Chunk::Uncaptured`].
    pub uncaptured_bytes: u32,
    /// Segments that carried nothing new (all their bytes were delivered or buffered already).
    pub duplicates: u32,
    /// Segments that carried some bytes already delivered or buffered, and some new ones.
    pub overlaps: u32,
    /// Segments that arrived ahead of a hole and were buffered.
    pub out_of_order: u32,
    /// Holes given up on because the out-of-order buffer exceeded its cap.
    pub buffer_overflows: u32,
    /// Segments that started further ahead than the window, making the stream skip ahead.
    pub window_jumps: u32,
}

/// One direction of one TCP flow.
#[derive(Debug)]
pub struct Stream {
    /// Sequence number of the next byte owed to the reader; meaningless until `started`.
    next: u32,
    /// [`ReassemblyLimits::window`], clamped.
    window: u32,
    /// [`ReassemblyLimits::max_buffered_bytes`], clamped.
    max_buffered: u32,
    /// Whether `next` is known: set by a SYN or by the first segment (mid-stream pickup).
    started: bool,
    /// Whether a FIN was seen (`fin_end` is meaningful).
    fin: bool,
    /// Sequence number just past the last byte before the FIN.
    fin_end: u32,
    /// Out-of-order segments; `None` while there are none, so an idle stream holds no heap.
    ooo: Option<Box<OutOfOrder>>,
    /// Counters.
    stats: StreamStats,
}

/// The out-of-order buffer of a stream.
#[derive(Debug, Default)]
struct OutOfOrder {
    /// Buffered pieces sorted by sequence number, non-overlapping, all starting at or after
    /// `Stream::next`.
    segs: VecDeque<Pending>,
    /// Payload bytes held by `segs`.
    data_bytes: usize,
    /// What counts against the cap: payload plus `size_of::<Pending>()` per piece.
    charged: usize,
}

/// One buffered piece of a segment: `len` stream bytes of which the first `data.len()` were
/// captured.
#[derive(Debug)]
struct Pending {
    /// Sequence number of the first byte.
    seq: u32,
    /// Stream bytes covered, `data.len() <= len`.
    len: u32,
    /// The captured prefix.
    data: Box<[u8]>,
}

/// The cost of one buffered piece against the cap, besides its payload.
const PENDING_COST: usize = size_of::<Pending>();

impl Stream {
    /// A stream that has seen nothing yet.
    pub fn new(limits: ReassemblyLimits) -> Self {
        Self {
            next: 0,
            window: limits.window.min(MAX_WINDOW),
            max_buffered: u32::try_from(limits.max_buffered_bytes).unwrap_or(u32::MAX),
            started: false,
            fin: false,
            fin_end: 0,
            ooo: None,
            stats: StreamStats::default(),
        }
    }

    /// SYN seen: next expected seq = isn + 1. Ignored once the stream has started (a
    /// retransmitted SYN, or a SYN after mid-stream pickup): the flow table decides whether a
    /// SYN starts a new connection.
    pub fn set_isn(&mut self, isn: u32) {
        if !self.started {
            self.started = true;
            self.next = isn.wrapping_add(1);
        }
    }

    /// The sequence number of the next byte owed to the reader, once known.
    pub fn next_seq(&self) -> Option<u32> {
        self.started.then_some(self.next)
    }

    /// FIN seen: `end` is the sequence number just past the last payload byte (the FIN
    /// segment's sequence number plus its payload length). The first FIN counts.
    pub fn set_fin(&mut self, end: u32) {
        if !self.fin {
            self.fin = true;
            self.fin_end = end;
        }
    }

    /// Whether a FIN was seen.
    pub fn has_fin(&self) -> bool {
        self.fin
    }

    /// Whether a FIN was seen and every byte before it was delivered (a stream that never
    /// carried a byte is complete at its FIN).
    pub fn is_complete(&self) -> bool {
        self.fin && (!self.started || self.next.wrapping_sub(self.fin_end).cast_signed() >= 0)
    }

    /// Whether out-of-order bytes are waiting for a hole to be filled.
    pub fn has_buffered(&self) -> bool {
        self.ooo.is_some()
    }

    /// Feed one segment's payload (captured prefix + true length). Delivers in-order chunks to
    /// `sink`. Bytes of `captured` beyond `payload_len` are ignored.
    pub fn push(
        &mut self,
        seq: u32,
        payload_len: u32,
        captured: &[u8],
        sink: &mut dyn FnMut(Chunk<'_>),
    ) {
        if payload_len == 0 {
            return;
        }
        let captured = captured.get(..payload_len as usize).unwrap_or(captured);
        if captured.len() < payload_len as usize {
            bump(&mut self.stats.truncated_segments);
        }
        if !self.started {
            self.started = true;
            self.next = seq;
        }
        let off = seq.wrapping_sub(self.next).cast_signed();
        if off > 0 && off.unsigned_abs() > self.window {
            self.stats.window_jumps = self.stats.window_jumps.saturating_add(1);
            self.flush(sink);
            let gap = seq.wrapping_sub(self.next).cast_signed();
            if gap > 0 {
                self.lose(gap.unsigned_abs(), sink);
                self.next = seq;
            }
        }
        self.push_started(seq, payload_len, captured, sink);
    }

    /// [`Stream::push`] once `next` is known and `seq` is at most a window ahead of it (or
    /// behind it).
    fn push_started(
        &mut self,
        seq: u32,
        len: u32,
        captured: &[u8],
        sink: &mut dyn FnMut(Chunk<'_>),
    ) {
        let off = seq.wrapping_sub(self.next).cast_signed();
        if off > 0 {
            self.buffer(off.unsigned_abs(), len, captured, sink);
            return;
        }
        let behind = off.unsigned_abs();
        if behind >= len {
            bump(&mut self.stats.duplicates);
            return;
        }
        let (_, captured) = split(captured, behind);
        self.deliver_in_order(len - behind, captured, behind > 0, sink);
    }

    /// Connection closing or idle: deliver what is buffered (holes as [`Chunk::Lost`]).
    pub fn flush(&mut self, sink: &mut dyn FnMut(Chunk<'_>)) {
        let Some(ooo) = self.ooo.take() else {
            return;
        };
        for piece in ooo.segs {
            let gap = piece.seq.wrapping_sub(self.next);
            self.lose(gap, sink);
            self.next = piece.seq;
            self.deliver_piece(&piece, sink);
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Heap bytes held (the out-of-order buffer, its pieces and their payload).
    pub fn memory(&self) -> usize {
        self.ooo.as_ref().map_or(0, |ooo| {
            size_of::<OutOfOrder>() + ooo.segs.capacity() * size_of::<Pending>() + ooo.data_bytes
        })
    }

    /// Delivers `len` bytes starting at `next`, of which `captured` is the captured prefix,
    /// interleaved with buffered pieces that cover part of the same range (old data wins), then
    /// whatever buffered pieces became contiguous. `overlapped` tells whether the segment was
    /// already trimmed of bytes delivered before.
    fn deliver_in_order(
        &mut self,
        len: u32,
        captured: &[u8],
        overlapped: bool,
        sink: &mut dyn FnMut(Chunk<'_>),
    ) {
        let (mut len, mut captured) = (len, captured);
        let (mut overlapped, mut fresh) = (overlapped, false);
        while len > 0 {
            let front = self
                .ooo
                .as_ref()
                .and_then(|ooo| ooo.segs.front())
                .map(|p| p.seq.wrapping_sub(self.next));
            match front {
                Some(0) => {
                    // A buffered piece holds these bytes already: it wins.
                    let covered = self.pop_front_deliver(sink);
                    overlapped = true;
                    let skip = covered.min(len);
                    len -= skip;
                    captured = split(captured, skip).1;
                }
                Some(until) => {
                    let take = until.min(len);
                    let (now, rest) = split(captured, take);
                    emit(now, take, &mut self.stats, sink);
                    self.next = self.next.wrapping_add(take);
                    len -= take;
                    captured = rest;
                    fresh = true;
                }
                None => {
                    emit(captured, len, &mut self.stats, sink);
                    self.next = self.next.wrapping_add(len);
                    len = 0;
                    fresh = true;
                }
            }
        }
        if !fresh {
            bump(&mut self.stats.duplicates);
        } else if overlapped {
            bump(&mut self.stats.overlaps);
        }
        self.drain_ready(sink);
    }

    /// Copies the parts of a segment starting `off` bytes ahead of `next` that no buffered
    /// piece covers yet, then enforces the cap.
    fn buffer(&mut self, off: u32, len: u32, captured: &[u8], sink: &mut dyn FnMut(Chunk<'_>)) {
        bump(&mut self.stats.out_of_order);
        let next = self.next;
        let ooo = self.ooo.get_or_insert_with(Box::default);
        let start = u64::from(off);
        let end = start + u64::from(len);
        let rel_start = |p: &Pending| u64::from(p.seq.wrapping_sub(next));
        let mut idx = ooo
            .segs
            .partition_point(|p| rel_start(p) + u64::from(p.len) <= start);
        let (mut pos, mut inserted, mut covered) = (start, false, false);
        // Each turn either ends the loop or steps past one buffered piece, so it terminates
        // even on absurd lengths.
        while pos < end {
            let next_piece = ooo
                .segs
                .get(idx)
                .map(|p| (rel_start(p), rel_start(p) + u64::from(p.len)))
                .filter(|&(ps, _)| ps < end);
            let uncovered_end = next_piece.map_or(end, |(ps, _)| ps);
            if uncovered_end > pos {
                let piece = Pending::cut(next, start, captured, pos, uncovered_end);
                ooo.data_bytes += piece.data.len();
                ooo.charged += piece.data.len() + PENDING_COST;
                ooo.segs.insert(idx, piece);
                idx += 1;
                inserted = true;
            }
            match next_piece {
                Some((_, pe)) => {
                    if pe > pos {
                        covered = true;
                        pos = pe;
                    }
                    idx += 1;
                }
                None => pos = end,
            }
        }
        if !inserted {
            bump(&mut self.stats.duplicates);
        } else if covered {
            bump(&mut self.stats.overlaps);
        }
        self.enforce_cap(sink);
    }

    /// While the buffer is over its cap, gives up on the first hole and delivers what became
    /// contiguous.
    fn enforce_cap(&mut self, sink: &mut dyn FnMut(Chunk<'_>)) {
        while let Some(ooo) = &self.ooo {
            if ooo.charged <= self.max_buffered as usize {
                break;
            }
            let Some(front) = ooo.segs.front() else {
                break;
            };
            let front_seq = front.seq;
            bump(&mut self.stats.buffer_overflows);
            self.lose(front_seq.wrapping_sub(self.next), sink);
            self.next = front_seq;
            self.drain_ready(sink);
        }
    }

    /// Delivers buffered pieces that start at `next`, and frees the buffer once empty.
    fn drain_ready(&mut self, sink: &mut dyn FnMut(Chunk<'_>)) {
        loop {
            let ready = match &self.ooo {
                Some(ooo) => ooo.segs.front().map(|p| p.seq == self.next),
                None => return,
            };
            match ready {
                Some(true) => {
                    self.pop_front_deliver(sink);
                }
                Some(false) => return,
                None => {
                    self.ooo = None;
                    return;
                }
            }
        }
    }

    /// Removes the first buffered piece, which starts at `next`, delivers it and returns its
    /// length. Frees the buffer once empty.
    fn pop_front_deliver(&mut self, sink: &mut dyn FnMut(Chunk<'_>)) -> u32 {
        let Some(ooo) = self.ooo.as_mut() else {
            return 0;
        };
        let Some(piece) = ooo.segs.pop_front() else {
            return 0;
        };
        ooo.data_bytes -= piece.data.len();
        ooo.charged -= piece.data.len() + PENDING_COST;
        if ooo.segs.is_empty() {
            self.ooo = None;
        }
        self.deliver_piece(&piece, sink);
        piece.len
    }

    /// Delivers a buffered piece starting at `next`.
    fn deliver_piece(&mut self, piece: &Pending, sink: &mut dyn FnMut(Chunk<'_>)) {
        emit(&piece.data, piece.len, &mut self.stats, sink);
        self.next = self.next.wrapping_add(piece.len);
    }

    /// Delivers a hole of `len` never-seen bytes, if any.
    fn lose(&mut self, len: u32, sink: &mut dyn FnMut(Chunk<'_>)) {
        if len > 0 {
            bump(&mut self.stats.gaps);
            self.stats.lost_bytes = self.stats.lost_bytes.saturating_add(len);
            sink(Chunk::Lost(len));
        }
    }
}

impl Pending {
    /// The piece `[from, to)` (offsets from `next`) of a segment that starts at offset
    /// `seg_start` with captured prefix `captured`.
    fn cut(next: u32, seg_start: u64, captured: &[u8], from: u64, to: u64) -> Self {
        // Offsets inside one segment fit in u32: a segment is at most u32::MAX bytes long.
        let a = (from - seg_start) as u32;
        let b = (to - seg_start) as u32;
        let (_, tail) = split(captured, a);
        let (data, _) = split(tail, b - a);
        Self {
            seq: next.wrapping_add(from as u32),
            len: b - a,
            data: data.into(),
        }
    }
}

/// Delivers `len` stream bytes of which `captured` (at most `len` long) is the captured prefix.
fn emit(captured: &[u8], len: u32, stats: &mut StreamStats, sink: &mut dyn FnMut(Chunk<'_>)) {
    if !captured.is_empty() {
        sink(Chunk::Data(captured));
    }
    let rest = len.saturating_sub(u32::try_from(captured.len()).unwrap_or(u32::MAX));
    if rest > 0 {
        stats.uncaptured_bytes = stats.uncaptured_bytes.saturating_add(rest);
        sink(Chunk::Uncaptured(rest));
    }
}

/// Splits a captured prefix at stream offset `at`: the part before and the part after. Past the
/// end of the captured bytes, the part after is empty.
fn split(captured: &[u8], at: u32) -> (&[u8], &[u8]) {
    captured.split_at(captured.len().min(at as usize))
}

/// Adds one to a saturating counter.
fn bump(counter: &mut u32) {
    *counter = counter.saturating_add(1);
}
