"""``POST /user/{userId}/filter`` and ``GET /user/{userId}/filter/{filterId}``. Spec: Client-Server API,
"Filtering". Filters are validated on upload (400 ``M_BAD_JSON`` naming the bad key)."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.auth import authenticate
from homeserver.handlers.filtering import validate_filter
from homeserver.http.errors import ForbiddenError, NotFoundError
from homeserver.http.server import CLIENT_PREFIX, PARAM, parse_json_object

JsonDict = dict[str, Any]


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``POST /user/{userId}/filter`` and ``GET /user/{userId}/filter/{filterId}`` on ``router``, served by
    ``hs``'s handlers and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Filtering".
    """
    async def create_filter(request: Any, user_id: str) -> tuple[int, JsonDict]:
        requester = await authenticate(hs, request)
        if requester.user_id != user_id:
            raise ForbiddenError("Cannot create filters for other users.")
        filter_json = parse_json_object(request)
        validate_filter(filter_json)
        filter_id = await hs.filter_store.add_filter(user_id, filter_json)
        return 200, {"filter_id": str(filter_id)}

    async def get_filter(request: Any, user_id: str, filter_id: str) -> tuple[int, JsonDict]:
        requester = await authenticate(hs, request)
        if requester.user_id != user_id:
            raise ForbiddenError("Cannot get filters for other users.")
        stored = await hs.filter_store.get_filter(user_id, filter_id)
        if stored is None:
            raise NotFoundError("No such filter")
        return 200, stored

    router.register("POST", CLIENT_PREFIX + rf"/user/(?P<user_id>{PARAM})/filter", create_filter, "filter")
    router.register("GET", CLIENT_PREFIX + rf"/user/(?P<user_id>{PARAM})/filter/(?P<filter_id>{PARAM})",
                    get_filter, "filter")
