//! The flow table: it routes each [`Segment`] to its TCP flow, reassembles both directions with
//! [`crate::reassembly::Stream`]s, feeds them to one [`HttpConn`] per flow, and emits the
//! transactions.
//!
//! # Flows
//!
//! A flow is keyed by (client address and port, server address and port). The server is the
//! side whose port is monitored: a segment to a monitored port goes [`Dir::ToServer`], one from a
//! monitored port goes [`Dir::ToClient`], anything else is counted and ignored. When both ports
//! are monitored, the destination is the server unless a flow is already known the other way
//! round. IPv4 and IPv6 share one key format (IPv4 is stored IPv4-mapped).
//!
//! A flow opens on a SYN or on the first segment with payload (mid-stream pickup); a segment
//! without payload or SYN does not open one. It closes when:
//! - both sides sent a FIN and each stream has delivered every byte before its FIN;
//! - either side sent a RST whose sequence number is within the window of its stream (a RST far
//!   outside it is counted and ignored, so a blind RST cannot make the sensor drop a flow);
//! - a SYN from the client starts a different connection on the same ports (port reuse);
//! - it was idle longer than [`AnalyzerConfig::idle_timeout_ms`] at an [`Analyzer::on_tick`];
//! - the table is full ([`AnalyzerConfig::max_flows`]) and it is the least recently used;
//! - the input ends ([`Analyzer::finish`]).
//!
//! On every close, both streams are flushed (holes delivered as [`Chunk::Lost`]) and
//! [`HttpConn::on_close`] emits the requests still waiting for a response; closes are counted.
//!
//! # Bounds
//!
//! Memory is bounded by [`AnalyzerConfig::max_flows`] flows, each stream's own buffer cap, and
//! [`AnalyzerConfig::max_buffered_total`] over all streams: a segment that takes the total beyond
//! it makes its own stream deliver what it buffered, holes as lost, at once (counted as
//! `buffer_pressure`).
//!
//! # Cost
//!
//! The table is a hash map from key to slot plus a slab of flows linked in least recently used
//! order (`crate::lru`), so a segment costs one hash lookup (none when it belongs to the same flow as
//! the segment before it, as a response and its ACK do) and O(1) list updates, and eviction and
//! idle expiry take the oldest flow in O(1). Idle expiry walks from the least recently used end
//! and stops at the first flow that is not idle: with timestamps that go backwards (merged
//! captures) a flow may expire one tick late, never early.

#[cfg(test)]
mod tests;

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use sensor_common::tcp_flags;

use crate::http::conn::{RequestEnd, Watch};
use crate::http::{
    Catalogue, ConnMeta, HttpConfig, HttpConn, Reuse, Transaction, TransportFingerprint,
};
use crate::lru::LruTable;
use crate::reassembly::{MAX_WINDOW, ReassemblyLimits, Stream, StreamStats};
use crate::segment::{Chunk, Dir, Segment};

/// Settings of the flow table, the `[analyzer]` section of the configuration.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyzerConfig {
    /// Server ports whose traffic is analysed: `[sensor].ports` of the configuration (set by
    /// `Config::analyzer_config`, never read from the `[analyzer]` table).
    #[serde(skip)]
    pub monitored_ports: Vec<u16>,
    /// Most flows tracked at once; the least recently used flow is evicted beyond it.
    pub max_flows: usize,
    /// A flow without segments for this long is closed at the next [`Analyzer::on_tick`].
    pub idle_timeout_ms: u64,
    /// Bounds of each direction's reassembly.
    pub reassembly: ReassemblyLimits,
    /// Cap on out-of-order bytes buffered by all flows together (each stream's own cap is
    /// [`ReassemblyLimits::max_buffered_bytes`]). A segment that takes the total beyond it makes
    /// its stream give up on its holes at once.
    pub max_buffered_total: usize,
    /// HTTP parsing and identity extraction.
    pub http: HttpConfig,
}

impl Default for AnalyzerConfig {
    fn default() -> Self {
        Self {
            monitored_ports: vec![80, 8080],
            max_flows: 100_000,
            idle_timeout_ms: 60_000,
            reassembly: ReassemblyLimits::default(),
            max_buffered_total: 64 << 20,
            http: HttpConfig::default(),
        }
    }
}

