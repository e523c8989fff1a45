//! `TrackVer`: tells a cached copy of something that the original has changed.
//!
//! The original (the source) and every copy share one atomic version. The source bumps it on
//! every change; a copy remembers the version it was made at, and a newer shared version means
//! the copy is stale. One atomic load per check.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

/// A version shared between a source and its copies.
#[derive(Debug)]
pub struct TrackVer {
    version: Arc<AtomicU64>,
    local: u64,
    source: bool,
}

impl TrackVer {
    /// A new source at version 0.
    pub fn new() -> Self {
        TrackVer { version: Arc::new(AtomicU64::new(0)), local: 0, source: true }
    }

    /// Records a change. Only the source may bump; a copy calling this is a bug, reported by
    /// `false` and ignored.
    pub fn inc(&mut self) -> bool {
        if !self.source {
            return false;
        }
        self.local = self.version.fetch_add(1, Ordering::AcqRel) + 1;
        true
    }

    /// Whether the source changed since this copy was made.
    pub fn any_new(&self) -> bool {
        self.version.load(Ordering::Acquire) > self.local
    }
}

impl Default for TrackVer {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for TrackVer {
    /// A copy at the current version (never a source).
    fn clone(&self) -> Self {
        TrackVer {
            version: self.version.clone(),
            local: self.version.load(Ordering::Acquire),
            source: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_see_changes_after_they_were_made() {
        let mut source = TrackVer::new();
        let copy = source.clone();
        assert!(!copy.any_new());
        assert!(source.inc());
        assert!(copy.any_new(), "the copy is stale");
        let fresh = source.clone();
        assert!(!fresh.any_new(), "a copy made after the change is current");
        let mut copy = copy;
        assert!(!copy.inc(), "a copy cannot bump");
        assert!(!source.any_new(), "the source is never stale");
    }
}
