//! The agent's hook for decisions it cannot enforce itself: a block of a client behind a
//! trusted proxy that shares its connections between clients is reported for enforcement
//! upstream, by running the configured command with the decision's event line on its
//! standard input. Hooks run in the background, a bounded number at a time, and are killed
//! after a timeout; a hook that cannot run is logged and counted, never retried.

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Hooks running at once, at most; beyond it a decision's hook is skipped (and counted).
const MAX_RUNNING: usize = 8;
/// How long a hook may run before it is killed.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The configured hook and the hooks running now.
pub(crate) struct Hooks {
    /// Program and arguments; empty when no hook is configured.
    argv: Vec<String>,
    /// Running hooks and when they started.
    running: Vec<(Child, Instant)>,
    /// Hooks started.
    pub(crate) started: u64,
    /// Hooks skipped (too many running) or that could not be started.
    pub(crate) failed: u64,
    /// Hooks killed at the timeout.
    pub(crate) killed: u64,
}

impl Hooks {
    /// Hooks running `argv` (none when empty).
    pub(crate) fn new(argv: Vec<String>) -> Self {
        Self {
            argv,
            running: Vec::new(),
            started: 0,
            failed: 0,
            killed: 0,
        }
    }

    /// Starts the hook with `line` on its standard input.
    pub(crate) fn run(&mut self, line: &[u8]) {
        if self.argv.is_empty() {
            return;
        }
        self.reap();
        let Some((program, args)) = self.argv.split_first() else {
            return;
        };
        if self.running.len() >= MAX_RUNNING {
            self.failed += 1;
            tracing::warn!(
                program,
                "upstream hook skipped: {MAX_RUNNING} hooks still running"
            );
            return;
        }
        let spawned = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn();
        match spawned {
            Ok(mut child) => {
                if let Some(mut stdin) = child.stdin.take() {
                    // A hook that exits without reading is not an error of the agent's.
                    let _ = stdin.write_all(line);
                }
                self.started += 1;
                self.running.push((child, Instant::now()));
            }
            Err(error) => {
                self.failed += 1;
                tracing::warn!(program, %error, "upstream hook could not be started");
            }
        }
    }

    /// Reaps hooks that ended and kills those past the timeout.
    pub(crate) fn reap(&mut self) {
        let mut killed = 0;
        self.running
            .retain_mut(|(child, since)| match child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        tracing::warn!(?status, "upstream hook failed");
                    }
                    false
                }
                Ok(None) if since.elapsed() > TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    killed += 1;
                    false
                }
                Ok(None) => true,
                Err(_) => false,
            });
        self.killed += killed;
    }

    /// Waits for every running hook (at most its timeout), at the agent's exit.
    pub(crate) fn finish(&mut self) {
        while !self.running.is_empty() {
            self.reap();
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_gets_the_line_and_failures_are_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("got");
        let script = format!("cat > {}", out.display());
        let mut hooks = Hooks::new(vec!["sh".into(), "-c".into(), script]);
        hooks.run(b"{\"type\":\"decision\"}\n");
        hooks.finish();
        assert_eq!(
            std::fs::read(&out).expect("hook output"),
            b"{\"type\":\"decision\"}\n"
        );
        assert_eq!((hooks.started, hooks.failed), (1, 0));
        let mut missing = Hooks::new(vec!["/nonexistent/apisensor-hook".into()]);
        missing.run(b"x\n");
        assert_eq!((missing.started, missing.failed), (0, 1));
        let mut none = Hooks::new(Vec::new());
        none.run(b"x\n");
        assert_eq!((none.started, none.failed), (0, 0));
    }

    #[test]
    fn hooks_are_bounded() {
        let mut hooks = Hooks::new(vec!["sleep".into(), "5".into()]);
        for _ in 0..MAX_RUNNING + 2 {
            hooks.run(b"x\n");
        }
        assert_eq!((hooks.started, hooks.failed), (MAX_RUNNING as u64, 2));
        for (child, _) in &mut hooks.running {
            let _ = child.kill();
        }
        hooks.finish();
        assert!(hooks.running.is_empty());
    }
}
