"""``POST /rooms/{roomId}/read_markers``.

Spec: Client-Server API, "Fully read markers". Rules live in :mod:`homeserver.handlers.receipts`.
"""

from __future__ import annotations

from typing import Any

from homeserver.http.server import CLIENT_PREFIX, PARAM, parse_json_object

JsonDict = dict[str, Any]


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``POST /rooms/{roomId}/read_markers`` on ``router``, served by ``hs``'s handlers and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Fully read markers".
    """
    async def post_read_markers(request: Any, room_id: str) -> tuple[int, JsonDict]:
        requester = await hs.auth.get_user_by_req(request)
        body = parse_json_object(request)
        await hs.receipts_handler.set_read_markers(requester.user_id, room_id, body)
        return 200, {}

    router.register("POST", CLIENT_PREFIX + rf"/rooms/(?P<room_id>{PARAM})/read_markers", post_read_markers,
                    "read_markers")
