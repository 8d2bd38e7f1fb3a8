//! Per-entity state: what the detectors know about each source address, source prefix,
//! account, session and endpoint, and about all traffic. Every table is bounded; a new entity
//! beyond the bound evicts the least recently active one of its kind, and the eviction is
//! counted.
//!
//! Counts decay (see `counters.rs`): all of an entity's counts are brought to the time of its
//! latest event before the event is added, with one decay factor per half-life. A source's
//! detailed history (request intervals, sample requests, identifiers walked, distinct paths)
//! lives in a second, smaller table and exists only for sources that sent a few requests, so
//! the many sources that send one or two cost only their counts.

use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

use super::config::DetectConfig;
use super::counters::{Decay, Distinct, Since};
use super::finding::SampleRequest;
use crate::http::{LoginOutcome, Transaction};
use crate::lru::LruTable;

/// A client address as a table key: IPv4 as IPv4-mapped IPv6.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct AddrKey(pub(crate) [u8; 16]);

impl AddrKey {
    /// The key of an address.
    pub(crate) fn of(ip: IpAddr) -> Self {
        Self(match ip.to_canonical() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        })
    }

    /// The address.
    pub(crate) fn ip(self) -> IpAddr {
        Ipv6Addr::from(self.0).to_canonical()
    }
}

/// A client prefix as a table key: the masked address and the prefix length of its family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct PrefixKey {
    /// Network address, as [`AddrKey`].
    addr: AddrKey,
    /// Prefix length within the family (24 for an IPv4 /24).
    len: u8,
}

impl PrefixKey {
    /// The prefix of `ip` of length `len` within its family (at most the family's length):
    /// the address with the bits past the prefix cleared, in the 128-bit form of [`AddrKey`].
    pub(crate) fn of(ip: IpAddr, len: u8) -> Self {
        let key = AddrKey::of(ip);
        let v4 = matches!(ip.to_canonical(), IpAddr::V4(_));
        let (len, bits) = if v4 {
            let len = len.min(32);
            (len, 96 + u32::from(len))
        } else {
            let len = len.min(128);
            (len, u32::from(len))
        };
        let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
        Self {
            addr: AddrKey((u128::from_be_bytes(key.0) & mask).to_be_bytes()),
            len,
        }
    }

    /// The network.
    pub(crate) fn net(self) -> IpNet {
        IpNet::new(self.addr.ip(), self.len).unwrap_or_else(|_| IpNet::from(self.addr.ip()))
    }
}

/// The prefixes a source belongs to: /24 for IPv4, /64 and /48 for IPv6.
pub(crate) fn prefixes_of(ip: IpAddr) -> impl Iterator<Item = PrefixKey> {
    let lens: &[u8] = match ip.to_canonical() {
        IpAddr::V4(_) => &[24],
        IpAddr::V6(_) => &[64, 48],
    };
    lens.iter().map(move |&len| PrefixKey::of(ip, len))
}

/// The decays of the configured half-lives.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Decays {
    /// Fast failed-login counts.
    pub(crate) logins: Decay,
    /// Slow failed-login counts.
    pub(crate) slow: Decay,
    /// Answered-request counts (success share, 404 share).
    pub(crate) answers: Decay,
    /// Rates (requests, SYNs).
    pub(crate) rates: Decay,
    /// Campaigns' login counts.
    pub(crate) campaign: Decay,
}

impl Decays {
    /// The decays of a configuration.
    pub(crate) fn of(cfg: &DetectConfig) -> Self {
        Self {
            logins: Decay::from_secs(cfg.brute_force.half_life_s),
            slow: Decay::from_secs(cfg.brute_force.slow_half_life_s),
            answers: Decay::from_secs(cfg.low_success.half_life_s),
            rates: Decay::from_secs(cfg.volume.half_life_s),
            campaign: Decay::from_secs(cfg.campaign.half_life_s),
        }
    }
}

/// The decay factors from an entity's last event to now.
#[derive(Clone, Copy, Debug)]
struct Factors {
    logins: f32,
    slow: f32,
    answers: f32,
    rates: f32,
}

