//! The overhead run's sampling floor, user space: `overhead_sampler OBJECT IFACE` loads the
//! object built from `attack_lab/sampler.bpf.c`, attaches its XDP program natively and its TC
//! program on egress (TCX) to IFACE (in the caller's network namespace), and drains both rings
//! on the agent's own timer (`reader::DrainPeriod`) until SIGTERM or SIGINT, reading each
//! record's payload length as the least a consumer does. It prints `sampler attached` on
//! stderr once attached, and at exit `sampler: REQ request records, RESP response records`.
//! The programs are detached when it exits (their links close with the process).
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, bail};
use apisensor_tests::attack_lab::traffic;
use aya::Ebpf;
use aya::maps::{MapData, RingBuf};
use aya::programs::tc::TcAttachOptions;
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode};
use sensor_user::config::SensorSettings;
use sensor_user::reader::DrainPeriod;

/// Where a record keeps its payload length (`struct record` in `sampler.bpf.c`).
const PAYLOAD_LEN_OFFSET: usize = 44;

/// Drains one ring; returns the records read.
fn drain(ring: &mut RingBuf<MapData>, payload_bytes: &mut u64) -> u64 {
    let mut n = 0;
    while let Some(item) = ring.next() {
        n += 1;
        if let Some(b) = item.get(PAYLOAD_LEN_OFFSET..PAYLOAD_LEN_OFFSET + 4) {
            *payload_bytes += u64::from(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
        }
    }
    n
}

fn ring(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<RingBuf<MapData>> {
    let map = ebpf
        .take_map(name)
        .with_context(|| format!("no map {name} in the object"))?;
    RingBuf::try_from(map).with_context(|| format!("{name} is not a ring buffer"))
}

fn run(object: &str, iface: &str) -> anyhow::Result<(u64, u64)> {
    let bytes = std::fs::read(object).with_context(|| format!("cannot read {object}"))?;
    let mut ebpf = Ebpf::load(&bytes).with_context(|| format!("cannot load {object}"))?;
    let xdp: &mut Xdp = ebpf
        .program_mut("sampler_xdp")
        .context("no program sampler_xdp")?
        .try_into()?;
    xdp.load().context("loading sampler_xdp")?;
    xdp.attach(iface, XdpMode::Driver)
        .with_context(|| format!("attaching sampler_xdp natively to {iface}"))?;
    let tc: &mut SchedClassifier = ebpf
        .program_mut("sampler_tc")
        .context("no program sampler_tc")?
        .try_into()?;
    tc.load().context("loading sampler_tc")?;
    tc.attach_with_options(
        iface,
        TcAttachType::Egress,
        TcAttachOptions::TcxOrder(LinkOrder::default()),
    )
    .with_context(|| format!("attaching sampler_tc to {iface}'s egress (TCX)"))?;
    let mut req = ring(&mut ebpf, "req_ring")?;
    let mut resp = ring(&mut ebpf, "resp_ring")?;
    eprintln!("sampler attached");
    let (mut req_n, mut resp_n, mut payload_bytes) = (0, 0, 0);
    // The agent's drain schedule at its default configuration.
    let idle = std::time::Duration::from_millis(SensorSettings::default().drain_interval_ms);
    let mut period = DrainPeriod::new(idle);
    let mut next = Instant::now() + period.get();
    while !traffic::interrupted() {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let a = drain(&mut req, &mut payload_bytes);
        let b = drain(&mut resp, &mut payload_bytes);
        req_n += a;
        resp_n += b;
        period.after_drain(usize::try_from(a + b).unwrap_or(usize::MAX));
        next = Instant::now() + period.get();
    }
    req_n += drain(&mut req, &mut payload_bytes);
    resp_n += drain(&mut resp, &mut payload_bytes);
    if req_n + resp_n > 0 && payload_bytes == 0 {
        bail!("{} records but no payload byte counted", req_n + resp_n);
    }
    Ok((req_n, resp_n))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [object, iface] = args.as_slice() else {
        eprintln!("usage: overhead_sampler OBJECT IFACE");
        return ExitCode::from(2);
    };
    traffic::handle_interrupts();
    match run(object, iface) {
        Ok((req, resp)) => {
            eprintln!("sampler: {req} request records, {resp} response records");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("overhead_sampler: {e:#}");
            ExitCode::FAILURE
        }
    }
}
