//! `apisensor replay FILE`: runs a pcap or pcapng capture through the same analyzer as the live
//! agent and prints the transactions, as JSON lines (`--json`) or one compact line each, then a
//! summary line on stderr. A damaged file still prints everything before the damage, then
//! fails.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;

use crate::analyzer::{Analyzer, AnalyzerConfig};
use crate::http::Transaction;
use crate::replay::{ReplaySummary, replay_file_partial};

/// Output bytes gathered before they are written to stdout.
pub const OUT_CHUNK: usize = 1 << 20;
/// Room for one more line beyond [`OUT_CHUNK`] without a reallocation in the common case.
const OUT_SLACK: usize = 1 << 12;

/// Arguments of `apisensor replay`.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Capture file (pcap or pcapng).
    pub file: PathBuf,
    /// Print one JSON object per transaction instead of the compact text line.
    #[arg(long)]
    pub json: bool,
    /// TOML configuration; only its `[analyzer]` table is read (defaults otherwise).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Also write the API inventory learned from the capture (method, host, route template,
    /// counts, status mix, first and last seen) as JSON to this file, as `run --catalogue` does.
    #[arg(long)]
    pub catalogue: Option<PathBuf>,
}

/// Runs the replay and prints its output.
pub fn run(args: &ReplayArgs) -> anyhow::Result<()> {
    let cfg = match &args.config {
        Some(path) => load_config(path)?,
        // The same analyzer settings as the agent's embedded default configuration.
        None => crate::config::Config::default_config().analyzer,
    };
    let mut analyzer = Analyzer::new(cfg);
    analyzer.set_cataloguing(args.catalogue.is_some());
    let mut out = io::stdout().lock();
    grow_stdout_pipe();
    // Transactions are written into one large buffer and handed to stdout whole lines at a
    // time, so no byte is copied twice and stdout's own line buffer is bypassed.
    let mut buf: Vec<u8> = Vec::with_capacity(OUT_CHUNK + OUT_SLACK);
    let mut write_err: Option<io::Error> = None;
    let mut cache = JsonCache::default();
    let (summary, result) = replay_file_partial(&args.file, &mut analyzer, &mut |tx| {
        if write_err.is_some() {
            return;
        }
        if args.json {
            cache.line(tx, &mut buf);
        } else {
            buf.extend_from_slice(human_line(tx).as_bytes());
            buf.push(b'\n');
        }
        if buf.len() >= OUT_CHUNK {
            if let Err(e) = out.write_all(&buf) {
                write_err = Some(e);
            }
            buf.clear();
        }
    });
    if write_err.is_none()
        && let Err(e) = out.write_all(&buf).and_then(|()| out.flush())
    {
        write_err = Some(e);
    }
    eprintln!("{}", summary_line(&args.file, &summary, &analyzer));
    if let Some(path) = &args.catalogue {
        // Written even when the capture is damaged: it holds what was read before the damage.
        let endpoints = analyzer.catalogue().endpoints();
        let json =
            serde_json::to_vec_pretty(&endpoints).context("serializing the API inventory")?;
        std::fs::write(path, json)
            .with_context(|| format!("cannot write the API inventory to {}", path.display()))?;
    }
    result.with_context(|| format!("replay of {} stopped early", args.file.display()))?;
    match write_err {
        // A closed pipe (`apisensor replay x.pcap | head`) is not a failure of the replay.
        Some(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Some(e) => Err(e).context("cannot write the transactions to stdout"),
        None => Ok(()),
    }
}

/// Lets a pipe on stdout hold a whole output chunk, so that handing one over does not block
/// the replay (and wake the reader) once per 64 KiB, the default pipe size.
pub fn grow_stdout_pipe() {
    let size = libc::c_int::try_from(OUT_CHUNK).unwrap_or(libc::c_int::MAX);
    // SAFETY: `F_SETPIPE_SZ` on fd 1 only changes the capacity of a pipe. On anything else, or
    // beyond the system's limit, it fails without effect, and the replay works either way.
    let _ = unsafe { libc::fcntl(libc::STDOUT_FILENO, libc::F_SETPIPE_SZ, size) };
}

/// Reads the `[analyzer]` table of a TOML file; other tables are left to their own commands.
fn load_config(path: &Path) -> anyhow::Result<AnalyzerConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration {}", path.display()))?;
    analyzer_config_from_toml(&text)
        .with_context(|| format!("invalid configuration {}", path.display()))
}

