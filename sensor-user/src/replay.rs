//! Offline input: reads pcap and pcapng capture files and feeds their TCP segments through the
//! same pure pipeline as live kernel events.
//!
//! A capture is read record by record with `pcap-file` (pcap in both byte orders with micro- or
//! nanosecond timestamps; pcapng with per-interface link types, `if_tsresol` and `if_tsoffset`).
//! Each record is decoded with `etherparse` from its link layer (Ethernet with 802.1Q/QinQ tags,
//! Linux cooked capture v1 and v2, raw IPv4/IPv6, BSD loopback) down to TCP and becomes one
//! [`Segment`]: its payload is the captured bytes, its `payload_len` the true length from the IP
//! header, so a capture with a short snap length gives the analyzer known holes rather than
//! losses. Packets that are not TCP or cannot be decoded are counted in [`ReplaySummary`], never
//! errors. A file that is not a capture, or is truncated or corrupt, ends the replay with a
//! [`ReplayError`] naming the file and the packet index, after everything before the bad record
//! went through the analyzer and was flushed.
//!
//! The analyzer's idle expiry runs on capture time: [`ReplayEvent::Tick`] fires whenever the
//! capture clock has advanced by [`TICK_INTERVAL_NS`]. The same file always yields the same
//! events in the same order.

use std::fs::File;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, LenSource, TransportSlice, ip_number};
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};

use sensor_common::tcp_flags;

use crate::analyzer::Analyzer;
use crate::http::Transaction;
use crate::http::transport::read_syn;
use crate::segment::Segment;

/// Capture time between two [`ReplayEvent::Tick`]s: one second.
pub const TICK_INTERVAL_NS: u64 = 1_000_000_000;

/// First four bytes of a pcapng file (the section header block type).
const PCAPNG_MAGIC: u32 = 0x0A0D_0D0A;
/// Classic pcap magic numbers as read big-endian: microsecond and nanosecond variants, in both
/// byte orders.
const PCAP_MAGICS: [u32; 4] = [0xA1B2_C3D4, 0xD4C3_B2A1, 0xA1B2_3C4D, 0x4D3C_B2A1];

/// Why a replay stopped early. Everything read before the failure was processed. The
/// underlying I/O or format error is the [`source`](std::error::Error::source), not repeated in
/// the message.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be opened.
    #[error("cannot open {}", .path.display())]
    Open {
        /// The capture file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The input is shorter than any capture file header.
    #[error("{} is empty or too short to be a pcap or pcapng file", .path.display())]
    Empty {
        /// The capture file.
        path: PathBuf,
    },
    /// The first four bytes are neither a pcap nor a pcapng magic number.
    #[error("{} is not a pcap or pcapng file (first bytes {magic:#010x})", .path.display())]
    NotACapture {
        /// The capture file.
        path: PathBuf,
        /// The first four bytes, big-endian.
        magic: u32,
    },
    /// The file header (pcap global header or first pcapng section header) is invalid.
    #[error("{}: invalid capture file header", .path.display())]
    Header {
        /// The capture file.
        path: PathBuf,
        /// What the capture reader found wrong.
        source: PcapError,
    },
    /// The file ends in the middle of a record.
    #[error("{}: truncated at packet index {packet_index}", .path.display())]
    Truncated {
        /// The capture file.
        path: PathBuf,
        /// Zero-based index of the packet record that could not be read completely.
        packet_index: u64,
    },
    /// A record is malformed.
    #[error("{}: corrupt record at packet index {packet_index}", .path.display())]
    Corrupt {
        /// The capture file.
        path: PathBuf,
        /// Zero-based index of the packet record that could not be read.
        packet_index: u64,
        /// What the capture reader found wrong.
        source: PcapError,
    },
    /// Reading the file failed.
    #[error("{}: read error at packet index {packet_index}", .path.display())]
    Read {
        /// The capture file.
        path: PathBuf,
        /// Zero-based index of the packet record being read.
        packet_index: u64,
        /// What the OS said.
        source: io::Error,
    },
}

/// The container format of a capture file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureFormat {
    /// Nothing was recognised (yet).
    #[default]
    Unknown,
    /// Classic libpcap format.
    Pcap,
    /// pcapng.
    Pcapng,
}

/// What a replay read, as counts. Deterministic for a given file.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplaySummary {
    /// Container format.
    pub format: CaptureFormat,
    /// Packet records read (pcap records; pcapng enhanced, simple and obsolete packet blocks).
    pub packets: u64,
    /// TCP segments handed to the analyzer.
    pub tcp_segments: u64,
    /// Of those, segments whose payload was not captured completely (short snap length).
    pub partial_segments: u64,
    /// Well-formed packets that are not TCP (UDP, ICMP, ARP, other ether types).
    pub not_tcp: u64,
    /// IP fragments (not reassembled, so not analysed).
    pub fragments: u64,
    /// Packets whose headers could not be decoded down to TCP.
    pub malformed: u64,
    /// Packets of a link type the replay does not decode.
    pub unsupported_link: u64,
    /// Transactions the analyzer emitted.
    pub transactions: u64,
    /// Capture time of the first packet, Unix nanoseconds.
    pub first_ts_ns: Option<u64>,
    /// Capture time of the last packet, Unix nanoseconds.
    pub last_ts_ns: Option<u64>,
}

/// What the capture reader hands to its consumer, in capture order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayEvent<'a> {
    /// Capture time advanced by at least [`TICK_INTERVAL_NS`]: expire idle state up to this
    /// time (Unix nanoseconds). Sent before the segment that advanced the clock.
    Tick(u64),
    /// One TCP segment.
    Segment(Segment<'a>),
}

/// Replays a capture file through `analyzer`, calling `on_tx` for every transaction in emission
/// order, and finishes the analyzer at the end (also after an error, so pending transactions
/// are flushed).
pub fn replay_file(
    path: &Path,
    analyzer: &mut Analyzer,
    on_tx: &mut dyn FnMut(&Transaction),
) -> Result<ReplaySummary, ReplayError> {
    let (summary, result) = replay_file_partial(path, analyzer, on_tx);
    result.map(|()| summary)
}

/// Like [`replay_file`] but returns the summary of what was read even when the replay fails,
/// for callers that report both.
pub fn replay_file_partial(
    path: &Path,
    analyzer: &mut Analyzer,
    on_tx: &mut dyn FnMut(&Transaction),
) -> (ReplaySummary, Result<(), ReplayError>) {
    match File::open(path) {
        Ok(file) => replay_reader_partial(file, path, analyzer, on_tx),
        Err(source) => (
            ReplaySummary::default(),
            Err(ReplayError::Open {
                path: path.to_owned(),
                source,
            }),
        ),
    }
}

/// Replays a capture held by any reader (a file, a byte slice); `name` is used in errors.
pub fn replay_reader<R: Read>(
    reader: R,
    name: &Path,
    analyzer: &mut Analyzer,
    on_tx: &mut dyn FnMut(&Transaction),
) -> Result<ReplaySummary, ReplayError> {
    let (summary, result) = replay_reader_partial(reader, name, analyzer, on_tx);
    result.map(|()| summary)
}

/// Like [`replay_reader`] but returns the summary also on failure.
pub fn replay_reader_partial<R: Read>(
    reader: R,
    name: &Path,
    analyzer: &mut Analyzer,
    on_tx: &mut dyn FnMut(&Transaction),
) -> (ReplaySummary, Result<(), ReplayError>) {
    let mut out = Vec::new();
    let mut transactions = 0_u64;
    let mut emit = |analyzer: &mut Analyzer,
                    out: &mut Vec<Box<Transaction>>,
                    on_tx: &mut dyn FnMut(&Transaction)| {
        // Most packets complete no transaction.
        if out.is_empty() {
            return;
        }
        // Handed over by reference, then given back to the analyzer, which writes the next
        // transactions into their buffers.
        for tx in out.iter() {
            transactions += 1;
            on_tx(tx);
        }
        analyzer.recycle_all(out);
    };
    let (mut summary, result) = read_segments_partial(reader, name, &mut |event| {
        match event {
            ReplayEvent::Tick(now) => analyzer.on_tick(now, &mut out),
            ReplayEvent::Segment(seg) => analyzer.on_segment(&seg, &mut out),
        }
        emit(analyzer, &mut out, on_tx);
    });
    analyzer.finish(&mut out);
    emit(analyzer, &mut out, on_tx);
    summary.transactions = transactions;
    (summary, result)
}

/// Reads a capture and hands every TCP segment (and the capture clock's ticks) to `sink`,
/// without an analyzer: the decoding half of [`replay_reader`].
pub fn read_segments<R: Read, S: FnMut(ReplayEvent<'_>) + ?Sized>(
    reader: R,
    name: &Path,
    sink: &mut S,
) -> Result<ReplaySummary, ReplayError> {
    let (summary, result) = read_segments_partial(reader, name, sink);
    result.map(|()| summary)
}

