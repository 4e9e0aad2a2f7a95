"""Display names and avatar URLs (the ``profiles`` table) and extended profile fields (``profile_fields``)."""

from __future__ import annotations

import json
from typing import Any, Sequence

from homeserver.storage.database import Database, Txn


class ProfileStore:
    """SQL for ``profiles``. A user's row is created with the account."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_profile(self, user_id: str) -> dict[str, Any] | None:
        """``{"displayname": str|None, "avatar_url": str|None}``, or None for an unknown user."""
        rows = await self.db.execute(
            "get_profile", "SELECT displayname, avatar_url FROM profiles WHERE user_id = ?", user_id)
        if not rows:
            return None
        return {"displayname": rows[0][0], "avatar_url": rows[0][1]}

    async def set_displayname(self, user_id: str, displayname: str | None) -> None:
        """Set the user's ``displayname`` (None clears it); the profile row must exist."""
        await self.db.execute("set_displayname", "UPDATE profiles SET displayname = ? WHERE user_id = ?",
                              displayname, user_id)

    async def set_avatar_url(self, user_id: str, avatar_url: str | None) -> None:
        """Set the user's ``avatar_url`` (an ``mxc://`` URI; None clears it); the profile row must exist."""
        await self.db.execute("set_avatar_url", "UPDATE profiles SET avatar_url = ? WHERE user_id = ?",
                              avatar_url, user_id)

    # -- extended profile fields (issue 9): one row per custom key in `profile_fields` --------------------------

    async def get_custom_fields(self, user_id: str) -> dict[str, Any]:
        """Every extended field of ``user_id``: ``{key: decoded JSON value}`` (empty if none or unknown user)."""
        rows = await self.db.execute(
            "get_custom_fields", "SELECT field_name, value_json FROM profile_fields WHERE user_id = ?", user_id)
        return {name: json.loads(value) for name, value in rows}

    async def get_custom_fields_for_users(self, user_ids: Sequence[str],
                                          keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``{user_id: {key: value}}`` of ``keys`` for ``user_ids`` (users without any of them are absent)."""
        if not user_ids or not keys:
            return {}

        def _txn(txn: Txn) -> dict[str, dict[str, Any]]:
            out: dict[str, dict[str, Any]] = {}
            in_keys, key_args = txn.in_list("field_name", list(keys))
            ids = list(user_ids)
            for start in range(0, len(ids), 500):  # bounded IN lists on both engines
                in_users, user_args = txn.in_list("user_id", ids[start:start + 500])
                txn.execute(f"SELECT user_id, field_name, value_json FROM profile_fields WHERE {in_users} "
                            f"AND {in_keys}", user_args + key_args)
                for uid, name, value in txn.fetchall():
                    out.setdefault(uid, {})[name] = json.loads(value)
            return out

        return await self.db.run_interaction("get_custom_fields_for_users", _txn)

    async def set_custom_fields(self, user_id: str, fields: dict[str, Any]) -> None:
        """Set several extended fields of one user in one transaction. ``fields`` maps key -> JSON value."""
        if not fields:
            return

        def _txn(txn: Txn) -> None:
            for name, value in fields.items():
                encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
                search = value.lower() if isinstance(value, str) else None
                txn.execute("DELETE FROM profile_fields WHERE user_id = ? AND field_name = ?", (user_id, name))
                txn.execute("INSERT INTO profile_fields (user_id, field_name, value_json, search_text) "
                            "VALUES (?, ?, ?, ?)", (user_id, name, encoded, search))

        await self.db.run_interaction("set_custom_fields", _txn)

    async def delete_custom_fields(self, user_id: str, keys: Sequence[str]) -> int:
        """Remove ``keys`` of ``user_id``; returns how many rows existed."""
        if not keys:
            return 0

        def _txn(txn: Txn) -> int:
            in_keys, args = txn.in_list("field_name", list(keys))
            txn.execute(f"DELETE FROM profile_fields WHERE user_id = ? AND {in_keys}", [user_id] + args)
            return txn.rowcount

        return await self.db.run_interaction("delete_custom_fields", _txn)

    async def search_users_by_fields(self, words: Sequence[str], keys: Sequence[str],
                                     limit: int) -> list[str]:
        """Active local users for whom every one of ``words`` (lower case) occurs in one of the string fields
        ``keys`` (e.g. department, title); up to ``limit`` user IDs, sorted."""
        if not words or not keys:
            return []

        def _txn(txn: Txn) -> list[str]:
            in_keys, key_args = txn.in_list("f.field_name", list(keys))
            clauses, args = [], []
            for word in words:
                clauses.append(f"EXISTS (SELECT 1 FROM profile_fields f WHERE f.user_id = u.name AND {in_keys} "
                               "AND f.search_text LIKE ? ESCAPE '\\')")
                args += key_args + ["%" + _like_escape(word) + "%"]
            txn.execute("SELECT u.name FROM users u WHERE u.deactivated = 0 AND " + " AND ".join(clauses)
                        + " ORDER BY u.name LIMIT ?", args + [limit])
            return [r[0] for r in txn.fetchall()]

        return await self.db.run_interaction("search_users_by_fields", _txn)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
