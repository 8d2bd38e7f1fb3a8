//! The agent's Prometheus metrics: one registry, encoded in the `OpenMetrics` text format for
//! `GET /metrics` (`serve.rs`).
//!
//! Nothing on the hot path takes a lock for a counter. The agent counts what its sink sees
//! (findings, decisions, records) in plain integers ([`OutputCounts`]) and publishes a
//! [`Snapshot`] of those and of the pipeline's own counters about once a second
//! ([`Metrics::publish`], one short lock); a scrape encodes the latest snapshot, and reads the
//! kernel's `STATS` counters at that moment. Only the latency histograms are observed as things
//! happen: once per drained batch and once per decision, never per packet or record.
//!
//! Every family is named `apisensor_*`, counters end in `_total`, units are in the names.
//! [`FAMILIES`] lists them; the dashboard test checks the Grafana dashboard against them.

mod serve;
#[cfg(test)]
mod tests;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{
        MetricType,
        counter::ConstCounter,
        gauge::ConstGauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use sensor_common::Counter;

use crate::{
    analyzer::AnalyzerCounters,
    decide::{Action, Decision, Enforcement, Refusal},
    detect::{DetectCounters, Detector, Finding},
};

pub use serve::{bind, serve};

/// The `[metrics]` table of the configuration.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address the Prometheus endpoint listens on (`GET /metrics`); empty: no endpoint.
    pub address: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:9464".to_owned(),
        }
    }
}

impl MetricsConfig {
    /// The address to listen on, `None` when the endpoint is off; `Err` with the text when it
    /// is not an address and port.
    pub fn socket_addr(&self) -> Result<Option<SocketAddr>, &str> {
        let text = self.address.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| self.address.as_str())
    }
}

/// What the agent's sink counts as decisions and findings go by: plain integers, published
/// with the snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputCounts {
    /// Findings, by detector (index: `Detector as usize`).
    pub findings: [u64; Detector::ALL.len()],
    /// Decisions, by action and enforcement.
    pub decisions: [[u64; ENFORCEMENTS.len()]; ACTIONS.len()],
    /// Decisions that renewed an active block.
    pub renewals: u64,
    /// Decisions whose block was refused, by reason (index: `Refusal as usize`).
    pub refused: [u64; Refusal::ALL.len()],
    /// Blocks the map writer wrote.
    pub blocks_written: u64,
    /// Blocks the map writer refused.
    pub blocks_failed: u64,
    /// Records read from each ring (request, response).
    pub records: [u64; 2],
    /// Records that did not decode.
    pub decode_errors: u64,
    /// Upstream hooks started, failed to start or exit well, and killed.
    pub hooks: [u64; 3],
}

impl OutputCounts {
    /// Counts a finding.
    pub fn finding(&mut self, f: &Finding) {
        self.findings[f.detector as usize] += 1;
    }

    /// Counts a decision.
    pub fn decision(&mut self, d: &Decision) {
        self.decisions[d.action as usize][d.enforcement as usize] += 1;
        self.renewals += u64::from(d.renewal);
        if let Some(r) = d.refused {
            self.refused[r as usize] += 1;
        }
    }
}

/// The actions, in `Action as usize` order.
const ACTIONS: [Action; 3] = [Action::Observe, Action::Alert, Action::Block];
/// The enforcements, in `Enforcement as usize` order.
const ENFORCEMENTS: [Enforcement; 5] = [
    Enforcement::Kernel,
    Enforcement::Upstream,
    Enforcement::Flow,
    Enforcement::Connection,
    Enforcement::None,
];

/// Everything a scrape reports but the kernel's counters and the histograms.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The analyzer's counters (flows, reassembly, transactions).
    pub analyzer: AnalyzerCounters,
    /// The detection state's counters (tracked entities, evictions).
    pub detection: DetectCounters,
    /// Blocks the policy believes active.
    pub active_blocks: u64,
    /// What the agent's sink counted.
    pub out: OutputCounts,
}

