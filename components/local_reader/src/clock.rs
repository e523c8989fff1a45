//! Time for leases: a `Clock` trait, the monotonic raw clock leases run on in production, a
//! manual clock for tests, and a clock of adjustable rate for fault simulations.
//!
//! Lease code never reads the system clock itself: it asks a `Clock`, so lease expiry is
//! tested by moving a manual clock, not by sleeping.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
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

/// A clock running at an adjustable rate over another: since the last change of rate, time
/// advances `rate` times as fast as on the base clock (0.95: 5% slow). Readings stay monotonic
/// across changes. For a fault simulation's clock skew on one store.
pub struct SkewedClock {
    base: Arc<dyn Clock>,
    /// (base reading, own reading) at the last change of rate, and the rate since.
    state: Mutex<(Duration, Duration, f64)>,
}

impl SkewedClock {
    /// A clock at `base`'s time, running at `base`'s rate until told otherwise.
    pub fn new(base: Arc<dyn Clock>) -> Self {
        let now = base.now();
        SkewedClock { base, state: Mutex::new((now, now, 1.0)) }
    }

    /// From now on, time runs `rate` times as fast as on the base clock. A rate that is not a
    /// positive finite number is taken as 1.
    pub fn set_rate(&self, rate: f64) {
        let rate = if rate.is_finite() && rate > 0.0 { rate } else { 1.0 };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let base_now = self.base.now();
        let own_now = Self::reading(&state, base_now);
        *state = (base_now, own_now, rate);
    }

    /// The rate now.
    pub fn rate(&self) -> f64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).2
    }

    fn reading(state: &(Duration, Duration, f64), base_now: Duration) -> Duration {
        let (base_at, own_at, rate) = *state;
        own_at + base_now.saturating_sub(base_at).mul_f64(rate)
    }
}

impl Clock for SkewedClock {
    fn now(&self) -> Duration {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Self::reading(&state, self.base.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skewed_clock_runs_at_its_rate_and_never_goes_back() {
        let base = ManualClock::new(Duration::from_secs(10));
        let clock = SkewedClock::new(Arc::new(base.clone()));
        assert_eq!(clock.now(), Duration::from_secs(10));
        clock.set_rate(0.5);
        base.advance(Duration::from_secs(2));
        assert_eq!(clock.now(), Duration::from_secs(11), "half as fast");
        clock.set_rate(2.0);
        assert_eq!(clock.now(), Duration::from_secs(11), "a change of rate moves nothing");
        base.advance(Duration::from_secs(1));
        assert_eq!(clock.now(), Duration::from_secs(13), "twice as fast");
        clock.set_rate(f64::NAN);
        assert_eq!(clock.rate(), 1.0);
    }

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
