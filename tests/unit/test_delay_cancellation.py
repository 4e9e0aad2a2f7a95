"""Cancellation held until the work is done (homeserver/storage/database.py ``delay_cancellation``), and
``Database.run_interaction`` built on it: a cancelled caller's transaction still commits and its ``call_after``
callbacks (the caches kept in step with the tables) still run before the caller sees CancelledError."""

from __future__ import annotations

import gc
import logging
import os
import queue
import tempfile
from typing import Any, Iterator

import pytest
from twisted.internet import defer
from twisted.python.failure import Failure

from homeserver.config import DatabaseConfig
from homeserver.storage.database import Database, delay_cancellation
from tests.conftest import DATABASES


def _outcome(d: defer.Deferred) -> dict[str, Any]:
    box: dict[str, Any] = {}
    d.addBoth(lambda v: box.setdefault("result", v))
    return box


def test_without_cancel_result_and_failure_pass_through() -> None:
    inner: defer.Deferred = defer.Deferred()
    box = _outcome(delay_cancellation(inner))
    inner.callback(42)
    assert box == {"result": 42}
    inner = defer.Deferred()
    box = _outcome(delay_cancellation(inner))
    inner.errback(Failure(ValueError("bad")))
    assert box["result"].check(ValueError)
    already = _outcome(delay_cancellation(defer.succeed("done")))
    assert already == {"result": "done"}


def test_cancel_waits_for_the_work_and_never_reaches_it() -> None:
    inner: defer.Deferred = defer.Deferred()
    seen: list[Any] = []
    inner.addBoth(lambda v: seen.append(v) or v)
    outer = delay_cancellation(inner)
    box = _outcome(outer)
    outer.cancel()
    outer.cancel()  # a second cancel changes nothing
    assert box == {} and not inner.called  # the work goes on; its caller waits
    inner.callback("committed")
    assert seen == ["committed"]  # the work's own callbacks saw its real result
    assert box["result"].check(defer.CancelledError)


def test_failure_after_cancel_is_logged_not_lost(caplog: pytest.LogCaptureFixture) -> None:
    inner: defer.Deferred = defer.Deferred()
    outer = delay_cancellation(inner)
    box = _outcome(outer)
    outer.cancel()
    with caplog.at_level(logging.WARNING, logger="homeserver.storage.database"):
        inner.errback(Failure(RuntimeError("disk full")))
    assert box["result"].check(defer.CancelledError)
    assert "disk full" in caplog.text


def test_no_reference_cycle_per_call() -> None:
    gc.collect()
    gc.disable()
    try:
        for _ in range(100):
            inner: defer.Deferred = defer.Deferred()
            _outcome(delay_cancellation(inner))
            inner.callback(1)
        assert gc.collect() == 0
    finally:
        gc.enable()


class _QueueReactor:
    """Calls made from database threads wait in a queue until the test runs them (the reactor thread)."""

    def __init__(self) -> None:
        self.calls: queue.Queue = queue.Queue()

    def callFromThread(self, f: Any, *args: Any) -> None:  # noqa: N802 - Twisted API
        self.calls.put((f, args))

    def addSystemEventTrigger(self, *args: Any) -> None:  # noqa: N802 - Twisted API
        pass

    def run_until(self, box: dict[str, Any]) -> None:
        while "result" not in box:
            f, args = self.calls.get(timeout=10)
            f(*args)


@pytest.fixture(params=DATABASES)
def db(request: pytest.FixtureRequest) -> Iterator[tuple[Database, _QueueReactor]]:
    reactor = _QueueReactor()
    if request.param == "postgres":
        from tests.support.server import create_pg_database, drop_pg_database

        args = create_pg_database("tocsin_unit")
        database = Database(DatabaseConfig("psycopg2", args), reactor)
        cleanup: Any = lambda: drop_pg_database(args["dbname"])  # noqa: E731
    else:
        path = os.path.join(tempfile.mkdtemp(prefix="tocsin-unit-"), "hs.db")
        database = Database(DatabaseConfig("sqlite3", {"database": path}), reactor)
        cleanup = lambda: None  # noqa: E731
    database.run_interaction_sync("t", lambda txn: txn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)"))
    database.start()
    try:
        yield database, reactor
    finally:
        database.stop()
        cleanup()


def test_cancelled_interaction_commits_and_runs_its_after_commit_callbacks(db: tuple[Database, Any]) -> None:
    database, reactor = db
    cache: list[int] = []

    def _txn(txn: Any) -> int:
        txn.execute("INSERT INTO t (k) VALUES (?)", (7,))
        txn.call_after(cache.append, 7)
        return 7

    d = database.run_interaction("insert", _txn)
    box = _outcome(d)
    d.cancel()
    assert box == {}  # the caller waits for the transaction to end
    reactor.run_until(box)
    assert box["result"].check(defer.CancelledError)
    assert cache == [7]
    assert database.run_interaction_sync("read", lambda txn: txn.execute("SELECT k FROM t").fetchall()) == [(7,)]

    ok = database.run_interaction("insert", lambda txn: txn.execute("INSERT INTO t (k) VALUES (8)") and 8)
    box = _outcome(ok)
    reactor.run_until(box)
    assert box == {"result": 8}
