//! Tests of the flow table: lifecycle scenarios checked through the counters, direction and
//! IPv6 handling checked through the transactions, memory per idle flow, and the property that
//! any segmentation and order of one HTTP conversation yields the same transactions.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;

use sensor_common::tcp_flags::{ACK, FIN, PSH, RST, SYN};

use super::{Analyzer, AnalyzerConfig, AnalyzerCounters};
use crate::http::Transaction;
use crate::http::conn::Watch;
use crate::segment::Segment;

/// Client ISN used by the scenarios.
const CISN: u32 = 1000;
/// Server ISN used by the scenarios.
const SISN: u32 = 5000;
/// Idle timeout used by the scenarios, ms.
const IDLE_MS: u64 = 60_000;

/// The endpoints of test flow `f`: 0..100 IPv4 to port 80, 100..200 IPv6 to port 80, 200..300
/// IPv4 to the unmonitored port 9999, 300 IPv4 from the monitored port 8080 to port 80.
fn endpoints(f: u16) -> (SocketAddr, SocketAddr) {
    let port = if f == 300 { 8080 } else { 40_000 + f };
    if f < 100 {
        (
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)), port),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)), 80),
        )
    } else if f < 200 {
        (
            SocketAddr::new(
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)),
                port,
            ),
            SocketAddr::new(
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10)),
                80,
            ),
        )
    } else {
        let server_port = if f == 300 { 80 } else { 9999 };
        (
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)), port),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)), server_port),
        )
    }
}

/// One step of a scenario.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// A segment on flow `f` at `ms`, client to server if `to_server`, with sequence number
    /// `seq` relative to the sender's ISN.
    Seg {
        f: u16,
        ms: u64,
        to_server: bool,
        flags: u8,
        rel_seq: u32,
        data: &'static str,
    },
    /// [`Analyzer::on_tick`] at `ms`.
    Tick(u64),
    /// [`Analyzer::finish`].
    Finish,
    /// Checks that this many flows are open.
    Active(usize),
}

/// Client to server.
const fn c(f: u16, ms: u64, flags: u8, rel_seq: u32, data: &'static str) -> Step {
    Step::Seg {
        f,
        ms,
        to_server: true,
        flags,
        rel_seq,
        data,
    }
}

/// Server to client.
const fn s(f: u16, ms: u64, flags: u8, rel_seq: u32, data: &'static str) -> Step {
    Step::Seg {
        f,
        ms,
        to_server: false,
        flags,
        rel_seq,
        data,
    }
}

/// The three-way handshake of flow `f` at `ms`.
const fn handshake(f: u16, ms: u64) -> [Step; 3] {
    [
        c(f, ms, SYN, 0, ""),
        s(f, ms, SYN | ACK, 0, ""),
        c(f, ms, ACK, 1, ""),
    ]
}

/// The segment of a step.
fn segment(f: u16, ms: u64, to_server: bool, flags: u8, rel_seq: u32, data: &[u8]) -> Segment<'_> {
    let (client, server) = endpoints(f);
    let (src, dst, isn, peer_isn) = if to_server {
        (client, server, CISN, SISN)
    } else {
        (server, client, SISN, CISN)
    };
    Segment {
        ts_ns: ms * 1_000_000,
        src,
        dst,
        seq: isn.wrapping_add(rel_seq),
        ack: peer_isn.wrapping_add(1),
        flags,
        payload_len: data.len() as u32,
        payload: data,
        syn: None,
    }
}

/// Runs `steps` on an analyzer with `max_flows` and returns it with the transactions.
fn run(max_flows: usize, steps: &[Step]) -> (Analyzer, Vec<Transaction>) {
    let mut analyzer = Analyzer::new(AnalyzerConfig {
        max_flows,
        idle_timeout_ms: IDLE_MS,
        ..AnalyzerConfig::default()
    });
    let mut out = Vec::new();
    for step in steps {
        match *step {
            Step::Seg {
                f,
                ms,
                to_server,
                flags,
                rel_seq,
                data,
            } => analyzer.on_segment(
                &segment(f, ms, to_server, flags, rel_seq, data.as_bytes()),
                &mut out,
            ),
            Step::Tick(ms) => analyzer.on_tick(ms * 1_000_000, &mut out),
            Step::Finish => analyzer.finish(&mut out),
            Step::Active(n) => assert_eq!(analyzer.flow_count(), n, "flows open at {step:?}"),
        }
    }
    (analyzer, unbox(out))
}

