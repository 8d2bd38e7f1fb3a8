//! The one pipeline that the live agent and the replay both drive: segments and time in;
//! transactions, findings and decisions out, handed to a [`Sink`] as they are made.
//!
//! ```text
//! Segment ─► Analyzer ─► Transaction ─► Detection ─► Finding ─► Policy ─► Decision
//!    └─ SYN to a monitored port (replay) ──┘                      ▲
//!          the kernel's per-source counters (live) ─┘            │
//!            └─ a request's end, while an address is blocked by connection
//! ```
//!
//! While the policy blocks some shared address by connection, the analyzer also reports each
//! request as it ends, before its response: the policy matches its client shape against the
//! address's marks, and a match is a decision that blocks the connection at once, so that the
//! answer being prepared never reaches the attacker.
//!
//! Pure like its parts: no I/O, no clock. The drivers do the I/O: the agent writes
//! [`Decision`]s into the kernel's maps through `verdict.rs` and its lines to its outputs; the
//! replay only prints them. With the same configuration, key and capture, both get the same
//! findings and decisions.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::analyzer::Analyzer;
use crate::config::Config;
use crate::decide::{Decision, Policy};
use crate::detect::baseline::{BaselineError, BaselineSnapshot};
use crate::detect::{Detection, Finding, Flow, Packets};
use crate::http::conn::{RequestEnd, Watch};
use crate::http::{ProxyVia, RequestFingerprint, Transaction};
use crate::segment::Segment;

/// What the pipeline hands out, as it is made. Each method has an empty default, so a sink
/// implements only what it uses.
pub trait Sink {
    /// A completed transaction.
    fn transaction(&mut self, _tx: &Transaction) {}
    /// A finding.
    fn finding(&mut self, _finding: &Finding) {}
    /// A decision on a finding.
    fn decision(&mut self, _decision: &Decision) {}
}

/// The pipeline.
pub struct Pipeline {
    /// Flows, reassembly, HTTP.
    analyzer: Analyzer,
    /// Entity state and detectors.
    detection: Detection,
    /// The decision policy.
    policy: Policy,
    /// Whether transactions go through detection (off: transactions only, as `replay --json`
    /// without `--findings`).
    detecting: bool,
    /// Transactions completed by the current input.
    transactions: Vec<Box<Transaction>>,
    /// Findings made by the current input.
    findings: Vec<Finding>,
    /// Requests that ended with the current input at addresses blocked by connection.
    ended: Vec<RequestEnd>,
    /// Packets and SYNs come from the kernel's counters (live), not from SYN segments
    /// (replay).
    kernel_counts: bool,
}

impl Pipeline {
    /// A pipeline for `config`. `key` is the installation's hash key (session hashes and
    /// distinct counts); `baselines` what an earlier run learned; `now_ns` the start of the
    /// warm-up when there is nothing learned yet.
    pub fn new(
        config: &Config,
        key: [u8; 16],
        baselines: Option<BaselineSnapshot>,
        now_ns: u64,
    ) -> Result<Self, BaselineError> {
        let mut analyzer_cfg = config.analyzer_config();
        analyzer_cfg.http.hash_key = key;
        let trusted = analyzer_cfg.http.trusted_proxies.clone();
        Ok(Self {
            analyzer: Analyzer::new(analyzer_cfg),
            detection: Detection::new(config.detect.clone(), key, baselines, now_ns)?,
            policy: Policy::new(config.policy.clone(), trusted),
            detecting: config.detect.enabled,
            transactions: Vec::new(),
            findings: Vec::new(),
            ended: Vec::new(),
            kernel_counts: false,
        })
    }