/// Like [`read_segments`] but returns the summary also on failure.
pub fn read_segments_partial<R: Read, S: FnMut(ReplayEvent<'_>) + ?Sized>(
    mut reader: R,
    name: &Path,
    sink: &mut S,
) -> (ReplaySummary, Result<(), ReplayError>) {
    let mut st = ReadState {
        path: name,
        summary: ReplaySummary::default(),
        next_tick_ns: None,
    };
    let mut magic = [0_u8; 4];
    let result = match read_prefix(&mut reader, &mut magic) {
        Err(source) => Err(ReplayError::Read {
            path: name.to_owned(),
            packet_index: 0,
            source,
        }),
        Ok(n) if n < magic.len() => Err(ReplayError::Empty {
            path: name.to_owned(),
        }),
        Ok(_) => {
            let whole = io::Cursor::new(magic).chain(reader);
            let m = u32::from_be_bytes(magic);
            if m == PCAPNG_MAGIC {
                st.summary.format = CaptureFormat::Pcapng;
                read_pcapng(whole, &mut st, sink)
            } else if PCAP_MAGICS.contains(&m) {
                st.summary.format = CaptureFormat::Pcap;
                read_pcap(whole, &mut st, sink)
            } else {
                Err(ReplayError::NotACapture {
                    path: name.to_owned(),
                    magic: m,
                })
            }
        }
    };
    (st.summary, result)
}

/// Fills `buf` as far as the reader allows; returns the number of bytes read.
fn read_prefix<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let Some(rest) = buf.get_mut(filled..) else {
            break;
        };
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// State shared by the pcap and pcapng loops.
struct ReadState<'p> {
    /// Name for errors.
    path: &'p Path,
    /// Counts so far.
    summary: ReplaySummary,
    /// Capture time at which the next tick is due; `None` before the first packet.
    next_tick_ns: Option<u64>,
}

impl ReadState<'_> {
    /// Maps a reader error at the current packet index to a [`ReplayError`].
    fn record_error(&self, e: PcapError) -> ReplayError {
        let path = self.path.to_owned();
        let packet_index = self.summary.packets;
        match e {
            PcapError::IoError(source) if source.kind() == io::ErrorKind::UnexpectedEof => {
                ReplayError::Truncated { path, packet_index }
            }
            PcapError::IoError(source) => ReplayError::Read {
                path,
                packet_index,
                source,
            },
            PcapError::IncompleteBuffer => ReplayError::Truncated { path, packet_index },
            source => ReplayError::Corrupt {
                path,
                packet_index,
                source,
            },
        }
    }

    /// Maps a file-header error to a [`ReplayError`].
    fn header_error(&self, e: PcapError) -> ReplayError {
        let path = self.path.to_owned();
        match e {
            PcapError::IoError(source) if source.kind() == io::ErrorKind::UnexpectedEof => {
                ReplayError::Empty { path }
            }
            PcapError::IoError(source) => ReplayError::Read {
                path,
                packet_index: 0,
                source,
            },
            PcapError::IncompleteBuffer => ReplayError::Empty { path },
            source => ReplayError::Header { path, source },
        }
    }

    /// Accounts for one packet record and hands its segment, if any, to `sink`.
    fn packet<S: FnMut(ReplayEvent<'_>) + ?Sized>(
        &mut self,
        link: Option<Link>,
        ts_ns: u64,
        data: &[u8],
        orig_len: u32,
        sink: &mut S,
    ) {
        let s = &mut self.summary;
        s.packets += 1;
        s.first_ts_ns.get_or_insert(ts_ns);
        s.last_ts_ns = Some(ts_ns);
        match self.next_tick_ns {
            None => self.next_tick_ns = Some(ts_ns.saturating_add(TICK_INTERVAL_NS)),
            Some(due) if ts_ns >= due => {
                sink(ReplayEvent::Tick(ts_ns));
                self.next_tick_ns = Some(ts_ns.saturating_add(TICK_INTERVAL_NS));
            }
            Some(_) => {}
        }
        let Some(link) = link else {
            s.unsupported_link += 1;
            return;
        };
        match decode(link, ts_ns, data, orig_len) {
            Decoded::Tcp(seg) => {
                s.tcp_segments += 1;
                if seg.payload.len() < seg.payload_len as usize {
                    s.partial_segments += 1;
                }
                sink(ReplayEvent::Segment(seg));
            }
            Decoded::NotTcp => s.not_tcp += 1,
            Decoded::Fragment => s.fragments += 1,
            Decoded::Malformed => s.malformed += 1,
        }
    }
}

/// Bytes read from a classic pcap file at a time: small enough that a chunk is still in the
/// cache when its packets are decoded (pcap-file's own reader reads 8 MB at a time, which cost
/// a cache miss per line of every packet).
const READ_CHUNK: usize = 256 * 1024;

/// Largest record a classic pcap file may hold, as with pcap-file's own reader: a record
/// that does not fit is reported as a truncated file, and memory stays bounded.
const MAX_RECORD: usize = 8_000_000;

/// Size of a classic pcap record header.
const RECORD_HEADER: usize = 16;

/// Reads a classic pcap file through pcap-file's parser, with its own cache-sized buffer.
fn read_pcap<R: Read, S: FnMut(ReplayEvent<'_>) + ?Sized>(
    reader: R,
    st: &mut ReadState<'_>,
    sink: &mut S,
) -> Result<(), ReplayError> {
    let mut input = ReadChunks::new(reader);
    input
        .fill_to(24)
        .map_err(|e| st.header_error(PcapError::IoError(e)))?;
    let (parser, consumed) = {
        let data = input.buffered();
        let (rest, parser) = PcapParser::new(data).map_err(|e| st.header_error(e))?;
        (parser, data.len() - rest.len())
    };
    input.consume(consumed);
    let header = parser.header();
    let link = Link::from_datalink(header.datalink);
    let frac_to_ns: u64 = match header.ts_resolution {
        TsResolution::MicroSecond => 1_000,
        TsResolution::NanoSecond => 1,
    };
    let big_endian = header.endianness == Endianness::Big;
    loop {
        let io_error = |st: &ReadState<'_>, e| st.record_error(PcapError::IoError(e));
        if input.fill_to(RECORD_HEADER).map_err(|e| io_error(st, e))? == 0 {
            return Ok(());
        }
        let want = record_len(input.buffered(), big_endian).unwrap_or(RECORD_HEADER);
        input
            .fill_to(want.min(MAX_RECORD))
            .map_err(|e| io_error(st, e))?;
        // Raw records, not `next_packet`: pcap-file rejects records whose original length
        // exceeds the snap length, which is exactly what a short-snaplen capture contains.
        let data = input.buffered();
        let (rest, raw) = parser
            .next_raw_packet(data)
            .map_err(|e| st.record_error(e))?;
        let consumed = data.len() - rest.len();
        let ts_ns = u64::from(raw.ts_sec)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(raw.ts_frac).saturating_mul(frac_to_ns));
        st.packet(link, ts_ns, &raw.data, raw.orig_len, sink);
        input.consume(consumed);
    }
}

/// Length of the classic pcap record at the start of `data` (header and captured bytes), if
/// its header is there.
fn record_len(data: &[u8], big_endian: bool) -> Option<usize> {
    let incl: [u8; 4] = data.get(8..12)?.try_into().ok()?;
    let incl = if big_endian {
        u32::from_be_bytes(incl)
    } else {
        u32::from_le_bytes(incl)
    };
    RECORD_HEADER.checked_add(usize::try_from(incl).ok()?)
}

/// A reader buffered in chunks of [`READ_CHUNK`] bytes, growing up to [`MAX_RECORD`] for a
/// record that does not fit.
struct ReadChunks<R> {
    /// The file.
    reader: R,
    /// Buffer; `buf[pos..len]` is read and not consumed yet.
    buf: Vec<u8>,
    /// Start of the unconsumed bytes.
    pos: usize,
    /// End of the bytes read.
    len: usize,
}

impl<R: Read> ReadChunks<R> {
    /// An empty buffer over `reader`.
    fn new(reader: R) -> Self {
        ReadChunks {
            reader,
            buf: vec![0; READ_CHUNK],
            pos: 0,
            len: 0,
        }
    }

    /// The bytes read and not consumed yet.
    fn buffered(&self) -> &[u8] {
        self.buf.get(self.pos..self.len).unwrap_or_default()
    }

    /// Marks `n` buffered bytes as consumed.
    fn consume(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.len);
    }

    /// Reads until at least `want` bytes are buffered or the file ends; returns how many are
    /// buffered. Inlined for the common case, in which they are buffered already.
    #[inline]
    fn fill_to(&mut self, want: usize) -> io::Result<usize> {
        if self.len - self.pos >= want {
            return Ok(self.len - self.pos);
        }
        self.read_to(want)
    }

    /// [`ReadChunks::fill_to`] when the buffer holds less than `want` bytes.
    #[inline(never)]
    fn read_to(&mut self, want: usize) -> io::Result<usize> {
        while self.len - self.pos < want {
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.len, 0);
                self.len -= self.pos;
                self.pos = 0;
            }
            if self.len == self.buf.len() {
                if self.buf.len() >= MAX_RECORD {
                    break;
                }
                let size = (self.buf.len() * 2).max(want).min(MAX_RECORD);
                self.buf.resize(size, 0);
            }
            let Some(free) = self.buf.get_mut(self.len..) else {
                break;
            };
            let n = match self.reader.read(free) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                break;
            }
            self.len += n;
        }
        Ok(self.len - self.pos)
    }
}

