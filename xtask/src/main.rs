//! Project tasks: `cargo xtask setup | run | test | bench | lab | lint | dist`. One module per
//! subcommand.
//! Every task that needs tools runs `setup` first, so a fresh machine needs nothing else.
mod bench;
mod dist;
mod fuzz;
mod lab;
mod lint;
mod replay_bench;
mod setup;
mod test;
mod util;

use clap::{Parser, Subcommand};

/// apisensor's project tasks.
#[derive(Debug, Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install what is missing (nightly rust-src, bpf-linker, cargo-fuzz, cargo-deb, Debian
    /// packages).
    Setup,
    /// Build (release) and run the agent: `cargo xtask run -- --iface IFACE [agent args]`.
    Run {
        /// Arguments for `apisensor run`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every test: formatting, clippy (two passes), unit tests, privileged integration
    /// tests, and time-boxed fuzzing.
    Test {
        /// Seconds of fuzzing per target.
        #[arg(long, default_value_t = 20)]
        fuzz_seconds: u64,
    },
    /// Run the benchmarks and write docs/BENCHMARKS.md.
    Bench {
        /// Seconds of fuzzing per target in the long fuzz run (0 to skip).
        #[arg(long, default_value_t = 0)]
        fuzz_seconds: u64,
        /// Run only this benchmark and print its section instead of writing the report.
        #[arg(long, value_enum)]
        only: Option<bench::Only>,
    },
    /// Run the attack lab: scenarios in network namespaces against the sample API behind
    /// nginx and the agent, with benign traffic alongside (all scenarios when none is named).
    Lab {
        /// Scenarios to run (hydra, stuffing, distributed-stuffing, ffuf, flood, scraping,
        /// session-rotation, fingerprint-rotation, slow-bruteforce, benign-only).
        scenarios: Vec<String>,
        /// The short run: hydra, distributed-stuffing, benign-only.
        #[arg(long)]
        short: bool,
        /// Also run each scenario with fail2ban and then `CrowdSec` enforcing on the same
        /// traffic (the agent only reporting).
        #[arg(long)]
        compare: bool,
        /// `--compare`, the overhead run, and write docs/SCORECARD.md.
        #[arg(long)]
        scorecard: bool,
        /// Only the overhead run (wrk with the agent attached, a minimal sampler attached, a
        /// bare `XDP_PASS` program attached, and nothing attached); prints its section instead of writing a file.
        #[arg(long, conflicts_with_all = ["scenarios", "short", "compare", "scorecard"])]
        overhead_only: bool,
    },
    /// Formatting and clippy only.
    Lint,
    /// Build the Debian package (release binary, unit, configuration, completions, manual
    /// page) into target/debian/ and print its path.
    Dist,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Setup => setup::run(),
        Command::Run { args } => {
            setup::run()?;
            util::cargo(&["build", "--release", "-p", "sensor-user"])?;
            let mut full = vec!["run".to_owned()];
            full.extend(args);
            util::exec(&util::root().join("target/release/apisensor"), &full)
        }
        Command::Test { fuzz_seconds } => {
            setup::run()?;
            test::run(fuzz_seconds)
        }
        Command::Bench { fuzz_seconds, only } => {
            setup::run()?;
            match only {
                Some(only) => bench::run_only(only),
                None => bench::run(fuzz_seconds),
            }
        }
        Command::Lab {
            scenarios,
            short,
            compare,
            scorecard,
            overhead_only,
        } => {
            setup::run()?;
            let mut args = scenarios;
            for (on, flag) in [
                (short, "--short"),
                (compare, "--compare"),
                (overhead_only, "--overhead-only"),
            ] {
                if on {
                    args.push(flag.to_owned());
                }
            }
            lab::run(args, scorecard)
        }
        Command::Lint => {
            setup::run()?;
            lint::run()
        }
        Command::Dist => {
            setup::run()?;
            dist::run().map(drop)
        }
    }
}
