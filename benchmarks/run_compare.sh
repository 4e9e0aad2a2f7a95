#!/usr/bin/env bash
# Side-by-side benchmark: Tocsin (A) against Synapse (B) with ../shared/bench/bench_compare.py, on SQLite or
# PostgreSQL. Both servers are started fresh here, on loopback, and stopped at the end.
#
#   benchmarks/run_compare.sh SCENARIO [sqlite|postgres] [ROUNDS] [-- matrix_bench options...]
#   e.g. benchmarks/run_compare.sh latency sqlite 1
#        benchmarks/run_compare.sh throughput postgres 3 -- --duration 20
#
# Synapse comes from PyPI into ${SYNAPSE_VENV:-.venv-synapse}. Results go to benchmarks/results/<db>-<scenario>/
# (compare-<scenario>.json, the per-run JSON documents, table.txt). For `connections` the setup (users, rooms,
# initial syncs) is built first and both servers are restarted before measuring, so RSS is that of a fresh
# process holding the connections (see ../shared/bench/README.md).
#
# Issue 10 wants push-rule evaluation and appservice pushes on during the benchmarks: each server gets one
# appservice registration (its own id and tokens) whose rooms namespace is `.*`, so every room event of the setup
# and of the measured load is pushed to a small receiver, benchmarks/as_sink.py (one per server, own port). The
# sinks only count what they receive; their counts end up in the results directory as as-sink-A.json (Tocsin)
# and as-sink-B.json (Synapse). They are separate processes, not children of the servers, so their CPU is not in
# the servers' measured CPU (it shows in the machine's "other load" instead).
#
# Both servers hash passwords with 4 bcrypt rounds: registration is setup, never inside a measured window, and
# 12 rounds only make the 1000-user setups take minutes on a 2-core machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="${BENCH_DIR:-$ROOT/../shared/bench}"
scenario="${1:?scenario: latency|throughput|initial_sync|fanout|connections}"
db="${2:-sqlite}"
rounds="${3:-1}"
shift $(( $# < 3 ? $# : 3 ))
[ "${1:-}" = "--" ] && shift
# Tocsin runs from a venv holding only what a production install has (`pip install -e .`, no test extras): the
# test extras bring e.g. h2, which Twisted imports when present, and the server measured should be the one
# deployed. The benchmark client (matrix_bench.py needs aiohttp) and the appservice sinks run from a venv of
# their own, so neither venv depends on what scripts/test installed.
TOCSIN_VENV="${TOCSIN_BENCH_VENV:-$ROOT/.venv-bench}" source "$ROOT/scripts/_venv.sh" ""  # "": no extras
CLIENT_VENV="${BENCH_CLIENT_VENV:-$ROOT/.venv-bench-client}"
CPY="$CLIENT_VENV/bin/python"
if [ ! -x "$CPY" ] || [ "$BENCH/requirements.txt" -nt "$CLIENT_VENV/.installed" ]; then
    [ -x "$CPY" ] || python3 -m venv "$CLIENT_VENV"
    "$CPY" -m pip install -q -r "$BENCH/requirements.txt" pyyaml twisted
    touch "$CLIENT_VENV/.installed"
fi
SYN_VENV="${SYNAPSE_VENV:-$ROOT/.venv-synapse}"
if [ ! -x "$SYN_VENV/bin/python" ]; then
    python3 -m venv "$SYN_VENV"
    "$SYN_VENV/bin/pip" install -q "matrix-synapse[postgres]==1.163.2"
fi
work="$(mktemp -d /tmp/tocsin-bench.XXXXXX)"
out="$ROOT/benchmarks/results/$db-$scenario"
mkdir -p "$out"
# Setups, sink counts and earlier runs' round documents belong to other servers (summarize.py takes the median
# over every <scenario>-<side>-r*.json it finds, so a 1-round run must not sit beside an older run's rounds 2-3).
rm -f "$out"/state-*.json "$out"/as-sink-*.json "$out/$scenario"-[AB]-r*.json "$out/compare-$scenario.json"
port_a=18808; port_b=18848
sink_port_a=18818; sink_port_b=18858
a_pid=""; b_pid=""; sink_a_pid=""; sink_b_pid=""
stop_pids() {
    for p in "$@"; do kill "$p" 2>/dev/null || true; done
    for p in "$@"; do
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    done
}
stop_servers() {
    stop_pids $a_pid $b_pid
    a_pid=""; b_pid=""
}
stop_sinks() {  # SIGTERM: each sink writes its final counts before exiting
    stop_pids $sink_a_pid $sink_b_pid
    sink_a_pid=""; sink_b_pid=""
}
trap 'stop_servers; stop_sinks' EXIT

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

# One appservice registration per server, fresh random tokens, pushing every room's events to its sink.
for side in A B; do
    sink_port=$sink_port_a; [ "$side" = B ] && sink_port=$sink_port_b
    "$CPY" - "$work/appservice-$side.yaml" "$side" "$sink_port" <<'PYEOF'
import secrets, sys, yaml
path, side, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
reg = {"id": f"bench_sink_{side.lower()}", "url": f"http://127.0.0.1:{port}",
       "as_token": secrets.token_urlsafe(32), "hs_token": secrets.token_urlsafe(32),
       "sender_localpart": "bench_sink", "rate_limited": False,
       "namespaces": {"users": [{"regex": "@bench_sink_.*", "exclusive": True}],
                      "rooms": [{"regex": ".*", "exclusive": False}], "aliases": []}}
yaml.safe_dump(reg, open(path, "w"), sort_keys=False)
PYEOF
done
"$CPY" "$ROOT/benchmarks/as_sink.py" "$work/appservice-A.yaml" "$sink_port_a" "$work/as-sink-A.json" \
    >> "$work/as-sink-A.log" 2>&1 &
sink_a_pid=$!
"$CPY" "$ROOT/benchmarks/as_sink.py" "$work/appservice-B.yaml" "$sink_port_b" "$work/as-sink-B.json" \
    >> "$work/as-sink-B.log" 2>&1 &
sink_b_pid=$!
for side in A B; do  # listening before the servers start: a sink writes its counts file once its port is bound
    for _ in $(seq 1 50); do [ -f "$work/as-sink-$side.json" ] && break; sleep 0.2; done
done

# Tocsin: the README's generated config, rate limits lifted as for Synapse below, no access log (Synapse's
# benchmark config keeps its own request logging at the default level).
"$PY" -m homeserver generate-config --server-name localhost --data-dir "$work/tocsin" --port "$port_a" \
    --open-registration "${db_args[@]}" >/dev/null
"$PY" - "$work/tocsin/homeserver.yaml" "$work/appservice-A.yaml" <<'PYEOF'
import sys, yaml
p = sys.argv[1]; c = yaml.safe_load(open(p))
big = {"per_second": 100000, "burst_count": 100000}
c.update(rc_message=big, rc_registration=big, rc_login={"address": big, "account": big, "failed_attempts": big},
         rc_joins={"local": big}, bcrypt_rounds=4, access_log=False, app_service_config_files=[sys.argv[2]])
yaml.safe_dump(c, open(p, "w"))
PYEOF

# Synapse, patched by the shared bench's own script.
mkdir -p "$work/synapse"
(cd "$work/synapse" && "$SYN_VENV/bin/python" -m synapse.app.homeserver --server-name localhost \
    --config-path homeserver.yaml --generate-config --report-stats=no >/dev/null)
pg=()
[ "$db" = "postgres" ] && pg=(--postgres synapse_bench --pg-user postgres --pg-host 127.0.0.1)
"$SYN_VENV/bin/python" "$BENCH/synapse_bench_config.py" "$work/synapse/homeserver.yaml" --port "$port_b" "${pg[@]}"
echo "bcrypt_rounds: 4" >> "$work/synapse/homeserver.yaml"
echo "app_service_config_files: [\"$work/appservice-B.yaml\"]" >> "$work/synapse/homeserver.yaml"

start_servers() {
    "$PY" -m homeserver run -c "$work/tocsin/homeserver.yaml" >> "$work/tocsin.log" 2>&1 &
    a_pid=$!
    (cd "$work/synapse" && exec "$SYN_VENV/bin/python" -m synapse.app.homeserver -c homeserver.yaml) \
        >> "$work/synapse.log" 2>&1 &
    b_pid=$!
    for url in "http://127.0.0.1:$port_a" "http://127.0.0.1:$port_b"; do
        for _ in $(seq 1 120); do
            curl -sf "$url/_matrix/client/versions" >/dev/null && break
            sleep 1
        done
    done
}
start_servers

if [ "$scenario" = "connections" ]; then
    # Build the setup, then measure fresh processes (RSS of a process that already grew says nothing).
    for side in A B; do
        url="http://127.0.0.1:$port_a"; [ "$side" = B ] && url="http://127.0.0.1:$port_b"
        "$CPY" "$BENCH/matrix_bench.py" --hs "$url" --scenario connections --setup-only \
            --state "$out/state-$side-connections.json" "$@" >&2
    done
    stop_servers
    start_servers
fi

"$CPY" "$BENCH/bench_compare.py" --scenario "$scenario" \
    --a "http://127.0.0.1:$port_a" --a-pid "$a_pid" --a-label tocsin "${a_match[@]}" \
    --b "http://127.0.0.1:$port_b" --b-pid "$b_pid" --b-label synapse "${b_match[@]}" \
    --rounds "$rounds" --out "$out" -- "$@" | tee "$out/table.txt"

# The sinks' final counts (setup and every round included), next to the compare JSON.
stop_servers
stop_sinks
for side in A B; do
    cp "$work/as-sink-$side.json" "$out/as-sink-$side.json"
    echo "appservice sink $side: $(cat "$out/as-sink-$side.json")"
done
echo "logs: $work" >&2