/// The records an analyzer emitted, by value.
fn unbox(out: Vec<Box<Transaction>>) -> Vec<Transaction> {
    out.into_iter().map(|tx| *tx).collect()
}

/// The lifecycle counters of a scenario.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Life {
    opened: u64,
    closed: u64,
    reset: u64,
    reused: u64,
    expired: u64,
    evicted: u64,
    finished: u64,
    orphans: u64,
    unmonitored: u64,
    rst_ignored: u64,
    active: u64,
    gaps: u64,
}

impl Life {
    /// The lifecycle part of `c`.
    fn of(c: &AnalyzerCounters) -> Self {
        Self {
            opened: c.flows_opened,
            closed: c.flows_closed,
            reset: c.flows_reset,
            reused: c.flows_reused,
            expired: c.flows_expired,
            evicted: c.flows_evicted,
            finished: c.flows_finished,
            orphans: c.orphans,
            unmonitored: c.unmonitored,
            rst_ignored: c.rst_ignored,
            active: c.flows_active,
            gaps: c.gaps,
        }
    }
}

/// Runs a scenario and checks its lifecycle counters and the flow count.
fn check(name: &str, max_flows: usize, steps: &[Step], want: Life) {
    let (analyzer, _) = run(max_flows, steps);
    let counters = analyzer.counters();
    assert_eq!(Life::of(&counters), want, "{name}: counters");
    assert_eq!(
        analyzer.flow_count() as u64,
        want.active,
        "{name}: flow count"
    );
    assert_eq!(
        counters.segments,
        steps
            .iter()
            .filter(|s| matches!(s, Step::Seg { .. }))
            .count() as u64,
        "{name}: segments"
    );
}

/// A request of 18 bytes.
const REQ: &str = "GET / HTTP/1.1\r\n\r\n";
/// A response of 38 bytes.
const RESP: &str = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

