//! Tests of [`Stream`]: a table of segment sequences with the chunks and counters they must
//! produce, then properties over random segmentations and orders.

use proptest::prelude::*;

use super::{PENDING_COST, ReassemblyLimits, Stream, StreamStats};
use crate::segment::Chunk;

/// A delivered chunk, owned, with adjacent chunks of the same kind merged so that expectations
/// do not depend on how the input was cut.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Out {
    /// Captured bytes.
    D(Vec<u8>),
    /// Uncaptured hole.
    U(u32),
    /// Lost hole.
    L(u32),
}

/// Captured bytes from a string.
fn d(s: &str) -> Out {
    Out::D(s.as_bytes().to_vec())
}

/// Appends a chunk to `out`, merging it with the last one when they are of the same kind.
fn collect(out: &mut Vec<Out>, chunk: Chunk<'_>) {
    match (out.last_mut(), chunk) {
        (Some(Out::D(v)), Chunk::Data(b)) => v.extend_from_slice(b),
        (Some(Out::U(n)), Chunk::Uncaptured(m)) | (Some(Out::L(n)), Chunk::Lost(m)) => *n += m,
        (_, Chunk::Data(b)) => out.push(Out::D(b.to_vec())),
        (_, Chunk::Uncaptured(m)) => out.push(Out::U(m)),
        (_, Chunk::Lost(m)) => out.push(Out::L(m)),
    }
}

