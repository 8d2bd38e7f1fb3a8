//! Fuzz target: arbitrary bytes read as a sequence of reassembled chunks in both directions,
//! fed to one HTTP connection parser, then closed.
//!
//! Each chunk is a 3-byte control block `[ctl, len_lo, len_hi]`: `ctl` bit 0 is the direction,
//! bits 1-2 the chunk kind (0 and 1: data of `len` bytes taken from the input, 2: uncaptured,
//! 3: lost). The data chunks carry whatever the fuzzer writes, so request and response heads,
//! bodies, chunked encoding and pipelining all come from the input.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sensor_user::http::{ConnMeta, HttpConfig, HttpConn, LoginRoute};
use sensor_user::segment::{Chunk, Dir};

fuzz_target!(|data: &[u8]| {
    let mut cfg = HttpConfig::default();
    // A login route, so the login body and outcome paths are reachable.
    cfg.login_routes.push(LoginRoute {
        method: "POST".to_owned(),
        path: "/login".to_owned(),
        account_field: "username".to_owned(),
        success_status: vec![200, 302],
        failure_status: vec![401, 403],
        success_set_cookie: None,
    });
    cfg.limits.max_head_bytes = 2048;
    cfg.limits.max_pending = 8;
    let meta = ConnMeta {
        client: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)), 40_000),
        server: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 80),
    };
    let mut conn = HttpConn::new(Arc::new(cfg), meta);
    let mut out = Vec::new();
    let mut ts_ns = 1_700_000_000_000_000_000_u64;
    let mut rest = data;
    while let Some((ctl, tail)) = rest.split_first_chunk::<3>() {
        let [c, l0, l1] = *ctl;
        let dir = if c & 1 == 0 {
            Dir::ToServer
        } else {
            Dir::ToClient
        };
        let len = u16::from_le_bytes([l0, l1]);
        ts_ns += 1_000;
        match (c >> 1) & 3 {
            2 => {
                rest = tail;
                conn.on_chunk(dir, ts_ns, Chunk::Uncaptured(u32::from(len)), &mut out);
            }
            3 => {
                rest = tail;
                conn.on_chunk(dir, ts_ns, Chunk::Lost(u32::from(len)), &mut out);
            }
            _ => {
                let n = usize::from(len).min(tail.len());
                let (bytes, after) = tail.split_at(n);
                rest = after;
                conn.on_chunk(dir, ts_ns, Chunk::Data(bytes), &mut out);
            }
        }
        // Memory stays bounded by the limits whatever the input: a loose ceiling catches
        // unbounded growth without guessing the parser's exact bookkeeping.
        assert!(
            conn.memory() < 1 << 20,
            "connection memory {} is unbounded",
            conn.memory()
        );
        out.clear();
    }
    conn.on_close(ts_ns, &mut out);
});
