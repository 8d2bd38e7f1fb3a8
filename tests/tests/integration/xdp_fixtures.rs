//! `BPF_PROG_TEST_RUN` fixtures for the kernel programs, in the style of katran's
//! `KatranBaseTestFixtures.h` and aya's `prog_test_run.rs`: every fixture is a crafted frame, the
//! state to set up (monitored ports, address and flow blocks, allowlist entries, capture
//! length), and everything the run must change: the program's return value, the full counter
//! table, the `SOURCES` map, the hits of block and allowlist entries, and the ring-buffer record
//! (or the absence of one).
//!
//! The programs are loaded from the object embedded in `sensor-user`, without pinning
//! (`pin_dir: None`), so nothing here touches `/sys/fs/bpf/apisensor`. No traffic is sent: the
//! kernel runs the program on each frame in place. Needs root and a build with the eBPF object
//! (not `AYA_BUILD_SKIP=1`); without either every test fails with a message saying so.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use apisensor_tests::packet::{
    ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, Eth, Ext, IPPROTO_TCP,
    Ipv4, Ipv6, OFF_TCP_DOFF, OFF_V4_TOTAL_LEN, OFF_V4_VER_IHL, OFF_V6_PAYLOAD_LEN, Tcp, noise,
    pad_to_min, put_be16, tcp_flags,
};
use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use sensor_common::{
    Addr, Counter, Direction, EventKind, MAX_SYN_OPTIONS, REQ_DATA_LEN, RESP_DATA_LEN, Reason,
    SensorConfig, SourceStats, SynOptions, block_table, capacity, map_names, program_names,
    syn_flags, v4_mapped,
};
use sensor_user::{
    clock, event,
    http::TransportFingerprint,
    loader::{self, LoadOptions},
    replay,
    verdict::{self, Verdicts},
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
/// `TC_ACT_UNSPEC` (-1) as the test run reports it.
const TC_ACT_UNSPEC: u32 = u32::MAX;
/// `TC_ACT_SHOT`.
const TC_ACT_SHOT: u32 = 2;

/// Client (request source) addresses.
const C4: [u8; 4] = [198, 51, 100, 2];
const C6: &str = "2001:db8:1::2";
/// Server addresses.
const S4: [u8; 4] = [203, 0, 113, 1];
const S6: &str = "2001:db8:2::1";
/// The monitored server port and one that is not monitored.
const PORT: u16 = 8080;
const OTHER_PORT: u16 = 9090;
const CLIENT_PORT: u16 = 40_000;
/// Lifetime of the blocks fixtures set up.
const TTL: Duration = Duration::from_mins(10);
/// How long ago a fixture's expired block was written (its TTL is half of it). The boot clock
/// of any machine that can run these tests is past it.
const EXPIRED_AGO: Duration = Duration::from_millis(200);

const HTTP_GET: &[u8] =
    b"GET /api/users/42 HTTP/1.1\r\nHost: api.example\r\nUser-Agent: fixture/1.0\r\nAccept: */*\r\n\r\n";
const HTTP_RESP: &[u8] = b"HTTP/1.1 200 OK\r\nSet-Cookie: session=fixture-value; HttpOnly\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";

fn c6() -> Ipv6Addr {
    C6.parse().expect("address literal")
}

fn s6() -> Ipv6Addr {
    S6.parse().expect("address literal")
}

/// IPv4 from the client to the server, untagged.
fn v4() -> Ipv4 {
    Eth::new().ipv4(C4, S4)
}

/// IPv6 from the client to the server, untagged.
fn v6() -> Ipv6 {
    Eth::new().ipv6(c6(), s6())
}

/// A request segment to `dport` with PSH|ACK.
fn req(dport: u16) -> Tcp {
    Tcp::new(CLIENT_PORT, dport)
        .seq(0x0102_0304)
        .ack(0x0a0b_0c0d)
}

/// `n` bytes of printable, position-dependent payload.
fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Which program a fixture runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prog {
    Xdp,
    Tc,
}

/// A block to insert before the run and the hits it must show after it.
struct BlockSpec {
    net: &'static str,
    expired: bool,
    hits: u64,
}

/// A flow block (the TCP connection `client` to `server`) to insert before the run and the
/// hits it must show after it.
struct FlowSpec {
    client: SocketAddr,
    server: SocketAddr,
    expired: bool,
    hits: u64,
    /// The program removes the block (a SYN reopening its ports).
    removed: bool,
}

/// The flow from the IPv4 client's `sport` to the IPv4 server's `dport`.
fn flow4(sport: u16, dport: u16) -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(C4)), sport),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(S4)), dport),
    )
}

/// The flow from the IPv6 client's `sport` to the IPv6 server's `dport`.
fn flow6(sport: u16, dport: u16) -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::new(IpAddr::V6(c6()), sport),
        SocketAddr::new(IpAddr::V6(s6()), dport),
    )
}

/// The verdict id of a fixture's `i`th flow block (odd and non-zero, as the agent's are).
fn flow_verdict_id(i: usize) -> u64 {
    0xf10_0001 + 2 * i as u64
}

/// An allowlist entry to insert before the run and the hits it must show after it: an
/// operator's (permanent) entry, or an exception written with a TTL as the policy writes one
/// beside a prefix block (`Some(expired)`).
struct AllowSpec {
    net: &'static str,
    hits: u64,
    exception: Option<bool>,
}

/// The decision id the fixtures' exceptions are written under.
const EXCEPTION_VERDICT_ID: u64 = 0xe0e0_0001;

/// The expected change of one `SOURCES` entry: `packets` +1 and the others as given. Every
/// other entry must stay as it was.
struct SourceChange {
    addr: Addr,
    bytes: u64,
    syns: u64,
}

/// The one ring-buffer record a run must produce.
struct ExpectedEvent {
    kind: EventKind,
    direction: Direction,
    src: Addr,
    dst: Addr,
    ip_version: u8,
    tcp: Tcp,
    payload_len: u32,
    captured: Vec<u8>,
    /// The client SYN's fields the record must carry (`None`: none, as for every record but a
    /// client SYN's).
    syn: Option<SynOptions>,
}

impl ExpectedEvent {
    /// The record with a client SYN's fields.
    fn with_syn(mut self, syn: SynOptions) -> Self {
        self.syn = Some(syn);
        self
    }
}

/// A client SYN's expected fields: the TTL, the window every test frame has (64240), the option
/// kinds in order (at most ten kept), the MSS and window scale values, and further
/// `syn_flags` (`TIMESTAMP`, `MALFORMED`, `MORE`).
fn syn_fields(ttl: u8, kinds: &[u8], mss: Option<u16>, ws: Option<u8>, flags: u8) -> SynOptions {
    let mut s = SynOptions {
        window: 64_240,
        ttl,
        flags: syn_flags::PARSED | flags,
        ..SynOptions::default()
    };
    let kept = kinds.len().min(MAX_SYN_OPTIONS);
    s.kinds[..kept].copy_from_slice(&kinds[..kept]);
    s.option_count = kept as u8;
    if let Some(m) = mss {
        s.mss = m;
        s.flags |= syn_flags::MSS;
    }
    if let Some(w) = ws {
        s.wscale = w;
        s.flags |= syn_flags::WSCALE;
    }
    s
}

/// TCP options of a Linux SYN: MSS 1460, SACK permitted, timestamp, NOP, window scale 7.
const LINUX_SYN_OPTIONS: [u8; 20] = [
    2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 1, 2, 3, 0, 0, 0, 0, 1, 3, 3, 7,
];
/// TCP options of a Windows SYN: MSS 1460, NOP, window scale 8, NOP, NOP, SACK permitted.
const WINDOWS_SYN_OPTIONS: [u8; 12] = [2, 4, 0x05, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2];

/// Both ends of a fixture's IP layer, for the expected event.
#[derive(Clone, Copy)]
enum Ends {
    V4([u8; 4], [u8; 4]),
    V6(Ipv6Addr, Ipv6Addr),
}

impl Ends {
    fn request4() -> Self {
        Self::V4(C4, S4)
    }

    fn request6() -> Self {
        Self::V6(c6(), s6())
    }

    fn addrs(self) -> (Addr, Addr, u8) {
        match self {
            Self::V4(s, d) => (v4_mapped(s), v4_mapped(d), 4),
            Self::V6(s, d) => (s.octets(), d.octets(), 6),
        }
    }

    /// A segment record: `payload_len` bytes on the wire of which `captured` were copied.
    fn segment(
        self,
        dir: Direction,
        tcp: &Tcp,
        payload_len: usize,
        captured: &[u8],
    ) -> ExpectedEvent {
        let (src, dst, ip_version) = self.addrs();
        ExpectedEvent {
            kind: EventKind::Segment,
            direction: dir,
            src,
            dst,
            ip_version,
            tcp: tcp.clone(),
            payload_len: payload_len as u32,
            captured: captured.to_vec(),
            syn: None,
        }
    }

    /// A segment record whose whole payload fits the default capture length of XDP.
    fn request(self, tcp: &Tcp, payload: &[u8]) -> ExpectedEvent {
        self.segment(Direction::Ingress, tcp, payload.len(), payload)
    }

    /// A header-only SYN/FIN/RST record.
    fn control(self, dir: Direction, tcp: &Tcp) -> ExpectedEvent {
        ExpectedEvent {
            kind: EventKind::Control,
            ..self.segment(dir, tcp, 0, &[])
        }
    }
}

/// One fixture: input, setup, and every expected effect.
struct Fixture {
    name: &'static str,
    prog: Prog,
    frame: Vec<u8>,
    ports: Vec<u16>,
    capture_len: Option<u32>,
    blocks: Vec<BlockSpec>,
    flows: Vec<FlowSpec>,
    allows: Vec<AllowSpec>,
    action: u32,
    verdict: Counter,
    /// An event counter the frame increments besides the verdict's and the record's.
    also: Option<Counter>,
    source: Option<SourceChange>,
    event: Option<ExpectedEvent>,
}

impl Fixture {
    /// An XDP fixture: by default `PORT` is monitored, nothing is blocked, and the frame must
    /// pass with `XdpPass`, change no source and emit nothing.
    fn xdp(name: &'static str, frame: Vec<u8>) -> Self {
        Self {
            name,
            prog: Prog::Xdp,
            frame,
            ports: vec![PORT],
            capture_len: None,
            blocks: Vec::new(),
            flows: Vec::new(),
            allows: Vec::new(),
            action: XDP_PASS,
            verdict: Counter::XdpPass,
            also: None,
            source: None,
            event: None,
        }
    }

    /// A TC fixture: `PORT` is monitored; by default `TcPass` and no event.
    fn tc(name: &'static str, frame: Vec<u8>) -> Self {
        Self {
            prog: Prog::Tc,
            action: TC_ACT_UNSPEC,
            verdict: Counter::TcPass,
            ..Self::xdp(name, frame)
        }
    }

    fn verdict(mut self, c: Counter) -> Self {
        self.verdict = c;
        self
    }

    /// Dropped by TC (`TC_ACT_SHOT`), counted as `c`, no record.
    fn shot(mut self, c: Counter) -> Self {
        self.action = TC_ACT_SHOT;
        self.verdict = c;
        self
    }

    /// Dropped by a block: the drop path touches no per-source counter (the block entry counts
    /// it), so `SOURCES` must not change at all.
    fn dropped_by(mut self, c: Counter) -> Self {
        self.action = XDP_DROP;
        self.verdict = c;
        self.source = None;
        self
    }

    /// The source counters of `addr` take this frame: packets +1, bytes +frame length.
    fn counts(mut self, addr: Addr) -> Self {
        self.source = Some(SourceChange {
            addr,
            bytes: self.frame.len() as u64,
            syns: 0,
        });
        self
    }

    fn counts_v4(self) -> Self {
        self.counts(v4_mapped(C4))
    }

    fn counts_v6(self) -> Self {
        self.counts(c6().octets())
    }

    fn syn(mut self) -> Self {
        if let Some(s) = &mut self.source {
            s.syns = 1;
        }
        self
    }

    fn event(mut self, e: ExpectedEvent) -> Self {
        self.event = Some(e);
        self
    }

    fn ports(mut self, ports: &[u16]) -> Self {
        self.ports = ports.to_vec();
        self
    }

    fn capture_len(mut self, len: u32) -> Self {
        self.capture_len = Some(len);
        self
    }

    fn block(mut self, net: &'static str, expired: bool, hits: u64) -> Self {
        self.blocks.push(BlockSpec { net, expired, hits });
        self
    }

    fn flow(
        mut self,
        (client, server): (SocketAddr, SocketAddr),
        expired: bool,
        hits: u64,
    ) -> Self {
        self.flows.push(FlowSpec {
            client,
            server,
            expired,
            hits,
            removed: false,
        });
        self
    }

    /// The frame's program removes the flow blocks it was given.
    fn removes_flows(mut self) -> Self {
        for f in &mut self.flows {
            f.removed = true;
        }
        self
    }

    /// Besides the verdict and the event's counter, the frame increments `c`.
    fn also_counts(mut self, c: Counter) -> Self {
        self.also = Some(c);
        self
    }

    fn allow(mut self, net: &'static str, hits: u64) -> Self {
        self.allows.push(AllowSpec {
            net,
            hits,
            exception: None,
        });
        self
    }

    /// An exception to a prefix block, lapsed a moment ago when `expired`.
    fn exception(mut self, net: &'static str, expired: bool, hits: u64) -> Self {
        self.allows.push(AllowSpec {
            net,
            hits,
            exception: Some(expired),
        });
        self
    }
}

/// The loaded object and the maps the fixtures read and write.
struct Sensor {
    ebpf: Ebpf,
    verdicts: Verdicts,
    stats: PerCpuArray<MapData, u64>,
    sources: HashMap<MapData, Addr, SourceStats>,
    req: RingBuf<MapData>,
    resp: RingBuf<MapData>,
    lo_ifindex: u32,
}

type Counters = [u64; Counter::COUNT];