    /// Takes a new configuration (a reload), keeping flows, entity state, blocks and what the
    /// baselines learned; see the parts' `reconfigure` for what waits for the next start.
    /// `key` is the installation's hash key, as given to [`Pipeline::new`].
    pub fn reconfigure(&mut self, config: &Config, key: [u8; 16]) {
        let mut analyzer_cfg = config.analyzer_config();
        analyzer_cfg.http.hash_key = key;
        let trusted = analyzer_cfg.http.trusted_proxies.clone();
        self.analyzer.reconfigure(&analyzer_cfg);
        self.detection.reconfigure(config.detect.clone());
        self.policy.reconfigure(config.policy.clone(), trusted);
        self.detecting = config.detect.enabled;
    }

    /// Turns detection off (or back on, if the configuration enables it).
    pub fn set_detecting(&mut self, on: bool) {
        self.detecting = on && self.detection.config().enabled;
    }

    /// The analyzer (counters, API inventory).
    pub fn analyzer(&self) -> &Analyzer {
        &self.analyzer
    }

    /// The analyzer, mutably (cataloguing on or off).
    pub fn analyzer_mut(&mut self) -> &mut Analyzer {
        &mut self.analyzer
    }

    /// The detection engine (counters, baselines, standings).
    pub fn detection(&self) -> &Detection {
        &self.detection
    }

    /// The policy (counters).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// One segment.
    pub fn on_segment(&mut self, seg: &Segment<'_>, sink: &mut impl Sink) {
        if self.detecting && self.policy.watches_requests() {
            let policy = &self.policy;
            let watch = Watch {
                clients: &|client| policy.watches_requests_from(client),
                ended: &mut self.ended,
            };
            self.analyzer
                .on_segment_watching(seg, &mut self.transactions, watch);
            if !self.ended.is_empty() {
                self.match_requests(sink);
            }
        } else {
            self.analyzer.on_segment(seg, &mut self.transactions);
        }
        if self.detecting
            && !self.kernel_counts
            && seg.flags & (sensor_common::tcp_flags::SYN | sensor_common::tcp_flags::ACK)
                == sensor_common::tcp_flags::SYN
            && self.analyzer.is_monitored(seg.dst.port())
        {
            self.detection.on_packets(
                seg.src.ip(),
                Packets {
                    packets: 1,
                    syns: 1,
                },
                seg.ts_ns,
                &mut self.findings,
            );
        }
        self.emit(sink);
    }

    /// Time passes (capture time in replay, the wall clock live): idle flows close, baseline
    /// buckets close.
    pub fn on_tick(&mut self, now_ns: u64, sink: &mut impl Sink) {
        self.analyzer.on_tick(now_ns, &mut self.transactions);
        if self.detecting {
            self.detection.on_tick(now_ns, &mut self.findings);
            self.policy.expire(now_ns);
        }
        self.emit(sink);
    }

    /// Takes packets and SYNs from the kernel's per-source counters ([`Pipeline::on_kernel_counts`])
    /// instead of counting SYN segments: live, the kernel sees every packet of every port.
    pub fn count_from_kernel(&mut self) {
        self.kernel_counts = true;
    }

    /// Packets and SYNs the kernel counted for a source since the last poll (live only).
    pub fn on_kernel_counts(
        &mut self,
        ip: IpAddr,
        counts: Packets,
        now_ns: u64,
        sink: &mut impl Sink,
    ) {
        if self.detecting && self.kernel_counts {
            self.detection
                .on_packets(ip, counts, now_ns, &mut self.findings);
            self.emit(sink);
        }
    }

    /// The kernel still drops `target`'s packets: a block in its second half is renewed.
    pub fn on_block_hit(
        &mut self,
        target: IpNet,
        last_hit_ns: u64,
        now_ns: u64,
        sink: &mut impl Sink,
    ) {
        if let Some(d) = self.policy.on_block_hit(target, last_hit_ns, now_ns) {
            sink.decision(&d);
        }
    }

    /// A block the map writer could not write: the policy will try again on the next finding.
    pub fn block_failed(&mut self, target: IpNet) {
        self.policy.forget(target);
    }

