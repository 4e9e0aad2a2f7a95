"""Persistent escalation state: incidents, timers, pages, per-person read/ack state and delivery attempts.

SQLite by default, PostgreSQL optionally (psycopg2); the SQL is plain and runs on both (placeholders are written
``?`` and rewritten to ``%s`` for PostgreSQL). All timestamps are integer **milliseconds** since the Unix epoch.

Timers are rows: the engine claims a timer (``pending`` -> ``done``) in the *same transaction* in which it records
the pages the timer causes and inserts follow-up timers. A restart re-arms every ``pending`` timer, so nothing is
lost; the conditional claim means two processes (or a restart racing a late callback) cannot fire one twice.

Inside a service, every transaction runs on one dedicated database thread (:meth:`EscalationStore.start`, then
:meth:`EscalationStore.run` returns a Deferred): a slow disk or a PostgreSQL round trip never stalls the reactor,
and one thread keeps transactions in the order they were asked for (an ack queued after a timer's claim sees its
result). Without ``start()`` (fake-clock tests, scripts) ``run`` executes inline and returns a fired Deferred.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence, TypeVar

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

T = TypeVar("T")

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS escalation_incidents (
        incident_id TEXT PRIMARY KEY,
        route TEXT,
        priority TEXT NOT NULL,
        policy_name TEXT NOT NULL,
        room_id TEXT,
        alert_event_id TEXT,
        summary TEXT NOT NULL,
        alert_key TEXT NOT NULL,
        state TEXT NOT NULL,
        tier_index INTEGER NOT NULL,
        cycle INTEGER NOT NULL,
        opened_ts BIGINT NOT NULL,
        acked_ts BIGINT,
        acked_by TEXT,
        resolved_ts BIGINT,
        last_tier_hook_cycle INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS escalation_timers (
        timer_id TEXT PRIMARY KEY,
        incident_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        due_ts BIGINT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        done_ts BIGINT
    )""",
    "CREATE INDEX IF NOT EXISTS escalation_timers_pending ON escalation_timers (status, due_ts)",
    """CREATE TABLE IF NOT EXISTS escalation_pages (
        page_id TEXT PRIMARY KEY,
        incident_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        tier_index INTEGER NOT NULL,
        purpose TEXT NOT NULL,
        created_ts BIGINT NOT NULL,
        status TEXT NOT NULL,
        provider_id TEXT,
        finished_ts BIGINT
    )""",
    "CREATE INDEX IF NOT EXISTS escalation_pages_user ON escalation_pages (user_id, channel, created_ts)",
    "CREATE INDEX IF NOT EXISTS escalation_pages_incident ON escalation_pages (incident_id)",
    """CREATE TABLE IF NOT EXISTS escalation_recipients (
        incident_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        first_paged_ts BIGINT NOT NULL,
        read_ts BIGINT,
        acked_ts BIGINT,
        PRIMARY KEY (incident_id, user_id)
    )""",
    """CREATE TABLE IF NOT EXISTS escalation_firings (
        alert_key TEXT NOT NULL,
        fired_ts BIGINT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS escalation_firings_key ON escalation_firings (alert_key, fired_ts)",
    # Room events in the order the homeserver pushed them to the appservice: a receipt on an event at or after
    # the alert means its sender has read the alert (spec: receipts mark everything up to that event as read).
    """CREATE TABLE IF NOT EXISTS escalation_room_events (
        event_id TEXT PRIMARY KEY,
        room_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        received_ts BIGINT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS escalation_room_events_ts ON escalation_room_events (received_ts)",
    # Schedule handoffs already announced in their team room (so a restart does not announce them twice).
    """CREATE TABLE IF NOT EXISTS escalation_handoffs (
        schedule TEXT NOT NULL,
        at_ts BIGINT NOT NULL,
        PRIMARY KEY (schedule, at_ts)
    )""",
    """CREATE TABLE IF NOT EXISTS delivery_attempts (
        attempt_id TEXT PRIMARY KEY,
        page_id TEXT,
        channel TEXT NOT NULL,
        recipient TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        ts BIGINT NOT NULL,
        provider_id TEXT,
        result TEXT NOT NULL,
        error TEXT
    )""",
]


