//! What a scenario measures: the blocks as they appear and start dropping (polled from the
//! agent's pinned maps, as `apisensor blocks list` reads them, or from the nftables sets that
//! fail2ban's and `CrowdSec`'s firewall actions fill), the agent's decisions and findings (its
//! event file), the answers nginx gave (its access log), the client's own record of every
//! request, and the enforcing processes' CPU time and peak memory.
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use ipnet::IpNet;
use sensor_user::{clock, verdict::Verdicts};
use serde_json::Value;

use crate::agent::json_lines;
use crate::lab::run_in_ns;

/// How often the block monitor reads the maps.
const POLL: Duration = Duration::from_millis(200);
/// The longest one read of a namespace's nftables sets may take.
const NFT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the block monitor reads blocks.
#[derive(Debug, Clone)]
pub enum BlockSource {
    /// The agent's block maps pinned under this directory (drop hits per block).
    Pinned(PathBuf),
    /// The nftables sets of the named network namespace (fail2ban's and `CrowdSec`'s firewall
    /// actions; no drop hits per address).
    Nftables(String),
}

/// A block as the monitor saw it.
#[derive(Debug, Clone)]
pub struct SeenBlock {
    /// Address or prefix.
    pub net: IpNet,
    /// When the monitor first saw it, Unix ns.
    pub seen_ns: u64,
    /// When the monitor first saw it with drop hits, Unix ns.
    pub first_hit_ns: Option<u64>,
    /// Its drop hits at the last poll.
    pub hits: u64,
    /// The nftables set it was in (for [`BlockSource::Nftables`]).
    pub set: Option<String>,
}

/// Polls the pinned block maps in a thread until stopped.
pub struct BlockMonitor {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeMap<IpNet, SeenBlock>>>,
    handle: Option<JoinHandle<Option<String>>>,
}

impl BlockMonitor {
    /// Starts polling `source`.
    pub fn start(source: BlockSource) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<BTreeMap<IpNet, SeenBlock>>> = Arc::default();
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let handle = thread::spawn(move || {
            let mut read = match reader(&source) {
                Ok(r) => r,
                Err(e) => return Some(e),
            };
            // A read may fail now and then (a map or set changing under it); reads that never
            // succeed are the measurement's failure.
            let (mut read_once, mut last_error) = (false, None);
            // Bounded by the scenario: it stops the monitor; the count bounds a lost stop.
            for _ in 0..100_000 {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let now = clock::unix_ns();
                let blocks = match read() {
                    Ok(b) => b,
                    Err(e) => {
                        last_error = Some(e);
                        thread::sleep(POLL);
                        continue;
                    }
                };
                read_once = true;
                {
                    // Held only while updating, not over the sleep.
                    let mut seen = seen2
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    for (net, hits, set) in blocks {
                        let e = seen.entry(net).or_insert(SeenBlock {
                            net,
                            seen_ns: now,
                            first_hit_ns: None,
                            hits: 0,
                            set,
                        });
                        e.hits = hits;
                        if hits > 0 && e.first_hit_ns.is_none() {
                            e.first_hit_ns = Some(now);
                        }
                    }
                }
                thread::sleep(POLL);
            }
            if read_once {
                None
            } else {
                last_error.map(|e| format!("the block monitor never read its source: {e}"))
            }
        });
        Self {
            stop,
            seen,
            handle: Some(handle),
        }
    }

    /// Every block seen so far.
    pub fn seen(&self) -> Vec<SeenBlock> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Whether a block covering one of `addrs` has been seen for at least `for_at_least`.
    pub fn blocked_for(&self, addrs: &[IpAddr], for_at_least: Duration) -> bool {
        let now = clock::unix_ns();
        self.seen().iter().any(|b| {
            addrs.iter().any(|a| b.net.contains(a))
                && now.saturating_sub(b.seen_ns) >= for_at_least.as_nanos() as u64
        })
    }

    /// Stops polling; returns every block seen, or why the maps could not be read.
    pub fn finish(mut self) -> Result<Vec<SeenBlock>, String> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(Some(error))) => return Err(error),
            Some(Err(_)) => return Err("the block monitor's thread panicked".to_owned()),
            _ => {}
        }
        Ok(self.seen())
    }
}

