#!/usr/bin/env python3
"""The table of scripts/bench-write.sh: one row per run, then how the targets of issue 16 stand
(512 regions at least as fast as 16; at 64 clients at least 2x etcd's puts/s, p99 no worse)."""
import json
import re
import sys
from pathlib import Path


def regionstore_rows(out):
    rows = []
    for path in out.glob("regionstore-*.json"):
        m = re.match(r"regionstore-r(\d+)-sync(on|off)-c(\d+)", path.stem)
        r = json.loads(path.read_text())
        w = r["latency_us"]["write"]
        writes = r["ops"]["writes"] + r["ops"]["deletes"]
        rows.append({
            "system": "regionstore", "regions": int(m[1]), "sync": m[2], "clients": int(m[3]),
            "per_s": writes / r["duration_s"], "p50": w["p50"] / 1000, "p99": w["p99"] / 1000,
        })
    return rows


def etcd_rows(out):
    rows = []
    for path in out.glob("etcd-c*.json"):
        r = json.loads(path.read_text())
        rows.append({
            "system": "etcd (3 members)", "regions": "-", "sync": "on", "clients": r["clients"],
            "per_s": r["puts_per_s"], "p50": r["p50_us"] / 1000, "p99": r["p99_us"] / 1000,
        })
    return rows


def main():
    out = Path(sys.argv[1])
    rows = regionstore_rows(out) + etcd_rows(out)
    rows.sort(key=lambda r: (r["system"] != "regionstore", r["sync"] != "on", str(r["regions"]).zfill(8), r["clients"]))
    print("| system | regions | sync | clients | writes/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['system']} | {r['regions']} | {r['sync']} | {r['clients']} | "
              f"{r['per_s']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} |")
    find = {(r["system"], r["regions"], r["sync"], r["clients"]): r for r in rows}
    print()
    for sync in ("on", "off"):
        for clients in sorted({r["clients"] for r in rows}):
            few = find.get(("regionstore", 16, sync, clients))
            many = find.get(("regionstore", 512, sync, clients))
            if few and many:
                print(f"512 vs 16 regions, sync {sync}, {clients} clients: "
                      f"{many['per_s'] / few['per_s']:.2f}x (target >= 1)")
    for regions in (16, 512):
        ours = find.get(("regionstore", regions, "on", 64))
        etcd = find.get(("etcd (3 members)", "-", "on", 64))
        if ours and etcd:
            print(f"{regions} regions vs etcd, 64 clients, both fsync: "
                  f"{ours['per_s'] / etcd['per_s']:.2f}x writes/s (target >= 2), "
                  f"p99 {ours['p99']:.1f} vs {etcd['p99']:.1f} ms (target: no worse)")


if __name__ == "__main__":
    main()