#[test]
#[expect(clippy::too_many_lines, reason = "a table with one row per scenario")]
fn lifecycle() {
    let [h0, h1, h2] = handshake(0, 0);
    let req_end = 1 + REQ.len() as u32;
    let resp_end = 1 + RESP.len() as u32;
    let fins = [
        c(0, 2, FIN | ACK, req_end, ""),
        s(0, 2, FIN | ACK, resp_end, ""),
    ];
    let exchange = [c(0, 1, PSH | ACK, 1, REQ), s(0, 1, PSH | ACK, 1, RESP)];
    let cases: Vec<(&str, usize, Vec<Step>, Life)> = vec![
        (
            "handshake, exchange, FIN from both sides",
            10,
            [h0, h1, h2]
                .into_iter()
                .chain(exchange)
                .chain(fins)
                .collect(),
            Life {
                opened: 1,
                closed: 1,
                ..Life::default()
            },
        ),
        (
            "FIN from one side keeps the flow",
            10,
            vec![h0, h1, h2, exchange[0], exchange[1], fins[0]],
            Life {
                opened: 1,
                active: 1,
                ..Life::default()
            },
        ),
        (
            "FIN carrying the last data",
            10,
            vec![
                h0,
                h1,
                c(0, 1, PSH | ACK | FIN, 1, REQ),
                s(0, 1, PSH | ACK | FIN, 1, RESP),
            ],
            Life {
                opened: 1,
                closed: 1,
                ..Life::default()
            },
        ),
        (
            "FINs ahead of reordered data wait for it",
            10,
            vec![h0, h1, h2, exchange[1], fins[1], fins[0], exchange[0]],
            Life {
                opened: 1,
                closed: 1,
                ..Life::default()
            },
        ),
        (
            "FINs after a hole wait, then expire with the gap counted",
            10,
            vec![
                h0,
                h1,
                h2,
                c(0, 1, PSH | ACK, 3, &REQ[2..]),
                exchange[1],
                fins[0],
                fins[1],
                Step::Tick(30_000),
                Step::Active(1),
                Step::Tick(61_000),
            ],
            Life {
                opened: 1,
                expired: 1,
                gaps: 1,
                ..Life::default()
            },
        ),
        (
            "RST from the server closes",
            10,
            vec![h0, s(0, 1, RST | ACK, 1, "")],
            Life {
                opened: 1,
                reset: 1,
                ..Life::default()
            },
        ),
        (
            "RST from the client after data closes",
            10,
            vec![h0, h1, h2, exchange[0], c(0, 1, RST, req_end, "")],
            Life {
                opened: 1,
                reset: 1,
                ..Life::default()
            },
        ),
        (
            "RST far outside the window is ignored",
            10,
            vec![h0, h1, h2, c(0, 1, RST, 0x4000_0000, "")],
            Life {
                opened: 1,
                rst_ignored: 1,
                active: 1,
                ..Life::default()
            },
        ),
        (
            "RST, ACK and FIN without payload open no flow",
            10,
            vec![
                c(0, 0, RST, 1, ""),
                c(0, 0, ACK, 1, ""),
                s(0, 0, FIN | ACK, 1, ""),
            ],
            Life {
                orphans: 3,
                ..Life::default()
            },
        ),
        (
            "mid-stream pickup opens a flow on data",
            10,
            vec![c(0, 0, PSH | ACK, 77, REQ), s(0, 0, PSH | ACK, 99, RESP)],
            Life {
                opened: 1,
                active: 1,
                ..Life::default()
            },
        ),
        (
            "retransmitted SYNs stay in one flow",
            10,
            vec![h0, h0, h1, h2, exchange[0], h0, h1],
            Life {
                opened: 1,
                active: 1,
                ..Life::default()
            },
        ),
        (
            "a SYN with a later ISN starts a new connection",
            10,
            vec![h0, h1, h2, exchange[0], c(0, 5, SYN, 100_000, "")],
            Life {
                opened: 2,
                reused: 1,
                active: 1,
                ..Life::default()
            },
        ),
        (
            "idle expiry at the timeout, not before",
            10,
            vec![
                h0,
                Step::Tick(IDLE_MS),
                Step::Active(1),
                Step::Tick(IDLE_MS + 1),
            ],
            Life {
                opened: 1,
                expired: 1,
                ..Life::default()
            },
        ),
        (
            "idle expiry takes only idle flows",
            10,
            vec![
                c(0, 0, SYN, 0, ""),
                c(1, 50_000, SYN, 0, ""),
                c(2, 10_000, SYN, 0, ""),
                c(2, 20_000, PSH | ACK, 1, REQ),
                Step::Tick(70_001),
            ],
            Life {
                opened: 3,
                expired: 1,
                active: 2,
                ..Life::default()
            },
        ),
        (
            "eviction takes the least recently used flow",
            2,
            vec![
                c(0, 0, SYN, 0, ""),
                c(1, 1, SYN, 0, ""),
                // Touch flow 0 so that flow 1 is the least recently used.
                c(0, 2, ACK, 1, ""),
                c(2, 3, SYN, 0, ""),
                // Flow 0 is still known: its data opens no flow. Flow 1 was evicted: its ACK
                // is an orphan.
                c(0, 4, PSH | ACK, 1, REQ),
                c(1, 4, ACK, 1, ""),
            ],
            Life {
                opened: 3,
                evicted: 1,
                orphans: 1,
                active: 2,
                ..Life::default()
            },
        ),
        (
            "IPv6 flow lifecycle",
            10,
            handshake(100, 0)
                .into_iter()
                .chain([
                    c(100, 1, PSH | ACK, 1, REQ),
                    s(100, 1, PSH | ACK, 1, RESP),
                    c(100, 2, FIN | ACK, req_end, ""),
                    s(100, 2, FIN | ACK, resp_end, ""),
                ])
                .collect(),
            Life {
                opened: 1,
                closed: 1,
                ..Life::default()
            },
        ),
        (
            "IPv4 and IPv6 flows with the same ports are distinct",
            10,
            [handshake(0, 0), handshake(100, 0)].concat(),
            Life {
                opened: 2,
                active: 2,
                ..Life::default()
            },
        ),
        (
            "both ports monitored: the flow seen first decides",
            10,
            handshake(300, 0)
                .into_iter()
                .chain([
                    c(300, 1, PSH | ACK, 1, REQ),
                    s(300, 1, PSH | ACK, 1, RESP),
                    c(300, 2, FIN | ACK, req_end, ""),
                    s(300, 2, FIN | ACK, resp_end, ""),
                ])
                .collect(),
            Life {
                opened: 1,
                closed: 1,
                ..Life::default()
            },
        ),
        (
            "unmonitored port",
            10,
            vec![c(200, 0, SYN, 0, ""), s(200, 0, PSH | ACK, 1, RESP)],
            Life {
                unmonitored: 2,
                ..Life::default()
            },
        ),
        (
            "finish closes every flow",
            10,
            [handshake(0, 0), handshake(1, 0), handshake(100, 0)]
                .concat()
                .into_iter()
                .chain([Step::Finish])
                .collect(),
            Life {
                opened: 3,
                finished: 3,
                ..Life::default()
            },
        ),
    ];
    for (name, max_flows, steps, want) in &cases {
        check(name, *max_flows, steps, *want);
    }
}

