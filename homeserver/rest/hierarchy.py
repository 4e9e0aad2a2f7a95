"""``GET /_matrix/client/v1/rooms/{roomId}/hierarchy`` (spec: Client-Server API, "Spaces")."""

from __future__ import annotations

from typing import Any

from homeserver.http.server import CLIENT_V1_PREFIX, PARAM, parse_boolean, parse_integer, parse_string


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``GET /_matrix/client/v1/rooms/{roomId}/hierarchy`` on ``router``, served by ``hs``'s handlers and
    stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Spaces".
    """
    handler = hs.hierarchy_handler

    async def hierarchy(request: Any, room_id: str) -> tuple[int, Any]:
        requester = await hs.auth.get_user_by_req(request)
        limit = parse_integer(request, "limit", None, minimum=1)
        max_depth = parse_integer(request, "max_depth", None, minimum=0)
        suggested_only = parse_boolean(request, "suggested_only", False)
        from_token = parse_string(request, "from", None)
        return 200, await handler.get_hierarchy(requester.user_id, room_id, limit=limit, max_depth=max_depth,
                                                suggested_only=suggested_only, from_token=from_token)

    router.register("GET", CLIENT_V1_PREFIX + rf"/rooms/(?P<room_id>{PARAM})/hierarchy", hierarchy,
                    "room_hierarchy")