    /// End of input: every open flow is closed and its transactions handed out.
    pub fn finish(&mut self, sink: &mut impl Sink) {
        self.analyzer.finish(&mut self.transactions);
        self.emit(sink);
    }

    /// Requests that ended at an address blocked by connection: each whose client shape is
    /// one of the address's marks has its connection blocked, before it is answered.
    fn match_requests(&mut self, sink: &mut impl Sink) {
        for r in self.ended.drain(..) {
            let Some(fp) = r.fingerprint.as_ref() else {
                continue;
            };
            let shape = self.detection.client_key(fp, r.transport);
            let flow = Flow {
                client: r.peer,
                server: r.server,
            };
            let name = || shape_name(fp, r.transport);
            if let Some(d) = self.policy.on_request(r.client, shape, flow, r.ts_ns, name) {
                sink.decision(&d);
            }
        }
    }

    /// Hands out what the last input made: each transaction, then the findings it made and
    /// the decisions on them, in order.
    fn emit(&mut self, sink: &mut impl Sink) {
        if self.transactions.is_empty() && self.findings.is_empty() {
            return;
        }
        self.emit_made(sink);
    }

    fn emit_made(&mut self, sink: &mut impl Sink) {
        for tx in &self.transactions {
            sink.transaction(tx);
            if self.detecting {
                self.detection.on_transaction(tx, &mut self.findings);
            }
            decide(&mut self.findings, &mut self.policy, sink);
            // A client blocked by connection that opened another one: that one is blocked too.
            if self.detecting && tx.proxy == Some(ProxyVia::ProxyProtocol) {
                let flow = Flow {
                    client: tx.peer,
                    server: tx.server,
                };
                let now = tx.ts_ns.saturating_add(tx.latency_ns.unwrap_or(0));
                if let Some(d) = self.policy.on_connection(tx.client, flow, now) {
                    sink.decision(&d);
                }
            }
        }
        decide(&mut self.findings, &mut self.policy, sink);
        // Handed back: the next transactions are written into their buffers.
        self.analyzer.recycle_all(&mut self.transactions);
    }
}

/// A client shape's name for the operator: its request fingerprint and, when its SYN was seen,
/// its transport fingerprint.
fn shape_name(
    fp: &RequestFingerprint,
    transport: Option<crate::http::TransportFingerprint>,
) -> String {
    match transport {
        Some(t) => format!("{fp} {t}"),
        None => fp.to_string(),
    }
}

