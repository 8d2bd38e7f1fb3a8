//! Countries from a MaxMind-format database (GeoLite2 or GeoIP2 Country or City, or any
//! database whose records carry `country.iso_code`): every network of a denied country, or of
//! any country but the allowed ones, becomes a list entry, blocked in the kernel's prefix maps
//! like any list's. Adjacent networks of one country are merged first (a database splits a
//! country's space into many more networks than it needs).

use std::collections::BTreeMap;

use ipnet::IpNet;
use maxminddb::{Reader, WithinOptions};

/// The part of a record read here.
#[derive(serde::Deserialize)]
struct Record {
    /// The country.
    #[serde(default)]
    country: Option<Country>,
}

/// A record's country.
#[derive(serde::Deserialize)]
struct Country {
    /// ISO 3166-1 alpha-2 code.
    #[serde(default)]
    iso_code: Option<String>,
}

/// Which countries' networks are blocked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// These (ISO codes, any case).
    Deny(Vec<String>),
    /// Every country but these.
    AllowOnly(Vec<String>),
}

impl Rule {
    /// Whether a network of country `code` is blocked.
    fn blocks(&self, code: &str) -> bool {
        match self {
            Rule::Deny(codes) => codes.iter().any(|d| d.eq_ignore_ascii_case(code)),
            Rule::AllowOnly(codes) => !codes.iter().any(|a| a.eq_ignore_ascii_case(code)),
        }
    }
}

/// The networks of the database `db` (its bytes; `origin` names it in notes and errors) whose
/// country `rule` blocks, merged per country, as list entries noted `country CC origin`.
pub fn blocked(db: Vec<u8>, origin: &str, rule: &Rule) -> Result<BTreeMap<IpNet, String>, String> {
    let mut by_country: BTreeMap<String, Vec<IpNet>> = BTreeMap::new();
    if matches!(rule, Rule::Deny(codes) if codes.is_empty()) {
        return Ok(BTreeMap::new());
    }
    let reader = Reader::from_source(db).map_err(|e| format!("{origin}: {e}"))?;
    for item in reader
        .networks(WithinOptions::default())
        .map_err(|e| format!("{origin}: {e}"))?
    {
        let lookup = item.map_err(|e| format!("{origin}: {e}"))?;
        let record: Option<Record> = lookup.decode().map_err(|e| format!("{origin}: {e}"))?;
        let Some(code) = record.and_then(|r| r.country).and_then(|c| c.iso_code) else {
            continue;
        };
        if !rule.blocks(&code) {
            continue;
        }
        let network = lookup.network().map_err(|e| format!("{origin}: {e}"))?;
        let net = IpNet::new(network.network(), network.prefix())
            .map_err(|e| format!("{origin}: {network}: {e}"))?
            .trunc();
        by_country
            .entry(code.to_ascii_uppercase())
            .or_default()
            .push(net);
    }
    let mut out = BTreeMap::new();
    for (code, nets) in by_country {
        let text = super::fit_note(format!("country {code} {origin}"));
        for net in IpNet::aggregate(&nets) {
            out.insert(net, text.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lists::test_mmdb;

    fn net(s: &str) -> IpNet {
        s.parse().expect("net")
    }

    #[test]
    fn the_networks_of_denied_countries_are_listed() {
        let networks = [
            (net("198.51.100.0/25"), "XA"),
            (net("198.51.100.128/25"), "XB"),
            (net("203.0.113.0/24"), "XA"),
            (net("2001:db8:aa::/48"), "XA"),
            (net("2001:db8:bb::/48"), "XB"),
        ];
        let db = test_mmdb::write(&networks);
        let deny = Rule::Deny(vec!["xa".to_owned()]);
        let got = blocked(db.clone(), "test.mmdb", &deny).expect("read");
        let want: BTreeMap<IpNet, String> = test_mmdb::expected(&networks)
            .into_iter()
            .filter(|(_, c)| c == "XA")
            .map(|(n, _)| (n, "country XA test.mmdb".to_owned()))
            .collect();
        assert_eq!(got, want);
        assert!(
            blocked(db, "test.mmdb", &Rule::Deny(Vec::new()))
                .expect("none")
                .is_empty()
        );
        let err = blocked(b"not a database".to_vec(), "bad.mmdb", &deny).expect_err("garbage");
        assert!(err.starts_with("bad.mmdb: "), "{err}");
    }

    #[test]
    fn every_country_but_the_allowed_ones_is_listed_merged() {
        let networks = [
            (net("198.51.100.0/25"), "XA"),
            (net("198.51.100.128/26"), "XB"),
            (net("198.51.100.192/26"), "XB"),
            (net("203.0.113.0/24"), "XC"),
            (net("2001:db8:aa::/48"), "XA"),
            (net("2001:db8:bb::/48"), "XB"),
        ];
        let db = test_mmdb::write(&networks);
        let got = blocked(db, "test.mmdb", &Rule::AllowOnly(vec!["XA".to_owned()])).expect("read");
        let want: BTreeMap<IpNet, String> = [
            ("198.51.100.128/25", "XB"),
            ("203.0.113.0/24", "XC"),
            ("2001:db8:bb::/48", "XB"),
        ]
        .into_iter()
        .map(|(n, c)| (net(n), format!("country {c} test.mmdb")))
        .collect();
        assert_eq!(got, want, "XB's two /26s merged into one /25");
    }
}
