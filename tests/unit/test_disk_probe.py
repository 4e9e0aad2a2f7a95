"""benchmarks/disk_probe.py (the fsync latency printed beside the benchmark table) measures and reports real
syncs: as many samples as it says, percentiles in order, nothing left behind in the directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support.server import ROOT

PROBE = os.path.join(ROOT, "benchmarks", "disk_probe.py")


def test_probe_reports_ordered_fsync_latencies_and_cleans_up(tmp_path) -> None:
    proc = subprocess.run([sys.executable, PROBE, str(tmp_path), "0.3"], capture_output=True, text=True,
                          timeout=60, check=True)
    doc = json.loads(proc.stdout)
    assert doc["directory"] == str(tmp_path)
    assert 5 <= doc["count"] <= 31  # one sync per >= 10 ms over 0.3 s
    assert 0 < doc["p50_ms"] <= doc["p99_ms"] <= doc["p999_ms"] <= doc["max_ms"]
    assert 0 <= doc["over_50ms"] <= doc["count"]
    assert list(tmp_path.iterdir()) == []
