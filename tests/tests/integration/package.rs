//! The Debian package: installed into a scratch root with `dpkg -x`, it must hold the binary
//! (which runs from there), the systemd unit (which `systemd-analyze verify` accepts against
//! that root), the configuration as a conffile equal to the embedded default (which `apisensor
//! config check` accepts), the environment file, the completions, the manual page and the
//! state directory's tmpfiles.d entry (which `systemd-tmpfiles` creates in that root).
//!
//! The package is built by `cargo xtask dist` (`cargo xtask test` runs it before these tests):
//! one release build, outside the test. Runs as root (`dpkg -x` keeps owners). Nothing is
//! installed on the host, and no service is started or enabled.
use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::SystemTime,
};

use sensor_user::config::DEFAULT_CONFIG_TOML;

/// Where the unit is installed.
const UNIT: &str = "usr/lib/systemd/system/apisensor.service";

/// Runs `program args`, panicking with a hint if it cannot start.
fn run(program: &str, args: &[&str], hint: &str) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({hint}): {e}"))
}

/// Runs `program args`, which must succeed; returns its standard output.
fn ok(program: &str, args: &[&str], hint: &str) -> String {
    let out = run(program, args, hint);
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn text(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

fn modified(path: &Path) -> SystemTime {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The newest `apisensor_*.deb` in the target directory this test was built in, which must be
/// newer than the release binary it packages.
fn package() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test>: the target directory is three levels up.
    let target = exe.ancestors().nth(3).expect("target directory");
    let debian = target.join("debian");
    let build_it = "build it first: `cargo xtask dist` (`cargo xtask test` does)";
    let deb = fs::read_dir(&debian)
        .unwrap_or_else(|e| panic!("{}: {e}; {build_it}", debian.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with("apisensor_") && p.extension().is_some_and(|e| e == "deb")
        })
        .max_by_key(|p| modified(p))
        .unwrap_or_else(|| panic!("no apisensor_*.deb in {}; {build_it}", debian.display()));
    let binary = target.join("release/apisensor");
    assert!(
        modified(&deb) >= modified(&binary),
        "{} is older than {}; {build_it}",
        deb.display(),
        binary.display()
    );
    deb
}

#[test]
fn the_package_installs_a_working_agent_unit_and_configuration() {
    let deb = package();
    let root = tempfile::tempdir().expect("scratch root");
    let root = root.path();
    ok("dpkg", &["-x", text(&deb), text(root)], DPKG);
    control(&deb, root);
    let bin = binary_and_configuration(root);
    refuses_invalid_files(root, &bin);
    completions_and_manual(root);
    unit(root);
    state_directory(root);
}

const DPKG: &str = "dpkg is part of every Debian system";

/// Control data: name, and the configuration files as conffiles (kept on upgrade).
fn control(deb: &Path, root: &Path) {
    let fields = ok("dpkg-deb", &["-f", text(deb), "Package", "Section"], DPKG);
    assert_eq!(fields, "Package: apisensor\nSection: net\n");
    let control = root.join("DEBIAN");
    ok("dpkg-deb", &["-e", text(deb), text(&control)], DPKG);
    let conffiles = fs::read_to_string(control.join("conffiles")).expect("conffiles");
    let mut conffiles: Vec<_> = conffiles.lines().collect();
    conffiles.sort_unstable();
    assert_eq!(
        conffiles,
        ["/etc/apisensor/apisensor.toml", "/etc/default/apisensor"]
    );
}

/// The binary runs from the scratch root; the configuration is the embedded default, and it
/// checks. Returns the binary.
fn binary_and_configuration(root: &Path) -> PathBuf {
    let bin = root.join("usr/bin/apisensor");
    let mode = fs::metadata(&bin)
        .expect("usr/bin/apisensor")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    let version = ok(text(&bin), &["--version"], "the packaged binary");
    assert_eq!(
        version,
        format!("apisensor {}\n", env!("CARGO_PKG_VERSION"))
    );
    let config = root.join("etc/apisensor/apisensor.toml");
    assert_eq!(
        fs::read_to_string(&config).expect("etc/apisensor/apisensor.toml"),
        DEFAULT_CONFIG_TOML
    );
    assert_eq!(
        ok(text(&bin), &["config", "default"], "config default"),
        DEFAULT_CONFIG_TOML
    );
    assert_eq!(
        ok(
            text(&bin),
            &["config", "check", text(&config)],
            "config check"
        ),
        format!("{}: ok\n", config.display())
    );
    // The environment file the unit reads, with the options it passes to `run`.
    let env =
        fs::read_to_string(root.join("etc/default/apisensor")).expect("etc/default/apisensor");
    assert!(
        env.lines().any(|l| l.starts_with("APISENSOR_ARGS=")),
        "{env}"
    );
    bin
}

/// An invalid file: `config check` lists the problem and fails; `run` refuses to start, saying
/// why in one line (before touching the pin directory or the interface).
fn refuses_invalid_files(root: &Path, bin: &Path) {
    let bad = root.join("bad.toml");
    fs::write(&bad, "[sensor]\nports = [80, 0]\n").expect("write bad.toml");
    let problem = "2:14: sensor.ports[1] = 0 is not allowed (expected a port, 1..=65535)";
    let out = run(text(bin), &["config", "check", text(&bad)], "config check");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}:{problem}\n", bad.display())
    );
    let pins = root.join("pins");
    let out = run(
        text(bin),
        &[
            "run",
            "--iface",
            "lo",
            "--config",
            text(&bad),
            "--pin-dir",
            text(&pins),
        ],
        "run",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("apisensor: error: {}:{problem}\n", bad.display())
    );
    assert!(!pins.exists(), "run touched the pin directory");
}

