"""Schema migrations: ``schema/NNN_name.sql`` files applied in order, each once, recorded in ``schema_migrations``.

A file runs on both engines. Where the engines need different SQL, ``NNN_name.sqlite.sql`` and
``NNN_name.postgres.sql`` sit beside it (or replace it) and only the one for the current engine runs.
Statements are separated by a ``;`` at the end of a line.
"""

from __future__ import annotations

import logging
import os
import re
import time

from homeserver.storage.database import Database, Txn

logger = logging.getLogger(__name__)

SCHEMA_DIR = os.path.join(os.path.dirname(__file__), "schema")
_NAME_RE = re.compile(r"^(\d{3})_([a-z0-9_]+?)(?:\.(sqlite|postgres))?\.sql$")


def _migration_files(engine: str) -> list[tuple[str, str]]:
    """``[(migration_name, path)]`` in order, for ``engine`` ('sqlite' or 'postgres')."""
    out = []
    for fname in sorted(os.listdir(SCHEMA_DIR)):
        m = _NAME_RE.match(fname)
        if not m:
            continue
        if m.group(3) and m.group(3) != engine:
            continue
        out.append((fname if not m.group(3) else fname, os.path.join(SCHEMA_DIR, fname)))
    return out


def _split_statements(sql: str) -> list[str]:
    lines = [ln for ln in sql.splitlines() if not ln.strip().startswith("--")]
    text = "\n".join(lines)
    return [s.strip() for s in re.split(r";\s*$", text, flags=re.M) if s.strip()]


def apply_migrations(db: Database) -> list[str]:
    """Apply every migration not yet recorded; returns the names applied. Runs synchronously at start-up."""
    engine = "postgres" if db.is_postgres else "sqlite"

    def _txn(txn: Txn) -> list[str]:
        txn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_ts BIGINT NOT NULL)"
        )
        txn.execute("SELECT name FROM schema_migrations")
        done = {r[0] for r in txn.fetchall()}
        applied = []
        for name, path in _migration_files(engine):
            if name in done:
                continue
            with open(path, encoding="utf-8") as f:
                for stmt in _split_statements(f.read()):
                    txn.execute(stmt)
            txn.execute("INSERT INTO schema_migrations (name, applied_ts) VALUES (?, ?)",
                        (name, int(time.time() * 1000)))
            applied.append(name)
        return applied

    if db.is_postgres:
        # One start-up at a time applies migrations (several processes may start together).
        def _locked(txn: Txn) -> list[str]:
            txn.execute("SELECT pg_advisory_xact_lock(746163)")
            return _txn(txn)

        applied = db.run_interaction_sync("apply_migrations", _locked)
    else:
        applied = db.run_interaction_sync("apply_migrations", _txn)
    if applied:
        logger.info("applied schema migrations: %s", ", ".join(applied))
    return applied