impl Sensor {
    fn load() -> Self {
        let mut ebpf = loader::load_object(
            loader::EBPF_OBJECT,
            &LoadOptions {
                pin_dir: None,
                max_sources: capacity::SOURCES,
            },
        )
        .unwrap_or_else(|e| {
            panic!(
                "cannot load the eBPF object: {e}. These tests need root, a kernel with BPF, \
                 and a build with the eBPF object (not AYA_BUILD_SKIP=1)"
            )
        });
        loader::configure(&mut ebpf, SensorConfig::DEFAULT, &[])
            .unwrap_or_else(|e| panic!("configuring the sensor: {e}"));
        let verdicts =
            Verdicts::from_ebpf(&mut ebpf).unwrap_or_else(|e| panic!("opening verdict maps: {e}"));
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .unwrap_or_else(|| panic!("map {name} missing from the object"))
        };
        let stats =
            PerCpuArray::try_from(take(map_names::STATS)).expect("STATS is a per-CPU array");
        let sources = HashMap::try_from(take(map_names::SOURCES)).expect("SOURCES is a hash map");
        let req = RingBuf::try_from(take(map_names::REQ_EVENTS)).expect("REQ_EVENTS is a ring");
        let resp = RingBuf::try_from(take(map_names::RESP_EVENTS)).expect("RESP_EVENTS is a ring");
        // SAFETY: the argument is a NUL-terminated string.
        let lo_ifindex = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
        assert_ne!(lo_ifindex, 0, "no loopback interface in this namespace");
        Self {
            ebpf,
            verdicts,
            stats,
            sources,
            req,
            resp,
            lo_ifindex,
        }
    }

    fn counters(&self) -> Counters {
        let mut out = [0; Counter::COUNT];
        for c in Counter::ALL {
            let values = self
                .stats
                .get(&(c as u32), 0)
                .unwrap_or_else(|e| panic!("reading counter {}: {e}", c.name()));
            out[c as usize] = values.iter().sum();
        }
        out
    }

    fn sources(&self) -> BTreeMap<Addr, SourceStats> {
        self.sources
            .iter()
            .map(|r| r.unwrap_or_else(|e| panic!("iterating SOURCES: {e}")))
            .collect()
    }

    /// Takes every record out of a ring.
    fn drain(ring: &mut RingBuf<MapData>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(item) = ring.next() {
            out.push(item.to_vec());
        }
        out
    }

    fn drain_all(&mut self) {
        Self::drain(&mut self.req);
        Self::drain(&mut self.resp);
    }

    /// Writes the configuration and sets exactly `ports` monitored among `known` ports.
    fn configure(&mut self, capture_len: Option<u32>, wakeup_bytes: Option<u32>, ports: &[u16]) {
        let mut cfg = SensorConfig::DEFAULT;
        if let Some(len) = capture_len {
            cfg.req_capture_len = len;
            cfg.resp_capture_len = len;
        }
        if let Some(w) = wakeup_bytes {
            cfg.wakeup_bytes = w;
        }
        loader::configure(&mut self.ebpf, cfg, ports)
            .unwrap_or_else(|e| panic!("configuring the sensor: {e}"));
    }

    fn unmonitor(&mut self, ports: &[u16]) {
        let map = self
            .ebpf
            .map_mut(map_names::PORTS)
            .expect("PORTS map present");
        let mut map: Array<&mut MapData, u8> = Array::try_from(map).expect("PORTS is an array");
        for p in ports {
            map.set(u32::from(*p), 0, 0)
                .unwrap_or_else(|e| panic!("clearing port {p}: {e}"));
        }
    }

    /// Runs XDP on `frame` `repeat` times.
    ///
    /// The kernel refuses test input shorter than an Ethernet header, so a shorter frame is
    /// passed as the linear part of a multi-buffer packet: `data_in` is padded to
    /// [`ETH_HLEN`] bytes and `xdp_md.data_end` ends the linear part at the frame's length, the
    /// padding going to a fragment that `[data, data_end)` does not cover (kernel
    /// `net/bpf/test_run.c`, `bpf_prog_test_run_xdp`). That is what a driver hands XDP when the
    /// first buffer of a frame is that short.
    fn run_xdp(&self, frame: &[u8], repeat: u32) -> u32 {
        let prog: &Xdp = self
            .ebpf
            .program(program_names::XDP_INGRESS)
            .expect("XDP program present")
            .try_into()
            .expect("XDP program type");
        let mut data = frame.to_vec();
        if data.len() < ETH_HLEN {
            data.resize(ETH_HLEN, 0xee);
        }
        // struct xdp_md { data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex }.
        let md: Vec<u8> = [0, frame.len() as u32, 0, 0, 0, 0]
            .iter()
            .flat_map(|v: &u32| v.to_ne_bytes())
            .collect();
        let opts = TestRunOptions {
            data_in: Some(&data),
            ctx_in: (data.len() > frame.len()).then_some(md.as_slice()),
            repeat,
            ..TestRunOptions::default()
        };
        prog.test_run(opts)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN of XDP on {} bytes: {e:?}", frame.len()))
            .return_value
    }

    fn run_tc(&self, frame: &[u8]) -> u32 {
        let prog: &SchedClassifier = self
            .ebpf
            .program(program_names::TC_EGRESS)
            .expect("TC program present")
            .try_into()
            .expect("TC program type");
        assert!(
            frame.len() >= ETH_HLEN,
            "the kernel runs skb programs only on frames of at least {ETH_HLEN} bytes"
        );
        let opts = TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::default()
        };
        prog.test_run(opts)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN of TC on {} bytes: {e:?}", frame.len()))
            .return_value
    }

    /// Runs one fixture, always undoing its setup; returns what did not match.
    fn check(&mut self, f: &Fixture) -> Vec<String> {
        let now = clock::boot_ns();
        let mut errors = Vec::new();
        self.configure(f.capture_len, None, &f.ports);
        // An expired block lapsed a moment ago: it is placed EXPIRED_AGO in the past with a TTL
        // shorter than that, which any uptime allows (a machine booted a minute ago has no boot
        // clock twenty minutes back).
        let written = |expired: bool| {
            if expired {
                (now - EXPIRED_AGO.as_nanos() as u64, EXPIRED_AGO / 2)
            } else {
                (now, TTL)
            }
        };
        for b in &f.blocks {
            let net = verdict::parse_net(b.net).expect("fixture block is a valid net");
            let (at, ttl) = written(b.expired);
            self.verdicts
                .block(net, ttl, Reason::Manual, f.name, at)
                .unwrap_or_else(|e| panic!("{}: blocking {net}: {e}", f.name));
        }
        for (i, fl) in f.flows.iter().enumerate() {
            let (at, ttl) = written(fl.expired);
            self.verdicts
                .block_flow(
                    fl.client,
                    fl.server,
                    ttl,
                    Reason::Manual,
                    f.name,
                    at,
                    flow_verdict_id(i),
                )
                .unwrap_or_else(|e| {
                    panic!(
                        "{}: blocking flow {} -> {}: {e}",
                        f.name, fl.client, fl.server
                    )
                });
        }
        for a in &f.allows {
            let net = verdict::parse_net(a.net).expect("fixture allow is a valid net");
            match a.exception {
                None => self.verdicts.allow(net, now),
                Some(expired) => {
                    let (at, ttl) = written(expired);
                    self.verdicts
                        .allow_exception(net, ttl, EXCEPTION_VERDICT_ID, at)
                        .map(|w| assert_eq!(w, verdict::ExceptionWrite::Written, "{}", f.name))
                }
            }
            .unwrap_or_else(|e| panic!("{}: allowing {net}: {e}", f.name));
        }
        self.drain_all();

        let counters_before = self.counters();
        let sources_before = self.sources();
        let t0 = clock::boot_ns();
        let action = match f.prog {
            Prog::Xdp => self.run_xdp(&f.frame, 1),
            Prog::Tc => self.run_tc(&f.frame),
        };
        let t1 = clock::boot_ns();
        let counters_after = self.counters();
        let sources_after = self.sources();
        let (mut own, mut other) = (Self::drain(&mut self.req), Self::drain(&mut self.resp));
        if f.prog == Prog::Tc {
            std::mem::swap(&mut own, &mut other);
        }

        if action != f.action {
            errors.push(format!("action {action}, want {}", f.action));
        }
        errors.extend(Self::check_counters(f, &counters_before, &counters_after));
        errors.extend(check_sources(f, &sources_before, &sources_after, t0, t1));
        errors.extend(self.check_events(f, &own, t0, t1));
        if !other.is_empty() {
            errors.push(format!(
                "{} records in the other direction's ring",
                other.len()
            ));
        }
        errors.extend(self.check_hits(f, now));

        // Undo the setup, whatever happened.
        for b in &f.blocks {
            let net = verdict::parse_net(b.net).expect("valid net");
            if let Err(e) = self.verdicts.unblock(net) {
                errors.push(format!("removing block {net}: {e}"));
            }
        }
        for fl in f.flows.iter().filter(|fl| !fl.removed) {
            if let Err(e) = self.verdicts.unblock_flow(fl.client, fl.server) {
                errors.push(format!(
                    "removing flow block {} -> {}: {e}",
                    fl.client, fl.server
                ));
            }
        }
        for a in &f.allows {
            let net = verdict::parse_net(a.net).expect("valid net");
            if let Err(e) = self.verdicts.unallow(net) {
                errors.push(format!("removing allow {net}: {e}"));
            }
        }
        self.unmonitor(&f.ports);
        self.configure(None, None, &[]);
        errors
    }

    fn check_counters(f: &Fixture, before: &Counters, after: &Counters) -> Vec<String> {
        let mut want = [0u64; Counter::COUNT];
        want[f.verdict as usize] += 1;
        if let Some(c) = f.also {
            want[c as usize] += 1;
        }
        if let Some(e) = &f.event {
            let c = match (f.prog, e.kind) {
                (Prog::Xdp, EventKind::Segment) => Counter::ReqEvents,
                (Prog::Xdp, EventKind::Control) => Counter::ReqControlEvents,
                (Prog::Tc, EventKind::Segment) => Counter::RespEvents,
                (Prog::Tc, EventKind::Control) => Counter::RespControlEvents,
            };
            want[c as usize] += 1;
        }
        Counter::ALL
            .iter()
            .filter_map(|c| {
                let i = *c as usize;
                let got = after[i].wrapping_sub(before[i]);
                (got != want[i])
                    .then(|| format!("counter {} changed by {got}, want {}", c.name(), want[i]))
            })
            .collect()
    }

    fn check_events(&self, f: &Fixture, records: &[Vec<u8>], t0: u64, t1: u64) -> Vec<String> {
        let Some(want) = &f.event else {
            return if records.is_empty() {
                Vec::new()
            } else {
                vec![format!("{} unexpected records", records.len())]
            };
        };
        let [record] = records else {
            return vec![format!("{} records, want exactly one", records.len())];
        };
        let ev = match event::decode(record) {
            Ok(ev) => ev,
            Err(e) => return vec![format!("record does not decode: {e}")],
        };
        let h = ev.header;
        let mut errors = Vec::new();
        let mut expect = |what: &str, got: u64, want: u64| {
            if got != want {
                errors.push(format!("event {what} {got:#x}, want {want:#x}"));
            }
        };
        expect("kind", u64::from(h.kind), want.kind as u64);
        expect("direction", h.direction.into(), want.direction as u64);
        expect("ip version", h.ip_version.into(), want.ip_version.into());
        expect("src port", h.src_port.into(), want.tcp.sport.into());
        expect("dst port", h.dst_port.into(), want.tcp.dport.into());
        expect("seq", h.seq.into(), want.tcp.seq.into());
        expect("ack", h.ack.into(), want.tcp.ack.into());
        expect("tcp flags", h.tcp_flags.into(), want.tcp.flags.into());
        expect(
            "payload length",
            h.payload_len.into(),
            want.payload_len.into(),
        );
        expect(
            "captured length",
            h.captured_len.into(),
            want.captured.len() as u64,
        );
        expect("ifindex", h.ifindex.into(), self.lo_ifindex.into());
        expect("reserved", h.reserved.into(), 0);
        if h.src != want.src || h.dst != want.dst {
            errors.push(format!(
                "event addresses {} -> {}, want {} -> {}",
                event::addr_to_ip(&h.src),
                event::addr_to_ip(&h.dst),
                event::addr_to_ip(&want.src),
                event::addr_to_ip(&want.dst)
            ));
        }
        if ev.syn != want.syn {
            errors.push(format!(
                "event syn fields {:?}, want {:?}",
                ev.syn, want.syn
            ));
        }
        if !(t0..=t1).contains(&h.ts_ns) {
            errors.push(format!(
                "event timestamp {} outside the run [{t0}, {t1}]",
                h.ts_ns
            ));
        }
        if ev.payload != want.captured.as_slice() {
            // Payloads may hold header values: report where they differ, not the bytes.
            let at = ev
                .payload
                .iter()
                .zip(&want.captured)
                .position(|(a, b)| a != b)
                .unwrap_or(ev.payload.len().min(want.captured.len()));
            errors.push(format!(
                "captured bytes differ from the payload prefix at offset {at}"
            ));
        }
        errors
    }

    fn check_hits(&self, f: &Fixture, now: u64) -> Vec<String> {
        let mut errors = Vec::new();
        let blocks = self.verdicts.blocks(now).expect("listing blocks");
        for spec in &f.blocks {
            let net = verdict::parse_net(spec.net).expect("valid net");
            match blocks.iter().find(|b| b.net == net) {
                // A drop also stamps the entry; no drop leaves it unstamped.
                Some(b)
                    if b.hits == spec.hits && (b.value.last_hit_ns != 0) == (spec.hits != 0) => {}
                Some(b) => errors.push(format!(
                    "block {net} has {} hits (last hit at {}), want {}",
                    b.hits, b.value.last_hit_ns, spec.hits
                )),
                None => errors.push(format!("block {net} is gone")),
            }
        }
        let flows = self.verdicts.flow_blocks(now).expect("listing flow blocks");
        for spec in &f.flows {
            let name = format!("{} -> {}", spec.client, spec.server);
            let found = flows
                .iter()
                .find(|b| b.client == spec.client && b.server == spec.server);
            if spec.removed {
                if found.is_some() {
                    errors.push(format!("flow block {name} is still there"));
                }
                continue;
            }
            match found {
                Some(b)
                    if b.hits == spec.hits && (b.value.last_hit_ns != 0) == (spec.hits != 0) => {}
                Some(b) => errors.push(format!(
                    "flow block {name} has {} hits (last hit at {}), want {}",
                    b.hits, b.value.last_hit_ns, spec.hits
                )),
                None => errors.push(format!("flow block {name} is gone")),
            }
        }
        let allows = self.verdicts.allows(now).expect("listing allows");
        for spec in &f.allows {
            let net = verdict::parse_net(spec.net).expect("valid net");
            match allows.iter().find(|a| a.net == net) {
                Some(a) if spec.exception.is_some() != a.verdict_id.is_some() => errors.push(
                    format!("allow {net} is listed with origin {:?}", a.verdict_id),
                ),
                Some(a) if a.hits == spec.hits => {}
                Some(a) => errors.push(format!(
                    "allow {net} has {} hits, want {}",
                    a.hits, spec.hits
                )),
                None => errors.push(format!("allow {net} is gone")),
            }
        }
        errors
    }
}

