//! The pipeline owner's side of the control socket: the journal of recent findings and
//! decisions, and the answers to queries, computed from the pipeline's read accessors. The
//! agent's sink calls [`Control::answer_pending`] after each drain of the rings; nothing here
//! runs per record.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use tokio::sync::{broadcast, mpsc};

use super::Query;
use super::protocol::{
    DecisionBrief, EndpointRow, MAX_LIMIT, Request, Response, SortKey, SourceReport, SourceRow,
    Status,
};
use crate::decide::Decision;
use crate::detect::{Entity, Finding};
use crate::pipeline::Pipeline;

/// Findings and decisions the journal keeps.
pub const JOURNAL: usize = 1024;

/// Live events a slow follower may fall behind by before it misses some.
pub const LIVE_BACKLOG: usize = 256;

/// One finding or decision the journal keeps.
#[derive(Debug)]
struct Recorded {
    /// The source it is about, if it is about one.
    source: Option<IpAddr>,
    /// The address or prefix a decision targets.
    target: Option<IpNet>,
    /// The decision, in brief.
    decision: Option<DecisionBrief>,
    /// Its event line (JSON, no newline).
    line: Arc<str>,
}

/// The recent findings and decisions (at most [`JOURNAL`]), and the broadcast of new ones to
/// followers. Findings and decisions are rare next to records: one copy of each line is
/// cheap.
#[derive(Debug)]
pub struct Journal {
    recent: VecDeque<Recorded>,
    live: broadcast::Sender<Arc<str>>,
}

impl Default for Journal {
    fn default() -> Self {
        Self::new()
    }
}

impl Journal {
    /// An empty journal.
    pub fn new() -> Self {
        Self {
            recent: VecDeque::with_capacity(64),
            live: broadcast::Sender::new(LIVE_BACKLOG),
        }
    }

    /// The sender of live events, to subscribe followers.
    pub fn live(&self) -> broadcast::Sender<Arc<str>> {
        self.live.clone()
    }

    /// Records a finding with its event line.
    pub fn finding(&mut self, f: &Finding, line: &[u8]) {
        let source = match &f.entity {
            Entity::Source(ip) => Some(*ip),
            _ => None,
        };
        self.push(source, None, None, line);
    }

    /// Records a decision with its event line.
    pub fn decision(&mut self, d: &Decision, line: &[u8]) {
        let source = match &d.entity {
            Entity::Source(ip) => Some(*ip),
            _ => d
                .target
                .filter(|t| t.prefix_len() == t.max_prefix_len())
                .map(|t| t.addr()),
        };
        self.push(source, d.target, Some(brief(d)), line);
    }

    fn push(
        &mut self,
        source: Option<IpAddr>,
        target: Option<IpNet>,
        decision: Option<DecisionBrief>,
        line: &[u8],
    ) {
        let text = String::from_utf8_lossy(line);
        let line: Arc<str> = Arc::from(text.trim_end());
        if self.recent.len() >= JOURNAL {
            self.recent.pop_front();
        }
        // No follower is not an error.
        let _ = self.live.send(Arc::clone(&line));
        self.recent.push_back(Recorded {
            source: source.map(|ip| ip.to_canonical()),
            target,
            decision,
            line,
        });
    }

    /// The latest `limit` event lines, oldest first.
    fn lines(&self, limit: usize, about: Option<IpAddr>) -> Vec<serde_json::Value> {
        let mut out: Vec<serde_json::Value> = self
            .recent
            .iter()
            .rev()
            .filter(|r| about.is_none_or(|ip| r.is_about(ip)))
            .take(limit)
            .filter_map(|r| serde_json::from_str(&r.line).ok())
            .collect();
        out.reverse();
        out
    }

    /// The latest decision about each source.
    fn decisions(&self) -> HashMap<IpAddr, DecisionBrief> {
        let mut out = HashMap::new();
        for r in &self.recent {
            if let (Some(ip), Some(d)) = (r.source, &r.decision) {
                out.insert(ip, d.clone());
            }
        }
        out
    }

