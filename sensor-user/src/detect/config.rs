//! Thresholds of the detectors and bounds of their state: the `[detect]` table of the
//! configuration. Every key has a working default, so the table and each of its keys may be
//! left out; unknown keys are errors.

use serde::Deserialize;

use super::baseline::BaselineConfig;

/// The `[detect]` table.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    /// Whether detection runs at all (transactions are still logged when off).
    pub enabled: bool,
    /// Bounds on tracked entities; beyond them the least recently active one is evicted (and
    /// counted).
    pub limits: StateLimits,
    /// A detector reports the same entity again at most this often, in seconds, while the
    /// behaviour goes on (so that decisions can be kept alive without a finding per request).
    pub repeat_s: u64,
    /// Brute force, credential stuffing and account aggregation.
    pub brute_force: BruteForceConfig,
    /// Low success rate.
    pub low_success: LowSuccessConfig,
    /// Volumetric detectors.
    pub volume: VolumeConfig,
    /// Scraping and enumeration.
    pub scraping: ScrapingConfig,
    /// Bot timing.
    pub timing: TimingConfig,
    /// Campaigns across rotating addresses.
    pub campaign: CampaignConfig,
    /// Sessions shared between addresses, and sources rotating sessions.
    pub sessions: SessionConfig,
    /// Request shapes rotating within a source, and surges of new ones on an endpoint.
    pub shapes: ShapeConfig,
    /// Addresses shared between an attacker and other users: what marks the attacker's
    /// connections.
    pub shared: SharedConfig,
    /// Context that raises a decision's score but never decides alone.
    pub context: ContextConfig,
    /// Learned baselines (by hour of week).
    pub baseline: BaselineConfig,
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            limits: StateLimits::default(),
            repeat_s: 30,
            brute_force: BruteForceConfig::default(),
            low_success: LowSuccessConfig::default(),
            volume: VolumeConfig::default(),
            scraping: ScrapingConfig::default(),
            timing: TimingConfig::default(),
            campaign: CampaignConfig::default(),
            sessions: SessionConfig::default(),
            shapes: ShapeConfig::default(),
            shared: SharedConfig::default(),
            context: ContextConfig::default(),
            baseline: BaselineConfig::default(),
        }
    }
}

/// Bounds on the detectors' state.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StateLimits {
    /// Source addresses tracked.
    pub sources: usize,
    /// Source prefixes tracked (/24, /64 and /48 together; a prefix gets an entry once a
    /// second source is seen in it).
    pub prefixes: usize,
    /// Accounts tracked.
    pub accounts: usize,
    /// Sessions tracked (a session gets an entry once a second source uses it).
    pub sessions: usize,
    /// Endpoints tracked.
    pub endpoints: usize,
    /// Sources whose detailed history (timing, samples, identifiers walked) is kept; a source
    /// gets one after `detail_after` requests.
    pub detailed_sources: usize,
    /// Requests after which a source's detailed history is kept (at most 255).
    pub detail_after: u8,
    /// Sources whose distinct accounts and sessions are counted (sources that log in, and
    /// busy sources that hold a session).
    pub identified_sources: usize,
    /// Campaign keys tracked (a request fingerprint on a login endpoint each).
    pub campaigns: usize,
}

impl Default for StateLimits {
    fn default() -> Self {
        Self {
            sources: 1_000_000,
            prefixes: 200_000,
            accounts: 200_000,
            sessions: 200_000,
            endpoints: 10_000,
            detailed_sources: 50_000,
            detail_after: 4,
            identified_sources: 200_000,
            campaigns: 10_000,
        }
    }
}

/// Failed logins (brute force, credential stuffing, account aggregation).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BruteForceConfig {
    /// Half-life of the fast failure count, in seconds.
    pub half_life_s: u64,
    /// Failed logins (decayed with `half_life_s`) from one source that make a brute force...
    pub min_failures: f64,
    /// ... when at least this share of the source's logins failed (a user who mistypes and then
    /// logs in, or an office of many users, stays below it).
    pub min_failure_share: f64,
    /// Half-life of the slow failure count, in seconds: a slow brute force below the fast
    /// threshold still adds up here.
    pub slow_half_life_s: u64,
    /// Failed logins (decayed with `slow_half_life_s`) from one source that make a slow brute
    /// force (with the same failure share).
    pub slow_min_failures: f64,
    /// Failed logins (fast count) from one prefix that make a brute force on the prefix (an
    /// alert: the sources in it that crossed on their own are blocked one by one).
    pub prefix_min_failures: f64,
    /// Distinct accounts that failed from one source: credential stuffing.
    pub stuffing_min_accounts: f64,
    /// Distinct accounts that logged in successfully from one source: account aggregation
    /// (an alert: an office behind one address looks the same).
    pub aggregation_min_accounts: f64,
    /// Distinct sources one account failed from: an account under attack (an alert listing
    /// the sources; never a block of every address that failed once).
    pub account_min_sources: f64,
}

