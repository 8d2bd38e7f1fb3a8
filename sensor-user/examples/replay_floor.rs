//! The floor under `apisensor replay --json`: the work a replay of the benchmark capture cannot
//! avoid, with no analysis at all. `cargo xtask bench` times it beside the replay, so that the
//! replay's throughput target can be read against what is left of the budget.
//!
//! It reads the capture with the replay's own reader and decoder (`read_segments`), parses
//! every TCP payload that starts with a complete head with httparse (the benchmark capture puts
//! every head at the start of one segment; body segments fail httparse on their first bytes)
//! with the analyzer's parser settings and header slots, and for every response writes
//! `LINE_BYTES` bytes (a newline included) to stdout in the replay's output chunks, through a
//! pipe grown as the replay grows it. There is no flow table, no reassembly, no field
//! extraction and no formatting.
//!
//! Usage: `replay_floor FILE LINE_BYTES`. Prints the head counts on stderr.

use std::io::{self, Write as _};
use std::mem::MaybeUninit;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use sensor_user::cli::replay::{OUT_CHUNK, grow_stdout_pipe};
use sensor_user::http::HttpConfig;
use sensor_user::http::conn::{MAX_HEADERS, response_parser};
use sensor_user::replay::{ReplayEvent, read_segments};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(file), Some(line_bytes), None) = (args.next(), args.next(), args.next()) else {
        bail!("usage: replay_floor FILE LINE_BYTES");
    };
    let file = PathBuf::from(file);
    let line_bytes: usize = line_bytes
        .to_str()
        .and_then(|s| s.parse().ok())
        .filter(|&n| (1..=OUT_CHUNK).contains(&n))
        .context("LINE_BYTES must be a number from 1 to 1048576")?;
    let mut line = vec![b'x'; line_bytes];
    if let Some(last) = line.last_mut() {
        *last = b'\n';
    }
    let reader =
        std::fs::File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
    grow_stdout_pipe();
    let mut out = io::stdout().lock();
    let mut buf: Vec<u8> = Vec::with_capacity(OUT_CHUNK + line_bytes);
    let response = response_parser();
    let header_slots = HttpConfig::default()
        .limits
        .max_headers
        .clamp(1, MAX_HEADERS);
    let (mut requests, mut responses) = (0_u64, 0_u64);
    let mut write_err = None;
    read_segments(reader, &file, &mut |event| {
        let ReplayEvent::Segment(seg) = event else {
            return;
        };
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let slots = slots.get_mut(..header_slots).unwrap_or_default();
        if seg.payload.starts_with(b"HTTP/") {
            let mut resp = httparse::Response::new(&mut []);
            let parsed = response.parse_response_with_uninit_headers(&mut resp, seg.payload, slots);
            if matches!(parsed, Ok(httparse::Status::Complete(_))) {
                responses += 1;
                buf.extend_from_slice(&line);
                if buf.len() >= OUT_CHUNK && write_err.is_none() {
                    write_err = out.write_all(&buf).err();
                    buf.clear();
                }
            }
        } else {
            let mut req = httparse::Request::new(&mut []);
            if matches!(
                req.parse_with_uninit_headers(seg.payload, slots),
                Ok(httparse::Status::Complete(_))
            ) {
                requests += 1;
            }
        }
    })
    .with_context(|| format!("cannot read {}", file.display()))?;
    if let Some(e) = write_err {
        return Err(e).context("cannot write to stdout");
    }
    out.write_all(&buf)
        .and_then(|()| out.flush())
        .context("cannot write to stdout")?;
    eprintln!("{requests} request heads, {responses} response heads");
    Ok(())
}
