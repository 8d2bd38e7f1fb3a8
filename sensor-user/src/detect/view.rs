//! Read-only views of the detection state for the operator's investigation commands (the
//! agent answers them on its control socket): plain summaries of sources, accounts and login
//! fingerprints. Pure: no I/O, no clock; nothing here changes the state (no table entry is
//! marked active by being looked at).
//!
//! Counts are what the detectors keep: decayed counts (a count that halves every half-life
//! without new events) and distinct-count estimates, named as such.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::Detection;
use super::counters::share;
use super::finding::SampleRequest;
use super::state::{AddrKey, Answers, SourceState};

/// One tracked source, summarised.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceSummary {
    /// The address.
    pub source: IpAddr,
    /// Its latest event, Unix ns.
    pub last_seen_ns: u64,
    /// When its detailed history started (a few requests in), Unix ns; `None` for a source
    /// that sent too few requests to get one.
    pub history_since_ns: Option<u64>,
    /// Requests ever, counted up to 255.
    pub requests_total: u32,
    /// Request rate, per second (the decayed count's steady rate).
    pub request_rate: f64,
    /// Answered requests (decayed count).
    pub answered: f64,
    /// Answered with 2xx or 3xx (decayed count).
    pub successes: f64,
    /// Answered otherwise (decayed count).
    pub failures: f64,
    /// Share of answered requests that succeeded (`None` before any answer).
    pub success_share: Option<f64>,
    /// Failed logins (slow half-life decayed count).
    pub logins_failed: f64,
    /// Successful logins (slow half-life decayed count).
    pub logins_ok: f64,
    /// Distinct accounts it logged in to or failed to (estimate, recent windows).
    pub accounts: f64,
    /// Distinct sessions it presented (estimate, recent windows).
    pub sessions: f64,
    /// Packet rate the kernel counted, per second.
    pub packet_rate: f64,
    /// SYN rate, per second.
    pub syn_rate: f64,
    /// It completed a handshake and sent a request (it owns its address).
    pub verified: bool,
}

/// A sample request, as shown to the operator: method, path without query, status, account
/// and login outcome; never a header, body, query value or secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Request time, Unix ns.
    pub ts_ns: u64,
    /// Method.
    pub method: String,
    /// Path, without query or `;` parameters.
    pub path: String,
    /// Response status.
    pub status: Option<u16>,
    /// The account it acted for.
    pub account: Option<String>,
    /// Login outcome (`success`, `failure`).
    pub login: Option<String>,
}

impl From<&SampleRequest> for Sample {
    fn from(s: &SampleRequest) -> Self {
        Self {
            ts_ns: s.ts_ns,
            method: s.method.to_string(),
            path: s.path.clone(),
            status: s.status,
            account: s.account.clone(),
            login: s.login.map(|l| {
                serde_json::to_value(l)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            }),
        }
    }
}

/// Everything detection knows about one source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceView {
    /// Its summary.
    pub summary: SourceSummary,
    /// Its recent sample requests, oldest first.
    pub samples: Vec<Sample>,
    /// Accounts that failed to log in from it recently (from the accounts' evidence) or that
    /// its samples acted for.
    pub accounts: Vec<String>,
    /// Sessions it used recently, as keyed hashes (16 hex digits).
    pub sessions: Vec<String>,
    /// Distinct paths in the scraping window (estimate; detailed sources only).
    pub distinct_paths: Option<f64>,
    /// Median interval between its request starts, ms (detailed sources only).
    pub median_interval_ms: Option<f64>,
}

/// One source that acted for an account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountSource {
    /// The address.
    pub source: IpAddr,
    /// The account failed to log in from it recently.
    pub failed_here: bool,
    /// Its sample requests acting for the account.
    pub samples: Vec<Sample>,
    /// The source's summary, if it is still tracked.
    pub summary: Option<SourceSummary>,
}

/// Everything detection knows about one account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountView {
    /// The account name.
    pub account: String,
    /// Its latest login, Unix ns (0 when only samples mention it).
    pub last_seen_ns: u64,
    /// Failed logins (slow half-life decayed count).
    pub logins_failed: f64,
    /// Successful logins (slow half-life decayed count).
    pub logins_ok: f64,
    /// Distinct sources it failed from (estimate, recent windows).
    pub failing_sources: f64,
    /// The sources that acted for it.
    pub sources: Vec<AccountSource>,
    /// Its latest successful logins, with the sessions they opened or used (hashed, as
    /// `sources show` lists a source's sessions), newest first.
    pub logins: Vec<AccountLogin>,
}

