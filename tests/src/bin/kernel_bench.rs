//! The kernel benchmark: nanoseconds per packet of apisensor's XDP program, measured with
//! `BPF_PROG_TEST_RUN`, against a trivial `XDP_PASS` floor and against xdp-filter (xdp-tools).
//!
//! ```text
//! cargo run --release -p apisensor-tests --bin kernel_bench -- \
//!     [--repeat N] [--runs K] [--latency-trials T] [--rate-repeat R]
//! ```
//!
//! It prints a markdown section for `docs/BENCHMARKS.md` on stdout; progress goes to stderr.
//!
//! Method: every case hands the same crafted frame to the kernel `N` times in one
//! `BPF_PROG_TEST_RUN` call; the cost per packet is the calling thread's CPU time over the call
//! divided by `N` (sub-nanosecond resolution; time the thread spends descheduled, for example
//! while the kernel's test loop yields to other tasks, does not count). The kernel's own figure
//! (whole nanoseconds, truncated) is shown beside it as a cross-check. The cases are
//! interleaved (run 1 of every case, then run 2 of every case, ...) so that a slow period of the
//! machine hits every case alike, and each figure is the median over the runs. Ratios to the
//! floor are taken within a run, then their median is reported.
//!
//! Nothing leaves the process as traffic: every packet goes to the kernel through
//! `BPF_PROG_TEST_RUN`, and the benchmark's own apisensor objects are loaded without pins and
//! never attached. Two references attach to an interface, each in private network namespaces
//! that the benchmark creates, and nothing is sent to them:
//!
//! - xdp-filter: a private namespace with a veth pair, xdp-filter loaded on it in skb mode, a
//!   blocked source, and a pin of its program under `/sys/fs/bpf/apisensor-bench-<pid>`;
//! - the real agent: the release `apisensor run --dry-run` (`target/release/apisensor`, built
//!   by `cargo build --release -p sensor-user`; `cargo xtask bench` builds it) in the test lab
//!   (`apisensor_tests::lab`: two namespaces joined by a veth pair) on the server's veth, with
//!   its maps pinned under `/sys/fs/bpf/apisensor-test-kbench-<pid>`. The benchmark runs the
//!   agent's own loaded XDP program, so that the agent drains and analyses the records.
//!
//! Guards stop the agent, unload and remove all of it when the benchmark ends, also on error
//! or panic.
//!
//! Addresses in the crafted packets come only from `198.51.100.0/24` and `203.0.113.0/24`.
use std::{
    borrow::Cow,
    collections::HashSet,
    ffi::OsStr,
    fmt::Write as _,
    fs,
    net::{IpAddr, Ipv4Addr},
    os::fd::{AsFd as _, AsRawFd as _, RawFd},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail, ensure};
use apisensor_tests::{
    agent::{self, AgentFiles, PinDir},
    lab::Lab,
};
use aya::{
    Ebpf,
    maps::{Array, Map, MapData, PerCpuArray, RingBuf},
    programs::{TestRun as _, TestRunOptions, Xdp, loaded_programs},
};
use aya_obj::programs::XdpAttachType;
use ipnet::{IpNet, Ipv4Net};
use sensor_common::{
    Counter, EventHeader, Reason, SensorConfig, capacity, data_class, map_names, program_names,
};
use sensor_user::{
    clock::boot_ns,
    config::Config,
    event,
    loader::{self, LoadOptions},
    reader::DrainPeriod,
    verdict::Verdicts,
};

/// `XDP_DROP`.
const XDP_DROP: u32 = 1;
/// `XDP_PASS`.
const XDP_PASS: u32 = 2;

/// The monitored port of the benchmark objects.
const HTTP_PORT: u16 = 80;
/// A port that is not monitored.
const SSH_PORT: u16 = 22;
/// Server address of every crafted packet.
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The client that no block matches.
const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
/// The blocked client (exact block, covering prefix, xdp-filter rule).
const BLOCKED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);
/// The prefix of the prefix-block instances that covers [`BLOCKED`].
const BLOCKED_PREFIX: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 51, 100, 8), 30);
/// Prefixes that the random block prefixes must not overlap: the two documentation ranges the
/// packets use (so only [`BLOCKED_PREFIX`] decides their fate) and this machine's own network.
const EXCLUDED: [(Ipv4Addr, u8); 3] = [
    (Ipv4Addr::new(198, 51, 100, 0), 24),
    (Ipv4Addr::new(203, 0, 113, 0), 24),
    (Ipv4Addr::new(192, 0, 2, 0), 24),
];
/// TCP payload of the sampled segment.
const SEGMENT_PAYLOAD: usize = 1024;
/// How long the benchmark blocks last; far longer than a run.
const BLOCK_TTL: Duration = Duration::from_hours(1);
/// Seed of the prefix generator and of the latency jitter, so every run uses the same keys.
const SEED: u64 = 0x6170_6973_656e_736f;
/// The agent's configured (idle) drain period, `drain_interval_ms`: its reader drains every
/// `reader::BUSY_PERIOD` while records arrive and backs off to this (`reader::DrainPeriod`).
const DRAIN_PERIOD: Duration = Duration::from_millis(5);
/// The smallest `wakeup_bytes` the agent's configuration accepts.
const WAKEUP_CONFIG_MIN: u32 = 4096;
/// The default `wakeup_bytes` before it became 1 MiB, kept as a row for comparison.
const WAKEUP_PREVIOUS_DEFAULT: u32 = 256 * 1024;
/// A `wakeup_bytes` at or below one record's size: a record landing in an empty ring wakes.
const WAKEUP_EVERY_RECORD: u32 = 1024;
/// Bound on every external command (ip, xdp-filter, bpftool, clang).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a latency trial waits for the consumer before counting the record as missed.
const LATENCY_TIMEOUT: Duration = Duration::from_secs(1);
/// Source of the floor program, compiled at run time so the product object stays clean.
const FLOOR_C: &str = "/* The benchmark floor: an XDP program that only returns XDP_PASS. */\n\
__attribute__((section(\"xdp\"), used)) int bench_floor(void *ctx) { return 2; }\n\
__attribute__((section(\"license\"), used)) char _license[] = \"GPL\";\n";
/// Name of the floor program.
const FLOOR_PROGRAM: &str = "bench_floor";
/// The C compiler for the floor program.
const CLANG: &str = "clang-19";
/// The real agent's configuration file: the sampled segment's port monitored (stated, so that
/// it is whatever the default becomes); every other setting is the default.
const AGENT_CONFIG: &str = "[sensor]\nports = [80]\n";
/// How long the real agent may take to drain what one run left in its ring.
const AGENT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Ring bytes of one sampled-segment record: the kernel's 8-byte record header, the event
/// header and the data area, rounded up to 8 bytes (`BPF_RINGBUF_HDR_SZ`, kernel/bpf/ringbuf.c).
const SEGMENT_RECORD_BYTES: u64 =
    ((8 + size_of::<EventHeader>() + data_class(SEGMENT_PAYLOAD)) as u64).next_multiple_of(8);

// ---------------------------------------------------------------------------------------------
// Options.
// ---------------------------------------------------------------------------------------------

/// Command-line options.
#[derive(Clone, Copy, Debug)]
struct Options {
    /// Packets per `BPF_PROG_TEST_RUN` call.
    repeat: u32,
    /// Runs of every case; each figure is the median over them.
    runs: usize,
    /// Single-packet trials of each latency mode.
    latency_trials: usize,
    /// Packets per call of the ring-buffer rate test.
    rate_repeat: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            repeat: 1_000_000,
            runs: 7,
            latency_trials: 200,
            rate_repeat: 200_000,
        }
    }
}

/// The `--help` text.
const USAGE: &str =
    "usage: kernel_bench [--repeat N] [--runs K] [--latency-trials T] [--rate-repeat R]
  --repeat N          packets per BPF_PROG_TEST_RUN call (default 1000000)
  --runs K            interleaved runs of every case; figures are medians (default 7)
  --latency-trials T  single-packet trials per consumer latency mode (default 200)
  --rate-repeat R     packets per call of the ring-buffer rate test (default 200000)";

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut o = Self::default();
        while let Some(flag) = args.next() {
            if flag == "-h" || flag == "--help" {
                println!("{USAGE}");
                std::process::exit(0);
            }
            let value = args
                .next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
            let bad = || format!("bad value {value:?} for {flag}\n{USAGE}");
            match flag.as_str() {
                "--repeat" => o.repeat = value.parse().with_context(bad)?,
                "--runs" => o.runs = value.parse().with_context(bad)?,
                "--latency-trials" => o.latency_trials = value.parse().with_context(bad)?,
                "--rate-repeat" => o.rate_repeat = value.parse().with_context(bad)?,
                _ => bail!("unknown option {flag}\n{USAGE}"),
            }
        }
        ensure!(
            o.repeat >= 1 && o.runs >= 1 && o.latency_trials >= 1 && o.rate_repeat >= 1,
            "every count must be at least 1"
        );
        Ok(o)
    }

    fn command(&self) -> String {
        format!(
            "sudo cargo run --release -p apisensor-tests --bin kernel_bench -- --repeat {} --runs {} --latency-trials {} --rate-repeat {}",
            self.repeat, self.runs, self.latency_trials, self.rate_repeat
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Packets.
// ---------------------------------------------------------------------------------------------

/// One's-complement sum of 16-bit words, folded.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        for word in part.chunks(2) {
            let hi = u32::from(word[0]) << 8;
            let lo = word.get(1).map_or(0, |b| u32::from(*b));
            sum += hi | lo;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet + IPv4 + TCP frame with valid checksums.
fn tcp_v4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut tcp = Vec::with_capacity(20 + payload.len());
    tcp.extend_from_slice(&sport.to_be_bytes());
    tcp.extend_from_slice(&dport.to_be_bytes());
    tcp.extend_from_slice(&1_000_000u32.to_be_bytes());
    tcp.extend_from_slice(&2_000_000u32.to_be_bytes());
    tcp.extend_from_slice(&[5 << 4, flags]);
    tcp.extend_from_slice(&64_240u16.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 0]);
    tcp.extend_from_slice(payload);
    let tcp_len = u16::try_from(tcp.len()).unwrap_or(u16::MAX);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&tcp_len.to_be_bytes());
    let sum = checksum(&[&pseudo, &tcp]);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());

    let mut ip = Vec::with_capacity(20);
    ip.extend_from_slice(&[0x45, 0]);
    ip.extend_from_slice(&(20 + tcp_len).to_be_bytes());
    ip.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 6, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let sum = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());

    let mut frame = Vec::with_capacity(14 + ip.len() + tcp.len());
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00]);
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&tcp);
    frame
}

