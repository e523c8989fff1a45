#!/usr/bin/env bash
# region-sim's workload against a 3-process cluster on loopback (etcd, regionstore-pd, three
# regionstore-servers: scripts/cluster.sh), next to the embedded mode (3 stores in one
# process, over channels and over gRPC), in one run, at each client count. Same workload in
# every mode: half reads, half writes, sync-log on, 50 ms ticks, regions split at SPLIT_SIZE
# bytes (no merges), a fresh cluster per run. Prints one table: throughput, p50 and p99 of
# writes and reads, regions at the end, and raft messages per gRPC batch (the batching ratio).
#
# Knobs: CLIENTS (default "8 64"), DURATION (10 s per run), SPLIT_SIZE (4096), KEY_SPACE
# (1000), OUT (reports and cluster logs; default a temporary directory, printed).
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-"8 64"}
DURATION=${DURATION:-10}
SPLIT_SIZE=${SPLIT_SIZE:-4096}
KEY_SPACE=${KEY_SPACE:-1000}
OUT=${OUT:-$(mktemp -d -t bench-cluster-XXXXXX)}
BIN="${CARGO_TARGET_DIR:-$HOME/.cache/regionstore/target}/opt"
mkdir -p "$OUT"
echo "bench-cluster: clients {$CLIENTS}, $DURATION s each, regions split at $SPLIT_SIZE bytes;" \
    "reports in $OUT" >&2

# The servers' configuration: the local cluster's, with region-sim's split sizes.
config="$OUT/cluster.toml"
sed "/^\[raftstore\]/a region_split_size = $SPLIT_SIZE\nregion_max_size = $((SPLIT_SIZE * 3 / 2))\nregion_split_check_diff = $((SPLIT_SIZE / 8))" \
    etc/regionstore.local.toml > "$config"
"$BIN/regionstore-server" --config "$config" --config-check > /dev/null

workload() { # CLIENTS: the flags every mode shares
    echo --clients "$1" --duration "$DURATION" --key-space "$KEY_SPACE" --quiet
}

# A cluster left running by a failure or ^C is stopped on the way out.
trap 'scripts/cluster.sh stop > /dev/null 2>&1 || true' EXIT

for clients in $CLIENTS; do
    for transport in local grpc; do
        run="$OUT/embedded-$transport-c$clients"
        echo "  embedded ($transport): $clients clients" >&2
        # shellcheck disable=SC2046
        "$BIN/region-sim" $(workload "$clients") --sync-log --tick-ms 50 --split-size "$SPLIT_SIZE" \
            --merge-size 0 --transport "$transport" --report-json "$run.json" > "$run.log" 2>&1 ||
            echo "  region-sim failed, see $run.log" >&2
    done
    run="$OUT/cluster-c$clients"
    echo "  3-process cluster: $clients clients" >&2
    export CLUSTER_DIR="$run.d"
    CONFIG="$config" scripts/cluster.sh start > "$run.start.log" 2>&1 ||
        { echo "  the cluster did not start, see $run.start.log" >&2; continue; }
    pd="$(sed -n 's/^PD=//p' "$CLUSTER_DIR/cluster.env")"
    # shellcheck disable=SC2046
    "$BIN/region-sim" $(workload "$clients") --pd "$pd" --report-json "$run.json" > "$run.log" 2>&1 ||
        echo "  region-sim failed, see $run.log" >&2
    # What the servers' raft transports sent, from their /status pages.
    for f in "$CLUSTER_DIR"/server-*.status_port; do
        python3 -c 'import json, sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:%s/status" % sys.argv[1], timeout=5).read().decode())' \
            "$(cat "$f")" || true
    done > "$run.status"
    scripts/cluster.sh stop > /dev/null
done

python3 - "$OUT" "$CLIENTS" <<'EOF'
import json, os, sys
out, clients = sys.argv[1], sys.argv[2].split()
def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
rows = []
for c in clients:
    for mode, name in (("embedded, channels", f"embedded-local-c{c}"),
                       ("embedded, gRPC", f"embedded-grpc-c{c}"),
                       ("3 processes, gRPC", f"cluster-c{c}")):
        r = load(os.path.join(out, name + ".json"))
        if r is None:
            rows.append((mode, c) + ("failed",) * 7)
            continue
        w, rd = r["latency_us"]["write"], r["latency_us"]["read"]
        ratio = "-"
        if r.get("grpc"):
            ratio = "%.1f" % r["grpc"]["per_batch"]
        status = os.path.join(out, name + ".status")
        if os.path.exists(status):
            m = b = 0
            for line in open(status):
                s = json.loads(line)
                m += s["raft_messages_sent"]
                b += s["raft_batches_sent"]
            ratio = "%.1f" % (m / b) if b else "-"
        rows.append((mode, c, "%.0f" % r["throughput_ops_s"], "%.0f" % w["p50"], "%.0f" % w["p99"],
                     "%.0f" % rd["p50"], "%.0f" % rd["p99"], str(r["regions"]["final"]), ratio))
head = ("mode", "clients", "ops/s", "write p50 µs", "write p99 µs", "read p50 µs", "read p99 µs",
        "regions", "msgs/batch")
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for row in rows:
    print("| " + " | ".join(str(x) for x in row) + " |")
EOF