impl Factors {
    fn new(d: &Decays, last_ns: u64, now_ns: u64) -> Self {
        let dt = now_ns.saturating_sub(last_ns);
        Self {
            logins: d.logins.factor(dt),
            slow: d.slow.factor(dt),
            answers: d.answers.factor(dt),
            rates: d.rates.factor(dt),
        }
    }
}

/// Packets and SYNs from one source since it was last counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Packets {
    /// IP packets (the kernel's count, all ports; none from a capture).
    pub packets: u64,
    /// TCP SYNs without ACK.
    pub syns: u64,
}

/// What one transaction says, reduced to what the counts need.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Outcome {
    /// The final response status, `None` when no response was seen.
    status: Option<u16>,
    /// The login result, `None` when the request was not a login.
    login: Option<LoginOutcome>,
}

impl Outcome {
    /// The outcome of a transaction.
    pub(crate) fn of(tx: &Transaction) -> Self {
        Self {
            status: tx.status,
            login: tx.login,
        }
    }

    /// A response was seen.
    pub(crate) fn answered(self) -> bool {
        self.status.is_some()
    }

    /// It was 2xx or 3xx.
    pub(crate) fn ok(self) -> bool {
        (200..400).contains(&self.status.unwrap_or(0))
    }

    /// It was 404.
    pub(crate) fn not_found(self) -> bool {
        self.status == Some(404)
    }

    /// A failed login.
    pub(crate) fn login_failed(self) -> bool {
        self.login == Some(LoginOutcome::Failure)
    }

    /// A successful login.
    pub(crate) fn login_ok(self) -> bool {
        self.login == Some(LoginOutcome::Success)
    }
}

/// How a source's requests were answered: decayed counts (answers half-life) in the detailed
/// history of a busy source, the [`Tally`] of a light one.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Answers {
    /// Answered requests.
    pub(crate) answered: f32,
    /// Answered with 2xx or 3xx.
    pub(crate) ok: f32,
    /// Answered with 404.
    pub(crate) not_found: f32,
}

impl Answers {
    /// Multiplies every count by `factor`.
    fn decay(&mut self, factor: f32) {
        self.answered *= factor;
        self.ok *= factor;
        self.not_found *= factor;
    }

    /// Adds one outcome.
    fn add(&mut self, o: Outcome) {
        if o.answered() {
            self.answered += 1.0;
        }
        if o.ok() {
            self.ok += 1.0;
        }
        if o.not_found() {
            self.not_found += 1.0;
        }
    }
}

/// How a source's requests were answered, counted (saturating at 255, not decayed) in three
/// bytes: the answers of a light source, and the first counts of its detailed history once it
/// gets one. Every threshold on answers wants far more requests than a source sends before it
/// is detailed (`limits.detail_after`), so no decision rests on these counts alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Answered requests.
    answered: u8,
    /// Answered with 2xx or 3xx.
    ok: u8,
    /// Answered with 404.
    not_found: u8,
}

impl Tally {
    /// Adds one outcome.
    fn add(&mut self, o: Outcome) {
        self.answered = self.answered.saturating_add(u8::from(o.answered()));
        self.ok = self.ok.saturating_add(u8::from(o.ok()));
        self.not_found = self.not_found.saturating_add(u8::from(o.not_found()));
    }

    /// Whether at least `min` requests were answered, every one with success.
    pub(crate) fn all_ok(self, min: u8) -> bool {
        self.answered >= min && self.ok == self.answered
    }

    /// The tally as counts.
    pub(crate) fn answers(self) -> Answers {
        Answers {
            answered: f32::from(self.answered),
            ok: f32::from(self.ok),
            not_found: f32::from(self.not_found),
        }
    }
}

