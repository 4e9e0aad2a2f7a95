"""The ``to_device`` stream: pending send-to-device messages per target device.

Spec: Client-Server API, "Send-to-Device messaging". A message stays in ``device_inbox`` until the device syncs
with a ``since`` token at or past its position (proof that the response carrying it arrived).
"""

from __future__ import annotations

import json
import time
from typing import Any

from canonicaljson import encode_canonical_json

from homeserver.storage.database import Database, Txn
from homeserver.streams import StreamIdGenerator


# How long a sender's transaction ID is remembered: a retransmission later than this is a new message (spec:
# "Transaction identifiers" only asks for idempotency while a client might still retry).
TXN_RETENTION_MS = 24 * 60 * 60 * 1000
# Expired transaction rows are deleted on insert, at most this often per process.
TXN_PRUNE_INTERVAL_MS = 10 * 60 * 1000


class ToDeviceStore:
    """SQL for ``device_inbox`` and ``to_device_txns``. ``generator`` is registered as ``"to_device"``.

    ``clock`` (anything with ``seconds()``, e.g. the reactor) stamps transaction rows; the wall clock by default.
    """

    def __init__(self, db: Database, stream_positions: Any, clock: Any = None) -> None:
        self.db = db
        self._now_ms = (lambda: int(clock.seconds() * 1000)) if clock is not None else (
            lambda: int(time.time() * 1000))
        self._last_prune_ms = 0

        def _max(txn: Txn) -> int:
            # Inbox rows are deleted once acknowledged; the txn rows keep the high-water mark across restarts.
            txn.execute("SELECT COALESCE(MAX(stream_id), 0) FROM device_inbox")
            a = int(txn.fetchone()[0])
            txn.execute("SELECT COALESCE(MAX(stream_id), 0) FROM to_device_txns")
            return max(a, int(txn.fetchone()[0]))

        self.generator = StreamIdGenerator(db.run_interaction_sync("to_device_max", _max))
        stream_positions.register("to_device", self.generator)
        # Devices whose inbox is known to be empty ({user_id: {device_id}}): /sync skips the inbox query for
        # them. A user's entry is dropped around every write for them; a take that raced with one is not trusted.
        # user_id -> their devices whose inbox is known to be empty (a tuple: usually one device, 48 bytes where a
        # set would be 216 per user syncing)
        self._empty: dict[str, tuple[str, ...]] = {}
        self._writes = 0

    def invalidate_inboxes(self, user_id: str) -> None:
        """Forget what is known about the inboxes of ``user_id``'s devices (before and after writing to them)."""
        self._writes += 1
        self._empty.pop(user_id, None)

    async def add_messages(self, sender: str, sender_device_id: str | None, txn_id: str, event_type: str,
                           messages: dict[str, dict[str, Any]], stream_id: int) -> set[str] | None:
        """Queue ``messages`` (``{user_id: {device_id or "*": content}}``, local users only) at ``stream_id``.

        ``*`` expands to every device the user has now; unknown devices are skipped. Returns the users that got
        a message, or None if this (sender, device, txn_id) was sent before (nothing is written then).
        """

        now_ms = self._now_ms()
        prune = now_ms - self._last_prune_ms >= TXN_PRUNE_INTERVAL_MS
        if prune:
            self._last_prune_ms = now_ms

        def _txn(txn: Txn) -> set[str] | None:
            if prune:
                self.prune_txns_txn(txn, now_ms - TXN_RETENTION_MS)
            txn.execute(
                "INSERT INTO to_device_txns (user_id, device_id, txn_id, event_type, stream_id, inserted_ts)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (sender, sender_device_id or "", txn_id, event_type, stream_id, now_ms))
            if txn.rowcount == 0:
                return None
            rows: dict[tuple[str, str], str] = {}
            for user_id, by_device in messages.items():
                txn.execute("SELECT device_id FROM devices WHERE user_id = ?", (user_id,))
                known = {r[0] for r in txn.fetchall()}
                # "*" first so an explicit entry for the same device wins.
                ordered = sorted(by_device.items(), key=lambda kv: kv[0] != "*")
                for device_id, content in ordered:
                    body = encode_canonical_json(
                        {"type": event_type, "sender": sender, "content": content}).decode("utf-8")
                    targets = known if device_id == "*" else ({device_id} & known)
                    for target in targets:
                        rows[(user_id, target)] = body
            txn.executemany(
                "INSERT INTO device_inbox (user_id, device_id, stream_id, message_json) VALUES (?, ?, ?, ?)",
                [(u, d, stream_id, body) for (u, d), body in rows.items()])
            return {u for u, _ in rows}

        targets = list(messages)
        for user_id in targets:
            self.invalidate_inboxes(user_id)
        try:
            return await self.db.run_interaction("add_to_device_messages", _txn)
        finally:
            for user_id in targets:
                self.invalidate_inboxes(user_id)

    async def take_messages(self, user_id: str, device_id: str, acknowledged: int, upto: int,
                            limit: int) -> tuple[list[dict[str, Any]], int]:
        """Delete the device's messages at positions ``<= acknowledged`` and return the first ``limit`` of those
        in ``(acknowledged, upto]`` in stream order (``{"type", "sender", "content"}`` each), with the position
        delivered up to: ``upto`` if nothing is left over, else the position of the last message returned (a
        device has at most one message per position, so the next call resumes exactly after it)."""

        if device_id in self._empty.get(user_id, ()):
            return [], upto
        writes = self._writes

        def _txn(txn: Txn) -> tuple[list[dict[str, Any]], int, bool]:
            if acknowledged > 0:
                txn.execute("DELETE FROM device_inbox WHERE user_id = ? AND device_id = ? AND stream_id <= ?",
                            (user_id, device_id, acknowledged))
            txn.execute(
                "SELECT stream_id, message_json FROM device_inbox WHERE user_id = ? AND device_id = ?"
                " AND stream_id > ? AND stream_id <= ? ORDER BY stream_id LIMIT ?",
                (user_id, device_id, acknowledged, upto, limit + 1))
            rows = txn.fetchall()
            empty = False
            if not rows:
                txn.execute("SELECT 1 FROM device_inbox WHERE user_id = ? AND device_id = ? LIMIT 1",
                            (user_id, device_id))
                empty = txn.fetchone() is None
            if len(rows) > limit:
                rows = rows[:limit]
                upto_delivered = int(rows[-1][0])
            else:
                upto_delivered = upto
            return [json.loads(r[1]) for r in rows], upto_delivered, empty

        messages, upto_delivered, empty = await self.db.run_interaction("take_to_device_messages", _txn)
        if empty and writes == self._writes:
            if len(self._empty) >= 100_000:
                self._empty.clear()
            known = self._empty.get(user_id, ())
            if device_id not in known:
                self._empty[user_id] = (*known, device_id)
        return messages, upto_delivered

    @staticmethod
    def prune_txns_txn(txn: Txn, before_ms: int) -> int:
        """Forget transaction IDs stored before ``before_ms`` (ms since the epoch); returns how many. The row with
        the highest position always stays: it carries the stream's high-water mark across restarts once every
        inbox row has been acknowledged."""
        txn.execute(
            "DELETE FROM to_device_txns WHERE inserted_ts < ?"
            " AND stream_id < (SELECT MAX(stream_id) FROM to_device_txns)", (before_ms,))
        return txn.rowcount

    async def prune_txns(self, before_ms: int) -> int:
        """:meth:`prune_txns_txn` in a transaction of its own."""
        return await self.db.run_interaction("prune_to_device_txns", self.prune_txns_txn, before_ms)

    @staticmethod
    def delete_devices_txn(txn: Txn, user_id: str, device_ids: list[str]) -> None:
        """Drop the pending messages of deleted devices (inside the caller's transaction)."""
        clause, params = txn.in_list("device_id", device_ids)
        txn.execute(f"DELETE FROM device_inbox WHERE user_id = ? AND {clause}", [user_id, *params])
