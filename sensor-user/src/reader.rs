//! The asynchronous ring-buffer reader: one task drains both rings and hands each decoded
//! record to a sink.
//!
//! Wakeups (see the kernel's `emit.rs`): records are mostly submitted without waking us, so the
//! loop drains on a short timer as well as on readiness. Latency is at most one timer period
//! while the ring is below the kernel's wakeup threshold; a burst crossing the threshold wakes
//! us at once.
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

/// Reads both rings until `shutdown` fires, then drains them one last time.
pub async fn run(
    req: RingBuf<MapData>,
    resp: RingBuf<MapData>,
    drain_every: Duration,
    sink: &mut dyn EventSink,
    mut shutdown: broadcast::Receiver<()>,
) -> std::io::Result<ReaderStats> {
    let mut req = register(Ring(req))?;
    let mut resp = register(Ring(resp))?;
    let mut stats = ReaderStats::default();
    let mut tick = tokio::time::interval(drain_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
            _ = tick.tick() => {
                stats.timer_drains += 1;
                let a = drain(&mut req.get_mut().0, sink, &mut stats.decode_errors);
                let b = drain(&mut resp.get_mut().0, sink, &mut stats.decode_errors);
                stats.req_records += a as u64;
                stats.resp_records += b as u64;
                sink.on_drained(a + b);
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
