//! One HTTP/1.x connection: two half-connection state machines (requests, responses) fed with
//! reassembled chunks, and the queue that pairs responses with requests in order.
//!
//! Each half is in one of four states: waiting for a head, inside a body, resynchronising
//! after bytes it could not follow, or tunnelling (after `CONNECT` or `101`). A head that fits
//! in one chunk is parsed in place; only a head spanning chunks is copied, into a buffer capped
//! at `limits.max_head_bytes` and released as soon as it is empty. Bodies are never buffered,
//! except the first `limits.max_login_body_bytes` of a login request.
//!
//! A head that is invalid or too large still yields a transaction (flagged), then the half
//! resynchronises from the head's second byte: it scans for the next plausible request or
//! status line. Bytes already buffered are replayed through the same machine, so the result
//! does not depend on how the stream was cut into chunks.

use std::collections::VecDeque;
use std::mem::{self, MaybeUninit};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::{cmp, fmt};

use crate::segment::{Chunk, Dir};

use super::config::{HttpConfig, LoginRule};
use super::fingerprint::RequestFingerprint;
use super::head::{self, MethodKind, RequestHead};
use super::identity::{self, BodyKind};
use super::parser::{self, ChunkEvent, Chunked, Framing};
use super::proxy::{self, ProxyHeader};
use super::reuse::Pools;
use super::transaction::{Flag, Flags, LoginOutcome, ProxyVia, Transaction};
use super::transport::TransportFingerprint;

/// Most header slots handed to httparse (the configured `max_headers` is clamped to this).
pub const MAX_HEADERS: usize = 256;
/// Bytes kept between chunks while resynchronising, so a start line cut by a chunk boundary
/// is still found.
const RESYNC_TAIL: usize = 1024;
/// Buffered heads up to this size are parsed again on every piece.
const EAGER_HEAD: usize = 2048;
/// Smallest and largest accepted `max_head_bytes`.
const HEAD_BYTES_RANGE: (usize, usize) = (64, 1 << 20);

/// The two endpoints of a connection, as the analyzer knows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnMeta {
    /// The client side (the direct TCP peer that connected).
    pub client: SocketAddr,
    /// The server side.
    pub server: SocketAddr,
}

/// A request that ended, reported before its response when asked for
/// ([`HttpConn::on_chunk_watching`]): what blocking a connection as its request arrives needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestEnd {
    /// When its head started, ns.
    pub ts_ns: u64,
    /// The client, as the transaction will name it.
    pub client: IpAddr,
    /// The TCP peer's side of the connection.
    pub peer: SocketAddr,
    /// The server's side.
    pub server: SocketAddr,
    /// Its request fingerprint.
    pub fingerprint: Option<RequestFingerprint>,
    /// The connection's transport fingerprint (set by the analyzer, which has the SYN).
    pub transport: Option<TransportFingerprint>,
}

/// The HTTP/1.x parser of one connection.
pub struct HttpConn {
    cfg: Arc<HttpConfig>,
    meta: ConnMeta,
    /// Client address from a trusted PROXY header.
    proxied: Option<IpAddr>,
    /// Whether the start of the request stream was checked for a PROXY header.
    proxy_checked: bool,
    next_seq: u32,
    req: Half,
    resp: Half,
    pending: VecDeque<Pending>,
}

impl fmt::Debug for HttpConn {
    /// Shows states and sizes only: buffers may hold credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConn")
            .field("meta", &self.meta)
            .field("proxied", &self.proxied)
            .field("req", &self.req)
            .field("resp", &self.resp)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// One direction of the connection.
#[derive(Default)]
struct Half {
    state: State,
    /// Partial head (state `Head`), resync tail (state `Resync`) or login body (state `Body`).
    buf: Vec<u8>,
    /// Time of the first byte of the current head.
    head_ts: u64,
    /// Wire bytes of the current message so far.
    msg_bytes: u64,
    /// Sequence number of the pending entry the current message belongs to.
    entry: Option<u32>,
    /// Flags for the next message of this direction.
    flags: Flags,
    /// Whether bytes were skipped since the last message.
    skipped: bool,
    /// Resynchronise after the current body instead of expecting a head (bytes were lost in
    /// it, so its end is not trusted to be a message boundary).
    resync_after: bool,
    /// Encoding of the login body being captured.
    capture: Option<BodyKind>,
    /// Whether the captured body is cut (hole or size cap).
    capture_cut: bool,
}

impl fmt::Debug for Half {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Half")
            .field("state", &self.state)
            .field("buffered", &self.buf.len())
            .field("msg_bytes", &self.msg_bytes)
            .field("flags", &self.flags)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    #[default]
    Head,
    Body(Body),
    Resync,
    Tunnel,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
}

/// The pools of spent records and buffers that connections write new transactions into (see
/// `reuse.rs`).
pub type Reuse = Pools<Pending>;

/// A request waiting for its end, its response, or both. Public only as the element type of
/// [`Reuse`]'s queue pool; its fields stay private.
pub struct Pending {
    seq: u32,
    req_done: bool,
    resp: Progress,
    login: Option<LoginRule>,
    kind: MethodKind,
    /// Boxed: the record is filled where it waits and handed on as a pointer, never copied
    /// (a transaction is a few hundred bytes).
    tx: Box<Transaction>,
}

impl Pending {
    /// Whether this is a request whose response has not started: the oldest such entry is
    /// the one the next response answers.
    fn awaits_response(&self) -> bool {
        self.resp == Progress::NotStarted
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Progress {
    NotStarted,
    Started,
    Done,
}

/// Result of one step of a half's state machine.
struct Step {
    /// Input bytes consumed.
    used: usize,
    /// Bytes to process before the rest of the input (a rejected buffered head, minus its
    /// first byte, or a start line found in the resync tail).
    replay: Option<Vec<u8>>,
}

impl Step {
    fn used(used: usize) -> Self {
        Step { used, replay: None }
    }
}

/// Result of looking at a head candidate.
enum View {
    /// A valid prefix of a head.
    NeedMore,
    /// A PROXY header or a complete head of this many bytes was handled.
    Consumed(usize),
    /// Invalid or too large: a flagged transaction was recorded and the half resynchronises.
    Rejected,
}

/// A head cut by a hole or by the end of the connection, parsed from its complete lines.
#[derive(Clone, Copy)]
struct Salvage {
    flags: Flags,
    wire_len: u64,
}

/// Where a connection's steps put the transactions they complete and take the records they
/// fill.
pub(super) struct Out<'a> {
    /// Completed transactions, in order.
    done: &'a mut Vec<Box<Transaction>>,
    /// Spent records and buffers.
    reuse: &'a mut Reuse,
    /// Requests that end, when asked for.
    watch: Option<Watch<'a>>,
}

/// Which requests to report as they end, and where ([`HttpConn::on_chunk_watching`]).
pub struct Watch<'a> {
    /// Whether a request of this client (as its transaction names it) is reported.
    pub clients: &'a dyn Fn(IpAddr) -> bool,
    /// Where the reported requests go.
    pub ended: &'a mut Vec<RequestEnd>,
}

impl Out<'_> {
    /// Emits a completed transaction.
    fn push(&mut self, tx: Box<Transaction>) {
        self.done.push(tx);
    }
}

