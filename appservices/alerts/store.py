"""The bridge's own database: incidents, alerts, actions, Matrix message IDs and the outbox.

SQLite (``sqlite3``) by default, PostgreSQL (``psycopg2``) optional. The SQL is plain and runs on both; it is
written with ``?`` placeholders, rewritten to ``%s`` for psycopg2. All database work runs on one dedicated
thread (never on the reactor): :meth:`Database.run` takes a function ``fn(txn, *args)`` and runs it inside
one transaction, so each function here is atomic.

Why an outbox: an ingest request is answered 2xx only once the alert *and* the messages it implies are
stored. The messages are sent afterwards with transaction IDs derived from the outbox row, so a restart
resends what was not confirmed and the homeserver's transaction-ID idempotency stops duplicates.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from .models import RESOLVED, Alert, AlertGroup

T = TypeVar("T")

SCHEMA_VERSION = 1
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS incidents (
        incident_id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        dedup_key TEXT NOT NULL,
        route TEXT NOT NULL,
        room TEXT NOT NULL,
        state TEXT NOT NULL,
        severity TEXT NOT NULL,
        title TEXT NOT NULL,
        group_json TEXT NOT NULL,
        escalation_policy TEXT,
        root_event_id TEXT,
        notifications INTEGER NOT NULL,
        created_ts BIGINT NOT NULL,
        updated_ts BIGINT NOT NULL,
        acknowledged_ts BIGINT,
        acknowledged_by TEXT,
        resolved_ts BIGINT,
        resolved_by TEXT,
        assignee TEXT,
        muted_until_ts BIGINT
    )""",
    # At most one open incident per source and dedup key; a resolved one may be followed by a new one.
    "CREATE UNIQUE INDEX IF NOT EXISTS incidents_open ON incidents (source, dedup_key) WHERE state <> 'resolved'",
    "CREATE INDEX IF NOT EXISTS incidents_created ON incidents (created_ts)",
    """CREATE TABLE IF NOT EXISTS alerts (
        incident_id TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        status TEXT NOT NULL,
        alert_json TEXT NOT NULL,
        updated_ts BIGINT NOT NULL,
        PRIMARY KEY (incident_id, fingerprint)
    )""",
    """CREATE TABLE IF NOT EXISTS actions (
        action_id TEXT PRIMARY KEY,
        incident_id TEXT NOT NULL,
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        ts BIGINT NOT NULL,
        detail TEXT,
        event_id TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS actions_incident ON actions (incident_id, ts)",
    """CREATE TABLE IF NOT EXISTS messages (
        event_id TEXT PRIMARY KEY,
        incident_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        ts BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS outbox (
        seq BIGINT PRIMARY KEY,
        incident_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload_json TEXT NOT NULL,
        txn_id TEXT NOT NULL,
        created_ts BIGINT NOT NULL,
        attempts INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS rooms (
        room TEXT PRIMARY KEY,
        room_id TEXT NOT NULL
    )""",
    # Events already handled, so a transaction the homeserver retries (or a reaction seen twice) acts once.
    """CREATE TABLE IF NOT EXISTS handled_events (
        event_id TEXT PRIMARY KEY,
        ts BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS schema_version (
        version INTEGER NOT NULL
    )""",
]

OPEN_STATES = ("firing", "acknowledged")


def now_ms() -> int:
    """Milliseconds since the Unix epoch."""
    return int(time.time() * 1000)


class Txn:
    """A cursor wrapper that accepts ``?`` placeholders on both engines and returns rows as dicts."""

    def __init__(self, cursor: Any, paramstyle: str) -> None:
        self._cur = cursor
        self._pg = paramstyle != "qmark"

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        """Run one statement."""
        self._cur.execute(sql.replace("?", "%s") if self._pg else sql, args)

    def fetchall(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Run a query and return every row as a dict keyed by column name."""
        self.execute(sql, args)
        cols = [d[0] for d in self._cur.description]
        return [dict(zip(cols, row)) for row in self._cur.fetchall()]

    def fetchone(self, sql: str, args: tuple[Any, ...] = ()) -> dict[str, Any] | None:
        """The first row as a dict, or ``None``."""
        rows = self.fetchall(sql, args)
        return rows[0] if rows else None

    @property
    def rowcount(self) -> int:
        """Rows touched by the last statement."""
        return int(self._cur.rowcount)


class Database:
    """One connection used from one dedicated thread.

    Args:
        engine: ``"sqlite"`` (``args.database`` = file path or ``:memory:``) or ``"postgres"`` (``args`` are
            psycopg2.connect keyword arguments, e.g. ``dsn``).
    Raises:
        ValueError: unknown engine.
    """

    def __init__(self, engine: str, args: dict[str, Any]) -> None:
        if engine not in ("sqlite", "postgres"):
            raise ValueError(f"database.engine must be 'sqlite' or 'postgres', not {engine!r}")
        self.engine = engine
        self.args = args
        self._conn: Any = None
        self._lock = threading.Lock()
        self._pool: ThreadPool | None = None

    def _connect(self) -> Any:
        if self._conn is None:
            if self.engine == "sqlite":
                self._conn = sqlite3.connect(self.args.get("database", "alerts.db"), check_same_thread=False)
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
            else:
                import psycopg2

                self._conn = psycopg2.connect(**self.args)
        return self._conn

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(txn, *args)`` in one transaction on the calling thread (used by scripts and tests).

        Raises whatever ``fn`` or the driver raises, after rolling back. A PostgreSQL connection found closed
        (server restart, killed backend) is dropped, so this call fails (the ingest answers 500 and
        Alertmanager retries) and the next one reconnects.
        """
        with self._lock:
            conn = self._connect()
            try:
                cur = conn.cursor()
            except Exception:
                self._drop_if_closed(conn)
                raise
            try:
                result = fn(Txn(cur, "qmark" if self.engine == "sqlite" else "pyformat"), *args)
                conn.commit()
                return result
            except BaseException:
                try:
                    conn.rollback()
                except Exception:  # noqa: BLE001 - the connection is gone; the original error matters
                    pass
                self._drop_if_closed(conn)
                raise
            finally:
                try:
                    cur.close()
                except Exception:  # noqa: BLE001 - closing a cursor of a dead connection
                    pass

    def _drop_if_closed(self, conn: Any) -> None:
        if self.engine == "postgres" and getattr(conn, "closed", 0):
            self._conn = None

    def start(self, reactor: Any = None) -> None:
        """Start the database thread; it is stopped at reactor shutdown."""
        reactor = reactor or _reactor
        self._pool = ThreadPool(1, 1, name="alerts-db")
        self._pool.start()
        reactor.addSystemEventTrigger("during", "shutdown", self._pool.stop)
        self._reactor = reactor

    def run(self, fn: Callable[..., T], *args: Any) -> "Deferred[T]":
        """Run ``fn(txn, *args)`` in one transaction on the database thread; a Deferred of its result."""
        assert self._pool is not None, "Database.start() was not called"
        return deferToThreadPool(self._reactor, self._pool, self.run_sync, fn, *args)

    def close(self) -> None:
        """Close the connection (scripts and tests)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def prepare(txn: Txn) -> None:
    """Create the schema if missing (idempotent)."""
    for stmt in SCHEMA:
        txn.execute(stmt)
    row = txn.fetchone("SELECT version FROM schema_version")
    if row is None:
        txn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))


# -- incidents ------------------------------------------------------------------------------------------


@dataclass
class Incident:
    """One incident row (times in ms since the epoch). See the ``incidents`` table."""

    incident_id: str
    source: str
    dedup_key: str
    route: str
    room: str
    state: str
    severity: str
    title: str
    group_json: str
    escalation_policy: str | None
    root_event_id: str | None
    notifications: int
    created_ts: int
    updated_ts: int
    acknowledged_ts: int | None = None
    acknowledged_by: str | None = None
    resolved_ts: int | None = None
    resolved_by: str | None = None
    assignee: str | None = None
    muted_until_ts: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The API representation (without the stored group)."""
        d = {k: v for k, v in self.__dict__.items() if k != "group_json"}
        return d


def _incident(row: dict[str, Any] | None) -> Incident | None:
    return Incident(**row) if row else None


def get_open_incident(txn: Txn, source: str, dedup_key: str) -> Incident | None:
    """The open (firing or acknowledged) incident for ``(source, dedup_key)``, or ``None``."""
    return _incident(
        txn.fetchone(
            "SELECT * FROM incidents WHERE source = ? AND dedup_key = ? AND state <> 'resolved'",
            (source, dedup_key),
        )
    )


def get_incident(txn: Txn, incident_id: str) -> Incident | None:
    """The incident with this ID, or ``None``."""
    return _incident(txn.fetchone("SELECT * FROM incidents WHERE incident_id = ?", (incident_id,)))


def incident_for_event(txn: Txn, event_id: str) -> Incident | None:
    """The incident whose root message, edit or thread message is ``event_id``, or ``None``."""
    row = txn.fetchone("SELECT incident_id FROM messages WHERE event_id = ?", (event_id,))
    if row is None:
        row = txn.fetchone("SELECT incident_id FROM incidents WHERE root_event_id = ?", (event_id,))
    return get_incident(txn, row["incident_id"]) if row else None


def incident_for_event_in_room(txn: Txn, event_id: str, room_id: str) -> Incident | None:
    """:func:`incident_for_event`, only if that incident's room is ``room_id``, else ``None``.

    A reaction, thread message or reply names its target by event ID alone, and a Matrix client can name any
    event ID from any room (the bot joins any room it is invited to): only chat in the incident's own room may
    act on it, or anyone who learnt an incident's event ID could acknowledge or resolve it from a room of theirs.
    """
    incident = incident_for_event(txn, event_id)
    if incident is None or get_room_id(txn, incident.room) != room_id:
        return None
    return incident


def group_json(group: AlertGroup) -> str:
    """Serialise the group-level fields of ``group`` (alerts are stored per row in ``alerts``)."""
    return json.dumps(
        {
            "source": group.source,
            "dedup_key": group.dedup_key,
            "group_labels": group.group_labels,
            "common_labels": group.common_labels,
            "common_annotations": group.common_annotations,
            "title": group.title,
            "external_url": group.external_url,
            "truncated_alerts": group.truncated_alerts,
            "mentions": group.mentions,
        },
        ensure_ascii=False,
    )


def load_group(txn: Txn, incident: Incident) -> AlertGroup:
    """The incident's current alert group: stored group fields plus every alert seen in it."""
    g = json.loads(incident.group_json)
    rows = txn.fetchall("SELECT alert_json FROM alerts WHERE incident_id = ? ORDER BY fingerprint", (incident.incident_id,))
    alerts = [Alert.from_json(json.loads(r["alert_json"])) for r in rows]
    status = "firing" if any(a.status == "firing" for a in alerts) else RESOLVED
    return AlertGroup(
        source=g["source"],
        dedup_key=g["dedup_key"],
        status=status,
        alerts=alerts,
        group_labels=g["group_labels"],
        common_labels=g["common_labels"],
        common_annotations=g["common_annotations"],
        title=g["title"],
        external_url=g["external_url"],
        truncated_alerts=g["truncated_alerts"],
        mentions=g.get("mentions", []),
    )


def create_incident(
    txn: Txn, group: AlertGroup, route: str, room: str, escalation_policy: str | None, ts: int
) -> Incident:
    """Insert a new firing incident for ``group`` and its alerts."""
    incident_id = "I-" + secrets.token_hex(4)
    txn.execute(
        "INSERT INTO incidents (incident_id, source, dedup_key, route, room, state, severity, title, group_json,"
        " escalation_policy, root_event_id, notifications, created_ts, updated_ts)"
        " VALUES (?, ?, ?, ?, ?, 'firing', ?, ?, ?, ?, NULL, 1, ?, ?)",
        (incident_id, group.source, group.dedup_key, route, room, group.severity, group.title, group_json(group),
         escalation_policy, ts, ts),
    )
    for a in group.alerts:
        upsert_alert(txn, incident_id, a, ts)
    incident = get_incident(txn, incident_id)
    assert incident is not None
    return incident


def upsert_alert(txn: Txn, incident_id: str, alert: Alert, ts: int) -> str | None:
    """Store ``alert`` in the incident; return its previous status (``None`` if it is new)."""
    row = txn.fetchone(
        "SELECT status FROM alerts WHERE incident_id = ? AND fingerprint = ?", (incident_id, alert.fingerprint)
    )
    data = json.dumps(alert.to_json(), ensure_ascii=False)
    if row is None:
        txn.execute(
            "INSERT INTO alerts (incident_id, fingerprint, status, alert_json, updated_ts) VALUES (?, ?, ?, ?, ?)",
            (incident_id, alert.fingerprint, alert.status, data, ts),
        )
        return None
    txn.execute(
        "UPDATE alerts SET status = ?, alert_json = ?, updated_ts = ? WHERE incident_id = ? AND fingerprint = ?",
        (alert.status, data, ts, incident_id, alert.fingerprint),
    )
    return str(row["status"])


def update_incident(txn: Txn, incident_id: str, **fields: Any) -> None:
    """Set columns of one incident (column names are ours, never user input)."""
    cols = ", ".join(f"{k} = ?" for k in fields)
    txn.execute(f"UPDATE incidents SET {cols} WHERE incident_id = ?", (*fields.values(), incident_id))


def record_action(
    txn: Txn, incident_id: str, action: str, actor: str, ts: int, detail: str | None = None, event_id: str | None = None
) -> None:
    """Append to the incident's audit trail: who did what when (and from which event)."""
    txn.execute(
        "INSERT INTO actions (action_id, incident_id, action, actor, ts, detail, event_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
        ("A-" + secrets.token_hex(8), incident_id, action, actor, ts, detail, event_id),
    )


def list_actions(txn: Txn, incident_id: str) -> list[dict[str, Any]]:
    """The incident's actions, oldest first, as dicts (action, actor, ts, detail, event_id)."""
    return txn.fetchall(
        "SELECT action, actor, ts, detail, event_id FROM actions WHERE incident_id = ? ORDER BY ts, action_id",
        (incident_id,),
    )


def list_incidents(
    txn: Txn,
    state: str | None = None,
    since: int | None = None,
    until: int | None = None,
    route: str | None = None,
    limit: int = 1000,
) -> list[Incident]:
    """Incidents created in ``[since, until)`` (ms), filtered by state and route, newest first."""
    where, args = [], []
    if state:
        where.append("state = ?")
        args.append(state)
    if since is not None:
        where.append("created_ts >= ?")
        args.append(since)
    if until is not None:
        where.append("created_ts < ?")
        args.append(until)
    if route:
        where.append("route = ?")
        args.append(route)
    sql = "SELECT * FROM incidents"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_ts DESC LIMIT ?"
    args.append(limit)
    return [Incident(**r) for r in txn.fetchall(sql, tuple(args))]


def count_open(txn: Txn) -> list[dict[str, Any]]:
    """Open incidents per route and state: rows of ``{route, state, n}``."""
    return txn.fetchall(
        "SELECT route, state, COUNT(*) AS n FROM incidents WHERE state <> 'resolved' GROUP BY route, state"
    )


# -- Matrix side: rooms, messages, outbox, handled events -----------------------------------------------------


def get_room_id(txn: Txn, room: str) -> str | None:
    """Cached room ID for a route's room alias (or the ID itself), or ``None``."""
    row = txn.fetchone("SELECT room_id FROM rooms WHERE room = ?", (room,))
    return row["room_id"] if row else None


def set_room_id(txn: Txn, room: str, room_id: str) -> None:
    """Remember that ``room`` (alias) is ``room_id``."""
    txn.execute("DELETE FROM rooms WHERE room = ?", (room,))
    txn.execute("INSERT INTO rooms (room, room_id) VALUES (?, ?)", (room, room_id))


def known_room_ids(txn: Txn) -> list[str]:
    """Every room ID the bridge posts into."""
    return [r["room_id"] for r in txn.fetchall("SELECT room_id FROM rooms")]


def record_message(txn: Txn, event_id: str, incident_id: str, kind: str, ts: int) -> None:
    """Map a sent (or received command) event ID to its incident; idempotent."""
    if txn.fetchone("SELECT 1 AS x FROM messages WHERE event_id = ?", (event_id,)) is None:
        txn.execute(
            "INSERT INTO messages (event_id, incident_id, kind, ts) VALUES (?, ?, ?, ?)",
            (event_id, incident_id, kind, ts),
        )


def enqueue(txn: Txn, incident_id: str, kind: str, payload: dict[str, Any], ts: int) -> int:
    """Queue a message for the incident (``kind``: ``root``, ``edit`` or ``thread``); returns its sequence number."""
    row = txn.fetchone("SELECT COALESCE(MAX(seq), 0) AS m FROM outbox")
    seq = int(row["m"] if row else 0) + 1
    # The transaction ID is fixed when the message is queued (not derived from seq, which restarts at 1 when
    # the outbox drains), so a resend after a crash reuses it and the homeserver deduplicates.
    txn_id = f"tocsin-{incident_id}-{secrets.token_hex(8)}"
    txn.execute(
        "INSERT INTO outbox (seq, incident_id, kind, payload_json, txn_id, created_ts, attempts)"
        " VALUES (?, ?, ?, ?, ?, ?, 0)",
        (seq, incident_id, kind, json.dumps(payload, ensure_ascii=False), txn_id, ts),
    )
    return seq


def pending_outbox(txn: Txn, limit: int = 100) -> list[dict[str, Any]]:
    """Queued messages, oldest first: rows of ``{seq, incident_id, kind, payload_json, txn_id, attempts}``."""
    return txn.fetchall(
        "SELECT seq, incident_id, kind, payload_json, txn_id, attempts FROM outbox ORDER BY seq LIMIT ?", (limit,)
    )


def later_edit_pending(txn: Txn, incident_id: str, seq: int) -> bool:
    """True if a newer edit of the same incident is queued (so this one can be skipped)."""
    return (
        txn.fetchone(
            "SELECT 1 AS x FROM outbox WHERE incident_id = ? AND kind = 'edit' AND seq > ?", (incident_id, seq)
        )
        is not None
    )


def outbox_done(txn: Txn, seq: int) -> None:
    """Remove a sent (or skipped) message from the outbox."""
    txn.execute("DELETE FROM outbox WHERE seq = ?", (seq,))


def outbox_failed(txn: Txn, seq: int) -> None:
    """Count a failed send attempt."""
    txn.execute("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?", (seq,))


def mark_event_handled(txn: Txn, event_id: str, ts: int) -> bool:
    """Record that ``event_id`` was acted on; False if it was already (then do nothing)."""
    if txn.fetchone("SELECT 1 AS x FROM handled_events WHERE event_id = ?", (event_id,)) is not None:
        return False
    txn.execute("INSERT INTO handled_events (event_id, ts) VALUES (?, ?)", (event_id, ts))
    return True
