//! The router: the address book from FSM address (region id) to mailbox, plus the control
//! mailbox.
//!
//! Lookups are hot and read-mostly. Every `Router` handle keeps a small LRU cache of mailboxes
//! in front of one shared `RwLock<HashMap>`, so a hit costs no shared write and no lock at all;
//! a miss takes the read lock. A cached mailbox that was closed is noticed through its state
//! (one atomic load) and looked up again, so closing and re-registering need no cache
//! invalidation across threads. A handle is `Send` but not `Sync`: clone one per thread.

use std::{
    cell::RefCell,
    num::NonZeroUsize,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, RwLock,
    },
};

use lru::LruCache;
use rustc_hash::FxHashMap;

use crate::{
    mailbox::{BasicMailbox, Mailbox, Scheduler},
    Fsm, SendError,
};

/// Mailboxes a handle caches.
pub const ROUTER_CACHE_CAPACITY: usize = 1024;

/// Address used in errors about the control mailbox.
pub const CONTROL_ADDR: u64 = u64::MAX;

/// How often a periodic broadcast ([`Router::broadcast_normal_at`]) reaches a mailbox: an FSM
/// that needs no tick says so, and costs nothing per tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cadence {
    /// Every broadcast (the default of a registered mailbox).
    Every,
    /// Only the slow broadcasts (and rare ones).
    Slow,
    /// Only the rare broadcasts, which reach every mailbox.
    Rare,
}

/// The mailboxes at cadence `Every` and `Slow`, so that a broadcast costs what they number,
/// not what all do. May hold a mailbox closed meanwhile (dropped when met).
struct Cadences<N: Fsm> {
    every: FxHashMap<u64, BasicMailbox<N>>,
    slow: FxHashMap<u64, BasicMailbox<N>>,
}

impl<N: Fsm> Cadences<N> {
    fn set(&mut self, addr: u64, mailbox: BasicMailbox<N>, cadence: Cadence) {
        self.remove(addr);
        match cadence {
            Cadence::Every => drop(self.every.insert(addr, mailbox)),
            Cadence::Slow => drop(self.slow.insert(addr, mailbox)),
            Cadence::Rare => {}
        }
    }

    fn remove(&mut self, addr: u64) {
        self.every.remove(&addr);
        self.slow.remove(&addr);
    }

    fn clear(&mut self) {
        self.every.clear();
        self.slow.clear();
    }
}

struct Shared<N: Fsm, C: Fsm> {
    normals: RwLock<FxHashMap<u64, BasicMailbox<N>>>,
    cadences: Mutex<Cadences<N>>,
    control: BasicMailbox<C>,
    normal_scheduler: Scheduler<N>,
    control_scheduler: Scheduler<C>,
    shutdown: AtomicBool,
}

/// Delivers messages to FSMs by address. See the module docs.
pub struct Router<N: Fsm, C: Fsm> {
    shared: Arc<Shared<N, C>>,
    cache: RefCell<LruCache<u64, BasicMailbox<N>>>,
}

impl<N: Fsm, C: Fsm> Clone for Router<N, C> {
    /// A new handle with an empty cache.
    fn clone(&self) -> Self {
        Router { shared: self.shared.clone(), cache: new_cache() }
    }
}

fn new_cache<N: Fsm>() -> RefCell<LruCache<u64, BasicMailbox<N>>> {
    RefCell::new(LruCache::new(NonZeroUsize::new(ROUTER_CACHE_CAPACITY).expect("non-zero")))
}

impl<N: Fsm, C: Fsm> Router<N, C> {
    pub(crate) fn new(
        control: BasicMailbox<C>,
        normal_scheduler: Scheduler<N>,
        control_scheduler: Scheduler<C>,
    ) -> Self {
        let shared = Shared {
            normals: RwLock::new(FxHashMap::default()),
            cadences: Mutex::new(Cadences {
                every: FxHashMap::default(),
                slow: FxHashMap::default(),
            }),
            control,
            normal_scheduler,
            control_scheduler,
            shutdown: AtomicBool::new(false),
        };
        Router { shared: Arc::new(shared), cache: new_cache() }
    }

