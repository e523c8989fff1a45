//! Leader leases.
//!
//! A leader may answer reads from its own state while it holds a lease: a time before which
//! no other peer can have become leader. The lease is renewed only by quorum evidence (an
//! entry the leader proposed that committed, a heartbeat round a quorum acknowledged), and
//! always from the time the evidence was **sent**: a quorum that answered a message sent at
//! `t` cannot elect anyone else before `t + election timeout`, so `max_lease` is kept below the
//! election timeout.
//!
//! ```text
//!               renew(send_ts)                 inspect(ts)
//!   Expired ─────────────────▶ Valid(bound) ── ts < bound → Valid, else Expired
//!      ▲  expire()                │ suspect(now)
//!      └──────────────────────────┤
//!                                 ▼
//!                          Suspect(bound) ── renew(send_ts) with send_ts + max_lease ≥ bound
//!                                             → Valid; earlier evidence keeps it Suspect
//! ```
//!
//! The `RemoteLease` is the copy readers on other threads check: atomics shared with the
//! peer, created once per term, pushed only when the bound moved by more than `max_drift`,
//! and expired whenever the lease is suspected or expired (or a split applies).

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

/// What a lease says at a given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// Reads may be served locally.
    Valid,
    /// Leadership may be moving (a transfer, a merge): no local reads until cleared.
    Suspect,
    /// No lease: reads go through ReadIndex.
    Expired,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bound {
    Valid(Duration),
    Suspect(Duration),
}

/// The leader's lease, owned by the peer.
#[derive(Debug)]
pub struct Lease {
    bound: Option<Bound>,
    max_lease: Duration,
    max_drift: Duration,
    last_pushed: Duration,
    remote: Option<RemoteLease>,
}

impl Lease {
    /// An expired lease of at most `max_lease`, whose remote copy is refreshed when the bound
    /// moves by more than `max_drift`.
    pub fn new(max_lease: Duration, max_drift: Duration) -> Self {
        Lease { bound: None, max_lease, max_drift, last_pushed: Duration::ZERO, remote: None }
    }

    /// The longest a lease lasts.
    pub fn max_lease(&self) -> Duration {
        self.max_lease
    }

    /// Quorum evidence sent at `send_ts`: extends the lease to `send_ts + max_lease` (never
    /// shortens it). A suspect lease is cleared only by evidence sent at or after the
    /// suspicion.
    pub fn renew(&mut self, send_ts: Duration) {
        let bound = send_ts + self.max_lease;
        self.bound = match self.bound {
            Some(Bound::Valid(b)) if b >= bound => Some(Bound::Valid(b)),
            Some(Bound::Suspect(b)) if b > bound => Some(Bound::Suspect(b)),
            _ => Some(Bound::Valid(bound)),
        };
        if let Some(Bound::Valid(b)) = self.bound {
            if b > self.last_pushed + self.max_drift {
                self.last_pushed = b;
                if let Some(remote) = &self.remote {
                    remote.renew(b);
                }
            }
        }
    }

    /// Leadership may move (a `MsgTimeoutNow` was sent at `now`, or a merge began): no local
    /// reads until evidence sent after `now` renews the lease.
    pub fn suspect(&mut self, now: Duration) {
        self.expire_remote_lease();
        self.bound = Some(Bound::Suspect(now + self.max_lease));
    }

    /// No lease any more (the peer stepped down).
    pub fn expire(&mut self) {
        self.expire_remote_lease();
        self.bound = None;
    }

    /// Expires the remote copy only: local checks still see the lease, readers on other
    /// threads do not (a split applied: the region they would read is gone).
    pub fn expire_remote_lease(&mut self) {
        if let Some(remote) = self.remote.take() {
            remote.expire();
        }
    }

    /// A reader's request to renew could not be served: let the next reader ask again.
    pub fn clear_renewal_request(&self) {
        if let Some(remote) = &self.remote {
            remote.clear_renewal_request();
        }
    }

    /// The lease at time `ts`.
    pub fn inspect(&self, ts: Duration) -> LeaseState {
        match self.bound {
            Some(Bound::Suspect(_)) => LeaseState::Suspect,
            Some(Bound::Valid(b)) if ts < b => LeaseState::Valid,
            _ => LeaseState::Expired,
        }
    }