/// The latency histograms, observed as things happen (cheap clones of shared handles).
#[derive(Clone, Debug)]
pub struct Histograms {
    /// Time to run one drained batch of records through the pipeline, seconds.
    pub batch: Histogram,
    /// Age of the first record of a batch when the agent reads it (kernel timestamp to
    /// processing), seconds.
    pub record_age: Histogram,
    /// Time the map writer took to write one block, seconds.
    pub block_write: Histogram,
    /// From the event that made a decision to its block in the kernel's map, seconds.
    pub detection_to_block: Histogram,
}

impl Histograms {
    fn new() -> Self {
        Self {
            batch: Histogram::new(exponential_buckets(1e-5, 3.0, 12)),
            record_age: Histogram::new(exponential_buckets(1e-4, 3.0, 12)),
            block_write: Histogram::new(exponential_buckets(1e-6, 3.0, 12)),
            detection_to_block: Histogram::new(exponential_buckets(1e-4, 3.0, 12)),
        }
    }
}

/// Reads the kernel's counters at scrape time (`None`: they could not be read).
pub type KernelReader = Box<dyn Fn() -> Option<Vec<(Counter, u64)>> + Send + Sync>;

/// The registry and the handles the agent updates it through.
pub struct Metrics {
    registry: Arc<Registry>,
    shared: Arc<Shared>,
    /// The latency histograms.
    pub histograms: Histograms,
}

/// The published state, read by scrapes.
#[derive(Debug)]
struct Shared {
    snapshot: Mutex<(Snapshot, Instant)>,
}

/// The collector of everything but the histograms.
struct Collect {
    shared: Arc<Shared>,
    kernel: KernelReader,
}

impl std::fmt::Debug for Collect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collect").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry whose kernel counters come from `kernel`.
    pub fn new(kernel: KernelReader) -> Self {
        let shared = Arc::new(Shared {
            snapshot: Mutex::new((Snapshot::default(), Instant::now())),
        });
        let histograms = Histograms::new();
        let mut registry = Registry::default();
        let h = &histograms;
        for (name, help, hist) in [
            (
                "apisensor_batch_duration_seconds",
                "Time to run one drained batch of ring-buffer records through the pipeline",
                &h.batch,
            ),
            (
                "apisensor_record_age_seconds",
                "Age of the first record of a batch when the agent reads it (kernel timestamp to processing)",
                &h.record_age,
            ),
            (
                "apisensor_block_write_duration_seconds",
                "Time the map writer took to write one block",
                &h.block_write,
            ),
            (
                "apisensor_detection_to_block_seconds",
                "From the event that made a block decision to its block in the kernel's map",
                &h.detection_to_block,
            ),
        ] {
            registry.register(name, help, hist.clone());
        }
        registry.register_collector(Box::new(Collect {
            shared: Arc::clone(&shared),
            kernel,
        }));
        Self {
            registry: Arc::new(registry),
            shared,
            histograms,
        }
    }

    /// A registry reading the kernel's counters from the pinned `STATS` map under `pin_dir`.
    pub fn pinned(pin_dir: &std::path::Path) -> Self {
        let pin_dir = pin_dir.to_path_buf();
        Self::new(Box::new(move || {
            crate::maps::read_counters(&pin_dir)
                .map_err(
                    |error| tracing::warn!(%error, "metrics: reading the kernel's counters failed"),
                )
                .ok()
        }))
    }

    /// Replaces the published snapshot.
    pub fn publish(&self, snapshot: Snapshot) {
        let mut guard = self
            .shared
            .snapshot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = (snapshot, Instant::now());
    }

    /// The registry, for the endpoint.
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// The `OpenMetrics` text of every family now.
    pub fn encode(&self) -> String {
        encode(&self.registry)
    }
}

