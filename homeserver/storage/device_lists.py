"""The ``device_lists`` stream: which users' devices, device keys or cross-signing keys changed, and when.

Spec: Client-Server API, "Tracking the device list for a user" (``device_lists`` in ``/sync``, ``GET /keys/changes``).
Rows are never deleted, so the stream's maximum survives restarts and tokens clients hold stay meaningful.
"""

from __future__ import annotations

from typing import Any, Iterable

from homeserver.storage.database import Database, Txn
from homeserver.streams import StreamIdGenerator

# Bounds the membership rows read for one sync / keys/changes range (a client back after a long absence); beyond
# it every user the client shares a room with is reported changed.
MAX_MEMBERSHIP_ROWS = 20000
_ROOM_CHUNK = 500


class DeviceListStore:
    """SQL for ``device_lists_stream`` plus the read of ``room_memberships`` the device-list rules need.

    ``generator`` is the stream's :class:`StreamIdGenerator`, registered as ``"device_lists"``.
    """

    def __init__(self, db: Database, stream_positions: Any) -> None:
        self.db = db
        row = db.run_interaction_sync("device_lists_max", lambda t: t.execute(
            "SELECT COALESCE(MAX(stream_id), 0) FROM device_lists_stream").fetchone())
        self.generator = StreamIdGenerator(int(row[0]) if row else 0)
        stream_positions.register("device_lists", self.generator)

    @staticmethod
    def record_change_txn(txn: Txn, user_id: str, device_id: str | None, stream_id: int) -> None:
        """Write the change row inside the caller's transaction (so a change and its cause commit together)."""
        txn.execute("INSERT INTO device_lists_stream (stream_id, user_id, device_id) VALUES (?, ?, ?)",
                    (stream_id, user_id, device_id))

    async def record_change(self, user_id: str, device_id: str | None, stream_id: int) -> None:
        """Record, in its own transaction, that ``user_id``'s devices changed at ``stream_id`` of ``device_lists``."""
        await self.db.run_interaction("record_device_list_change", self.record_change_txn, user_id, device_id,
                                      stream_id)

    async def get_users_changed_between(self, from_id: int, to_id: int) -> set[str]:
        """Users with a change at a position in ``(from_id, to_id]``."""
        if to_id <= from_id:
            return set()
        rows = await self.db.execute(
            "device_lists_changed",
            "SELECT DISTINCT user_id FROM device_lists_stream WHERE stream_id > ? AND stream_id <= ?",
            from_id, to_id)
        return {r[0] for r in rows}

    async def get_membership_changes_in_rooms(self, room_ids: Iterable[str], from_ordering: int, to_ordering: int,
                                              limit: int | None = None) -> tuple[list[tuple[str, str, str]], bool]:
        """Membership events of ``room_ids`` with stream ordering in ``(from_ordering, to_ordering]``.

        Returns ``([(room_id, user_id, membership)] oldest first, truncated)``: at most ``limit`` rows, and
        ``truncated`` True when the range held more (the caller must then assume any member may have changed).
        ``limit`` None: :data:`MAX_MEMBERSHIP_ROWS`.
        One index range per room (``room_memberships_room_stream``), so the cost follows the caller's rooms, not the
        whole server's membership traffic.
        """
        if limit is None:
            limit = MAX_MEMBERSHIP_ROWS
        rooms = sorted(set(room_ids))
        if to_ordering <= from_ordering or not rooms:
            return [], False

        def _txn(txn: Txn) -> list[tuple[Any, ...]]:
            out: list[tuple[Any, ...]] = []
            # Chunks keep each statement's parameter list small; stop once past the limit.
            for i in range(0, len(rooms), _ROOM_CHUNK):
                clause, params = txn.in_list("room_id", rooms[i:i + _ROOM_CHUNK])
                txn.execute(
                    "SELECT room_id, user_id, membership, stream_ordering FROM room_memberships"
                    f" WHERE {clause} AND stream_ordering > ? AND stream_ordering <= ?"
                    " ORDER BY stream_ordering LIMIT ?",
                    [*params, from_ordering, to_ordering, limit + 1 - len(out)])
                out.extend(txn.fetchall())
                if len(out) > limit:
                    break
            return out

        rows = await self.db.run_read("device_lists_room_memberships", _txn)
        rows.sort(key=lambda r: r[3])
        truncated = len(rows) > limit
        return [(r[0], r[1], r[2]) for r in rows[:limit]], truncated

    async def get_user_membership_changes(self, user_id: str, from_ordering: int,
                                          to_ordering: int) -> list[tuple[str, str]]:
        """``[(room_id, membership)]`` of ``user_id``'s own membership events in ``(from_ordering, to_ordering]``,
        oldest first (index ``room_memberships_user``)."""
        if to_ordering <= from_ordering:
            return []
        rows = await self.db.execute_read(
            "device_lists_user_memberships",
            "SELECT room_id, membership FROM room_memberships WHERE user_id = ? AND stream_ordering > ?"
            " AND stream_ordering <= ? ORDER BY stream_ordering",
            user_id, from_ordering, to_ordering)
        return [(r[0], r[1]) for r in rows]