impl Default for BruteForceConfig {
    fn default() -> Self {
        Self {
            half_life_s: 60,
            min_failures: 5.0,
            min_failure_share: 0.8,
            slow_half_life_s: 3600,
            slow_min_failures: 20.0,
            prefix_min_failures: 30.0,
            stuffing_min_accounts: 5.0,
            aggregation_min_accounts: 20.0,
            account_min_sources: 10.0,
        }
    }
}

/// Low success rate.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LowSuccessConfig {
    /// Half-life of the answered-request counts, in seconds.
    pub half_life_s: u64,
    /// Answered requests (decayed) a source needs before its success share is judged.
    pub min_requests: f64,
    /// The success share (2xx and 3xx of answered requests) at or below which a source is
    /// flagged. The source documents: attackers under 5 %, normal clients above 85 %.
    pub max_success_share: f64,
}

impl Default for LowSuccessConfig {
    fn default() -> Self {
        Self {
            half_life_s: 300,
            min_requests: 20.0,
            max_success_share: 0.05,
        }
    }
}

/// Volumetric detectors.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct VolumeConfig {
    /// Half-life of the rate estimates, in seconds.
    pub half_life_s: u64,
    /// Requests per second from one source above which it is over its ceiling.
    pub source_ceiling_rps: f64,
    /// Requests per second from one prefix above which it is over its ceiling.
    pub prefix_ceiling_rps: f64,
    /// A prefix over its learned hour-of-week baseline by this factor is over it too.
    pub baseline_factor: f64,
    /// How long, in seconds, a source or prefix must stay over to be reported (a burst is not).
    pub sustain_s: u64,
    /// SYNs per second from one source that, with at most `flood_max_requests_share` of them
    /// turning into requests, make a flood.
    pub syn_ceiling_rps: f64,
    /// The share of a flooding source's SYNs (or packets) that became requests, at most.
    pub flood_max_requests_share: f64,
    /// Packets per second from one source (the kernel's counters, live) that, with at most
    /// `flood_max_requests_share` requests per packet, make a packet-rate alert.
    pub packet_ceiling_pps: f64,
    /// An endpoint over its hour-of-week baseline by this factor is reported (an alert).
    pub endpoint_factor: f64,
}

impl Default for VolumeConfig {
    fn default() -> Self {
        Self {
            half_life_s: 10,
            source_ceiling_rps: 100.0,
            prefix_ceiling_rps: 500.0,
            baseline_factor: 10.0,
            sustain_s: 10,
            syn_ceiling_rps: 50.0,
            flood_max_requests_share: 0.1,
            packet_ceiling_pps: 10_000.0,
            endpoint_factor: 5.0,
        }
    }
}

/// Scraping and enumeration.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScrapingConfig {
    /// Consecutive requests on one route whose identifier moves by 1 to `max_step`...
    pub sequential_run: u32,
    /// ... the largest step still counted as sequential ...
    pub max_step: u64,
    /// ... within this many seconds (a slow, legitimate crawler takes longer).
    pub sequential_within_s: u64,
    /// Window of the distinct-path count, in seconds.
    pub window_s: u64,
    /// Distinct paths from one source within one to two windows: unusual breadth (an alert).
    pub breadth_paths: f64,
    /// Answered requests (decayed, `low_success.half_life_s`) before the 404 share is judged.
    pub discovery_min_requests: f64,
    /// The share of 404 answers at or above which a source is discovering content.
    pub discovery_not_found_share: f64,
}

impl Default for ScrapingConfig {
    fn default() -> Self {
        Self {
            sequential_run: 20,
            max_step: 2,
            sequential_within_s: 60,
            window_s: 300,
            breadth_paths: 300.0,
            discovery_min_requests: 30.0,
            discovery_not_found_share: 0.5,
        }
    }
}

/// Bot timing.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TimingConfig {
    /// Intervals between a source's requests needed before their regularity is judged.
    pub min_samples: usize,
    /// The robust dispersion (median absolute deviation over the median interval) at or below
    /// which timing is too regular to be human.
    pub max_dispersion: f64,
}

impl Default for TimingConfig {
    fn default() -> Self {
        Self {
            min_samples: 16,
            max_dispersion: 0.05,
        }
    }
}