/// The `OpenMetrics` text of `registry`.
fn encode(registry: &Registry) -> String {
    let mut text = String::with_capacity(16 << 10);
    // Writing into a String cannot fail, and no collector returns an error of its own.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

/// Every family the registry exposes, with its type: the names a query may use (a counter's
/// samples add `_total`, a histogram's `_bucket`, `_sum` and `_count`).
pub const FAMILIES: &[(&str, MetricType)] = &[
    ("apisensor_build_info", MetricType::Gauge),
    ("apisensor_snapshot_age_seconds", MetricType::Gauge),
    ("apisensor_kernel_packets", MetricType::Counter),
    ("apisensor_kernel_events", MetricType::Counter),
    ("apisensor_ring_events", MetricType::Counter),
    ("apisensor_ring_events_lost", MetricType::Counter),
    ("apisensor_ring_wakeups", MetricType::Counter),
    ("apisensor_ring_records_read", MetricType::Counter),
    ("apisensor_ring_decode_errors", MetricType::Counter),
    ("apisensor_segments", MetricType::Counter),
    ("apisensor_segments_ignored", MetricType::Counter),
    ("apisensor_transactions", MetricType::Counter),
    ("apisensor_flows_opened", MetricType::Counter),
    ("apisensor_flows_closed", MetricType::Counter),
    ("apisensor_reassembly_gaps", MetricType::Counter),
    ("apisensor_reassembly_lost_bytes", MetricType::Counter),
    ("apisensor_reassembly_uncaptured_bytes", MetricType::Counter),
    ("apisensor_reassembly_segments", MetricType::Counter),
    ("apisensor_reassembly_buffer_overflows", MetricType::Counter),
    ("apisensor_reassembly_buffered_bytes", MetricType::Gauge),
    ("apisensor_findings", MetricType::Counter),
    ("apisensor_decisions", MetricType::Counter),
    ("apisensor_decision_renewals", MetricType::Counter),
    ("apisensor_decisions_refused", MetricType::Counter),
    ("apisensor_block_writes", MetricType::Counter),
    ("apisensor_blocks_active", MetricType::Gauge),
    ("apisensor_tracked_entities", MetricType::Gauge),
    ("apisensor_tracked_evictions", MetricType::Counter),
    ("apisensor_upstream_hooks", MetricType::Counter),
    ("apisensor_batch_duration_seconds", MetricType::Histogram),
    ("apisensor_record_age_seconds", MetricType::Histogram),
    (
        "apisensor_block_write_duration_seconds",
        MetricType::Histogram,
    ),
    (
        "apisensor_detection_to_block_seconds",
        MetricType::Histogram,
    ),
];

/// Where a kernel counter goes: which family, with which labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum KernelSample {
    /// `apisensor_kernel_packets_total{program, action, reason}`: a packet's verdict.
    Packet(&'static str, &'static str, &'static str),
    /// `apisensor_ring_events_total{ring, kind}`: records submitted.
    RingEvents(&'static str, &'static str),
    /// `apisensor_ring_events_lost_total{ring}`: records lost to a full ring.
    RingLost(&'static str),
    /// `apisensor_ring_wakeups_total{ring}`: submits that woke the reader.
    RingWakeups(&'static str),
    /// `apisensor_kernel_events_total{event}`: anything else the kernel counts.
    Event(&'static str),
}

/// The family of each kernel counter (exhaustive: a new counter must be placed here).
fn kernel_sample(c: Counter) -> KernelSample {
    use KernelSample::{Event, Packet, RingEvents, RingLost, RingWakeups};
    match c {
        Counter::XdpPass => Packet("xdp", "pass", "not_sampled"),
        Counter::XdpPassSampled => Packet("xdp", "pass", "sampled"),
        Counter::XdpPassAllowlisted => Packet("xdp", "pass", "allowlisted"),
        Counter::XdpPassExpired => Packet("xdp", "pass", "expired_block"),
        Counter::XdpDropExact => Packet("xdp", "drop", "exact_block"),
        Counter::XdpDropPrefix => Packet("xdp", "drop", "prefix_block"),
        Counter::XdpDropFlow => Packet("xdp", "drop", "flow_block"),
        Counter::XdpDropProxied => Packet("xdp", "drop", "proxied_client"),
        Counter::XdpPassNotIp => Packet("xdp", "pass", "not_ip"),
        Counter::XdpPassTruncated => Packet("xdp", "pass", "truncated"),
        Counter::XdpPassMalformed => Packet("xdp", "pass", "malformed"),
        Counter::XdpPassFragment => Packet("xdp", "pass", "fragment"),
        Counter::XdpPassOtherL4 => Packet("xdp", "pass", "other_l4"),
        Counter::XdpPassTruncatedL4 => Packet("xdp", "pass", "truncated_l4"),
        Counter::XdpPassExtHdrLimit => Packet("xdp", "pass", "ext_hdr_limit"),
        Counter::TcPass => Packet("tc", "pass", "not_sampled"),
        Counter::TcPassSampled => Packet("tc", "pass", "sampled"),
        Counter::TcPassUnparsed => Packet("tc", "pass", "unparsed"),
        Counter::TcDropFlow => Packet("tc", "drop", "flow_block"),
        Counter::ReqEvents => RingEvents("request", "segment"),
        Counter::ReqControlEvents => RingEvents("request", "control"),
        Counter::RespEvents => RingEvents("response", "segment"),
        Counter::RespControlEvents => RingEvents("response", "control"),
        Counter::ReqRingFull => RingLost("request"),
        Counter::RespRingFull => RingLost("response"),
        Counter::ReqWakeups => RingWakeups("request"),
        Counter::RespWakeups => RingWakeups("response"),
        Counter::SourceInsertFailed => Event("source_insert_failed"),
        Counter::CopyFailed => Event("payload_copy_failed"),
        Counter::FlowBlockReopened => Event("flow_block_reopened"),
    }
}

/// The names of the refusals, as decisions write them.
fn refusal_name(r: Refusal) -> &'static str {
    match r {
        Refusal::Allowlisted => "allowlisted",
        Refusal::TrustedProxy => "trusted_proxy",
        Refusal::Unverified => "unverified",
        Refusal::SharedAddress => "shared_address",
        Refusal::GoodStanding => "good_standing",
        Refusal::ActiveCap => "active_cap",
        Refusal::RateCap => "rate_cap",
        Refusal::DryRun => "dry_run",
    }
}

/// The names of the enforcements, as decisions write them.
fn enforcement_name(e: Enforcement) -> &'static str {
    match e {
        Enforcement::Kernel => "kernel",
        Enforcement::Upstream => "upstream",
        Enforcement::Flow => "flow",
        Enforcement::Connection => "connection",
        Enforcement::None => "none",
    }
}

/// One labelled sample.
type Sample<'a> = (&'a [(&'a str, &'a str)], u64);

/// Writes one family of labelled samples.
fn family(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: &[Sample<'_>],
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        if labels.is_empty() {
            // An unlabelled sample is written without braces.
            return match kind {
                MetricType::Gauge => ConstGauge::new(*value).encode(m),
                _ => ConstCounter::new(*value).encode(m),
            };
        }
        let sample = m.encode_family(labels)?;
        match kind {
            MetricType::Gauge => ConstGauge::new(*value).encode(sample)?,
            _ => ConstCounter::new(*value).encode(sample)?,
        }
    }
    Ok(())
}

/// Writes one family of one unlabelled sample.
fn single(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    value: u64,
) -> std::fmt::Result {
    family(enc, name, help, kind, &[(&[], value)])
}

impl Collector for Collect {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> std::fmt::Result {
        let (s, age) = {
            let guard = self
                .shared
                .snapshot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (guard.0.clone(), guard.1.elapsed())
        };
        let mut m = enc.encode_descriptor(
            "apisensor_build_info",
            "The agent's version",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1_i64)
            .encode(m.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?)?;
        let m = enc.encode_descriptor(
            "apisensor_snapshot_age_seconds",
            "Seconds since the agent's loop last published its counters (it does about once a second)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(age.as_secs_f64()).encode(m)?;
        encode_kernel(&mut enc, (self.kernel)().as_deref())?;
        encode_analyzer(&mut enc, &s)?;
        encode_reassembly(&mut enc, &s.analyzer)?;
        encode_detection(&mut enc, &s)
    }
}

/// Up to three labels of a kernel sample, and how many are used.
type KernelLabels = ([(&'static str, &'static str); 3], usize);

impl KernelSample {
    /// The index of its family in [`KERNEL_FAMILIES`].
    fn family(self) -> usize {
        match self {
            Self::Packet(..) => 0,
            Self::Event(_) => 1,
            Self::RingEvents(..) => 2,
            Self::RingLost(_) => 3,
            Self::RingWakeups(_) => 4,
        }
    }

    /// Its labels.
    fn labels(self) -> KernelLabels {
        const NO: (&str, &str) = ("", "");
        match self {
            Self::Packet(p, a, r) => ([("program", p), ("action", a), ("reason", r)], 3),
            Self::RingEvents(r, k) => ([("ring", r), ("kind", k), NO], 2),
            Self::RingLost(r) | Self::RingWakeups(r) => ([("ring", r), NO, NO], 1),
            Self::Event(e) => ([("event", e), NO, NO], 1),
        }
    }
}

/// The kernel's counter families: name and help, in [`KernelSample::family`] order.
const KERNEL_FAMILIES: [(&str, &str); 5] = [
    (
        "apisensor_kernel_packets",
        "Packets by the kernel programs' verdict (program xdp or tc, action pass or drop, and why)",
    ),
    (
        "apisensor_kernel_events",
        "Other events the kernel programs count",
    ),
    (
        "apisensor_ring_events",
        "Records the kernel submitted to a ring buffer, by ring and kind",
    ),
    (
        "apisensor_ring_events_lost",
        "Records the kernel could not submit because the ring buffer was full",
    ),
    (
        "apisensor_ring_wakeups",
        "Submits that woke the agent's reader",
    ),
];

/// The kernel's counters, read now; families without samples if they could not be read.
fn encode_kernel(
    enc: &mut DescriptorEncoder<'_>,
    counters: Option<&[(Counter, u64)]>,
) -> std::fmt::Result {
    let placed: Vec<(usize, KernelLabels, u64)> = counters
        .unwrap_or_default()
        .iter()
        .map(|&(c, v)| {
            let s = kernel_sample(c);
            (s.family(), s.labels(), v)
        })
        .collect();
    for (i, (name, help)) in KERNEL_FAMILIES.iter().enumerate() {
        let samples: Vec<Sample<'_>> = placed
            .iter()
            .filter(|p| p.0 == i)
            .map(|(_, (labels, n), v)| (&labels[..*n], *v))
            .collect();
        family(enc, name, help, MetricType::Counter, &samples)?;
    }
    Ok(())
}

/// Records read, segments, flows, transactions.
fn encode_analyzer(enc: &mut DescriptorEncoder<'_>, s: &Snapshot) -> std::fmt::Result {
    use MetricType::Counter as C;
    let a = &s.analyzer;
    family(
        enc,
        "apisensor_ring_records_read",
        "Records the agent read from each ring buffer",
        C,
        &[
            (&[("ring", "request")], s.out.records[0]),
            (&[("ring", "response")], s.out.records[1]),
        ],
    )?;
    single(
        enc,
        "apisensor_ring_decode_errors",
        "Ring-buffer records that failed to decode",
        C,
        s.out.decode_errors,
    )?;
    single(
        enc,
        "apisensor_segments",
        "Segments given to the analyzer",
        C,
        a.segments,
    )?;
    family(
        enc,
        "apisensor_segments_ignored",
        "Segments the analyzer ignored, by reason",
        C,
        &[
            (&[("reason", "unmonitored_port")], a.unmonitored),
            (&[("reason", "orphan")], a.orphans),
            (&[("reason", "rst_outside_window")], a.rst_ignored),
        ],
    )?;
    single(
        enc,
        "apisensor_transactions",
        "HTTP transactions (request and response) parsed",
        C,
        a.transactions,
    )?;
    single(
        enc,
        "apisensor_flows_opened",
        "TCP flows the analyzer opened",
        C,
        a.flows_opened,
    )?;
    family(
        enc,
        "apisensor_flows_closed",
        "TCP flows the analyzer closed, by reason (evicted: the flow table was full)",
        C,
        &[
            (&[("reason", "fin")], a.flows_closed),
            (&[("reason", "reset")], a.flows_reset),
            (&[("reason", "reused")], a.flows_reused),
            (&[("reason", "idle")], a.flows_expired),
            (&[("reason", "evicted")], a.flows_evicted),
            (&[("reason", "finished")], a.flows_finished),
        ],
    )?;
    Ok(())
}

/// The reassembly's counters.
fn encode_reassembly(enc: &mut DescriptorEncoder<'_>, a: &AnalyzerCounters) -> std::fmt::Result {
    use MetricType::{Counter as C, Gauge as G};
    single(
        enc,
        "apisensor_reassembly_gaps",
        "Holes in a TCP stream the reassembly gave up on (loss, buffer cap, window jump)",
        C,
        a.gaps,
    )?;
    single(
        enc,
        "apisensor_reassembly_lost_bytes",
        "Stream bytes never seen, delivered as lost",
        C,
        a.lost_bytes,
    )?;
    single(
        enc,
        "apisensor_reassembly_uncaptured_bytes",
        "Payload bytes seen on the wire beyond the kernel's capture length",
        C,
        a.uncaptured_bytes,
    )?;
    family(
        enc,
        "apisensor_reassembly_segments",
        "Segments the reassembly handled specially, by kind",
        C,
        &[
            (&[("kind", "truncated")], a.truncated_segments),
            (&[("kind", "duplicate")], a.duplicates),
            (&[("kind", "overlap")], a.overlaps),
            (&[("kind", "out_of_order")], a.out_of_order),
            (&[("kind", "window_jump")], a.window_jumps),
        ],
    )?;
    family(
        enc,
        "apisensor_reassembly_buffer_overflows",
        "Streams made to give up on their holes by a full buffer (its own, or all flows' together)",
        C,
        &[
            (&[("buffer", "stream")], a.buffer_overflows),
            (&[("buffer", "total")], a.buffer_pressure),
        ],
    )?;
    single(
        enc,
        "apisensor_reassembly_buffered_bytes",
        "Out-of-order bytes buffered now by all flows",
        G,
        a.buffered_bytes,
    )
}

/// Findings and decisions.
fn encode_detection(enc: &mut DescriptorEncoder<'_>, s: &Snapshot) -> std::fmt::Result {
    use MetricType::Counter as C;
    let o = &s.out;
    let findings: Vec<[(&str, &str); 1]> = Detector::ALL
        .iter()
        .map(|d| [("detector", d.name())])
        .collect();
    let samples: Vec<Sample<'_>> = findings
        .iter()
        .zip(Detector::ALL)
        .map(|(l, d)| (&l[..], o.findings[d as usize]))
        .collect();
    family(
        enc,
        "apisensor_findings",
        "Findings, by detector",
        C,
        &samples,
    )?;
    let decisions: Vec<([(&str, &str); 2], u64)> = ACTIONS
        .iter()
        .flat_map(|&a| {
            ENFORCEMENTS.iter().map(move |&e| {
                (
                    [
                        ("action", action_name(a)),
                        ("enforcement", enforcement_name(e)),
                    ],
                    o.decisions[a as usize][e as usize],
                )
            })
        })
        .collect();
    let samples: Vec<Sample<'_>> = decisions.iter().map(|(l, v)| (&l[..], *v)).collect();
    family(
        enc,
        "apisensor_decisions",
        "Decisions, by action (observe, alert, block) and where the block is enforced",
        C,
        &samples,
    )?;
    single(
        enc,
        "apisensor_decision_renewals",
        "Block decisions that renewed an active block",
        C,
        o.renewals,
    )?;
    let refused: Vec<[(&str, &str); 1]> = Refusal::ALL
        .iter()
        .map(|r| [("reason", refusal_name(*r))])
        .collect();
    let samples: Vec<Sample<'_>> = refused
        .iter()
        .zip(Refusal::ALL)
        .map(|(l, r)| (&l[..], o.refused[r as usize]))
        .collect();
    family(
        enc,
        "apisensor_decisions_refused",
        "Decisions whose block a safety rule or cap refused, by reason",
        C,
        &samples,
    )?;
    encode_blocks(enc, s)
}

/// Block writes, active blocks, tracked entities, hooks.
fn encode_blocks(enc: &mut DescriptorEncoder<'_>, s: &Snapshot) -> std::fmt::Result {
    use MetricType::{Counter as C, Gauge as G};
    let o = &s.out;
    family(
        enc,
        "apisensor_block_writes",
        "Blocks the map writer wrote into the kernel's maps, or failed to",
        C,
        &[
            (&[("result", "written")], o.blocks_written),
            (&[("result", "failed")], o.blocks_failed),
        ],
    )?;
    single(
        enc,
        "apisensor_blocks_active",
        "Blocks the policy believes active",
        G,
        s.active_blocks,
    )?;
    let (d, a) = (&s.detection, &s.analyzer);
    family(
        enc,
        "apisensor_tracked_entities",
        "Entities tracked now, by kind (bounded tables; least recently used evicted beyond)",
        G,
        &[
            (&[("kind", "source")], d.sources),
            (&[("kind", "prefix")], d.prefixes),
            (&[("kind", "account")], d.accounts),
            (&[("kind", "session")], d.sessions),
            (&[("kind", "endpoint")], d.endpoints),
            (&[("kind", "source_detail")], d.detailed),
            (&[("kind", "source_identities")], d.identified),
            (&[("kind", "flow")], a.flows_active),
        ],
    )?;
    family(
        enc,
        "apisensor_tracked_evictions",
        "Entities evicted to make room in a full table, by kind",
        C,
        &[
            (&[("kind", "source")], d.evicted_sources),
            (&[("kind", "prefix")], d.evicted_prefixes),
            (&[("kind", "account")], d.evicted_accounts),
            (&[("kind", "session")], d.evicted_sessions),
            (&[("kind", "endpoint")], d.evicted_endpoints),
            (&[("kind", "source_detail")], d.evicted_detailed),
            (&[("kind", "source_identities")], d.evicted_identified),
            (&[("kind", "baseline")], d.evicted_baselines),
            (&[("kind", "flow")], a.flows_evicted),
        ],
    )?;
    family(
        enc,
        "apisensor_upstream_hooks",
        "Upstream enforcement hooks: started, failed (skipped while too many ran, or not started), killed at their timeout",
        C,
        &[
            (&[("result", "started")], o.hooks[0]),
            (&[("result", "failed")], o.hooks[1]),
            (&[("result", "killed")], o.hooks[2]),
        ],
    )
}

/// The names of the actions, as decisions write them.
fn action_name(a: Action) -> &'static str {
    match a {
        Action::Observe => "observe",
        Action::Alert => "alert",
        Action::Block => "block",
    }
}

/// The sample names a scrape of these families may show (`_total`, `_bucket`, `_sum`,
/// `_count` added), for checking queries against them.
pub fn sample_names() -> Vec<String> {
    let mut names = Vec::new();
    for (name, kind) in FAMILIES {
        match kind {
            MetricType::Counter => names.push(format!("{name}_total")),
            MetricType::Histogram => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.push(format!("{name}{suffix}"));
                }
            }
            _ => names.push((*name).to_owned()),
        }
    }
    names
}