/// Everything known about one source address. Kept small (32 bytes): there is one per source
/// and a million sources are tracked by default; logins and the distinct accounts and sessions
/// live in [`Identities`], the history of busy sources (with their answers) in [`Detail`].
#[derive(Clone, Debug, Default)]
pub(crate) struct SourceState {
    /// Latest event, Unix ns (the time every count below is decayed to).
    pub(crate) last_ns: u64,
    /// Requests (any, decayed with the rate half-life): the request rate.
    pub(crate) requests: f32,
    /// SYNs seen (rate half-life).
    pub(crate) syns: f32,
    /// Packets seen by the kernel (rate half-life; live only).
    pub(crate) packets: f32,
    /// Since when the request rate has been over the ceiling.
    pub(crate) over: Since,
    /// Since when the SYN rate has been over the ceiling.
    pub(crate) syn_over: Since,
    /// Since when the packet rate has been over the ceiling.
    pub(crate) packets_over: Since,
    /// How its requests were answered, until it has a detailed history.
    pub(crate) tally: Tally,
    /// Requests ever, saturating at 255: a source gets a detailed history after a few, and
    /// one that sent any completed a handshake and a request head, so it owns its address.
    pub(crate) total: u8,
    /// How its latest request's address was learned from a trusted proxy (a PROXY protocol
    /// header or forwarded headers), if it was: blocking its address would block the proxy.
    pub(crate) proxy: Option<crate::http::ProxyVia>,
}

impl SourceState {
    /// Whether the source sent a request (see [`SourceState::total`]).
    pub(crate) fn verified(&self) -> bool {
        self.total > 0
    }

    /// Brings the counts to `now_ns`.
    fn advance(&mut self, d: &Decays, now_ns: u64) {
        if self.last_ns == 0 {
            self.last_ns = now_ns;
            return;
        }
        let rates = d.rates.factor(now_ns.saturating_sub(self.last_ns));
        self.requests *= rates;
        self.syns *= rates;
        self.packets *= rates;
        self.last_ns = self.last_ns.max(now_ns);
    }

    /// Adds one transaction.
    pub(crate) fn add(&mut self, d: &Decays, now_ns: u64, o: Outcome) {
        self.advance(d, now_ns);
        self.total = self.total.saturating_add(1);
        self.requests += 1.0;
        self.tally.add(o);
    }

    /// Adds packets and SYNs seen from this source.
    pub(crate) fn add_packets(&mut self, d: &Decays, now_ns: u64, p: Packets) {
        self.advance(d, now_ns);
        #[expect(clippy::cast_precision_loss, reason = "counts")]
        let (packets, syns) = (p.packets as f32, p.syns as f32);
        self.packets += packets;
        self.syns += syns;
    }
}

/// The logins of a source and its distinct accounts and sessions: kept only for sources that
/// log in, or that are busy and hold a session (a table of its own, so that the many sources
/// that send a request or two pay nothing).
#[derive(Clone, Debug, Default)]
pub(crate) struct Identities {
    /// Latest login or session counted, Unix ns (the time the login counts are decayed to).
    pub(crate) last_ns: u64,
    /// Window number of the distinct counts.
    pub(crate) epoch: u32,
    /// Failed logins, fast half-life.
    pub(crate) login_failed: f32,
    /// Successful logins, fast half-life.
    pub(crate) login_ok: f32,
    /// Failed logins, slow half-life.
    pub(crate) login_failed_slow: f32,
    /// Successful logins, slow half-life.
    pub(crate) login_ok_slow: f32,
    /// Accounts that failed to log in.
    pub(crate) failed_accounts: Distinct<1>,
    /// Accounts that logged in.
    pub(crate) good_accounts: Distinct<1>,
    /// Sessions answered with success.
    pub(crate) good_sessions: Distinct<1>,
    /// Sessions presented, answered or not.
    pub(crate) sessions: Distinct<1>,
}

impl Identities {
    /// Adds the logins and identities of one transaction.
    pub(crate) fn add(
        &mut self,
        d: &Decays,
        now_ns: u64,
        epoch: u32,
        o: Outcome,
        account: Option<u64>,
        session: Option<u64>,
    ) {
        if self.last_ns != 0 {
            let dt = now_ns.saturating_sub(self.last_ns);
            let (fast, slow) = (d.logins.factor(dt), d.slow.factor(dt));
            self.login_failed *= fast;
            self.login_ok *= fast;
            self.login_failed_slow *= slow;
            self.login_ok_slow *= slow;
        }
        self.last_ns = self.last_ns.max(now_ns);
        if o.login_failed() {
            self.login_failed += 1.0;
            self.login_failed_slow += 1.0;
        }
        if o.login_ok() {
            self.login_ok += 1.0;
            self.login_ok_slow += 1.0;
        }
        let windows = u64::from(epoch.saturating_sub(self.epoch));
        if windows > 0 {
            self.failed_accounts.roll(windows);
            self.good_accounts.roll(windows);
            self.good_sessions.roll(windows);
            self.sessions.roll(windows);
            self.epoch = epoch;
        }
        if let Some(s) = session {
            self.sessions.insert(s);
            if o.ok() {
                self.good_sessions.insert(s);
            }
        }
        if let Some(a) = account {
            if o.login_failed() {
                self.failed_accounts.insert(a);
            }
            if o.login_ok() {
                self.good_accounts.insert(a);
            }
        }
    }
}

