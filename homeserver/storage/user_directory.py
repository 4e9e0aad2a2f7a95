"""User directory search over the ``users``, ``profiles`` and ``local_current_membership`` tables.

There is no directory table to keep in step: the query reads the live tables, so a profile change, a
registration, a join or a deactivation is visible to the next search without any hook.
"""

from __future__ import annotations

from typing import Any, Sequence

from homeserver.storage.database import Database, Txn


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class UserDirectoryStore:
    """SQL for ``POST /user_directory/search``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_join_rules_event_ids(self) -> dict[str, str]:
        """``{room_id: event_id}`` of each room's current ``m.room.join_rules`` event."""
        rows = await self.db.execute(
            "get_join_rules_event_ids",
            "SELECT room_id, event_id FROM current_state_events WHERE type = 'm.room.join_rules' AND state_key = ''")
        return {r[0]: r[1] for r in rows}

    async def search_users(self, searcher: str, words: Sequence[str], limit: int, public_room_ids: Sequence[str],
                           search_all_users: bool) -> list[tuple[str, str | None, str | None]]:
        """Up to ``limit`` ``(user_id, displayname, avatar_url)`` of active users matching every one of ``words``
        (lower-case) as a prefix of a word of their display name or of their localpart (or of the whole user ID
        for a word starting with ``@``), who share a room with ``searcher`` or are joined to one of
        ``public_room_ids`` (or any local user when ``search_all_users``). Sorted by display name, then ID."""
        clauses: list[str] = []
        params: list[Any] = []
        for word in words:
            esc = _like_escape(word)
            if word.startswith("@"):
                clauses.append("lower(u.name) LIKE ? ESCAPE '\\'")
                params.append(esc + "%")
            else:
                clauses.append("(lower(u.name) LIKE ? ESCAPE '\\' OR lower(p.displayname) LIKE ? ESCAPE '\\' "
                               "OR lower(p.displayname) LIKE ? ESCAPE '\\')")
                params += ["@" + esc + "%", esc + "%", "% " + esc + "%"]

        def _txn(txn: Txn) -> list[tuple[str, str | None, str | None]]:
            sql = ("SELECT u.name, p.displayname, p.avatar_url FROM users u "
                   "LEFT JOIN profiles p ON p.user_id = u.name WHERE u.deactivated = 0")
            args = list(params)
            if clauses:
                sql += " AND " + " AND ".join(clauses)
            if not search_all_users:
                shared = ("u.name IN (SELECT m2.user_id FROM local_current_membership m1 "
                          "JOIN local_current_membership m2 ON m2.room_id = m1.room_id "
                          "WHERE m1.user_id = ? AND m1.membership = 'join' AND m2.membership = 'join')")
                args.append(searcher)
                if public_room_ids:
                    in_public, in_args = txn.in_list("room_id", list(public_room_ids))
                    shared += (" OR u.name IN (SELECT user_id FROM local_current_membership "
                               f"WHERE membership = 'join' AND {in_public})")
                    args += in_args
                sql += f" AND ({shared})"
            sql += " ORDER BY CASE WHEN p.displayname IS NULL THEN 1 ELSE 0 END, lower(p.displayname), u.name LIMIT ?"
            args.append(limit)
            txn.execute(sql, args)
            return [(r[0], r[1], r[2]) for r in txn.fetchall()]

        return await self.db.run_interaction("search_user_directory", _txn)
