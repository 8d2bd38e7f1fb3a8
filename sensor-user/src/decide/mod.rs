//! The decision policy: findings in, one [`Decision`] per entity out (observe, alert or
//! block), with a scope, a TTL that escalates for repeat offenders, a reason and the findings
//! behind it. Pure: no I/O, time passed in. Decisions are side-effect-free values; the map
//! writer (`verdict.rs`) enforces them, and only when the policy says so.
//!
//! Safety rules, checked in this order before a block:
//! - only a finding whose detector may block (see [`Strength`]) leads to one, and a whole
//!   prefix is blocked only for volume or as a campaign's;
//! - allowlisted prefixes and trusted proxies are never blocked;
//! - a source must have completed a TCP handshake and sent a request (`Standing::verified`):
//!   spoofed packets cannot get an innocent address blocked;
//! - a client behind a trusted proxy is not blocked by address (that would block the proxy):
//!   the decision is reported for enforcement upstream;
//! - an address shared between an attacker and users in good standing (an office behind
//!   NAT, a carrier's CGNAT), whose attacker's client shape the finding names
//!   ([`Finding::marks`]), is not blocked: the connections that carry a mark are, one by one
//!   as their requests arrive ([`Enforcement::Connection`], [`Policy::on_request`]);
//! - the blast-radius guard: an address or prefix whose recent traffic was mostly successful
//!   for many distinct sessions or accounts (an office behind NAT) is not blocked as a whole;
//! - caps on active blocks and on new blocks per minute; beyond them the policy alerts and
//!   counts what it did not block.
//!
//! A campaign's prefix (`Detector::CampaignPrefix`) is blocked with its sources in good
//! standing as exceptions ([`Decision::exceptions`]): the map writer allowlists each for the
//! block's TTL, before it writes the block, and the kernel lets both lapse at the same time. A
//! source the policy blocks on its own is never an exception (and loses one it had: the map
//! writer withdraws it with the address block). Only when a prefix holds more sources in good
//! standing than [`MAX_EXCEPTIONS`] (the detector lists one more to say so) is the prefix not
//! blocked as a whole (`Refusal::GoodStanding`): some would be refused without an exception.
//!
//! A block lasts its TTL. While the behaviour goes on (new findings, or the kernel still
//! dropping the source's packets) a block in its second half is renewed with the same TTL; when
//! the behaviour stops, the block lapses by the kernel's clock.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::detect::{Detector, Entity, Finding, Flow, Mark, Strength};
use crate::http::ProxyVia;

/// Nanoseconds per second.
const NS: u64 = 1_000_000_000;

/// Most exceptions one prefix block carries (a campaign's member count): a prefix with more
/// sources in good standing is not blocked as a whole.
pub const MAX_EXCEPTIONS: usize = crate::detect::campaign::MEMBERS;

/// The `[policy]` table of the configuration.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Decide and report, but never write a block (the `--dry-run` flag sets it too).
    pub dry_run: bool,
    /// TTL of a first block, in seconds.
    pub block_ttl_s: u64,
    /// Each repeat offence multiplies the TTL by this factor...
    pub escalation: f64,
    /// ... up to this TTL, in seconds.
    pub max_ttl_s: u64,
    /// How long, in seconds, an offence is remembered for escalation.
    pub offence_memory_s: u64,
    /// Most blocks active at once; beyond it the policy alerts instead.
    pub max_active_blocks: usize,
    /// Most new blocks per minute; beyond it the policy alerts instead.
    pub max_new_blocks_per_min: usize,
    /// Never blocked (also written to the kernel's allowlist by the agent).
    pub allowlist: Vec<IpNet>,
    /// Blast-radius guard: an address or prefix with at least this many distinct sessions or
    /// accounts answered successfully recently...
    pub shared_min_identities: f64,
    /// ... and at least this share of successful answers is shared by many users: it is not
    /// blocked as a whole.
    pub shared_min_success_share: f64,
    /// A command (program and arguments) the agent runs for every block it reports for
    /// enforcement upstream (a client behind a trusted proxy), with the decision's event line
    /// on its standard input. Empty: none.
    pub upstream_hook: Vec<String>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            dry_run: false,
            block_ttl_s: 600,
            escalation: 4.0,
            max_ttl_s: 86_400,
            offence_memory_s: 86_400,
            max_active_blocks: 10_000,
            max_new_blocks_per_min: 600,
            allowlist: Vec::new(),
            shared_min_identities: 10.0,
            shared_min_success_share: 0.5,
            upstream_hook: Vec::new(),
        }
    }
}

/// What a decision does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Record only.
    Observe,
    /// Report for a human.
    Alert,
    /// Block the target.
    Block,
}