/// Parses the `[analyzer]` table of a TOML document (defaults when absent).
fn analyzer_config_from_toml(text: &str) -> anyhow::Result<AnalyzerConfig> {
    let mut table: toml::Table = toml::from_str(text)?;
    match table.remove("analyzer") {
        Some(value) => Ok(value.try_into().context("in table [analyzer]")?),
        None => Ok(AnalyzerConfig::default()),
    }
}

/// [`JsonCache::line`] with an empty cache.
#[cfg(test)]
fn json_line(tx: &Transaction, buf: &mut Vec<u8>) {
    JsonCache::default().line(tx, buf);
}

/// Slots of each direct-mapped table of a [`JsonCache`], as a power of two.
const CACHE_BITS: u32 = 10;
/// Slots of each direct-mapped table of a [`JsonCache`].
const CACHE_SLOTS: usize = 1 << CACHE_BITS;
/// Longest name list whose JSON text is cached.
const CACHE_MAX_LIST: usize = 256;

/// The JSON text of recently written addresses and name lists. Peers, servers and header
/// orders recur from one transaction to the next, and a hit costs a hash, a comparison and a
/// copy instead of formatting. Each table is direct-mapped with [`CACHE_SLOTS`] slots (a new
/// entry replaces whatever was in its slot), so memory stays bounded; the cache changes
/// speed only, never bytes.
#[derive(Default)]
struct JsonCache {
    /// Socket addresses and their text, without quotes.
    sockets: Vec<Option<(std::net::SocketAddr, Vec<u8>)>>,
    /// IP addresses and their text, without quotes.
    ips: Vec<Option<(std::net::IpAddr, Vec<u8>)>>,
    /// Name lists and their JSON arrays.
    lists: Vec<Option<(String, Vec<u8>)>>,
    /// Hasher of the slot index (a fixed seed: the output does not depend on it).
    hasher: foldhash::fast::FixedState,
}

