"""User directory search (spec: Client-Server API, "User directory": ``POST /user_directory/search``).

A user finds the users who share a room with them and the users joined to public rooms (a room whose join rule
is ``public`` or that is published in the room directory); with ``user_directory.search_all_users`` every local
user. Matching is case-insensitive prefix matching on the words of the display name and on the localpart.
"""

from __future__ import annotations

import re
from typing import Any

from homeserver.storage.user_directory import UserDirectoryStore

MAX_LIMIT = 100
MAX_WORDS = 10
MAX_TERM_LEN = 256  # characters


class UserDirectoryHandler:
    """``hs.user_directory_handler``: ``await search(user_id, search_term, limit) -> {"results": [...],
    "limited": bool}`` with results ``{"user_id", "display_name"?, "avatar_url"?}``."""

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.store: UserDirectoryStore = hs.user_directory_store
        self.search_all_users: bool = hs.config.user_directory_search_all_users
        self._public_rooms: tuple[int, list[str]] | None = None

    async def _public_room_ids(self) -> list[str]:
        """Rooms anyone may join or that are published; recomputed only when the events stream has moved."""
        position = self.hs.event_store.stream_ids.current()
        if self._public_rooms is not None and self._public_rooms[0] == position:
            return self._public_rooms[1]
        join_rules = await self.store.get_join_rules_event_ids()
        events = await self.hs.event_store.get_events(list(join_rules.values()))
        public = {room_id for room_id, event_id in join_rules.items()
                  if event_id in events and events[event_id].content.get("join_rule") == "public"}
        public.update(await self.hs.room_store.get_public_room_ids())
        rooms = sorted(public)
        self._public_rooms = (position, rooms)
        return rooms

    async def search(self, user_id: str, search_term: str, limit: int) -> dict[str, Any]:
        """Up to ``limit`` (capped at 100) users matching ``search_term``; ``limited`` when more matched."""
        limit = max(0, min(limit, MAX_LIMIT))
        words = [w for w in re.split(r"\s+", search_term[:MAX_TERM_LEN].lower()) if w][:MAX_WORDS]
        if not words or limit == 0:
            return {"results": [], "limited": False}
        public = [] if self.search_all_users else await self._public_room_ids()
        rows = await self.store.search_users(user_id, words, limit + 1, public, self.search_all_users)
        results = []
        for uid, displayname, avatar_url in rows[:limit]:
            entry: dict[str, Any] = {"user_id": uid}
            if displayname is not None:
                entry["display_name"] = displayname
            if avatar_url is not None:
                entry["avatar_url"] = avatar_url
            results.append(entry)
        return {"results": results, "limited": len(rows) > limit}