impl HttpConn {
    /// A connection with nothing seen yet.
    pub fn new(cfg: Arc<HttpConfig>, meta: ConnMeta) -> Self {
        HttpConn {
            cfg,
            meta,
            proxied: None,
            proxy_checked: false,
            next_seq: 0,
            req: Half::default(),
            resp: Half::default(),
            pending: VecDeque::new(),
        }
    }

    /// Feeds reassembled bytes of one direction; completed transactions are pushed to `out`.
    pub fn on_chunk(&mut self, dir: Dir, ts_ns: u64, chunk: Chunk<'_>, out: &mut Vec<Transaction>) {
        let mut done = Vec::new();
        self.on_chunk_reusing(dir, ts_ns, chunk, &mut done, &mut Reuse::default());
        out.extend(done.into_iter().map(|tx| *tx));
    }

    /// [`HttpConn::on_chunk`], writing new records into the spent ones of `reuse` and handing
    /// the connection's idle buffers to it.
    pub fn on_chunk_reusing(
        &mut self,
        dir: Dir,
        ts_ns: u64,
        chunk: Chunk<'_>,
        done: &mut Vec<Box<Transaction>>,
        reuse: &mut Reuse,
    ) {
        self.on_chunk_out(
            dir,
            ts_ns,
            chunk,
            &mut Out {
                done,
                reuse,
                watch: None,
            },
        );
    }

    /// [`HttpConn::on_chunk_reusing`] that also reports each request of a client `watch` names,
    /// as the request ends (before its response, usually).
    pub fn on_chunk_watching(
        &mut self,
        dir: Dir,
        ts_ns: u64,
        chunk: Chunk<'_>,
        done: &mut Vec<Box<Transaction>>,
        reuse: &mut Reuse,
        watch: Watch<'_>,
    ) {
        let out = &mut Out {
            done,
            reuse,
            watch: Some(watch),
        };
        self.on_chunk_out(dir, ts_ns, chunk, out);
    }

    fn on_chunk_out(&mut self, dir: Dir, ts_ns: u64, chunk: Chunk<'_>, out: &mut Out<'_>) {
        match chunk {
            Chunk::Data(data) => self.feed(dir, ts_ns, data, out),
            Chunk::Uncaptured(n) => self.on_hole(dir, ts_ns, u64::from(n), false, out),
            Chunk::Lost(n) => self.on_hole(dir, ts_ns, u64::from(n), true, out),
        }
        self.release_idle(dir, out.reuse);
    }

    /// Connection closed (FIN, RST, idle, evicted): finishes what can be finished and emits
    /// every request still waiting, without a status when no response was seen. The
    /// connection is then empty and may be dropped.
    pub fn on_close(&mut self, ts_ns: u64, out: &mut Vec<Transaction>) {
        let mut done = Vec::new();
        self.on_close_reusing(ts_ns, &mut done, &mut Reuse::default());
        out.extend(done.into_iter().map(|tx| *tx));
    }

    /// [`HttpConn::on_close`], with spent records and buffers as in
    /// [`HttpConn::on_chunk_reusing`].
    pub fn on_close_reusing(
        &mut self,
        ts_ns: u64,
        done: &mut Vec<Box<Transaction>>,
        reuse: &mut Reuse,
    ) {
        let out = &mut Out {
            done,
            reuse,
            watch: None,
        };
        for dir in [Dir::ToServer, Dir::ToClient] {
            let incomplete = incomplete_flag(dir);
            if self.settle_buffered_head(dir, ts_ns, out) {
                self.salvage(dir, Flags::from([Flag::HeadTruncated, incomplete]), 0, out);
            }
            let half = self.half(dir);
            match half.state {
                State::Body(Body::UntilClose) => self.finish(dir, out),
                State::Body(_) => {
                    self.flag_current(dir, incomplete);
                    self.finish(dir, out);
                }
                State::Resync if half.entry.is_some() => self.finish(dir, out),
                _ => {}
            }
        }
        out.done.extend(self.pending.drain(..).map(|p| p.tx));
        out.reuse.put_queue(mem::take(&mut self.pending));
        self.req = Half::default();
        self.resp = Half::default();
    }

    /// Heap and inline bytes held by this connection (the shared configuration excluded).
    pub fn memory(&self) -> usize {
        mem::size_of::<Self>()
            + self.req.buf.capacity()
            + self.resp.buf.capacity()
            + self.pending.capacity() * mem::size_of::<Pending>()
            + self
                .pending
                .iter()
                .map(|p| mem::size_of::<Transaction>() + p.tx.heap_bytes())
                .sum::<usize>()
    }

