//! The one pipeline that the live agent and the replay both drive: segments and time in;
//! transactions, findings and decisions out, handed to a [`Sink`] as they are made.
//!
//! ```text
//! Segment ─► Analyzer ─► Transaction ─► Detection ─► Finding ─► Policy ─► Decision
//!    └─ SYN to a monitored port (replay) ──┘
//!          the kernel's per-source counters (live) ─┘
//! ```
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
use crate::detect::{Detection, Finding, Packets};
use crate::http::Transaction;
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
            kernel_counts: false,
        })
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
        self.analyzer.on_segment(seg, &mut self.transactions);
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

    /// Hands out what the last input made: each transaction, then the findings it made and
    /// the decisions on them, in order.
    fn emit(&mut self, sink: &mut impl Sink) {
        if self.transactions.is_empty() && self.findings.is_empty() {
            return;
        }
        for tx in &self.transactions {
            sink.transaction(tx);
            if self.detecting {
                self.detection.on_transaction(tx, &mut self.findings);
            }
            for f in self.findings.drain(..) {
                sink.finding(&f);
                if let Some(d) = self.policy.on_finding(&f) {
                    sink.decision(&d);
                }
            }
        }
        for f in self.findings.drain(..) {
            sink.finding(&f);
            if let Some(d) = self.policy.on_finding(&f) {
                sink.decision(&d);
            }
        }
        // Handed back: the next transactions are written into their buffers.
        self.analyzer.recycle_all(&mut self.transactions);
    }
}
