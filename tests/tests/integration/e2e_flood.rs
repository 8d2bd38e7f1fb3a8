//! A flood of SYNs without handshakes from many addresses, an allowlisted one among them, gets
//! nobody blocked. The real agent with its default detectors is attached to the server's veth
//! in a two-namespace lab, with nginx behind it; from the client namespace, bare SYNs with
//! spoofed sources `198.51.100.40` to `.79` (`.40` allowlisted) go to port 80 well above the
//! default SYN ceiling, long enough to be sustained. The agent must report the flood
//! (`packet_flood` findings) but refuse to block: the flooders never completed a handshake and
//! a request (their addresses may be spoofed), and the allowlisted one is allowlisted. A benign
//! client on `198.51.100.2` is served during and after the flood, no block is written, and the
//! agent stops cleanly.
//!
//! The SYNs are written as raw Ethernet frames through an `AF_PACKET` socket opened inside the
//! client namespace, and the flooding addresses are assigned to no interface (pure spoofing).
//! The server answers each SYN with a SYN-ACK (or a SYN cookie) to an address nobody claims:
//! its ARP requests go unanswered, so the SYN-ACKs are dropped in the server namespace and no
//! RST ever comes back. That is the flood as the agent meets it from spoofed sources, needs no
//! extra tool (hping3 would also need the addresses assigned in the client namespace, whose
//! kernel would then RST every SYN-ACK), and keeps the rate and the count in the test's hands.
use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::CString,
    net::{IpAddr, Ipv4Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use apisensor_tests::{
    agent::{self, AgentFiles, PinDir, json_lines},
    apisensor_bin,
    lab::Lab,
    packet::{ETH_P_IP, Eth, Tcp, tcp_flags},
};

/// First flooding address's last octet.
const FIRST_FLOODER: u8 = 40;
/// Flooding addresses: `198.51.100.40` to `198.51.100.79`.
const FLOODERS: u8 = 40;
/// The allowlisted flooder.
const ALLOWLISTED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 40);
/// SYNs per second from each flooding address. The detector's rate is a decayed count with a
/// 10 s half-life, so at rate `r` it reads `r * (1 - 2^(-t/10))` after `t` seconds: at 200 per
/// second it crosses the default ceiling of 50 after about 4.2 s, and the default 10 s
/// sustain makes a finding at about 14.2 s (at 100 per second it would take 20 s).
const SYNS_PER_S: u32 = 200;
/// How long the flood lasts: the 14.2 s above with room for a slow sender.
const FLOOD: Duration = Duration::from_secs(20);
/// Flooding sources that must be reported; every one of them floods alike.
const MIN_FLOOD_FINDINGS: usize = 30;

/// `GET /` from `src`: the status, or None if it got no answer.
fn get(lab: &Lab, src: IpAddr, server: IpAddr, timeout: Duration) -> Option<u16> {
    lab.status(src, &format!("http://{server}:80/"), &[], timeout)
}

/// The MAC address of interface `dev` in namespace `ns`.
fn mac_of(lab: &Lab, ns: &str, dev: &str) -> [u8; 6] {
    let out = lab.run(
        ns,
        "ip",
        &["-j", "link", "show", "dev", dev],
        Duration::from_secs(10),
    );
    assert!(
        out.status.success(),
        "ip link show {dev} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j json");
    let text = json[0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no MAC address for {dev}: {json}"));
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|e| panic!("MAC {text}: {e}")))
        .collect();
    bytes
        .try_into()
        .unwrap_or_else(|_| panic!("MAC {text} is not six bytes"))
}

/// What the flooder did.
#[derive(Debug, Default)]
struct FloodReport {
    /// Frames the kernel took.
    sent: u64,
    /// Frames it refused (`ENOBUFS` when the receiving side's queue is full).
    refused: u64,
    /// How long it ran.
    elapsed: Duration,
}

/// Where and what the flooder sends.
struct FloodPlan {
    /// The client namespace's name.
    ns: String,
    /// The client's veth end.
    iface: String,
    /// The client veth's MAC (source of the frames).
    src_mac: [u8; 6],
    /// The server veth's MAC (destination of the frames).
    dst_mac: [u8; 6],
    /// The server's address.
    server: Ipv4Addr,
}

/// The flooding thread; stopped and joined on drop, so a failing test never leaves it sending.
struct Flooder {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<FloodReport>>,
}

