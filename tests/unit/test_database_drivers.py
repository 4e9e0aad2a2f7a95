"""Each engine's driver is loaded only where it is used: ``is_integrity_error`` recognises both drivers' constraint
violations without importing either, and a server on PostgreSQL never maps SQLite's library
(homeserver/storage/database.py)."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import pytest

from homeserver.config import DatabaseConfig
from homeserver.storage.database import Database, is_integrity_error
from tests.conftest import DATABASES


class _Reactor:
    def addSystemEventTrigger(self, *args: Any) -> None:  # noqa: N802 - Twisted API
        pass


def _failure_of(db: Database, sql: str) -> BaseException:
    try:
        db.run_interaction_sync("t", lambda txn: txn.execute(sql))
    except Exception as e:  # noqa: BLE001 - the driver's own exception is what is checked
        return e
    raise AssertionError(f"{sql!r} did not fail")


def _check_engine(db: Database) -> None:
    db.run_interaction_sync("schema", lambda t: t.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)"))
    db.run_interaction_sync("row", lambda t: t.execute("INSERT INTO t (k, v) VALUES ('a', 1)"))
    duplicate = _failure_of(db, "INSERT INTO t (k, v) VALUES ('a', 2)")
    not_null = _failure_of(db, "INSERT INTO t (k, v) VALUES ('b', NULL)")
    syntax = _failure_of(db, "INSERT INTO no_such_table (k) VALUES ('c')")
    assert is_integrity_error(duplicate), repr(duplicate)
    assert is_integrity_error(not_null), repr(not_null)
    assert not is_integrity_error(syntax), repr(syntax)
    # nothing of the refused statements was written
    assert db.run_interaction_sync("rows", lambda t: t.execute("SELECT k, v FROM t").fetchall()) == [("a", 1)]


@pytest.mark.parametrize("engine", DATABASES)
def test_constraint_violations_are_integrity_errors(engine: str) -> None:
    if engine == "sqlite":
        path = os.path.join(tempfile.mkdtemp(prefix="tocsin-unit-"), "hs.db")
        _check_engine(Database(DatabaseConfig("sqlite3", {"database": path}), _Reactor()))
        return
    from tests.support.server import create_pg_database, drop_pg_database

    args = create_pg_database("tocsin_unit")
    db = Database(DatabaseConfig("psycopg2", args), _Reactor())
    try:
        _check_engine(db)
    finally:
        db._drop_conn()
        drop_pg_database(args["dbname"])


def test_other_exceptions_are_not_integrity_errors() -> None:
    class IntegrityError(Exception):  # same name, but no database driver's
        pass

    assert not is_integrity_error(IntegrityError("x"))
    assert not is_integrity_error(ValueError("x"))


def test_server_loads_only_its_own_database_driver(homeserver: Any, database: str) -> None:
    """What the running process has mapped: SQLite's library only when it runs on SQLite (on PostgreSQL it would be
    about 1 MiB of resident memory for nothing)."""
    with open(f"/proc/{homeserver.proc.pid}/maps") as f:
        maps = f.read()
    assert ("_sqlite3" in maps) == (database == "sqlite")
    assert ("_psycopg" in maps) == (database == "postgres")
