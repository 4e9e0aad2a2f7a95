"""``GET /pushers`` and ``POST /pushers/set``.

Spec: Client-Server API, "Push Notifications" -> "Pushers". Rules live in :mod:`homeserver.handlers.pushers`.
"""

from __future__ import annotations

from typing import Any

from homeserver.http.server import CLIENT_PREFIX, parse_json_object

JsonDict = dict[str, Any]


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``GET /pushers`` and ``POST /pushers/set`` on ``router``, served by ``hs``'s handlers and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Push Notifications" -> "Pushers".
    """
    async def get_pushers(request: Any) -> tuple[int, JsonDict]:
        requester = await hs.auth.get_user_by_req(request)
        return 200, {"pushers": hs.pusher_handler.get_pushers(requester.user_id)}

    async def set_pusher(request: Any) -> tuple[int, JsonDict]:
        requester = await hs.auth.get_user_by_req(request)
        body = parse_json_object(request)
        await hs.pusher_handler.set_pusher(requester.user_id, body)
        return 200, {}

    router.register("GET", CLIENT_PREFIX + "/pushers", get_pushers, "pushers")
    router.register("POST", CLIENT_PREFIX + "/pushers/set", set_pusher, "pushers_set")