/// Where a block is enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    /// In this host's kernel (the block maps).
    Kernel,
    /// Upstream: the client is behind a trusted proxy shared with other clients, so blocking
    /// its address here would block the proxy. The decision is reported for the proxy or a
    /// hook to enforce.
    Upstream,
    /// In this host's kernel, by connection: the client reaches the server through a trusted
    /// proxy speaking the PROXY protocol (one client per proxy connection), so the client's
    /// connections are dropped and the proxy's others are not: the open ones by flow key (the
    /// flow-block map), new ones at the PROXY header naming the client (its address block).
    Flow,
    /// In this host's kernel, by connection, at an address shared between an attacker and
    /// users in good standing (NAT, CGNAT): the address stays served; each connection whose
    /// request carries one of the decision's marks (the attacker's client shape) is blocked
    /// as the request arrives, before it is answered: its later segments are dropped in XDP
    /// and its pending response at TC egress (the flow-block map).
    Connection,
    /// Not enforced: an alert, a dry run, or a block the safety rules refused.
    None,
}

/// Connections a block by connection remembers (to block each once).
const RECENT_FLOWS: usize = 16;

/// How much each piece of context raises a decision's score.
const CONTEXT_WEIGHT: f64 = 0.25;

/// Why a block-worthy finding did not become a kernel block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The target is (or overlaps) an allowlisted prefix.
    Allowlisted,
    /// The target is a trusted proxy.
    TrustedProxy,
    /// The source never completed a handshake and a request.
    Unverified,
    /// The address or prefix is shared by many successful users.
    SharedAddress,
    /// A campaign's prefix holds more sources in good standing than a block carries exceptions
    /// for ([`MAX_EXCEPTIONS`]): some would be refused too, so its members are blocked one by
    /// one instead.
    GoodStanding,
    /// The cap on active blocks was reached.
    ActiveCap,
    /// The cap on new blocks per minute was reached.
    RateCap,
    /// Dry run.
    DryRun,
}

impl Refusal {
    /// Every refusal, in report order.
    pub const ALL: [Refusal; 8] = [
        Refusal::Allowlisted,
        Refusal::TrustedProxy,
        Refusal::Unverified,
        Refusal::SharedAddress,
        Refusal::GoodStanding,
        Refusal::ActiveCap,
        Refusal::RateCap,
        Refusal::DryRun,
    ];

    /// The sentence of a decision's note.
    fn note(self) -> &'static str {
        match self {
            Refusal::Allowlisted => "not blocked: allowlisted",
            Refusal::TrustedProxy => "not blocked: a trusted proxy",
            Refusal::Unverified => {
                "not blocked: the source never completed a handshake and a request (could be spoofed)"
            }
            Refusal::SharedAddress => {
                "not blocked as a whole: shared by many users with mostly successful traffic"
            }
            Refusal::GoodStanding => {
                "not blocked as a whole: more sources in good standing there than a block spares; the campaign's members are blocked one by one"
            }
            Refusal::ActiveCap => "not blocked: the cap on active blocks is reached",
            Refusal::RateCap => "not blocked: the cap on new blocks per minute is reached",
            Refusal::DryRun => "not blocked: dry run",
        }
    }
}

/// One decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    /// Unique id, also the block's id in the kernel's notes: the time in milliseconds and a
    /// sequence number (deterministic for a replay).
    pub id: u64,
    /// When, Unix ns (the time of the finding that made it).
    pub at_ns: u64,
    /// What it does.
    pub action: Action,
    /// Where it is enforced.
    pub enforcement: Enforcement,
    /// About whom.
    pub entity: Entity,
    /// The address or prefix a block covers (for a block by connection, the client's address,
    /// which is not blocked itself).
    pub target: Option<IpNet>,
    /// The connections a block by connection drops.
    pub flows: Vec<Flow>,
    /// For a block by connection at a shared address, the client shapes whose connections
    /// are blocked.
    pub marks: Vec<Mark>,
    /// Addresses inside `target` a prefix block spares (a campaign's prefix, its sources in
    /// good standing): the map writer allowlists each for `ttl_s` under this decision's id
    /// before it writes the block, and a renewal renews them.
    pub exceptions: Vec<IpNet>,
    /// Block duration in seconds (0 for alerts).
    pub ttl_s: u64,
    /// A renewal of an active block (the behaviour goes on).
    pub renewal: bool,
    /// Offences of this target remembered, this one included.
    pub offence: u32,
    /// Short reason (detector names), at most 96 bytes: it goes into the kernel's note.
    pub reason: String,
    /// Why it is not a kernel block, when a finding could have made one.
    pub refused: Option<Refusal>,
    /// Sentences for the operator.
    pub notes: Vec<String>,
    /// The findings behind it.
    pub findings: Vec<Finding>,
    /// How far over its thresholds: the leading finding's score, raised by a quarter for each
    /// piece of context that came with it (a short-lived source, an unusual hour or route).
    pub score: f64,
}

