//! What a detector reports: a [`Finding`] about one [`Entity`], with a score and the evidence
//! behind it (the measures that crossed their thresholds, a few sample requests, the sources
//! involved). Findings hold no secrets: sample requests carry the path without its query,
//! the account name and the status, as transactions do.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::Serialize;

use crate::http::{LoginOutcome, ProxyVia, Transaction};

/// The detectors, each a rule over the entity state (see their modules).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// Failed logins from one source or prefix (`bruteforce.rs`).
    BruteForce,
    /// Many distinct accounts failing from one source: credential stuffing.
    CredentialStuffing,
    /// Many distinct accounts logged into from one source: account aggregation.
    AccountAggregation,
    /// One account failing from many sources.
    AccountAttacked,
    /// A source with enough requests and almost none successful (`success.rs`).
    LowSuccess,
    /// A source or prefix above its request ceiling or baseline, sustained (`volume.rs`).
    Volume,
    /// SYNs from a source far above its requests: a SYN flood (`volume.rs`).
    PacketFlood,
    /// Packets from a source (the kernel's counters) far above its requests (`volume.rs`).
    PacketRate,
    /// An endpoint's rate, or all traffic's, far above its hour-of-week baseline.
    EndpointRate,
    /// Sequential identifiers walked on one route (`scraping.rs`).
    Enumeration,
    /// Unusually many distinct resources from one source (`scraping.rs`).
    Breadth,
    /// A high share of 404 answers: content discovery (`scraping.rs`).
    ContentDiscovery,
    /// Request timing too regular to be human (`timing.rs`).
    BotTiming,
    /// Many sources failing to log in with one request fingerprint on one endpoint: a
    /// campaign rotating addresses (`campaign.rs`), reported with its members.
    Campaign,
    /// A source taking part in a campaign (`campaign.rs`).
    CampaignMember,
    /// A prefix where enough of a campaign's members are (`campaign.rs`), reported with its
    /// sources in good standing, which are spared.
    CampaignPrefix,
    /// At an address shared with users in good standing, one client program (request and
    /// transport fingerprint) failing to log in (`shared.rs`), reported with the marks that
    /// tell its connections apart.
    MarkedClient,
    /// One session used from many addresses (`sessions.rs`).
    SessionShared,
    /// A source presenting many fresh sessions (`sessions.rs`).
    SessionRotation,
    /// A source changing its request shape request after request (`shapes.rs`).
    FingerprintRotation,
    /// An endpoint seeing many new request shapes at once (`shapes.rs`).
    FingerprintSurge,
    /// Context: a source that appeared shortly before (`context.rs`).
    ShortLived,
    /// Context: a request to an endpoint outside the hours it is usually active in.
    OffHours,
    /// Context: a request to an endpoint never seen while the baselines learned.
    UnseenRoute,
    /// Context: a request to an operation the API's OpenAPI document does not declare.
    Undocumented,
}

impl Detector {
    /// Every detector, in report order.
    pub const ALL: [Detector; 25] = [
        Detector::BruteForce,
        Detector::CredentialStuffing,
        Detector::AccountAggregation,
        Detector::AccountAttacked,
        Detector::LowSuccess,
        Detector::Volume,
        Detector::PacketFlood,
        Detector::PacketRate,
        Detector::EndpointRate,
        Detector::Enumeration,
        Detector::Breadth,
        Detector::ContentDiscovery,
        Detector::BotTiming,
        Detector::Campaign,
        Detector::CampaignMember,
        Detector::CampaignPrefix,
        Detector::MarkedClient,
        Detector::SessionShared,
        Detector::SessionRotation,
        Detector::FingerprintRotation,
        Detector::FingerprintSurge,
        Detector::ShortLived,
        Detector::OffHours,
        Detector::UnseenRoute,
        Detector::Undocumented,
    ];

