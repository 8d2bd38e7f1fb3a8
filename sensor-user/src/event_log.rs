//! Where the agent's event lines go: their format (apisensor's own lines, or OCSF Detection
//! Findings, `json/ocsf.rs`), standard output, and the event file with size-based rotation
//! (`events.jsonl` → `events.jsonl.1` → … → `events.jsonl.KEEP`, the oldest removed). A line is
//! never split across files: the file rotates before a line that would take it past its size.
use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write as _},
    path::{Path, PathBuf},
};

/// The `[events]` table of the configuration.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// The event file (`--events` overrides it; `<state-dir>/events.jsonl` without either).
    pub file: Option<PathBuf>,
    /// `"apisensor"` (finding and decision lines) or `"ocsf"` (one OCSF Detection Finding per
    /// decision), for the file and standard output alike.
    pub format: String,
    /// Whether event lines also go to standard output.
    pub stdout: bool,
    /// The event file is rotated before it would grow past this many bytes; 0: never.
    pub max_bytes: u64,
    /// Rotated files kept (`FILE.1` the newest).
    pub keep: u32,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            file: None,
            format: "apisensor".to_owned(),
            stdout: true,
            max_bytes: 100 << 20,
            keep: 5,
        }
    }
}

/// The format of event lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// apisensor's finding and decision lines (`json::EventLine`).
    Apisensor,
    /// OCSF Detection Finding (class 2004), one per decision (`json::ocsf`).
    Ocsf,
}

impl EventsConfig {
    /// The format, `None` if `format` names none.
    pub fn format(&self) -> Option<Format> {
        match self.format.as_str() {
            "apisensor" => Some(Format::Apisensor),
            "ocsf" => Some(Format::Ocsf),
            _ => None,
        }
    }
}

/// An append-only file of lines, rotated by size.
#[derive(Debug)]
pub struct RotatingFile {
    /// Its path.
    path: PathBuf,
    /// The open file.
    file: BufWriter<File>,
    /// Its size, written bytes included.
    size: u64,
    /// Rotate before growing past this; 0: never.
    max_bytes: u64,
    /// Rotated files kept.
    keep: u32,
    /// Rotations done.
    pub rotations: u64,
}

/// Opens `path` for appending.
fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl RotatingFile {
    /// Opens (or creates) `path` for appending; its present size counts toward `max_bytes`.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<Self> {
        let file = append(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file: BufWriter::new(file),
            size,
            max_bytes,
            keep,
            rotations: 0,
        })
    }

    /// The path of rotated file `n` (1 the newest).
    pub fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Appends one whole line (with its newline), rotating first if it would take the file
    /// past `max_bytes` (a line longer than that gets a file of its own).
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let len = line.len() as u64;
        if self.max_bytes > 0 && self.size > 0 && self.size.saturating_add(len) > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += len;
        Ok(())
    }

    /// Writes what is buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    /// Shifts `FILE.n` to `FILE.n+1` (the last one kept is overwritten), moves the file to
    /// `FILE.1` and starts a new one.
    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        for n in (1..self.keep).rev() {
            match std::fs::rename(self.rotated(n), self.rotated(n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        self.file = BufWriter::new(append(&self.path)?);
        self.size = 0;
        self.rotations += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of `path`, `None` if it does not exist.
    fn lines(path: &Path) -> Option<Vec<String>> {
        let text = std::fs::read_to_string(path).ok()?;
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "a line was split: {text:?}"
        );
        Some(text.lines().map(str::to_owned).collect())
    }

    #[test]
    fn rotates_at_the_size_keeps_the_count_and_never_splits_a_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        // 10-byte lines ("line NNNN\n"), files of at most 35 bytes: three lines a file.
        let mut f = RotatingFile::open(&path, 35, 2).expect("open");
        for i in 0..10 {
            f.write_line(format!("line {i:04}\n").as_bytes())
                .expect("write");
        }
        f.flush().expect("flush");
        assert_eq!(f.rotations, 3);
        let line = |i: i32| format!("line {i:04}");
        assert_eq!(lines(&path), Some(vec![line(9)]));
        assert_eq!(lines(&f.rotated(1)), Some(vec![line(6), line(7), line(8)]));
        assert_eq!(lines(&f.rotated(2)), Some(vec![line(3), line(4), line(5)]));
        // The oldest file went: only `keep` rotated files are kept.
        assert_eq!(lines(&f.rotated(3)), None);
        for p in [path.clone(), f.rotated(1), f.rotated(2)] {
            let size = std::fs::metadata(&p).expect("size").len();
            assert!(size <= 35, "{} has {size} bytes", p.display());
        }
        // Reopened, the present size counts: one more line fits, the next rotates.
        drop(f);
        let mut f = RotatingFile::open(&path, 35, 2).expect("reopen");
        f.write_line(b"line 0010\n").expect("write");
        f.write_line(b"line 0011\n").expect("write");
        assert_eq!(f.rotations, 0);
        f.write_line(b"line 0012\n").expect("write");
        f.flush().expect("flush");
        assert_eq!(f.rotations, 1);
        assert_eq!(lines(&path), Some(vec![line(12)]));
        assert_eq!(
            lines(&f.rotated(1)),
            Some(vec![line(9), line(10), line(11)])
        );
    }

    #[test]
    fn a_long_line_gets_a_file_of_its_own_and_zero_never_rotates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("e.jsonl");
        let mut f = RotatingFile::open(&path, 8, 1).expect("open");
        let long = format!("{}\n", "x".repeat(20));
        f.write_line(b"a\n").expect("write");
        f.write_line(long.as_bytes()).expect("write");
        f.write_line(b"b\n").expect("write");
        f.flush().expect("flush");
        assert_eq!(lines(&path), Some(vec!["b".to_owned()]));
        assert_eq!(lines(&f.rotated(1)), Some(vec!["x".repeat(20)]));
        let path = dir.path().join("never.jsonl");
        let mut f = RotatingFile::open(&path, 0, 1).expect("open");
        for _ in 0..100 {
            f.write_line(long.as_bytes()).expect("write");
        }
        f.flush().expect("flush");
        assert_eq!(f.rotations, 0);
        assert_eq!(lines(&path).map(|l| l.len()), Some(100));
    }

    #[test]
    fn formats_by_name() {
        let cfg = |f: &str| EventsConfig {
            format: f.to_owned(),
            ..EventsConfig::default()
        };
        assert_eq!(EventsConfig::default().format(), Some(Format::Apisensor));
        assert_eq!(cfg("ocsf").format(), Some(Format::Ocsf));
        assert_eq!(cfg("OCSF").format(), None);
        assert_eq!(cfg("cef").format(), None);
    }
}