/// One input segment: sequence number, true length, captured prefix.
type Seg = (u32, u32, &'static str);

/// A fully captured segment.
const fn full(seq: u32, data: &'static str) -> Seg {
    (seq, data.len() as u32, data)
}

/// One table row.
struct Case {
    name: &'static str,
    limits: ReassemblyLimits,
    isn: Option<u32>,
    segs: Vec<Seg>,
    flush: bool,
    want: Vec<Out>,
    stats: StreamStats,
}

impl Default for Case {
    fn default() -> Self {
        Self {
            name: "",
            limits: ReassemblyLimits::default(),
            isn: Some(0),
            segs: Vec::new(),
            flush: false,
            want: Vec::new(),
            stats: StreamStats::default(),
        }
    }
}

/// Feeds the segments of `case` in order and checks the delivered chunks and the counters.
fn check(case: &Case) {
    let mut stream = Stream::new(case.limits);
    if let Some(isn) = case.isn {
        stream.set_isn(isn);
    }
    let mut out = Vec::new();
    for &(seq, len, data) in &case.segs {
        stream.push(seq, len, data.as_bytes(), &mut |c| collect(&mut out, c));
    }
    if case.flush {
        stream.flush(&mut |c| collect(&mut out, c));
        assert_eq!(stream.memory(), 0, "{}: memory held after flush", case.name);
    }
    assert_eq!(out, case.want, "{}: chunks", case.name);
    assert_eq!(stream.stats(), case.stats, "{}: stats", case.name);
}

#[test]
#[expect(clippy::too_many_lines, reason = "a table with one row per case")]
fn table() {
    let small_cap = ReassemblyLimits {
        window: 1000,
        max_buffered_bytes: PENDING_COST + 4,
    };
    let small_window = ReassemblyLimits {
        window: 100,
        max_buffered_bytes: 64 * 1024,
    };
    let cases = [
        Case {
            name: "in order",
            isn: Some(999),
            segs: vec![full(1000, "GET "), full(1004, "/ HTTP/1.1\r\n")],
            want: vec![d("GET / HTTP/1.1\r\n")],
            ..Case::default()
        },
        Case {
            name: "mid-stream pickup starts at the first segment",
            isn: None,
            segs: vec![full(5000, "abc"), full(5003, "def")],
            want: vec![d("abcdef")],
            ..Case::default()
        },
        Case {
            name: "mid-stream pickup: bytes before the first segment are old",
            isn: None,
            segs: vec![full(5003, "def"), full(5000, "abc"), full(5006, "g")],
            want: vec![d("defg")],
            stats: StreamStats {
                duplicates: 1,
                ..StreamStats::default()
            },
            ..Case::default()
        },
        Case {
            name: "zero-length segments do not start the stream",
            isn: None,
            segs: vec![(9, 0, ""), full(20, "ab")],
            want: vec![d("ab")],
            ..Case::default()
        },
        Case {
            name: "reordered",
            segs: vec![full(1, "ab"), full(5, "ef"), full(3, "cd")],
            want: vec![d("abcdef")],
            stats: StreamStats {
                out_of_order: 1,
                ..StreamStats::default()
            },
            ..Case::default()
        },
        Case {
            name: "reversed",
            segs: vec![full(7, "gh"), full(5, "ef"), full(3, "cd"), full(1, "ab")],
            want: vec![d("abcdefgh")],
            stats: StreamStats {
                out_of_order: 3,
                ..StreamStats::default()
            },
            ..Case::default()
        },
        Case {
            name: "duplicate of delivered data",
            segs: vec![full(1, "abc"), full(1, "abc"), full(4, "d")],
            want: vec![d("abcd")],
            stats: StreamStats {
                duplicates: 1,
                ..StreamStats::default()
            },
            ..Case::default()
        },
        Case {
            name: "duplicate of buffered data",
            segs: vec![full(4, "de"), full(4, "de"), full(1, "abc")],
            want: vec![d("abcde")],
            stats: StreamStats {
                out_of_order: 2,
                duplicates: 1,
                ..StreamStats::default()
            },
            ..Case::default()
        },
        Case {
            name: "overlap with delivered data: old data wins",
            segs: vec![full(1, "abc"), full(2, "XYde")],
            want: vec![d("abcde")],
            stats: StreamStats {
                overlaps: 1,
                ..StreamStats::default()
            },
            ..Case::default()
        },
        Case {
            name: "overlap with buffered data: old data wins",
            segs: vec![full(5, "EFG"), full(3, "cdXYZh"), full(1, "ab")],
            want: vec![d("abcdEFGh")],
            stats: StreamStats {
                out_of_order: 2,
                overlaps: 1,
                ..StreamStats::default()
            },
            ..Case::default()
        },
        Case {
            name: "in-order segment over buffered data: old data wins",
            segs: vec![full(4, "DE"), full(1, "abcxyz")],
            want: vec![d("abcDEz")],
            stats: StreamStats {
                out_of_order: 1,
                overlaps: 1,
                ..StreamStats::default()
            },
            ..Case::default()
        },
        Case {
            name: "gap waits for the hole",
            segs: vec![full(1, "ab"), full(6, "fg")],
            want: vec![d("ab")],
            stats: StreamStats {
                out_of_order: 1,
                ..StreamStats::default()
            },
            ..Case::default()
        },
        Case {
            name: "gap delivered as lost on flush",
            segs: vec![full(1, "ab"), full(6, "fg"), full(10, "j")],
            flush: true,
            want: vec![d("ab"), Out::L(3), d("fg"), Out::L(2), d("j")],
            stats: StreamStats {
                out_of_order: 2,
                gaps: 2,
                lost_bytes: 5,
                ..StreamStats::default()
            },
            ..Case::default()
        },
        Case {
            name: "wrap-around across 2^32",
            isn: Some(0xFFFF_FFFC),
            segs: vec![full(0, "de"), full(0xFFFF_FFFD, "abc"), full(2, "fg")],
            want: vec![d("abcdefg")],
            stats: StreamStats {
                out_of_order: 1,
                ..StreamStats::default()
            },
            ..Case::default()
        },
        Case {
            name: "wrap-around with a hole and a retransmission",
            isn: Some(0xFFFF_FFFE),
            segs: vec![
                full(0xFFFF_FFFF, "ab"),
                full(0xFFFF_FFFF, "ab"),
                full(3, "ef"),
            ],
            flush: true,
            want: vec![d("ab"), Out::L(2), d("ef")],
            stats: StreamStats {
                duplicates: 1,
                out_of_order: 1,
                gaps: 1,
                lost_bytes: 2,
                ..StreamStats::default()
            },
            ..Case::default()
        },
        Case {
            name: "uncaptured tail in order",
            segs: vec![(1, 10, "GET "), full(11, "abc")],
            want: vec![d("GET "), Out::U(6), d("abc")],
            stats: StreamStats {
                truncated_segments: 1,
                uncaptured_bytes: 6,
                ..StreamStats::default()
            },
            ..Case::default()
        },
        Case {
            name: "uncaptured tail out of order",
            segs: vec![full(11, "abc"), (1, 10, "GET ")],
            want: vec![d("GET "), Out::U(6), d("abc")],
            stats: StreamStats {
                truncated_segments: 1,
                uncaptured_bytes: 6,
                out_of_order: 1,
                ..StreamStats::default()
            },
            ..Case::default()
        },
        Case {
            name: "buffered uncaptured tail split by an overlap",
            segs: vec![full(6, "F"), (3, 8, "cd"), full(1, "ab")],
            want: vec![d("abcd"), Out::U(1), d("F"), Out::U(4)],
            stats: StreamStats {
                truncated_segments: 1,
                uncaptured_bytes: 5,
                out_of_order: 2,
                overlaps: 1,
                ..StreamStats::default()
            },
            ..Case::default()
        },
        Case {
            name: "nothing captured",
            segs: vec![(1, 5, ""), full(6, "x")],
            want: vec![Out::U(5), d("x")],
            stats: StreamStats {
                truncated_segments: 1,
                uncaptured_bytes: 5,
                ..StreamStats::default()
            },
            ..Case::default()
        },
        Case {
            name: "a fully captured retransmission does not replace an uncaptured hole",
            segs: vec![(1, 10, "GET "), full(1, "GET /index")],
            want: vec![d("GET "), Out::U(6)],
            stats: StreamStats {
                truncated_segments: 1,
                uncaptured_bytes: 6,
                duplicates: 1,
                ..StreamStats::default()
            },
            ..Case::default()
        },
        Case {
            name: "captured bytes beyond the length are ignored",
            segs: vec![(1, 2, "abcd"), full(3, "c")],
            want: vec![d("abc")],
            ..Case::default()
        },
        Case {
            name: "buffer cap: skip the first hole, keep what fits",
            limits: small_cap,
            segs: vec![full(1, "ab"), full(5, "efg"), full(10, "jk"), full(8, "hi")],
            want: vec![d("ab"), Out::L(2), d("efghijk")],
            stats: StreamStats {
                out_of_order: 2,
                buffer_overflows: 1,
                gaps: 1,
                lost_bytes: 2,
                ..StreamStats::default()
            },
            ..Case::default()
        },
        Case {
            name: "buffer cap: exactly full is kept",
            limits: small_cap,
            segs: vec![full(1, "ab"), full(5, "efgh"), full(3, "cd")],
            want: vec![d("abcdefgh")],
            stats: StreamStats {
                out_of_order: 1,
                ..StreamStats::default()
            },
            ..Case::default()
        },
        Case {
            name: "buffer cap: a segment larger than the cap",
            limits: small_cap,
            segs: vec![full(1, "ab"), full(6, "fghijklmnop")],
            want: vec![d("ab"), Out::L(3), d("fghijklmnop")],
            stats: StreamStats {
                out_of_order: 1,
                buffer_overflows: 1,
                gaps: 1,
                lost_bytes: 3,
                ..StreamStats::default()
            },
            ..Case::default()
        },
        Case {
            name: "window jump delivers the buffer then skips",
            limits: small_window,
            segs: vec![full(1, "ab"), full(10, "j"), full(500, "zz"), full(3, "c")],
            want: vec![d("ab"), Out::L(7), d("j"), Out::L(489), d("zz")],
            stats: StreamStats {
                out_of_order: 1,
                window_jumps: 1,
                gaps: 2,
                lost_bytes: 496,
                duplicates: 1,
                ..StreamStats::default()
            },
            ..Case::default()
        },
        Case {
            name: "a segment exactly one window ahead is buffered",
            limits: small_window,
            segs: vec![full(1, "a"), full(102, "z")],
            flush: true,
            want: vec![d("a"), Out::L(100), d("z")],
            stats: StreamStats {
                out_of_order: 1,
                gaps: 1,
                lost_bytes: 100,
                ..StreamStats::default()
            },
            ..Case::default()
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn set_isn_after_start_is_ignored() {
    let mut stream = Stream::new(ReassemblyLimits::default());
    let mut out = Vec::new();
    stream.push(100, 2, b"ab", &mut |c| collect(&mut out, c));
    stream.set_isn(7);
    stream.push(102, 2, b"cd", &mut |c| collect(&mut out, c));
    assert_eq!(out, vec![d("abcd")], "set_isn moved a started stream");
    assert_eq!(stream.next_seq(), Some(104), "next sequence number");
}

#[test]
fn fin_completes_once_everything_before_it_is_delivered() {
    /// Name, ISN, segments, FIN end relative to the ISN, complete.
    type FinCase<'a> = (&'a str, Option<u32>, &'a [Seg], u32, bool);
    let cases: [FinCase<'_>; 6] = [
        ("nothing seen", None, &[], 1, true),
        ("SYN only", Some(0), &[], 1, true),
        ("all delivered", Some(0), &[full(1, "abc")], 4, true),
        ("hole before the FIN", Some(0), &[full(3, "c")], 4, false),
        ("FIN ahead of the data", Some(0), &[full(1, "ab")], 4, false),
        (
            "across 2^32",
            Some(u32::MAX - 1),
            &[full(u32::MAX, "ab"), full(1, "c")],
            4,
            true,
        ),
    ];
    for (name, isn, segs, fin_end, want) in cases {
        let mut stream = Stream::new(ReassemblyLimits::default());
        if let Some(isn) = isn {
            stream.set_isn(isn);
        }
        for &(seq, len, data) in segs {
            stream.push(seq, len, data.as_bytes(), &mut |_| {});
        }
        assert!(!stream.is_complete(), "{name}: complete before any FIN");
        stream.set_fin(isn.unwrap_or(0).wrapping_add(fin_end));
        assert_eq!(stream.is_complete(), want, "{name}: complete");
    }
}

#[test]
fn in_order_data_is_not_copied() {
    let mut stream = Stream::new(ReassemblyLimits::default());
    stream.set_isn(41);
    let payload = b"HTTP/1.1 200 OK\r\n".to_vec();
    let mut ptrs = Vec::new();
    stream.push(42, payload.len() as u32, &payload, &mut |c| {
        if let Chunk::Data(b) = c {
            ptrs.push((b.as_ptr(), b.len()));
        }
    });
    assert_eq!(
        ptrs,
        vec![(payload.as_ptr(), payload.len())],
        "in-order data must be delivered from the input slice"
    );
    assert_eq!(stream.memory(), 0, "an in-order stream must not allocate");
}

#[test]
fn memory_follows_the_buffer() {
    let mut stream = Stream::new(ReassemblyLimits::default());
    stream.set_isn(0);
    let mut sink = |_: Chunk<'_>| {};
    stream.push(11, 100, &[b'x'; 100], &mut sink);
    let held = stream.memory();
    assert!(held >= 100, "buffered bytes not reported: {held}");
    assert!(stream.has_buffered(), "segment not buffered");
    stream.push(1, 10, &[b'y'; 10], &mut sink);
    assert_eq!(stream.memory(), 0, "buffer not freed once drained");
    assert!(!stream.has_buffered(), "buffer still reported");
}

/// Cuts `len` bytes at the sorted, deduplicated `cuts` into `(start, end)` ranges.
fn ranges(len: usize, cuts: &[usize]) -> Vec<(usize, usize)> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % len).filter(|&c| c > 0).collect();
    points.push(0);
    points.push(len);
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| (w[0], w[1])).collect()
}

/// Applies `order` (random keys) to `items` as a permutation.
fn shuffle<T: Clone>(items: &[T], keys: &[u32]) -> Vec<T> {
    let mut keyed: Vec<(u32, usize)> = (0..items.len())
        .map(|i| (keys.get(i).copied().unwrap_or(0), i))
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, i)| items[i].clone()).collect()
}

