"""Markdown table of benchmarks/results/<db>-<scenario>/: Tocsin beside Synapse from the same run.

    .venv/bin/python benchmarks/summarize.py [RESULTS_DIR] > table.md

For every scenario and database: the key metrics of both servers (median over rounds), the ratio Tocsin/Synapse,
the issue-10 target where there is one, and what else the machine was doing (busy cores, other load) during each
measured window. CPU figures include the PostgreSQL backends of each server (``db_cpu_s``) when it used one.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from statistics import median
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))

# (scenario, metric, label, target as text, check(ratio, tocsin_value) -> bool | None)
ROWS: list[tuple[str, str, str, str, Any]] = [
    ("latency", "missing_deliveries", "lost deliveries", "0", lambda r, a: a == 0),
    ("latency", "send_errors", "send errors", "0", lambda r, a: a == 0),
    ("latency", "deliver_p50_ms", "send->deliver p50 (ms)", "", None),
    ("latency", "deliver_p99_ms", "send->deliver p99 (ms)", "<= 50 ms", lambda r, a: a is not None and a <= 50),
    ("latency", "accepted_in_window_per_s", "accepted msg/s", "", None),
    ("latency", "cpu_ms_per_delivery", "server CPU ms per delivered message", "<= 0.1x",
     lambda r, a: r is not None and r <= 0.1),
    ("throughput", "sustained_msgs_per_s", "sustained msg/s", ">= 15x", lambda r, a: r is not None and r >= 15),
    ("throughput", "missing_deliveries", "lost deliveries", "0", lambda r, a: a == 0),
    ("throughput", "deliver_p99_ms", "send->deliver p99 (ms)", "", None),
    ("throughput", "cpu_ms_per_delivery", "server CPU ms per delivered message", "", None),
    ("fanout", "last_member_ms_median", "last of 500 members (ms, median)", "", None),
    ("fanout", "missing_total", "lost deliveries", "0", lambda r, a: a == 0),
    ("fanout", "cpu_ms_per_delivery", "server CPU ms per delivered message", "<= 0.1x",
     lambda r, a: r is not None and r <= 0.1),
    ("initial_sync", "initial_ms_median", "initial sync, 200 rooms (ms, median)", "<= 0.3x",
     lambda r, a: r is not None and r <= 0.3),
    ("initial_sync", "incremental_ms_median", "incremental sync (ms, median)", "<= 0.3x",
     lambda r, a: r is not None and r <= 0.3),
    ("connections", "server_rss_mb_held", "RSS holding 1000 long-polls (MiB)", "<= 0.3x",
     lambda r, a: r is not None and r <= 0.3),
    ("connections", "server_rss_kb_per_connection", "RSS per held connection (KiB)", "", None),
    ("connections", "message_missing", "members the message did not reach", "0", lambda r, a: a == 0),
]


def _load(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _window(doc: dict[str, Any]) -> dict[str, Any]:
    res = doc.get("results", {})
    return res.get("window") or res.get("hold_window") or next((v["window"] for v in res.values() if isinstance(v, dict) and "window" in v),
                                     {})


def _derived(doc: dict[str, Any]) -> dict[str, float | None]:
    """Metrics computed from a run document (CPU including the database, per delivered message)."""
    out: dict[str, float | None] = {k: v.get("value") for k, v in doc.get("summary", {}).items()}
    res = doc.get("results", {})
    win = _window(doc)
    cpu = win.get("server_cpu_s")
    if cpu is not None:
        cpu += win.get("db_cpu_s") or 0.0
    deliveries = None
    scenario = doc.get("scenario")
    if scenario in ("latency", "throughput"):
        deliveries = res.get("messages", {}).get("delivered")
    if scenario == "fanout":
        receivers = res.get("receivers")
        per_msg = [r["server_cpu_s"] + (r.get("db_cpu_s") or 0.0) for r in res.get("repeats", [])
                   if r.get("server_cpu_s") is not None]
        if per_msg and receivers:
            out["cpu_ms_per_delivery"] = 1000.0 * median(per_msg) / receivers
    elif cpu is not None and deliveries:
        out["cpu_ms_per_delivery"] = 1000.0 * cpu / deliveries
    out["_busy"] = win.get("machine_busy_cores")
    out["_other"] = win.get("other_load_cores")
    return out


def _runs(directory: str, scenario: str, side: str) -> list[dict[str, float | None]]:
    docs = [_load(p) for p in sorted(glob.glob(os.path.join(directory, f"{scenario}-{side}-r*.json")))]
    return [_derived(d) for d in docs if d]


def _med(vals: list[Any]) -> float | None:
    v = [x for x in vals if isinstance(x, (int, float))]
    return median(v) if v else None


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"
    return str(x)


def main() -> int:
    results = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "results")
    print("| database | scenario | metric | Tocsin | Synapse | Tocsin/Synapse | target | met | machine busy / "
          "other load (cores, Tocsin; Synapse) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for db in ("sqlite", "postgres"):
        for scenario in dict.fromkeys(r[0] for r in ROWS):
            directory = os.path.join(results, f"{db}-{scenario}")
            a_runs, b_runs = _runs(directory, scenario, "A"), _runs(directory, scenario, "B")
            if not a_runs and not b_runs:
                continue
            load = "{} / {}; {} / {}".format(
                _fmt(_med([r["_busy"] for r in a_runs])), _fmt(_med([r["_other"] for r in a_runs])),
                _fmt(_med([r["_busy"] for r in b_runs])), _fmt(_med([r["_other"] for r in b_runs])))
            for sc, metric, label, target, check in ROWS:
                if sc != scenario:
                    continue
                a = _med([r.get(metric) for r in a_runs])
                b = _med([r.get(metric) for r in b_runs])
                ratio = a / b if a is not None and b not in (None, 0) else None
                met = "" if check is None else ("yes" if check(ratio, a) else "NO")
                print(f"| {db} | {scenario} | {label} | {_fmt(a)} | {_fmt(b)} | {_fmt(ratio)} | {target} | {met} "
                      f"| {load} |")
    for when in ("before", "after"):
        disk = _load(os.path.join(results, f"disk-{when}.json"))
        if disk is not None:
            print(f"\nDisk fsync latency {when} the runs (benchmarks/disk_probe.py, {disk['count']} syncs of 8 KiB in "
                  f"{disk['directory']}): p50 {disk['p50_ms']} ms, p99 {disk['p99_ms']} ms, p99.9 {disk['p999_ms']} ms, "
                  f"max {disk['max_ms']} ms, {disk['over_50ms']} over 50 ms.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
