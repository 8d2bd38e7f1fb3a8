//! The asynchronous ring-buffer reader: one task drains both rings and hands each decoded
//! record to a sink.
//!
//! Wakeups (see the kernel's `emit.rs`): records are mostly submitted without waking us, so the
//! loop drains on a short timer as well as on readiness. Latency is at most one timer period
//! while the ring is below the kernel's wakeup threshold; a burst crossing the threshold wakes
//! us at once.
//!
//! The timer's period adapts ([`DrainPeriod`]): [`BUSY_PERIOD`] while drains find records,
//! doubling after each drain that finds none, up to the configured period. The agent shares
//! its CPUs with the server it watches, and a drain runs the whole pipeline over what it read
//! without a pause: at a 5 ms period and 35,000 requests/s those runs took about 0.25 ms, and
//! whatever waited for that CPU meanwhile showed it in the server's tail latency. A 1 ms
//! period cuts the runs to a fifth for the same work, and an idle agent still wakes only once
//! per configured period.
use std::{os::fd::AsRawFd, time::Duration};

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, sync::broadcast};

use crate::event::{self, DecodeError, Event};

/// Receives decoded records and ticks.
pub trait EventSink {
    /// One valid record.
    fn on_event(&mut self, event: &Event<'_>);
    /// One record that failed to decode.
    fn on_decode_error(&mut self, error: &DecodeError);
    /// Called after every drain, with the number of records drained.
    fn on_drained(&mut self, records: usize);
}

/// Counters of the reader.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReaderStats {
    /// Records read from the ingress ring.
    pub req_records: u64,
    /// Records read from the egress ring.
    pub resp_records: u64,
    /// Records that failed to decode.
    pub decode_errors: u64,
    /// Drains started by a readiness wakeup.
    pub wakeup_drains: u64,
    /// Drains started by the timer.
    pub timer_drains: u64,
}

struct Ring(RingBuf<MapData>);

impl AsRawFd for Ring {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

fn register(ring: Ring) -> std::io::Result<AsyncFd<Ring>> {
    // SAFETY: the descriptor belongs to the `RingBuf` moved into the `AsyncFd`, which owns it
    // (and keeps it open, returning the same fd) until the `AsyncFd` is dropped.
    unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)
}

/// Drains one ring into the sink; returns the number of records.
fn drain(ring: &mut RingBuf<MapData>, sink: &mut dyn EventSink, errors: &mut u64) -> usize {
    let mut n = 0;
    while let Some(item) = ring.next() {
        n += 1;
        match event::decode(&item) {
            Ok(ev) => sink.on_event(&ev),
            Err(e) => {
                *errors += 1;
                sink.on_decode_error(&e);
            }
        }
    }
    n
}

/// The drain period while records arrive (the configured period instead, if it is shorter).
pub const BUSY_PERIOD: Duration = Duration::from_millis(1);

/// The timer's period: [`BUSY_PERIOD`] after a drain that found records, doubled after each
/// one that found none, never above the configured (idle) period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainPeriod {
    idle: Duration,
    now: Duration,
}

impl DrainPeriod {
    /// Starts idle, at the configured period.
    pub fn new(idle: Duration) -> Self {
        Self { idle, now: idle }
    }

    /// The period until the next timer drain.
    pub fn get(self) -> Duration {
        self.now
    }

    /// Adapts to a drain that found `records`.
    pub fn after_drain(&mut self, records: usize) {
        self.now = if records > 0 {
            BUSY_PERIOD.min(self.idle)
        } else {
            self.now.saturating_mul(2).min(self.idle)
        };
    }
}

/// Reads both rings until `shutdown` fires, then drains them one last time.
pub async fn run(
    req: RingBuf<MapData>,
    resp: RingBuf<MapData>,
    idle_period: Duration,
    sink: &mut dyn EventSink,
    mut shutdown: broadcast::Receiver<()>,
) -> std::io::Result<ReaderStats> {
    let mut req = register(Ring(req))?;
    let mut resp = register(Ring(resp))?;
    let mut stats = ReaderStats::default();
    let mut period = DrainPeriod::new(idle_period);
    let mut next = tokio::time::Instant::now() + period.get();
    loop {
        tokio::select! {
            _ = shutdown.recv() => break,
            guard = req.readable_mut() => {
                let mut guard = guard?;
                stats.wakeup_drains += 1;
                let n = drain(&mut guard.get_inner_mut().0, sink, &mut stats.decode_errors);
                stats.req_records += n as u64;
                guard.clear_ready();
                sink.on_drained(n);
            }
            guard = resp.readable_mut() => {
                let mut guard = guard?;
                stats.wakeup_drains += 1;
                let n = drain(&mut guard.get_inner_mut().0, sink, &mut stats.decode_errors);
                stats.resp_records += n as u64;
                guard.clear_ready();
                sink.on_drained(n);
            }
            () = tokio::time::sleep_until(next) => {
                stats.timer_drains += 1;
                let a = drain(&mut req.get_mut().0, sink, &mut stats.decode_errors);
                let b = drain(&mut resp.get_mut().0, sink, &mut stats.decode_errors);
                stats.req_records += a as u64;
                stats.resp_records += b as u64;
                sink.on_drained(a + b);
                period.after_drain(a + b);
                // From the end of this drain: a long drain is not followed at once by another.
                next = tokio::time::Instant::now() + period.get();
            }
        }
    }
    let a = drain(&mut req.get_mut().0, sink, &mut stats.decode_errors);
    let b = drain(&mut resp.get_mut().0, sink, &mut stats.decode_errors);
    stats.req_records += a as u64;
    stats.resp_records += b as u64;
    sink.on_drained(a + b);
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{BUSY_PERIOD, DrainPeriod};

    #[test]
    fn period_is_short_while_records_arrive_and_backs_off_to_the_configured_one() {
        let idle = Duration::from_millis(5);
        let mut p = DrainPeriod::new(idle);
        assert_eq!(
            p.get(),
            idle,
            "an agent that has seen nothing waits the configured period"
        );
        p.after_drain(3);
        assert_eq!(p.get(), BUSY_PERIOD);
        p.after_drain(1);
        assert_eq!(p.get(), BUSY_PERIOD);
        let backoff: Vec<Duration> = (0..4)
            .map(|_| {
                p.after_drain(0);
                p.get()
            })
            .collect();
        let ms = Duration::from_millis;
        assert_eq!(backoff, [ms(2), ms(4), idle, idle]);
        p.after_drain(7);
        assert_eq!(
            p.get(),
            BUSY_PERIOD,
            "one drain with records is enough to speed up"
        );
    }

    #[test]
    fn a_configured_period_below_the_busy_one_is_kept() {
        let idle = Duration::from_micros(500);
        let mut p = DrainPeriod::new(idle);
        p.after_drain(10);
        assert_eq!(p.get(), idle);
        p.after_drain(0);
        assert_eq!(p.get(), idle);
    }
}