/// A request head padded with a body to exactly `len` bytes.
fn http_request(len: usize) -> Vec<u8> {
    let body_len = len.saturating_sub(120);
    let mut head = format!(
        "POST /api/v1/items HTTP/1.1\r\nHost: bench.example\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n"
    )
    .into_bytes();
    head.resize(len, b'x');
    head
}

/// The crafted frames.
struct Packets {
    /// ACK without payload from an unblocked client to an unmonitored port.
    pass: Vec<u8>,
    /// 1 KiB HTTP segment from an unblocked client to the monitored port.
    segment: Vec<u8>,
    /// SYN from the blocked client to the monitored port.
    blocked: Vec<u8>,
}

impl Packets {
    fn new() -> Self {
        const ACK: u8 = 0x10;
        const PSH: u8 = 0x08;
        const SYN: u8 = 0x02;
        Self {
            pass: tcp_v4(CLIENT, SERVER, 40_000, SSH_PORT, ACK, &[]),
            segment: tcp_v4(
                CLIENT,
                SERVER,
                40_001,
                HTTP_PORT,
                PSH | ACK,
                &http_request(SEGMENT_PAYLOAD),
            ),
            blocked: tcp_v4(BLOCKED, SERVER, 40_002, HTTP_PORT, SYN, &[]),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers: PRNG, clocks, CPU affinity, commands, statistics.
// ---------------------------------------------------------------------------------------------

/// splitmix64: deterministic, good enough for map keys and jitter.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// CPU time of the calling thread, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into `ts`; the clock always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    ts.tv_sec.cast_unsigned() * 1_000_000_000 + ts.tv_nsec.cast_unsigned()
}

/// Prepares a measuring thread: pins it to `cpu` (if given) and raises it to nice -20, so that
/// other work on this small machine (builds) barely preempts it. The nice value is per thread
/// on Linux; `who` 0 is the calling thread.
fn prepare_thread(cpu: Option<usize>) -> anyhow::Result<()> {
    if let Some(cpu) = cpu {
        // SAFETY: the set is zeroed then filled with CPU_SET; sched_setaffinity on the calling
        // thread.
        let rc = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set)
        };
        ensure!(
            rc == 0,
            "pinning a thread to cpu {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: setpriority on the calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -20) };
    ensure!(
        rc == 0,
        "raising a thread to nice -20: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// Raises the scheduler autogroup of this process's session to nice -20 while it lives, and
/// puts the previous value back on drop.
///
/// With `sched_autogroup_enabled`, every session (a shell, a build) gets an equal CPU share
/// whatever the nice values of its threads, so a per-thread nice alone does not keep builds in
/// other sessions from taking most of a small machine's CPU time; the autogroup's nice does.
struct AutogroupBoost {
    previous: Option<i32>,
}

impl AutogroupBoost {
    const PATH: &str = "/proc/self/autogroup";

    fn apply() -> Self {
        // The file reads like "/autogroup-14 nice 0"; it is absent without autogroups.
        let previous = fs::read_to_string(Self::PATH)
            .ok()
            .and_then(|s| s.split_whitespace().last()?.parse::<i32>().ok());
        let applied = previous.is_some() && fs::write(Self::PATH, "-20").is_ok();
        Self {
            previous: previous.filter(|_| applied),
        }
    }
}

impl Drop for AutogroupBoost {
    fn drop(&mut self) {
        if let Some(nice) = self.previous {
            let _ = fs::write(Self::PATH, nice.to_string());
        }
    }
}

/// The load average, as `/proc/loadavg` gives its first three fields.
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".into(),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

/// Runs a command with a time bound; fails with its stderr unless it exits with status 0.
fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Output> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (OsStr::new(k), OsStr::new(v))))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {program} {}", args.join(" ")))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(out) = rx.recv_timeout(COMMAND_TIMEOUT) else {
        // SAFETY: kill(2) on the PID of our own child, which has not been reaped yet (its
        // waiter thread is still blocked in wait).
        unsafe { libc::kill(pid.cast_signed(), libc::SIGKILL) };
        let _ = waiter.join();
        bail!(
            "{program} {} did not finish within {COMMAND_TIMEOUT:?}",
            args.join(" ")
        );
    };
    let out = out.with_context(|| format!("waiting for {program}"))?;
    let _ = waiter.join();
    ensure!(
        out.status.success(),
        "{program} {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(out)
}

/// True if `name` is an executable file in `PATH`.
fn in_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
}

/// Median of `v` (the mean of the two middle values for an even count); `NaN` when empty.
fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => f64::midpoint(s[n / 2 - 1], s[n / 2]),
    }
}

/// The value at quantile `q` (nearest rank) of `v`; `NaN` when empty.
#[expect(
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    reason = "sample counts are small"
)]
fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s: Vec<f64> = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

// ---------------------------------------------------------------------------------------------
// Loading the programs.
// ---------------------------------------------------------------------------------------------

/// The XDP program `name` of a loaded object.
fn xdp<'a>(ebpf: &'a Ebpf, name: &str) -> anyhow::Result<&'a Xdp> {
    let prog = ebpf
        .program(name)
        .with_context(|| format!("program {name} not found"))?;
    <&Xdp>::try_from(prog).with_context(|| format!("program {name} is not XDP"))
}

/// Compiles and loads the floor program into a temporary directory.
fn load_floor() -> anyhow::Result<Ebpf> {
    ensure!(
        in_path(CLANG),
        "{CLANG} is not installed; it compiles the benchmark's floor program (apt-get install -y clang-19)"
    );
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let src = dir.path().join("floor.c");
    let obj = dir.path().join("floor.o");
    fs::write(&src, FLOOR_C).context("writing floor.c")?;
    let (src_s, obj_s) = (src.to_string_lossy(), obj.to_string_lossy());
    run(
        CLANG,
        &["-O2", "-target", "bpf", "-c", &src_s, "-o", &obj_s],
        &[],
    )?;
    let mut ebpf = Ebpf::load_file(&obj).context("loading the floor object")?;
    let prog: &mut Xdp = ebpf
        .program_mut(FLOOR_PROGRAM)
        .context("floor program missing from its object")?
        .try_into()
        .context("floor program is not XDP")?;
    prog.load().context("loading the floor program")?;
    Ok(ebpf)
}

/// Loads apisensor's object, unpinned, with the monitored port configured.
fn load_sensor(wakeup_bytes: u32) -> anyhow::Result<Ebpf> {
    let mut ebpf = loader::load_object(
        loader::EBPF_OBJECT,
        &LoadOptions {
            pin_dir: None,
            max_sources: capacity::SOURCES,
        },
    )
    .context("loading apisensor's eBPF object (run as root on a kernel with BPF)")?;
    configure(&mut ebpf, wakeup_bytes)?;
    Ok(ebpf)
}

/// Writes the default configuration with `wakeup_bytes`, and the monitored port.
fn configure(ebpf: &mut Ebpf, wakeup_bytes: u32) -> anyhow::Result<()> {
    let cfg = SensorConfig {
        wakeup_bytes,
        ..SensorConfig::DEFAULT
    };
    loader::configure(ebpf, cfg, &[HTTP_PORT]).context("configuring apisensor")
}

/// Sum over CPUs of every `STATS` counter.
fn read_stats(ebpf: &Ebpf) -> anyhow::Result<[u64; Counter::COUNT]> {
    let map = ebpf.map(map_names::STATS).context("STATS map missing")?;
    sum_stats(&PerCpuArray::try_from(map)?)
}

/// Sum over CPUs of every counter of a `STATS` map.
fn sum_stats<T: std::borrow::Borrow<MapData>>(
    stats: &PerCpuArray<T, u64>,
) -> anyhow::Result<[u64; Counter::COUNT]> {
    let mut out = [0u64; Counter::COUNT];
    for (i, slot) in out.iter_mut().enumerate() {
        let values = stats.get(&(i as u32), 0)?;
        *slot = values.iter().sum();
    }
    Ok(out)
}

/// Distinct random IPv4 prefixes, `/24` to `/30`, none overlapping [`EXCLUDED`].
fn random_prefixes(count: usize, rng: &mut Rng) -> Vec<Ipv4Net> {
    let overlaps = |addr: u32, len: u8, (base, blen): (Ipv4Addr, u8)| {
        let shorter = len.min(blen);
        let mask = u32::MAX << (32 - u32::from(shorter));
        addr & mask == u32::from(base) & mask
    };
    let mut seen = HashSet::with_capacity(count);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let r = rng.next();
        let len = 24 + (r % 7) as u8;
        let addr = ((r >> 32) as u32) & (u32::MAX << (32 - u32::from(len)));
        if EXCLUDED.iter().any(|e| overlaps(addr, len, *e)) || !seen.insert((addr, len)) {
            continue;
        }
        if let Ok(net) = Ipv4Net::new(Ipv4Addr::from(addr), len) {
            out.push(net);
        }
    }
    out
}

/// An apisensor instance blocking `count` IPv4 prefixes, one of them covering the blocked
/// client, written through `Verdicts` as the CLI and the agent write them (no exact block).
/// Returns the object and where the prefixes went: (in `BLOCK_TABLE_V4`, in the overflow trie).
fn load_prefix_instance(count: usize) -> anyhow::Result<(Ebpf, (usize, usize))> {
    let mut ebpf = load_sensor(SensorConfig::DEFAULT.wakeup_bytes)?;
    let mut rng = Rng(SEED);
    let mut nets = random_prefixes(count.saturating_sub(1), &mut rng);
    nets.push(Ipv4Net::new(BLOCKED_PREFIX.0, BLOCKED_PREFIX.1)?);
    let mut verdicts = Verdicts::from_ebpf(&mut ebpf)?;
    let now = boot_ns();
    for (i, net) in nets.iter().enumerate() {
        verdicts
            .block(IpNet::V4(*net), BLOCK_TTL, Reason::Manual, "bench", now)
            .with_context(|| format!("blocking prefix {net} ({} of {count})", i + 1))?;
    }
    let (table, _, trie) = verdicts.v4_placement();
    Ok((ebpf, (table, trie)))
}

