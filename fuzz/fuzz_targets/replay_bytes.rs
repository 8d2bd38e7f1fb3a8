//! Fuzz target: arbitrary bytes as a capture file, through the whole offline path (format
//! detection, pcap/pcapng reading, packet decoding, flow table, reassembly, HTTP).
//!
//! The first byte picks the mode. Even: the bytes are the file as they are, which exercises
//! format detection and the container readers. Odd: a valid pcap header with a link type picked
//! by the second byte is put in front, so the fuzzer reaches packet records and the decoders
//! below them at once.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sensor_user::analyzer::{Analyzer, AnalyzerConfig};
use sensor_user::replay::replay_reader;

/// Flow table size, small so eviction runs.
const MAX_FLOWS: usize = 8;
/// Link types offered in the odd mode: Ethernet, SLL, SLL2, raw, IPv4, IPv6, BSD loopback.
const LINK_TYPES: [u32; 7] = [1, 113, 276, 101, 228, 229, 0];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let file: Vec<u8> = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let Some((&pick, records)) = rest.split_first() else {
            return;
        };
        let link = LINK_TYPES[usize::from(pick) % LINK_TYPES.len()];
        // Little-endian, micro- or nanosecond magic by the mode's second bit.
        let magic: u32 = if mode & 2 == 0 {
            0xa1b2_c3d4
        } else {
            0xa1b2_3c4d
        };
        let mut f = Vec::with_capacity(24 + records.len());
        f.extend_from_slice(&magic.to_le_bytes());
        f.extend_from_slice(&2_u16.to_le_bytes());
        f.extend_from_slice(&4_u16.to_le_bytes());
        f.extend_from_slice(&0_i32.to_le_bytes());
        f.extend_from_slice(&0_u32.to_le_bytes());
        f.extend_from_slice(&65_535_u32.to_le_bytes());
        f.extend_from_slice(&link.to_le_bytes());
        f.extend_from_slice(records);
        f
    };
    let cfg = AnalyzerConfig {
        monitored_ports: vec![80, 8080],
        max_flows: MAX_FLOWS,
        ..AnalyzerConfig::default()
    };
    let mut analyzer = Analyzer::new(cfg);
    let mut transactions = 0_u64;
    let _ = replay_reader(
        &file[..],
        Path::new("fuzz-input"),
        &mut analyzer,
        &mut |_| {
            transactions += 1;
        },
    );
    assert!(
        analyzer.flow_count() <= MAX_FLOWS,
        "flow table exceeded its bound"
    );
    assert_eq!(analyzer.flow_count(), 0, "finish must close every flow");
});
