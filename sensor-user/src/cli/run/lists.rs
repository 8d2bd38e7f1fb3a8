//! The agent's side of the reputation lists (`crate::lists`): reads the list files (and the
//! country database) at start and whenever one changes, and keeps the block maps equal to what they list, renewing each
//! block's TTL while it is listed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use std::sync::Arc;

use ipnet::IpNet;
use sensor_common::Reason;
use tokio::sync::{broadcast, watch};

use crate::clock;
use crate::config::Config;
use crate::lists::{self, ListsConfig, Plan};
use crate::verdict::{VerdictError, Verdicts};

/// What a file holds.
#[derive(Clone)]
enum Kind {
    /// A list of addresses and prefixes.
    List,
    /// A country database, read for this rule.
    Countries(lists::countries::Rule),
}

/// One list file as last read.
struct File {
    /// What it holds.
    kind: Kind,
    /// Its path.
    path: PathBuf,
    /// Its modification time when last read (`None`: never read).
    modified: Option<SystemTime>,
    /// Its entries when it last parsed.
    entries: BTreeMap<IpNet, String>,
}

/// The files a configuration names, none read yet.
fn files_of(cfg: &ListsConfig) -> Vec<File> {
    let countries = cfg
        .mmdb
        .iter()
        .filter_map(|path| Some((Kind::Countries(cfg.country_rule()?), path)));
    cfg.files
        .iter()
        .map(|path| (Kind::List, path))
        .chain(countries)
        .map(|(kind, path)| File {
            kind,
            path: path.clone(),
            modified: None,
            entries: BTreeMap::new(),
        })
        .collect()
}

/// Keeps the lists' blocks until shutdown. In a dry run, reports what it would write. A
/// reloaded configuration (`config`) replaces the files: the blocks of entries no file lists
/// any more are removed, the others kept.
pub(super) async fn keep(
    pin_dir: PathBuf,
    mut config: watch::Receiver<Arc<Config>>,
    mut shutdown: broadcast::Receiver<()>,
) {
    let (mut cfg, mut dry_run) = {
        let c = config.borrow_and_update();
        (c.lists.clone(), c.policy.dry_run)
    };
    let mut files = files_of(&cfg);
    // The blocks this agent wrote for lists, with their notes.
    let mut written: BTreeMap<IpNet, String> = BTreeMap::new();
    let mut renewed = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(cfg.refresh_s));
    loop {
        let mut reloaded = false;
        tokio::select! {
            _ = shutdown.recv() => return,
            _ = tick.tick() => {}
            changed = config.changed() => {
                if changed.is_err() {
                    return;
                }
                let c = config.borrow_and_update().clone();
                if c.lists == cfg && c.policy.dry_run == dry_run {
                    continue;
                }
                (cfg, dry_run) = (c.lists.clone(), c.policy.dry_run);
                files = files_of(&cfg);
                tick = tokio::time::interval(Duration::from_secs(cfg.refresh_s));
                tick.tick().await;
                reloaded = true;
            }
        }
        if files.is_empty() && written.is_empty() {
            continue;
        }
        let ttl = Duration::from_secs(cfg.ttl_s);
        let changed = files.iter_mut().map(reread).fold(reloaded, |a, b| a | b);
        let renew_all = renewed.elapsed() >= ttl / 2;
        if !changed && !renew_all {
            continue;
        }
        let wanted = lists::merge(files.iter().map(|f| f.entries.clone()));
        let plan = Plan::between(&written, &wanted, renew_all);
        if renew_all {
            renewed = tokio::time::Instant::now();
        }
        if dry_run {
            tracing::info!(
                listed = wanted.len(),
                would_write = plan.write.len(),
                would_remove = plan.remove.len(),
                "lists (dry run: nothing written)"
            );
            continue;
        }
        match apply(&pin_dir, &plan, ttl, &mut written) {
            Ok(()) => tracing::info!(
                listed = wanted.len(),
                written = plan.write.len(),
                removed = plan.remove.len(),
                "lists applied"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "applying the lists failed; retrying at the next check");
            }
        }
    }
}

/// Reads `f` again if it changed since it was last read; returns whether its entries did.
fn reread(f: &mut File) -> bool {
    let modified = std::fs::metadata(&f.path).and_then(|m| m.modified()).ok();
    if modified.is_some() && modified == f.modified {
        return false;
    }
    let origin = origin_of(&f.path);
    let parsed = std::fs::read(&f.path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| match &f.kind {
            Kind::List => String::from_utf8(bytes)
                .map_err(|e| format!("{origin}: {e}"))
                .and_then(|text| lists::parse(&text, &origin).map_err(|e| e.to_string())),
            Kind::Countries(rule) => lists::countries::blocked(bytes, &origin, rule),
        });
    match parsed {
        Ok(entries) => {
            f.modified = modified;
            let changed = entries != f.entries;
            f.entries = entries;
            changed
        }
        Err(e) => {
            // Its last good version stays; it is read again at the next check.
            tracing::warn!(list = %f.path.display(), error = %e, "list not used");
            false
        }
    }
}

/// A list's name in its blocks' notes: its file name.
fn origin_of(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Writes `plan` and records what was written in `written`.
fn apply(
    pin_dir: &Path,
    plan: &Plan,
    ttl: Duration,
    written: &mut BTreeMap<IpNet, String>,
) -> Result<(), VerdictError> {
    let mut v = Verdicts::open_pinned(pin_dir)?;
    for net in &plan.remove {
        match v.unblock(*net) {
            Ok(()) | Err(VerdictError::NotFound { .. }) => {
                written.remove(net);
            }
            Err(e) => return Err(e),
        }
    }
    for (net, text) in &plan.write {
        v.block(*net, ttl, Reason::Manual, text, clock::boot_ns())?;
        written.insert(*net, text.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lists::test_mmdb;

    #[test]
    fn files_are_read_when_they_change_and_a_broken_one_keeps_its_last_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("countries.mmdb");
        let net: IpNet = "203.0.113.0/24".parse().expect("net");
        std::fs::write(&db, test_mmdb::write(&[(net, "XA")])).expect("db");
        let mut f = File {
            kind: Kind::Countries(lists::countries::Rule::Deny(vec!["XA".to_owned()])),
            path: db.clone(),
            modified: None,
            entries: BTreeMap::new(),
        };
        assert!(reread(&mut f), "first read");
        assert_eq!(
            f.entries,
            BTreeMap::from([(net, "country XA countries.mmdb".to_owned())])
        );
        assert!(!reread(&mut f), "unchanged");
        // Broken: its last good entries stay.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&db, b"garbage").expect("db");
        assert!(!reread(&mut f));
        assert_eq!(f.entries.len(), 1);
        // A list file, and one that is gone.
        let list = dir.path().join("bad.txt");
        std::fs::write(&list, "198.51.100.7 ; SBL9\n").expect("list");
        let mut l = File {
            kind: Kind::List,
            path: list.clone(),
            modified: None,
            entries: BTreeMap::new(),
        };
        assert!(reread(&mut l));
        assert_eq!(
            l.entries.values().next().map(String::as_str),
            Some("list bad.txt SBL9")
        );
        std::fs::remove_file(&list).expect("rm");
        assert!(!reread(&mut l));
        assert_eq!(l.entries.len(), 1);
    }
}
