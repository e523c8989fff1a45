//! Checks a history of reads and writes for linearizability, key by key: region-sim checks
//! every run with it, and the randomized fault tests every seed.
//!
//! Every key is a register and every written value is unique, so each read names the write
//! it saw. For such histories linearizability is decided in O(n log n) by the zone test of
//! Gibbons and Korach ("Testing shared memories", 1997): group each write with the reads of
//! its value (the initial absence is a write at time 0); a group's zone runs between the
//! earliest completion and the latest invocation among its operations, *forward* if the
//! earliest completion comes first, *backward* otherwise. The history is linearizable iff no
//! read returns a value nobody wrote (or before it was written), no two forward zones
//! overlap, and no backward zone lies inside a forward zone.
//!
//! A write of unknown outcome may have taken effect any time after its invocation or never:
//! it completes at +infinity, and if nobody read its value it is left out. Times are
//! nanoseconds since the run started; the initial absence is written at 0, before any
//! operation.
//!
//! Deletes break the uniqueness: a read of an absent key may have seen the initial absence or
//! any delete. On a key that was ever deleted, each delete takes part in the zone test as a
//! write of a value of its own that nobody read (exact for the rest of the history: reads
//! change nothing, so leaving some out keeps a linearizable history linearizable), and each
//! read of absence must have a delete (or the initial absence) that may have been the last
//! change before it: one invoked before the read ended, with no other change certainly
//! between the two. Both are necessary conditions, so no linearizable history is refused;
//! only the absent reads of deleted keys are checked less than exactly.

use std::collections::HashMap;

use serde::Serialize;

/// One completed operation of a client.
#[derive(Clone, Debug)]
pub struct Op {
    /// The key (a register).
    pub key: String,
    /// A write, or a read.
    pub write: bool,
    /// The value written (`None`: a delete), or read (`None`: the key was absent).
    pub value: Option<String>,
    /// When the operation was invoked, in nanoseconds since the history began.
    pub invoke_ns: u64,
    /// When it completed; `None`: a write of unknown outcome.
    pub complete_ns: Option<u64>,
}

/// The check's outcome.
#[derive(Serialize, Debug, Default)]
pub struct Verdict {
    /// Keys checked.
    pub keys: usize,
    /// Operations checked.
    pub ops: usize,
    /// Violations found (0: linearizable).
    pub violations: usize,
    /// The first few violations, described.
    pub examples: Vec<String>,
}

struct Group {
    written: bool,
    write_invoke: u64,
    reads: usize,
    earliest_read_end: u64,
    min_finish: u64,
    max_start: u64,
}

impl Default for Group {
    /// No operation yet: completions at +infinity.
    fn default() -> Self {
        Group {
            written: false,
            write_invoke: 0,
            reads: 0,
            earliest_read_end: u64::MAX,
            min_finish: u64::MAX,
            max_start: 0,
        }
    }
}

impl Group {
    fn add(&mut self, invoke: u64, complete: u64) {
        self.min_finish = self.min_finish.min(complete);
        self.max_start = self.max_start.max(invoke);
    }
}

/// Checks `ops` (any order).
pub fn check(ops: &[Op]) -> Verdict {
    let mut by_key: HashMap<&str, Vec<&Op>> = HashMap::new();
    for op in ops {
        by_key.entry(&op.key).or_default().push(op);
    }
    let mut verdict = Verdict { keys: by_key.len(), ops: ops.len(), ..Default::default() };
    for (key, ops) in by_key {
        for problem in check_key(&ops) {
            verdict.violations += 1;
            if verdict.examples.len() < 5 {
                verdict.examples.push(format!("key {key}: {problem}"));
            }
        }
    }
    verdict
}

fn check_key(ops: &[&Op]) -> Vec<String> {
    let deleted = ops.iter().any(|op| op.write && op.value.is_none());
    let mut groups: HashMap<GroupId<'_>, Group> = HashMap::new();
    let initial = groups.entry(GroupId::Value(None)).or_default();
    initial.written = true;
    initial.add(0, 0);
    let mut problems = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let id = match (op.write, op.value.as_deref()) {
            (true, None) => GroupId::Delete(i),
            (false, None) if deleted => {
                problems.extend(check_absent_read(op, ops));
                continue;
            }
            (_, value) => GroupId::Value(value),
        };
        let group = groups.entry(id).or_default();
        let complete = op.complete_ns.unwrap_or(u64::MAX);
        if op.write {
            group.written = true;
            group.write_invoke = op.invoke_ns;
        } else {
            group.reads += 1;
            group.earliest_read_end = group.earliest_read_end.min(complete);
        }
        group.add(op.invoke_ns, complete);
    }
    let (mut forward, mut backward) = (Vec::new(), Vec::new());
    for (value, g) in &groups {
        if !g.written {
            problems.push(format!("read {value:?}, which no write produced"));
            continue;
        }
        if g.reads > 0 && g.earliest_read_end < g.write_invoke {
            problems.push(format!("read {value:?} before it was written"));
        }
        if g.min_finish == u64::MAX && g.reads == 0 {
            continue; // a write of unknown outcome nobody saw: it may never have happened
        }
        if g.min_finish < g.max_start {
            forward.push((g.min_finish, g.max_start, *value));
        } else {
            backward.push((g.max_start, g.min_finish, *value));
        }
    }
    forward.sort_unstable();
    for pair in forward.windows(2) {
        if pair[1].0 < pair[0].1 {
            problems.push(format!("{:?} and {:?} overlap in time", pair[0].2, pair[1].2));
        }
    }
    for (start, end, value) in backward {
        let i = forward.partition_point(|z| z.0 < start);
        if let Some(z) = i.checked_sub(1).map(|i| forward[i]) {
            if end < z.1 {
                problems.push(format!("{value:?} was overwritten while {:?} was current", z.2));
            }
        }
    }
    problems
}

