"""Display names and avatar URLs (the ``profiles`` table)."""

from __future__ import annotations

from typing import Any

from homeserver.storage.database import Database


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
        await self.db.execute("set_displayname", "UPDATE profiles SET displayname = ? WHERE user_id = ?",
                              displayname, user_id)

    async def set_avatar_url(self, user_id: str, avatar_url: str | None) -> None:
        await self.db.execute("set_avatar_url", "UPDATE profiles SET avatar_url = ? WHERE user_id = ?",
                              avatar_url, user_id)
