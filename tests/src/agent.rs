//! The agent under test: its pin directory (removed, with its lock files, on drop), its files
//! in the lab, its start (bounded wait until it reports it is ready) and its event lines.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use crate::apisensor_bin;
use crate::lab::Lab;

/// How long an agent may take to load, attach and open its state.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A pin directory on bpffs that is removed (unpinning every map) on drop.
pub struct PinDir(PathBuf);

impl PinDir {
    /// `/sys/fs/bpf/apisensor-test-TAG-PID`, emptied first.
    pub fn new(tag: &str) -> Self {
        let path = PathBuf::from(format!(
            "/sys/fs/bpf/apisensor-test-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        Self(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The directory as text, for command lines.
    ///
    /// # Panics
    ///
    /// Never for the paths [`PinDir::new`] makes (they are ASCII).
    pub fn as_str(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }

    /// Runs the CLI with `args` on these pins, in the root namespace (where bpffs is).
    ///
    /// # Panics
    ///
    /// If the binary cannot be run.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(apisensor_bin())
            .args(args)
            .args(["--pin-dir", self.as_str()])
            .output()
            .expect("run apisensor")
    }

    /// [`PinDir::cli`] that must succeed: its standard output (also printed, for the test's
    /// log).
    ///
    /// # Panics
    ///
    /// If it fails, with what it wrote.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!("$ apisensor {}\n{stdout}", args.join(" "));
        assert!(
            out.status.success(),
            "apisensor {args:?} failed: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        for lock in sensor_user::loader::lock_files(&self.0) {
            let _ = std::fs::remove_file(lock);
        }
    }
}

/// The files of one agent in the lab's directory.
pub struct AgentFiles {
    /// Its configuration file.
    pub config: PathBuf,
    /// Its state directory.
    pub state: PathBuf,
    /// Its standard output (transactions with `--log-transactions`, event lines).
    pub stdout: PathBuf,
    /// Its event file.
    pub events: PathBuf,
}

impl AgentFiles {
    /// Files named after `n` in the lab's directory, with `config` written as the
    /// configuration file (the state directory is shared by every agent of the lab).
    ///
    /// # Panics
    ///
    /// If the configuration cannot be written.
    pub fn in_lab(lab: &Lab, n: u32, config: &str) -> Self {
        let dir = lab.tmp_dir();
        let files = Self {
            config: dir.join(format!("apisensor{n}.toml")),
            state: dir.join("state"),
            stdout: dir.join(format!("agent{n}.out")),
            events: dir.join(format!("events{n}.jsonl")),
        };
        std::fs::write(&files.config, config)
            .unwrap_or_else(|e| panic!("writing {}: {e}", files.config.display()));
        files
    }
}

/// Starts `apisensor run` on the server's veth with these files and `extra` arguments, and
/// waits (bounded) until it says detection is ready. Returns its PID.
///
/// # Panics
///
/// If it exits or is not ready within 20 s (its stderr is shown).
pub fn start(lab: &mut Lab, pin: &PinDir, files: &AgentFiles, extra: &[&str]) -> u32 {
    let (ns, iface) = (lab.server_ns().to_owned(), lab.server_if().to_owned());
    let bin = apisensor_bin();
    let text = |p: &Path| p.to_str().expect("lab paths are UTF-8").to_owned();
    let (config, state, events) = (text(&files.config), text(&files.state), text(&files.events));
    let mut args = vec![
        "run",
        "--iface",
        &iface,
        "--pin-dir",
        pin.as_str(),
        "--config",
        &config,
        "--state-dir",
        &state,
        "--events",
        &events,
    ];
    args.extend_from_slice(extra);
    let pid = lab.spawn(&ns, &text(&bin), &args, Some(&files.stdout));
    let deadline = Instant::now() + READY_TIMEOUT;
    while !lab.stderr_of(pid).contains("detection ready") {
        assert!(lab.is_running(pid), "agent exited: {}", lab.stderr_of(pid));
        assert!(
            Instant::now() < deadline,
            "agent not ready within {READY_TIMEOUT:?}: {}",
            lab.stderr_of(pid)
        );
        thread::sleep(Duration::from_millis(50));
    }
    pid
}

/// The JSON lines of a file so far (lines that are not JSON are skipped).
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The blocks in the maps of `pin`, as `apisensor blocks list --json` prints them (the CLI runs
/// in the root namespace, where bpffs is).
///
/// # Panics
///
/// If the CLI fails or prints something else than a JSON array.
pub fn blocks(pin: &PinDir) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(apisensor_bin())
        .args(["blocks", "list", "--json", "--pin-dir", pin.as_str()])
        .output()
        .expect("run apisensor");
    assert!(
        out.status.success(),
        "blocks list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout) {
        Ok(serde_json::Value::Array(list)) => list,
        other => panic!("blocks list --json: {other:?}"),
    }
}