impl Decision {
    /// One line for logs.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let target = self
            .target
            .map_or_else(|| self.entity.to_string(), |t| t.to_string());
        let mut s = format!(
            "decision {:016x}: {:?} {} ({}), ttl {} s",
            self.id, self.action, target, self.reason, self.ttl_s
        );
        if let Some(r) = self.refused {
            let _ = write!(s, "; {}", r.note());
        }
        s
    }

    /// Whether the map writer must write a kernel block for it (an address or prefix block,
    /// or flow blocks).
    pub fn blocks_in_kernel(&self) -> bool {
        self.action == Action::Block
            && matches!(
                self.enforcement,
                Enforcement::Kernel | Enforcement::Flow | Enforcement::Connection
            )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Observe => "observe",
            Action::Alert => "alert",
            Action::Block => "block",
        })
    }
}

/// Counts of what the policy did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PolicyCounters {
    /// Decisions by action.
    pub observe: u64,
    /// Alerts.
    pub alert: u64,
    /// Blocks (new and renewed).
    pub block: u64,
    /// Of those, renewals.
    pub renewed: u64,
    /// Connections blocked at shared addresses (each carrying a marked client shape).
    pub connections: u64,
    /// Blocks refused, by reason.
    pub refused: BTreeMap<String, u64>,
    /// Blocks active now.
    pub active: u64,
}

/// A block the policy made and believes active.
#[derive(Clone, Debug)]
struct Active {
    /// Its decision id.
    id: u64,
    /// How it is enforced.
    enforcement: Enforcement,
    /// For a block by connection, the connections blocked so far.
    flows: Vec<Flow>,
    /// For a prefix block, the addresses it spares (renewed with it).
    exceptions: Vec<IpNet>,
    /// For a block by connection at a shared address, the marked client shapes.
    marks: Vec<Mark>,
    /// Expiry, Unix ns.
    expires_ns: u64,
    /// Its TTL, ns.
    ttl_ns: u64,
}

impl Active {
    /// Whether the block is in its second half at `now` (Unix ns).
    fn due_for_renewal(&self, now: u64) -> bool {
        self.expires_ns.saturating_sub(now) < self.ttl_ns / 2
    }
}

/// The policy and its memory of blocks and offences.
pub struct Policy {
    /// Configuration.
    cfg: PolicyConfig,
    /// Trusted proxies (from the HTTP configuration): never blocked.
    trusted_proxies: Vec<IpNet>,
    /// Blocks believed active, by target.
    active: BTreeMap<IpNet, Active>,
    /// The targets of `active` blocked by connection at a shared address (requests from them
    /// are matched against their marks as they arrive).
    marked: BTreeSet<IpNet>,
    /// Offences per target: count and time of the latest.
    offences: BTreeMap<IpNet, (u32, u64)>,
    /// Times of the new blocks of the last minute.
    recent_blocks: VecDeque<u64>,
    /// Decisions made, for ids.
    seq: u64,
    /// When blocks and offences were last expired, Unix ns.
    expired_at_ns: u64,
    /// Counters.
    counters: PolicyCounters,
}