    fn half(&mut self, dir: Dir) -> &mut Half {
        match dir {
            Dir::ToServer => &mut self.req,
            Dir::ToClient => &mut self.resp,
        }
    }

    fn max_head(&self) -> usize {
        self.cfg
            .limits
            .max_head_bytes
            .clamp(HEAD_BYTES_RANGE.0, HEAD_BYTES_RANGE.1)
    }

    /// Drops empty buffers so an idle connection holds no heap memory (an empty request queue
    /// goes to `reuse`).
    fn release_idle(&mut self, dir: Dir, reuse: &mut Reuse) {
        let half = self.half(dir);
        if half.buf.is_empty() {
            if half.buf.capacity() > 0 {
                half.buf = Vec::new();
            }
        } else if half.buf.capacity() > 2 * half.buf.len() + 4096 {
            half.buf.shrink_to_fit();
        }
        if self.pending.is_empty() && self.pending.capacity() > 0 {
            reuse.put_queue(mem::take(&mut self.pending));
        }
    }

    /// Runs the state machine over `data`, then over any bytes it hands back for replay.
    fn feed(&mut self, dir: Dir, ts: u64, data: &[u8], out: &mut Out<'_>) {
        let mut rest = data;
        let mut stalls = 0u8;
        while !rest.is_empty() {
            let step = self.step(dir, ts, rest, out);
            let stalled = step.used == 0 && step.replay.is_none();
            if let Some(replay) = step.replay {
                self.feed_replay(dir, ts, replay, out);
            }
            rest = rest.get(step.used..).unwrap_or_default();
            if !self.progressed(stalled, &mut stalls) {
                break;
            }
        }
    }

    /// Like `feed`, over an owned buffer that may itself be extended by nested replays.
    fn feed_replay(&mut self, dir: Dir, ts: u64, mut replay: Vec<u8>, out: &mut Out<'_>) {
        let mut pos = 0;
        let mut stalls = 0u8;
        while pos < replay.len() {
            let step = self.step(dir, ts, replay.get(pos..).unwrap_or_default(), out);
            let stalled = step.used == 0 && step.replay.is_none();
            pos = cmp::min(pos + step.used, replay.len());
            if let Some(mut inner) = step.replay {
                // The inner bytes come before what is left of this replay.
                inner.extend_from_slice(replay.get(pos..).unwrap_or_default());
                replay = inner;
                pos = 0;
            }
            if !self.progressed(stalled, &mut stalls) {
                break;
            }
        }
    }

    /// A step may consume nothing when it only changes state (resync found a start line at
    /// the first byte); a few in a row mean a bug, and the input is dropped rather than
    /// looping forever.
    fn progressed(&self, stalled: bool, stalls: &mut u8) -> bool {
        if !stalled {
            *stalls = 0;
            return true;
        }
        *stalls += 1;
        debug_assert!(*stalls < 4, "http parser made no progress: {self:?}");
        *stalls < 4
    }

    fn step(&mut self, dir: Dir, ts: u64, input: &[u8], out: &mut Out<'_>) -> Step {
        match self.half(dir).state {
            State::Head => self.step_head(dir, ts, input, out),
            State::Body(_) => Step::used(self.step_body(dir, input, out)),
            State::Resync => self.step_resync(dir, input, out),
            State::Tunnel => Step::used(input.len()),
        }
    }

    fn step_head(&mut self, dir: Dir, ts: u64, input: &[u8], out: &mut Out<'_>) -> Step {
        let max = self.max_head();
        let proxy_pending = dir == Dir::ToServer && !self.proxy_checked;
        if self.half(dir).buf.is_empty() {
            if !proxy_pending {
                // Empty lines between messages are allowed noise.
                let noise = input
                    .iter()
                    .take_while(|b| matches!(b, b'\r' | b'\n'))
                    .count();
                if noise > 0 {
                    return Step::used(noise);
                }
            }
            self.half(dir).head_ts = ts;
            let view = input.get(..input.len().min(max)).unwrap_or_default();
            return match self.head_view(dir, view, None, out) {
                View::Consumed(n) => Step::used(n),
                View::Rejected => Step::used(1),
                View::NeedMore => {
                    self.half(dir).buf.extend_from_slice(view);
                    Step::used(view.len())
                }
            };
        }
        let half = self.half(dir);
        let old = half.buf.len();
        let take = input.len().min(max.saturating_sub(old));
        let fresh = input.get(..take).unwrap_or_default();
        half.buf.extend_from_slice(fresh);
        // Parse again when httparse could say something new: a line was completed, a byte
        // invalid anywhere in a head arrived, the buffer is full, or a PROXY header may be
        // complete. Heads up to `EAGER_HEAD` bytes are parsed on every piece, so an error is
        // seen as soon as it arrives; beyond, this keeps a head trickling in byte by byte from
        // costing quadratic time.
        let ready = proxy_pending
            || half.buf.len() >= max
            || half.buf.len() <= EAGER_HEAD
            || fresh
                .iter()
                .any(|b| *b == b'\n' || (b.is_ascii_control() && !matches!(b, b'\t' | b'\r')));
        if !ready {
            return Step::used(take);
        }
        let mut buf = mem::take(&mut half.buf);
        match self.head_view(dir, &buf, None, out) {
            View::Consumed(n) if n >= old => {
                buf.clear();
                self.half(dir).buf = buf;
                Step::used(cmp::min(n - old, take))
            }
            View::Consumed(n) => {
                // Defensive: a head ending inside the old bytes would have been parsed when
                // they arrived. Replay what follows it, then the whole input.
                let replay = buf.get(n..old).unwrap_or_default().to_vec();
                Step {
                    used: 0,
                    replay: Some(replay),
                }
            }
            View::Rejected => {
                buf.drain(..cmp::min(1, buf.len()));
                Step {
                    used: take,
                    replay: Some(buf),
                }
            }
            View::NeedMore => {
                self.half(dir).buf = buf;
                Step::used(take)
            }
        }
    }

