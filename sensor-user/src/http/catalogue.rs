//! The API inventory: every endpoint (method, host, route template) seen, with a count, the
//! mix of status classes and when it was first and last seen.
//!
//! Recording a transaction hashes its key once and allocates only for a new endpoint. The
//! number of endpoints is capped so that random paths cannot grow it without bound; records
//! for new endpoints beyond the cap are counted as dropped.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use serde::Serialize;

use super::transaction::{Flag, Transaction};
use crate::keyed_hash::{KeyedState, keyed_state};

/// Default cap on the number of endpoints.
pub const DEFAULT_MAX_ENDPOINTS: usize = 10_000;

/// Counts of responses per status class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatusMix {
    /// 1xx (a final 101).
    pub informational: u64,
    /// 2xx.
    pub success: u64,
    /// 3xx.
    pub redirect: u64,
    /// 4xx.
    pub client_error: u64,
    /// 5xx.
    pub server_error: u64,
    /// No response seen, or a status outside 100..=599.
    pub none: u64,
}

impl StatusMix {
    fn record(&mut self, status: Option<u16>) {
        let slot = match status {
            Some(100..=199) => &mut self.informational,
            Some(200..=299) => &mut self.success,
            Some(300..=399) => &mut self.redirect,
            Some(400..=499) => &mut self.client_error,
            Some(500..=599) => &mut self.server_error,
            _ => &mut self.none,
        };
        *slot += 1;
    }
}

/// One endpoint of the inventory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointStats {
    /// Request method.
    pub method: String,
    /// Host, when the requests carried one.
    pub host: Option<String>,
    /// Route template.
    pub route: String,
    /// Transactions recorded.
    pub count: u64,
    /// Status classes of their responses.
    pub statuses: StatusMix,
    /// Time of the first transaction, ns since the Unix epoch.
    pub first_seen_ns: u64,
    /// Time of the last transaction, ns since the Unix epoch.
    pub last_seen_ns: u64,
}

/// An endpoint and the next endpoint with the same key hash.
#[derive(Clone, Debug)]
struct Slot {
    stats: EndpointStats,
    next: Option<u32>,
}

/// The API inventory, fed with every emitted transaction.
#[derive(Clone, Debug)]
pub struct Catalogue {
    slots: Vec<Slot>,
    index: HashMap<u64, u32, KeyedHash>,
    hasher: KeyedState,
    max: usize,
    dropped: u64,
}

/// Hasher of the index, whose keys are already keyed hash values: hashing them again
/// would only cost time, so they are used as they are.
#[derive(Clone, Copy, Debug, Default)]
struct KeyedHash;

impl BuildHasher for KeyedHash {
    type Hasher = PassThrough;

    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

/// Hasher that returns the `u64` written to it.
#[derive(Clone, Copy, Debug)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `u64` keys; other input is folded in for completeness.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Default for Catalogue {
    fn default() -> Self {
        Catalogue::new()
    }
}

impl Catalogue {
    /// An empty inventory holding up to [`DEFAULT_MAX_ENDPOINTS`] endpoints.
    pub fn new() -> Self {
        Catalogue::with_limit(DEFAULT_MAX_ENDPOINTS)
    }

    /// An empty inventory holding up to `max` endpoints.
    pub fn with_limit(max: usize) -> Self {
        Catalogue {
            slots: Vec::new(),
            index: HashMap::with_hasher(KeyedHash),
            hasher: keyed_state(),
            max,
            dropped: 0,
        }
    }

    /// Counts one transaction. Transactions whose request could not be parsed (no method) are
    /// not endpoints and are skipped.
    pub fn record(&mut self, tx: &Transaction) {
        if tx.method.is_empty() || tx.flags.contains(Flag::InvalidRequest) {
            return;
        }
        let host = tx.host.as_deref();
        let hash = self.key_hash(&tx.method, host, &tx.route);
        let mut cursor = self.index.get(&hash).copied();
        while let Some(i) = cursor {
            let Some(slot) = self.slots.get_mut(i as usize) else {
                break;
            };
            let s = &mut slot.stats;
            if s.method == tx.method && s.host.as_deref() == host && s.route == tx.route {
                s.count += 1;
                s.statuses.record(tx.status);
                s.first_seen_ns = s.first_seen_ns.min(tx.ts_ns);
                s.last_seen_ns = s.last_seen_ns.max(tx.ts_ns);
                return;
            }
            cursor = slot.next;
        }
        if self.slots.len() >= self.max {
            self.dropped += 1;
            return;
        }
        let Ok(id) = u32::try_from(self.slots.len()) else {
            self.dropped += 1;
            return;
        };
        let mut statuses = StatusMix::default();
        statuses.record(tx.status);
        let next = self.index.insert(hash, id);
        self.slots.push(Slot {
            stats: EndpointStats {
                method: tx.method.to_string(),
                host: tx.host.clone(),
                route: tx.route.clone(),
                count: 1,
                statuses,
                first_seen_ns: tx.ts_ns,
                last_seen_ns: tx.ts_ns,
            },
            next,
        });
    }

