"""Helpers for unit tests of the accounts area: run coroutines that never wait on the reactor, and a SQLite
Database whose transactions run on the calling thread."""

from __future__ import annotations

import os
import tempfile
from typing import Any, Coroutine

from homeserver.config import DatabaseConfig
from homeserver.storage.database import Database
from homeserver.storage.migrations import apply_migrations


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` to completion; it must not really suspend (fakes and synchronous databases only)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise AssertionError("coroutine suspended; it needs a reactor")


class SyncDatabase(Database):
    """A Database whose ``run_interaction`` runs in the calling thread (no reactor needed)."""

    async def run_interaction(self, desc: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        return self.run_interaction_sync(desc, lambda txn: func(txn, *args, **kwargs))


class FakeReactor:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def seconds(self) -> float:
        return self.now

    def addSystemEventTrigger(self, *args: Any) -> None:  # noqa: N802 - Twisted API
        pass


def sqlite_db() -> SyncDatabase:
    path = os.path.join(tempfile.mkdtemp(prefix="tocsin-unit-"), "hs.db")
    db = SyncDatabase(DatabaseConfig("sqlite3", {"database": path}), FakeReactor())
    apply_migrations(db)
    return db
