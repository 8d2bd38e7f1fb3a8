//! The transaction writer: the same bytes as `serde_json::to_writer(tx)` (the tests hold it
//! to them), written field by field because serde's generic path (addresses through
//! `Display`, a byte-by-byte escape scan) took a third of the replay.

#[cfg(test)]
mod tests;

use crate::http::Transaction;

/// [`JsonCache::line`] with an empty cache.
#[cfg(test)]
pub(crate) fn json_line(tx: &Transaction, buf: &mut Vec<u8>) {
    JsonCache::default().line(tx, buf);
}

/// Slots of each direct-mapped table of a [`JsonCache`], as a power of two.
const CACHE_BITS: u32 = 10;
/// Slots of each direct-mapped table of a [`JsonCache`].
const CACHE_SLOTS: usize = 1 << CACHE_BITS;
/// Longest name list whose JSON text is cached.
const CACHE_MAX_LIST: usize = 256;

/// The JSON writer of transactions, with the JSON text of recently written addresses and name
/// lists. Peers, servers and header orders recur from one transaction to the next, and a hit
/// costs a hash, a comparison and a copy instead of formatting. Each table is direct-mapped
/// with [`CACHE_SLOTS`] slots (a new entry replaces whatever was in its slot), so memory stays
/// bounded; the cache changes speed only, never bytes.
#[derive(Default)]
pub struct JsonCache {
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
    pub fn line(&mut self, tx: &Transaction, buf: &mut Vec<u8>) {
        // Destructured so that a new field is a compile error here, not a silent omission.
        let Transaction {
            ts_ns,
            peer,
            client,
            proxy,
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
            language: _,
            set_cookies,
            account,
            session,
            login,
            flags,
            transport_fingerprint,
        } = tx;
        buf.extend_from_slice(b"{\"ts_ns\":");
        json_u64(buf, *ts_ns);
        buf.extend_from_slice(b",\"peer\":");
        self.socket(buf, *peer);
        buf.extend_from_slice(b",\"client\":");
        self.ip(buf, *client);
        buf.extend_from_slice(b",\"proxy\":");
        json_opt(buf, *proxy, |buf, p| {
            buf.extend_from_slice(match p {
                crate::http::ProxyVia::ProxyProtocol => b"\"proxy_protocol\"",
                crate::http::ProxyVia::Forwarded => b"\"forwarded\"",
            });
        });
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
        buf.extend_from_slice(b",\"transport_fingerprint\":");
        // The text form is ASCII letters, digits and `_-+!`: nothing to escape.
        json_opt(buf, *transport_fingerprint, |buf, fp| {
            use std::io::Write as _;
            let _ = write!(buf, "\"{fp}\"");
        });
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
