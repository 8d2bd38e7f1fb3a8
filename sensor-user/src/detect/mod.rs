//! Behavioural detection: entity state fed by transactions (and SYN counts), and the detectors
//! that read it. Pure: no I/O, no clock (every time comes from the input), deterministic for
//! the same input, configuration and key.
//!
//! # Layout
//!
//! - [`config`]: thresholds and bounds (`[detect]`), each with a working default.
//! - `counters`: decaying counts and windowed distinct counts, the measures state is made of.
//! - `state`: per-entity state (source, prefix, account, session, endpoint, global) in
//!   bounded tables with counted least-recently-used eviction.
//! - one module per detector family: `bruteforce`, `success`, `volume`, `scraping`, `timing`;
//!   each is a function of the state and the configuration that returns measures.
//! - [`baseline`]: learned hour-of-week baselines per endpoint and prefix.
//! - [`finding`]: what comes out: a [`Finding`] per entity and detector, with its evidence.
//!
//! [`Detection`] ties them together: it updates the state of every entity a transaction
//! touches, runs the detectors on those entities, and reports a finding at most once per
//! `repeat_s` per entity and detector while the behaviour goes on.

pub mod api_spec;
pub mod baseline;
mod bruteforce;
pub(crate) mod campaign;
pub mod config;
mod context;
mod counters;
mod doorkeeper;
pub mod finding;
mod scraping;
mod sessions;
mod shapes;
mod shared;
mod state;
mod success;
mod timing;
mod ttps;
pub mod view;
mod volume;

use std::net::IpAddr;

use ipnet::IpNet;

pub use config::DetectConfig;
pub use finding::{
    Detector, Entity, Finding, Flow, Mark, Measure, SampleRequest, Standing, Strength,
};
pub use state::Packets;

use baseline::{BaselineKey, BaselineSnapshot, Baselines};
use campaign::CampaignState;
use counters::{NS, share};
use doorkeeper::Doorkeeper;
use state::{
    AccountState, AddrKey, Answers, Decays, Detail, EndpointState, Identities, Outcome, PrefixKey,
    PrefixState, SessionState, SourceState, Table, ValueHasher,
};

use crate::http::{RequestFingerprint, Transaction, TransportFingerprint};
use crate::lru::LruTable;

/// Counts of the detection state, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DetectCounters {
    /// Transactions observed.
    pub transactions: u64,
    /// Findings reported.
    pub findings: u64,
    /// Entities tracked now, per kind.
    pub sources: u64,
    /// Prefixes tracked.
    pub prefixes: u64,
    /// Accounts tracked.
    pub accounts: u64,
    /// Sessions tracked.
    pub sessions: u64,
    /// Endpoints tracked.
    pub endpoints: u64,
    /// Sources with a detailed history.
    pub detailed: u64,
    /// Sources whose accounts and sessions are counted.
    pub identified: u64,
    /// Of those, evicted.
    pub evicted_identified: u64,
    /// Entities evicted to make room, per kind.
    pub evicted_sources: u64,
    /// Prefixes evicted.
    pub evicted_prefixes: u64,
    /// Accounts evicted.
    pub evicted_accounts: u64,
    /// Sessions evicted.
    pub evicted_sessions: u64,
    /// Endpoints evicted.
    pub evicted_endpoints: u64,
    /// Detailed histories evicted.
    pub evicted_detailed: u64,
    /// Baseline keys evicted.
    pub evicted_baselines: u64,
}

/// The success share of a long history in good standing (the source documents: normal
/// clients succeed above 85 %).
const GOOD_SHARE: f64 = 0.85;

/// Answered requests, all successful, that put a quiet reader of an IPv4 /24 in good standing
/// when a campaign's block of the /24 is decided.
const QUIET_MIN_ANSWERS: u8 = 2;

/// Accounts whose latest successful logins are kept for investigation.
const ACCOUNT_LOGIN_ACCOUNTS: usize = 4096;

/// Most (entity, detector) pairs whose last report time is remembered.
const MAX_REPORTED: usize = 100_000;

/// The detection engine.
pub struct Detection {
    /// Configuration.
    cfg: DetectConfig,
    /// Decays of the configured half-lives.
    decays: Decays,
    /// Hash of counted values.
    hasher: ValueHasher,
    /// Per source address.
    sources: Table<AddrKey, SourceState>,
    /// Detailed histories of busy sources.
    details: Table<AddrKey, Detail>,
    /// Distinct accounts and sessions of sources that have any.
    identities: Table<AddrKey, Identities>,
    /// Per prefix.
    prefixes: Table<PrefixKey, PrefixState>,
    /// Per account (keyed by the name's hash).
    accounts: Table<u64, AccountState>,
    /// Per session (keyed by the session hash's hash).
    sessions: Table<u64, SessionState>,
    /// Per endpoint (keyed by the hash of method, host and route).
    endpoints: Table<u64, EndpointState>,
    /// Per campaign key (the hash of a request fingerprint and a login endpoint).
    campaigns: Table<u64, CampaignState>,
    /// Admits prefixes and sessions to their tables once they have a second source.
    doorkeeper: Doorkeeper,
    /// All traffic: requests in the current baseline bucket, and failed logins (decayed with
    /// the fast login half-life) with the time they are decayed to.
    global: GlobalState,
    /// Learned baselines.
    baselines: Baselines,
    /// Start of the current baseline bucket, Unix ns (0 before the first event).
    bucket_start_ns: u64,
    /// When each (entity hash, detector) was last reported, Unix ns.
    reported: LruTable<(u64, u8), u64>,
    /// Counters.
    counters: DetectCounters,
    /// The login fingerprints seen (the operator's `ttps` view).
    ttps: ttps::Ttps,
    /// The latest successful logins of the accounts that logged in most recently (the
    /// operator's `accounts show`).
    account_logins: Table<u64, state::AccountLogins>,
}