/// Intervals kept per detailed source.
pub(crate) const INTERVALS: usize = 32;
/// Sample requests kept per detailed source.
pub(crate) const SAMPLES: usize = 3;

/// The detailed history of a busy source.
#[derive(Clone, Debug, Default)]
pub(crate) struct Detail {
    /// How its requests were answered (answers half-life), seeded from the source's tally.
    pub(crate) answers: Answers,
    /// Latest answer counted, Unix ns (the time `answers` is decayed to; 0 before the first).
    pub(crate) answers_ns: u64,
    /// When the history started (the source's `limits.detail_after`th request), Unix ns.
    pub(crate) first_ns: u64,
    /// Time of the latest request start, Unix ns.
    pub(crate) last_request_ns: u64,
    /// Intervals between request starts, microseconds (saturating), a ring.
    pub(crate) intervals: [u32; INTERVALS],
    /// Intervals recorded (the ring's next slot is `count % INTERVALS`).
    pub(crate) count: u32,
    /// Recent requests, a ring.
    pub(crate) samples: Vec<SampleRequest>,
    /// Next sample slot.
    pub(crate) next_sample: usize,
    /// Distinct paths (window of `scraping.window_s`).
    pub(crate) paths: Distinct<8>,
    /// Window number of `paths`.
    pub(crate) epoch: u32,
    /// Hash of the route of the identifier walk.
    pub(crate) walk_route: u64,
    /// Last identifier of the walk.
    pub(crate) walk_id: u64,
    /// Sequential steps so far.
    pub(crate) walk_run: u32,
    /// When the walk started, Unix ns.
    pub(crate) walk_start_ns: u64,
    /// Its latest connections through a PROXY protocol proxy (at most [`FLOWS`]).
    pub(crate) flows: Vec<super::finding::Flow>,
    /// Distinct request shapes (window of `scraping.window_s`, with `paths`).
    pub(crate) shapes: Distinct<1>,
    /// Its logins by client shape (`shared.rs`), once it logs in (boxed: most busy sources
    /// never do).
    pub(crate) clients: Option<Box<super::shared::ClientShapes>>,
}

/// PROXY protocol connections kept per detailed source.
pub(crate) const FLOWS: usize = 4;

/// What [`Detail::add`] is told about a request besides the transaction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seen {
    /// When its outcome was known, Unix ns.
    pub(crate) now_ns: u64,
    /// Its outcome.
    pub(crate) outcome: Outcome,
    /// The source's tally before it, the answers of a new history.
    pub(crate) tally: Tally,
    /// Hash of its path.
    pub(crate) path_hash: u64,
    /// Hash of its shape (its request fingerprint's parts, with the whole user agent).
    pub(crate) shape_hash: u64,
    /// Window number of distinct counts.
    pub(crate) epoch: u32,
    /// Its route's hash and the identifier it walked, if its route has one.
    pub(crate) walk: Option<(u64, u64)>,
}

