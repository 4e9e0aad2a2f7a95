#!/usr/bin/env bash
# Side-by-side benchmark: Tocsin (A) against Synapse (B) with ../shared/bench/bench_compare.py, on SQLite or
# PostgreSQL. Both servers are started fresh here, on loopback, and stopped at the end.
#
#   benchmarks/run_compare.sh SCENARIO [sqlite|postgres] [ROUNDS] [-- matrix_bench options...]
#   e.g. benchmarks/run_compare.sh latency sqlite 1
#        benchmarks/run_compare.sh throughput postgres 3 -- --duration 20
#
# Synapse comes from PyPI into ${SYNAPSE_VENV:-.venv-synapse}. Results go to benchmarks/results/<db>-<scenario>/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="${BENCH_DIR:-$ROOT/../shared/bench}"
scenario="${1:?scenario: latency|throughput|initial_sync|fanout|connections}"
db="${2:-sqlite}"
rounds="${3:-1}"
shift $(( $# < 3 ? $# : 3 ))
[ "${1:-}" = "--" ] && shift
source "$ROOT/scripts/_venv.sh"
SYN_VENV="${SYNAPSE_VENV:-$ROOT/.venv-synapse}"
if [ ! -x "$SYN_VENV/bin/python" ]; then
    python3 -m venv "$SYN_VENV"
    "$SYN_VENV/bin/pip" install -q "matrix-synapse[postgres]"
fi
work="$(mktemp -d /tmp/tocsin-bench.XXXXXX)"
out="$ROOT/benchmarks/results/$db-$scenario"
mkdir -p "$out"
port_a=18808; port_b=18848
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

db_args=(); a_match=(); b_match=()
if [ "$db" = "postgres" ]; then
    "$ROOT/scripts/ensure_postgres"
    for name in tocsin_bench synapse_bench; do
        psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" postgres
        psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $name ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" postgres
    done
    db_args=(--database-url postgresql://postgres@127.0.0.1:5432/tocsin_bench)
    a_match=(--a-db-match 'postgres: .*tocsin_bench ')
    b_match=(--b-db-match 'postgres: .*synapse_bench ')
fi

# Tocsin: the README's generated config, rate limits lifted as for Synapse below.
"$PY" -m homeserver generate-config --server-name localhost --data-dir "$work/tocsin" --port "$port_a" \
    --open-registration "${db_args[@]}" >/dev/null
cat >> "$work/tocsin/homeserver.yaml" <<YAML
bcrypt_rounds: 12
access_log: false
YAML
"$PY" - "$work/tocsin/homeserver.yaml" <<'PYEOF'
import sys, yaml
p = sys.argv[1]; c = yaml.safe_load(open(p))
big = {"per_second": 100000, "burst_count": 100000}
c.update(rc_message=big, rc_registration=big, rc_login={"address": big, "account": big, "failed_attempts": big},
         rc_joins={"local": big})
yaml.safe_dump(c, open(p, "w"))
PYEOF
"$PY" -m homeserver run -c "$work/tocsin/homeserver.yaml" > "$work/tocsin.log" 2>&1 &
pids+=($!); a_pid=$!

# Synapse, patched by the shared bench's own script.
mkdir -p "$work/synapse"
(cd "$work/synapse" && "$SYN_VENV/bin/python" -m synapse.app.homeserver --server-name localhost \
    --config-path homeserver.yaml --generate-config --report-stats=no >/dev/null)
pg=()
[ "$db" = "postgres" ] && pg=(--postgres synapse_bench --pg-user postgres --pg-host 127.0.0.1)
"$SYN_VENV/bin/python" "$BENCH/synapse_bench_config.py" "$work/synapse/homeserver.yaml" --port "$port_b" "${pg[@]}"
(cd "$work/synapse" && exec "$SYN_VENV/bin/python" -m synapse.app.homeserver -c homeserver.yaml) \
    > "$work/synapse.log" 2>&1 &
pids+=($!); b_pid=$!

for url in "http://127.0.0.1:$port_a" "http://127.0.0.1:$port_b"; do
    for _ in $(seq 1 120); do
        curl -sf "$url/_matrix/client/versions" >/dev/null && break
        sleep 1
    done
done

"$PY" "$BENCH/bench_compare.py" --scenario "$scenario" \
    --a "http://127.0.0.1:$port_a" --a-pid "$a_pid" --a-label tocsin "${a_match[@]}" \
    --b "http://127.0.0.1:$port_b" --b-pid "$b_pid" --b-label synapse "${b_match[@]}" \
    --rounds "$rounds" --out "$out" -- "$@" | tee "$out/table.txt"
echo "logs: $work" >&2
