"""Account data and room tags.

Spec: Client-Server API, "Client Config" (``/user/{userId}/account_data/{type}``,
``/user/{userId}/rooms/{roomId}/account_data/{type}``) and "Room Tagging" (``/user/{userId}/rooms/{roomId}/tags``).
Only the user may read or write their own data (403 ``M_FORBIDDEN``). ``m.fully_read`` and ``m.push_rules`` are
managed by the server through other APIs and cannot be set here (405 ``M_BAD_JSON``).
"""

from __future__ import annotations

from typing import Any

from homeserver.handlers.auth import authenticate
from homeserver.http.errors import BadJsonError, Codes, ForbiddenError, InvalidParamError, MatrixError, NotFoundError
from homeserver.http.server import CLIENT_PREFIX, PARAM, parse_json_object

JsonDict = dict[str, Any]
SERVER_MANAGED_TYPES = frozenset({"m.fully_read", "m.push_rules"})
TAG_TYPE = "m.tag"
MAX_TYPE_LENGTH = 255


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``GET|PUT /user/{userId}[/rooms/{roomId}]/account_data/{type}`` and
    ``GET /user/{userId}/rooms/{roomId}/tags``, ``PUT|DELETE .../tags/{tag}`` on ``router``, served by ``hs``'s handlers
    and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Client Config" and "Room Tagging".
    """
    store = hs.account_data_store

    async def _own(request: Any, user_id: str) -> Any:
        requester = await authenticate(hs, request)
        if requester.user_id != user_id:
            raise ForbiddenError("Cannot access account data of other users.")
        return requester

    def _check_type(data_type: str) -> None:
        if not data_type or len(data_type) > MAX_TYPE_LENGTH:
            raise InvalidParamError("Invalid account data type")

    def _check_room(room_id: str) -> None:
        if not room_id.startswith("!") or len(room_id) > 255:
            raise InvalidParamError(f"{room_id!r} is not a valid room ID")

    def _check_settable(data_type: str) -> None:
        _check_type(data_type)
        if data_type in SERVER_MANAGED_TYPES:
            raise MatrixError(405, f"Cannot set {data_type} through this API.", Codes.BAD_JSON)

    async def get_global(request: Any, user_id: str, data_type: str) -> tuple[int, JsonDict]:
        await _own(request, user_id)
        content = await store.get_account_data(user_id, "", data_type)
        if content is None and data_type == "m.push_rules" and getattr(hs, "push_handler", None) is not None:
            content = await hs.push_handler.get_push_rules_content(user_id)
        if content is None:
            raise NotFoundError("Account data not found")
        return 200, content

    async def put_global(request: Any, user_id: str, data_type: str) -> tuple[int, JsonDict]:
        await _own(request, user_id)
        _check_settable(data_type)
        content = parse_json_object(request)
        await store.add_account_data(user_id, "", data_type, content)
        return 200, {}

    async def get_room(request: Any, user_id: str, room_id: str, data_type: str) -> tuple[int, JsonDict]:
        await _own(request, user_id)
        _check_room(room_id)
        content = await store.get_account_data(user_id, room_id, data_type)
        if content is None:
            raise NotFoundError("Room account data not found")
        return 200, content

    async def put_room(request: Any, user_id: str, room_id: str, data_type: str) -> tuple[int, JsonDict]:
        await _own(request, user_id)
        _check_room(room_id)
        _check_settable(data_type)
        content = parse_json_object(request)
        await store.add_account_data(user_id, room_id, data_type, content)
        return 200, {}

    async def get_tags(request: Any, user_id: str, room_id: str) -> tuple[int, JsonDict]:
        await _own(request, user_id)
        _check_room(room_id)
        content = await store.get_account_data(user_id, room_id, TAG_TYPE) or {}
        tags = content.get("tags")
        return 200, {"tags": tags if isinstance(tags, dict) else {}}

    async def put_tag(request: Any, user_id: str, room_id: str, tag: str) -> tuple[int, JsonDict]:
        await _own(request, user_id)
        _check_room(room_id)
        if not tag or len(tag) > MAX_TYPE_LENGTH:
            raise InvalidParamError("Invalid tag name")
        tag_content = parse_json_object(request)
        order = tag_content.get("order")
        if order is not None and (isinstance(order, bool) or not isinstance(order, (int, float))):
            raise BadJsonError("order must be a number")

        def change(old: JsonDict | None) -> JsonDict:
            tags = dict((old or {}).get("tags") or {})
            tags[tag] = tag_content
            return {**(old or {}), "tags": tags}

        await store.update_account_data(user_id, room_id, TAG_TYPE, change)
        return 200, {}

    async def delete_tag(request: Any, user_id: str, room_id: str, tag: str) -> tuple[int, JsonDict]:
        await _own(request, user_id)
        _check_room(room_id)

        def change(old: JsonDict | None) -> JsonDict:
            tags = dict((old or {}).get("tags") or {})
            tags.pop(tag, None)
            return {**(old or {}), "tags": tags}

        await store.update_account_data(user_id, room_id, TAG_TYPE, change)
        return 200, {}

    user = rf"/user/(?P<user_id>{PARAM})"
    room = rf"/rooms/(?P<room_id>{PARAM})"
    router.register("GET", CLIENT_PREFIX + user + rf"/account_data/(?P<data_type>{PARAM})", get_global,
                    "account_data")
    router.register("PUT", CLIENT_PREFIX + user + rf"/account_data/(?P<data_type>{PARAM})", put_global,
                    "account_data")
    router.register("GET", CLIENT_PREFIX + user + room + rf"/account_data/(?P<data_type>{PARAM})", get_room,
                    "room_account_data")
    router.register("PUT", CLIENT_PREFIX + user + room + rf"/account_data/(?P<data_type>{PARAM})", put_room,
                    "room_account_data")
    router.register("GET", CLIENT_PREFIX + user + room + r"/tags", get_tags, "tags")
    router.register("PUT", CLIENT_PREFIX + user + room + rf"/tags/(?P<tag>{PARAM})", put_tag, "tag")
    router.register("DELETE", CLIENT_PREFIX + user + room + rf"/tags/(?P<tag>{PARAM})", delete_tag, "tag")