impl Policy {
    /// A policy with no memory yet.
    pub fn new(cfg: PolicyConfig, trusted_proxies: Vec<IpNet>) -> Self {
        Self {
            cfg,
            trusted_proxies,
            active: BTreeMap::new(),
            marked: BTreeSet::new(),
            offences: BTreeMap::new(),
            recent_blocks: VecDeque::new(),
            seq: 0,
            expired_at_ns: 0,
            counters: PolicyCounters::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PolicyConfig {
        &self.cfg
    }

    /// Takes a new configuration and trusted proxies, keeping the blocks it made and the
    /// offences it remembers: new decisions follow the new rules, active blocks keep their
    /// TTLs.
    pub fn reconfigure(&mut self, cfg: PolicyConfig, trusted_proxies: Vec<IpNet>) {
        self.cfg = cfg;
        self.trusted_proxies = trusted_proxies;
    }

    /// Counters now.
    pub fn counters(&self) -> PolicyCounters {
        let mut c = self.counters.clone();
        c.active = self.active.len() as u64;
        c
    }

    /// Decides on one finding. `None` when the finding changes nothing (context only, or a
    /// block already active and not yet due for renewal).
    pub fn on_finding(&mut self, f: &Finding) -> Option<Decision> {
        self.on_findings(std::slice::from_ref(f))
    }

    /// Decides on the findings one input made about one entity: one decision, led by the
    /// strongest finding (the first of the strongest, by detector strength then score), that
    /// carries all of them and names all their detectors in its reason.
    pub fn on_findings(&mut self, group: &[Finding]) -> Option<Decision> {
        let lead = group.iter().enumerate().max_by(|(i, a), (j, b)| {
            a.detector
                .strength()
                .cmp(&b.detector.strength())
                .then(a.score.total_cmp(&b.score))
                .then(j.cmp(i))
        })?;
        let mut d = self.decide_one(lead.1)?;
        let context: Vec<Detector> = group
            .iter()
            .filter(|f| f.detector.strength() == Strength::Context)
            .map(|f| f.detector)
            .collect();
        if !context.is_empty() {
            #[expect(clippy::cast_precision_loss, reason = "a handful")]
            let raise = 1.0 + CONTEXT_WEIGHT * context.len() as f64;
            d.score = lead.1.score * raise;
            d.notes.push(format!(
                "context: {}",
                context
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if group.len() > 1 {
            // The reason names what decided; context is in the notes.
            let mut detectors: Vec<Detector> = group
                .iter()
                .map(|f| f.detector)
                .filter(|det| det.strength() != Strength::Context)
                .collect();
            detectors.sort_by_key(|det| std::cmp::Reverse(det.strength()));
            detectors.dedup();
            d.reason = format!(
                "apisensor: {}",
                detectors
                    .iter()
                    .map(|det| det.name())
                    .collect::<Vec<_>>()
                    .join("+")
            );
            let mut findings = vec![lead.1.clone()];
            findings.extend(
                group
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != lead.0)
                    .map(|(_, f)| f.clone()),
            );
            d.findings = findings;
        }
        Some(d)
    }

    /// Decides on one finding.
    fn decide_one(&mut self, f: &Finding) -> Option<Decision> {
        let now = f.at_ns;
        self.expire(now);
        match f.detector.strength() {
            Strength::Context => None,
            Strength::Alert => Some(self.alert(f, None, None)),
            Strength::Block => Some(self.block_or_refuse(f)?),
        }
    }

    /// The kernel is still dropping `target`'s packets (its block's latest hit was at
    /// `last_hit_ns`, Unix ns): the behaviour goes on, so a block in its second half is
    /// renewed.
    pub fn on_block_hit(
        &mut self,
        target: IpNet,
        last_hit_ns: u64,
        now_ns: u64,
    ) -> Option<Decision> {
        self.expire(now_ns);
        let a = self.active.get(&target).filter(|a| a.expires_ns > now_ns)?;
        if last_hit_ns + a.ttl_ns / 2 < now_ns || !a.due_for_renewal(now_ns) {
            return None;
        }
        let ttl_ns = a.ttl_ns;
        let offence = self.offences.get(&target).map_or(1, |o| o.0);
        Some(self.renew(
            target,
            Entity::Source(target.addr()),
            now_ns,
            ttl_ns,
            offence,
            Vec::new(),
            "still dropping".into(),
        ))
    }

    /// A new connection of `client` through a PROXY protocol proxy: while the client is
    /// blocked by connection, its new connection is blocked too, for what is left of the
    /// block's TTL.
    pub fn on_connection(&mut self, client: IpAddr, flow: Flow, now_ns: u64) -> Option<Decision> {
        self.expire(now_ns);
        let target = IpNet::from(client.to_canonical());
        let a = self
            .active
            .get_mut(&target)
            .filter(|a| a.expires_ns > now_ns)?;
        if a.enforcement != Enforcement::Flow || a.flows.contains(&flow) {
            return None;
        }
        a.flows.push(flow);
        let (id, left_ns) = (a.id, a.expires_ns.saturating_sub(now_ns));
        self.counters.block += 1;
        Some(Decision {
            id,
            at_ns: now_ns,
            action: Action::Block,
            enforcement: Enforcement::Flow,
            entity: Entity::Source(client),
            target: Some(target),
            flows: vec![flow],
            marks: Vec::new(),
            exceptions: Vec::new(),
            ttl_s: left_ns.div_ceil(NS).max(1),
            renewal: false,
            offence: self.offences.get(&target).map_or(1, |o| o.0),
            reason: "apisensor: a new connection of a blocked client".to_owned(),
            refused: None,
            notes: vec![
                "the client is blocked by connection; this connection joins the block".to_owned(),
            ],
            findings: Vec::new(),
            score: 0.0,
        })
    }

    /// Forgets blocks whose TTL ran out and offences past their memory, at most once a
    /// second (a walk over every block and offence: once per finding cost a burst of
    /// decisions quadratic time).
    pub fn expire(&mut self, now_ns: u64) {
        while self
            .recent_blocks
            .front()
            .is_some_and(|&t| t.saturating_add(60 * NS) <= now_ns)
        {
            self.recent_blocks.pop_front();
        }
        if now_ns < self.expired_at_ns.saturating_add(NS) {
            return;
        }
        self.expired_at_ns = now_ns;
        self.active.retain(|_, a| a.expires_ns > now_ns);
        let active = &self.active;
        self.marked.retain(|t| active.contains_key(t));
        let memory = self.cfg.offence_memory_s.saturating_mul(NS);
        self.offences
            .retain(|_, (_, last)| last.saturating_add(memory) > now_ns);
    }

    /// A block of `target` the map writer could not write (full map, an error): the policy
    /// stops believing it is active, so that the next finding tries again.
    pub fn forget(&mut self, target: IpNet) {
        self.active.remove(&target);
        self.marked.remove(&target);
    }

    /// Whether requests must be matched against marks as they arrive ([`Policy::on_request`]):
    /// some address is blocked by connection.
    pub fn watches_requests(&self) -> bool {
        !self.marked.is_empty()
    }

    /// Whether `client`'s requests must be matched against marks as they arrive: it is blocked
    /// by connection. The others' requests need not even be fingerprinted.
    pub fn watches_requests_from(&self, client: IpAddr) -> bool {
        self.marked.contains(&IpNet::from(client.to_canonical()))
    }

    /// A request from `client` whose client shape is `shape`
    /// (`Detection::client_key`) arrived on the connection `flow`, its response not yet sent:
    /// while the address is blocked by connection and the shape is one of its marks, the
    /// connection is blocked, for what is left of the block's TTL. `shape_name` names the
    /// shape for the operator (its fingerprints), asked only then.
    pub fn on_request(
        &mut self,
        client: IpAddr,
        shape: u64,
        flow: Flow,
        now_ns: u64,
        shape_name: impl FnOnce() -> String,
    ) -> Option<Decision> {
        let target = IpNet::from(client.to_canonical());
        let a = self
            .active
            .get_mut(&target)
            .filter(|a| a.expires_ns > now_ns && a.enforcement == Enforcement::Connection)?;
        let mark = *a.marks.iter().find(|m| m.shape == shape)?;
        if a.flows.contains(&flow) {
            return None;
        }
        // The latest few: a blocked connection sends no more requests, so a repeat is a
        // request already on its way when the first was matched.
        if a.flows.len() >= RECENT_FLOWS {
            a.flows.remove(0);
        }
        a.flows.push(flow);
        let (id, left_ns) = (a.id, a.expires_ns.saturating_sub(now_ns));
        self.counters.connections += 1;
        Some(Decision {
            id,
            at_ns: now_ns,
            action: Action::Block,
            enforcement: Enforcement::Connection,
            entity: Entity::Source(client),
            target: Some(target),
            flows: vec![flow],
            marks: vec![mark],
            exceptions: Vec::new(),
            ttl_s: left_ns.div_ceil(NS).max(1),
            renewal: false,
            offence: self.offences.get(&target).map_or(1, |o| o.0),
            reason: "apisensor: a connection of a marked client at a shared address".to_owned(),
            refused: None,
            notes: vec![format!(
                "client shape {:016x} ({}) is marked at this shared address: this connection is dropped before its answer, the address's other users stay served",
                mark.shape,
                shape_name()
            )],
            findings: Vec::new(),
            score: 0.0,
        })
    }

    fn next_id(&mut self, at_ns: u64) -> u64 {
        self.seq += 1;
        ((at_ns / 1_000_000) << 20) | (self.seq & 0xf_ffff)
    }

    fn alert(&mut self, f: &Finding, target: Option<IpNet>, refused: Option<Refusal>) -> Decision {
        self.counters.alert += 1;
        if let Some(r) = refused {
            *self
                .counters
                .refused
                .entry(format!("{r:?}").to_lowercase())
                .or_default() += 1;
        }
        let mut notes = Vec::new();
        if let Some(r) = refused {
            notes.push(r.note().to_owned());
        }
        if matches!(f.detector, Detector::AccountAttacked) {
            notes.push(format!(
                "{} sources listed; no address is blocked for failing once",
                f.sources.len()
            ));
        }
        Decision {
            id: self.next_id(f.at_ns),
            at_ns: f.at_ns,
            action: Action::Alert,
            enforcement: Enforcement::None,
            entity: f.entity.clone(),
            target,
            flows: Vec::new(),
            marks: Vec::new(),
            exceptions: Vec::new(),
            ttl_s: 0,
            renewal: false,
            offence: 0,
            reason: reason_text(f.detector),
            refused,
            notes,
            findings: vec![f.clone()],
            score: f.score,
        }
    }

    /// The safety rule that forbids any block of `target` for `f`, in order, if one does.
    fn never_block(&self, f: &Finding, target: &IpNet) -> Option<Refusal> {
        if self.cfg.allowlist.iter().any(|a| overlaps(a, target)) {
            return Some(Refusal::Allowlisted);
        }
        if self.trusted_proxies.iter().any(|p| overlaps(p, target)) {
            return Some(Refusal::TrustedProxy);
        }
        if !f.standing.unwrap_or_default().verified {
            return Some(Refusal::Unverified);
        }
        None
    }

    /// The safety rule that forbids blocking `f`'s target as a whole, if one does.
    fn unsafe_to_block(&self, f: &Finding) -> Option<Refusal> {
        let standing = f.standing.unwrap_or_default();
        if standing.success_share >= self.cfg.shared_min_success_share
            && (standing.good_sessions >= self.cfg.shared_min_identities
                || standing.good_accounts >= self.cfg.shared_min_identities)
        {
            return Some(Refusal::SharedAddress);
        }
        if f.detector == Detector::CampaignPrefix && f.sources.len() > MAX_EXCEPTIONS {
            return Some(Refusal::GoodStanding);
        }
        None
    }

    fn block_or_refuse(&mut self, f: &Finding) -> Option<Decision> {
        let target = match &f.entity {
            Entity::Source(ip) => IpNet::from(ip.to_canonical()),
            // A whole prefix is blocked for volume, or as a campaign's; other behaviour spread
            // over a prefix is an alert, and its sources that crossed on their own are blocked
            // one by one.
            Entity::Prefix(net)
                if matches!(f.detector, Detector::Volume | Detector::CampaignPrefix) =>
            {
                *net
            }
            _ => return Some(self.alert(f, None, None)),
        };
        if let Some(r) = self.never_block(f, &target) {
            return Some(self.alert(f, Some(target), Some(r)));
        }
        if self.by_connection(f, &target) {
            let marks = f.marks.clone();
            return self.block(
                f,
                target,
                Enforcement::Connection,
                Vec::new(),
                Vec::new(),
                marks,
            );
        }
        if let Some(r) = self.unsafe_to_block(f) {
            return Some(self.alert(f, Some(target), Some(r)));
        }
        let (enforcement, flows) = match f.standing.unwrap_or_default().proxy {
            Some(ProxyVia::ProxyProtocol) => (Enforcement::Flow, f.flows.clone()),
            Some(_) => (Enforcement::Upstream, Vec::new()),
            None => (Enforcement::Kernel, Vec::new()),
        };
        let exceptions = if enforcement == Enforcement::Kernel {
            self.exceptions_for(f, &target, f.at_ns)
        } else {
            Vec::new()
        };
        self.block(f, target, enforcement, flows, exceptions, Vec::new())
    }

    /// Blocks `target` for `f`, enforced as `enforcement` (with the connections, exceptions
    /// and marks that go with it), or renews its active block in its second half (the
    /// finding's exceptions and marks joining it), or reports what a dry run would have done,
    /// or refuses at the caps.
    fn block(
        &mut self,
        f: &Finding,
        target: IpNet,
        enforcement: Enforcement,
        flows: Vec<Flow>,
        exceptions: Vec<IpNet>,
        marks: Vec<Mark>,
    ) -> Option<Decision> {
        let now = f.at_ns;
        if let Some(a) = self.active.get_mut(&target).filter(|a| a.expires_ns > now) {
            // Sources in good standing seen since, and client shapes marked since, join the
            // block (written with its next renewal).
            for e in exceptions {
                if !a.exceptions.contains(&e) {
                    a.exceptions.push(e);
                }
            }
            for m in marks {
                match a.marks.iter_mut().find(|x| x.shape == m.shape) {
                    Some(x) => *x = m,
                    None => a.marks.push(m),
                }
            }
            if !a.due_for_renewal(now) {
                return None;
            }
            let (ttl_ns, offence) = (a.ttl_ns, self.offences.get(&target).map_or(1, |o| o.0));
            return Some(self.renew(
                target,
                f.entity.clone(),
                now,
                ttl_ns,
                offence,
                vec![f.clone()],
                reason_text(f.detector),
            ));
        }
        if self.cfg.dry_run {
            let mut d = self.dry_run_block(f, target, exceptions);
            d.marks = marks;
            return Some(d);
        }
        if self.active.len() >= self.cfg.max_active_blocks {
            return Some(self.alert(f, Some(target), Some(Refusal::ActiveCap)));
        }
        if self.recent_blocks.len() >= self.cfg.max_new_blocks_per_min {
            return Some(self.alert(f, Some(target), Some(Refusal::RateCap)));
        }
        let offence = self.offend(target, now);
        let ttl_s = self.ttl_s(offence);
        let id = self.next_id(now);
        if enforcement == Enforcement::Connection {
            // The address itself is not blocked: an exception it has stays.
            self.marked.insert(target);
        } else {
            self.withdraw_exception(target);
        }
        self.active.insert(
            target,
            Active {
                id,
                enforcement,
                flows: flows.clone(),
                exceptions: exceptions.clone(),
                marks: marks.clone(),
                expires_ns: now.saturating_add(ttl_s.saturating_mul(NS)),
                ttl_ns: ttl_s.saturating_mul(NS),
            },
        );
        self.recent_blocks.push_back(now);
        self.counters.block += 1;
        let notes = block_notes(enforcement, offence, exceptions.len());
        Some(Decision {
            id,
            at_ns: now,
            action: Action::Block,
            enforcement,
            entity: f.entity.clone(),
            target: Some(target),
            flows,
            marks,
            exceptions,
            ttl_s,
            renewal: false,
            offence,
            reason: reason_text(f.detector),
            refused: None,
            notes,
            findings: vec![f.clone()],
            score: f.score,
        })
    }

    /// Whether `target` is (to be) blocked by connection: an address shared with users in good
    /// standing whose attacker `f` marks, or one already blocked that way. Marks are for
    /// addresses that are their own TCP peers (a PROXY protocol client is blocked by connection
    /// already; one behind forwarded headers shares the proxy's connections).
    fn by_connection(&self, f: &Finding, target: &IpNet) -> bool {
        let active = self
            .active
            .get(target)
            .is_some_and(|a| a.expires_ns > f.at_ns && a.enforcement == Enforcement::Connection);
        active
            || (!f.marks.is_empty()
                && matches!(f.entity, Entity::Source(_))
                && f.standing.unwrap_or_default().proxy.is_none())
    }

    /// A block decided in a dry run: reported with its TTL, enforced nowhere, remembered so
    /// that the dry run reports what a real one would (renewals, escalation, caps).
    fn dry_run_block(&mut self, f: &Finding, target: IpNet, exceptions: Vec<IpNet>) -> Decision {
        let now = f.at_ns;
        let offence = self.offend(target, now);
        let ttl_s = self.ttl_s(offence);
        let id = self.next_id(now);
        let (enforcement, flows) = (Enforcement::None, f.flows.clone());
        self.withdraw_exception(target);
        self.active.insert(
            target,
            Active {
                id,
                enforcement,
                flows: flows.clone(),
                exceptions: exceptions.clone(),
                marks: Vec::new(),
                expires_ns: now.saturating_add(ttl_s.saturating_mul(NS)),
                ttl_ns: ttl_s.saturating_mul(NS),
            },
        );
        self.recent_blocks.push_back(now);
        self.counters.block += 1;
        *self.counters.refused.entry("dry_run".into()).or_default() += 1;
        let mut notes = vec![Refusal::DryRun.note().to_owned()];
        if !exceptions.is_empty() {
            notes.push(spared_note(exceptions.len()));
        }
        Decision {
            id,
            at_ns: now,
            action: Action::Block,
            enforcement,
            entity: f.entity.clone(),
            target: Some(target),
            flows,
            marks: Vec::new(),
            exceptions,
            ttl_s,
            renewal: false,
            offence,
            reason: reason_text(f.detector),
            refused: Some(Refusal::DryRun),
            notes,
            findings: vec![f.clone()],
            score: f.score,
        }
    }

    #[expect(clippy::too_many_arguments, reason = "one private constructor")]
    fn renew(
        &mut self,
        target: IpNet,
        entity: Entity,
        now: u64,
        ttl_ns: u64,
        offence: u32,
        findings: Vec<Finding>,
        reason: String,
    ) -> Decision {
        let (id, enforcement, flows, exceptions, marks) = match self.active.get_mut(&target) {
            Some(a) => {
                a.expires_ns = now.saturating_add(ttl_ns);
                let flows = if a.enforcement == Enforcement::Connection {
                    // Its connections were blocked for what was left of its TTL then, and
                    // the matching goes on with the new one.
                    Vec::new()
                } else {
                    a.flows.clone()
                };
                let marks = a.marks.clone();
                (a.id, a.enforcement, flows, a.exceptions.clone(), marks)
            }
            None => (
                self.next_id(now),
                Enforcement::Kernel,
                Vec::new(),
                Vec::new(),
                Vec::new(),
            ),
        };
        self.counters.block += 1;
        self.counters.renewed += 1;
        let dry = self.cfg.dry_run;
        if let Some(o) = self.offences.get_mut(&target) {
            o.1 = now;
        }
        Decision {
            id,
            at_ns: now,
            action: Action::Block,
            enforcement: if dry { Enforcement::None } else { enforcement },
            entity,
            target: Some(target),
            flows,
            ttl_s: ttl_ns / NS,
            renewal: true,
            offence,
            reason,
            refused: dry.then_some(Refusal::DryRun),
            notes: if exceptions.is_empty() {
                vec!["renewed: the behaviour goes on".to_owned()]
            } else {
                vec![
                    "renewed: the behaviour goes on".to_owned(),
                    spared_note(exceptions.len()),
                ]
            },
            marks,
            exceptions,
            score: findings.first().map_or(0.0, |f| f.score),
            findings,
        }
    }

    /// The exceptions a block of `target` for `f` carries: for a campaign's prefix, its sources
    /// in good standing inside it, as host networks, except any the policy blocks on its own
    /// (an exception would let such a source past its own block too).
    fn exceptions_for(&self, f: &Finding, target: &IpNet, now: u64) -> Vec<IpNet> {
        if f.detector != Detector::CampaignPrefix {
            return Vec::new();
        }
        let mut out: Vec<IpNet> = f
            .sources
            .iter()
            .map(|ip| IpNet::from(ip.to_canonical()))
            .filter(|n| target.contains(n) && n != target)
            .filter(|n| self.active.get(n).is_none_or(|a| a.expires_ns <= now))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// `host` is blocked on its own: it stops being an exception of any active prefix block
    /// (so a renewal does not write it again; the map writer removes the entry itself).
    fn withdraw_exception(&mut self, host: IpNet) {
        let max = host.max_prefix_len();
        if host.prefix_len() != max {
            return;
        }
        for len in 0..max {
            let Ok(net) = IpNet::new(host.addr(), len) else {
                continue;
            };
            if let Some(a) = self.active.get_mut(&net.trunc()) {
                a.exceptions.retain(|e| *e != host);
            }
        }
    }

    /// Records an offence of `target` and returns how many are remembered.
    fn offend(&mut self, target: IpNet, now: u64) -> u32 {
        let o = self.offences.entry(target).or_insert((0, now));
        o.0 = o.0.saturating_add(1);
        o.1 = now;
        o.0
    }

    /// The TTL of the `offence`-th block of a target, in seconds.
    fn ttl_s(&self, offence: u32) -> u64 {
        let base = self.cfg.block_ttl_s.max(1);
        let factor = self
            .cfg
            .escalation
            .max(1.0)
            .powi(i32::try_from(offence.saturating_sub(1)).unwrap_or(i32::MAX));
        #[expect(clippy::cast_precision_loss, reason = "seconds")]
        let ttl = base as f64 * factor;
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "a TTL in seconds, far below 2^52, clamped to the maximum TTL before the cast back"
        )]
        let ttl = ttl.min(self.cfg.max_ttl_s.max(base) as f64) as u64;
        ttl
    }
}

/// The notes of a new block: how it is enforced, how many sources it spares, escalation.
fn block_notes(enforcement: Enforcement, offence: u32, spared: usize) -> Vec<String> {
    let mut notes = Vec::new();
    if spared > 0 {
        notes.push(spared_note(spared));
    }
    match enforcement {
        Enforcement::Upstream => notes.push(
            "the client is behind a trusted proxy that shares its connections: reported for enforcement upstream, the proxy is not blocked"
                .to_owned(),
        ),
        Enforcement::Flow => notes.push(
            "the client is behind a trusted PROXY protocol proxy: its connections are dropped (open ones by flow key, new ones at their PROXY header), the proxy's others are not"
                .to_owned(),
        ),
        Enforcement::Connection => notes.push(
            "enforced per connection: the address is shared with users in good standing, so it is not blocked; each of its connections whose request carries a marked client shape (request and transport fingerprint) is dropped as the request arrives, its answer dropped at egress"
                .to_owned(),
        ),
        _ => {}
    }
    if offence > 1 {
        notes.push(format!("repeat offence {offence}: TTL escalated"));
    }
    notes
}

/// The note of a prefix block that spares `n` sources.
fn spared_note(n: usize) -> String {
    format!(
        "{n} sources in good standing spared: allowlisted for the block's TTL (exceptions written before the block)"
    )
}

/// Whether two networks share an address.
fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The short reason of a decision.
fn reason_text(d: Detector) -> String {
    format!("apisensor: {d}")
}