impl Detail {
    /// Adds one request; `max_step` is the largest identifier step of a walk.
    pub(crate) fn add(&mut self, d: &Decays, tx: &Transaction, seen: Seen, max_step: u64) {
        let Seen {
            now_ns,
            outcome,
            tally,
            path_hash,
            shape_hash,
            epoch,
            walk,
        } = seen;
        if self.answers_ns == 0 {
            self.first_ns = now_ns;
            self.answers = tally.answers();
        } else {
            self.answers
                .decay(d.answers.factor(now_ns.saturating_sub(self.answers_ns)));
        }
        self.answers_ns = self.answers_ns.max(now_ns);
        self.answers.add(outcome);
        if self.last_request_ns != 0 && tx.ts_ns >= self.last_request_ns {
            let us = (tx.ts_ns - self.last_request_ns) / 1000;
            let slot = self.count as usize % INTERVALS;
            if let Some(i) = self.intervals.get_mut(slot) {
                *i = u32::try_from(us).unwrap_or(u32::MAX);
            }
            self.count = self.count.saturating_add(1);
        }
        self.last_request_ns = self.last_request_ns.max(tx.ts_ns);
        // Samples are evidence: the first requests, then only those that did not succeed (a
        // copy of every successful request of a busy source would cost more than the rest of
        // its update, and says little).
        let ok = tx.status.is_some_and(|s| (200..400).contains(&s));
        if self.samples.len() < SAMPLES {
            self.samples.push(SampleRequest::of(tx));
            self.next_sample = (self.next_sample + 1) % SAMPLES;
        } else if !ok {
            if let Some(s) = self.samples.get_mut(self.next_sample % SAMPLES) {
                s.refill(tx);
            }
            self.next_sample = (self.next_sample + 1) % SAMPLES;
        }
        let windows = u64::from(epoch.saturating_sub(self.epoch));
        if windows > 0 {
            self.paths.roll(windows);
            self.shapes.roll(windows);
            self.epoch = epoch;
        }
        self.paths.insert(path_hash);
        self.shapes.insert(shape_hash);
        if tx.proxy == Some(crate::http::ProxyVia::ProxyProtocol) {
            let flow = super::finding::Flow {
                client: tx.peer,
                server: tx.server,
            };
            if !self.flows.contains(&flow) {
                if self.flows.len() >= FLOWS {
                    self.flows.remove(0);
                }
                self.flows.push(flow);
            }
        }
        if let Some((route, id)) = walk {
            let step = id.abs_diff(self.walk_id);
            if route == self.walk_route && (1..=max_step).contains(&step) {
                self.walk_run = self.walk_run.saturating_add(1);
            } else {
                self.walk_route = route;
                self.walk_run = 0;
                self.walk_start_ns = tx.ts_ns;
            }
            self.walk_id = id;
        }
    }

    /// Bytes on the heap: the samples and the flows.
    pub(crate) fn heap(&self) -> usize {
        let sample = |s: &SampleRequest| {
            let method = match &s.method {
                std::borrow::Cow::Owned(m) => m.capacity(),
                std::borrow::Cow::Borrowed(_) => 0,
            };
            method + s.path.capacity() + s.account.as_ref().map_or(0, String::capacity)
        };
        self.samples.capacity() * size_of::<SampleRequest>()
            + self.samples.iter().map(sample).sum::<usize>()
            + self
                .clients
                .as_ref()
                .map_or(0, |_| size_of::<super::shared::ClientShapes>())
            + self.flows.capacity() * size_of::<super::finding::Flow>()
    }

    /// The answers of a source with this history.
    pub(crate) fn answers(&self) -> Answers {
        self.answers
    }

    /// The recorded intervals (at most [`INTERVALS`], oldest overwritten).
    pub(crate) fn intervals(&self) -> &[u32] {
        let n = (self.count as usize).min(INTERVALS);
        self.intervals.get(..n).unwrap_or_default()
    }

    /// The samples, oldest first.
    pub(crate) fn samples_in_order(&self) -> Vec<SampleRequest> {
        let n = self.samples.len();
        (0..n)
            .filter_map(|i| self.samples.get((self.next_sample + i) % n.max(1)).cloned())
            .collect()
    }
}

/// Sources kept per account for evidence.
pub(crate) const ACCOUNT_SOURCES: usize = 16;
/// Successful logins an account remembers (source and session each), for investigation.
pub(crate) const ACCOUNT_LOGINS: usize = 8;

/// One successful login of an account: where from, and the session it opened or used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AccountLogin {
    /// The source address.
    pub(crate) source: IpAddr,
    /// The session (its hash in the sessions table), when the login carried or set one.
    pub(crate) session: Option<u64>,
    /// When, Unix ns.
    pub(crate) at_ns: u64,
}

