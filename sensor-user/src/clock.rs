//! Clocks: the kernel stamps events with `CLOCK_BOOTTIME`; output uses wall-clock time.

/// Nanoseconds of a clock.
fn now_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into `ts`; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &raw mut ts) };
    // Both fields are non-negative for these clocks.
    ts.tv_sec
        .cast_unsigned()
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec.cast_unsigned())
}

/// `CLOCK_BOOTTIME` now, in nanoseconds: the clock of `bpf_ktime_get_boot_ns`.
pub fn boot_ns() -> u64 {
    now_ns(libc::CLOCK_BOOTTIME)
}

/// Wall-clock time now, in nanoseconds since the Unix epoch.
pub fn unix_ns() -> u64 {
    now_ns(libc::CLOCK_REALTIME)
}

/// Converts `CLOCK_BOOTTIME` stamps to Unix time with an offset taken once.
#[derive(Clone, Copy, Debug)]
pub struct BootToUnix {
    offset: i128,
}

impl BootToUnix {
    /// Samples both clocks now.
    pub fn now() -> Self {
        Self {
            offset: i128::from(unix_ns()) - i128::from(boot_ns()),
        }
    }

    /// Converts a boot-time stamp.
    pub fn convert(self, boot_ns: u64) -> u64 {
        u64::try_from(i128::from(boot_ns) + self.offset).unwrap_or(0)
    }
}
