"""A SQLite Database for unit tests whose reads/transactions can be held back, so a test forces the order in
which a read's SQL runs, other work happens, and the read's result reaches its caller (what the thread pool and
SQLite group commit decide in production)."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer
from twisted.python.failure import Failure

from homeserver.config import DatabaseConfig
from homeserver.storage.migrations import apply_migrations
from tests.unit.accounts_testlib import FakeReactor, SyncDatabase


class Gate:
    """One held-back read: the test decides when its SQL runs (``run_sql``) and when its result reaches the
    caller (``deliver``), like a read on the database thread whose result comes back on a later reactor turn."""

    def __init__(self, db: "GatedDatabase", desc: str, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.db, self.desc, self.func, self.args = db, desc, func, args
        self.deferred: defer.Deferred = defer.Deferred()
        self.ran = False
        self.result: Any = None

    def run_sql(self) -> None:
        self.result = self.db.run_interaction_sync(self.desc, self.func, *self.args)
        self.ran = True

    def fail(self, exc: Exception) -> None:
        """The transaction failed (nothing committed): its caller gets ``exc``."""
        self.deferred.errback(Failure(exc))

    def deliver(self) -> None:
        if not self.ran:
            self.run_sql()
        self.deferred.callback(self.result)


class GatedDatabase(SyncDatabase):
    """A SQLite Database running on the calling thread whose next ``hold`` reads are held back as gates."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hold = 0
        self.gates: list[Gate] = []

    async def run_read(self, desc: str, func: Callable[..., Any], *args: Any) -> Any:
        return await self._maybe_gate(desc, func, args)

    async def run_interaction(self, desc: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        return await self._maybe_gate(desc, lambda txn, *a: func(txn, *a, **kwargs), args)

    async def _maybe_gate(self, desc: str, func: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        if self.hold:
            self.hold -= 1
            gate = Gate(self, desc, func, args)
            self.gates.append(gate)
            return await gate.deferred
        return self.run_interaction_sync(desc, func, *args)


def start(coro: Any) -> dict[str, Any]:
    """Run ``coro`` until it waits on a gate; the returned dict gets ``"result"`` once it finishes."""
    box: dict[str, Any] = {}

    def done(value: Any) -> None:
        box["result"] = value

    defer.ensureDeferred(coro).addBoth(done)
    return box


def result(box: dict[str, Any]) -> Any:
    assert "result" in box, "still waiting"
    value = box["result"]
    if isinstance(value, Failure):
        value.raiseException()
    return value


def gated_db(tmp_path: Any) -> GatedDatabase:
    db = GatedDatabase(DatabaseConfig("sqlite3", {"database": str(tmp_path / "hs.db")}), FakeReactor())
    apply_migrations(db)
    return db