// ---------------------------------------------------------------------------------------------
// Map memory.
// ---------------------------------------------------------------------------------------------

/// What `/proc/self/fdinfo` says about a map.
struct FdInfo {
    map_type: u32,
    max_entries: u64,
    memlock: u64,
}

/// Reads the map fields of `/proc/self/fdinfo/<fd>`.
fn fdinfo(fd: i32) -> anyhow::Result<FdInfo> {
    let path = format!("/proc/self/fdinfo/{fd}");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .with_context(|| format!("no {name} in {path}"))?
            .trim()
            .parse()
            .with_context(|| format!("bad {name} in {path}"))
    };
    Ok(FdInfo {
        map_type: field("map_type")? as u32,
        max_entries: field("max_entries")?,
        memlock: field("memlock")?,
    })
}

/// The name of a `bpf_map_type` value used by apisensor.
fn map_type_name(t: u32) -> &'static str {
    match t {
        1 => "hash",
        2 => "array",
        6 => "percpu_array",
        9 => "lru_hash",
        11 => "lpm_trie",
        27 => "ringbuf",
        _ => "other",
    }
}

/// One row of the memory table.
struct MapMemory {
    name: String,
    map_type: &'static str,
    max_entries: u64,
    memlock: u64,
}

/// `memlock` of every map of a freshly loaded object at default sizes.
fn map_memory() -> anyhow::Result<Vec<MapMemory>> {
    let mut ebpf = load_sensor(SensorConfig::DEFAULT.wakeup_bytes)?;
    // The named maps first, in their documented order, then every other map of the object
    // (kernel-only scratch state such as `CPU_STATE`, aya-log's buffers).
    let mut names: Vec<String> = map_names::ALL.iter().map(|n| (*n).to_owned()).collect();
    let mut others: Vec<String> = ebpf
        .maps()
        .map(|(name, _)| name.to_owned())
        .filter(|name| !map_names::ALL.contains(&name.as_str()))
        .collect();
    others.sort();
    names.extend(others);
    let mut rows = Vec::new();
    for name in names {
        let map = ebpf
            .take_map(&name)
            .with_context(|| format!("map {name} missing"))?;
        let data = match map {
            Map::Array(d)
            | Map::HashMap(d)
            | Map::LpmTrie(d)
            | Map::LruHashMap(d)
            | Map::PerCpuLruHashMap(d)
            | Map::PerCpuArray(d)
            | Map::PerCpuHashMap(d)
            | Map::RingBuf(d) => d,
            other => bail!("map {name} has an unexpected type {other:?}"),
        };
        let info = fdinfo(data.fd().as_fd().as_raw_fd())?;
        rows.push(MapMemory {
            name,
            map_type: map_type_name(info.map_type),
            max_entries: info.max_entries,
            memlock: info.memlock,
        });
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------
// Ring-buffer consumers.
// ---------------------------------------------------------------------------------------------

/// What a consumer drained.
#[derive(Clone, Copy, Debug, Default)]
struct Drained {
    records: u64,
    decode_errors: u64,
    /// Decoded records whose payload was not the whole sampled segment.
    wrong_payload: u64,
    /// When the last record was drained.
    last_at: Option<Instant>,
    /// CPU time the consumer spent, ns (the stand-in's thread; every thread of the real agent).
    cpu_ns: u64,
}

/// Drains `ring`, decoding every record as the agent does; returns the number of records.
fn drain(
    ring: &mut RingBuf<MapData>,
    d: &mut Drained,
    mut on: impl FnMut(&event::Event<'_>),
) -> u64 {
    let mut n = 0;
    while let Some(item) = ring.next() {
        n += 1;
        match event::decode(&item) {
            Ok(ev) => on(std::hint::black_box(&ev)),
            Err(_) => d.decode_errors += 1,
        }
    }
    if n > 0 {
        d.records += n;
        d.last_at = Some(Instant::now());
    }
    n
}

/// How the consumer thread waits for records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Consumer {
    /// As the agent's reader (`reader.rs`): sleep until the ring's descriptor is readable (the
    /// kernel's forced wakeups) or its adaptive drain period (`reader::DrainPeriod`) passes, then
    /// drain everything.
    Agent,
    /// Spin on the ring: the consumer touches the ring's positions after every record, the
    /// worst case for the producer's cache.
    Busy,
}

/// Waits for the kernel's wakeups of one ring as the agent's reader does: tokio's `AsyncFd`
/// registers the descriptor edge-triggered (`EPOLLET`), so after a drain the reader sleeps
/// until the kernel wakes the ring again (a forced wakeup) or its timer fires, even if records
/// arrived in between. A level-triggered wait would instead return as soon as any record is
/// pending and follow the producer record by record, which the agent never does.
struct EdgePoller {
    epfd: std::os::fd::OwnedFd,
}

impl EdgePoller {
    fn new(ring_fd: RawFd) -> anyhow::Result<Self> {
        // SAFETY: epoll_create1 has no preconditions.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        ensure!(
            epfd >= 0,
            "epoll_create1: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `epfd` was just created and nothing else owns it; `OwnedFd` closes it.
        let epfd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(epfd) };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET).cast_unsigned(),
            u64: 0,
        };
        // SAFETY: both descriptors are open; `ev` is a valid epoll_event.
        let rc =
            unsafe { libc::epoll_ctl(epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, ring_fd, &raw mut ev) };
        ensure!(rc == 0, "epoll_ctl: {}", std::io::Error::last_os_error());
        Ok(Self { epfd })
    }

    /// Sleeps until a wakeup or `timeout_ms`; true if the kernel woke the ring.
    fn wait(&self, timeout_ms: i32) -> bool {
        let mut out = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: `out` has room for the one event asked for.
        unsafe { libc::epoll_wait(self.epfd.as_raw_fd(), &raw mut out, 1, timeout_ms) > 0 }
    }
}

/// Milliseconds until `deadline`, rounded up (a timeout for `epoll_wait`).
fn millis_until(deadline: Instant) -> i32 {
    let left = deadline.saturating_duration_since(Instant::now());
    i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
}

/// A thread that drains a ring until stopped.
struct DrainThread {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<anyhow::Result<(RingBuf<MapData>, Drained)>>,
}

impl DrainThread {
    fn spawn(mut ring: RingBuf<MapData>, cpu: Option<usize>, how: Consumer) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || -> anyhow::Result<(RingBuf<MapData>, Drained)> {
            let _ = prepare_thread(cpu);
            let cpu_start = thread_cpu_ns();
            let mut d = Drained::default();
            let poller = EdgePoller::new(ring.as_raw_fd())?;
            let mut period = DrainPeriod::new(DRAIN_PERIOD);
            let mut next_tick = Instant::now() + period.get();
            let mut timer_drain = false;
            loop {
                // Read the flag before draining, so the drain after a stop sees every record
                // submitted before it.
                let stopping = flag.load(Ordering::Acquire);
                let mut wrong = 0;
                let n = drain(&mut ring, &mut d, |ev| {
                    wrong += u64::from(ev.payload.len() != SEGMENT_PAYLOAD);
                });
                d.wrong_payload += wrong;
                if stopping {
                    break;
                }
                match how {
                    Consumer::Busy if n == 0 => std::hint::spin_loop(),
                    Consumer::Busy => {}
                    Consumer::Agent => {
                        // As `reader.rs`: drain on a kernel wakeup or on the timer, whose next
                        // period a timer drain sets from what it found, with a stop check at
                        // least every period.
                        if timer_drain {
                            period.after_drain(usize::try_from(n).unwrap_or(usize::MAX));
                            next_tick = Instant::now() + period.get();
                        }
                        let mut woke = false;
                        while !woke && Instant::now() < next_tick && !flag.load(Ordering::Acquire) {
                            woke = poller.wait(millis_until(next_tick));
                        }
                        timer_drain = !woke;
                    }
                }
            }
            d.cpu_ns = thread_cpu_ns().saturating_sub(cpu_start);
            Ok((ring, d))
        });
        Self { stop, handle }
    }

    fn finish(self) -> anyhow::Result<(RingBuf<MapData>, Drained)> {
        self.stop.store(true, Ordering::Release);
        self.handle
            .join()
            .map_err(|_| anyhow!("the consumer thread panicked"))?
    }
}

/// How the latency consumer learns that records are pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WakeMode {
    /// Sleeps in `epoll_wait` until the kernel wakes it.
    EpollOnly,
    /// Sleeps in `epoll_wait` with a timeout and drains on every tick of this period as well.
    Timer(Duration),
}

/// A thread that sleeps on the ring's descriptor and sends, for every record it drains, the
/// time between the kernel's stamp and the moment it decoded the record.
struct SleepingConsumer {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<anyhow::Result<RingBuf<MapData>>>,
}

impl SleepingConsumer {
    fn spawn(
        mut ring: RingBuf<MapData>,
        mode: WakeMode,
        cpu: Option<usize>,
        tx: mpsc::Sender<u64>,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || -> anyhow::Result<RingBuf<MapData>> {
            let _ = prepare_thread(cpu);
            let poller = EdgePoller::new(ring.as_raw_fd())?;
            let mut d = Drained::default();
            let mut period = match mode {
                WakeMode::Timer(idle) => DrainPeriod::new(idle),
                WakeMode::EpollOnly => DrainPeriod::new(DRAIN_PERIOD),
            };
            let mut next_tick = Instant::now() + period.get();
            while !flag.load(Ordering::Acquire) {
                let timeout_ms = match mode {
                    // A bounded sleep only to notice the stop flag; a timeout never drains.
                    WakeMode::EpollOnly => 50,
                    WakeMode::Timer(_) => millis_until(next_tick),
                };
                let woke = poller.wait(timeout_ms);
                let tick = matches!(mode, WakeMode::Timer(_)) && Instant::now() >= next_tick;
                if woke || tick {
                    let n = drain(&mut ring, &mut d, |ev| {
                        let _ = tx.send(boot_ns().saturating_sub(ev.header.ts_ns));
                    });
                    // As `reader.rs`: a timer drain sets the next period from what it found.
                    if tick {
                        period.after_drain(usize::try_from(n).unwrap_or(usize::MAX));
                        next_tick = Instant::now() + period.get();
                    }
                }
            }
            Ok(ring)
        });
        Self { stop, handle }
    }

    fn finish(self) -> anyhow::Result<RingBuf<MapData>> {
        self.stop.store(true, Ordering::Release);
        self.handle
            .join()
            .map_err(|_| anyhow!("the latency consumer thread panicked"))?
    }
}

