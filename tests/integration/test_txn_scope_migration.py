"""Migration 003_txn_scope on SQLite and PostgreSQL: event_txn_ids rows written under the old (user, device,
txn_id) key keep answering retries under the new (user, device, room, endpoint, txn_id) key, and the new key lets
one txnId be used in several rooms and endpoints."""

from __future__ import annotations

import os
from typing import Any, Iterator

import pytest

from homeserver.config import DatabaseConfig
from homeserver.storage import migrations
from homeserver.storage.database import Database
from tests.support.server import create_pg_database, drop_pg_database


class _Reactor:
    def addSystemEventTrigger(self, *args: Any) -> None:  # noqa: N802 - Twisted API
        pass


@pytest.fixture
def bare_db(database: str, tmp_path: "os.PathLike[str]") -> Iterator[Database]:
    if database == "postgres":
        args = create_pg_database("tocsin_mig")
        db = Database(DatabaseConfig("psycopg2", dict(args)), _Reactor())
        try:
            yield db
        finally:
            for conn in db._all_conns:
                conn.close()
            drop_pg_database(args["dbname"])
    else:
        db = Database(DatabaseConfig("sqlite3", {"database": os.path.join(str(tmp_path), "hs.db")}), _Reactor())
        yield db
        for conn in db._all_conns:
            conn.close()


def _rows(db: Database, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return db.run_interaction_sync("q", lambda txn: txn.execute(sql, params).fetchall())


def test_old_txn_rows_survive_and_new_key_applies(bare_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    db = bare_db
    every = migrations._migration_files
    monkeypatch.setattr(migrations, "_migration_files",
                        lambda engine: [(n, p) for n, p in every(engine) if n < "003"])
    assert migrations.apply_migrations(db) == ["001_core.sql", "002_core_indexes.sql"]

    def old_data(txn: Any) -> None:
        txn.execute("INSERT INTO rooms (room_id, creator, room_version, is_public, creation_ts) "
                    "VALUES ('!r:hs', '@a:hs', '10', 0, 1)")
        for so, eid, etype in ((1, "$msg", "m.room.message"), (2, "$red", "m.room.redaction"),
                               (3, "$ack", "com.example.ack")):
            txn.execute("INSERT INTO events (stream_ordering, depth, event_id, room_id, type, state_key, sender, "
                        "origin_server_ts, json) VALUES (?, ?, ?, '!r:hs', ?, NULL, '@a:hs', 1, '{}')",
                        (so, so, eid, etype))
        txn.execute("INSERT INTO redactions (event_id, redacts, stream_ordering) VALUES ('$red', '$msg', 2)")
        for txn_id, eid in (("t1", "$msg"), ("t2", "$red"), ("t3", "$ack")):
            txn.execute("INSERT INTO event_txn_ids (user_id, device_id, txn_id, room_id, event_id, inserted_ts) "
                        "VALUES ('@a:hs', 'DEV', ?, '!r:hs', ?, 5)", (txn_id, eid))

    db.run_interaction_sync("old", old_data)
    monkeypatch.setattr(migrations, "_migration_files", every)
    assert "003_txn_scope.sql" in migrations.apply_migrations(db)

    got = _rows(db, "SELECT user_id, device_id, room_id, scope, txn_id, event_id, inserted_ts FROM event_txn_ids "
                    "ORDER BY txn_id")
    assert got == [("@a:hs", "DEV", "!r:hs", "send/m.room.message", "t1", "$msg", 5),
                   ("@a:hs", "DEV", "!r:hs", "redact/$msg", "t2", "$red", 5),
                   ("@a:hs", "DEV", "!r:hs", "send/com.example.ack", "t3", "$ack", 5)]
    # The lookup EventStore.get_txn_event_id makes finds the old rows.
    lookup = ("SELECT event_id FROM event_txn_ids WHERE user_id = ? AND device_id = ? AND room_id = ? "
              "AND scope = ? AND txn_id = ?")
    assert _rows(db, lookup, "@a:hs", "DEV", "!r:hs", "send/m.room.message", "t1") == [("$msg",)]
    assert _rows(db, lookup, "@a:hs", "DEV", "!r:hs", "redact/$msg", "t2") == [("$red",)]
    # The same txnId in another room or on another endpoint is a separate row now.
    insert = ("INSERT INTO event_txn_ids (user_id, device_id, room_id, scope, txn_id, event_id, inserted_ts) "
              "VALUES ('@a:hs', 'DEV', ?, ?, 't1', ?, 6)")
    db.run_interaction_sync("new", lambda txn: txn.execute(insert, ("!other:hs", "send/m.room.message", "$x")))
    db.run_interaction_sync("new", lambda txn: txn.execute(insert, ("!r:hs", "redact/$msg", "$y")))
    with pytest.raises(Exception):
        db.run_interaction_sync("dup", lambda txn: txn.execute(insert, ("!r:hs", "send/m.room.message", "$z")))
    # The event_id index used to attach own-echo transaction IDs exists again.
    if db.is_postgres:
        idx = _rows(db, "SELECT indexname FROM pg_indexes WHERE tablename = 'event_txn_ids'")
    else:
        idx = _rows(db, "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'event_txn_ids'")
    assert ("event_txn_ids_event",) in idx
