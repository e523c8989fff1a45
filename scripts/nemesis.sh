#!/usr/bin/env bash
# Faults as a workload, over many seeds: region-sim --nemesis on SEEDS seeds (default 10) for
# each store count in STORES (default "3 5"), DURATION seconds each (default 20), faults KINDS
# (default all) one per INTERVAL seconds (default 2). Prints one line per run and a summary;
# exits non-zero if any run was not linearizable or did not recover. Reports and logs are kept
# under OUT (default a temporary directory, printed).
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-10}
STORES=${STORES:-"3 5"}
DURATION=${DURATION:-20}
KINDS=${KINDS:-all}
INTERVAL=${INTERVAL:-2}
OUT=${OUT:-$(mktemp -d -t nemesis-XXXXXX)}
BIN="${CARGO_TARGET_DIR:-$HOME/.cache/regionstore/target}/opt/region-sim"
mkdir -p "$OUT"
echo "nemesis: $SEEDS seeds x stores {$STORES}, $DURATION s each, faults $KINDS every $INTERVAL s; reports in $OUT"
failed=0
for stores in $STORES; do
    for seed in $(seq 1 "$SEEDS"); do
        run="$OUT/stores$stores-seed$seed"
        rm -f "$run.json" "$run.status" # never read a report of an earlier run
        if "$BIN" --stores "$stores" --seed "$seed" --duration "$DURATION" --nemesis "$KINDS" \
            --nemesis-interval "$INTERVAL" --quiet --report-json "$run.json" > "$run.log" 2>&1; then
            echo ok > "$run.status"
        else
            echo FAIL > "$run.status"
            failed=1
        fi
        python3 scripts/nemesis_table.py --line "$run"
    done
done
python3 scripts/nemesis_table.py --summary "$OUT"
exit $failed