fn check_sources(
    f: &Fixture,
    before: &BTreeMap<Addr, SourceStats>,
    after: &BTreeMap<Addr, SourceStats>,
    t0: u64,
    t1: u64,
) -> Vec<String> {
    let mut errors = Vec::new();
    let changed: Vec<&Addr> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    if before.keys().any(|k| !after.contains_key(k)) {
        errors.push("a source disappeared from SOURCES".to_owned());
    }
    let Some(want) = &f.source else {
        if !changed.is_empty() {
            errors.push(format!("{} sources changed, want none", changed.len()));
        }
        return errors;
    };
    if changed.iter().any(|k| **k != want.addr) {
        errors.push("a source other than the packet's changed".to_owned());
    }
    let Some(got) = after.get(&want.addr) else {
        errors.push(format!(
            "no SOURCES entry for {}",
            event::addr_to_ip(&want.addr)
        ));
        return errors;
    };
    let old = before.get(&want.addr).copied().unwrap_or_default();
    let delta = |what: &str, got: u64, old: u64, want: u64, errors: &mut Vec<String>| {
        if got.wrapping_sub(old) != want {
            errors.push(format!(
                "source {what} changed by {}, want {want}",
                got.wrapping_sub(old)
            ));
        }
    };
    delta("packets", got.packets, old.packets, 1, &mut errors);
    delta("bytes", got.bytes, old.bytes, want.bytes, &mut errors);
    delta("syns", got.syns, old.syns, want.syns, &mut errors);
    // Per-source times come from the kernel's per-jiffy clock cache (`emit::coarse_now`), so
    // they may precede the run by up to one jiffy (10 ms at the lowest HZ).
    if !(t0.saturating_sub(JIFFY_SLACK_NS)..=t1).contains(&got.last_seen_ns) {
        errors.push("source last_seen_ns outside the run".to_owned());
    }
    let first = if before.contains_key(&want.addr) {
        old.first_seen_ns
    } else {
        got.last_seen_ns
    };
    if got.first_seen_ns != first {
        errors.push("source first_seen_ns not kept from the first packet".to_owned());
    }
    errors
}

/// The longest a jiffy lasts (HZ = 100).
const JIFFY_SLACK_NS: u64 = 10_000_000;

/// Runs every fixture (each undoes its setup), then fails listing every mismatch.
fn run_table(fixtures: &[Fixture]) {
    let mut sensor = Sensor::load();
    let mut failures = Vec::new();
    for f in fixtures {
        let errors = sensor.check(f);
        if !errors.is_empty() {
            failures.push(format!("{}:\n    {}", f.name, errors.join("\n    ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n  {}",
        failures.len(),
        fixtures.len(),
        failures.join("\n  ")
    );
}

/// Monitored and unmonitored TCP over every supported encapsulation.
#[expect(
    clippy::too_many_lines,
    reason = "a fixture table is data, one entry per case"
)]
fn sampling_fixtures() -> Vec<Fixture> {
    let http = req(PORT);
    let four = Ends::request4();
    let six = Ends::request6();
    let nops = [1u8; 12];
    let tcp_ts = req(PORT).options(&[1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]);
    let frag_tcp = {
        // A later fragment whose first bytes look like a TCP header to the monitored port.
        let mut fake = req(PORT).encode(HTTP_GET, 0);
        fake.truncate(64);
        fake
    };
    let six_dstopts = (0..6).fold(v6(), |ip, _| ip.ext(Ext::DestOpts { len8: 0 }));
    let seven_dstopts = six_dstopts.clone().ext(Ext::DestOpts { len8: 0 });
    let short = b"Q";
    let big = body(300);
    let huge = body(3000);
    let cut = {
        let mut f = v4().tcp(&http, &body(200));
        f.truncate(v4().l4_offset() + 20 + 50);
        f
    };
    vec![
        Fixture::xdp(
            "ipv4 tcp http request to a monitored port",
            v4().tcp(&http, HTTP_GET),
        )
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .event(four.request(&http, HTTP_GET)),
        Fixture::xdp(
            "ipv4 tcp to an unmonitored port",
            v4().tcp(&req(OTHER_PORT), HTTP_GET),
        )
        .counts_v4(),
        Fixture::xdp(
            "monitored port set is what decides (8080 unmonitored, 9090 monitored)",
            v4().tcp(&http, HTTP_GET),
        )
        .ports(&[OTHER_PORT])
        .counts_v4(),
        Fixture::xdp(
            "ipv4 with 12 bytes of options (ihl 8)",
            v4().options(&nops).tcp(&http, HTTP_GET),
        )
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .event(four.request(&http, HTTP_GET)),
        Fixture::xdp(
            "tcp with timestamp options (data offset 8)",
            v4().tcp(&tcp_ts, HTTP_GET),
        )
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .event(four.request(&tcp_ts, HTTP_GET)),
        Fixture::xdp("ipv6 tcp", v6().tcp(&http, HTTP_GET))
            .verdict(Counter::XdpPassSampled)
            .counts_v6()
            .event(six.request(&http, HTTP_GET)),
        Fixture::xdp(
            "ipv6 hop-by-hop + routing + destination options",
            v6().ext(Ext::HopByHop { len8: 0 })
                .ext(Ext::Routing { len8: 2 })
                .ext(Ext::DestOpts { len8: 1 })
                .tcp(&http, HTTP_GET),
        )
        .verdict(Counter::XdpPassSampled)
        .counts_v6()
        .event(six.request(&http, HTTP_GET)),
        Fixture::xdp(
            "ipv6 first fragment carrying tcp",
            v6().ext(Ext::Fragment {
                offset_units: 0,
                more: true,
            })
            .tcp(&http, HTTP_GET),
        )
        .verdict(Counter::XdpPassSampled)
        .counts_v6()
        .event(six.request(&http, HTTP_GET)),
        Fixture::xdp(
            "ipv6 later fragment",
            v6().ext(Ext::Fragment {
                offset_units: 100,
                more: false,
            })
            .raw(IPPROTO_TCP, &frag_tcp),
        )
        .verdict(Counter::XdpPassFragment)
        .counts_v6(),
        Fixture::xdp(
            "ipv6 with six extension headers (the documented limit)",
            six_dstopts.tcp(&http, HTTP_GET),
        )
        .verdict(Counter::XdpPassSampled)
        .counts_v6()
        .event(six.request(&http, HTTP_GET)),
        Fixture::xdp(
            "ipv6 with seven extension headers",
            seven_dstopts.tcp(&http, HTTP_GET),
        )
        .verdict(Counter::XdpPassExtHdrLimit),
        Fixture::xdp(
            "ipv4 first fragment (more fragments, offset 0)",
            v4().fragment(0, true).tcp(&http, HTTP_GET),
        )
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .event(four.request(&http, HTTP_GET)),
        Fixture::xdp(
            "ipv4 later fragment",
            v4().fragment(185, false).raw(IPPROTO_TCP, &frag_tcp),
        )
        .verdict(Counter::XdpPassFragment)
        .counts_v4(),
        Fixture::xdp(
            "802.1Q vlan",
            Eth::new()
                .vlan(ETH_P_8021Q, 42)
                .ipv4(C4, S4)
                .tcp(&http, HTTP_GET),
        )
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .event(four.request(&http, HTTP_GET)),
        Fixture::xdp(
            "802.1Q vlan carrying ipv6",
            Eth::new()
                .vlan(ETH_P_8021Q, 42)
                .ipv6(c6(), s6())
                .tcp(&http, HTTP_GET),
        )
        .verdict(Counter::XdpPassSampled)
        .counts_v6()
        .event(six.request(&http, HTTP_GET)),
        Fixture::xdp(
            "QinQ (802.1ad outer, 802.1Q inner)",
            Eth::new()
                .vlan(ETH_P_8021AD, 100)
                .vlan(ETH_P_8021Q, 200)
                .ipv4(C4, S4)
                .tcp(&http, HTTP_GET),
        )
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .event(four.request(&http, HTTP_GET)),
        Fixture::xdp(
            "three vlan tags (more than followed)",
            Eth::new()
                .vlan(ETH_P_8021AD, 1)
                .vlan(ETH_P_8021Q, 2)
                .vlan(ETH_P_8021Q, 3)
                .ipv4(C4, S4)
                .tcp(&http, HTTP_GET),
        )
        .verdict(Counter::XdpPassNotIp),
        Fixture::xdp(
            "udp to the monitored port number",
            v4().udp(CLIENT_PORT, PORT, b"not tcp"),
        )
        .counts_v4(),
        Fixture::xdp("udp over ipv6", v6().udp(CLIENT_PORT, 53, b"query")).counts_v6(),
        Fixture::xdp("icmp echo", v4().icmp_echo(b"ping"))
            .verdict(Counter::XdpPassOtherL4)
            .counts_v4(),
        Fixture::xdp("icmpv6 echo", v6().icmp_echo(b"ping"))
            .verdict(Counter::XdpPassOtherL4)
            .counts_v6(),
        Fixture::xdp("arp", Eth::new().frame(ETH_P_ARP, &noise(7, 28)))
            .verdict(Counter::XdpPassNotIp),
        Fixture::xdp(
            "ethernet-padded small segment: payload length from the ip header",
            pad_to_min(v4().tcp(&http, short)),
        )
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .event(four.request(&http, short)),
        Fixture::xdp(
            "ip total length beyond the frame: payload length from the ip header, the rest a hole",
            cut.clone(),
        )
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .event(four.segment(Direction::Ingress, &http, 200, &body(200)[..50])),
        Fixture::xdp(
            "payload beyond a 64-byte capture length",
            v4().tcp(&http, &big),
        )
        .capture_len(64)
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .event(four.segment(Direction::Ingress, &http, big.len(), &big[..64])),
        Fixture::xdp(
            "payload beyond the record's data area",
            v4().tcp(&http, &huge),
        )
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .event(four.segment(Direction::Ingress, &http, huge.len(), &huge[..REQ_DATA_LEN])),
    ]
}

/// SYN (with the fields of a client SYN's options), FIN, RST and bare ACKs on a monitored port.
#[expect(
    clippy::too_many_lines,
    reason = "a fixture table is data, one entry per case"
)]
fn control_fixtures() -> Vec<Fixture> {
    let four = Ends::request4();
    let six = Ends::request6();
    let with = |flags| req(PORT).flags(flags);
    let syn = with(tcp_flags::SYN).ack(0);
    let synack = with(tcp_flags::SYN | tcp_flags::ACK);
    let fin = with(tcp_flags::FIN | tcp_flags::ACK);
    let rst = with(tcp_flags::RST);
    let ack = with(tcp_flags::ACK);
    let fin_data = with(tcp_flags::FIN | tcp_flags::PSH | tcp_flags::ACK);
    let no_options = syn_fields(64, &[], None, None, 0);
    let linux = syn.clone().options(&LINUX_SYN_OPTIONS);
    let linux_fields = syn_fields(
        64,
        &[2, 4, 8, 1, 3],
        Some(1460),
        Some(7),
        syn_flags::TIMESTAMP,
    );
    let windows = syn.clone().options(&WINDOWS_SYN_OPTIONS);
    // A timestamp option claiming 30 bytes where 4 are left.
    let overrun = syn.clone().options(&[2, 4, 0x05, 0xb4, 8, 30, 0, 0]);
    let zero_len = syn.clone().options(&[1, 4, 0, 0]);
    let mut eleven_nops = vec![1; 11];
    eleven_nops.extend_from_slice(&[2, 4, 0x05, 0xb4]);
    let nops = syn.clone().options(&eleven_nops);
    let eol = syn.clone().options(&[2, 4, 0x05, 0xb4, 0, 3, 3, 7]);
    let synack_linux = synack.clone().options(&LINUX_SYN_OPTIONS);
    vec![
        Fixture::xdp(
            "syn to a monitored port (ethernet-padded)",
            pad_to_min(v4().tcp(&syn, b"")),
        )
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .syn()
        .event(four.control(Direction::Ingress, &syn).with_syn(no_options)),
        Fixture::xdp("ipv6 syn", v6().tcp(&syn, b""))
            .verdict(Counter::XdpPassSampled)
            .counts_v6()
            .syn()
            .event(six.control(Direction::Ingress, &syn).with_syn(no_options)),
        Fixture::xdp(
            "linux syn: ttl, mss, sack, timestamp, nop, wscale",
            v4().tcp(&linux, b""),
        )
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .syn()
        .event(
            four.control(Direction::Ingress, &linux)
                .with_syn(linux_fields),
        ),
        Fixture::xdp(
            "linux syn under two vlan tags",
            Eth::new()
                .vlan(ETH_P_8021AD, 7)
                .vlan(ETH_P_8021Q, 5)
                .ipv4(C4, S4)
                .tcp(&linux, b""),
        )
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .syn()
        .event(
            four.control(Direction::Ingress, &linux)
                .with_syn(linux_fields),
        ),
        Fixture::xdp(
            "ipv6 linux syn: the hop limit",
            v6().hop_limit(57).tcp(&linux, b""),
        )
        .verdict(Counter::XdpPassSampled)
        .counts_v6()
        .syn()
        .event(
            six.control(Direction::Ingress, &linux)
                .with_syn(SynOptions {
                    ttl: 57,
                    ..linux_fields
                }),
        ),
        Fixture::xdp(
            "windows syn: ttl 128, mss, nop, wscale, nop, nop, sack",
            Eth::new().ipv4(C4, S4).ttl(128).tcp(&windows, b""),
        )
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .syn()
        .event(
            four.control(Direction::Ingress, &windows)
                .with_syn(syn_fields(128, &[2, 1, 3, 1, 1, 4], Some(1460), Some(8), 0)),
        ),
        Fixture::xdp(
            "syn options cut by the end of the frame: no kinds, malformed",
            {
                let mut f = v4().tcp(&linux, b"");
                f.truncate(v4().l4_offset() + 20 + 6);
                f
            },
        )
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .syn()
        .event(
            four.control(Direction::Ingress, &linux)
                .with_syn(syn_fields(64, &[], None, None, syn_flags::MALFORMED)),
        ),
        Fixture::xdp("syn option longer than the header", v4().tcp(&overrun, b""))
            .verdict(Counter::XdpPassSampled)
            .counts_v4()
            .syn()
            .event(
                four.control(Direction::Ingress, &overrun)
                    .with_syn(syn_fields(
                        64,
                        &[2, 8],
                        Some(1460),
                        None,
                        syn_flags::MALFORMED,
                    )),
            ),
        Fixture::xdp("syn option of length zero", v4().tcp(&zero_len, b""))
            .verdict(Counter::XdpPassSampled)
            .counts_v4()
            .syn()
            .event(
                four.control(Direction::Ingress, &zero_len)
                    .with_syn(syn_fields(64, &[1, 4], None, None, syn_flags::MALFORMED)),
            ),
        Fixture::xdp(
            "syn with eleven nops then mss: ten kinds kept",
            v4().tcp(&nops, b""),
        )
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .syn()
        .event(four.control(Direction::Ingress, &nops).with_syn(syn_fields(
            64,
            &[1; 11],
            Some(1460),
            None,
            syn_flags::MORE,
        ))),
        Fixture::xdp("syn with eol then padding", v4().tcp(&eol, b""))
            .verdict(Counter::XdpPassSampled)
            .counts_v4()
            .syn()
            .event(four.control(Direction::Ingress, &eol).with_syn(syn_fields(
                64,
                &[2, 0],
                Some(1460),
                None,
                0,
            ))),
        Fixture::xdp(
            "syn-ack with options: not a client syn, no option parse",
            v4().tcp(&synack_linux, b""),
        )
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .event(four.control(Direction::Ingress, &synack_linux)),
        Fixture::xdp(
            "syn to an unmonitored port still counts a syn",
            v4().tcp(&req(OTHER_PORT).flags(tcp_flags::SYN), b""),
        )
        .counts_v4()
        .syn(),
        Fixture::xdp("syn-ack is not counted as a syn", v4().tcp(&synack, b""))
            .verdict(Counter::XdpPassSampled)
            .counts_v4()
            .event(four.control(Direction::Ingress, &synack)),
        Fixture::xdp("fin", v4().tcp(&fin, b""))
            .verdict(Counter::XdpPassSampled)
            .counts_v4()
            .event(four.control(Direction::Ingress, &fin)),
        Fixture::xdp("rst", v4().tcp(&rst, b""))
            .verdict(Counter::XdpPassSampled)
            .counts_v4()
            .event(four.control(Direction::Ingress, &rst)),
        Fixture::xdp("bare ack: sampled verdict, no record", v4().tcp(&ack, b""))
            .verdict(Counter::XdpPassSampled)
            .counts_v4(),
        Fixture::xdp(
            "fin with data is a segment record",
            v4().tcp(&fin_data, HTTP_GET),
        )
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .event(four.request(&fin_data, HTTP_GET)),
    ]
}

