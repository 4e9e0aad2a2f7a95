"""How long this machine's disk takes to make a small write durable (``fsync``), the floor under every commit.

Both servers acknowledge a message only after its commit reached the disk (SQLite ``synchronous=FULL`` in WAL
mode, PostgreSQL ``synchronous_commit=on``), so a disk whose syncs sometimes stall for hundreds of ms puts those
stalls straight into the send->deliver tail of ``latency``, whatever the server does. ``run_all.sh`` runs this
before and after the benchmarks; ``summarize.py`` prints the figures beside the table.

    python3 benchmarks/disk_probe.py [DIRECTORY] [SECONDS] > disk.json

Appends 8 KiB and fsyncs it every 10 ms for SECONDS (default 20) in a scratch file in DIRECTORY (default the
system temp directory, where the benchmark's databases live), then prints JSON: ``count``, ``p50_ms``,
``p99_ms``, ``p999_ms``, ``max_ms``, ``over_50ms`` (how many syncs took longer than 50 ms), ``directory``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time


def probe(directory: str, seconds: float) -> dict[str, object]:
    """fsync latencies (ms) of ``directory``'s file system over ``seconds`` seconds; see the module docstring."""
    fd, path = tempfile.mkstemp(prefix="disk-probe-", dir=directory)
    samples: list[float] = []
    try:
        end = time.monotonic() + seconds
        block = b"x" * 8192
        while time.monotonic() < end and len(samples) < 100_000:
            os.write(fd, block)
            started = time.perf_counter()
            os.fsync(fd)
            samples.append((time.perf_counter() - started) * 1000)
            time.sleep(0.01)
    finally:
        os.close(fd)
        os.unlink(path)
    samples.sort()
    n = len(samples)

    def pct(p: float) -> float:
        return round(samples[min(n - 1, int(n * p))], 2)

    return {"directory": directory, "count": n, "p50_ms": pct(0.5), "p99_ms": pct(0.99), "p999_ms": pct(0.999),
            "max_ms": round(samples[-1], 2), "over_50ms": sum(1 for s in samples if s > 50)}


def main() -> int:
    directory = sys.argv[1] if len(sys.argv) > 1 else tempfile.gettempdir()
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
    print(json.dumps(probe(directory, seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