/// Everything known about one prefix.
#[derive(Clone, Debug, Default)]
pub(crate) struct PrefixState {
    /// Latest event.
    pub(crate) last_ns: u64,
    /// Window number of `sources` and `good_sessions`.
    pub(crate) epoch: u32,
    /// Requests in the current baseline bucket.
    pub(crate) bucket_requests: u32,
    /// Requests (rate half-life).
    pub(crate) requests: f32,
    /// Answered 2xx/3xx (answers half-life).
    pub(crate) ok: f32,
    /// Answered (answers half-life).
    pub(crate) answered: f32,
    /// Failed logins (fast).
    pub(crate) login_failed: f32,
    /// Successful logins (fast).
    pub(crate) login_ok: f32,
    /// Since when over its ceiling.
    pub(crate) over: Since,
    /// Distinct sources.
    pub(crate) sources: Distinct<1>,
    /// Distinct sessions answered with success.
    pub(crate) good_sessions: Distinct<1>,
}

impl PrefixState {
    /// Adds one transaction from `source`.
    pub(crate) fn add(
        &mut self,
        d: &Decays,
        now_ns: u64,
        epoch: u32,
        o: Outcome,
        source: u64,
        session: Option<u64>,
    ) {
        if self.last_ns != 0 {
            let f = Factors::new(d, self.last_ns, now_ns);
            self.requests *= f.rates;
            self.ok *= f.answers;
            self.answered *= f.answers;
            self.login_failed *= f.logins;
            self.login_ok *= f.logins;
        }
        self.last_ns = self.last_ns.max(now_ns);
        let windows = u64::from(epoch.saturating_sub(self.epoch));
        if windows > 0 {
            self.sources.roll(windows);
            self.good_sessions.roll(windows);
            self.epoch = epoch;
        }
        self.requests += 1.0;
        self.bucket_requests = self.bucket_requests.saturating_add(1);
        if o.answered() {
            self.answered += 1.0;
        }
        if o.ok() {
            self.ok += 1.0;
            if let Some(s) = session {
                self.good_sessions.insert(s);
            }
        }
        if o.login_failed() {
            self.login_failed += 1.0;
        }
        if o.login_ok() {
            self.login_ok += 1.0;
        }
        self.sources.insert(source);
    }
}

/// Everything known about one account.
#[derive(Clone, Debug, Default)]
pub(crate) struct AccountState {
    /// The account name.
    pub(crate) name: String,
    /// Latest event.
    pub(crate) last_ns: u64,
    /// Window number of `failed_sources`.
    pub(crate) epoch: u32,
    /// Failed logins (slow half-life).
    pub(crate) failed: f32,
    /// Successful logins (slow half-life).
    pub(crate) ok: f32,
    /// Distinct sources it failed from.
    pub(crate) failed_sources: Distinct<2>,
    /// The latest distinct sources it failed from, for evidence.
    pub(crate) recent_sources: Vec<IpAddr>,
}

/// The latest successful logins of an account (at most [`ACCOUNT_LOGINS`], one per source and
/// session), for investigation: kept in a small table of their own, for the accounts that
/// logged in most recently, so that the many accounts of the accounts table pay nothing.
#[derive(Clone, Debug, Default)]
pub(crate) struct AccountLogins {
    /// Oldest first.
    pub(crate) logins: Vec<AccountLogin>,
}

impl AccountLogins {
    /// Adds a successful login from `source` in `session` at `now_ns`.
    pub(crate) fn add(&mut self, source: IpAddr, session: Option<u64>, now_ns: u64) {
        self.logins
            .retain(|l| !(l.source == source && l.session == session));
        if self.logins.len() >= ACCOUNT_LOGINS {
            self.logins.remove(0);
        }
        self.logins.push(AccountLogin {
            source,
            session,
            at_ns: now_ns,
        });
    }

    /// Bytes on the heap.
    pub(crate) fn heap(&self) -> usize {
        self.logins.capacity() * size_of::<AccountLogin>()
    }
}