    /// The name used in event lines and configuration.
    pub fn name(self) -> &'static str {
        match self {
            Detector::BruteForce => "brute_force",
            Detector::CredentialStuffing => "credential_stuffing",
            Detector::AccountAggregation => "account_aggregation",
            Detector::AccountAttacked => "account_attacked",
            Detector::LowSuccess => "low_success",
            Detector::Volume => "volume",
            Detector::PacketFlood => "packet_flood",
            Detector::PacketRate => "packet_rate",
            Detector::EndpointRate => "endpoint_rate",
            Detector::Enumeration => "enumeration",
            Detector::Breadth => "breadth",
            Detector::ContentDiscovery => "content_discovery",
            Detector::BotTiming => "bot_timing",
            Detector::Campaign => "campaign",
            Detector::CampaignMember => "campaign_member",
            Detector::CampaignPrefix => "campaign_prefix",
            Detector::MarkedClient => "marked_client",
            Detector::SessionShared => "session_shared",
            Detector::SessionRotation => "session_rotation",
            Detector::FingerprintRotation => "fingerprint_rotation",
            Detector::FingerprintSurge => "fingerprint_surge",
            Detector::ShortLived => "short_lived",
            Detector::OffHours => "off_hours",
            Detector::UnseenRoute => "unseen_route",
            Detector::Undocumented => "undocumented",
        }
    }

    /// What a finding of this detector may lead to at most (the policy decides).
    pub fn strength(self) -> Strength {
        match self {
            Detector::BruteForce
            | Detector::CredentialStuffing
            | Detector::LowSuccess
            | Detector::Volume
            | Detector::PacketFlood
            | Detector::Enumeration
            | Detector::ContentDiscovery
            | Detector::CampaignMember
            | Detector::CampaignPrefix
            | Detector::MarkedClient => Strength::Block,
            Detector::Campaign
            | Detector::SessionShared
            | Detector::SessionRotation
            | Detector::FingerprintRotation
            | Detector::FingerprintSurge
            | Detector::AccountAggregation
            | Detector::AccountAttacked
            | Detector::EndpointRate
            | Detector::PacketRate
            | Detector::Breadth => Strength::Alert,
            Detector::BotTiming
            | Detector::ShortLived
            | Detector::OffHours
            | Detector::UnseenRoute
            | Detector::Undocumented => Strength::Context,
        }
    }
}

impl fmt::Display for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How far a detector's finding may go on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strength {
    /// Raises the score of other findings; never an alert or a block by itself.
    Context,
    /// An alert: the behaviour is worth a look, but blocking its entity would hurt others (an
    /// account attacked from many sources, an endpoint's rate).
    Alert,
    /// Enough to block the entity, subject to the policy's safety rules.
    Block,
}

/// What a finding is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Entity {
    /// A client address (after trusted-proxy resolution).
    Source(IpAddr),
    /// A client prefix (/24 for IPv4, /64 and /48 for IPv6).
    Prefix(IpNet),
    /// An account name, as transactions carry it.
    Account(String),
    /// A session, as its keyed hash.
    Session(String),
    /// An endpoint: method, host and route template.
    Endpoint(String),
    /// A campaign: its request fingerprint and the endpoint it targets.
    Campaign(String),
    /// All traffic.
    Global,
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entity::Source(ip) => write!(f, "source {ip}"),
            Entity::Prefix(net) => write!(f, "prefix {net}"),
            Entity::Account(a) => write!(f, "account {a:?}"),
            Entity::Session(s) => write!(f, "session {s}"),
            Entity::Endpoint(e) => write!(f, "endpoint {e}"),
            Entity::Campaign(c) => write!(f, "campaign {c}"),
            Entity::Global => f.write_str("global"),
        }
    }
}

/// One measure behind a finding: its value and the threshold it was held to.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Measure {
    /// What was measured, e.g. `failed_logins`.
    pub name: &'static str,
    /// Its value.
    pub value: f64,
    /// The threshold.
    pub threshold: f64,
    /// Which side of the threshold crosses.
    pub bound: Bound,
}

/// Which side of its threshold a measure must be on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// `value >= threshold` (counts, rates).
    AtLeast,
    /// `value <= threshold` (shares that must be low, dispersion).
    AtMost,
}

impl Measure {
    /// A measure that crosses at `value >= threshold`.
    pub(crate) fn at_least(name: &'static str, value: f64, threshold: f64) -> Self {
        Self {
            name,
            value,
            threshold,
            bound: Bound::AtLeast,
        }
    }

    /// A measure that crosses at `value <= threshold`.
    pub(crate) fn at_most(name: &'static str, value: f64, threshold: f64) -> Self {
        Self {
            name,
            value,
            threshold,
            bound: Bound::AtMost,
        }
    }

    /// Whether the measure is on the crossing side of its threshold.
    pub fn crossed(&self) -> bool {
        match self.bound {
            Bound::AtLeast => self.value >= self.threshold,
            Bound::AtMost => self.value <= self.threshold,
        }
    }
}

/// A request kept as evidence: enough to recognise it, nothing secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SampleRequest {
    /// Request time, Unix nanoseconds.
    pub ts_ns: u64,
    /// Method.
    pub method: Cow<'static, str>,
    /// Path, without query or `;` parameters.
    pub path: String,
    /// Response status, if one was seen.
    pub status: Option<u16>,
    /// The account the request acted for.
    pub account: Option<String>,
    /// Login outcome, on a login route.
    pub login: Option<LoginOutcome>,
}

