//! The agent's state directory (`--state-dir`, default `/var/lib/apisensor`): what must
//! outlive a restart. It holds the installation's hash key (`hash.key`: sessions are keyed
//! hashes under it, and distinct counts hash with it, so that the agent and a replay with the
//! same directory give the same hashes and counts) and the learned baselines
//! (`baselines.json`). Files are replaced by writing a temporary file and renaming it, so a
//! crash never leaves half a file.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use crate::detect::baseline::BaselineSnapshot;

/// Where the agent keeps its state unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/apisensor";
/// File of the hash key.
const KEY_FILE: &str = "hash.key";
/// File of the baselines.
const BASELINES_FILE: &str = "baselines.json";
/// Length of the key.
const KEY_LEN: usize = 16;

/// Errors of the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file or the directory could not be read, written or created.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file does not hold a key.
    #[error(
        "{path} is not a hash key ({len} bytes, expected {KEY_LEN}); remove it to make a new one"
    )]
    BadKey {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// The baselines file is not valid.
    #[error("{path} is not a valid baselines file: {source}; remove it to learn anew")]
    BadBaselines {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

/// An open state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    /// The directory.
    path: PathBuf,
}

impl StateDir {
    /// Opens `path`, creating it (mode 0700) when missing.
    pub fn create(path: &Path) -> Result<Self, StateError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|source| StateError::Io {
                op: "creating state directory",
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
        })
    }

    /// Opens an existing directory without creating anything (the replay reads state, it
    /// never writes it).
    pub fn existing(path: &Path) -> Result<Self, StateError> {
        std::fs::metadata(path).map_err(|source| StateError::Io {
            op: "opening state directory",
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            path: path.to_owned(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The hash key, if the directory has one.
    pub fn key(&self) -> Result<Option<[u8; KEY_LEN]>, StateError> {
        let path = self.path.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => <[u8; KEY_LEN]>::try_from(bytes.as_slice())
                .map(Some)
                .map_err(|_| StateError::BadKey {
                    path,
                    len: bytes.len(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Io {
                op: "reading",
                path,
                source,
            }),
        }
    }

    /// The hash key, made from the system's random source and saved (mode 0600) when the
    /// directory has none.
    pub fn key_or_create(&self) -> Result<[u8; KEY_LEN], StateError> {
        if let Some(key) = self.key()? {
            return Ok(key);
        }
        let mut key = [0_u8; KEY_LEN];
        getrandom::fill(&mut key).map_err(|e| StateError::Io {
            op: "drawing a hash key for",
            path: self.path.join(KEY_FILE),
            source: std::io::Error::other(e.to_string()),
        })?;
        self.replace(KEY_FILE, &key)?;
        Ok(key)
    }

    /// The saved baselines, if any.
    pub fn baselines(&self) -> Result<Option<BaselineSnapshot>, StateError> {
        let path = self.path.join(BASELINES_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StateError::BadBaselines { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Io {
                op: "reading",
                path,
                source,
            }),
        }
    }

    /// Saves the baselines.
    pub fn save_baselines(&self, snapshot: &BaselineSnapshot) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(snapshot).map_err(|e| StateError::Io {
            op: "serializing",
            path: self.path.join(BASELINES_FILE),
            source: std::io::Error::other(e),
        })?;
        self.replace(BASELINES_FILE, &bytes)
    }

    /// Replaces `name` with `bytes` (mode 0600): a temporary file, synced, then renamed.
    fn replace(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        let path = self.path.join(name);
        let tmp = self.path.join(format!(".{name}.tmp"));
        let io = |op, source| StateError::Io {
            op,
            path: path.clone(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("writing", e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| io("writing", e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io("replacing", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::create(&dir.path().join("a/b")).expect("create");
        assert_eq!(state.key().expect("read"), None);
        let key = state.key_or_create().expect("create key");
        assert_eq!(state.key_or_create().expect("again"), key);
        let again = StateDir::existing(state.path()).expect("existing");
        assert_eq!(again.key().expect("read"), Some(key));
        std::fs::write(state.path().join(KEY_FILE), b"short").expect("write");
        let err = state.key().expect_err("bad key").to_string();
        assert!(err.contains("not a hash key"), "{err}");
        assert!(StateDir::existing(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn baselines_round_trip_and_bad_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::create(dir.path()).expect("create");
        assert!(state.baselines().expect("none").is_none());
        let cfg = crate::detect::baseline::BaselineConfig::default();
        let snapshot = crate::detect::baseline::Baselines::new(cfg, 5).snapshot();
        state.save_baselines(&snapshot).expect("save");
        assert_eq!(state.baselines().expect("read"), Some(snapshot));
        std::fs::write(dir.path().join(BASELINES_FILE), b"{").expect("write");
        let err = state.baselines().expect_err("bad").to_string();
        assert!(err.contains("baselines.json"), "{err}");
    }
}