    /// Looks at a head candidate: a PROXY header first on the request side, then the request
    /// or response head.
    fn head_view(
        &mut self,
        dir: Dir,
        view: &[u8],
        salvage: Option<Salvage>,
        out: &mut Out<'_>,
    ) -> View {
        if dir == Dir::ToServer && !self.proxy_checked {
            if salvage.is_some() {
                self.proxy_checked = true;
            } else {
                match proxy::parse_header(view, self.max_head()) {
                    ProxyHeader::Absent => self.proxy_checked = true,
                    ProxyHeader::NeedMore => return View::NeedMore,
                    ProxyHeader::Present { len, source } => {
                        self.proxy_checked = true;
                        self.on_proxy_header(source);
                        return View::Consumed(len);
                    }
                    ProxyHeader::Invalid => {
                        self.proxy_checked = true;
                        let flag = if self.cfg.is_trusted(self.meta.client.ip()) {
                            Flag::InvalidForwarded
                        } else {
                            Flag::ForwardedFromUntrusted
                        };
                        self.req.flags.insert(flag);
                    }
                }
            }
        }
        match dir {
            Dir::ToServer => self.request_view(view, salvage, out),
            Dir::ToClient => self.response_view(view, salvage, out),
        }
    }

    fn on_proxy_header(&mut self, source: Option<SocketAddr>) {
        if self.cfg.is_trusted(self.meta.client.ip()) {
            if let Some(source) = source {
                self.proxied = Some(source.ip().to_canonical());
            }
        } else {
            self.req.flags.insert(Flag::ForwardedFromUntrusted);
        }
    }

    fn header_slots(&self) -> usize {
        self.cfg.limits.max_headers.clamp(1, MAX_HEADERS)
    }

    fn request_view(&mut self, view: &[u8], salvage: Option<Salvage>, out: &mut Out<'_>) -> View {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let slots = slots.get_mut(..self.header_slots()).unwrap_or_default();
        let mut req = httparse::Request::new(&mut []);
        let parsed = req.parse_with_uninit_headers(view, slots);
        let extra = salvage.map_or(Flags::EMPTY, |s| s.flags);
        match parsed {
            Ok(httparse::Status::Complete(len)) => {
                let head = RequestHead {
                    method: req.method.unwrap_or_default(),
                    target: req.path.unwrap_or_default(),
                    minor: req.version.unwrap_or(1),
                    headers: req.headers,
                };
                self.on_request(len as u64, &head, salvage, out);
                View::Consumed(len)
            }
            Ok(httparse::Status::Partial) if salvage.is_none() && view.len() < self.max_head() => {
                View::NeedMore
            }
            Ok(httparse::Status::Partial) => {
                let mut flags = extra;
                if salvage.is_none() {
                    flags.insert(Flag::HeadTooLarge);
                }
                self.reject_request(req.method, req.path, flags, salvage, out);
                View::Rejected
            }
            Err(httparse::Error::TooManyHeaders) => {
                let mut flags = extra;
                flags.insert(Flag::TooManyHeaders);
                self.reject_request(req.method, req.path, flags, salvage, out);
                View::Rejected
            }
            Err(_) => {
                let mut flags = extra;
                flags.extend(self.invalid_head_flags(view, true));
                let (method, path) = (req.method, req.path);
                self.reject_request(method, path, flags, salvage, out);
                View::Rejected
            }
        }
    }

    fn response_view(&mut self, view: &[u8], salvage: Option<Salvage>, out: &mut Out<'_>) -> View {
        // The record this response completes was filled a while ago and is likely out of the
        // cache: read it now, so that the load overlaps httparse's work on the head instead
        // of stalling the code that writes the response fields.
        std::hint::black_box(
            self.pending
                .iter()
                .find(|p| p.awaits_response())
                .map(|p| p.tx.latency_ns),
        );
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let slots = slots.get_mut(..self.header_slots()).unwrap_or_default();
        let mut resp = httparse::Response::new(&mut []);
        let parsed = response_parser().parse_response_with_uninit_headers(&mut resp, view, slots);
        let extra = salvage.map_or(Flags::EMPTY, |s| s.flags);
        match parsed {
            Ok(httparse::Status::Complete(len)) => {
                let code = resp.code.unwrap_or_default();
                let reason = resp.reason.unwrap_or_default();
                let facts = head::response(&self.cfg, code, reason, resp.headers);
                self.on_response(len as u64, code, facts, resp.headers, salvage, out);
                View::Consumed(len)
            }
            Ok(httparse::Status::Partial) if salvage.is_none() && view.len() < self.max_head() => {
                View::NeedMore
            }
            Ok(httparse::Status::Partial) => {
                let mut flags = extra;
                if salvage.is_none() {
                    flags.insert(Flag::HeadTooLarge);
                }
                self.reject_response(resp.code, flags, salvage, out);
                View::Rejected
            }
            Err(httparse::Error::TooManyHeaders) => {
                let mut flags = extra;
                flags.insert(Flag::TooManyHeaders);
                self.reject_response(resp.code, flags, salvage, out);
                View::Rejected
            }
            Err(_) => {
                let mut flags = extra;
                flags.extend(self.invalid_head_flags(view, false));
                let code = resp.code;
                self.reject_response(code, flags, salvage, out);
                View::Rejected
            }
        }
    }