/// Per stream byte: `Some` if delivered as data, `None` if delivered as a hole; and whether
/// some hole was lost rather than uncaptured.
fn positions(chunks: &[Out]) -> (Vec<Option<u8>>, u64) {
    let mut pos = Vec::new();
    let mut lost = 0;
    for chunk in chunks {
        match chunk {
            Out::D(b) => pos.extend(b.iter().map(|&x| Some(x))),
            Out::U(n) => pos.extend(std::iter::repeat_n(None, *n as usize)),
            Out::L(n) => {
                pos.extend(std::iter::repeat_n(None, *n as usize));
                lost += u64::from(*n);
            }
        }
    }
    (pos, lost)
}

/// Feeds `(start, end, captured_len)` pieces of `data` to a stream with ISN `isn`, then flushes.
fn run(
    limits: ReassemblyLimits,
    isn: u32,
    data: &[u8],
    pieces: &[(usize, usize, usize)],
) -> (Vec<Out>, Stream) {
    let mut stream = Stream::new(limits);
    stream.set_isn(isn);
    let mut out = Vec::new();
    for &(start, end, cap) in pieces {
        let seq = isn.wrapping_add(1).wrapping_add(start as u32);
        let captured = &data[start..(start + cap).min(end)];
        stream.push(seq, (end - start) as u32, captured, &mut |c| {
            collect(&mut out, c);
        });
    }
    stream.flush(&mut |c| collect(&mut out, c));
    (out, stream)
}

