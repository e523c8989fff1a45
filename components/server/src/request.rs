//! What a request names (its region, epoch and peer) and what a write carries, and the
//! futures their answers arrive on.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Condvar, Mutex},
    task::{Context as TaskContext, Poll, Waker},
    time::{Duration, Instant},
};

use engine::rocks::RocksSnapshot;
use local_reader::RegionSnapshot;
use proto::{
    metapb,
    raft_cmdpb::{CmdType, RaftCmdRequest, RaftCmdResponse, RaftRequestHeader, Request},
};
use raftstore::ReadContext;

use crate::{Error, Result};

/// Where a request goes and what it assumes: the region (and the epoch its keys were routed
/// with), the peer expected to serve it, optionally the term, and for a read whether a
/// follower may serve it.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// The region.
    pub region_id: u64,
    /// The region's epoch as the caller knows it; a stale one is refused with the current
    /// regions (`EpochNotMatch`).
    pub region_epoch: metapb::RegionEpoch,
    /// The peer expected to serve the request (its store must be this node's).
    pub peer: metapb::Peer,
    /// The term expected (0: any).
    pub term: u64,
    /// A read a follower may serve (follower read), not only the leader.
    pub replica_read: bool,
}

impl Context {
    /// A request for `region` (at its current epoch) to `peer`.
    pub fn new(region: &metapb::Region, peer: &metapb::Peer) -> Self {
        Context {
            region_id: region.id,
            region_epoch: region.get_region_epoch().clone(),
            peer: peer.clone(),
            term: 0,
            replica_read: false,
        }
    }

    /// Lets a follower serve the read.
    pub fn replica_read(mut self) -> Self {
        self.replica_read = true;
        self
    }

    pub(crate) fn header(&self) -> RaftRequestHeader {
        let mut h = RaftRequestHeader::default();
        h.region_id = self.region_id;
        h.set_region_epoch(self.region_epoch.clone());
        h.set_peer(self.peer.clone());
        h.term = self.term;
        h.replica_read = self.replica_read;
        h
    }

    pub(crate) fn read_context(&self) -> ReadContext {
        ReadContext { header: self.header(), read_id: None }
    }
}

/// One change of a write batch (in the default column family).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Modify {
    /// Sets `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Removes `key`.
    Delete(Vec<u8>),
    /// Removes every key in `[start, end)`, both inside the region; an empty `end` means
    /// +infinity, so only the last region of the key space takes one.
    DeleteRange(Vec<u8>, Vec<u8>),
}

impl Modify {
    fn request(&self) -> Request {
        let mut r = Request::default();
        match self {
            Modify::Put(k, v) => {
                r.set_cmd_type(CmdType::Put);
                r.mut_put().key = k.clone();
                r.mut_put().value = v.clone();
            }
            Modify::Delete(k) => {
                r.set_cmd_type(CmdType::Delete);
                r.mut_delete().key = k.clone();
            }
            Modify::DeleteRange(s, e) => {
                r.set_cmd_type(CmdType::DeleteRange);
                r.mut_delete_range().start_key = s.clone();
                r.mut_delete_range().end_key = e.clone();
            }
        }
        r
    }
}

/// The command for a write batch of `mods` under `ctx`.
pub(crate) fn write_command(ctx: &Context, mods: &[Modify]) -> RaftCmdRequest {
    let mut req = RaftCmdRequest::default();
    req.set_header(ctx.header());
    req.requests = mods.iter().map(Modify::request).collect::<Vec<_>>().into();
    req
}

/// The outcome a command's response carries.
pub(crate) fn outcome(resp: RaftCmdResponse) -> Result<RaftCmdResponse> {
    if resp.get_header().has_error() {
        Err(Error::from_store(raftstore::Error::from_errorpb(resp.get_header().get_error())))
    } else {
        Ok(resp)
    }
}

/// A snapshot of one region, bounded to its range.
pub type Snapshot = RegionSnapshot<RocksSnapshot>;