/// Frames cut short at every layer, malformed headers, garbage.
#[expect(
    clippy::too_many_lines,
    reason = "a fixture table is data, one entry per case"
)]
fn malformed_fixtures() -> Vec<Fixture> {
    let http = req(PORT);
    let full4 = v4().tcp(&http, HTTP_GET);
    let full6 = v6().tcp(&http, HTTP_GET);
    let l3 = ETH_HLEN;
    let l4 = v4().l4_offset();
    let edit = |mut f: Vec<u8>, e: &dyn Fn(&mut Vec<u8>)| {
        e(&mut f);
        f
    };
    let tcp_cut = edit(full4.clone(), &|f| {
        f.truncate(l4 + 10);
        put_be16(f, l3 + OFF_V4_TOTAL_LEN, 20 + 10);
    });
    let doff_big = edit(v4().tcp(&http, b"0123456789"), &|f| {
        f[l4 + OFF_TCP_DOFF] = 15 << 4;
    });
    let doff_small = edit(v4().tcp(&http, b"0123456789"), &|f| {
        f[l4 + OFF_TCP_DOFF] = 4 << 4;
    });
    let udp_cut = edit(v4().udp(CLIENT_PORT, 53, b""), &|f| {
        f.truncate(l4 + 4);
        put_be16(f, l3 + OFF_V4_TOTAL_LEN, 20 + 4);
    });
    let ext = v6().ext(Ext::HopByHop { len8: 0 });
    let ext_cut = edit(ext.tcp(&http, HTTP_GET), &|f| f.truncate(l3 + 40 + 1));
    let ext_long = edit(ext.tcp(&http, HTTP_GET), &|f| {
        put_be16(f, l3 + OFF_V6_PAYLOAD_LEN, 4);
    });
    vec![
        Fixture::xdp("empty frame", Vec::new()).verdict(Counter::XdpPassTruncated),
        Fixture::xdp("ethernet header cut (10 bytes)", full4[..10].to_vec())
            .verdict(Counter::XdpPassTruncated),
        Fixture::xdp("ethernet header cut (13 bytes)", full4[..13].to_vec())
            .verdict(Counter::XdpPassTruncated),
        Fixture::xdp(
            "ethernet header alone, ipv4 ethertype",
            Eth::new().frame(ETH_P_IP, &[]),
        )
        .verdict(Counter::XdpPassTruncated),
        Fixture::xdp(
            "ethernet header alone, ipv6 ethertype",
            Eth::new().frame(ETH_P_IPV6, &[]),
        )
        .verdict(Counter::XdpPassTruncated),
        Fixture::xdp("vlan tag cut", Eth::new().frame(ETH_P_8021Q, &[0, 42]))
            .verdict(Counter::XdpPassTruncated),
        Fixture::xdp(
            "inner vlan tag of QinQ cut",
            Eth::new()
                .vlan(ETH_P_8021AD, 1)
                .frame(ETH_P_8021Q, &[0, 2, 0x08]),
        )
        .verdict(Counter::XdpPassTruncated),
        Fixture::xdp("ipv4 header cut", full4[..l3 + 12].to_vec())
            .verdict(Counter::XdpPassTruncated),
        Fixture::xdp("ipv4 header cut by one byte", full4[..l3 + 19].to_vec())
            .verdict(Counter::XdpPassTruncated),
        Fixture::xdp("ipv6 fixed header cut", full6[..l3 + 6].to_vec())
            .verdict(Counter::XdpPassTruncated),
        Fixture::xdp("ipv6 addresses cut", full6[..l3 + 30].to_vec())
            .verdict(Counter::XdpPassTruncated),
        Fixture::xdp("ipv6 extension header cut", ext_cut).verdict(Counter::XdpPassTruncated),
        Fixture::xdp(
            "ipv6 extension headers longer than the payload length",
            ext_long,
        )
        .verdict(Counter::XdpPassMalformed),
        Fixture::xdp("tcp header cut", tcp_cut)
            .verdict(Counter::XdpPassTruncatedL4)
            .counts_v4(),
        Fixture::xdp("tcp data offset beyond the segment", doff_big)
            .verdict(Counter::XdpPassTruncatedL4)
            .counts_v4(),
        Fixture::xdp("tcp data offset below five words", doff_small)
            .verdict(Counter::XdpPassTruncatedL4)
            .counts_v4(),
        Fixture::xdp("udp header cut", udp_cut)
            .verdict(Counter::XdpPassTruncatedL4)
            .counts_v4(),
        Fixture::xdp(
            "ipv4 version 5",
            edit(full4.clone(), &|f| f[l3 + OFF_V4_VER_IHL] = 0x55),
        )
        .verdict(Counter::XdpPassMalformed),
        Fixture::xdp(
            "ipv4 ihl 4",
            edit(full4.clone(), &|f| f[l3 + OFF_V4_VER_IHL] = 0x44),
        )
        .verdict(Counter::XdpPassMalformed),
        Fixture::xdp(
            "ipv4 total length below the header length",
            edit(full4.clone(), &|f| put_be16(f, l3 + OFF_V4_TOTAL_LEN, 16)),
        )
        .verdict(Counter::XdpPassMalformed),
        Fixture::xdp(
            "ipv6 ethertype carrying version 4",
            edit(full6.clone(), &|f| f[l3] = 0x45),
        )
        .verdict(Counter::XdpPassMalformed),
        Fixture::xdp("garbage: all ones", vec![0xff; 64]).verdict(Counter::XdpPassNotIp),
        Fixture::xdp("garbage: all zeros", vec![0; 64]).verdict(Counter::XdpPassNotIp),
        Fixture::xdp(
            "garbage after an ipv4 ethertype",
            Eth::new().frame(ETH_P_IP, &[0xff; 46]),
        )
        .verdict(Counter::XdpPassMalformed),
        Fixture::xdp(
            "garbage after an ipv6 ethertype",
            Eth::new().frame(ETH_P_IPV6, &[0x0f; 46]),
        )
        .verdict(Counter::XdpPassMalformed),
    ]
}

/// Exact and prefix blocks, expiry, allowlist.
#[expect(
    clippy::too_many_lines,
    reason = "a fixture table is data, one entry per case"
)]
fn enforcement_fixtures() -> Vec<Fixture> {
    let four = Ends::request4();
    let six = Ends::request6();
    let http = req(PORT);
    let syn = req(PORT).flags(tcp_flags::SYN).ack(0);
    vec![
        Fixture::xdp(
            "exact-blocked ipv4 syn to a monitored port",
            v4().tcp(&syn, b""),
        )
        .block("198.51.100.2", false, 1)
        .counts_v4()
        .syn()
        .dropped_by(Counter::XdpDropExact),
        Fixture::xdp("exact-blocked ipv6 request", v6().tcp(&http, HTTP_GET))
            .block(C6, false, 1)
            .counts_v6()
            .dropped_by(Counter::XdpDropExact),
        Fixture::xdp(
            "exact-blocked ipv4 later fragment",
            v4().fragment(10, false).raw(IPPROTO_TCP, &[0; 32]),
        )
        .block("198.51.100.2", false, 1)
        .counts_v4()
        .dropped_by(Counter::XdpDropExact),
        Fixture::xdp("exact-blocked udp", v4().udp(CLIENT_PORT, 53, b"q"))
            .block("198.51.100.2", false, 1)
            .counts_v4()
            .dropped_by(Counter::XdpDropExact),
        Fixture::xdp(
            "another address's exact block does not apply",
            v4().tcp(&http, HTTP_GET),
        )
        .block("198.51.100.3", false, 0)
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .event(four.request(&http, HTTP_GET)),
        Fixture::xdp("prefix-blocked ipv4 source", v4().tcp(&http, HTTP_GET))
            .block("198.51.100.0/24", false, 1)
            .counts_v4()
            .dropped_by(Counter::XdpDropPrefix),
        Fixture::xdp("prefix-blocked ipv6 source", v6().tcp(&http, HTTP_GET))
            .block("2001:db8:1::/48", false, 1)
            .counts_v6()
            .dropped_by(Counter::XdpDropPrefix),
        Fixture::xdp("ipv4 prefix outside the source", v4().tcp(&http, HTTP_GET))
            .block("198.51.100.128/25", false, 0)
            .verdict(Counter::XdpPassSampled)
            .counts_v4()
            .event(four.request(&http, HTTP_GET)),
        Fixture::xdp(
            "expired exact block passes (and still samples)",
            v4().tcp(&http, HTTP_GET),
        )
        .block("198.51.100.2", true, 0)
        .verdict(Counter::XdpPassExpired)
        .counts_v4()
        .event(four.request(&http, HTTP_GET)),
        Fixture::xdp("expired prefix block passes", v6().tcp(&http, HTTP_GET))
            .block("2001:db8:1::/64", true, 0)
            .verdict(Counter::XdpPassExpired)
            .counts_v6()
            .event(six.request(&http, HTTP_GET)),
        Fixture::xdp("the longest ipv4 prefix wins", v4().tcp(&http, HTTP_GET))
            .block("198.51.100.0/24", false, 0)
            .block("198.51.100.0/30", false, 1)
            .block("198.51.0.0/16", false, 0)
            .counts_v4()
            .dropped_by(Counter::XdpDropPrefix),
        Fixture::xdp(
            "an expired longest ipv4 prefix decides (passes)",
            v4().tcp(&http, HTTP_GET),
        )
        .block("198.51.100.0/24", false, 0)
        .block("198.51.100.0/28", true, 0)
        .verdict(Counter::XdpPassExpired)
        .counts_v4()
        .event(four.request(&http, HTTP_GET)),
        Fixture::xdp("ipv4 /0 covers every source", v4().tcp(&http, HTTP_GET))
            .block("0.0.0.0/0", false, 1)
            .counts_v4()
            .dropped_by(Counter::XdpDropPrefix),
        Fixture::xdp("an ipv4 /0 does not cover ipv6", v6().tcp(&http, HTTP_GET))
            .block("0.0.0.0/0", false, 0)
            .verdict(Counter::XdpPassSampled)
            .counts_v6()
            .event(six.request(&http, HTTP_GET)),
        Fixture::xdp(
            "expired exact block does not hide an active prefix block",
            v4().tcp(&http, HTTP_GET),
        )
        .block("198.51.100.2", true, 0)
        .block("198.51.100.0/25", false, 1)
        .counts_v4()
        .dropped_by(Counter::XdpDropPrefix),
        Fixture::xdp("exact-blocked but allowlisted", v4().tcp(&http, HTTP_GET))
            .block("198.51.100.2", false, 0)
            .allow("198.51.100.0/24", 1)
            .verdict(Counter::XdpPassAllowlisted)
            .counts_v4()
            .event(four.request(&http, HTTP_GET)),
        Fixture::xdp(
            "prefix-blocked but allowlisted ipv6",
            v6().tcp(&http, HTTP_GET),
        )
        .block("2001:db8::/32", false, 0)
        .allow(C6, 1)
        .verdict(Counter::XdpPassAllowlisted)
        .counts_v6()
        .event(six.request(&http, HTTP_GET)),
        Fixture::xdp(
            "allowlisted and not blocked: the allowlist is not consulted",
            v4().tcp(&http, HTTP_GET),
        )
        .allow("198.51.100.0/24", 0)
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .event(four.request(&http, HTTP_GET)),
        Fixture::xdp(
            "an allowlist entry elsewhere does not lift a block",
            v4().tcp(&http, HTTP_GET),
        )
        .block("198.51.100.2", false, 1)
        .allow("203.0.113.0/24", 0)
        .counts_v4()
        .dropped_by(Counter::XdpDropExact),
        Fixture::xdp(
            "an unexpired exception inside a blocked ipv4 prefix passes",
            v4().tcp(&http, HTTP_GET),
        )
        .block("198.51.100.0/24", false, 0)
        .exception("198.51.100.2", false, 1)
        .verdict(Counter::XdpPassAllowlisted)
        .counts_v4()
        .event(four.request(&http, HTTP_GET)),
        Fixture::xdp(
            "an unexpired exception inside a blocked ipv6 /64 passes",
            v6().tcp(&http, HTTP_GET),
        )
        .block("2001:db8:1::/64", false, 0)
        .exception(C6, false, 1)
        .verdict(Counter::XdpPassAllowlisted)
        .counts_v6()
        .event(six.request(&http, HTTP_GET)),
        Fixture::xdp(
            "an expired exception inside a blocked ipv4 prefix drops",
            v4().tcp(&http, HTTP_GET),
        )
        .block("198.51.100.0/24", false, 1)
        .exception("198.51.100.2", true, 0)
        .counts_v4()
        .dropped_by(Counter::XdpDropPrefix),
        Fixture::xdp(
            "an expired exception inside a blocked ipv6 /48 drops",
            v6().tcp(&http, HTTP_GET),
        )
        .block("2001:db8:1::/48", false, 1)
        .exception(C6, true, 0)
        .counts_v6()
        .dropped_by(Counter::XdpDropPrefix),
        Fixture::xdp(
            "a permanent operator entry inside a blocked ipv4 prefix still passes",
            v4().tcp(&http, HTTP_GET),
        )
        .block("198.51.100.0/24", false, 0)
        .allow("198.51.100.2", 1)
        .verdict(Counter::XdpPassAllowlisted)
        .counts_v4()
        .event(four.request(&http, HTTP_GET)),
        Fixture::xdp(
            "an exception for a neighbour does not spare the source",
            v4().tcp(&http, HTTP_GET),
        )
        .block("198.51.100.0/24", false, 1)
        .exception("198.51.100.3", false, 0)
        .counts_v4()
        .dropped_by(Counter::XdpDropPrefix),
    ]
}

