#!/usr/bin/env bash
# Every comparison of benchmarks/RESULTS.md, then the table: Tocsin beside Synapse (both started fresh for each
# scenario by run_compare.sh) on SQLite and PostgreSQL, defaults of ../shared/bench/matrix_bench.py.
#
#   SYNAPSE_VENV=/work/synapse-venv benchmarks/run_all.sh [ROUNDS] [scenario...]
#
# ROUNDS (default 1) rounds per scenario; scenarios default to all five. Takes about half an hour per round on a 2-core machine.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds="${1:-1}"
shift $(( $# < 1 ? $# : 1 ))
scenarios=("$@")
[ ${#scenarios[@]} -eq 0 ] && scenarios=(latency throughput fanout initial_sync connections)
# The disk's fsync latency before and after: every commit waits for it (see disk_probe.py).
python3 "$ROOT/benchmarks/disk_probe.py" > "$ROOT/benchmarks/results/disk-before.json"
for db in sqlite postgres; do
    for s in "${scenarios[@]}"; do
        echo "=== $db $s ($(date -u +%H:%M:%S))" >&2
        "$ROOT/benchmarks/run_compare.sh" "$s" "$db" "$rounds" || echo "=== $db $s FAILED" >&2
    done
done
python3 "$ROOT/benchmarks/disk_probe.py" > "$ROOT/benchmarks/results/disk-after.json"
python3 "$ROOT/benchmarks/summarize.py" > "$ROOT/benchmarks/results/summary.md"
echo "table: benchmarks/results/summary.md (copy into benchmarks/RESULTS.md with the notes)" >&2