#[test]
fn many_flows_stay_bounded() {
    const FLOWS: u32 = 300_000;
    const MAX: usize = 100_000;
    let mut analyzer = Analyzer::new(AnalyzerConfig {
        max_flows: MAX,
        idle_timeout_ms: IDLE_MS,
        ..AnalyzerConfig::default()
    });
    let mut out = Vec::new();
    let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)), 80);
    let mut segments = 0u64;
    for i in 0..FLOWS {
        let client = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, (i / 50_000) as u8)),
            10_000 + (i % 50_000) as u16,
        );
        let ts_ns = u64::from(i) * 1000;
        let mut feed = |src, dst, seq, flags, payload: &[u8]| {
            analyzer.on_segment(
                &Segment {
                    ts_ns,
                    src,
                    dst,
                    seq,
                    ack: 0,
                    flags,
                    payload_len: payload.len() as u32,
                    payload,
                    syn: None,
                },
                &mut out,
            );
            segments += 1;
        };
        feed(client, server, i, SYN, b"");
        feed(server, client, !i, SYN | ACK, b"");
        feed(client, server, i + 1, PSH | ACK, REQ.as_bytes());
        feed(
            server,
            client,
            (!i).wrapping_add(1),
            PSH | ACK,
            RESP.as_bytes(),
        );
        // Every other flow closes; the rest stay idle and are evicted beyond MAX.
        if i % 2 == 0 {
            feed(client, server, i + 1 + REQ.len() as u32, FIN | ACK, b"");
            let resp_end = (!i).wrapping_add(1 + RESP.len() as u32);
            feed(server, client, resp_end, FIN | ACK, b"");
        }
    }
    let c = analyzer.counters();
    assert_eq!(c.segments, segments, "segments");
    assert_eq!(c.flows_opened, u64::from(FLOWS), "opened");
    assert_eq!(c.flows_closed, u64::from(FLOWS / 2), "closed");
    assert_eq!(analyzer.flow_count(), MAX, "table not full");
    // Every flow was closed, evicted, or is still open.
    assert_eq!(
        c.flows_evicted,
        c.flows_opened - c.flows_closed - MAX as u64,
        "evicted"
    );
    assert!(c.flows_evicted > 0, "nothing evicted");
    assert_eq!(c.transactions, out.len() as u64, "transactions counted");
}