    /// The latest decision about `ip`.
    fn decision_about(&self, ip: IpAddr) -> Option<DecisionBrief> {
        self.recent
            .iter()
            .rev()
            .filter(|r| r.is_about(ip))
            .find_map(|r| r.decision.clone())
    }
}

impl Recorded {
    fn is_about(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.source == Some(ip) || self.target.is_some_and(|t| t.contains(&ip))
    }
}

/// A decision in brief.
fn brief(d: &Decision) -> DecisionBrief {
    DecisionBrief {
        id: d.id,
        at_ns: d.at_ns,
        action: d.action.to_string(),
        enforcement: serde_json::to_value(d.enforcement)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        score: d.score,
        reason: d.reason.clone(),
        ttl_s: d.ttl_s,
    }
}

/// What the agent tells about itself beyond the pipeline.
#[derive(Clone, Debug, Default)]
pub struct AgentInfo {
    /// The interface.
    pub iface: String,
    /// XDP attach mode.
    pub xdp_mode: String,
    /// TC attach mode.
    pub tc_mode: String,
    /// The configuration file.
    pub config: Option<String>,
    /// Dry run.
    pub dry_run: bool,
}

/// The agent's own counts at the time of a query.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    /// Records read.
    pub events: u64,
    /// Records that failed to decode.
    pub decode_errors: u64,
    /// Blocks written.
    pub blocks_written: u64,
}

/// The owner's end of the control socket.
#[derive(Debug)]
pub struct Control {
    queries: mpsc::Receiver<Query>,
    info: AgentInfo,
    /// Unix ns at start.
    started_ns: u64,
    /// Records and Unix ns at the last rate sample, and the rate then.
    rate: (u64, u64, f64),
}

impl Control {
    /// The owner's end, receiving `queries`, started at `now_ns` (Unix).
    pub fn new(queries: mpsc::Receiver<Query>, info: AgentInfo, now_ns: u64) -> Self {
        Self {
            queries,
            info,
            started_ns: now_ns,
            rate: (0, now_ns, 0.0),
        }
    }

    /// Answers every pending query (none waits longer than one drain period).
    pub fn answer_pending(&mut self, p: &Pipeline, journal: &Journal, counts: Counts, now: u64) {
        let (events, at, _) = self.rate;
        let dt = now.saturating_sub(at);
        if dt >= 2_000_000_000 {
            #[expect(clippy::cast_precision_loss, reason = "a rate")]
            let eps = counts.events.saturating_sub(events) as f64 / (dt as f64 / 1e9);
            self.rate = (counts.events, now, eps);
        }
        while let Ok(q) = self.queries.try_recv() {
            let response = self.answer(&q.request, p, journal, counts, now);
            // A client that went away is not an error.
            let _ = q.reply.send(response);
        }
    }

    /// The answer to one request.
    pub fn answer(
        &self,
        request: &Request,
        p: &Pipeline,
        journal: &Journal,
        counts: Counts,
        now: u64,
    ) -> Response {
        match request {
            Request::Status => Response::Status(self.status(p, counts, now)),
            Request::Sources {
                sort,
                since_s,
                limit,
            } => sources(p, journal, *sort, *since_s, *limit, now),
            Request::Source { source } => Response::Source(Box::new(SourceReport {
                source: *source,
                detection: p.detection().source(*source),
                decision: journal.decision_about(*source),
                events: journal.lines(MAX_LIMIT, Some(*source)),
            })),
            Request::Account { account } => Response::Account {
                account: p.detection().account(account),
            },
            Request::Events { limit, .. } => Response::Events {
                events: journal.lines((*limit).min(MAX_LIMIT), None),
            },
            Request::Endpoints { limit } => endpoints(p, *limit),
            Request::Ttps { limit } => Response::Ttps {
                tracked: p.detection().ttps(usize::MAX).len() as u64,
                fingerprints: p.detection().ttps((*limit).min(MAX_LIMIT)),
                per_hour: p.detection().fingerprints_per_hour(now),
            },
        }
    }

