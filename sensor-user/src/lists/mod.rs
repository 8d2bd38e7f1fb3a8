//! Reputation lists: files of CIDRs to block (plain, one per line, or Spamhaus DROP format:
//! `1.10.16.0/20 ; SBL256894`), kept in the kernel's block maps while they are listed. Each
//! block's text names its origin (the file, and the list's own reference when it has one), so
//! `apisensor blocks list` shows where it came from. The agent reads the files at start and
//! again when one changes; a file that does not parse is reported and the blocks of its last
//! good version stay.
//!
//! Denied countries, or every country but the allowed ones (`countries`), come from a
//! MaxMind-format database the same way.
//!
//! This module is pure: it parses texts and plans the map writes ([`Plan`]); `cli/run.rs`
//! reads the files and applies the plan with the map writer.

use std::collections::BTreeMap;

use ipnet::IpNet;

pub mod countries;
#[cfg(test)]
pub(crate) mod test_mmdb;

/// The `[lists]` table.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListsConfig {
    /// List files (a relative path is taken from the configuration file's directory).
    pub files: Vec<std::path::PathBuf>,
    /// A MaxMind-format country database (GeoLite2 or GeoIP2 Country or City), for
    /// `deny_countries` or `allow_countries`.
    pub mmdb: Option<std::path::PathBuf>,
    /// ISO 3166-1 alpha-2 codes whose networks (in `mmdb`) are blocked like a list's.
    pub deny_countries: Vec<String>,
    /// ISO 3166-1 alpha-2 codes that alone are served: the networks `mmdb` gives to any other
    /// country are blocked (networks it gives no country stay served). Not with
    /// `deny_countries`.
    pub allow_countries: Vec<String>,
    /// How often the files are checked for changes, in seconds.
    pub refresh_s: u64,
    /// TTL of a list's blocks, in seconds: renewed while listed, so they lapse in the kernel
    /// this long after the agent stops (or the entry leaves its list without an agent).
    pub ttl_s: u64,
}

impl ListsConfig {
    /// The country rule, when the configuration has one.
    pub fn country_rule(&self) -> Option<countries::Rule> {
        if !self.deny_countries.is_empty() {
            Some(countries::Rule::Deny(self.deny_countries.clone()))
        } else if !self.allow_countries.is_empty() {
            Some(countries::Rule::AllowOnly(self.allow_countries.clone()))
        } else {
            None
        }
    }
}

impl Default for ListsConfig {
    fn default() -> Self {
        Self {
            files: Vec::new(),
            mmdb: None,
            deny_countries: Vec::new(),
            allow_countries: Vec::new(),
            refresh_s: 60,
            ttl_s: 3600,
        }
    }
}

/// Why a list could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ListError {
    /// A line is neither an address, a prefix, a comment nor blank.
    #[error("{origin}:{line}: not an address or prefix: {text:?}")]
    Line {
        /// The list.
        origin: String,
        /// Line number, from 1.
        line: usize,
        /// The line (at most 80 characters of it).
        text: String,
    },
}

/// The longest text a block's note holds (the kernel's note text).
const TEXT_LEN: usize = sensor_common::NOTE_TEXT_LEN;

/// Parses a list named `origin`: one address or prefix per line, anything after `;` or `#` a
/// comment (a DROP list's reference after `;` is kept as the entry's reference). Host bits of
/// a prefix are an error, as in the CLI: a list that says `198.51.100.7/24` is not what it
/// means to be.
pub fn parse(text: &str, origin: &str) -> Result<BTreeMap<IpNet, String>, ListError> {
    let mut out = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let (entry, comment) = match raw.find([';', '#']) {
            Some(at) => (
                raw.get(..at).unwrap_or(""),
                raw.get(at + 1..).unwrap_or("").trim(),
            ),
            None => (raw, ""),
        };
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let bad = || ListError::Line {
            origin: origin.to_owned(),
            line: i + 1,
            text: raw.chars().take(80).collect(),
        };
        let net = parse_net(entry).ok_or_else(bad)?;
        // The reference a DROP list gives after `;`, not a `#` remark.
        let reference = raw
            .find(';')
            .map_or("", |_| comment.split_whitespace().next().unwrap_or(""));
        out.insert(net, note_text(origin, reference));
    }
    Ok(out)
}

/// An address (a host prefix) or a prefix without host bits.
fn parse_net(entry: &str) -> Option<IpNet> {
    if let Ok(ip) = entry.parse::<std::net::IpAddr>() {
        return Some(IpNet::from(ip));
    }
    let net: IpNet = entry.parse().ok()?;
    (net.trunc() == net).then_some(net)
}

/// The block's note: `list <origin> <reference>`, cut to the kernel's note length.
fn note_text(origin: &str, reference: &str) -> String {
    let mut text = format!("list {origin}");
    if !reference.is_empty() {
        text.push(' ');
        text.push_str(reference);
    }
    fit_note(text)
}