/// A fully captured segment: client to server, flags, sequence number relative to the sender's
/// ISN, payload.
type Wire = (bool, u8, u32, &'static [u8]);

/// Feeds the segments of flow `f`, one millisecond apart, then ends the input, and returns the
/// analyzer and the transactions.
fn converse(f: u16, segs: &[Wire]) -> (Analyzer, Vec<Transaction>) {
    let mut analyzer = Analyzer::new(AnalyzerConfig::default());
    let mut out = Vec::new();
    for (ms, &(to_server, flags, rel_seq, data)) in (0u64..).zip(segs) {
        analyzer.on_segment(&segment(f, ms, to_server, flags, rel_seq, data), &mut out);
    }
    analyzer.finish(&mut out);
    (analyzer, unbox(out))
}

#[test]
fn direction_follows_the_monitored_port() {
    let req = REQ.as_bytes();
    let resp = RESP.as_bytes();
    let exchange: [Wire; 5] = [
        (true, SYN, 0, b""),
        (false, SYN | ACK, 0, b""),
        (true, PSH | ACK, 1, req),
        (false, PSH | ACK, 1, resp),
        (true, ACK, 1 + REQ.len() as u32, b""),
    ];
    // (name, flow, segments): every case must yield one GET answered by 200.
    let cases: [(&str, u16, &[Wire]); 5] = [
        ("IPv4 to port 80", 0, &exchange),
        ("IPv6 to port 80", 100, &exchange),
        ("both ports monitored", 300, &exchange),
        ("missed SYN", 1, &exchange[1..]),
        (
            "mid-stream pickup",
            2,
            &[(true, PSH | ACK, 1, req), (false, PSH | ACK, 1, resp)],
        ),
    ];
    for (name, f, segs) in cases {
        let (client, server) = endpoints(f);
        let (analyzer, out) = converse(f, segs);
        assert_eq!(out.len(), 1, "{name}: transactions {out:?}");
        let tx = &out[0];
        assert_eq!(
            (tx.method.as_ref(), tx.path.as_str(), tx.status),
            ("GET", "/", Some(200)),
            "{name}: transaction"
        );
        assert_eq!((tx.peer, tx.server), (client, server), "{name}: endpoints");
        let c = analyzer.counters();
        assert_eq!(
            (c.flows_opened, c.transactions),
            (1, 1),
            "{name}: flows and transactions"
        );
    }
}

#[test]
fn idle_flow_memory_is_small() {
    // 7000 flows fill the hash map to 85% of its 8192 buckets: the steady state of a busy
    // table, between two doublings.
    const FLOWS: u16 = 7000;
    let mut analyzer = Analyzer::new(AnalyzerConfig::default());
    let empty = analyzer.memory();
    let mut out = Vec::new();
    let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)), 80);
    for i in 0..FLOWS {
        let client = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9)), 10_000 + i);
        let seg = |src, dst, seq, flags, payload: &'static str| Segment {
            ts_ns: u64::from(i),
            src,
            dst,
            seq,
            ack: 0,
            flags,
            payload_len: payload.len() as u32,
            payload: payload.as_bytes(),
            syn: None,
        };
        for s in [
            seg(client, server, 0, SYN, ""),
            seg(server, client, 0, SYN | ACK, ""),
            seg(client, server, 1, PSH | ACK, REQ),
            seg(server, client, 1, PSH | ACK, RESP),
        ] {
            analyzer.on_segment(&s, &mut out);
        }
    }
    assert_eq!(out.len(), usize::from(FLOWS), "one transaction per flow");
    assert_eq!(analyzer.flow_count(), usize::from(FLOWS), "flows kept open");
    let per_flow = (analyzer.memory() - empty) / usize::from(FLOWS);
    assert!(per_flow < 512, "idle flow holds {per_flow} bytes");
}

/// One request and its response, for the conversation property.
#[derive(Clone, Debug)]
struct Exchange {
    method: &'static str,
    path: String,
    req_body: Vec<u8>,
    status: u16,
    resp_body: Vec<u8>,
    resp_chunked: bool,
}

/// Encodes a body with `Content-Length`, or chunked in chunks of up to 7 bytes.
fn encode_body(head: &mut Vec<u8>, body: &[u8], chunked: bool) {
    if chunked {
        head.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        for chunk in body.chunks(7) {
            head.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            head.extend_from_slice(chunk);
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"0\r\n\r\n");
    } else {
        head.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        head.extend_from_slice(body);
    }
}

impl Exchange {
    /// The request on the wire.
    fn request(&self) -> Vec<u8> {
        let mut m = format!(
            "{} {} HTTP/1.1\r\nHost: api.example.test\r\nUser-Agent: proptest\r\n",
            self.method, self.path
        )
        .into_bytes();
        encode_body(&mut m, &self.req_body, false);
        m
    }

    /// The response on the wire.
    fn response(&self) -> Vec<u8> {
        let mut m =
            format!("HTTP/1.1 {} X\r\nContent-Type: text/plain\r\n", self.status).into_bytes();
        encode_body(&mut m, &self.resp_body, self.resp_chunked);
        m
    }
}

/// How one message is cut: cut points, retransmitted ranges, and shuffle keys.
#[derive(Clone, Debug)]
struct Cutting {
    cuts: Vec<usize>,
    retrans: Vec<(usize, usize)>,
    keys: Vec<u32>,
}

