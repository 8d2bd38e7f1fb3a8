//! Running commands with clear errors.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The target directory: `CARGO_TARGET_DIR` when set (cargo and cargo-deb honour it too),
/// else `target/` in the workspace root.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// Runs `cmd`, failing with its name if it fails.
pub fn status(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: {shown}");
    let st = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !st.success() {
        bail!("{shown} failed: {st}{}", free_space_note());
    }
    Ok(())
}

/// Runs `cargo ARGS` in the workspace root.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    status(Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args(args))
}

/// Runs a command and returns whether it succeeded (for probes).
pub fn probe(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Replaces this process with `program` (used by `run`, so signals reach the agent).
pub fn exec(program: &Path, args: &[String]) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let err = Command::new(program).args(args).exec();
    Err(err).with_context(|| format!("cannot exec {}", program.display()))
}

/// How much room is left on the target directory's disk, for failure messages: a full disk
/// kills the linker with SIGBUS, which says nothing about disks. Empty if it cannot be read.
fn free_space_note() -> String {
    use std::os::unix::ffi::OsStrExt as _;
    let dir = target_dir();
    let dir = if dir.exists() { dir } else { root() };
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return String::new();
    };
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `st` is writable; statvfs fills it when it returns 0.
    if unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return String::new();
    }
    // SAFETY: statvfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    let free_mib = st.f_bavail.saturating_mul(st.f_frsize) >> 20;
    format!(" ({free_mib} MiB free on the disk of {})", dir.display())
}