impl JsonCache {
    /// The slot of `key` in a table, allocating the table on first use.
    fn slot<'a, K: std::hash::Hash, V>(
        hasher: &foldhash::fast::FixedState,
        table: &'a mut Vec<Option<V>>,
        key: &K,
    ) -> Option<&'a mut Option<V>> {
        use std::hash::BuildHasher as _;
        Self::slot_at(table, hasher.hash_one(key))
    }

    /// The slot for a hash in a table (its top bits), allocating the table on first use.
    fn slot_at<V>(table: &mut Vec<Option<V>>, hash: u64) -> Option<&mut Option<V>> {
        if table.is_empty() {
            table.resize_with(CACHE_SLOTS, || None);
        }
        table.get_mut((hash >> (u64::BITS - CACHE_BITS)) as usize)
    }

    /// Appends a socket address as a JSON string.
    fn socket(&mut self, buf: &mut Vec<u8>, addr: std::net::SocketAddr) {
        let hash = addr_hash(addr.ip(), u64::from(addr.port()) << 48);
        buf.push(b'"');
        Self::text_of(&mut self.sockets, hash, addr, buf, socket_text);
        buf.push(b'"');
    }

    /// Appends an IP address as a JSON string.
    fn ip(&mut self, buf: &mut Vec<u8>, ip: std::net::IpAddr) {
        buf.push(b'"');
        Self::text_of(&mut self.ips, addr_hash(ip, 0), ip, buf, ip_text);
        buf.push(b'"');
    }

    /// Appends the text of `key`: from its slot in `table` when cached there, else written by
    /// `write` and cached.
    fn text_of<K: Copy + PartialEq>(
        table: &mut Vec<Option<(K, Vec<u8>)>>,
        hash: u64,
        key: K,
        buf: &mut Vec<u8>,
        write: impl FnOnce(&mut Vec<u8>, K),
    ) {
        match Self::slot_at(table, hash) {
            Some(Some((cached, text))) if *cached == key => put(buf, text),
            Some(slot) => {
                let at = buf.len();
                write(buf, key);
                refill(slot, key, buf.get(at..).unwrap_or_default());
            }
            None => write(buf, key),
        }
    }

    /// Appends a name list as a JSON array.
    fn names(&mut self, buf: &mut Vec<u8>, names: &crate::http::NameList) {
        let text = names.as_str();
        if text.is_empty() || text.len() > CACHE_MAX_LIST {
            json_name_list(buf, names);
            return;
        }
        match Self::slot(&self.hasher, &mut self.lists, &text) {
            Some(Some((cached, json))) if cached == text => buf.extend_from_slice(json),
            Some(slot) => {
                let at = buf.len();
                json_name_list(buf, names);
                *slot = Some((text.to_owned(), buf.get(at..).unwrap_or_default().to_vec()));
            }
            None => json_name_list(buf, names),
        }
    }

    /// Appends `tx` as one JSON object and a newline to `buf`: the same bytes as
    /// `serde_json::to_writer(tx)` (tests check it), written directly because serde's generic
    /// path (addresses through `Display`, a byte-by-byte escape scan) took a third of the
    /// replay.
    fn line(&mut self, tx: &Transaction, buf: &mut Vec<u8>) {
        // Destructured so that a new field is a compile error here, not a silent omission.
        let Transaction {
            ts_ns,
            peer,
            client,
            server,
            method,
            version,
            host,
            path,
            route,
            query_keys,
            status,
            reason,
            latency_ns,
            req_bytes,
            resp_bytes,
            user_agent,
            header_order,
            set_cookies,
            account,
            session,
            login,
            flags,
        } = tx;
        buf.extend_from_slice(b"{\"ts_ns\":");
        json_u64(buf, *ts_ns);
        buf.extend_from_slice(b",\"peer\":");
        self.socket(buf, *peer);
        buf.extend_from_slice(b",\"client\":");
        self.ip(buf, *client);
        buf.extend_from_slice(b",\"server\":");
        self.socket(buf, *server);
        buf.extend_from_slice(b",\"method\":");
        json_str(buf, method);
        buf.extend_from_slice(b",\"version\":");
        json_opt(buf, version.as_ref(), |buf, v| {
            buf.extend_from_slice(match v {
                crate::http::HttpVersion::Http10 => b"\"HTTP/1.0\"",
                crate::http::HttpVersion::Http11 => b"\"HTTP/1.1\"",
            });
        });
        buf.extend_from_slice(b",\"host\":");
        json_opt(buf, host.as_deref(), json_str);
        buf.extend_from_slice(b",\"path\":");
        json_str(buf, path);
        buf.extend_from_slice(b",\"route\":");
        json_str(buf, route);
        buf.extend_from_slice(b",\"query_keys\":");
        self.names(buf, query_keys);
        buf.extend_from_slice(b",\"status\":");
        json_opt(buf, *status, |buf, s| json_u64(buf, u64::from(s)));
        buf.extend_from_slice(b",\"reason\":");
        json_opt(buf, reason.as_deref(), json_str);
        buf.extend_from_slice(b",\"latency_ns\":");
        json_opt(buf, *latency_ns, json_u64);
        buf.extend_from_slice(b",\"req_bytes\":");
        json_u64(buf, *req_bytes);
        buf.extend_from_slice(b",\"resp_bytes\":");
        json_u64(buf, *resp_bytes);
        buf.extend_from_slice(b",\"user_agent\":");
        json_opt(buf, user_agent.as_deref(), json_str);
        buf.extend_from_slice(b",\"header_order\":");
        self.names(buf, header_order);
        buf.extend_from_slice(b",\"set_cookies\":");
        self.names(buf, set_cookies);
        buf.extend_from_slice(b",\"account\":");
        json_opt(buf, account.as_deref(), json_str);
        buf.extend_from_slice(b",\"session\":");
        json_opt(buf, session.as_deref(), json_str);
        buf.extend_from_slice(b",\"login\":");
        json_opt(buf, *login, |buf, l| {
            buf.extend_from_slice(match l {
                crate::http::LoginOutcome::Success => b"\"success\"",
                crate::http::LoginOutcome::Failure => b"\"failure\"",
                crate::http::LoginOutcome::Unknown => b"\"unknown\"",
            });
        });
        buf.extend_from_slice(b",\"flags\":");
        if flags.is_empty() {
            buf.extend_from_slice(b"[]");
        } else {
            json_names(buf, flags.iter().map(crate::http::Flag::name));
        }
        buf.extend_from_slice(b"}\n");
    }
}

