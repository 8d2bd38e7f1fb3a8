//! `apisensor config`: the configuration file. `default` prints the embedded default (every
//! key with its default and what it does); `check FILE` loads a file exactly as `run` and
//! `replay` do and prints `FILE: ok`, or each problem as `FILE:LINE:COLUMN: message`.
use std::{io::Write, path::PathBuf};

use anyhow::Context as _;
use clap::Subcommand;

use crate::config::{Config, ConfigError, DEFAULT_CONFIG_TOML};

/// Actions of `config`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the embedded default configuration, every key documented; a file given to
    /// `--config` needs only the keys it changes.
    Default,
    /// Check a configuration file as `run` and `replay` load it (files it names included):
    /// print `FILE: ok`, or each problem as `FILE:LINE:COLUMN: message` and exit with 1.
    Check {
        /// The file.
        file: PathBuf,
    },
}

/// Runs a `config` action, printing on stdout.
pub fn main(command: &ConfigCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        ConfigCommand::Default => out
            .write_all(DEFAULT_CONFIG_TOML.as_bytes())
            .context("writing the default configuration"),
        ConfigCommand::Check { file } => check(file, &mut out),
    }
}

/// Loads `file` and writes `FILE: ok` or one line per problem to `out`; problems make the
/// error (`FILE: N problems`), and so does a file that cannot be read.
fn check(file: &std::path::Path, out: &mut impl Write) -> anyhow::Result<()> {
    match Config::load(Some(file)) {
        Ok(_) => writeln!(out, "{}: ok", file.display()).context("writing the report"),
        Err(ConfigError::Invalid { path, problems }) => {
            for problem in &problems {
                writeln!(out, "{path}:{problem}").context("writing the report")?;
            }
            match problems.len() {
                1 => anyhow::bail!("{path}: 1 problem"),
                n => anyhow::bail!("{path}: {n} problems"),
            }
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `config check` prints for a file holding `text`, and its error (the file's path
    /// is `FILE`).
    fn run(text: &str) -> (String, Option<String>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("apisensor.toml");
        std::fs::write(&file, text).expect("write");
        let mut out = Vec::new();
        let result = check(&file, &mut out);
        let name = file.display().to_string();
        let out = String::from_utf8(out)
            .expect("UTF-8")
            .replace(&name, "FILE");
        (
            out,
            result
                .err()
                .map(|e| format!("{e:#}").replace(&name, "FILE")),
        )
    }

    #[test]
    fn a_valid_file_is_ok() {
        assert_eq!(
            run("[sensor]\nports = [443]\n"),
            ("FILE: ok\n".to_owned(), None)
        );
        assert_eq!(run(DEFAULT_CONFIG_TOML), ("FILE: ok\n".to_owned(), None));
    }

    #[test]
    fn each_problem_is_a_line_with_its_place() {
        let (out, err) = run("[sensor]\nports = [0]\nbogus = 1\n");
        assert!(
            out.starts_with("FILE:3:1: unknown field `bogus`, expected one of `ports`, "),
            "{out}"
        );
        assert_eq!(out.lines().count(), 1, "{out}");
        assert_eq!(err.as_deref(), Some("FILE: 1 problem"));
        let (out, err) = run("[sensor]\nports = [0]\n\n[policy]\nescalation = 0.5\n");
        assert_eq!(
            out,
            "FILE:2:10: sensor.ports[0] = 0 is not allowed (expected a port, 1..=65535)\n\
             FILE:5:1: policy.escalation = 0.5 is out of range (expected 1 to 100)\n"
        );
        assert_eq!(err.as_deref(), Some("FILE: 2 problems"));
    }

    #[test]
    fn an_unreadable_file_is_an_error() {
        let mut out = Vec::new();
        let err =
            check(std::path::Path::new("/nonexistent/a.toml"), &mut out).expect_err("no such file");
        assert!(out.is_empty());
        assert!(
            format!("{err:#}").starts_with("/nonexistent/a.toml: cannot read the configuration: "),
            "{err:#}"
        );
    }
}