    /// Every endpoint, sorted by host, route and method.
    pub fn endpoints(&self) -> Vec<EndpointStats> {
        let mut all: Vec<EndpointStats> = self.slots.iter().map(|s| s.stats.clone()).collect();
        all.sort_by(|a, b| (&a.host, &a.route, &a.method).cmp(&(&b.host, &b.route, &b.method)));
        all
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no endpoint was recorded.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Transactions of new endpoints not recorded because the inventory was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn key_hash(&self, method: &str, host: Option<&str>, route: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(method.as_bytes());
        h.write_u8(0xFF);
        match host {
            Some(host) => {
                h.write_u8(1);
                h.write(host.as_bytes());
            }
            None => h.write_u8(0),
        }
        h.write_u8(0xFF);
        h.write(route.as_bytes());
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn tx(
        method: &'static str,
        host: Option<&str>,
        route: &str,
        status: Option<u16>,
        ts: u64,
    ) -> Transaction {
        let addr = "198.51.100.1:1000".parse().expect("addr");
        let mut tx = Transaction::empty(ts, addr, addr);
        tx.method = Cow::Borrowed(method);
        tx.host = host.map(str::to_owned);
        tx.route = route.to_owned();
        tx.status = status;
        tx
    }

    #[test]
    fn aggregates_endpoints() {
        let mut cat = Catalogue::new();
        let records = [
            tx("GET", Some("a"), "/users/{id}", Some(200), 30),
            tx("GET", Some("a"), "/users/{id}", Some(404), 10),
            tx("GET", Some("a"), "/users/{id}", None, 20),
            tx("POST", Some("a"), "/users/{id}", Some(503), 5),
            tx("GET", None, "/users/{id}", Some(301), 7),
            tx("GET", Some("b"), "/", Some(101), 8),
            tx("", None, "", None, 9),
        ];
        for r in &records {
            cat.record(r);
        }
        let mut invalid = tx("GET", Some("a"), "/x", None, 1);
        invalid.flags.insert(Flag::InvalidRequest);
        cat.record(&invalid);
        let got = cat.endpoints();
        let summary: Vec<_> = got
            .iter()
            .map(|e| {
                (
                    e.method.as_str(),
                    e.host.as_deref(),
                    e.route.as_str(),
                    e.count,
                    e.first_seen_ns,
                    e.last_seen_ns,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("GET", None, "/users/{id}", 1, 7, 7),
                ("GET", Some("a"), "/users/{id}", 3, 10, 30),
                ("POST", Some("a"), "/users/{id}", 1, 5, 5),
                ("GET", Some("b"), "/", 1, 8, 8),
            ]
        );
        let get_a = got
            .iter()
            .find(|e| e.host.as_deref() == Some("a") && e.method == "GET")
            .expect("GET a");
        assert_eq!(
            get_a.statuses,
            StatusMix {
                success: 1,
                client_error: 1,
                none: 1,
                ..StatusMix::default()
            }
        );
        assert_eq!(cat.len(), 4);
    }

    #[test]
    fn caps_endpoints() {
        let mut cat = Catalogue::with_limit(2);
        for (i, route) in ["/a", "/b", "/c", "/a", "/d"].iter().enumerate() {
            cat.record(&tx("GET", None, route, Some(200), i as u64));
        }
        assert_eq!(cat.len(), 2);
        assert_eq!(cat.dropped(), 2);
        let counts: Vec<_> = cat
            .endpoints()
            .iter()
            .map(|e| (e.route.clone(), e.count))
            .collect();
        assert_eq!(counts, [("/a".to_owned(), 2), ("/b".to_owned(), 1)]);
    }

    #[test]
    fn serializes() {
        let mut cat = Catalogue::new();
        cat.record(&tx("GET", Some("h"), "/x", Some(200), 1));
        let json = serde_json::to_string(&cat.endpoints()).expect("serialize");
        assert!(json.contains(r#""route":"/x""#), "{json}");
        assert!(json.contains(r#""success":1"#), "{json}");
    }
}