/// An answer that arrives later: a future that resolves once, to the result or to the error
/// the request ended in, and that a caller without an executor can wait on with a deadline.
/// An answer dropped unsent resolves to [`Error::Undetermined`]: never silently lost.
pub struct Pending<T> {
    slot: Arc<Slot<T>>,
}

/// Gives the answer of a [`Pending`].
pub(crate) struct Answer<T> {
    slot: Arc<Slot<T>>,
    sent: bool,
}

struct Slot<T> {
    state: Mutex<SlotState<T>>,
    ready: Condvar,
    /// The error of an answer dropped unsent.
    dropped: fn() -> Error,
}

struct SlotState<T> {
    value: Option<Result<T>>,
    closed: bool,
    waker: Option<Waker>,
}

impl<T> Pending<T> {
    /// A pending answer of a write and what gives it (dropped unsent: undetermined).
    pub(crate) fn channel() -> (Answer<T>, Pending<T>) {
        Self::channel_dropped_as(|| Error::Undetermined("the answer was dropped unsent".into()))
    }

    /// A pending answer of a read and what gives it (dropped unsent: no answer, retryable).
    pub(crate) fn read_channel() -> (Answer<T>, Pending<T>) {
        Self::channel_dropped_as(|| Error::NoAnswer("the answer was dropped unsent".into()))
    }

    fn channel_dropped_as(dropped: fn() -> Error) -> (Answer<T>, Pending<T>) {
        let state = SlotState { value: None, closed: false, waker: None };
        let slot = Arc::new(Slot { state: Mutex::new(state), ready: Condvar::new(), dropped });
        (Answer { slot: slot.clone(), sent: false }, Pending { slot })
    }

    /// An answer known at once.
    pub(crate) fn ready(res: Result<T>) -> Pending<T> {
        let (answer, pending) = Pending::channel();
        answer.send(res);
        pending
    }

    /// Waits on this thread for the answer, at most `timeout`; `None` if it has not come.
    pub fn wait_timeout(self, timeout: Duration) -> Option<Result<T>> {
        let deadline = Instant::now().checked_add(timeout);
        let dropped = self.slot.dropped;
        let mut state = self.slot.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(res) = state.take(dropped) {
                return Some(res);
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600), // "forever": wait in long steps
            };
            if left.is_zero() {
                return None;
            }
            state = self.slot.ready.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

impl<T> SlotState<T> {
    fn take(&mut self, dropped: fn() -> Error) -> Option<Result<T>> {
        self.value.take().or_else(|| self.closed.then(|| Err(dropped())))
    }
}

impl<T> Answer<T> {
    /// Gives the answer.
    pub(crate) fn send(mut self, res: Result<T>) {
        self.sent = true;
        self.slot.fill(|s| s.value = Some(res));
    }
}

impl<T> Slot<T> {
    fn fill(&self, f: impl FnOnce(&mut SlotState<T>)) {
        let waker = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut state);
            state.waker.take()
        };
        self.ready.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for Answer<T> {
    fn drop(&mut self) {
        if !self.sent {
            self.slot.fill(|s| s.closed = true);
        }
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<T>> {
        let dropped = self.slot.dropped;
        let mut state = self.slot.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.take(dropped) {
            Some(res) => Poll::Ready(res),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_arrives_once_by_either_way_and_a_dropped_one_is_undetermined() {
        let (answer, pending) = Pending::<u32>::channel();
        std::thread::spawn(move || answer.send(Ok(7)));
        assert_eq!(pending.wait_timeout(Duration::from_secs(5)).unwrap().unwrap(), 7);

        let (answer, pending) = Pending::<u32>::channel();
        drop(answer);
        let res = futures::executor::block_on(pending);
        assert!(matches!(res, Err(Error::Undetermined(_))), "{res:?}");

        let (_answer, pending) = Pending::<u32>::channel();
        assert!(pending.wait_timeout(Duration::from_millis(20)).is_none());
        assert_eq!(futures::executor::block_on(Pending::ready(Ok(3))).unwrap(), 3);
    }
}