// ---------------------------------------------------------------------------------------------
// xdp-filter, the reference.
// ---------------------------------------------------------------------------------------------

/// Where xdp-filter pins its maps; shared by every xdp-filter on the machine.
const XDP_FILTER_PIN_ROOT: &str = "/sys/fs/bpf/xdp-filter";
/// Where libxdp keeps its dispatchers.
const LIBXDP_PIN_ROOT: &str = "/sys/fs/bpf/xdp";
/// The interface xdp-filter attaches to, inside the private namespace.
const XF_IFACE: &str = "xfb0";
/// Its veth peer.
const XF_PEER: &str = "xfb1";
/// Load the program directly, without libxdp's dispatcher, so it is an XDP program that
/// `BPF_PROG_TEST_RUN` can run (a dispatcher's member is a `freplace` extension).
const XF_ENV: [(&str, &str); 1] = [("LIBXDP_SKIP_DISPATCHER", "1")];

/// Owns everything set up for xdp-filter and removes it on drop.
struct XdpFilterGuard {
    ns: String,
    ns_path: String,
    pin_dir: PathBuf,
    pin: PathBuf,
    ns_created: bool,
    loaded: bool,
    libxdp_root_existed: bool,
}

impl XdpFilterGuard {
    fn nsenter(&self, args: &[&str]) -> anyhow::Result<Output> {
        let net = format!("--net={}", self.ns_path);
        let mut all = vec![net.as_str()];
        all.extend_from_slice(args);
        run("nsenter", &all, &XF_ENV)
    }
}

impl Drop for XdpFilterGuard {
    fn drop(&mut self) {
        if self.loaded
            && let Err(e) = self.nsenter(&["xdp-filter", "unload", XF_IFACE])
        {
            eprintln!("cleanup: xdp-filter unload: {e:#}");
        }
        // xdp-filter's pin directory did not exist before (checked at setup), so whatever is
        // left of it is ours.
        if self.loaded && Path::new(XDP_FILTER_PIN_ROOT).exists() {
            let _ = fs::remove_dir_all(XDP_FILTER_PIN_ROOT);
        }
        if !self.libxdp_root_existed {
            // Only removes it if empty.
            let _ = fs::remove_dir(LIBXDP_PIN_ROOT);
        }
        let _ = fs::remove_file(&self.pin);
        let _ = fs::remove_dir(&self.pin_dir);
        if self.ns_created
            && let Err(e) = run("ip", &["netns", "delete", &self.ns], &[])
        {
            eprintln!("cleanup: ip netns delete {}: {e:#}", self.ns);
        }
    }
}

/// xdp-filter loaded in a private namespace with [`BLOCKED`] as a source rule, and its program
/// opened from a pin.
struct XdpFilter {
    prog: Xdp,
    name: String,
    _guard: XdpFilterGuard,
}