/// Campaigns: many sources sharing a request fingerprint, failing to log in on one endpoint.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CampaignConfig {
    /// Distinct sources that failed to log in with one fingerprint on one endpoint within one
    /// to two windows of `scraping.window_s` ...
    pub min_sources: f64,
    /// ... while at least this share of that fingerprint's logins there failed (decayed with
    /// `half_life_s`): a campaign.
    pub min_failure_share: f64,
    /// Half-life of a campaign's login counts, in seconds.
    pub half_life_s: u64,
    /// A campaign stays active this long after its latest failing source, in seconds: while it
    /// is, a new source that fails with its fingerprint on its endpoint joins it at once.
    pub active_s: u64,
    /// Members of one campaign in one prefix (an IPv4 /24, an IPv6 /64, or an IPv6 /48 over
    /// several /64s) that escalate it to the prefix, so that the prefix's next sources are
    /// refused before their first attempt; its sources in good standing are spared.
    pub prefix_members: usize,
}

impl Default for CampaignConfig {
    fn default() -> Self {
        Self {
            min_sources: 10.0,
            min_failure_share: 0.8,
            half_life_s: 300,
            active_s: 600,
            prefix_members: 5,
        }
    }
}

/// Sessions shared between addresses, and sources rotating sessions (alerts).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Distinct addresses one session is used from within one to two windows of
    /// `scraping.window_s` that make it shared (a user who switches networks uses two or three).
    pub shared_min_sources: f64,
    /// Distinct sessions a busy source presents within one to two windows ...
    pub rotation_min_sessions: f64,
    /// ... that make it a session rotator when there are at least this many per answered
    /// request (an office behind one address has many sessions, each used many times).
    pub rotation_min_per_request: f64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            shared_min_sources: 5.0,
            rotation_min_sessions: 20.0,
            rotation_min_per_request: 0.5,
        }
    }
}

/// Addresses shared between an attacker and other users (NAT, CGNAT): a client shape (request
/// and transport fingerprint) whose logins at an address mostly fail marks the attacker's
/// connections there, when the address's other shapes log in mostly successfully.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SharedConfig {
    /// Failed logins of one shape at the address (decayed with
    /// `brute_force.slow_half_life_s`) ...
    pub mark_min_failures: f64,
    /// ... and at least this share of that shape's logins there failed: it is a mark ...
    pub mark_min_failure_share: f64,
    /// ... when the address's other shapes logged in successfully at least this many times
    /// (decayed alike) ...
    pub others_min_logins: f64,
    /// ... with at least this share of their logins successful.
    pub others_min_success_share: f64,
}

impl Default for SharedConfig {
    fn default() -> Self {
        Self {
            mark_min_failures: 5.0,
            mark_min_failure_share: 0.9,
            others_min_logins: 2.0,
            others_min_success_share: 0.5,
        }
    }
}

/// Request shapes (the parts of the request fingerprint, with the whole user agent): a source
/// that changes its shape request after request, and an endpoint that sees a surge of new ones
/// (alerts).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ShapeConfig {
    /// Distinct shapes from one busy source within one to two windows of `scraping.window_s`
    /// (a browser update makes two) ...
    pub rotation_min_shapes: f64,
    /// ... at least this many per answered request: the source rotates its fingerprint.
    pub rotation_min_per_request: f64,
    /// Distinct shapes on one endpoint in the current window that, at `surge_factor` times
    /// those of the window before, make a surge of new fingerprints.
    pub surge_min_shapes: f64,
    /// See `surge_min_shapes`.
    pub surge_factor: f64,
}

impl Default for ShapeConfig {
    fn default() -> Self {
        Self {
            rotation_min_shapes: 5.0,
            rotation_min_per_request: 0.3,
            surge_min_shapes: 100.0,
            surge_factor: 5.0,
        }
    }
}

/// Context reported with a source's findings: it raises the decision's score and is listed
/// in it, and never decides anything alone.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ContextConfig {
    /// A busy source whose history started less than this many seconds ago is short-lived.
    pub short_lived_s: u64,
    /// An OpenAPI 3 document (YAML, or JSON when its name ends in `.json`): a request to an
    /// operation it does not declare is context. Read when the configuration is loaded.
    pub openapi: Option<std::path::PathBuf>,
    /// The operations of `openapi`, as the loader read them.
    #[serde(skip)]
    pub api_spec: Option<std::sync::Arc<super::api_spec::ApiSpec>>,
}

impl Default for ContextConfig {
    fn default() -> Self {
        Self {
            short_lived_s: 120,
            openapi: None,
            api_spec: None,
        }
    }
}
