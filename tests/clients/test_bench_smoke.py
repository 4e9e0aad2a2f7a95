"""A small ``latency`` run of the shared benchmark (../shared/bench/matrix_bench.py) against a fresh server, on
SQLite and on PostgreSQL (issue 10).

It fails only on lost, duplicated or erroring messages, never on timings: the machine is shared and the numbers
belong in benchmarks/RESULTS.md, not in a test verdict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.server import ROOT, HomeserverProcess

BENCH = os.path.join(os.path.dirname(ROOT), "shared", "bench", "matrix_bench.py")


def test_small_latency_run_loses_nothing(tmp_path, database: str) -> None:
    if not os.path.isfile(BENCH):
        pytest.fail(f"benchmark not found at {BENCH}")
    hs = HomeserverProcess(data_dir=str(tmp_path / "hs"), database=database, server_name="localhost",
                           extra_config={"access_log": False})
    hs.start()
    out = tmp_path / "latency.json"
    try:
        proc = subprocess.run(
            [sys.executable, BENCH, "--hs", hs.base_url, "--scenario", "latency", "--server-pid", str(hs.proc.pid),
             "--users", "20", "--rooms", "4", "--rate", "10", "--duration", "10", "--warmup", "2", "--drain", "20",
             "--settle-max", "5", "--max-runtime", "240", "--json", str(out)],
            capture_output=True, text=True, timeout=300)
    finally:
        log = hs.log_tail(40)
        hs.cleanup()
    assert proc.returncode == 0, f"benchmark failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}\n{log}"
    doc = json.loads(out.read_text())
    messages = doc["results"]["messages"]
    sync = doc["results"]["sync"]
    assert messages["sent_ok"] > 0 and messages["expected_deliveries"] > 0, messages
    assert (messages["send_failed"], messages["send_errors"], messages["client_skipped"]) == (0, {}, 0), messages
    assert messages["missing"] == 0, messages["missing_examples"]
    assert messages["delivered"] == messages["expected_deliveries"]
    assert sync["sync_errors"] == {}, sync["sync_errors"]
    assert sync["duplicates"] == 0