    /// Flags for a head httparse rejected: invalid, plus NUL bytes and smuggling-shaped header
    /// names found up to the rejected byte (so the flags do not depend on chunking).
    fn invalid_head_flags(&self, view: &[u8], request: bool) -> Flags {
        let slots_len = self.header_slots();
        let fails = |len: usize| -> bool {
            let Some(prefix) = view.get(..len) else {
                return false;
            };
            let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let slots = slots.get_mut(..slots_len).unwrap_or_default();
            if request {
                httparse::Request::new(&mut [])
                    .parse_with_uninit_headers(prefix, slots)
                    .is_err()
            } else {
                response_parser()
                    .parse_response_with_uninit_headers(
                        &mut httparse::Response::new(&mut []),
                        prefix,
                        slots,
                    )
                    .is_err()
            }
        };
        // httparse checks bytes as they come, so failing is monotonic in the prefix length:
        // bisect for the shortest failing prefix.
        let (mut ok, mut bad) = (0, view.len());
        while bad - ok > 1 {
            let mid = ok + (bad - ok) / 2;
            if fails(mid) {
                bad = mid;
            } else {
                ok = mid;
            }
        }
        let seen = view.get(..bad).unwrap_or_default();
        let mut flags = Flags::from([if request {
            Flag::InvalidRequest
        } else {
            Flag::InvalidResponse
        }]);
        if memchr::memchr(0, seen).is_some() {
            flags.insert(Flag::NulByte);
        }
        let line_start = memchr::memrchr(b'\n', seen).map_or(0, |i| i + 1);
        let line = proxy::trim_ows(seen.get(line_start..).unwrap_or_default());
        let starts = |name: &[u8]| {
            line.get(..name.len())
                .is_some_and(|l| l.eq_ignore_ascii_case(name))
        };
        if starts(b"transfer-encoding") {
            flags.insert(Flag::ObfuscatedTransferEncoding);
        } else if starts(b"content-length") {
            flags.insert(Flag::InvalidContentLength);
        }
        flags
    }

    /// Records a request head that was parsed.
    fn on_request(
        &mut self,
        len: u64,
        head: &RequestHead<'_, '_>,
        salvage: Option<Salvage>,
        out: &mut Out<'_>,
    ) {
        let base = out
            .reuse
            .record(self.req.head_ts, self.meta.client, self.meta.server);
        let start = self.proxied.unwrap_or(self.meta.client.ip());
        // The record is filled in where it waits in the queue: a transaction is a few hundred
        // bytes, and every move of it is a copy.
        let seq = self.push_entry(base, MethodKind::Other, None, out);
        let Some(p) = entry_mut(&mut self.pending, seq) else {
            return;
        };
        let facts = head::request(&self.cfg, &mut p.tx, start, head, out.reuse);
        p.tx.proxy = if p.tx.client == start {
            self.proxied.map(|_| ProxyVia::ProxyProtocol)
        } else {
            Some(ProxyVia::Forwarded)
        };
        p.tx.flags.extend(mem::take(&mut self.req.flags));
        if let Some(s) = salvage {
            p.tx.flags.extend(s.flags);
        }
        p.kind = facts.kind;
        // A login route or path rule matched in the head wins; else a Basic credential may
        // make this request a login attempt (its body is not captured: the account is the
        // Basic user).
        p.login = facts.login.or_else(|| {
            let basic = identity::basic_login(&self.cfg, p.tx.account.as_deref(), head.headers);
            if basic.is_some() {
                p.tx.login = Some(LoginOutcome::Unknown);
            }
            basic
        });
        self.req.msg_bytes = salvage.map_or(len, |s| s.wire_len);
        self.req.entry = Some(seq);
        if salvage.is_some() {
            self.finish_request(out);
            self.req.state = State::Resync;
            return;
        }
        if facts.kind == MethodKind::Connect {
            self.finish_request(out);
            self.req.state = State::Tunnel;
            return;
        }
        let capture = facts.login.map(|_| facts.body_kind);
        match facts.framing {
            Framing::None => self.finish_request(out),
            Framing::Length(n) => self.start_body(Dir::ToServer, Body::Length(n), capture),
            Framing::Chunked => {
                self.start_body(Dir::ToServer, Body::Chunked(Chunked::new()), capture);
            }
            Framing::UntilClose | Framing::Unknown => {
                self.finish_request(out);
                self.req.state = State::Resync;
            }
        }
    }

    fn start_body(&mut self, dir: Dir, body: Body, capture: Option<BodyKind>) {
        let half = self.half(dir);
        half.state = State::Body(body);
        half.capture = capture;
        half.capture_cut = false;
        half.buf.clear();
    }

    /// Records a request head that could not be parsed (or was cut): a flagged transaction
    /// with whatever the start line gave.
    fn reject_request(
        &mut self,
        method: Option<&str>,
        target: Option<&str>,
        flags: Flags,
        salvage: Option<Salvage>,
        out: &mut Out<'_>,
    ) {
        let mut tx = out
            .reuse
            .record(self.req.head_ts, self.meta.client, self.meta.server);
        tx.client = self.proxied.unwrap_or(self.meta.client.ip());
        tx.proxy = self.proxied.map(|_| ProxyVia::ProxyProtocol);
        if let Some(method) = method {
            tx.method = parser::method_name(method).0;
        }
        if let Some(target) = target {
            head::fill_target(&mut tx, target);
        }
        tx.flags = flags;
        tx.flags.extend(mem::take(&mut self.req.flags));
        let seq = self.push_entry(tx, MethodKind::Other, None, out);
        self.req.entry = Some(seq);
        if let Some(s) = salvage {
            self.req.msg_bytes = s.wire_len;
            self.finish_request(out);
        } else {
            // The rejected head stays this message until the next start line is found.
            self.req.msg_bytes = 1;
            self.req.skipped = false;
        }
        self.req.state = State::Resync;
    }

