//! The only writer of the block and allow maps.
//!
//! A host address (`/32`, `/128`) is an exact block: IPv4 ones go to the open-addressed table
//! `BLOCK_TABLE_V4` (`table.rs`; the `BLOCK_EXACT_V4` hash takes those that find no slot), IPv6
//! ones to the `BLOCK_EXACT_V6` hash. Anything wider goes to the LPM trie of its family (IPv4
//! maps are keyed by the 4 address bytes, IPv6 ones by 16).
//! Every block carries an expiry (`CLOCK_BOOTTIME` ns, checked by the kernel), a reason code and
//! a verdict id whose note (reason text, TTL) is kept in the pinned `VERDICT_NOTES` map. Writes
//! are ordered so that a failure leaves nothing half-written: the note is written first and
//! removed again if the block entry cannot be. After every change, `MAPS_IN_USE` is rewritten
//! from the maps themselves (XDP skips lookups in empty maps); writers serialise on an `flock`
//! so two concurrent CLI calls cannot leave it stale.
//!
//! A flow block (`FLOW_BLOCKS`, [`Verdicts::block_flow`]) drops one TCP connection, keyed by
//! its client and server socket addresses as the client's packets carry them: for a client
//! behind a trusted proxy that speaks the PROXY protocol, the proxy's connection that carries
//! it, so the client stops and the proxy's other connections go on. It is written like an
//! address block (note first, a TTL the kernel checks, `MAPS_IN_USE` flag).
//!
//! The allowlist holds the operator's entries (permanent) and exceptions
//! ([`Verdicts::allow_exception`]): a source in good standing inside a prefix the policy blocks
//! is allowlisted for the block's TTL, under the decision's id, before the block is written
//! (so it is never refused in between); the kernel stops honouring it at the same time as the
//! block, and the agent's purge deletes it like an expired block. An exception never replaces
//! or shortens an operator's entry, nor an exception that lasts longer.
mod table;

use std::{
    fs::File,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    os::fd::{AsFd as _, AsRawFd as _},
    path::Path,
    time::Duration,
};

use aya::{
    Ebpf, Pod,
    maps::{
        Array, HashMap, MapData, MapError,
        lpm_trie::{Key, LpmTrie},
    },
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use sensor_common::{
    Addr, AllowValue, BlockValue, FlowKey, MapsInUse, NOTE_TEXT_LEN, Reason, V4_MAPPED_PREFIX_BITS,
    V4Addr, VerdictNote, is_v4_mapped, map_names,
};

use crate::{
    decide::{Decision, Enforcement},
    detect::Detector,
    event::{addr_to_ip, ip_to_addr},
    maps::{self, MapsError},
};

/// Longest TTL accepted: longer blocks are almost certainly a typo (and stale risk).
pub const MAX_TTL: Duration = Duration::from_hours(90 * 24);

/// Errors of verdict input and map writes.
#[derive(Debug, thiserror::Error)]
pub enum VerdictError {
    /// Not an address.
    #[error("{input:?} is not an IP address or prefix")]
    BadAddress {
        /// The input.
        input: String,
    },
    /// Prefix length too large for the family.
    #[error("prefix length /{len} is out of range for {input:?} (at most /{max})")]
    PrefixOutOfRange {
        /// The input.
        input: String,
        /// Given length.
        len: String,
        /// Maximum for the family.
        max: u8,
    },
    /// Host bits set below the prefix.
    #[error("{input:?} has host bits set; did you mean {suggestion}?")]
    HostBits {
        /// The input.
        input: String,
        /// The network.
        suggestion: IpNet,
    },
    /// TTL zero or too long.
    #[error("ttl {ttl:?} is out of range (more than zero, at most {max:?})")]
    Ttl {
        /// Given TTL.
        ttl: Duration,
        /// Maximum.
        max: Duration,
    },
    /// Reason text too long or empty.
    #[error("reason must be 1 to {NOTE_TEXT_LEN} bytes of text, got {len}")]
    ReasonText {
        /// Length given.
        len: usize,
    },
    /// No such entry.
    #[error("{net} is not in the {map} map")]
    NotFound {
        /// Entry.
        net: IpNet,
        /// Map name.
        map: &'static str,
    },
    /// No such flow block.
    #[error("{client} -> {server} is not in the {map} map")]
    FlowNotFound {
        /// The client end.
        client: SocketAddr,
        /// The server end.
        server: SocketAddr,
        /// Map name.
        map: &'static str,
    },
    /// The two ends of a flow are of different address families.
    #[error("{client} -> {server} mixes IPv4 and IPv6: not one TCP connection")]
    FlowFamilies {
        /// The client end.
        client: SocketAddr,
        /// The server end.
        server: SocketAddr,
    },
    /// Opening the pinned maps failed.
    #[error(transparent)]
    Maps(#[from] MapsError),
    /// A map operation failed.
    #[error("{op} in map {map}: {source}")]
    Map {
        /// Operation.
        op: &'static str,
        /// Map.
        map: &'static str,
        /// Why.
        source: MapError,
    },
    /// The system's random source failed.
    #[error("no random multiplier for the IPv4 block table: {source}")]
    Random {
        /// Why.
        source: getrandom::Error,
    },
    /// Mapping the IPv4 block table into memory failed.
    #[error("mapping map {map} into memory: {source}")]
    Mmap {
        /// Map.
        map: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// A map is missing from the loaded object.
    #[error("map {0} missing from the eBPF object")]
    Missing(&'static str),
    /// The writer lock could not be taken.
    #[error("locking {path}: {source}")]
    Lock {
        /// Lock file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

const BPF_NOEXIST: u32 = 1;

/// The kernel's reason code of a detector's block.
fn reason_of(d: Detector) -> Reason {
    match d {
        Detector::BruteForce | Detector::CredentialStuffing | Detector::MarkedClient => {
            Reason::CredentialStuffing
        }
        Detector::Volume | Detector::PacketFlood => Reason::Flood,
        Detector::Enumeration | Detector::ContentDiscovery | Detector::Breadth => Reason::Scraping,
        _ => Reason::Detector,
    }
}

fn errno_of(e: &MapError) -> Option<i32> {
    match e {
        MapError::SyscallError(sys) => sys.io_error.raw_os_error(),
        _ => None,
    }
}

fn is_exists(e: &MapError) -> bool {
    errno_of(e) == Some(libc::EEXIST)
}

fn is_not_found(e: &MapError) -> bool {
    errno_of(e) == Some(libc::ENOENT)
}

/// Parses `ADDR` or `ADDR/PREFIX`, rejecting out-of-range prefixes and host bits.
pub fn parse_net(input: &str) -> Result<IpNet, VerdictError> {
    let bad = || VerdictError::BadAddress {
        input: input.to_owned(),
    };
    let (addr, len) = match input.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (input, None),
    };
    let ip: IpAddr = addr.trim().parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(VerdictError::PrefixOutOfRange {
                    input: input.to_owned(),
                    len: l.to_owned(),
                    max,
                });
            }
            _ => return Err(bad()),
        },
    };
    let net = IpNet::new(ip, len).map_err(|_| bad())?;
    if net.trunc() != net {
        return Err(VerdictError::HostBits {
            input: input.to_owned(),
            suggestion: net.trunc(),
        });
    }
    Ok(net)
}

/// Checks a TTL.
pub fn check_ttl(ttl: Duration) -> Result<(), VerdictError> {
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(VerdictError::Ttl { ttl, max: MAX_TTL });
    }
    Ok(())
}

/// The allowlist trie key of a network: IPv4 mapped, its prefix length shifted by 96.
pub fn net_key(net: IpNet) -> Key<Addr> {
    let bits = match net {
        IpNet::V4(n) => V4_MAPPED_PREFIX_BITS + u32::from(n.prefix_len()),
        IpNet::V6(n) => u32::from(n.prefix_len()),
    };
    Key::new(bits, ip_to_addr(net.addr()))
}

/// The IPv4 block trie key of a network.
pub fn v4_key(net: Ipv4Net) -> Key<V4Addr> {
    Key::new(u32::from(net.prefix_len()), net.addr().octets())
}

/// The IPv6 block trie key of a network.
pub fn v6_key(net: Ipv6Net) -> Key<Addr> {
    Key::new(u32::from(net.prefix_len()), net.addr().octets())
}

/// The network of an allowlist trie key.
pub fn key_net(key: &Key<Addr>) -> IpNet {
    let addr = key.data();
    let bits = key.prefix_len();
    if is_v4_mapped(&addr) && bits >= V4_MAPPED_PREFIX_BITS {
        IpNet::new(addr_to_ip(&addr), (bits - V4_MAPPED_PREFIX_BITS) as u8)
    } else {
        IpNet::new(IpAddr::V6(addr.into()), bits.min(128) as u8)
    }
    .unwrap_or_else(|_| IpNet::from(addr_to_ip(&addr)))
}

fn is_host(net: IpNet) -> bool {
    net.prefix_len() == net.max_prefix_len()
}

/// The `FLOW_BLOCKS` key of the TCP connection from `client` to `server` (IPv4 mapped, ports
/// in host byte order). Both ends must be of one family.
pub fn flow_key(client: SocketAddr, server: SocketAddr) -> Result<FlowKey, VerdictError> {
    let src = ip_to_addr(client.ip());
    let dst = ip_to_addr(server.ip());
    if is_v4_mapped(&src) != is_v4_mapped(&dst) {
        return Err(VerdictError::FlowFamilies { client, server });
    }
    Ok(FlowKey {
        src,
        dst,
        sport: client.port(),
        dport: server.port(),
        zero: 0,
    })
}

/// The client and server ends of a `FLOW_BLOCKS` key (IPv4-mapped addresses as IPv4).
pub fn flow_ends(key: &FlowKey) -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::new(addr_to_ip(&key.src), key.sport),
        SocketAddr::new(addr_to_ip(&key.dst), key.dport),
    )
}

