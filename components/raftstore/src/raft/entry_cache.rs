//! `EntryCache`: the tail of a peer's raft log, kept in memory so that what was just appended
//! is not read back from the raft engine to be sent to followers, applied, or asked its term.
//!
//! ```text
//!  raft engine:  [truncated+1 ............................................ last]
//!  cache:                              [first ............................ last]
//!                                       ▲ entries before it were applied (and, on a
//!                                         leader, replicated to every follower), or
//!                                         evicted to keep the cache within its budget
//! ```
//!
//! Invariant: the cache is empty or holds a contiguous run of entries that ends at the log's
//! last index, each identical to the entry the raft engine holds (or will hold once the round's
//! batch is written) at that index. Every change of the log goes through it: appends (which
//! may replace a tail), compaction, and a snapshot that replaces the whole log.
//!
//! It also remembers the index and term of the entry just before its first one (the last it
//! dropped from the front), while that entry is still the log's: raft asks the term of the
//! commit index and of the entry before an append, and an emptied cache would send both to
//! the raft engine.

use std::collections::VecDeque;

use proto::eraftpb::Entry;

/// Bytes of log tail a peer keeps in memory unless configured otherwise.
pub const DEFAULT_ENTRY_CACHE_LIMIT: usize = 1 << 20;

/// Capacity (in entries) above which an emptied cache gives its buffer back.
const KEEP_CAPACITY: usize = 64;

/// The in-memory tail of one peer's raft log.
#[derive(Debug)]
pub struct EntryCache {
    entries: VecDeque<Entry>,
    /// Approximate bytes held (see [`entry_bytes`]).
    bytes: usize,
    /// Most bytes held; older entries are dropped beyond it (0: cache nothing).
    limit: usize,
    /// `(index, term)` of the entry just before the first cached one (or, with none cached,
    /// of the log's last entry), when known.
    before: Option<(u64, u64)>,
}

/// The bytes an entry holds in memory, approximately: its payload and a fixed overhead.
fn entry_bytes(e: &Entry) -> usize {
    e.data.len() + e.context.len() + std::mem::size_of::<Entry>()
}

impl EntryCache {
    /// An empty cache holding at most `limit` bytes of entries.
    pub fn new(limit: usize) -> Self {
        EntryCache { entries: VecDeque::new(), bytes: 0, limit, before: None }
    }

