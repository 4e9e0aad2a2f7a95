"""Account data, global (``room_id`` '') and per room, on the ``account_data`` stream.

Spec: Client-Server API, "Client Config" (account data) and "Room Tagging" (tags are the ``m.tag`` room account
data ``{"tags": {...}}``). Every write takes a new stream position, so /sync sends each change once.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet import defer

from homeserver.storage.database import Database, Txn
from homeserver.streams import StreamIdGenerator

JsonDict = dict[str, Any]


_ITEMS_CACHE_USERS = 50_000


class AccountDataStore:
    """SQL for ``account_data``. Registers the ``account_data`` stream and wakes /sync through ``notifier``."""

    def __init__(self, db: Database, notifier: Any, stream_positions: Any) -> None:
        self.db = db
        self.notifier = notifier
        row = db.run_interaction_sync("max_account_data_stream_id", lambda t: t.execute(
            "SELECT COALESCE(MAX(stream_id), 0) FROM account_data").fetchone())
        self.stream_ids = StreamIdGenerator(int(row[0]))
        stream_positions.register("account_data", self.stream_ids)
        # Read-modify-write updates (tags) of one user run one at a time; this server is one process.
        self._locks: dict[str, defer.DeferredLock] = {}
        # get_account_data results per user (/sync reads the ignore list on every request). A user's entry is
        # dropped around every write of theirs; a read that raced with a write is not stored.
        self._items: dict[str, dict[tuple[str, str], JsonDict | None]] = {}
        self._writes = 0

    def get_current_position(self) -> int:
        """The position up to which the stream is complete."""
        return self.stream_ids.current()

    async def get_updated_account_data(self, user_id: str, from_pos: int,
                                       to_pos: int) -> tuple[dict[str, JsonDict], dict[str, dict[str, JsonDict]]]:
        """Account data of ``user_id`` written after ``from_pos`` (exclusive) up to ``to_pos`` (inclusive).

        ``from_pos`` 0 gives everything. Returns ``(global {type: content}, per-room {room_id: {type: content}})``
        with each type's latest content.
        """
        rows = await self.db.execute(
            "get_updated_account_data",
            "SELECT room_id, account_data_type, content FROM account_data "
            "WHERE user_id = ? AND stream_id > ? AND stream_id <= ?",
            user_id, from_pos, to_pos,
        )
        global_data: dict[str, JsonDict] = {}
        by_room: dict[str, dict[str, JsonDict]] = {}
        for room_id, data_type, content in rows:
            if room_id == "":
                global_data[data_type] = json.loads(content)
            else:
                by_room.setdefault(room_id, {})[data_type] = json.loads(content)
        return global_data, by_room

    async def get_account_data(self, user_id: str, room_id: str, data_type: str) -> JsonDict | None:
        """One item's content (``room_id`` '' for global), or None if the user never set it. The caller must not
        modify the returned dict (it may be shared with other callers)."""
        items = self._items.get(user_id)
        if items is not None and (room_id, data_type) in items:
            return items[(room_id, data_type)]
        writes = self._writes
        rows = await self.db.execute(
            "get_account_data",
            "SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND account_data_type = ?",
            user_id, room_id, data_type,
        )
        content = json.loads(rows[0][0]) if rows else None
        if writes == self._writes:
            if len(self._items) >= _ITEMS_CACHE_USERS:
                self._items.clear()
            self._items.setdefault(user_id, {})[(room_id, data_type)] = content
        return content

    async def get_all_account_data(self, user_id: str) -> tuple[dict[str, JsonDict], dict[str, dict[str, JsonDict]]]:
        """Everything the user stored: ``(global, per-room)`` as in :meth:`get_updated_account_data`."""
        return await self.get_updated_account_data(user_id, 0, 2**62)

    async def add_account_data(self, user_id: str, room_id: str, data_type: str, content: JsonDict) -> int:
        """Set one item (``room_id`` '' for global) and return its new stream position. Wakes the user's /sync."""
        encoded = json.dumps(content, ensure_ascii=False, separators=(",", ":"))

        def _txn(txn: Txn, pos: int) -> None:
            _upsert(txn, user_id, room_id, data_type, pos, encoded)

        return await self._write(user_id, _txn)

    async def update_account_data(self, user_id: str, room_id: str, data_type: str,
                                  change: Callable[[JsonDict | None], JsonDict]) -> tuple[int, JsonDict]:
        """Read-modify-write one item: ``change(old_content_or_None) -> new_content``; returns
        ``(position, new_content)``. Concurrent updates of one user are serialised."""
        lock = self._locks.setdefault(user_id, defer.DeferredLock())
        await lock.acquire()
        try:
            new_content = change(await self.get_account_data(user_id, room_id, data_type))
            pos = await self.add_account_data(user_id, room_id, data_type, new_content)
            return pos, new_content
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._locks.pop(user_id, None)

    async def _write(self, user_id: str, fn: Callable[[Txn, int], None]) -> int:
        pos = self.stream_ids.allocate()
        self._writes += 1
        self._items.pop(user_id, None)
        try:
            await self.db.run_interaction("add_account_data", fn, pos)
        finally:
            self._writes += 1
            self._items.pop(user_id, None)
            self.stream_ids.mark_done(pos)
        self.notifier.notify("account_data", pos, users=[user_id])
        return pos


def _upsert(txn: Txn, user_id: str, room_id: str, data_type: str, pos: int, content: str) -> None:
    # INSERT ... ON CONFLICT is the same on SQLite (>= 3.24) and PostgreSQL.
    txn.execute(
        "INSERT INTO account_data (user_id, room_id, account_data_type, stream_id, content) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (user_id, room_id, account_data_type) DO UPDATE SET stream_id = excluded.stream_id, "
        "content = excluded.content",
        (user_id, room_id, data_type, pos, content),
    )