/// A slot index hash of an address (and `extra` bits, such as a port), by one multiplication
/// of its bits folded to a word: addresses are not chosen to collide here, and a collision
/// only costs a formatting.
fn addr_hash(ip: std::net::IpAddr, extra: u64) -> u64 {
    let bits = match ip {
        std::net::IpAddr::V4(v4) => u64::from(v4.to_bits()),
        std::net::IpAddr::V6(v6) => {
            let b = v6.to_bits();
            (b as u64) ^ ((b >> 64) as u64).rotate_left(32)
        }
    };
    // The top bits of the product, which pick the slot, depend on every bit of the input.
    (bits ^ extra).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Stores `key` and its text in a cache slot, reusing the slot's buffer.
fn refill<K>(slot: &mut Option<(K, Vec<u8>)>, key: K, text: &[u8]) {
    match slot {
        Some((k, t)) => {
            *k = key;
            t.clear();
            t.extend_from_slice(text);
        }
        None => *slot = Some((key, text.to_vec())),
    }
}

/// `null` or the value written by `write`.
fn json_opt<T>(buf: &mut Vec<u8>, value: Option<T>, write: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        Some(v) => write(buf, v),
        None => buf.extend_from_slice(b"null"),
    }
}

/// A decimal number.
fn json_u64(buf: &mut Vec<u8>, n: u64) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Whether `s` holds a byte that JSON strings escape: a control byte, `"` or `\\`. Eight bytes
/// are tested at a time in a word (the strings are mostly shorter than a vector loop's
/// start-up), and the last partial word is padded with a byte that needs no escape.
fn needs_escape(s: &[u8]) -> bool {
    let mut chunks = s.chunks_exact(8);
    let mut found = 0;
    for chunk in &mut chunks {
        if let Ok(word) = <[u8; 8]>::try_from(chunk) {
            found |= escape_bits(u64::from_le_bytes(word));
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [b'a'; 8];
        if let Some(head) = word.get_mut(..rest.len()) {
            head.copy_from_slice(rest);
        }
        found |= escape_bits(u64::from_le_bytes(word));
    }
    found != 0
}

/// Non-zero when a byte of `word` is below 0x20, `"` or `\\`. The classic word tests: for any
/// `n` up to 0x80, `(x - n * ONES) & !x & HIGH` is non-zero exactly when a byte of `x` is
/// below `n`; a byte equal to `c` is a zero byte of `x ^ c * ONES`.
const fn escape_bits(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const fn below(x: u64, n: u8) -> u64 {
        x.wrapping_sub(ONES * n as u64) & !x & HIGH
    }
    below(word, 0x20)
        | below(word ^ (ONES * b'"' as u64), 1)
        | below(word ^ (ONES * b'\\' as u64), 1)
}

/// A JSON string: copied as is when nothing needs escaping, else escaped by `serde_json`.
fn json_str(buf: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        // Serializing a string into a vector cannot fail.
        let _ = serde_json::to_writer(&mut *buf, s);
    } else {
        buf.push(b'"');
        put(buf, s.as_bytes());
        buf.push(b'"');
    }
}

/// Appends `bytes`. Most fields are short, and a copy of 4 to 16 bytes is done with two
/// overlapping copies of fixed size, which cost less than a call to `memcpy`.
fn put(buf: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len();
    if !(4..=16).contains(&n) {
        buf.extend_from_slice(bytes);
        return;
    }
    let at = buf.len();
    buf.extend_from_slice(&[0; 16]);
    if let Some(dst) = buf.get_mut(at..at + n) {
        if n >= 8 {
            copy_ends::<8>(dst, bytes);
        } else {
            copy_ends::<4>(dst, bytes);
        }
    }
    buf.truncate(at + n);
}

/// Copies `src` into `dst` of the same length, between `N` and `2 * N` bytes, as its first and
/// its last `N` bytes (which overlap when shorter than `2 * N`).
fn copy_ends<const N: usize>(dst: &mut [u8], src: &[u8]) {
    if let (Some(d), Some(s)) = (dst.first_chunk_mut::<N>(), src.first_chunk::<N>()) {
        *d = *s;
    }
    if let (Some(d), Some(s)) = (dst.last_chunk_mut::<N>(), src.last_chunk::<N>()) {
        *d = *s;
    }
}