impl XdpFilter {
    fn setup() -> anyhow::Result<Self> {
        for tool in ["xdp-filter", "bpftool", "ip", "nsenter"] {
            ensure!(
                in_path(tool),
                "{tool} is not installed; the benchmark needs xdp-filter as its reference \
                 (apt-get install -y xdp-tools bpftool iproute2 util-linux)"
            );
        }
        ensure!(
            !Path::new(XDP_FILTER_PIN_ROOT).exists(),
            "{XDP_FILTER_PIN_ROOT} exists: another xdp-filter is loaded on this machine and \
             the benchmark would share its rule maps; unload it first (xdp-filter unload --all)"
        );
        ensure!(
            loader::is_bpffs(Path::new("/sys/fs/bpf")),
            "/sys/fs/bpf is not a BPF filesystem (mount -t bpf bpf /sys/fs/bpf)"
        );
        let pid = std::process::id();
        let ns = format!("apisensor-bench-{pid}");
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/apisensor-bench-{pid}"));
        let mut guard = XdpFilterGuard {
            ns_path: format!("/run/netns/{ns}"),
            ns: ns.clone(),
            pin: pin_dir.join("xdpfilt"),
            pin_dir,
            ns_created: false,
            loaded: false,
            libxdp_root_existed: Path::new(LIBXDP_PIN_ROOT).exists(),
        };
        run("ip", &["netns", "add", &ns], &[])?;
        guard.ns_created = true;
        run(
            "ip",
            &[
                "-n", &ns, "link", "add", XF_IFACE, "type", "veth", "peer", "name", XF_PEER,
            ],
            &[],
        )?;
        for iface in [XF_IFACE, XF_PEER] {
            run("ip", &["-n", &ns, "link", "set", iface, "up"], &[])?;
        }
        guard.loaded = true;
        guard.nsenter(&["xdp-filter", "load", XF_IFACE, "--mode", "skb"])?;
        guard.nsenter(&["xdp-filter", "ip", &BLOCKED.to_string(), "--mode", "src"])?;

        let out = guard.nsenter(&["ip", "-j", "-d", "link", "show", "dev", XF_IFACE])?;
        let links: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("parsing `ip -j link show`")?;
        let prog = &links[0]["xdp"]["prog"];
        let id = prog["id"]
            .as_u64()
            .context("no XDP program attached to the xdp-filter interface")?;
        let name = prog["name"].as_str().unwrap_or_default().to_owned();
        ensure!(
            name.starts_with("xdpfilt_"),
            "the program on {XF_IFACE} is {name:?}, not xdp-filter's (is libxdp's dispatcher in use?)"
        );
        fs::create_dir_all(&guard.pin_dir)
            .with_context(|| format!("creating {}", guard.pin_dir.display()))?;
        let pin = guard.pin.to_string_lossy().into_owned();
        run(
            "bpftool",
            &["prog", "pin", "id", &id.to_string(), &pin],
            &[],
        )?;
        let prog = Xdp::from_pin(&guard.pin, XdpAttachType::Interface)
            .with_context(|| format!("opening xdp-filter's program from {pin}"))?;
        Ok(Self {
            prog,
            name,
            _guard: guard,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The real agent.
// ---------------------------------------------------------------------------------------------

/// The consumer and producer positions of a ring buffer, mapped read-only: the first two pages
/// of a ring's mapping (kernel/bpf/ringbuf.c; libbpf and aya map them the same way). The
/// benchmark watches the agent drain without consuming anything itself.
struct RingPositions {
    /// The start of the mapping: the consumer position's page, then the producer's.
    base: std::ptr::NonNull<u64>,
    page: usize,
    /// The ring's descriptor, kept open as long as the mapping.
    _map: MapData,
}

impl RingPositions {
    fn open(map: MapData) -> anyhow::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .context("the page size")?;
        // SAFETY: a new shared read-only mapping of the ring's descriptor; the kernel allows a
        // read-only mapping of the position pages (only the consumer page may be writable).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        ensure!(
            ptr != libc::MAP_FAILED,
            "mapping the agent's ring positions: {}",
            std::io::Error::last_os_error()
        );
        let base = std::ptr::NonNull::new(ptr.cast::<u64>()).context("mmap returned null")?;
        Ok(Self {
            base,
            page,
            _map: map,
        })
    }

    /// The position at the start of page `index` (0: consumer, 1: producer).
    fn position(&self, index: usize) -> u64 {
        // SAFETY: the mapping covers both pages while `self` lives; a page start is aligned for
        // a u64; the kernel (and the agent's reader) only ever store whole u64 positions there,
        // and atomic loads of lock-free sizes are allowed on read-only memory.
        unsafe {
            AtomicU64::from_ptr(self.base.as_ptr().add(index * self.page / size_of::<u64>()))
                .load(Ordering::Acquire)
        }
    }

    fn consumer(&self) -> u64 {
        self.position(0)
    }

    fn producer(&self) -> u64 {
        self.position(1)
    }
}

impl Drop for RingPositions {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`, which nothing else refers to.
        unsafe { libc::munmap(self.base.as_ptr().cast(), 2 * self.page) };
    }
}

/// CPU time of every thread of process `pid` so far, ns (`/proc/PID/task/*/schedstat`, whose
/// first field is the time on a CPU).
fn process_cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0;
    for task in fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let path = task?.path().join("schedstat");
        // A thread that exited since the listing no longer counts.
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        total += text
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .with_context(|| format!("bad {}", path.display()))?;
    }
    Ok(total)
}

/// Makes the calling thread schedule as a process started from a shell would: every CPU and
/// nice 0, whatever the benchmark did to its own threads. Children inherit both.
fn default_scheduling() -> anyhow::Result<()> {
    // SAFETY: sysconf has no preconditions.
    let ncpu = usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }).unwrap_or(1);
    // SAFETY: the set is zeroed then filled with CPU_SET within its size; sched_setaffinity on
    // the calling thread (the kernel ignores CPUs that are not online).
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..ncpu.clamp(1, libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set)
    };
    ensure!(
        rc == 0,
        "giving a thread every CPU: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: setpriority on the calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 0) };
    ensure!(
        rc == 0,
        "setting a thread to nice 0: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// The XDP program named [`program_names::XDP_INGRESS`] that uses the map with id `ring_id`:
/// the agent's own program (its `REQ_EVENTS` is pinned in its pin directory alone).
fn agent_program(ring_id: u32) -> anyhow::Result<Xdp> {
    let mut found: Vec<_> = loaded_programs()
        // A program unloaded while the list is walked is no candidate.
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str() == Some(program_names::XDP_INGRESS))
        .filter(|p| {
            p.map_ids()
                .ok()
                .flatten()
                .is_some_and(|ids| ids.contains(&ring_id))
        })
        .collect();
    ensure!(
        found.len() == 1,
        "{} loaded programs named {} use the agent's REQ_EVENTS (map id {ring_id}); expected one",
        found.len(),
        program_names::XDP_INGRESS
    );
    let info = found.pop().context("no program found")?;
    let id = info.id();
    Xdp::from_program_info(
        info,
        Cow::Borrowed(program_names::XDP_INGRESS),
        XdpAttachType::Interface,
    )
    .with_context(|| format!("opening the agent's XDP program (id {id})"))
}

/// The text of a panic payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic".into())
}

/// The number that follows `key` in `text` after the first `anchor`.
fn count_after(text: &str, anchor: &str, key: &str) -> Option<u64> {
    let rest = &text[text.find(anchor)? + anchor.len()..];
    let rest = &rest[rest.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// What the agent logged about its run when it stopped (`None` where its line said nothing).
#[derive(Clone, Copy, Debug, Default)]
struct AgentExit {
    /// Records its reader read from `REQ_EVENTS`.
    req_records: Option<u64>,
    /// Segments its analyzer was given.
    segments: Option<u64>,
    /// Transactions its analyzer emitted.
    transactions: Option<u64>,
}

/// `apisensor run --dry-run` in the test lab on the server's veth, and handles on what it
/// loaded: its XDP program, its counters and its request ring's positions. Nothing is
/// configured through these handles; the agent configured its maps itself.
///
/// Fields drop in order: the handles, then the lab (which stops the agent, by PID, and deletes
/// its namespaces with the veth pair), then the pin directory (which unpins every map).
struct RealAgent {
    /// The agent's own XDP program.
    prog: Xdp,
    /// Its `STATS`.
    stats: PerCpuArray<MapData, u64>,
    /// Its `REQ_EVENTS` positions.
    ring: RingPositions,
    /// The `wakeup_bytes` in its `CONFIG`.
    wakeup: u32,
    /// Its reader's drain period.
    drain_period: Duration,
    /// Its XDP attach mode, as it logged it.
    xdp_mode: String,
    pid: u32,
    lab: Lab,
    _pins: PinDir,
}

impl RealAgent {
    fn setup() -> anyhow::Result<Self> {
        // Started from a thread of its own with the default CPU set and nice value, so the
        // agent does not inherit the measuring thread's CPU 0 and nice -20 (which would place
        // it on the producer's CPU). The lab and agent helpers panic on failure; whatever they
        // created is removed as the panic unwinds the thread.
        let (lab, pins, pid) = thread::Builder::new()
            .name("agent-start".into())
            .spawn(|| -> anyhow::Result<(Lab, PinDir, u32)> {
                default_scheduling()?;
                let mut lab = Lab::new("kbench");
                let pins = PinDir::new("kbench");
                let files = AgentFiles::in_lab(&lab, 1, AGENT_CONFIG);
                let pid = agent::start(&mut lab, &pins, &files, &["--dry-run"]);
                Ok((lab, pins, pid))
            })
            .context("starting a thread")?
            .join()
            .map_err(|p| anyhow!("starting the real agent: {}", panic_text(&*p)))??;
        let ready = lab.stderr_of(pid);
        let xdp_mode = ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix("xdp="))
            .unwrap_or("unknown")
            .to_owned();
        let pin = |name: &str| {
            let path = pins.path().join(name);
            MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))
        };
        let ring = pin(map_names::REQ_EVENTS)?;
        let ring_id = ring.info().context("REQ_EVENTS info")?.id();
        let prog = agent_program(ring_id)?;
        let stats = PerCpuArray::try_from(Map::from_map_data(pin(map_names::STATS)?)?)?;
        let config: Array<MapData, SensorConfig> =
            Array::try_from(Map::from_map_data(pin(map_names::CONFIG)?)?)?;
        let wakeup = config.get(&0, 0)?.wakeup_bytes;
        let ports: Array<MapData, u8> =
            Array::try_from(Map::from_map_data(pin(map_names::PORTS)?)?)?;
        ensure!(
            ports.get(&u32::from(HTTP_PORT), 0)? == 1,
            "the agent does not monitor port {HTTP_PORT}"
        );
        let drain_period = Duration::from_millis(
            Config::parse(AGENT_CONFIG, "the benchmark's agent configuration")?
                .sensor
                .drain_interval_ms,
        );
        Ok(Self {
            prog,
            stats,
            ring: RingPositions::open(ring)?,
            wakeup,
            drain_period,
            xdp_mode,
            pid,
            lab,
            _pins: pins,
        })
    }

    /// Fails if the agent is no longer running.
    fn check_running(&mut self) -> anyhow::Result<()> {
        ensure!(
            self.lab.is_running(self.pid),
            "the agent (pid {}) exited: {}",
            self.pid,
            self.lab.stderr_of(self.pid)
        );
        Ok(())
    }

    /// Waits (bounded) until the agent has drained everything in its request ring; returns the
    /// consumer position then.
    fn wait_drained(&mut self) -> anyhow::Result<u64> {
        let deadline = Instant::now() + AGENT_DRAIN_TIMEOUT;
        loop {
            // The consumer first: it never passes the producer, so equal means empty.
            let (consumer, producer) = (self.ring.consumer(), self.ring.producer());
            if consumer == producer {
                return Ok(consumer);
            }
            self.check_running()?;
            ensure!(
                Instant::now() < deadline,
                "the agent left {} bytes of its ring undrained for {AGENT_DRAIN_TIMEOUT:?}",
                producer - consumer
            );
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops the agent (SIGTERM, by PID) and reads its last log line.
    fn stop(&mut self) -> AgentExit {
        let status = self.lab.stop(self.pid);
        let log = self.lab.stderr_of(self.pid);
        if !status.success() {
            eprintln!("the agent exited with {status}: {log}");
        }
        let last = log.lines().rfind(|l| l.contains("stopped;")).unwrap_or("");
        AgentExit {
            req_records: count_after(last, "stats=", "req_records: "),
            segments: count_after(last, "analyzer=", "segments: "),
            transactions: count_after(last, "analyzer=", "transactions: "),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The cases.
// ---------------------------------------------------------------------------------------------

/// One benchmark case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    Floor,
    Pass,
    Sampled(u32, Consumer),
    /// The sampled segment through the real agent's own program while the agent drains.
    RealAgent,
    DropExact,
    DropPrefix10k,
    DropPrefix100k,
    PassPrefix100k,
    XdpFilterPass,
    XdpFilterDrop,
}

/// Every case, in the order of a run and of the tables.
const CASES: [Case; 14] = [
    Case::Floor,
    Case::Pass,
    Case::Sampled(SensorConfig::DEFAULT.wakeup_bytes, Consumer::Agent),
    Case::RealAgent,
    Case::DropExact,
    Case::DropPrefix10k,
    Case::DropPrefix100k,
    Case::PassPrefix100k,
    Case::XdpFilterPass,
    Case::XdpFilterDrop,
    Case::Sampled(WAKEUP_PREVIOUS_DEFAULT, Consumer::Agent),
    Case::Sampled(WAKEUP_CONFIG_MIN, Consumer::Agent),
    Case::Sampled(WAKEUP_EVERY_RECORD, Consumer::Agent),
    Case::Sampled(SensorConfig::DEFAULT.wakeup_bytes, Consumer::Busy),
];

impl Case {
    fn label(self) -> String {
        match self {
            Self::Floor => "floor: XDP program returning XDP_PASS".into(),
            Self::Pass => "apisensor pass, unmonitored (TCP ACK to :22, no block)".into(),
            Self::Sampled(w, Consumer::Agent) => format!(
                "apisensor sampled 1 KiB HTTP segment to :80, agent-like consumer draining (wakeup_bytes {w})"
            ),
            Self::Sampled(w, Consumer::Busy) => format!(
                "apisensor sampled 1 KiB HTTP segment to :80, busy-polling consumer (wakeup_bytes {w})"
            ),
            Self::RealAgent => "apisensor sampled 1 KiB HTTP segment to :80, real agent draining \
                 and analysing (`apisensor run --dry-run`)"
                .into(),
            Self::DropExact => "apisensor drop, exact block (1 entry)".into(),
            Self::DropPrefix10k => "apisensor drop, prefix block (10k prefixes)".into(),
            Self::DropPrefix100k => "apisensor drop, prefix block (100k prefixes)".into(),
            Self::PassPrefix100k => "apisensor pass, unmonitored, 100k prefixes loaded".into(),
            Self::XdpFilterPass => "xdp-filter pass (same ACK to :22)".into(),
            Self::XdpFilterDrop => "xdp-filter drop (same SYN, source rule)".into(),
        }
    }

    /// The target, as the largest allowed ratio to the floor, if the case has one.
    fn target(self) -> Option<f64> {
        match self {
            Self::Pass => Some(3.5),
            Self::Sampled(w, Consumer::Agent) if w == SensorConfig::DEFAULT.wakeup_bytes => {
                Some(11.0)
            }
            Self::RealAgent => Some(11.0),
            Self::DropExact => Some(2.3),
            Self::DropPrefix10k => Some(5.0),
            _ => None,
        }
    }
}

/// Ring-buffer accounting of one sampled run.
#[derive(Clone, Copy, Debug, Default)]
struct RingRun {
    submitted: u64,
    lost: u64,
    wakeups: u64,
    drained: Drained,
}

/// One measurement.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Thread CPU time per packet, ns.
    cpu_ns: f64,
    /// The kernel's figure, whole ns.
    kernel_ns: u32,
    /// Wall time of the whole call, ns.
    wall_ns: u64,
    ring: Option<RingRun>,
}

/// Runs `prog` on `pkt` `repeat` times and checks its verdict.
#[expect(
    clippy::cast_precision_loss,
    reason = "nanosecond totals fit an f64 exactly"
)]
fn measure(prog: &Xdp, pkt: &[u8], repeat: u32, expect: u32) -> anyhow::Result<Sample> {
    let wall = Instant::now();
    let before = thread_cpu_ns();
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(pkt),
            repeat,
            ..TestRunOptions::default()
        })
        .context("BPF_PROG_TEST_RUN")?;
    let spent = thread_cpu_ns().saturating_sub(before);
    let wall_ns = u64::try_from(wall.elapsed().as_nanos()).unwrap_or(u64::MAX);
    ensure!(
        r.return_value == expect,
        "the program returned {} instead of {expect}",
        r.return_value
    );
    Ok(Sample {
        cpu_ns: spent as f64 / f64::from(repeat),
        kernel_ns: u32::try_from(r.duration.as_nanos()).unwrap_or(u32::MAX),
        wall_ns,
        ring: None,
    })
}

/// Everything loaded for the benchmark.
struct Bench {
    opts: Options,
    pkts: Packets,
    floor: Ebpf,
    /// The instance with the exact block and the ring consumer.
    main: Ebpf,
    /// Keeps the main instance's block maps open.
    _verdicts: Verdicts,
    /// The main instance's request ring, lent to consumer threads.
    ring: Option<RingBuf<MapData>>,
    trie_small: Ebpf,
    trie_large: Ebpf,
    /// Where the prefixes of the prefix instances went: (count, (in the table, in the trie)).
    prefix_placement: [(usize, (usize, usize)); 2],
    xf: XdpFilter,
    /// The real agent, whose own program the real-agent case runs.
    agent: RealAgent,
    /// CPU of the `TestRun` thread and of the consumer threads.
    cpus: (Option<usize>, Option<usize>),
}

impl Bench {
    fn setup(opts: Options, ncpu: usize) -> anyhow::Result<Self> {
        let cpus = if ncpu >= 2 {
            (Some(0), Some(1))
        } else {
            (None, None)
        };
        prepare_thread(cpus.0)?;
        // Fail early, and before loading anything, if the reference is unavailable.
        eprintln!("setting up xdp-filter in a private network namespace");
        let xf = XdpFilter::setup()?;
        eprintln!("starting the real agent (apisensor run --dry-run) in a namespace lab");
        let agent = RealAgent::setup()?;
        eprintln!(
            "agent pid {}, XDP {}, wakeup_bytes {}",
            agent.pid, agent.xdp_mode, agent.wakeup
        );
        eprintln!("compiling and loading the floor program");
        let floor = load_floor()?;
        eprintln!("loading apisensor (main instance)");
        let mut main = load_sensor(SensorConfig::DEFAULT.wakeup_bytes)?;
        let ring_map = main
            .take_map(map_names::REQ_EVENTS)
            .context("REQ_EVENTS map missing")?;
        let ring = RingBuf::try_from(ring_map)?;
        let mut verdicts = Verdicts::from_ebpf(&mut main)?;
        verdicts.block(
            IpNet::from(IpAddr::V4(BLOCKED)),
            BLOCK_TTL,
            Reason::Manual,
            "kernel benchmark",
            boot_ns(),
        )?;
        eprintln!("loading apisensor with 10k prefixes");
        let (trie_small, mem_small) = load_prefix_instance(10_000)?;
        eprintln!("loading apisensor with 100k prefixes");
        let (trie_large, mem_large) = load_prefix_instance(100_000)?;
        Ok(Self {
            opts,
            pkts: Packets::new(),
            floor,
            main,
            _verdicts: verdicts,
            ring: Some(ring),
            trie_small,
            trie_large,
            prefix_placement: [(10_000, mem_small), (100_000, mem_large)],
            xf,
            agent,
            cpus,
        })
    }

    fn run_case(&mut self, case: Case) -> anyhow::Result<Sample> {
        let repeat = self.opts.repeat;
        let sensor = program_names::XDP_INGRESS;
        match case {
            Case::Floor => measure(
                xdp(&self.floor, FLOOR_PROGRAM)?,
                &self.pkts.pass,
                repeat,
                XDP_PASS,
            ),
            Case::Pass => measure(xdp(&self.main, sensor)?, &self.pkts.pass, repeat, XDP_PASS),
            Case::Sampled(wakeup, how) => self.run_sampled(wakeup, how, repeat).map(|(s, _)| s),
            Case::RealAgent => self.run_real_agent(repeat),
            Case::DropExact => measure(
                xdp(&self.main, sensor)?,
                &self.pkts.blocked,
                repeat,
                XDP_DROP,
            ),
            Case::DropPrefix10k => measure(
                xdp(&self.trie_small, sensor)?,
                &self.pkts.blocked,
                repeat,
                XDP_DROP,
            ),
            Case::DropPrefix100k => measure(
                xdp(&self.trie_large, sensor)?,
                &self.pkts.blocked,
                repeat,
                XDP_DROP,
            ),
            Case::PassPrefix100k => measure(
                xdp(&self.trie_large, sensor)?,
                &self.pkts.pass,
                repeat,
                XDP_PASS,
            ),
            Case::XdpFilterPass => measure(&self.xf.prog, &self.pkts.pass, repeat, XDP_PASS),
            Case::XdpFilterDrop => measure(&self.xf.prog, &self.pkts.blocked, repeat, XDP_DROP),
        }
    }

    /// The sampled segment `repeat` times while a thread drains the ring; also returns the
    /// wall time from the start of the call until the last record was drained.
    fn run_sampled(
        &mut self,
        wakeup: u32,
        how: Consumer,
        repeat: u32,
    ) -> anyhow::Result<(Sample, Duration)> {
        configure(&mut self.main, wakeup)?;
        let before = read_stats(&self.main)?;
        let ring = self.ring.take().context("the ring is lent out")?;
        let consumer = DrainThread::spawn(ring, self.cpus.1, how);
        let start = Instant::now();
        let sample = measure(
            xdp(&self.main, program_names::XDP_INGRESS)?,
            &self.pkts.segment,
            repeat,
            XDP_PASS,
        );
        let (ring, drained) = consumer.finish()?;
        self.ring = Some(ring);
        let mut sample = sample?;
        let after = read_stats(&self.main)?;
        let delta = |c: Counter| after[c as usize] - before[c as usize];
        let run = RingRun {
            submitted: delta(Counter::ReqEvents),
            lost: delta(Counter::ReqRingFull),
            wakeups: delta(Counter::ReqWakeups),
            drained,
        };
        ensure!(
            run.submitted + run.lost == u64::from(repeat),
            "{} submitted + {} lost != {repeat} packets",
            run.submitted,
            run.lost
        );
        ensure!(
            run.drained.records == run.submitted
                && run.drained.decode_errors == 0
                && run.drained.wrong_payload == 0,
            "the consumer drained {} records ({} undecodable, {} without the {SEGMENT_PAYLOAD}-byte \
             payload) of {} submitted",
            run.drained.records,
            run.drained.decode_errors,
            run.drained.wrong_payload,
            run.submitted
        );
        sample.ring = Some(run);
        let span = drained
            .last_at
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(start));
        Ok((sample, span))
    }

    /// The sampled segment `repeat` times through the real agent's own program while the
    /// agent drains; then waits until it has drained the ring, so that nothing it does for
    /// this run falls into the next case.
    fn run_real_agent(&mut self, repeat: u32) -> anyhow::Result<Sample> {
        let agent = &mut self.agent;
        agent.check_running()?;
        let consumed_before = agent.wait_drained()?;
        let before = sum_stats(&agent.stats)?;
        let cpu_before = process_cpu_ns(agent.pid)?;
        let sample = measure(&agent.prog, &self.pkts.segment, repeat, XDP_PASS);
        let drained = agent.wait_drained();
        let mut sample = sample?;
        let consumed = drained? - consumed_before;
        let cpu_ns = process_cpu_ns(agent.pid)?.saturating_sub(cpu_before);
        let after = sum_stats(&agent.stats)?;
        let delta = |c: Counter| after[c as usize] - before[c as usize];
        let run = RingRun {
            submitted: delta(Counter::ReqEvents),
            lost: delta(Counter::ReqRingFull),
            wakeups: delta(Counter::ReqWakeups),
            drained: Drained {
                records: consumed / SEGMENT_RECORD_BYTES,
                cpu_ns,
                ..Drained::default()
            },
        };
        ensure!(
            run.submitted + run.lost == u64::from(repeat),
            "{} submitted + {} lost != {repeat} packets: the agent's program did not sample \
             every segment",
            run.submitted,
            run.lost
        );
        ensure!(
            consumed == run.submitted * SEGMENT_RECORD_BYTES,
            "the agent consumed {consumed} ring bytes, not {} records of {SEGMENT_RECORD_BYTES}",
            run.submitted
        );
        eprintln!(
            "real agent: {} drained, {} lost, {} wakeups, agent cpu {:.1} ms",
            run.drained.records,
            run.lost,
            run.wakeups,
            Duration::from_nanos(cpu_ns).as_secs_f64() * 1e3
        );
        sample.ring = Some(run);
        Ok(sample)
    }

    /// Latency from the kernel's stamp to the consumer decoding a lone record.
    #[expect(
        clippy::cast_precision_loss,
        reason = "latencies are far below 2^52 ns"
    )]
    fn latency(&mut self, mode: WakeMode) -> anyhow::Result<Latency> {
        let wakeup = match mode {
            WakeMode::EpollOnly => WAKEUP_EVERY_RECORD,
            WakeMode::Timer(_) => SensorConfig::DEFAULT.wakeup_bytes,
        };
        configure(&mut self.main, wakeup)?;
        let before = read_stats(&self.main)?;
        let (tx, rx) = mpsc::channel();
        let ring = self.ring.take().context("the ring is lent out")?;
        let consumer = SleepingConsumer::spawn(ring, mode, self.cpus.1, tx);
        let mut jitter = Rng(SEED ^ 0x1a7e);
        let mut lat_us = Vec::with_capacity(self.opts.latency_trials);
        let mut missed = 0usize;
        let result = (|| -> anyhow::Result<()> {
            let prog = xdp(&self.main, program_names::XDP_INGRESS)?;
            for _ in 0..self.opts.latency_trials {
                check_interrupted()?;
                // A random pause decorrelates the packets from the consumer's timer.
                thread::sleep(Duration::from_micros(500 + jitter.next() % 5500));
                measure(prog, &self.pkts.segment, 1, XDP_PASS)?;
                match rx.recv_timeout(LATENCY_TIMEOUT) {
                    Ok(ns) => lat_us.push(ns as f64 / 1000.0),
                    Err(_) => missed += 1,
                }
            }
            Ok(())
        })();
        let ring = consumer.finish();
        self.ring = Some(ring?);
        result?;
        let after = read_stats(&self.main)?;
        Ok(Latency {
            mode,
            wakeup,
            median_us: median(&lat_us),
            p90_us: quantile(&lat_us, 0.9),
            max_us: quantile(&lat_us, 1.0),
            observed: lat_us.len(),
            missed,
            wakeups: after[Counter::ReqWakeups as usize] - before[Counter::ReqWakeups as usize],
        })
    }
}

/// Result of one latency mode.
struct Latency {
    mode: WakeMode,
    wakeup: u32,
    median_us: f64,
    p90_us: f64,
    max_us: f64,
    observed: usize,
    missed: usize,
    wakeups: u64,
}

/// One run of the ring-buffer rate test.
struct RateRun {
    produced_per_s: f64,
    drained_per_s: f64,
    drained: u64,
    lost: u64,
}

// ---------------------------------------------------------------------------------------------
// Report.
// ---------------------------------------------------------------------------------------------

/// What the report says about the machine.
struct Machine {
    kernel: String,
    cpu: String,
    ncpu: usize,
    load_at_start: String,
    /// Whether [`AutogroupBoost`] took effect.
    boosted: bool,
    /// The speculation mitigations that make calls and returns dearer (helpers, map lookups).
    mitigations: String,
}

/// Describes this machine.
fn machine() -> Machine {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_owned());
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    Machine {
        kernel,
        cpu,
        ncpu: usize::try_from(n).unwrap_or(1),
        load_at_start: loadavg(),
        boosted: false,
        mitigations: ["spectre_v2", "spec_rstack_overflow", "retbleed"]
            .iter()
            .filter_map(|v| {
                let path = format!("/sys/devices/system/cpu/vulnerabilities/{v}");
                let text = fs::read_to_string(path).ok()?;
                Some(format!("{v}: {}", text.trim()))
            })
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// PASS or MISS.
fn verdict_text(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

#[expect(clippy::cast_precision_loss, reason = "counts are far below 2^52")]
#[expect(clippy::too_many_lines, reason = "one linear report")]
#[expect(clippy::too_many_arguments, reason = "every part of the report")]
fn report(
    bench: &Bench,
    samples: &[Vec<Sample>],
    agent_exit: &AgentExit,
    latencies: &[Latency],
    rate: &[RateRun],
    memory: &[MapMemory],
    machine: &Machine,
    elapsed: Duration,
) -> String {
    let o = &bench.opts;
    let idx = |c: Case| CASES.iter().position(|x| *x == c).unwrap_or(0);
    let cpu = |c: Case| -> Vec<f64> { samples[idx(c)].iter().map(|s| s.cpu_ns).collect() };
    let med = |c: Case| median(&cpu(c));
    let floor = cpu(Case::Floor);
    let ratio = |c: Case| {
        let v: Vec<f64> = cpu(c).iter().zip(&floor).map(|(a, f)| a / f).collect();
        median(&v)
    };
    let kernel_med = |c: Case| {
        let v: Vec<f64> = samples[idx(c)]
            .iter()
            .map(|s| f64::from(s.kernel_ns))
            .collect();
        median(&v)
    };

    let mut m = String::new();
    let _ = writeln!(m, "## Kernel data path (BPF_PROG_TEST_RUN)\n");
    let _ = writeln!(
        m,
        "Machine: Linux {}, {}, {} CPUs (nproc); load average {} at the start, {} at the end \
         (other work shares this machine). Mitigations that tax calls and returns: {}. Total \
         benchmark time {:.0} s.\n",
        machine.kernel,
        machine.cpu,
        machine.ncpu,
        machine.load_at_start,
        loadavg(),
        machine.mitigations,
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        m,
        "Reproduce (as root, from the repository root):\n\n```\n{}\n```\n",
        o.command()
    );
    let _ = writeln!(
        m,
        "Method: each case runs one frame {} times in one `BPF_PROG_TEST_RUN` call; ns/packet is \
         the calling thread's CPU time over the call divided by the repeat count (the kernel's own \
         truncated whole-ns figure is shown beside it). The {} runs are interleaved (run 1 of every \
         case, then run 2, ...); figures are medians over runs, and the ratio is the median of the \
         per-run ratios to the floor of the same run. The `BPF_PROG_TEST_RUN` thread is pinned \
         to CPU 0 and the benchmark's consumer threads to CPU 1, all at nice -20{}; the real \
         agent's threads are left where the scheduler puts them, at nice 0. No traffic is sent: \
         xdp-filter sits on a veth pair in a private namespace and the real agent on the veth of \
         a private namespace pair, and their programs are run the same way.\n",
        o.repeat,
        o.runs,
        if machine.boosted {
            ", with the session's scheduler autogroup also at nice -20 for the duration"
        } else {
            " (raising the scheduler autogroup failed, so other sessions competed equally)"
        }
    );

    let _ = writeln!(
        m,
        "| Case | ns/packet (median) | kernel ns | × floor | target | result |"
    );
    let _ = writeln!(m, "|---|---:|---:|---:|---|---|");
    for case in CASES {
        let (target, result) = match case.target() {
            Some(t) => (
                format!("≤ {t}× floor"),
                verdict_text(ratio(case) <= t).to_owned(),
            ),
            None => (String::new(), String::new()),
        };
        let label = match case {
            Case::XdpFilterPass | Case::XdpFilterDrop => {
                format!("{} [`{}`]", case.label(), bench.xf.name)
            }
            _ => case.label(),
        };
        let _ = writeln!(
            m,
            "| {label} | {:.1} | {:.0} | {:.2} | {target} | {result} |",
            med(case),
            kernel_med(case),
            ratio(case)
        );
    }
    let pass = (med(Case::Pass), med(Case::XdpFilterPass));
    let drop = (med(Case::DropExact), med(Case::XdpFilterDrop));
    let pdrop = (med(Case::DropPrefix10k), med(Case::XdpFilterDrop));
    let _ = writeln!(m, "\nAgainst xdp-filter (target: apisensor no slower):\n");
    let _ = writeln!(m, "| Path | apisensor ns | xdp-filter ns | result |");
    let _ = writeln!(m, "|---|---:|---:|---|");
    for (label, (a, x)) in [
        ("pass, unmonitored", pass),
        ("drop, exact block", drop),
        ("drop, prefix block (10k), informative", pdrop),
    ] {
        let result = if label.ends_with("informative") {
            ""
        } else {
            verdict_text(a <= x)
        };
        let _ = writeln!(m, "| {label} | {a:.1} | {x:.1} | {result} |");
    }

    let _ = writeln!(
        m,
        "\nSampled segments: in the stand-in rows a thread on CPU 1 drains `REQ_EVENTS` with \
         `RingBuf::next()` and decodes every record as the agent does; in the real-agent row the \
         agent drains its own ring (below). The agent-like consumer waits as the agent's reader does \
         (`epoll` on the ring's descriptor, edge-triggered as tokio's `AsyncFd` registers it: woken \
         by the kernel's forced wakeups, or by its drain timer: {} ms while records arrive, backing \
         off to {} ms) and then drains everything; \
         the busy-polling one spins on the ring, which moves the ring's consumer position between \
         the CPUs after every record. Per run of {} packets \
         (medians over runs); wakeups are the kernel's forced wakeups (`req_wakeups`), losses are \
         `req_ring_full`:\n",
        sensor_user::reader::BUSY_PERIOD.as_millis(),
        DRAIN_PERIOD.as_millis(),
        o.repeat
    );
    let _ = writeln!(
        m,
        "| consumer | wakeup_bytes | ns/packet | × floor | records drained | lost (ring full) | lost % | wakeups | wakeups/packet |"
    );
    let _ = writeln!(m, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for case in CASES {
        let (consumer, w) = match case {
            Case::Sampled(w, Consumer::Agent) => ("agent-like", w),
            Case::Sampled(w, Consumer::Busy) => ("busy-polling", w),
            Case::RealAgent => ("real agent (`apisensor run --dry-run`)", bench.agent.wakeup),
            _ => continue,
        };
        let runs: Vec<RingRun> = samples[idx(case)].iter().filter_map(|s| s.ring).collect();
        let mf = |f: &dyn Fn(&RingRun) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        let drained = mf(&|r| r.drained.records as f64);
        let lost = mf(&|r| r.lost as f64);
        let wakeups = mf(&|r| r.wakeups as f64);
        let _ = writeln!(
            m,
            "| {consumer} | {w} | {:.1} | {:.2} | {drained:.0} | {lost:.0} | {:.1} | {wakeups:.0} | {:.4} |",
            med(case),
            ratio(case),
            100.0 * lost / f64::from(o.repeat),
            wakeups / f64::from(o.repeat),
        );
    }
    let cpu_med = |c: Case| {
        let runs: Vec<RingRun> = samples[idx(c)].iter().filter_map(|s| s.ring).collect();
        let ms = median(
            &runs
                .iter()
                .map(|r| r.drained.cpu_ns as f64 / 1e6)
                .collect::<Vec<_>>(),
        );
        let per_record = median(
            &runs
                .iter()
                .map(|r| r.drained.cpu_ns as f64 / r.drained.records.max(1) as f64)
                .collect::<Vec<_>>(),
        );
        (ms, per_record)
    };
    let (agent_ms, agent_per) = cpu_med(Case::RealAgent);
    let stand_in = Case::Sampled(SensorConfig::DEFAULT.wakeup_bytes, Consumer::Agent);
    let (stand_ms, stand_per) = cpu_med(stand_in);
    let drained_total: u64 = samples[idx(Case::RealAgent)]
        .iter()
        .filter_map(|s| s.ring)
        .map(|r| r.drained.records)
        .sum();
    let said = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |n| n.to_string());
    let _ = writeln!(
        m,
        "\nReal agent: the release `apisensor run --dry-run` with the configuration \
         `[sensor] ports = [80]` (every other setting its default: wakeup_bytes {}, drain_interval_ms {} \
         (1 ms while records arrive), detection on, deciding without blocking), started in the \
         test lab's server namespace and attached to its veth (XDP mode {}); nothing is sent to it. The case runs the \
         agent's own loaded XDP program (the one that uses its pinned `REQ_EVENTS`) on the same \
         frame, so the agent drains the ring with its real reader and pipeline (decoding, flow \
         table and reassembly, HTTP, detection). Its threads are not pinned and keep nice 0 (the \
         scheduler places them; they share the benchmark's scheduler autogroup). Records drained \
         are the advance of the ring's consumer position over the {SEGMENT_RECORD_BYTES} bytes of \
         a record, once the agent has caught up after the call. A record lost to a full ring \
         skips the copy, so a consumer that falls behind makes its row cheaper: read the row with \
         its lost %. Consumer CPU time per run \
         (medians, including the catching up): the real agent {agent_ms:.1} ms, {agent_per:.0} ns \
         per record drained (every thread of the process, from `/proc/PID/task/*/schedstat`); \
         the agent-like stand-in with the same wakeup_bytes {stand_ms:.1} ms, {stand_per:.0} ns \
         per record. When stopped, the agent reported {} records read from `REQ_EVENTS`, {} \
         segments given to its analyzer and {} transactions ({drained_total} drained in the {} \
         runs).",
        bench.agent.wakeup,
        bench.agent.drain_period.as_millis(),
        bench.agent.xdp_mode,
        said(agent_exit.req_records),
        said(agent_exit.segments),
        said(agent_exit.transactions),
        o.runs
    );
    let _ = writeln!(
        m,
        "\n{WAKEUP_CONFIG_MIN} is the smallest `wakeup_bytes` the agent's configuration accepts; \
         {WAKEUP_EVERY_RECORD} (below one {}-byte record) makes every record that lands in an \
         empty ring wake the reader. A CPU wakes the reader when its record makes the pending bytes \
         reach the threshold, or once when it finds them above it, and again only after it has \
         seen them below. Below two records that can stall: the reader goes to sleep while the \
         last record is still being written, that record is committed without a wakeup (the data \
         before it was not yet drained when its CPU looked), and every later record lands in a \
         non-empty ring that never looks below the threshold, so only the drain timer wakes the \
         reader, and a burst fills the ring first (the {WAKEUP_EVERY_RECORD} row). From a few \
         records up, the next check after a drain sees the ring below the threshold again.",
        size_of::<sensor_common::EventHeader>() + sensor_common::data_class(SEGMENT_PAYLOAD)
    );

    let _ = writeln!(
        m,
        "\nConsumer latency: {} single-packet trials per mode, 0.5 to 6 ms apart (random), from the \
         kernel's `bpf_ktime_get_boot_ns` stamp in the record to the consumer thread decoding it \
         (`CLOCK_BOOTTIME`). Mode (a) uses wakeup_bytes {WAKEUP_EVERY_RECORD} so that a lone record \
         wakes the reader; with the agent's minimum of {WAKEUP_CONFIG_MIN} a lone record never \
         does, and only the timer of mode (b) picks it up:\n",
        o.latency_trials
    );
    let _ = writeln!(
        m,
        "| Consumer | wakeup_bytes | median µs | p90 µs | max µs | observed | missed (> 1 s) | kernel wakeups |"
    );
    let _ = writeln!(m, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for l in latencies {
        let mode = match l.mode {
            WakeMode::EpollOnly => "(a) epoll wakeups only".to_owned(),
            WakeMode::Timer(p) => format!(
                "(b) drain timer ({} ms busy, {} ms idle) + threshold wakeup (agent)",
                sensor_user::reader::BUSY_PERIOD.as_millis(),
                p.as_millis()
            ),
        };
        let _ = writeln!(
            m,
            "| {mode} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {} |",
            l.wakeup, l.median_us, l.p90_us, l.max_us, l.observed, l.missed, l.wakeups
        );
    }

    let _ = writeln!(
        m,
        "\nRing-buffer rate: the sampled segment {} times in one call (wakeup_bytes {}) while the \
         agent-like consumer drains; drained/s counts from the start of the call to the last record \
         drained. Medians over {} runs:\n",
        o.rate_repeat,
        SensorConfig::DEFAULT.wakeup_bytes,
        rate.len()
    );
    let _ = writeln!(
        m,
        "| produced/s (wall time of the call) | drained/s (consumer) | drained | lost (ring full) | lost % |"
    );
    let _ = writeln!(m, "|---:|---:|---:|---:|---:|");
    let rm = |f: &dyn Fn(&RateRun) -> f64| median(&rate.iter().map(f).collect::<Vec<_>>());
    let lost = rm(&|r| r.lost as f64);
    let _ = writeln!(
        m,
        "| {:.0} | {:.0} | {:.0} | {lost:.0} | {:.1} |",
        rm(&|r| r.produced_per_s),
        rm(&|r| r.drained_per_s),
        rm(&|r| r.drained as f64),
        100.0 * lost / f64::from(o.rate_repeat)
    );
    let lossless = rate.iter().filter(|r| r.lost == 0).count();
    let _ = writeln!(
        m,
        "\n{lossless} of {} runs lost no record{}",
        rate.len(),
        if lossless == rate.len() {
            ": the consumer sustained the kernel's full `BPF_PROG_TEST_RUN` rate, so the rate \
             without loss is at least the produced/s above."
        } else {
            "; where records were lost, the consumer could not sustain the produced rate and \
             drained/s is the most it sustained."
        }
    );

    let _ = writeln!(
        m,
        "\nMap memory at default sizes (`memlock` from `/proc/self/fdinfo` of a freshly loaded, \
         empty object):\n"
    );
    let _ = writeln!(m, "| Map | type | max_entries | memlock bytes | MiB |");
    let _ = writeln!(m, "|---|---|---:|---:|---:|");
    let mut total = 0u64;
    for r in memory {
        total += r.memlock;
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {:.2} |",
            r.name,
            r.map_type,
            r.max_entries,
            r.memlock,
            r.memlock as f64 / f64::from(1u32 << 20)
        );
    }
    let _ = writeln!(
        m,
        "| total | | | {total} | {:.2} |",
        total as f64 / f64::from(1u32 << 20)
    );
    let _ = writeln!(m);
    for (n, (table, trie)) in bench.prefix_placement {
        let _ = writeln!(
            m,
            "With {n} IPv4 prefixes blocked: {table} in `BLOCK_TABLE_V4` (preallocated above), \
             {trie} overflowed into the `BLOCK_PREFIX_V4` trie."
        );
    }
    m
}

// ---------------------------------------------------------------------------------------------
// Main.
// ---------------------------------------------------------------------------------------------

#[expect(clippy::cast_precision_loss, reason = "counts are far below 2^52")]
fn rate_run(bench: &mut Bench) -> anyhow::Result<RateRun> {
    let repeat = bench.opts.rate_repeat;
    let (s, span) =
        bench.run_sampled(SensorConfig::DEFAULT.wakeup_bytes, Consumer::Agent, repeat)?;
    let ring = s.ring.unwrap_or_default();
    let wall = span.max(Duration::from_nanos(1));
    eprintln!(
        "rate: call {:.1} ms wall, {:.1} ms cpu; last record drained after {:.1} ms; lost {}",
        s.wall_ns as f64 / 1e6,
        s.cpu_ns * f64::from(repeat) / 1e6,
        span.as_secs_f64() * 1e3,
        ring.lost
    );
    Ok(RateRun {
        produced_per_s: f64::from(repeat) / (s.wall_ns.max(1) as f64 / 1e9),
        drained_per_s: ring.drained.records as f64 / wall.as_secs_f64(),
        drained: ring.drained.records,
        lost: ring.lost,
    })
}

/// Set by SIGINT or SIGTERM; checked between measurements so that the cleanup guards run.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Routes SIGINT and SIGTERM to [`INTERRUPTED`].
fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Fails once SIGINT or SIGTERM has arrived, so that `main` unwinds through the guards.
fn check_interrupted() -> anyhow::Result<()> {
    ensure!(
        !INTERRUPTED.load(Ordering::Relaxed),
        "interrupted; cleaned up"
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let opts = Options::parse(std::env::args().skip(1))?;
    loader::require_root().context("the kernel benchmark loads eBPF programs")?;
    catch_signals();
    let out = run_all(opts).map_err(|e| {
        if INTERRUPTED.load(Ordering::Relaxed) {
            anyhow!("interrupted by a signal; everything the benchmark set up was removed")
        } else {
            e
        }
    })?;
    print!("{out}");
    Ok(())
}

/// Sets up, runs every measurement, tears down (the guards drop here, also on error) and
/// returns the markdown.
fn run_all(opts: Options) -> anyhow::Result<String> {
    let boost = AutogroupBoost::apply();
    if boost.previous.is_none() {
        eprintln!("warning: could not raise the scheduler autogroup; figures may be noisier");
    }
    let started = Instant::now();
    let mut machine = machine();
    machine.boosted = boost.previous.is_some();
    let mut bench = Bench::setup(opts, machine.ncpu)?;

    let mut samples: Vec<Vec<Sample>> = vec![Vec::with_capacity(opts.runs); CASES.len()];
    for run in 0..opts.runs {
        let mut line = format!("run {}/{}:", run + 1, opts.runs);
        for (i, case) in CASES.iter().enumerate() {
            check_interrupted()?;
            let s = bench
                .run_case(*case)
                .with_context(|| format!("case {:?}, run {}", case, run + 1))?;
            let _ = write!(line, " {:.1}", s.cpu_ns);
            samples[i].push(s);
        }
        eprintln!("{line} ns");
    }
    // The agent has nothing more to drain; stopped now, its timer cannot touch the
    // measurements below.
    let agent_exit = bench.agent.stop();

    eprintln!("measuring consumer latency");
    let latencies = vec![
        bench.latency(WakeMode::EpollOnly)?,
        bench.latency(WakeMode::Timer(DRAIN_PERIOD))?,
    ];
    eprintln!("measuring the ring-buffer rate");
    let mut rate = Vec::with_capacity(opts.runs);
    for _ in 0..opts.runs {
        check_interrupted()?;
        rate.push(rate_run(&mut bench)?);
    }
    configure(&mut bench.main, SensorConfig::DEFAULT.wakeup_bytes)?;
    eprintln!("reading map memory");
    let memory = map_memory()?;
    let out = report(
        &bench,
        &samples,
        &agent_exit,
        &latencies,
        &rate,
        &memory,
        &machine,
        started.elapsed(),
    );
    drop(bench);
    Ok(out)
}
