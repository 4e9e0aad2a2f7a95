"""The shared matrix-nio acceptance suite (../shared/acceptance/nio) against a server configured exactly as
``scripts/start`` configures one (``generate-config --open-registration``), on SQLite and on PostgreSQL.

Every check must pass: the suite's closing line is parsed and each FAIL line is reported.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.support.server import ROOT, HomeserverProcess, create_pg_database, free_port

ACCEPTANCE = os.path.join(os.path.dirname(ROOT), "shared", "acceptance", "nio")


def _generated_server(tmp_path, database: str) -> HomeserverProcess:
    data_dir = str(tmp_path / "hs")
    port = free_port()
    cmd = [sys.executable, "-m", "homeserver", "generate-config", "--server-name", "localhost", "--data-dir",
           data_dir, "--port", str(port), "--open-registration"]
    pg_args = None
    if database == "postgres":
        pg_args = create_pg_database()
        cmd += ["--database-url", f"postgresql://{pg_args['user']}@{pg_args['host']}:{pg_args['port']}/"
                                  f"{pg_args['dbname']}"]
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
    hs = HomeserverProcess(data_dir=data_dir, database=database, server_name="localhost", port=port,
                           config_path=os.path.join(data_dir, "homeserver.yaml"), pg_args=pg_args)
    return hs.start()


def test_nio_acceptance_suite_passes(tmp_path, database: str) -> None:
    assert os.path.isdir(ACCEPTANCE), f"acceptance suite not found at {ACCEPTANCE}"
    hs = _generated_server(tmp_path, database)
    try:
        env = dict(os.environ, HS_URL=hs.base_url, CHECK_TIMEOUT="60")
        proc = subprocess.run([sys.executable, "run.py"], cwd=ACCEPTANCE, env=env, capture_output=True, text=True,
                              timeout=900)
    finally:
        log = hs.log_tail(80)
        hs.cleanup()
    lines = proc.stdout.strip().splitlines()
    summary = lines[-1] if lines else ""
    m = re.fullmatch(r"(\d+) passed, (\d+) failed", summary)
    assert m, f"no summary line in the suite's output:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    failures = [ln for ln in lines if ln.startswith("FAIL ")]
    assert int(m.group(2)) == 0 and not failures, "\n".join(failures) + f"\n--- server log ---\n{log}"
    assert int(m.group(1)) >= 95
