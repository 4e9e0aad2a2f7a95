"""Profile endpoints (spec: Client-Server API, "Profiles"): ``GET /profile/{userId}`` and
``GET|PUT /profile/{userId}/{displayname|avatar_url}``. Reads need no access token (spec: no security scheme)."""

from __future__ import annotations

from typing import Any

from homeserver.http.errors import MissingParamError
from homeserver.http.server import CLIENT_PREFIX, PARAM, parse_json_object


def register_servlets(hs: Any, router: Any) -> None:
    handler = hs.profile_handler

    async def get_profile(request: Any, user_id: str) -> tuple[int, Any]:
        return 200, await handler.get_profile(user_id)

    async def get_field(request: Any, user_id: str, field: str) -> tuple[int, Any]:
        return 200, {field: await handler.get_profile_field(user_id, field)}

    async def put_field(request: Any, user_id: str, field: str) -> tuple[int, Any]:
        requester = await hs.auth.get_user_by_req(request)
        body = parse_json_object(request)
        if field not in body:
            raise MissingParamError(f"Missing key '{field}'")
        await handler.set_profile_field(requester, user_id, field, body[field])
        return 200, {}

    router.register("GET", CLIENT_PREFIX + rf"/profile/(?P<user_id>{PARAM})", get_profile, "profile")
    router.register("GET", CLIENT_PREFIX + rf"/profile/(?P<user_id>{PARAM})/(?P<field>{PARAM})", get_field,
                    "profile_field")
    router.register("PUT", CLIENT_PREFIX + rf"/profile/(?P<user_id>{PARAM})/(?P<field>{PARAM})", put_field,
                    "profile_field")
