//! Memory per idle tracked flow: the analyzer holds N keep-alive connections that each finished
//! one exchange and wait for the next. Reports the analyzer's own accounting (`memory()`) and
//! the process's resident-memory growth (allocator overhead included), per flow.
//!
//! `cargo run --release -p apisensor-tests --bin flow_memory` prints a markdown section;
//! `cargo xtask bench` runs it.
use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use sensor_common::tcp_flags::{ACK, PSH, SYN};
use sensor_user::{
    analyzer::{Analyzer, AnalyzerConfig},
    segment::Segment,
};

const REQ: &str = "GET /users/42 HTTP/1.1\r\nHost: api.example\r\nUser-Agent: bench\r\n\r\n";
const RESP: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// Resident set size of this process in bytes, from `/proc/self/statm`.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm resident field");
    // SAFETY: sysconf has no preconditions.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    pages * page
}

/// Client address number `i`: IPv4 for even, IPv6 for odd flows.
fn client(i: u32) -> SocketAddr {
    let port = 1024 + (i % 60_000) as u16;
    if i.is_multiple_of(2) {
        let [_, _, a, b] = (i / 60_000).to_be_bytes();
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, a, b)), port)
    } else {
        let hi = (i / 60_000) as u16;
        SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, hi, 1)),
            port,
        )
    }
}

/// Opens `n` idle keep-alive flows; returns (accounted bytes per flow, RSS bytes per flow).
fn measure(n: u32) -> (usize, u64) {
    let cfg = AnalyzerConfig {
        max_flows: n as usize + 1,
        ..AnalyzerConfig::default()
    };
    let mut analyzer = Analyzer::new(cfg);
    let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)), 80);
    let mut out = Vec::new();
    let empty = analyzer.memory();
    let rss_before = rss_bytes();
    for i in 0..n {
        let c = client(i);
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
            seg(c, server, 0, SYN, ""),
            seg(server, c, 0, SYN | ACK, ""),
            seg(c, server, 1, PSH | ACK, REQ),
            seg(server, c, 1, PSH | ACK, RESP),
        ] {
            analyzer.on_segment(&s, &mut out);
        }
        out.clear();
    }
    assert_eq!(analyzer.flow_count(), n as usize, "every flow stays open");
    let accounted = (analyzer.memory() - empty) / n as usize;
    let rss = rss_bytes().saturating_sub(rss_before) / u64::from(n);
    (accounted, rss)
}

fn main() {
    let mut md = String::new();
    let _ = writeln!(md, "## Memory per idle tracked flow\n");
    let _ = writeln!(
        md,
        "N keep-alive connections (half IPv4, half IPv6), each after its handshake and one \
         request/response, waiting for the next request. `memory()` is the analyzer's own \
         accounting (flow slot, hash index, stream and HTTP state, heap buffers); RSS growth is \
         what the process's resident memory grew by, allocator and page granularity included. \
         Target: under 512 bytes.\n"
    );
    let _ = writeln!(
        md,
        "| flows | memory() bytes/flow | RSS growth bytes/flow | target |"
    );
    let _ = writeln!(md, "|---:|---:|---:|---|");
    for n in [10_000, 100_000, 300_000] {
        let (accounted, rss) = measure(n);
        let ok = if accounted < 512 { "PASS" } else { "MISS" };
        let _ = writeln!(md, "| {n} | {accounted} | {rss} | {ok} |");
    }
    let _ = writeln!(
        md,
        "\nReproduce: `cargo run --release -p apisensor-tests --bin flow_memory`, or \
         `cargo xtask bench`."
    );
    print!("{md}");
}