    /// Records a response head that was parsed.
    fn on_response(
        &mut self,
        len: u64,
        code: u16,
        facts: head::ResponseFacts<'_>,
        headers: &[httparse::Header<'_>],
        salvage: Option<Salvage>,
        out: &mut Out<'_>,
    ) {
        let head_ts = self.resp.head_ts;
        self.resp.msg_bytes += salvage.map_or(len, |s| s.wire_len);
        if (100..200).contains(&code) && code != 101 {
            // Interim response: its bytes count toward the final one.
            if let Some(s) = salvage {
                self.resp.flags.extend(s.flags);
                self.resp.state = State::Resync;
            }
            return;
        }
        let seq = self.bind_response(out);
        // Borrowed beside the queue entry below (disjoint fields), not cloned: an `Arc` clone
        // is two atomic operations per response.
        let cfg: &HttpConfig = &self.cfg;
        let mut flags = mem::take(&mut self.resp.flags);
        if let Some(s) = salvage {
            flags.extend(s.flags);
        }
        let Some(p) = entry_mut(&mut self.pending, seq) else {
            return;
        };
        let kind = p.kind;
        let tx = &mut p.tx;
        tx.status = Some(code);
        tx.reason = facts.reason;
        if !tx.flags.contains(Flag::UnmatchedResponse) {
            tx.latency_ns = Some(head_ts.saturating_sub(tx.ts_ns));
        }
        if tx.session.is_none()
            && let Some(value) = facts.new_session
        {
            tx.session = Some(identity::session_hash(&cfg.hash_key, value));
        }
        if let Some(login) = p.login.and_then(|i| cfg.login(i)) {
            tx.login = Some(identity::login_outcome(
                cfg,
                login,
                Some(code),
                &facts.set_cookies,
            ));
        }
        tx.set_cookies = facts.set_cookies;
        let framing = if salvage.is_some() {
            Framing::Unknown
        } else if code == 101 || (kind == MethodKind::Connect && (200..300).contains(&code)) {
            self.resp.entry = Some(seq);
            self.finish_response(out);
            self.resp.state = State::Tunnel;
            if self.req.state == State::Head {
                self.req.state = State::Tunnel;
                self.req.buf = Vec::new();
            }
            return;
        } else if kind == MethodKind::Head || code == 204 || code == 304 {
            Framing::None
        } else {
            parser::body_framing(headers, false, &mut flags)
        };
        if let Some(p) = entry_mut(&mut self.pending, seq) {
            p.tx.flags.extend(flags);
        }
        self.resp.entry = Some(seq);
        match framing {
            Framing::None => self.finish_response(out),
            Framing::Length(n) => self.start_body(Dir::ToClient, Body::Length(n), None),
            Framing::Chunked => self.start_body(Dir::ToClient, Body::Chunked(Chunked::new()), None),
            Framing::UntilClose => self.start_body(Dir::ToClient, Body::UntilClose, None),
            Framing::Unknown => {
                self.finish_response(out);
                self.resp.state = State::Resync;
            }
        }
    }

    /// The pending entry the next response answers: the oldest request without a response,
    /// or a new entry flagged `unmatched_response`. Marks it as answered.
    fn bind_response(&mut self, out: &mut Out<'_>) -> u32 {
        if let Some(p) = self.pending.iter_mut().find(|p| p.awaits_response()) {
            p.resp = Progress::Started;
            return p.seq;
        }
        let mut tx = out
            .reuse
            .record(self.resp.head_ts, self.meta.client, self.meta.server);
        tx.client = self.proxied.unwrap_or(self.meta.client.ip());
        tx.proxy = self.proxied.map(|_| ProxyVia::ProxyProtocol);
        tx.flags.insert(Flag::UnmatchedResponse);
        let seq = self.push_entry(tx, MethodKind::Other, None, out);
        if let Some(p) = entry_mut(&mut self.pending, seq) {
            p.req_done = true;
            p.resp = Progress::Started;
        }
        seq
    }

    /// Records a response head that could not be parsed (or was cut).
    fn reject_response(
        &mut self,
        code: Option<u16>,
        flags: Flags,
        salvage: Option<Salvage>,
        out: &mut Out<'_>,
    ) {
        let seq = self.bind_response(out);
        let mut all = flags;
        all.extend(mem::take(&mut self.resp.flags));
        if let Some(p) = entry_mut(&mut self.pending, seq) {
            p.tx.status = code;
            p.tx.flags.extend(all);
            if code.is_some() && !p.tx.flags.contains(Flag::UnmatchedResponse) {
                p.tx.latency_ns = Some(self.resp.head_ts.saturating_sub(p.tx.ts_ns));
            }
        }
        self.resp.entry = Some(seq);
        if let Some(s) = salvage {
            self.resp.msg_bytes += s.wire_len;
            self.finish_response(out);
        } else {
            self.resp.msg_bytes += 1;
            self.resp.skipped = false;
        }
        self.resp.state = State::Resync;
    }

    /// Adds a request to the queue, emitting the oldest ones beyond `limits.max_pending`.
    fn push_entry(
        &mut self,
        tx: Box<Transaction>,
        kind: MethodKind,
        login: Option<LoginRule>,
        out: &mut Out<'_>,
    ) -> u32 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        if self.pending.capacity() == 0 {
            self.pending = out.reuse.queue();
            // Most connections have one request in flight: do not allocate room for four.
            self.pending.reserve_exact(1);
        }
        self.pending.push_back(Pending {
            seq,
            req_done: false,
            resp: Progress::NotStarted,
            login,
            kind,
            tx,
        });
        let max = self.cfg.limits.max_pending.max(2);
        while self.pending.len() > max {
            let Some(mut p) = self.pending.pop_front() else {
                break;
            };
            for half in [&mut self.req, &mut self.resp] {
                if half.entry == Some(p.seq) {
                    half.entry = None;
                }
            }
            p.tx.flags.insert(Flag::PendingOverflow);
            out.push(p.tx);
        }
        seq
    }

