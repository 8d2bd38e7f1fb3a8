//! Pins left by another version: the loader must refuse a persistent pin whose map definition
//! differs from the object's, naming the pin, instead of reusing it.
//!
//! Runs as root (bpffs, map creation). Nothing is attached and no traffic is sent. The pin
//! directory is private to the test and removed by a guard, also on failure.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use sensor_common::{capacity, map_names};
use sensor_user::loader::{self, LoadError, LoadOptions};

/// Removes the pin directory and its lock files when dropped.
struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        for lock in loader::lock_files(&self.0) {
            let _ = std::fs::remove_file(lock);
        }
    }
}

fn bpftool(args: &[&str]) {
    let out = Command::new("bpftool")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("bpftool is needed for this test (cargo xtask setup): {e}"));
    assert!(
        out.status.success(),
        "bpftool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn load(dir: &Path) -> Result<aya::Ebpf, LoadError> {
    loader::load(&LoadOptions {
        pin_dir: Some(dir.to_path_buf()),
        max_sources: capacity::SOURCES,
    })
}

#[test]
fn an_incompatible_persistent_pin_is_refused_by_name() {
    let dir = PinDir(PathBuf::from(format!(
        "/sys/fs/bpf/apisensor-test-pins-{}",
        std::process::id()
    )));
    // A first load makes every pin; they match the object, so a second load reuses them.
    drop(load(&dir.0).unwrap_or_else(|e| panic!("first load: {e}")));
    drop(load(&dir.0).unwrap_or_else(|e| panic!("reload over compatible pins: {e}")));

    // Replace MAPS_IN_USE with the layout of an older version (24-byte value).
    let pin = dir.0.join(map_names::MAPS_IN_USE);
    std::fs::remove_file(&pin).expect("removing the pin");
    let pin_str = pin.to_str().expect("utf-8 path");
    bpftool(&[
        "map",
        "create",
        pin_str,
        "type",
        "array",
        "key",
        "4",
        "value",
        "24",
        "entries",
        "1",
        "name",
        "MAPS_IN_USE",
    ]);
    match load(&dir.0) {
        Err(e @ LoadError::IncompatiblePin { .. }) => {
            let msg = e.to_string();
            let want = format!("value {} B", size_of::<sensor_common::MapsInUse>());
            assert!(
                msg.contains(pin_str) && msg.contains("value 24 B") && msg.contains(&want),
                "the error names the pin and both layouts: {msg}"
            );
        }
        Err(e) => panic!("expected an incompatible-pin error, got: {e}"),
        Ok(_) => panic!("an incompatible MAPS_IN_USE pin was reused"),
    }
}

#[test]
fn a_pin_directory_from_before_flow_blocks_is_reused() {
    let dir = PinDir(PathBuf::from(format!(
        "/sys/fs/bpf/apisensor-test-pins-flow-{}",
        std::process::id()
    )));
    drop(load(&dir.0).unwrap_or_else(|e| panic!("first load: {e}")));
    // A version without flow blocks left no FLOW_BLOCKS pin, and a MAPS_IN_USE of the same
    // layout whose last field (then reserved, now the flow flag) is zero.
    let flow_pin = dir.0.join(map_names::FLOW_BLOCKS);
    std::fs::remove_file(&flow_pin).expect("removing the FLOW_BLOCKS pin");
    drop(load(&dir.0).unwrap_or_else(|e| panic!("reload without a FLOW_BLOCKS pin: {e}")));
    assert!(flow_pin.exists(), "FLOW_BLOCKS is pinned again");
    let verdicts = sensor_user::verdict::Verdicts::open_pinned(&dir.0)
        .unwrap_or_else(|e| panic!("opening the verdict maps: {e}"));
    assert_eq!(
        verdicts.published_in_use().expect("MAPS_IN_USE").flow,
        0,
        "no flow block: not looked up"
    );
    assert!(
        verdicts
            .flow_blocks(sensor_user::clock::boot_ns())
            .expect("listing")
            .is_empty()
    );
}

#[test]
fn an_allowlist_pin_from_before_exceptions_is_refused_by_name() {
    let dir = PinDir(PathBuf::from(format!(
        "/sys/fs/bpf/apisensor-test-pins-allow-{}",
        std::process::id()
    )));
    drop(load(&dir.0).unwrap_or_else(|e| panic!("first load: {e}")));
    // Before exceptions, an allowlist value was 16 bytes (when added, hits): no expiry for
    // the kernel to check, so it is not reused.
    let pin = dir.0.join(map_names::ALLOW);
    std::fs::remove_file(&pin).expect("removing the pin");
    let pin_str = pin.to_str().expect("utf-8 path");
    let entries = capacity::ALLOW.to_string();
    bpftool(&[
        "map", "create", pin_str, "type", "lpm_trie", "key", "20", "value", "16", "entries",
        &entries, "flags", "1", "name", "ALLOW",
    ]);
    match load(&dir.0) {
        Err(e @ LoadError::IncompatiblePin { .. }) => {
            let msg = e.to_string();
            let want = format!("value {} B", size_of::<sensor_common::AllowValue>());
            assert!(
                msg.contains(pin_str) && msg.contains("value 16 B") && msg.contains(&want),
                "the error names the pin and both layouts: {msg}"
            );
        }
        Err(e) => panic!("expected an incompatible-pin error, got: {e}"),
        Ok(_) => panic!("an ALLOW pin of the old layout was reused"),
    }
}