/// What the replay needs of one pcapng interface.
#[derive(Clone, Copy, Debug)]
struct Interface {
    /// Decoder for its link type, `None` if unsupported.
    link: Option<Link>,
    /// Snap length (0: unlimited).
    snaplen: u32,
    /// Timestamp units (`if_tsresol`).
    resol: u8,
    /// Seconds added to every timestamp (`if_tsoffset`).
    offset_s: i64,
}

/// Reads a pcapng file.
fn read_pcapng<R: Read, S: FnMut(ReplayEvent<'_>) + ?Sized>(
    reader: R,
    st: &mut ReadState<'_>,
    sink: &mut S,
) -> Result<(), ReplayError> {
    let mut ng = PcapNgReader::new(reader).map_err(|e| st.header_error(e))?;
    // Tracked here rather than through `PcapNgReader::interfaces`, which cannot be called while
    // a block borrowed from the reader is alive.
    let mut interfaces: Vec<Interface> = Vec::new();
    // Time of the last timestamped packet, for simple packet blocks, which carry none.
    let mut last_ts_ns = 0_u64;
    while let Some(block) = ng.next_block() {
        let block = block.map_err(|e| st.record_error(e))?;
        match block {
            Block::SectionHeader(_) => interfaces.clear(),
            Block::InterfaceDescription(idb) => {
                let mut iface = Interface {
                    link: Link::from_datalink(idb.linktype),
                    snaplen: idb.snaplen,
                    resol: 6,
                    offset_s: 0,
                };
                for opt in &idb.options {
                    match opt {
                        InterfaceDescriptionOption::IfTsResol(r) => iface.resol = *r,
                        InterfaceDescriptionOption::IfTsOffset(o) => {
                            iface.offset_s = o.cast_signed();
                        }
                        _ => {}
                    }
                }
                interfaces.push(iface);
            }
            Block::EnhancedPacket(epb) => {
                let iface = interfaces.get(epb.interface_id as usize).copied();
                // pcap-file stores the raw 64-bit tick count as nanoseconds; the interface's
                // resolution gives the real unit.
                let ticks = u64::try_from(epb.timestamp.as_nanos()).unwrap_or(u64::MAX);
                let ts_ns = iface.map_or(ticks, |i| ticks_to_ns(ticks, i.resol, i.offset_s));
                last_ts_ns = ts_ns;
                let link = iface.and_then(|i| i.link);
                st.packet(link, ts_ns, &epb.data, epb.original_len, sink);
            }
            Block::Packet(pb) => {
                let iface = interfaces.get(usize::from(pb.interface_id)).copied();
                let ts_ns = iface.map_or(pb.timestamp, |i| {
                    ticks_to_ns(pb.timestamp, i.resol, i.offset_s)
                });
                last_ts_ns = ts_ns;
                let link = iface.and_then(|i| i.link);
                let data = pb.data.get(..pb.captured_len as usize).unwrap_or(&pb.data);
                st.packet(link, ts_ns, data, pb.original_len, sink);
            }
            Block::SimplePacket(spb) => {
                // A simple packet block belongs to the first interface; its data is padded to
                // four bytes, so cut it to the original length and the snap length.
                let iface = interfaces.first().copied();
                let mut len = spb.data.len().min(spb.original_len as usize);
                if let Some(i) = iface.filter(|i| i.snaplen > 0) {
                    len = len.min(i.snaplen as usize);
                }
                let data = spb.data.get(..len).unwrap_or(&spb.data);
                let link = iface.and_then(|i| i.link);
                st.packet(link, last_ts_ns, data, spb.original_len, sink);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Converts a pcapng timestamp in interface units to Unix nanoseconds. `resol` is `if_tsresol`:
/// bit 7 clear means units of 10^-n seconds, set means 2^-n seconds.
fn ticks_to_ns(ticks: u64, resol: u8, offset_s: i64) -> u64 {
    let exp = u32::from(resol & 0x7f);
    let ns: u128 = if resol & 0x80 == 0 {
        if exp <= 9 {
            u128::from(ticks) * 10_u128.pow(9 - exp)
        } else {
            // 10^38 is the largest power of ten in a u128; anything finer is below 1 ns.
            10_u128
                .checked_pow(exp - 9)
                .map_or(0, |div| u128::from(ticks) / div)
        }
    } else {
        let scaled = u128::from(ticks) * 1_000_000_000;
        scaled.checked_shr(exp).unwrap_or(0)
    };
    let shift_ns = i128::from(offset_s) * 1_000_000_000;
    let total = i128::try_from(ns)
        .unwrap_or(i128::MAX)
        .saturating_add(shift_ns);
    u64::try_from(total.max(0)).unwrap_or(u64::MAX)
}

/// Link layers the replay decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Ethernet II, with optional 802.1Q/802.1ad tags.
    Ethernet,
    /// Linux cooked capture v1 (`LINKTYPE_LINUX_SLL`, 113).
    LinuxSll,
    /// Linux cooked capture v2 (`LINKTYPE_LINUX_SLL2`, 276).
    LinuxSll2,
    /// Raw IPv4 or IPv6 (`LINKTYPE_RAW` 101, `LINKTYPE_IPV4` 228, `LINKTYPE_IPV6` 229).
    RawIp,
    /// BSD loopback: a four-byte address family, then IP (`LINKTYPE_NULL` 0, `LINKTYPE_LOOP`
    /// 108).
    Null,
}

impl Link {
    /// The decoder for a capture link type, `None` if unsupported.
    pub fn from_datalink(dl: DataLink) -> Option<Link> {
        match dl {
            DataLink::ETHERNET => Some(Link::Ethernet),
            DataLink::LINUX_SLL => Some(Link::LinuxSll),
            DataLink::LINUX_SLL2 => Some(Link::LinuxSll2),
            DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Some(Link::RawIp),
            DataLink::NULL | DataLink::LOOP => Some(Link::Null),
            _ => None,
        }
    }
}

/// The outcome of decoding one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A TCP segment.
    Tcp(Segment<'a>),
    /// A well-formed packet that is not TCP.
    NotTcp,
    /// An IP fragment.
    Fragment,
    /// Headers that cannot be decoded down to a complete TCP header.
    Malformed,
}

/// Length of the Linux cooked capture v1 header.
const SLL_LEN: usize = 16;
/// Offset of the protocol (ether type) field in the SLL v1 header.
const SLL_PROTO_AT: usize = 14;
/// Length of the Linux cooked capture v2 header; its protocol field comes first.
const SLL2_LEN: usize = 20;
/// Length of the BSD loopback header.
const NULL_LEN: usize = 4;

/// Decodes one captured packet of link type `link` into a TCP segment. `orig_len` is the
/// packet's length on the wire (the record's original length), used only when the IP header's
/// own length field is unusable (zero, as in some offloaded captures).
#[inline]
pub fn decode(link: Link, ts_ns: u64, data: &[u8], orig_len: u32) -> Decoded<'_> {
    if link == Link::Ethernet
        && let Some(seg) = plain_ethernet_tcp(ts_ns, data)
    {
        return Decoded::Tcp(seg);
    }
    decode_sliced(link, ts_ns, data, orig_len)
}

/// The common case without etherparse (whose general slicing costs most of the decoding): an
/// Ethernet II frame holding a whole unfragmented IPv4 packet without options, or a whole IPv6
/// packet without extension headers, carrying a complete TCP header. Returns `None` for
/// anything else, which [`decode_sliced`] then decodes; for the frames it accepts the result
/// is the same (a test compares both).
#[inline]
fn plain_ethernet_tcp(ts_ns: u64, data: &[u8]) -> Option<Segment<'_>> {
    const ETH: usize = 14;
    let (src_ip, dst_ip, ip_end, tcp_at): (IpAddr, IpAddr, usize, usize) = match be16_at(data, 12)?
    {
        0x0800 => {
            let ip: &[u8; 20] = data.get(ETH..ETH + 20)?.try_into().ok()?;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            // Version 4 without options, not a fragment, TCP.
            if ip[0] != 0x45 || u16::from_be_bytes([ip[6], ip[7]]) & 0x3FFF != 0 || ip[9] != 6 {
                return None;
            }
            let src = [ip[12], ip[13], ip[14], ip[15]];
            let dst = [ip[16], ip[17], ip[18], ip[19]];
            (src.into(), dst.into(), ETH + total, ETH + 20)
        }
        0x86DD => {
            let ip: &[u8; 40] = data.get(ETH..ETH + 40)?.try_into().ok()?;
            let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            // Version 6, TCP as the first next header, a usable payload length.
            if ip[0] >> 4 != 6 || ip[6] != 6 || payload == 0 {
                return None;
            }
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (src.into(), dst.into(), ETH + 40 + payload, ETH + 40)
        }
        _ => return None,
    };
    // The whole IP packet is captured (trailing Ethernet padding is cut off).
    let ip_payload = data.get(tcp_at..ip_end)?;
    let tcp: &[u8; 20] = ip_payload.get(..20)?.try_into().ok()?;
    let header_len = usize::from(tcp[12] >> 4) * 4;
    if header_len < 20 {
        return None;
    }
    // A client SYN goes through etherparse, which reads its TTL and options
    // (`syn_of`); SYNs are few.
    if tcp[13] & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN {
        return None;
    }
    let payload = ip_payload.get(header_len..)?;
    Some(Segment {
        ts_ns,
        src: SocketAddr::new(src_ip, u16::from_be_bytes([tcp[0], tcp[1]])),
        dst: SocketAddr::new(dst_ip, u16::from_be_bytes([tcp[2], tcp[3]])),
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        ack: u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]),
        // The flag bits are in the same order as `sensor_common::tcp_flags`.
        flags: tcp[13],
        payload_len: u32::try_from(payload.len()).ok()?,
        payload,
        syn: None,
    })
}

