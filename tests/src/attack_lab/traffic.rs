//! What every actor of a scenario shares: the server, the client namespace, the log of every
//! request sent (who, when, how it ended), the deadline and the interruption flag; and the
//! small deterministic random source actors draw think times and choices from.
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::client::{self, Outcome, Request, Timeouts};
use super::netns;

/// Set by SIGINT or SIGTERM: every loop stops, and the lab is torn down.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether the run was interrupted.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Installs the SIGINT and SIGTERM handler that sets [`INTERRUPTED`], so an interrupted run
/// stops its loops and drops its lab (which removes the namespaces and processes) instead of
/// dying with them in place.
pub fn handle_interrupts() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Whose request it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The scenario's attack.
    Attack,
    /// A benign actor.
    Benign,
}

/// One request sent by the lab's client.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The actor's name (`office`, `health`, `scraper`, ...).
    pub actor: &'static str,
    /// Its source address.
    pub src: IpAddr,
    /// Attack or benign.
    pub role: Role,
    /// When it was started, Unix ns.
    pub at_ns: u64,
    /// How it ended.
    pub outcome: Outcome,
}

/// The shared context of one scenario's traffic; clone it into each actor's thread.
#[derive(Clone)]
pub struct Traffic {
    /// The client namespace every actor thread enters.
    pub client_ns: String,
    /// nginx in front of the sample API, IPv4.
    pub server_v4: SocketAddr,
    /// The same, IPv6.
    pub server_v6: SocketAddr,
    /// Every request sent so far.
    log: Arc<Mutex<Vec<Sent>>>,
    /// When every actor stops at the latest.
    pub deadline: Instant,
    /// Set when the scenario ends before its deadline.
    stopped: Arc<AtomicBool>,
}

impl Traffic {
    /// A context for actors in `client_ns` that stop at `deadline`.
    pub fn new(
        client_ns: &str,
        server_v4: SocketAddr,
        server_v6: SocketAddr,
        deadline: Instant,
    ) -> Self {
        Self {
            client_ns: client_ns.to_owned(),
            server_v4,
            server_v6,
            log: Arc::new(Mutex::new(Vec::new())),
            deadline,
            stopped: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Tells every actor to stop.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Enters the client namespace on this thread (call first in every actor thread).
    pub fn enter(&self) {
        netns::enter(&self.client_ns);
    }

    /// Whether actors must stop now (stopped, deadline passed or interrupted).
    pub fn over(&self) -> bool {
        interrupted() || self.stopped.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }

    /// Sleeps for `d` or until the traffic is over; returns whether it may go on.
    pub fn pause(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.over() {
                return false;
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(100)));
        }
        !self.over()
    }

    /// Sends `req` from `src` (to the server's address of the same family), logs and returns
    /// its outcome. Attacks give up sooner than benign actors, which on a loaded machine must
    /// still be answered.
    pub fn send(&self, actor: &'static str, role: Role, src: IpAddr, req: &Request) -> Outcome {
        let server = if src.is_ipv4() {
            self.server_v4
        } else {
            self.server_v6
        };
        let timeouts = match role {
            Role::Attack => Timeouts {
                connect: Duration::from_secs(1),
                io: Duration::from_secs(3),
            },
            Role::Benign => Timeouts {
                connect: Duration::from_secs(3),
                io: Duration::from_secs(5),
            },
        };
        let at_ns = sensor_user::clock::unix_ns();
        let outcome = client::send(src, server, req, timeouts);
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Sent {
                actor,
                src,
                role,
                at_ns,
                outcome: outcome.clone(),
            });
        outcome
    }

    /// Every request sent so far.
    pub fn sent(&self) -> Vec<Sent> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A small deterministic random source (xorshift64*), seeded per actor so runs repeat.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A source seeded with `seed` (any value; zero is replaced).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A duration between `lo` and `hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi.saturating_sub(lo) + 1))
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}