    fn status(&self, p: &Pipeline, counts: Counts, now: u64) -> Status {
        let detect = p.detection().counters();
        let policy = p.policy().counters();
        let on = p.detection().config().enabled;
        Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            iface: self.info.iface.clone(),
            xdp_mode: self.info.xdp_mode.clone(),
            tc_mode: self.info.tc_mode.clone(),
            uptime_s: now.saturating_sub(self.started_ns) / 1_000_000_000,
            events: counts.events,
            events_per_s: self.rate.2,
            decode_errors: counts.decode_errors,
            active_blocks: policy.active,
            blocks_written: counts.blocks_written,
            detection: on,
            detectors: if on {
                crate::detect::Detector::ALL
                    .iter()
                    .map(|d| d.name().to_owned())
                    .collect()
            } else {
                Vec::new()
            },
            dry_run: self.info.dry_run,
            config: self.info.config.clone(),
            transactions: detect.transactions,
            findings: detect.findings,
            decisions: policy.observe + policy.alert + policy.block,
            sources_tracked: detect.sources,
        }
    }
}

/// The sources table.
fn sources(
    p: &Pipeline,
    journal: &Journal,
    sort: SortKey,
    since_s: Option<u64>,
    limit: usize,
    now: u64,
) -> Response {
    let decisions = journal.decisions();
    let since = since_s.map(|s| now.saturating_sub(s.saturating_mul(1_000_000_000)));
    let mut rows: Vec<SourceRow> = p
        .detection()
        .sources()
        .filter(|s| since.is_none_or(|t| s.last_seen_ns >= t))
        .map(|summary| SourceRow {
            decision: decisions.get(&summary.source).cloned(),
            summary,
        })
        .collect();
    sort_rows(&mut rows, sort);
    rows.truncate(limit.min(MAX_LIMIT));
    Response::Sources {
        tracked: p.detection().counters().sources,
        sources: rows,
    }
}

/// Sorts rows by `key`, largest first; ties by address.
pub fn sort_rows(rows: &mut [SourceRow], key: SortKey) {
    let value = |r: &SourceRow| -> f64 {
        let s = &r.summary;
        match key {
            SortKey::Score => r.decision.as_ref().map_or(0.0, |d| d.score),
            SortKey::Rate => s.request_rate,
            SortKey::Requests => f64::from(s.requests_total),
            SortKey::Failures => s.failures,
            SortKey::Logins => s.logins_failed,
            SortKey::Accounts => s.accounts,
            #[expect(clippy::cast_precision_loss, reason = "an order")]
            SortKey::LastSeen => s.last_seen_ns as f64,
        }
    };
    rows.sort_by(|a, b| {
        value(b)
            .total_cmp(&value(a))
            .then_with(|| b.summary.last_seen_ns.cmp(&a.summary.last_seen_ns))
            .then_with(|| a.summary.source.cmp(&b.summary.source))
    });
}

/// The API inventory, busiest first.
fn endpoints(p: &Pipeline, limit: usize) -> Response {
    let spec = p.detection().config().context.api_spec.clone();
    let mut all = p.analyzer().catalogue().endpoints();
    all.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| (&a.route, &a.method).cmp(&(&b.route, &b.method)))
    });
    all.truncate(limit.min(MAX_LIMIT));
    Response::Endpoints {
        openapi: spec.is_some(),
        endpoints: all
            .into_iter()
            .map(|e| EndpointRow {
                documented: spec.as_ref().map(|s| s.documents(&e.method, &e.route)),
                success: e.statuses.success,
                redirect: e.statuses.redirect,
                client_error: e.statuses.client_error,
                server_error: e.statuses.server_error,
                other: e.statuses.none + e.statuses.informational,
                method: e.method,
                host: e.host,
                route: e.route,
                count: e.count,
                first_seen_ns: e.first_seen_ns,
                last_seen_ns: e.last_seen_ns,
            })
            .collect(),
    }
}