/// Flow blocks: one TCP connection (client address and port to server address and port) is
/// dropped, nothing else; expiry, the allowlist and the address blocks as for address blocks.
#[expect(
    clippy::too_many_lines,
    reason = "a fixture table is data, one entry per case"
)]
fn flow_fixtures() -> Vec<Fixture> {
    let four = Ends::request4();
    let six = Ends::request6();
    let http = req(PORT);
    let syn = req(PORT).flags(tcp_flags::SYN).ack(0);
    let ack_other = req(OTHER_PORT).flags(tcp_flags::ACK);
    let conn4 = flow4(CLIENT_PORT, PORT);
    let conn6 = flow6(CLIENT_PORT, PORT);
    let no_syn_options = syn_fields(64, &[], None, None, 0);
    let reply = Tcp::new(PORT, CLIENT_PORT).flags(tcp_flags::ACK);
    let tcp_cut = {
        // The ports are there, the rest of the TCP header is not.
        let mut f = v4().tcp(&http, HTTP_GET);
        f.truncate(v4().l4_offset() + 10);
        put_be16(&mut f, ETH_HLEN + OFF_V4_TOTAL_LEN, 20 + 10);
        f
    };
    vec![
        Fixture::xdp("flow-blocked ipv4 request", v4().tcp(&http, HTTP_GET))
            .flow(conn4, false, 1)
            .counts_v4()
            .dropped_by(Counter::XdpDropFlow),
        Fixture::xdp("flow-blocked ipv6 request", v6().tcp(&http, HTTP_GET))
            .flow(conn6, false, 1)
            .counts_v6()
            .dropped_by(Counter::XdpDropFlow),
        Fixture::xdp(
            "flow-blocked ipv6 segment behind extension headers",
            v6().ext(Ext::HopByHop { len8: 0 })
                .ext(Ext::DestOpts { len8: 1 })
                .tcp(&http, HTTP_GET),
        )
        .flow(conn6, false, 1)
        .counts_v6()
        .dropped_by(Counter::XdpDropFlow),
        Fixture::xdp(
            "a syn on a flow-blocked connection's ports opens a new one: block removed",
            v4().tcp(&syn, b""),
        )
        .flow(conn4, false, 0)
        .removes_flows()
        .also_counts(Counter::FlowBlockReopened)
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .syn()
        .event(
            four.control(Direction::Ingress, &syn)
                .with_syn(no_syn_options),
        ),
        Fixture::xdp(
            "a syn-ack's ack on a flow-blocked connection is dropped",
            v4().tcp(&req(PORT).flags(tcp_flags::ACK), b""),
        )
        .flow(conn4, false, 1)
        .dropped_by(Counter::XdpDropFlow),
        Fixture::xdp(
            "flow-blocked ack to an unmonitored port",
            v4().tcp(&ack_other, b""),
        )
        .flow(flow4(CLIENT_PORT, OTHER_PORT), false, 1)
        .counts_v4()
        .dropped_by(Counter::XdpDropFlow),
        Fixture::xdp(
            "flow-blocked ipv4 first fragment",
            v4().fragment(0, true).tcp(&http, HTTP_GET),
        )
        .flow(conn4, false, 1)
        .counts_v4()
        .dropped_by(Counter::XdpDropFlow),
        Fixture::xdp(
            "another source port of the same client passes",
            v4().tcp(&http, HTTP_GET),
        )
        .flow(flow4(CLIENT_PORT + 1, PORT), false, 0)
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .event(four.request(&http, HTTP_GET)),
        Fixture::xdp(
            "another source port of the same ipv6 client passes",
            v6().tcp(&http, HTTP_GET),
        )
        .flow(flow6(CLIENT_PORT - 1, PORT), false, 0)
        .verdict(Counter::XdpPassSampled)
        .counts_v6()
        .event(six.request(&http, HTTP_GET)),
        Fixture::xdp(
            "another server port of the same client passes",
            v4().tcp(&http, HTTP_GET),
        )
        .flow(flow4(CLIENT_PORT, OTHER_PORT), false, 0)
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .event(four.request(&http, HTTP_GET)),
        Fixture::xdp(
            "the reverse direction (server to client) passes",
            Eth::new().ipv4(S4, C4).tcp(&reply, b""),
        )
        .flow(conn4, false, 0)
        .counts(v4_mapped(S4)),
        Fixture::xdp(
            "the reverse direction passes over ipv6",
            Eth::new().ipv6(s6(), c6()).tcp(&reply, b""),
        )
        .flow(conn6, false, 0)
        .counts(s6().octets()),
        Fixture::xdp(
            "an ipv4 flow block does not match the ipv6 client",
            v6().tcp(&http, HTTP_GET),
        )
        .flow(conn4, false, 0)
        .verdict(Counter::XdpPassSampled)
        .counts_v6()
        .event(six.request(&http, HTTP_GET)),
        Fixture::xdp(
            "expired flow block passes (and still samples)",
            v4().tcp(&http, HTTP_GET),
        )
        .flow(conn4, true, 0)
        .verdict(Counter::XdpPassExpired)
        .counts_v4()
        .event(four.request(&http, HTTP_GET)),
        Fixture::xdp("expired ipv6 flow block passes", v6().tcp(&http, HTTP_GET))
            .flow(conn6, true, 0)
            .verdict(Counter::XdpPassExpired)
            .counts_v6()
            .event(six.request(&http, HTTP_GET)),
        Fixture::xdp("flow-blocked but allowlisted", v4().tcp(&http, HTTP_GET))
            .flow(conn4, false, 0)
            .allow("198.51.100.0/24", 1)
            .verdict(Counter::XdpPassAllowlisted)
            .counts_v4()
            .event(four.request(&http, HTTP_GET)),
        Fixture::xdp(
            "flow-blocked but allowlisted ipv6",
            v6().tcp(&http, HTTP_GET),
        )
        .flow(conn6, false, 0)
        .allow(C6, 1)
        .verdict(Counter::XdpPassAllowlisted)
        .counts_v6()
        .event(six.request(&http, HTTP_GET)),
        Fixture::xdp(
            "address- and flow-blocked but allowlisted: one allowlist hit",
            v4().tcp(&http, HTTP_GET),
        )
        .block("198.51.100.2", false, 0)
        .flow(conn4, false, 0)
        .allow("198.51.100.0/24", 1)
        .verdict(Counter::XdpPassAllowlisted)
        .counts_v4()
        .event(four.request(&http, HTTP_GET)),
        Fixture::xdp(
            "an address block drops before the flow is looked up",
            v4().tcp(&http, HTTP_GET),
        )
        .block("198.51.100.2", false, 1)
        .flow(conn4, false, 0)
        .counts_v4()
        .dropped_by(Counter::XdpDropExact),
        Fixture::xdp(
            "an expired address block does not hide an active flow block",
            v4().tcp(&http, HTTP_GET),
        )
        .block("198.51.100.0/24", true, 0)
        .flow(conn4, false, 1)
        .counts_v4()
        .dropped_by(Counter::XdpDropFlow),
        Fixture::xdp(
            "an expired flow block passes beside an active one of another source port",
            v4().tcp(&http, HTTP_GET),
        )
        .flow(conn4, true, 0)
        .flow(flow4(CLIENT_PORT + 1, PORT), false, 0)
        .verdict(Counter::XdpPassExpired)
        .counts_v4()
        .event(four.request(&http, HTTP_GET)),
        Fixture::xdp(
            "a later fragment of a flow-blocked connection passes (no ports to match)",
            v4().fragment(185, false)
                .raw(IPPROTO_TCP, &req(PORT).encode(HTTP_GET, 0)),
        )
        .flow(conn4, false, 0)
        .verdict(Counter::XdpPassFragment)
        .counts_v4(),
        Fixture::xdp(
            "a flow-blocked connection's segment with its tcp header cut passes (unparsed)",
            tcp_cut,
        )
        .flow(conn4, false, 0)
        .verdict(Counter::XdpPassTruncatedL4)
        .counts_v4(),
        Fixture::xdp(
            "udp between the flow's ports passes",
            v4().udp(CLIENT_PORT, PORT, b"not tcp"),
        )
        .flow(conn4, false, 0)
        .counts_v4(),
    ]
}

/// The client behind the proxy that the fixtures' PROXY headers name (the packets come from
/// the proxy, `C4` or `C6`).
const REAL4: &str = "203.0.113.50";
/// The IPv6 client behind the proxy.
const REAL6: &str = "2001:db8:3::7";

/// A v1 PROXY header line for `src` (to the server, port to port), then the request.
fn proxy_v1(family: &str, src: &str) -> Vec<u8> {
    let dst = if family == "TCP6" { S6 } else { "203.0.113.1" };
    let mut p = format!("PROXY {family} {src} {dst} {CLIENT_PORT} {PORT}\r\n").into_bytes();
    p.extend_from_slice(HTTP_GET);
    p
}

/// The v2 PROXY signature.
const PROXY_V2_SIG: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// A v2 PROXY header (`ver_cmd`, `family`, an address block of `body_len` bytes claimed, of
/// which `addrs` is written: source, destination, ports), then the request.
fn proxy_v2(ver_cmd: u8, family: u8, body_len: u16, addrs: &[u8]) -> Vec<u8> {
    let mut p = PROXY_V2_SIG.to_vec();
    p.extend_from_slice(&[ver_cmd, family]);
    p.extend_from_slice(&body_len.to_be_bytes());
    p.extend_from_slice(addrs);
    p.extend_from_slice(HTTP_GET);
    p
}

/// The address block of TCP over IPv4 from `src` to the server.
fn v2_addrs4(src: [u8; 4]) -> Vec<u8> {
    [
        &src[..],
        &S4,
        &CLIENT_PORT.to_be_bytes(),
        &PORT.to_be_bytes(),
    ]
    .concat()
}

/// The address block of TCP over IPv6 from `src` to the server.
fn v2_addrs6(src: Ipv6Addr) -> Vec<u8> {
    [
        &src.octets()[..],
        &s6().octets(),
        &CLIENT_PORT.to_be_bytes(),
        &PORT.to_be_bytes(),
    ]
    .concat()
}

fn real4() -> [u8; 4] {
    REAL4.parse::<Ipv4Addr>().expect("address literal").octets()
}

fn real6() -> Ipv6Addr {
    REAL6.parse().expect("address literal")
}

/// PROXY protocol v2 headers naming the IPv4 client, the IPv6 client and the IPv4 client
/// IPv4-mapped, with the bytes of payload up to the end of the source address.
fn v2_headers() -> [(Vec<u8>, usize); 3] {
    let mapped = Ipv4Addr::from(real4()).to_ipv6_mapped();
    [
        (proxy_v2(0x21, 0x11, 12, &v2_addrs4(real4())), 16 + 4),
        (proxy_v2(0x21, 0x21, 36, &v2_addrs6(real6())), 16 + 16),
        (proxy_v2(0x21, 0x21, 36, &v2_addrs6(mapped)), 16 + 16),
    ]
}