proptest! {
    /// Fully captured segments, cut anywhere, with retransmissions that overlap arbitrarily,
    /// in any order within the window: the output is exactly the stream.
    #[test]
    fn any_segmentation_and_order_full_capture(
        data in proptest::collection::vec(any::<u8>(), 1..3000),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
        retrans in proptest::collection::vec((any::<usize>(), 1..400usize), 0..10),
        keys in proptest::collection::vec(any::<u32>(), 60),
        isn in any::<u32>(),
    ) {
        let mut pieces: Vec<(usize, usize, usize)> =
            ranges(data.len(), &cuts).into_iter().map(|(s, e)| (s, e, e - s)).collect();
        for (start, len) in retrans {
            let s = start % data.len();
            let e = (s + len).min(data.len());
            pieces.push((s, e, e - s));
        }
        let pieces = shuffle(&pieces, &keys);
        let (out, stream) = run(ReassemblyLimits::default(), isn, &data, &pieces);
        prop_assert_eq!(out, vec![Out::D(data.clone())]);
        prop_assert_eq!(stream.memory(), 0);
        prop_assert_eq!(stream.stats().gaps, 0);
    }

    /// Partly captured segments (no retransmissions), cut anywhere, in any order: the output,
    /// byte by byte, is the same as in order, and every data byte is the stream's.
    #[test]
    fn any_order_partial_capture(
        data in proptest::collection::vec(any::<u8>(), 1..3000),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
        caps in proptest::collection::vec(any::<usize>(), 41),
        keys in proptest::collection::vec(any::<u32>(), 41),
        isn in any::<u32>(),
    ) {
        let pieces: Vec<(usize, usize, usize)> = ranges(data.len(), &cuts)
            .into_iter()
            .enumerate()
            .map(|(i, (s, e))| (s, e, caps[i] % (e - s + 1)))
            .collect();
        let (in_order, _) = run(ReassemblyLimits::default(), isn, &data, &pieces);
        let shuffled = shuffle(&pieces, &keys);
        let (out, stream) = run(ReassemblyLimits::default(), isn, &data, &shuffled);
        let (pos, lost) = positions(&out);
        prop_assert_eq!(positions(&in_order), (pos.clone(), 0));
        prop_assert_eq!(lost, 0);
        prop_assert_eq!(pos.len(), data.len());
        for (i, b) in pos.iter().enumerate() {
            if let Some(b) = b {
                prop_assert_eq!(*b, data[i]);
            }
        }
        let holes: usize = pieces.iter().map(|(s, e, c)| e - s - c).sum();
        prop_assert_eq!(u64::from(stream.stats().uncaptured_bytes), holes as u64);
    }

    /// With a tiny buffer and window, in any order and with retransmissions, the stream still
    /// accounts for every byte exactly once, data bytes are right, and losses are counted.
    #[test]
    fn tight_limits_account_for_every_byte(
        data in proptest::collection::vec(any::<u8>(), 1..3000),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
        retrans in proptest::collection::vec((any::<usize>(), 1..400usize), 0..10),
        keys in proptest::collection::vec(any::<u32>(), 60),
        isn in any::<u32>(),
        window in 1..2000u32,
        cap in 0..600usize,
    ) {
        let mut pieces: Vec<(usize, usize, usize)> =
            ranges(data.len(), &cuts).into_iter().map(|(s, e)| (s, e, e - s)).collect();
        for (start, len) in retrans {
            let s = start % data.len();
            let e = (s + len).min(data.len());
            pieces.push((s, e, e - s));
        }
        let pieces = shuffle(&pieces, &keys);
        let limits = ReassemblyLimits { window, max_buffered_bytes: cap };
        let (out, stream) = run(limits, isn, &data, &pieces);
        let (pos, lost) = positions(&out);
        // The last piece is either delivered or behind a jump that went past it: either way
        // the stream ends exactly at the end of the data.
        prop_assert_eq!(pos.len(), data.len());
        for (i, b) in pos.iter().enumerate() {
            if let Some(b) = b {
                prop_assert_eq!(*b, data[i]);
            }
        }
        prop_assert_eq!(u64::from(stream.stats().lost_bytes), lost);
        prop_assert_eq!(stream.memory(), 0);
        let holes = pos.iter().filter(|p| p.is_none()).count() as u64;
        prop_assert_eq!(holes, lost);
    }
}