    fn step_body(&mut self, dir: Dir, input: &[u8], out: &mut Out<'_>) -> usize {
        let max_capture = self.cfg.limits.max_login_body_bytes;
        let max_trailers = u32::try_from(self.max_head()).unwrap_or(u32::MAX);
        let Half {
            state,
            buf,
            capture,
            capture_cut,
            msg_bytes,
            ..
        } = self.half(dir);
        let mut keep = |data: &[u8]| {
            if capture.is_none() || *capture_cut {
                return;
            }
            let room = max_capture.saturating_sub(buf.len());
            if data.len() > room {
                *capture_cut = true;
            }
            buf.extend_from_slice(data.get(..data.len().min(room)).unwrap_or_default());
        };
        let (used, event) = match state {
            State::Body(Body::Length(remaining)) => {
                let n = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                keep(input.get(..n).unwrap_or_default());
                *remaining -= n as u64;
                (
                    n,
                    if *remaining == 0 {
                        ChunkEvent::Done
                    } else {
                        ChunkEvent::More
                    },
                )
            }
            State::Body(Body::Chunked(decoder)) => decoder.feed(input, max_trailers, &mut keep),
            State::Body(Body::UntilClose) => (input.len(), ChunkEvent::More),
            _ => (0, ChunkEvent::More),
        };
        *msg_bytes += used as u64;
        match event {
            ChunkEvent::More => {}
            ChunkEvent::Done => self.finish(dir, out),
            ChunkEvent::Invalid => {
                self.flag_current(dir, Flag::InvalidChunked);
                self.finish(dir, out);
                self.half(dir).state = State::Resync;
            }
        }
        used
    }

    fn step_resync(&mut self, dir: Dir, input: &[u8], out: &mut Out<'_>) -> Step {
        let find = match dir {
            Dir::ToServer => parser::find_request_line,
            Dir::ToClient => parser::find_status_line,
        };
        let half = self.half(dir);
        let tail_len = half.buf.len();
        if tail_len > 0 {
            // A start line may begin in the tail kept from the previous chunk.
            let prefix = input.len().min(RESYNC_TAIL);
            half.buf
                .extend_from_slice(input.get(..prefix).unwrap_or_default());
            if let Some(start) = find(&half.buf).filter(|s| *s < tail_len) {
                let mut replay = mem::take(&mut half.buf);
                replay.drain(..start);
                half.skipped |= start > 0;
                half.msg_bytes =
                    (half.msg_bytes + prefix as u64).saturating_sub(replay.len() as u64);
                self.end_resync(dir, out);
                return Step {
                    used: prefix,
                    replay: Some(replay),
                };
            }
            half.buf.truncate(tail_len);
        }
        if let Some(start) = find(input) {
            half.skipped |= start > 0 || tail_len > 0;
            half.msg_bytes += start as u64;
            half.buf.clear();
            self.end_resync(dir, out);
            return Step::used(start);
        }
        half.msg_bytes += input.len() as u64;
        let kept = RESYNC_TAIL.min(tail_len + input.len());
        half.skipped |= tail_len + input.len() > kept;
        if input.len() >= RESYNC_TAIL {
            half.buf.clear();
            half.buf
                .extend_from_slice(input.get(input.len() - RESYNC_TAIL..).unwrap_or_default());
        } else {
            half.buf.extend_from_slice(input);
            let excess = half.buf.len().saturating_sub(RESYNC_TAIL);
            half.buf.drain(..excess);
        }
        Step::used(input.len())
    }

    /// A start line was found: finish the message that was being skipped, if any, and flag
    /// the next one when bytes were skipped before it.
    fn end_resync(&mut self, dir: Dir, out: &mut Out<'_>) {
        if self.half(dir).entry.is_some() {
            self.finish(dir, out);
        }
        let half = self.half(dir);
        if mem::take(&mut half.skipped) {
            half.flags.insert(Flag::Resync);
        }
        half.state = State::Head;
        half.resync_after = false;
    }

    /// Bytes that exist but were not seen: skipped by length inside a body, otherwise the end
    /// of what can be followed.
    fn on_hole(&mut self, dir: Dir, ts: u64, n: u64, lost: bool, out: &mut Out<'_>) {
        if n == 0 {
            return;
        }
        let incomplete = incomplete_flag(dir);
        let salvage = self.settle_buffered_head(dir, ts, out);
        let state = self.half(dir).state;
        match state {
            State::Head => {
                if salvage {
                    let mut flags = Flags::from([Flag::HeadTruncated, incomplete]);
                    if lost {
                        flags.insert(Flag::Gap);
                    }
                    self.salvage(dir, flags, n, out);
                }
                self.lose_sync(dir);
            }
            State::Body(Body::Length(remaining)) => {
                let skip = n.min(remaining);
                let half = self.half(dir);
                half.state = State::Body(Body::Length(remaining - skip));
                half.msg_bytes += skip;
                half.capture_cut = true;
                if lost {
                    half.resync_after = true;
                    self.flag_current(dir, Flag::Gap);
                }
                if remaining == skip {
                    self.finish(dir, out);
                }
                if n > skip {
                    self.lose_sync(dir);
                }
            }
            State::Body(Body::Chunked(mut decoder)) => {
                if decoder.skip_data(n) {
                    let half = self.half(dir);
                    half.state = State::Body(Body::Chunked(decoder));
                    half.msg_bytes += n;
                    half.capture_cut = true;
                    if lost {
                        self.flag_current(dir, Flag::Gap);
                    }
                } else {
                    self.half(dir).msg_bytes += n;
                    self.flag_current(dir, incomplete);
                    if lost {
                        self.flag_current(dir, Flag::Gap);
                    }
                    self.finish(dir, out);
                    self.lose_sync(dir);
                }
            }
            State::Body(Body::UntilClose) => {
                let half = self.half(dir);
                half.msg_bytes += n;
                half.capture_cut = true;
                if lost {
                    self.flag_current(dir, Flag::Gap);
                }
            }
            State::Resync => {
                let half = self.half(dir);
                if half.entry.is_some() {
                    half.msg_bytes += n;
                }
                if lost {
                    self.flag_current(dir, Flag::Gap);
                }
                self.lose_sync(dir);
            }
            State::Tunnel => {}
        }
    }