/// PROXY protocol headers at the start of a segment from a proxy: the client they name is
/// enforced on as the packet's own source is, and a drop refuses the segment.
#[expect(
    clippy::too_many_lines,
    reason = "a fixture table is data, one entry per case"
)]
fn proxy_fixtures() -> Vec<Fixture> {
    let four = Ends::request4();
    let six = Ends::request6();
    let http = req(PORT);
    let v1 = proxy_v1("TCP4", REAL4);
    let [v2_4, v2_6, v2_mapped] = v2_headers().map(|(h, _)| h);
    let v1_with = |line: &str| {
        let mut p = line.as_bytes().to_vec();
        p.extend_from_slice(HTTP_GET);
        p
    };
    // Each malformed header sits beside a block of the whole /24 of the client it would name,
    // so that a misparse into it would show as a drop.
    let malformed_v1 = [
        (
            "v1 octet 256",
            v1_with("PROXY TCP4 203.0.113.256 203.0.113.1 1 2\r\n"),
        ),
        (
            "v1 three octets",
            v1_with("PROXY TCP4 203.0.113 203.0.113.1 1 2\r\n"),
        ),
        (
            "v1 five octets",
            v1_with("PROXY TCP4 203.0.113.50.1 203.0.113.1 1 2\r\n"),
        ),
        (
            "v1 empty octet",
            v1_with("PROXY TCP4 203.0..50 203.0.113.1 1 2\r\n"),
        ),
        (
            "v1 four-digit octet",
            v1_with("PROXY TCP4 203.0.1130.5 203.0.113.1 1 2\r\n"),
        ),
        (
            "v1 leading zero",
            v1_with("PROXY TCP4 203.0.113.050 203.0.113.1 1 2\r\n"),
        ),
        (
            "v1 no space after the address",
            v1_with("PROXY TCP4 203.0.113.50\r\nGET"),
        ),
        (
            "v1 two spaces before the address",
            v1_with("PROXY TCP4  203.0.113.50 203.0.113.1 1 2\r\n"),
        ),
        (
            "v1 lowercase",
            v1_with("proxy tcp4 203.0.113.50 203.0.113.1 1 2\r\n"),
        ),
        (
            "v1 truncated payload",
            b"PROXY TCP4 203.0.113.50 20".to_vec(),
        ),
        ("v1 UNKNOWN", v1_with("PROXY UNKNOWN\r\n")),
        (
            "v1 TCP6 (textual ipv6 is not parsed)",
            proxy_v1("TCP6", REAL6),
        ),
        (
            "not a PROXY header, starts with PROX",
            v1_with("PROXIMITY 203.0.113.50 \r\n"),
        ),
        ("starts like a v2 signature", {
            let mut p = b"\r\n\r\nHTTP-ish 203.0.113.50 ".to_vec();
            p.extend_from_slice(HTTP_GET);
            p
        }),
    ];
    let malformed_v2 = [
        (
            "v2 LOCAL command",
            proxy_v2(0x20, 0x11, 12, &v2_addrs4(real4())),
        ),
        (
            "v2 version 1",
            proxy_v2(0x11, 0x11, 12, &v2_addrs4(real4())),
        ),
        (
            "v2 UDP over IPv4",
            proxy_v2(0x21, 0x12, 12, &v2_addrs4(real4())),
        ),
        (
            "v2 length short of the IPv4 addresses",
            proxy_v2(0x21, 0x11, 11, &v2_addrs4(real4())),
        ),
        (
            "v2 length short of the IPv6 addresses",
            proxy_v2(0x21, 0x21, 35, &v2_addrs6(real6())),
        ),
        ("v2 signature off by one byte", {
            let mut p = proxy_v2(0x21, 0x11, 12, &v2_addrs4(real4()));
            p[11] ^= 1;
            p
        }),
        (
            "v2 truncated before the source address",
            PROXY_V2_SIG
                .iter()
                .chain(&[0x21, 0x11, 0, 12, 203, 0, 113])
                .copied()
                .collect(),
        ),
    ];
    let mut fixtures = vec![
        Fixture::xdp(
            "proxy v1 naming an exact-blocked ipv4 client",
            v4().tcp(&http, &v1),
        )
        .block(REAL4, false, 1)
        .dropped_by(Counter::XdpDropProxied),
        Fixture::xdp(
            "proxy v2 naming an exact-blocked ipv4 client",
            v4().tcp(&http, &v2_4),
        )
        .block(REAL4, false, 1)
        .dropped_by(Counter::XdpDropProxied),
        Fixture::xdp(
            "proxy v2 naming an exact-blocked ipv6 client",
            v4().tcp(&http, &v2_6),
        )
        .block(REAL6, false, 1)
        .dropped_by(Counter::XdpDropProxied),
        Fixture::xdp(
            "proxy v2 over ipv6 naming an exact-blocked ipv6 client",
            v6().tcp(&http, &v2_6),
        )
        .block(REAL6, false, 1)
        .dropped_by(Counter::XdpDropProxied),
        Fixture::xdp(
            "proxy v2 naming an ipv4-mapped client: its ipv4 block applies",
            v4().tcp(&http, &v2_mapped),
        )
        .block(REAL4, false, 1)
        .dropped_by(Counter::XdpDropProxied),
        Fixture::xdp(
            "proxy v1 naming a prefix-blocked client",
            v4().tcp(&http, &v1),
        )
        .block("203.0.113.0/24", false, 1)
        .dropped_by(Counter::XdpDropProxied),
        Fixture::xdp(
            "proxy v2 naming a prefix-blocked ipv6 client",
            v6().tcp(&http, &v2_6),
        )
        .block("2001:db8:3::/48", false, 1)
        .dropped_by(Counter::XdpDropProxied),
        Fixture::xdp(
            "proxy v1 behind vlan and ipv4 and tcp options",
            Eth::new()
                .vlan(ETH_P_8021Q, 7)
                .ipv4(C4, S4)
                .options(&[1; 8])
                .tcp(&req(PORT).options(&[1, 1, 1, 1]), &v1),
        )
        .block(REAL4, false, 1)
        .dropped_by(Counter::XdpDropProxied),
        Fixture::xdp("proxy v1 naming an unblocked client", v4().tcp(&http, &v1))
            .block("203.0.113.51", false, 0)
            .verdict(Counter::XdpPassSampled)
            .counts_v4()
            .event(four.request(&http, &v1)),
        Fixture::xdp(
            "proxy v2 naming an unblocked ipv6 client",
            v6().tcp(&http, &v2_6),
        )
        .block("2001:db8:3::8", false, 0)
        .verdict(Counter::XdpPassSampled)
        .counts_v6()
        .event(six.request(&http, &v2_6)),
        Fixture::xdp(
            "proxy v1 without any address block: not looked for",
            v4().tcp(&http, &v1),
        )
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .event(four.request(&http, &v1)),
        Fixture::xdp(
            "proxy v1 naming a blocked but allowlisted client",
            v4().tcp(&http, &v1),
        )
        .block(REAL4, false, 0)
        .allow("203.0.113.0/24", 1)
        .verdict(Counter::XdpPassAllowlisted)
        .counts_v4()
        .event(four.request(&http, &v1)),
        Fixture::xdp(
            "proxy v2 naming a blocked ipv6 client, allowlisted",
            v4().tcp(&http, &v2_6),
        )
        .block(REAL6, false, 0)
        .allow(REAL6, 1)
        .verdict(Counter::XdpPassAllowlisted)
        .counts_v4()
        .event(four.request(&http, &v2_6)),
        Fixture::xdp(
            "an allowlisted proxy does not cover the blocked client it names",
            v4().tcp(&http, &v1),
        )
        .block(REAL4, false, 1)
        .allow("198.51.100.2", 0)
        .dropped_by(Counter::XdpDropProxied),
        Fixture::xdp(
            "proxy v1 naming a client whose block expired",
            v4().tcp(&http, &v1),
        )
        .block(REAL4, true, 0)
        .verdict(Counter::XdpPassExpired)
        .counts_v4()
        .event(four.request(&http, &v1)),
        Fixture::xdp(
            "proxy v1 naming a client whose exact block expired, its prefix block active",
            v4().tcp(&http, &v1),
        )
        .block(REAL4, true, 0)
        .block("203.0.113.0/25", false, 1)
        .dropped_by(Counter::XdpDropProxied),
        Fixture::xdp(
            "a blocked proxy is dropped as itself, before its header is read",
            v4().tcp(&http, &v1),
        )
        .block("198.51.100.2", false, 1)
        .block(REAL4, false, 0)
        .dropped_by(Counter::XdpDropExact),
        Fixture::xdp(
            "proxy v1 to an unmonitored port is not parsed",
            v4().tcp(&req(OTHER_PORT), &v1),
        )
        .block(REAL4, false, 0)
        .counts_v4(),
        Fixture::xdp(
            "a PROXY header not at the start of the payload passes",
            v4().tcp(&http, &[b"GET / HTTP/1.1\r\n".as_slice(), &v1].concat()),
        )
        .block(REAL4, false, 0)
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .event(four.request(&http, &[b"GET / HTTP/1.1\r\n".as_slice(), &v1].concat())),
        Fixture::xdp("proxy v1 payload cut by the frame (ip length beyond it)", {
            let mut f = v4().tcp(&http, &v1);
            f.truncate(v4().l4_offset() + 20 + 20);
            f
        })
        .block(REAL4, false, 0)
        .verdict(Counter::XdpPassSampled)
        .counts_v4()
        .event(four.segment(Direction::Ingress, &http, v1.len(), &v1[..20])),
    ];
    for (name, payload) in malformed_v1.into_iter().chain(malformed_v2) {
        fixtures.push(
            Fixture::xdp(name, v4().tcp(&http, &payload))
                .block("203.0.113.0/24", false, 0)
                .block("2001:db8:3::/48", false, 0)
                .verdict(Counter::XdpPassSampled)
                .counts_v4()
                .event(four.request(&http, &payload)),
        );
    }
    fixtures
}

/// TC on flow-blocked connections: their segments from the server are dropped, unless the
/// block expired or the client is allowlisted.
fn tc_flow_fixtures() -> Vec<Fixture> {
    let out4 = Ends::V4(S4, C4);
    let resp = Tcp::new(PORT, CLIENT_PORT)
        .seq(0x7000_0001)
        .ack(0x0102_0400);
    let fin = resp.clone().flags(tcp_flags::FIN | tcp_flags::ACK);
    let conn4 = flow4(CLIENT_PORT, PORT);
    let conn6 = flow6(CLIENT_PORT, PORT);
    vec![
        Fixture::tc(
            "tc: the response of a flow-blocked connection is dropped",
            Eth::new().ipv4(S4, C4).tcp(&resp, HTTP_RESP),
        )
        .flow(conn4, false, 1)
        .shot(Counter::TcDropFlow),
        Fixture::tc(
            "tc: an ipv6 flow-blocked connection's fin is dropped",
            Eth::new().ipv6(s6(), c6()).tcp(&fin, b""),
        )
        .flow(conn6, false, 1)
        .shot(Counter::TcDropFlow),
        Fixture::tc(
            "tc: an expired flow block lets the response pass",
            Eth::new().ipv4(S4, C4).tcp(&resp, HTTP_RESP),
        )
        .flow(conn4, true, 0)
        .verdict(Counter::TcPassSampled)
        .event(out4.segment(Direction::Egress, &resp, HTTP_RESP.len(), HTTP_RESP)),
        Fixture::tc(
            "tc: an allowlisted client's flow-blocked response passes",
            Eth::new().ipv4(S4, C4).tcp(&resp, HTTP_RESP),
        )
        .flow(conn4, false, 0)
        .allow("198.51.100.0/24", 1)
        .verdict(Counter::TcPassSampled)
        .event(out4.segment(Direction::Egress, &resp, HTTP_RESP.len(), HTTP_RESP)),
        Fixture::tc(
            "tc: another client port of a flow-blocked client passes",
            Eth::new().ipv4(S4, C4).tcp(&resp, HTTP_RESP),
        )
        .flow(flow4(CLIENT_PORT + 1, PORT), false, 0)
        .verdict(Counter::TcPassSampled)
        .event(out4.segment(Direction::Egress, &resp, HTTP_RESP.len(), HTTP_RESP)),
    ]
}

/// TC egress: responses from monitored ports.
fn tc_fixtures() -> Vec<Fixture> {
    let out4 = Ends::V4(S4, C4);
    let out6 = Ends::V6(s6(), c6());
    let resp = Tcp::new(PORT, CLIENT_PORT)
        .seq(0x7000_0001)
        .ack(0x0102_0400);
    let fin = resp.clone().flags(tcp_flags::FIN | tcp_flags::ACK);
    let synack = resp.clone().flags(tcp_flags::SYN | tcp_flags::ACK);
    let from_other = Tcp::new(OTHER_PORT, CLIENT_PORT);
    let big = body(1500);
    let small = b"HTTP/1.1 204 No Content\r\n\r\n".to_vec();
    vec![
        Fixture::tc(
            "tc: http response from a monitored port",
            Eth::new().ipv4(S4, C4).tcp(&resp, HTTP_RESP),
        )
        .verdict(Counter::TcPassSampled)
        .event(out4.segment(Direction::Egress, &resp, HTTP_RESP.len(), HTTP_RESP)),
        Fixture::tc(
            "tc: ipv6 response",
            Eth::new().ipv6(s6(), c6()).tcp(&resp, &small),
        )
        .verdict(Counter::TcPassSampled)
        .event(out6.segment(Direction::Egress, &resp, small.len(), &small)),
        Fixture::tc(
            "tc: response beyond the record's data area",
            Eth::new().ipv4(S4, C4).tcp(&resp, &big),
        )
        .verdict(Counter::TcPassSampled)
        .event(out4.segment(Direction::Egress, &resp, big.len(), &big[..RESP_DATA_LEN])),
        Fixture::tc(
            "tc: fin from a monitored port",
            Eth::new().ipv4(S4, C4).tcp(&fin, b""),
        )
        .verdict(Counter::TcPassSampled)
        .event(out4.control(Direction::Egress, &fin)),
        Fixture::tc(
            "tc: syn-ack from a monitored port has no record",
            Eth::new().ipv4(S4, C4).tcp(&synack, b""),
        )
        .verdict(Counter::TcPassSampled),
        Fixture::tc(
            "tc: response from an unmonitored port",
            Eth::new().ipv4(S4, C4).tcp(&from_other, HTTP_RESP),
        ),
        Fixture::tc(
            "tc: udp",
            Eth::new().ipv4(S4, C4).udp(PORT, CLIENT_PORT, b"x"),
        ),
        Fixture::tc("tc: garbage", noise(99, 64)).verdict(Counter::TcPassUnparsed),
        // The kernel runs skb programs on IPv4 and IPv6 frames only with a whole IP header.
        Fixture::tc("tc: arp", Eth::new().frame(ETH_P_ARP, &noise(3, 28)))
            .verdict(Counter::TcPassUnparsed),
        Fixture::tc("tc: ipv4 version 5", {
            let mut f = Eth::new().ipv4(S4, C4).tcp(&resp, HTTP_RESP);
            f[ETH_HLEN + OFF_V4_VER_IHL] = 0x55;
            f
        })
        .verdict(Counter::TcPassUnparsed),
        Fixture::tc("tc: tcp header cut", {
            let mut f = Eth::new().ipv4(S4, C4).tcp(&resp, b"");
            f.truncate(ETH_HLEN + 20 + 8);
            put_be16(&mut f, ETH_HLEN + OFF_V4_TOTAL_LEN, 28);
            f
        })
        .verdict(Counter::TcPassUnparsed),
    ]
}

#[test]
fn xdp_samples_monitored_tcp_over_every_encapsulation() {
    run_table(&sampling_fixtures());
}

#[test]
fn xdp_emits_control_records() {
    run_table(&control_fixtures());
}

#[test]
fn syn_fields_of_xdp_and_of_the_replay_agree() {
    // Every client SYN of the control table, through XDP (the live path: record, decode) and
    // through the replay's decoder of a captured frame: the same fields, so the same transport
    // fingerprint. (The frame cut inside its options is left out: a capture holding that frame
    // has no complete TCP header for the replay to read.)
    let mut sensor = Sensor::load();
    sensor.configure(None, None, &[PORT]);
    let mut checked = 0;
    for f in control_fixtures() {
        let Some(want) = f.event.as_ref().and_then(|e| e.syn) else {
            continue;
        };
        if want.flags & syn_flags::MALFORMED != 0 && want.option_count == 0 {
            continue;
        }
        Sensor::drain(&mut sensor.req);
        sensor.run_xdp(&f.frame, 1);
        let records = Sensor::drain(&mut sensor.req);
        let [record] = records.as_slice() else {
            panic!("{}: {} records", f.name, records.len());
        };
        let live = event::decode(record)
            .unwrap_or_else(|e| panic!("{}: {e}", f.name))
            .syn;
        let replayed =
            match replay::decode(replay::Link::Ethernet, 0, &f.frame, f.frame.len() as u32) {
                replay::Decoded::Tcp(seg) => seg.syn,
                other => panic!("{}: the replay decoded {other:?}", f.name),
            };
        assert_eq!(live, replayed, "{}", f.name);
        assert_eq!(
            live.as_ref().and_then(TransportFingerprint::of),
            replayed.as_ref().and_then(TransportFingerprint::of),
            "{}",
            f.name
        );
        checked += 1;
    }
    assert!(checked >= 7, "{checked} syns checked");
}

#[test]
fn xdp_passes_truncated_and_malformed_frames() {
    run_table(&malformed_fixtures());
}

#[test]
fn xdp_enforces_blocks_expiry_and_allowlist() {
    run_table(&enforcement_fixtures());
}

#[test]
fn xdp_enforces_flow_blocks() {
    run_table(&flow_fixtures());
}

#[test]
fn xdp_enforces_blocks_on_clients_named_by_proxy_headers() {
    run_table(&proxy_fixtures());
}

