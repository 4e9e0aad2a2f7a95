"""SQLite group commit: queued transactions share one COMMIT, each inside its own savepoint, and keep their own
outcome (homeserver/storage/database.py)."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from twisted.internet import defer

from homeserver.config import DatabaseConfig
from homeserver.storage.database import Database, Txn, _Queued


class _Reactor:
    def addSystemEventTrigger(self, *args: Any) -> None:  # noqa: N802 - Twisted API
        pass


def _db() -> Database:
    path = os.path.join(tempfile.mkdtemp(prefix="tocsin-unit-"), "hs.db")
    db = Database(DatabaseConfig("sqlite3", {"database": path}), _Reactor())
    db.run_interaction_sync("schema", lambda t: t.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)"))
    return db


def _insert(k: str, v: int) -> Any:
    def f(txn: Txn) -> str:
        txn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (k, v))
        txn.call_after(lambda: None)
        return k
    return f


def _rows(db: Database) -> dict[str, int]:
    return dict(db.run_interaction_sync("rows", lambda t: t.execute("SELECT k, v FROM t").fetchall()))


def _queued(desc: str, func: Any) -> _Queued:
    return _Queued(desc, func, (), {}, defer.Deferred())


def test_failing_member_is_rolled_back_alone() -> None:
    db = _db()

    def half_then_fail(txn: Txn) -> None:
        txn.execute("INSERT INTO t (k, v) VALUES ('half', 1)")
        raise ValueError("refused")

    batch = [_queued("a", _insert("a", 1)), _queued("bad", half_then_fail), _queued("dup", _insert("a", 2)),
             _queued("b", _insert("b", 3))]
    outcomes = db._run_batch(batch)
    assert [(q.desc, ok) for q, ok, _ in outcomes] == [("a", True), ("bad", False), ("dup", False), ("b", True)]
    assert outcomes[0][2][0] == "a" and len(outcomes[0][2][1]) == 1  # result and its call_after list
    assert outcomes[1][2].check(ValueError)
    assert type(outcomes[2][2].value).__name__ == "IntegrityError"
    # the failed ones left nothing behind; the others committed together
    assert _rows(db) == {"a": 1, "b": 3}


def test_reads_see_earlier_writes_of_the_same_group() -> None:
    db = _db()
    batch = [_queued("w", _insert("x", 7)),
             _queued("r", lambda txn: txn.execute("SELECT v FROM t WHERE k = 'x'").fetchone())]
    outcomes = db._run_batch(batch)
    assert outcomes[1][1] is True and outcomes[1][2][0] == (7,)


def test_group_failure_falls_back_to_one_transaction_each(monkeypatch: Any) -> None:
    db = _db()

    def busy(batch: Any) -> Any:
        raise RuntimeError("database is locked by another process")

    monkeypatch.setattr(db, "_run_grouped", busy)
    batch = [_queued("a", _insert("a", 1)), _queued("dup", _insert("a", 2)), _queued("b", _insert("b", 2))]
    outcomes = db._run_batch(batch)
    assert [ok for _, ok, _ in outcomes] == [True, False, True]
    assert _rows(db) == {"a": 1, "b": 2}


def test_wal_is_checkpointed_by_the_background_thread_not_by_commits() -> None:
    """After start(), commits never run SQLite's automatic checkpoint (it stalled one send in a few hundred for
    up to 140 ms); the checkpoint thread copies the WAL into the database file instead."""
    import time

    db = _db()
    path = db.config.args["database"]
    db.start()
    try:
        assert db._checkpointer is not None and db._checkpointer.is_alive()
        db._drop_conn()  # _db() opened this thread's connection before start(); pool threads open theirs after
        writer = db._get_conn()
        assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        size_before = os.path.getsize(path)
        payload = "x" * 2000
        db.run_interaction_sync("fill", lambda t: t.executemany(
            "INSERT INTO t (k, v) VALUES (?, ?)", [(f"{i}{payload}", i) for i in range(2000)]))
        assert os.path.getsize(path + "-wal") > 1_000_000  # the rows are in the WAL, not yet in the file
        deadline = time.monotonic() + 20
        while os.path.getsize(path) <= size_before + 1_000_000 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert os.path.getsize(path) > size_before + 1_000_000, "the checkpoint thread never copied the WAL"
        assert len(_rows(db)) == 2000
    finally:
        db.stop()
    assert db._checkpointer is None