/// Checks a block's reason text.
fn check_text(text: &str) -> Result<(), VerdictError> {
    if text.is_empty() || text.len() > NOTE_TEXT_LEN {
        return Err(VerdictError::ReasonText { len: text.len() });
    }
    Ok(())
}

/// A block as listed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BlockEntry {
    /// Address or prefix.
    pub net: IpNet,
    /// The kernel value.
    #[serde(skip)]
    pub value: BlockValue,
    /// Reason code name.
    pub reason: &'static str,
    /// Reason text from the verdict note, if any.
    pub text: Option<String>,
    /// Verdict id.
    pub verdict_id: u64,
    /// Seconds until expiry (zero once expired).
    pub ttl_left_s: u64,
    /// Packets dropped by this entry.
    pub hits: u64,
    /// Milliseconds since the latest drop, if any.
    pub last_hit_ago_ms: Option<u64>,
}

/// A flow block as listed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FlowBlockEntry {
    /// The client end (source of the dropped packets).
    pub client: SocketAddr,
    /// The server end.
    pub server: SocketAddr,
    /// The kernel value.
    #[serde(skip)]
    pub value: BlockValue,
    /// Reason code name.
    pub reason: &'static str,
    /// Reason text from the verdict note, if any.
    pub text: Option<String>,
    /// Verdict id.
    pub verdict_id: u64,
    /// Seconds until expiry (zero once expired).
    pub ttl_left_s: u64,
    /// Packets dropped by this entry.
    pub hits: u64,
    /// Milliseconds since the latest drop, if any.
    pub last_hit_ago_ms: Option<u64>,
}

/// An allowlist entry as listed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AllowEntry {
    /// Prefix.
    pub net: IpNet,
    /// Blocked packets this entry let pass.
    pub hits: u64,
    /// For an exception, the decision whose prefix block it pierces; `None` for an operator's
    /// (permanent) entry.
    pub verdict_id: Option<u64>,
    /// For an exception, seconds until it lapses (zero once it has: the kernel ignores it and
    /// the agent's purge deletes it); `None` for a permanent entry.
    pub ttl_left_s: Option<u64>,
    /// For an exception, `CLOCK_BOOTTIME` ns when it lapses; `None` for a permanent entry.
    #[serde(skip)]
    pub expires_ns: Option<u64>,
}

/// What [`Verdicts::allow_exception`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionWrite {
    /// Written (new, or an exception of the same net extended and given this origin).
    Written,
    /// Not written: an operator's permanent entry already covers the net (an exception inside
    /// it would shadow it once expired, the kernel honouring only the longest match), or an
    /// exception of the same net lasts longer already.
    Covered,
    /// Not written: the address has an unexpired block of its own (an operator's, or one the
    /// policy made since), which the exception would lift too.
    Blocked,
}

/// Bits naming the enforcement maps that have an in-use flag in `MAPS_IN_USE`.
mod map_bit {
    pub const EXACT_V4: u8 = 1 << 0;
    pub const EXACT_V6: u8 = 1 << 1;
    pub const PREFIX_V4: u8 = 1 << 2;
    pub const PREFIX_V6: u8 = 1 << 3;
    pub const ALLOW: u8 = 1 << 4;
    pub const FLOW: u8 = 1 << 5;
}

/// Maps a handle inserted into or removed from since it last wrote `MAPS_IN_USE`.
#[derive(Clone, Copy, Debug, Default)]
struct Touched {
    added: u8,
    removed: u8,
}

impl Touched {
    /// The in-use flag of the map `bit`: recomputed by `has_keys` after a removal (or when
    /// `scan`), otherwise the published flag, set if this handle inserted. Asking a hash map
    /// whether it has any key walks all its buckets when it is empty (tens of µs at these
    /// sizes), so a block added must not ask every map.
    fn flag(self, bit: u8, scan: bool, published: u32, has_keys: impl FnOnce() -> bool) -> u32 {
        if scan || self.removed & bit != 0 {
            u32::from(has_keys())
        } else {
            u32::from(published != 0 || self.added & bit != 0)
        }
    }
}

/// Handles on the enforcement maps.
pub struct Verdicts {
    table_v4: table::SlotTable,
    /// Prefix lengths this handle put into the table since it last wrote `MAPS_IN_USE`.
    added_lens: u64,
    /// Overflow, IPv6, flow and allowlist maps this handle changed since it last wrote
    /// `MAPS_IN_USE`.
    touched: Touched,
    exact_v4: HashMap<MapData, V4Addr, BlockValue>,
    exact_v6: HashMap<MapData, Addr, BlockValue>,
    prefix_v4: LpmTrie<MapData, V4Addr, BlockValue>,
    prefix_v6: LpmTrie<MapData, Addr, BlockValue>,
    flow: HashMap<MapData, FlowKey, BlockValue>,
    allow: LpmTrie<MapData, Addr, AllowValue>,
    notes: HashMap<MapData, u64, VerdictNote>,
    in_use: Array<MapData, MapsInUse>,
    /// Writer lock file of the pin directory (`None` for unpinned maps in one process).
    lock: Option<File>,
}