impl Flooder {
    /// Starts flooding on a new thread.
    fn start(plan: FloodPlan) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::Builder::new()
            .name("syn-flood".into())
            .spawn(move || flood(&plan, &flag))
            .expect("spawn the flooding thread");
        Self {
            stop,
            handle: Some(handle),
        }
    }

    /// Whether the flood is over.
    fn finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the flood to end and returns what it did.
    fn join(mut self) -> FloodReport {
        let h = self.handle.take().expect("joined once");
        h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

impl Drop for Flooder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Enters the client namespace (this thread only), opens an `AF_PACKET` socket there and sends
/// `SYNS_PER_S` SYNs a second from each flooding address for `FLOOD`, in rounds of one SYN per
/// address, each from a new source port. Bounded in count (the rounds) and time (a deadline).
fn flood(plan: &FloodPlan, stop: &AtomicBool) -> FloodReport {
    let ns_path = format!("/run/netns/{}", plan.ns);
    let ns = std::fs::File::open(&ns_path).unwrap_or_else(|e| panic!("open {ns_path}: {e}"));
    // SAFETY: setns on a namespace file descriptor this thread holds; it changes only the
    // calling thread's network namespace, and this thread does nothing else.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert!(
        rc == 0,
        "setns into {ns_path}: {}",
        std::io::Error::last_os_error()
    );
    let name = CString::new(plan.iface.as_str()).expect("interface name");
    // SAFETY: a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert!(ifindex != 0, "no interface {} in {}", plan.iface, plan.ns);
    // Protocol 0: the socket sends only and never receives.
    // SAFETY: socket(2) with constant arguments.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    assert!(
        raw >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `raw` is a new descriptor owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = ETH_P_IP.to_be();
    to.sll_ifindex = i32::try_from(ifindex).expect("ifindex");
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&plan.dst_mac);

    let interval = Duration::from_secs(1) / SYNS_PER_S;
    let rounds = u64::from(SYNS_PER_S) * FLOOD.as_secs();
    let start = Instant::now();
    let deadline = start + FLOOD + Duration::from_secs(5);
    let mut report = FloodReport::default();
    let mut due = start;
    for round in 0..rounds {
        if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
            break;
        }
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        due += interval;
        let sport = 1024 + (round % 60_000) as u16;
        for i in 0..FLOODERS {
            let src = [198, 51, 100, FIRST_FLOODER + i];
            let seq = (round as u32).wrapping_mul(2_654_435_761) ^ (u32::from(i) << 24);
            let tcp = Tcp::new(sport, 80)
                .flags(tcp_flags::SYN)
                .seq(seq)
                .ack(0)
                // MSS 1460, as real SYNs carry.
                .options(&[2, 4, 0x05, 0xb4]);
            let mut frame = Eth::new().ipv4(src, plan.server.octets()).tcp(&tcp, &[]);
            frame[..6].copy_from_slice(&plan.dst_mac);
            frame[6..12].copy_from_slice(&plan.src_mac);
            // SAFETY: the buffer and the address are valid for the lengths given.
            let n = unsafe {
                libc::sendto(
                    sock.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&raw const to).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if usize::try_from(n).is_ok_and(|n| n == frame.len()) {
                report.sent += 1;
            } else {
                report.refused += 1;
            }
        }
    }
    report.elapsed = start.elapsed();
    report
}