/// Hands out the findings one input made, then decides on them: one decision per entity (its
/// findings grouped, in the order their entities first appear).
fn decide(findings: &mut Vec<Finding>, policy: &mut Policy, sink: &mut impl Sink) {
    if findings.is_empty() {
        return;
    }
    for f in findings.iter() {
        sink.finding(f);
    }
    let mut start = 0;
    while start < findings.len() {
        let entity = findings[start].entity.clone();
        // Bring the entity's other findings next to its first one (order otherwise kept).
        let mut end = start + 1;
        for i in start + 1..findings.len() {
            if findings[i].entity == entity {
                findings[start + (end - start)..=i].rotate_right(1);
                end += 1;
            }
        }
        if let Some(d) = policy.on_findings(&findings[start..end]) {
            sink.decision(&d);
        }
        start = end;
    }
    findings.clear();
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use sensor_common::tcp_flags::{ACK, FIN, PSH, SYN};

    use super::*;
    use crate::decide::Action;

    const MS: u64 = 1_000_000;
    const T0: u64 = 1_800_000_000_000_000_000;

    /// Everything the pipeline handed out.
    #[derive(Default)]
    struct Recorded {
        transactions: Vec<Transaction>,
        findings: Vec<Finding>,
        decisions: Vec<Decision>,
    }

    impl Sink for Recorded {
        fn transaction(&mut self, tx: &Transaction) {
            self.transactions.push(tx.clone());
        }
        fn finding(&mut self, f: &Finding) {
            self.findings.push(f.clone());
        }
        fn decision(&mut self, d: &Decision) {
            self.decisions.push(d.clone());
        }
    }

    /// A segment.
    fn seg(
        ts_ns: u64,
        src: SocketAddr,
        dst: SocketAddr,
        (seq, ack, flags): (u32, u32, u8),
        payload: &[u8],
    ) -> Segment<'_> {
        Segment {
            ts_ns,
            src,
            dst,
            seq,
            ack,
            flags,
            payload_len: u32::try_from(payload.len()).expect("small"),
            payload,
            syn: None,
        }
    }

    /// One connection from `client:port`: handshake, a request, its response, close; `t` is
    /// the time of the SYN.
    fn connection(
        p: &mut Pipeline,
        sink: &mut Recorded,
        client: SocketAddr,
        t: u64,
        request: &[u8],
        response: &[u8],
    ) {
        let server: SocketAddr = "198.51.100.1:80".parse().expect("server");
        let (c, s) = (1000_u32, 5000_u32);
        let (req, resp) = (request, response);
        let rl = u32::try_from(req.len()).expect("small");
        let sl = u32::try_from(resp.len()).expect("small");
        for segment in [
            seg(t, client, server, (c, 0, SYN), b""),
            seg(t + MS, server, client, (s, c + 1, SYN | ACK), b""),
            seg(t + 2 * MS, client, server, (c + 1, s + 1, ACK), b""),
            seg(t + 3 * MS, client, server, (c + 1, s + 1, ACK | PSH), req),
            seg(
                t + 8 * MS,
                server,
                client,
                (s + 1, c + 1 + rl, ACK | PSH),
                resp,
            ),
            seg(
                t + 9 * MS,
                client,
                server,
                (c + 1 + rl, s + 1 + sl, ACK | FIN),
                b"",
            ),
            seg(
                t + 10 * MS,
                server,
                client,
                (s + 1 + sl, c + 2 + rl, ACK | FIN),
                b"",
            ),
        ] {
            p.on_segment(&segment, sink);
        }
    }

    const FAILED: &[u8] = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";

    fn login(account: &str) -> Vec<u8> {
        let body = format!("username={account}&password=hunter2");
        format!(
            "POST /api/v1/login HTTP/1.1\r\nHost: api.example.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn segments_become_transactions_findings_and_one_decision_per_entity() {
        let config = Config::default_config();
        let mut p = Pipeline::new(&config, [3; 16], None, T0).expect("pipeline");
        let mut out = Recorded::default();
        // Ten failed logins, each on a new connection, one account each: brute force and
        // credential stuffing cross on the same (fifth) answer.
        for i in 0..10_u16 {
            let client = SocketAddr::new("203.0.113.5".parse().expect("ip"), 40_000 + i);
            connection(
                &mut p,
                &mut out,
                client,
                T0 + u64::from(i) * 50 * MS,
                &login(&format!("user{i}")),
                FAILED,
            );
        }
        p.finish(&mut out);
        assert_eq!(out.transactions.len(), 10);
        assert!(
            out.transactions
                .iter()
                .all(|t| t.login == Some(crate::http::LoginOutcome::Failure))
        );
        let blocks: Vec<_> = out
            .decisions
            .iter()
            .filter(|d| d.action == Action::Block)
            .collect();
        assert_eq!(blocks.len(), 1, "{:?}", out.decisions);
        let d = blocks[0];
        assert_eq!(d.target, Some("203.0.113.5/32".parse().expect("net")));
        assert!(d.blocks_in_kernel());
        assert_eq!(
            d.reason, "apisensor: brute_force+credential_stuffing",
            "{d:?}"
        );
        // Its two findings, and the context that came with them (a source busy for a second).
        let detectors: Vec<_> = d.findings.iter().map(|f| f.detector.name()).collect();
        assert_eq!(
            detectors,
            ["brute_force", "credential_stuffing", "short_lived"],
            "{d:?}"
        );
        assert!(d.score > d.findings[0].score, "{d:?}");
        // The fifth answer, 4 x 50 ms + 8 ms after the first SYN.
        assert_eq!(d.at_ns, T0 + 4 * 50 * MS + 8 * MS);
        let text = serde_json::to_string(&out.decisions).expect("json");
        assert!(!text.contains("hunter2"));
        // Nor does its OCSF line (`[events] format = "ocsf"`), which names the accounts tried.
        let ocsf = crate::json::ocsf::detection_finding(&crate::json::Enforced {
            decision: d,
            written_ns: Some(d.at_ns),
            write_error: None,
        })
        .to_string();
        assert!(
            !ocsf.contains("hunter2") && ocsf.contains("\"user4\""),
            "{ocsf}"
        );
        // The same input, with detection off: transactions only.
        let mut quiet = Pipeline::new(&config, [3; 16], None, T0).expect("pipeline");
        quiet.set_detecting(false);
        let mut out2 = Recorded::default();
        for i in 0..10_u16 {
            let client = SocketAddr::new("203.0.113.5".parse().expect("ip"), 40_000 + i);
            connection(
                &mut quiet,
                &mut out2,
                client,
                T0 + u64::from(i) * 50 * MS,
                &login(&format!("user{i}")),
                FAILED,
            );
        }
        assert_eq!(out2.transactions, out.transactions);
        assert!(out2.findings.is_empty() && out2.decisions.is_empty());
    }

    /// A login of `account` sent by a client program named `agent` (its own header set).
    fn login_as(agent: &str, account: &str) -> Vec<u8> {
        let body = format!("username={account}&password=hunter2");
        format!(
            "POST /api/v1/login HTTP/1.1\r\nHost: api.example.test\r\nUser-Agent: {agent}\r\nAccept: */*\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    const BROWSER: &str =
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36";
    const OK_LOGIN: &[u8] =
        b"HTTP/1.1 200 OK\r\nSet-Cookie: session=abc\r\nContent-Length: 0\r\n\r\n";
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn an_attacker_at_a_shared_address_is_blocked_by_connection_before_its_answer() {
        let config = Config::default_config();
        let mut p = Pipeline::new(&config, [3; 16], None, T0).expect("pipeline");
        let mut out = Recorded::default();
        let nat: std::net::IpAddr = "203.0.113.9".parse().expect("ip");
        let mut port = 30_000_u16;
        let mut next = |t: &mut u64| {
            port += 1;
            *t += 100 * MS;
            (SocketAddr::new(nat, port), *t)
        };
        let mut t = T0;
        // The office's users browse and log in with their browsers.
        for i in 0..12 {
            let (c, at) = next(&mut t);
            let get = format!(
                "GET /docs/{i} HTTP/1.1\r\nHost: api.example.test\r\nUser-Agent: {BROWSER}\r\nAccept: text/html\r\n\r\n"
            );
            connection(&mut p, &mut out, c, at, get.as_bytes(), OK);
        }
        for user in 0..4 {
            let (c, at) = next(&mut t);
            connection(
                &mut p,
                &mut out,
                c,
                at,
                &login_as(BROWSER, &format!("emp{user}")),
                OK_LOGIN,
            );
        }
        // A script behind the same address fails to log in, account after account.
        for i in 0..8 {
            let (c, at) = next(&mut t);
            connection(
                &mut p,
                &mut out,
                c,
                at,
                &login_as("python-requests/2.32", &format!("victim{i}")),
                FAILED,
            );
        }
        let first = out
            .decisions
            .iter()
            .find(|d| d.action == Action::Block)
            .unwrap_or_else(|| panic!("no block: {:#?}", out.decisions))
            .clone();
        assert_eq!(
            first.enforcement,
            crate::decide::Enforcement::Connection,
            "{first:?}"
        );
        assert_eq!(first.target, Some("203.0.113.9/32".parse().expect("net")));
        assert_eq!(first.marks.len(), 1, "{first:?}");
        assert!(first.flows.is_empty() && first.blocks_in_kernel());
        assert!(
            out.decisions
                .iter()
                .all(|d| d.enforcement != crate::decide::Enforcement::Kernel),
            "the address itself is never blocked: {:?}",
            out.decisions
        );
        // The script's next attempt: its connection is blocked when the request has arrived,
        // before the response.
        let before = out.decisions.len();
        let (client, at) = next(&mut t);
        let server: SocketAddr = "198.51.100.1:80".parse().expect("server");
        let req = login_as("python-requests/2.32", "victim99");
        for segment in [
            seg(at, client, server, (1000, 0, SYN), b""),
            seg(at + MS, server, client, (5000, 1001, SYN | ACK), b""),
            seg(at + 2 * MS, client, server, (1001, 5001, ACK), b""),
            seg(at + 3 * MS, client, server, (1001, 5001, ACK | PSH), &req),
        ] {
            p.on_segment(&segment, &mut out);
        }
        let blocked: Vec<&Decision> = out.decisions[before..].iter().collect();
        assert_eq!(blocked.len(), 1, "{blocked:?}");
        let d = blocked[0];
        assert_eq!(d.enforcement, crate::decide::Enforcement::Connection);
        assert_eq!(d.flows, [Flow { client, server }]);
        assert_eq!(
            d.id, first.id,
            "the connection joins the address's decision"
        );
        assert_eq!(d.marks, first.marks);
        assert!(d.notes[0].contains("python-requests"), "{d:?}");
        // A user's request from the same address, meanwhile: nothing.
        let (c, at) = next(&mut t);
        let before = out.decisions.len();
        connection(
            &mut p,
            &mut out,
            c,
            at,
            &login_as(BROWSER, "emp1"),
            OK_LOGIN,
        );
        assert_eq!(
            out.decisions.len(),
            before,
            "{:?}",
            &out.decisions[before..]
        );
    }

    #[test]
    fn a_reload_keeps_the_state_and_applies_the_new_thresholds() {
        let lenient = Config::parse(
            "[detect.brute_force]\nmin_failures = 50.0\nstuffing_min_accounts = 50.0\n",
            "test",
        )
        .expect("config");
        let mut p = Pipeline::new(&lenient, [3; 16], None, T0).expect("pipeline");
        let mut out = Recorded::default();
        let client = |i: u16| SocketAddr::new("203.0.113.5".parse().expect("ip"), 40_000 + i);
        for i in 0..8_u16 {
            let at = T0 + u64::from(i) * 50 * MS;
            connection(
                &mut p,
                &mut out,
                client(i),
                at,
                &login(&format!("user{i}")),
                FAILED,
            );
        }
        assert!(
            out.decisions.iter().all(|d| d.action != Action::Block),
            "{:?}",
            out.decisions
        );
        // The default thresholds: the next failure finds the eight before it counted.
        p.reconfigure(&Config::default_config(), [3; 16]);
        connection(
            &mut p,
            &mut out,
            client(8),
            T0 + 400 * MS,
            &login("user8"),
            FAILED,
        );
        let block = out
            .decisions
            .iter()
            .find(|d| d.action == Action::Block)
            .expect("a block after the reload");
        assert_eq!(block.target, Some("203.0.113.5/32".parse().expect("net")));
        assert!(
            block.findings[0].measures[0].value >= 9.0,
            "{:?}",
            block.findings[0].measures
        );
    }

    #[test]
    fn spoofed_syns_make_a_flood_finding_and_no_block() {
        let config = Config::default_config();
        let mut p = Pipeline::new(&config, [3; 16], None, T0).expect("pipeline");
        let mut out = Recorded::default();
        let server: SocketAddr = "198.51.100.1:80".parse().expect("server");
        for i in 0..4000_u64 {
            let syn = Segment {
                ts_ns: T0 + i * 5 * MS,
                src: SocketAddr::new(
                    "203.0.113.66".parse().expect("ip"),
                    1024 + (i % 60_000) as u16,
                ),
                dst: server,
                seq: 1,
                ack: 0,
                flags: SYN,
                payload_len: 0,
                payload: b"",
                syn: None,
            };
            p.on_segment(&syn, &mut out);
        }
        assert!(
            out.findings
                .iter()
                .any(|f| f.detector == crate::detect::Detector::PacketFlood)
        );
        assert!(
            out.decisions.iter().all(|d| !d.blocks_in_kernel()),
            "{:?}",
            out.decisions
        );
        // Live, SYN segments are not counted: the kernel's counters are.
        let mut live = Pipeline::new(&config, [3; 16], None, T0).expect("pipeline");
        live.count_from_kernel();
        let mut out = Recorded::default();
        for i in 0..4000_u64 {
            let syn = Segment {
                ts_ns: T0 + i * 5 * MS,
                src: SocketAddr::new("203.0.113.66".parse().expect("ip"), 1024),
                dst: server,
                seq: 1,
                ack: 0,
                flags: SYN,
                payload_len: 0,
                payload: b"",
                syn: None,
            };
            live.on_segment(&syn, &mut out);
        }
        assert!(out.findings.is_empty());
        for s in 1..=20 {
            let counts = Packets {
                packets: 300,
                syns: 300,
            };
            live.on_kernel_counts(
                "203.0.113.66".parse().expect("ip"),
                counts,
                T0 + s * 1000 * MS,
                &mut out,
            );
        }
        assert!(
            out.findings
                .iter()
                .any(|f| f.detector == crate::detect::Detector::PacketFlood)
        );
    }

    #[test]
    fn a_client_behind_a_proxy_protocol_proxy_is_blocked_by_connection() {
        let config = Config::parse(
            "[analyzer.http]\ntrusted_proxies = [\"203.0.113.1/32\"]\n",
            "test",
        )
        .expect("config");
        let mut p = Pipeline::new(&config, [3; 16], None, T0).expect("pipeline");
        let mut out = Recorded::default();
        for i in 0..8_u16 {
            let proxy = SocketAddr::new("203.0.113.1".parse().expect("ip"), 50_000 + i);
            let mut request = format!(
                "PROXY TCP4 198.51.100.77 198.51.100.1 {} 80\r\n",
                30_000 + i
            )
            .into_bytes();
            request.extend(login(&format!("user{i}")));
            connection(
                &mut p,
                &mut out,
                proxy,
                T0 + u64::from(i) * 50 * MS,
                &request,
                FAILED,
            );
        }
        assert!(
            out.transactions
                .iter()
                .all(|t| t.client.to_string() == "198.51.100.77"
                    && t.proxy == Some(ProxyVia::ProxyProtocol))
        );
        let blocks: Vec<_> = out
            .decisions
            .iter()
            .filter(|d| d.action == Action::Block)
            .collect();
        let first = blocks.first().expect("a block");
        assert_eq!(
            first.enforcement,
            crate::decide::Enforcement::Flow,
            "{first:?}"
        );
        assert_eq!(first.target, Some("198.51.100.77/32".parse().expect("net")));
        // The proxy itself is never the target, and every later connection joins the block.
        let ports: Vec<u16> = blocks
            .iter()
            .flat_map(|d| d.flows.iter().map(|f| f.client.port()))
            .collect();
        assert_eq!(
            ports,
            [50_003, 50_004, 50_005, 50_006, 50_007],
            "{blocks:?}"
        );
        assert!(
            blocks
                .iter()
                .all(|d| d.blocks_in_kernel() && d.id == first.id)
        );
    }
}