/// Holds the writer lock until dropped (through a duplicate of the lock file's descriptor,
/// which shares its lock).
struct WriteGuard(Option<File>);

impl Drop for WriteGuard {
    fn drop(&mut self) {
        if let Some(f) = &self.0 {
            // SAFETY: flock on an open descriptor.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        }
    }
}

fn writer_lock_file(pin_dir: &Path) -> Result<File, VerdictError> {
    let dir = Path::new(crate::loader::LOCK_DIR);
    let [_, path] = crate::loader::lock_files(pin_dir);
    let err = |source| VerdictError::Lock {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    File::create(&path).map_err(err)
}

fn map_err(op: &'static str, map: &'static str) -> impl Fn(MapError) -> VerdictError {
    move |source| VerdictError::Map { op, map, source }
}

impl Verdicts {
    /// Opens the pinned maps under `pin_dir`.
    pub fn open_pinned(pin_dir: &Path) -> Result<Self, VerdictError> {
        let mut open = |name: &'static str| maps::open(pin_dir, name);
        let mut v = Self::from_maps(&mut open)?;
        v.lock = Some(writer_lock_file(pin_dir)?);
        Ok(v)
    }

    /// Takes the maps out of a loaded object (no pins needed; used by tests and benchmarks).
    pub fn from_ebpf(ebpf: &mut Ebpf) -> Result<Self, VerdictError> {
        Self::from_maps(&mut |name: &'static str| {
            ebpf.take_map(name).ok_or(VerdictError::Missing(name))
        })
    }

    fn from_maps<E>(
        take: &mut impl FnMut(&'static str) -> Result<aya::maps::Map, E>,
    ) -> Result<Self, VerdictError>
    where
        VerdictError: From<E>,
    {
        fn typed<T: TryFrom<aya::maps::Map, Error = MapError>>(
            map: aya::maps::Map,
            name: &'static str,
        ) -> Result<T, VerdictError> {
            T::try_from(map).map_err(map_err("open", name))
        }
        let mut get =
            |name: &'static str| -> Result<aya::maps::Map, VerdictError> { Ok(take(name)?) };
        let table_v4 = match get(map_names::BLOCK_TABLE_V4)? {
            aya::maps::Map::Array(data) => table::SlotTable::map(data.fd().as_fd()),
            _ => Err(std::io::Error::other("not an array")),
        }
        .map_err(|source| VerdictError::Mmap {
            map: map_names::BLOCK_TABLE_V4,
            source,
        })?;
        Ok(Self {
            table_v4,
            added_lens: 0,
            touched: Touched::default(),
            exact_v4: typed(get(map_names::BLOCK_EXACT_V4)?, map_names::BLOCK_EXACT_V4)?,
            exact_v6: typed(get(map_names::BLOCK_EXACT_V6)?, map_names::BLOCK_EXACT_V6)?,
            prefix_v4: typed(get(map_names::BLOCK_PREFIX_V4)?, map_names::BLOCK_PREFIX_V4)?,
            prefix_v6: typed(get(map_names::BLOCK_PREFIX_V6)?, map_names::BLOCK_PREFIX_V6)?,
            flow: typed(get(map_names::FLOW_BLOCKS)?, map_names::FLOW_BLOCKS)?,
            allow: typed(get(map_names::ALLOW)?, map_names::ALLOW)?,
            notes: typed(get(map_names::VERDICT_NOTES)?, map_names::VERDICT_NOTES)?,
            in_use: typed(get(map_names::MAPS_IN_USE)?, map_names::MAPS_IN_USE)?,
            lock: None,
        })
    }

    /// Takes the writer lock (blocking until other writers are done).
    fn write_guard(&self) -> Result<WriteGuard, VerdictError> {
        let err = |source| VerdictError::Lock {
            path: String::from("verdict writer lock"),
            source,
        };
        let Some(f) = &self.lock else {
            return Ok(WriteGuard(None));
        };
        let f = f.try_clone().map_err(err)?;
        // SAFETY: flock on an open descriptor.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
        Ok(WriteGuard(Some(f)))
    }

    /// Runs one change under the writer lock, then rewrites `MAPS_IN_USE` (also after a
    /// failed change: a partial write must not leave a map marked empty).
    fn write<T>(
        &mut self,
        change: impl FnOnce(&mut Self) -> Result<T, VerdictError>,
    ) -> Result<T, VerdictError> {
        let guard = self.write_guard()?;
        let done = change(self);
        let refreshed = self.publish_in_use(false);
        drop(guard);
        let value = done?;
        refreshed?;
        Ok(value)
    }

    /// Rewrites `MAPS_IN_USE` from the maps: a map counts as in use when it has any key, and
    /// the table's prefix lengths are those of its blocks (a scan of the whole table, which
    /// also clears its tombstones once it is empty). Called at agent start and every purge
    /// period, and so heals a flag left stale by a writer that died.
    pub fn refresh_in_use(&mut self) -> Result<MapsInUse, VerdictError> {
        let _guard = self.write_guard()?;
        self.publish_in_use(true)
    }

    /// Writes `MAPS_IN_USE` (under the writer lock). With `scan`, the table's prefix lengths
    /// and every map's flag are recomputed from the maps; without, the lengths are the
    /// published ones plus those this handle added, and a flag is recomputed only for a map
    /// this handle removed from: a superset, which only costs XDP a probe of a length or a
    /// lookup in a map that has no block, while a removal does not have to scan the whole
    /// table.
    fn publish_in_use(&mut self, scan: bool) -> Result<MapsInUse, VerdictError> {
        let current = self.read_in_use()?;
        let lens = if scan {
            let lens = self.table_v4.lens();
            if lens == 0 {
                // No block left in the table: no probe can need a tombstone any more.
                self.table_v4.clear_tombstones();
            }
            lens
        } else {
            current.table_lens_v4 | self.added_lens
        };
        self.added_lens = 0;
        let t = std::mem::take(&mut self.touched);
        let in_use = MapsInUse {
            table_seed: current.table_seed,
            table_lens_v4: lens,
            exact_v4: t.flag(map_bit::EXACT_V4, scan, current.exact_v4, || {
                self.exact_v4.keys().next().is_some()
            }),
            exact_v6: t.flag(map_bit::EXACT_V6, scan, current.exact_v6, || {
                self.exact_v6.keys().next().is_some()
            }),
            prefix_v4: t.flag(map_bit::PREFIX_V4, scan, current.prefix_v4, || {
                self.prefix_v4.keys().next().is_some()
            }),
            prefix_v6: t.flag(map_bit::PREFIX_V6, scan, current.prefix_v6, || {
                self.prefix_v6.keys().next().is_some()
            }),
            allow: t.flag(map_bit::ALLOW, scan, current.allow, || {
                self.allow.keys().next().is_some()
            }),
            flow: t.flag(map_bit::FLOW, scan, current.flow, || {
                self.flow.keys().next().is_some()
            }),
        };
        self.in_use
            .set(0, in_use, 0)
            .map_err(map_err("update", map_names::MAPS_IN_USE))?;
        Ok(in_use)
    }

    /// The table's multiplier as `MAPS_IN_USE` holds it (zero before the table's first block).
    fn current_seed(&self) -> Result<u64, VerdictError> {
        Ok(self.read_in_use()?.table_seed)
    }

    /// The published `MAPS_IN_USE`. Unreadable is an error, never a guess: its multiplier
    /// decides where every IPv4 block lives.
    fn read_in_use(&self) -> Result<MapsInUse, VerdictError> {
        self.in_use
            .get(&0, 0)
            .map_err(map_err("read", map_names::MAPS_IN_USE))
    }

    /// The table's multiplier, chosen (random, odd) and published before the first block goes
    /// into the table. Called under the writer lock.
    fn table_seed(&mut self) -> Result<u64, VerdictError> {
        let current = self.read_in_use()?;
        if current.table_seed != 0 {
            return Ok(current.table_seed);
        }
        let seed = getrandom::u64().map_err(|source| VerdictError::Random { source })? | 1;
        self.in_use
            .set(
                0,
                MapsInUse {
                    table_seed: seed,
                    ..current
                },
                0,
            )
            .map_err(map_err("update", map_names::MAPS_IN_USE))?;
        Ok(seed)
    }

    /// Inserts or replaces the block of the IPv4 network `net`: in the table, or, when its
    /// probe window is full, in the overflow hash (hosts) or trie (prefixes). Returns the
    /// replaced entry's verdict id.
    fn insert_v4(&mut self, net: Ipv4Net, value: BlockValue) -> Result<Option<u64>, VerdictError> {
        let len = u32::from(net.prefix_len());
        let octets = net.network().octets();
        // One network has one entry: if an overflow map already holds it, replace it there.
        if len == 32 && self.exact_v4.get(&octets, 0).is_ok() {
            return self.insert_exact_v4(octets, value);
        }
        let key = v4_key(net);
        if len < 32
            && self
                .prefix_v4
                .get(&key, 0)
                .is_ok_and(|v| v.prefix_len == len)
        {
            return self.insert_prefix_v4(key, value);
        }
        let seed = self.table_seed()?;
        self.added_lens |= 1 << len;
        match self
            .table_v4
            .insert(u32::from_ne_bytes(octets), len, seed, &value)
        {
            table::Insert::Replaced(old) => Ok(Some(old)),
            table::Insert::Added => Ok(None),
            table::Insert::Full if len == 32 => self.insert_exact_v4(octets, value),
            table::Insert::Full => self.insert_prefix_v4(key, value),
        }
    }

    /// Inserts into the IPv4 overflow hash, which XDP then consults for every IPv4 packet:
    /// only a block that went there may flag it in use.
    fn insert_exact_v4(
        &mut self,
        octets: V4Addr,
        value: BlockValue,
    ) -> Result<Option<u64>, VerdictError> {
        self.touched.added |= map_bit::EXACT_V4;
        insert_exact(&mut self.exact_v4, map_names::BLOCK_EXACT_V4, octets, value)
    }

    /// Inserts into the IPv4 overflow trie; as [`Self::insert_exact_v4`].
    fn insert_prefix_v4(
        &mut self,
        key: Key<V4Addr>,
        value: BlockValue,
    ) -> Result<Option<u64>, VerdictError> {
        self.touched.added |= map_bit::PREFIX_V4;
        insert_prefix(&mut self.prefix_v4, map_names::BLOCK_PREFIX_V4, &key, value)
    }

    /// Removes the block of exactly the IPv4 network `net`; returns its verdict id if known.
    fn remove_v4(
        &mut self,
        net: Ipv4Net,
        not_found: impl Fn(MapError, &'static str) -> VerdictError,
    ) -> Result<Option<u64>, VerdictError> {
        let len = u32::from(net.prefix_len());
        let octets = net.network().octets();
        let seed = self.current_seed()?;
        if seed != 0
            && let Some(id) = self.table_v4.remove(u32::from_ne_bytes(octets), len, seed)
        {
            return Ok(Some(id));
        }
        // Not in the table: an overflow map's flag is recomputed.
        self.touched.removed |= if len == 32 {
            map_bit::EXACT_V4
        } else {
            map_bit::PREFIX_V4
        };
        if len == 32 {
            remove_exact(
                &mut self.exact_v4,
                map_names::BLOCK_EXACT_V4,
                &octets,
                not_found,
            )
            .map(Some)
        } else {
            remove_prefix(
                &mut self.prefix_v4,
                map_names::BLOCK_PREFIX_V4,
                &v4_key(net),
                not_found,
            )
        }
    }

    /// `MAPS_IN_USE` as published: which maps XDP consults. A diagnostic for tests.
    pub fn published_in_use(&self) -> Result<MapsInUse, VerdictError> {
        self.read_in_use()
    }

    /// The IPv4 block table's multiplier (zero until its first block). A diagnostic: with it,
    /// tests build addresses that share a probe window.
    pub fn v4_table_seed(&self) -> Result<u64, VerdictError> {
        self.current_seed()
    }

    /// IPv4 blocks in the table, in the overflow hash and in the overflow trie.
    pub fn v4_placement(&self) -> (usize, usize, usize) {
        (
            self.table_v4.blocks().len(),
            self.exact_v4.keys().count(),
            self.prefix_v4.keys().count(),
        )
    }

    /// Blocks `net` for `ttl` from `now_boot_ns`. Returns the verdict id.
    pub fn block(
        &mut self,
        net: IpNet,
        ttl: Duration,
        reason: Reason,
        text: &str,
        now_boot_ns: u64,
    ) -> Result<u64, VerdictError> {
        check_ttl(ttl)?;
        check_text(text)?;
        let verdict_id = getrandom::u64().unwrap_or(now_boot_ns) | 1;
        self.write(|v| v.block_locked(net, ttl, reason, text, now_boot_ns, verdict_id))
    }

    /// Enforces a decision of the policy: writes its block when the policy says the kernel
    /// enforces it (not for alerts, dry runs or blocks enforced upstream): an address or prefix
    /// block, and for a client behind a PROXY protocol proxy one flow block per connection too
    /// (its address block then stops its new connections at their PROXY header); for a shared
    /// address blocked by connection, only the flow blocks of its connections that carried a
    /// marked client. A prefix
    /// block's exceptions (addresses it spares) are allowlisted first, for the same TTL, under
    /// the same id; a host block withdraws the host's own exception, if it had one (as every
    /// host block does, [`Self::block`] too). The id is
    /// the decision's, so `blocks list` leads back to the decision's evidence. Returns whether
    /// a block was written.
    pub fn apply(&mut self, decision: &Decision, now_boot_ns: u64) -> Result<bool, VerdictError> {
        let Some(target) = decision.target.filter(|_| decision.blocks_in_kernel()) else {
            return Ok(false);
        };
        let ttl = Duration::from_secs(decision.ttl_s);
        check_ttl(ttl)?;
        let mut end = decision.reason.len().min(NOTE_TEXT_LEN);
        while !decision.reason.is_char_boundary(end) {
            end -= 1;
        }
        let text = decision.reason.get(..end).unwrap_or("apisensor");
        let text = if text.is_empty() { "apisensor" } else { text };
        let reason = decision
            .findings
            .first()
            .map_or(Reason::Detector, |f| reason_of(f.detector));
        // An odd id, as the CLI's: zero means "none" in the kernel's notes.
        let id = decision.id | 1;
        if decision.enforcement == Enforcement::Connection {
            // At a shared address: never the address, only the connections that carried a
            // marked client (none in the decision that starts the matching).
            for flow in &decision.flows {
                self.block_flow(flow.client, flow.server, ttl, reason, text, now_boot_ns, id)?;
            }
            return Ok(!decision.flows.is_empty());
        }
        if decision.enforcement == Enforcement::Flow {
            // By connection: the TCP peer is the proxy, never blocked. The connections seen so
            // far are blocked by flow key; the client's own address is blocked too, which the
            // XDP program checks against the client a PROXY header names at the start of each
            // new connection (so a client opening a connection per attempt gets none through).
            self.write(|v| v.block_locked(target, ttl, reason, text, now_boot_ns, id))?;
            for flow in &decision.flows {
                self.block_flow(flow.client, flow.server, ttl, reason, text, now_boot_ns, id)?;
            }
            return Ok(true);
        }
        // A prefix block's exceptions first, with the block's TTL and the decision's id: a
        // spared source is allowlisted before the block can refuse it, and the kernel stops
        // honouring both at the same time. A failed exception leaves the block unwritten (the
        // policy then forgets it and tries again).
        for net in decision.exceptions.iter().filter(|n| target.contains(*n)) {
            self.allow_exception(*net, ttl, id, now_boot_ns)?;
        }
        self.write(|v| v.block_locked(target, ttl, reason, text, now_boot_ns, id))?;
        Ok(true)
    }

    fn block_locked(
        &mut self,
        net: IpNet,
        ttl: Duration,
        reason: Reason,
        text: &str,
        now_boot_ns: u64,
        verdict_id: u64,
    ) -> Result<u64, VerdictError> {
        let (note, value) = note_and_value(
            ttl,
            reason,
            text,
            now_boot_ns,
            verdict_id,
            u32::from(net.prefix_len()),
        );
        if is_host(net) {
            // An address blocked on its own (by the policy or the operator) loses an exception
            // that spared it from its prefix's block: it would let it past this block too.
            self.withdraw_exception_locked(net)?;
        }
        self.with_note(verdict_id, note, |v| v.insert_block(net, value))?;
        Ok(verdict_id)
    }

    /// Writes the note of `verdict_id`, then the block entry through `insert`, which returns
    /// the verdict id of the entry it replaced. A failed insert takes the note back, so nothing
    /// is left half-written; a replaced entry's note is removed (unless it is this one's).
    fn with_note(
        &mut self,
        verdict_id: u64,
        note: VerdictNote,
        insert: impl FnOnce(&mut Self) -> Result<Option<u64>, VerdictError>,
    ) -> Result<(), VerdictError> {
        self.notes
            .insert(verdict_id, note, 0)
            .map_err(map_err("insert", map_names::VERDICT_NOTES))?;
        let old_note = match insert(self) {
            Ok(old) => old,
            Err(e) => {
                let _ = self.notes.remove(&verdict_id);
                return Err(e);
            }
        };
        if let Some(old) = old_note.filter(|old| *old != verdict_id) {
            // The replaced block's note is now unreferenced.
            let _ = self.notes.remove(&old);
        }
        Ok(())
    }

    /// Inserts or replaces the address block of `net`; returns the replaced entry's verdict id.
    fn insert_block(&mut self, net: IpNet, value: BlockValue) -> Result<Option<u64>, VerdictError> {
        match net {
            IpNet::V4(n) => self.insert_v4(n, value),
            IpNet::V6(n) if is_host(net) => {
                self.touched.added |= map_bit::EXACT_V6;
                insert_exact(
                    &mut self.exact_v6,
                    map_names::BLOCK_EXACT_V6,
                    n.addr().octets(),
                    value,
                )
            }
            IpNet::V6(n) => {
                self.touched.added |= map_bit::PREFIX_V6;
                insert_prefix(
                    &mut self.prefix_v6,
                    map_names::BLOCK_PREFIX_V6,
                    &v6_key(n),
                    value,
                )
            }
        }
    }

    /// Blocks the one TCP connection from `client` to `server` (as the client's packets carry
    /// them: for a client behind a proxy, the proxy's address and port) for `ttl` from
    /// `now_boot_ns`: XDP drops that connection's ingress segments and nothing else. A block
    /// of the same connection is replaced. `verdict_id` keys the note (reason text, TTL): pass
    /// a non-zero id unique to the decision (the agent uses `decision.id | 1`, as [`Self::apply`]
    /// does), so `blocks list` leads back to the decision. Both ends must be of one family.
    #[expect(
        clippy::too_many_arguments,
        reason = "the signature of the agent's call, one argument per part of the block"
    )]
    pub fn block_flow(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        ttl: Duration,
        reason: Reason,
        text: &str,
        now_boot_ns: u64,
        verdict_id: u64,
    ) -> Result<(), VerdictError> {
        check_ttl(ttl)?;
        check_text(text)?;
        let key = flow_key(client, server)?;
        // 128: both addresses match whole, in their 16-byte form.
        let (note, value) = note_and_value(ttl, reason, text, now_boot_ns, verdict_id, 128);
        self.write(|v| {
            v.with_note(verdict_id, note, |v| {
                v.touched.added |= map_bit::FLOW;
                insert_exact(&mut v.flow, map_names::FLOW_BLOCKS, key, value)
            })
        })
    }

    /// Removes the flow block of the connection from `client` to `server`, and its note.
    pub fn unblock_flow(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
    ) -> Result<(), VerdictError> {
        let key = flow_key(client, server)?;
        self.write(|v| v.unblock_flow_locked(&key))
    }

    fn unblock_flow_locked(&mut self, key: &FlowKey) -> Result<(), VerdictError> {
        let (client, server) = flow_ends(key);
        let not_found = |e: MapError, map: &'static str| match e {
            MapError::KeyNotFound => VerdictError::FlowNotFound {
                client,
                server,
                map,
            },
            e if is_not_found(&e) => VerdictError::FlowNotFound {
                client,
                server,
                map,
            },
            source => VerdictError::Map {
                op: "remove",
                map,
                source,
            },
        };
        self.touched.removed |= map_bit::FLOW;
        let verdict_id = remove_exact(&mut self.flow, map_names::FLOW_BLOCKS, key, not_found)?;
        let _ = self.notes.remove(&verdict_id);
        Ok(())
    }