impl Detection {
    /// An engine with empty state. `key` keys the hash of counted values (the installation's
    /// key: counts are the same on every run over the same input); `baselines` restores what
    /// an earlier run learned, `now_ns` starts a new warm-up otherwise.
    pub fn new(
        cfg: DetectConfig,
        key: [u8; 16],
        baselines: Option<BaselineSnapshot>,
        now_ns: u64,
    ) -> Result<Self, baseline::BaselineError> {
        let baselines = match baselines {
            Some(snapshot) => Baselines::restore(cfg.baseline.clone(), snapshot)?,
            None => Baselines::new(cfg.baseline.clone(), now_ns),
        };
        let l = &cfg.limits;
        Ok(Self {
            decays: Decays::of(&cfg),
            hasher: ValueHasher::new(key),
            sources: Table::new(l.sources),
            details: Table::new(l.detailed_sources),
            identities: Table::new(l.identified_sources),
            prefixes: Table::new(l.prefixes),
            accounts: Table::new(l.accounts),
            sessions: Table::new(l.sessions),
            endpoints: Table::new(l.endpoints),
            campaigns: Table::new(l.campaigns),
            doorkeeper: Doorkeeper::new(l.prefixes.saturating_add(l.sessions).saturating_mul(2)),
            global: GlobalState::default(),
            baselines,
            bucket_start_ns: 0,
            reported: LruTable::new(),
            counters: DetectCounters::default(),
            ttps: ttps::Ttps::default(),
            account_logins: Table::new(ACCOUNT_LOGIN_ACCOUNTS),
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DetectConfig {
        &self.cfg
    }

    /// Takes a new configuration and keeps every entity's state: thresholds, half-lives and
    /// the context take effect at once; the tables' bounds and the baselines' settings keep
    /// their values until the next start (the tables and what was learned are kept).
    pub fn reconfigure(&mut self, mut cfg: DetectConfig) {
        cfg.limits = self.cfg.limits.clone();
        cfg.baseline = self.cfg.baseline.clone();
        self.decays = Decays::of(&cfg);
        self.cfg = cfg;
    }

    /// What the baselines learned, to be saved.
    pub fn baselines(&self) -> BaselineSnapshot {
        self.baselines.snapshot()
    }

    /// Whether the baselines are still learning.
    pub fn learning(&self, now_ns: u64) -> bool {
        self.baselines.learning(now_ns)
    }

    /// Counters now.
    pub fn counters(&self) -> DetectCounters {
        let mut c = self.counters;
        c.sources = self.sources.len() as u64;
        c.prefixes = self.prefixes.len() as u64;
        c.accounts = self.accounts.len() as u64;
        c.sessions = self.sessions.len() as u64;
        c.endpoints = self.endpoints.len() as u64;
        c.detailed = self.details.len() as u64;
        c.identified = self.identities.len() as u64;
        c.evicted_identified = self.identities.evicted;
        c.evicted_sources = self.sources.evicted;
        c.evicted_prefixes = self.prefixes.evicted;
        c.evicted_accounts = self.accounts.evicted;
        c.evicted_sessions = self.sessions.evicted;
        c.evicted_endpoints = self.endpoints.evicted;
        c.evicted_detailed = self.details.evicted;
        c.evicted_baselines = self.baselines.evicted();
        c
    }

    /// Bytes held by the state tables (not the baselines) and their entries' heap, for the
    /// memory benchmark.
    pub fn memory(&self) -> usize {
        self.table_memory().iter().map(|t| t.2).sum()
    }

    /// Each state table: its name, entries and bytes (the table, its values and their heap).
    pub fn table_memory(&self) -> Vec<(&'static str, usize, usize)> {
        vec![
            ("sources", self.sources.len(), self.sources.memory(no_heap)),
            (
                "identities",
                self.identities.len(),
                self.identities.memory(no_heap),
            ),
            (
                "details",
                self.details.len(),
                self.details.memory(Detail::heap),
            ),
            (
                "prefixes",
                self.prefixes.len(),
                self.prefixes.memory(no_heap),
            ),
            (
                "accounts",
                self.accounts.len(),
                self.accounts.memory(AccountState::heap),
            ),
            (
                "sessions",
                self.sessions.len(),
                self.sessions.memory(no_heap),
            ),
            (
                "endpoints",
                self.endpoints.len(),
                self.endpoints.memory(EndpointState::heap),
            ),
            (
                "campaigns",
                self.campaigns.len(),
                self.campaigns.memory(CampaignState::heap),
            ),
            ("reported", self.reported.len(), self.reported.memory()),
            ("ttps", self.ttps.table.len(), self.ttps.memory()),
            (
                "account_logins",
                self.account_logins.len(),
                self.account_logins.memory(state::AccountLogins::heap),
            ),
            ("doorkeeper", 0, self.doorkeeper.memory()),
        ]
    }

    /// The standing of a source, if it is tracked.
    pub fn standing(&self, ip: IpAddr) -> Option<Standing> {
        let key = AddrKey::of(ip);
        let ids = self.identities.get(&key);
        let answers = |s: &SourceState| {
            self.details
                .get(&key)
                .map_or_else(|| s.tally.answers(), Detail::answers)
        };
        self.sources
            .get(&key)
            .map(|s| standing(s, &answers(s), ids))
    }

    /// The key of a client shape: a request fingerprint with the transport fingerprint of its
    /// connection, when the SYN was seen (hashed with the installation's key; never 0, the
    /// empty slot of `shared::ClientShapes`). The pipeline asks it of requests at a marked
    /// address as they arrive.
    pub fn client_key(
        &self,
        fp: &RequestFingerprint,
        transport: Option<TransportFingerprint>,
    ) -> u64 {
        self.hasher.hash(&(fp.as_str(), transport)).max(1)
    }

    /// A login's request fingerprint and client shape (campaigns, shared addresses), counted
    /// in the TTPs table; `None`s unless `login`.
    fn login_shape(
        &mut self,
        tx: &Transaction,
        login: bool,
        source_hash: u64,
        outcome: Outcome,
        now: u64,
    ) -> (Option<RequestFingerprint>, Option<u64>) {
        let fp = login.then(|| RequestFingerprint::of(tx)).flatten();
        let key = fp
            .as_ref()
            .map(|fp| self.client_key(fp, tx.transport_fingerprint));
        if let Some(fp) = &fp {
            let h = self.hasher.hash(fp.as_str());
            self.ttps.add(h, fp.as_str(), source_hash, outcome, now);
        }
        (fp, key)
    }

    /// Window number for distinct counts at `now_ns` (saturating: a window of a second lasts
    /// until 2106).
    fn epoch(&self, now_ns: u64) -> u32 {
        let n = now_ns / self.cfg.scraping.window_s.max(1).saturating_mul(NS);
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Observes one transaction and pushes the findings it completes to `out`.
    pub fn on_transaction(&mut self, tx: &Transaction, out: &mut Vec<Finding>) {
        if !self.cfg.enabled {
            return;
        }
        self.counters.transactions += 1;
        // The time of the answer when there is one: that is when the outcome became known.
        let now = tx.ts_ns.saturating_add(tx.latency_ns.unwrap_or(0));
        self.start_bucket(now);
        let epoch = self.epoch(now);
        let outcome = Outcome::of(tx);
        let verified = !tx.method.is_empty();
        let ip = tx.client;
        let source_hash = self.hasher.hash(&AddrKey::of(ip));
        let account_hash = tx.account.as_deref().map(|a| self.hasher.hash(a));
        let session_hash = tx.session.as_deref().map(|s| self.hasher.hash(s));
        let d = self.decays;

        // The source.
        let key = AddrKey::of(ip);
        let Some(src) = self.sources.entry(key) else {
            return;
        };
        let tally = src.tally;
        if verified {
            src.add(&d, now, outcome);
            src.proxy = tx.proxy;
        } else {
            // A response without its request proves nothing about the peer.
            src.add_packets(&d, now, Packets::default());
        }
        // The detailed history, once the source is busy enough to need it.
        let busy = src.total >= self.cfg.limits.detail_after;
        // Its accounts, once it logs in, and its sessions, once it is busy: the blast-radius
        // guard asks how many sessions a busy address serves, and the many sources that
        // send a request or two with a session need no entry.
        let logs_in = account_hash.is_some() && (outcome.login_failed() || outcome.login_ok());
        if verified
            && (logs_in || (busy && session_hash.is_some()))
            && let Some(ids) = self.identities.entry(key)
        {
            ids.add(
                &d,
                now,
                epoch,
                outcome,
                account_hash.filter(|_| logs_in),
                session_hash,
            );
        }
        let (fingerprint, client_key) =
            self.login_shape(tx, verified && logs_in, source_hash, outcome, now);
        // The request's shape: its fingerprint's parts, with the whole user agent.
        let shape_hash = self.hasher.hash(&(
            tx.method.as_ref(),
            tx.version,
            tx.header_order.as_str(),
            tx.user_agent.as_deref(),
            tx.language,
        ));
        if verified && busy {
            let path_hash = self.hasher.hash(tx.path.as_str());
            let walk = scraping::walked_id(&tx.path, &tx.route)
                .map(|id| (self.hasher.hash(tx.route.as_str()), id));
            let seen = state::Seen {
                now_ns: now,
                outcome,
                tally,
                path_hash,
                shape_hash,
                epoch,
                walk,
            };
            let max_step = self.cfg.scraping.max_step;
            if let Some(detail) = self.details.entry(key) {
                detail.add(&d, tx, seen, max_step);
                if let Some(k) = client_key {
                    detail
                        .clients
                        .get_or_insert_default()
                        .add(d.slow, now, k, outcome);
                }
            }
        }

        if verified {
            self.observe_shared(tx, now, epoch, outcome, (source_hash, session_hash), out);
        }
        if let (Some(name), Some(h), true) = (tx.account.as_deref(), account_hash, verified)
            && (outcome.login_failed() || outcome.login_ok())
        {
            let login = (now, epoch, outcome);
            self.observe_account(name, h, login, (ip, source_hash), session_hash);
        }

        if verified {
            self.global.bucket_requests = self.global.bucket_requests.saturating_add(1);
            self.observe_endpoint(tx, now, epoch, shape_hash, out);
        }

        let before = out.len();
        self.check_source(ip, now, logs_in, out);
        if verified {
            self.add_context(tx, now, before, out);
        }
        if let Some(fp) = &fingerprint {
            self.observe_campaign(tx, fp, now, epoch, outcome, source_hash, out);
        }
        if verified {
            let login_account =
                account_hash.filter(|_| outcome.login_failed() || outcome.login_ok());
            self.check_groups(ip, login_account, now, out);
        }
    }

    /// Runs the detectors of the source's prefixes and, for a login, of its account.
    fn check_groups(&mut self, ip: IpAddr, account: Option<u64>, now: u64, out: &mut Vec<Finding>) {
        for pk in state::prefixes_of(ip) {
            self.check_prefix(pk, now, out);
        }
        if let Some(h) = account {
            self.check_account(h, now, out);
        }
    }

    /// Observes a login (at `now`, in window `epoch`, with outcome `o`) of the account `name`
    /// (hash `h`) from `source` (with its hash) in `session`.
    fn observe_account(
        &mut self,
        name: &str,
        h: u64,
        (now, epoch, o): (u64, u32, Outcome),
        source: (IpAddr, u64),
        session: Option<u64>,
    ) {
        let d = self.decays;
        if let Some(a) = self.accounts.entry(h) {
            if a.name.is_empty() {
                name.clone_into(&mut a.name);
            }
            a.add(&d, now, epoch, o, source);
        }
        if o.login_ok()
            && let Some(l) = self.account_logins.entry(h)
        {
            l.add(source.0, session, now);
        }
    }

    /// Observes a verified transaction in the source's prefixes and its session: in those
    /// that have an entry, and in those the doorkeeper admits (a second source seen in them).
    fn observe_shared(
        &mut self,
        tx: &Transaction,
        now: u64,
        epoch: u32,
        outcome: Outcome,
        (source_hash, session_hash): (u64, Option<u64>),
        out: &mut Vec<Finding>,
    ) {
        let d = self.decays;
        let (hasher, doorkeeper) = (&self.hasher, &mut self.doorkeeper);
        for pk in state::prefixes_of(tx.client) {
            let admit = || {
                let e = hasher.hash(&pk);
                doorkeeper.admits(e, hasher.hash(&(e, source_hash)))
            };
            if let Some(p) = self.prefixes.entry_if(pk, admit) {
                p.add(&d, now, epoch, outcome, source_hash, session_hash);
            }
        }
        if let Some(h) = session_hash {
            let admit = || doorkeeper.admits(h, hasher.hash(&(h, source_hash)));
            let shared = self.sessions.entry_if(h, admit).and_then(|s| {
                s.add(&d, now, epoch, tx.client, source_hash);
                sessions::shared(&self.cfg.sessions, s).map(|m| (m, s.recent.clone()))
            });
            if let (Some((measures, recent)), Some(name)) = (shared, tx.session.as_deref()) {
                let mut f = Finding::new(
                    now,
                    Detector::SessionShared,
                    Entity::Session(name.to_owned()),
                    measures,
                );
                f.sources = recent;
                self.report(f, out);
            }
        }
    }

    /// Pushes the context of the findings about `tx`'s source among those pushed from
    /// `out[from]` on, if there are any (context alone is not reported).
    fn add_context(&mut self, tx: &Transaction, now: u64, from: usize, out: &mut Vec<Finding>) {
        let source = Entity::Source(tx.client);
        let found_any = out.get(from..).is_some_and(|new| {
            new.iter()
                .any(|f| f.entity == source && f.detector.strength() != Strength::Context)
        });
        if !found_any {
            return;
        }
        let host = tx.host.as_deref().unwrap_or("");
        let endpoint = BaselineKey::Endpoint(format!("{} {host} {}", tx.method, tx.route));
        let detail = self.details.get(&AddrKey::of(tx.client));
        let request = (tx.method.as_ref(), tx.route.as_str(), &endpoint);
        let found = context::of(&self.cfg.context, detail, &self.baselines, request, now);
        for (detector, measures) in found {
            let f = Finding::new(now, detector, Entity::Source(tx.client), measures);
            self.report(f, out);
        }
    }

    /// Observes a verified transaction in its endpoint and pushes a surge of new request
    /// shapes there.
    fn observe_endpoint(
        &mut self,
        tx: &Transaction,
        now: u64,
        epoch: u32,
        shape_hash: u64,
        out: &mut Vec<Finding>,
    ) {
        let d = self.decays;
        let host = tx.host.as_deref().unwrap_or("");
        let eh = self
            .hasher
            .hash(&(tx.method.as_ref(), host, tx.route.as_str()));
        let mut surge = None;
        if let Some(e) = self.endpoints.entry(eh) {
            if e.name.is_empty() {
                e.name = format!("{} {host} {}", tx.method, tx.route);
            }
            e.add(&d, now, epoch, shape_hash);
            // Judged every sixteenth request (two logarithms).
            if e.bucket_requests % 16 == 0 {
                surge = shapes::surge(&self.cfg.shapes, e).map(|m| (e.name.clone(), m));
            }
        }
        if let Some((name, measures)) = surge {
            let f = Finding::new(
                now,
                Detector::FingerprintSurge,
                Entity::Endpoint(name),
                measures,
            );
            self.report(f, out);
        }
    }

    /// Observes a login in its campaign key (its request fingerprint, its transport fingerprint
    /// when the connection's SYN was seen, on its endpoint) and
    /// pushes the campaign's findings: the campaign and all its members when it becomes one,
    /// the source when it fails on an active campaign.
    #[expect(
        clippy::too_many_arguments,
        reason = "one private step of on_transaction"
    )]
    fn observe_campaign(
        &mut self,
        tx: &Transaction,
        fp: &RequestFingerprint,
        now: u64,
        epoch: u32,
        outcome: Outcome,
        source_hash: u64,
        out: &mut Vec<Finding>,
    ) {
        let host = tx.host.as_deref().unwrap_or("");
        // The client's TCP stack, when its SYN was seen, splits a request shape that programs
        // on different systems share (the same library on Linux and on Windows).
        let transport = tx.transport_fingerprint;
        let key = self.hasher.hash(&(
            fp.as_str(),
            transport,
            tx.method.as_ref(),
            host,
            tx.route.as_str(),
        ));
        let (decay, cfg) = (self.decays.campaign, self.cfg.campaign);
        let Some(c) = self.campaigns.entry(key) else {
            return;
        };
        if c.name.is_empty() {
            c.name = match transport {
                Some(t) => format!("{fp} {t} {} {host} {}", tx.method, tx.route),
                None => format!("{fp} {} {host} {}", tx.method, tx.route),
            };
        }
        c.add(decay, now, epoch, outcome, tx.client, source_hash);
        let was_active = c.active(now);
        let crossed = campaign::check(&cfg, c);
        if !outcome.login_failed() || (crossed.is_none() && !was_active) {
            return;
        }
        c.active_until_ns = now.saturating_add(cfg.active_s.saturating_mul(NS));
        let measures = crossed.unwrap_or_else(|| {
            vec![Measure::at_least(
                "failing_sources",
                c.failing.estimate(),
                cfg.min_sources,
            )]
        });
        let (name, members) = (c.name.clone(), c.members.clone());
        // At most `campaign::MEMBERS`.
        let member_count = u32::try_from(members.len()).unwrap_or(u32::MAX);
        // Joining an active campaign: this source only. Becoming one: every member.
        let joining: Vec<IpAddr> = if was_active {
            vec![tx.client]
        } else {
            members.clone()
        };
        let mut spared = 0_u32;
        let joined = joining.clone();
        for m in joining {
            let key = AddrKey::of(m);
            // A member that logged in successfully is spared.
            if self
                .identities
                .get(&key)
                .is_some_and(|i| i.login_ok_slow > 0.0)
            {
                spared += 1;
                continue;
            }
            let mut f = Finding::new(
                now,
                Detector::CampaignMember,
                Entity::Source(m),
                measures.clone(),
            );
            f.standing = self.standing(m);
            self.report(f, out);
        }
        self.escalate_campaign(&members, &joined, now, out);
        let mut f = Finding::new(now, Detector::Campaign, Entity::Campaign(name), measures);
        f.measures
            .push(Measure::at_least("members", f64::from(member_count), 0.0));
        if spared > 0 {
            f.measures
                .push(Measure::at_least("spared", f64::from(spared), 0.0));
        }
        f.sources = members;
        self.report(f, out);
    }

    /// Reports the prefixes where enough of a campaign's `members` are, among those of the
    /// sources that just `joined` it, with their sources in good standing.
    fn escalate_campaign(
        &mut self,
        members: &[IpAddr],
        joined: &[IpAddr],
        now: u64,
        out: &mut Vec<Finding>,
    ) {
        let cfg = self.cfg.campaign;
        let mut escalated: Vec<IpNet> = Vec::new();
        for &m in joined {
            if let Some(net) = campaign::escalation(members, m, cfg.prefix_members)
                && !escalated.contains(&net)
            {
                escalated.push(net);
            }
        }
        for net in escalated {
            let in_prefix = members
                .iter()
                .filter(|m| net.contains(&m.to_canonical()))
                .count();
            let mut f = Finding::new(
                now,
                Detector::CampaignPrefix,
                Entity::Prefix(net),
                vec![Measure::at_least(
                    "campaign_members",
                    f64::from(u32::try_from(in_prefix).unwrap_or(u32::MAX)),
                    f64::from(u32::try_from(cfg.prefix_members).unwrap_or(u32::MAX)),
                )],
            );
            f.sources = self.good_standing_in(net);
            // Its members completed handshakes and requests: the prefix is verified.
            let pk = state::PrefixKey::of(net.addr(), net.prefix_len());
            let standing = self
                .prefixes
                .get(&pk)
                .map_or_else(Standing::default, prefix_standing);
            f.standing = Some(Standing {
                verified: true,
                ..standing
            });
            self.report(f, out);
        }
    }

    /// The sources of `net` in good standing, which a campaign's block of the prefix spares:
    /// those that logged in successfully, and those with a history (a detailed one: at least
    /// `limits.detail_after` requests) mostly successful and without a failed login (bounded: at
    /// most `campaign::MEMBERS`, plus one to tell the policy there were more than it spares, in
    /// which case it does not block the prefix).
    ///
    /// In an IPv4 /24, a quiet reader (a crawler, a user who has not logged in yet) with
    /// [`QUIET_MIN_ANSWERS`] requests, all successful, is in good standing too. A short history
    /// is enough: a spared source that then fails a login while the campaign is active joins it
    /// and is blocked on its own, which withdraws its exception; an address first seen after
    /// the block is refused.
    fn good_standing_in(&self, net: IpNet) -> Vec<IpAddr> {
        let inside = |k: &AddrKey| net.contains(&k.ip());
        let failed_login = |k: &AddrKey| {
            self.identities
                .get(k)
                .is_some_and(|i| i.login_failed_slow >= 0.5)
        };
        let mut good: Vec<IpAddr> = self
            .identities
            .entries
            .iter()
            .filter(|(k, i)| inside(k) && i.login_ok_slow > 0.0)
            .map(|(k, _)| k.ip())
            .collect();
        good.extend(
            self.details
                .entries
                .iter()
                .filter(|(k, d)| {
                    let a = d.answers();
                    inside(k)
                        && a.answered >= f32::from(self.cfg.limits.detail_after)
                        && share(a.ok, a.answered) >= GOOD_SHARE
                        && !failed_login(k)
                })
                .map(|(k, _)| k.ip()),
        );
        // The quiet readers of an IPv4 /24 (its addresses looked up one by one): a few
        // requests, every one answered with success.
        if let IpNet::V4(v4) = net
            && v4.prefix_len() >= 24
        {
            for raw in u32::from(v4.network())..=u32::from(v4.broadcast()) {
                let ip = IpAddr::V4(raw.into());
                let k = AddrKey::of(ip);
                let Some(s) = self.sources.get(&k) else {
                    continue;
                };
                if s.tally.all_ok(QUIET_MIN_ANSWERS) && !failed_login(&k) {
                    good.push(ip);
                }
            }
        }
        good.sort_unstable();
        good.dedup();
        good.truncate(campaign::MEMBERS + 1);
        good
    }

    /// Observes packets and SYNs from `ip` at `now_ns` (SYNs from the segments in a replay,
    /// the kernel's per-source counters live) and pushes the flood findings they complete.
    pub fn on_packets(&mut self, ip: IpAddr, p: Packets, now_ns: u64, out: &mut Vec<Finding>) {
        if !self.cfg.enabled || p == Packets::default() {
            return;
        }
        self.start_bucket(now_ns);
        let d = self.decays;
        if let Some(src) = self.sources.entry(AddrKey::of(ip)) {
            src.add_packets(&d, now_ns, p);
        }
        self.check_source(ip, now_ns, false, out);
    }

    /// Time passes: closes finished baseline buckets (learning, or comparing endpoints and
    /// prefixes with what was learned) and pushes the findings that makes.
    pub fn on_tick(&mut self, now_ns: u64, out: &mut Vec<Finding>) {
        if !self.cfg.enabled || self.bucket_start_ns == 0 {
            return;
        }
        let bucket_ns = self.cfg.baseline.bucket_s.max(1).saturating_mul(NS);
        if now_ns < self.bucket_start_ns.saturating_add(bucket_ns) {
            return;
        }
        let at = self.bucket_start_ns;
        // Endpoints, in slot order (deterministic).
        let mut endpoint_counts = Vec::new();
        let keys: Vec<u64> = endpoint_keys(&self.endpoints);
        for k in keys {
            let Some(slot) = self.endpoints.entries.find(&k) else {
                continue;
            };
            if let Some(e) = self.endpoints.entries.get_mut(slot)
                && e.bucket_requests > 0
            {
                endpoint_counts.push((e.name.clone(), e.bucket_requests));
                e.bucket_requests = 0;
            }
        }
        let endpoint_factor = self.cfg.volume.endpoint_factor;
        for (name, count) in endpoint_counts {
            let key = BaselineKey::Endpoint(name.clone());
            if let Some(measures) = self.learn_or_compare(&key, at, count, endpoint_factor) {
                let f = Finding::new(
                    now_ns,
                    Detector::EndpointRate,
                    Entity::Endpoint(name),
                    measures,
                );
                self.report(f, out);
            }
        }
        // All traffic, the same way (an alert: a site-wide surge blocks no one by itself).
        let count = std::mem::take(&mut self.global.bucket_requests);
        if count > 0
            && let Some(measures) =
                self.learn_or_compare(&BaselineKey::Global, at, count, endpoint_factor)
        {
            let f = Finding::new(now_ns, Detector::EndpointRate, Entity::Global, measures);
            self.report(f, out);
        }
        // Prefixes: learned during the warm-up, compared afterwards.
        let mut prefix_counts = Vec::new();
        for pk in prefix_keys(&self.prefixes) {
            if let Some(slot) = self.prefixes.entries.find(&pk)
                && let Some(p) = self.prefixes.entries.get_mut(slot)
                && p.bucket_requests > 0
            {
                prefix_counts.push((pk, p.bucket_requests));
                p.bucket_requests = 0;
            }
        }
        let prefix_factor = self.cfg.volume.baseline_factor;
        for (pk, count) in prefix_counts {
            let key = BaselineKey::Prefix(pk.net());
            if let Some(measures) = self.learn_or_compare(&key, at, count, prefix_factor) {
                let mut f =
                    Finding::new(now_ns, Detector::Volume, Entity::Prefix(pk.net()), measures);
                f.standing = self.prefixes.get(&pk).map(prefix_standing);
                self.report(f, out);
            }
        }
        self.baselines.tick(now_ns);
        self.bucket_start_ns = now_ns - (now_ns - at) % bucket_ns;
    }

    /// Records `count` requests of the bucket that started at `at` for `key` while the
    /// baselines learn; afterwards, the measures of a count over `factor` times what was
    /// learned for that hour of week.
    fn learn_or_compare(
        &mut self,
        key: &BaselineKey,
        at: u64,
        count: u32,
        factor: f64,
    ) -> Option<Vec<Measure>> {
        if self.baselines.learning(at) {
            self.baselines.record(key, at, count);
            return None;
        }
        let exp = self.baselines.exceeds(key, at, f64::from(count), factor)?;
        Some(vec![
            Measure::at_least(
                "requests_per_bucket",
                f64::from(count),
                factor * exp.mean.max(1.0),
            ),
            Measure::at_least("baseline_mean", exp.mean, 0.0),
        ])
    }

    /// Starts the baseline buckets at the first event.
    fn start_bucket(&mut self, now_ns: u64) {
        if self.bucket_start_ns == 0 {
            self.bucket_start_ns = now_ns.max(1);
        }
    }

    /// Runs the source detectors on `ip`; `login` when the event was a login (only a login
    /// can complete a brute-force finding).
    fn check_source(&mut self, ip: IpAddr, now: u64, login: bool, out: &mut Vec<Finding>) {
        let key = AddrKey::of(ip);
        let cfg = &self.cfg;
        let d = self.decays;
        let Some(slot) = self.sources.entries.find(&key) else {
            return;
        };
        let Some(s) = self.sources.entries.get_mut(slot) else {
            return;
        };
        let mut found: Vec<(Detector, Vec<Measure>)> = Vec::new();
        let mut ids = None;
        if login {
            ids = self.identities.get(&key);
            if let Some(ids) = ids {
                found = bruteforce::source(&cfg.brute_force, ids);
            }
        }
        let detail = self.details.get(&key);
        let answers = detail.map_or_else(|| s.tally.answers(), Detail::answers);
        if let Some(m) = success::source(&cfg.low_success, &answers) {
            found.push((Detector::LowSuccess, m));
        }
        if let Some(m) = scraping::discovery(&cfg.scraping, &answers) {
            found.push((Detector::ContentDiscovery, m));
        }
        let rate = d.rates.rate(s.requests);
        if let Some(over_s) = s.over.track(rate >= cfg.volume.source_ceiling_rps, now)
            && let Some(m) = volume::over(&cfg.volume, rate, cfg.volume.source_ceiling_rps, over_s)
        {
            found.push((Detector::Volume, m));
        }
        let syn_over = s
            .syn_over
            .track(d.rates.rate(s.syns) >= cfg.volume.syn_ceiling_rps, now);
        if let Some(m) = volume::flood(&cfg.volume, d.rates, s.syns, s.requests, syn_over) {
            found.push((Detector::PacketFlood, m));
        }
        let packets_over = s.packets_over.track(
            d.rates.rate(s.packets) >= cfg.volume.packet_ceiling_pps,
            now,
        );
        if let Some(m) = volume::packets(&cfg.volume, d.rates, s.packets, s.requests, packets_over)
        {
            found.push((Detector::PacketRate, m));
        }
        if let Some(detail) = detail {
            if login
                && let Some(clients) = &detail.clients
                && let Some(m) = shared::check(&cfg.shared, clients)
            {
                found.push((Detector::MarkedClient, m));
            }
            if let Some(m) = scraping::enumeration(&cfg.scraping, detail, now) {
                found.push((Detector::Enumeration, m));
            }
            // Breadth and timing change slowly: judged every eighth request (a sort of the
            // intervals and a logarithm per request were a tenth of the detection's time).
            if detail.count % 8 == 0 {
                if let Some(m) = scraping::breadth(&cfg.scraping, detail) {
                    found.push((Detector::Breadth, m));
                }
                if let Some(m) = timing::regular(&cfg.timing, detail.intervals()) {
                    found.push((Detector::BotTiming, m));
                }
                // Sessions are counted for busy sources that present any.
                if ids.is_none() {
                    ids = self.identities.get(&key);
                }
                if let Some(m) = ids.and_then(|i| sessions::rotation(&cfg.sessions, i, &answers)) {
                    found.push((Detector::SessionRotation, m));
                }
                if let Some(m) = shapes::rotation(&cfg.shapes, detail, &answers) {
                    found.push((Detector::FingerprintRotation, m));
                }
            }
        }
        if found.is_empty() {
            return;
        }
        let ids = ids.or_else(|| self.identities.get(&key));
        let standing = standing(s, &answers, ids);
        for (detector, measures) in found {
            let mut f = Finding::new(now, detector, Entity::Source(ip), measures);
            f.standing = Some(standing);
            self.report(f, out);
        }
    }

    /// Runs the prefix detectors on `pk`.
    fn check_prefix(&mut self, pk: PrefixKey, now: u64, out: &mut Vec<Finding>) {
        let cfg = &self.cfg;
        let d = self.decays;
        let Some(slot) = self.prefixes.entries.find(&pk) else {
            return;
        };
        let Some(p) = self.prefixes.entries.get_mut(slot) else {
            return;
        };
        let mut found = Vec::new();
        if let Some(m) = bruteforce::prefix(&cfg.brute_force, p) {
            found.push((Detector::BruteForce, m));
        }
        let rate = d.rates.rate(p.requests);
        if let Some(over_s) = p.over.track(rate >= cfg.volume.prefix_ceiling_rps, now)
            && let Some(m) = volume::over(&cfg.volume, rate, cfg.volume.prefix_ceiling_rps, over_s)
        {
            found.push((Detector::Volume, m));
        }
        let standing = prefix_standing(p);
        for (detector, measures) in found {
            let mut f = Finding::new(now, detector, Entity::Prefix(pk.net()), measures);
            f.standing = Some(standing);
            self.report(f, out);
        }
    }

    /// Runs the account detector on the account with hash `h`.
    fn check_account(&mut self, h: u64, now: u64, out: &mut Vec<Finding>) {
        let Some(a) = self.accounts.get(&h) else {
            return;
        };
        if let Some(m) = bruteforce::account(&self.cfg.brute_force, a) {
            let mut f = Finding::new(
                now,
                Detector::AccountAttacked,
                Entity::Account(a.name.clone()),
                m,
            );
            f.sources.clone_from(&a.recent_sources);
            self.report(f, out);
        }
    }

    /// Pushes `f` unless the same detector reported the same entity less than `repeat_s` ago;
    /// adds the entity's samples.
    fn report(&mut self, mut f: Finding, out: &mut Vec<Finding>) {
        let key = (self.hasher.hash(&f.entity), f.detector as u8);
        let repeat_ns = self.cfg.repeat_s.saturating_mul(NS);
        if let Some(slot) = self.reported.find(&key) {
            let last = self.reported.get(slot).copied().unwrap_or(0);
            if f.at_ns < last.saturating_add(repeat_ns) {
                return;
            }
            self.reported.touch(slot);
            if let Some(v) = self.reported.get_mut(slot) {
                *v = f.at_ns;
            }
        } else {
            if self.reported.len() >= MAX_REPORTED
                && let Some(oldest) = self.reported.oldest()
            {
                self.reported.remove(oldest);
            }
            self.reported.insert(key, f.at_ns);
        }
        if let Entity::Source(ip) = f.entity
            && let Some(detail) = self.details.get(&AddrKey::of(ip))
        {
            f.samples = detail.samples_in_order();
            f.flows.clone_from(&detail.flows);
            if let Some(clients) = &detail.clients {
                f.marks = shared::marks(&self.cfg.shared, clients);
            }
        }
        self.counters.findings += 1;
        out.push(f);
    }
}

/// What is known about all traffic.
#[derive(Clone, Copy, Debug, Default)]
struct GlobalState {
    /// Requests in the current baseline bucket.
    bucket_requests: u32,
}

/// The standing of a source.
fn standing(s: &SourceState, answers: &Answers, ids: Option<&Identities>) -> Standing {
    Standing {
        verified: s.verified(),
        proxy: s.proxy,
        requests: f64::from(s.requests),
        success_share: share(answers.ok, answers.answered),
        good_sessions: ids.map_or(0.0, |i| i.good_sessions.estimate()),
        good_accounts: ids.map_or(0.0, |i| i.good_accounts.estimate()),
    }
}

/// The standing of a prefix (verified: some source in it sent a request).
fn prefix_standing(p: &PrefixState) -> Standing {
    Standing {
        verified: true,
        proxy: None,
        requests: f64::from(p.requests),
        success_share: share(p.ok, p.answered),
        good_sessions: p.good_sessions.estimate(),
        good_accounts: 0.0,
    }
}

/// The heap of a value that holds none.
fn no_heap<V>(_: &V) -> usize {
    0
}

/// Keys of the endpoint table in slot order.
fn endpoint_keys(t: &Table<u64, EndpointState>) -> Vec<u64> {
    t.entries.keys().collect()
}

/// Keys of the prefix table in slot order.
fn prefix_keys(t: &Table<PrefixKey, PrefixState>) -> Vec<PrefixKey> {
    t.entries.keys().collect()
}

#[cfg(test)]
mod tests;