    /// Index of the first cached entry, if any.
    pub fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.index)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Approximate bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes in `entries` just appended to the log: they replace any cached entry at or after
    /// their first index. Entries that do not follow on from the cache replace it whole. Then
    /// the oldest entries go until the cache is within its limit.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first().map(|e| e.index) else {
            return;
        };
        match self.first_index() {
            Some(cached) if cached < first && first <= self.next_index() => {
                self.truncate_from(first)
            }
            Some(_) => self.clear(),
            // Empty: what it remembers stays true only if the append follows on from it.
            None => {
                if self.before.is_some_and(|(index, _)| index + 1 != first) {
                    self.before = None;
                }
            }
        }
        for e in entries {
            self.bytes += entry_bytes(e);
            self.entries.push_back(e.clone());
        }
        while self.bytes > self.limit {
            self.pop_front();
        }
    }

    /// The term of the cached entry at `index`, or of the entry just before the first one.
    pub fn term(&self, index: u64) -> Option<u64> {
        match self.position(index) {
            Some(i) => Some(self.entries[i].term),
            None => self.before.filter(|(i, _)| *i == index).map(|(_, term)| term),
        }
    }

    /// Appends the cached entries of `[low, high)` to `buf`: all of them if every index in the
    /// range is cached, none otherwise. Returns whether it did.
    pub fn fetch(&self, low: u64, high: u64, buf: &mut Vec<Entry>) -> bool {
        if low >= high {
            return true;
        }
        let (Some(start), Some(_)) = (self.position(low), self.position(high - 1)) else {
            return false;
        };
        let end = start + (high - low) as usize;
        buf.extend(self.entries.range(start..end).cloned());
        true
    }

    /// Drops the cached entries before `index`: applied, and no longer needed by any follower
    /// (or evicted by choice). An emptied cache gives back a large buffer.
    pub fn compact_to(&mut self, index: u64) {
        while self.first_index().is_some_and(|first| first < index) {
            self.pop_front();
        }
        if self.entries.is_empty() && self.entries.capacity() > KEEP_CAPACITY {
            self.entries = VecDeque::new();
        }
    }

    /// Drops everything (the log was replaced by a snapshot).
    pub fn clear(&mut self) {
        self.entries = VecDeque::new();
        self.bytes = 0;
        self.before = None;
    }

    fn next_index(&self) -> u64 {
        self.entries.back().map_or(0, |e| e.index + 1)
    }

    fn position(&self, index: u64) -> Option<usize> {
        let first = self.first_index()?;
        (first <= index && index < self.next_index()).then(|| (index - first) as usize)
    }

    fn truncate_from(&mut self, index: u64) {
        while self.entries.back().is_some_and(|e| e.index >= index) {
            let e = self.entries.pop_back().expect("checked above");
            self.bytes -= entry_bytes(&e);
        }
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= entry_bytes(&e);
            self.before = Some((e.index, e.term));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ents(range: std::ops::Range<u64>, term: u64) -> Vec<Entry> {
        range
            .map(|index| {
                let mut e = Entry::default();
                e.index = index;
                e.term = term;
                e.data = vec![0; 10].into();
                e
            })
            .collect()
    }

    fn fetched(c: &EntryCache, low: u64, high: u64) -> Option<Vec<(u64, u64)>> {
        let mut buf = Vec::new();
        c.fetch(low, high, &mut buf).then(|| buf.iter().map(|e| (e.index, e.term)).collect())
    }

    #[test]
    fn a_conflicting_append_replaces_the_tail_and_a_gap_replaces_all() {
        let mut c = EntryCache::new(1 << 20);
        c.append(&ents(6..10, 1));
        c.append(&ents(8..9, 2)); // a new leader overwrote 8 and 9
        assert_eq!(fetched(&c, 6, 9), Some(vec![(6, 1), (7, 1), (8, 2)]));
        assert_eq!(c.term(9), None, "the replaced tail is gone");
        c.append(&ents(5..7, 3)); // before the cache's first entry: the whole log was replaced
        assert_eq!(c.first_index(), Some(5));
        assert_eq!(c.term(8), None);
        c.append(&ents(20..21, 3)); // not contiguous: the cache starts over
        assert_eq!((c.first_index(), c.len()), (Some(20), 1));
        assert_eq!(c.bytes(), entry_bytes(&ents(20..21, 3)[0]));
    }

    #[test]
    fn a_range_is_served_whole_or_not_at_all() {
        let mut c = EntryCache::new(1 << 20);
        c.append(&ents(6..10, 1));
        assert_eq!(fetched(&c, 5, 8), None, "5 is not cached");
        assert_eq!(fetched(&c, 8, 11), None, "10 is not cached");
        assert_eq!(fetched(&c, 9, 10), Some(vec![(9, 1)]));
        assert_eq!(fetched(&c, 9, 9), Some(vec![]));
    }

    #[test]
    fn the_limit_and_compaction_drop_the_oldest_and_release_memory() {
        let one = entry_bytes(&ents(1..2, 1)[0]);
        let mut c = EntryCache::new(3 * one);
        c.append(&ents(1..6, 1));
        assert_eq!((c.first_index(), c.len(), c.bytes()), (Some(3), 3, 3 * one));
        c.compact_to(5);
        assert_eq!((c.first_index(), c.bytes()), (Some(5), one));
        let mut big = EntryCache::new(1 << 30);
        big.append(&ents(1..1001, 1));
        big.compact_to(1001);
        assert!(big.is_empty() && big.bytes() == 0);
        assert_eq!(big.entries.capacity(), 0, "an idle peer holds no buffer");
        assert!(EntryCache::new(0).tap_append(&ents(1..3, 1)).is_empty(), "limit 0 caches none");
    }

    #[test]
    fn the_term_before_the_first_entry_is_known_until_the_log_changes_there() {
        let mut c = EntryCache::new(1 << 20);
        c.append(&ents(1..4, 1));
        assert_eq!(c.term(0), None, "nothing was dropped yet");
        c.compact_to(4);
        assert!(c.is_empty());
        assert_eq!((c.term(3), c.term(2)), (Some(1), None), "the last dropped entry only");
        c.append(&ents(4..5, 2)); // follows on
        assert_eq!((c.term(3), c.term(4)), (Some(1), Some(2)));
        c.compact_to(5);
        c.append(&ents(4..5, 3)); // a new leader overwrote 4: the empty cache forgets it
        assert_eq!((c.term(4), c.term(3)), (Some(3), None));
        c.compact_to(5);
        c.clear(); // a snapshot replaced the log
        assert_eq!(c.term(4), None);
        let mut d = EntryCache::new(1 << 20);
        d.append(&ents(1..4, 1));
        d.compact_to(3);
        d.append(&ents(2..3, 2)); // overwrites the remembered entry and the cached one after it
        assert_eq!((d.term(1), d.term(2), d.term(3)), (None, Some(2), None));
        assert_eq!(EntryCache::new(0).tap_append(&ents(1..3, 1)).term(2), Some(1), "limit 0");
    }

    impl EntryCache {
        fn tap_append(mut self, e: &[Entry]) -> Self {
            self.append(e);
            self
        }
    }
}
