//! Requests in flight during a lab run: each curl process with who sent it and when, killed if
//! the run fails before it collects them (so a failing test leaves no curl behind).
use std::{net::IpAddr, process::Child, time::Instant};

/// One request in flight: who, when it started, whether it is the attack's, and curl.
pub struct Flight {
    /// The source address.
    pub src: IpAddr,
    /// When it was started.
    pub started: Instant,
    /// Whether it is the attacker's.
    pub attack: bool,
    /// The curl process (its stdout holds `%{http_code}`).
    pub child: Child,
}

/// The flights of a run; those still running when dropped are killed.
#[derive(Default)]
pub struct Flights(pub Vec<Flight>);

impl Drop for Flights {
    fn drop(&mut self) {
        for f in &mut self.0 {
            let _ = f.child.kill();
            let _ = f.child.wait();
        }
    }
}
