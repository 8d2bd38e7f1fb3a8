//! The attack lab: `lab [SCENARIO...] [--short] [--compare] [--scorecard FILE]` or `lab
//! --overhead-only` (as root; `cargo xtask lab` builds and runs it). Each scenario runs in a
//! fresh lab (namespaces, sample API behind nginx, the agent with its default configuration,
//! benign actors alongside the attack); a line per scenario is printed. With `--compare`, each
//! scenario also runs once for each comparison tool (fail2ban, `CrowdSec` with its bouncer at
//! its default poll and at 1 s) enforcing live while the agent only reports (`--dry-run`).
//! `--scorecard` implies `--compare`; the overhead run follows, and the markdown scorecard is
//! written to FILE. `--overhead-only` runs only the overhead run (wrk with the agent attached, a
//! minimal sampler attached, a bare `XDP_PASS` program attached, and nothing attached) and
//! prints its scorecard section to stdout; it takes no scenario and no `--scorecard`. An
//! interrupt (Ctrl-C) stops the running scenario and tears its lab down.
use std::process::ExitCode;

use apisensor_tests::attack_lab::others::Other;
use apisensor_tests::attack_lab::overhead;
use apisensor_tests::attack_lab::scenario::{self, Measured, Pass, Scenario};
use apisensor_tests::attack_lab::scorecard::Scorecard;
use apisensor_tests::attack_lab::traffic;

/// The command line.
struct Args {
    scenarios: Vec<Scenario>,
    /// Also run each scenario with fail2ban and `CrowdSec` enforcing.
    compare: bool,
    scorecard: Option<std::path::PathBuf>,
    /// Only the overhead run, its section printed.
    overhead_only: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut scenarios = Vec::new();
    let mut scorecard = None;
    let mut compare = false;
    let mut overhead_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--short" => scenarios.extend(Scenario::SHORT),
            "--compare" => compare = true,
            "--overhead-only" => overhead_only = true,
            "--scorecard" => {
                scorecard = Some(args.next().ok_or("--scorecard needs a file")?.into());
                compare = true;
            }
            name => scenarios.push(Scenario::parse(name).ok_or_else(|| {
                let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!("unknown scenario {name:?}; scenarios: {}", names.join(", "))
            })?),
        }
    }
    if overhead_only {
        if !scenarios.is_empty() || compare {
            return Err(
                "--overhead-only takes no scenario, no --compare and no --scorecard".into(),
            );
        }
    } else if scenarios.is_empty() {
        scenarios.extend(Scenario::ALL);
    }
    Ok(Args {
        scenarios,
        compare,
        scorecard,
        overhead_only,
    })
}

/// One line for the terminal.
fn line(m: &Measured) -> String {
    let block = m.block.as_ref().map_or_else(
        || "no block".to_owned(),
        |(s, d)| format!("blocked after {s:.2} s by {}", d.join("+")),
    );
    let drop = m
        .first_drop_s
        .map_or_else(String::new, |s| format!(", first drop {s:.2} s"));
    format!(
        "{} ({}): {block}{drop}; findings [{}]; malicious answered {}{}; benign refused {} of {} ({} sources); {:.2} s CPU, {} MiB peak",
        m.scenario.name(),
        match m.pass {
            Pass::Enforce => "apisensor".to_owned(),
            Pass::Compare(o) => o.name(),
        },
        m.detectors.iter().cloned().collect::<Vec<_>>().join(", "),
        m.malicious_answered,
        m.malicious_sent.map_or_else(String::new, |(s, r)| format!(
            " (client: {r} of {s} refused)"
        )),
        m.benign_refused,
        m.benign_sent,
        m.benign_sources_refused.len(),
        m.cpu_s,
        m.peak_rss_kib / 1024,
    )
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lab: {e}");
            return ExitCode::from(2);
        }
    };
    traffic::handle_interrupts();
    if args.overhead_only {
        eprintln!(
            "lab: overhead: wrk with the agent, a minimal sampler, a bare XDP_PASS and nothing"
        );
        let o = overhead::run();
        if traffic::interrupted() {
            eprintln!("lab: interrupted; the lab was torn down");
            return ExitCode::from(130);
        }
        let mut md = String::new();
        o.write_section(&mut md);
        println!("{md}");
        return ExitCode::SUCCESS;
    }
    let mut results = Vec::new();
    let mut compared = Vec::new();
    for s in &args.scenarios {
        if traffic::interrupted() {
            break;
        }
        eprintln!("lab: scenario {}: {}", s.name(), s.describe());
        let m = scenario::run(*s, Pass::Enforce);
        println!("{}", line(&m));
        results.push(m);
        for o in Other::ALL {
            if !args.compare || traffic::interrupted() {
                break;
            }
            eprintln!(
                "lab: scenario {}: {} enforcing, the agent in --dry-run",
                s.name(),
                o.name()
            );
            let c = scenario::run(*s, Pass::Compare(o));
            println!("{}", line(&c));
            compared.push(c);
        }
    }
    let overhead = (args.scorecard.is_some() && !traffic::interrupted()).then(|| {
        eprintln!(
            "lab: overhead: wrk with the agent, a minimal sampler, a bare XDP_PASS and nothing"
        );
        overhead::run()
    });
    if traffic::interrupted() {
        eprintln!("lab: interrupted; the lab was torn down");
        return ExitCode::from(130);
    }
    if let Some(path) = &args.scorecard {
        let card = Scorecard {
            measured: &results,
            others: &compared,
            overhead: overhead.as_ref(),
        };
        if let Err(e) = std::fs::write(path, card.markdown()) {
            eprintln!("lab: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("lab: wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