/// One successful login of an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountLogin {
    /// Where from.
    pub source: IpAddr,
    /// The session's hash, when the login carried or set one.
    pub session: Option<String>,
    /// When, Unix ns.
    pub at_ns: u64,
}

/// One login fingerprint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ttp {
    /// The request fingerprint (`apr1_...`).
    pub fingerprint: String,
    /// Logins sent with it.
    pub logins: u64,
    /// Of those, successful.
    pub successes: u64,
    /// Of those, failed.
    pub failures: u64,
    /// Share of its logins with a known outcome that succeeded.
    pub success_rate: Option<f64>,
    /// Distinct sources that sent it (estimate).
    pub sources: f64,
    /// First seen, Unix ns.
    pub first_seen_ns: u64,
    /// Latest seen, Unix ns.
    pub last_seen_ns: u64,
}

/// Distinct login fingerprints in one hour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HourCount {
    /// Start of the hour, Unix ns.
    pub hour_ns: u64,
    /// Distinct fingerprints (estimate).
    pub fingerprints: f64,
}

impl Detection {
    /// Every tracked source, summarised (in table order, most recently active last).
    pub fn sources(&self) -> impl Iterator<Item = SourceSummary> + '_ {
        self.sources
            .entries
            .iter()
            .map(|(key, s)| self.summarise(key, s))
    }

    /// The summary of `ip`'s state, if it is tracked.
    pub fn source_summary(&self, ip: IpAddr) -> Option<SourceSummary> {
        let key = AddrKey::of(ip);
        self.sources.get(&key).map(|s| self.summarise(key, s))
    }

    fn summarise(&self, key: AddrKey, s: &SourceState) -> SourceSummary {
        let detail = self.details.get(&key);
        let ids = self.identities.get(&key);
        let answers: Answers =
            detail.map_or_else(|| s.tally.answers(), super::state::Detail::answers);
        let rates = self.decays.rates;
        SourceSummary {
            source: key.ip(),
            last_seen_ns: s.last_ns,
            history_since_ns: detail.map(|d| d.first_ns).filter(|&t| t != 0),
            requests_total: u32::from(s.total),
            request_rate: rates.rate(s.requests),
            answered: f64::from(answers.answered),
            successes: f64::from(answers.ok),
            failures: f64::from((answers.answered - answers.ok).max(0.0)),
            success_share: (answers.answered > 0.0).then(|| share(answers.ok, answers.answered)),
            logins_failed: ids.map_or(0.0, |i| f64::from(i.login_failed_slow)),
            logins_ok: ids.map_or(0.0, |i| f64::from(i.login_ok_slow)),
            // `+ 0.0` turns the estimate of an empty sketch, -0.0, into 0.0.
            accounts: ids.map_or(0.0, |i| {
                i.failed_accounts.estimate() + i.good_accounts.estimate() + 0.0
            }),
            sessions: ids.map_or(0.0, |i| i.sessions.estimate() + 0.0),
            packet_rate: rates.rate(s.packets),
            syn_rate: rates.rate(s.syns),
            verified: s.verified(),
        }
    }

    /// Everything known about `ip`: its summary, samples, accounts and sessions. The accounts
    /// and sessions come from their tables' evidence (the latest sources of each), a scan of
    /// those bounded tables.
    pub fn source(&self, ip: IpAddr) -> Option<SourceView> {
        let key = AddrKey::of(ip);
        let summary = self.source_summary(ip)?;
        let ip = key.ip();
        let detail = self.details.get(&key);
        let samples: Vec<Sample> = detail
            .map(|d| d.samples_in_order().iter().map(Sample::from).collect())
            .unwrap_or_default();
        let mut accounts: Vec<String> = self
            .accounts
            .entries
            .values()
            .filter(|a| a.recent_sources.contains(&ip))
            .map(|a| a.name.clone())
            .chain(samples.iter().filter_map(|s| s.account.clone()))
            .collect();
        accounts.sort();
        accounts.dedup();
        let mut sessions: Vec<String> = self
            .sessions
            .entries
            .iter()
            .filter(|(_, s)| s.recent.contains(&ip))
            .map(|(k, _)| format!("{k:016x}"))
            .collect();
        sessions.sort();
        Some(SourceView {
            summary,
            samples,
            accounts,
            sessions,
            distinct_paths: detail.map(|d| d.paths.estimate()),
            median_interval_ms: detail.and_then(|d| median_ms(d.intervals())),
        })
    }

    /// Everything known about the account `name`: its login counts and the sources that acted
    /// for it (those it failed from recently, and detailed sources whose samples act for it),
    /// each with its summary.
    pub fn account(&self, name: &str) -> Option<AccountView> {
        let state = self.accounts.get(&self.hasher.hash(name));
        let logins: Vec<AccountLogin> = self
            .account_logins
            .get(&self.hasher.hash(name))
            .map(|a| {
                a.logins
                    .iter()
                    .rev()
                    .map(|l| AccountLogin {
                        source: l.source,
                        session: l.session.map(|k| format!("{k:016x}")),
                        at_ns: l.at_ns,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut sources: Vec<AccountSource> = state
            .map(|a| {
                a.recent_sources
                    .iter()
                    .map(|&ip| AccountSource {
                        source: ip,
                        failed_here: true,
                        samples: Vec::new(),
                        summary: None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (key, detail) in self.details.entries.iter() {
            let samples: Vec<Sample> = detail
                .samples_in_order()
                .iter()
                .filter(|s| s.account.as_deref() == Some(name))
                .map(Sample::from)
                .collect();
            if samples.is_empty() {
                continue;
            }
            let ip = key.ip();
            match sources.iter_mut().find(|s| s.source == ip) {
                Some(s) => s.samples = samples,
                None => sources.push(AccountSource {
                    source: ip,
                    failed_here: false,
                    samples,
                    summary: None,
                }),
            }
        }
        if state.is_none() && sources.is_empty() {
            return None;
        }
        for s in &mut sources {
            s.summary = self.source_summary(s.source);
        }
        Some(AccountView {
            account: name.to_owned(),
            last_seen_ns: state.map_or(0, |a| a.last_ns),
            logins_failed: state.map_or(0.0, |a| f64::from(a.failed)),
            logins_ok: state.map_or(0.0, |a| f64::from(a.ok)),
            failing_sources: state.map_or(0.0, |a| a.failed_sources.estimate()),
            sources,
            logins,
        })
    }

    /// The login fingerprints seen, most logins first (ties by name), at most `limit`.
    pub fn ttps(&self, limit: usize) -> Vec<Ttp> {
        let mut all: Vec<Ttp> = self
            .ttps
            .table
            .entries
            .values()
            .map(|f| {
                let known = f.ok + f.failed;
                #[expect(clippy::cast_precision_loss, reason = "a share")]
                let rate = (known > 0).then(|| f.ok as f64 / known as f64);
                Ttp {
                    fingerprint: f.name.clone(),
                    logins: f.logins,
                    successes: f.ok,
                    failures: f.failed,
                    success_rate: rate,
                    sources: f.sources.estimate(),
                    first_seen_ns: f.first_ns,
                    last_seen_ns: f.last_ns,
                }
            })
            .collect();
        all.sort_by(|a, b| {
            b.logins
                .cmp(&a.logins)
                .then_with(|| a.fingerprint.cmp(&b.fingerprint))
        });
        all.truncate(limit);
        all
    }

    /// Distinct login fingerprints in each of the last 24 hours before `now_ns`, oldest
    /// first.
    pub fn fingerprints_per_hour(&self, now_ns: u64) -> Vec<HourCount> {
        self.ttps
            .per_hour(now_ns)
            .into_iter()
            .map(|(hour_ns, fingerprints)| HourCount {
                hour_ns,
                fingerprints,
            })
            .collect()
    }
}

/// The median of intervals in microseconds, in milliseconds.
fn median_ms(intervals: &[u32]) -> Option<f64> {
    let mut v = intervals.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).map(|&us| f64::from(us) / 1000.0)
}
