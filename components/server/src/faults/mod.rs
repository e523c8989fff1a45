//! Faults on the in-process network, for simulations and tests: every raft message between
//! the nodes of a [`LocalNetwork`] passes a list of [`Filter`]s that cut, drop, delay,
//! duplicate or reorder it, as a real network would, before it is delivered.
//!
//! ```text
//! node A: Transport::send ──▶ LocalNetwork ──▶ FaultNetwork: each filter's Verdict
//!   Pass ──▶ deliver now        Drop ──▶ lost (the sender cannot tell)
//!   Delay(d) ──▶ timer thread ──▶ delivered after d (messages overtake each other)
//!   Duplicate(d1, d2) ──▶ delivered after d1, and a copy after d2
//! ```
//!
//! region-sim's nemesis and the test harness both run on this; the filters of general use
//! live in [`filters`].

pub mod filters;

use std::{
    collections::BinaryHeap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, RwLock, Weak,
    },
    time::{Duration, Instant},
};

use proto::raft_serverpb::RaftMessage;
use raftstore::transport::TransportError;

use crate::transport::{Intercept, LocalNetwork};

/// What becomes of a message on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered now.
    Pass,
    /// Lost.
    Drop,
    /// Delivered after this long (messages may overtake each other, as on a network).
    Delay(Duration),
    /// Delivered twice: after the first delay, and a copy after the second.
    Duplicate(Duration, Duration),
}

/// Decides what happens to a message from store `from` to store `to`.
pub trait Filter: Send + Sync {
    /// `false` drops the message. Filters that only drop implement this.
    fn allow(&self, _from: u64, _to: u64, _msg: &RaftMessage) -> bool {
        true
    }

    /// The verdict; by default [`Filter::allow`] decides between pass and drop.
    fn verdict(&self, from: u64, to: u64, msg: &RaftMessage) -> Verdict {
        if self.allow(from, to, msg) {
            Verdict::Pass
        } else {
            Verdict::Drop
        }
    }
}

/// A delayed message and when it is due.
struct Delayed {
    due: Instant,
    seq: u64,
    msg: RaftMessage,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq)) // earliest first in a max-heap
    }
}

/// The filters between the nodes of a [`LocalNetwork`]: every message passes them (dropped,
/// delayed, duplicated) before it is delivered.
pub struct FaultNetwork {
    local: Arc<LocalNetwork>,
    filters: RwLock<Vec<(FilterId, Box<dyn Filter>)>>,
    next_id: AtomicU64,
    delayed: Mutex<Option<crossbeam_channel::Sender<Delayed>>>,
    delay_seq: AtomicU64,
}

/// Names a filter added to a [`FaultNetwork`], to remove it alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FilterId(u64);

/// What the local network calls: the filters of a [`FaultNetwork`] it does not own.
struct Filters(Weak<FaultNetwork>);

impl Intercept for Filters {
    fn send(
        &self,
        _: &Arc<LocalNetwork>,
        from: u64,
        msg: RaftMessage,
    ) -> Result<(), TransportError> {
        match self.0.upgrade() {
            Some(network) => network.deliver(from, msg),
            None => Ok(()), // the network is going away: lost, as on a network
        }
    }
}

impl FaultNetwork {
    /// Filters over a new [`LocalNetwork`], none set.
    pub fn new() -> Arc<Self> {
        Self::over(LocalNetwork::new())
    }

    /// Filters over `local` (which routes every message through them from now on), none set.
    pub fn over(local: Arc<LocalNetwork>) -> Arc<Self> {
        let network = Arc::new(FaultNetwork {
            local,
            filters: RwLock::default(),
            next_id: AtomicU64::new(0),
            delayed: Mutex::default(),
            delay_seq: AtomicU64::new(0),
        });
        let filters = Arc::new(Filters(Arc::downgrade(&network)));
        network.local.set_interceptor(Some(filters));
        network
    }

    /// The network under the filters, for nodes to open on.
    pub fn local(&self) -> Arc<LocalNetwork> {
        self.local.clone()
    }

    /// Queues `msg` for delivery after `delay`, on a timer thread started on first use. The
    /// thread holds the network weakly and ends with it.
    fn deliver_later(self: &Arc<Self>, msg: RaftMessage, delay: Duration) {
        let mut slot = self.delayed.lock().unwrap_or_else(|e| e.into_inner());
        let tx = slot.get_or_insert_with(|| {
            let (tx, rx) = crossbeam_channel::unbounded::<Delayed>();
            let network = Arc::downgrade(self);
            std::thread::Builder::new()
                .name("net-delay".into())
                .spawn(move || run_delays(rx, network))
                .expect("spawn the delay thread");
            tx
        });
        let seq = self.delay_seq.fetch_add(1, Ordering::Relaxed);
        let _ = tx.send(Delayed { due: Instant::now() + delay, seq, msg });
    }

    /// Adds a filter; the id removes it.
    pub fn add_filter(&self, filter: Box<dyn Filter>) -> FilterId {
        let id = FilterId(self.next_id.fetch_add(1, Ordering::Relaxed));
        self.filters.write().unwrap_or_else(|e| e.into_inner()).push((id, filter));
        id
    }

    /// Removes one filter (nothing if it is gone already).
    pub fn remove_filter(&self, id: FilterId) {
        self.filters.write().unwrap_or_else(|e| e.into_inner()).retain(|(i, _)| *i != id);
    }

    /// Removes every filter. Messages already delayed are still delivered when due.
    pub fn clear_filters(&self) {
        self.filters.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn deliver(self: &Arc<Self>, from: u64, msg: RaftMessage) -> Result<(), TransportError> {
        let to = msg.get_to_peer().store_id;
        let (mut delay, mut copy) = (Duration::ZERO, None::<Duration>);
        for (_, f) in self.filters.read().unwrap_or_else(|e| e.into_inner()).iter() {
            match f.verdict(from, to, &msg) {
                Verdict::Pass => {}
                Verdict::Drop => return Ok(()), // lost on the wire: the sender cannot tell
                Verdict::Delay(d) => delay = delay.max(d),
                Verdict::Duplicate(d, again) => {
                    delay = delay.max(d);
                    copy = Some(copy.map_or(again, |c| c.max(again)));
                }
            }
        }
        if let Some(again) = copy {
            self.deliver_later(msg.clone(), again);
        }
        if !delay.is_zero() {
            self.deliver_later(msg, delay);
            return Ok(());
        }
        self.deliver_now(msg)
    }

    /// Hands `msg` to its node now, past every filter (a held message let go).
    pub fn deliver_now(&self, msg: RaftMessage) -> Result<(), TransportError> {
        self.local.deliver_now(msg)
    }
}

fn run_delays(rx: crossbeam_channel::Receiver<Delayed>, network: Weak<FaultNetwork>) {
    let mut heap = BinaryHeap::new();
    loop {
        let timeout = heap.peek().map_or(Duration::from_millis(100), |d: &Delayed| {
            d.due.saturating_duration_since(Instant::now())
        });
        match rx.recv_timeout(timeout) {
            Ok(d) => heap.push(d),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
        let Some(network) = network.upgrade() else { return };
        while heap.peek().is_some_and(|d| d.due <= Instant::now()) {
            let d = heap.pop().expect("peeked");
            let _ = network.deliver_now(d.msg); // a store that went away: lost, as on a network
        }
    }
}