    /// A remote copy for `term`, if the lease is valid and none exists for this term yet. A
    /// copy of an older term is expired first.
    pub fn maybe_new_remote_lease(&mut self, term: u64) -> Option<RemoteLease> {
        if self.remote.as_ref().is_some_and(|r| r.term == term) {
            return None;
        }
        self.expire_remote_lease();
        let Some(Bound::Valid(bound)) = self.bound else {
            return None;
        };
        let remote = RemoteLease {
            expired_time: Arc::new(AtomicU64::new(nanos(bound))),
            renew_requested: Arc::new(AtomicBool::new(false)),
            term,
        };
        self.last_pushed = bound;
        self.remote = Some(remote.clone());
        Some(remote)
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// The copy of a lease that readers on other threads check. Clones share it.
#[derive(Clone, Debug)]
pub struct RemoteLease {
    expired_time: Arc<AtomicU64>,
    /// A reader asked the peer to renew and the bound has not moved since.
    renew_requested: Arc<AtomicBool>,
    term: u64,
}

impl RemoteLease {
    /// Valid if `ts` is before the bound the peer last pushed; never suspect (a suspected
    /// lease expires its remote copy).
    pub fn inspect(&self, ts: Duration) -> LeaseState {
        if nanos(ts) < self.expired_time.load(Ordering::Acquire) {
            LeaseState::Valid
        } else {
            LeaseState::Expired
        }
    }

    /// Whether a reader at `ts` should ask the peer to renew: the lease ends within `advance`
    /// and nobody asked since it was last pushed. True for one caller only (a
    /// compare-and-swap), so a hot region sends one request, not one per read.
    pub fn needs_renewal(&self, ts: Duration, advance: Duration) -> bool {
        let bound = self.expired_time.load(Ordering::Acquire);
        nanos(ts) < bound
            && nanos(ts + advance) >= bound
            && self
                .renew_requested
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// The renewal asked for could not be started: the next reader may ask again.
    pub fn clear_renewal_request(&self) {
        self.renew_requested.store(false, Ordering::Release);
    }

    /// The term this copy belongs to.
    pub fn term(&self) -> u64 {
        self.term
    }

    fn renew(&self, bound: Duration) {
        self.expired_time.store(nanos(bound), Ordering::Release);
        self.renew_requested.store(false, Ordering::Release);
    }

    fn expire(&self) {
        self.expired_time.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_millis(900);
    const DRIFT: Duration = Duration::from_millis(300);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn renewal_counts_from_the_send_time_and_never_shrinks() {
        let mut lease = Lease::new(MAX, DRIFT);
        assert_eq!(lease.inspect(ms(0)), LeaseState::Expired);
        lease.renew(ms(1000));
        assert_eq!(lease.inspect(ms(1899)), LeaseState::Valid);
        assert_eq!(lease.inspect(ms(1900)), LeaseState::Expired, "the bound is exclusive");
        lease.renew(ms(500)); // late evidence of an older round
        assert_eq!(lease.inspect(ms(1899)), LeaseState::Valid, "never shortened");
        lease.renew(ms(2000));
        assert_eq!(lease.inspect(ms(2899)), LeaseState::Valid);
        lease.expire();
        assert_eq!(lease.inspect(ms(2000)), LeaseState::Expired);
    }

    #[test]
    fn suspicion_is_cleared_only_by_later_evidence() {
        let mut lease = Lease::new(MAX, DRIFT);
        lease.renew(ms(1000));
        lease.suspect(ms(1100)); // MsgTimeoutNow sent
        assert_eq!(lease.inspect(ms(1100)), LeaseState::Suspect);
        assert_eq!(lease.inspect(ms(99_999)), LeaseState::Suspect, "suspect does not time out");
        lease.renew(ms(1050)); // an entry proposed before the transfer commits
        assert_eq!(lease.inspect(ms(1200)), LeaseState::Suspect, "older evidence keeps it suspect");
        lease.renew(ms(1100));
        assert_eq!(
            lease.inspect(ms(1200)),
            LeaseState::Valid,
            "evidence sent at the suspicion clears it"
        );
    }

    #[test]
    fn one_remote_copy_per_term_expired_with_the_lease() {
        let mut lease = Lease::new(MAX, DRIFT);
        assert!(lease.maybe_new_remote_lease(5).is_none(), "no copy of an expired lease");
        lease.renew(ms(1000));
        let remote = lease.maybe_new_remote_lease(5).unwrap();
        assert_eq!(remote.term(), 5);
        assert!(lease.maybe_new_remote_lease(5).is_none(), "one per term");
        assert_eq!(remote.inspect(ms(1899)), LeaseState::Valid);
        lease.suspect(ms(1100));
        assert_eq!(remote.inspect(ms(1100)), LeaseState::Expired, "suspecting expires the copy");

        lease.renew(ms(1200));
        let second = lease.maybe_new_remote_lease(6).unwrap();
        assert_eq!(second.inspect(ms(1300)), LeaseState::Valid);
        let third = lease.maybe_new_remote_lease(7).unwrap();
        assert_eq!(
            second.inspect(ms(1300)),
            LeaseState::Expired,
            "a new term expires the old copy"
        );
        lease.expire_remote_lease();
        assert_eq!(third.inspect(ms(1300)), LeaseState::Expired);
        assert_eq!(lease.inspect(ms(1300)), LeaseState::Valid, "the local lease survives");
    }

    #[test]
    fn one_reader_asks_for_renewal_near_expiry_until_the_bound_moves() {
        let mut lease = Lease::new(MAX, DRIFT);
        lease.renew(ms(1000));
        let remote = lease.maybe_new_remote_lease(1).unwrap(); // bound 1900
        let advance = ms(200);
        assert!(!remote.needs_renewal(ms(1600), advance), "far from expiry");
        assert!(remote.needs_renewal(ms(1750), advance));
        assert!(!remote.needs_renewal(ms(1760), advance), "asked once");
        assert!(!remote.needs_renewal(ms(1950), advance), "expired: nothing to renew");
        lease.renew(ms(1750)); // the renewal round: bound 2650, pushed
        assert!(remote.needs_renewal(ms(2500), advance), "asks again near the new bound");
        remote.clear_renewal_request();
        assert!(remote.needs_renewal(ms(2500), advance), "cleared by the peer");
    }

    #[test]
    fn the_remote_copy_moves_only_beyond_the_drift() {
        let mut lease = Lease::new(MAX, DRIFT);
        lease.renew(ms(1000));
        let remote = lease.maybe_new_remote_lease(1).unwrap(); // bound 1900
        lease.renew(ms(1200)); // bound 2100: moved 200 ms, within the drift
        assert_eq!(remote.inspect(ms(1950)), LeaseState::Expired, "not pushed yet");
        assert_eq!(lease.inspect(ms(1950)), LeaseState::Valid);
        lease.renew(ms(1400)); // bound 2300: moved 400 ms since the push
        assert_eq!(remote.inspect(ms(2299)), LeaseState::Valid);
        assert_eq!(remote.inspect(ms(2300)), LeaseState::Expired);
    }
}
