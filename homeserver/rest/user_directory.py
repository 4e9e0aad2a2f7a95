"""``POST /user_directory/search`` (spec: Client-Server API, "User directory")."""

from __future__ import annotations

from typing import Any

from homeserver.http.errors import BadJsonError, MissingParamError
from homeserver.http.server import CLIENT_PREFIX, parse_json_object


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``POST /user_directory/search`` on ``router``, served by ``hs``'s handlers and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "User directory".
    """
    handler = hs.user_directory_handler

    async def search(request: Any) -> tuple[int, Any]:
        requester = await hs.auth.get_user_by_req(request)
        body = parse_json_object(request)
        if "search_term" not in body:
            raise MissingParamError("Missing key 'search_term'")
        term = body["search_term"]
        if not isinstance(term, str):
            raise BadJsonError("search_term must be a string")
        limit = body.get("limit", 10)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise BadJsonError("limit must be a non-negative integer")
        return 200, await handler.search(requester.user_id, term, limit)

    router.register("POST", CLIENT_PREFIX + r"/user_directory/search", search, "user_directory_search")
