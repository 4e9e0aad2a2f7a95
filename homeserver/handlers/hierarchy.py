"""Space hierarchy (spec: Client-Server API, "Spaces": ``GET /_matrix/client/v1/rooms/{roomId}/hierarchy``).

A space is a room whose ``m.room.create`` has ``type: m.space``; its children are its ``m.space.child`` state
events whose content has a non-empty ``via`` list. The walk is depth-first from the requested room, children
ordered by the spec's rule (``order`` string, then ``origin_server_ts``, then room ID). A room appears only if
the requester may see or join it: joined or invited, a ``public`` or knockable join rule, ``world_readable``
history, or a ``restricted`` / ``knock_restricted`` rule whose ``allow`` list names a room the requester is
joined to. Rooms that are not shown are not walked through either.

Pagination keeps the rest of the walk on the server under a random ``next_batch`` token (for 5 minutes); the
token is bound to the requester, the root room and ``max_depth`` / ``suggested_only``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from homeserver.http.errors import ForbiddenError, InvalidParamError

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
DEFAULT_MAX_DEPTH = 10
MAX_MAX_DEPTH = 50
SESSION_LIFETIME_S = 300.0
MAX_SESSIONS = 1000
MAX_ROOMS_WALKED = 5000  # one walk (all its pages) visits at most this many rooms

_SUMMARY_STATE = ("m.room.create", "m.room.join_rules", "m.room.history_visibility", "m.room.guest_access",
                  "m.room.name", "m.room.topic", "m.room.canonical_alias", "m.room.avatar", "m.room.encryption")


@dataclass
class _Walk:
    user_id: str
    root: str
    max_depth: int
    suggested_only: bool
    queue: list[tuple[str, int]]  # (room_id, depth), next first
    seen: set[str] = field(default_factory=set)
    created: float = 0.0


def _valid_order(order: Any) -> bool:
    return isinstance(order, str) and len(order) <= 50 and all(0x20 <= ord(c) <= 0x7E for c in order)


def child_sort_key(event: Any) -> tuple[int, str, int, str]:
    """Spec ordering of ``m.space.child`` events: those with a valid ``order`` first, lexicographically by it;
    then by ``origin_server_ts``; then by the child's room ID."""
    order = event.content.get("order")
    if _valid_order(order):
        return 0, order, event.origin_server_ts, event.state_key
    return 1, "", event.origin_server_ts, event.state_key


