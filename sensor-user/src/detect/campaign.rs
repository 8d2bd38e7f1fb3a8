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
//!
//! When enough members share a prefix, the campaign escalates to it (an IPv4 /24, an IPv6 /64,
//! or an IPv6 /48 when they spread over several /64s of it): the prefix's next sources are
//! refused before they send anything, and its sources in good standing are spared.

use std::net::IpAddr;

use ipnet::IpNet;

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

/// The prefix a campaign escalates to when `joined` is one of its `members`: the /24 of an
/// IPv4 address, the /64 of an IPv6 one, or its /48 when the members there spread over
/// several /64s, if at least `min` members are in it.
pub(crate) fn escalation(members: &[IpAddr], joined: IpAddr, min: usize) -> Option<IpNet> {
    let net = |len_v4: u8, len_v6: u8| {
        let ip = joined.to_canonical();
        let len = if ip.is_ipv4() { len_v4 } else { len_v6 };
        IpNet::new(ip, len).ok().map(|n| n.trunc())
    };
    let count = |n: &IpNet| {
        members
            .iter()
            .filter(|m| n.contains(&m.to_canonical()))
            .count()
    };
    let narrow = net(24, 64)?;
    if count(&narrow) >= min.max(1) {
        return Some(narrow);
    }
    let wide = net(24, 48).filter(|w| w.prefix_len() == 48)?;
    (count(&wide) >= min.max(1)).then_some(wide)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().expect("ip")).collect()
    }

    #[test]
    fn escalation_needs_enough_members_in_one_prefix() {
        let v4 = ips(&[
            "198.51.100.1",
            "198.51.100.2",
            "198.51.100.3",
            "203.0.113.4",
        ]);
        let joined: IpAddr = "198.51.100.9".parse().expect("ip");
        assert_eq!(escalation(&v4, joined, 4), None);
        let mut more = v4.clone();
        more.push(joined);
        assert_eq!(
            escalation(&more, joined, 4),
            Some("198.51.100.0/24".parse().expect("net"))
        );
        // IPv6: one /64 first; several /64s of one /48 escalate to the /48.
        let one64 = ips(&["2001:db8:1:2::a", "2001:db8:1:2::b", "2001:db8:1:2::c"]);
        let j: IpAddr = "2001:db8:1:2::a".parse().expect("ip");
        assert_eq!(
            escalation(&one64, j, 3),
            Some("2001:db8:1:2::/64".parse().expect("net"))
        );
        let spread = ips(&["2001:db8:1:2::a", "2001:db8:1:3::a", "2001:db8:1:4::a"]);
        assert_eq!(
            escalation(&spread, j, 3),
            Some("2001:db8:1::/48".parse().expect("net"))
        );
        assert_eq!(escalation(&spread, j, 4), None);
    }
}
