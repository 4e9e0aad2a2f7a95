"""Stored sync filters (``POST /user/{userId}/filter``). Spec: Client-Server API, "Filtering".

Filter IDs are small integers per user, given to clients as strings. Uploading a filter identical to one the user
stored before returns the old ID: clients upload their filter on every start.
"""

from __future__ import annotations

import json
from typing import Any

from homeserver.storage.database import Database, Txn, is_integrity_error


def _canonical(filter_json: dict[str, Any]) -> str:
    return json.dumps(filter_json, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


_CACHE_MAX = 100_000
#: Distinct filter texts (stored or inline) kept parsed.
_PARSED_MAX = 2_000


class FilterStore:
    """SQL for ``user_filters``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # Stored filters never change (an upload of a different filter gets a new ID), so a positive answer can
        # be kept for good; bounded by starting over. The cache holds each filter's canonical JSON text, one
        # shared string per distinct text: clients of one kind upload the same filter, so a thousand users cost
        # a thousand dict entries, not a thousand parsed copies. ``parsed`` maps such a text to what callers
        # build from it (see :func:`homeserver.handlers.filtering.load_filter`), shared by every user too.
        self._cache: dict[tuple[str, int], str] = {}
        self._texts: dict[str, str] = {}
        self.parsed: dict[str, Any] = {}

    async def add_filter(self, user_id: str, filter_json: dict[str, Any]) -> int:
        """Store ``filter_json`` (already validated) for ``user_id``; returns its ID (int >= 0)."""
        encoded = _canonical(filter_json)

        def _txn(txn: Txn) -> int:
            txn.execute("SELECT filter_id FROM user_filters WHERE user_id = ? AND filter_json = ?",
                        (user_id, encoded))
            row = txn.fetchone()
            if row is not None:
                return int(row[0])
            txn.execute("SELECT COALESCE(MAX(filter_id), -1) FROM user_filters WHERE user_id = ?", (user_id,))
            filter_id = int(txn.fetchone()[0]) + 1
            txn.execute("INSERT INTO user_filters (user_id, filter_id, filter_json) VALUES (?, ?, ?)",
                        (user_id, filter_id, encoded))
            return filter_id

        for attempt in range(5):
            try:
                return await self.db.run_interaction("add_filter", _txn)
            except Exception as e:  # noqa: BLE001 - a concurrent upload took the same ID: try the next one
                if not is_integrity_error(e) or attempt == 4:
                    raise
        raise AssertionError("unreachable")

    async def get_filter(self, user_id: str, filter_id: str | int) -> dict[str, Any] | None:
        """The filter JSON the user stored under ``filter_id`` (as given by the client: a decimal string), or
        None if there is no such filter or the ID is not a number. A fresh dict each call (callers may mutate)."""
        text = await self.get_filter_text(user_id, filter_id)
        return json.loads(text) if text is not None else None

    async def get_filter_text(self, user_id: str, filter_id: str | int) -> str | None:
        """Like :meth:`get_filter` but the stored canonical JSON text (shared, never to be parsed in place)."""
        try:
            fid = int(filter_id)
        except (TypeError, ValueError):
            return None
        if isinstance(filter_id, str) and not filter_id.isdigit():
            return None
        if not 0 <= fid < 2**62:
            return None
        cached = self._cache.get((user_id, fid))
        if cached is not None:
            return cached
        rows = await self.db.execute(
            "get_filter", "SELECT filter_json FROM user_filters WHERE user_id = ? AND filter_id = ?", user_id, fid)
        if not rows:
            return None
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
            self._texts.clear()
            self.parsed.clear()
        text = self._texts.setdefault(rows[0][0], rows[0][0])
        self._cache[(user_id, fid)] = text
        return text

    def remember_parsed(self, text: str, parsed: Any) -> None:
        """Keep ``parsed`` (built from the filter JSON ``text``) for every later request with the same text;
        bounded to :data:`_PARSED_MAX` entries by starting over."""
        if len(self.parsed) >= _PARSED_MAX:
            self.parsed.clear()
        self.parsed[text] = parsed
