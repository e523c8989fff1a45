#!/usr/bin/env bash
# Writes per second of regionstore next to etcd's, in one run, on this machine.
#
# regionstore: region-sim writes only (--read-ratio 0), the key space pre-split into REGIONS
# regions (no splits, no merges), with and without --sync-log (SYNC), at each client count.
# etcd: a 3-member cluster of Debian's etcd-server (fsync on, as it always is), started here on
# loopback ports in a temporary directory and stopped at the end, driven by tools/etcd-bench
# with the same client counts, key space and value size. Prints one table.
#
# Knobs: CLIENTS (default "1 8 64"), REGIONS ("16 512"), SYNC ("on off"), DURATION (10 s per
# run), KEY_SPACE (100000), VALUE_SIZE (64), TICK_MS (10), ETCD (1; 0 skips etcd), OUT (reports;
# default a temporary directory, printed).
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-"1 8 64"}
REGIONS=${REGIONS:-"16 512"}
SYNC=${SYNC:-"on off"}
DURATION=${DURATION:-10}
KEY_SPACE=${KEY_SPACE:-100000}
VALUE_SIZE=${VALUE_SIZE:-64}
TICK_MS=${TICK_MS:-10}
ETCD=${ETCD:-1}
OUT=${OUT:-$(mktemp -d -t bench-write-XXXXXX)}
BIN="${CARGO_TARGET_DIR:-$HOME/.cache/regionstore/target}/opt"
mkdir -p "$OUT"
rm -f "$OUT"/*.json
echo "bench-write: clients {$CLIENTS}, regions {$REGIONS}, sync-log {$SYNC}, $DURATION s each," \
    "$KEY_SPACE keys, $VALUE_SIZE-byte values; reports in $OUT" >&2

for regions in $REGIONS; do
    for sync in $SYNC; do
        flag=()
        [ "$sync" = on ] && flag=(--sync-log)
        for clients in $CLIENTS; do
            run="$OUT/regionstore-r$regions-sync$sync-c$clients"
            echo "  regionstore: $regions regions, sync-log $sync, $clients clients" >&2
            # --split-size 2^60 and --merge-size 0: the regions stay as pre-split.
            "$BIN/region-sim" --read-ratio 0 --regions "$regions" --split-size 1152921504606846976 \
                --merge-size 0 --key-space "$KEY_SPACE" --value-size "$VALUE_SIZE" \
                --clients "$clients" --duration "$DURATION" --tick-ms "$TICK_MS" "${flag[@]}" \
                --quiet --report-json "$run.json" > "$run.log" 2>&1 ||
                echo "  region-sim failed, see $run.log" >&2
        done
    done
done

if [ "$ETCD" = 1 ]; then
    if ! command -v etcd > /dev/null; then
        echo "bench-write: etcd is not installed (scripts/install-deps.sh installs etcd-server)" >&2
        exit 1
    fi
    # etcd-bench is a workspace of its own, built into a target directory of its own.
    tools_target="${CARGO_TARGET_DIR:-$HOME/.cache/regionstore/target}/tools"
    CARGO_TARGET_DIR="$tools_target" cargo build --release --quiet \
        --manifest-path tools/etcd-bench/Cargo.toml
    dir="$OUT/etcd"
    rm -rf "$dir"
    mkdir -p "$dir"
    read -r -a ports <<< "$(python3 -c 'import socket
ss=[socket.socket() for _ in range(6)]
[s.bind(("127.0.0.1",0)) for s in ss]
print(" ".join(str(s.getsockname()[1]) for s in ss))')"
    cluster="m0=http://127.0.0.1:${ports[3]},m1=http://127.0.0.1:${ports[4]},m2=http://127.0.0.1:${ports[5]}"
    pids=()
    trap 'kill "${pids[@]}" 2> /dev/null || true; wait 2> /dev/null || true' EXIT
    for i in 0 1 2; do
        client="http://127.0.0.1:${ports[$i]}"
        peer="http://127.0.0.1:${ports[$((i + 3))]}"
        etcd --name "m$i" --data-dir "$dir/m$i" --listen-client-urls "$client" \
            --advertise-client-urls "$client" --listen-peer-urls "$peer" \
            --initial-advertise-peer-urls "$peer" --initial-cluster "$cluster" \
            --initial-cluster-state new --initial-cluster-token bench-write \
            --logger zap --log-outputs "$dir/m$i.log" > /dev/null 2>&1 &
        pids+=($!)
    done
    endpoints="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
    for _ in $(seq 1 100); do
        ETCDCTL_API=3 etcdctl --endpoints "$endpoints" endpoint health > /dev/null 2>&1 && break
        sleep 0.2
    done
    ETCDCTL_API=3 etcdctl --endpoints "$endpoints" endpoint health > /dev/null 2>&1 ||
        { echo "bench-write: etcd did not come up, see $dir/m*.log" >&2; exit 1; }
    for clients in $CLIENTS; do
        echo "  etcd: $clients clients" >&2
        "$tools_target/release/etcd-bench" --endpoints "$endpoints" --clients "$clients" --duration "$DURATION" \
            --key-space "$KEY_SPACE" --value-size "$VALUE_SIZE" > "$OUT/etcd-c$clients.json"
    done
fi
python3 scripts/bench_write_table.py "$OUT"
