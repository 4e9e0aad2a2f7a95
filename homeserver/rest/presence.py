"""Presence endpoints (spec: Client-Server API, "Presence"): ``GET|PUT /presence/{userId}/status``."""

from __future__ import annotations

from typing import Any

from homeserver.http.errors import ForbiddenError, MissingParamError, NotFoundError
from homeserver.http.server import CLIENT_PREFIX, PARAM, parse_json_object


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``GET|PUT /presence/{userId}/status`` on ``router``, served by ``hs``'s handlers and stores.

    ``GET`` answers 403 ``M_FORBIDDEN`` unless the caller is the user or shares a joined room with them (404
    for an unknown user). Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError``
    subclasses (spec errcodes).
    Spec: Client-Server API "Presence".
    """
    handler = hs.presence_handler

    async def get_status(request: Any, user_id: str) -> tuple[int, Any]:
        requester = await hs.auth.get_user_by_req(request)
        if user_id != requester.user_id:
            if await hs.profile_store.get_profile(user_id) is None:
                raise NotFoundError("Unknown user")
            # Presence is shared with the people one shares a room with (as /sync delivers it), not with
            # every user of the server: the spec allows 403 for a user whose presence one may not see.
            if user_id not in await hs.room_store.get_users_who_share_room_with(requester.user_id):
                raise ForbiddenError("You do not share a room with this user")
        return 200, await handler.get_state(user_id)

    async def put_status(request: Any, user_id: str) -> tuple[int, Any]:
        requester = await hs.auth.get_user_by_req(request)
        body = parse_json_object(request)
        if "presence" not in body:
            raise MissingParamError("Missing key 'presence'")
        await handler.set_state(requester, user_id, body["presence"], body.get("status_msg"))
        return 200, {}

    router.register("GET", CLIENT_PREFIX + rf"/presence/(?P<user_id>{PARAM})/status", get_status, "presence")
    router.register("PUT", CLIENT_PREFIX + rf"/presence/(?P<user_id>{PARAM})/status", put_status, "presence")