/// The segments `(offset, bytes)` of a message of `len` bytes cut and shuffled by `cutting`.
fn cut(len: usize, cutting: &Cutting) -> Vec<(usize, usize)> {
    let mut points: Vec<usize> = cutting.cuts.iter().map(|c| c % len).collect();
    points.extend([0, len]);
    points.sort_unstable();
    points.dedup();
    let mut pieces: Vec<(usize, usize)> = points.windows(2).map(|w| (w[0], w[1])).collect();
    for &(start, n) in &cutting.retrans {
        let s = start % len;
        pieces.push((s, (s + n).min(len)));
    }
    let mut keyed: Vec<(u32, (usize, usize))> = pieces
        .into_iter()
        .enumerate()
        .map(|(i, p)| (cutting.keys.get(i).copied().unwrap_or(0), p))
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, p)| p).collect()
}

/// Feeds a whole conversation on one IPv6 flow (handshake, every message cut by its cutting
/// or whole if `None`, FINs) and returns the transactions with times cleared.
fn conversation(
    exchanges: &[Exchange],
    cuttings: Option<&[(Cutting, Cutting)]>,
    isns: (u32, u32),
) -> Vec<Transaction> {
    let (client, server) = endpoints(100);
    let mut analyzer = Analyzer::new(AnalyzerConfig::default());
    let mut out = Vec::new();
    let mut ms = 0u64;
    let mut feed = |to_server: bool, flags: u8, offset: usize, data: &[u8]| {
        let (src, dst, isn, peer) = if to_server {
            (client, server, isns.0, isns.1)
        } else {
            (server, client, isns.1, isns.0)
        };
        let syn = u32::from(flags & SYN == 0);
        ms += 1;
        analyzer.on_segment(
            &Segment {
                ts_ns: ms * 1_000_000,
                src,
                dst,
                seq: isn.wrapping_add(syn).wrapping_add(offset as u32),
                ack: peer.wrapping_add(1),
                flags: flags | ACK,
                payload_len: data.len() as u32,
                payload: data,
                syn: None,
            },
            &mut out,
        );
    };
    feed(true, SYN, 0, b"");
    feed(false, SYN, 0, b"");
    let (mut req_off, mut resp_off) = (0, 0);
    for (i, e) in exchanges.iter().enumerate() {
        for (to_server, msg, base, cutting) in [
            (true, e.request(), &mut req_off, cuttings.map(|c| &c[i].0)),
            (
                false,
                e.response(),
                &mut resp_off,
                cuttings.map(|c| &c[i].1),
            ),
        ] {
            let pieces = cutting.map_or_else(|| vec![(0, msg.len())], |c| cut(msg.len(), c));
            for (from, to) in pieces {
                feed(to_server, PSH, *base + from, &msg[from..to]);
            }
            *base += msg.len();
        }
    }
    feed(true, FIN, req_off, b"");
    feed(false, FIN, resp_off, b"");
    let c = analyzer.counters();
    assert_eq!(c.flows_closed, 1, "conversation not closed by its FINs");
    assert_eq!(c.gaps, 0, "conversation lost bytes");
    for tx in &mut out {
        tx.ts_ns = 0;
        tx.latency_ns = tx.latency_ns.map(|_| 0);
    }
    unbox(out)
}

/// A random exchange.
fn exchange() -> impl Strategy<Value = Exchange> {
    (
        prop_oneof![Just("GET"), Just("POST"), Just("PUT")],
        "/api/(items|users)/[0-9]{1,5}",
        proptest::collection::vec(b'a'..=b'z', 0..200),
        prop_oneof![Just(200u16), Just(201), Just(404), Just(500)],
        proptest::collection::vec(b'a'..=b'z', 0..300),
        any::<bool>(),
    )
        .prop_map(
            |(method, path, req_body, status, resp_body, resp_chunked)| Exchange {
                method,
                path,
                req_body: if method == "GET" {
                    Vec::new()
                } else {
                    req_body
                },
                status,
                resp_body,
                resp_chunked,
            },
        )
}

/// A random cutting of one message.
fn cutting() -> impl Strategy<Value = Cutting> {
    (
        proptest::collection::vec(any::<usize>(), 0..12),
        proptest::collection::vec((any::<usize>(), 1..100usize), 0..4),
        proptest::collection::vec(any::<u32>(), 20),
    )
        .prop_map(|(cuts, retrans, keys)| Cutting {
            cuts,
            retrans,
            keys,
        })
}

