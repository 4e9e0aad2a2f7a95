"""SQLite WAL checkpoints on a new server (homeserver/storage/database.py, ``_checkpoint_loop``): the database is
started before its migrations create anything, as ``homeserver run`` does, and committed pages still reach the
database file while the server runs, so the WAL stays bounded instead of growing until shutdown."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from typing import Any

from homeserver.config import DatabaseConfig
from homeserver.storage import database as database_module
from homeserver.storage.database import Database


class _Reactor:
    def addSystemEventTrigger(self, *args: Any) -> None:  # noqa: N802 - Twisted API
        pass


def _wait_for(condition: Any, limit_s: float = 15.0) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_new_database_is_checkpointed_while_running_and_its_wal_stays_bounded(monkeypatch: Any) -> None:
    monkeypatch.setattr(database_module, "CHECKPOINT_INTERVAL_S", 0.1)
    path = os.path.join(tempfile.mkdtemp(prefix="tocsin-unit-"), "hs.db")
    db = Database(DatabaseConfig("sqlite3", {"database": path}), _Reactor())
    db.start()  # before the file holds anything: the checkpointer's connection opens an empty file
    try:
        db.run_interaction_sync("schema", lambda t: t.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)"))
        wal_sizes = []
        for batch in range(5):
            for i in range(100):
                key = batch * 100 + i
                db.run_interaction_sync("w", lambda t, k=key: t.execute("INSERT INTO t VALUES (?, ?)", (k, "x" * 500)))
            # every committed page reaches the database file (100 rows of 500 bytes are over 50 KB per batch)
            assert _wait_for(lambda b=batch: os.path.getsize(path) > 50_000 * (b + 1)), os.path.getsize(path)
            wal_sizes.append(os.path.getsize(path + "-wal"))
        # the WAL restarts from its beginning once checkpointed: five batches take no more room than two
        assert wal_sizes[-1] <= 2 * wal_sizes[0], wal_sizes
        with sqlite3.connect(path) as other:
            assert other.execute("SELECT COUNT(*), SUM(LENGTH(v)) FROM t").fetchone() == (500, 500 * 500)
    finally:
        db.stop()
