//! The `apisensor` command line: one module per subcommand. The agent (`run`) and the operator
//! commands share one binary; the operator commands work on the pinned maps whether or not an
//! agent runs.
use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::loader::DEFAULT_PIN_DIR;

pub mod accounts;
pub mod allow;
pub mod blocks;
pub mod completions;
pub mod config;
pub mod endpoints;
pub mod findings;
mod hook;
mod live;
pub mod man;
pub mod replay;
pub mod run;
pub mod sources;
pub mod stats;
pub mod status;
mod table;
pub mod top;
pub mod ttps;

/// apisensor: an eBPF/XDP sensor that finds API abuse by behaviour and blocks it in the kernel.
#[derive(Debug, Parser)]
#[command(name = "apisensor", version, about, propagate_version = true)]
pub struct Cli {
    /// Directory of the pinned maps.
    #[arg(long, global = true, env = "APISENSOR_PIN_DIR", default_value = DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and attach the kernel programs and analyse traffic until SIGINT/SIGTERM.
    Run(run::RunArgs),
    /// Add, list or remove blocks.
    Blocks {
        /// Action.
        #[command(subcommand)]
        command: blocks::BlocksCommand,
    },
    /// Add, list or remove allowlist entries.
    Allow {
        /// Action.
        #[command(subcommand)]
        command: allow::AllowCommand,
    },
    /// Show the kernel's action and ring-buffer counters.
    Stats(stats::StatsArgs),
    /// Show the top sources from the kernel's per-source map.
    Top(top::TopArgs),
    /// Run a pcap/pcapng capture through the analyzer and print its transactions.
    Replay(replay::ReplayArgs),
    /// Print the default configuration, or check a configuration file.
    Config {
        /// Action.
        #[command(subcommand)]
        command: config::ConfigCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completions(completions::CompletionsArgs),
    /// Print the manual page (roff).
    Man,
    /// Show the running agent's status (needs the agent).
    Status(status::StatusArgs),
    /// List source addresses with their behaviour and decisions, or show one (needs the agent).
    Sources(sources::SourcesArgs),
    /// Show the sources that acted for an account (needs the agent).
    Accounts {
        /// Action.
        #[command(subcommand)]
        command: accounts::AccountsCommand,
    },
    /// Show recent findings and decisions, and follow new ones (needs the agent).
    Findings(findings::FindingsArgs),
    /// Show the agent's event lines, and follow new ones with --follow (needs the agent).
    Events(findings::FindingsArgs),
    /// Show the API inventory learned from traffic (needs the agent).
    Endpoints(endpoints::EndpointsArgs),
    /// Show the client fingerprints seen logging in (needs the agent).
    Ttps(ttps::TtpsArgs),
}

/// Parses the command line, runs the command, and turns an error into one line on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::main(&args, &cli.pin_dir),
        Command::Blocks { command } => blocks::main(&command, &cli.pin_dir),
        Command::Allow { command } => allow::main(&command, &cli.pin_dir),
        Command::Stats(args) => stats::main(&args, &cli.pin_dir),
        Command::Top(args) => top::main(&args, &cli.pin_dir),
        Command::Replay(args) => replay::run(&args),
        Command::Config { command } => config::main(&command),
        Command::Completions(args) => completions::main(&args),
        Command::Man => man::main(),
        Command::Status(args) => status::main(&args, &cli.pin_dir),
        Command::Sources(args) => sources::main(&args, &cli.pin_dir),
        Command::Accounts { command } => accounts::main(&command, &cli.pin_dir),
        Command::Findings(args) | Command::Events(args) => findings::main(&args, &cli.pin_dir),
        Command::Endpoints(args) => endpoints::main(&args, &cli.pin_dir),
        Command::Ttps(args) => ttps::main(&args, &cli.pin_dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apisensor: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Formats nanoseconds as a short age such as `3.2s` or `5m`.
#[expect(clippy::cast_precision_loss, reason = "display only")]
pub(crate) fn age(ns: u64) -> String {
    let s = ns as f64 / 1e9;
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{:.0}m", s / 60.0)
    } else {
        format!("{:.1}h", s / 3600.0)
    }
}
