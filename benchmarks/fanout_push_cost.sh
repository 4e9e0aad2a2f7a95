#!/usr/bin/env bash
# What push evaluation costs on the hot path (issue 3): the fanout scenario of ../shared/bench/ (one message to
# a room of 500 long-polling members, 5 repeats) against
#   a) Tocsin HEAD (push evaluation of every event for every member),
#   b) Tocsin at the parent of the commit that added homeserver/handlers/push.py (no push evaluation),
#      from a temporary git worktree, run with the same .venv,
#   c) Synapse (${SYNAPSE_VENV:-/work/synapse-venv}),
# all three fresh servers in the same session on SQLite. Figure: server CPU ms per delivered message (the
# bench's server_cpu_s_per_message_median: CPU of the server process between the send and the last member's
# /sync) and the ratios a/b and a/c.
#
#   benchmarks/fanout_push_cost.sh [ROUNDS]        (default 1; round 2 runs c, b, a; round 3 a, b, c...)
#   START_ROUND=2 benchmarks/fanout_push_cost.sh 2  (continues an alternation: rounds 2 and 3, c b a first)
#
# Protocol per server, as ../shared/bench/README.md recommends: start fresh, build the setup once
# (--setup-only --state), restart the server, measure with the same --state. Later rounds reuse the setup on a
# freshly restarted server. Before each matrix_bench run: wait until no other matrix_bench.py/bench_compare.py
# runs (another engineer may be benchmarking; polls every 15 s, at most 15 min), and record `uptime`.
# Both Tocsin variants get the same generated config: rate limits lifted as benchmarks/run_compare.sh does,
# bcrypt_rounds 4 (setup speed only: no password check is measured), access_log false. Synapse: its generated
# config patched by ../shared/bench/synapse_bench_config.py, nothing else changed.
# Results: $OUT (default /tmp/fanout-push-cost)/{a,b,c}-roundN.json, table.txt; the worktree is removed at exit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="${BENCH_DIR:-$ROOT/../shared/bench}"
PY="$ROOT/.venv/bin/python"
SYN_PY="${SYNAPSE_VENV:-/work/synapse-venv}/bin/python"
rounds="${1:-1}"
start_round="${START_ROUND:-1}"
last_round=$((start_round + rounds - 1))
OUT="${OUT:-/tmp/fanout-push-cost}"
NOPUSH="${NOPUSH_WORKTREE:-/tmp/tocsin-nopush}"
mkdir -p "$OUT"
work="$(mktemp -d /tmp/fanout-push.XXXXXX)"

added="$(git -C "$ROOT" log --diff-filter=A --format=%H -- homeserver/handlers/push.py | tail -n 1)"
parent="$(git -C "$ROOT" rev-parse "$added^")"
echo "push evaluation added in $(git -C "$ROOT" log -1 --format='%h %s' "$added" | cut -c1-100)" >&2
echo "b) = its parent $(git -C "$ROOT" log -1 --format='%h %s' "$parent" | cut -c1-100)" >&2
head_rev="$(git -C "$ROOT" rev-parse --short HEAD)"
made_worktree=0
if [ ! -d "$NOPUSH" ]; then
    git -C "$ROOT" worktree add --detach "$NOPUSH" "$parent" >&2
    made_worktree=1
fi
[ ! -e "$NOPUSH/homeserver/handlers/push.py" ] || { echo "$NOPUSH has push.py: not the pre-push tree" >&2; exit 1; }

server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
    if [ "$made_worktree" = 1 ]; then git -C "$ROOT" worktree remove --force "$NOPUSH" >&2 || true; fi
}
trap cleanup EXIT