class HierarchyHandler:
    """``hs.hierarchy_handler``.

    Public API:
    - ``await get_hierarchy(user_id, room_id, limit=None, max_depth=None, suggested_only=False, from_token=None)
      -> {"rooms": [summary...], "next_batch"?: str}`` (403 ``M_FORBIDDEN`` if the root is not accessible,
      400 ``M_INVALID_PARAM`` for an unknown or mismatched ``from`` token)
    - ``await get_space_children(room_id, suggested_only=False) -> [m.space.child Event]`` (spec order)
    - ``await is_accessible(user_id, room_id) -> bool``
    """

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.room_store = hs.room_store
        self._walks: dict[str, _Walk] = {}

    async def _state(self, room_id: str, with_children: bool) -> dict[tuple[str, str], Any]:
        ids = await self.room_store.get_current_state_ids(room_id)
        wanted = {k: v for k, v in ids.items()
                  if (k[0] in _SUMMARY_STATE and k[1] == "") or (with_children and k[0] == "m.space.child")}
        events = await self.hs.event_store.get_events(list(wanted.values()))
        return {k: events[v] for k, v in wanted.items() if v in events}

    async def get_space_children(self, room_id: str, suggested_only: bool = False) -> list[Any]:
        """The room's valid ``m.space.child`` events (non-empty ``via``), in spec order."""
        state = await self._state(room_id, with_children=True)
        return _children(state, suggested_only)

    async def is_accessible(self, user_id: str, room_id: str) -> bool:
        """Whether ``user_id`` may see ``room_id`` in a hierarchy (see the module docstring)."""
        state = await self._state(room_id, with_children=False)
        return await self._accessible(user_id, room_id, state)

    async def _accessible(self, user_id: str, room_id: str, state: dict[tuple[str, str], Any]) -> bool:
        if ("m.room.create", "") not in state:
            return False
        if await self.room_store.get_membership(room_id, user_id) in ("join", "invite"):
            return True
        hv = state.get(("m.room.history_visibility", ""))
        if hv is not None and hv.content.get("history_visibility") == "world_readable":
            return True
        rules = state.get(("m.room.join_rules", ""))
        join_rule = rules.content.get("join_rule") if rules is not None else "invite"
        if join_rule in ("public", "knock", "knock_restricted"):
            return True
        if join_rule == "restricted":
            allowed = _allowed_room_ids(rules)
            if allowed and set(allowed) & set(await self.room_store.get_rooms_for_user(user_id)):
                return True
        return False

    async def _summary(self, room_id: str, state: dict[tuple[str, str], Any],
                       children: list[Any]) -> dict[str, Any]:
        def content(etype: str) -> dict[str, Any]:
            ev = state.get((etype, ""))
            return ev.content if ev is not None else {}

        create = content("m.room.create")
        join_rule = content("m.room.join_rules").get("join_rule", "invite")
        summary: dict[str, Any] = {
            "room_id": room_id,
            "num_joined_members": len(await self.room_store.get_users_in_room(room_id)),
            "world_readable": content("m.room.history_visibility").get("history_visibility") == "world_readable",
            "guest_can_join": content("m.room.guest_access").get("guest_access") == "can_join",
            "join_rule": join_rule,
            "room_version": create.get("room_version", "1"),
            "children_state": [
                {"type": ev.type, "state_key": ev.state_key, "content": ev.content, "sender": ev.sender,
                 "origin_server_ts": ev.origin_server_ts}
                for ev in children
            ],
        }
        for key, etype, prop in (("name", "m.room.name", "name"), ("topic", "m.room.topic", "topic"),
                                 ("canonical_alias", "m.room.canonical_alias", "alias"),
                                 ("avatar_url", "m.room.avatar", "url")):
            value = content(etype).get(prop)
            if isinstance(value, str) and value:
                summary[key] = value
        if isinstance(create.get("type"), str):
            summary["room_type"] = create["type"]
        encryption = content("m.room.encryption").get("algorithm")
        if isinstance(encryption, str):
            summary["encryption"] = encryption
        if join_rule in ("restricted", "knock_restricted"):
            summary["allowed_room_ids"] = _allowed_room_ids(state.get(("m.room.join_rules", "")))
        return summary

    def _prune(self, now: float) -> None:
        for token, walk in list(self._walks.items()):
            if now - walk.created > SESSION_LIFETIME_S:
                del self._walks[token]
        while len(self._walks) >= MAX_SESSIONS:
            del self._walks[next(iter(self._walks))]

    async def get_hierarchy(self, user_id: str, room_id: str, limit: int | None = None,
                            max_depth: int | None = None, suggested_only: bool = False,
                            from_token: str | None = None) -> dict[str, Any]:
        """One page of the walk (see the class docstring). ``limit`` defaults to 50 (at most 500),
        ``max_depth`` to 10 (at most 50); depth 0 is the root itself."""
        limit = DEFAULT_LIMIT if limit is None else max(1, min(limit, MAX_LIMIT))
        depth_limit = DEFAULT_MAX_DEPTH if max_depth is None else max(0, min(max_depth, MAX_MAX_DEPTH))
        now = self.hs.clock.seconds()
        self._prune(now)
        if from_token is not None:
            walk = self._walks.pop(from_token, None)
            if walk is None or walk.user_id != user_id or walk.root != room_id:
                raise InvalidParamError("Unknown or expired pagination token")
            if walk.suggested_only != suggested_only or (max_depth is not None and walk.max_depth != depth_limit):
                raise InvalidParamError("max_depth and suggested_only cannot change while paginating")
        else:
            if not await self.is_accessible(user_id, room_id):
                raise ForbiddenError(f"You may not preview room {room_id}")
            walk = _Walk(user_id, room_id, depth_limit, suggested_only, [(room_id, 0)])

        rooms: list[dict[str, Any]] = []
        while walk.queue and len(rooms) < limit and len(walk.seen) < MAX_ROOMS_WALKED:
            current, depth = walk.queue.pop(0)
            if current in walk.seen:
                continue
            walk.seen.add(current)
            state = await self._state(current, with_children=True)
            if not await self._accessible(user_id, current, state):
                continue
            create = state.get(("m.room.create", ""))
            is_space = create is not None and create.content.get("type") == "m.space"
            children = _children(state, walk.suggested_only) if is_space and depth < walk.max_depth else []
            rooms.append(await self._summary(current, state, children))
            walk.queue[0:0] = [(ev.state_key, depth + 1) for ev in children if ev.state_key not in walk.seen]

        result: dict[str, Any] = {"rooms": rooms}
        if walk.queue and len(walk.seen) < MAX_ROOMS_WALKED:
            token = secrets.token_urlsafe(16)
            walk.created = now
            self._walks[token] = walk
            result["next_batch"] = token
        return result


def _children(state: dict[tuple[str, str], Any], suggested_only: bool) -> list[Any]:
    out = []
    for (etype, _skey), ev in state.items():
        if etype != "m.space.child":
            continue
        via = ev.content.get("via")
        if not isinstance(via, list) or not via:
            continue  # an empty or missing via removes the link (spec)
        if suggested_only and ev.content.get("suggested") is not True:
            continue
        out.append(ev)
    return sorted(out, key=child_sort_key)


def _allowed_room_ids(rules: Any) -> list[str]:
    if rules is None or not isinstance(rules.content.get("allow"), list):
        return []
    return [a["room_id"] for a in rules.content["allow"]
            if isinstance(a, dict) and a.get("type") == "m.room_membership" and isinstance(a.get("room_id"), str)]