impl AccountState {
    /// Bytes on the heap: the name and the recent sources.
    pub(crate) fn heap(&self) -> usize {
        self.name.capacity() + self.recent_sources.capacity() * size_of::<IpAddr>()
    }

    /// Adds one login attempt from `source` (hash `source_hash`).
    pub(crate) fn add(
        &mut self,
        d: &Decays,
        now_ns: u64,
        epoch: u32,
        o: Outcome,
        (source, source_hash): (IpAddr, u64),
    ) {
        if self.last_ns != 0 {
            let f = Factors::new(d, self.last_ns, now_ns);
            self.failed *= f.slow;
            self.ok *= f.slow;
        }
        self.last_ns = self.last_ns.max(now_ns);
        let windows = u64::from(epoch.saturating_sub(self.epoch));
        if windows > 0 {
            self.failed_sources.roll(windows);
            self.epoch = epoch;
        }
        if o.login_ok() {
            self.ok += 1.0;
        }
        if o.login_failed() {
            self.failed += 1.0;
            self.failed_sources.insert(source_hash);
            if !self.recent_sources.contains(&source) {
                if self.recent_sources.len() >= ACCOUNT_SOURCES {
                    self.recent_sources.remove(0);
                } else {
                    // Most accounts fail from one source: grow one at a time.
                    self.recent_sources.reserve_exact(1);
                }
                self.recent_sources.push(source);
            }
        }
    }
}

/// Everything known about one session.
#[derive(Clone, Debug, Default)]
pub(crate) struct SessionState {
    /// Latest event.
    pub(crate) last_ns: u64,
    /// Window number of `sources`.
    pub(crate) epoch: u32,
    /// Requests (rate half-life).
    pub(crate) requests: f32,
    /// Distinct sources that used it.
    pub(crate) sources: Distinct<1>,
    /// The latest distinct addresses that used it, for evidence (at most
    /// [`SESSION_SOURCES`]).
    pub(crate) recent: Vec<IpAddr>,
}

/// Addresses kept per session for evidence.
pub(crate) const SESSION_SOURCES: usize = 8;

impl SessionState {
    /// Adds one request from `ip`, whose hash is `source`.
    pub(crate) fn add(&mut self, d: &Decays, now_ns: u64, epoch: u32, ip: IpAddr, source: u64) {
        if !self.recent.contains(&ip) {
            if self.recent.len() >= SESSION_SOURCES {
                self.recent.remove(0);
            }
            self.recent.push(ip);
        }
        if self.last_ns != 0 {
            self.requests *= d.rates.factor(now_ns.saturating_sub(self.last_ns));
        }
        self.last_ns = self.last_ns.max(now_ns);
        let windows = u64::from(epoch.saturating_sub(self.epoch));
        if windows > 0 {
            self.sources.roll(windows);
            self.epoch = epoch;
        }
        self.requests += 1.0;
        self.sources.insert(source);
    }
}

/// Everything known about one endpoint.
#[derive(Clone, Debug, Default)]
pub(crate) struct EndpointState {
    /// `METHOD host route`.
    pub(crate) name: String,
    /// Latest event.
    pub(crate) last_ns: u64,
    /// Requests (rate half-life).
    pub(crate) requests: f32,
    /// Requests in the current baseline bucket.
    pub(crate) bucket_requests: u32,
    /// Window number of `shapes`.
    pub(crate) epoch: u32,
    /// Distinct request shapes (window of `scraping.window_s`).
    pub(crate) shapes: Distinct<4>,
}

impl EndpointState {
    /// Bytes on the heap: the name.
    pub(crate) fn heap(&self) -> usize {
        self.name.capacity()
    }

    /// Adds one request of shape `shape_hash`.
    pub(crate) fn add(&mut self, d: &Decays, now_ns: u64, epoch: u32, shape_hash: u64) {
        let windows = u64::from(epoch.saturating_sub(self.epoch));
        if windows > 0 {
            self.shapes.roll(windows);
            self.epoch = epoch;
        }
        self.shapes.insert(shape_hash);
        if self.last_ns != 0 {
            self.requests *= d.rates.factor(now_ns.saturating_sub(self.last_ns));
        }
        self.last_ns = self.last_ns.max(now_ns);
        self.requests += 1.0;
        self.bucket_requests = self.bucket_requests.saturating_add(1);
    }
}

