//! Campaigns across rotating addresses: many sources, each maybe below every per-source
//! threshold (one to three attempts from each of hundreds of addresses), that share a request
//! fingerprint (`http::fingerprint`) and fail to log in on one endpoint. Addresses rotate; the
//! program sending the requests, and so its fingerprint, mostly does not.
//!
//! A campaign key is (fingerprint, login endpoint). Its state counts the logins there (decayed)
//! and the distinct sources that failed (over a sliding window), and keeps the latest failing
//! sources as its members. It becomes a campaign when enough distinct sources failed and the
//! fingerprint's logins there mostly failed: benign users of a common browser on the same
//! login form mostly succeed, so their failures stay a small share. From then on, for
//! `active_s` after its latest member, every source that fails with that fingerprint there
//! joins it on its first failure. A member that logged in successfully is spared.

use std::net::IpAddr;

use super::config::CampaignConfig;
use super::counters::{Decay, Distinct, share};
use super::finding::Measure;
use super::state::Outcome;

/// Members a campaign keeps (the latest failing sources).
pub(crate) const MEMBERS: usize = 256;

/// One campaign key's state.
#[derive(Clone, Debug, Default)]
pub(crate) struct CampaignState {
    /// The fingerprint and the endpoint, for findings.
    pub(crate) name: String,
    /// Latest login counted, Unix ns.
    pub(crate) last_ns: u64,
    /// Window number of `failing`.
    pub(crate) epoch: u32,
    /// Failed logins (campaign half-life).
    pub(crate) failed: f32,
    /// Successful logins (campaign half-life).
    pub(crate) ok: f32,
    /// Distinct sources that failed.
    pub(crate) failing: Distinct<4>,
    /// The latest distinct failing sources, a ring of at most [`MEMBERS`].
    pub(crate) members: Vec<IpAddr>,
    /// Next slot of `members` once it is full.
    next: usize,
    /// Until when it is an active campaign, Unix ns (0: it never was).
    pub(crate) active_until_ns: u64,
}

impl CampaignState {
    /// Adds one login from `source` (hash `source_hash`) with outcome `o`. Returns whether the
    /// source is new among the members (a failure not seen from it recently).
    pub(crate) fn add(
        &mut self,
        decay: Decay,
        now_ns: u64,
        epoch: u32,
        o: Outcome,
        source: IpAddr,
        source_hash: u64,
    ) -> bool {
        if self.last_ns != 0 {
            let f = decay.factor(now_ns.saturating_sub(self.last_ns));
            self.failed *= f;
            self.ok *= f;
        }
        self.last_ns = self.last_ns.max(now_ns);
        let windows = u64::from(epoch.saturating_sub(self.epoch));
        if windows > 0 {
            self.failing.roll(windows);
            self.epoch = epoch;
        }
        if o.login_ok() {
            self.ok += 1.0;
            return false;
        }
        if !o.login_failed() {
            return false;
        }
        self.failed += 1.0;
        self.failing.insert(source_hash);
        if self.members.contains(&source) {
            return false;
        }
        if self.members.len() < MEMBERS {
            self.members.push(source);
        } else if let Some(slot) = self.members.get_mut(self.next) {
            *slot = source;
            self.next = (self.next + 1) % MEMBERS;
        }
        true
    }

    /// Whether it is an active campaign at `now_ns`.
    pub(crate) fn active(&self, now_ns: u64) -> bool {
        now_ns < self.active_until_ns
    }

    /// Bytes on the heap: the name and the members.
    pub(crate) fn heap(&self) -> usize {
        self.name.capacity() + self.members.capacity() * size_of::<IpAddr>()
    }
}

/// The measures of a campaign, if the key is one: enough distinct failing sources, and a
/// failure share of its logins at or above the threshold.
pub(crate) fn check(cfg: &CampaignConfig, c: &CampaignState) -> Option<Vec<Measure>> {
    let sources = c.failing.estimate();
    let failure_share = share(c.failed, c.failed + c.ok);
    (sources >= cfg.min_sources && failure_share >= cfg.min_failure_share).then(|| {
        vec![
            Measure::at_least("failing_sources", sources, cfg.min_sources),
            Measure::at_least("failure_share", failure_share, cfg.min_failure_share),
        ]
    })
}