    /// Registers `mailbox` at `addr`. A mailbox already there is closed and its FSM dropped.
    pub fn register(&self, addr: u64, mailbox: BasicMailbox<N>) {
        self.cadences().set(addr, mailbox.clone(), Cadence::Every);
        let old = self.write_map().insert(addr, mailbox);
        if let Some(old) = old {
            old.close();
        }
        self.cache.borrow_mut().pop(&addr);
    }

    /// Registers many mailboxes under one lock.
    pub fn register_all(&self, mailboxes: impl IntoIterator<Item = (u64, BasicMailbox<N>)>) {
        let mut map = self.write_map();
        let mut cadences = self.cadences();
        let mut cache = self.cache.borrow_mut();
        for (addr, mailbox) in mailboxes {
            cadences.set(addr, mailbox.clone(), Cadence::Every);
            if let Some(old) = map.insert(addr, mailbox) {
                old.close();
            }
            cache.pop(&addr);
        }
    }

    /// A handle that sends to `addr` without the router, or `None` if nothing is there.
    pub fn mailbox(&self, addr: u64) -> Option<Mailbox<N>> {
        let mailbox = self.lookup(addr)?;
        Some(Mailbox::new(addr, mailbox, self.shared.normal_scheduler.clone()))
    }

    /// Whether a live mailbox is registered at `addr`.
    pub fn contains(&self, addr: u64) -> bool {
        self.lookup(addr).is_some()
    }

    /// Number of registered mailboxes.
    pub fn len(&self) -> usize {
        self.read_map().len()
    }

    /// Whether no mailbox is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends `msg` to `addr` unless the mailbox is missing, full or closed; errors hand the
    /// message back.
    pub fn try_send(&self, addr: u64, msg: N::Message) -> Result<(), SendError<N::Message>> {
        self.send_with(addr, msg, false)
    }

    /// Sends `msg` to `addr` even beyond the mailbox capacity.
    pub fn force_send(&self, addr: u64, msg: N::Message) -> Result<(), SendError<N::Message>> {
        self.send_with(addr, msg, true)
    }

    fn send_with(
        &self,
        addr: u64,
        msg: N::Message,
        force: bool,
    ) -> Result<(), SendError<N::Message>> {
        if self.is_shutdown() {
            return Err(SendError::Closed { addr, msg });
        }
        let Some(mailbox) = self.lookup(addr) else {
            // Shutdown sets the flag before it empties the map, so a send that finds the map
            // empty because of a shutdown sees the flag here.
            if self.is_shutdown() {
                return Err(SendError::Closed { addr, msg });
            }
            return Err(SendError::NotFound { addr, msg });
        };
        let scheduler = &self.shared.normal_scheduler;
        let res = if force {
            mailbox.force_send(addr, msg, scheduler)
        } else {
            mailbox.try_send(addr, msg, scheduler)
        };
        if let Err(SendError::Closed { .. }) = &res {
            self.cache.borrow_mut().pop(&addr);
        }
        res
    }

    /// Sends `msg` to the control FSM unless its mailbox is full or the system is shut down.
    pub fn send_control(&self, msg: C::Message) -> Result<(), SendError<C::Message>> {
        if self.is_shutdown() {
            return Err(SendError::Closed { addr: CONTROL_ADDR, msg });
        }
        self.shared.control.try_send(CONTROL_ADDR, msg, &self.shared.control_scheduler)
    }

    /// Sends a message made by `make` to every registered mailbox, ignoring capacity. Returns
    /// how many mailboxes took one.
    pub fn broadcast_normal(&self, mut make: impl FnMut() -> N::Message) -> usize {
        if self.is_shutdown() {
            return 0;
        }
        let map = self.read_map();
        let scheduler = &self.shared.normal_scheduler;
        map.iter().filter(|(addr, mb)| mb.force_send(**addr, make(), scheduler).is_ok()).count()
    }