/// A bounded table of one kind of entity, with its evictions counted.
pub(crate) struct Table<K, V> {
    /// Entries, least recently active first out.
    pub(crate) entries: LruTable<K, V>,
    /// Most entries.
    limit: usize,
    /// Entries evicted to make room.
    pub(crate) evicted: u64,
}

impl<K: Hash + Eq + Copy + Default, V: Default> Table<K, V> {
    /// An empty table of at most `limit` entries (at least one).
    pub(crate) fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, u32::MAX as usize / 2);
        Self {
            entries: LruTable::new(),
            limit,
            evicted: 0,
        }
    }

    /// The entry of `key`, created (evicting the least recently active entry when full) if
    /// missing, and marked most recently active.
    pub(crate) fn entry(&mut self, key: K) -> Option<&mut V> {
        self.entry_if(key, || true)
    }

    /// [`Table::entry`], but a missing entry is created only if `admit` says so.
    pub(crate) fn entry_if(&mut self, key: K, admit: impl FnOnce() -> bool) -> Option<&mut V> {
        let slot = if let Some(slot) = self.entries.find(&key) {
            self.entries.touch(slot);
            slot
        } else {
            if !admit() {
                return None;
            }
            if self.entries.len() >= self.limit
                && let Some(oldest) = self.entries.oldest()
            {
                self.entries.remove(oldest);
                self.evicted += 1;
            }
            self.entries.insert(key, V::default())?
        };
        self.entries.get_mut(slot)
    }

    /// The entry of `key`, if present (not marked active).
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(self.entries.find(key)?)
    }

    /// Entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of the table and its values, with the values' own heap as `heap` counts it.
    pub(crate) fn memory(&self, heap: impl Fn(&V) -> usize) -> usize {
        self.entries.memory() + self.entries.values().map(heap).sum::<usize>()
    }
}

/// The keyed hash of values counted as distinct (accounts, sessions, sources, paths, routes)
/// and of table keys that are strings: foldhash's quality variant seeded from the
/// installation's key, so that counts are the same on every run over the same input with the
/// same key, and remote peers, who do not know the key, cannot choose values that collide.
/// (It replaced SipHash-1-3, measured at 13 % of the detection's time.)
#[derive(Clone, Debug)]
pub(crate) struct ValueHasher {
    /// The seeded state.
    state: foldhash::quality::FixedState,
}

impl ValueHasher {
    /// A hasher under `key`.
    pub(crate) fn new(key: [u8; 16]) -> Self {
        let (lo, hi) = key.split_at(8);
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        Self {
            state: foldhash::quality::FixedState::with_seed(word(lo) ^ word(hi).rotate_left(32)),
        }
    }

    /// The hash of `value`.
    pub(crate) fn hash<T: Hash + ?Sized>(&self, value: &T) -> u64 {
        use std::hash::BuildHasher as _;
        self.state.hash_one(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_costs_thirty_two_bytes_in_its_table() {
        // The table stores `Option<V>`: the source's own fields must leave it a niche.
        assert_eq!(size_of::<Option<SourceState>>(), 32);
    }

    #[test]
    fn prefix_keys_are_the_truncated_networks() {
        let cases = [
            ("198.51.100.77", 24, "198.51.100.0/24"),
            ("198.51.100.77", 32, "198.51.100.77/32"),
            ("198.51.100.77", 0, "0.0.0.0/0"),
            ("198.51.100.77", 40, "198.51.100.77/32"),
            ("2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"),
            ("2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"),
            ("2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6/128"),
            ("::ffff:198.51.100.9", 24, "198.51.100.0/24"),
        ];
        for (ip, len, want) in cases {
            let ip: IpAddr = ip.parse().expect("ip");
            let got = PrefixKey::of(ip, len).net();
            assert_eq!(got.to_string(), want, "{ip}/{len}");
            let reference = IpNet::new(
                ip.to_canonical(),
                len.min(if ip.to_canonical().is_ipv4() { 32 } else { 128 }),
            )
            .expect("net")
            .trunc();
            assert_eq!(got, reference, "{ip}/{len}");
        }
    }
}
