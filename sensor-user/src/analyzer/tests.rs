//! Tests of the flow table: lifecycle scenarios checked through the counters, direction and
//! IPv6 handling checked through the transactions, memory per idle flow, and the property that
//! any segmentation and order of one HTTP conversation yields the same transactions.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use sensor_common::tcp_flags::{ACK, FIN, PSH, RST, SYN};

use super::{Analyzer, AnalyzerConfig, AnalyzerCounters};
use crate::http::Transaction;
use crate::segment::Segment;

/// Client ISN used by the scenarios.
const CISN: u32 = 1000;
/// Server ISN used by the scenarios.
const SISN: u32 = 5000;
/// Idle timeout used by the scenarios, ms.
const IDLE_MS: u64 = 60_000;

/// The endpoints of test flow `f`: 0..100 IPv4 to port 80, 100..200 IPv6 to port 80, 200.. IPv4
/// to the unmonitored port 9999.
fn endpoints(f: u16) -> (SocketAddr, SocketAddr) {
    let port = 40_000 + f;
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
        (
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)), port),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)), 9999),
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
    (analyzer, out)
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
