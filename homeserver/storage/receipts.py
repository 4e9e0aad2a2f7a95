"""Read receipts on the ``receipts`` stream.

Spec: Client-Server API, "Receipts" (``m.read``, ``m.read.private``, threaded receipts). One row per (room, type,
user, thread); a new receipt replaces it only when its event comes later in the room's stream order, so a user's
read position never moves backwards. Every accepted receipt takes a new stream position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Txn
from homeserver.storage.push import upsert_read_position_txn
from homeserver.streams import StreamIdGenerator

#: Receipt types that count as "the user has read up to here" for unread counts.
READ_RECEIPT_TYPES = ("m.read", "m.read.private")


@dataclass(frozen=True)
class Receipt:
    """One stored receipt. ``thread_id`` is None for an unthreaded receipt; ``ts`` in ms."""

    room_id: str
    receipt_type: str
    user_id: str
    thread_id: str | None
    event_id: str
    ts: int
    stream_id: int


class ReceiptsStore:
    """SQL for ``receipts``; registers the ``receipts`` stream.

    Keeps ``room_id -> last receipt stream position`` for every room in memory, so /sync can skip rooms whose
    receipts did not change without a query.
    """

    def __init__(self, db: Database, stream_positions: Any) -> None:
        self.db = db

        def _load(txn: Txn) -> tuple[int, list[tuple[str, int]]]:
            txn.execute("SELECT COALESCE(MAX(stream_id), 0) FROM receipts")
            top = int(txn.fetchone()[0])  # type: ignore[index]
            txn.execute("SELECT room_id, MAX(stream_id) FROM receipts GROUP BY room_id")
            return top, [(r[0], int(r[1])) for r in txn.fetchall()]

        top, rows = db.run_interaction_sync("receipts_positions", _load)
        self.stream_ids = StreamIdGenerator(top)
        stream_positions.register("receipts", self.stream_ids)
        self._room_last: dict[str, int] = dict(rows)

    def room_last_position(self, room_id: str) -> int:
        """The stream position of the room's latest receipt change (0 if none)."""
        return self._room_last.get(room_id, 0)

    async def insert_receipt(self, room_id: str, receipt_type: str, user_id: str, thread_id: str | None,
                             event_id: str, event_stream_ordering: int, ts: int) -> int | None:
        """Store a receipt unless the user's receipt of that type and thread already points at a later (or the
        same) event. Read receipts also advance the user's read position for unread counts in the same
        transaction.

        Returns the new stream position, or None when nothing changed (the receipt would go backwards).
        """
        pos = self.stream_ids.allocate()
        thread_key = thread_id or ""

        def _txn(txn: Txn) -> bool:
            # The WHERE of the upsert keeps the check and the write atomic under concurrent receipts.
            txn.execute(
                "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, event_stream_ordering, "
                "stream_id, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET event_id = excluded.event_id, "
                "event_stream_ordering = excluded.event_stream_ordering, stream_id = excluded.stream_id, "
                "ts = excluded.ts WHERE receipts.event_stream_ordering < excluded.event_stream_ordering",
                (room_id, receipt_type, user_id, thread_key, event_id, event_stream_ordering, pos, ts),
            )
            if txn.rowcount == 0:
                return False
            if receipt_type in READ_RECEIPT_TYPES:
                upsert_read_position_txn(txn, user_id, room_id, thread_key, event_stream_ordering)
            return True

        try:
            changed = await self.db.run_interaction("insert_receipt", _txn)
        finally:
            self.stream_ids.mark_done(pos)
        if not changed:
            return None
        if self._room_last.get(room_id, 0) < pos:
            self._room_last[room_id] = pos
        return pos

    async def get_room_receipts(self, room_id: str, from_pos: int, to_pos: int) -> list[Receipt]:
        """Receipts of the room whose latest change is in ``(from_pos, to_pos]`` (``from_pos`` 0: all of them)."""
        rows = await self.db.execute(
            "get_room_receipts",
            "SELECT receipt_type, user_id, thread_id, event_id, ts, stream_id FROM receipts "
            "WHERE room_id = ? AND stream_id > ? AND stream_id <= ?",
            room_id, from_pos, to_pos,
        )
        return [Receipt(room_id, r[0], r[1], r[2] or None, r[3], int(r[4]), int(r[5])) for r in rows]

    async def get_user_receipts(self, user_id: str, room_id: str) -> list[Receipt]:
        """Every receipt ``user_id`` has in the room."""
        rows = await self.db.execute(
            "get_user_receipts",
            "SELECT receipt_type, thread_id, event_id, ts, stream_id FROM receipts WHERE room_id = ? AND user_id = ?",
            room_id, user_id,
        )
        return [Receipt(room_id, r[0], user_id, r[1] or None, r[2], int(r[3]), int(r[4])) for r in rows]