/// A [`NameList`](crate::http::NameList) as an array of strings. Its names are separated by
/// single spaces and none is empty, so when nothing needs escaping the array is the list with
/// every space turned into `","`.
fn json_name_list(buf: &mut Vec<u8>, names: &crate::http::NameList) {
    let text = names.as_str().as_bytes();
    if text.is_empty() {
        buf.extend_from_slice(b"[]");
    } else if needs_escape(text) {
        json_names(buf, names.iter());
    } else {
        buf.extend_from_slice(b"[\"");
        let mut rest = text;
        loop {
            let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
            let (name, tail) = rest.split_at(end);
            // Names are short: a fixed-size copy and a cut cost less than a copy of variable
            // length.
            match rest.first_chunk::<16>() {
                Some(chunk) if end <= 16 => {
                    let at = buf.len();
                    buf.extend_from_slice(chunk);
                    buf.truncate(at + end);
                }
                _ => put(buf, name),
            }
            match tail.split_first() {
                Some((_, more)) => {
                    buf.extend_from_slice(b"\",\"");
                    rest = more;
                }
                None => break,
            }
        }
        buf.extend_from_slice(b"\"]");
    }
}

/// An array of strings.
fn json_names<'a>(buf: &mut Vec<u8>, names: impl Iterator<Item = &'a str>) {
    buf.push(b'[');
    for (i, name) in names.enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        json_str(buf, name);
    }
    buf.push(b']');
}

/// A socket address in the form of its `Display`: `a.b.c.d:port`, `[v6]:port` or
/// `[v6%scope]:port`.
fn socket_text(buf: &mut Vec<u8>, addr: std::net::SocketAddr) {
    match addr {
        std::net::SocketAddr::V4(a) => ipv4_text(buf, *a.ip()),
        std::net::SocketAddr::V6(a) => {
            buf.push(b'[');
            ipv6_text(buf, *a.ip());
            if a.scope_id() != 0 {
                buf.push(b'%');
                json_u64(buf, u64::from(a.scope_id()));
            }
            buf.push(b']');
        }
    }
    buf.push(b':');
    json_u64(buf, u64::from(addr.port()));
}

/// An IP address in the form of its `Display`.
fn ip_text(buf: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => ipv4_text(buf, v4),
        std::net::IpAddr::V6(v6) => ipv6_text(buf, v6),
    }
}

/// An IPv6 address in the form of its `Display` (RFC 5952): IPv4-mapped addresses as
/// `::ffff:a.b.c.d`, otherwise lowercase hex groups with the first longest run of two or more
/// zero groups written as `::`.
fn ipv6_text(buf: &mut Vec<u8>, ip: std::net::Ipv6Addr) {
    if let Some(v4) = ip.to_ipv4_mapped() {
        buf.extend_from_slice(b"::ffff:");
        ipv4_text(buf, v4);
        return;
    }
    let groups = ip.segments();
    let (mut run_at, mut run_len, mut cur_at, mut cur_len) = (0, 0, 0, 0);
    for (i, &g) in groups.iter().enumerate() {
        if g == 0 {
            if cur_len == 0 {
                cur_at = i;
            }
            cur_len += 1;
            if cur_len > run_len {
                (run_at, run_len) = (cur_at, cur_len);
            }
        } else {
            cur_len = 0;
        }
    }
    let hex_groups = |buf: &mut Vec<u8>, part: &[u16]| {
        for (i, &g) in part.iter().enumerate() {
            if i > 0 {
                buf.push(b':');
            }
            hex_group(buf, g);
        }
    };
    if run_len > 1 {
        hex_groups(buf, groups.get(..run_at).unwrap_or_default());
        buf.extend_from_slice(b"::");
        hex_groups(buf, groups.get(run_at + run_len..).unwrap_or_default());
    } else {
        hex_groups(buf, &groups);
    }
}

/// A 16-bit group in lowercase hex without leading zeros.
fn hex_group(buf: &mut Vec<u8>, g: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (16 - g.leading_zeros()).div_ceil(4).max(1);
    for shift in (0..digits).rev() {
        buf.push(HEX[usize::from((g >> (shift * 4)) & 0xF)]);
    }
}

