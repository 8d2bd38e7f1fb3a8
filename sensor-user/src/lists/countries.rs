//! Denied countries from a MaxMind-format database (GeoLite2 or GeoIP2 Country or City, or any
//! database whose records carry `country.iso_code`): every network of a denied country becomes
//! a list entry, blocked in the kernel's prefix maps like any list's.

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

/// The networks of the database `db` (its bytes; `origin` names it in notes and errors) whose
/// country is one of `deny` (ISO codes, any case), as list entries noted `country CC origin`.
pub fn denied(
    db: Vec<u8>,
    origin: &str,
    deny: &[String],
) -> Result<BTreeMap<IpNet, String>, String> {
    let mut out = BTreeMap::new();
    if deny.is_empty() {
        return Ok(out);
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
        if !deny.iter().any(|d| d.eq_ignore_ascii_case(&code)) {
            continue;
        }
        let network = lookup.network().map_err(|e| format!("{origin}: {e}"))?;
        let net = IpNet::new(network.network(), network.prefix())
            .map_err(|e| format!("{origin}: {network}: {e}"))?
            .trunc();
        let text = format!("country {} {origin}", code.to_ascii_uppercase());
        out.insert(net, super::fit_note(text));
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
        let got = denied(db.clone(), "test.mmdb", &["xa".to_owned()]).expect("read");
        let want: BTreeMap<IpNet, String> = test_mmdb::expected(&networks)
            .into_iter()
            .filter(|(_, c)| c == "XA")
            .map(|(n, _)| (n, "country XA test.mmdb".to_owned()))
            .collect();
        assert_eq!(got, want);
        assert!(denied(db, "test.mmdb", &[]).expect("none").is_empty());
        let err = denied(b"not a database".to_vec(), "bad.mmdb", &["XA".to_owned()])
            .expect_err("garbage");
        assert!(err.starts_with("bad.mmdb: "), "{err}");
    }
}
