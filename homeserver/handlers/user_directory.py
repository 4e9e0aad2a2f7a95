"""User directory search (spec: Client-Server API, "User directory": ``POST /user_directory/search``).

A user finds the users who share a room with them and the users joined to public rooms (a room whose join rule
is ``public`` or that is published in the room directory); with ``user_directory.search_all_users`` every local
user. Matching is case-insensitive prefix matching on the words of the display name and on the localpart.

Company directory (issue 9): with ``search_all_users`` the directory is the address book of every active local
user. There a term also matches the ``io.tocsin.department`` and ``io.tocsin.title`` profile fields (so "SRE" finds
the SRE team); results are ranked by how well the display name matches (whole name, then name prefix, then a
word of the name or the localpart, then department/title matches) and carry the title and department.
"""

from __future__ import annotations

import re
from typing import Any

from homeserver.storage.user_directory import UserDirectoryStore

MAX_LIMIT = 100
MAX_WORDS = 10
MAX_TERM_LEN = 256  # characters
# Profile fields a company-directory result carries, and the ones a search term may match.
DIRECTORY_FIELDS = ("io.tocsin.title", "io.tocsin.department")
# How many candidates each query returns before ranking; more than `limit` so the best name matches win.
CANDIDATES = 300


class UserDirectoryHandler:
    """``hs.user_directory_handler``: ``await search(user_id, search_term, limit) -> {"results": [...],
    "limited": bool}`` with results ``{"user_id", "display_name"?, "avatar_url"?}`` (and, in the company
    directory, ``"io.tocsin.title"?``, ``"io.tocsin.department"?``)."""

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
        if self.search_all_users:
            return await self._search_company(user_id, words, limit)
        public = await self._public_room_ids()
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

    async def _search_company(self, user_id: str, words: list[str], limit: int) -> dict[str, Any]:
        """Every active local user matching by name, localpart, department or title; ranked, with org fields."""
        profile_store = self.hs.profile_store
        by_name = await self.store.search_users(user_id, words, CANDIDATES, [], True)
        found: dict[str, tuple[str | None, str | None]] = {uid: (dn, av) for uid, dn, av in by_name}
        by_field = [uid for uid in await profile_store.search_users_by_fields(words, DIRECTORY_FIELDS, CANDIDATES)
                    if uid not in found]
        for uid in by_field:
            profile = await profile_store.get_profile(uid) or {}
            found[uid] = (profile.get("displayname"), profile.get("avatar_url"))
        term = " ".join(words)

        def rank(uid: str) -> tuple[int, str, str]:
            name = (found[uid][0] or "").lower()
            if uid in by_field:
                score = 4
            elif name == term:
                score = 0
            elif name.startswith(term):
                score = 1
            elif uid[1:].lower().startswith(words[0]):
                score = 2
            else:
                score = 3
            return score, name or "\uffff", uid

        ordered = sorted(found, key=rank)
        page = ordered[:limit]
        fields = await profile_store.get_custom_fields_for_users(page, DIRECTORY_FIELDS)
        results = []
        for uid in page:
            displayname, avatar_url = found[uid]
            entry: dict[str, Any] = {"user_id": uid}
            if displayname is not None:
                entry["display_name"] = displayname
            if avatar_url is not None:
                entry["avatar_url"] = avatar_url
            for key, value in fields.get(uid, {}).items():
                if await self.hs.profile_handler.can_read_field(user_id, uid, key):
                    entry[key] = value
            results.append(entry)
        return {"results": results, "limited": len(ordered) > limit}