wait_for_quiet() {
    local waited=0
    while pgrep -f 'matrix_bench[.]py|bench_compare[.]py' >/dev/null; do
        if [ "$waited" -ge 900 ]; then echo "other benchmarks still running after 15 min; measuring anyway" >&2; break; fi
        echo "waiting for other benchmarks: $(pgrep -af 'matrix_bench[.]py|bench_compare[.]py' | head -3 | cut -c1-100)" >&2
        sleep 15; waited=$((waited + 15))
    done
    echo "$waited"
}

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Free ports picked now (fixed ones collided with other engineers' servers on this shared machine).
declare -A port=([a]="$(free_port)" [b]="$(free_port)" [c]="$(free_port)")
declare -A src=([a]="$ROOT" [b]="$NOPUSH")

tocsin_config() {  # $1 = variant, writes $work/$1/homeserver.yaml (identical for a and b but the port/paths)
    local d="$work/$1"; mkdir -p "$d"
    "$PY" - "$d" "${port[$1]}" <<'PYEOF'
import os, secrets, sys, yaml
d, port = sys.argv[1], int(sys.argv[2])
big = {"per_second": 100000, "burst_count": 100000}
cfg = {"server_name": "localhost",
       "listeners": [{"port": port, "bind_addresses": ["127.0.0.1"], "type": "http",
                      "resources": [{"names": ["client"]}]}],
       "database": {"name": "sqlite3", "args": {"database": os.path.join(d, "homeserver.db")}},
       "signing_key_path": os.path.join(d, "signing.key"), "media_store_path": os.path.join(d, "media_store"),
       "enable_registration": True, "enable_registration_without_verification": True,
       "registration_shared_secret": secrets.token_hex(32), "bcrypt_rounds": 4, "access_log": False,
       "rc_message": big, "rc_registration": big, "rc_joins": {"local": big},
       "rc_login": {"address": big, "account": big, "failed_attempts": big}}
yaml.safe_dump(cfg, open(os.path.join(d, "homeserver.yaml"), "w"))
PYEOF
}

synapse_config() {
    local d="$work/c"; mkdir -p "$d"
    (cd "$d" && "$SYN_PY" -m synapse.app.homeserver --server-name localhost --config-path homeserver.yaml \
        --generate-config --report-stats=no >/dev/null)
    "$SYN_PY" "$BENCH/synapse_bench_config.py" "$d/homeserver.yaml" --port "${port[c]}" >&2
}

start_server() {  # $1 = variant; sets server_pid and waits for /versions
    local v="$1"
    if [ "$v" = c ]; then
        (cd "$work/c" && exec "$SYN_PY" -m synapse.app.homeserver -c homeserver.yaml) >> "$work/c.log" 2>&1 &
    else
        (cd "${src[$v]}" && PYTHONPATH="${src[$v]}" exec "$PY" -m homeserver run -c "$work/$v/homeserver.yaml") \
            >> "$work/$v.log" 2>&1 &
    fi
    server_pid=$!
    for _ in $(seq 1 240); do
        curl -sf "http://127.0.0.1:${port[$v]}/_matrix/client/versions" >/dev/null && return 0
        kill -0 "$server_pid" 2>/dev/null || { echo "server $v died:"; tail -20 "$work/$v.log"; exit 1; } >&2
        sleep 0.5
    done
    echo "server $v did not answer" >&2; exit 1
}

stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

bench() {  # $1 = variant, rest = matrix_bench options
    local v="$1"; shift
    "$PY" "$BENCH/matrix_bench.py" --hs "http://127.0.0.1:${port[$v]}" --scenario fanout \
        --server-pid "$server_pid" --state "$work/state-$v.json" "$@"
}

tocsin_config a; tocsin_config b; synapse_config
echo "variant round waited_s uptime_before" > "$OUT/loads.txt"
for r in $(seq "$start_round" "$last_round"); do
    if [ $((r % 2)) = 1 ]; then order="a b c"; else order="c b a"; fi  # by round number: alternates across calls
    for v in $order; do
        start_server "$v"
        if [ ! -f "$work/state-$v.json" ]; then
            echo "setup of $v (not measured)" >&2
            bench "$v" --setup-only >/dev/null
            stop_server; start_server "$v"
        fi
        waited="$(wait_for_quiet)"
        load="$(uptime)"
        echo "$v $r $waited $load" | tee -a "$OUT/loads.txt" >&2
        bench "$v" --json "$OUT/$v-round$r.json" > "$OUT/$v-round$r.txt"
        echo "$v $r $(uptime)" >> "$OUT/loads-after.txt"
        stop_server
    done
done

"$PY" - "$OUT" "$start_round" "$last_round" "$head_rev" "$(git -C "$ROOT" rev-parse --short "$parent")" <<'PYEOF' | tee "$OUT/table.txt"
import json, os, statistics, sys
out, first, last, head, parent = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
rounds = range(first, last + 1)
loads = {}
for line in open(os.path.join(out, "loads.txt")).read().splitlines()[1:]:
    v, r, waited, rest = line.split(" ", 3)
    loads[(v, int(r))] = rest.split("load average:")[-1].strip()
names = {"a": f"tocsin HEAD {head}", "b": f"tocsin before push {parent}", "c": "synapse"}
cpu = {}
print(f"{'round':>5} {'server':<28} {'cpu ms/msg':>10} {'us/delivery':>11} {'last ms':>8} {'missing':>7} "
      f"{'other cores':>11}  load before (1/5/15 min)")
for r in rounds:
    for v in "abc":
        doc = json.load(open(os.path.join(out, f"{v}-round{r}.json")))
        res = doc["results"]
        per_msg = res.get("server_cpu_s_per_message_median")
        cpu[(v, r)] = per_msg
        recv = res.get("receivers") or 1
        print(f"{r:>5} {names[v]:<28} {1000 * per_msg:>10.1f} {1e6 * per_msg / recv:>11.1f} "
              f"{res['last_member_ms_median']:>8} {res['missing_total']:>7} "
              f"{res['window'].get('other_load_cores')!s:>11}  {loads[(v, r)]}")
for r in rounds:
    print(f"round {r}: a/b = {cpu[('a', r)] / cpu[('b', r)]:.2f}   a/c = {cpu[('a', r)] / cpu[('c', r)]:.2f}")
if len(rounds) > 1:
    ab = statistics.median(cpu[("a", r)] / cpu[("b", r)] for r in rounds)
    ac = statistics.median(cpu[("a", r)] / cpu[("c", r)] for r in rounds)
    print(f"median over rounds: a/b = {ab:.2f}   a/c = {ac:.2f}")
PYEOF
