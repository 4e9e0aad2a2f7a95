"""``POST /search``: server-side search of room events.

Spec: Client-Server API "Server Side Search". Parsing and rules are in :mod:`homeserver.handlers.search`.
"""

from __future__ import annotations

from typing import Any

from homeserver.http.server import CLIENT_PREFIX, parse_json_object, parse_string


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``POST /search`` on ``router``, served by ``hs``'s handlers and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Server Side Search".
    """
    auth = hs.auth
    handler = hs.search_handler

    async def search(request: Any) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        body = parse_json_object(request)
        return 200, await handler.search(requester, body, parse_string(request, "next_batch"))

    router.register("POST", CLIENT_PREFIX + r"/search", search, "search")
