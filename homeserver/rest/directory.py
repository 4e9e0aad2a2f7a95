"""Room aliases and the public room directory.

Spec: Client-Server API "Room aliases" (``/directory/room/{roomAlias}``, ``/rooms/{roomId}/aliases``) and
"Listing rooms" (``/directory/list/room/{roomId}``, ``/publicRooms``).
"""

from __future__ import annotations

from typing import Any

from homeserver.http.errors import BadJsonError, ForbiddenError, InvalidParamError, NotFoundError
from homeserver.http.server import CLIENT_PREFIX, parse_integer, parse_json_object, parse_string

_PUBLIC_STATE = {
    "m.room.name": ("name", "name"),
    "m.room.topic": ("topic", "topic"),
    "m.room.canonical_alias": ("canonical_alias", "alias"),
    "m.room.avatar": ("avatar_url", "avatar_url"),
}


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``GET|PUT|DELETE /directory/room/{roomAlias}``, ``GET /rooms/{roomId}/aliases``,
    ``GET|PUT /directory/list/room/{roomId}`` and ``GET|POST /publicRooms`` on ``router``, served by ``hs``'s handlers
    and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Room aliases" and "Listing rooms".
    """
    auth = hs.auth
    rooms = hs.room_store
    directory = hs.directory_handler

    async def get_alias(request: Any, alias: str) -> tuple[int, Any]:
        room_id = await directory.resolve_alias(alias)
        return 200, {"room_id": room_id, "servers": [hs.hostname]}

    async def put_alias(request: Any, alias: str) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        body = parse_json_object(request)
        room_id = body.get("room_id")
        if not isinstance(room_id, str) or not room_id.startswith("!"):
            raise BadJsonError("'room_id' must be a room ID")
        await directory.create_alias(requester, alias, room_id)
        return 200, {}

    async def delete_alias(request: Any, alias: str) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        await directory.delete_alias(requester, alias)
        return 200, {}

    async def room_aliases(request: Any, room_id: str) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        await hs.visibility_handler.check_user_can_see_room(requester.user_id, room_id)
        return 200, {"aliases": await rooms.get_aliases_for_room(room_id)}

    async def get_visibility(request: Any, room_id: str) -> tuple[int, Any]:
        is_public = await rooms.get_room_is_public(room_id)
        if is_public is None:
            raise NotFoundError("Unknown room")
        return 200, {"visibility": "public" if is_public else "private"}

    async def put_visibility(request: Any, room_id: str) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        body = parse_json_object(request, allow_empty_body=True)
        visibility = body.get("visibility", "public")
        if visibility not in ("public", "private"):
            raise InvalidParamError("visibility must be 'public' or 'private'")
        if await rooms.get_room_is_public(room_id) is None:
            raise NotFoundError("Unknown room")
        if await rooms.get_membership(room_id, requester.user_id) != "join" or \
                not await directory.may_manage_room_aliases(requester.user_id, room_id):
            raise ForbiddenError("You don't have permission to change the room's directory visibility")
        await rooms.set_room_is_public(room_id, visibility == "public")
        return 200, {}

    async def public_room_chunk(room_id: str) -> dict[str, Any] | None:
        state = await rooms.get_current_state(room_id)
        if not state:
            return None
        entry: dict[str, Any] = {
            "room_id": room_id,
            "num_joined_members": len(await rooms.get_users_in_room(room_id)),
            "world_readable": False,
            "guest_can_join": False,
            "join_rule": "public",
        }
        for (etype, _skey), event in state.items():
            if etype in _PUBLIC_STATE and _skey == "":
                key, field = _PUBLIC_STATE[etype]
                value = event.content.get(field)
                if isinstance(value, str) and value:
                    entry[key] = value
            elif etype == "m.room.history_visibility" and _skey == "":
                entry["world_readable"] = event.content.get("history_visibility") == "world_readable"
            elif etype == "m.room.guest_access" and _skey == "":
                entry["guest_can_join"] = event.content.get("guest_access") == "can_join"
            elif etype == "m.room.join_rules" and _skey == "":
                entry["join_rule"] = event.content.get("join_rule", "public")
            elif etype == "m.room.create" and _skey == "":
                room_type = event.content.get("type")
                if isinstance(room_type, str):
                    entry["room_type"] = room_type
        return entry

    async def list_public_rooms(limit: int | None, since: str | None, term: str | None) -> dict[str, Any]:
        chunks = []
        for room_id in await rooms.get_public_room_ids():
            chunk = await public_room_chunk(room_id)
            if chunk is None:
                continue
            if term:
                haystack = " ".join(str(chunk.get(k, "")) for k in ("name", "topic", "canonical_alias")).lower()
                if term.lower() not in haystack:
                    continue
            chunks.append(chunk)
        chunks.sort(key=lambda c: (-c["num_joined_members"], c["room_id"]))
        offset = 0
        if since:
            if not since.startswith("o") or not since[1:].isdigit():
                raise InvalidParamError("Invalid 'since' token")
            offset = int(since[1:])
        total = len(chunks)
        page = chunks[offset:offset + limit] if limit else chunks[offset:]
        body: dict[str, Any] = {"chunk": page, "total_room_count_estimate": total}
        if limit and offset + limit < total:
            body["next_batch"] = f"o{offset + limit}"
        if offset > 0:
            body["prev_batch"] = f"o{max(0, offset - (limit or total))}"
        return body

    async def get_public_rooms(request: Any) -> tuple[int, Any]:
        limit = parse_integer(request, "limit", default=None, minimum=0)
        since = parse_string(request, "since")
        server = parse_string(request, "server")
        if server not in (None, hs.hostname):
            raise InvalidParamError("Only this server's room directory is available")
        return 200, await list_public_rooms(limit, since, None)

    async def post_public_rooms(request: Any) -> tuple[int, Any]:
        await auth.get_user_by_req(request)
        body = parse_json_object(request, allow_empty_body=True)
        limit = body.get("limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise BadJsonError("'limit' must be a non-negative integer")
        since = body.get("since")
        if since is not None and not isinstance(since, str):
            raise BadJsonError("'since' must be a string")
        flt = body.get("filter") or {}
        if not isinstance(flt, dict):
            raise BadJsonError("'filter' must be an object")
        term = flt.get("generic_search_term")
        if term is not None and not isinstance(term, str):
            raise BadJsonError("'generic_search_term' must be a string")
        return 200, await list_public_rooms(limit, since, term)

    router.register("GET", CLIENT_PREFIX + r"/directory/room/(?P<alias>[^/]+)", get_alias, "directory_alias")
    router.register("PUT", CLIENT_PREFIX + r"/directory/room/(?P<alias>[^/]+)", put_alias, "directory_alias")
    router.register("DELETE", CLIENT_PREFIX + r"/directory/room/(?P<alias>[^/]+)", delete_alias, "directory_alias")
    router.register("GET", CLIENT_PREFIX + r"/rooms/(?P<room_id>[^/]+)/aliases", room_aliases, "room_aliases")
    router.register("GET", CLIENT_PREFIX + r"/directory/list/room/(?P<room_id>[^/]+)", get_visibility,
                    "directory_visibility")
    router.register("PUT", CLIENT_PREFIX + r"/directory/list/room/(?P<room_id>[^/]+)", put_visibility,
                    "directory_visibility")
    router.register("GET", CLIENT_PREFIX + r"/publicRooms", get_public_rooms, "publicRooms")
    router.register("POST", CLIENT_PREFIX + r"/publicRooms", post_public_rooms, "publicRooms")
