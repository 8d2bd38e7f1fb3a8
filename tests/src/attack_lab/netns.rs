//! Moving the calling thread into one of the lab's network namespaces, so the lab's own
//! clients open their sockets there without a process per request.
use std::fs::File;
use std::os::fd::AsRawFd as _;

/// Moves the calling thread (only it: a network namespace is per task) into network namespace
/// `ns` (`/run/netns/NS`). Threads it spawns afterwards start there too.
///
/// # Panics
///
/// If the namespace cannot be opened or entered.
pub fn enter(ns: &str) {
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
    // SAFETY: setns takes a descriptor we own for the duration of the call and a namespace
    // type; it changes only the calling thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert!(
        rc == 0,
        "cannot enter {path}: {}",
        std::io::Error::last_os_error()
    );
}