proptest! {
    /// Arbitrary segments anywhere in the sequence space, of any length, with any limits: no
    /// panic, no endless loop, and the buffer stays within its cap (plus the slack of its
    /// growable index).
    #[test]
    fn hostile_segments_stay_bounded(
        segs in proptest::collection::vec(
            (any::<u32>(), any::<u32>(), proptest::collection::vec(any::<u8>(), 0..300)),
            1..60,
        ),
        near in proptest::collection::vec((0..3000u32, 0..500u32), 0..60),
        isn in proptest::option::of(any::<u32>()),
        window in any::<u32>(),
        cap in 0..5000usize,
    ) {
        let mut stream = Stream::new(ReassemblyLimits { window, max_buffered_bytes: cap });
        if let Some(isn) = isn {
            stream.set_isn(isn);
        }
        let base = isn.unwrap_or(0);
        let near = near.iter().map(|&(off, len)| (base.wrapping_add(off), len, vec![b'n'; 100]));
        let mut lost = 0u64;
        for (seq, len, captured) in segs.into_iter().zip(near.chain(std::iter::repeat_with(
            || (0, 0, Vec::new()),
        ))).flat_map(|(a, b)| [a, b]) {
            stream.push(seq, len, &captured, &mut |c| match c {
                Chunk::Data(_) | Chunk::Uncaptured(_) => {}
                Chunk::Lost(n) => lost += u64::from(n),
            });
            prop_assert!(stream.memory() <= 2 * cap + 256, "memory {}", stream.memory());
        }
        stream.flush(&mut |c| {
            if let Chunk::Lost(n) = c {
                lost += u64::from(n);
            }
        });
        prop_assert_eq!(stream.memory(), 0);
        prop_assert_eq!(u64::from(stream.stats().lost_bytes), lost.min(u64::from(u32::MAX)));
    }
}