impl SampleRequest {
    /// The sample of a transaction.
    pub fn of(tx: &Transaction) -> Self {
        Self {
            ts_ns: tx.ts_ns,
            method: tx.method.clone(),
            path: tx.path.clone(),
            status: tx.status,
            account: tx.account.clone(),
            login: tx.login,
        }
    }

    /// Rewrites this sample from `tx`, reusing its buffers.
    pub(crate) fn refill(&mut self, tx: &Transaction) {
        self.ts_ns = tx.ts_ns;
        self.method.clone_from(&tx.method);
        self.path.clear();
        self.path.push_str(&tx.path);
        self.status = tx.status;
        self.account.clone_from(&tx.account);
        self.login = tx.login;
    }
}

/// One TCP connection, as the kernel sees it: its client side (for a connection from a proxy,
/// the proxy's address and port) and its server side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Flow {
    /// Client side.
    pub client: SocketAddr,
    /// Server side.
    pub server: SocketAddr,
}

/// A client shape (request and transport fingerprint, keyed: `Detection::client_key`) whose
/// logins from an address shared with users in good standing mostly failed: the address's
/// connections that carry it are the attacker's (`detect/shared.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Mark {
    /// The shape's key, written in hex.
    #[serde(serialize_with = "hex_u64")]
    pub shape: u64,
    /// Its failed logins at the address (decayed).
    pub failed: f64,
    /// Its successful logins there.
    pub ok: f64,
}

/// A key as 16 hex digits.
#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "the signature serde's `serialize_with` calls"
)]
fn hex_u64<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{v:016x}"))
}

/// The standing of a source when a finding about it was made: what the policy's safety rules
/// need, so that the policy does not reach back into the detectors' state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Standing {
    /// The source completed a TCP handshake and sent a request (it owns its address: a
    /// spoofed packet cannot get it blocked).
    pub verified: bool,
    /// How its latest request's address was learned from a trusted proxy, if it was: its
    /// address is then not the TCP peer's.
    pub proxy: Option<ProxyVia>,
    /// Requests recently (a decayed count).
    pub requests: f64,
    /// Share of its answered requests that succeeded (2xx and 3xx).
    pub success_share: f64,
    /// Distinct sessions that were answered successfully, recently.
    pub good_sessions: f64,
    /// Distinct accounts that logged in successfully, recently.
    pub good_accounts: f64,
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// When it was made, Unix nanoseconds (the time of the event that crossed the threshold).
    pub at_ns: u64,
    /// Which rule.
    pub detector: Detector,
    /// About whom.
    pub entity: Entity,
    /// How far over its threshold: 1.0 at the threshold, more above it.
    pub score: f64,
    /// The measures that crossed, and the thresholds.
    pub measures: Vec<Measure>,
    /// A few recent requests of the entity.
    pub samples: Vec<SampleRequest>,
    /// Sources involved, for findings about accounts and campaigns (bounded); for a campaign's
    /// prefix, its sources in good standing, which a block of the prefix spares.
    pub sources: Vec<IpAddr>,
    /// The entity's recent connections through a trusted PROXY protocol proxy (one client per
    /// connection), which can be blocked one by one without blocking the proxy.
    pub flows: Vec<Flow>,
    /// The entity's standing, for findings about a source or prefix.
    pub standing: Option<Standing>,
    /// For a source shared between an attacker and users in good standing, the client shapes
    /// that mark the attacker's connections (empty otherwise).
    pub marks: Vec<Mark>,
}

impl Finding {
    /// A finding with no samples, sources or standing yet.
    pub(crate) fn new(
        at_ns: u64,
        detector: Detector,
        entity: Entity,
        measures: Vec<Measure>,
    ) -> Self {
        // The score is the least ratio of a count to its threshold: how far the weakest of the
        // measures that had to cross is over its bound. Shares only gate.
        let score = measures
            .iter()
            .filter(|m| m.bound == Bound::AtLeast && m.threshold > 0.0)
            .map(|m| m.value / m.threshold)
            .fold(f64::INFINITY, f64::min);
        Self {
            at_ns,
            detector,
            entity,
            score: if score.is_finite() { score } else { 1.0 },
            measures,
            samples: Vec::new(),
            sources: Vec::new(),
            flows: Vec::new(),
            standing: None,
            marks: Vec::new(),
        }
    }

    /// A one-line summary for logs: detector, entity and the measures.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let mut s = format!(
            "{} on {} (score {:.2}):",
            self.detector, self.entity, self.score
        );
        for m in &self.measures {
            let _ = write!(s, " {}={:.3} (threshold {})", m.name, m.value, m.threshold);
        }
        s
    }
}