impl Drop for BlockMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// One read of a block source: each block, its drop hits and its nftables set.
type Read = Box<dyn FnMut() -> Result<Vec<(IpNet, u64, Option<String>)>, String> + Send>;

/// The read of `source`, or why it cannot be read.
fn reader(source: &BlockSource) -> Result<Read, String> {
    match source {
        BlockSource::Pinned(pin) => {
            let verdicts = Verdicts::open_pinned(pin)
                .map_err(|e| format!("cannot open the pinned maps: {e}"))?;
            Ok(Box::new(move || {
                let blocks = verdicts
                    .blocks(clock::boot_ns())
                    .map_err(|e| e.to_string())?;
                Ok(blocks.into_iter().map(|b| (b.net, b.hits, None)).collect())
            }))
        }
        BlockSource::Nftables(netns) => {
            let netns = netns.clone();
            Ok(Box::new(move || {
                let out = run_in_ns(&netns, "nft", &["-j", "list", "sets"], NFT_TIMEOUT);
                if !out.status.success() {
                    return Err(String::from_utf8_lossy(&out.stderr).into_owned());
                }
                let sets = nft_set_elements(&String::from_utf8_lossy(&out.stdout))?;
                Ok(sets
                    .into_iter()
                    .map(|(net, set)| (net, 0, Some(set)))
                    .collect())
            }))
        }
    }
}

/// Every address or prefix in the sets of `nft -j list sets`'s output, with its set's name.
/// Elements come as a plain address, as `{"prefix": {"addr", "len"}}`, or wrapped in
/// `{"elem": {"val": ...}}` when they carry a timeout.
pub fn nft_set_elements(json: &str) -> Result<Vec<(IpNet, String)>, String> {
    fn net_of(v: &Value) -> Option<IpNet> {
        if let Some(text) = v.as_str() {
            return text
                .parse::<IpAddr>()
                .ok()
                .map(IpNet::from)
                .or_else(|| text.parse().ok());
        }
        if let Some(p) = v.get("prefix") {
            let addr: IpAddr = p["addr"].as_str()?.parse().ok()?;
            let len = u8::try_from(p["len"].as_u64()?).ok()?;
            return IpNet::new(addr, len).ok();
        }
        net_of(&v.get("elem")?["val"])
    }
    let doc: Value =
        serde_json::from_str(json).map_err(|e| format!("nft's JSON does not parse: {e}"))?;
    let mut out = Vec::new();
    for item in doc["nftables"].as_array().into_iter().flatten() {
        let Some(set) = item.get("set") else {
            continue;
        };
        let name = set["name"].as_str().unwrap_or_default();
        for e in set["elem"].as_array().into_iter().flatten() {
            if let Some(net) = net_of(e) {
                out.push((net, name.to_owned()));
            }
        }
    }
    Ok(out)
}

/// A process's CPU time so far and its peak resident memory, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// User and system CPU seconds.
    pub cpu_s: f64,
    /// Peak resident set (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
}

impl Usage {
    /// The sum over `pids`: CPU seconds and peak memory added (processes that ran side by
    /// side).
    pub fn of_all(pids: &[u32]) -> Self {
        pids.iter()
            .map(|&p| Self::of(p))
            .fold(Self::default(), |a, b| Self {
                cpu_s: a.cpu_s + b.cpu_s,
                peak_rss_kib: a.peak_rss_kib + b.peak_rss_kib,
            })
    }

    /// Reads it for `pid` (zeros if the process is gone).
    pub fn of(pid: u32) -> Self {
        // SAFETY: sysconf has no preconditions.
        let ticks = f64::from(
            u32::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
                .unwrap_or(100)
                .max(1),
        );
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at field 3.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let tick = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // utime and stime are fields 14 and 15, so 11 and 12 after the name.
        #[expect(clippy::cast_precision_loss, reason = "CPU ticks stay far below 2^52")]
        let cpu_s = (tick(11) + tick(12)) as f64 / ticks;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let peak_rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Self {
            cpu_s,
            peak_rss_kib,
        }
    }
}

/// The agent's decisions and findings about some addresses.
#[derive(Debug, Default, Clone)]
pub struct Verdict {
    /// The first kernel block (written) covering one of them: its written time and the
    /// detectors of its findings.
    pub first_block: Option<(u64, Vec<String>)>,
    /// Every detector that made a block decision covering one of them.
    pub block_detectors: BTreeSet<String>,
    /// Every detector that reported a finding about one of them (alerts included).
    pub finding_detectors: BTreeSet<String>,
    /// Block decisions written covering them.
    pub blocks: usize,
}

