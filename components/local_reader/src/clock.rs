//! Time for leases: a `Clock` trait, the monotonic raw clock leases run on in production, and
//! a manual clock for tests.
//!
//! Lease code never reads the system clock itself: it asks a `Clock`, so lease expiry is
//! tested by moving a manual clock, not by sleeping.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

/// A source of monotonic time: a duration since some fixed, arbitrary origin. Readings never
/// go backwards.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Duration;
}

/// `CLOCK_MONOTONIC_RAW`: monotonic and, unlike `CLOCK_MONOTONIC`, not slewed by NTP, so a
/// lease measured on it is not stretched or shrunk by clock adjustments.
#[derive(Clone, Copy, Debug, Default)]
pub struct MonotonicRawClock;

impl Clock for MonotonicRawClock {
    fn now(&self) -> Duration {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC_RAW exists on Linux.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_RAW, &mut ts) };
        assert_eq!(rc, 0, "CLOCK_MONOTONIC_RAW is unavailable");
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
}

/// A clock that moves only when told, for tests. Clones share one time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at `start`.
    pub fn new(start: Duration) -> Self {
        ManualClock { nanos: Arc::new(AtomicU64::new(start.as_nanos() as u64)) }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.nanos.fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_raw_never_goes_back() {
        let clock = MonotonicRawClock;
        let mut last = clock.now();
        for _ in 0..1000 {
            let now = clock.now();
            assert!(now >= last);
            last = now;
        }
    }

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = ManualClock::new(Duration::from_secs(5));
        let other = clock.clone();
        assert_eq!(clock.now(), Duration::from_secs(5));
        other.advance(Duration::from_millis(1500));
        assert_eq!(clock.now(), Duration::from_millis(6500));
    }
}
