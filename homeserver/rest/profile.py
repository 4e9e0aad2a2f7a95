"""Profile endpoints (spec: Client-Server API, "Profiles"): ``GET /profile/{userId}`` and
``GET|PUT|DELETE /profile/{userId}/{keyName}`` (v1.16: ``displayname``, ``avatar_url``, ``m.tz`` and namespaced
custom keys). Reads need no access token (spec: no security scheme); when one is given, fields restricted by
``profile_fields.visibility`` (e.g. phone numbers, colleagues only) become readable to the caller."""

from __future__ import annotations

from typing import Any

from homeserver.http.auth import get_access_token
from homeserver.http.errors import MissingParamError
from homeserver.types import parse_user_id
from homeserver.http.server import CLIENT_PREFIX, PARAM, parse_json_object


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``GET /profile/{userId}`` and ``GET|PUT|DELETE /profile/{userId}/{keyName}`` on ``router``, served by
    ``hs``'s handlers and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Profiles".
    """
    handler = hs.profile_handler

    async def _viewer(request: Any) -> str | None:
        if get_access_token(request) is None:
            return None
        return (await hs.auth.get_user_by_req(request)).user_id

    async def get_profile(request: Any, user_id: str) -> tuple[int, Any]:
        parse_user_id(user_id)
        return 200, await handler.get_profile(user_id, await _viewer(request))

    async def get_field(request: Any, user_id: str, field: str) -> tuple[int, Any]:
        parse_user_id(user_id)
        return 200, {field: await handler.get_profile_field(user_id, field, await _viewer(request))}

    async def put_field(request: Any, user_id: str, field: str) -> tuple[int, Any]:
        requester = await hs.auth.get_user_by_req(request)
        body = parse_json_object(request)
        if field not in body:
            raise MissingParamError(f"Missing key '{field}'")
        await handler.set_profile_field(requester, user_id, field, body[field])
        return 200, {}

    async def delete_field(request: Any, user_id: str, field: str) -> tuple[int, Any]:
        requester = await hs.auth.get_user_by_req(request)
        await handler.delete_profile_field(requester, user_id, field)
        return 200, {}

    router.register("GET", CLIENT_PREFIX + rf"/profile/(?P<user_id>{PARAM})", get_profile, "profile")
    router.register("GET", CLIENT_PREFIX + rf"/profile/(?P<user_id>{PARAM})/(?P<field>{PARAM})", get_field,
                    "profile_field")
    router.register("PUT", CLIENT_PREFIX + rf"/profile/(?P<user_id>{PARAM})/(?P<field>{PARAM})", put_field,
                    "profile_field")
    router.register("DELETE", CLIENT_PREFIX + rf"/profile/(?P<user_id>{PARAM})/(?P<field>{PARAM})", delete_field,
                    "profile_field")