/// [`decode`] through etherparse, for every link type and packet shape.
#[inline(never)]
fn decode_sliced(link: Link, ts_ns: u64, data: &[u8], orig_len: u32) -> Decoded<'_> {
    let sliced = match link {
        Link::Ethernet => match LaxSlicedPacket::from_ethernet(data) {
            Ok(p) => p,
            Err(_) => return Decoded::Malformed,
        },
        // etherparse's SLL decoder rejects ARPHRD types it does not model (loopback, tun), which
        // `tcpdump -i any` produces; the protocol field is an ether type for all of those, so
        // only that field is read here and etherparse decodes everything after the header.
        Link::LinuxSll => match (be16_at(data, SLL_PROTO_AT), data.get(SLL_LEN..)) {
            (Some(proto), Some(rest)) => LaxSlicedPacket::from_ether_type(EtherType(proto), rest),
            _ => return Decoded::Malformed,
        },
        // etherparse has no SLL2 decoder; the header is fixed-size with the ether type first.
        Link::LinuxSll2 => match (be16_at(data, 0), data.get(SLL2_LEN..)) {
            (Some(proto), Some(rest)) => LaxSlicedPacket::from_ether_type(EtherType(proto), rest),
            _ => return Decoded::Malformed,
        },
        Link::RawIp => match LaxSlicedPacket::from_ip(data) {
            Ok(p) => p,
            Err(_) => return Decoded::Malformed,
        },
        // The address family is in host byte order of the capturing machine; the IP version
        // nibble identifies the protocol just as well.
        Link::Null => match data.get(NULL_LEN..).map(LaxSlicedPacket::from_ip) {
            Some(Ok(p)) => p,
            _ => return Decoded::Malformed,
        },
    };
    let missing_tail = (orig_len as usize).saturating_sub(data.len());
    segment_of(&sliced, ts_ns, missing_tail)
}

/// Reads a big-endian `u16` at `at`.
fn be16_at(data: &[u8], at: usize) -> Option<u16> {
    let bytes = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]))
}

