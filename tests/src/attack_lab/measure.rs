//! What a scenario measures: the kernel's blocks as they appear and start dropping (polled
//! from the pinned maps, as `apisensor blocks list` reads them), the agent's decisions and
//! findings (its event file), the answers nginx gave (its access log), the client's own record
//! of every request, and the agent's CPU time and peak memory.
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

/// How often the block monitor reads the maps.
const POLL: Duration = Duration::from_millis(200);

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
}

/// Polls the pinned block maps in a thread until stopped.
pub struct BlockMonitor {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeMap<IpNet, SeenBlock>>>,
    handle: Option<JoinHandle<Option<String>>>,
}

impl BlockMonitor {
    /// Starts polling the maps pinned under `pin_dir`.
    pub fn start(pin_dir: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<BTreeMap<IpNet, SeenBlock>>> = Arc::default();
        let (stop2, seen2, pin): (_, _, PathBuf) = (stop.clone(), seen.clone(), pin_dir.into());
        let handle = thread::spawn(move || {
            let verdicts = match Verdicts::open_pinned(&pin) {
                Ok(v) => v,
                Err(e) => return Some(format!("cannot open the pinned maps: {e}")),
            };
            // Bounded by the scenario: it stops the monitor; the count bounds a lost stop.
            for _ in 0..100_000 {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let now = clock::unix_ns();
                if let Ok(blocks) = verdicts.blocks(clock::boot_ns()) {
                    let mut seen = seen2
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    for b in blocks {
                        let e = seen.entry(b.net).or_insert(SeenBlock {
                            net: b.net,
                            seen_ns: now,
                            first_hit_ns: None,
                            hits: 0,
                        });
                        e.hits = b.hits;
                        if b.hits > 0 && e.first_hit_ns.is_none() {
                            e.first_hit_ns = Some(now);
                        }
                    }
                }
                thread::sleep(POLL);
            }
            None
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
        if let Some(h) = self.handle.take()
            && let Ok(Some(error)) = h.join()
        {
            return Err(error);
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

/// The agent's CPU time so far and its peak resident memory, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// User and system CPU seconds.
    pub cpu_s: f64,
    /// Peak resident set (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
}

impl Usage {
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
