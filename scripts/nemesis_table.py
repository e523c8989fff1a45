#!/usr/bin/env python3
"""Tables of region-sim nemesis runs (see scripts/nemesis.sh): one line for a run, or a summary
of every run in a directory (per fault kind: faults, operations while faulty, recovery times)."""

import glob
import json
import os
import sys


def load(run):
    status = open(run + ".status").read().strip() if os.path.exists(run + ".status") else "?"
    try:
        with open(run + ".json") as f:
            return status, json.load(f)
    except (OSError, ValueError):
        return status, None


def pct(values, q):
    if not values:
        return "-"
    values = sorted(values)
    return "%.0f" % values[min(len(values) - 1, int(q * len(values)))]


def line(run):
    status, r = load(run)
    name = os.path.basename(run)
    if r is None:
        print("%-18s %-4s no report (see %s.log)" % (name, status, run))
        return
    n = r.get("nemesis") or {}
    lin = r["linearizability"]
    faults = sum(1 for f in n.get("schedule", []) if f["injected"])
    unknown = sum(k["ops_unknown"] for k in n.get("by_kind", {}).values())
    final = n.get("final_recovery_ms")
    if not n:
        recovered = "- (no nemesis)"
    elif final is not None:
        recovered = "in %.0f ms" % final
    else:
        recovered = "NO (%s)" % (n.get("final_recovery_error") or "a store did not restart")
    print("%-18s %-4s %7d ops %6.0f ops/s  %3d faults  %5d unknown  %s  recovered %s" % (
        name, status, r["ops"]["reads"] + r["ops"]["writes"], r["throughput_ops_s"], faults,
        unknown, "linearizable" if lin["violations"] == 0 else "NOT LINEARIZABLE", recovered))


def summary(out):
    runs = sorted(p[:-len(".status")] for p in glob.glob(os.path.join(out, "*.status")))
    reports = [(s, r) for s, r in map(load, runs)]
    ok = sum(1 for s, _ in reports if s == "ok")
    kinds, finals, ops = {}, [], 0
    for _, r in reports:
        if r is None:
            continue
        ops += r["ops"]["reads"] + r["ops"]["writes"]
        n = r.get("nemesis") or {}
        if n.get("final_recovery_ms") is not None:
            finals.append(n["final_recovery_ms"])
        for f in n.get("schedule", []):
            k = kinds.setdefault(f["kind"], {"injected": 0, "skipped": 0, "rec": [], "norec": 0})
            if not f["injected"]:
                k["skipped"] += 1
                continue
            k["injected"] += 1
            if f["recovery_ms"] is None:
                k["norec"] += 1
            else:
                k["rec"].append(f["recovery_ms"])
        for kind, s in n.get("by_kind", {}).items():
            k = kinds.setdefault(kind, {"injected": 0, "skipped": 0, "rec": [], "norec": 0})
            for field in ("ops_ok", "ops_fail", "ops_unknown", "leader_changes"):
                k[field] = k.get(field, 0) + s[field]
    print("\n%d runs, %d passed (linearizable and recovered), %d operations" % (len(reports), ok, ops))
    print("final recovery: p50 %s ms, max %s ms" % (pct(finals, 0.5), pct(finals, 1.0)))
    print("| fault | injected | skipped | ops ok | fail | unknown | recovery p50 ms | max ms | not recovered | leader changes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind in sorted(kinds):
        k = kinds[kind]
        print("| %s | %d | %d | %d | %d | %d | %s | %s | %d | %d |" % (
            kind, k["injected"], k["skipped"], k.get("ops_ok", 0), k.get("ops_fail", 0),
            k.get("ops_unknown", 0), pct(k["rec"], 0.5), pct(k["rec"], 1.0), k["norec"],
            k.get("leader_changes", 0)))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("--line", "--summary"):
        sys.exit("usage: nemesis_table.py --line RUN | --summary DIR")
    (line if sys.argv[1] == "--line" else summary)(sys.argv[2])
