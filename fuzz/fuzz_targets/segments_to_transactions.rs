//! Fuzz target: arbitrary bytes read as a sequence of TCP segments on a few flows, fed to the
//! analyzer (flow table, reassembly, HTTP), and its transactions to the detectors and the
//! decision policy. Covers what a capture file cannot reach directly: arbitrary sequence
//! numbers, flag combinations, overlaps, gaps, partial captures, ticks.
//!
//! Each segment is an 8-byte control block followed by its captured payload:
//! `[ctl, flags, seq_lo, seq_hi, len_lo, len_hi, captured_div_8, dt_ms]`.
//! `ctl` bit 0 is the direction, bits 1-2 the flow, bit 3 an absolute sequence jump, bit 4
//! IPv6 addresses, bit 7 a tick before the segment.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use sensor_user::analyzer::{Analyzer, AnalyzerConfig};
use sensor_user::decide::{Policy, PolicyConfig};
use sensor_user::detect::{DetectConfig, Detection, Packets};
use sensor_user::reassembly::ReassemblyLimits;
use sensor_user::segment::Segment;

/// Flow table size, smaller than the four flows the input can address so eviction runs.
const MAX_FLOWS: usize = 3;
/// Largest payload length a segment may claim.
const MAX_LEN: u32 = 9000;

fuzz_target!(|data: &[u8]| {
    let cfg = AnalyzerConfig {
        monitored_ports: vec![80],
        max_flows: MAX_FLOWS,
        idle_timeout_ms: 50,
        reassembly: ReassemblyLimits {
            window: 64 * 1024,
            max_buffered_bytes: 4 * 1024,
        },
        ..AnalyzerConfig::default()
    };
    let mut analyzer = Analyzer::new(cfg);
    let mut out = Vec::new();
    let mut detect_cfg = DetectConfig::default();
    // Tiny tables: every input reaches their eviction paths.
    let l = &mut detect_cfg.limits;
    (l.sources, l.prefixes, l.accounts, l.sessions) = (2, 2, 2, 2);
    (l.endpoints, l.detailed_sources, l.identified_sources) = (2, 2, 2);
    l.detail_after = 1;
    let mut detection = Detection::new(detect_cfg, [7; 16], None, 1_700_000_000_000_000_000)
        .expect("a fresh engine needs no baselines");
    let mut policy = Policy::new(PolicyConfig::default(), Vec::new());
    let mut findings = Vec::new();
    // Per flow and direction: the next sequence number the generator assumes.
    let mut next_seq = [[1_000_u32; 2]; 4];
    let mut ts_ns = 1_700_000_000_000_000_000_u64;
    let mut rest = data;
    while let Some((ctl, tail)) = rest.split_first_chunk::<8>() {
        let [c, flags, s0, s1, l0, l1, cap8, dt] = *ctl;
        let dir = usize::from(c & 1);
        let flow = usize::from((c >> 1) & 3);
        let payload_len = u32::from(u16::from_le_bytes([l0, l1])) % (MAX_LEN + 1);
        let want_cap = (usize::from(cap8) * 8).min(payload_len as usize);
        let cap = want_cap.min(tail.len());
        let (payload, after) = tail.split_at(cap);
        rest = after;
        let off = u32::from(u16::from_le_bytes([s0, s1]));
        let seq = if c & 8 != 0 {
            off.wrapping_mul(65_537)
        } else {
            // Mostly near the expected sequence: small offsets make overlaps and short gaps.
            next_seq[flow][dir]
                .wrapping_add(off % 4096)
                .wrapping_sub(2048)
        };
        next_seq[flow][dir] = seq.wrapping_add(payload_len);
        ts_ns = ts_ns.saturating_add(u64::from(dt) * 1_000_000);
        let port = 40_000 + flow as u16;
        let (client, server): (IpAddr, IpAddr) = if c & 16 != 0 {
            (
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            )
        } else {
            (
                IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
                IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
            )
        };
        let (src, dst) = if dir == 0 {
            (SocketAddr::new(client, port), SocketAddr::new(server, 80))
        } else {
            (SocketAddr::new(server, 80), SocketAddr::new(client, port))
        };
        if c & 0x80 != 0 {
            analyzer.on_tick(ts_ns, &mut out);
        }
        let seg = Segment {
            ts_ns,
            src,
            dst,
            seq,
            ack: next_seq[flow][1 - dir],
            flags,
            payload_len,
            payload,
            // A client SYN's fields, its option bytes taken from the payload's: the option walk
            // and the transport fingerprint are fuzzed along.
            syn: (dir == 0 && flags & 0x12 == 0x02).then(|| {
                sensor_user::http::transport::read_syn(s0, u16::from_le_bytes([s1, s0]), payload)
            }),
        };
        analyzer.on_segment(&seg, &mut out);
        assert!(
            analyzer.flow_count() <= MAX_FLOWS,
            "flow table exceeded its bound"
        );
        if flags & 0x12 == 0x02 {
            let syn = Packets { packets: 1, syns: 1 };
            detection.on_packets(src.ip(), syn, ts_ns, &mut findings);
        }
        for tx in &out {
            detection.on_transaction(tx, &mut findings);
        }
        for f in findings.drain(..) {
            let _ = policy.on_finding(&f);
        }
        assert!(detection.counters().sources <= 2, "detection state exceeded its bound");
        out.clear();
    }
    analyzer.finish(&mut out);
    assert_eq!(analyzer.flow_count(), 0, "finish must close every flow");
});