/// Completions and the manual page, generated from the same command line.
fn completions_and_manual(root: &Path) {
    let bash = root.join("usr/share/bash-completion/completions/apisensor");
    ok(
        "bash",
        &["-n", text(&bash)],
        "bash checks the completion script",
    );
    let bash = fs::read_to_string(&bash).expect("bash completion");
    assert!(bash.contains("complete -F _apisensor") && bash.contains("completions"));
    let zsh = fs::read_to_string(root.join("usr/share/zsh/vendor-completions/_apisensor"))
        .expect("zsh completion");
    assert!(zsh.starts_with("#compdef apisensor"));
    let fish = fs::read_to_string(root.join("usr/share/fish/vendor_completions.d/apisensor.fish"))
        .expect("fish completion");
    assert!(fish.contains("complete -c apisensor"));
    let man = fs::read_to_string(root.join("usr/share/man/man8/apisensor.8")).expect("man page");
    assert!(man.contains(".TH apisensor 8") && man.contains("apisensor\\-config"));
}

/// The unit names the packaged paths and passes systemd's own checks against the scratch root
/// (its `ExecStart` binary must exist there; the units it is ordered against come from the
/// host's systemd, copied beside it without replacing it). Manual pages are checked above:
/// `man` cannot look inside the scratch root.
fn unit(root: &Path) {
    let unit = fs::read_to_string(root.join(UNIT)).expect("the unit");
    for line in [
        "ExecStart=/usr/bin/apisensor run --config /etc/apisensor/apisensor.toml $APISENSOR_ARGS",
        "EnvironmentFile=/etc/default/apisensor",
        "CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_PERFMON",
        "StateDirectory=apisensor",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks {line:?}");
    }
    let units = root.join("usr/lib/systemd/system");
    ok(
        "cp",
        &["-rn", "/usr/lib/systemd/system/.", text(&units)],
        "the host's systemd units (cargo xtask setup installs systemd)",
    );
    assert_eq!(
        fs::read_to_string(root.join(UNIT)).expect("the unit"),
        unit,
        "the unit was replaced"
    );
    let out = run(
        "systemd-analyze",
        &[
            "verify",
            "--man=no",
            &format!("--root={}", text(root)),
            &format!("/{UNIT}"),
        ],
        "systemd-analyze is needed for this test (cargo xtask setup installs systemd)",
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !said.contains("apisensor"),
        "systemd-analyze verify: {}\n{said}",
        out.status
    );
}

/// The state directory, as systemd-tmpfiles creates it at install.
fn state_directory(root: &Path) {
    ok(
        "systemd-tmpfiles",
        &[
            "--create",
            &format!("--root={}", text(root)),
            "apisensor.conf",
        ],
        "systemd-tmpfiles comes with systemd (cargo xtask setup)",
    );
    let state = fs::metadata(root.join("var/lib/apisensor")).expect("var/lib/apisensor");
    assert!(state.is_dir());
    assert_eq!(state.permissions().mode() & 0o777, 0o700);
}