/// The source address (`entity.id`) of a finding or decision about a source.
fn source_of(finding: &serde_json::Value) -> Option<Ipv4Addr> {
    if finding["entity"]["kind"] != "source" {
        return None;
    }
    finding["entity"]["id"].as_str()?.parse().ok()
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario, read top to bottom as trigger-then-expect steps"
)]
fn syn_flood_from_many_spoofed_sources_blocks_nobody() {
    let test_start = Instant::now();
    let mut lab = Lab::new("flood");
    lab.start_nginx(80);
    let pin = PinDir::new("flood");
    let files = AgentFiles::in_lab(
        &lab,
        1,
        &format!("[policy]\nallowlist = [\"{ALLOWLISTED}/32\"]\n"),
    );
    let agent = agent::start(&mut lab, &pin, &files, &[]);
    let events_file = files.events.clone();
    let bin = apisensor_bin();
    let server = IpAddr::V4(lab.server_v4());
    let benign = IpAddr::V4(lab.client_v4());
    assert_eq!(get(&lab, benign, server, Duration::from_secs(3)), Some(200));

    let plan = FloodPlan {
        ns: lab.client_ns().to_owned(),
        iface: lab.client_if().to_owned(),
        src_mac: mac_of(&lab, lab.client_ns(), lab.client_if()),
        dst_mac: mac_of(&lab, lab.server_ns(), lab.server_if()),
        server: lab.server_v4(),
    };
    let flooder = Flooder::start(plan);

    // During the flood the benign client is served, about once a second.
    let mut served_during = 0;
    let limit = Instant::now() + FLOOD + Duration::from_secs(10);
    while !flooder.finished() {
        assert!(Instant::now() < limit, "the flood did not end in time");
        assert!(
            lab.is_running(agent),
            "agent exited: {}",
            lab.stderr_of(agent)
        );
        assert_eq!(
            get(&lab, benign, server, Duration::from_secs(3)),
            Some(200),
            "benign client not served during the flood"
        );
        served_during += 1;
        thread::sleep(Duration::from_secs(1));
    }
    let report = flooder.join();
    eprintln!(
        "flood: {} SYNs sent, {} refused, in {:?}; benign client served {served_during} times",
        report.sent, report.refused, report.elapsed
    );
    let floor = u64::from(FLOODERS) * u64::from(SYNS_PER_S) * FLOOD.as_secs() * 9 / 10;
    assert!(
        report.sent >= floor,
        "the flooder sent {} SYNs, fewer than {floor}: the test did not flood",
        report.sent
    );

    // The findings: every flooder crosses together, so wait (bounded) for most of them.
    let flooders: BTreeSet<Ipv4Addr> = (0..FLOODERS)
        .map(|i| Ipv4Addr::new(198, 51, 100, FIRST_FLOODER + i))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let lines = json_lines(&events_file);
        let flagged = lines
            .iter()
            .filter(|e| e["type"] == "finding" && e["detector"] == "packet_flood")
            .filter_map(source_of)
            .collect::<BTreeSet<_>>();
        if flagged.len() >= MIN_FLOOD_FINDINGS || Instant::now() >= deadline {
            break lines;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    for e in &lines {
        let key = format!(
            "{} {}",
            e["type"].as_str().unwrap_or("?"),
            e["detector"]
                .as_str()
                .or_else(|| e["action"].as_str())
                .unwrap_or("?")
        );
        *by_type.entry(key).or_default() += 1;
    }
    eprintln!("event lines: {by_type:?}");
    for e in lines
        .iter()
        .filter(|e| e["type"] == "finding" && e["detector"] != "packet_flood")
    {
        eprintln!("other finding: {e}");
    }
    let text = std::fs::read_to_string(&events_file).unwrap_or_default();
    let flood_findings: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|e| e["type"] == "finding" && e["detector"] == "packet_flood")
        .collect();
    let flagged: BTreeSet<Ipv4Addr> = flood_findings.iter().filter_map(|f| source_of(f)).collect();
    assert!(
        flagged.len() >= MIN_FLOOD_FINDINGS,
        "packet_flood findings for {} of {FLOODERS} flooding sources ({flagged:?}); agent: {}; \
         events: {text}",
        flagged.len(),
        lab.stderr_of(agent)
    );
    if let Some(f) = flood_findings.first() {
        eprintln!("first packet_flood finding's measures: {}", f["measures"]);
    }
    assert!(
        flagged.is_subset(&flooders),
        "packet_flood findings about sources that did not flood: {flagged:?}"
    );

    // The decisions: none is a block; the flooders' are refused as unverified, the allowlisted
    // one's as allowlisted.
    let decisions: Vec<&serde_json::Value> =
        lines.iter().filter(|e| e["type"] == "decision").collect();
    assert!(
        decisions
            .iter()
            .all(|d| d["action"] != "block" && d["enforcement"] != "kernel"),
        "a decision blocked: {text}"
    );
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    let mut decided = BTreeSet::new();
    for d in &decisions {
        let is_flood = d["findings"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["detector"] == "packet_flood"));
        if !is_flood {
            continue;
        }
        let Some(src) = source_of(d) else {
            panic!("a packet_flood decision about no source: {d}");
        };
        decided.insert(src);
        let want = if src == ALLOWLISTED {
            "allowlisted"
        } else {
            "unverified"
        };
        assert_eq!(d["refused"], want, "decision about {src}: {d}");
        assert_eq!(d["action"], "alert", "decision about {src}: {d}");
        assert_eq!(d["target"], format!("{src}/32"), "{d}");
        *refused
            .entry(d["refused"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    eprintln!(
        "packet_flood: {} findings about {} sources, decisions about {} sources, refusals \
         {refused:?}",
        flood_findings.len(),
        flagged.len(),
        decided.len()
    );
    assert_eq!(
        decided, flagged,
        "every flagged flooder gets a (non-blocking) decision"
    );
    assert!(
        decisions
            .iter()
            .all(|d| d["target"] != format!("{}/32", lab.client_v4())),
        "a decision about the benign client: {text}"
    );

    // The kernel holds no block.
    let listed = Command::new(&bin)
        .args(["blocks", "list", "--json", "--pin-dir", pin.as_str()])
        .output()
        .expect("blocks list");
    assert!(
        listed.status.success(),
        "blocks list: {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(listed, serde_json::json!([]), "blocks were written");

    // After the flood the benign client is still served, and the agent stops cleanly.
    assert_eq!(
        get(&lab, benign, server, Duration::from_secs(3)),
        Some(200),
        "benign client not served after the flood"
    );
    assert!(
        lab.is_running(agent),
        "agent exited: {}",
        lab.stderr_of(agent)
    );
    let status = lab.stop(agent);
    let stderr = lab.stderr_of(agent);
    assert!(!stderr.contains("panic"), "the agent panicked: {stderr}");
    assert!(
        status.success(),
        "agent did not exit cleanly: {status:?}; {stderr}"
    );
    eprintln!("test took {:?}", test_start.elapsed());
}