/// What the analyzer has seen so far. Reassembly totals include open flows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AnalyzerCounters {
    /// Segments given to [`Analyzer::on_segment`].
    pub segments: u64,
    /// Segments with no monitored port, ignored.
    pub unmonitored: u64,
    /// Segments of no known flow that could not open one (no payload, no SYN), ignored.
    pub orphans: u64,
    /// RSTs outside the window of their stream, ignored.
    pub rst_ignored: u64,
    /// Transactions emitted.
    pub transactions: u64,
    /// Flows opened.
    pub flows_opened: u64,
    /// Flows closed by FINs from both sides.
    pub flows_closed: u64,
    /// Flows closed by a RST.
    pub flows_reset: u64,
    /// Flows closed because a SYN started a new connection on the same ports.
    pub flows_reused: u64,
    /// Flows closed after being idle longer than the timeout.
    pub flows_expired: u64,
    /// Flows evicted, least recently used first, because the table was full.
    pub flows_evicted: u64,
    /// Flows closed by [`Analyzer::finish`].
    pub flows_finished: u64,
    /// Flows open now.
    pub flows_active: u64,
    /// Reassembly: holes given up on (loss, buffer cap, window jump).
    pub gaps: u64,
    /// Reassembly: bytes never seen, delivered as lost.
    pub lost_bytes: u64,
    /// Reassembly: segments captured only in part.
    pub truncated_segments: u64,
    /// Reassembly: bytes seen on the wire but not captured.
    pub uncaptured_bytes: u64,
    /// Reassembly: segments that carried nothing new.
    pub duplicates: u64,
    /// Reassembly: segments that partly overlapped earlier data.
    pub overlaps: u64,
    /// Reassembly: segments buffered ahead of a hole.
    pub out_of_order: u64,
    /// Reassembly: holes given up on because a stream's buffer was full.
    pub buffer_overflows: u64,
    /// Reassembly: segments further ahead than the window.
    pub window_jumps: u64,
    /// Reassembly: streams made to give up on their holes because all flows together buffered
    /// more than [`AnalyzerConfig::max_buffered_total`].
    pub buffer_pressure: u64,
    /// Reassembly: out-of-order bytes buffered now, by all flows (bookkeeping included).
    pub buffered_bytes: u64,
}

impl AnalyzerCounters {
    /// Adds one stream's event counters to the reassembly totals (byte totals are counted from
    /// the delivered chunks instead, see [`count_chunk`]).
    fn add_stream(&mut self, s: &StreamStats) {
        self.gaps += u64::from(s.gaps);
        self.truncated_segments += u64::from(s.truncated_segments);
        self.duplicates += u64::from(s.duplicates);
        self.overlaps += u64::from(s.overlaps);
        self.out_of_order += u64::from(s.out_of_order);
        self.buffer_overflows += u64::from(s.buffer_overflows);
        self.window_jumps += u64::from(s.window_jumps);
    }
}

/// Why a flow is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CloseReason {
    /// FINs from both sides, all data delivered.
    Fin,
    /// A RST.
    Reset,
    /// A SYN of a new connection on the same ports.
    Reused,
    /// Idle timeout.
    Expired,
    /// The table was full.
    Evicted,
    /// End of input.
    Finished,
}

/// Flow key: client address, server address (IPv4-mapped), client port, server port, as 36
/// bytes in machine words, so that comparing and hashing are a few word operations (no call to
/// `memcmp`, no byte loop). Its alignment pads it to 40 bytes, which leaves a flow table slot as
/// large as with a 36-byte array (the slot is padded to eight bytes anyway).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct FlowKey {
    /// Client and server addresses, 16 bytes each, as native-endian words.
    addrs: [u64; 4],
    /// Client port in the high half, server port in the low half.
    ports: u32,
}

impl Hash for FlowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for word in self.addrs {
            state.write_u64(word);
        }
        state.write_u32(self.ports);
    }
}

impl FlowKey {
    /// The key of a flow between `client` and `server`.
    fn new(client: SocketAddr, server: SocketAddr) -> Self {
        let words = |ip: IpAddr| {
            let b = mapped(ip);
            let (hi, lo) = b.split_at(8);
            [
                u64::from_ne_bytes(hi.try_into().unwrap_or_default()),
                u64::from_ne_bytes(lo.try_into().unwrap_or_default()),
            ]
        };
        let [c0, c1] = words(client.ip());
        let [s0, s1] = words(server.ip());
        Self {
            addrs: [c0, c1, s0, s1],
            ports: u32::from(client.port()) << 16 | u32::from(server.port()),
        }
    }
}