#[test]
fn proxy_headers_cut_at_every_length() {
    // A header naming a blocked client, in frames cut at every length: the segment drops once
    // the frame holds the bytes the kernel reads (up to the end of the source address; for v1,
    // the 16 bytes an address and its space may take), passes before, with one verdict each.
    let mut sensor = Sensor::load();
    sensor.configure(None, None, &[PORT]);
    let now = clock::boot_ns();
    for net in [REAL4, REAL6] {
        let net = verdict::parse_net(net).expect("valid net");
        sensor
            .verdicts
            .block(net, TTL, Reason::Manual, "proxied", now)
            .unwrap_or_else(|e| panic!("blocking {net}: {e}"));
    }
    let payload_off = v4().l4_offset() + 20;
    let headers = v2_headers()
        .into_iter()
        .chain([(proxy_v1("TCP4", REAL4), 11 + 16)]);
    let mut failures = Vec::new();
    for (i, (payload, reads)) in headers.enumerate() {
        let frame = v4().tcp(&req(PORT), &payload);
        for len in 0..=frame.len() {
            let before = sensor.counters();
            let action = sensor.run_xdp(&frame[..len], 1);
            let after = sensor.counters();
            let verdicts: u64 = XDP_VERDICTS
                .iter()
                .map(|c| after[*c as usize] - before[*c as usize])
                .sum();
            let want = if len >= payload_off + reads {
                XDP_DROP
            } else {
                XDP_PASS
            };
            if action != want || verdicts != 1 {
                failures.push(format!(
                    "header {i} cut at {len}: action {action}, want {want}, {verdicts} verdicts"
                ));
            }
        }
        sensor.drain_all();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The published `MAPS_IN_USE` flag of `FLOW_BLOCKS`.
fn flow_flag(sensor: &Sensor) -> u32 {
    sensor
        .verdicts
        .published_in_use()
        .expect("MAPS_IN_USE")
        .flow
}

/// Flow blocks as listed at `now`, in (client, server) order.
fn flows_listed(sensor: &Sensor, now: u64) -> Vec<verdict::FlowBlockEntry> {
    let mut l = sensor
        .verdicts
        .flow_blocks(now)
        .expect("listing flow blocks");
    l.sort_by_key(|f| (f.client, f.server));
    l
}

#[test]
fn flow_blocks_are_written_listed_enforced_and_replaced() {
    let mut sensor = Sensor::load();
    let now = clock::boot_ns();
    let (c4, s4) = flow4(CLIENT_PORT, PORT);
    let (c6, s6) = flow6(CLIENT_PORT, PORT);
    assert_eq!(flow_flag(&sensor), 0, "no flow block: XDP looks nothing up");
    let block = |sensor: &mut Sensor, (c, s), ttl, reason, text, id| {
        sensor
            .verdicts
            .block_flow(c, s, ttl, reason, text, now, id)
            .unwrap_or_else(|e| panic!("blocking {c} -> {s}: {e}"));
    };
    block(
        &mut sensor,
        (c4, s4),
        TTL,
        Reason::Manual,
        "proxied client",
        0x11,
    );
    block(
        &mut sensor,
        (c6, s6),
        TTL,
        Reason::Scraping,
        "ipv6 client",
        0x13,
    );
    assert_eq!(flow_flag(&sensor), 1, "flow blocks in use");
    let summary = |f: &verdict::FlowBlockEntry| {
        (
            (f.client, f.server, f.reason, f.text.clone()),
            (f.verdict_id, f.ttl_left_s, f.hits, f.last_hit_ago_ms),
            f.value.prefix_len,
        )
    };
    let ttl_s = TTL.as_secs();
    let text = |s: &str| Some(s.to_owned());
    assert_eq!(
        flows_listed(&sensor, now)
            .iter()
            .map(summary)
            .collect::<Vec<_>>(),
        [
            (
                (c4, s4, "manual", text("proxied client")),
                (0x11, ttl_s, 0, None),
                128
            ),
            (
                (c6, s6, "scraping", text("ipv6 client")),
                (0x13, ttl_s, 0, None),
                128
            ),
        ]
    );
    assert!(
        sensor.verdicts.blocks(now).expect("blocks").is_empty(),
        "address blocks are listed apart"
    );

    // Enforced: the drops are recorded on the entry.
    sensor.configure(None, None, &[]);
    let frame = v4().tcp(&req(PORT), HTTP_GET);
    assert_eq!(sensor.run_xdp(&frame, 3), XDP_DROP, "the ipv4 flow drops");
    let f = &flows_listed(&sensor, clock::boot_ns())[0];
    assert_eq!((f.hits, f.last_hit_ago_ms.is_some()), (3, true), "{f:?}");

    // Replaced: one entry, with the new verdict's note and TTL. The same id again keeps its
    // note (the replaced entry's note is removed only when it is another one).
    block(
        &mut sensor,
        (c4, s4),
        TTL * 2,
        Reason::Flood,
        "renewed",
        0x15,
    );
    let l = flows_listed(&sensor, now);
    assert_eq!(l.len(), 2, "{l:?}");
    assert_eq!(
        (
            l[0].verdict_id,
            l[0].text.clone(),
            l[0].ttl_left_s,
            l[0].hits
        ),
        (0x15, text("renewed"), 2 * ttl_s, 0),
        "{l:?}"
    );
    block(&mut sensor, (c4, s4), TTL, Reason::Flood, "renewed", 0x15);
    assert_eq!(flows_listed(&sensor, now)[0].text, text("renewed"));

    assert_eq!(flows_listed(&sensor, now).len(), 2, "nothing written");
    for (c, s) in [(c4, s4), (c6, s6)] {
        sensor.verdicts.unblock_flow(c, s).expect("unblocking");
    }
}

#[test]
fn flow_block_inputs_are_checked_before_anything_is_written() {
    let mut sensor = Sensor::load();
    let now = clock::boot_ns();
    let (c4, s4) = flow4(CLIENT_PORT, PORT);
    let (_, s6) = flow6(CLIENT_PORT, PORT);
    let v = &mut sensor.verdicts;
    let refused = [
        (
            v.block_flow(c4, s6, TTL, Reason::Manual, "mixed", now, 0x17),
            "mixes IPv4 and IPv6",
        ),
        (
            v.block_flow(c4, s4, Duration::ZERO, Reason::Manual, "x", now, 0x17),
            "ttl",
        ),
        (
            v.block_flow(c4, s4, TTL, Reason::Manual, "", now, 0x17),
            "reason must be",
        ),
    ];
    for (result, want) in refused {
        let err = result.expect_err(want).to_string();
        assert!(err.contains(want), "{err}");
    }
    assert!(flows_listed(&sensor, now).is_empty(), "nothing written");
    assert_eq!(flow_flag(&sensor), 0, "nothing flagged");
}

#[test]
fn flow_blocks_are_purged_and_removed() {
    let mut sensor = Sensor::load();
    let now = clock::boot_ns();
    let (c4, s4) = flow4(CLIENT_PORT, PORT);
    let (c6, s6) = flow6(CLIENT_PORT, PORT);
    let (old_c, old_s) = flow4(CLIENT_PORT + 7, PORT);
    let then = now - EXPIRED_AGO.as_nanos() as u64;
    for ((c, s), ttl, at, id) in [
        ((c4, s4), TTL, now, 0x21),
        ((c6, s6), TTL, now, 0x23),
        ((old_c, old_s), EXPIRED_AGO / 2, then, 0x25),
    ] {
        sensor
            .verdicts
            .block_flow(c, s, ttl, Reason::Manual, "purge", at, id)
            .unwrap_or_else(|e| panic!("blocking {c} -> {s}: {e}"));
    }

    // Expired blocks are purged; the active ones stay.
    let purge_at = clock::boot_ns();
    assert_eq!(
        sensor.verdicts.purge_expired(purge_at).expect("purge"),
        1,
        "the expired flow block is purged"
    );
    let l = flows_listed(&sensor, purge_at);
    assert_eq!(
        l.iter().map(|f| f.client).collect::<Vec<_>>(),
        [c4, c6],
        "{l:?}"
    );

    // Removed: not found a second time; the flag follows the map, also on a full rescan.
    sensor
        .verdicts
        .unblock_flow(c6, s6)
        .expect("unblocking ipv6");
    let err = sensor
        .verdicts
        .unblock_flow(c6, s6)
        .expect_err("second removal")
        .to_string();
    assert!(err.contains("is not in the FLOW_BLOCKS map"), "{err}");
    assert_eq!(flow_flag(&sensor), 1, "one flow block left");
    let rescan = |sensor: &mut Sensor| sensor.verdicts.refresh_in_use().expect("rescan").flow;
    assert_eq!(rescan(&mut sensor), 1, "a rescan finds it");
    sensor
        .verdicts
        .unblock_flow(c4, s4)
        .expect("unblocking ipv4");
    assert_eq!(flow_flag(&sensor), 0, "no flow block left");
    assert_eq!(rescan(&mut sensor), 0, "a rescan finds none");
    assert!(flows_listed(&sensor, now).is_empty());
    sensor.configure(None, None, &[]);
    let frame = v4().tcp(&req(PORT), HTTP_GET);
    assert_eq!(sensor.run_xdp(&frame, 1), XDP_PASS, "unblocked: passes");
}

#[test]
fn tc_samples_responses_from_monitored_ports() {
    run_table(&tc_fixtures());
}

#[test]
fn tc_drops_the_segments_of_flow_blocked_connections() {
    run_table(&tc_flow_fixtures());
}

/// Footprint in the ring of the record of one `HTTP_GET` segment: the 8-byte record header plus
/// the record (event header and the size class of the payload), rounded up to eight bytes
/// (kernel/bpf/ringbuf.c, `BPF_RINGBUF_HDR_SZ`).
const REQ_RECORD_FOOTPRINT: u64 = (8
    + size_of::<sensor_common::EventHeader>() as u64
    + sensor_common::data_class(HTTP_GET.len()) as u64)
    .div_ceil(8)
    * 8;

/// `n` IPv4 networks of length `len` whose keys share one home slot of the block table under
/// `seed`, searched in 1.0.0.0 to 126.255.255.255: below the documentation ranges the fixtures
/// use, and far from this machine's own network. Map keys and `BPF_PROG_TEST_RUN` frames only:
/// nothing is sent to them.
fn colliding_nets(seed: u64, len: u8, n: usize) -> Vec<ipnet::Ipv4Net> {
    let home_of = |net: ipnet::Ipv4Net| {
        block_table::slot_of(
            u32::from_ne_bytes(net.network().octets()),
            u32::from(len),
            seed,
        )
    };
    let step = 1u64 << (32 - u32::from(len));
    let nets = (1u64 << 24..127u64 << 24)
        .step_by(usize::try_from(step).expect("step fits"))
        .map(|a| {
            let addr = std::net::Ipv4Addr::from(u32::try_from(a).expect("below 2^32"));
            ipnet::Ipv4Net::new(addr, len).expect("valid prefix")
        });
    let home = home_of(nets.clone().next().expect("one net"));
    let found: Vec<_> = nets.filter(|n| home_of(*n) == home).take(n).collect();
    assert_eq!(found.len(), n, "{n} colliding /{len} networks");
    found
}

/// Which IPv4 overflow maps `MAPS_IN_USE` tells XDP to consult: (exact hash, prefix trie).
fn overflow_in_use(sensor: &Sensor) -> (u32, u32) {
    let m = sensor.verdicts.published_in_use().expect("MAPS_IN_USE");
    (m.exact_v4, m.prefix_v4)
}

#[test]
fn ipv4_blocks_beyond_a_full_probe_window_overflow_and_still_apply() {
    let mut sensor = Sensor::load();
    let now = clock::boot_ns();
    let block = |sensor: &mut Sensor, net: ipnet::Ipv4Net| {
        sensor
            .verdicts
            .block(ipnet::IpNet::V4(net), TTL, Reason::Manual, "window", now)
            .unwrap_or_else(|e| panic!("blocking {net}: {e}"));
    };
    // The first block fixes the table's multiplier; then fill one probe window with hosts and
    // another with /24s, four more of each than the window holds.
    let first: ipnet::Ipv4Net = "203.0.113.77/32".parse().expect("net");
    block(&mut sensor, first);
    let seed = sensor.verdicts.v4_table_seed().expect("seed");
    assert_ne!(seed, 0, "the first block sets the multiplier");
    assert_eq!(
        overflow_in_use(&sensor),
        (0, 0),
        "a block in the table only"
    );
    let window = block_table::MAX_PROBE as usize;
    let hosts = colliding_nets(seed, 32, window + 4);
    let nets = colliding_nets(seed, 24, window + 4);
    for n in hosts.iter().chain(&nets) {
        block(&mut sensor, *n);
    }
    assert_eq!(
        sensor.verdicts.v4_placement(),
        (1 + 2 * window, 4, 4),
        "(in the table, in the hash, in the trie)"
    );
    assert_eq!(overflow_in_use(&sensor), (1, 1), "overflow maps in use");
    // A /16 in the table covering the last (overflowed) /24: the trie's longer match wins.
    let wide = ipnet::Ipv4Net::new(nets[window + 3].network(), 16)
        .expect("net")
        .trunc();
    block(&mut sensor, wide);
    let frame_from = |a: std::net::Ipv4Addr| Eth::new().ipv4(a.octets(), S4).tcp(&req(22), b"");
    let mut failures = Vec::new();
    let mut check = |sensor: &Sensor, a: std::net::Ipv4Addr, want: u32, what: &str| {
        let action = sensor.run_xdp(&frame_from(a), 1);
        if action != want {
            failures.push(format!("{what} {a}: action {action}, want {want}"));
        }
    };
    for h in &hosts {
        check(&sensor, h.addr(), XDP_DROP, "blocked host");
    }
    for n in &nets {
        let inside = std::net::Ipv4Addr::from(u32::from(n.network()) + 9);
        check(&sensor, inside, XDP_DROP, "inside a blocked /24");
    }
    let hits_of = |sensor: &Sensor, net: ipnet::Ipv4Net| {
        let blocks = sensor.verdicts.blocks(clock::boot_ns()).expect("listing");
        blocks
            .iter()
            .find(|b| b.net == ipnet::IpNet::V4(net))
            .map_or(u64::MAX, |b| b.hits)
    };
    assert_eq!(
        hits_of(&sensor, nets[window + 3]),
        1,
        "the overflowed /24 matched"
    );
    assert_eq!(
        hits_of(&sensor, wide),
        0,
        "not the shorter /16 in the table"
    );
    // Removing a host in the middle of the window leaves a tombstone the others probe past,
    // and the next colliding host reuses it instead of overflowing.
    sensor
        .verdicts
        .unblock(ipnet::IpNet::V4(hosts[2]))
        .expect("unblock");
    check(&sensor, hosts[2].addr(), XDP_PASS, "unblocked host");
    for h in hosts.iter().skip(3) {
        check(&sensor, h.addr(), XDP_DROP, "host past the tombstone");
    }
    let extra = colliding_nets(seed, 32, window + 5)[window + 4];
    block(&mut sensor, extra);
    check(&sensor, extra.addr(), XDP_DROP, "host in the reused slot");
    assert_eq!(
        sensor.verdicts.v4_placement().1,
        4,
        "the reused slot took it, not the hash"
    );
    // Everything removed: every address passes again.
    let all: Vec<ipnet::Ipv4Net> = hosts
        .iter()
        .chain(&nets)
        .copied()
        .filter(|n| *n != hosts[2])
        .chain([first, wide, extra])
        .collect();
    for n in &all {
        sensor
            .verdicts
            .unblock(ipnet::IpNet::V4(*n))
            .unwrap_or_else(|e| panic!("unblocking {n}: {e}"));
    }
    assert_eq!(sensor.verdicts.v4_placement(), (0, 0, 0), "all unblocked");
    assert_eq!(overflow_in_use(&sensor), (0, 0), "overflow maps emptied");
    for n in &all {
        check(&sensor, n.addr(), XDP_PASS, "after removal");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn segment_records_take_the_smallest_size_class() {
    let mut sensor = Sensor::load();
    let mut failures = Vec::new();
    // (payload bytes, capture cap): the record must be the header plus the size class of the
    // bytes actually captured, and carry exactly those bytes.
    let cases = [
        (1, None),
        (255, None),
        (256, None),
        (257, None),
        (512, None),
        (513, None),
        (1024, None),
        (1025, None),
        (1400, None),
        (1400, Some(300)),
        (1400, Some(1024)),
    ];
    for (len, cap) in cases {
        sensor.configure(cap, None, &[PORT]);
        sensor.drain_all();
        let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        let frame = v4().tcp(&req(PORT), &payload);
        assert_eq!(sensor.run_xdp(&frame, 1), XDP_PASS, "{len} bytes pass");
        let records = Sensor::drain(&mut sensor.req);
        let captured = len.min(cap.map_or(REQ_DATA_LEN, |c| c as usize));
        let want_len =
            size_of::<sensor_common::EventHeader>() + sensor_common::data_class(captured);
        match records.as_slice() {
            [rec] => {
                let ev = event::decode(rec).unwrap_or_else(|e| panic!("{len} bytes: {e}"));
                if rec.len() != want_len || ev.payload != &payload[..captured] {
                    failures.push(format!(
                        "{len} bytes (cap {cap:?}): record of {} bytes carrying {} bytes, want \
                         {want_len} carrying {captured}",
                        rec.len(),
                        ev.payload.len()
                    ));
                }
            }
            other => failures.push(format!("{len} bytes: {} records", other.len())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn full_request_ring_never_drops_packets() {
    let mut sensor = Sensor::load();
    sensor.configure(None, None, &[PORT]);
    sensor.drain_all();
    let frame = v4().tcp(&req(PORT), HTTP_GET);
    let fits = u64::from(capacity::REQ_RING_BYTES) / REQ_RECORD_FOOTPRINT;
    let runs = u32::try_from(fits + fits / 4).expect("run count fits u32");
    let before = sensor.counters();
    let src_before = sensor
        .sources()
        .get(&v4_mapped(C4))
        .copied()
        .unwrap_or_default();

    let action = sensor.run_xdp(&frame, runs);
    assert_eq!(
        action, XDP_PASS,
        "a monitored segment passes even while the ring fills"
    );
    let mid = sensor.counters();
    let d = |c: Counter, a: &Counters, b: &Counters| b[c as usize] - a[c as usize];
    let submitted = d(Counter::ReqEvents, &before, &mid);
    let lost = d(Counter::ReqRingFull, &before, &mid);
    assert_eq!(
        d(Counter::XdpPassSampled, &before, &mid),
        u64::from(runs),
        "every run passes sampled"
    );
    assert_eq!(
        submitted + lost,
        u64::from(runs),
        "every run submits or counts a loss"
    );
    assert!(
        lost > 0,
        "{runs} records of {REQ_RECORD_FOOTPRINT} bytes must overflow the ring"
    );
    assert_eq!(
        submitted, fits,
        "the ring holds exactly as many records as fit"
    );
    let src_after = sensor
        .sources()
        .get(&v4_mapped(C4))
        .copied()
        .unwrap_or_default();
    assert_eq!(
        src_after.packets - src_before.packets,
        u64::from(runs),
        "source packets"
    );

    // One more while the ring is still full: passes, and the loss is counted.
    assert_eq!(sensor.run_xdp(&frame, 1), XDP_PASS, "pass with a full ring");
    let full = sensor.counters();
    assert_eq!(
        d(Counter::ReqRingFull, &mid, &full),
        1,
        "the loss is counted"
    );
    assert_eq!(
        d(Counter::ReqEvents, &mid, &full),
        0,
        "nothing submitted into a full ring"
    );

    let records = Sensor::drain(&mut sensor.req);
    assert_eq!(
        records.len() as u64,
        submitted,
        "every submitted record is read back"
    );
    for r in &records {
        let ev = event::decode(r).unwrap_or_else(|e| panic!("record from a full ring: {e}"));
        assert_eq!(
            ev.payload, HTTP_GET,
            "payload of a record from the full ring"
        );
    }

    // Drained, the ring takes records again.
    assert_eq!(sensor.run_xdp(&frame, 1), XDP_PASS, "pass after draining");
    let after = sensor.counters();
    assert_eq!(
        d(Counter::ReqEvents, &full, &after),
        1,
        "submitting again after the drain"
    );
    assert_eq!(
        Sensor::drain(&mut sensor.req).len(),
        1,
        "the record after the drain"
    );
}

#[test]
fn one_wakeup_when_pending_data_crosses_the_threshold() {
    let mut sensor = Sensor::load();
    let frame = v4().tcp(&req(PORT), HTTP_GET);
    let mut failures = Vec::new();
    // Thresholds on and around record boundaries: the reservation that makes pending data
    // reach or pass the threshold must force exactly one wakeup.
    let fp = REQ_RECORD_FOOTPRINT as u32;
    for threshold in [
        1,
        fp - 8,
        fp,
        fp + 1,
        fp + 4,
        fp + 8,
        fp + 9,
        2 * fp + 3,
        3 * fp - 1,
    ] {
        sensor.configure(None, Some(threshold), &[PORT]);
        sensor.drain_all();
        let before = sensor.counters();
        let runs = threshold.div_ceil(fp) + 2;
        assert_eq!(sensor.run_xdp(&frame, runs), XDP_PASS, "pass");
        let after = sensor.counters();
        let wakeups = after[Counter::ReqWakeups as usize] - before[Counter::ReqWakeups as usize];
        let submitted = after[Counter::ReqEvents as usize] - before[Counter::ReqEvents as usize];
        assert_eq!(submitted, u64::from(runs), "all {runs} records fit");
        if wakeups != 1 {
            failures.push(format!(
                "threshold {threshold}: {wakeups} forced wakeups over {runs} records of {fp} bytes, want 1"
            ));
        }
    }
    sensor.drain_all();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Pins the calling thread to one CPU: the kernel keeps wakeup state per CPU, and
/// `BPF_PROG_TEST_RUN` runs the program on the caller's CPU.
fn pin_to_one_cpu() {
    // SAFETY: the set is zeroed, then one CPU is added; the call affects this thread only.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set)
    };
    assert_eq!(
        rc,
        0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
}

#[test]
fn large_thresholds_are_checked_sparsely_and_wake_once_per_crossing() {
    pin_to_one_cpu();
    let mut sensor = Sensor::load();
    let frame = v4().tcp(&req(PORT), HTTP_GET);
    let fp = REQ_RECORD_FOOTPRINT;
    let mut failures = Vec::new();
    for threshold in [16 * 1024u32, 64 * 1024, 1 << 20] {
        sensor.configure(None, Some(threshold), &[PORT]);
        let t = u64::from(threshold);
        // Twice per threshold: the second round shows that a drain re-arms the wakeup.
        for round in 1..=2 {
            sensor.drain_all();
            let mut woke_at = Vec::new();
            let records = 2 * t / fp + 2;
            for i in 1..=records {
                let before = sensor.counters();
                assert_eq!(sensor.run_xdp(&frame, 1), XDP_PASS, "pass");
                let after = sensor.counters();
                if after[Counter::ReqWakeups as usize] > before[Counter::ReqWakeups as usize] {
                    woke_at.push(i * fp);
                }
            }
            // The ring is asked once per sixteenth of the threshold, so the wakeup comes when
            // the pending data lies between the threshold and a sixteenth (plus a record) above.
            let latest = t + t / 16 + fp;
            match woke_at.as_slice() {
                [pending] if (t..=latest).contains(pending) => {}
                other => failures.push(format!(
                    "threshold {t}, round {round}: wakeups at pending bytes {other:?}, want one \
                     in {t}..={latest}"
                )),
            }
        }
    }
    sensor.drain_all();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every XDP verdict counter.
const XDP_VERDICTS: [Counter; 15] = [
    Counter::XdpPass,
    Counter::XdpPassSampled,
    Counter::XdpPassAllowlisted,
    Counter::XdpPassExpired,
    Counter::XdpDropExact,
    Counter::XdpDropPrefix,
    Counter::XdpPassNotIp,
    Counter::XdpPassTruncated,
    Counter::XdpPassMalformed,
    Counter::XdpPassFragment,
    Counter::XdpPassOtherL4,
    Counter::XdpPassTruncatedL4,
    Counter::XdpPassExtHdrLimit,
    Counter::XdpDropFlow,
    Counter::XdpDropProxied,
];

/// Flow blocks of both families that no test frame matches (a mutation would have to rewrite
/// both ports): with them in `FLOW_BLOCKS`, XDP parses every frame for its connection too.
fn block_unrelated_flows(sensor: &mut Sensor) {
    let now = clock::boot_ns();
    for (i, (c, s)) in [flow4(1, 1), flow6(1, 1)].into_iter().enumerate() {
        sensor
            .verdicts
            .block_flow(
                c,
                s,
                TTL,
                Reason::Manual,
                "unrelated",
                now,
                flow_verdict_id(i),
            )
            .unwrap_or_else(|e| panic!("blocking {c} -> {s}: {e}"));
    }
    assert_eq!(flow_flag(sensor), 1, "flow blocks in use");
}

#[test]
fn mutated_frames_pass_with_exactly_one_verdict() {
    let mut sensor = Sensor::load();
    sensor.configure(None, None, &[PORT]);
    block_unrelated_flows(&mut sensor);
    let seeds: Vec<Vec<u8>> = vec![
        v4().tcp(&req(PORT), HTTP_GET),
        v6().ext(Ext::HopByHop { len8: 1 })
            .ext(Ext::Fragment {
                offset_units: 0,
                more: true,
            })
            .tcp(&req(PORT).options(&[1, 1, 1, 1]), HTTP_GET),
        Eth::new()
            .vlan(ETH_P_8021AD, 5)
            .vlan(ETH_P_8021Q, 6)
            .ipv4(C4, S4)
            .options(&[1, 1, 1, 1])
            .tcp(&req(PORT).flags(tcp_flags::SYN), b""),
        v4().udp(CLIENT_PORT, PORT, b"datagram"),
    ];
    let mut failures = Vec::new();
    for (si, seed) in seeds.iter().enumerate() {
        for round in 0..150u64 {
            let r = noise(si as u64 * 1000 + round + 1, 8);
            let mut frame = seed.clone();
            // Flip up to three bytes, then maybe cut the frame.
            for k in 0..usize::from(r[0] % 4) {
                let at = usize::from(r[1 + k]) * frame.len() / 256;
                frame[at] ^= r[4 + k] | 1;
            }
            if r[7].is_multiple_of(2) {
                frame.truncate(usize::from(r[7]) * frame.len() / 256);
            }
            let before = sensor.counters();
            let action = sensor.run_xdp(&frame, 1);
            let after = sensor.counters();
            let verdicts: u64 = XDP_VERDICTS
                .iter()
                .map(|c| after[*c as usize] - before[*c as usize])
                .sum();
            if action != XDP_PASS || verdicts != 1 {
                failures.push(format!(
                    "seed {si} round {round} ({} bytes): action {action}, {verdicts} verdicts",
                    frame.len()
                ));
            }
            for rec in Sensor::drain(&mut sensor.req) {
                if let Err(e) = event::decode(&rec) {
                    failures.push(format!(
                        "seed {si} round {round}: record does not decode: {e}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn mutated_proxy_headers_pass_with_exactly_one_verdict() {
    // Flips in the PROXY headers themselves, with an address block in place (so that the kernel
    // parses them) that no header with up to three bytes changed can name: every frame passes
    // with one verdict, and every record decodes.
    let mut sensor = Sensor::load();
    sensor.configure(None, None, &[PORT]);
    let net = verdict::parse_net("2001:db8:ffff:ffff::1").expect("valid net");
    sensor
        .verdicts
        .block(net, TTL, Reason::Manual, "unrelated", clock::boot_ns())
        .unwrap_or_else(|e| panic!("blocking {net}: {e}"));
    let payload_off = v4().l4_offset() + 20;
    let headers = v2_headers()
        .into_iter()
        .chain([(proxy_v1("TCP4", REAL4), 11 + 16)]);
    let mut failures = Vec::new();
    for (si, (payload, reads)) in headers.enumerate() {
        let seed = v4().tcp(&req(PORT), &payload);
        for round in 0..200u64 {
            let r = noise(0x9000 + si as u64 * 1000 + round, 8);
            let mut frame = seed.clone();
            for k in 0..=usize::from(r[0] % 3) {
                let at = payload_off + usize::from(r[1 + k]) % (reads + 4);
                frame[at] ^= r[4 + k] | 1;
            }
            let before = sensor.counters();
            let action = sensor.run_xdp(&frame, 1);
            let after = sensor.counters();
            let verdicts: u64 = XDP_VERDICTS
                .iter()
                .map(|c| after[*c as usize] - before[*c as usize])
                .sum();
            if action != XDP_PASS || verdicts != 1 {
                failures.push(format!(
                    "header {si} round {round}: action {action}, {verdicts} verdicts"
                ));
            }
            for rec in Sensor::drain(&mut sensor.req) {
                if let Err(e) = event::decode(&rec) {
                    failures.push(format!(
                        "header {si} round {round}: record does not decode: {e}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn frames_of_every_length_pass() {
    // Every prefix of a full IPv6 request with extension headers and of a QinQ IPv4 request:
    // each must pass with exactly one verdict, whatever layer the cut falls in.
    let mut sensor = Sensor::load();
    sensor.configure(None, None, &[PORT]);
    block_unrelated_flows(&mut sensor);
    let frames = [
        v6().ext(Ext::HopByHop { len8: 0 })
            .ext(Ext::DestOpts { len8: 0 })
            .tcp(&req(PORT), b"GET / HTTP/1.1\r\n\r\n"),
        Eth::new()
            .vlan(ETH_P_8021AD, 1)
            .vlan(ETH_P_8021Q, 2)
            .ipv4(C4, S4)
            .tcp(&req(PORT), b"GET / HTTP/1.1\r\n\r\n"),
    ];
    let mut failures = Vec::new();
    for frame in &frames {
        for len in 0..=frame.len() {
            let before = sensor.counters();
            let action = sensor.run_xdp(&frame[..len], 1);
            let after = sensor.counters();
            let verdicts: u64 = XDP_VERDICTS
                .iter()
                .map(|c| after[*c as usize] - before[*c as usize])
                .sum();
            if action != XDP_PASS || verdicts != 1 {
                failures.push(format!("{len} bytes: action {action}, {verdicts} verdicts"));
            }
        }
        sensor.drain_all();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