/// What a zone-test group stands for: a value (`None`: the initial absence), or the delete at
/// this position of the key's operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum GroupId<'a> {
    Value(Option<&'a str>),
    Delete(usize),
}

/// A read of absence on a key that was deleted: some delete, or the initial absence, must be
/// able to be the last change before it.
fn check_absent_read(read: &Op, ops: &[&Op]) -> Option<String> {
    let end = read.complete_ns.unwrap_or(u64::MAX);
    let changes = || ops.iter().filter(|op| op.write);
    // (invoke, completion) of each way the key could have become absent.
    let mut sources = vec![(0, 0)];
    sources.extend(
        changes()
            .filter(|op| op.value.is_none())
            .map(|op| (op.invoke_ns, op.complete_ns.unwrap_or(u64::MAX))),
    );
    let possible = sources.iter().any(|&(invoke, complete)| {
        invoke < end
            && !changes().any(|w| {
                // A change that certainly came after this source and before the read.
                w.invoke_ns > complete && w.complete_ns.is_some_and(|c| c < read.invoke_ns)
            })
    });
    (!possible).then(|| "read absence after a write that no delete can have undone".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(v: &str, i: u64, c: Option<u64>) -> Op {
        Op { key: "k".into(), write: true, value: Some(v.into()), invoke_ns: i, complete_ns: c }
    }

    fn d(i: u64, c: Option<u64>) -> Op {
        Op { key: "k".into(), write: true, value: None, invoke_ns: i, complete_ns: c }
    }

    fn r(v: Option<&str>, i: u64, c: u64) -> Op {
        Op {
            key: "k".into(),
            write: false,
            value: v.map(Into::into),
            invoke_ns: i,
            complete_ns: Some(c),
        }
    }

    #[test]
    fn accepts_linearizable_histories() {
        let sequential = [
            r(None, 1, 2),
            w("a", 3, Some(4)),
            r(Some("a"), 5, 6),
            w("b", 7, Some(8)),
            r(Some("b"), 9, 10),
        ];
        assert_eq!(check(&sequential).violations, 0);
        // b is written inside a's write: b, then a, then the read of a.
        let concurrent = [w("a", 10, Some(100)), w("b", 20, Some(90)), r(Some("a"), 110, 120)];
        assert_eq!(check(&concurrent).violations, 0);
        // An unknown write nobody read, and one read late.
        let unknown = [w("a", 1, None), w("b", 2, None), r(Some("b"), 50, 60)];
        assert_eq!(check(&unknown).violations, 0);
        // Deletes: absent reads after one, a value read after a delete overwritten again, a
        // delete of unknown outcome that took effect late.
        let deletes = [
            w("a", 1, Some(10)),
            d(11, Some(20)),
            r(None, 21, 30),
            w("b", 31, Some(40)),
            r(Some("b"), 41, 50),
            d(51, None),
            r(Some("b"), 52, 53),
            r(None, 60, 70),
            r(None, 0, 1),
        ];
        assert_eq!(check(&deletes).violations, 0, "{:?}", check(&deletes).examples);
    }

    #[test]
    fn catches_stale_reads_and_reads_back_in_time() {
        let stale = [w("a", 0, Some(10)), w("b", 20, Some(30)), r(Some("a"), 40, 50)];
        assert_eq!(check(&stale).violations, 1);
        let back = [
            w("a", 0, Some(10)),
            w("b", 20, Some(100)),
            r(Some("b"), 30, 40),
            r(Some("a"), 50, 60),
        ];
        assert_eq!(check(&back).violations, 1);
        let absent_again = [w("a", 1, Some(10)), r(None, 20, 30)];
        assert_eq!(check(&absent_again).violations, 1);
        let invented = [r(Some("x"), 0, 10)];
        assert_eq!(check(&invented).violations, 1);
        // With deletes on the key too.
        let absent_again =
            [w("a", 1, Some(10)), d(11, Some(12)), w("b", 20, Some(25)), r(None, 30, 40)];
        assert_eq!(check(&absent_again).violations, 1);
        let stale_after_delete = [w("a", 1, Some(10)), d(20, Some(30)), r(Some("a"), 40, 50)];
        assert_eq!(check(&stale_after_delete).violations, 1);
        let early = [r(Some("a"), 0, 10), w("a", 20, Some(30))];
        assert!(check(&early).violations >= 1);
    }
}
