"""SQL for application services: the per-appservice event queue and the persisted transactions.

Tables (``schema/050_appservice.sql``): ``appservice_queue`` (events waiting to be put into a transaction, written
inside the event's own database transaction), ``appservice_txns`` (a transaction's ``txn_id`` and exact event list,
written before the first send attempt, deleted after the appservice's 200) and ``appservice_state`` (the last
``txn_id`` handed out, so IDs never repeat).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from homeserver.storage.database import Database, Txn


@dataclass
class PendingTransaction:
    """A transaction for one appservice: ``txn_id`` (int, sent as a string), ``event_ids`` in stream order and
    ``ephemeral`` events (dicts)."""

    appservice_id: str
    txn_id: int
    event_ids: list[str]
    ephemeral: list[dict[str, Any]] = field(default_factory=list)


class AppServiceStore:
    """The appservice queue, persisted transactions and ``txn_id`` counter (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- start-up -----------------------------------------------------------------------------------------------

    def ensure_sender_user_sync(self, user_id: str, appservice_id: str) -> None:
        """Create the appservice's ``sender_localpart`` user (and its profile row) if it does not exist yet.
        Runs synchronously at start-up."""

        def _txn(txn: Txn) -> None:
            txn.execute("SELECT 1 FROM users WHERE name = ?", (user_id,))
            if txn.fetchone():
                return
            txn.execute(
                "INSERT INTO users (name, password_hash, creation_ts, admin, deactivated, appservice_id, user_type)"
                " VALUES (?, NULL, ?, 0, 0, ?, NULL)",
                (user_id, int(time.time() * 1000), appservice_id),
            )
            txn.execute("SELECT 1 FROM profiles WHERE user_id = ?", (user_id,))
            if not txn.fetchone():
                txn.execute("INSERT INTO profiles (user_id, displayname, avatar_url) VALUES (?, ?, NULL)",
                            (user_id, user_id[1:].split(":", 1)[0]))

        self.db.run_interaction_sync("appservice_ensure_sender", _txn)

    def count_queued_sync(self) -> dict[str, int]:
        """``{appservice_id: events waiting in the queue (not yet in a transaction)}``, at start-up."""

        def _txn(txn: Txn) -> dict[str, int]:
            txn.execute("SELECT appservice_id, COUNT(*) FROM appservice_queue GROUP BY appservice_id")
            return {r[0]: int(r[1]) for r in txn.fetchall()}

        return self.db.run_interaction_sync("appservice_count_queued", _txn)

    # -- queue --------------------------------------------------------------------------------------------------

    @staticmethod
    def enqueue_event_txn(txn: Txn, appservice_ids: list[str], stream_ordering: int, event_id: str) -> None:
        """Queue the event for each appservice, inside the event's persisting transaction."""
        txn.executemany_write(
            "INSERT INTO appservice_queue (appservice_id, stream_ordering, event_id) VALUES (?, ?, ?)",
            [(as_id, stream_ordering, event_id) for as_id in appservice_ids],
        )

    async def get_pending_transactions(self, appservice_id: str) -> list[PendingTransaction]:
        """Transactions created but not yet acknowledged, oldest first (after a restart, or after a failure)."""
        rows = await self.db.execute(
            "appservice_pending_txns",
            "SELECT txn_id, event_ids, ephemeral FROM appservice_txns WHERE appservice_id = ? ORDER BY txn_id",
            appservice_id,
        )
        return [PendingTransaction(appservice_id, int(r[0]), json.loads(r[1]), json.loads(r[2])) for r in rows]

    async def create_transaction(self, appservice_id: str, max_stream_ordering: int, limit: int,
                                 ephemeral: list[dict[str, Any]]) -> PendingTransaction | None:
        """Move up to ``limit`` queued events (stream order, positions <= ``max_stream_ordering``, i.e. only
        positions below which everything is committed) plus ``ephemeral`` into a new transaction with a fresh
        ``txn_id``, atomically. Returns None when there is nothing to send."""
        return await self.db.run_interaction("appservice_create_txn", self._create_transaction_txn, appservice_id,
                                             max_stream_ordering, limit, ephemeral)

    async def complete_and_create_transaction(self, appservice_id: str, done_txn_id: int, max_stream_ordering: int,
                                              limit: int, ephemeral: list[dict[str, Any]]) -> PendingTransaction | None:
        """:meth:`complete_transaction` for ``done_txn_id`` and :meth:`create_transaction` for what is queued
        now, in one database transaction: a busy appservice costs one write per transaction instead of two.
        Returns the new transaction or None when nothing is queued (``done_txn_id`` is forgotten either way)."""

        def _txn(txn: Txn) -> PendingTransaction | None:
            txn.execute_write("DELETE FROM appservice_txns WHERE appservice_id = ? AND txn_id = ?",
                              (appservice_id, done_txn_id))
            return self._create_transaction_txn(txn, appservice_id, max_stream_ordering, limit, ephemeral)

        return await self.db.run_interaction("appservice_complete_create_txn", _txn)

    @staticmethod
    def _create_transaction_txn(txn: Txn, appservice_id: str, max_stream_ordering: int, limit: int,
                                ephemeral: list[dict[str, Any]]) -> PendingTransaction | None:
        txn.execute(
            "SELECT stream_ordering, event_id FROM appservice_queue WHERE appservice_id = ? "
            "AND stream_ordering <= ? ORDER BY stream_ordering LIMIT ?",
            (appservice_id, max_stream_ordering, limit),
        )
        rows = txn.fetchall()
        if not rows and not ephemeral:
            return None
        txn.execute("SELECT last_txn_id FROM appservice_state WHERE appservice_id = ?", (appservice_id,))
        row = txn.fetchone()
        txn_id = (int(row[0]) if row else 0) + 1
        if row:
            txn.execute_write("UPDATE appservice_state SET last_txn_id = ? WHERE appservice_id = ?",
                              (txn_id, appservice_id))
        else:
            txn.execute_write("INSERT INTO appservice_state (appservice_id, last_txn_id) VALUES (?, ?)",
                              (appservice_id, txn_id))
        event_ids = [r[1] for r in rows]
        txn.execute_write(
            "INSERT INTO appservice_txns (appservice_id, txn_id, event_ids, ephemeral, created_ts) "
            "VALUES (?, ?, ?, ?, ?)",
            (appservice_id, txn_id, json.dumps(event_ids), json.dumps(ephemeral), int(time.time() * 1000)),
        )
        if rows:
            txn.execute_write(
                "DELETE FROM appservice_queue WHERE appservice_id = ? AND stream_ordering <= ?",
                (appservice_id, rows[-1][0]),
            )
        return PendingTransaction(appservice_id, txn_id, event_ids, ephemeral)

    async def complete_transaction(self, appservice_id: str, txn_id: int) -> None:
        """The appservice acknowledged ``txn_id``: forget it."""
        await self.db.execute("appservice_complete_txn",
                              "DELETE FROM appservice_txns WHERE appservice_id = ? AND txn_id = ?",
                              appservice_id, txn_id)