proptest! {
    /// The same keep-alive conversation, cut anywhere, with retransmissions, reordered within
    /// each message, yields the same transactions as whole messages in order.
    #[test]
    fn any_segmentation_and_order_same_transactions(
        (exchanges, cuttings) in proptest::collection::vec(exchange(), 1..5)
            .prop_flat_map(|ex| {
                let n = ex.len();
                (Just(ex), proptest::collection::vec((cutting(), cutting()), n))
            }),
        isns in (any::<u32>(), any::<u32>()),
    ) {
        let whole = conversation(&exchanges, None, isns);
        prop_assert_eq!(whole.len(), exchanges.len());
        for (tx, e) in whole.iter().zip(&exchanges) {
            prop_assert_eq!(tx.method.as_ref(), e.method);
            prop_assert_eq!(&tx.path, &e.path);
            prop_assert_eq!(tx.status, Some(e.status));
        }
        let cut = conversation(&exchanges, Some(&cuttings), isns);
        prop_assert_eq!(cut, whole);
    }
}

#[test]
fn global_buffer_cap_flushes_the_stream_that_exceeds_it() {
    let mut analyzer = Analyzer::new(AnalyzerConfig {
        max_buffered_total: 1000,
        ..AnalyzerConfig::default()
    });
    let mut out = Vec::new();
    let body = [b'x'; 600];
    // Two flows each buffer 600 bytes behind a hole: the second one goes over the cap.
    for f in [0, 1] {
        for step in handshake(f, 0) {
            if let Step::Seg {
                f,
                ms,
                to_server,
                flags,
                rel_seq,
                data,
            } = step
            {
                let seg = segment(f, ms, to_server, flags, rel_seq, data.as_bytes());
                analyzer.on_segment(&seg, &mut out);
            }
        }
        analyzer.on_segment(&segment(f, 1, true, PSH | ACK, 100, &body), &mut out);
    }
    let c = analyzer.counters();
    assert_eq!((c.buffer_pressure, c.gaps), (1, 1), "second stream flushed");
    assert!(
        c.buffered_bytes >= 600 && c.buffered_bytes <= 1000,
        "first stream still buffered: {}",
        c.buffered_bytes
    );
    analyzer.finish(&mut out);
    let c = analyzer.counters();
    assert_eq!(
        (c.buffered_bytes, c.gaps),
        (0, 2),
        "everything flushed at the end"
    );
    assert_eq!(c.lost_bytes, 2 * 99, "holes before both segments");
}

/// Watching reports a request as it ends, before its response, with its fingerprint, and
/// only the requests of the clients it names: the others are not even fingerprinted.
#[test]
fn watching_reports_the_named_clients_requests_as_they_end() {
    let (watched, server) = endpoints(0);
    let mut analyzer = Analyzer::new(AnalyzerConfig::default());
    let (mut out, mut ended) = (Vec::new(), Vec::new());
    // Flow 0 from the watched IPv4 client, flow 100 from an IPv6 one: each sends a request.
    for f in [0, 100] {
        let steps: [Wire; 4] = [
            (true, SYN, 0, b""),
            (false, SYN | ACK, 0, b""),
            (true, ACK, 1, b""),
            (true, PSH | ACK, 1, REQ.as_bytes()),
        ];
        for (ms, (to_server, flags, rel_seq, data)) in (0u64..).zip(steps) {
            let watch = Watch {
                clients: &|client| client == watched.ip(),
                ended: &mut ended,
            };
            let seg = segment(f, ms, to_server, flags, rel_seq, data);
            analyzer.on_segment_watching(&seg, &mut out, watch);
        }
    }
    assert!(out.is_empty(), "nothing answered yet: {out:?}");
    assert_eq!(ended.len(), 1, "one request reported: {ended:?}");
    let r = &ended[0];
    assert_eq!(
        (r.client, r.peer, r.server),
        (watched.ip(), watched, server)
    );
    assert!(r.fingerprint.is_some(), "its fingerprint: {r:?}");
    // Not watching: the same request is parsed, and nothing is reported.
    analyzer.on_segment(
        &segment(1, 10, true, PSH | ACK, 1, REQ.as_bytes()),
        &mut out,
    );
    assert_eq!(ended.len(), 1);
}
