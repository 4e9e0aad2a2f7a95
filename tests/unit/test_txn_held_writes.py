"""Txn.execute_write / executemany_write: on PostgreSQL held and sent with the next statement (one round trip),
on SQLite at once. Data with SQL-looking text stays exact, reads see earlier held writes, a constraint violation
in a held write fails the transaction (nothing of it stays), NUL still gives M_BAD_JSON."""

from __future__ import annotations

import os
import tempfile
from typing import Any, Iterator

import pytest

from homeserver.config import DatabaseConfig
from homeserver.http.errors import BadJsonError
from homeserver.storage.database import Database
from tests.conftest import DATABASES
from tests.unit.accounts_testlib import FakeReactor

TRICKY = ["100% sure", "%s and %(name)s", "it's; DROP TABLE t; --", 'back\\slash "quoted"', "ünïcødé ✓", ""]


@pytest.fixture(params=DATABASES)
def db(request: pytest.FixtureRequest) -> Iterator[Database]:
    if request.param == "postgres":
        from tests.support.server import create_pg_database, drop_pg_database

        args = create_pg_database("tocsin_unit")
        database = Database(DatabaseConfig("psycopg2", args), FakeReactor())
        cleanup: Any = lambda: drop_pg_database(args["dbname"])  # noqa: E731
    else:
        path = os.path.join(tempfile.mkdtemp(prefix="tocsin-unit-"), "hs.db")
        database = Database(DatabaseConfig("sqlite3", {"database": path}), FakeReactor())
        cleanup = lambda: None  # noqa: E731
    database.run_interaction_sync("t", lambda txn: txn.execute(
        "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
    try:
        yield database
    finally:
        database.stop()
        cleanup()


def rows(db: Database) -> list[tuple[Any, ...]]:
    return db.run_interaction_sync("read", lambda txn: txn.execute("SELECT k, v FROM t ORDER BY k").fetchall())


def test_held_writes_keep_text_exact_and_reads_see_them(db: Database) -> None:
    def _txn(txn: Any) -> Any:
        for i, text in enumerate(TRICKY[:3]):
            txn.execute_write("INSERT INTO t (k, v) VALUES (?, ?)", (i, text))
        txn.executemany_write("INSERT INTO t (k, v) VALUES (?, ?)", [(i, t) for i, t in enumerate(TRICKY) if i >= 3])
        txn.execute_write("UPDATE t SET v = ? WHERE k = ?", ("updated %", 5))
        seen = txn.execute("SELECT COUNT(*) FROM t").fetchone()[0]  # sends the held writes first
        txn.execute_write("DELETE FROM t WHERE k = ?", (4,))  # held until COMMIT
        return seen

    assert db.run_interaction_sync("w", _txn) == len(TRICKY)
    expected = [(i, t) for i, t in enumerate(TRICKY) if i != 4]
    expected[-1] = (5, "updated %")
    assert rows(db) == expected


def test_a_failing_held_write_fails_the_whole_transaction(db: Database) -> None:
    db.run_interaction_sync("seed", lambda txn: txn.execute("INSERT INTO t (k, v) VALUES (1, 'one')"))

    def _txn(txn: Any) -> None:
        txn.execute_write("INSERT INTO t (k, v) VALUES (?, ?)", (2, "two"))
        txn.execute_write("INSERT INTO t (k, v) VALUES (?, ?)", (1, "duplicate key"))

    with pytest.raises(Exception) as raised:
        db.run_interaction_sync("w", _txn)
    assert type(raised.value).__name__ in ("IntegrityError", "UniqueViolation")
    assert rows(db) == [(1, "one")]


def test_nul_in_a_held_write_is_a_bad_json_error_on_postgres(db: Database) -> None:
    def _txn(txn: Any) -> None:
        txn.execute_write("INSERT INTO t (k, v) VALUES (?, ?)", (3, "a\x00b"))

    if db.is_postgres:
        with pytest.raises(BadJsonError):
            db.run_interaction_sync("w", _txn)
        assert rows(db) == []
    else:
        db.run_interaction_sync("w", _txn)
        assert rows(db) == [(3, "a\x00b")]
