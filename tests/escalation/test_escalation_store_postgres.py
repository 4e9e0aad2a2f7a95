"""The same store and engine on PostgreSQL: a throw-away cluster on a loopback port (or TOCSIN_TEST_POSTGRES_DSN)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import Iterator

import pytest

from appservices.escalation.store import EscalationStore
from escalation_testlib import now
from tests.support.server import free_port
from test_escalation_engine import MIN, START, Harness


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    if os.environ.get("TOCSIN_TEST_POSTGRES_DSN"):
        yield os.environ["TOCSIN_TEST_POSTGRES_DSN"]
        return
    assert shutil.which("initdb") and shutil.which("pg_ctl"), "PostgreSQL server binaries (initdb, pg_ctl) needed"
    root = tempfile.mkdtemp(prefix="tocsin-esc-pg-")
    port = free_port()
    # PostgreSQL refuses to run as root; use the postgres account when we are root.
    prefix = ["su", "postgres", "-c"] if os.geteuid() == 0 else ["sh", "-c"]
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data = os.path.join(root, "data")
    subprocess.run(prefix + [f"initdb -D {data} -A trust -U postgres >/dev/null"], check=True, timeout=60)
    subprocess.run(prefix + [f"pg_ctl -D {data} -l {root}/log -w -t 30 start "
                             f"-o '-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off' >/dev/null"],
                   check=True, timeout=60)
    try:
        yield f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    finally:
        subprocess.run(prefix + [f"pg_ctl -D {data} -w -t 30 stop -m fast >/dev/null"], timeout=60)
        shutil.rmtree(root, ignore_errors=True)


class PgHarness(Harness):
    def __init__(self, dsn: str, at: float = START) -> None:
        self.dsn = dsn
        super().__init__(db=":memory:", at=at)

    def _open_store(self, db: str) -> EscalationStore:
        return EscalationStore.postgres(self.dsn)


def test_restart_on_postgres_fires_pending_timer_once(pg_dsn: str) -> None:
    first = PgHarness(pg_dsn)
    first.store.transaction(lambda t: [t.execute(f"DELETE FROM {table}") for table in (
        "escalation_incidents", "escalation_timers", "escalation_pages", "escalation_recipients",
        "escalation_firings", "delivery_attempts")])
    first.open()
    first.advance(7)
    assert [e[0] for e in first.log()] == ["matrix", "sms"]
    first.engine.stop()
    first.store.close()
    a, b = PgHarness(pg_dsn, at=START + 12 * MIN), PgHarness(pg_dsn, at=START + 12 * MIN)
    a.clock.advance(0)
    b.clock.advance(0)  # the overdue voice step fires at start-up, in one of the two processes
    for _ in range(10):
        a.clock.advance(MIN)
        b.clock.advance(MIN)
    sent = sorted(a.log() + b.log())
    assert [(c, who, when) for c, who, _, when in sent] == [
        ("matrix", "!ops:x", 15.0), ("matrix", "@bob:x", 15.0), ("voice", "@alice:x", 12.0),
        ("webhook", "http://127.0.0.1:9/hook", 15.0)]
    status = now(a.engine.status("inc1"))
    assert status is not None and (status.tier, status.state) == (1, "open")