/// `text` cut to the kernel's note length, at a character boundary.
pub(crate) fn fit_note(mut text: String) -> String {
    let mut end = text.len().min(TEXT_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

/// The map writes that bring the blocks written for lists (`current`) to what the lists say
/// now (`wanted`): blocks to write (new ones, and every one when `renew_all`, which refreshes
/// their TTL) and blocks to remove.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Blocks to write, with their note.
    pub write: Vec<(IpNet, String)>,
    /// Blocks to remove.
    pub remove: Vec<IpNet>,
}

impl Plan {
    /// The plan from `current` to `wanted`.
    pub fn between(
        current: &BTreeMap<IpNet, String>,
        wanted: &BTreeMap<IpNet, String>,
        renew_all: bool,
    ) -> Self {
        let write = wanted
            .iter()
            .filter(|(net, text)| renew_all || current.get(net) != Some(text))
            .map(|(net, text)| (*net, text.clone()))
            .collect();
        let remove = current
            .keys()
            .filter(|net| !wanted.contains_key(net))
            .copied()
            .collect();
        Self { write, remove }
    }
}

/// Merges the lists of several files; an entry listed twice keeps its first origin.
pub fn merge(lists: impl IntoIterator<Item = BTreeMap<IpNet, String>>) -> BTreeMap<IpNet, String> {
    let mut out = BTreeMap::new();
    for list in lists {
        for (net, text) in list {
            out.entry(net).or_insert(text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("net")
    }

    #[test]
    fn plain_and_drop_lists_parse_with_their_origin() {
        let drop = "; Spamhaus DROP List 2026/12/04\n; Last-Modified: Fri\n\
                    203.0.113.0/24 ; SBL123456\n198.51.100.64/26 ; SBL7\n";
        let got = parse(drop, "drop.txt").expect("drop");
        assert_eq!(
            got,
            BTreeMap::from([
                (net("203.0.113.0/24"), "list drop.txt SBL123456".to_owned()),
                (net("198.51.100.64/26"), "list drop.txt SBL7".to_owned()),
            ])
        );
        let plain =
            "# bad hosts\n198.51.100.7\n\n  2001:db8:bad::/48   # a cloud range\n2001:db8::1\n";
        let got = parse(plain, "bad.txt").expect("plain");
        assert_eq!(
            got,
            BTreeMap::from([
                (net("198.51.100.7/32"), "list bad.txt".to_owned()),
                (net("2001:db8:bad::/48"), "list bad.txt".to_owned()),
                (net("2001:db8::1/128"), "list bad.txt".to_owned()),
            ])
        );
    }

    #[test]
    fn a_bad_line_rejects_the_list_with_its_place() {
        for (text, line) in [
            ("198.51.100.0/24\nnot-an-address\n", 2),
            ("198.51.100.7/24\n", 1),
            ("203.0.113.0/33\n", 1),
            ("# ok\n\n2001:db8::/129 ; x\n", 3),
        ] {
            let err = parse(text, "l.txt").expect_err(text);
            let ListError::Line { line: at, .. } = &err;
            assert_eq!(*at, line, "{text:?}: {err}");
            assert!(
                err.to_string().starts_with(&format!("l.txt:{line}: ")),
                "{err}"
            );
        }
    }

    #[test]
    fn notes_fit_the_kernel() {
        let long = "x".repeat(200);
        let got = parse(&format!("198.51.100.1 ; {long}\n"), "drop.txt").expect("list");
        assert!(got.values().all(|t| t.len() <= TEXT_LEN));
    }

    #[test]
    fn plans_write_new_remove_gone_and_renew_on_demand() {
        let a = (net("198.51.100.0/24"), "list a".to_owned());
        let b = (net("203.0.113.0/24"), "list a".to_owned());
        let c = (net("2001:db8::/48"), "list b".to_owned());
        let current = BTreeMap::from([a.clone(), b.clone()]);
        let wanted = BTreeMap::from([b.clone(), c.clone()]);
        assert_eq!(
            Plan::between(&current, &wanted, false),
            Plan {
                write: vec![c.clone()],
                remove: vec![a.0]
            }
        );
        assert_eq!(
            Plan::between(&current, &wanted, true).write,
            vec![b.clone(), c.clone()]
        );
        // A changed origin is rewritten.
        let moved = BTreeMap::from([(b.0, "list b".to_owned())]);
        assert_eq!(Plan::between(&current, &moved, false).write.len(), 1);
        assert_eq!(
            merge([
                BTreeMap::from([a.clone()]),
                BTreeMap::from([(a.0, "list z".to_owned())])
            ]),
            BTreeMap::from([a])
        );
    }
}