/// An address as 16 bytes, IPv4 mapped into `::ffff:0:0/96`.
fn mapped(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Index of a direction in per-flow arrays.
const fn side(dir: Dir) -> usize {
    match dir {
        Dir::ToServer => 0,
        Dir::ToClient => 1,
    }
}

/// Both directions, in [`side`] order.
const DIRS: [Dir; 2] = [Dir::ToServer, Dir::ToClient];

/// One tracked TCP connection.
struct Flow {
    /// Timestamp of the latest segment, ns.
    last_seen: u64,
    /// Per direction reassembly (with its FIN), in [`side`] order.
    streams: [Stream; 2],
    /// The HTTP connection fed by both streams.
    http: HttpConn,
    /// The transport fingerprint of the client's SYN, given to every transaction of the flow.
    transport: Option<TransportFingerprint>,
}

impl Flow {
    /// Heap bytes held by the flow's streams and HTTP state. [`HttpConn::memory`] counts the
    /// connection's inline size too, which the slab already holds.
    fn heap(&self) -> usize {
        self.streams.iter().map(Stream::memory).sum::<usize>()
            + self.http.memory().saturating_sub(size_of::<HttpConn>())
    }
}

/// Gives the transactions from `first` on (those one flow just emitted) its transport
/// fingerprint.
fn stamp(out: &mut [Box<Transaction>], first: usize, fp: Option<TransportFingerprint>) {
    if let Some(fp) = fp {
        for tx in out.get_mut(first..).unwrap_or_default() {
            tx.transport_fingerprint = Some(fp);
        }
    }
}

/// Gives the requests one flow just reported as they ended its transport fingerprint.
fn stamp_ended(ended: Option<&mut [RequestEnd]>, fp: Option<TransportFingerprint>) {
    for r in ended.unwrap_or_default() {
        r.transport = fp;
    }
}

/// Counts the holes of a delivered chunk (exact 64-bit totals; per-stream counters are 32-bit).
fn count_chunk(c: &mut AnalyzerCounters, chunk: Chunk<'_>) {
    match chunk {
        Chunk::Data(_) => {}
        Chunk::Uncaptured(n) => c.uncaptured_bytes += u64::from(n),
        Chunk::Lost(n) => c.lost_bytes += u64::from(n),
    }
}

/// The flow table and everything it feeds.
pub struct Analyzer {
    /// Monitored server ports, one bit per port.
    ports: Box<[u64; 1024]>,
    /// Most flows at once, at least 1.
    max_flows: usize,
    /// Idle timeout, ns.
    idle_ns: u64,
    /// Stream bounds.
    limits: ReassemblyLimits,
    /// Cap on `buffered`.
    max_buffered_total: usize,
    /// Heap bytes held by the out-of-order buffers of all streams.
    buffered: usize,
    /// Shared HTTP settings.
    http: Arc<HttpConfig>,
    /// The flows.
    flows: LruTable<FlowKey, Flow>,
    /// Counters; reassembly event totals of closed flows only (open ones are added on read).
    counters: AnalyzerCounters,
    /// API inventory of every emitted transaction.
    catalogue: Catalogue,
    /// Whether emitted transactions are recorded in `catalogue`.
    cataloguing: bool,
    /// Transactions handed back by the caller ([`Analyzer::recycle`]), and idle connection
    /// buffers, reused for the next transactions.
    reuse: Reuse,
}

impl Analyzer {
    /// An analyzer with no flows.
    pub fn new(cfg: AnalyzerConfig) -> Self {
        let mut ports = Box::new([0u64; 1024]);
        for &p in &cfg.monitored_ports {
            if let Some(word) = ports.get_mut(usize::from(p / 64)) {
                *word |= 1 << (p % 64);
            }
        }
        Self {
            ports,
            max_flows: cfg.max_flows.clamp(1, u32::MAX as usize / 2),
            idle_ns: cfg.idle_timeout_ms.saturating_mul(1_000_000),
            limits: cfg.reassembly,
            max_buffered_total: cfg.max_buffered_total,
            buffered: 0,
            http: Arc::new(cfg.http),
            flows: LruTable::new(),
            counters: AnalyzerCounters::default(),
            catalogue: Catalogue::new(),
            cataloguing: true,
            reuse: Reuse::default(),
        }
    }

    /// Feeds one segment. Direction: destination port monitored => [`Dir::ToServer`], source
    /// port monitored => [`Dir::ToClient`], else counted and ignored (both monitored: the
    /// destination, unless the flow is known the other way round). Handles SYN (ISN), FIN/RST
    /// (close after both sides or RST), LRU eviction at `max_flows` (`on_close` called).
    /// Completed transactions are pushed to `out` and recorded in the catalogue.
    pub fn on_segment(&mut self, seg: &Segment<'_>, out: &mut Vec<Box<Transaction>>) {
        let first_new = out.len();
        self.segment(seg, out, None);
        self.record(out, first_new);
    }

    /// [`Analyzer::on_segment`] that also reports each request of a client `watch` names as
    /// the request ends (before its response, usually), with its fingerprints: what blocking a
    /// connection as its request arrives needs.
    pub fn on_segment_watching(
        &mut self,
        seg: &Segment<'_>,
        out: &mut Vec<Box<Transaction>>,
        watch: Watch<'_>,
    ) {
        let first_new = out.len();
        self.segment(seg, out, Some(watch));
        self.record(out, first_new);
    }

    /// Expire flows idle longer than the timeout (time passed in, ns).
    pub fn on_tick(&mut self, now_ns: u64, out: &mut Vec<Box<Transaction>>) {
        let first_new = out.len();
        while let Some(slot) = self.flows.oldest() {
            let idle = self
                .flows
                .get(slot)
                .is_some_and(|f| now_ns.saturating_sub(f.last_seen) > self.idle_ns);
            if !idle {
                break;
            }
            self.close(slot, now_ns, CloseReason::Expired, out);
        }
        self.record(out, first_new);
    }

    /// End of input: close every flow.
    pub fn finish(&mut self, out: &mut Vec<Box<Transaction>>) {
        let first_new = out.len();
        while let Some(slot) = self.flows.oldest() {
            let ts = self.flows.get(slot).map_or(0, |f| f.last_seen);
            self.close(slot, ts, CloseReason::Finished, out);
        }
        self.record(out, first_new);
    }

    /// Counters so far, reassembly totals including open flows.
    pub fn counters(&self) -> AnalyzerCounters {
        let mut c = self.counters;
        for flow in self.flows.values() {
            for stream in &flow.streams {
                c.add_stream(&stream.stats());
            }
        }
        c.flows_active = self.flows.len() as u64;
        c.buffered_bytes = self.buffered as u64;
        c
    }

    /// The API inventory, fed from every emitted transaction (empty after
    /// `set_cataloguing(false)`).
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// Takes back a transaction the caller is done with: the next transactions are written
    /// into its buffers instead of new ones (optional; a transaction not handed back is simply
    /// dropped).
    pub fn recycle(&mut self, tx: Box<Transaction>) {
        self.reuse.recycle(tx);
    }

    /// [`Analyzer::recycle`] on every transaction of `spent`, which is left empty.
    pub fn recycle_all(&mut self, spent: &mut Vec<Box<Transaction>>) {
        self.reuse.recycle_all(spent);
    }

    /// Whether emitted transactions are recorded in the API inventory (on by default). A
    /// caller that never reads the inventory turns it off: recording costs a hash and a
    /// comparison of method, host and route per transaction.
    pub fn set_cataloguing(&mut self, on: bool) {
        self.cataloguing = on;
    }

    /// Takes new monitored ports and HTTP settings: new connections are parsed with them, open
    /// ones keep the settings they started with; flows on ports no longer monitored are closed
    /// when they go idle. The flow table's bounds keep their values until the next start.
    pub fn reconfigure(&mut self, cfg: &AnalyzerConfig) {
        self.ports.fill(0);
        for &p in &cfg.monitored_ports {
            if let Some(word) = self.ports.get_mut(usize::from(p / 64)) {
                *word |= 1 << (p % 64);
            }
        }
        self.http = Arc::new(cfg.http.clone());
    }

    /// Whether `port` is a monitored server port.
    pub fn is_monitored(&self, port: u16) -> bool {
        self.ports
            .get(usize::from(port / 64))
            .is_some_and(|w| w & (1 << (port % 64)) != 0)
    }

    /// Flows open now.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// Bytes held by the flow table: the table itself, every flow's buffers and HTTP state, the
    /// port set and the spent records kept for reuse. The catalogue is not included.
    pub fn memory(&self) -> usize {
        size_of::<Self>()
            + size_of::<[u64; 1024]>()
            + self.reuse.memory()
            + self.flows.memory()
            + self.flows.values().map(Flow::heap).sum::<usize>()
    }

    /// Whether `port` is monitored.
    fn monitored(&self, port: u16) -> bool {
        self.ports
            .get(usize::from(port / 64))
            .is_some_and(|w| w & (1 << (port % 64)) != 0)
    }

    /// [`Analyzer::on_segment`] without the bookkeeping of emitted transactions.
    fn segment(
        &mut self,
        seg: &Segment<'_>,
        out: &mut Vec<Box<Transaction>>,
        watch: Option<Watch<'_>>,
    ) {
        self.counters.segments += 1;
        let Some((dir, client, server)) = self.direction(seg) else {
            self.counters.unmonitored += 1;
            return;
        };
        let has = |bit: u8| seg.flags & bit != 0;
        let (syn, fin, rst) = (
            has(tcp_flags::SYN),
            has(tcp_flags::FIN),
            has(tcp_flags::RST),
        );
        let key = FlowKey::new(client, server);
        let slot = match self.flows.find_remembered(&key) {
            Some(slot) if syn && dir == Dir::ToServer && self.is_new_connection(slot, seg.seq) => {
                self.close(slot, seg.ts_ns, CloseReason::Reused, out);
                self.open(key, client, server, seg.ts_ns, out)
            }
            Some(slot) => Some(slot),
            None if rst || (seg.payload_len == 0 && !syn) => {
                self.counters.orphans += 1;
                return;
            }
            None => self.open(key, client, server, seg.ts_ns, out),
        };
        let Some(slot) = slot else {
            return;
        };
        self.flows.touch(slot);
        let Some(flow) = self.flows.get_mut(slot) else {
            return;
        };
        flow.last_seen = flow.last_seen.max(seg.ts_ns);
        let s = side(dir);
        if syn
            && dir == Dir::ToServer
            && let Some(fp) = seg.syn.as_ref().and_then(TransportFingerprint::of)
        {
            flow.transport = Some(fp);
        }
        let (first_new, transport) = (out.len(), flow.transport);
        let Flow { streams, http, .. } = flow;
        let stream = &mut streams[s];
        if rst {
            let in_window = stream.next_seq().is_none_or(|next| {
                seg.seq.wrapping_sub(next).cast_signed().unsigned_abs()
                    <= self.limits.window.min(MAX_WINDOW)
            });
            if in_window {
                self.close(slot, seg.ts_ns, CloseReason::Reset, out);
            } else {
                self.counters.rst_ignored += 1;
            }
            return;
        }
        let mut data_seq = seg.seq;
        if syn {
            stream.set_isn(seg.seq);
            data_seq = seg.seq.wrapping_add(1);
        }
        if seg.payload_len > 0 {
            let (ts, counters, reuse) = (seg.ts_ns, &mut self.counters, &mut self.reuse);
            let mut watch = watch.filter(|_| dir == Dir::ToServer);
            let first_ended = watch.as_ref().map_or(0, |w| w.ended.len());
            let mut sink = |chunk: Chunk<'_>| {
                count_chunk(counters, chunk);
                match watch.as_mut() {
                    Some(w) => {
                        let w = Watch {
                            clients: w.clients,
                            ended: &mut *w.ended,
                        };
                        http.on_chunk_watching(dir, ts, chunk, out, reuse, w);
                    }
                    None => http.on_chunk_reusing(dir, ts, chunk, out, reuse),
                }
            };
            let before = stream.memory();
            stream.push(data_seq, seg.payload_len, seg.payload, &mut sink);
            let mut pressure = false;
            if stream.memory() > before
                && self.buffered.saturating_sub(before) + stream.memory() > self.max_buffered_total
            {
                stream.flush(&mut sink);
                pressure = true;
            }
            self.buffered = self.buffered.saturating_sub(before) + stream.memory();
            self.counters.buffer_pressure += u64::from(pressure);
            if let Some(w) = watch {
                stamp_ended(w.ended.get_mut(first_ended..), transport);
            }
        }
        if fin {
            stream.set_fin(data_seq.wrapping_add(seg.payload_len));
        }
        stamp(out, first_new, transport);
        if streams.iter().all(Stream::is_complete) {
            self.close(slot, seg.ts_ns, CloseReason::Fin, out);
        }
    }

    /// A segment's direction, client and server, by its monitored port (`None`: neither is).
    fn direction(&self, seg: &Segment<'_>) -> Option<(Dir, SocketAddr, SocketAddr)> {
        let to_client = match (
            self.monitored(seg.dst.port()),
            self.monitored(seg.src.port()),
        ) {
            (true, false) => false,
            (false, true) => true,
            // Both ports monitored: the destination is the server, unless the flow is known
            // the other way round (a response to a request seen before).
            (true, true) => self.flows.find(&FlowKey::new(seg.dst, seg.src)).is_some(),
            (false, false) => return None,
        };
        Some(if to_client {
            (Dir::ToClient, seg.dst, seg.src)
        } else {
            (Dir::ToServer, seg.src, seg.dst)
        })
    }

    /// Whether a client SYN with sequence number `isn` on an existing flow starts another
    /// connection rather than being a late retransmission of the flow's own SYN. A retransmitted
    /// SYN lies at or shortly behind the client stream; a new connection's ISN lies ahead of it
    /// (RFC 6528 ISNs grow with time for a given 4-tuple), or anywhere once the client sent FIN.
    fn is_new_connection(&self, slot: u32, isn: u32) -> bool {
        let window = self.limits.window.min(MAX_WINDOW);
        self.flows.get(slot).is_some_and(|f| {
            f.streams[0].next_seq().is_some_and(|next| {
                let d = isn.wrapping_add(1).wrapping_sub(next).cast_signed();
                d > 0 || d.unsigned_abs() > window || (f.streams[0].has_fin() && d != 0)
            })
        })
    }

    /// Opens a flow, evicting the least recently used one if the table is full.
    fn open(
        &mut self,
        key: FlowKey,
        client: SocketAddr,
        server: SocketAddr,
        ts_ns: u64,
        out: &mut Vec<Box<Transaction>>,
    ) -> Option<u32> {
        while self.flows.len() >= self.max_flows {
            let oldest = self.flows.oldest()?;
            self.close(oldest, ts_ns, CloseReason::Evicted, out);
        }
        let flow = Flow {
            last_seen: ts_ns,
            streams: [Stream::new(self.limits), Stream::new(self.limits)],
            http: HttpConn::new(Arc::clone(&self.http), ConnMeta { client, server }),
            transport: None,
        };
        let slot = self.flows.insert(key, flow)?;
        self.counters.flows_opened += 1;
        Some(slot)
    }

    /// Closes the flow in `slot`: flushes both streams into its HTTP connection, closes that,
    /// and counts why.
    fn close(
        &mut self,
        slot: u32,
        ts_ns: u64,
        reason: CloseReason,
        out: &mut Vec<Box<Transaction>>,
    ) {
        let Some((_, mut flow)) = self.flows.remove(slot) else {
            return;
        };
        let first_new = out.len();
        let Flow {
            streams,
            http,
            transport,
            ..
        } = &mut flow;
        let held = streams.iter().map(Stream::memory).sum::<usize>();
        self.buffered = self.buffered.saturating_sub(held);
        let (counters, reuse) = (&mut self.counters, &mut self.reuse);
        for (stream, dir) in streams.iter_mut().zip(DIRS) {
            stream.flush(&mut |chunk| {
                count_chunk(counters, chunk);
                http.on_chunk_reusing(dir, ts_ns, chunk, out, reuse);
            });
            counters.add_stream(&stream.stats());
        }
        http.on_close_reusing(ts_ns, out, reuse);
        stamp(out, first_new, *transport);
        let c = &mut self.counters;
        *match reason {
            CloseReason::Fin => &mut c.flows_closed,
            CloseReason::Reset => &mut c.flows_reset,
            CloseReason::Reused => &mut c.flows_reused,
            CloseReason::Expired => &mut c.flows_expired,
            CloseReason::Evicted => &mut c.flows_evicted,
            CloseReason::Finished => &mut c.flows_finished,
        } += 1;
    }

    /// Records the transactions emitted since `first_new` in the catalogue and the counters.
    fn record(&mut self, out: &[Box<Transaction>], first_new: usize) {
        let new = out.get(first_new..).unwrap_or_default();
        if self.cataloguing {
            for tx in new {
                self.catalogue.record(tx);
            }
        }
        self.counters.transactions += new.len() as u64;
    }
}
