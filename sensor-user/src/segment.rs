//! The unit of input of the analyzer: one TCP segment, from the kernel's ring buffers or from a
//! capture file. Both sources convert to this type at their edge, so everything after it runs
//! the same live and offline.

use std::net::SocketAddr;

/// One TCP segment, possibly only partly captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Wall-clock time of the segment in nanoseconds since the Unix epoch. Live events are
    /// converted from `CLOCK_BOOTTIME` at the edge; capture files carry it already.
    pub ts_ns: u64,
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// TCP sequence number of the first payload byte (of the SYN itself for a SYN).
    pub seq: u32,
    /// TCP acknowledgement number.
    pub ack: u32,
    /// TCP flags, as in `sensor_common::tcp_flags`.
    pub flags: u8,
    /// True payload length of the segment on the wire.
    pub payload_len: u32,
    /// The captured prefix of the payload, `payload.len() <= payload_len`. The bytes between
    /// `payload.len()` and `payload_len` were not captured: a known hole, not a loss.
    pub payload: &'a [u8],
    /// For a client SYN (SYN without ACK, to the server), what its IP and TCP headers say about
    /// the client's TCP stack (`syn_flags::PARSED` set): the kernel's control record carries it
    /// live, the replay reads it from the captured headers. `None` for every other segment.
    pub syn: Option<sensor_common::SynOptions>,
}

/// A piece of one direction of a reassembled TCP stream, delivered in stream order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// Contiguous stream bytes.
    Data(&'a [u8]),
    /// `len` bytes that were on the wire but not captured (the kernel copies at most a capped
    /// prefix of each segment). Their length is exact, so a parser skipping a body stays in
    /// sync.
    Uncaptured(u32),
    /// Bytes that were never seen (loss, eviction, reassembly window overflow). A parser must
    /// resynchronise at the next request or status line after this.
    Lost(u32),
}

/// Which way a segment flows relative to the HTTP server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dir {
    /// Client to server: requests.
    ToServer,
    /// Server to client: responses.
    ToClient,
}