    /// Removes the block of exactly `net`.
    pub fn unblock(&mut self, net: IpNet) -> Result<(), VerdictError> {
        self.write(|v| v.unblock_locked(net))
    }

    fn unblock_locked(&mut self, net: IpNet) -> Result<(), VerdictError> {
        let not_found = |e: MapError, map: &'static str| match e {
            MapError::KeyNotFound => VerdictError::NotFound { net, map },
            e if is_not_found(&e) => VerdictError::NotFound { net, map },
            source => VerdictError::Map {
                op: "remove",
                map,
                source,
            },
        };
        self.touched.removed |= match net {
            IpNet::V4(_) => 0,
            IpNet::V6(_) if is_host(net) => map_bit::EXACT_V6,
            IpNet::V6(_) => map_bit::PREFIX_V6,
        };
        let verdict_id = match net {
            IpNet::V4(n) => self.remove_v4(n, not_found)?,
            IpNet::V6(n) if is_host(net) => Some(remove_exact(
                &mut self.exact_v6,
                map_names::BLOCK_EXACT_V6,
                &n.addr().octets(),
                not_found,
            )?),
            IpNet::V6(n) => remove_prefix(
                &mut self.prefix_v6,
                map_names::BLOCK_PREFIX_V6,
                &v6_key(n),
                not_found,
            )?,
        };
        let Some(verdict_id) = verdict_id else {
            return Ok(());
        };
        let _ = self.notes.remove(&verdict_id);
        Ok(())
    }

    /// Allowlists `net` for good (the operator's entry), removing the exceptions inside it.
    pub fn allow(&mut self, net: IpNet, now_boot_ns: u64) -> Result<(), VerdictError> {
        // Permanent, the operator's: no expiry, no originating decision.
        let value = AllowValue {
            added_at_ns: now_boot_ns,
            ..AllowValue::default()
        };
        self.write(|v| {
            v.touched.added |= map_bit::ALLOW;
            v.allow
                .insert(&net_key(net), value, 0)
                .map_err(map_err("insert", map_names::ALLOW))?;
            // Exceptions strictly inside it are redundant now, and the kernel honours only the
            // longest match: once lapsed, one would hide this entry from its address until
            // the purge. They go.
            let inside: Vec<IpNet> = v
                .allow
                .iter()
                .filter_map(Result::ok)
                .filter(|(k, a)| a.expires_ns != 0 && k.prefix_len() > net_key(net).prefix_len())
                .map(|(k, _)| key_net(&k))
                .filter(|e| net.contains(e))
                .collect();
            for e in inside {
                match v.unallow_locked(e) {
                    Ok(()) | Err(VerdictError::NotFound { .. }) => {}
                    Err(err) => return Err(err),
                }
            }
            Ok(())
        })
    }

    /// Allowlists `net` as an exception to the prefix block of decision `verdict_id`, for `ttl`
    /// from `now_boot_ns` (the kernel stops honouring it then, as it stops enforcing the block
    /// written with the same TTL). An operator's entry that covers `net` is left alone (see
    /// [`ExceptionWrite::Covered`]); an exception of the same net is extended, never shortened.
    pub fn allow_exception(
        &mut self,
        net: IpNet,
        ttl: Duration,
        verdict_id: u64,
        now_boot_ns: u64,
    ) -> Result<ExceptionWrite, VerdictError> {
        check_ttl(ttl)?;
        self.write(|v| v.allow_exception_locked(net, ttl, verdict_id, now_boot_ns))
    }

    fn allow_exception_locked(
        &mut self,
        net: IpNet,
        ttl: Duration,
        verdict_id: u64,
        now_boot_ns: u64,
    ) -> Result<ExceptionWrite, VerdictError> {
        let ttl_ns = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX);
        let expires_ns = now_boot_ns.saturating_add(ttl_ns).max(1);
        if self.own_block_expires(net)? > now_boot_ns {
            return Ok(ExceptionWrite::Blocked);
        }
        let key = net_key(net);
        // The longest entry that covers `net` (a trie lookup matches entries of the key's
        // length or shorter): an operator's, or an exception that outlasts this one, covers it.
        let cover = self.allow.get(&key, 0).ok();
        if let Some(c) = cover
            && (c.expires_ns == 0 || c.expires_ns >= expires_ns)
        {
            return Ok(ExceptionWrite::Covered);
        }
        let value = AllowValue {
            added_at_ns: now_boot_ns,
            // An exception renewed keeps its count (a covering shorter exception's count is
            // taken over too: exceptions are hosts, so that does not happen in practice).
            hits: cover.map_or(0, |c| c.hits),
            expires_ns,
            verdict_id,
        };
        self.touched.added |= map_bit::ALLOW;
        self.allow
            .insert(&key, value, 0)
            .map_err(map_err("insert", map_names::ALLOW))?;
        Ok(ExceptionWrite::Written)
    }

    /// The expiry of the exact block of the host `net` (zero when it has none, or `net` is no
    /// host).
    fn own_block_expires(&self, net: IpNet) -> Result<u64, VerdictError> {
        if !is_host(net) {
            return Ok(0);
        }
        let value = match net {
            IpNet::V4(n) => {
                let octets = n.addr().octets();
                let seed = self.current_seed()?;
                match self.table_v4.find(u32::from_ne_bytes(octets), 32, seed) {
                    Some(i) if seed != 0 => Some(self.table_v4.read(i).value),
                    _ => self.exact_v4.get(&octets, 0).ok(),
                }
            }
            IpNet::V6(n) => self.exact_v6.get(&n.addr().octets(), 0).ok(),
        };
        Ok(value.map_or(0, |v| v.expires_at_ns))
    }

    /// Removes the exception (not an operator's entry) of exactly `net`, if there is one:
    /// an address the policy blocks on its own loses the exception that spared it from its
    /// prefix's block, which would otherwise let it past its own block too.
    fn withdraw_exception_locked(&mut self, net: IpNet) -> Result<(), VerdictError> {
        // The longest match at `net`'s own length: the entry of exactly `net` if there is one.
        let is_exception = self
            .allow
            .get(&net_key(net), 0)
            .is_ok_and(|a| a.expires_ns != 0);
        if is_exception {
            match self.unallow_locked(net) {
                // The match was a shorter exception covering `net`, not an entry of `net`.
                Ok(()) | Err(VerdictError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Removes the allowlist entry of exactly `net`.
    pub fn unallow(&mut self, net: IpNet) -> Result<(), VerdictError> {
        self.write(|v| v.unallow_locked(net))
    }

    fn unallow_locked(&mut self, net: IpNet) -> Result<(), VerdictError> {
        self.touched.removed |= map_bit::ALLOW;
        self.allow.remove(&net_key(net)).map_err(|e| match e {
            MapError::KeyNotFound => VerdictError::NotFound {
                net,
                map: map_names::ALLOW,
            },
            source => VerdictError::Map {
                op: "remove",
                map: map_names::ALLOW,
                source,
            },
        })
    }

    /// Lists blocks (exact, then prefixes), with TTL left relative to `now_boot_ns`.
    pub fn blocks(&self, now_boot_ns: u64) -> Result<Vec<BlockEntry>, VerdictError> {
        let mut out = Vec::new();
        for slot in self.table_v4.blocks() {
            let addr = Ipv4Addr::from(slot.addr.to_ne_bytes());
            let net = Ipv4Net::new(addr, slot.prefix_len.min(32) as u8)
                .map_or_else(|_| IpNet::from(IpAddr::V4(addr)), IpNet::V4);
            out.push(self.entry(net, slot.value, now_boot_ns));
        }
        for item in &self.exact_v4 {
            let (addr, v) = item.map_err(map_err("iterate", map_names::BLOCK_EXACT_V4))?;
            out.push(self.entry(IpNet::from(IpAddr::from(addr)), v, now_boot_ns));
        }
        for item in &self.exact_v6 {
            let (addr, v) = item.map_err(map_err("iterate", map_names::BLOCK_EXACT_V6))?;
            out.push(self.entry(IpNet::from(IpAddr::from(addr)), v, now_boot_ns));
        }
        for item in &self.prefix_v4 {
            let (key, v) = item.map_err(map_err("iterate", map_names::BLOCK_PREFIX_V4))?;
            let net = Ipv4Net::new(key.data().into(), key.prefix_len().min(32) as u8)
                .map_or_else(|_| IpNet::from(IpAddr::from(key.data())), IpNet::V4);
            out.push(self.entry(net, v, now_boot_ns));
        }
        for item in &self.prefix_v6 {
            let (key, v) = item.map_err(map_err("iterate", map_names::BLOCK_PREFIX_V6))?;
            let net = Ipv6Net::new(key.data().into(), key.prefix_len().min(128) as u8)
                .map_or_else(|_| IpNet::from(IpAddr::from(key.data())), IpNet::V6);
            out.push(self.entry(net, v, now_boot_ns));
        }
        Ok(out)
    }

    fn entry(&self, net: IpNet, v: BlockValue, now_boot_ns: u64) -> BlockEntry {
        BlockEntry {
            net,
            value: v,
            reason: reason_name(&v),
            text: self.note_text(v.verdict_id),
            verdict_id: v.verdict_id,
            ttl_left_s: ttl_left_s(&v, now_boot_ns),
            hits: v.hits,
            last_hit_ago_ms: last_hit_ago_ms(&v, now_boot_ns),
        }
    }

    /// The reason text of a verdict's note, if it has one.
    fn note_text(&self, verdict_id: u64) -> Option<String> {
        self.notes.get(&verdict_id, 0).ok().map(|n| {
            let end = n.text.iter().position(|b| *b == 0).unwrap_or(NOTE_TEXT_LEN);
            String::from_utf8_lossy(&n.text[..end]).into_owned()
        })
    }

    /// Lists flow blocks, with TTL left relative to `now_boot_ns`.
    pub fn flow_blocks(&self, now_boot_ns: u64) -> Result<Vec<FlowBlockEntry>, VerdictError> {
        let mut out = Vec::new();
        for item in &self.flow {
            let (key, v) = match item {
                Ok(kv) => kv,
                // An entry removed while iterating (the agent's purge) is not an error.
                Err(MapError::KeyNotFound) => continue,
                Err(e) => return Err(map_err("iterate", map_names::FLOW_BLOCKS)(e)),
            };
            let (client, server) = flow_ends(&key);
            out.push(FlowBlockEntry {
                client,
                server,
                value: v,
                reason: reason_name(&v),
                text: self.note_text(v.verdict_id),
                verdict_id: v.verdict_id,
                ttl_left_s: ttl_left_s(&v, now_boot_ns),
                hits: v.hits,
                last_hit_ago_ms: last_hit_ago_ms(&v, now_boot_ns),
            });
        }
        Ok(out)
    }

    /// Lists allowlist entries, exceptions with their TTL left relative to `now_boot_ns`.
    pub fn allows(&self, now_boot_ns: u64) -> Result<Vec<AllowEntry>, VerdictError> {
        let mut out = Vec::new();
        for item in &self.allow {
            let (key, v) = match item {
                Ok(kv) => kv,
                // An entry removed while iterating (the agent's purge) is not an error.
                Err(MapError::KeyNotFound) => continue,
                Err(e) => return Err(map_err("iterate", map_names::ALLOW)(e)),
            };
            let exception = v.expires_ns != 0;
            out.push(AllowEntry {
                net: key_net(&key),
                hits: v.hits,
                verdict_id: exception.then_some(v.verdict_id),
                ttl_left_s: exception
                    .then(|| v.expires_ns.saturating_sub(now_boot_ns) / 1_000_000_000),
                expires_ns: exception.then_some(v.expires_ns),
            });
        }
        Ok(out)
    }

    /// Deletes blocks that expired before `now_boot_ns` (the kernel already ignores them) and
    /// their notes, and allowlist exceptions that lapsed (operator entries never do). Returns
    /// how many were removed.
    pub fn purge_expired(&mut self, now_boot_ns: u64) -> Result<usize, VerdictError> {
        let expired: Vec<BlockEntry> = self
            .blocks(now_boot_ns)?
            .into_iter()
            .filter(|b| b.value.expires_at_ns <= now_boot_ns)
            .collect();
        for b in &expired {
            self.unblock(b.net)?;
        }
        let expired_flows: Vec<FlowBlockEntry> = self
            .flow_blocks(now_boot_ns)?
            .into_iter()
            .filter(|f| f.value.expires_at_ns <= now_boot_ns)
            .collect();
        for f in &expired_flows {
            // XDP removes a block itself when a SYN reopens its connection's ports.
            match self.unblock_flow(f.client, f.server) {
                Ok(()) | Err(VerdictError::FlowNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let expired_allows: Vec<IpNet> = self
            .allows(now_boot_ns)?
            .into_iter()
            .filter(|a| a.expires_ns.is_some_and(|e| e <= now_boot_ns))
            .map(|a| a.net)
            .collect();
        for net in &expired_allows {
            // Re-checked under the lock: a writer may have extended it since the listing.
            self.write(|v| {
                let still = v
                    .allow
                    .get(&net_key(*net), 0)
                    .is_ok_and(|a| a.expires_ns != 0 && a.expires_ns <= now_boot_ns);
                if !still {
                    return Ok(());
                }
                match v.unallow_locked(*net) {
                    Ok(()) | Err(VerdictError::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            })?;
        }
        // Re-derive the in-use flags and table lengths even when nothing expired, so a stale
        // flag (a writer that died between its write and its refresh, or lengths whose last
        // block went) heals within one period.
        self.refresh_in_use()?;
        Ok(expired.len() + expired_flows.len() + expired_allows.len())
    }
}

/// The note and the kernel value of a new block.
fn note_and_value(
    ttl: Duration,
    reason: Reason,
    text: &str,
    now_boot_ns: u64,
    verdict_id: u64,
    prefix_len: u32,
) -> (VerdictNote, BlockValue) {
    let ttl_ns = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX);
    let mut note = VerdictNote {
        created_at_ns: now_boot_ns,
        ttl_ns,
        text: [0; NOTE_TEXT_LEN],
    };
    let len = text.len().min(NOTE_TEXT_LEN);
    note.text[..len].copy_from_slice(&text.as_bytes()[..len]);
    let value = BlockValue {
        expires_at_ns: now_boot_ns.saturating_add(ttl_ns),
        verdict_id,
        hits: 0,
        last_hit_ns: 0,
        reason: reason as u32,
        prefix_len,
    };
    (note, value)
}

fn reason_name(v: &BlockValue) -> &'static str {
    Reason::from_u32(v.reason).map_or("unknown", Reason::name)
}

fn ttl_left_s(v: &BlockValue, now_boot_ns: u64) -> u64 {
    v.expires_at_ns.saturating_sub(now_boot_ns) / 1_000_000_000
}

fn last_hit_ago_ms(v: &BlockValue, now_boot_ns: u64) -> Option<u64> {
    (v.last_hit_ns != 0).then(|| now_boot_ns.saturating_sub(v.last_hit_ns) / 1_000_000)
}

/// Inserts or replaces the exact block of `key`; returns the replaced entry's verdict id.
fn insert_exact<K: Pod>(
    map: &mut HashMap<MapData, K, BlockValue>,
    name: &'static str,
    key: K,
    value: BlockValue,
) -> Result<Option<u64>, VerdictError> {
    let old = map.get(&key, 0).ok().map(|v| v.verdict_id);
    map.insert(key, value, 0).map_err(map_err("insert", name))?;
    Ok(old)
}

/// Inserts or replaces the prefix block of exactly `key`; returns the replaced entry's verdict
/// id. A trie lookup is a longest-prefix match over entries no longer than the key, so once a
/// no-clobber insert has said an exact entry exists, a lookup returns that entry: O(1) per
/// block, which matters when loading many prefixes.
fn insert_prefix<K: Pod>(
    trie: &mut LpmTrie<MapData, K, BlockValue>,
    name: &'static str,
    key: &Key<K>,
    value: BlockValue,
) -> Result<Option<u64>, VerdictError> {
    match trie.insert(key, value, u64::from(BPF_NOEXIST)) {
        Ok(()) => return Ok(None),
        Err(e) if !is_exists(&e) => {
            return Err(VerdictError::Map {
                op: "insert",
                map: name,
                source: e,
            });
        }
        Err(_) => {}
    }
    let old = trie.get(key, 0).ok().map(|v| v.verdict_id);
    trie.insert(key, value, 0)
        .map_err(map_err("insert", name))?;
    Ok(old)
}

/// Removes the exact block of `key`; returns its verdict id.
fn remove_exact<K: Pod>(
    map: &mut HashMap<MapData, K, BlockValue>,
    name: &'static str,
    key: &K,
    not_found: impl Fn(MapError, &'static str) -> VerdictError,
) -> Result<u64, VerdictError> {
    let v = map.get(key, 0).map_err(|e| not_found(e, name))?;
    map.remove(key).map_err(|e| not_found(e, name))?;
    Ok(v.verdict_id)
}

/// Removes the prefix block of exactly `key`; returns its verdict id if it could be read.
fn remove_prefix<K: Pod>(
    trie: &mut LpmTrie<MapData, K, BlockValue>,
    name: &'static str,
    key: &Key<K>,
    not_found: impl Fn(MapError, &'static str) -> VerdictError,
) -> Result<Option<u64>, VerdictError> {
    // The lookup finds the exact entry if there is one (see `insert_prefix`); the remove,
    // which needs an exact match, says whether there was.
    let v = trie.get(key, 0).ok();
    trie.remove(key).map_err(|e| not_found(e, name))?;
    Ok(v.map(|v| v.verdict_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_use_flags_are_recomputed_only_after_a_removal_or_a_scan() {
        use map_bit::{ALLOW, EXACT_V4};
        let none = Touched::default();
        let added = Touched {
            added: EXACT_V4,
            removed: 0,
        };
        let removed = Touched {
            added: 0,
            removed: EXACT_V4,
        };
        let both = Touched {
            added: EXACT_V4,
            removed: EXACT_V4,
        };
        // (touched, scan, published flag, map has keys, expected flag, map asked)
        let cases = [
            (none, false, 0, true, 0, false),
            (none, false, 1, false, 1, false),
            (added, false, 0, false, 1, false),
            (removed, false, 1, false, 0, true),
            (removed, false, 0, true, 1, true),
            (both, false, 1, false, 0, true),
            (none, true, 1, false, 0, true),
            (none, true, 0, true, 1, true),
            // Another map's change leaves this one's flag alone.
            (
                Touched {
                    added: ALLOW,
                    removed: ALLOW,
                },
                false,
                1,
                false,
                1,
                false,
            ),
        ];
        for (i, (t, scan, published, has, want, asks)) in cases.into_iter().enumerate() {
            let mut asked = false;
            let got = t.flag(EXACT_V4, scan, published, || {
                asked = true;
                has
            });
            assert_eq!((got, asked), (want, asks), "case {i}");
        }
    }

    #[test]
    fn parses_addresses_and_prefixes() {
        let ok = [
            ("198.51.100.7", "198.51.100.7/32"),
            ("198.51.100.0/24", "198.51.100.0/24"),
            ("2001:db8::1", "2001:db8::1/128"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
        ];
        for (input, want) in ok {
            assert_eq!(parse_net(input).expect(input).to_string(), want, "{input}");
        }
        let bad = [
            ("not-an-ip", "is not an IP address"),
            ("", "is not an IP address"),
            ("198.51.100.0/33", "out of range"),
            ("2001:db8::/129", "out of range"),
            ("198.51.100.0/-1", "is not an IP address"),
            ("198.51.100.0/", "is not an IP address"),
            ("198.51.100.7/24", "did you mean 198.51.100.0/24"),
            ("198.51.100.300", "is not an IP address"),
        ];
        for (input, want) in bad {
            let err = parse_net(input).expect_err(input).to_string();
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn flow_keys_map_ipv4_and_keep_ports_in_host_order() {
        let sa = |s: &str| s.parse::<SocketAddr>().expect(s);
        // (client, server, key source, key destination)
        let ok = [
            (
                "198.51.100.2:40000",
                "203.0.113.1:443",
                sensor_common::v4_mapped([198, 51, 100, 2]),
                sensor_common::v4_mapped([203, 0, 113, 1]),
            ),
            (
                "[2001:db8::2]:40000",
                "[2001:db8::1]:443",
                "2001:db8::2"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
                "2001:db8::1"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
            ),
            // An IPv4-mapped IPv6 end is the same key as the IPv4 one.
            (
                "[::ffff:198.51.100.2]:40000",
                "203.0.113.1:443",
                sensor_common::v4_mapped([198, 51, 100, 2]),
                sensor_common::v4_mapped([203, 0, 113, 1]),
            ),
        ];
        for (client, server, src, dst) in ok {
            let key = flow_key(sa(client), sa(server)).expect(client);
            assert_eq!(
                key,
                FlowKey {
                    src,
                    dst,
                    sport: 40000,
                    dport: 443,
                    zero: 0
                },
                "{client} -> {server}"
            );
            let (c, s) = flow_ends(&key);
            assert_eq!(
                (
                    c.port(),
                    s.port(),
                    c.ip().to_canonical(),
                    s.ip().to_canonical()
                ),
                (
                    40000,
                    443,
                    sa(client).ip().to_canonical(),
                    sa(server).ip().to_canonical()
                ),
                "{client} -> {server} round trip"
            );
        }
        let err = flow_key(sa("198.51.100.2:40000"), sa("[2001:db8::1]:443"))
            .expect_err("mixed families")
            .to_string();
        assert!(err.contains("mixes IPv4 and IPv6"), "{err}");
    }

    #[test]
    fn checks_ttls() {
        assert!(check_ttl(Duration::ZERO).is_err());
        assert!(check_ttl(Duration::from_secs(1)).is_ok());
        assert!(check_ttl(MAX_TTL).is_ok());
        assert!(check_ttl(MAX_TTL + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn trie_keys_round_trip() {
        for s in [
            "198.51.100.0/24",
            "203.0.113.9/32",
            "2001:db8::/32",
            "0.0.0.0/0",
            "::/0",
        ] {
            let net = parse_net(s).expect(s);
            assert_eq!(key_net(&net_key(net)), net, "{s}");
        }
        assert_eq!(
            net_key(parse_net("198.51.100.0/24").unwrap()).prefix_len(),
            120
        );
    }
}
