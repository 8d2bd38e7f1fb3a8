//! `apisensor completions SHELL`: the shell completion script, generated from the command
//! line's definition (the Debian package ships the bash one).
use std::io::Write as _;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _};
use clap_complete::Shell;

/// Options of `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Prints the completion script for `args.shell` on stdout.
pub fn main(args: &CompletionsArgs) -> anyhow::Result<()> {
    // Generated into memory: clap_complete panics when its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(
        args.shell,
        &mut super::Cli::command(),
        "apisensor",
        &mut script,
    );
    std::io::stdout()
        .write_all(&script)
        .context("writing the completion script")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_complete_the_subcommands() {
        for (shell, marker) in [
            (Shell::Bash, "complete -F _apisensor"),
            (Shell::Zsh, "#compdef apisensor"),
            (Shell::Fish, "complete -c apisensor"),
        ] {
            let mut out = Vec::new();
            clap_complete::generate(
                shell,
                &mut super::super::Cli::command(),
                "apisensor",
                &mut out,
            );
            let script = String::from_utf8(out).expect("UTF-8");
            assert!(script.contains(marker), "{shell}: {marker} missing");
            for word in ["run", "config", "check", "iface", "pin-dir"] {
                assert!(script.contains(word), "{shell}: {word} missing");
            }
        }
    }
}