    /// Enters resynchronisation after a discontinuity: nothing buffered is contiguous with
    /// what follows.
    fn lose_sync(&mut self, dir: Dir) {
        let half = self.half(dir);
        half.state = State::Resync;
        half.skipped = true;
        half.buf.clear();
    }

    /// Before a buffered head is cut (hole or close): if httparse already rejects it, reject
    /// it exactly as if the rejection had been seen when its bytes arrived, replaying the bytes
    /// after its first. Returns whether a valid partial head is left to salvage.
    fn settle_buffered_head(&mut self, dir: Dir, ts: u64, out: &mut Out<'_>) -> bool {
        // Every round drops at least one buffered byte; the bound is only a safety net.
        for _ in 0..=self.max_head() {
            let half = self.half(dir);
            if half.state != State::Head || half.buf.is_empty() {
                return false;
            }
            let buf = mem::take(&mut half.buf);
            match self.head_view(dir, &buf, None, out) {
                View::NeedMore => {
                    self.half(dir).buf = buf;
                    return true;
                }
                View::Rejected => {
                    self.feed_replay(dir, ts, buf.get(1..).unwrap_or_default().to_vec(), out);
                }
                View::Consumed(n) => {
                    self.feed_replay(dir, ts, buf.get(n..).unwrap_or_default().to_vec(), out);
                }
            }
        }
        false
    }

    /// Parses the complete lines of a buffered head cut by a hole or the end of the
    /// connection, and records it with `flags`.
    fn salvage(&mut self, dir: Dir, flags: Flags, hole: u64, out: &mut Out<'_>) {
        let mut buf = mem::take(&mut self.half(dir).buf);
        let wire_len = buf.len() as u64 + hole;
        // Without a complete line, the partial start line alone still names the method.
        if let Some(nl) = memchr::memrchr(b'\n', &buf) {
            buf.truncate(nl + 1);
            buf.extend_from_slice(b"\r\n");
        }
        let salvage = Salvage { flags, wire_len };
        let _ = self.head_view(dir, &buf, Some(salvage), out);
        let half = self.half(dir);
        half.state = State::Resync;
        half.buf.clear();
    }

    /// Sets `flag` on the transaction of the current message of `dir`.
    fn flag_current(&mut self, dir: Dir, flag: Flag) {
        if let Some(seq) = self.half(dir).entry
            && let Some(p) = entry_mut(&mut self.pending, seq)
        {
            p.tx.flags.insert(flag);
        }
    }

    fn finish(&mut self, dir: Dir, out: &mut Out<'_>) {
        match dir {
            Dir::ToServer => self.finish_request(out),
            Dir::ToClient => self.finish_response(out),
        }
    }

    /// The current request ended: record its size and login account, emit what is complete.
    fn finish_request(&mut self, out: &mut Out<'_>) {
        let half = &mut self.req;
        let seq = half.entry.take();
        let bytes = mem::take(&mut half.msg_bytes);
        let capture = half.capture.take();
        let cut = mem::take(&mut half.capture_cut);
        half.state = if mem::take(&mut half.resync_after) {
            State::Resync
        } else {
            State::Head
        };
        if let Some(p) = seq.and_then(|s| entry_mut(&mut self.pending, s)) {
            p.tx.req_bytes = bytes;
            p.req_done = true;
            if let (Some(kind), Some(login)) = (capture, p.login.and_then(|i| self.cfg.login(i)))
                && let Some(account) =
                    identity::login_account(&self.cfg, login, kind, &half.buf, !cut)
            {
                p.tx.account = Some(account);
            }
            if let Some(w) = out.watch.as_mut()
                && (w.clients)(p.tx.client)
            {
                w.ended.push(RequestEnd {
                    ts_ns: p.tx.ts_ns,
                    client: p.tx.client,
                    peer: p.tx.peer,
                    server: p.tx.server,
                    fingerprint: RequestFingerprint::of(&p.tx),
                    transport: None,
                });
            }
        }
        half.buf.clear();
        self.emit_ready(out);
    }

    /// The current response ended: record its size, emit what is complete.
    fn finish_response(&mut self, out: &mut Out<'_>) {
        let half = &mut self.resp;
        let seq = half.entry.take();
        let bytes = mem::take(&mut half.msg_bytes);
        half.state = if mem::take(&mut half.resync_after) {
            State::Resync
        } else {
            State::Head
        };
        if let Some(p) = seq.and_then(|s| entry_mut(&mut self.pending, s)) {
            p.tx.resp_bytes = bytes;
            p.resp = Progress::Done;
        }
        self.emit_ready(out);
    }

    /// Emits, in request order, the transactions whose request and response both ended.
    fn emit_ready(&mut self, out: &mut Out<'_>) {
        while self
            .pending
            .front()
            .is_some_and(|p| p.req_done && p.resp == Progress::Done)
        {
            if let Some(p) = self.pending.pop_front() {
                out.push(p.tx);
            }
        }
    }
}

/// The pending entry with sequence number `seq` (entries are consecutive from the front).
fn entry_mut(pending: &mut VecDeque<Pending>, seq: u32) -> Option<&mut Pending> {
    let front = pending.front()?.seq;
    let index = seq.wrapping_sub(front) as usize;
    pending.get_mut(index).filter(|p| p.seq == seq)
}

fn incomplete_flag(dir: Dir) -> Flag {
    match dir {
        Dir::ToServer => Flag::IncompleteRequest,
        Dir::ToClient => Flag::IncompleteResponse,
    }
}

/// Responses are parsed leniently (servers are not the attacker here, and browsers accept
/// these shapes); requests are parsed strictly so smuggling shapes are rejected and flagged.
pub fn response_parser() -> httparse::ParserConfig {
    let mut config = httparse::ParserConfig::default();
    config
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_multiple_spaces_in_response_status_delimiters(true);
    config
}