/// Turns a decoded packet into a segment. `missing_tail` is how many bytes of the frame the
/// capture record left out.
fn segment_of<'a>(p: &LaxSlicedPacket<'a>, ts_ns: u64, missing_tail: usize) -> Decoded<'a> {
    // The IP payload's declared length (after extension headers), the addresses and the
    // payload slice.
    let (src_ip, dst_ip, ip_payload, declared, ttl): (IpAddr, IpAddr, _, Option<usize>, u8) =
        match &p.net {
            Some(LaxNetSlice::Ipv4(v4)) => {
                let h = v4.header();
                let ext = v4.extensions().auth.map_or(0, |a| a.slice().len());
                let declared = usize::from(h.total_len())
                    .checked_sub(h.slice().len())
                    .and_then(|n| n.checked_sub(ext));
                (
                    IpAddr::V4(h.source_addr()),
                    IpAddr::V4(h.destination_addr()),
                    v4.payload(),
                    declared,
                    h.ttl(),
                )
            }
            Some(LaxNetSlice::Ipv6(v6)) => {
                let h = v6.header();
                let declared =
                    usize::from(h.payload_length()).checked_sub(v6.extensions().slice().len());
                (
                    IpAddr::V6(h.source_addr()),
                    IpAddr::V6(h.destination_addr()),
                    v6.payload(),
                    declared,
                    h.hop_limit(),
                )
            }
            None if p.stop_err.is_some() => return Decoded::Malformed,
            Some(LaxNetSlice::Arp(_)) | None => return Decoded::NotTcp,
        };
    if ip_payload.fragmented {
        return Decoded::Fragment;
    }
    if ip_payload.ip_number != ip_number::TCP {
        return if p.stop_err.is_some() {
            Decoded::Malformed
        } else {
            Decoded::NotTcp
        };
    }
    let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
        return Decoded::Malformed;
    };
    let captured = tcp.payload();
    let header_len = tcp.header_slice().len();
    let true_len = if ip_payload.incomplete {
        // The capture cut the packet: the IP header says how long it really was.
        match declared.and_then(|d| d.checked_sub(header_len)) {
            Some(n) => n,
            None => return Decoded::Malformed,
        }
    } else if ip_payload.len_source == LenSource::Slice {
        // The IP length field was unusable (zero or too small), so the record's original
        // length is the only measure of what is missing.
        captured.len().saturating_add(missing_tail)
    } else {
        captured.len()
    };
    let payload_len = u32::try_from(true_len.max(captured.len())).unwrap_or(u32::MAX);
    let flags = u8::from(tcp.fin())
        | u8::from(tcp.syn()) << 1
        | u8::from(tcp.rst()) << 2
        | u8::from(tcp.psh()) << 3
        | u8::from(tcp.ack()) << 4
        | u8::from(tcp.urg()) << 5
        | u8::from(tcp.ece()) << 6
        | u8::from(tcp.cwr()) << 7;
    Decoded::Tcp(Segment {
        ts_ns,
        src: SocketAddr::new(src_ip, tcp.source_port()),
        dst: SocketAddr::new(dst_ip, tcp.destination_port()),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags,
        payload_len,
        payload: captured,
        // A client SYN's fields, read as XDP reads them from the same headers (XDP reads them
        // for a SYN without payload only: one with data, TCP Fast Open's, is a segment record).
        syn: (tcp.syn() && !tcp.ack() && payload_len == 0)
            .then(|| read_syn(ttl, tcp.window_size(), tcp.options())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, VlanId};
    use pcap_file::Endianness;
    use pcap_file::pcap::{PcapHeader, PcapWriter, RawPcapPacket};
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    use pcap_file::pcapng::blocks::simple_packet::SimplePacketBlock;
    use proptest::prelude::*;
    use std::borrow::Cow;
    use std::time::Duration;

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const CLIENT4: [u8; 4] = [198, 51, 100, 2];
    const SERVER4: [u8; 4] = [198, 51, 100, 1];
    const CLIENT6: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
    ];
    const SERVER6: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    ];
    const REQ: &[u8] = b"GET /users/7 HTTP/1.1\r\nHost: api.example\r\n\r\n";
    const SEQ: u32 = 0x1000_0001;
    const ACK: u32 = 0x2000_0002;

    /// An owned copy of a [`ReplayEvent`], for comparing event lists.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Ev {
        Tick(u64),
        Seg {
            ts_ns: u64,
            src: SocketAddr,
            dst: SocketAddr,
            seq: u32,
            ack: u32,
            flags: u8,
            payload_len: u32,
            payload: Vec<u8>,
        },
    }

    impl Ev {
        fn of(e: ReplayEvent<'_>) -> Ev {
            match e {
                ReplayEvent::Tick(t) => Ev::Tick(t),
                ReplayEvent::Segment(s) => Ev::Seg {
                    ts_ns: s.ts_ns,
                    src: s.src,
                    dst: s.dst,
                    seq: s.seq,
                    ack: s.ack,
                    flags: s.flags,
                    payload_len: s.payload_len,
                    payload: s.payload.to_vec(),
                },
            }
        }
    }

    fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
        SocketAddr::new(ip.into(), port)
    }

    /// The expected segment for a client-to-server packet built by the helpers below.
    fn want_seg(
        src: SocketAddr,
        dst: SocketAddr,
        flags: u8,
        payload_len: usize,
        payload: &[u8],
    ) -> Ev {
        Ev::Seg {
            ts_ns: 7,
            src,
            dst,
            seq: SEQ,
            ack: ACK,
            flags,
            payload_len: u32::try_from(payload_len).expect("small"),
            payload: payload.to_vec(),
        }
    }

    fn eth4(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(CLIENT4, SERVER4, 64)
            .tcp(40000, 80, SEQ, 512)
            .ack(ACK)
            .psh();
        let mut v = Vec::new();
        b.write(&mut v, payload).expect("build");
        v
    }

    fn raw4(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv4(CLIENT4, SERVER4, 64)
            .tcp(40000, 80, SEQ, 512)
            .ack(ACK)
            .psh();
        let mut v = Vec::new();
        b.write(&mut v, payload).expect("build");
        v
    }

    fn raw6(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv6(CLIENT6, SERVER6, 64)
            .tcp(40000, 8080, SEQ, 512)
            .ack(ACK)
            .psh();
        let mut v = Vec::new();
        b.write(&mut v, payload).expect("build");
        v
    }

    fn vlan6(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .single_vlan(VlanId::try_new(42).expect("vlan id"))
            .ipv6(CLIENT6, SERVER6, 64)
            .tcp(40000, 8080, SEQ, 512)
            .ack(ACK)
            .psh();
        let mut v = Vec::new();
        b.write(&mut v, payload).expect("build");
        v
    }

    fn qinq4(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .double_vlan(
                VlanId::try_new(100).expect("vlan id"),
                VlanId::try_new(200).expect("vlan id"),
            )
            .ipv4(CLIENT4, SERVER4, 64)
            .tcp(40000, 80, SEQ, 512)
            .ack(ACK)
            .psh();
        let mut v = Vec::new();
        b.write(&mut v, payload).expect("build");
        v
    }

    fn syn4() -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(CLIENT4, SERVER4, 64)
            .tcp(40000, 80, SEQ, 512)
            .syn();
        let mut v = Vec::new();
        b.write(&mut v, &[]).expect("build");
        // Ethernet pads short frames to 60 bytes; the IP length must win over the frame length.
        v.resize(60, 0);
        v
    }

    fn udp4() -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(CLIENT4, SERVER4, 64)
            .udp(5353, 53);
        let mut v = Vec::new();
        b.write(&mut v, b"dns").expect("build");
        v
    }

    /// Linux cooked v1 header with the given ARPHRD type and ether type.
    fn sll(arphrd: u16, proto: u16, inner: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0];
        v.extend_from_slice(&arphrd.to_be_bytes());
        v.extend_from_slice(&6_u16.to_be_bytes());
        v.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0, 0]);
        v.extend_from_slice(&proto.to_be_bytes());
        v.extend_from_slice(inner);
        v
    }

    /// Linux cooked v2 header with the given ether type.
    fn sll2(proto: u16, inner: &[u8]) -> Vec<u8> {
        let mut v = proto.to_be_bytes().to_vec();
        v.extend_from_slice(&[0, 0, 0, 0, 0, 3, 0, 1, 0, 6]);
        v.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(v.len(), SLL2_LEN);
        v.extend_from_slice(inner);
        v
    }

    /// Sets bits in one byte of a frame.
    fn patch(mut v: Vec<u8>, at: usize, f: impl Fn(u8) -> u8) -> Vec<u8> {
        let b = v.get_mut(at).expect("patch offset inside the frame");
        *b = f(*b);
        v
    }

    struct Case {
        name: &'static str,
        link: Link,
        frame: Vec<u8>,
        /// Bytes of the frame kept in the capture record (`None`: all).
        keep: Option<usize>,
        want: Option<Ev>,
        want_other: Decoded<'static>,
    }

    fn check(c: &Case) {
        let data = match c.keep {
            Some(n) => c.frame.get(..n).expect("keep within frame"),
            None => &c.frame[..],
        };
        let orig_len = u32::try_from(c.frame.len()).expect("small frame");
        let got = decode(c.link, 7, data, orig_len);
        match (&c.want, got) {
            (Some(want), Decoded::Tcp(seg)) => {
                assert_eq!(&Ev::of(ReplayEvent::Segment(seg)), want, "case {}", c.name);
            }
            (Some(want), other) => panic!("case {}: got {other:?}, want {want:?}", c.name),
            (None, got) => assert_eq!(got, c.want_other, "case {}", c.name),
        }
    }

    #[test]
    #[expect(clippy::too_many_lines, reason = "one table of cases")]
    fn decode_table() {
        let c4 = sa(std::net::Ipv4Addr::from(CLIENT4), 40000);
        let s4 = sa(std::net::Ipv4Addr::from(SERVER4), 80);
        let c6 = sa(std::net::Ipv6Addr::from(CLIENT6), 40000);
        let s6 = sa(std::net::Ipv6Addr::from(SERVER6), 8080);
        let psh_ack = sensor_common::tcp_flags::PSH | sensor_common::tcp_flags::ACK;
        let eth_tcp_hdr = 14 + 20 + 20;
        let cases = vec![
            Case {
                name: "ethernet ipv4",
                link: Link::Ethernet,
                frame: eth4(REQ),
                keep: None,
                want: Some(want_seg(c4, s4, psh_ack, REQ.len(), REQ)),
                want_other: Decoded::Malformed,
            },
            Case {
                name: "vlan ipv6",
                link: Link::Ethernet,
                frame: vlan6(REQ),
                keep: None,
                want: Some(want_seg(c6, s6, psh_ack, REQ.len(), REQ)),
                want_other: Decoded::Malformed,
            },
            Case {
                name: "qinq ipv4",
                link: Link::Ethernet,
                frame: qinq4(REQ),
                keep: None,
                want: Some(want_seg(c4, s4, psh_ack, REQ.len(), REQ)),
                want_other: Decoded::Malformed,
            },
            Case {
                name: "sll loopback arphrd ipv4",
                link: Link::LinuxSll,
                frame: sll(772, 0x0800, &raw4(REQ)),
                keep: None,
                want: Some(want_seg(c4, s4, psh_ack, REQ.len(), REQ)),
                want_other: Decoded::Malformed,
            },
            Case {
                name: "sll ethernet arphrd ipv6",
                link: Link::LinuxSll,
                frame: sll(1, 0x86dd, &raw6(REQ)),
                keep: None,
                want: Some(want_seg(c6, s6, psh_ack, REQ.len(), REQ)),
                want_other: Decoded::Malformed,
            },
            Case {
                name: "sll2 ipv6",
                link: Link::LinuxSll2,
                frame: sll2(0x86dd, &raw6(REQ)),
                keep: None,
                want: Some(want_seg(c6, s6, psh_ack, REQ.len(), REQ)),
                want_other: Decoded::Malformed,
            },
            Case {
                name: "raw ipv4",
                link: Link::RawIp,
                frame: raw4(REQ),
                keep: None,
                want: Some(want_seg(c4, s4, psh_ack, REQ.len(), REQ)),
                want_other: Decoded::Malformed,
            },
            Case {
                name: "raw ipv6",
                link: Link::RawIp,
                frame: raw6(REQ),
                keep: None,
                want: Some(want_seg(c6, s6, psh_ack, REQ.len(), REQ)),
                want_other: Decoded::Malformed,
            },
            Case {
                name: "bsd loopback ipv4",
                link: Link::Null,
                frame: [&2_u32.to_le_bytes()[..], &raw4(REQ)].concat(),
                keep: None,
                want: Some(want_seg(c4, s4, psh_ack, REQ.len(), REQ)),
                want_other: Decoded::Malformed,
            },
            Case {
                name: "snaplen cuts the payload: known hole",
                link: Link::Ethernet,
                frame: eth4(REQ),
                keep: Some(eth_tcp_hdr + 10),
                want: Some(want_seg(c4, s4, psh_ack, REQ.len(), &REQ[..10])),
                want_other: Decoded::Malformed,
            },
            Case {
                name: "snaplen cuts the ipv6 payload",
                link: Link::RawIp,
                frame: raw6(REQ),
                keep: Some(40 + 20 + 3),
                want: Some(want_seg(c6, s6, psh_ack, REQ.len(), &REQ[..3])),
                want_other: Decoded::Malformed,
            },
            Case {
                name: "ipv4 total length zero (offload): original length counts",
                link: Link::RawIp,
                frame: patch(patch(raw4(REQ), 2, |_| 0), 3, |_| 0),
                keep: Some(20 + 20 + 5),
                want: Some(want_seg(c4, s4, psh_ack, REQ.len(), &REQ[..5])),
                want_other: Decoded::Malformed,
            },
            Case {
                name: "padded syn",
                link: Link::Ethernet,
                frame: syn4(),
                keep: None,
                want: Some(Ev::Seg {
                    ts_ns: 7,
                    src: c4,
                    dst: s4,
                    seq: SEQ,
                    ack: 0,
                    flags: sensor_common::tcp_flags::SYN,
                    payload_len: 0,
                    payload: Vec::new(),
                }),
                want_other: Decoded::Malformed,
            },
            Case {
                name: "capture cut inside the tcp header",
                link: Link::Ethernet,
                frame: eth4(REQ),
                keep: Some(14 + 20 + 10),
                want: None,
                want_other: Decoded::Malformed,
            },
            Case {
                name: "udp",
                link: Link::Ethernet,
                frame: udp4(),
                keep: None,
                want: None,
                want_other: Decoded::NotTcp,
            },
            Case {
                name: "ipx ether type",
                link: Link::Ethernet,
                frame: patch(patch(eth4(REQ), 12, |_| 0x81), 13, |_| 0x37),
                keep: None,
                want: None,
                want_other: Decoded::NotTcp,
            },
            Case {
                name: "ipv4 more-fragments bit",
                link: Link::RawIp,
                frame: patch(raw4(REQ), 6, |b| b | 0x20),
                keep: None,
                want: None,
                want_other: Decoded::Fragment,
            },
            Case {
                name: "garbage ip",
                link: Link::RawIp,
                frame: b"\x99 not an ip packet at all".to_vec(),
                keep: None,
                want: None,
                want_other: Decoded::Malformed,
            },
            Case {
                name: "short ethernet",
                link: Link::Ethernet,
                frame: vec![1, 2, 3],
                keep: None,
                want: None,
                want_other: Decoded::Malformed,
            },
            Case {
                name: "short sll2",
                link: Link::LinuxSll2,
                frame: vec![8, 0, 1],
                keep: None,
                want: None,
                want_other: Decoded::Malformed,
            },
        ];
        for c in &cases {
            check(c);
        }
    }

    /// One packet of a synthetic capture.
    struct Pkt {
        ts: Duration,
        frame: Vec<u8>,
        keep: usize,
    }

    fn pkts(frames: Vec<(u64, Vec<u8>)>) -> Vec<Pkt> {
        frames
            .into_iter()
            .map(|(ns, frame)| Pkt {
                ts: Duration::from_nanos(ns),
                keep: frame.len(),
                frame,
            })
            .collect()
    }

    fn write_pcap(
        endianness: Endianness,
        ts_resolution: TsResolution,
        datalink: DataLink,
        packets: &[Pkt],
    ) -> Vec<u8> {
        let header = PcapHeader {
            datalink,
            ts_resolution,
            endianness,
            snaplen: 65535,
            ..PcapHeader::default()
        };
        let mut w = PcapWriter::with_header(Vec::new(), header).expect("pcap header");
        for p in packets {
            let frac = match ts_resolution {
                TsResolution::MicroSecond => p.ts.subsec_micros(),
                TsResolution::NanoSecond => p.ts.subsec_nanos(),
            };
            let data = p.frame.get(..p.keep).expect("keep within frame");
            w.write_raw_packet(&RawPcapPacket {
                ts_sec: u32::try_from(p.ts.as_secs()).expect("small ts"),
                ts_frac: frac,
                incl_len: u32::try_from(data.len()).expect("small"),
                orig_len: u32::try_from(p.frame.len()).expect("small"),
                data: Cow::Borrowed(data),
            })
            .expect("write record");
        }
        w.into_writer()
    }

    /// `if_tsresol` for units of 2^-10 seconds.
    const BINARY_10: u8 = 0x80 | 0x0a;

    /// A pcapng file with one interface of `datalink` and the given `if_tsresol` (`None`: the
    /// option is absent, meaning microseconds).
    fn write_pcapng(
        endianness: Endianness,
        datalink: DataLink,
        tsresol: Option<u8>,
        packets: &[Pkt],
    ) -> Vec<u8> {
        let mut w = PcapNgWriter::with_endianness(Vec::new(), endianness).expect("shb");
        let mut idb = InterfaceDescriptionBlock::new(datalink, 0);
        if let Some(r) = tsresol {
            idb.options.push(InterfaceDescriptionOption::IfTsResol(r));
        }
        w.write_pcapng_block(idb).expect("idb");
        for p in packets {
            let ticks: u128 = match tsresol {
                None | Some(6) => p.ts.as_micros(),
                Some(9) => p.ts.as_nanos(),
                Some(BINARY_10) => p.ts.as_nanos() * 1024 / 1_000_000_000,
                Some(other) => panic!("test does not model if_tsresol {other}"),
            };
            let data = p.frame.get(..p.keep).expect("keep within frame");
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_nanos(u64::try_from(ticks).expect("small")),
                original_len: u32::try_from(p.frame.len()).expect("small"),
                data: Cow::Borrowed(data),
                options: vec![],
            })
            .expect("epb");
        }
        w.into_inner()
    }

    fn events(bytes: &[u8]) -> (Vec<Ev>, ReplaySummary, Result<(), ReplayError>) {
        let mut evs = Vec::new();
        let (summary, result) =
            read_segments_partial(bytes, Path::new("mem.pcap"), &mut |e| evs.push(Ev::of(e)));
        (evs, summary, result)
    }

    fn seg_ts(evs: &[Ev]) -> Vec<u64> {
        evs.iter()
            .filter_map(|e| match e {
                Ev::Seg { ts_ns, .. } => Some(*ts_ns),
                Ev::Tick(_) => None,
            })
            .collect()
    }

    /// Timestamps chosen to be exact at every resolution under test (multiples of 1/1024 s
    /// are exact in micro- and nanoseconds only when also multiples of 1 µs, so the 2^-10 case
    /// uses its own list).
    const TS_US: [u64; 3] = [
        1_700_000_000_123_456_000,
        1_700_000_000_623_456_000,
        1_700_000_002_000_001_000,
    ];

    #[test]
    fn pcap_byte_orders_and_resolutions_agree() {
        let frames = || pkts(TS_US.iter().map(|&t| (t, eth4(REQ))).collect());
        for endianness in [Endianness::Big, Endianness::Little] {
            for res in [TsResolution::MicroSecond, TsResolution::NanoSecond] {
                let file = write_pcap(endianness, res, DataLink::ETHERNET, &frames());
                let (evs, summary, result) = events(&file);
                let ctx = format!("{endianness:?} {res:?}");
                assert!(result.is_ok(), "{ctx}: {result:?}");
                assert_eq!(seg_ts(&evs), TS_US.to_vec(), "{ctx}");
                assert_eq!(summary.format, CaptureFormat::Pcap, "{ctx}");
                assert_eq!(summary.packets, 3, "{ctx}");
                assert_eq!(summary.tcp_segments, 3, "{ctx}");
            }
        }
    }

    #[test]
    fn pcapng_byte_orders_and_resolutions_agree() {
        for endianness in [Endianness::Big, Endianness::Little] {
            for resol in [None, Some(6), Some(9)] {
                let file = write_pcapng(
                    endianness,
                    DataLink::RAW,
                    resol,
                    &pkts(TS_US.iter().map(|&t| (t, raw6(REQ))).collect()),
                );
                let (evs, summary, result) = events(&file);
                let ctx = format!("{endianness:?} {resol:?}");
                assert!(result.is_ok(), "{ctx}: {result:?}");
                assert_eq!(seg_ts(&evs), TS_US.to_vec(), "{ctx}");
                assert_eq!(summary.format, CaptureFormat::Pcapng, "{ctx}");
                assert_eq!(summary.tcp_segments, 3, "{ctx}");
            }
        }
        // Binary resolution, 2^-10 s units: steps of 2/1024 s (1953125 ns) are exact in both
        // units.
        let ts: Vec<u64> = (0..3_u64)
            .map(|i| 1_700_000_000_000_000_000 + i * 1_953_125)
            .collect();
        let file = write_pcapng(
            Endianness::Little,
            DataLink::ETHERNET,
            Some(BINARY_10),
            &pkts(ts.iter().map(|&t| (t, eth4(REQ))).collect()),
        );
        let (evs, _, result) = events(&file);
        assert!(result.is_ok(), "binary resolution: {result:?}");
        assert_eq!(seg_ts(&evs), ts);
    }

    #[test]
    fn ticks_to_ns_table() {
        let cases: [(u64, u8, i64, u64); 7] = [
            (1_500_000, 6, 0, 1_500_000_000),
            (1_500_000_000, 9, 0, 1_500_000_000),
            (15, 1, 0, 1_500_000_000),
            (15_000_000_000, 10, 0, 1_500_000_000),
            (3 * 1024, 0x80 | 0x0a, 0, 3_000_000_000),
            (1_000_000, 6, 5, 6_000_000_000),
            (1_000_000, 6, -5, 0),
        ];
        for (ticks, resol, offset, want) in cases {
            assert_eq!(
                ticks_to_ns(ticks, resol, offset),
                want,
                "ticks {ticks} resol {resol:#x} offset {offset}"
            );
        }
        // Extreme resolutions saturate or floor instead of overflowing.
        assert_eq!(ticks_to_ns(u64::MAX, 0, 0), u64::MAX);
        assert_eq!(ticks_to_ns(u64::MAX, 127, 0), 0);
        assert_eq!(ticks_to_ns(u64::MAX, 0xff, 0), 0);
    }

    #[test]
    fn link_types_in_files() {
        let cases: Vec<(DataLink, Vec<u8>)> = vec![
            (DataLink::ETHERNET, eth4(REQ)),
            (DataLink::LINUX_SLL, sll(772, 0x0800, &raw4(REQ))),
            (DataLink::LINUX_SLL2, sll2(0x0800, &raw4(REQ))),
            (DataLink::RAW, raw4(REQ)),
            (DataLink::IPV4, raw4(REQ)),
            (DataLink::IPV6, raw6(REQ)),
            (
                DataLink::NULL,
                [&2_u32.to_le_bytes()[..], &raw4(REQ)].concat(),
            ),
        ];
        for (dl, frame) in cases {
            let file = write_pcap(
                Endianness::Little,
                TsResolution::MicroSecond,
                dl,
                &pkts(vec![(1_000, frame)]),
            );
            let (evs, summary, result) = events(&file);
            assert!(result.is_ok(), "{dl:?}: {result:?}");
            assert_eq!(summary.tcp_segments, 1, "{dl:?}: {summary:?}");
            match evs.first() {
                Some(Ev::Seg { payload, .. }) => assert_eq!(payload, REQ, "{dl:?}"),
                other => panic!("{dl:?}: first event {other:?}"),
            }
        }
        // An unsupported link type is counted, not an error.
        let file = write_pcap(
            Endianness::Little,
            TsResolution::MicroSecond,
            DataLink::IEEE802_11,
            &pkts(vec![(1_000, eth4(REQ))]),
        );
        let (evs, summary, result) = events(&file);
        assert!(result.is_ok(), "802.11: {result:?}");
        assert!(evs.is_empty());
        assert_eq!(summary.unsupported_link, 1);
    }

    #[test]
    fn short_snaplen_records_become_known_holes() {
        let frame = eth4(REQ);
        let keep = 14 + 20 + 20 + 4;
        let packets = vec![Pkt {
            ts: Duration::from_secs(1),
            frame,
            keep,
        }];
        let mut header_snap = write_pcap(
            Endianness::Little,
            TsResolution::MicroSecond,
            DataLink::ETHERNET,
            &packets,
        );
        // Declare the short snap length in the file header too, as tcpdump -s does.
        let snap = u32::try_from(keep).expect("small").to_le_bytes();
        header_snap
            .get_mut(16..20)
            .expect("pcap header")
            .copy_from_slice(&snap);
        let (evs, summary, result) = events(&header_snap);
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(summary.partial_segments, 1);
        match evs.first() {
            Some(Ev::Seg {
                payload,
                payload_len,
                ..
            }) => {
                assert_eq!(payload, &REQ[..4]);
                assert_eq!(*payload_len as usize, REQ.len());
            }
            other => panic!("first event {other:?}"),
        }
    }

    #[test]
    fn pcapng_simple_packets_and_interfaces() {
        let mut w = PcapNgWriter::with_endianness(Vec::new(), Endianness::Big).expect("shb");
        w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::RAW, 0))
            .expect("idb");
        w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 0))
            .expect("idb");
        let eth = eth4(REQ);
        let raw = raw6(REQ);
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 1,
            timestamp: Duration::from_millis(5),
            original_len: u32::try_from(eth.len()).expect("small"),
            data: Cow::Borrowed(&eth),
            options: vec![],
        })
        .expect("epb");
        // A simple packet block: first interface (raw IP), no timestamp of its own.
        w.write_pcapng_block(SimplePacketBlock {
            original_len: u32::try_from(raw.len()).expect("small"),
            data: Cow::Borrowed(&raw),
        })
        .expect("spb");
        // A packet on an interface that was never described.
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 9,
            timestamp: Duration::from_millis(6),
            original_len: u32::try_from(eth.len()).expect("small"),
            data: Cow::Borrowed(&eth),
            options: vec![],
        })
        .expect_err("the writer itself refuses unknown interfaces");
        let file = w.into_inner();
        let (evs, summary, result) = events(&file);
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(summary.tcp_segments, 2, "{summary:?}");
        let ts = seg_ts(&evs);
        assert_eq!(
            ts,
            vec![5_000_000_000, 5_000_000_000],
            "simple packet takes the last time"
        );
    }

    #[test]
    fn ticks_follow_capture_time() {
        let s = 1_000_000_000_u64;
        let base = 1_700_000_000 * s;
        let times = [
            base,
            base + s / 2,
            base + s + s / 5,
            base + s + s / 4,
            base + 3 * s,
        ];
        let file = write_pcap(
            Endianness::Little,
            TsResolution::NanoSecond,
            DataLink::ETHERNET,
            &pkts(times.iter().map(|&t| (t, eth4(REQ))).collect()),
        );
        let (evs, _, result) = events(&file);
        assert!(result.is_ok(), "{result:?}");
        let order: Vec<String> = evs
            .iter()
            .map(|e| match e {
                Ev::Tick(t) => format!("tick {}", t - base),
                Ev::Seg { ts_ns, .. } => format!("seg {}", ts_ns - base),
            })
            .collect();
        let want: Vec<String> = [
            "seg 0".to_owned(),
            format!("seg {}", s / 2),
            format!("tick {}", s + s / 5),
            format!("seg {}", s + s / 5),
            format!("seg {}", s + s / 4),
            format!("tick {}", 3 * s),
            format!("seg {}", 3 * s),
        ]
        .to_vec();
        assert_eq!(order, want);
    }

    /// A failing file, what error it must give, and how many segments come out before it.
    struct ErrCase {
        name: &'static str,
        bytes: Vec<u8>,
        want: fn(&ReplayError) -> bool,
        segments_before: usize,
    }

    #[test]
    #[expect(clippy::too_many_lines, reason = "one table of cases")]
    fn bad_files_fail_after_processing_what_came_before() {
        let good = write_pcap(
            Endianness::Little,
            TsResolution::MicroSecond,
            DataLink::ETHERNET,
            &pkts(TS_US.iter().map(|&t| (t, eth4(REQ))).collect()),
        );
        let ng = write_pcapng(
            Endianness::Little,
            DataLink::ETHERNET,
            None,
            &pkts(TS_US.iter().map(|&t| (t, eth4(REQ))).collect()),
        );
        // Break the trailer length of the last pcapng block.
        let mut ng_corrupt = ng.clone();
        let n = ng_corrupt.len();
        ng_corrupt
            .get_mut(n - 4..)
            .expect("trailer")
            .copy_from_slice(&[0xff, 0, 0, 0]);
        let cases = vec![
            ErrCase {
                name: "empty",
                bytes: Vec::new(),
                want: |e| matches!(e, ReplayError::Empty { .. }),
                segments_before: 0,
            },
            ErrCase {
                name: "text",
                bytes: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
                want: |e| {
                    matches!(
                        e,
                        ReplayError::NotACapture {
                            magic: 0x4745_5420,
                            ..
                        }
                    )
                },
                segments_before: 0,
            },
            ErrCase {
                name: "pcap header cut",
                bytes: good.get(..20).expect("header").to_vec(),
                want: |e| matches!(e, ReplayError::Empty { .. }),
                segments_before: 0,
            },
            ErrCase {
                name: "pcap cut in the third record",
                bytes: good.get(..good.len() - 5).expect("cut").to_vec(),
                want: |e| {
                    matches!(
                        e,
                        ReplayError::Truncated {
                            packet_index: 2,
                            ..
                        }
                    )
                },
                segments_before: 2,
            },
            ErrCase {
                name: "pcap cut in the second record header",
                bytes: good
                    .get(..24 + 16 + eth4(REQ).len() + 7)
                    .expect("cut")
                    .to_vec(),
                want: |e| {
                    matches!(
                        e,
                        ReplayError::Truncated {
                            packet_index: 1,
                            ..
                        }
                    )
                },
                segments_before: 1,
            },
            ErrCase {
                name: "pcapng cut",
                bytes: ng.get(..ng.len() - 9).expect("cut").to_vec(),
                want: |e| {
                    matches!(
                        e,
                        ReplayError::Truncated {
                            packet_index: 2,
                            ..
                        }
                    )
                },
                segments_before: 2,
            },
            ErrCase {
                name: "pcapng bad trailer",
                bytes: ng_corrupt,
                want: |e| {
                    matches!(
                        e,
                        ReplayError::Corrupt {
                            packet_index: 2,
                            ..
                        }
                    )
                },
                segments_before: 2,
            },
        ];
        for c in &cases {
            let (evs, summary, result) = events(&c.bytes);
            let err = result.expect_err(c.name);
            assert!((c.want)(&err), "case {}: unexpected error {err:?}", c.name);
            assert!(
                err.to_string().contains("mem.pcap"),
                "case {}: {err}",
                c.name
            );
            assert_eq!(seg_ts(&evs).len(), c.segments_before, "case {}", c.name);
            assert_eq!(
                summary.tcp_segments as usize, c.segments_before,
                "case {}",
                c.name
            );
        }
    }

    #[test]
    fn same_file_same_events() {
        let file = write_pcapng(
            Endianness::Big,
            DataLink::ETHERNET,
            Some(9),
            &pkts(TS_US.iter().map(|&t| (t, qinq4(REQ))).collect()),
        );
        let (a, sa_, ra) = events(&file);
        let (b, sb, rb) = events(&file);
        assert!(ra.is_ok() && rb.is_ok());
        assert_eq!(a, b);
        assert_eq!(sa_, sb);
    }

    /// Frames of one connection to port 80: handshake, a request answered with 200, then a
    /// second request that gets no response.
    fn http_connection() -> Vec<Vec<u8>> {
        let resp: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let req2: &[u8] = b"GET /users/8 HTTP/1.1\r\nHost: api.example\r\n\r\n";
        let (c_isn, s_isn) = (1000_u32, 5000_u32);
        let c = |seq: u32, ack: u32, payload: &[u8], syn: bool| {
            let mut b = PacketBuilder::ethernet2(MAC_A, MAC_B)
                .ipv4(CLIENT4, SERVER4, 64)
                .tcp(40000, 80, seq, 512);
            if syn {
                b = b.syn();
            } else {
                b = b.ack(ack).psh();
            }
            let mut v = Vec::new();
            b.write(&mut v, payload).expect("build");
            v
        };
        let s = |seq: u32, ack: u32, payload: &[u8], syn: bool| {
            let mut b = PacketBuilder::ethernet2(MAC_B, MAC_A)
                .ipv4(SERVER4, CLIENT4, 64)
                .tcp(80, 40000, seq, 512)
                .ack(ack);
            if syn {
                b = b.syn();
            } else {
                b = b.psh();
            }
            let mut v = Vec::new();
            b.write(&mut v, payload).expect("build");
            v
        };
        let req_len = u32::try_from(REQ.len()).expect("small");
        let resp_len = u32::try_from(resp.len()).expect("small");
        vec![
            c(c_isn, 0, &[], true),
            s(s_isn, c_isn + 1, &[], true),
            c(c_isn + 1, s_isn + 1, &[], false),
            c(c_isn + 1, s_isn + 1, REQ, false),
            s(s_isn + 1, c_isn + 1 + req_len, resp, false),
            c(c_isn + 1 + req_len, s_isn + 1 + resp_len, req2, false),
        ]
    }

    /// The time of frame 0 of [`capture_of`].
    const CAPTURE_BASE: u64 = 1_700_000_000_000_000_000;

    /// A nanosecond Ethernet capture of `frames`, frame `i` at [`CAPTURE_BASE`] + `i` ms.
    fn capture_of(frames: impl Iterator<Item = (usize, Vec<u8>)>) -> Vec<u8> {
        let stamped = frames
            .map(|(i, f)| (CAPTURE_BASE + i as u64 * 1_000_000, f))
            .collect();
        write_pcap(
            Endianness::Little,
            TsResolution::NanoSecond,
            DataLink::ETHERNET,
            &pkts(stamped),
        )
    }

    fn replay_bytes(bytes: &[u8]) -> (Vec<Transaction>, Result<ReplaySummary, ReplayError>) {
        let mut analyzer = Analyzer::new(crate::analyzer::AnalyzerConfig::default());
        let mut txs = Vec::new();
        let result = replay_reader(bytes, Path::new("mem.pcap"), &mut analyzer, &mut |tx| {
            txs.push(tx.clone());
        });
        (txs, result)
    }

    #[test]
    fn replay_emits_transactions_and_flushes_pending_ones() {
        let file = capture_of(http_connection().into_iter().enumerate());
        let (txs, result) = replay_bytes(&file);
        let summary = result.expect("a valid capture replays");
        assert_eq!(summary.transactions, 2);
        assert_eq!(summary.tcp_segments, 6);
        let got: Vec<(&str, &str, Option<u16>)> = txs
            .iter()
            .map(|t| (&*t.method, t.path.as_str(), t.status))
            .collect();
        assert_eq!(
            got,
            vec![("GET", "/users/7", Some(200)), ("GET", "/users/8", None)],
            "the answered request, then the pending one flushed at the end"
        );
        assert_eq!(txs.first().map(|t| t.ts_ns), Some(CAPTURE_BASE + 3_000_000));

        // The same file followed by a cut record: the error comes after everything before the
        // damage was emitted, the pending request included (flushed by finish).
        let mut cut_file = file.clone();
        cut_file.extend_from_slice(&[0; 10]);
        let (cut_txs, cut) = replay_bytes(&cut_file);
        let err = cut.expect_err("a truncated capture fails");
        assert!(
            matches!(
                err,
                ReplayError::Truncated {
                    packet_index: 6,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(cut_txs, txs, "same transactions before the damage");
    }

    #[test]
    fn a_captured_syn_gives_every_transaction_its_transport_fingerprint() {
        // The connection of `http_connection`, its SYN from a Linux stack (TTL 61 after three
        // hops, window 64240, MSS 1460, SACK permitted, timestamp, NOP, window scale 7).
        const LINUX: [u8; 20] = [
            2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        let mut syn = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(CLIENT4, SERVER4, 61)
            .tcp(40000, 80, 1000, 64240)
            .syn()
            .options_raw(&LINUX)
            .expect("options fit")
            .write(&mut syn, &[])
            .expect("build");
        // The SYN decodes to the fields XDP reads (`xdp_fixtures` holds the two equal).
        let Decoded::Tcp(seg) = decode(Link::Ethernet, 0, &syn, syn.len() as u32) else {
            panic!("the SYN decodes");
        };
        assert_eq!(seg.syn, Some(read_syn(61, 64240, &LINUX)));
        let mut frames = http_connection();
        frames[0] = syn;
        let file = capture_of(frames.into_iter().enumerate());
        let (txs, result) = replay_bytes(&file);
        result.expect("a valid capture replays");
        let fps: Vec<String> = txs
            .iter()
            .filter_map(|t| t.transport_fingerprint.map(|f| f.to_string()))
            .collect();
        assert_eq!(fps, vec!["tcp1_64_m44_1460_7_M-S-T-N-W"; 2], "{txs:?}");
        // Without its SYN (picked up mid-stream) the connection has none.
        let file = capture_of(http_connection().into_iter().enumerate().skip(2));
        let (txs, _) = replay_bytes(&file);
        assert!(!txs.is_empty() && txs.iter().all(|t| t.transport_fingerprint.is_none()));
    }

    #[test]
    fn replay_file_names_the_file() {
        let dir = std::env::temp_dir().join(format!("apisensor-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("capture.pcap");
        let file = write_pcap(
            Endianness::Big,
            TsResolution::MicroSecond,
            DataLink::ETHERNET,
            &pkts(
                http_connection()
                    .into_iter()
                    .map(|f| (1_000_000_000, f))
                    .collect(),
            ),
        );
        std::fs::write(&path, &file).expect("write capture");
        let mut analyzer = Analyzer::new(crate::analyzer::AnalyzerConfig::default());
        let mut n = 0;
        let summary = replay_file(&path, &mut analyzer, &mut |_| n += 1).expect("replays");
        assert_eq!(summary.transactions, 2);
        assert_eq!(n, 2);
        let missing = dir.join("missing.pcap");
        let err = replay_file(&missing, &mut analyzer, &mut |_| {}).expect_err("no such file");
        assert!(matches!(err, ReplayError::Open { .. }), "{err:?}");
        assert!(err.to_string().contains("missing.pcap"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    proptest! {
        #[test]
        fn plain_ethernet_fast_path_matches_etherparse(
            v6 in any::<bool>(),
            len in 0_usize..80,
            edits in proptest::collection::vec((0_usize..80, any::<u8>()), 0..4),
            cut in 0_usize..140,
            pad in 0_usize..8,
        ) {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut frame = if v6 {
                let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
                    .ipv6(CLIENT6, SERVER6, 64)
                    .tcp(40000, 8080, SEQ, 512)
                    .ack(ACK)
                    .syn();
                let mut v = Vec::new();
                b.write(&mut v, &payload).expect("build");
                v
            } else {
                eth4(&payload)
            };
            frame.extend(std::iter::repeat_n(0, pad));
            for (at, byte) in edits {
                if let Some(b) = frame.get_mut(at) {
                    *b = byte;
                }
            }
            frame.truncate(cut);
            let orig = u32::try_from(frame.len() + pad).expect("small");
            if let Some(fast) = plain_ethernet_tcp(7, &frame) {
                prop_assert_eq!(
                    Decoded::Tcp(fast),
                    decode_sliced(Link::Ethernet, 7, &frame, orig),
                    "frame {:?}",
                    frame
                );
            }
        }

        #[test]
        fn arbitrary_records_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), cut in 0_usize..300) {
            for dl in [DataLink::ETHERNET, DataLink::LINUX_SLL, DataLink::LINUX_SLL2, DataLink::RAW, DataLink::NULL] {
                let p = Pkt { ts: Duration::from_secs(1), keep: data.len(), frame: data.clone() };
                let file = write_pcap(Endianness::Little, TsResolution::MicroSecond, dl, &[p]);
                let _ = events(&file);
                let _ = events(file.get(..cut.min(file.len())).unwrap_or_default());
            }
            let _ = events(&data);
        }

        #[test]
        fn truncation_anywhere_is_an_error_or_a_prefix(cut in 0_usize..400) {
            let file = write_pcapng(
                Endianness::Little,
                DataLink::ETHERNET,
                None,
                &pkts(TS_US.iter().map(|&t| (t, eth4(REQ))).collect()),
            );
            let (full, _, _) = events(&file);
            let cut = cut.min(file.len());
            let (evs, _, result) = events(file.get(..cut).unwrap_or_default());
            prop_assert!(full.starts_with(&evs));
            if cut == file.len() {
                prop_assert!(result.is_ok());
                prop_assert_eq!(evs, full);
            } else if cut < 4 {
                let empty = matches!(result, Err(ReplayError::Empty { .. }));
                prop_assert!(empty);
            }
        }
    }
}
