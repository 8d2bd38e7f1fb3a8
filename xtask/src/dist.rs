//! `cargo xtask dist`: the Debian package. Builds the release binary, asks it for its shell
//! completions and manual page (`apisensor completions`, `apisensor man`: both come from the
//! clap definitions) and writes them beside it, then runs cargo-deb, which packages them with
//! the systemd unit and the default configuration (`[package.metadata.deb]` in
//! `sensor-user/Cargo.toml`); cargo-deb prints the package's path.
use std::{fs, path::PathBuf, process::Command};

use anyhow::Context as _;

use crate::util::{cargo, status, target_dir};

/// Where the generated files go: `target/release/dist/` is what the package's assets name
/// (cargo-deb maps `target/release/` to the real target directory).
const GENERATED: &str = "release/dist";

/// The shells whose completions are packaged, with their file names.
const COMPLETIONS: [(&str, &str); 3] = [
    ("bash", "apisensor.bash"),
    ("zsh", "_apisensor"),
    ("fish", "apisensor.fish"),
];

/// Builds the package and returns its path.
pub fn run() -> anyhow::Result<PathBuf> {
    cargo(&["build", "--release", "-p", "sensor-user"])?;
    let target = target_dir();
    let binary = target.join("release/apisensor");
    let out = target.join(GENERATED);
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for (shell, file) in COMPLETIONS {
        generate(&binary, &["completions", shell], &out.join(file))?;
    }
    generate(&binary, &["man"], &out.join("apisensor.8"))?;
    let debian = target.join("debian");
    status(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            // The release profile keeps line tables for the benchmarks' profiles; the package
            // does not need them (55 MB stripped to 8).
            .args([
                "deb",
                "-p",
                "sensor-user",
                "--no-build",
                "--strip",
                "--output",
            ])
            .arg(&debian),
    )?;
    let version = env!("CARGO_PKG_VERSION");
    let mut debs: Vec<PathBuf> = fs::read_dir(&debian)
        .with_context(|| format!("reading {}", debian.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(&format!("apisensor_{version}"))
                    && p.extension().is_some_and(|e| e == "deb")
            })
        })
        .collect();
    debs.sort();
    let deb = debs.pop().with_context(|| {
        format!(
            "cargo-deb left no apisensor_{version}*.deb in {}",
            debian.display()
        )
    })?;
    Ok(deb)
}

/// Runs `binary args` and writes its standard output to `file`.
fn generate(binary: &std::path::Path, args: &[&str], file: &std::path::Path) -> anyhow::Result<()> {
    let output = Command::new(binary)
        .args(args)
        .output()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "{} {} failed: {}",
        binary.display(),
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    fs::write(file, output.stdout).with_context(|| format!("writing {}", file.display()))
}