/// Decimal text of every byte value: up to three digits and the length used.
const OCTETS: [([u8; 3], u8); 256] = {
    let mut table = [([0_u8; 3], 0_u8); 256];
    let mut i = 0;
    while i < 256 {
        let n = i as u8;
        table[i] = if n >= 100 {
            ([b'0' + n / 100, b'0' + n / 10 % 10, b'0' + n % 10], 3)
        } else if n >= 10 {
            ([b'0' + n / 10, b'0' + n % 10, 0], 2)
        } else {
            ([b'0' + n, 0, 0], 1)
        };
        i += 1;
    }
    table
};

/// Dotted decimal.
fn ipv4_text(buf: &mut Vec<u8>, ip: std::net::Ipv4Addr) {
    // Written into a small array first (fixed-size copies, no length updates), then appended.
    let mut text = [0_u8; 18];
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        let (digits, n) = &OCTETS[usize::from(octet)];
        let at = len + usize::from(i > 0);
        if let Some(dot) = text.get_mut(len).filter(|_| i > 0) {
            *dot = b'.';
        }
        if let Some(d) = text.get_mut(at..).and_then(<[u8]>::first_chunk_mut::<3>) {
            *d = *digits;
        }
        len = at + usize::from(*n);
    }
    put(buf, text.get(..len).unwrap_or_default());
}

/// One compact line per transaction: time, client, server, method, host and path, route,
/// status, latency, sizes, identity and flags. Holds only what the record holds, which is never
/// a secret (the session is a keyed hash).
fn human_line(tx: &Transaction) -> String {
    use std::fmt::Write as _;
    let mut line = String::with_capacity(160);
    let ts = SystemTime::UNIX_EPOCH + Duration::from_nanos(tx.ts_ns);
    let _ = write!(line, "{} {}", humantime::format_rfc3339_micros(ts), tx.peer);
    if tx.client != tx.peer.ip() {
        let _ = write!(line, " (client {})", tx.client);
    }
    let method = if tx.method.is_empty() {
        "-"
    } else {
        &tx.method
    };
    let _ = write!(
        line,
        " -> {} {method} {}{}",
        tx.server,
        tx.host.as_deref().unwrap_or(""),
        tx.path
    );
    if tx.route != tx.path {
        let _ = write!(line, " [{}]", tx.route);
    }
    match tx.status {
        Some(s) => {
            let _ = write!(line, " {s}");
        }
        None => line.push_str(" -"),
    }
    if let Some(l) = tx.latency_ns {
        let _ = write!(
            line,
            " {:.3}ms",
            Duration::from_nanos(l).as_secs_f64() * 1e3
        );
    }
    let _ = write!(line, " req={}B resp={}B", tx.req_bytes, tx.resp_bytes);
    if let Some(a) = &tx.account {
        let _ = write!(line, " account={a}");
    }
    if let Some(s) = &tx.session {
        let _ = write!(line, " session={s}");
    }
    if let Some(l) = tx.login {
        let name = match l {
            crate::http::LoginOutcome::Success => "success",
            crate::http::LoginOutcome::Failure => "failure",
            crate::http::LoginOutcome::Unknown => "unknown",
        };
        let _ = write!(line, " login={name}");
    }
    let mut flags = tx.flags.iter().map(crate::http::Flag::name).peekable();
    if flags.peek().is_some() {
        line.push_str(" flags=");
        line.push_str(&flags.collect::<Vec<_>>().join(","));
    }
    line
}