/// Reads the event file `events` for decisions and findings about `addrs`.
pub fn verdict(events: &Path, addrs: &[IpAddr]) -> Verdict {
    let mut v = Verdict::default();
    let about = |e: &Value| covers(e, addrs);
    for e in json_lines(events) {
        let detectors: Vec<String> = match e["type"].as_str() {
            Some("decision") => e["findings"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["detector"].as_str().map(str::to_owned))
                .collect(),
            Some("finding") => e["detector"]
                .as_str()
                .map(str::to_owned)
                .into_iter()
                .collect(),
            _ => continue,
        };
        if !about(&e) {
            continue;
        }
        v.finding_detectors.extend(detectors.iter().cloned());
        if e["type"] == "decision"
            && e["action"] == "block"
            && let Some(written) = e["written_ns"].as_u64()
        {
            v.blocks += 1;
            v.block_detectors.extend(detectors.iter().cloned());
            if v.first_block.as_ref().is_none_or(|(t, _)| written < *t) {
                v.first_block = Some((written, detectors));
            }
        }
    }
    v
}

/// Whether an event line's target or entity covers one of `addrs` (a finding or decision about
/// a campaign lists its members in its target for blocks; the entity otherwise).
fn covers(e: &Value, addrs: &[IpAddr]) -> bool {
    let target = e["target"].as_str().and_then(|t| t.parse::<IpNet>().ok());
    if let Some(net) = target {
        return addrs.iter().any(|a| net.contains(a));
    }
    let id = e["entity"]["id"].as_str().unwrap_or_default();
    if let Ok(a) = id.parse::<IpAddr>() {
        return addrs.contains(&a);
    }
    id.parse::<IpNet>()
        .is_ok_and(|net| addrs.iter().any(|a| net.contains(a)))
}

/// Answers nginx logged (status other than 499, its code for a client that went away), per
/// client address, from its `combined` access log.
pub fn answered_by_nginx(access_log: &Path) -> BTreeMap<IpAddr, usize> {
    let mut out = BTreeMap::new();
    for line in std::fs::read_to_string(access_log)
        .unwrap_or_default()
        .lines()
    {
        let Some(addr) = line
            .split(' ')
            .next()
            .and_then(|a| a.parse::<IpAddr>().ok())
        else {
            continue;
        };
        // `... "GET / HTTP/1.1" 200 12 ...`: the status follows the quoted request.
        let status = line
            .split('"')
            .nth(2)
            .and_then(|rest| rest.split_whitespace().next());
        if status != Some("499") {
            *out.entry(addr).or_insert(0) += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::nft_set_elements;

    #[test]
    fn nft_sets_give_their_addresses_and_prefixes() {
        // As fail2ban's nftables action (plain elements) and CrowdSec's bouncer (elements with
        // a timeout) leave them, plus a prefix.
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"set": {"family": "inet", "name": "addr-set-nginx-botsearch", "table": "f2b-table",
                   "type": "ipv4_addr", "elem": ["203.0.113.9"]}},
          {"set": {"family": "ip6", "name": "crowdsec6-blacklists", "table": "crowdsec6",
                   "type": "ipv6_addr", "elem": [{"elem": {"val": "2001:db8::9", "timeout": 14399}},
                   {"prefix": {"addr": "2001:db8:1::", "len": 48}}]}},
          {"set": {"family": "ip", "name": "empty", "table": "t", "type": "ipv4_addr"}}]}"#;
        let got: Vec<(String, String)> = nft_set_elements(json)
            .expect("parses")
            .into_iter()
            .map(|(n, s)| (n.to_string(), s))
            .collect();
        let want = [
            ("203.0.113.9/32", "addr-set-nginx-botsearch"),
            ("2001:db8::9/128", "crowdsec6-blacklists"),
            ("2001:db8:1::/48", "crowdsec6-blacklists"),
        ];
        assert_eq!(
            got,
            want.map(|(n, s)| (n.to_owned(), s.to_owned())).to_vec()
        );
        assert!(nft_set_elements("not json").is_err());
    }
}