@dataclass(frozen=True)
class TimerRow:
    """A persisted timer: ``kind`` (``tier``, ``read_check``, ``reminder``, ``ack_timeout``), ``due_ts`` in ms."""

    timer_id: str
    incident_id: str
    kind: str
    due_ts: int
    payload: dict[str, Any]


class Txn:
    """A cursor inside one transaction; ``execute`` takes ``?`` placeholders on either database."""

    def __init__(self, cursor: Any, paramstyle_pg: bool) -> None:
        self._cur = cursor
        self._pg = paramstyle_pg

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement; returns the affected row count."""
        if self._pg:
            sql = sql.replace("?", "%s")
        self._cur.execute(sql, tuple(args))
        return self._cur.rowcount

    def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query (``?`` placeholders) and return all rows as tuples."""
        self.execute(sql, args)
        return list(self._cur.fetchall())

    def fetchone(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """Run a query (``?`` placeholders) and return the first row, or None."""
        self.execute(sql, args)
        return self._cur.fetchone()


class EscalationStore:
    """Connection plus the SQL of the escalation service.

    ``EscalationStore.sqlite(path)`` or ``EscalationStore.postgres(dsn)``; ``transaction(fn)`` runs ``fn(txn)``
    atomically and returns its result (rolls back and re-raises on error).
    """

    def __init__(self, connect: Callable[[], Any], is_postgres: bool) -> None:
        self._connect = connect
        self.is_postgres = is_postgres
        self._conn = connect()
        self._lock = threading.Lock()
        self._pool: ThreadPool | None = None
        self._reactor: Any = None
        with self._lock:
            self._run(lambda txn: [txn.execute(stmt) for stmt in SCHEMA], immediate=True)

    @classmethod
    def sqlite(cls, path: str) -> "EscalationStore":
        """Open (and create) the SQLite database file at ``path`` (``:memory:`` for a throw-away store)."""

        def connect() -> sqlite3.Connection:
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves so a claim takes the write lock up front.
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
            conn.execute("PRAGMA journal_mode=WAL")
            return conn

        return cls(connect, is_postgres=False)

    @classmethod
    def postgres(cls, dsn: str) -> "EscalationStore":
        """Connect to PostgreSQL with a libpq ``dsn`` (e.g. ``dbname=tocsin host=127.0.0.1``)."""
        import psycopg2

        return cls(lambda: psycopg2.connect(dsn), is_postgres=True)

    def start(self, reactor: Any) -> None:
        """Run every later :meth:`run` on a dedicated database thread; it stops at reactor shutdown."""
        self._reactor = reactor
        self._pool = ThreadPool(1, 1, name="escalation-db")
        self._pool.start()
        reactor.addSystemEventTrigger("during", "shutdown", self._pool.stop)

    def run(self, fn: Callable[[Txn], T]) -> "defer.Deferred[T]":
        """Run ``fn(txn)`` in one write transaction off the reactor; a Deferred of its result (or its error).

        Before :meth:`start` the transaction runs inline (the Deferred has already fired).
        """
        if self._pool is None:
            return defer.maybeDeferred(self.transaction, fn)
        return deferToThreadPool(self._reactor, self._pool, self.transaction, fn)

    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()

    def _run(self, fn: Callable[[Txn], T], immediate: bool) -> T:
        cur = self._conn.cursor()
        if not self.is_postgres:
            cur.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            result = fn(Txn(cur, self.is_postgres))
        except BaseException:
            self._conn.rollback() if self.is_postgres else cur.execute("ROLLBACK")
            raise
        if self.is_postgres:
            self._conn.commit()
        else:
            cur.execute("COMMIT")
        return result

    def transaction(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn(txn)`` in one write transaction and return its result."""
        with self._lock:
            return self._run(fn, immediate=True)

    # -- timers --------------------------------------------------------------------------------------------------

    @staticmethod
    def insert_timer(txn: Txn, timer: TimerRow) -> None:
        """Persist ``timer`` as ``pending`` (payload stored as sorted JSON); a duplicate ``timer_id`` raises the
        driver's integrity error.
        """
        txn.execute(
            "INSERT INTO escalation_timers (timer_id, incident_id, kind, due_ts, payload, status)"
            " VALUES (?, ?, ?, ?, ?, 'pending')",
            (timer.timer_id, timer.incident_id, timer.kind, timer.due_ts, json.dumps(timer.payload, sort_keys=True)),
        )

    @staticmethod
    def claim_timer(txn: Txn, timer_id: str, now_ms: int) -> TimerRow | None:
        """Mark a pending timer done; returns it, or None when it was already claimed or cancelled."""
        if txn.execute("UPDATE escalation_timers SET status = 'done', done_ts = ? WHERE timer_id = ? AND status = 'pending'",
                       (now_ms, timer_id)) != 1:
            return None
        row = txn.fetchone("SELECT timer_id, incident_id, kind, due_ts, payload FROM escalation_timers WHERE timer_id = ?",
                           (timer_id,))
        assert row is not None
        return TimerRow(row[0], row[1], row[2], row[3], json.loads(row[4]))

    @staticmethod
    def cancel_timers(txn: Txn, incident_id: str, kinds: Sequence[str] | None = None) -> list[str]:
        """Cancel the incident's pending timers (of ``kinds`` if given); returns the cancelled timer IDs."""
        sql = "SELECT timer_id FROM escalation_timers WHERE incident_id = ? AND status = 'pending'"
        args: list[Any] = [incident_id]
        if kinds:
            sql += " AND kind IN (" + ", ".join("?" for _ in kinds) + ")"
            args += list(kinds)
        ids = [r[0] for r in txn.fetchall(sql, args)]
        for timer_id in ids:
            txn.execute("UPDATE escalation_timers SET status = 'cancelled' WHERE timer_id = ? AND status = 'pending'",
                        (timer_id,))
        return ids

    @staticmethod
    def pending_timers_in(txn: Txn) -> list[TimerRow]:
        """Every pending timer, earliest first (used on start-up to re-arm them)."""
        rows = txn.fetchall("SELECT timer_id, incident_id, kind, due_ts, payload FROM escalation_timers"
                            " WHERE status = 'pending' ORDER BY due_ts, timer_id")
        return [TimerRow(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    def pending_timers(self) -> list[TimerRow]:
        """:meth:`pending_timers_in` in its own transaction, on the calling thread (scripts and tests)."""
        return self.transaction(self.pending_timers_in)

    # -- incidents -----------------------------------------------------------------------------------------------

    _INCIDENT_COLS = ("incident_id", "route", "priority", "policy_name", "room_id", "alert_event_id", "summary",
                      "alert_key", "state", "tier_index", "cycle", "opened_ts", "acked_ts", "acked_by",
                      "resolved_ts", "last_tier_hook_cycle")

    @classmethod
    def get_incident(cls, txn: Txn, incident_id: str) -> dict[str, Any] | None:
        """The escalation row of ``incident_id`` as ``{column: value}``, or None."""
        row = txn.fetchone(f"SELECT {', '.join(cls._INCIDENT_COLS)} FROM escalation_incidents WHERE incident_id = ?",
                           (incident_id,))
        return dict(zip(cls._INCIDENT_COLS, row)) if row else None

    @classmethod
    def upsert_incident(cls, txn: Txn, incident: dict[str, Any]) -> None:
        """Replace the escalation row of ``incident["incident_id"]``; ``incident`` must hold every incident column."""
        txn.execute("DELETE FROM escalation_incidents WHERE incident_id = ?", (incident["incident_id"],))
        txn.execute(
            f"INSERT INTO escalation_incidents ({', '.join(cls._INCIDENT_COLS)})"
            f" VALUES ({', '.join('?' for _ in cls._INCIDENT_COLS)})",
            [incident[c] for c in cls._INCIDENT_COLS],
        )

    # -- pages and recipients ------------------------------------------------------------------------------------

    @staticmethod
    def insert_page(txn: Txn, page_id: str, incident_id: str, user_id: str, channel: str, tier_index: int,
                    purpose: str, now_ms: int, status: str = "queued") -> None:
        """Record one page (``tier_index`` 0-based, ``now_ms`` ms since the epoch) with ``status`` (``queued`` unless
        given).
        """
        txn.execute(
            "INSERT INTO escalation_pages (page_id, incident_id, user_id, channel, tier_index, purpose, created_ts,"
            " status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (page_id, incident_id, user_id, channel, tier_index, purpose, now_ms, status),
        )

    def finish_page(self, page_id: str, status: str, provider_id: str | None, now_ms: int) -> "defer.Deferred[Any]":
        """Record the outcome of a page (``delivered``, ``failed``...) off the reactor."""
        return self.run(lambda txn: txn.execute(
            "UPDATE escalation_pages SET status = ?, provider_id = ?, finished_ts = ? WHERE page_id = ?",
            (status, provider_id, now_ms, page_id)))

    @staticmethod
    def get_page(txn: Txn, page_id: str) -> dict[str, Any] | None:
        """One page's columns as a dict (``status``, ``channel``, ``user_id``, ``tier_index``, ``purpose``...)."""
        cols = ("page_id", "incident_id", "user_id", "channel", "tier_index", "purpose", "created_ts", "status")
        row = txn.fetchone(f"SELECT {', '.join(cols)} FROM escalation_pages WHERE page_id = ?", (page_id,))
        return dict(zip(cols, row)) if row else None

    @staticmethod
    def requeue_page(txn: Txn, page_id: str) -> None:
        """Set a failed page back to ``queued`` for another delivery (a restart resends queued pages)."""
        txn.execute("UPDATE escalation_pages SET status = 'queued', finished_ts = NULL WHERE page_id = ?", (page_id,))

    @staticmethod
    def queued_pages(txn: Txn) -> list[dict[str, Any]]:
        """Pages still ``queued`` (to send after a restart), oldest first, as dicts of their columns."""
        cols = ("page_id", "incident_id", "user_id", "channel", "tier_index", "purpose", "created_ts")
        rows = txn.fetchall(f"SELECT {', '.join(cols)} FROM escalation_pages WHERE status = 'queued' ORDER BY created_ts")
        return [dict(zip(cols, r)) for r in rows]

    @staticmethod
    def pages_for(txn: Txn, incident_id: str) -> list[dict[str, Any]]:
        """Every page of ``incident_id`` (status, provider ID, ``created_ts``/``finished_ts`` in ms), oldest first."""
        cols = ("page_id", "user_id", "channel", "tier_index", "purpose", "created_ts", "status", "provider_id",
                "finished_ts")
        rows = txn.fetchall(f"SELECT {', '.join(cols)} FROM escalation_pages WHERE incident_id = ?"
                            " ORDER BY created_ts, page_id", (incident_id,))
        return [dict(zip(cols, r)) for r in rows]

    @staticmethod
    def count_recent_pages(txn: Txn, user_id: str, channel: str, since_ms: int) -> int:
        """How many pages (queued, delivered or failed) went to ``user_id`` on ``channel`` after ``since_ms`` (ms)."""
        row = txn.fetchone("SELECT COUNT(*) FROM escalation_pages WHERE user_id = ? AND channel = ? AND created_ts > ?"
                           " AND status IN ('queued', 'delivered', 'failed')", (user_id, channel, since_ms))
        return int(row[0]) if row else 0

    @staticmethod
    def touch_recipient(txn: Txn, incident_id: str, user_id: str, now_ms: int) -> None:
        """Note that ``user_id`` was paged for ``incident_id`` at ``now_ms`` (ms), unless already noted."""
        if txn.fetchone("SELECT 1 FROM escalation_recipients WHERE incident_id = ? AND user_id = ?",
                        (incident_id, user_id)) is None:
            txn.execute("INSERT INTO escalation_recipients (incident_id, user_id, first_paged_ts) VALUES (?, ?, ?)",
                        (incident_id, user_id, now_ms))

    @staticmethod
    def recipients(txn: Txn, incident_id: str) -> dict[str, dict[str, Any]]:
        """``{user_id: {"first_paged_ts", "read_ts", "acked_ts"}}`` (ms, None when not yet) for ``incident_id``."""
        rows = txn.fetchall("SELECT user_id, first_paged_ts, read_ts, acked_ts FROM escalation_recipients"
                            " WHERE incident_id = ?", (incident_id,))
        return {r[0]: {"first_paged_ts": r[1], "read_ts": r[2], "acked_ts": r[3]} for r in rows}

    @staticmethod
    def set_read(txn: Txn, incident_id: str, user_id: str, ts_ms: int) -> bool:
        """Record the first read; returns True if this was the first."""
        return txn.execute("UPDATE escalation_recipients SET read_ts = ? WHERE incident_id = ? AND user_id = ?"
                           " AND read_ts IS NULL", (ts_ms, incident_id, user_id)) == 1

    @staticmethod
    def set_acked(txn: Txn, incident_id: str, user_id: str, ts_ms: int | None) -> None:
        """Set (or with None clear) when ``user_id`` acknowledged ``incident_id``, in ms."""
        txn.execute("UPDATE escalation_recipients SET acked_ts = ? WHERE incident_id = ? AND user_id = ?",
                    (ts_ms, incident_id, user_id))

    @staticmethod
    def incidents_for_event(txn: Txn, event_id: str) -> list[str]:
        """Incidents whose alert event or one of whose Matrix pages is ``event_id``."""
        rows = txn.fetchall(
            "SELECT incident_id FROM escalation_incidents WHERE alert_event_id = ?"
            " UNION SELECT incident_id FROM escalation_pages WHERE channel = 'matrix' AND provider_id = ?",
            (event_id, event_id))
        return sorted({r[0] for r in rows})

    # -- firings (same alert N times within W) -------------------------------------------------------------------

    @staticmethod
    def record_firing(txn: Txn, alert_key: str, now_ms: int, window_ms: int) -> int:
        """Record one firing of ``alert_key``; returns how many fired within the last ``window_ms`` (inclusive)."""
        txn.execute("INSERT INTO escalation_firings (alert_key, fired_ts) VALUES (?, ?)", (alert_key, now_ms))
        row = txn.fetchone("SELECT COUNT(*) FROM escalation_firings WHERE alert_key = ? AND fired_ts > ?",
                           (alert_key, now_ms - window_ms))
        return int(row[0]) if row else 0

    # -- delivery attempts ---------------------------------------------------------------------------------------

    def record_attempt(self, attempt_id: str, page_id: str | None, channel: str, recipient: str, attempt: int,
                       ts_ms: int, provider_id: str | None, result: str, error: str | None) -> "defer.Deferred[Any]":
        """Record one delivery attempt of a channel (``result``: ``delivered`` or ``failed``), off the reactor.

        Returns the Deferred of the write; channels do not wait for it (a lost attempt row must not delay a page).
        """
        d = self.run(lambda txn: txn.execute(
            "INSERT INTO delivery_attempts (attempt_id, page_id, channel, recipient, attempt, ts, provider_id, result,"
            " error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (attempt_id, page_id, channel, recipient, attempt, ts_ms, provider_id, result, error)))
        d.addErrback(lambda f: f.printTraceback())
        return d

    def attempts(self, page_id: str | None = None) -> list[dict[str, Any]]:
        """Recorded delivery attempts (of one page if given), oldest first."""
        cols = ("attempt_id", "page_id", "channel", "recipient", "attempt", "ts", "provider_id", "result", "error")
        sql = f"SELECT {', '.join(cols)} FROM delivery_attempts"
        args: tuple[Any, ...] = ()
        if page_id is not None:
            sql += " WHERE page_id = ?"
            args = (page_id,)
        rows = self.transaction(lambda txn: txn.fetchall(sql + " ORDER BY ts, attempt", args))
        return [dict(zip(cols, r)) for r in rows]


    # -- room event order and receipts ---------------------------------------------------------------------------

    @staticmethod
    def record_room_event(txn: Txn, room_id: str, event_id: str, now_ms: int) -> bool:
        """Remember that ``event_id`` arrived now in ``room_id``; False if it was seen before (a retried txn)."""
        if txn.fetchone("SELECT 1 FROM escalation_room_events WHERE event_id = ?", (event_id,)) is not None:
            return False
        row = txn.fetchone("SELECT MAX(seq) FROM escalation_room_events")
        seq = int(row[0]) + 1 if row and row[0] is not None else 1
        txn.execute("INSERT INTO escalation_room_events (event_id, room_id, seq, received_ts) VALUES (?, ?, ?, ?)",
                    (event_id, room_id, seq, now_ms))
        return True

    @staticmethod
    def room_event_seq(txn: Txn, event_id: str) -> int | None:
        """Arrival order of a recorded event (None if it never came through a transaction)."""
        row = txn.fetchone("SELECT seq FROM escalation_room_events WHERE event_id = ?", (event_id,))
        return int(row[0]) if row else None

    @staticmethod
    def forget_room_events(txn: Txn, before_ms: int) -> int:
        """Drop arrival records older than ``before_ms`` (incidents that old are long read or escalated)."""
        return txn.execute("DELETE FROM escalation_room_events WHERE received_ts < ?", (before_ms,))

    @classmethod
    def unread_incidents_in_room(cls, txn: Txn, room_id: str, user_id: str) -> list[dict[str, Any]]:
        """Incidents in ``room_id`` (not resolved) that paged ``user_id`` who has not read them yet."""
        cols = ", ".join(f"i.{c}" for c in cls._INCIDENT_COLS)
        rows = txn.fetchall(
            f"SELECT {cols} FROM escalation_incidents i JOIN escalation_recipients r"
            " ON r.incident_id = i.incident_id WHERE i.room_id = ? AND i.state <> 'resolved' AND r.user_id = ?"
            " AND r.read_ts IS NULL", (room_id, user_id))
        return [dict(zip(cls._INCIDENT_COLS, r)) for r in rows]

    @staticmethod
    def matrix_page_events(txn: Txn, incident_id: str) -> list[str]:
        """Event IDs of the incident's delivered Matrix pages."""
        rows = txn.fetchall("SELECT provider_id FROM escalation_pages WHERE incident_id = ? AND channel = 'matrix'"
                            " AND provider_id IS NOT NULL", (incident_id,))
        return [r[0] for r in rows]

    @staticmethod
    def incident_states(txn: Txn) -> dict[str, str]:
        """incident_id -> state of every incident the engine knows."""
        return {r[0]: r[1] for r in txn.fetchall("SELECT incident_id, state FROM escalation_incidents")}

    @staticmethod
    def mark_handoff_announced(txn: Txn, schedule: str, at_ms: int) -> bool:
        """Record that the handoff of ``schedule`` at ``at_ms`` is announced; False if it already was."""
        if txn.fetchone("SELECT 1 FROM escalation_handoffs WHERE schedule = ? AND at_ts = ?",
                        (schedule, at_ms)) is not None:
            return False
        txn.execute("INSERT INTO escalation_handoffs (schedule, at_ts) VALUES (?, ?)", (schedule, at_ms))
        return True