/// The stderr summary: what the file held and what the analyzer made of it.
fn summary_line(path: &Path, s: &ReplaySummary, analyzer: &Analyzer) -> String {
    let c = analyzer.counters();
    format!(
        "replay {}: {} packets ({} tcp, {} partly captured, {} not tcp, {} fragments, {} \
         malformed, {} unsupported link), {} transactions, {} flows, {} gaps, {} lost bytes",
        path.display(),
        s.packets,
        s.tcp_segments,
        s.partial_segments,
        s.not_tcp,
        s.fragments,
        s.malformed,
        s.unsupported_link,
        s.transactions,
        c.flows_opened,
        c.gaps,
        c.lost_bytes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_matches_serde_json() {
        #[track_caller]
        fn check(tx: &Transaction) {
            let mut line = Vec::new();
            json_line(tx, &mut line);
            let mut expected = serde_json::to_vec(tx).expect("transaction serializes");
            expected.push(b'\n');
            assert_eq!(
                String::from_utf8_lossy(&line),
                String::from_utf8_lossy(&expected),
                "{tx:?}"
            );
        }
        use crate::http::{Flag, Flags, HttpVersion, LoginOutcome, NameList};
        let v4: std::net::SocketAddr = "198.51.100.7:0".parse().expect("v4");
        let v4b: std::net::SocketAddr = "203.0.113.255:65535".parse().expect("v4");
        let v6: std::net::SocketAddr = "[2001:db8::1%7]:8080".parse().expect("v6");
        let v6b: std::net::SocketAddr = "[2001:db8:0:0:1:0:0:1]:80".parse().expect("v6");
        let mut tx = Transaction::empty(0, v4, v4b);
        check(&tx);
        tx.ts_ns = u64::MAX;
        tx.peer = v6;
        tx.server = v6b;
        tx.client = "10.0.0.1".parse().expect("ip");
        tx.method = "GET".into();
        tx.version = Some(HttpVersion::Http10);
        tx.host = Some("api.example.test".to_owned());
        tx.path = "/a\"b\\c\u{1}\u{1f}\u{7f}é\t\n".to_owned();
        tx.route = "/users/{id}".to_owned();
        tx.query_keys = NameList::from(["page", "q\"x", "\u{0}"]);
        tx.status = Some(404);
        tx.reason = Some("Not \"Found\"".into());
        tx.latency_ns = Some(1_234_567);
        tx.req_bytes = 10;
        tx.resp_bytes = 1 << 40;
        tx.user_agent = Some("Mozilla/5.0 (X11) ☃".to_owned());
        tx.header_order = NameList::from(["host", "user-agent"]);
        tx.set_cookies = NameList::from(["sid"]);
        tx.account = Some("alice\\".to_owned());
        tx.session = Some("0123456789abcdef".to_owned());
        tx.login = Some(LoginOutcome::Failure);
        tx.flags = Flags::from([Flag::Gap, Flag::InvalidAuthorization]);
        check(&tx);
        tx.version = Some(HttpVersion::Http11);
        tx.login = Some(LoginOutcome::Success);
        tx.client = "2001:db8::ff".parse().expect("ip");
        tx.status = Some(0);
        check(&tx);
        tx.login = Some(LoginOutcome::Unknown);
        tx.peer = "0.0.0.0:9".parse().expect("v4");
        tx.flags = Flags::from(Flag::ALL);
        check(&tx);
    }

    /// An IPv6 address whose groups are mostly zero, so that runs of zeros of every length and
    /// position come up, plus IPv4-mapped and IPv4-compatible shapes.
    fn ipv6_strategy() -> impl proptest::strategy::Strategy<Value = std::net::Ipv6Addr> {
        use proptest::prelude::*;
        (
            proptest::collection::vec(prop_oneof![3 => Just(0_u16), 1 => any::<u16>()], 8),
            0_u8..4,
        )
            .prop_map(|(groups, shape)| {
                let mut g = [0_u16; 8];
                for (slot, v) in g.iter_mut().zip(groups) {
                    *slot = v;
                }
                match shape {
                    0 => g[..5].fill(0),
                    1 => {
                        g[..5].fill(0);
                        g[5] = 0xffff;
                    }
                    _ => {}
                }
                std::net::Ipv6Addr::from(g)
            })
    }

    proptest::proptest! {
        #[test]
        fn addresses_are_written_as_display_writes_them(
            v6 in ipv6_strategy(),
            v4 in proptest::prelude::any::<u32>(),
            port in proptest::prelude::any::<u16>(),
            scope in proptest::prop_oneof![proptest::strategy::Just(0_u32), proptest::prelude::any::<u32>()],
        ) {
            let v4 = std::net::Ipv4Addr::from(v4);
            let addrs = [
                std::net::SocketAddr::V6(std::net::SocketAddrV6::new(v6, port, 0, scope)),
                std::net::SocketAddr::V4(std::net::SocketAddrV4::new(v4, port)),
            ];
            for addr in addrs {
                let mut buf = Vec::new();
                socket_text(&mut buf, addr);
                proptest::prop_assert_eq!(String::from_utf8_lossy(&buf), addr.to_string());
                buf.clear();
                ip_text(&mut buf, addr.ip());
                proptest::prop_assert_eq!(String::from_utf8_lossy(&buf), addr.ip().to_string());
            }
        }
    }

    #[test]
    fn cached_lines_match_serde_json() {
        use crate::http::NameList;
        let mut cache = JsonCache::default();
        let names = [
            NameList::from(["host", "user-agent"]),
            NameList::from(["host"]),
            NameList::from(["a\"b", "c"]),
            NameList::default(),
        ];
        // More distinct addresses than slots, each written several times, so that hits,
        // misses and replaced slots all occur.
        for round in 0..3_u16 {
            for i in 0..(CACHE_SLOTS as u16 + 50) {
                let peer: std::net::SocketAddr = if i % 3 == 0 {
                    format!("[2001:db8::{i:x}]:{}", 1000 + round)
                        .parse()
                        .expect("v6")
                } else {
                    format!("10.0.{}.{}:{}", i / 256, i % 256, 1000 + round)
                        .parse()
                        .expect("v4")
                };
                let server: std::net::SocketAddr = "198.51.100.1:80".parse().expect("v4");
                let mut tx = Transaction::empty(u64::from(i), peer, server);
                tx.header_order = names[usize::from(i) % names.len()].clone();
                tx.query_keys = names[usize::from(i + round) % names.len()].clone();
                let mut line = Vec::new();
                cache.line(&tx, &mut line);
                let mut expected = serde_json::to_vec(&tx).expect("transaction serializes");
                expected.push(b'\n');
                assert_eq!(
                    String::from_utf8_lossy(&line),
                    String::from_utf8_lossy(&expected)
                );
            }
        }
    }

    #[test]
    fn needs_escape_matches_a_byte_scan() {
        let plain = b"/api/v1/users/{id}?x=1 Mozilla/5.0 (X11) \x7f\xc3\xa9";
        let scan = |s: &[u8]| s.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
        for len in 0..plain.len() {
            let base = &plain[..len];
            assert_eq!(needs_escape(base), scan(base), "{base:?}");
            for at in 0..len {
                for bad in [0_u8, b'\n', 0x1f, b'"', b'\\'] {
                    let mut s = base.to_vec();
                    s[at] = bad;
                    assert!(needs_escape(&s), "{s:?}");
                }
                for good in [0x20_u8, 0x21, 0x7f, 0x80, 0xff, b'#', b']'] {
                    let mut s = base.to_vec();
                    s[at] = good;
                    assert_eq!(needs_escape(&s), scan(&s), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn put_appends_every_length() {
        let src: Vec<u8> = (0..40).collect();
        for n in 0..=src.len() {
            let mut buf = b"ab".to_vec();
            put(&mut buf, src.get(..n).expect("prefix"));
            assert_eq!(buf.get(2..), src.get(..n), "length {n}");
            assert_eq!(buf.len(), n + 2, "length {n}");
        }
    }

    #[test]
    fn analyzer_table_is_read_and_the_rest_ignored() {
        #[track_caller]
        fn check(text: &str, expect: impl Fn(&anyhow::Result<AnalyzerConfig>)) {
            expect(&analyzer_config_from_toml(text));
        }
        check("", |c| {
            let c = c.as_ref().expect("empty file is the default");
            assert_eq!(c.monitored_ports, AnalyzerConfig::default().monitored_ports);
        });
        check(
            "[agent]\ninterface = \"veth0\"\n[analyzer]\nmonitored_ports = [8443]\n\
             [[analyzer.http.login_routes]]\nmethod = \"POST\"\npath = \"/login\"\n",
            |c| {
                let c = c.as_ref().expect("valid analyzer table");
                assert_eq!(c.monitored_ports, vec![8443]);
                assert_eq!(c.http.login_routes.len(), 1);
            },
        );
        check("[analyzer]\nno_such_field = 1\n", |c| {
            let e = c.as_ref().expect_err("unknown field is rejected");
            assert!(format!("{e:#}").contains("no_such_field"), "{e:#}");
        });
        check("not toml at all [", |c| {
            assert!(c.is_err(), "broken TOML is an error");
        });
    }
}