    /// Like [`Router::broadcast_normal`], but only to the mailboxes whose cadence `reach`
    /// covers: `Every` reaches those at `Every`, `Slow` those at `Every` or `Slow`, `Rare`
    /// all. A periodic message (a tick) so costs nothing for an FSM that needs none. Returns
    /// how many got it.
    pub fn broadcast_normal_at(
        &self,
        reach: Cadence,
        mut make: impl FnMut() -> N::Message,
    ) -> usize {
        if reach == Cadence::Rare {
            return self.broadcast_normal(make);
        }
        if self.is_shutdown() {
            return 0;
        }
        let scheduler = &self.shared.normal_scheduler;
        let mut cadences = self.cadences();
        let Cadences { every, slow } = &mut *cadences;
        every.retain(|addr, mb| mb.force_send(*addr, make(), scheduler).is_ok());
        if reach == Cadence::Slow {
            slow.retain(|addr, mb| mb.force_send(*addr, make(), scheduler).is_ok());
            return every.len() + slow.len();
        }
        every.len()
    }

    /// Sets how often periodic broadcasts reach the mailbox at `addr` (a new one is at
    /// `Every`). Returns whether a mailbox was there. Messages sent to it directly still
    /// arrive whatever its cadence.
    pub fn set_cadence(&self, addr: u64, cadence: Cadence) -> bool {
        let Some(mailbox) = self.lookup(addr) else {
            return false;
        };
        self.cadences().set(addr, mailbox, cadence);
        true
    }

    /// Unregisters and closes the mailbox at `addr`: later sends fail with `Closed` or
    /// `NotFound`, and its FSM is dropped (now if idle, or by the poller holding it). Returns
    /// whether a mailbox was there.
    pub fn close(&self, addr: u64) -> bool {
        self.cache.borrow_mut().pop(&addr);
        self.cadences().remove(addr);
        let removed = self.write_map().remove(&addr);
        match removed {
            Some(mailbox) => {
                mailbox.close();
                true
            }
            None => false,
        }
    }

    /// Refuses every later send. The batch system calls this first when it shuts down.
    pub fn shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::Release);
    }

    /// Whether [`Router::shutdown`] was called.
    pub fn is_shutdown(&self) -> bool {
        self.shared.shutdown.load(Ordering::Acquire)
    }

    /// Closes every mailbox, in address order, then the control mailbox.
    pub(crate) fn close_all(&self) {
        self.cadences().clear();
        let mut all: Vec<_> = self.write_map().drain().collect();
        all.sort_by_key(|(addr, _)| *addr);
        for (_, mailbox) in all {
            mailbox.close();
        }
        self.cache.borrow_mut().clear();
        self.shared.control.close();
    }

    pub(crate) fn normal_scheduler(&self) -> &Scheduler<N> {
        &self.shared.normal_scheduler
    }

    pub(crate) fn control_scheduler(&self) -> &Scheduler<C> {
        &self.shared.control_scheduler
    }

    fn lookup(&self, addr: u64) -> Option<BasicMailbox<N>> {
        let mut cache = self.cache.borrow_mut();
        if let Some(mailbox) = cache.get(&addr) {
            if !mailbox.is_closed() {
                return Some(mailbox.clone());
            }
            cache.pop(&addr);
        }
        let mailbox = self.read_map().get(&addr).filter(|m| !m.is_closed()).cloned()?;
        cache.put(addr, mailbox.clone());
        Some(mailbox)
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, FxHashMap<u64, BasicMailbox<N>>> {
        // A poisoned lock only means a panic elsewhere while holding it; the map stays valid.
        self.shared.normals.read().unwrap_or_else(|e| e.into_inner())
    }

    fn cadences(&self) -> std::sync::MutexGuard<'_, Cadences<N>> {
        self.shared.cadences.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, FxHashMap<u64, BasicMailbox<N>>> {
        self.shared.normals.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `mailbox` is what is registered at `addr` (used by tests of re-registration).
    pub fn is_registered(&self, addr: u64, mailbox: &BasicMailbox<N>) -> bool {
        self.read_map().get(&addr).is_some_and(|m| m.same(mailbox))
    }
}
