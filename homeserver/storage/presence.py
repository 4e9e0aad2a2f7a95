"""Presence rows (the ``presence_stream`` table) and the ``presence`` stream's position generator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from homeserver.storage.database import Database, Txn
from homeserver.streams import StreamIdGenerator, StreamPositions


@dataclass(slots=True)
class UserPresence:
    """A user's presence. ``state`` is "online", "unavailable" or "offline"; timestamps are milliseconds since
    the epoch (0 = never); ``stream_id`` is the ``presence`` stream position of the last change."""

    user_id: str
    state: str = "offline"
    status_msg: str | None = None
    last_active_ts: int = 0
    last_user_sync_ts: int = 0
    currently_active: bool = False
    stream_id: int = 0


_COLUMNS = "user_id, stream_id, state, status_msg, last_active_ts, last_user_sync_ts, currently_active"


class PresenceStore:
    """SQL for ``presence_stream``; registers the ``presence`` stream (``stream_ids``) at construction."""

    def __init__(self, db: Database, stream_positions: StreamPositions) -> None:
        self.db = db

        def _max(txn: Txn) -> int:
            txn.execute("SELECT MAX(stream_id) FROM presence_stream")
            row = txn.fetchone()
            return int(row[0]) if row and row[0] is not None else 0

        self.stream_ids = StreamIdGenerator(db.run_interaction_sync("presence_max_stream_id", _max))
        stream_positions.register("presence", self.stream_ids)

    def load_all_sync(self) -> dict[str, UserPresence]:
        """Every stored presence, by user ID (start-up only: runs on the calling thread)."""

        def _txn(txn: Txn) -> dict[str, UserPresence]:
            txn.execute(f"SELECT {_COLUMNS} FROM presence_stream")
            return {r[0]: UserPresence(r[0], r[2], r[3], int(r[4]), int(r[5]), bool(r[6]), int(r[1]))
                    for r in txn.fetchall()}

        return self.db.run_interaction_sync("load_presence", _txn)

    async def upsert_presence(self, states: Iterable[UserPresence]) -> None:
        """Write the latest presence of each user (one row per user)."""
        rows: list[tuple[Any, ...]] = [
            (s.user_id, s.stream_id, s.state, s.status_msg, s.last_active_ts, s.last_user_sync_ts,
             1 if s.currently_active else 0) for s in states]

        def _txn(txn: Txn) -> None:
            txn.executemany(
                f"INSERT INTO presence_stream ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id, state = excluded.state, "
                "status_msg = excluded.status_msg, last_active_ts = excluded.last_active_ts, "
                "last_user_sync_ts = excluded.last_user_sync_ts, currently_active = excluded.currently_active",
                rows)

        await self.db.run_interaction("upsert_presence", _txn)
