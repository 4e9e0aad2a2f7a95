"""Content reports (``content_reports``, migration 060): what users reported, for server admins to review.

Spec: Client-Server API "Reporting content" (report an event, a room, a user).
"""

from __future__ import annotations

import secrets
from typing import Any

from homeserver.storage.database import Database


class ReportStore:
    """The ``content_reports`` table (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add_report(self, reporter: str, received_ts: int, *, room_id: str | None = None,
                         event_id: str | None = None, target_user_id: str | None = None,
                         reason: str | None = None, score: int | None = None) -> str:
        """Store one report; returns its report ID. ``received_ts`` is ms since the epoch."""
        report_id = secrets.token_urlsafe(12)
        await self.db.execute(
            "add_report",
            "INSERT INTO content_reports (report_id, received_ts, reporter, room_id, event_id, target_user_id, "
            "reason, score) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            report_id, received_ts, reporter, room_id, event_id, target_user_id, reason, score,
        )
        return report_id

    async def get_reports(self, limit: int = 100, before_ts: int | None = None) -> list[dict[str, Any]]:
        """Newest reports first (at most ``limit``), as dicts with the table's column names."""
        sql = ("SELECT report_id, received_ts, reporter, room_id, event_id, target_user_id, reason, score "
               "FROM content_reports")
        params: list[Any] = []
        if before_ts is not None:
            sql += " WHERE received_ts < ?"
            params.append(before_ts)
        sql += " ORDER BY received_ts DESC, report_id LIMIT ?"
        params.append(limit)
        rows = await self.db.execute("get_reports", sql, *params)
        cols = ("report_id", "received_ts", "reporter", "room_id", "event_id", "target_user_id", "reason", "score")
        return [dict(zip(cols, r)) for r in rows]
